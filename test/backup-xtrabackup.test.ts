// xtrabackup (MySQL/Percona) and mariabackup run the same runbook: the program and its extra arguments are
// the operator's configuration, given as argv arrays (checked when the configuration is read), and the
// position the backup recorded is read from either program's file, a MySQL GTID set over several lines too.
// The programs here are stand-ins that record their argv (no xtrabackup or MySQL server on Debian).
import { describe, expect, test } from '@jest/globals';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultConfig, loadConfig, type Config } from '../src/config.js';
import type { DatadirOps, MySQLService } from '../src/host/interfaces.js';
import { MySQLClient } from '../src/host/mysql-client.js';
import { inspectBackupTarget } from '../src/seeds/pre-seed-checks.js';
import { backupPosition, ensureBackupPrepared, parseBinlogInfo } from '../src/seeds/steps/backup-steps.js';
import type { StepEnv } from '../src/seeds/steps/step-env.js';
import type { BackupTargetParams } from '../machines/seed-backup-target.js';
import { tempDir } from './support/agent-process.js';

const params: BackupTargetParams = { method: 'backup', startMySQL: true, replicate: true, sourceMySQL: null, force: false, stepByStep: false, port: 1 };

function envWith(config: Config): StepEnv {
  const marks: Record<string, string> = {};
  return {
    config,
    seed: { id: 'x1', marks: () => marks, mark: (k: string, v: string) => void (marks[k] = v), secrets: () => ({}), setProgress: () => undefined, setWaiting: () => undefined, warn: () => undefined },
  } as unknown as StepEnv;
}

describe('hot backups with xtrabackup or mariabackup', () => {
  const dir = tempDir('oa-xtrabackup-');

  const configWith = (extra: Record<string, unknown>) => {
    const file = join(dir, `c-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(file, JSON.stringify({ AgentsServer: 'http://a', ...extra }));
    return () => loadConfig(file);
  };

  test('the extra backup and prepare arguments are read as argv arrays', () => {
    const { config } = configWith({ SeedBackupProgram: 'xtrabackup', SeedBackupExtractProgram: 'xbstream', SeedBackupFlags: ['--parallel=4', '--ftwrl-wait-timeout=60', '--user=backup'], SeedBackupPrepareFlags: ['--use-memory=1G'] })();
    expect(config.SeedBackupFlags).toEqual(['--parallel=4', '--ftwrl-wait-timeout=60', '--user=backup']);
    expect(config.SeedBackupPrepareFlags).toEqual(['--use-memory=1G']);
    expect(defaultConfig().SeedBackupFlags).toEqual([]);
    expect(defaultConfig().SeedBackupPrepareFlags).toEqual([]);
  });

  test('a shell string, an option the agent sets itself or a password is refused when the configuration is read', () => {
    expect(configWith({ SeedBackupFlags: '--parallel=4 --compress' })).toThrow(/key "SeedBackupFlags" .* must be an array of strings/);
    expect(configWith({ SeedBackupFlags: ['--parallel=4 --compress'] })).toThrow(/SeedBackupFlags holds "--parallel=4 --compress": that is several arguments in one string/);
    expect(configWith({ SeedBackupFlags: ['$(rm -rf /)'] })).toThrow(/each entry must be one option starting with "-"/);
    expect(configWith({ SeedBackupFlags: ['--user', 'backup'] })).toThrow(/SeedBackupFlags holds "backup": each entry must be one option starting with "-", its value joined by "="/);
    expect(configWith({ SeedBackupFlags: ['--password=hunter2'] })).toThrow(/the agent sets --password itself \(or it would show a secret/);
    expect(configWith({ SeedBackupFlags: ['-phunter2'] })).toThrow(/a password on the command line shows in the process list/);
    expect(configWith({ SeedBackupPrepareFlags: ['--target-dir=/tmp/elsewhere'] })).toThrow(/SeedBackupPrepareFlags holds "--target-dir=\/tmp\/elsewhere": the agent sets --target-dir itself/);
    expect(configWith({ SeedBackupPrepareFlags: ['--defaults_file=/etc/x.cnf'] })).toThrow(/the agent sets --defaults-file itself/);
    expect(configWith({ SeedBackupFlags: ['--stream=tar'] })).toThrow(/the agent sets --stream itself/);
  });

  test('the prepare runs the configured program with the agent\'s arguments first, then the extra ones', async () => {
    const argvLog = join(dir, 'argv.log');
    const program = join(dir, 'xtrabackup');
    // Records each argument on its own line, so an argument holding a space would show as one line.
    writeFileSync(program, `#!/bin/bash\nprintf '%s\\n' "$@" >> ${argvLog}\necho ---- >> ${argvLog}\n`);
    chmodSync(program, 0o755);
    const datadir = join(dir, 'datadir');
    mkdirSync(datadir);
    writeFileSync(join(datadir, 'xtrabackup_binlog_info'), 'binlog.000007\t157\t3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,\n5ad9cd8a-71ca-11e1-9e33-c80aa9429562:1-17\n');
    const config = { ...defaultConfig(), SeedBackupProgram: program, SeedBackupPrepareFlags: ['--use-memory=256M', '--rollback-prepared-trx'] };
    const out = await ensureBackupPrepared(
      { seedId: 'x1', step: 'preparing', params, deadlines: { seed: Date.now() + 60000, connect: null }, facts: { datadir } },
      new AbortController().signal,
      envWith(config),
    );
    expect(readFileSync(argvLog, 'utf8').split('\n')).toEqual(['--prepare', `--target-dir=${datadir}`, '--use-memory=256M', '--rollback-prepared-trx', '----', '']);
    // xtrabackup's file, with its GTID set over two lines, read as one set.
    expect(out).toEqual({ backupPosition: { file: 'binlog.000007', position: 157, gtid: '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,5ad9cd8a-71ca-11e1-9e33-c80aa9429562:1-17' } });
  });

  test('with this MySQL stopped, the major version comes from xtrabackup --version, which prints it on stdout', async () => {
    const program = join(dir, 'xtrabackup-version');
    writeFileSync(program, '#!/bin/bash\necho "xtrabackup version 8.0.35-30 based on MySQL server 8.0.35 Linux (x86_64) (revision id: 6beb4b49)"\n');
    chmodSync(program, 0o755);
    const stopped: MySQLService = { datadir: async () => dir, port: async () => 3306, isRunning: async () => false, stop: async () => undefined, start: async () => undefined };
    const disk: DatadirOps = { diskUsage: async () => 0, availableSpace: async () => 1024 ** 4, ensureNotInUse: async () => undefined, purge: async () => undefined };
    const check = async (version: string) =>
      (
        await inspectBackupTarget({
          config: { ...defaultConfig(), SeedBackupProgram: program },
          mysql: stopped,
          datadir: disk,
          client: new MySQLClient('mysql', 'SeedCredentialsFile', ''),
          replication: new MySQLClient('mysql', 'ReplicationCredentialsFile', ''),
          datadirPath: dir,
          source: { mysqlRunning: true, version, dataBytes: 1024, logBin: true, gtidMode: true, mysqlHost: '', mysqlPort: 3306 },
          sourceMySQL: { host: '127.0.0.1', port: 3306 },
          replicate: false,
          force: false,
          signal: new AbortController().signal,
        })
      ).find((c) => c.name === 'sameMajorVersion')!;
    expect(await check('8.0.36-28')).toMatchObject({ ok: true, message: `source 8.0.36-28 and ${program} here (MySQL is stopped) are both 8.0` });
    expect((await check('8.4.3')).ok).toBe(false);
  });

  test('the recorded position is read from mariabackup\'s file first, then xtrabackup\'s, with or without GTIDs', async () => {
    expect(parseBinlogInfo('mysql-bin.000003\t4711\t0-1-42,1-2-7\n')).toEqual({ file: 'mysql-bin.000003', position: 4711, gtid: '0-1-42,1-2-7' });
    expect(parseBinlogInfo('mysql-bin.000003\t4711\n')).toEqual({ file: 'mysql-bin.000003', position: 4711, gtid: '' });
    expect(parseBinlogInfo('garbage')).toBeNull();
    const both = join(dir, 'both');
    mkdirSync(both);
    writeFileSync(join(both, 'xtrabackup_binlog_info'), 'old-bin.000001\t4\n');
    expect(await backupPosition(both)).toEqual({ file: 'old-bin.000001', position: 4, gtid: '' });
    writeFileSync(join(both, 'mariadb_backup_binlog_info'), 'source-bin.000002\t342\t0-1-9\n');
    expect(await backupPosition(both)).toEqual({ file: 'source-bin.000002', position: 342, gtid: '0-1-9' });
    const none = join(dir, 'none');
    mkdirSync(none);
    expect(existsSync(join(none, 'xtrabackup_binlog_info'))).toBe(false);
    expect(await backupPosition(none)).toBeNull();
  });
});
