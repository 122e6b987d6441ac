// npm run bench: the built-in transfer (checksums on, every file fsynced) against `tar | socat` on the same
// 2 GiB datadir-like tree over 127.0.0.1, each followed by sync, in one run; prints both rates and the ratio.
// Rounds alternate baseline and ours so a busy machine hurts both alike. BENCH_ROUNDS (default 3),
// BENCH_DATADIR (default /tmp/oa-bench-datadir, reused when complete), BENCH_GIB (default 2),
// BENCH_CHECKSUM=sha256 to measure with sha256 instead of the default xxh3-64; BENCH_PEER_CLI runs another
// build's peer-cli.js as "built-in" (to compare two versions on the same machine and load). --hog (or --hog=N,
// BENCH_HOG=N) keeps one CPU-spinning process per core (or N) running beside both ends (bench/hog.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { existsSync, mkdirSync, openSync, rmSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { loadavg } from 'node:os';
import { newAuthKey } from '../src/transfer/index.js';
import { hogCount, startHogs } from './hog.js';

const MiB = 1024 * 1024;
const gib = Number(process.env.BENCH_GIB ?? 2);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const dataDir = process.env.BENCH_DATADIR ?? '/tmp/oa-bench-datadir';
/** Per run, so two benches at once (other worktrees) do not write into each other's destinations. */
const workDir = process.env.BENCH_WORKDIR ?? `/tmp/oa-bench-work-${process.pid}`;
const checksum = process.env.BENCH_CHECKSUM === 'sha256' ? 'sha256' : 'xxh3-64';
const peerCli = process.env.BENCH_PEER_CLI ?? resolve(new URL('.', import.meta.url).pathname, '../src/transfer/peer-cli.js');

/** 8 big files (ibdata-like) holding most of the bytes, plus 400 small .frm/.ibd-like files in 20 schemas. */
function makeDatadir(): number {
  const ready = `${dataDir}.ready-${gib}`;
  const bigFiles = 8;
  const small = 400;
  const smallBytes = 64 * 1024;
  const bigBytes = Math.floor((gib * 1024 * MiB - small * smallBytes) / bigFiles);
  const total = bigFiles * bigBytes + small * smallBytes;
  if (existsSync(ready)) return total;
  rmSync(dataDir, { recursive: true, force: true });
  mkdirSync(dataDir, { recursive: true });
  process.stdout.write(`creating ${gib} GiB datadir in ${dataDir} ...\n`);
  const buf = Buffer.allocUnsafe(4 * MiB);
  for (let i = 0; i < bigFiles; i++) {
    const fd = openSync(join(dataDir, `ibdata${i}`), 'w');
    for (let left = bigBytes; left > 0; left -= buf.length) writeSync(fd, randomFillSync(buf), 0, Math.min(buf.length, left));
    closeSync(fd);
  }
  for (let s = 0; s < 20; s++) {
    mkdirSync(join(dataDir, `schema${s}`));
    for (let t = 0; t < small / 20; t++) writeFileSync(join(dataDir, `schema${s}`, `t${t}.ibd`), randomFillSync(Buffer.allocUnsafe(smallBytes)));
  }
  writeFileSync(ready, '');
  return total;
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((res, rej) => {
    const c = spawn(cmd, args, { stdio: 'inherit' });
    c.once('error', rej);
    c.once('exit', (code) => (code === 0 ? res() : rej(new Error(`${cmd} ${args.join(' ')} exited ${code}`))));
  });
}

function exited(c: ChildProcess, what: string): Promise<void> {
  return new Promise((res, rej) => {
    c.once('error', rej);
    c.once('exit', (code, sig) => (code === 0 ? res() : rej(new Error(`${what} exited ${code ?? sig}`))));
  });
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const addr = srv.address();
  await new Promise<void>((r) => srv.close(() => r()));
  return typeof addr === 'object' && addr ? addr.port : 0;
}

function freshDest(name: string): string {
  const d = join(workDir, name);
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d, { recursive: true });
  return d;
}

interface Timing {
  /** CPU seconds (user + system) of our sender and receiver; undefined for the baseline. */
  cpuSeconds?: number;
  seconds: number;
  secondsWithSync: number;
}

/** tar -cf - | socat -b131072 -u STDIN TCP:…  →  socat -u TCP-LISTEN:… STDOUT | tar -xf - */
async function baseline(): Promise<Timing> {
  const dest = freshDest('tar');
  await run('sync', []);
  const port = await freePort();
  const listen = spawn('socat', ['-b131072', '-u', `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr`, 'STDOUT'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const untar = spawn('tar', ['-xf', '-', '-C', dest], { stdio: [listen.stdout!, 'ignore', 'inherit'] });
  const t0 = performance.now();
  const tar = spawn('tar', ['-cf', '-', '-C', dataDir, '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const connect = spawn('socat', ['-b131072', '-u', 'STDIN', `TCP:127.0.0.1:${port},retry=100,interval=0.02`], { stdio: [tar.stdout!, 'ignore', 'inherit'] });
  await Promise.all([exited(tar, 'tar -c'), exited(connect, 'socat (send)'), exited(listen, 'socat (listen)'), exited(untar, 'tar -x')]);
  const seconds = (performance.now() - t0) / 1000;
  await run('sync', []);
  return { seconds, secondsWithSync: (performance.now() - t0) / 1000 };
}

/** One end as its own process; a sender waits for start() once it printed {"ready"} (an older build starts at once). */
function peer(args: string[], key: string): { exit: Promise<void>; line: (k: string) => Promise<Record<string, unknown>>; first: () => Promise<Record<string, unknown>>; start: () => void } {
  const child = spawn(process.execPath, [peerCli, ...args], {
    env: {
      ...process.env,
      ORCHESTRATOR_AGENT_TRANSFER_KEY: key,
      ORCHESTRATOR_AGENT_TRANSFER_PROGRESS_MS: '1000',
      ORCHESTRATOR_AGENT_LOG_LEVEL: 'warn',
      ORCHESTRATOR_AGENT_TRANSFER_CHECKSUM: checksum,
      ORCHESTRATOR_AGENT_TRANSFER_START: 'stdin',
    },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
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
  const exit = exited(child, `transfer ${args[0]}`);
  exit.catch(() => undefined);
  child.once('exit', () => waiters.splice(0).forEach((w) => w()));
  const line = async (k: string) => {
    for (;;) {
      const hit = lines.find((l) => k in l || 'error' in l);
      if (hit && 'error' in hit) throw new Error(`transfer peer failed: ${String(hit.error)}`);
      if (hit) return hit;
      if (child.exitCode !== null) throw new Error(`transfer peer exited without ${k}`);
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  const first = async () => {
    while (lines.length === 0) {
      if (child.exitCode !== null) throw new Error(`transfer peer exited without a word`);
      await new Promise<void>((r) => waiters.push(r));
    }
    return lines[0]!;
  };
  return { exit, line, first, start: () => child.stdin!.end('go\n') };
}

/** Our receiver and sender, each in its own process as on two agents. */
async function ours(): Promise<Timing> {
  const dest = freshDest('oa');
  const stateDir = freshDest('oa-state');
  await run('sync', []);
  const key = newAuthKey();
  const receiver = peer(['receive', dest, '0', stateDir], key);
  const { listening } = await receiver.line('listening');
  // Both ends loaded before the clock starts, as two running agents are (an older build's sender: from its spawn).
  const spawned = performance.now();
  const sender = peer(['send', dataDir, '127.0.0.1', String(listening)], key);
  const t0 = 'ready' in (await sender.first()) ? performance.now() : spawned;
  sender.start();
  const results = await Promise.all([receiver.line('result'), sender.line('result')]);
  const seconds = (performance.now() - t0) / 1000;
  await run('sync', []);
  const secondsWithSync = (performance.now() - t0) / 1000;
  await Promise.all([receiver.exit, sender.exit]);
  const cpuSeconds = results.reduce((sum, r) => sum + (typeof r.cpuSeconds === 'number' ? r.cpuSeconds : NaN), 0);
  return { seconds, secondsWithSync, cpuSeconds };
}

const rate = (bytes: number, s: number) => bytes / MiB / s;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const bytes = makeDatadir();
  mkdirSync(workDir, { recursive: true });
  const base: number[] = [];
  const mine: number[] = [];
  const hogs = hogCount();
  process.stdout.write(
    `transfer of ${(bytes / MiB / 1024).toFixed(2)} GiB (${dataDir}) over 127.0.0.1, ${rounds} alternating rounds, rates include the final sync` +
      `${hogs > 0 ? `; ${hogs} CPU hog process(es) running beside both ends` : ''}\n`,
  );
  const hog = startHogs(hogs);
  try {
    for (let r = 1; r <= rounds; r++) {
      const b = await baseline();
      const o = await ours();
      base.push(rate(bytes, b.secondsWithSync));
      mine.push(rate(bytes, o.secondsWithSync));
      process.stdout.write(
        `round ${r}: tar|socat ${rate(bytes, b.seconds).toFixed(0)} MiB/s (${base[r - 1]!.toFixed(0)} with sync)   ` +
          `built-in (${checksum}, fsync) ${rate(bytes, o.seconds).toFixed(0)} MiB/s (${mine[r - 1]!.toFixed(0)} with sync), ` +
          `${o.cpuSeconds!.toFixed(1)} CPU s (both ends), load ${loadavg()[0]!.toFixed(1)}\n`,
      );
    }
  } finally {
    hog.stop();
  }
  rmSync(workDir, { recursive: true, force: true });
  const mb = median(base);
  const mo = median(mine);
  process.stdout.write(`tar|socat: ${mb.toFixed(0)} MiB/s median, ${Math.max(...base).toFixed(0)} best\n`);
  process.stdout.write(`built-in:  ${mo.toFixed(0)} MiB/s median, ${Math.max(...mine).toFixed(0)} best\n`);
  process.stdout.write(`ratio built-in / tar|socat: ${(mo / mb).toFixed(2)}x (median), ${(Math.max(...mine) / Math.max(...base)).toFixed(2)}x (best)\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
