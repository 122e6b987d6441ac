// npm run bench -- link: a real MariaDB datadir over a rate-limited link between two network namespaces, in
// alternating rounds, each run followed by sync:
//   tar | socat → socat | tar                                    (the link's speed)
//   tar | zstd -1 -T2 | socat → socat | zstd -d | tar            (what a DBA writes for a slow link)
//   built-in transfer: compression off, fast (zstd 1), strong (zstd 3), auto, and fast and strong with a
//   receiver offering only lz4 and brotli (an agent from before zstd): lz4, brotli; off and fast with the receiver
//   writing through the page cache instead of O_DIRECT: off-paged, fast-paged
//   a backup seed's stream (bench/stream-peer.ts: tar -c | stream | tar -x), compression off and fast:
//   stream-off, stream-fast
// and prints times, rates, bytes on the wire and the ratios against both pipelines.
//
// The link: namespaces oa-link-a-<pid> (sender) and oa-link-b-<pid> (receiver) joined by a veth pair, each end
// limited with `tc qdisc ... tbf rate 1gbit` (netem does not exist in this kernel). Every address stays in
// the loopback range (127.77.0.1 ↔ 127.77.0.2 with route_localnet in the namespaces: no other network is
// touched). The namespaces are deleted on exit, on a failed run and on SIGINT/SIGTERM; a run killed with
// SIGKILL leaves them for `ip netns del` (their names carry the pid).
// The datadir is bench/datadir.ts's (made once and kept: 8 schemas, 320 tables of generated rows with
// numbers, text and secondary indexes, ~3x with zstd -1). Needs root, iproute2, socat, zstd, mariadb.
// BENCH_LINK_MIB (default 1024, which makes 1042 MiB; 2048 makes 4.5 GiB, as the secondary indexes outgrow the
// generator's buffer pool), BENCH_LINK_RATE (default 1gbit), BENCH_ROUNDS
// (default 3), BENCH_LINK_RUNS (comma-separated subset of: tar,zstd,off,fast,strong,auto,lz4,brotli,off-paged,fast-paged,
// stream-off,stream-fast).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, lstatSync, rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { newAuthKey } from '../src/transfer/index.js';

const MiB = 1024 * 1024;
const here = new URL('.', import.meta.url).pathname;
const targetMiB = Number(process.env.BENCH_LINK_MIB ?? 1024);
const rate = process.env.BENCH_LINK_RATE ?? '1gbit';
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const baseDir = process.env.BENCH_MARIADB_DIR ?? '/tmp/oa-bench-mariadb';
const dataDir = join(baseDir, `datadir-${targetMiB}`);
const workDir = `/tmp/oa-bench-link-${process.pid}`;
const peerCli = resolve(here, '../src/transfer/peer-cli.js');
const streamPeer = resolve(here, 'stream-peer.js');
const nsA = `oa-link-a-${process.pid}`;
const nsB = `oa-link-b-${process.pid}`;
const addrA = '127.77.0.1';
const addrB = '127.77.0.2';
const allRuns = ['tar', 'zstd', 'off', 'fast', 'strong', 'auto', 'lz4', 'brotli', 'off-paged', 'fast-paged', 'stream-off', 'stream-fast'] as const;
type Run = (typeof allRuns)[number];
const runs: Run[] = process.env.BENCH_LINK_RUNS ? (process.env.BENCH_LINK_RUNS.split(',') as Run[]) : [...allRuns];
const labels: Record<Run, string> = {
  tar: 'tar | socat',
  zstd: 'tar | zstd -1 -T2 | socat',
  off: 'built-in, compression off',
  fast: 'built-in, fast (zstd 1)',
  strong: 'built-in, strong (zstd 3)',
  auto: 'built-in, auto',
  lz4: 'built-in, fast to a receiver without zstd (lz4)',
  brotli: 'built-in, strong to a receiver without zstd (brotli 1)',
  'off-paged': 'built-in, compression off, receiver writing through the page cache',
  'fast-paged': 'built-in, fast, receiver writing through the page cache',
  'stream-off': 'stream (as a backup seed), compression off',
  'stream-fast': 'stream (as a backup seed), fast (zstd 1)',
};
/** The built-in runs: the sender's mode, and the codecs the receiver offers (all it decodes when absent). */
const builtInRuns: Record<Exclude<Run, 'tar' | 'zstd' | 'stream-off' | 'stream-fast'>, { mode: string; codecs?: string; paged?: true }> = {
  off: { mode: 'off' },
  fast: { mode: 'fast' },
  strong: { mode: 'strong' },
  auto: { mode: 'auto' },
  lz4: { mode: 'fast', codecs: 'lz4,brotli' },
  brotli: { mode: 'strong', codecs: 'brotli' },
  // The receiver as it wrote before O_DIRECT (file-writer.ts): the same data through the page cache.
  'off-paged': { mode: 'off', paged: true },
  'fast-paged': { mode: 'fast', paged: true },
};
const children = new Set<ChildProcess>();

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Two namespaces, a veth pair between them, loopback-range addresses, tbf at `rate` on both ends. */
function makeLink(): void {
  const [va, vb] = [vethA, vethB];
  ip(['netns', 'add', nsA]);
  ip(['netns', 'add', nsB]);
  ip(['link', 'add', va, 'netns', nsA, 'type', 'veth', 'peer', 'name', vb, 'netns', nsB]);
  for (const [ns, dev, me, peer] of [
    [nsA, va, addrA, addrB],
    [nsB, vb, addrB, addrA],
  ] as const) {
    ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    ip(['-n', ns, 'link', 'set', dev, 'up']);
    // 127/8 is routed to lo; keep only 127.0.0.1 there so the peer's 127.77.0.x goes over the veth.
    execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.conf.all.route_localnet=1', `net.ipv4.conf.${dev}.route_localnet=1`]);
    ip(['-n', ns, 'route', 'del', 'table', 'local', '127.0.0.0/8', 'dev', 'lo']);
    ip(['-n', ns, 'addr', 'add', me, 'peer', peer, 'dev', dev]);
    execFileSync('tc', ['-n', ns, 'qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', rate, 'burst', '512kb', 'latency', '50ms']);
  }
}

let cleaned = false;
function cleanup(): void {
  if (cleaned) return;
  cleaned = true;
  for (const c of children) {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  for (const ns of [nsA, nsB]) {
    try {
      ip(['netns', 'del', ns]);
    } catch {
      /* not made */
    }
  }
  rmSync(workDir, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    cleanup();
    process.exit(1);
  });
}

/** A child in its own process group (killed as a group on cleanup), in namespace ns when given. */
function start(ns: string | undefined, cmd: string, args: string[], opts: { stdin?: import('node:stream').Readable; stdout?: 'pipe' | 'ignore'; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  const [file, argv] = ns ? ['ip', ['netns', 'exec', ns, cmd, ...args]] : [cmd, args];
  const c = spawn(file, argv, {
    stdio: [opts.stdin ?? 'ignore', opts.stdout ?? 'ignore', 'inherit'],
    detached: true,
    env: opts.env ?? process.env,
  });
  children.add(c);
  c.once('exit', () => children.delete(c));
  return c;
}

function exited(c: ChildProcess, what: string): Promise<void> {
  return new Promise((res, rej) => {
    if (c.exitCode !== null) return c.exitCode === 0 ? res() : rej(new Error(`${what} exited ${c.exitCode}`));
    c.once('error', rej);
    c.once('exit', (code, sig) => (code === 0 ? res() : rej(new Error(`${what} exited ${code ?? sig}`))));
  });
}

function freshDest(name: string): string {
  const d = join(workDir, name);
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d, { recursive: true });
  return d;
}

function treeSize(dir: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  for (const name of readdirSync(dir)) {
    const st = lstatSync(join(dir, name));
    if (st.isDirectory()) {
      const sub = treeSize(join(dir, name));
      bytes += sub.bytes;
      files += sub.files;
    } else {
      bytes += st.size;
      files++;
    }
  }
  return { bytes, files };
}

const sync = () => execFileSync('sync');

/**
 * CPU seconds the whole machine has spent busy (user, nice, system, irq, softirq; not idle or iowait), from
 * /proc/stat: counts the pipelines' processes and the kernel's network work alike, which a process's own
 * rusage misses.
 */
function machineCpuSeconds(): number {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq] = fields;
  return (user! + nice! + system! + irq! + softirq!) / 100; // USER_HZ
}

interface Timing {
  seconds: number;
  cpuSeconds?: number;
}

const [vethA, vethB] = [`oal${process.pid}a`.slice(-15), `oal${process.pid}b`.slice(-15)];

/** Bytes the sender's end of the link has sent so far (TCP/IP headers included), for every kind of run alike. */
function linkBytes(): number {
  const out = execFileSync('ip', ['-n', nsA, '-s', '-j', 'link', 'show', 'dev', vethA], { encoding: 'utf8' });
  return Number((JSON.parse(out) as Array<{ stats64: { tx: { bytes: number } } }>)[0]!.stats64.tx.bytes);
}

/** tar [| zstd -1 -T2] | socat (namespace A) → socat (namespace B) [| zstd -d] | tar -x, then sync. */
async function pipeline(zstd: boolean): Promise<Timing> {
  const dest = freshDest(zstd ? 'zstd' : 'tar');
  sync();
  const port = '4444';
  const listen = start(nsB, 'socat', ['-b131072', '-u', `TCP-LISTEN:${port},bind=${addrB},reuseaddr`, 'STDOUT'], { stdout: 'pipe' });
  const unzstd = zstd ? start(undefined, 'zstd', ['-q', '-d', '-c'], { stdin: listen.stdout!, stdout: 'pipe' }) : undefined;
  const untar = start(undefined, 'tar', ['-xf', '-', '-C', dest], { stdin: (unzstd ?? listen).stdout! });
  const t0 = performance.now();
  const tar = start(undefined, 'tar', ['-cf', '-', '-C', dataDir, '.'], { stdout: 'pipe' });
  const zip = zstd ? start(undefined, 'zstd', ['-q', '-1', '-T2', '-c'], { stdin: tar.stdout!, stdout: 'pipe' }) : undefined;
  const send = start(nsA, 'socat', ['-b131072', '-u', 'STDIN', `TCP:${addrB}:${port},retry=100,interval=0.02`], { stdin: (zip ?? tar).stdout! });
  const all = [tar, ...(zip ? [zip] : []), send, listen, ...(unzstd ? [unzstd] : []), untar];
  await Promise.all(all.map((c, i) => exited(c, `${zstd ? 'zstd' : 'tar'} pipeline process ${i}`)));
  sync();
  return { seconds: (performance.now() - t0) / 1000 };
}

function peer(ns: string, args: string[], env: Record<string, string>): { exit: Promise<void>; line: (k: string) => Promise<Record<string, unknown>> } {
  const child = start(ns, process.execPath, [peerCli, ...args], {
    stdout: 'pipe',
    env: { ...process.env, ORCHESTRATOR_AGENT_TRANSFER_PROGRESS_MS: '1000', ORCHESTRATOR_AGENT_LOG_LEVEL: 'warn', ...env },
  });
  return lines(child, `transfer ${args[0]}`);
}

/** The JSON lines a bench child prints: line(k) waits for the first with key k (or fails on one with "error"). */
function lines(child: ChildProcess, what: string): { exit: Promise<void>; line: (k: string) => Promise<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  let pending = '';
  const waiters: Array<() => void> = [];
  child.stdout!.on('data', (d: Buffer) => {
    pending += d;
    let i;
    while ((i = pending.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(pending.slice(0, i)) as Record<string, unknown>);
      pending = pending.slice(i + 1);
    }
    waiters.splice(0).forEach((w) => w());
  });
  const exit = exited(child, what);
  exit.catch(() => undefined);
  child.once('exit', () => waiters.splice(0).forEach((w) => w()));
  const line = async (k: string) => {
    for (;;) {
      const hit = lines.find((l) => k in l || 'error' in l);
      if (hit && 'error' in hit) throw new Error(`${what} failed: ${JSON.stringify(hit.error)}`);
      if (hit) return hit;
      if (child.exitCode !== null) throw new Error(`${what} exited without ${k}`);
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  return { exit, line };
}

/** Our receiver in namespace B and sender in namespace A, then sync. */
async function builtIn(run: keyof typeof builtInRuns): Promise<Timing> {
  const { mode, codecs, paged } = builtInRuns[run];
  const dest = freshDest(`oa-${run}`);
  const stateDir = freshDest(`oa-${run}-state`);
  sync();
  const key = newAuthKey();
  const receiver = peer(nsB, ['receive', dest, '0', stateDir], { ORCHESTRATOR_AGENT_TRANSFER_KEY: key, ORCHESTRATOR_AGENT_TRANSFER_BIND: addrB, ...(codecs ? { ORCHESTRATOR_AGENT_TRANSFER_CODECS: codecs } : {}), ...(paged ? { ORCHESTRATOR_AGENT_TRANSFER_DIRECT_WRITES: 'off' } : {}) });
  const { listening } = await receiver.line('listening');
  const t0 = performance.now();
  const sender = peer(nsA, ['send', dataDir, addrB, String(listening)], { ORCHESTRATOR_AGENT_TRANSFER_KEY: key, ORCHESTRATOR_AGENT_TRANSFER_COMPRESSION: mode });
  const [r, s] = await Promise.all([receiver.line('result'), sender.line('result')]);
  await Promise.all([receiver.exit, sender.exit]);
  sync();
  const seconds = (performance.now() - t0) / 1000;
  return { seconds, cpuSeconds: Number(r.cpuSeconds) + Number(s.cpuSeconds) };
}

/** tar -c | our stream sender (namespace A) → our stream receiver (namespace B) | tar -x, then sync: a backup seed's path. */
async function streamed(compression: 'off' | 'fast'): Promise<Timing> {
  const dest = freshDest(`stream-${compression}`);
  sync();
  const key = newAuthKey();
  const child = (ns: string, args: string[], env: Record<string, string>) =>
    start(ns, process.execPath, [streamPeer, ...args], { stdout: 'pipe', env: { ...process.env, ORCHESTRATOR_AGENT_LOG_LEVEL: 'warn', ORCHESTRATOR_AGENT_TRANSFER_KEY: key, ...env } });
  const receiver = lines(child(nsB, ['receive', addrB, '4445', dest], {}), 'stream receiver');
  await receiver.line('listening');
  const t0 = performance.now();
  const sender = lines(child(nsA, ['send', addrB, '4445', dataDir], { ORCHESTRATOR_AGENT_TRANSFER_COMPRESSION: compression }), 'stream sender');
  const [r, s] = await Promise.all([receiver.line('result'), sender.line('result')]);
  await Promise.all([receiver.exit, sender.exit]);
  sync();
  return { seconds: (performance.now() - t0) / 1000, cpuSeconds: Number(r.cpuSeconds) + Number(s.cpuSeconds) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the link bench makes network namespaces: run it as root');
  for (const r of runs) if (!allRuns.includes(r)) throw new Error(`BENCH_LINK_RUNS: unknown run ${r}; choose from ${allRuns.join(',')}`);
  // The datadir: bench/datadir.ts makes it once and keeps it.
  await exited(
    spawn(process.execPath, [resolve(here, 'datadir.js')], { stdio: 'inherit', env: { ...process.env, BENCH_MAKE_ONLY: '1', BENCH_MARIADB_MIB: String(targetMiB), BENCH_MARIADB_DIR: baseDir } }),
    'making the datadir',
  );
  const { bytes, files } = treeSize(dataDir);
  mkdirSync(workDir, { recursive: true });
  makeLink();
  process.stdout.write(
    `link bench: ${(bytes / MiB).toFixed(0)} MiB in ${files} files (${dataDir}), veth between two namespaces at tbf ${rate}, ${new Date().toISOString()}, ` +
      `${cpus().length}x ${cpus()[0]?.model ?? '?'}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}; ${rounds} alternating rounds, times include the final sync\n`,
  );
  const times = new Map<Run, number[]>(runs.map((r) => [r, []]));
  const wire = new Map<Run, number>();
  const cpu = new Map<Run, number[]>(runs.map((r) => [r, []]));
  const machineCpu = new Map<Run, number[]>(runs.map((r) => [r, []]));
  for (let round = 1; round <= rounds; round++) {
    // Alternate the order too, so no run always follows the same one.
    const order = round % 2 === 1 ? runs : [...runs].reverse();
    const parts: string[] = [];
    for (const run of order) {
      const before = linkBytes();
      const cpuBefore = machineCpuSeconds();
      const t = run === 'tar' || run === 'zstd' ? await pipeline(run === 'zstd') : run === 'stream-off' || run === 'stream-fast' ? await streamed(run === 'stream-off' ? 'off' : 'fast') : await builtIn(run);
      times.get(run)!.push(t.seconds);
      wire.set(run, linkBytes() - before);
      machineCpu.get(run)!.push(machineCpuSeconds() - cpuBefore);
      if (t.cpuSeconds !== undefined) cpu.get(run)!.push(t.cpuSeconds);
      parts.push(`${run} ${t.seconds.toFixed(1)} s`);
    }
    process.stdout.write(`round ${round} (load ${loadavg()[0]!.toFixed(1)}): ${parts.join(', ')}\n`);
  }
  const m = (r: Run) => median(times.get(r)!);
  process.stdout.write(`\n| run | median time (all rounds) | MiB/s | bytes over the link / datadir (last round) | CPU s both ends (ours) | CPU s whole machine |\n|---|---|---|---|---|---|\n`);
  for (const r of runs) {
    const w = wire.get(r);
    const c = cpu.get(r)!;
    process.stdout.write(
      `| ${labels[r].replaceAll('|', '\\|')} | ${m(r).toFixed(1)} s (${times.get(r)!.map((t) => t.toFixed(1)).join(', ')}) | ${(bytes / MiB / m(r)).toFixed(0)} | ` +
        `${w === undefined ? '-' : `${(w / bytes).toFixed(2)} (${(bytes / w).toFixed(2)}x smaller)`} | ${c.length ? median(c).toFixed(1) : '-'} | ${median(machineCpu.get(r)!).toFixed(1)} |\n`,
    );
  }
  process.stdout.write('\n');
  for (const r of runs.filter((x) => x !== 'tar' && x !== 'zstd')) {
    // Per round too: the runs of one round share the machine's load of that moment.
    const vs = (base: Run) =>
      runs.includes(base) ? `${(m(base) / m(r)).toFixed(2)}x ${labels[base]} (${median(times.get(base)!.map((b, i) => b / times.get(r)![i]!)).toFixed(2)}x median of rounds)` : '';
    process.stdout.write(`${labels[r]}: ${[vs('tar'), vs('zstd')].filter(Boolean).join(', ')}\n`);
  }
  process.stdout.write(`load average now ${loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
}

main()
  .then(() => {
    cleanup();
    process.exit(0);
  })
  .catch((err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
    cleanup();
    process.exit(1);
  });
