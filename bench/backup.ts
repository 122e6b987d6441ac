// npm run bench -- backup: a seed by hot backup (two real agents, built-in transfer with its checksum) against
// `mariabackup --backup --stream=xbstream | socat` into `socat | mbstream -x`, then `mariabackup --prepare` on
// that copy, on the same running MariaDB in the same run, in alternating rounds; prints both and their ratio.
// The data is bench/datadir.ts's generated rows (numbers, text, secondary indexes; made once and kept):
// BENCH_BACKUP_MIB (default 2048) MiB, at least ~400 (a smaller one for a quick run on a shared machine).
// BENCH_ROUNDS (default 3). The server runs on the kept datadir and is shut down cleanly at the end.
// BENCH_BACKUP_DIR (default /tmp/oa-bench-backup-data) keeps this part's datadir apart from the datadir part's,
// which copies its own while no server runs on it.
process.env.BENCH_MARIADB_MIB = process.env.BENCH_BACKUP_MIB ?? '2048';
process.env.BENCH_MARIADB_DIR = process.env.BENCH_BACKUP_DIR ?? '/tmp/oa-bench-backup-data';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { freePort, haveMariaDB, which } from '../test/support/mariadb.js';
import { startSeedAgent, type SeedAgent, type SeedViewJson } from '../test/support/seed-api.js';

const MiB = 1024 * 1024;
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const workDir = '/tmp/oa-bench-backup';

function exited(c: ChildProcess, what: string): Promise<void> {
  return new Promise((res, rej) => {
    c.once('error', rej);
    c.once('exit', (code, sig) => (code === 0 ? res() : rej(new Error(`${what} exited ${code ?? sig}`))));
  });
}

function fresh(name: string): string {
  const d = join(workDir, name);
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d, { recursive: true });
  return d;
}

const sync = () => execFileSync('sync');

/** CPU seconds of a process itself and of its children it has waited for (/proc/PID/stat utime+stime, cutime+cstime). */
function cpu(pid: number | 'self'): { own: number; children: number } {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ').map(Number);
  const tick = 100; // USER_HZ
  return { own: (fields[11]! + fields[12]!) / tick, children: (fields[13]! + fields[14]!) / tick };
}

interface Source {
  datadir: string;
  socket: string;
  credentials: string;
}

/** mariabackup --backup --stream=xbstream | socat  →  socat | mbstream -x, sync; then mariabackup --prepare, sync. */
async function baseline(src: Source): Promise<{ stream: number; prepare: number; cpu: number; prepareCpu: number }> {
  const cpu0 = cpu('self').children;
  const dest = fresh('baseline');
  const scratch = fresh('baseline-scratch');
  sync();
  const port = await freePort();
  const listen = spawn('socat', ['-b131072', '-u', `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr`, 'STDOUT'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const extract = spawn('mbstream', ['-x', '-C', dest], { stdio: [listen.stdout!, 'ignore', 'inherit'] });
  const t0 = performance.now();
  const backup = spawn('mariabackup', [`--defaults-extra-file=${src.credentials}`, '--backup', '--stream=xbstream', `--target-dir=${scratch}`, `--datadir=${src.datadir}`], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const connect = spawn('socat', ['-b131072', '-u', 'STDIN', `TCP:127.0.0.1:${port},retry=100,interval=0.02`], { stdio: [backup.stdout!, 'ignore', 'inherit'] });
  await Promise.all([exited(backup, 'mariabackup --backup'), exited(connect, 'socat (send)'), exited(listen, 'socat (listen)'), exited(extract, 'mbstream -x')]);
  sync();
  const t1 = performance.now();
  const streamCpu = cpu('self').children - cpu0;
  await exited(spawn('mariabackup', ['--prepare', `--target-dir=${dest}`], { stdio: 'ignore' }), 'mariabackup --prepare');
  sync();
  return { stream: (t1 - t0) / 1000, prepare: (performance.now() - t1) / 1000, cpu: streamCpu, prepareCpu: cpu('self').children - cpu0 - streamCpu };
}

const seconds = (h: { enteredAt: string; leftAt: string | null }) => (Date.parse(h.leftAt ?? h.enteredAt) - Date.parse(h.enteredAt)) / 1000;

/**
 * The longest the agent's event loop was held up since the last call (prom-client's eventloop lag histogram,
 * reset at each scrape of /metrics): a stalled loop stops the agent's streams and its API alike.
 */
async function longestStall(a: SeedAgent): Promise<number> {
  const res = await fetch(`${a.agent.baseUrl}/metrics`, { headers: { Authorization: `Bearer ${a.token}` } });
  const m = /^nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(await res.text());
  return m ? Number(m[1]) : Number.NaN;
}

/** A target seed (MySQL stopped, empty datadir, no start) fed by a source seed; whole seed and its receiving step. */
async function ours(source: SeedAgent, target: SeedAgent, n: number): Promise<{ stream: number; prepare: number; total: number; agentsCpu: number; programsCpu: number; phases: string; stalls: number[] }> {
  fresh('target');
  await Promise.all([source, target].map(longestStall));
  const before = [source, target].map((a) => cpu(a.agent.child.pid!));
  sync();
  const id = `bench-backup-${n}-${Date.now()}`;
  const wall0 = Date.now();
  const created = await target.call<{ transfer: { port: number; authKey: string } }>('POST', '/api/seeds', { id, role: 'target', method: 'backup', startMySQL: false, timeoutSeconds: 7200 });
  if (created.status !== 201) throw new Error(`target seed: ${created.status} ${JSON.stringify(created.body)}`);
  const sent = await source.call('POST', '/api/seeds', { id, role: 'source', method: 'backup', targetHost: '127.0.0.1', targetPort: created.body.transfer.port, authKey: created.body.transfer.authKey });
  if (sent.status !== 201) throw new Error(`source seed: ${sent.status} ${JSON.stringify(sent.body)}`);
  // Polled gently (every answer costs the target agent CPU); the times come from the seed's own history.
  let v: SeedViewJson;
  for (;;) {
    v = await target.seed(id);
    if (v.status !== 'active') break;
    await new Promise((r) => setTimeout(r, 250));
  }
  const ended = v.history.at(-1)!;
  const total = (Date.parse(ended.enteredAt) - wall0) / 1000;
  const after = [source, target].map((a) => cpu(a.agent.child.pid!));
  const stalls = await Promise.all([source, target].map(longestStall));
  const agentsCpu = after.reduce((n, c, i) => n + c.own - before[i]!.own, 0);
  const programsCpu = after.reduce((n, c, i) => n + c.children - before[i]!.children, 0);
  if (v.status !== 'done') throw new Error(`the seed ended ${v.status}: ${JSON.stringify(v.error)}`);
  const step = (name: string) => seconds(v.history.find((h) => h.state === name)!);
  // Each side's steps, from the moment the bench created the target seed: where the whole seed's time goes.
  const start = wall0;
  const timeline = (view: SeedViewJson) =>
    view.history.map((h) => `${h.state} ${((Date.parse(h.enteredAt) - start) / 1000).toFixed(2)}+${seconds(h).toFixed(2)}`).join(', ');
  const phases = `target: ${timeline(v)}; source: ${timeline(await source.seed(id))}`;
  return { stream: step('receiving'), prepare: step('preparing'), total, agentsCpu, programsCpu, phases, stalls };
}

const millis = (s: number) => `${(s * 1000).toFixed(0)} ms`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  if (!haveMariaDB || !which('mariabackup') || !which('mbstream') || !which('socat')) {
    throw new Error('mariadbd, mariadb-install-db, mariadb, mariadb-admin, mariabackup, mbstream and socat are needed (apt-get install mariadb-server mariadb-client mariadb-backup socat)');
  }
  const { makeDatadir, dataDir } = await import('./datadir.js');
  await makeDatadir();
  rmSync(workDir, { recursive: true, force: true });
  mkdirSync(workDir, { recursive: true });
  const socket = join(workDir, 'source.sock');
  const pidFile = join(workDir, 'source.pid');
  const port = await freePort();
  const ping = ['--no-defaults', '-uroot', `--socket=${socket}`, 'ping'];
  const server = spawn(
    which('mariadbd')!,
    ['--no-defaults', '--user=root', `--datadir=${dataDir}`, '--bind-address=127.0.0.1', `--port=${port}`, `--socket=${socket}`, `--pid-file=${pidFile}`,
      `--log-error=${join(workDir, 'source.err')}`, '--skip-name-resolve', '--innodb-buffer-pool-size=256M', '--skip-log-bin'],
    { stdio: 'ignore', detached: true },
  );
  const serverExit = new Promise<void>((r) => server.once('exit', () => r()));
  const agents: SeedAgent[] = [];
  try {
    for (let i = 0; ; i++) {
      try {
        execFileSync('mariadb-admin', ping, { stdio: 'ignore' });
        break;
      } catch {
        if (i > 1200) throw new Error(`mariadbd did not answer within 120 s; see ${join(workDir, 'source.err')}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const credentials = join(workDir, 'seed.cnf');
    writeFileSync(credentials, `[client]\nuser=root\nsocket=${socket}\n`, { mode: 0o600 });
    chmodSync(credentials, 0o600);
    const src: Source = { datadir: dataDir, socket, credentials };
    const bytes = Number(execFileSync('du', ['-sb', dataDir], { encoding: 'utf8' }).split('\t')[0]);
    const common = { MySQLClientCommand: 'mariadb', SeedCredentialsFile: credentials, SeedTransferBindAddress: '127.0.0.1', CommandTimeoutSeconds: 600 };
    const sourceDir = fresh('source-agent');
    const source = await startSeedAgent(sourceDir, {
      ...common,
      MySQLDatadirCommand: `echo ${dataDir}`,
      MySQLPortCommand: `echo ${port}`,
      MySQLServiceStatusCommand: `mariadb-admin ${ping.join(' ')} >/dev/null 2>&1`,
      MySQLServiceStopCommand: 'echo "the bench source is never stopped" >&2; exit 1',
      MySQLServiceStartCommand: 'true',
    });
    agents.push(source);
    const targetDir = fresh('target-agent');
    const target = await startSeedAgent(targetDir, {
      ...common,
      // The target's MySQL is stopped: the checks that need it are skipped, the others run.
      MySQLDatadirCommand: `echo ${join(workDir, 'target')}`,
      MySQLPortCommand: 'echo 3306',
      MySQLServiceStatusCommand: 'false',
      MySQLServiceStopCommand: 'true',
      MySQLServiceStartCommand: 'echo "the bench target is never started" >&2; exit 1',
    });
    agents.push(target);
    process.stdout.write(
      `running MariaDB on ${(bytes / MiB).toFixed(0)} MiB of generated rows (${dataDir}), ${new Date().toISOString()}, ${cpus().length}x ${cpus()[0]?.model ?? '?'}, ` +
        `load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}; ${rounds} alternating rounds over 127.0.0.1; stream times include extraction and sync\n` +
        'baseline: `mariabackup --backup --stream=xbstream | socat` into `socat | mbstream -x`, sync (stream); `mariabackup --prepare`, sync (prepare); ' +
        'no checks, no authentication, no checksum, no state\n' +
        'agent seed, target created to done: pre-seed checks on both agents, stopping MySQL (a no-op command here), purge of the empty datadir, ' +
        'the stream (`receiving`: handshake, GMAC per frame, xxh3 end to end, progress; the same mariabackup command, `mbstream -x`, `sync -f`), ' +
        '`mariabackup --prepare`, `sync -f`, `chown -R`, every step persisted; MySQL started on neither side\n',
    );
    const base: Array<Awaited<ReturnType<typeof baseline>>> = [];
    const mine: Array<Awaited<ReturnType<typeof ours>>> = [];
    const rate = (s: number) => (bytes / MiB / s).toFixed(0);
    for (let r = 1; r <= rounds; r++) {
      base.push(await baseline(src));
      mine.push(await ours(source, target, r));
      const b = base.at(-1)!;
      const m = mine.at(-1)!;
      process.stdout.write(
        `round ${r}: mariabackup|socat|mbstream ${b.stream.toFixed(1)} s (${rate(b.stream)} MiB/s, ${b.cpu.toFixed(1)} CPU s) + prepare ${b.prepare.toFixed(1)} s   ` +
          `agent seed: receiving ${m.stream.toFixed(1)} s (${rate(m.stream)} MiB/s) + preparing ${m.prepare.toFixed(1)} s, whole seed ${m.total.toFixed(1)} s ` +
          `(CPU s: both agents ${m.agentsCpu.toFixed(1)}, their programs ${m.programsCpu.toFixed(1)}; longest event-loop stall: source ${millis(m.stalls[0]!)}, target ${millis(m.stalls[1]!)})\n` +
          `  agent seed's steps (state start+seconds, from the target seed's creation): ${m.phases}\n`,
      );
    }
    const bs = median(base.map((b) => b.stream));
    const ms = median(mine.map((m) => m.stream));
    const bt = median(base.map((b) => b.stream + b.prepare));
    const mt = median(mine.map((m) => m.total));
    process.stdout.write(`stream (median): mariabackup|socat|mbstream ${bs.toFixed(1)} s, agent's receiving step ${ms.toFixed(1)} s: ratio (rate, agent / baseline) ${(bs / ms).toFixed(2)}x\n`);
    process.stdout.write(`stream + prepare (median): baseline ${bt.toFixed(1)} s, agent's whole seed (checks, stream, prepare, chown) ${mt.toFixed(1)} s: ratio ${(bt / mt).toFixed(2)}x; ` +
      `median of rounds ${median(base.map((b, i) => b.stream / mine[i]!.stream)).toFixed(2)}x (stream); load average now ${loadavg()[0]!.toFixed(2)}\n`);
    // On a busy 2-core host the pipelines share the CPU with everything else, and the one needing fewer CPU
    // seconds finishes first: this ratio is where the measured one goes as the load rises.
    const baseCpu = median(base.map((b) => b.cpu + b.prepareCpu));
    const mineCpu = median(mine.map((m) => m.agentsCpu + m.programsCpu));
    process.stdout.write(`CPU seconds (median): baseline ${baseCpu.toFixed(1)} (mariabackup, both socat, mbstream, prepare); agent seed ${mineCpu.toFixed(1)} ` +
      `(both agents ${median(mine.map((m) => m.agentsCpu)).toFixed(1)}, their programs ${median(mine.map((m) => m.programsCpu)).toFixed(1)}): ratio ${(baseCpu / mineCpu).toFixed(2)}x, the bound on a saturated CPU\n`);
    // A flush of the agent's own state file waiting on a disk busy with the copy must not hold up its loop.
    process.stdout.write(`longest event-loop stall in any round: source agent ${millis(Math.max(...mine.map((m) => m.stalls[0]!)))}, target agent ${millis(Math.max(...mine.map((m) => m.stalls[1]!)))}\n`);
    // What the stream's larger heap growth (src/transfer/heap-growth.ts) costs in memory.
    const peak = (a: SeedAgent) => /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${a.agent.child.pid!}/status`, 'utf8'))?.[1] ?? '?';
    process.stdout.write(`peak RSS: source agent ${(Number(peak(source)) / 1024).toFixed(0)} MiB, target agent ${(Number(peak(target)) / 1024).toFixed(0)} MiB\n`);
  } finally {
    for (const a of agents) await a.agent.stop();
    try {
      execFileSync('mariadb-admin', [...ping.slice(0, -1), 'shutdown'], { stdio: 'ignore', timeout: 300000 });
    } catch {
      /* killed below */
    }
    const killer = setTimeout(() => server.exitCode === null && process.kill(-server.pid!, 'SIGKILL'), 300000);
    await serverExit;
    clearTimeout(killer);
    rmSync(workDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
