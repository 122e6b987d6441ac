import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { startAgentProcess, tempDir, writeConfig, type AgentProcess } from './support/agent-process.js';
import { AgentClient, errorMessage } from './support/agent-client.js';
import { freePort, which } from './support/mariadb.js';
import { binlogHeaderSize } from '../src/host/binlog.js';

const mariadbd = which('mariadbd');
const haveMariaDB = mariadbd !== undefined && which('mariadb-install-db') !== undefined && which('mariadb') !== undefined;
if (!haveMariaDB) {
  console.log('SKIPPED: real MariaDB tests need mariadbd, mariadb-install-db and mariadb (apt-get install mariadb-server-core mariadb-client)');
}

(haveMariaDB ? describe : describe.skip)('a real MariaDB server driven through configured commands', () => {
  const dir = tempDir('oa-mariadb-');
  const datadir = join(dir, 'data');
  const socket = join(dir, 'mysqld.sock');
  const pidFile = join(dir, 'mysqld.pid');
  const errorLog = join(dir, 'mysqld.err');
  let port = 0;
  let agent: AgentProcess;
  let client: AgentClient;

  const sql = (statement: string): string =>
    execFileSync('mariadb', ['--no-defaults', '-uroot', `--socket=${socket}`, '-N', '-B', '-e', statement], { encoding: 'utf8', timeout: 30000 }).trim();

  beforeAll(async () => {
    port = await freePort();
    execFileSync(
      'mariadb-install-db',
      ['--no-defaults', '--user=root', `--datadir=${datadir}`, '--auth-root-authentication-method=normal', '--skip-test-db'],
      { stdio: 'ignore', timeout: 120000 },
    );
    const ping = `mariadb-admin --no-defaults -uroot --socket=${socket} ping >/dev/null 2>&1`;
    writeFileSync(
      join(dir, 'start.sh'),
      [
        'set -e',
        `setsid ${mariadbd} --no-defaults --user=root --datadir=${datadir} --bind-address=127.0.0.1 --port=${port} \\`,
        `  --socket=${socket} --pid-file=${pidFile} --log-error=${errorLog} --skip-name-resolve \\`,
        `  --log-bin=binlog --server-id=7 --innodb-buffer-pool-size=16M </dev/null >/dev/null 2>&1 &`,
        `for i in $(seq 1 600); do ${ping} && exit 0; sleep 0.1; done`,
        'echo "mariadbd did not answer ping within 60s" >&2; exit 1',
      ].join('\n'),
    );
    writeFileSync(
      join(dir, 'stop.sh'),
      [
        `pid=$(cat ${pidFile})`,
        'kill -TERM "$pid"',
        'for i in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done',
        'echo "mariadbd $pid did not stop within 60s" >&2; exit 1',
      ].join('\n'),
    );
    agent = await startAgentProcess(
      writeConfig(dir, {
        TokenHintFile: join(dir, 'token'),
        MySQLDatadirCommand: `mariadb --no-defaults -uroot --socket=${socket} -NBe 'select @@datadir' 2>/dev/null || echo ${datadir}`,
        MySQLPortCommand: `echo ${port}`,
        MySQLServiceStatusCommand: ping,
        MySQLServiceStartCommand: `bash ${join(dir, 'start.sh')}`,
        MySQLServiceStopCommand: `bash ${join(dir, 'stop.sh')}`,
        MySQLErrorLogFile: errorLog,
        MySQLClientCommand: `mariadb --no-defaults -uroot --socket=${socket}`,
        CommandTimeoutSeconds: 120,
      }),
    );
    client = AgentClient.fromHintFile(agent.baseUrl, join(dir, 'token'));
  }, 180000);

  afterAll(async () => {
    await agent?.stop();
    if (existsSync(pidFile)) {
      const pid = Number(readFileSync(pidFile, 'utf8').trim());
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
      for (let i = 0; i < 100; i++) {
        try {
          process.kill(pid, 0);
          await new Promise((r) => setTimeout(r, 100));
        } catch {
          break;
        }
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }, 60000);

  test('mysql-status is false before start, mysql-start starts it and mysql-status turns true', async () => {
    expect(await client.get('/api/mysql-status')).toEqual({ status: 200, body: false });
    expect(await client.get('/api/mysql-start')).toEqual({ status: 200, body: true });
    expect(await client.get('/api/mysql-status')).toEqual({ status: 200, body: true });
    expect(await client.get('/api/mysql-port')).toEqual({ status: 200, body: port });
    expect(sql('select 1')).toBe('1');
  }, 120000);

  test('mysql-error-log-tail shows the server saying it is ready for connections', async () => {
    const reply = await client.get('/api/mysql-error-log-tail');
    expect(reply.status).toBe(200);
    expect((reply.body as string[]).some((line) => line.includes('ready for connections'))).toBe(true);
  });

  test('mysql-binlog-contents decodes a real binlog with mysqlbinlog, and applied contents recreate dropped rows', async () => {
    sql('create database seedtest');
    sql('create table seedtest.t (id int primary key, v varchar(20))');
    sql("insert into seedtest.t values (1,'one'),(2,'two'),(3,'three')");
    sql('flush binary logs'); // closes binlog.000001 so it holds exactly the statements above
    const text = await client.get('/api/mysql-binlog-contents?binlog=binlog.000001');
    expect(text.status).toBe(200);
    const decoded = gunzipSync(Buffer.from(text.body as string, 'base64')).toString('utf8');
    expect(decoded).toContain('create table seedtest.t');
    expect(decoded).toContain("insert into seedtest.t values (1,'one')");

    const binary = await client.get('/api/mysql-binlog-binary-contents?binlog=binlog.000001');
    expect(binary.status).toBe(200);
    sql('drop database seedtest');
    // Posted as orchestrator does: text/plain body, token in the query string.
    const applied = await fetch(`${agent.baseUrl}/api/apply-relaylog-contents?token=${client.token}`, {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain' },
      body: binary.body as string,
    });
    expect(applied.status).toBe(200);
    expect(await applied.json()).toBe('OK');
    expect(sql('select group_concat(v order by id) from seedtest.t')).toBe('one,two,three');
  }, 60000);

  test('the binlog header size read natively is where mysqlbinlog says the format description event ends', async () => {
    const file = join(datadir, 'binlog.000001');
    const printed = execFileSync('mariadb-binlog', [file, '--start-position=4'], { encoding: 'utf8', timeout: 30000 });
    const firstEnd = Number(/end_log_pos (\d+)/.exec(printed)![1]);
    expect(await binlogHeaderSize(file)).toBe(firstEnd);
    // From a later event on: header + the rest, byte for byte.
    const bytes = readFileSync(file);
    const start = Number([...printed.matchAll(/^# at (\d+)$/gm)].map((m) => m[1]).at(-2));
    const reply = await client.get(`/api/mysql-binlog-binary-contents?binlog=binlog.000001&start=${start}`);
    const expected = Buffer.concat([bytes.subarray(0, firstEnd), bytes.subarray(start)]);
    expect(gunzipSync(Buffer.from(reply.body as string, 'base64')).equals(expected)).toBe(true);
  });

  test('relay log routes read the index and relay logs a real replica configuration creates', async () => {
    sql("change master to master_host='127.0.0.1', master_port=1, master_user='nobody'");
    const index = await client.get('/api/mysql-relay-log-index-file');
    expect(index.status).toBe(200);
    expect(index.body as string).toMatch(/relay.*\.index$/);
    const files = await client.get('/api/mysql-relay-log-files');
    expect(files.status).toBe(200);
    const names = files.body as string[];
    expect(names.length).toBeGreaterThan(0);
    const last = names.at(-1)!;
    expect(await client.get('/api/mysql-relay-log-end-coordinates')).toEqual({
      status: 200,
      body: { LogFile: last, LogPos: statSync(last).size, Type: 1 },
    });
    expect(await binlogHeaderSize(last)).toBeGreaterThan(4);
    sql('reset slave all');
  });

  test('delete-mysql-datadir refuses while the server runs and the datadir stays intact', async () => {
    const before = readdirSync(datadir).sort();
    const reply = await client.get('/api/delete-mysql-datadir');
    expect(reply.status).toBe(409);
    expect(errorMessage(reply)).toContain('MySQL is running');
    expect(readdirSync(datadir).sort()).toEqual(before);
  });

  test('mysql-stop stops the server, a second stop is a no-op, and mysql-start brings the data back', async () => {
    expect(await client.post('/api/mysql-stop')).toEqual({ status: 200, body: true });
    expect(await client.get('/api/mysql-status')).toEqual({ status: 200, body: false });
    expect(existsSync(pidFile)).toBe(false);
    expect(await client.get('/api/mysql-stop')).toEqual({ status: 200, body: true });
    expect(readFileSync(errorLog, 'utf8')).toContain('Shutdown complete');
    expect(await client.post('/api/mysql-start')).toEqual({ status: 200, body: true });
    expect(sql('select count(*) from seedtest.t')).toBe('3');
  }, 120000);

  test('after mysql-stop, delete-mysql-datadir empties the real datadir and keeps the directory', async () => {
    expect(await client.get('/api/mysql-stop')).toEqual({ status: 200, body: true });
    expect(readdirSync(datadir)).toContain('ibdata1');
    expect(await client.get('/api/delete-mysql-datadir')).toEqual({ status: 200, body: true });
    expect(readdirSync(datadir)).toEqual([]);
  }, 120000);
});
