import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { existsSync, mkdirSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { startAgentProcess, tempDir, writeConfig, type AgentProcess } from './support/agent-process.js';
import { AgentClient, errorMessage } from './support/agent-client.js';
import { syntheticBinlog } from './support/binlog-bytes.js';
import { binlogHeaderSize } from '../src/host/binlog.js';

function decode(body: unknown): Buffer {
  expect(typeof body).toBe('string');
  const text = body as string;
  // The original's `gzip | base64` output: 76-column lines and a final newline.
  for (const line of text.trimEnd().split('\n')) expect(line.length).toBeLessThanOrEqual(76);
  expect(text.endsWith('\n')).toBe(true);
  return gunzipSync(Buffer.from(text, 'base64'));
}

describe('relay log and binlog routes on synthetic binlog files', () => {
  const dir = tempDir('oa-relay-');
  const datadir = join(dir, 'data');
  // Different header sizes per file: the agent must read each file's own format description event.
  const relay1 = syntheticBinlog(97, ['BEGIN', 'INSERT INTO t VALUES (1)', 'COMMIT']);
  const relay2 = syntheticBinlog(150, ['BEGIN', 'INSERT INTO t VALUES (2)', 'COMMIT']);
  const header1 = 4 + 19 + 97;
  const header2 = 4 + 19 + 150;
  const marks = join(dir, 'marks');
  let agent: AgentProcess;
  let client: AgentClient;

  beforeAll(async () => {
    mkdirSync(datadir);
    mkdirSync(marks);
    writeFileSync(join(datadir, 'db-relay-bin.000001'), relay1);
    writeFileSync(join(datadir, 'db-relay-bin.000002'), relay2);
    writeFileSync(join(datadir, 'db-relay-bin.index'), './db-relay-bin.000001\n./db-relay-bin.000002\n');
    // A stale index from an old host name, older than the live one.
    writeFileSync(join(datadir, 'oldname-relay-bin.index'), './oldname-relay-bin.000009\n');
    utimesSync(join(datadir, 'oldname-relay-bin.index'), new Date('2020-01-01'), new Date('2020-01-01'));
    writeFileSync(join(datadir, 'not-a-binlog.000001'), 'plain text');
    writeFileSync(join(dir, 'outside.000001'), relay1);
    symlinkSync(join(dir, 'outside.000001'), join(datadir, 'link-out.000001'));
    agent = await startAgentProcess(
      writeConfig(dir, {
        TokenHintFile: join(dir, 'token'),
        MySQLDatadirCommand: `echo ${datadir}`,
        MySQLClientCommand: `cat > /dev/null; touch ${join(marks, 'client-ran')}`,
      }),
    );
    client = AgentClient.fromHintFile(agent.baseUrl, join(dir, 'token'));
  });
  afterAll(async () => {
    await agent?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the header size is the magic plus the format description event size', async () => {
    expect(await binlogHeaderSize(join(datadir, 'db-relay-bin.000001'))).toBe(header1);
    expect(await binlogHeaderSize(join(datadir, 'db-relay-bin.000002'))).toBe(header2);
    await expect(binlogHeaderSize(join(datadir, 'not-a-binlog.000001'))).rejects.toThrow(/not a binary log/);
  });

  test('mysql-relay-log-index-file finds the newest *relay*.index in the datadir', async () => {
    expect(await client.get('/api/mysql-relay-log-index-file')).toEqual({ status: 200, body: join(datadir, 'db-relay-bin.index') });
  });

  test('mysql-relay-log-files lists the index entries as paths in the datadir', async () => {
    expect(await client.get('/api/mysql-relay-log-files')).toEqual({
      status: 200,
      body: [join(datadir, 'db-relay-bin.000001'), join(datadir, 'db-relay-bin.000002')],
    });
  });

  test('mysql-relay-log-end-coordinates is the last relay log and its size, Type 1 (RelayLog)', async () => {
    expect(await client.get('/api/mysql-relay-log-end-coordinates')).toEqual({
      status: 200,
      body: { LogFile: join(datadir, 'db-relay-bin.000002'), LogPos: relay2.length, Type: 1 },
    });
  });

  test('mysql-relaylog-contents-tail sends the first header, the rest of the first log, and later logs without their header', async () => {
    const start = header1 + 19 + 'BEGIN'.length; // the second event of the first relay log
    const reply = await client.get(`/api/mysql-relaylog-contents-tail/db-relay-bin.000001/${start}`);
    expect(reply.status).toBe(200);
    const expected = Buffer.concat([relay1.subarray(0, header1), relay1.subarray(start), relay2.subarray(header2)]);
    expect(decode(reply.body).equals(expected)).toBe(true);
  });

  test('mysql-relaylog-contents-tail from the last log sends only that log', async () => {
    const reply = await client.get(`/api/mysql-relaylog-contents-tail/db-relay-bin.000002/${header2}`);
    expect(decode(reply.body).equals(Buffer.concat([relay2.subarray(0, header2), relay2.subarray(header2)]))).toBe(true);
  });

  test('mysql-relaylog-contents-tail refuses unknown relay logs and names that are not plain file names', async () => {
    const unknown = await client.get('/api/mysql-relaylog-contents-tail/db-relay-bin.000007/4');
    expect(unknown.status).toBe(404);
    expect(errorMessage(unknown)).toContain('not in the relay log index');
    expect((await client.get(`/api/mysql-relaylog-contents-tail/${encodeURIComponent('../data/db-relay-bin.000001')}/4`)).status).toBe(400);
    expect((await client.get('/api/mysql-relaylog-contents-tail/db-relay-bin.000001/-4')).status).toBe(400);
  });

  test('mysql-binlog-binary-contents concatenates byte ranges across files, cut at stop in the last one', async () => {
    const start = header1 + 19 + 'BEGIN'.length;
    const stop = header2 + 19 + 'BEGIN'.length;
    const both = await client.get(`/api/mysql-binlog-binary-contents?binlog=db-relay-bin.000001&binlog=db-relay-bin.000002&start=${start}&stop=${stop}`);
    expect(both.status).toBe(200);
    const expected = Buffer.concat([relay1.subarray(0, header1), relay1.subarray(start), relay2.subarray(header2, stop)]);
    expect(decode(both.body).equals(expected)).toBe(true);

    const whole = await client.get(`/api/mysql-binlog-binary-contents?binlog=${encodeURIComponent(join(datadir, 'db-relay-bin.000001'))}`);
    expect(decode(whole.body).equals(relay1)).toBe(true);
  });

  test('binlog names must be plain names or absolute paths that really lie in the datadir', async () => {
    const cases: [string, number][] = [
      ['../outside.000001', 400],
      [join(dir, 'outside.000001'), 403],
      ['/etc/passwd', 403],
      [`${datadir}/../outside.000001`, 403],
      ['link-out.000001', 403],
      ['missing.000001', 404],
      ['a;touch x', 400],
    ];
    for (const [name, status] of cases) {
      const reply = await client.get(`/api/mysql-binlog-binary-contents?binlog=${encodeURIComponent(name)}&start=4`);
      expect([name, reply.status]).toEqual([name, status]);
    }
    expect((await client.get('/api/mysql-binlog-binary-contents')).status).toBe(400);
    expect((await client.get('/api/mysql-binlog-binary-contents?binlog=db-relay-bin.000001&start=abc')).status).toBe(400);
    const notBinlog = await client.get('/api/mysql-binlog-binary-contents?binlog=not-a-binlog.000001&start=4');
    expect(notBinlog.status).toBe(400);
    expect(errorMessage(notBinlog)).toContain('not a binary log');
  });

  test('apply-relaylog-contents takes the token from the query as orchestrator posts it, and refuses without it', async () => {
    const body = gzipSync(Buffer.from('not really a binlog')).toString('base64');
    const noToken = await fetch(`${agent.baseUrl}/api/apply-relaylog-contents`, { method: 'POST', body });
    expect(noToken.status).toBe(401);
    const garbage = await fetch(`${agent.baseUrl}/api/apply-relaylog-contents?token=${client.token}`, { method: 'POST', body: '%%% not base64' });
    expect(garbage.status).toBe(400);
    const notGzip = await fetch(`${agent.baseUrl}/api/apply-relaylog-contents?token=${client.token}`, {
      method: 'POST',
      body: Buffer.from('plain').toString('base64'),
    });
    expect(notGzip.status).toBe(400);
    // None of these reached the MySQL client command.
    expect(existsSync(join(marks, 'client-ran'))).toBe(false);
  });
});
