// Jest globalTeardown: removes the run's temp directory (global-setup.ts), without crossing into a filesystem
// a test may have left mounted there. OA_KEEP_TEST_DIRS=1 keeps it for a look after a failure.
import { execFileSync } from 'node:child_process';

export default function globalTeardown(): void {
  const runDir = process.env.OA_TEST_RUN_DIR;
  if (!runDir || !/\/oa-tests-[^/]+$/.test(runDir)) return;
  if (process.env.OA_KEEP_TEST_DIRS === '1') {
    process.stdout.write(`\ntest files kept in ${runDir}\n`);
    return;
  }
  try {
    execFileSync('rm', ['-rf', '--one-file-system', runDir], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000 });
  } catch (err) {
    // Something still mounted or busy there: say where, the run's result stands.
    process.stdout.write(`\ncould not remove all of ${runDir}: ${(err as Error).message.split('\n')[0]}\n`);
  }
}
