// Seeds over HTTP: the new API (create, send events, read persisted state) and the original routes
// orchestrator drives, both served by the seed manager. No OS logic here.
import { createHmac } from 'node:crypto';
import { createServer as createNetServer } from 'node:net';
import type { Context } from 'koa';
import type { Config } from '../config.js';
import { AgentError, badRequest } from '../errors.js';
import { sendJson } from '../http/respond.js';
import type { Routes } from '../http/routes.js';
import type { AgentServices } from '../services.js';
import * as validate from '../validate.js';
import { newAuthKey } from '../transfer/auth.js';
import { isSeedMethod, SEED_METHODS, type SeedMethod } from '../seeds/seed-method-names.js';
import { MAX_DURATION_SECONDS } from '../timers.js';
import { callPeer, ensurePeerCallsConfigured, requirePeer, type PeerAddress } from '../peer-agent.js';
import { log } from '../log.js';
import type { SeedView } from '../seeds/seed-manager.js';

const maxBodyBytes = 64 * 1024;
const defaultTimeoutSeconds = 24 * 3600;

async function readJsonBody(ctx: Context): Promise<Record<string, unknown>> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > maxBodyBytes) throw badRequest(`request body larger than ${maxBodyBytes} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    // Not the parser's message: it quotes the body, which may hold an authKey, into the answer and the log.
    const at = /position (\d+)/.exec((err as Error).message);
    throw badRequest(`request body is not JSON${at ? ` (at byte ${at[1]})` : ''}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw badRequest('request body must be a JSON object');
  return value as Record<string, unknown>;
}

/** "method" of POST /api/seeds: snapshot (the default, today's flow), backup or dump. */
function methodOf(body: Record<string, unknown>): SeedMethod {
  if (body.method === undefined) return 'snapshot';
  if (!isSeedMethod(body.method)) throw badRequest(`method must be one of ${SEED_METHODS.map((m) => `"${m}"`).join(', ')}, got ${JSON.stringify(body.method)}`);
  return body.method;
}

/** "sourceMySQL": {"host","port"}: where the new replica reaches the source (a separate replication network). */
function sourceMySQLOf(body: Record<string, unknown>): { host: string; port: number } | null {
  const v = body.sourceMySQL;
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw badRequest('sourceMySQL must be {"host": ..., "port": ...}');
  const o = v as Record<string, unknown>;
  return { host: validate.host(o.host), port: validate.port(o.port) };
}

/** "source": {"host","port"}: the source agent's API, where this target agent creates the source half. */
function peerOf(v: unknown): PeerAddress | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw badRequest('source must be {"host": ..., "port": ...} (the source agent\'s API)');
  const o = v as Record<string, unknown>;
  return { host: validate.host(o.host), port: validate.port(o.port) };
}

function bool(body: Record<string, unknown>, key: string): boolean {
  const v = body[key];
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw badRequest(`${key} must be true or false`);
  return v;
}

/**
 * "compression" of POST /api/seeds: the built-in transfer's on the sending side, overriding
 * SeedTransferCompression (the modes of src/transfer/compression.ts, listed here so the routes do not load it).
 */
function compressionOf(body: Record<string, unknown>): 'off' | 'fast' | 'strong' | 'auto' | undefined {
  const v = body.compression;
  if (v === undefined) return undefined;
  if (v !== 'off' && v !== 'fast' && v !== 'strong' && v !== 'auto') throw badRequest(`compression must be "off", "fast", "strong" or "auto", got ${JSON.stringify(v)}`);
  return v;
}

function timeoutSeconds(body: Record<string, unknown>): number {
  if (body.timeoutSeconds === undefined) return defaultTimeoutSeconds;
  return validate.durationSeconds('timeoutSeconds', body.timeoutSeconds, 1, MAX_DURATION_SECONDS);
}

type TransferMode = { kind: 'command' } | { kind: 'builtin' };

/** A configured command runs as the original's; otherwise the built-in transfer. */
function transferMode(config: Config, role: 'target' | 'source'): TransferMode {
  const key = role === 'target' ? 'ReceiveSeedDataCommand' : 'SendSeedDataCommand';
  return config[key].trim() !== '' ? { kind: 'command' } : { kind: 'builtin' };
}

/**
 * The original routes carry no key, so both agents derive it from a shared secret. Without one (and
 * without mutual TLS on the data channel) anyone reaching the port could feed the target: refuse.
 */
function compatKey(config: Config, role: 'target' | 'source', seedId: string): Record<string, string> {
  if (transferMode(config, role).kind === 'command') return {};
  const key = role === 'target' ? 'ReceiveSeedDataCommand' : 'SendSeedDataCommand';
  if (config.SeedTransferSecret === '' && !(config.SeedTransferUseSSL && config.UseMutualTLS)) {
    throw badRequest(
      `the original seed routes with the built-in transfer need SeedTransferSecret, which is not configured`,
      `configure SeedTransferSecret (the same on both agents) or ${key}`,
    );
  }
  return { authKey: createHmac('sha256', config.SeedTransferSecret).update(seedId).digest('hex') };
}

/** A port free now on the receiver's address, chosen at creation so the sender can be told at once. */
async function pickPort(bindAddress: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createNetServer();
    server.once('error', reject);
    server.listen(0, bindAddress || undefined, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function authKeyOf(body: Record<string, unknown>): string {
  const key = body.authKey;
  if (typeof key !== 'string' || !/^[A-Za-z0-9+/=_-]{16,256}$/.test(key)) {
    throw badRequest('authKey is missing or malformed', 'pass the authKey the target seed returned at creation');
  }
  return key;
}

/**
 * Seed ids whose original route (receive/send-mysql-seed-data) was refused, in memory and bounded: so
 * seed-command-completed answers true and seed-command-succeeded false at orchestrator's next poll,
 * instead of "Copied 0 bytes" until its own timeout.
 */
export class RefusedSeedIds {
  private readonly ids = new Set<string>();
  constructor(private readonly limit = 1000) {}
  add(id: string): void {
    this.ids.delete(id);
    this.ids.add(id);
    // A Set iterates in insertion order: the first is the oldest.
    while (this.ids.size > this.limit) this.ids.delete(this.ids.values().next().value!);
  }
  delete(id: string): void {
    this.ids.delete(id);
  }
  has(id: string): boolean {
    return this.ids.has(id);
  }
}

export function registerSeedRoutes(routes: Routes, services: AgentServices): void {
  const seeds = services.seeds;
  if (!seeds) return;
  const { config } = services;
  const refused = new RefusedSeedIds();
  /** Runs an original seed route's creation, remembering the id when it is refused and no such seed exists. */
  const remembering = async (id: string, create: () => Promise<void> | void): Promise<true> => {
    try {
      await create();
    } catch (err) {
      if (!seeds.get(id)) refused.add(id);
      throw err;
    }
    refused.delete(id);
    return true;
  };

  const createSeed = async (body: Record<string, unknown>) => {
    const id = validate.seedId(body.id);
    const role = body.role;
    const stepByStep = bool(body, 'stepByStep');
    const method = methodOf(body);
    const { chartFor } = await seeds.ready(); // the charts and their steps load with the first seed
    if (role === 'target' || role === 'source') chartFor(method, role); // 400 for a method not implemented yet
    const compression = compressionOf(body);
    if (compression !== undefined && method === 'snapshot' && role === 'source' && transferMode(config, 'source').kind !== 'builtin') {
      throw badRequest('compression applies to the built-in transfer (methods "backup" and "dump", or "snapshot" with SendSeedDataCommand unset)');
    }
    let result;
    if (method === 'backup' && role === 'target') {
      const existing = seeds.get(id);
      const replicate = bool(body, 'replicate');
      const params = {
        method,
        startMySQL: bool(body, 'startMySQL') || replicate,
        replicate,
        sourceMySQL: sourceMySQLOf(body),
        force: bool(body, 'force'),
        stepByStep,
        port: typeof existing?.params.port === 'number' ? existing.params.port : await pickPort(config.SeedTransferBindAddress),
      };
      result = seeds.create(id, 'target', params, { method, timeoutSeconds: timeoutSeconds(body), secrets: { authKey: newAuthKey() } });
    } else if (method === 'dump' && role === 'target') {
      // startMySQL does not apply: a dump is loaded into the running MySQL (a pre-seed check requires it).
      const existing = seeds.get(id);
      const params = {
        method,
        replicate: bool(body, 'replicate'),
        sourceMySQL: sourceMySQLOf(body),
        force: bool(body, 'force'),
        stepByStep,
        port: typeof existing?.params.port === 'number' ? existing.params.port : await pickPort(config.SeedTransferBindAddress),
      };
      result = seeds.create(id, 'target', params, { method, timeoutSeconds: timeoutSeconds(body), secrets: { authKey: newAuthKey() } });
    } else if ((method === 'backup' || method === 'dump') && role === 'source') {
      const params = {
        method,
        targetHost: validate.host(body.targetHost),
        targetPort: validate.port(body.targetPort),
        stepByStep,
        ...(compression === undefined ? {} : { compression }),
      };
      result = seeds.create(id, 'source', params, { method, timeoutSeconds: timeoutSeconds(body), secrets: { authKey: authKeyOf(body) } });
    } else if (role === 'target') {
      const existing = seeds.get(id);
      const builtin = transferMode(config, 'target').kind === 'builtin';
      const port = !builtin
        ? config.SeedTransferPort
        : typeof existing?.params.port === 'number'
          ? existing.params.port
          : await pickPort(config.SeedTransferBindAddress);
      result = seeds.create(id, 'target', { startMySQL: bool(body, 'startMySQL'), stepByStep, receiveOnly: false, port }, {
        timeoutSeconds: timeoutSeconds(body),
        secrets: builtin ? { authKey: newAuthKey() } : {},
      });
    } else if (role === 'source') {
      const builtin = transferMode(config, 'source').kind === 'builtin';
      const snapshot = validate.snapshotName(body.snapshot, config.BtrfsSnapshotsDir || undefined);
      const params = {
        targetHost: validate.host(body.targetHost),
        targetPort: body.targetPort === undefined ? config.SeedTransferPort : validate.port(body.targetPort),
        snapshot,
        alreadyMounted: false,
        sourceDir: '',
        stepByStep,
        ...(compression === undefined ? {} : { compression }),
      };
      result = seeds.create(id, 'source', params, { timeoutSeconds: timeoutSeconds(body), secrets: builtin ? { authKey: authKeyOf(body) } : {} });
    } else {
      throw badRequest(`role must be "target" or "source", got ${JSON.stringify(role)}`);
    }
    return result;
  };

  routes.post('/api/seeds', async (ctx) => {
    const body = await readJsonBody(ctx);
    const source = peerOf(body.source);
    if (source && body.role !== 'target') throw badRequest('"source" goes with role "target": the target agent creates the source half');
    if (source) ensurePeerCallsConfigured(config); // before anything is created
    if (body.compression !== undefined && body.role === 'target' && !source) {
      throw badRequest('compression is chosen by the sending side: give it to the source seed, or link the source with "source"');
    }
    const result = await createSeed(body);
    if (source) {
      // One request, both halves: this agent creates the source seed on the source agent and hands it the key.
      await linkSource(ctx, body, source, result);
      sendJson(ctx, result.created ? 201 : 200, { seed: seeds.get(result.view.id), transfer: result.view.transfer });
      return;
    }
    // The only response that shows the key: the caller hands it to the source seed.
    const transfer = result.view.transfer ? { ...result.view.transfer, ...(result.secrets.authKey ? { authKey: result.secrets.authKey } : {}) } : null;
    sendJson(ctx, result.created ? 201 : 200, { seed: result.view, transfer });
  });

  const linkSource = async (ctx: Context, body: Record<string, unknown>, source: PeerAddress, result: Awaited<ReturnType<typeof createSeed>>) => {
    const id = result.view.id;
    const authKey = result.secrets.authKey;
    const port = result.view.transfer?.port;
    if (!authKey || port === undefined) {
      throw badRequest('linking a source needs the built-in transfer on the target', 'unset ReceiveSeedDataCommand, or create the two halves with two requests');
    }
    const sourceBody = {
      id,
      role: 'source',
      ...(body.method === undefined ? {} : { method: body.method }),
      ...(body.snapshot === undefined ? {} : { snapshot: body.snapshot }),
      ...(body.compression === undefined ? {} : { compression: body.compression }),
      // How the source reaches this host: named in the request, else the address the caller used.
      targetHost: validate.host(body.targetHost ?? ctx.hostname),
      targetPort: port,
      authKey,
      ...(body.timeoutSeconds === undefined ? {} : { timeoutSeconds: body.timeoutSeconds }),
    };
    try {
      await callPeer(config, source, 'POST', '/api/peer/seeds', sourceBody);
    } catch (err) {
      const e = err as AgentError;
      const view = seeds.get(id);
      if (view?.accepts.includes('ABORT')) seeds.send(id, { type: 'ABORT' });
      throw new AgentError(e.code === 'config' ? 'config' : 'unavailable', `the target seed ${id} was made, but its source half could not be created on ${source.host}:${source.port}, so it is aborted: ${e.message}`, {
        hint: e.hint ?? 'check the source agent, then create the seed again',
      });
    }
    seeds.link(id, { host: source.host, port: source.port, seedId: id, role: 'source' });
  };

  // Agent-to-agent: the target agent of a linked seed creates, reads and aborts its source half here.
  const peerAuth = requirePeer(config);
  const peerJson = (ctx: Context): Record<string, unknown> => {
    const raw = String(ctx.state.rawBody ?? '').trim();
    try {
      const v: unknown = raw === '' ? {} : JSON.parse(raw);
      if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
    } catch {
      /* answered below */
    }
    throw badRequest('request body must be a JSON object');
  };
  routes.router.post('/api/peer/seeds', peerAuth, async (ctx) => {
    const body = peerJson(ctx);
    if (body.role !== 'source') throw badRequest('a peer agent creates only source seeds here');
    const result = await createSeed(body);
    sendJson(ctx, result.created ? 201 : 200, { seed: summary(result.view) });
  });
  routes.router.get('/api/peer/seeds/:id', peerAuth, (ctx) => {
    const id = validate.seedId(ctx.params.id);
    const view = seeds.get(id);
    if (!view) throw new AgentError('not_found', `no seed ${id} on this agent`);
    sendJson(ctx, 200, summary(view));
  });
  routes.router.post('/api/peer/seeds/:id/abort', peerAuth, (ctx) => {
    const id = validate.seedId(ctx.params.id);
    const body = peerJson(ctx);
    const reason = typeof body.reason === 'string' ? body.reason.slice(0, 2000) : 'no reason given';
    const view = seeds.get(id);
    if (view?.accepts.includes('ABORT')) {
      log.info('seed aborted by its peer agent', { id, reason });
      seeds.send(id, { type: 'ABORT', reason, fromPeer: true });
    }
    sendJson(ctx, 200, summary(seeds.get(id) ?? view ?? null));
  });

  // A linked seed that ends failed or aborted on its own tells its peer half at once, with its reason. A seed
  // held because its state cannot be saved has not ended: a restart with StateDir writable resumes it, and
  // its peer half must still be there to go on with it.
  const told = new Set<string>();
  seeds.subscribe((view) => {
    if ((view.status !== 'failed' && view.status !== 'aborted') || !view.peer || told.has(view.id)) return;
    if (view.error?.code === 'state_unwritable') return;
    told.add(view.id);
    if ((view.error as { fromPeer?: boolean } | null)?.fromPeer) return;
    const reason = `the ${view.role} seed ${view.id} ${view.status === 'aborted' ? 'was aborted' : 'failed'}: ${view.error?.message ?? 'no reason recorded'}`;
    const peer = view.peer;
    void callPeer(config, peer, 'POST', `/api/peer/seeds/${peer.seedId}/abort`, { reason }).catch((err: unknown) =>
      log.warn('could not tell the peer agent that this seed ended', { id: view.id, peer: `${peer.host}:${peer.port}`, error: (err as Error).message }),
    );
  });

  routes.post('/api/seeds/:id/events', async (ctx) => {
    const id = validate.seedId(ctx.params.id);
    const body = await readJsonBody(ctx);
    if (body.type !== 'NEXT' && body.type !== 'ABORT') throw badRequest(`event type must be "NEXT" or "ABORT", got ${JSON.stringify(body.type)}`);
    if (body.type === 'NEXT') return seeds.send(id, { type: 'NEXT' });
    // The operator's reason, if given, stays with the seed's error (and is told to the peer half).
    if (body.reason === undefined) return seeds.send(id, { type: 'ABORT' });
    if (typeof body.reason !== 'string' || body.reason.trim() === '' || body.reason.length > 500 || /[\u0000-\u001f\u007f]/.test(body.reason)) {
      throw badRequest('reason must be one line of text, at most 500 characters');
    }
    return seeds.send(id, { type: 'ABORT', reason: body.reason.trim() });
  });

  // stateDir.problems: what is wrong with StateDir (read-only, full, unreadable) while the agent works around it.
  routes.read('/api/seeds', () => ({ seeds: seeds.list(), corrupt: seeds.corruptFiles(), stateDir: { path: config.StateDir, problems: seeds.stateDirProblems() } }));

  routes.read('/api/seeds/:id', async (ctx) => {
    const id = validate.seedId(ctx.params.id);
    const view = seeds.get(id);
    if (!view) throw new AgentError('not_found', `no seed ${id} on this agent`, { hint: 'GET /api/seeds lists the seeds' });
    if (!view.peer) return view;
    // Both halves in one view: the peer half's state as its agent reports it now.
    const peer = await callPeer<ReturnType<typeof summary>>(config, view.peer, 'GET', `/api/peer/seeds/${view.peer.seedId}`, undefined, 3000).then(
      (p) => ({ ...view.peer!, state: p?.state ?? null, status: p?.status ?? null, error: p?.error ?? null }),
      (err: unknown) => ({ ...view.peer!, state: null, status: null, error: null, unreachable: (err as Error).message }),
    );
    return { ...view, peer };
  });

  // The original routes. Orchestrator stops MySQL, purges the datadir, runs post-copy and starts MySQL
  // through their own routes; the target seed's ensure steps find those already done.
  routes.action('/api/receive-mysql-seed-data/:seedId', (ctx) => {
    const id = validate.seedId(ctx.params.seedId);
    return remembering(id, async () => {
      await seeds.ready();
      const secrets = compatKey(config, 'target', id);
      seeds.create(id, 'target', { startMySQL: false, stepByStep: false, receiveOnly: true, port: config.SeedTransferPort }, { timeoutSeconds: defaultTimeoutSeconds, secrets });
    });
  });

  routes.action('/api/send-mysql-seed-data/:targetHost/:seedId', async (ctx) => {
    const id = validate.seedId(ctx.params.seedId);
    return remembering(id, () => sendSeedData(id, validate.host(ctx.params.targetHost)));
  });
  const sendSeedData = async (id: string, targetHost: string) => {
    await seeds.ready();
    const secrets = compatKey(config, 'source', id);
    const existing = seeds.get(id);
    let sourceDir = typeof existing?.params.sourceDir === 'string' ? existing.params.sourceDir : '';
    if (!existing) {
      const mount = await services.snapshots.getMount(config.SnapshotMountPoint);
      if (!mount.IsMounted || mount.MySQLDataPath === '') {
        throw new AgentError('conflict', `nothing with a MySQL datadir is mounted at ${config.SnapshotMountPoint || '(SnapshotMountPoint unset)'}`, {
          hint: 'mount a snapshot first (/api/mountlv)',
        });
      }
      sourceDir = mount.MySQLDataPath;
    }
    const params = { targetHost, targetPort: config.SeedTransferPort, snapshot: '', alreadyMounted: true, sourceDir, stepByStep: false };
    seeds.create(id, 'source', params, { timeoutSeconds: defaultTimeoutSeconds, secrets });
  };

  routes.action('/api/abort-seed/:seedId', (ctx) => {
    const id = validate.seedId(ctx.params.seedId);
    const view = seeds.get(id);
    if (view && view.accepts.includes('ABORT')) seeds.send(id, { type: 'ABORT' });
    return true; // the original answers true whether or not there was anything to abort
  });

  // A refused id (no seed was made) is completed and failed: orchestrator fails it at its next poll.
  routes.read('/api/seed-command-completed/:seedId', (ctx) => {
    const id = validate.seedId(ctx.params.seedId);
    return seeds.get(id) ? seeds.transferCompleted(id) : refused.has(id);
  });
  routes.read('/api/seed-command-succeeded/:seedId', (ctx) => {
    const id = validate.seedId(ctx.params.seedId);
    return seeds.get(id) ? seeds.transferSucceeded(id) : false;
  });
}


/** What a peer agent learns of a seed: no params, no marks, no secrets. */
function summary(view: SeedView | null) {
  if (!view) return null;
  return { id: view.id, role: view.role, method: view.method, state: view.state, status: view.status, error: view.error, progress: view.progress };
}
