// Setting up replication at the end of a seed, in each server family's words, and the end of catching up.
// No MySQL server runs here (Debian ships none): a stand-in client records its argv and the statements it
// gets on stdin, and answers the replica status from a file the test writes. MariaDB's statements run on a
// real server in seed-backup-gtid-mariadb.test.ts and seed-backup-mariadb.test.ts.
import { describe, expect, test } from '@jest/globals';
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultConfig } from '../src/config.js';
import { AgentError } from '../src/errors.js';
import { withoutEchoedStatements } from '../src/host/mysql-client.js';
import { sourceUsesGtid, sqlFlavor } from '../src/host/replication-sql.js';
import { ensureCaughtUp, ensureReplicationSetUp, REPLICATION, type ReplicationView } from '../src/seeds/steps/replication-steps.js';
import type { StepEnv } from '../src/seeds/steps/step-env.js';
import type { BackupTargetParams } from '../machines/seed-backup-target.js';
import type { SeedFacts, StepInput } from '../machines/seed-common.js';
import { tempDir } from './support/agent-process.js';

const REPL_PASSWORD = 'repl-secret-4c1d';
const GTID_SET = '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,5ad9cd8a-71ca-11e1-9e33-c80aa9429562:1-17';

describe('replication set-up and catching up', () => {
  const dir = tempDir('oa-replication-');
  const argvLog = join(dir, 'argv.log');
  const sqlLog = join(dir, 'sql.log');
  const statusFile = join(dir, 'status.tsv');
  const client = join(dir, 'mysql');
  // Each run: its argv (one line), its stdin (the statements), and for a status query the file's rows.
  writeFileSync(
    client,
    `#!/bin/bash\necho "$*" >> ${argvLog}\nsql=$(cat)\nprintf '%s\\n----\\n' "$sql" >> ${sqlLog}\ncase "$sql" in *STATUS*) cat ${statusFile} ;; esac\n`,
  );
  chmodSync(client, 0o755);
  const creds = join(dir, 'agent.cnf');
  writeFileSync(creds, '[client]\nuser=agent\npassword=agent-secret-77\nsocket=/nowhere.sock\n', { mode: 0o600 });
  const repl = join(dir, 'repl.cnf');
  writeFileSync(repl, `[client]\nuser=repl\npassword=${REPL_PASSWORD}\n`, { mode: 0o600 });
  const statements = () => (existsSync(sqlLog) ? readFileSync(sqlLog, 'utf8').split('\n----\n').filter(Boolean) : []);
  const runs = () => statements().length;

  const params: BackupTargetParams = { method: 'backup', startMySQL: true, replicate: true, sourceMySQL: { host: 'db1', port: 3306 }, force: false, stepByStep: false, port: 1 };
  const env = (maxLag = 0) => {
    const marks: Record<string, string> = {};
    const e = {
      config: { ...defaultConfig(), MySQLClientCommand: client, SeedCredentialsFile: creds, ReplicationCredentialsFile: repl, SeedReplicationMaxLagSeconds: maxLag },
      seed: { id: 'r1', marks: () => marks, mark: (k: string, v: string) => void (marks[k] = v), secrets: () => ({}), setProgress: () => undefined, setWaiting: () => undefined, warn: () => undefined },
    } as unknown as StepEnv;
    return { env: e, view: () => JSON.parse(marks[REPLICATION] ?? 'null') as ReplicationView | null };
  };
  const source = (version: string, gtidMode: boolean): SeedFacts['source'] => ({ mysqlRunning: true, version, dataBytes: 1, logBin: true, gtidMode, mysqlHost: '', mysqlPort: 3306 });
  const input = (facts: SeedFacts): StepInput<BackupTargetParams> => ({ seedId: 'r1', step: 'settingUpReplication', params, deadlines: { seed: Date.now() + 600000, connect: null }, facts });
  const lastStatements = (n: number) => statements().slice(-n).join('\n');
  const signal = new AbortController().signal;

  test('a MySQL 8.0 source with GTIDs: the copy takes the backup\'s GTID set as gtid_purged and replicates with auto-position', async () => {
    const { env: e, view } = env();
    await ensureReplicationSetUp(input({ source: source('8.0.36', true), backupPosition: { file: 'binlog.000007', position: 157, gtid: GTID_SET } }), signal, e);
    expect(lastStatements(2)).toBe(
      [
        'STOP REPLICA;',
        'RESET MASTER;',
        `SET GLOBAL gtid_purged = '${GTID_SET}';`,
        `CHANGE REPLICATION SOURCE TO SOURCE_HOST='db1', SOURCE_PORT=3306, SOURCE_USER='repl', SOURCE_PASSWORD='${REPL_PASSWORD}', SOURCE_AUTO_POSITION=1;`,
        'START REPLICA;',
      ].join('\n'),
    );
    expect(view()?.startedFrom).toBe(`GTID ${GTID_SET}`);
    // The password went on stdin only.
    expect(readFileSync(argvLog, 'utf8')).not.toContain(REPL_PASSWORD);
    expect(readFileSync(argvLog, 'utf8')).toContain(`--defaults-extra-file=${creds}`);
  });

  test('MySQL 8.4 uses the statements that replaced RESET MASTER; MySQL 5.7 the older ones; without GTIDs file and position', async () => {
    const at = { file: 'binlog.000007', position: 157, gtid: GTID_SET };
    await ensureReplicationSetUp(input({ source: source('8.4.3', true), backupPosition: at }), signal, env().env);
    expect(lastStatements(2)).toContain('RESET BINARY LOGS AND GTIDS;');
    expect(lastStatements(2)).not.toContain('RESET MASTER');
    await ensureReplicationSetUp(input({ source: source('5.7.44-log', true), backupPosition: at }), signal, env().env);
    expect(lastStatements(2)).toBe(
      [
        'STOP SLAVE;',
        'RESET MASTER;',
        `SET GLOBAL gtid_purged = '${GTID_SET}';`,
        `CHANGE MASTER TO MASTER_HOST='db1', MASTER_PORT=3306, MASTER_USER='repl', MASTER_PASSWORD='${REPL_PASSWORD}', MASTER_AUTO_POSITION=1;`,
        'START SLAVE;',
      ].join('\n'),
    );
    await ensureReplicationSetUp(input({ source: source('8.0.36', false), backupPosition: at }), signal, env().env);
    expect(lastStatements(2)).toBe(
      [
        'STOP REPLICA;',
        `CHANGE REPLICATION SOURCE TO SOURCE_HOST='db1', SOURCE_PORT=3306, SOURCE_USER='repl', SOURCE_PASSWORD='${REPL_PASSWORD}', SOURCE_AUTO_POSITION=0, SOURCE_LOG_FILE='binlog.000007', SOURCE_LOG_POS=157;`,
        'START REPLICA;',
      ].join('\n'),
    );
  });

  test('after a backup, a login refused on this MySQL says it now has the source\'s accounts and what to put in SeedCredentialsFile', async () => {
    const denying = join(dir, 'mysql-denied');
    writeFileSync(denying, `#!/bin/bash\ncat >/dev/null\necho "ERROR 1045 (28000): Access denied for user 'agent'@'localhost' (using password: YES)" >&2\nexit 1\n`);
    chmodSync(denying, 0o755);
    const { env: e } = env();
    (e.config as { MySQLClientCommand: string }).MySQLClientCommand = denying;
    const at = { source: source('10.11.6-MariaDB-log', false), backupPosition: { file: 'binlog.000007', position: 157, gtid: '' } };
    const err = (await ensureReplicationSetUp(input(at), signal, e).catch((x: unknown) => x)) as AgentError;
    expect(err).toBeInstanceOf(AgentError);
    expect(err.message).toContain("Access denied for user 'agent'@'localhost'");
    expect(err.message).toContain("after the backup this MySQL has the source's accounts and passwords, not its own");
    expect(err.hint).toContain(`SeedCredentialsFile on this host (${creds}) must name an account of the source with the source's password`);
    // A dump keeps the target's own accounts: the generic hint stays.
    const dumpInput = { ...input(at), params: { ...params, method: 'dump' } } as unknown as StepInput<BackupTargetParams>;
    const dumpErr = (await ensureReplicationSetUp(dumpInput, signal, e).catch((x: unknown) => x)) as AgentError;
    expect(dumpErr.message).not.toContain('after the backup');
    expect(dumpErr.hint).toContain('check the account in SeedCredentialsFile');
  });

  test('a CHANGE MASTER the server refuses fails with the server\'s error, never with the statement and its password', async () => {
    // MariaDB's client, reading stdin, echoes the failing statement between lines of 14 dashes before the error.
    const refusing = join(dir, 'mysql-refused');
    writeFileSync(refusing, `#!/bin/bash\nsql=$(cat)\nprintf -- '--------------\\n%s\\n--------------\\n\\n' "$sql" >&2\necho "ERROR 1227 (42000) at line 1: Access denied; you need (at least one of) the SUPER, REPLICATION SLAVE ADMIN privilege(s) for this operation" >&2\nexit 1\n`);
    chmodSync(refusing, 0o755);
    const { env: e, view } = env();
    (e.config as { MySQLClientCommand: string }).MySQLClientCommand = refusing;
    const at = { source: source('10.11.6-MariaDB-log', false), backupPosition: { file: 'binlog.000007', position: 157, gtid: '' } };
    const err = (await ensureReplicationSetUp(input(at), signal, e).catch((x: unknown) => x)) as AgentError;
    expect(err).toBeInstanceOf(AgentError);
    expect(err.message).toContain('ERROR 1227 (42000) at line 1: Access denied; you need (at least one of) the SUPER, REPLICATION SLAVE ADMIN privilege(s)');
    expect(JSON.stringify({ message: err.message, hint: err.hint, details: err.details })).not.toContain(REPL_PASSWORD);
    expect(err.message).not.toContain('CHANGE MASTER');
    expect(view()).toBeNull();
    // A tail cut inside the echo keeps only the server's error lines.
    expect(withoutEchoedStatements(`…SOURCE_PASSWORD='${REPL_PASSWORD}'\n--------------\n\nERROR 1227 (42000) at line 1: denied`)).toBe('ERROR 1227 (42000) at line 1: denied');
  });

  test('set up again after a restart, it only starts the threads', async () => {
    const { env: e } = env();
    const i = input({ source: source('8.0.36', true), backupPosition: { file: 'binlog.000007', position: 157, gtid: GTID_SET } });
    await ensureReplicationSetUp(i, signal, e);
    const before = runs();
    await ensureReplicationSetUp(i, signal, e);
    expect(runs()).toBe(before + 1);
    expect(lastStatements(1)).toBe('START REPLICA;');
  });

  const status = (io: string, sqlThread: string, file: string, pos: number, behind: string, modern = true) => {
    const cols = modern
      ? ['Replica_IO_Running', 'Replica_SQL_Running', 'Relay_Source_Log_File', 'Exec_Source_Log_Pos', 'Seconds_Behind_Source', 'Last_IO_Errno', 'Last_IO_Error', 'Last_SQL_Errno', 'Last_SQL_Error']
      : ['Slave_IO_Running', 'Slave_SQL_Running', 'Relay_Master_Log_File', 'Exec_Master_Log_Pos', 'Seconds_Behind_Master', 'Last_IO_Errno', 'Last_IO_Error', 'Last_SQL_Errno', 'Last_SQL_Error'];
    // Whole or not at all: the step may be reading it right now.
    writeFileSync(`${statusFile}.tmp`, `${cols.join('\t')}\n${[io, sqlThread, file, String(pos), behind, '0', '', '0', ''].join('\t')}\n`);
    renameSync(`${statusFile}.tmp`, statusFile);
  };
  const end = { file: 'binlog.000007', position: 9000, gtid: '' };
  const catching = (version: string) => input({ source: source(version, true), positionAtEnd: end });

  /** Runs the step until it has read the status `reads` more times while still waiting, then returns its promise. */
  async function pendingAfter(p: Promise<unknown>, reads: number): Promise<{ settled: boolean }> {
    let settled = false;
    void p.then(() => (settled = true), () => (settled = true));
    const from = runs();
    while (runs() < from + reads && !settled) await new Promise((r) => setTimeout(r, 50));
    return { settled };
  }

  test('with SeedReplicationMaxLagSeconds 0 (the default) a replica lagging a second is not done until it has applied up to the copy\'s end', async () => {
    expect(defaultConfig().SeedReplicationMaxLagSeconds).toBe(0);
    const { env: e, view } = env(0);
    status('Yes', 'Yes', 'binlog.000007', 5000, '1');
    const step = ensureCaughtUp(catching('8.0.36'), signal, e);
    expect(await pendingAfter(step, 2)).toEqual({ settled: false });
    expect(view()).toMatchObject({ executed: 'binlog.000007:5000', secondsBehind: 1, caughtUpTo: 'binlog.000007:9000', caughtUpBy: null });
    status('Yes', 'Yes', 'binlog.000007', 9000, '0');
    await step;
    expect(view()).toMatchObject({ executed: 'binlog.000007:9000', caughtUpBy: 'position' });
  });

  test('with SeedReplicationMaxLagSeconds 5 a replica is done once it lags 5 seconds or less, short of the position', async () => {
    const { env: e, view } = env(5);
    status('Yes', 'Yes', 'binlog.000006', 100, '30', false);
    const step = ensureCaughtUp(catching('10.11.6-MariaDB'), signal, e);
    expect(await pendingAfter(step, 2)).toEqual({ settled: false });
    expect(view()).toMatchObject({ secondsBehind: 30, caughtUpBy: null });
    // Seconds behind unknown (NULL) does not count as caught up.
    status('Yes', 'Yes', 'binlog.000006', 200, 'NULL', false);
    expect(await pendingAfter(step, 2)).toEqual({ settled: false });
    status('Yes', 'Yes', 'binlog.000006', 300, '5', false);
    await step;
    expect(view()).toMatchObject({ executed: 'binlog.000006:300', secondsBehind: 5, caughtUpBy: 'lag' });
    expect(lastStatements(1)).toBe('SHOW SLAVE STATUS');
  });

  test('whether a source uses GTIDs: MySQL by gtid_mode; MariaDB by gtid_strict_mode or its own replication by GTID', async () => {
    const answers = (map: Record<string, Array<Record<string, string>>>) => async (sql: string) => {
      if (!(sql in map)) throw new Error(`denied: ${sql}`);
      return map[sql]!;
    };
    expect(await sourceUsesGtid(sqlFlavor('8.0.36'), answers({ 'SELECT @@GLOBAL.gtid_mode': [{ g: 'ON' }] }))).toBe(true);
    expect(await sourceUsesGtid(sqlFlavor('8.0.36'), answers({ 'SELECT @@GLOBAL.gtid_mode': [{ g: 'OFF' }] }))).toBe(false);
    const maria = sqlFlavor('10.11.19-MariaDB-0+deb12u1');
    expect(await sourceUsesGtid(maria, answers({ 'SELECT @@GLOBAL.gtid_strict_mode': [{ g: '1' }] }))).toBe(true);
    expect(await sourceUsesGtid(maria, answers({ 'SELECT @@GLOBAL.gtid_strict_mode': [{ g: '0' }], 'SHOW ALL SLAVES STATUS': [{ Using_Gtid: 'Slave_Pos' }] }))).toBe(true);
    expect(await sourceUsesGtid(maria, answers({ 'SELECT @@GLOBAL.gtid_strict_mode': [{ g: '0' }], 'SHOW ALL SLAVES STATUS': [{ Using_Gtid: 'No' }] }))).toBe(false);
    expect(await sourceUsesGtid(maria, answers({ 'SELECT @@GLOBAL.gtid_strict_mode': [{ g: '0' }], 'SHOW ALL SLAVES STATUS': [] }))).toBe(false);
    // Without SLAVE MONITOR the replica follows file and position, which works as well.
    expect(await sourceUsesGtid(maria, answers({ 'SELECT @@GLOBAL.gtid_strict_mode': [{ g: '0' }] }))).toBe(false);
  });
});
