// npm run bench -- bursts: requests per second under 100 keep-alive connections (bench/load.ts) on a route
// that runs a configured command, with single flight (GET /api/mysql-port: concurrent callers share one run
// of MySQLPortCommand) against one process per request (GET /api/custom-commands/port: the same command as
// a custom command, which runs for every request), on one agent in the same run, rounds alternating.
// BENCH_BURST_ROUNDS (default 3), BENCH_LOAD_SECONDS (5), BENCH_CONNECTIONS (100).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from '../test/support/mariadb.js';
import { FakeOrchestrator } from '../test/support/fake-orchestrator.js';

const here = new URL('.', import.meta.url).pathname;
const mainJs = resolve(here, '../src/main.js');
const loadJs = resolve(here, 'load.js');
const rounds = Number(process.env.BENCH_BURST_ROUNDS ?? 3);
const loadSeconds = Number(process.env.BENCH_LOAD_SECONDS ?? 5);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 100);
const command = 'echo 3306';

interface LoadResult {
  requests: number;
  non2xx: number;
  errors: number;
  lastError: string;
  rate: number;
}

function load(url: string): Promise<LoadResult> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [loadJs, url, String(connections), String(loadSeconds)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', rej);
    child.once('exit', (code) => (code === 0 ? res(JSON.parse(out) as LoadResult) : rej(new Error(`load generator exited ${code}`))));
  });
}

function status(port: number, path: string): Promise<number> {
  return new Promise((res) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (r) => {
      r.resume();
      r.once('end', () => res(r.statusCode ?? 0));
    });
    req.once('error', () => res(0));
    req.end();
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'oa-bench-bursts-'));
  const orchestrator = await new FakeOrchestrator().start();
  const port = await freePort();
  const file = join(dir, 'agent.conf.json');
  writeFileSync(
    file,
    JSON.stringify({
      ...orchestrator.agentConfig(),
      HTTPPort: port,
      HTTPBindAddress: '127.0.0.1',
      StateDir: join(dir, 'state'),
      TokenHintFile: join(dir, 'token'),
      MySQLPortCommand: command,
      MySQLServiceStatusCommand: 'true',
      CustomCommands: { port: command },
    }),
  );
  const agent = spawn(process.execPath, [mainJs, '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  agent.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<void>((r) => agent.once('exit', () => r()));
  try {
    for (let i = 0; (await status(port, '/api/hostname')) !== 200; i++) {
      if (i > 2000 || agent.exitCode !== null) throw new Error(`agent did not answer within 20 s:\n${stderr}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const token = readFileSync(join(dir, 'token'), 'utf8').trim();
    const routes = { shared: `/api/mysql-port?token=${token}`, perRequest: `/api/custom-commands/port?token=${token}` };
    process.stdout.write(
      `API bursts: ${new Date().toISOString()}, ${cpus().length}x ${cpus()[0]?.model ?? '?'}, node ${process.version}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}\n` +
        `command "${command}" under ${connections} keep-alive connections, ${loadSeconds} s per route, ${rounds} alternating rounds\n`,
    );
    const shared: number[] = [];
    const perRequest: number[] = [];
    for (let r = 1; r <= rounds; r++) {
      const s = await load(`http://127.0.0.1:${port}${routes.shared}`);
      const p = await load(`http://127.0.0.1:${port}${routes.perRequest}`);
      for (const [name, x] of [['mysql-port', s], ['custom-commands/port', p]] as const) {
        if (x.non2xx || x.errors) throw new Error(`${name}: ${x.non2xx} non-2xx, ${x.errors} errors ${x.lastError}`);
      }
      shared.push(s.rate);
      perRequest.push(p.rate);
      process.stdout.write(`round ${r}: single flight (mysql-port) ${s.rate.toFixed(0)} req/s, one process per request (custom-commands/port) ${p.rate.toFixed(0)} req/s\n`);
    }
    const ms = median(shared);
    const mp = median(perRequest);
    process.stdout.write(`single flight ${ms.toFixed(0)} req/s median, one process per request ${mp.toFixed(0)} req/s median\n`);
    process.stdout.write(`ratio single flight / one process per request: ${(ms / mp).toFixed(2)}x (median) (goal ≥ 5x: ${ms / mp >= 5 ? 'ok' : 'MISSED'})\n`);
    process.stdout.write(`load average now ${loadavg()[0]!.toFixed(2)}\n`);
  } finally {
    agent.kill('SIGTERM');
    await exited;
    await orchestrator.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
