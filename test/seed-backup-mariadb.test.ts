// Seeds by hot backup on real MariaDB servers (plain processes) and two real agents over TCP on 127.0.0.1:
// the source keeps taking writes for the whole seed; the target ends as a replica that has caught up. A
// wrong replication password, a source without binary logging, a target filesystem too small (a tmpfs) and a
// client connected to the target each fail in the pre-seed checks, before the target's MySQL is touched. The
// passwords never show in the process list, the agents' logs, the state files or the API answers.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './support/agent-process.js';
import { haveMariaDB, installDatadir, mariadbInstance, runScript, which, type MariaDBInstance } from './support/mariadb.js';
import { startSeedAgent, type SeedAgent, type SeedViewJson } from './support/seed-api.js';
import { taggedPids } from './support/seed-hosts.js';
import { stateDirKey } from '../src/seeds/reaper.js';

const haveBackup = haveMariaDB && which('mariabackup') !== undefined && which('mbstream') !== undefined;
if (!haveBackup) console.log('SKIPPED: seeds by backup need mariadb-server-core, mariadb-client and mariadb-backup (installed by .ci/run)');

const AGENT_PASSWORD = 'agent-pw-7f3a9c2e11';
const REPL_PASSWORD = 'repl-pw-b81d4e5fa0';
const WRONG_PASSWORD = 'wrong-pw-55c0ffee99';

type BackupView = SeedViewJson & {
  method: string;
  checks: { name: string; ok: boolean; message: string }[] | null;
  replication: { ioRunning: string; sqlRunning: string; startedFrom: string; caughtUpTo: string | null } | null;
};

function optionFile(path: string, lines: string[]): string {
  writeFileSync(path, ['[client]', ...lines, ''].join('\n'), { mode: 0o600 });
  chmodSync(path, 0o600);
  return path;
}

(haveBackup ? describe : describe.skip)('seeding by hot backup into a replica, on real MariaDB', () => {
  const dir = tempDir('oa-seed-backup-');
  let sourceDb: MariaDBInstance;
  let targetDb: MariaDBInstance;
  let source: SeedAgent;
  let target: SeedAgent;
  let badTarget: SeedAgent;
  let writer: ChildProcess | undefined;
  let sourceConfig: Record<string, unknown>;
  let targetConfig: Record<string, unknown>;
  let holder: ChildProcess | undefined;
  let agentConfigOf: (db: MariaDBInstance, name: string, repl: string) => Record<string, unknown>;
  const extraDbs: MariaDBInstance[] = [];
  const mounted: string[] = [];
  /** The logs of agents a test started and stopped, for the credentials grep. */
  const stoppedAgentLogs: string[] = [];
  const answers: string[] = [];
  const processLists: string[] = [];

  const call = async <T>(agent: SeedAgent, method: 'GET' | 'POST', path: string, body?: unknown) => {
    const r = await agent.call<T>(method, path, body);
    answers.push(JSON.stringify(r.body));
    return r;
  };
  const finished = (v: { status: string }) => v.status !== 'active';

  beforeAll(async () => {
    const sourceData = join(dir, 'source-data');
    installDatadir(sourceData);
    sourceDb = await mariadbInstance(dir, sourceData, 'source', [`--log-bin=${join(dir, 'source-bin')}`, '--server-id=1', '--binlog-format=ROW']);
    runScript(sourceDb.commands.start);
    // The agent's account (backup on the source; checks and replication set-up on the target, whose users
    // come from the source's copy) and the replication account, with the README's minimal grants.
    sourceDb.sql(`CREATE USER agent@localhost IDENTIFIED BY '${AGENT_PASSWORD}'`);
    sourceDb.sql('GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, REPLICATION SLAVE ADMIN, SLAVE MONITOR ON *.* TO agent@localhost');
    sourceDb.sql(`CREATE USER repl@'%' IDENTIFIED BY '${REPL_PASSWORD}'`);
    sourceDb.sql(`GRANT REPLICATION SLAVE ON *.* TO repl@'%'`);
    sourceDb.sql('CREATE DATABASE seedtest');
    sourceDb.sql('CREATE TABLE seedtest.t (id INT PRIMARY KEY, v VARCHAR(40), n DOUBLE) ENGINE=InnoDB');
    sourceDb.sql("USE seedtest; INSERT INTO seedtest.t SELECT seq, CONCAT('row-', seq), seq * 1.5 FROM seq_1_to_50000");
    sourceDb.sql('CREATE TABLE seedtest.during (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(40), touched INT DEFAULT 0) ENGINE=InnoDB');

    const targetData = join(dir, 'target-data');
    installDatadir(targetData);
    targetDb = await mariadbInstance(dir, targetData, 'target', ['--server-id=2']);
    runScript(targetDb.commands.start);
    targetDb.sql(`CREATE USER agent@localhost IDENTIFIED BY '${AGENT_PASSWORD}'`);
    targetDb.sql('GRANT PROCESS, REPLICATION SLAVE ADMIN, SLAVE MONITOR ON *.* TO agent@localhost');
    targetDb.sql('CREATE DATABASE stale_replica_data');

    const agentConfig = (agentConfigOf = (db: MariaDBInstance, name: string, repl: string) => ({
      MySQLDatadirCommand: db.commands.datadir,
      MySQLPortCommand: db.commands.port,
      MySQLServiceStatusCommand: db.commands.status,
      MySQLServiceStartCommand: db.commands.start,
      MySQLServiceStopCommand: db.commands.stop,
      MySQLClientCommand: 'mariadb',
      CommandTimeoutSeconds: 120,
      SeedTransferBindAddress: '127.0.0.1',
      SeedCredentialsFile: optionFile(join(dir, `${name}-agent.cnf`), ['user=agent', `password=${AGENT_PASSWORD}`, `socket=${db.socket}`]),
      ReplicationCredentialsFile: optionFile(join(dir, `${name}-repl.cnf`), ['user=repl', `password=${repl}`]),
    }));
    for (const d of ['source-agent', 'target-agent', 'bad-target-agent']) mkdirSync(join(dir, d));
    sourceConfig = agentConfig(sourceDb, 'source', REPL_PASSWORD);
    source = await startSeedAgent(join(dir, 'source-agent'), sourceConfig);
    targetConfig = agentConfig(targetDb, 'target', REPL_PASSWORD);
    target = await startSeedAgent(join(dir, 'target-agent'), targetConfig);
    badTarget = await startSeedAgent(join(dir, 'bad-target-agent'), agentConfig(targetDb, 'bad-target', WRONG_PASSWORD));
  }, 300000);

  afterAll(async () => {
    writer?.kill('SIGKILL');
    holder?.kill('SIGKILL');
    for (const a of [source, target, badTarget]) await a?.agent.stop();
    // A stopped agent leaves its steps' programs for its successor to reap; there is none here.
    for (const d of ['source-agent', 'target-agent', 'bad-target-agent', 'nobinlog-agent', 'throttled-source-agent', 'throttled-source-agent-2', 'smallfs-agent']) {
      for (const pid of taggedPids(`seed:${stateDirKey(join(dir, d, 'state'))}:`)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    await sourceDb?.kill();
    for (const db of extraDbs) await db.kill();
    for (const m of mounted) execFileSync('umount', ['-l', m]);
    await targetDb?.kill();
    execFileSync('rm', ['-rf', dir]);
  }, 120000);

  const startSeed = async (tgt: SeedAgent, id: string) => {
    const created = await call<{ seed: BackupView; transfer: { port: number; authKey: string } }>(tgt, 'POST', '/api/seeds', { id, role: 'target', method: 'backup', replicate: true, timeoutSeconds: 600 });
    expect(created.status).toBe(201);
    expect(created.body.seed.method).toBe('backup');
    const sent = await call(source, 'POST', '/api/seeds', { id, role: 'source', method: 'backup', targetHost: '127.0.0.1', targetPort: created.body.transfer.port, authKey: created.body.transfer.authKey });
    expect(sent.status).toBe(201);
  };

  test('a wrong replication password fails the pre-seed checks before the target MySQL is stopped or anything deleted', async () => {
    const id = 'backup-wrong-repl-password';
    await startSeed(badTarget, id);
    const tv = (await badTarget.waitFor(id, finished, 'an end', 120000)) as BackupView;
    const sv = (await source.waitFor(id, finished, 'an end', 120000)) as BackupView;
    answers.push(JSON.stringify(tv), JSON.stringify(sv));
    expect(tv.status).toBe('failed');
    expect(tv.history.map((h) => h.state)).toEqual(['checking', 'cleanup', 'failed']);
    expect(tv.error?.message).toContain('pre-seed checks failed');
    expect(tv.error?.message).toContain('Access denied');
    const failed = tv.checks?.filter((c) => !c.ok).map((c) => c.name);
    expect(failed).toEqual(['replicationAccount']);
    expect(tv.checks?.find((c) => c.name === 'freeSpace')?.ok).toBe(true);
    // The source fails with the target's reason, not a timeout.
    expect(sv.status).toBe('failed');
    expect(sv.error?.message).toContain('pre-seed checks failed');
    // Untouched: the target's MySQL runs on its own data.
    expect(targetDb.sql("SHOW DATABASES LIKE 'stale_replica_data'")).toBe('stale_replica_data');
  }, 240000);

  test('a client connected to the target fails the pre-seed checks, naming it and force, with the target untouched', async () => {
    const id = 'backup-client-connected';
    holder = spawn('mariadb', ['--no-defaults', '-uroot', `--socket=${targetDb.socket}`, '-e', 'SELECT SLEEP(300)'], { stdio: 'ignore' });
    const deadline = Date.now() + 30000;
    while (targetDb.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP%'") === '0' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    try {
      await startSeed(target, id);
      const tv = (await target.waitFor(id, finished, 'an end', 120000)) as BackupView;
      const sv = (await source.waitFor(id, finished, 'an end', 120000)) as BackupView;
      answers.push(JSON.stringify(tv), JSON.stringify(sv));
      expect(tv.status).toBe('failed');
      expect(tv.history.map((h) => h.state)).toEqual(['checking', 'cleanup', 'failed']);
      expect(tv.checks?.filter((c) => !c.ok).map((c) => c.name)).toEqual(['noClientConnections']);
      expect(tv.error?.message).toContain('root@localhost');
      expect(tv.error?.message).toContain('"force": true');
      expect(sv.status).toBe('failed');
      expect(targetDb.sql("SHOW DATABASES LIKE 'stale_replica_data'")).toBe('stale_replica_data');
    } finally {
      holder.kill('SIGKILL');
      // The server ends the client's statement only when told to.
      for (const cid of targetDb.sql("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP%'").split('\n').filter(Boolean)) {
        targetDb.sql(`KILL ${cid}`);
      }
    }
  }, 240000);

  test('a source without binary logging fails the pre-seed checks of a seed that should replicate, with the target untouched', async () => {
    const id = 'backup-no-binlog';
    const data = join(dir, 'nobinlog-data');
    installDatadir(data);
    const db = await mariadbInstance(dir, data, 'nobinlog', ['--server-id=3']);
    extraDbs.push(db);
    runScript(db.commands.start);
    db.sql(`CREATE USER agent@localhost IDENTIFIED BY '${AGENT_PASSWORD}'`);
    db.sql('GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.* TO agent@localhost');
    db.sql(`CREATE USER repl@'%' IDENTIFIED BY '${REPL_PASSWORD}'`);
    db.sql(`GRANT REPLICATION SLAVE ON *.* TO repl@'%'`);
    mkdirSync(join(dir, 'nobinlog-agent'));
    const noBinlog = await startSeedAgent(join(dir, 'nobinlog-agent'), agentConfigOf(db, 'nobinlog', REPL_PASSWORD));
    try {
      const created = await call<{ transfer: { port: number; authKey: string } }>(target, 'POST', '/api/seeds', { id, role: 'target', method: 'backup', replicate: true, timeoutSeconds: 600 });
      expect(created.status).toBe(201);
      const body = { id, role: 'source', method: 'backup', targetHost: '127.0.0.1', targetPort: created.body.transfer.port, authKey: created.body.transfer.authKey };
      expect((await call(noBinlog, 'POST', '/api/seeds', body)).status).toBe(201);
      const tv = (await target.waitFor(id, finished, 'an end', 120000)) as BackupView;
      const sv = (await noBinlog.waitFor(id, finished, 'an end', 120000)) as BackupView;
      answers.push(JSON.stringify(tv), JSON.stringify(sv));
      expect(tv.history.map((h) => h.state)).toEqual(['checking', 'cleanup', 'failed']);
      expect(tv.checks?.filter((c) => !c.ok).map((c) => c.name)).toEqual(['sourceBinaryLog']);
      expect(tv.error?.message).toContain('binary logging off');
      expect(sv.status).toBe('failed');
      expect(targetDb.sql("SHOW DATABASES LIKE 'stale_replica_data'")).toBe('stale_replica_data');
    } finally {
      await noBinlog.agent.stop();
      stoppedAgentLogs.push(noBinlog.agent.output());
    }
  }, 240000);

  test('a target whose filesystem is too small for the source\'s data fails the pre-seed checks, naming the sizes, with its MySQL untouched', async () => {
    const id = 'backup-small-fs';
    // A real MariaDB on a 64 MiB tmpfs (a small redo log so it fits); the source's datadir holds well over that.
    const mnt = join(dir, 'small-fs');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', mnt]);
    mounted.push(mnt);
    const data = join(mnt, 'data');
    execFileSync('mariadb-install-db', ['--no-defaults', '--user=root', `--datadir=${data}`, '--auth-root-authentication-method=normal', '--skip-test-db', '--innodb-log-file-size=4M'], { stdio: 'ignore', timeout: 120000 });
    const db = await mariadbInstance(dir, data, 'smallfs', ['--server-id=4', '--innodb-log-file-size=4M']);
    extraDbs.push(db);
    runScript(db.commands.start);
    db.sql(`CREATE USER agent@localhost IDENTIFIED BY '${AGENT_PASSWORD}'`);
    db.sql('GRANT PROCESS, REPLICATION SLAVE ADMIN, SLAVE MONITOR ON *.* TO agent@localhost');
    db.sql('CREATE DATABASE small_target_data');
    mkdirSync(join(dir, 'smallfs-agent'));
    const small = await startSeedAgent(join(dir, 'smallfs-agent'), agentConfigOf(db, 'smallfs', REPL_PASSWORD));
    try {
      await startSeed(small, id);
      const tv = (await small.waitFor(id, finished, 'an end', 120000)) as BackupView;
      const sv = (await source.waitFor(id, finished, 'an end', 120000)) as BackupView;
      answers.push(JSON.stringify(tv), JSON.stringify(sv));
      expect(tv.status).toBe('failed');
      expect(tv.history.map((h) => h.state)).toEqual(['checking', 'cleanup', 'failed']);
      expect(tv.checks?.filter((c) => !c.ok).map((c) => c.name)).toEqual(['freeSpace']);
      expect(tv.error?.message).toMatch(new RegExp(`${data} has \\d+ MiB free plus \\d+ MiB the seed would replace, the source's data needs \\d+ MiB .*: free space or choose another target`));
      expect(sv.status).toBe('failed');
      expect(sv.error?.message).toContain('pre-seed checks failed');
      // Untouched: still running, on its own data.
      expect(db.sql("SHOW DATABASES LIKE 'small_target_data'")).toBe('small_target_data');
      expect(readdirSync(data)).toContain('small_target_data');
    } finally {
      await small.agent.stop();
      stoppedAgentLogs.push(small.agent.output());
    }
  }, 240000);

  test('a source under writes is seeded by backup into a target that ends replicating, caught up, with equal checksums', async () => {
    const id = 'backup-replica';
    // Inserts and updates for the whole seed, each its own client process.
    writer = spawn('bash', ['-c', `i=0; while true; do i=$((i+1)); mariadb --no-defaults -uroot --socket=${sourceDb.socket} -e "INSERT INTO seedtest.during (note) VALUES ('w-$i'); UPDATE seedtest.during SET touched = touched + 1 WHERE id % 7 = $i % 7; UPDATE seedtest.t SET n = n + 1 WHERE id = $i" || exit 1; done`], { stdio: 'ignore' });
    const psWatch = setInterval(() => {
      try {
        processLists.push(execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }));
      } catch {
        /* ps raced an exiting process */
      }
    }, 100);
    const rowsAtStart = Number(sourceDb.sql('SELECT COUNT(*) FROM seedtest.during'));
    let idAtDone = 0;
    try {
      await startSeed(target, id);
      const progressSeen = await target.waitFor(id, (v) => finished(v) || (v.progress?.bytesDone ?? 0) > 0, 'progress', 240000);
      answers.push(JSON.stringify(progressSeen));
      const tv = (await target.waitFor(id, finished, 'an end', 300000)) as BackupView;
      const sv = (await source.waitFor(id, finished, 'an end', 300000)) as BackupView;
      idAtDone = Number(sourceDb.sql('SELECT MAX(id) FROM seedtest.during'));
      answers.push(JSON.stringify(tv), JSON.stringify(sv));
      expect([tv.status, tv.error]).toEqual(['done', null]);
      expect([sv.status, sv.error]).toEqual(['done', null]);
      expect(tv.history.map((h) => h.state)).toEqual([
        'checking', 'stoppingMySQL', 'purgingDatadir', 'receiving', 'preparing', 'fixingOwner', 'startingMySQL', 'settingUpReplication', 'catchingUp', 'done',
      ]);
      expect(sv.history.map((h) => h.state)).toEqual(['checking', 'streaming', 'done']);
      expect(tv.checks?.every((c) => c.ok)).toBe(true);
      expect(tv.checks?.map((c) => c.name)).toEqual(expect.arrayContaining(['sourceMySQLRunning', 'sameMajorVersion', 'freeSpace', 'noClientConnections', 'sourceBinaryLog', 'replicationAccount']));
      expect(tv.replication).toMatchObject({ ioRunning: 'Yes', sqlRunning: 'Yes' });
      expect(tv.progress?.bytesDone).toBeGreaterThan(0);
      expect(tv.progress?.bytesTotal).toBeGreaterThan(0);
    } finally {
      clearInterval(psWatch);
      writer.kill('SIGTERM');
    }
    await new Promise<void>((r) => (writer!.exitCode !== null ? r() : writer!.once('exit', () => r())));
    // After the writes stopped, the replica catches up to the source's final position.
    const finalRows = sourceDb.sql('SELECT COUNT(*) FROM seedtest.during');
    expect(Number(finalRows)).toBeGreaterThan(rowsAtStart);
    const deadline = Date.now() + 120000;
    while (targetDb.sql('SELECT COUNT(*) FROM seedtest.during') !== finalRows && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    // Every row written while the seed ran is on the replica.
    expect(idAtDone).toBeGreaterThan(rowsAtStart);
    expect(Number(targetDb.sql(`SELECT COUNT(*) FROM seedtest.during WHERE id > ${rowsAtStart} AND id <= ${idAtDone}`))).toBe(idAtDone - rowsAtStart);
    for (const table of ['seedtest.t', 'seedtest.during']) expect(targetDb.sql(`CHECKSUM TABLE ${table}`)).toBe(sourceDb.sql(`CHECKSUM TABLE ${table}`));
    expect(targetDb.sql("SHOW DATABASES LIKE 'stale_replica_data'")).toBe('');
    // ON while both the IO and the SQL thread run.
    expect(targetDb.sql("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'Slave_running'")).toBe('ON');
  }, 600000);

  test('a source agent killed in the middle of the stream comes back, the backup restarts from the beginning, and the seed ends replicating', async () => {
    const id = 'backup-source-killed';
    const dirK = join(dir, 'throttled-source-agent');
    mkdirSync(dirK);
    // Slow enough to be caught in the middle.
    const config = { ...sourceConfig, SeedTransferBandwidthMBps: 8 };
    let throttled = await startSeedAgent(dirK, config);
    try {
      const created = await call<{ transfer: { port: number; authKey: string } }>(target, 'POST', '/api/seeds', { id, role: 'target', method: 'backup', replicate: true, timeoutSeconds: 600 });
      expect(created.status).toBe(201);
      const body = { id, role: 'source', method: 'backup', targetHost: '127.0.0.1', targetPort: created.body.transfer.port, authKey: created.body.transfer.authKey };
      expect((await call(throttled, 'POST', '/api/seeds', body)).status).toBe(201);
      await target.waitFor(id, (v) => finished(v) || (v.state === 'receiving' && (v.progress?.bytesDone ?? 0) > 4 * 1024 * 1024), 'the middle of the stream', 240000);
      await throttled.agent.kill9();
      throttled = await startSeedAgent(dirK, config);
      const tv = (await target.waitFor(id, finished, 'an end', 400000)) as BackupView;
      const sv = (await throttled.waitFor(id, finished, 'an end', 120000)) as BackupView;
      answers.push(JSON.stringify(tv), JSON.stringify(sv));
      expect([tv.status, tv.error]).toEqual(['done', null]);
      expect([sv.status, sv.error]).toEqual(['done', null]);
      expect(tv.warnings.map((w) => w.message).join('\n')).toContain('restarts from the beginning');
      expect(sv.warnings.map((w) => w.message).join('\n')).toContain('restarts from the beginning');
      expect(tv.replication).toMatchObject({ ioRunning: 'Yes', sqlRunning: 'Yes' });
      // No backup program of the killed agent is left running.
      expect(execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })).not.toContain(`mariabackup --defaults-extra-file=${dir}`);
      const deadline = Date.now() + 60000;
      while (targetDb.sql('CHECKSUM TABLE seedtest.during') !== sourceDb.sql('CHECKSUM TABLE seedtest.during') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      for (const table of ['seedtest.t', 'seedtest.during']) expect(targetDb.sql(`CHECKSUM TABLE ${table}`)).toBe(sourceDb.sql(`CHECKSUM TABLE ${table}`));
    } finally {
      await throttled.agent.stop();
    }
  }, 600000);

  test('a target agent killed while it extracts comes back, empties the partial copy, and the backup restarts from the beginning', async () => {
    const id = 'backup-target-killed';
    const dirK = join(dir, 'throttled-source-agent-2');
    mkdirSync(dirK);
    const throttled = await startSeedAgent(dirK, { ...sourceConfig, SeedTransferBandwidthMBps: 8 });
    try {
      const created = await call<{ transfer: { port: number; authKey: string } }>(target, 'POST', '/api/seeds', { id, role: 'target', method: 'backup', replicate: true, timeoutSeconds: 600 });
      expect(created.status).toBe(201);
      const body = { id, role: 'source', method: 'backup', targetHost: '127.0.0.1', targetPort: created.body.transfer.port, authKey: created.body.transfer.authKey };
      expect((await call(throttled, 'POST', '/api/seeds', body)).status).toBe(201);
      await target.waitFor(id, (v) => finished(v) || (v.state === 'receiving' && (v.progress?.bytesDone ?? 0) > 4 * 1024 * 1024), 'the middle of the stream', 240000);
      await target.agent.kill9();
      target = await startSeedAgent(join(dir, 'target-agent'), targetConfig);
      const tv = (await target.waitFor(id, finished, 'an end', 400000)) as BackupView;
      const sv = (await throttled.waitFor(id, finished, 'an end', 120000)) as BackupView;
      answers.push(JSON.stringify(tv), JSON.stringify(sv));
      expect([tv.status, tv.error]).toEqual(['done', null]);
      expect([sv.status, sv.error]).toEqual(['done', null]);
      expect(sv.warnings.map((w) => w.message).join('\n')).toContain('restarts from the beginning');
      expect(tv.replication).toMatchObject({ ioRunning: 'Yes', sqlRunning: 'Yes' });
      expect(execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })).not.toContain(`mbstream -x -C ${dir}`);
      const deadline = Date.now() + 60000;
      while (targetDb.sql('CHECKSUM TABLE seedtest.during') !== sourceDb.sql('CHECKSUM TABLE seedtest.during') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      for (const table of ['seedtest.t', 'seedtest.during']) expect(targetDb.sql(`CHECKSUM TABLE ${table}`)).toBe(sourceDb.sql(`CHECKSUM TABLE ${table}`));
    } finally {
      await throttled.agent.stop();
    }
  }, 600000);

  test('the passwords never show in the process list, the logs, the state files or the API answers', () => {
    expect(processLists.length).toBeGreaterThan(0);
    const stateFiles = (agent: SeedAgent) =>
      readdirSync(join(agent.stateDir, 'seeds')).filter((f) => f.endsWith('.json')).map((f) => readFileSync(join(agent.stateDir, 'seeds', f), 'utf8'));
    const places: Record<string, string> = {
      'process list': processLists.join('\n'),
      'agent logs': [...[source, target, badTarget].map((a) => a.agent.output()), ...stoppedAgentLogs].join('\n'),
      'state files': [source, target, badTarget].flatMap(stateFiles).join('\n'),
      'API answers': answers.join('\n'),
    };
    expect(places['state files']).toContain('backup-replica'); // the places are really there
    for (const [where, text] of Object.entries(places)) {
      for (const secret of [AGENT_PASSWORD, REPL_PASSWORD, WRONG_PASSWORD]) {
        if (text.includes(secret)) throw new Error(`${secret} shows in the ${where}`);
      }
    }
  });
});
