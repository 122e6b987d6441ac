// Seeds over HTTP: the new API (create, send events, read persisted state) and the original routes
// orchestrator drives, both served by the seed manager. No OS logic here.
import type { Context } from 'koa';
import type { Config } from '../config.js';
import { AgentError, badRequest } from '../errors.js';
import { sendJson } from '../http/respond.js';
import type { Routes } from '../http/routes.js';
import type { AgentServices } from '../services.js';
import * as validate from '../validate.js';

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
    throw badRequest(`request body is not JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw badRequest('request body must be a JSON object');
  return value as Record<string, unknown>;
}

function bool(body: Record<string, unknown>, key: string): boolean {
  const v = body[key];
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw badRequest(`${key} must be true or false`);
  return v;
}

function timeoutSeconds(body: Record<string, unknown>): number {
  if (body.timeoutSeconds === undefined) return defaultTimeoutSeconds;
  const n = validate.nonNegativeInt('timeoutSeconds', body.timeoutSeconds);
  if (n === 0) throw badRequest('timeoutSeconds must be positive');
  return n;
}

/** The transfer this agent can run for a role; refused up front rather than failing the seed later. */
function requireTransfer(config: Config, role: 'target' | 'source', compat: boolean): void {
  const key = role === 'target' ? 'ReceiveSeedDataCommand' : 'SendSeedDataCommand';
  if (config[key].trim() !== '') return;
  if (compat && config.SeedTransferSecret === '' && !config.UseMutualTLS) {
    throw badRequest(`${key} is not configured, and the built-in transfer needs SeedTransferSecret for the original seed routes`, `configure SeedTransferSecret (the same on both agents) or ${key}`);
  }
  throw badRequest(`${key} is not configured and this agent has no built-in transfer`, `set ${key} on both agents${compat ? ', or SeedTransferSecret' : ''}`);
}

export function registerSeedRoutes(routes: Routes, services: AgentServices): void {
  const seeds = services.seeds;
  if (!seeds) return;
  const { config } = services;

  routes.post('/api/seeds', async (ctx) => {
    const body = await readJsonBody(ctx);
    const id = validate.seedId(body.id);
    const role = body.role;
    const stepByStep = bool(body, 'stepByStep');
    let result;
    if (role === 'target') {
      requireTransfer(config, 'target', false);
      result = seeds.create(id, 'target', { startMySQL: bool(body, 'startMySQL'), stepByStep, receiveOnly: false }, { timeoutSeconds: timeoutSeconds(body) });
    } else if (role === 'source') {
      requireTransfer(config, 'source', false);
      const snapshot = validate.snapshotName(body.snapshot, config.BtrfsSnapshotsDir || undefined);
      const params = {
        targetHost: validate.host(body.targetHost),
        targetPort: body.targetPort === undefined ? config.SeedTransferPort : validate.port(body.targetPort),
        snapshot,
        alreadyMounted: false,
        sourceDir: '',
        stepByStep,
      };
      result = seeds.create(id, 'source', params, { timeoutSeconds: timeoutSeconds(body) });
    } else {
      throw badRequest(`role must be "target" or "source", got ${JSON.stringify(role)}`);
    }
    sendJson(ctx, result.created ? 201 : 200, { seed: result.view, transfer: result.view.transfer });
  });

  routes.post('/api/seeds/:id/events', async (ctx) => {
    const id = validate.seedId(ctx.params.id);
    const body = await readJsonBody(ctx);
    if (body.type !== 'NEXT' && body.type !== 'ABORT') throw badRequest(`event type must be "NEXT" or "ABORT", got ${JSON.stringify(body.type)}`);
    return seeds.send(id, { type: body.type });
  });

  routes.read('/api/seeds', () => ({ seeds: seeds.list(), corrupt: seeds.corruptFiles() }));

  routes.read('/api/seeds/:id', (ctx) => {
    const id = validate.seedId(ctx.params.id);
    const view = seeds.get(id);
    if (!view) throw new AgentError('not_found', `no seed ${id} on this agent`, { hint: 'GET /api/seeds lists the seeds' });
    return view;
  });

  // The original routes. Orchestrator stops MySQL, purges the datadir, runs post-copy and starts MySQL
  // through their own routes; the target seed's ensure steps find those already done.
  routes.action('/api/receive-mysql-seed-data/:seedId', (ctx) => {
    const id = validate.seedId(ctx.params.seedId);
    requireTransfer(config, 'target', true);
    seeds.create(id, 'target', { startMySQL: false, stepByStep: false, receiveOnly: true }, { timeoutSeconds: defaultTimeoutSeconds });
    return true;
  });

  routes.action('/api/send-mysql-seed-data/:targetHost/:seedId', async (ctx) => {
    const targetHost = validate.host(ctx.params.targetHost);
    const id = validate.seedId(ctx.params.seedId);
    requireTransfer(config, 'source', true);
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
    seeds.create(id, 'source', params, { timeoutSeconds: defaultTimeoutSeconds });
    return true;
  });

  routes.action('/api/abort-seed/:seedId', (ctx) => {
    const id = validate.seedId(ctx.params.seedId);
    const view = seeds.get(id);
    if (view && view.accepts.includes('ABORT')) seeds.send(id, { type: 'ABORT' });
    return true; // the original answers true whether or not there was anything to abort
  });

  routes.read('/api/seed-command-completed/:seedId', (ctx) => seeds.transferCompleted(validate.seedId(ctx.params.seedId)));
  routes.read('/api/seed-command-succeeded/:seedId', (ctx) => seeds.transferSucceeded(validate.seedId(ctx.params.seedId)));
}

