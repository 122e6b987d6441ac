// npm run bench [-- PART...]: runs the named parts (default: all), each in its own node process, one after
// the other so they never compete for the CPU. Parts:
//   transfer  built-in transfer against tar | socat on a 2 GiB datadir-like tree (bench/run.ts; minutes)
//   start     start to first answer against a bare node http server, idle and peak RSS (bench/start.ts)
//   bursts    req/s under 100 connections on a command route: single flight against one process per request
//   datadir   built-in transfer against tar | socat on a real ~1 GiB MariaDB datadir (bench/datadir.ts; makes
//             the datadir once, minutes)
//   backup    a seed by hot backup against mariabackup | socat | mbstream -x (+ prepare) on a running MariaDB
//             with BENCH_BACKUP_MIB (default 2048) MiB of generated rows (bench/backup.ts; minutes)
//   link      the same kind of datadir (~1 GiB) over a 1 Gbit/s veth link between two network namespaces:
//             tar | socat, tar | zstd | socat, the built-in transfer and a backup seed's stream, with and without
//             compression (bench/link.ts)
// Options (after the parts) go to every part: --hog runs one CPU-spinning process per core beside both ends
// of the transfer parts for all their rounds, --hog=N runs N (bench/hog.ts).
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

const here = new URL('.', import.meta.url).pathname;
const parts: Record<string, string> = {
  transfer: 'run.js',
  start: 'start.js',
  bursts: 'bursts.js',
  datadir: 'datadir.js',
  backup: 'backup.js',
  link: 'link.js',
};

async function main(): Promise<void> {
  const asked = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  const options = process.argv.slice(2).filter((a) => a.startsWith('--'));
  const badOption = options.find((o) => o !== '--hog' && !o.startsWith('--hog='));
  if (badOption) throw new Error(`unknown bench option ${badOption}: --hog or --hog=N`);
  const unknown = asked.filter((p) => !(p in parts));
  if (unknown.length > 0) throw new Error(`unknown bench part ${unknown.join(', ')}: choose from ${Object.keys(parts).join(', ')}`);
  for (const part of asked.length > 0 ? asked : Object.keys(parts)) {
    process.stdout.write(`== bench ${part}\n`);
    const code = await new Promise<number | null>((res, rej) => {
      const child = spawn(process.execPath, [resolve(here, parts[part]!), ...options], { stdio: 'inherit' });
      child.once('error', rej);
      child.once('exit', (c) => res(c));
    });
    if (code !== 0) throw new Error(`bench ${part} exited ${code}`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
