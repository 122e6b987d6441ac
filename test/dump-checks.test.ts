// The pre-seed checks of a seed by dump: the target's MySQL must run (a dump is loaded into it; startMySQL does
// not apply), no same-version check and no backup program is asked, and nothing on the host is changed.
import { describe, expect, test } from '@jest/globals';
import { defaultConfig } from '../src/config.js';
import type { DatadirOps, MySQLService } from '../src/host/interfaces.js';
import { MySQLClient } from '../src/host/mysql-client.js';
import { inspectDumpTarget, isSystemSchema } from '../src/seeds/dump-checks.js';

const touched: string[] = [];
const stopped: MySQLService = {
  datadir: async () => '/nonexistent',
  port: async () => 3306,
  isRunning: async () => false,
  stop: async () => void touched.push('stop'),
  start: async () => void touched.push('start'),
};
const disk: DatadirOps = {
  diskUsage: async () => 0,
  availableSpace: async () => 1024 ** 4,
  ensureNotInUse: async () => undefined,
  purge: async () => void touched.push('purge'),
};

describe('pre-seed checks of a seed by dump', () => {
  test('a stopped target MySQL fails targetMySQLRunning, saying startMySQL does not apply, and nothing is started, stopped or purged', async () => {
    const checks = await inspectDumpTarget({
      // A backup program that cannot run: the dump's checks must not need one.
      config: { ...defaultConfig(), SeedBackupProgram: '/nonexistent/mariabackup' },
      mysql: stopped,
      datadir: disk,
      client: new MySQLClient('mariadb', 'SeedCredentialsFile', ''),
      replication: new MySQLClient('mariadb', 'ReplicationCredentialsFile', ''),
      datadirPath: '/nonexistent',
      source: { mysqlRunning: true, version: '10.6.1-MariaDB', dataBytes: 1024, logBin: true, gtidMode: false, mysqlHost: '', mysqlPort: 3306, schemas: ['app'] },
      sourceMySQL: { host: '127.0.0.1', port: 3306 },
      replicate: true,
      force: false,
      signal: new AbortController().signal,
    });
    expect(checks.map((c) => [c.name, c.ok])).toEqual([
      ['sourceMySQLRunning', true],
      ['targetMySQLRunning', false],
    ]);
    expect(checks[1]!.message).toContain('startMySQL does not apply to method "dump"');
    expect(touched).toEqual([]);
  });

  test('the server\'s own schemas are never replaced', () => {
    for (const s of ['mysql', 'sys', 'information_schema', 'performance_schema', 'MySQL', '#mysql50#lost+found']) expect(isSystemSchema(s)).toBe(true);
    for (const s of ['app', 'mysql2', 'system']) expect(isSystemSchema(s)).toBe(false);
  });
});
