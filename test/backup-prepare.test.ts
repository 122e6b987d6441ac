// A prepared backup is never prepared twice: the durable marks around `mariabackup --prepare` decide. A
// restarted step after a finished prepare only reads the binlog position the backup recorded; after an
// interrupted prepare it fails (the copy cannot be trusted) instead of preparing again.
import { describe, expect, test } from '@jest/globals';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultConfig } from '../src/config.js';
import { ensureBackupPrepared, PREPARE_STARTED, PREPARED } from '../src/seeds/steps/backup-steps.js';
import type { StepEnv } from '../src/seeds/steps/step-env.js';
import type { BackupTargetParams } from '../machines/seed-backup-target.js';
import type { StepInput } from '../machines/seed-common.js';

function envWith(marks: Record<string, string>, program: string): StepEnv {
  const config = { ...defaultConfig(), SeedBackupProgram: program };
  return {
    config,
    seed: {
      id: 'p1',
      marks: () => marks,
      mark: (k: string, v: string) => void (marks[k] = v),
      secrets: () => ({}),
      setProgress: () => undefined,
      setWaiting: () => undefined,
      warn: () => undefined,
    },
  } as unknown as StepEnv;
}

const params: BackupTargetParams = { method: 'backup', startMySQL: true, replicate: true, sourceMySQL: null, force: false, stepByStep: false, port: 1 };

describe('preparing a backup', () => {
  const dir = mkdtempSync(join(tmpdir(), 'oa-prepare-'));
  const datadir = join(dir, 'datadir');
  // A stand-in backup program that notes each run (with what it was asked and whether it was asked before).
  const ranLog = join(dir, 'ran.log');
  const program = join(dir, 'fake-mariabackup');
  writeFileSync(program, `#!/bin/bash\necho "$*" >> ${ranLog}\n`);
  chmodSync(program, 0o755);
  const runs = () => (existsSync(ranLog) ? readFileSync(ranLog, 'utf8').trim().split('\n') : []);
  const input = (datadir: string): StepInput<BackupTargetParams> => ({
    seedId: 'p1',
    step: 'preparing',
    params,
    deadlines: { seed: Date.now() + 60000, connect: null },
    facts: { datadir },
  });

  test('after a finished prepare the step only reads the recorded position and runs nothing', async () => {
    mkdirSync(datadir);
    writeFileSync(join(datadir, 'mariadb_backup_binlog_info'), 'source-bin.000003\t4711\t0-1-42\n');
    const marks: Record<string, string> = { [PREPARE_STARTED]: 'then', [PREPARED]: 'then' };
    const out = await ensureBackupPrepared(input(datadir), new AbortController().signal, envWith(marks, program));
    expect(out).toEqual({ backupPosition: { file: 'source-bin.000003', position: 4711, gtid: '0-1-42' } });
    expect(runs()).toEqual([]);
  });

  test('after an interrupted prepare the step fails and says the copy cannot be trusted', async () => {
    const marks: Record<string, string> = { [PREPARE_STARTED]: '2026-11-26T15:00:00.000Z' };
    await expect(ensureBackupPrepared(input(datadir), new AbortController().signal, envWith(marks, program))).rejects.toThrow(/never prepared twice/);
    expect(marks[PREPARED]).toBeUndefined();
    expect(runs()).toEqual([]);
  });

  test('a first prepare marks its start before it runs and its end after, and runs once', async () => {
    const marks: Record<string, string> = {};
    await ensureBackupPrepared(input(datadir), new AbortController().signal, envWith(marks, program));
    expect(runs()).toEqual([`--prepare --target-dir=${datadir}`]);
    expect(Date.parse(marks[PREPARE_STARTED]!)).toBeLessThanOrEqual(Date.parse(marks[PREPARED]!));
    await ensureBackupPrepared(input(datadir), new AbortController().signal, envWith(marks, program));
    expect(runs()).toHaveLength(1);
    rmSync(dir, { recursive: true, force: true });
  });
});
