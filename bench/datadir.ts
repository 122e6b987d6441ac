// npm run bench -- datadir: the built-in transfer against `tar | socat` on a real MariaDB datadir, each
// followed by sync, in alternating rounds; prints both rates and their ratio.
// The datadir is made once by the bench and kept for reuse (BENCH_MARIADB_DIR, default
// /tmp/oa-bench-mariadb/datadir-<MiB>): mariadb-install-db, then BENCH_MARIADB_MIB (default 1024) MiB in all, mostly
// generated rows in 8 schemas and 320 tables (a few big ones hold most rows, as in production), with
// numbers, text that compresses 2-4x and secondary indexes, written by a real mariadbd that is then shut
// down cleanly, so the copy sees what a snapshot of a stopped server holds.
// BENCH_MAKE_ONLY=1 only makes the datadir (bench/link.ts uses it). BENCH_ROUNDS (default 3), BENCH_CHECKSUM=sha256 and BENCH_PEER_CLI (another build's peer-cli.js) as in the
// transfer part; BENCH_PEER_CLI_BEFORE adds a third run to every round with that build's peer-cli.js, so a
// change is measured against the build before it under the same load. --hog (or --hog=N, BENCH_HOG=N) keeps
// one CPU-spinning process per core (or N) running beside both ends for all rounds (bench/hog.ts).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, lstatSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { newAuthKey } from '../src/transfer/index.js';
import { hogCount, startHogs } from './hog.js';
import { freePort, haveMariaDB, installDatadir, which } from '../test/support/mariadb.js';

const MiB = 1024 * 1024;
const targetMiB = Number(process.env.BENCH_MARIADB_MIB ?? 1024);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const baseDir = process.env.BENCH_MARIADB_DIR ?? '/tmp/oa-bench-mariadb';
export const dataDir = join(baseDir, `datadir-${targetMiB}`);
const workDir = '/tmp/oa-bench-work';
const checksum = process.env.BENCH_CHECKSUM === 'sha256' ? 'sha256' : 'xxh3-64';
const peerCli = process.env.BENCH_PEER_CLI ?? resolve(new URL('.', import.meta.url).pathname, '../src/transfer/peer-cli.js');
const peerCliBefore = process.env.BENCH_PEER_CLI_BEFORE;
const hogs = hogCount();
const schemas = 8;
const tablesPerSchema = 40;

function treeSize(dir: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.isDirectory()) {
      const sub = treeSize(p);
      bytes += sub.bytes;
      files += sub.files;
    } else {
      bytes += st.size;
      files++;
    }
  }
  return { bytes, files };
}

/** Rows for table t (0-based, per schema): the first two tables hold most of the data, the rest little. */
function rowsFor(t: number, totalRows: number): number {
  const perSchema = totalRows / schemas;
  if (t === 0) return Math.round(perSchema * 0.5);
  if (t === 1) return Math.round(perSchema * 0.25);
  return Math.max(10, Math.round((perSchema * 0.25) / (tablesPerSchema - 2)));
}

export async function makeDatadir(): Promise<void> {
  const ready = join(baseDir, `ready-${targetMiB}`);
  if (existsSync(ready) && existsSync(dataDir)) return;
  rmSync(dataDir, { recursive: true, force: true });
  mkdirSync(dataDir, { recursive: true });
  process.stdout.write(`creating a MariaDB datadir of about ${targetMiB} MiB in ${dataDir} (once; kept for the next runs) ...\n`);
  installDatadir(dataDir);
  const socket = join(baseDir, 'bench.sock');
  const port = await freePort();
  const server = spawn(
    which('mariadbd')!,
    ['--no-defaults', '--user=root', `--datadir=${dataDir}`, '--bind-address=127.0.0.1', `--port=${port}`, `--socket=${socket}`,
      `--pid-file=${join(baseDir, 'bench.pid')}`, `--log-error=${join(baseDir, 'bench.err')}`, '--skip-name-resolve',
      '--innodb-buffer-pool-size=256M', '--innodb-flush-log-at-trx-commit=0', '--innodb-doublewrite=0', '--skip-log-bin'],
    { stdio: 'ignore', detached: true },
  );
  const exited = new Promise<void>((r) => server.once('exit', () => r()));
  const sql = (statement: string) => {
    try {
      return execFileSync('mariadb', ['--no-defaults', '-uroot', `--socket=${socket}`, '-N', '-B', '-e', statement], { encoding: 'utf8', timeout: 1_800_000, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      throw new Error(`mariadb client: ${String((err as { stderr?: unknown }).stderr ?? (err as Error).message).trim().slice(0, 500)}`);
    }
  };
  try {
    for (let i = 0; ; i++) {
      try {
        sql('select 1');
        break;
      } catch {
        if (i > 600) throw new Error(`mariadbd did not answer within 60 s; see ${join(baseDir, 'bench.err')}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    // Measured on this data: ~270 bytes a row on disk with its indexes, on top of ~340 MiB that every such
    // datadir holds (redo log, system tablespace and undo, the mysql schema, the small tables' extents).
    const totalRows = Math.max(schemas * tablesPerSchema * 10, Math.round((Math.max(0, targetMiB - 340) * MiB) / 270));
    for (let s = 0; s < schemas; s++) {
      const db = `shop${s}`;
      const statements = [`CREATE DATABASE ${db}`, `USE ${db}`];
      for (let t = 0; t < tablesPerSchema; t++) {
        const rows = rowsFor(t, totalRows);
        statements.push(
          `CREATE TABLE ${db}.t${t} (id INT UNSIGNED PRIMARY KEY, customer INT UNSIGNED NOT NULL, amount DECIMAL(12,2) NOT NULL, ` +
            `status VARCHAR(16) NOT NULL, email VARCHAR(64) NOT NULL, note VARCHAR(255) NOT NULL, created DATETIME NOT NULL, ` +
            `KEY (customer), KEY (email), KEY (status, created)) ENGINE=InnoDB`,
          // Text from a small vocabulary plus ids: compresses roughly 2-4x, like production rows.
          `INSERT INTO ${db}.t${t} SELECT seq, seq * 7919 % 100003, (seq * 104729 % 1000000) / 100, ` +
            `ELT(1 + seq % 5, 'new', 'paid', 'shipped', 'returned', 'cancelled'), ` +
            `CONCAT(ELT(1 + seq % 7, 'anna', 'bob', 'chen', 'dara', 'emil', 'fatima', 'goran'), seq * 31 % 99991, '@example.', ELT(1 + seq % 3, 'com', 'org', 'net')), ` +
            `CONCAT_WS(' ', ELT(1 + seq % 6, 'deliver to', 'gift for', 'call before', 'leave at', 'fragile', 'express'), ` +
            `SUBSTRING(SHA1(seq), 1, 8 + seq % 24), ELT(1 + seq % 4, 'back door', 'reception', 'neighbour', 'locker'), MD5(seq * 13)), ` +
            `'2020-01-01' + INTERVAL (seq * 37 % 157680000) SECOND FROM seq_1_to_${rows}`,
        );
      }
      sql(statements.join(';\n'));
      process.stdout.write(`  schema ${db}: ${tablesPerSchema} tables\n`);
    }
    sql('SHUTDOWN');
    await exited;
  } finally {
    if (server.exitCode === null) {
      try {
        process.kill(-server.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  writeFileSync(ready, '');
}

function exited(c: ChildProcess, what: string): Promise<void> {
  return new Promise((res, rej) => {
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

const sync = () => execFileSync('sync');

/** tar -cf - | socat -b131072 -u STDIN TCP:…  →  socat -u TCP-LISTEN:… STDOUT | tar -xf -, then sync. */
async function baseline(): Promise<number> {
  const dest = freshDest('tar');
  sync();
  const port = await freePort();
  const listen = spawn('socat', ['-b131072', '-u', `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr`, 'STDOUT'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const untar = spawn('tar', ['-xf', '-', '-C', dest], { stdio: [listen.stdout!, 'ignore', 'inherit'] });
  const t0 = performance.now();
  const tar = spawn('tar', ['-cf', '-', '-C', dataDir, '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const connect = spawn('socat', ['-b131072', '-u', 'STDIN', `TCP:127.0.0.1:${port},retry=100,interval=0.02`], { stdio: [tar.stdout!, 'ignore', 'inherit'] });
  await Promise.all([exited(tar, 'tar -c'), exited(connect, 'socat (send)'), exited(listen, 'socat (listen)'), exited(untar, 'tar -x')]);
  sync();
  return (performance.now() - t0) / 1000;
}

/**
 * One end of our transfer as its own process (peer-cli.js). first: its first line ({"listening"} from a receiver,
 * {"ready"} from a sender waiting for start(); an older build's sender starts at once and says neither);
 * done: its {"result"}.
 */
function peer(
  cli: string,
  args: string[],
  key: string,
): { exit: Promise<void>; first: Promise<Record<string, unknown>>; done: Promise<Record<string, unknown>>; cpuSeconds: () => number; start: () => void } {
  const child = spawn(process.execPath, [cli, ...args], {
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
  const exit = exited(child, `transfer ${args[0]}`);
  exit.catch(() => undefined);
  let pending = '';
  const listeners: Array<(line: Record<string, unknown>) => void> = [];
  let cpu = NaN;
  child.stdout!.on('data', (d: Buffer) => {
    pending += d.toString();
    let i;
    while ((i = pending.indexOf('\n')) >= 0) {
      const line = JSON.parse(pending.slice(0, i)) as Record<string, unknown>;
      pending = pending.slice(i + 1);
      if (typeof line.cpuSeconds === 'number') cpu = line.cpuSeconds;
      listeners.forEach((l) => l(line));
    }
  });
  const awaitLine = (wanted: (line: Record<string, unknown>) => boolean) => {
    const p = new Promise<Record<string, unknown>>((res, rej) => {
      listeners.push((line) => {
        if ('error' in line) rej(new Error(`transfer ${args[0]} failed: ${JSON.stringify(line.error)}`));
        else if (wanted(line)) res(line);
      });
      child.once('exit', () => rej(new Error(`transfer ${args[0]} exited without a result`)));
    });
    p.catch(() => undefined);
    return p;
  };
  return {
    exit,
    first: awaitLine(() => true),
    done: awaitLine((line) => 'result' in line),
    cpuSeconds: () => cpu,
    start: () => child.stdin!.end('go\n'),
  };
}

/** Our receiver and sender, each in its own process as on two agents, then sync: seconds, and CPU seconds of both ends (start-up included). */
async function ours(cli = peerCli): Promise<{ seconds: number; cpu: number }> {
  const dest = freshDest('oa');
  sync();
  const key = newAuthKey();
  const receiver = peer(cli, ['receive', dest], key);
  const { listening } = await receiver.first;
  // Both ends are loaded before the clock starts, as two running agents are when a seed begins; a sender of
  // an older build, which starts at once, is timed from its spawn.
  const spawned = performance.now();
  const sender = peer(cli, ['send', dataDir, '127.0.0.1', String(listening)], key);
  const first = await sender.first;
  const t0 = 'ready' in first ? performance.now() : spawned;
  sender.start();
  await Promise.all([sender.done, sender.exit, receiver.done, receiver.exit]);
  sync();
  return { seconds: (performance.now() - t0) / 1000, cpu: sender.cpuSeconds() + receiver.cpuSeconds() };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  if (!haveMariaDB) throw new Error('mariadbd, mariadb-install-db, mariadb and mariadb-admin are needed (apt-get install mariadb-server mariadb-client)');
  await makeDatadir();
  if (process.env.BENCH_MAKE_ONLY) return; // bench/link.ts: make (or reuse) the datadir only
  const { bytes, files } = treeSize(dataDir);
  mkdirSync(workDir, { recursive: true });
  process.stdout.write(
    `real datadir: ${(bytes / MiB).toFixed(0)} MiB in ${files} files (${dataDir}), ${new Date().toISOString()}, ${cpus().length}x ${cpus()[0]?.model ?? '?'}, ` +
      `load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}; ${rounds} alternating rounds over 127.0.0.1, times include the final sync` +
      `${hogs > 0 ? `; ${hogs} CPU hog process(es) running beside both ends` : ''}\n`,
  );
  const hog = startHogs(hogs);
  try {
    await measure(bytes);
  } finally {
    hog.stop();
  }
}

/** The alternating rounds: baseline, this build, and the build before when asked. */
async function measure(bytes: number): Promise<void> {
  const base: number[] = [];
  const mine: number[] = [];
  const before: number[] = [];
  const cpu: number[] = [];
  const cpuBefore: number[] = [];
  const rate = (s: number) => bytes / MiB / s;
  for (let r = 1; r <= rounds; r++) {
    base.push(await baseline());
    // This build and the one before take turns going first, so neither always follows the baseline.
    const runMine = async () => {
      const o = await ours();
      mine.push(o.seconds);
      cpu.push(o.cpu);
    };
    const runBefore = async () => {
      if (!peerCliBefore) return;
      const o = await ours(peerCliBefore);
      before.push(o.seconds);
      cpuBefore.push(o.cpu);
    };
    if (r % 2 === 1) {
      await runMine();
      await runBefore();
    } else {
      await runBefore();
      await runMine();
    }
    const then = peerCliBefore
      ? `   before ${before.at(-1)!.toFixed(1)} s (${rate(before.at(-1)!).toFixed(0)} MiB/s, ${(base.at(-1)! / before.at(-1)!).toFixed(2)}x, ${cpuBefore.at(-1)!.toFixed(1)} CPU s)`
      : '';
    process.stdout.write(
      `round ${r}: tar|socat ${base.at(-1)!.toFixed(1)} s (${rate(base.at(-1)!).toFixed(0)} MiB/s)   built-in (${checksum}, fsync) ${mine.at(-1)!.toFixed(1)} s (${rate(mine.at(-1)!).toFixed(0)} MiB/s, ` +
        `${(base.at(-1)! / mine.at(-1)!).toFixed(2)}x, ${cpu.at(-1)!.toFixed(1)} CPU s both ends)${then}   load ${loadavg()[0]!.toFixed(1)}\n`,
    );
  }
  rmSync(workDir, { recursive: true, force: true });
  const mb = median(base);
  const mo = median(mine);
  process.stdout.write(`tar|socat: ${mb.toFixed(1)} s median (${rate(mb).toFixed(0)} MiB/s), built-in: ${mo.toFixed(1)} s median (${rate(mo).toFixed(0)} MiB/s)\n`);
  const perRound = base.map((b, i) => b / mine[i]!);
  process.stdout.write(`ratio built-in / tar|socat (rate): ${(mb / mo).toFixed(2)}x (median), ${(Math.min(...base) / Math.min(...mine)).toFixed(2)}x (best), ${median(perRound).toFixed(2)}x (median of rounds), ${median(cpu).toFixed(1)} CPU s (median, both ends); load average now ${loadavg()[0]!.toFixed(2)}\n`);
  if (peerCliBefore) {
    const perRoundBefore = base.map((b, i) => b / before[i]!);
    process.stdout.write(`before (${peerCliBefore}): ${median(before).toFixed(1)} s median (${rate(median(before)).toFixed(0)} MiB/s), ${(mb / median(before)).toFixed(2)}x tar|socat (median), ${median(perRoundBefore).toFixed(2)}x (median of rounds), ${median(cpuBefore).toFixed(1)} CPU s\n`);
  }
}

// bench/backup.ts imports the datadir maker; only `npm run bench -- datadir` runs this part.
if (process.argv[1] && resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
