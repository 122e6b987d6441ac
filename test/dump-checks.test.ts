// The pre-seed checks of a seed by dump: the target's MySQL must run (a dump is loaded into it; startMySQL does
// not apply), no same-version check and no backup program is asked, and nothing on the host is changed.
import { describe, expect, test } from '@jest/globals';
import { defaultConfig } from '../src/config.js';
import type { DatadirOps, MySQLService } from '../src/host/interfaces.js';
import { MySQLClient } from '../src/host/mysql-client.js';
import { inspectDumpTarget, isSystemSchema, missingLoadPrivileges } from '../src/seeds/dump-checks.js';

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

  test('loadPrivileges: what the account lacks per replaced schema, from SHOW GRANTS lines as MariaDB and MySQL print them', () => {
    // The source's agent account after a backup seed (README's backup grants): it cannot drop or load anything.
    const backupAccount = ["GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, REPLICATION SLAVE ADMIN, SLAVE MONITOR ON *.* TO `agent`@`localhost` IDENTIFIED BY PASSWORD '*0D3CED9BEC10A777AEC23CCC353A8C08A633045E'"];
    expect(Object.fromEntries(missingLoadPrivileges(backupAccount, ['app', 'shop'])!)).toEqual({ app: ['CREATE', 'DROP', 'INSERT', 'ALTER'], shop: ['CREATE', 'DROP', 'INSERT', 'ALTER'] });
    // README's dump target grants: nothing missing.
    const dumpAccount = ['GRANT SELECT, INSERT, CREATE, DROP, INDEX, ALTER, LOCK TABLES, CREATE VIEW, SHOW VIEW, TRIGGER, CREATE ROUTINE, ALTER ROUTINE, EVENT, REFERENCES, SET USER, PROCESS ON *.* TO `agent`@`localhost`'];
    expect(missingLoadPrivileges(dumpAccount, ['app'])!.size).toBe(0);
    // Schema-level grants count for their schemas only, with LIKE patterns and their escapes; ALL PRIVILEGES covers all.
    const perSchema = ['GRANT USAGE ON *.* TO `a`@`%`', 'GRANT ALL PRIVILEGES ON `app\\_%`.* TO `a`@`%`', 'GRANT SELECT, INSERT, CREATE, DROP, ALTER, LOCK TABLES ON `shop`.* TO `a`@`%`'];
    expect([...missingLoadPrivileges(perSchema, ['app_eu', 'shop', 'appx', 'other'])!.keys()]).toEqual(['appx', 'other']);
    // MySQL 8 prints dynamic privileges on their own line, without spaces after commas.
    expect(missingLoadPrivileges(['GRANT SELECT,INSERT,CREATE,DROP,ALTER,LOCK TABLES ON *.* TO `agent`@`localhost`', 'GRANT BACKUP_ADMIN,REPLICATION_SLAVE_ADMIN ON *.* TO `agent`@`localhost`'], ['app'])!.size).toBe(0);
    // A role's privileges are not on the lines: the check cannot tell, so it does not fail.
    expect(missingLoadPrivileges(['GRANT USAGE ON *.* TO `a`@`%`', 'GRANT `loader` TO `a`@`%`'], ['app'])).toBeNull();
  });

  test('the server\'s own schemas are never replaced', () => {
    for (const s of ['mysql', 'sys', 'information_schema', 'performance_schema', 'MySQL', '#mysql50#lost+found']) expect(isSystemSchema(s)).toBe(true);
    for (const s of ['app', 'mysql2', 'system']) expect(isSystemSchema(s)).toBe(false);
  });
});
