// A CPU hog for the transfer benches (`--hog`, `--hog=N`, or BENCH_HOG=N): N processes spinning on the CPU
// (default one per core), started before the first round and stopped after the last, so both the baseline
// pipeline and the built-in transfer run on a host busy with something else, as a database host is.
// Each hog is its own process group, killed as a group when the bench ends (or fails, or is interrupted).
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';

/** The hog count asked for by argv (`--hog` = one per core, `--hog=N`) or BENCH_HOG, 0 when none. */
export function hogCount(argv: readonly string[] = process.argv.slice(2)): number {
  const flag = argv.find((a) => a === '--hog' || a.startsWith('--hog='));
  const raw = flag?.startsWith('--hog=') ? flag.slice('--hog='.length) : flag ? 'cores' : process.env.BENCH_HOG;
  if (raw === undefined || raw === '' || raw === '0') return 0;
  if (raw === 'cores') return cpus().length;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 256) throw new Error(`--hog=${raw}: give a number of hog processes (0-256), or --hog for one per core`);
  return n;
}

export interface Hogs {
  count: number;
  /** The hog processes' ids (each also its process group's). */
  pids(): number[];
  stop(): void;
}

/** Starts n spinning processes; stop() (also run at exit and on SIGINT/SIGTERM) kills each one's group. */
export function startHogs(n: number): Hogs {
  const children: ChildProcess[] = [];
  for (let i = 0; i < n; i++) {
    const c = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore', detached: true });
    c.once('error', (err) => process.stderr.write(`hog ${i} failed to start: ${err.message}\n`));
    children.push(c);
  }
  let stopped = false;
  const onSignal = () => {
    stop();
    process.exit(130);
  };
  const stop = () => {
    if (stopped) return;
    stopped = true;
    process.off('exit', stop);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    for (const c of children) {
      if (c.pid === undefined || c.exitCode !== null || c.signalCode !== null) continue;
      try {
        process.kill(-c.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  };
  process.once('exit', stop);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return { count: n, pids: () => children.flatMap((c) => (c.pid === undefined ? [] : [c.pid])), stop };
}
