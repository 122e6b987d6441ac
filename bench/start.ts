// npm run bench -- start: how fast the daemon answers after it is started and how much memory it holds.
// - Start to first answer: the bench spawns `node FLAGS dist/src/main.js --config FILE` and, the same way, a bare
//   node:http server (bench/bare-server.ts), then sends GET /api/hostname every 2 ms until one is answered.
//   Rounds alternate the two; medians and their ratio are printed.
// - Idle RSS: an agent that answered its first request and then sat idle for BENCH_IDLE_SECONDS (30 by
//   default: V8 gives back its start-up garbage some 20 s after allocation stops; the RSS 1 s after the
//   first answer is printed too).
// - Peak RSS: VmHWM of that agent after 100 keep-alive connections (bench/load.ts, a child process) hammered
//   each route of BENCH_LOAD_ROUTES for BENCH_LOAD_SECONDS.
// The agent registers with a fake orchestrator (test/support) as in production, with a state dir of its own.
// BENCH_START_ROUNDS (default 7), BENCH_IDLE_SECONDS (30), BENCH_LOAD_SECONDS (5), BENCH_CONNECTIONS (100);
// BENCH_AGENT_MAIN=/other/tree/dist/src/main.js measures another build (before/after a change);
// BENCH_NODE_FLAGS: node flags both servers start with; by default those of the systemd unit, npm start and
// bin/orchestrator-agent (--max-semi-space-size=1); BENCH_NODE_FLAGS= (empty) starts plain node. Both also get
// the unit's MALLOC_ARENA_MAX=2 (unless BENCH_NODE_FLAGS or MALLOC_ARENA_MAX is set).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from '../test/support/mariadb.js';
import { FakeOrchestrator } from '../test/support/fake-orchestrator.js';

const here = new URL('.', import.meta.url).pathname;
const mainJs = process.env.BENCH_AGENT_MAIN ?? resolve(here, '../src/main.js');
const bareJs = resolve(here, 'bare-server.js');
const loadJs = resolve(here, 'load.js');
const rounds = Number(process.env.BENCH_START_ROUNDS ?? 7);
const idleSeconds = Number(process.env.BENCH_IDLE_SECONDS ?? 30);
const loadSeconds = Number(process.env.BENCH_LOAD_SECONDS ?? 5);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 100);
const nodeFlags = (process.env.BENCH_NODE_FLAGS ?? '--max-semi-space-size=1').split(/\s+/).filter(Boolean);
const shippedEnv: Record<string, string> = process.env.BENCH_NODE_FLAGS === undefined ? { MALLOC_ARENA_MAX: '2' } : {};
const MiB = 1024 * 1024;

interface Server {
  child: ChildProcess;
  port: number;
  stop(): Promise<void>;
  stderr(): string;
}

/** Both servers are spawned this one way: node SCRIPT ARGS, stdout ignored, stderr kept for errors. */
function spawnServer(script: string, args: string[], port: number): Server {
  const child = spawn(process.execPath, [...nodeFlags, script, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...shippedEnv, ...process.env } });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    child,
    port,
    stderr: () => err,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

function get(port: number, path: string): Promise<number> {
  return new Promise((res, rej) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (r) => {
      r.resume();
      r.once('end', () => res(r.statusCode ?? 0));
    });
    req.once('error', rej);
    req.end();
  });
}

/** Milliseconds from spawn until GET path is answered 200. */
async function firstAnswer(server: Server, t0: number, path: string): Promise<number> {
  for (;;) {
    if (server.child.exitCode !== null) throw new Error(`server exited before answering:\n${server.stderr()}`);
    try {
      const status = await get(server.port, path);
      if (status === 200) return performance.now() - t0;
      throw new Error(`GET ${path} answered ${status}`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ECONNREFUSED') throw err;
    }
    if (performance.now() - t0 > 20_000) throw new Error(`no answer within 20 s:\n${server.stderr()}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** CPU time (user + system) the process has used, in ms: on a busy machine it says what start costs. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime, stime in USER_HZ (100)
}

function procStatus(pid: number, key: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no ${key} in /proc/${pid}/status`);
  return (Number(m[1]) * 1024) / MiB;
}

function load(url: string): Promise<{ requests: number; non2xx: number; errors: number; lastError: string; rate: number }> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [loadJs, url, String(connections), String(loadSeconds)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', rej);
    child.once('exit', (code) => (code === 0 ? res(JSON.parse(out)) : rej(new Error(`load generator exited ${code}`))));
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'oa-bench-start-'));
  const orchestrator = await new FakeOrchestrator().start();
  const agentConfig = (port: number) => {
    const file = join(dir, `agent-${port}.conf.json`);
    writeFileSync(
      file,
      JSON.stringify({
        ...orchestrator.agentConfig(),
        HTTPPort: port,
        HTTPBindAddress: '127.0.0.1',
        StateDir: join(dir, 'state'),
        TokenHintFile: join(dir, 'token'),
        MySQLPortCommand: 'echo 3306',
        MySQLServiceStatusCommand: 'true',
      }),
    );
    return file;
  };
  // Each returns a function that spawns the server, so the clock starts right before the spawn.
  const prepareAgent = async () => {
    const port = await freePort();
    const file = agentConfig(port);
    return () => spawnServer(mainJs, ['--config', file], port);
  };
  const prepareBare = async () => {
    const port = await freePort();
    return () => spawnServer(bareJs, [String(port)], port);
  };
  const path = '/api/hostname';
  const load0 = loadavg()[0]!;
  process.stdout.write(
    `start and memory: ${new Date().toISOString()}, ${cpus().length}x ${cpus()[0]?.model ?? '?'}, node ${process.version}${nodeFlags.length > 0 ? ` ${nodeFlags.join(' ')}` : ''}${process.env.MALLOC_ARENA_MAX ?? shippedEnv.MALLOC_ARENA_MAX ? ` MALLOC_ARENA_MAX=${process.env.MALLOC_ARENA_MAX ?? shippedEnv.MALLOC_ARENA_MAX}` : ''}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}\n`,
  );
  try {
    const bare: number[] = [];
    const agent: number[] = [];
    const cpu: Record<'bare' | 'agent', number[]> = { bare: [], agent: [] };
    for (let r = 1; r <= rounds; r++) {
      for (const [name, prepare, into] of [['bare', prepareBare, bare], ['agent', prepareAgent, agent]] as const) {
        const spawnIt = await prepare();
        const t0 = performance.now();
        const server = spawnIt();
        try {
          into.push(await firstAnswer(server, t0, path));
          cpu[name].push(cpuMs(server.child.pid!));
        } finally {
          await server.stop();
        }
      }
      process.stdout.write(`round ${r}: bare node http ${bare.at(-1)!.toFixed(0)} ms (${cpu.bare.at(-1)} ms CPU), agent ${agent.at(-1)!.toFixed(0)} ms (${cpu.agent.at(-1)} ms CPU)\n`);
    }
    const mb = median(bare);
    const ma = median(agent);
    process.stdout.write(`start to first answer (GET ${path}), ${rounds} alternating rounds: bare node http ${mb.toFixed(0)} ms median, agent ${ma.toFixed(0)} ms median (${Math.min(...agent).toFixed(0)} best)\n`);
    process.stdout.write(`ratio agent / bare node http: ${(ma / mb).toFixed(2)}x (median)\n`);
    process.stdout.write(`CPU time until the first answer: bare node http ${median(cpu.bare)} ms median, agent ${median(cpu.agent)} ms median (${(median(cpu.agent) / median(cpu.bare)).toFixed(2)}x)\n`);

    // Memory: one agent and one bare server, each answered once, then idle, then under load.
    const memory: Record<string, { started: number; idle: number; peak: number; routes: string[] }> = {};
    for (const [name, prepare] of [['bare', prepareBare], ['agent', prepareAgent]] as const) {
      const server = (await prepare())();
      const pid = server.child.pid!;
      try {
        await firstAnswer(server, performance.now(), path);
        await sleep(1000);
        const started = procStatus(pid, 'VmRSS');
        await sleep(Math.max(0, idleSeconds - 1) * 1000);
        const idle = procStatus(pid, 'VmRSS');
        const token = name === 'agent' ? readFileSync(join(dir, 'token'), 'utf8').trim() : '';
        const routes = name === 'agent' ? ['/api/hostname', `/api/mysql-port?token=${token}`] : ['/'];
        const lines: string[] = [];
        for (const route of routes) {
          const r = await load(`http://127.0.0.1:${server.port}${route}`);
          const shown = token ? route.replace(token, '…') : route;
          lines.push(`${shown} ${r.rate.toFixed(0)} req/s${r.non2xx || r.errors ? ` (${r.non2xx} non-2xx, ${r.errors} errors${r.lastError ? `: ${r.lastError}` : ''})` : ''}, peak RSS so far ${procStatus(pid, 'VmHWM').toFixed(0)} MiB`);
        }
        memory[name] = { started, idle, peak: procStatus(pid, 'VmHWM'), routes: lines };
      } finally {
        await server.stop();
      }
    }
    for (const [name, m] of Object.entries(memory)) {
      const label = name === 'agent' ? 'agent' : 'bare node http';
      process.stdout.write(`${label}: RSS ${m.started.toFixed(1)} MiB 1 s after the first answer, ${m.idle.toFixed(1)} MiB after ${idleSeconds} s idle; under ${connections} connections, ${loadSeconds} s per route:\n`);
      for (const line of m.routes) process.stdout.write(`  ${line}\n`);
      process.stdout.write(`  peak RSS ${m.peak.toFixed(1)} MiB\n`);
    }
    const a = memory.agent!;
    const ok = (cond: boolean) => (cond ? 'ok' : 'MISSED');
    process.stdout.write(
      `goals: start ${ma.toFixed(0)} ms ≤ 300 ms ${ok(ma <= 300)}, ratio ${(ma / mb).toFixed(2)}x ≤ 3x ${ok(ma / mb <= 3)}, ` +
        `idle RSS ${a.idle.toFixed(0)} MiB ≤ 60 ${ok(a.idle <= 60)}, peak RSS ${a.peak.toFixed(0)} MiB ≤ 120 ${ok(a.peak <= 120)}\n`,
    );
    process.stdout.write(`load average at start ${load0.toFixed(2)}, now ${loadavg()[0]!.toFixed(2)}\n`);
  } finally {
    await orchestrator.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
