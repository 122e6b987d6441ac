// `orchestrator-agent seed --source HOST:PORT --target HOST:PORT --snapshot NAME`: drives one seed from any
// host that reaches both agents' APIs. It creates the target seed, hands its transfer port and key to a
// source seed on the other agent, shows both halves live (step, bytes, rate, ETA), and keeps them linked:
// when one half fails or is aborted the other is aborted at once. Exits 0 when both are done, 1 otherwise.
// Tokens come from the environment or files, never from the command line.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { version } from './version.js';
import type { WireStats } from './transfer/progress.js';

export const seedUsage = `Usage: orchestrator-agent seed --source HOST:PORT --target HOST:PORT --snapshot NAME [options]
       orchestrator-agent seed --source HOST:PORT --target HOST:PORT --method backup [--replicate] [options]
       orchestrator-agent seed --source HOST:PORT --target HOST:PORT --method dump [--replicate] [options]

Copies the source host's data into the target host's datadir through both agents' seed API: from a
snapshot (method snapshot, the default), as a hot backup of the running source MySQL (method backup), or as a
logical dump of its user schemas loaded into the target's running MySQL (method dump).

Options:
  --source HOST:PORT         the source agent's API (it mounts the snapshot and sends)
  --target HOST:PORT         the target agent's API (it stops MySQL, purges, receives; its HOST is where the source sends)
  --snapshot NAME            snapshot (LV or btrfs subvolume) the source mounts (method snapshot)
  --method METHOD            snapshot (default), backup or dump
  --replicate                method backup or dump: (start MySQL and) replicate from the source until caught up
  --id ID                    seed id (default: seed-<UTC time>)
  --start-mysql              start MySQL on the target after the post-copy command
  --compression MODE         off, fast (zstd 1), strong (zstd 3) or auto on the built-in transfer or stream
                             (default: the source agent's SeedTransferCompression); backup and dump streams are not compressed
  --force                    method backup or dump: seed even with clients connected to the target's MySQL
  --linked                   the target agent creates the source half itself and hands it the key (agent-to-agent:
                             AgentFleetSecret or mutual TLS on both agents); this command then only follows both
  --timeout SECONDS          give each half this long (default: the agents' default)
  --https                    the agents serve HTTPS (trust: NODE_EXTRA_CA_CERTS)
  --token-header NAME        send tokens in this header (the agents' TokenHttpHeader) instead of Authorization: Bearer
  --source-token-file FILE   file holding the source agent's token (default: $ORCHESTRATOR_AGENT_SOURCE_TOKEN)
  --target-token-file FILE   file holding the target agent's token (default: $ORCHESTRATOR_AGENT_TARGET_TOKEN)
  --help                     print this help

With basic auth on the agents, set ORCHESTRATOR_AGENT_BASIC_AUTH=user:password (and --token-header).
Ctrl-C aborts both halves. Exit status: 0 both halves done, 1 a half failed or was aborted, 2 usage.
`;

interface SeedViewLike {
  id: string;
  role: string;
  state: string;
  status: 'active' | 'done' | 'failed' | 'aborted';
  paused?: boolean;
  progress: {
    bytesDone: number;
    bytesTotal: number | null;
    rateBytesPerSec?: number | null;
    etaSeconds?: number | null;
    wire?: WireStats;
  } | null;
  error: { code: string; message: string; hint?: string | null; step?: string | null } | null;
  history?: { state: string; error: string | null }[];
}

/** The step a finished half ended in (its final state is only "failed" or "aborted"): the last step with an error, else the last before cleanup. */
export function endedDuring(view: SeedViewLike): string | null {
  if (view.error?.step) return view.error.step;
  const steps = (view.history ?? []).filter((h) => !['cleanup', 'failed', 'aborted', 'done'].includes(h.state));
  return steps.filter((h) => h.error).at(-1)?.state ?? steps.at(-1)?.state ?? null;
}

class UsageError extends Error {}

/** One agent's seed API, with its token in a header. */
class AgentApi {
  constructor(
    readonly name: 'source' | 'target',
    readonly host: string,
    private readonly baseUrl: string,
    private readonly headers: Record<string, string>,
  ) {}

  async call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: T }> {
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}${path}`, {
        method,
        headers: { ...this.headers, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      throw new Error(`cannot reach the ${this.name} agent at ${this.baseUrl}: ${(err as Error).cause ? String((err as { cause: unknown }).cause) : (err as Error).message}`);
    }
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
    return { status: res.status, body: parsed as T };
  }

  /** The API's error body ({Message, Details.hint}) as one sentence. */
  static describe(status: number, body: unknown): string {
    const b = body as { Message?: string; Details?: { hint?: string | null } } | string;
    if (typeof b === 'string') return `HTTP ${status}: ${b.slice(0, 300)}`;
    return `HTTP ${status}: ${b?.Message ?? 'no message'}${b?.Details?.hint ? ` (what to do: ${b.Details.hint})` : ''}`;
  }
}

function hostPort(value: string | undefined, option: string): { host: string; port: number } {
  const m = value === undefined ? null : /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new UsageError(`${option} must be HOST:PORT, got ${JSON.stringify(value ?? '')}`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

/** Loopback names compare equal: localhost, 127.x.y.z and ::1 are all this host. */
function sameHost(a: string, b: string): boolean {
  const norm = (h: string) => {
    const lower = h.toLowerCase().replace(/\.$/, '');
    return lower === 'localhost' || lower === '::1' || /^127\.\d+\.\d+\.\d+$/.test(lower) ? 'loopback' : lower;
  };
  return norm(a) === norm(b);
}

function tokenOf(file: string | undefined, envName: string, side: string): string {
  if (file !== undefined) {
    try {
      return readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new UsageError(`cannot read the ${side} agent's token from ${file}: ${(err as Error).message}`);
    }
  }
  const fromEnv = process.env[envName]?.trim();
  if (!fromEnv) throw new UsageError(`no token for the ${side} agent: set ${envName} or --${side}-token-file (its TokenHintFile)`);
  return fromEnv;
}

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '?';
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n.toFixed(0) : n.toFixed(1)} ${units[i]}`;
}

function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${s % 60}s` : `${s % 60}s`;
}

/** One half as the progress line shows it: "target receiving 45% 1.2 GiB of 2.6 GiB 110.0 MiB/s ETA 12s". */
export function describeHalf(view: SeedViewLike): string {
  const parts = [`${view.role} ${view.status === 'active' ? view.state + (view.paused ? ' (paused, waits for NEXT)' : '') : view.status}`];
  const p = view.progress;
  if (p && view.status === 'done' && p.bytesDone > 0) {
    // A finished half moved what it moved: the total was an estimate (a backup skips the redo log, a dump's text outgrows its tables).
    parts.push(bytes(p.bytesDone));
  } else if (p && (p.bytesDone > 0 || p.bytesTotal)) {
    const pct = p.bytesTotal ? Math.min(100, (100 * p.bytesDone) / p.bytesTotal) : null;
    parts.push(`${pct === null ? '' : `${pct.toFixed(0)}% `}${bytes(p.bytesDone)}${p.bytesTotal ? ` of ${bytes(p.bytesTotal)}` : ''}`);
    if (view.status === 'active' && p.rateBytesPerSec) parts.push(`${bytes(p.rateBytesPerSec)}/s`);
    if (view.status === 'active' && p.etaSeconds !== null && p.etaSeconds !== undefined) parts.push(`ETA ${duration(p.etaSeconds)}`);
  }
  // The sending half of a compressed copy: how much the wire was spared.
  if (p?.wire && p.wire.wireBytes > 0) parts.push(`(${(p.wire.dataBytes / p.wire.wireBytes).toFixed(1)}x smaller on the wire, ${p.wire.compression})`);
  return parts.join(' ');
}

function bar(view: SeedViewLike | undefined, width = 20): string {
  const p = view?.progress;
  const frac = view?.status === 'done' ? 1 : p?.bytesTotal ? Math.min(1, p.bytesDone / p.bytesTotal) : 0;
  const full = Math.round(frac * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs the seed command; resolves to the exit status. */
export async function runSeedCli(argv: string[], out: NodeJS.WriteStream = process.stderr): Promise<number> {
  let opts;
  try {
    const { values } = parseArgs({
      args: argv,
      options: {
        source: { type: 'string' },
        target: { type: 'string' },
        snapshot: { type: 'string' },
        method: { type: 'string', default: 'snapshot' },
        replicate: { type: 'boolean', default: false },
        id: { type: 'string' },
        'start-mysql': { type: 'boolean', default: false },
        compression: { type: 'string' },
        force: { type: 'boolean', default: false },
        linked: { type: 'boolean', default: false },
        timeout: { type: 'string' },
        https: { type: 'boolean', default: false },
        'token-header': { type: 'string' },
        'source-token-file': { type: 'string' },
        'target-token-file': { type: 'string' },
        help: { type: 'boolean', default: false },
      },
    });
    if (values.help) {
      process.stdout.write(seedUsage);
      return 0;
    }
    const source = hostPort(values.source, '--source');
    const target = hostPort(values.target, '--target');
    if (source.port === target.port && sameHost(source.host, target.host)) {
      throw new UsageError(`--source and --target name the same agent (${values.source} and ${values.target}): a seed copies one host's data into another host; give the target agent's HOST:PORT`);
    }
    const method = values.method;
    if (method !== 'snapshot' && method !== 'backup' && method !== 'dump') throw new UsageError(`--method must be "snapshot", "backup" or "dump", got ${JSON.stringify(method)}`);
    if (method === 'snapshot' && !values.snapshot) throw new UsageError('--snapshot NAME is required (the snapshot the source mounts and sends)');
    if (method !== 'snapshot' && values.snapshot) throw new UsageError(`--snapshot does not apply to --method ${method} (it copies the running MySQL)`);
    if (values.replicate && method === 'snapshot') throw new UsageError('--replicate needs --method backup or dump');
    const compression = values.compression;
    if (compression !== undefined && !['off', 'fast', 'strong', 'auto'].includes(compression)) {
      throw new UsageError(`--compression must be "off", "fast", "strong" or "auto", got ${JSON.stringify(compression)}`);
    }
    if (values.force && method === 'snapshot') throw new UsageError('--force needs --method backup or dump (it skips their check for clients connected to the target\'s MySQL)');
    const timeout = values.timeout === undefined ? undefined : Number(values.timeout);
    if (timeout !== undefined && !(Number.isInteger(timeout) && timeout > 0)) throw new UsageError(`--timeout must be a whole number of seconds, got ${values.timeout}`);
    const id = values.id ?? `seed-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '')}`;
    const basic = process.env.ORCHESTRATOR_AGENT_BASIC_AUTH;
    const headerName = values['token-header'];
    if (basic && !headerName) throw new UsageError('with ORCHESTRATOR_AGENT_BASIC_AUTH set, pass --token-header (Authorization carries the basic auth)');
    const headersFor = (token: string): Record<string, string> => ({
      ...(headerName ? { [headerName]: token } : { Authorization: `Bearer ${token}` }),
      ...(basic ? { Authorization: `Basic ${Buffer.from(basic).toString('base64')}` } : {}),
    });
    const sourceToken = tokenOf(values['source-token-file'], 'ORCHESTRATOR_AGENT_SOURCE_TOKEN', 'source');
    const targetToken = tokenOf(values['target-token-file'], 'ORCHESTRATOR_AGENT_TARGET_TOKEN', 'target');
    // Every agent process has a token of its own: one token for both halves means one agent (or a mix-up).
    if (sourceToken === targetToken) {
      throw new UsageError('the source and target tokens are the same, so both name one agent (each agent process has its own token): check --source, --target and the token files or variables');
    }
    const scheme = values.https ? 'https' : 'http';
    const url = (hp: { host: string; port: number }) => `${scheme}://${hp.host.includes(':') ? `[${hp.host}]` : hp.host}:${hp.port}`;
    opts = {
      id,
      method: method as 'snapshot' | 'backup' | 'dump',
      replicate: values.replicate,
      compression,
      force: values.force,
      snapshot: values.snapshot ?? '',
      startMySQL: values['start-mysql'],
      linked: values.linked,
      sourcePort: source.port,
      timeout,
      source: new AgentApi('source', source.host, url(source), headersFor(sourceToken)),
      target: new AgentApi('target', target.host, url(target), headersFor(targetToken)),
    };
  } catch (err) {
    const message = err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? (err as Error).message : undefined;
    if (message === undefined) throw err;
    out.write(`orchestrator-agent seed: ${message}\n\n${seedUsage}`);
    return 2;
  }
  try {
    return await drive(opts, out);
  } catch (err) {
    out.write(`\norchestrator-agent seed: ${(err as Error).message}\n`);
    return 1;
  }
}

interface DriveOptions {
  id: string;
  method: 'snapshot' | 'backup' | 'dump';
  replicate: boolean;
  /** The sending side's compression; undefined keeps the source agent's SeedTransferCompression. */
  compression: string | undefined;
  /** Method backup or dump: skip the target's check for connected clients. */
  force: boolean;
  snapshot: string;
  startMySQL: boolean;
  /** The target agent creates the source half (POST /api/seeds with "source"). */
  linked: boolean;
  sourcePort: number;
  timeout: number | undefined;
  source: AgentApi;
  target: AgentApi;
}

async function drive(o: DriveOptions, out: NodeJS.WriteStream): Promise<number> {
  const tty = out.isTTY === true;
  const say = (line: string) => out.write(`${tty ? '\r\x1b[2K' : ''}${line}\n`);
  const what = o.method === 'snapshot' ? `snapshot ${o.snapshot}` : `${o.method === 'backup' ? 'hot backup' : 'logical dump'}${o.replicate ? ', then replicating' : ''}`;
  say(`orchestrator-agent ${version}: seeding ${o.target.host} from ${o.source.host} (${what}), seed id ${o.id}`);

  const withTimeout = o.timeout === undefined ? {} : { timeoutSeconds: o.timeout };
  const withMethod = o.method === 'snapshot' ? {} : { method: o.method };
  const withCompression = o.compression === undefined ? {} : { compression: o.compression };
  const created = await o.target.call<{ seed: SeedViewLike; transfer: { port: number; authKey?: string } | null }>('POST', '/api/seeds', {
    id: o.id,
    role: 'target',
    startMySQL: o.startMySQL,
    ...withMethod,
    ...(o.replicate ? { replicate: true } : {}),
    ...(o.force ? { force: true } : {}),
    ...withTimeout,
    ...(o.linked
      ? { source: { host: o.source.host, port: o.sourcePort }, targetHost: o.target.host, ...(o.method === 'snapshot' ? { snapshot: o.snapshot } : {}), ...withCompression }
      : {}),
  });
  if (created.status >= 300 || !created.body.transfer) {
    say(`error: the target agent did not create the seed: ${AgentApi.describe(created.status, created.body)}`);
    return 1;
  }
  const { port, authKey } = created.body.transfer;
  say(`target seed created; it receives on ${o.target.host}:${port}`);

  const abort = async (api: AgentApi, why: string) => {
    const res = await api.call('POST', `/api/seeds/${encodeURIComponent(o.id)}/events`, { type: 'ABORT', reason: `orchestrator-agent seed: ${why}` }).catch((err: Error) => ({ status: 0, body: err.message }));
    say(res.status === 200 ? `aborted the ${api.name} seed: ${why}` : `could not abort the ${api.name} seed (${AgentApi.describe(res.status, res.body)}): abort it by hand`);
  };

  const sent = o.linked
    ? { status: 201, body: null }
    : await o.source.call('POST', '/api/seeds', {
        id: o.id,
        role: 'source',
        targetHost: o.target.host,
        targetPort: port,
        ...(authKey ? { authKey } : {}),
        ...(o.method === 'snapshot' ? { snapshot: o.snapshot } : {}),
        ...withMethod,
        ...withCompression,
        ...withTimeout,
      });
  if (sent.status >= 300) {
    say(`error: the source agent refused the seed: ${AgentApi.describe(sent.status, sent.body)}`);
    await abort(o.target, 'its source could not be created');
    await finalReport(o, say);
    return 1;
  }
  say(`source seed created${o.linked ? ' by the target agent' : ''}; following both halves (Ctrl-C aborts both)`);

  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
  };
  process.once('SIGINT', onSigint);
  try {
    let lastLine = '';
    let lastPrinted = 0;
    const aborted = new Set<string>();
    for (;;) {
      const [s, t] = await Promise.all([o.source, o.target].map(async (api) => {
        const res = await api.call<SeedViewLike>('GET', `/api/seeds/${encodeURIComponent(o.id)}`).catch(() => undefined);
        return res && res.status === 200 ? res.body : undefined;
      }));
      const line = `${bar(t)} ${t ? describeHalf(t) : 'target ?'} | ${s ? describeHalf(s) : 'source ?'}`;
      if (tty) out.write(`\r\x1b[2K${line}`);
      else if (line.replace(/\d+(\.\d+)? \w+\/s|ETA \S+/g, '') !== lastLine.replace(/\d+(\.\d+)? \w+\/s|ETA \S+/g, '') || Date.now() - lastPrinted > 5000) {
        say(line);
        lastPrinted = Date.now();
      }
      lastLine = line;
      if (interrupted) {
        for (const [api, v] of [[o.target, t], [o.source, s]] as const) if (v?.status === 'active') await abort(api, 'interrupted (Ctrl-C)');
        interrupted = false;
      }
      // Linked halves: one ended badly while the other still runs -> abort the other with the reason.
      for (const [ended, other, otherApi] of [[s, t, o.target], [t, s, o.source]] as const) {
        if (ended && (ended.status === 'failed' || ended.status === 'aborted') && other?.status === 'active' && !aborted.has(otherApi.name)) {
          aborted.add(otherApi.name);
          await abort(otherApi, `the ${ended.role} seed ${ended.status}${ended.error ? `: ${ended.error.message}` : ''}`);
        }
      }
      if (s && t && s.status !== 'active' && t.status !== 'active') break;
      await sleep(500);
    }
  } finally {
    process.removeListener('SIGINT', onSigint);
    if (tty) out.write('\n');
  }
  return finalReport(o, say);
}

/** Prints how each half ended, with the error and what to do; 0 only when both are done. */
async function finalReport(o: DriveOptions, say: (line: string) => void): Promise<number> {
  let ok = true;
  for (const api of [o.source, o.target]) {
    const res = await api.call<SeedViewLike>('GET', `/api/seeds/${encodeURIComponent(o.id)}`).catch(() => undefined);
    const view = res?.status === 200 ? res.body : undefined;
    if (!view) {
      ok = false;
      say(`${api.name}: no seed ${o.id} on ${api.host}`);
      continue;
    }
    if (view.status !== 'done') ok = false;
    const during = view.status === 'done' ? null : endedDuring(view);
    say(`${api.name} (${api.host}): ${view.status}${during ? ` during ${during}` : ''}${view.error ? `: ${view.error.message}` : ''}`);
    if (view.error?.hint) say(`  what to do: ${view.error.hint}`);
  }
  if (!ok) say(`the seed did not complete: the target's web view (/ui) says what state its host is in`);
  else say('seed done');
  return ok ? 0 : 1;
}
