// Jest globalSetup: one temp directory per test run, made the TMPDIR of the run (os.tmpdir() in the tests and
// every agent or server they start), so that global-teardown.ts can remove everything a run left behind
// instead of leaving thousands of directories in /tmp.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function globalSetup(): void {
  const runDir = mkdtempSync(join(tmpdir(), 'oa-tests-'));
  process.env.OA_TEST_RUN_DIR = runDir;
  process.env.TMPDIR = runDir;
}
