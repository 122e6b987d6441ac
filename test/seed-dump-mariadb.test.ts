// Seeds by logical dump on real MariaDB servers (plain processes) and two real agents over TCP on 127.0.0.1:
// the source keeps taking writes for the whole seed; the dump streams straight into the target's running
// MySQL, which ends as a replica that has caught up. A client connected to the target fails the pre-seed
// checks before any schema is dropped. The passwords never show in the process list, the agents' logs, the
// state files or the API answers. kill -9 of either agent in every state (a stream cut and loaded again from
// the beginning among them) is in test/seeds-kill9.test.ts.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './support/agent-process.js';
import { haveMariaDB, installDatadir, mariadbInstance, runScript, which, type MariaDBInstance } from './support/mariadb.js';
import { startSeedAgent, type SeedAgent, type SeedViewJson } from './support/seed-api.js';
import { taggedPids } from './support/seed-hosts.js';
import { stateDirKey } from '../src/seeds/reaper.js';

const haveDump = haveMariaDB && which('mariadb-dump') !== undefined;
if (!haveDump) console.log('SKIPPED: seeds by dump need mariadb-server-core and mariadb-client (installed by .ci/run)');

const AGENT_PASSWORD = 'agent-pw-d0e1f2a3b4';
const TARGET_AGENT_PASSWORD = 'tagent-pw-99aa88bb77';
const REPL_PASSWORD = 'repl-pw-c4d5e6f7a8';
const WEAK_PASSWORD = 'weak-pw-1a2b3c4d5e';

type DumpView = SeedViewJson & {
  checks: { name: string; ok: boolean; message: string }[] | null;
  replication: { ioRunning: string; sqlRunning: string; startedFrom: string; caughtUpTo: string | null } | null;
};

function optionFile(path: string, lines: string[]): string {
  writeFileSync(path, ['[client]', ...lines, ''].join('\n'), { mode: 0o600 });
  chmodSync(path, 0o600);
  return path;
}

(haveDump ? describe : describe.skip)('seeding by logical dump into a replica, on real MariaDB', () => {
  const dir = tempDir('oa-seed-dump-');
  let sourceDb: MariaDBInstance;
  let targetDb: MariaDBInstance;
  let source: SeedAgent;
  let target: SeedAgent;
  let writer: ChildProcess | undefined;
  let holder: ChildProcess | undefined;
  const answers: string[] = [];
  const processLists: string[] = [];
  const agentDirs = ['source-agent', 'target-agent', 'weak-target-agent'];
  let weakTarget: SeedAgent;

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
    // The README's minimal grants: the dump on the source; the load, the checks and replication on the target.
    sourceDb.sql(`CREATE USER agent@localhost IDENTIFIED BY '${AGENT_PASSWORD}'`);
    sourceDb.sql('GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, BINLOG MONITOR ON *.* TO agent@localhost');
    sourceDb.sql(`CREATE USER repl@'%' IDENTIFIED BY '${REPL_PASSWORD}'`);
    sourceDb.sql(`GRANT REPLICATION SLAVE ON *.* TO repl@'%'`);
    sourceDb.sql('CREATE DATABASE seedtest');
    sourceDb.sql('CREATE TABLE seedtest.t (id INT PRIMARY KEY, v VARCHAR(40), n DOUBLE) ENGINE=InnoDB');
    sourceDb.sql("USE seedtest; INSERT INTO seedtest.t SELECT seq, CONCAT('row-', seq), seq * 1.5 FROM seq_1_to_50000");
    sourceDb.sql('CREATE TABLE seedtest.during (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(40), touched INT DEFAULT 0) ENGINE=InnoDB');
    sourceDb.sql('CREATE VIEW seedtest.recent AS SELECT id, note FROM seedtest.during WHERE id > 10');
    sourceDb.sql('CREATE DATABASE app2');
    sourceDb.sql("CREATE TABLE app2.k (k VARCHAR(20) PRIMARY KEY, val TEXT) ENGINE=InnoDB");
    sourceDb.sql("INSERT INTO app2.k VALUES ('a', 'line one\\n-- CHANGE MASTER TO MASTER_LOG_FILE=''x'', MASTER_LOG_POS=4;'), ('b', 'two')");

    const targetData = join(dir, 'target-data');
    installDatadir(targetData);
    targetDb = await mariadbInstance(dir, targetData, 'target', ['--server-id=2']);
    runScript(targetDb.commands.start);
    targetDb.sql(`CREATE USER agent@localhost IDENTIFIED BY '${TARGET_AGENT_PASSWORD}'`);
    targetDb.sql(
      'GRANT SELECT, INSERT, CREATE, DROP, ALTER, INDEX, CREATE VIEW, SHOW VIEW, TRIGGER, CREATE ROUTINE, ALTER ROUTINE, EVENT, LOCK TABLES, REFERENCES, SET USER, PROCESS, REPLICATION SLAVE ADMIN, SLAVE MONITOR ON *.* TO agent@localhost',
    );
    // seedtest comes with the dump (replaced); keep_me does not (stays).
    // An account the dump cannot be loaded with (no INSERT).
    targetDb.sql(`CREATE USER weak@localhost IDENTIFIED BY '${WEAK_PASSWORD}'`);
    // Enough for the tables (what the loadPrivileges check asks), not for the source's view.
    targetDb.sql('GRANT SELECT, INSERT, CREATE, DROP, ALTER, INDEX, SHOW VIEW, TRIGGER, LOCK TABLES, SET USER, PROCESS, REPLICATION SLAVE ADMIN, SLAVE MONITOR ON *.* TO weak@localhost');
    targetDb.sql('CREATE DATABASE seedtest');
    targetDb.sql('CREATE TABLE seedtest.old_only (i INT)');
    targetDb.sql('CREATE DATABASE keep_me');
    targetDb.sql('CREATE TABLE keep_me.x (i INT)');

    const agentConfig = (db: MariaDBInstance, name: string, password: string, user = 'agent') => ({
      MySQLDatadirCommand: db.commands.datadir,
      MySQLPortCommand: db.commands.port,
      MySQLServiceStatusCommand: db.commands.status,
      MySQLServiceStartCommand: db.commands.start,
      MySQLServiceStopCommand: db.commands.stop,
      MySQLClientCommand: 'mariadb',
      CommandTimeoutSeconds: 120,
      SeedTransferBindAddress: '127.0.0.1',
      SeedCredentialsFile: optionFile(join(dir, `${name}-agent.cnf`), [`user=${user}`, `password=${password}`, `socket=${db.socket}`]),
      ReplicationCredentialsFile: optionFile(join(dir, `${name}-repl.cnf`), ['user=repl', `password=${REPL_PASSWORD}`]),
    });
    for (const d of agentDirs) mkdirSync(join(dir, d));
    // The dump program as the agent runs it, behind a wrapper that reads the process list while it is in it
    // (the agent reads a small dump faster than a poll of ps would see it), then runs the real mariadb-dump.
    mkdirSync(join(dir, 'bin'));
    const dumpWrapper = join(dir, 'bin', 'mariadb-dump');
    writeFileSync(dumpWrapper, `#!/bin/bash\nps -eo args >> ${join(dir, 'ps-during-dump.txt')}\nexec ${which('mariadb-dump')} "$@"\n`, { mode: 0o755 });
    // Throttled too, so that the dump runs for a few seconds and the polled process list may see it as well.
    source = await startSeedAgent(join(dir, 'source-agent'), { ...agentConfig(sourceDb, 'source', AGENT_PASSWORD), SeedTransferBandwidthMBps: 1, SeedDumpProgram: dumpWrapper, SeedTransferCompression: 'strong' });
    target = await startSeedAgent(join(dir, 'target-agent'), agentConfig(targetDb, 'target', TARGET_AGENT_PASSWORD));
    weakTarget = await startSeedAgent(join(dir, 'weak-target-agent'), agentConfig(targetDb, 'weak-target', WEAK_PASSWORD, 'weak'));
  }, 300000);

  afterAll(async () => {
    clearInterval(psWatch);
    writer?.kill('SIGKILL');
    holder?.kill('SIGKILL');
    for (const a of [source, target, weakTarget]) await a?.agent.stop();
    for (const d of agentDirs) {
      for (const pid of taggedPids(`seed:${stateDirKey(join(dir, d, 'state'))}:`)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    await sourceDb?.kill();
    await targetDb?.kill();
    execFileSync('rm', ['-rf', dir]);
  }, 120000);

  // The process list, every 100 ms while seeds run (the throttled dump shows mariadb-dump for seconds).
  let psWatch: ReturnType<typeof setInterval> | undefined;
  const watchProcesses = () => {
    psWatch ??= setInterval(() => {
      try {
        processLists.push(execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((l) => /mariadb|mysql/.test(l)).join('\n'));
      } catch {
        /* ps raced an exiting process */
      }
    }, 100);
  };

  const startSeed = async (src: SeedAgent, id: string, tgt = target) => {
    watchProcesses();
    const created = await call<{ seed: DumpView; transfer: { port: number; authKey: string } }>(tgt, 'POST', '/api/seeds', { id, role: 'target', method: 'dump', replicate: true, timeoutSeconds: 600 });
    expect(created.status).toBe(201);
    expect(created.body.seed.method).toBe('dump');
    const sent = await call(src, 'POST', '/api/seeds', { id, role: 'source', method: 'dump', targetHost: '127.0.0.1', targetPort: created.body.transfer.port, authKey: created.body.transfer.authKey });
    expect(sent.status).toBe(201);
  };

  test('a client connected to the target fails the pre-seed checks before any schema is dropped', async () => {
    const id = 'dump-client-connected';
    holder = spawn('mariadb', ['--no-defaults', '-uroot', `--socket=${targetDb.socket}`, '-e', 'SELECT SLEEP(300)'], { stdio: 'ignore' });
    const deadline = Date.now() + 30000;
    while (targetDb.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP%'") === '0' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    try {
      await startSeed(source, id);
      const tv = (await target.waitFor(id, finished, 'an end', 120000)) as DumpView;
      const sv = (await source.waitFor(id, finished, 'an end', 120000)) as DumpView;
      answers.push(JSON.stringify(tv), JSON.stringify(sv));
      expect(tv.status).toBe('failed');
      expect(tv.history.map((h) => h.state)).toEqual(['checking', 'cleanup', 'failed']);
      expect(tv.checks?.filter((c) => !c.ok).map((c) => c.name)).toEqual(['noClientConnections']);
      // The checks name what the dump would replace, and no same-version check applies to a dump.
      expect(tv.checks?.find((c) => c.name === 'schemasReplaced')?.message).toContain('app2, seedtest');
      expect(tv.checks?.map((c) => c.name)).not.toContain('sameMajorVersion');
      expect(tv.error?.message).toContain('root@localhost');
      expect(sv.status).toBe('failed');
      expect(sv.error?.message).toContain('pre-seed checks failed');
      // Nothing dropped.
      expect(targetDb.sql("SHOW TABLES FROM seedtest LIKE 'old_only'")).toBe('old_only');
    } finally {
      holder.kill('SIGKILL');
      for (const cid of targetDb.sql("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP%'").split('\n').filter(Boolean)) {
        targetDb.sql(`KILL ${cid}`);
      }
    }
  }, 240000);

  test('a target account without INSERT fails the loadPrivileges check, naming what it lacks, and nothing is dropped', async () => {
    const id = 'dump-no-insert';
    targetDb.sql('REVOKE INSERT ON *.* FROM weak@localhost');
    try {
      await startSeed(source, id, weakTarget);
      const tv = (await weakTarget.waitFor(id, finished, 'an end', 120000)) as DumpView;
      answers.push(JSON.stringify(tv));
      expect(tv.status).toBe('failed');
      expect(tv.history.map((h) => h.state)).toEqual(['checking', 'cleanup', 'failed']);
      const check = tv.checks?.find((c) => c.name === 'loadPrivileges');
      expect(check?.ok).toBe(false);
      expect(check?.message).toContain('the SeedCredentialsFile account weak@localhost lacks INSERT on app2, seedtest here');
      // Nothing dropped: a schema the dump would replace keeps its own table.
      expect(targetDb.sql("SHOW TABLES FROM seedtest LIKE 'old_only'")).toBe('old_only');
    } finally {
      targetDb.sql('GRANT INSERT ON *.* TO weak@localhost');
    }
  }, 240000);

  test('a load the target account may not run fails both seeds at once with the client\'s message, and the half-loaded schemas are dropped', async () => {
    const id = 'dump-load-refused';
    await startSeed(source, id, weakTarget);
    const tv = (await weakTarget.waitFor(id, finished, 'an end', 120000)) as DumpView;
    // The source is told the failure is permanent: it does not retry until its reconnect deadline.
    const sv = (await source.waitFor(id, finished, 'an end', 60000)) as DumpView;
    answers.push(JSON.stringify(tv), JSON.stringify(sv));
    expect(tv.status).toBe('failed');
    expect(tv.history.map((h) => h.state)).toEqual(['checking', 'droppingSchemas', 'loading', 'cleanup', 'failed']);
    expect(tv.error?.message).toContain('loading the dump into this MySQL failed');
    expect(tv.error?.message).toContain('CREATE VIEW command denied');
    // Without the statement the client echoed before its error (the source's rows or definitions).
    expect(tv.error?.message).not.toContain('--------------');
    expect(tv.error?.message).not.toMatch(/select .*`during`/i);
    expect(sv.status).toBe('failed');
    expect(sv.error?.message).toContain('CREATE VIEW command denied');
    // What the failed load left is dropped; the schemas the dump does not bring stay.
    expect(targetDb.sql("SHOW DATABASES LIKE 'seedtest'")).toBe('');
    expect(targetDb.sql("SHOW DATABASES LIKE 'app2'")).toBe('');
    expect(targetDb.sql("SHOW TABLES FROM keep_me LIKE 'x'")).toBe('x');
  }, 240000);

  test('a source under writes is seeded by dump into a target that ends replicating, caught up, with equal checksums', async () => {
    const id = 'dump-replica';
    writer = spawn('bash', ['-c', `i=0; while true; do i=$((i+1)); mariadb --no-defaults -uroot --socket=${sourceDb.socket} -e "INSERT INTO seedtest.during (note) VALUES ('w-$i'); UPDATE seedtest.during SET touched = touched + 1 WHERE id % 7 = $i % 7; UPDATE seedtest.t SET n = n + 1 WHERE id = $i" || exit 1; done`], { stdio: 'ignore' });
    // Some writes before the seed starts, more during it.
    const waitRows = Date.now() + 30000;
    while (Number(sourceDb.sql('SELECT COUNT(*) FROM seedtest.during')) < 20 && Date.now() < waitRows) await new Promise((r) => setTimeout(r, 100));
    const rowsAtStart = Number(sourceDb.sql('SELECT COUNT(*) FROM seedtest.during'));
    let idAtDone = 0;
    try {
      await startSeed(source, id);
      const tv = (await target.waitFor(id, finished, 'an end', 300000)) as DumpView;
      const sv = (await source.waitFor(id, finished, 'an end', 300000)) as DumpView;
      idAtDone = Number(sourceDb.sql('SELECT MAX(id) FROM seedtest.during'));
      answers.push(JSON.stringify(tv), JSON.stringify(sv));
      expect([tv.status, tv.error]).toEqual(['done', null]);
      expect([sv.status, sv.error]).toEqual(['done', null]);
      expect(tv.history.map((h) => h.state)).toEqual(['checking', 'droppingSchemas', 'loading', 'settingUpReplication', 'catchingUp', 'done']);
      expect(sv.history.map((h) => h.state)).toEqual(['checking', 'streaming', 'done']);
      expect(tv.checks?.every((c) => c.ok)).toBe(true);
      expect(tv.checks?.map((c) => c.name)).toEqual(['sourceMySQLRunning', 'targetMySQLRunning', 'freeSpace', 'noReplicasAttached', 'noClientConnections', 'schemasReplaced', 'loadPrivileges', 'sourceBinaryLog', 'replicationAccount', 'seedAccount']);
      expect(tv.replication).toMatchObject({ ioRunning: 'Yes', sqlRunning: 'Yes' });
      // The position the dump recorded in its header (file:pos), not a line that only looks like one in the data.
      expect(tv.replication?.startedFrom).toMatch(/^source-bin\.\d+:\d+$/);
      expect(tv.replication?.startedFrom).not.toBe("x:4");
      expect(tv.progress?.bytesDone).toBeGreaterThan(0);
      // SeedTransferCompression applies to the stream too: the dump's text crossed as zstd, in fewer bytes.
      const streamed = /dump streamed .*"bytes":(\d+),"compression":"zstd","wireBytes":(\d+)/.exec(source.agent.output());
      expect(streamed).not.toBeNull();
      expect(Number(streamed![2])).toBeLessThan(Number(streamed![1]) / 2);
      // The source seed's view says it too.
      expect(sv.progress?.wire).toEqual({ compression: 'zstd', dataBytes: Number(streamed![1]), wireBytes: Number(streamed![2]) });
    } finally {
      writer.kill('SIGTERM');
    }
    await new Promise<void>((r) => (writer!.exitCode !== null ? r() : writer!.once('exit', () => r())));
    expect(Number(sourceDb.sql('SELECT COUNT(*) FROM seedtest.during'))).toBeGreaterThan(rowsAtStart);
    // A client the writer had started may still commit after it ended: compare with the source as it is now.
    const deadline = Date.now() + 120000;
    const settled = () => ['seedtest.t', 'seedtest.during'].every((t) => targetDb.sql(`CHECKSUM TABLE ${t}`) === sourceDb.sql(`CHECKSUM TABLE ${t}`));
    while (!settled() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    // Every row written while the seed ran is on the replica.
    expect(idAtDone).toBeGreaterThan(rowsAtStart);
    expect(Number(targetDb.sql(`SELECT COUNT(*) FROM seedtest.during WHERE id > ${rowsAtStart} AND id <= ${idAtDone}`))).toBe(idAtDone - rowsAtStart);
    for (const table of ['seedtest.t', 'seedtest.during', 'app2.k']) expect(targetDb.sql(`CHECKSUM TABLE ${table}`)).toBe(sourceDb.sql(`CHECKSUM TABLE ${table}`));
    expect(targetDb.sql('SELECT COUNT(*) FROM seedtest.recent')).toBe(sourceDb.sql('SELECT COUNT(*) FROM seedtest.recent'));
    // The dump's schemas were replaced; a schema the dump does not bring stays.
    expect(targetDb.sql("SHOW TABLES FROM seedtest LIKE 'old_only'")).toBe('');
    expect(targetDb.sql("SHOW TABLES FROM keep_me LIKE 'x'")).toBe('x');
    expect(targetDb.sql("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'Slave_running'")).toBe('ON');
  }, 600000);

  test('the passwords never show in the process list, the logs, the state files or the API answers', () => {
    clearInterval(psWatch);
    expect(processLists.length).toBeGreaterThan(0);
    const stateFiles = (agent: SeedAgent) =>
      readdirSync(join(agent.stateDir, 'seeds')).filter((f) => f.endsWith('.json')).map((f) => readFileSync(join(agent.stateDir, 'seeds', f), 'utf8'));
    const places: Record<string, string> = {
      'process list': [...processLists, readFileSync(join(dir, 'ps-during-dump.txt'), 'utf8')].join('\n'),
      'agent logs': [source, target, weakTarget].map((a) => a.agent.output()).join('\n'),
      'state files': [source, target, weakTarget].flatMap(stateFiles).join('\n'),
      'API answers': answers.join('\n'),
    };
    expect(places['state files']).toContain('dump-replica'); // the places are really there
    expect(places['process list']).toContain('mariadb-dump --defaults-extra-file='); // the dump ran while we looked
    for (const [where, text] of Object.entries(places)) {
      for (const secret of [AGENT_PASSWORD, TARGET_AGENT_PASSWORD, REPL_PASSWORD, WEAK_PASSWORD]) {
        if (text.includes(secret)) throw new Error(`${secret} shows in the ${where}`);
      }
    }
  });
});
