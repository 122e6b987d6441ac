// The pre-seed checks answer each check with pass/fail and a sentence, and only read. Here the target's
// MySQL is stopped (so the version comes from the real backup program) and the filesystem is described by
// a DatadirOps that reports a small disk: a filesystem too small for the source's data fails freeSpace.
import { describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultConfig } from '../src/config.js';
import type { DatadirOps, MySQLService } from '../src/host/interfaces.js';
import { MySQLClient } from '../src/host/mysql-client.js';
import { inspectBackupTarget, majorVersion } from '../src/seeds/pre-seed-checks.js';
import { which } from './support/mariadb.js';

const GiB = 1024 ** 3;
const stopped: MySQLService = {
  datadir: async () => '/nonexistent',
  port: async () => 3306,
  isRunning: async () => false,
  stop: async () => undefined,
  start: async () => undefined,
};
const disk = (free: number, used: number): DatadirOps => ({
  diskUsage: async () => used,
  availableSpace: async () => free,
  ensureNotInUse: async () => undefined,
  purge: async () => {
    throw new Error('the checks must never purge');
  },
});

(which('mariabackup') ? describe : describe.skip)('pre-seed checks', () => {
  const dir = mkdtempSync(join(tmpdir(), 'oa-checks-'));
  const run = (free: number, used: number, version = '10.11.19-MariaDB-log') =>
    inspectBackupTarget({
      config: defaultConfig(),
      mysql: stopped,
      datadir: disk(free, used),
      client: new MySQLClient('mariadb', 'SeedCredentialsFile', ''),
      replication: new MySQLClient('mariadb', 'ReplicationCredentialsFile', ''),
      datadirPath: dir,
      source: { mysqlRunning: true, version, dataBytes: 10 * GiB, logBin: true, gtidMode: false, mysqlHost: '', mysqlPort: 3306 },
      sourceMySQL: { host: '127.0.0.1', port: 3306 },
      replicate: false,
      force: false,
      signal: new AbortController().signal,
    });

  test('a target filesystem too small for the source data fails freeSpace with the sizes and what to do', async () => {
    const checks = await run(2 * GiB, 1 * GiB);
    const free = checks.find((c) => c.name === 'freeSpace')!;
    expect(free.ok).toBe(false);
    expect(free.message).toContain('2.0 GiB free plus 1.0 GiB the seed would replace');
    expect(free.message).toContain('11.0 GiB');
    expect(free.message).toContain('free space or choose another target');
    expect(checks.find((c) => c.name === 'sameMajorVersion')?.ok).toBe(true);
    expect(checks.find((c) => c.name === 'noClientConnections')?.ok).toBe(true);
    rmSync(dir, { recursive: true, force: true });
  });

  test('enough room counts the data the seed replaces; another major version fails with the way out', async () => {
    const checks = await run(8 * GiB, 4 * GiB, '10.6.16-MariaDB');
    expect(checks.find((c) => c.name === 'freeSpace')?.ok).toBe(true);
    const version = checks.find((c) => c.name === 'sameMajorVersion')!;
    expect(version.ok).toBe(false);
    expect(version.message).toContain('use method "dump"');
    expect(majorVersion('8.0.36-28')).toBe('8.0');
  });
});
