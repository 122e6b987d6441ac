// A seed by hot backup from a MariaDB source that replicates by GTID itself (primary → source with
// MASTER_USE_GTID=slave_pos and log_slave_updates, writes going on at the primary): the new replica follows
// the source by GTID from the GTID the backup recorded (gtid_slave_pos, MASTER_USE_GTID=slave_pos), not by
// file and position, and ends with the source's GTID position and equal checksums. The backup program is a
// wrapper recording its argv: the configured extra backup and prepare arguments reach mariabackup.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './support/agent-process.js';
import { haveMariaDB, installDatadir, mariadbInstance, runScript, which, type MariaDBInstance } from './support/mariadb.js';
import { startSeedAgent, type SeedAgent, type SeedViewJson } from './support/seed-api.js';
import { taggedPids } from './support/seed-hosts.js';
import { stateDirKey } from '../src/seeds/reaper.js';

const haveBackup = haveMariaDB && which('mariabackup') !== undefined && which('mbstream') !== undefined;
if (!haveBackup) console.log('SKIPPED: seeds by backup need mariadb-server-core, mariadb-client and mariadb-backup (installed by .ci/run)');

const AGENT_PASSWORD = 'agent-pw-gtid-3e9a1c';
const REPL_PASSWORD = 'repl-pw-gtid-77d20b';

type BackupView = SeedViewJson & {
  checks: { name: string; ok: boolean; message: string }[] | null;
  replication: { ioRunning: string; sqlRunning: string; startedFrom: string; caughtUpBy: string | null } | null;
};

function optionFile(path: string, lines: string[]): string {
  writeFileSync(path, ['[client]', ...lines, ''].join('\n'), { mode: 0o600 });
  chmodSync(path, 0o600);
  return path;
}

(haveBackup ? describe : describe.skip)('seeding by hot backup from a source that replicates by GTID, on real MariaDB', () => {
  const dir = tempDir('oa-seed-gtid-');
  let primary: MariaDBInstance;
  let sourceDb: MariaDBInstance;
  let targetDb: MariaDBInstance;
  let source: SeedAgent;
  let target: SeedAgent;
  let writer: ChildProcess | undefined;
  const argvLog = join(dir, 'mariabackup-argv.log');
  const answers: string[] = [];
  const processLists: string[] = [];

  const waitFor = async (what: string, ok: () => boolean, ms = 120000) => {
    const deadline = Date.now() + ms;
    while (!ok()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };

  beforeAll(async () => {
    for (const name of ['primary', 'source', 'target']) installDatadir(join(dir, `${name}-data`));
    primary = await mariadbInstance(dir, join(dir, 'primary-data'), 'primary', [`--log-bin=${join(dir, 'primary-bin')}`, '--server-id=11', '--binlog-format=ROW']);
    sourceDb = await mariadbInstance(dir, join(dir, 'source-data'), 'source', [`--log-bin=${join(dir, 'source-bin')}`, '--server-id=12', '--binlog-format=ROW', '--log-slave-updates']);
    targetDb = await mariadbInstance(dir, join(dir, 'target-data'), 'target', ['--server-id=13']);
    for (const db of [primary, sourceDb, targetDb]) runScript(db.commands.start);
    // The source replicates from the primary by GTID, from the primary's first transaction (its accounts too).
    primary.sql(`CREATE USER repl@'%' IDENTIFIED BY '${REPL_PASSWORD}'; GRANT REPLICATION SLAVE ON *.* TO repl@'%'`);
    sourceDb.sql("SET GLOBAL gtid_slave_pos = ''");
    sourceDb.sql(`CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${primary.port}, MASTER_USER='repl', MASTER_PASSWORD='${REPL_PASSWORD}', MASTER_USE_GTID=slave_pos; START SLAVE`);
    // Accounts and data made on the primary reach the source (and through its copy, the target).
    primary.sql(`CREATE USER agent@localhost IDENTIFIED BY '${AGENT_PASSWORD}'`);
    primary.sql('GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, REPLICATION SLAVE ADMIN, SLAVE MONITOR ON *.* TO agent@localhost');
    primary.sql('CREATE DATABASE gtidtest');
    primary.sql("USE gtidtest; CREATE TABLE gtidtest.t (id INT PRIMARY KEY, v VARCHAR(40), n DOUBLE) ENGINE=InnoDB; INSERT INTO gtidtest.t SELECT seq, CONCAT('row-', seq), seq * 1.5 FROM seq_1_to_20000");
    primary.sql('CREATE TABLE gtidtest.during (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(40), touched INT DEFAULT 0) ENGINE=InnoDB');
    const at = primary.sql('SELECT @@GLOBAL.gtid_binlog_pos');
    await waitFor('the source to replicate the primary', () => sourceDb.sql('SELECT @@GLOBAL.gtid_slave_pos') === at);
    expect(sourceDb.sql('SHOW SLAVE STATUS\\G')).toMatch(/^Slave_Pos$/m); // Using_Gtid (-N leaves out the names)
    targetDb.sql(`CREATE USER agent@localhost IDENTIFIED BY '${AGENT_PASSWORD}'`);
    targetDb.sql('GRANT PROCESS, REPLICATION SLAVE ADMIN, SLAVE MONITOR ON *.* TO agent@localhost');
    targetDb.sql('CREATE DATABASE stale_replica_data');

    // The backup program: mariabackup behind a wrapper that notes its argv.
    const wrapper = join(dir, 'mariabackup-wrapper');
    writeFileSync(wrapper, `#!/bin/bash\nprintf '%s\\n' "$*" >> ${argvLog}\nexec ${which('mariabackup')} "$@"\n`);
    chmodSync(wrapper, 0o755);
    const config = (db: MariaDBInstance, name: string) => ({
      MySQLDatadirCommand: db.commands.datadir,
      MySQLPortCommand: db.commands.port,
      MySQLServiceStatusCommand: db.commands.status,
      MySQLServiceStartCommand: db.commands.start,
      MySQLServiceStopCommand: db.commands.stop,
      MySQLClientCommand: 'mariadb',
      CommandTimeoutSeconds: 120,
      SeedTransferBindAddress: '127.0.0.1',
      SeedBackupProgram: wrapper,
      SeedBackupFlags: ['--parallel=2', '--ftwrl-wait-timeout=30'],
      SeedBackupPrepareFlags: ['--use-memory=64M'],
      SeedCredentialsFile: optionFile(join(dir, `${name}-agent.cnf`), ['user=agent', `password=${AGENT_PASSWORD}`, `socket=${db.socket}`]),
      ReplicationCredentialsFile: optionFile(join(dir, `${name}-repl.cnf`), ['user=repl', `password=${REPL_PASSWORD}`]),
    });
    for (const d of ['source-agent', 'target-agent']) mkdirSync(join(dir, d));
    source = await startSeedAgent(join(dir, 'source-agent'), config(sourceDb, 'source'));
    target = await startSeedAgent(join(dir, 'target-agent'), config(targetDb, 'target'));
  }, 300000);

  afterAll(async () => {
    writer?.kill('SIGKILL');
    for (const a of [source, target]) await a?.agent.stop();
    for (const d of ['source-agent', 'target-agent']) {
      for (const pid of taggedPids(`seed:${stateDirKey(join(dir, d, 'state'))}:`)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    for (const db of [targetDb, sourceDb, primary]) await db?.kill();
    execFileSync('rm', ['-rf', dir]);
  }, 120000);

  test('the new replica follows the source by GTID from the GTID the backup recorded, and ends with the source\'s GTID position', async () => {
    const id = 'backup-gtid';
    writer = spawn('bash', ['-c', `i=0; while true; do i=$((i+1)); mariadb --no-defaults -uroot --socket=${primary.socket} -e "INSERT INTO gtidtest.during (note) VALUES ('w-$i'); UPDATE gtidtest.during SET touched = touched + 1 WHERE id % 7 = $i % 7; UPDATE gtidtest.t SET n = n + 1 WHERE id = $i" || exit 1; done`], { stdio: 'ignore' });
    const psWatch = setInterval(() => {
      try {
        processLists.push(execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }));
      } catch {
        /* ps raced an exiting process */
      }
    }, 200);
    try {
      const created = await target.call<{ seed: BackupView; transfer: { port: number; authKey: string } }>('POST', '/api/seeds', { id, role: 'target', method: 'backup', replicate: true, timeoutSeconds: 600 });
      answers.push(JSON.stringify(created.body));
      expect(created.status).toBe(201);
      // The seed's own compression: the backup stream crosses as zstd.
      const sent = await source.call('POST', '/api/seeds', { id, role: 'source', method: 'backup', targetHost: '127.0.0.1', targetPort: created.body.transfer.port, authKey: created.body.transfer.authKey, compression: 'fast' });
      answers.push(JSON.stringify(sent.body));
      expect(sent.status).toBe(201);
      const tv = (await target.waitFor(id, (v) => v.status !== 'active', 'an end', 400000)) as BackupView;
      const sv = (await source.waitFor(id, (v) => v.status !== 'active', 'an end', 120000)) as BackupView;
      answers.push(JSON.stringify(tv), JSON.stringify(sv));
      expect([tv.status, tv.error]).toEqual(['done', null]);
      expect([sv.status, sv.error]).toEqual(['done', null]);
      // From the GTID the backup recorded: the primary's domain 0 and server 11, passed on by the source.
      expect(tv.replication?.startedFrom).toMatch(/^GTID 0-11-\d+/);
      expect(tv.replication).toMatchObject({ ioRunning: 'Yes', sqlRunning: 'Yes', caughtUpBy: 'position' });
      expect(source.agent.output()).toMatch(/backup streamed .*"compression":"zstd"/);
    } finally {
      clearInterval(psWatch);
      writer.kill('SIGTERM');
    }
    await new Promise<void>((r) => (writer!.exitCode !== null ? r() : writer!.once('exit', () => r())));
    expect(targetDb.sql('SHOW SLAVE STATUS\\G')).toMatch(/^Slave_Pos$/m); // Using_Gtid (-N leaves out the names)
    const final = primary.sql('SELECT @@GLOBAL.gtid_binlog_pos');
    await waitFor('the source to apply the last writes', () => sourceDb.sql('SELECT @@GLOBAL.gtid_binlog_pos') === final);
    await waitFor('the replica to reach the source\'s GTID position', () => targetDb.sql('SELECT @@GLOBAL.gtid_slave_pos') === final);
    for (const table of ['gtidtest.t', 'gtidtest.during']) expect(targetDb.sql(`CHECKSUM TABLE ${table}`)).toBe(sourceDb.sql(`CHECKSUM TABLE ${table}`));
    expect(targetDb.sql("SHOW DATABASES LIKE 'stale_replica_data'")).toBe('');
    // The configured extra arguments came after the agent's own, on both sides.
    const runs = readFileSync(argvLog, 'utf8').trim().split('\n');
    expect(runs.find((r) => r.includes('--backup'))).toMatch(/^--defaults-extra-file=\S+ --backup --stream=xbstream --target-dir=\S+ --datadir=\S+ --parallel=2 --ftwrl-wait-timeout=30$/);
    expect(runs.find((r) => r.includes('--prepare'))).toMatch(/^--prepare --target-dir=\S+ --use-memory=64M$/);
  }, 600000);

  test('the passwords never show in the process list, the logs, the state files or the API answers', () => {
    expect(processLists.length).toBeGreaterThan(0);
    const stateFiles = (agent: SeedAgent) =>
      existsSync(join(agent.stateDir, 'seeds'))
        ? readdirSync(join(agent.stateDir, 'seeds')).filter((f) => f.endsWith('.json')).map((f) => readFileSync(join(agent.stateDir, 'seeds', f), 'utf8'))
        : [];
    const places: Record<string, string> = {
      'process list': processLists.join('\n'),
      'agent logs': [source, target].map((a) => a.agent.output()).join('\n'),
      'state files': [source, target].flatMap(stateFiles).join('\n'),
      'API answers': answers.join('\n'),
    };
    expect(places['state files']).toContain('backup-gtid');
    for (const [where, text] of Object.entries(places)) {
      for (const secret of [AGENT_PASSWORD, REPL_PASSWORD]) {
        if (text.includes(secret)) throw new Error(`${secret} shows in the ${where}`);
      }
    }
  });
});
