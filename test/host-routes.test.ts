import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAgentProcess, tempDir, writeConfig, type AgentProcess } from './support/agent-process.js';
import { AgentClient, errorMessage } from './support/agent-client.js';
import { errorLogFromMyCnf, mysqlErrorLogTail, tailFile } from '../src/host/error-log.js';
import { defaultConfig } from '../src/config.js';
import { ensurePostCopied } from '../src/seeds/steps/post-copy.js';
import type { StepEnv } from '../src/seeds/steps/step-env.js';

describe('host routes on real files and configured commands', () => {
  const dir = tempDir('oa-host-');
  const datadir = join(dir, 'data');
  const snapshotMount = join(dir, 'snap');
  const extra = join(dir, 'extra');
  const secret = join(dir, 'secret');
  const errorLog = join(dir, 'mysqld.err');
  const marks = join(dir, 'marks');
  const postCopyInput = join(dir, 'post-copy-input');
  let agent: AgentProcess;
  let client: AgentClient;

  beforeAll(async () => {
    for (const d of [datadir, snapshotMount, extra, secret, marks]) mkdirSync(d);
    writeFileSync(postCopyInput, 'input:');
    writeFileSync(join(datadir, 'ibdata1'), Buffer.alloc(1000));
    mkdirSync(join(datadir, 'db1'));
    writeFileSync(join(datadir, 'db1', 't.ibd'), Buffer.alloc(2345));
    writeFileSync(join(extra, 'f'), Buffer.alloc(77));
    writeFileSync(join(secret, 'f'), Buffer.alloc(5));
    symlinkSync(secret, join(datadir, 'escape'));
    writeFileSync(errorLog, Array.from({ length: 1000 }, (_, i) => `2026-11-25 10:00:00 0 [Note] line ${i + 1}`).join('\n') + '\n');
    agent = await startAgentProcess(
      writeConfig(dir, {
        TokenHintFile: join(dir, 'token'),
        MySQLDatadirCommand: `echo ${datadir}`,
        SnapshotMountPoint: snapshotMount,
        DiskUsageAllowedPaths: [extra],
        MySQLErrorLogFile: errorLog,
        AvailableLocalSnapshotHostsCommand: 'printf "db-local-1\\ndb-local-2\\n"',
        AvailableSnapshotHostsCommand: 'echo db-remote-1; echo; echo db-remote-2',
        CreateSnapshotCommand: `touch ${join(marks, 'snapshot-created')}`,
        // As configured, no argument: "cat FILE" must not be handed the source host as a second file.
        PostCopyCommand: `cat ${postCopyInput} > ${join(marks, 'post-copy-args')}; printf '%s|' "$#" "\${ORCHESTRATOR_AGENT_SOURCE_HOST-unset}" >> ${join(marks, 'post-copy-args')}`,
        CustomCommands: { hello: 'echo "hello from $(basename $0)"', fails: 'echo partial; exit 3' },
      }),
    );
    client = AgentClient.fromHintFile(agent.baseUrl, join(dir, 'token'));
  });
  afterAll(async () => {
    await agent?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('du measures a directory inside the datadir, the snapshot mount point and DiskUsageAllowedPaths', async () => {
    const db1 = await client.get(`/api/du?path=${encodeURIComponent(join(datadir, 'db1'))}`);
    expect(db1.status).toBe(200);
    // du -sb: the directory entry itself plus the file's 2345 bytes.
    expect(db1.body).toBe(lstatSync(join(datadir, 'db1')).size + 2345);
    expect((await client.get(`/api/du?path=${encodeURIComponent(join(extra, 'f'))}`)).body).toBe(77);
    expect((await client.get(`/api/du?path=${encodeURIComponent(snapshotMount)}`)).status).toBe(200);
  });

  test('du refuses a path outside the allowed places, a relative path, and a symlink leading out', async () => {
    const outside = await client.get(`/api/du?path=${encodeURIComponent(secret)}`);
    expect(outside.status).toBe(403);
    expect(errorMessage(outside)).toContain('outside the places this agent may read');
    const dotdot = await client.get(`/api/du?path=${encodeURIComponent(join(datadir, '..', 'secret'))}`);
    expect(dotdot.status).toBe(403);
    expect((await client.get('/api/du?path=data/db1')).status).toBe(400);
    expect((await client.get('/api/du')).status).toBe(400);
    const viaLink = await client.get(`/api/du?path=${encodeURIComponent(join(datadir, 'escape', 'f'))}`);
    expect(viaLink.status).toBe(403);
    expect(errorMessage(viaLink)).toContain(`resolves to ${join(secret, 'f')}`);
  });

  test('mysql-du is the datadir size as du -sb counts it', async () => {
    const reply = await client.get('/api/mysql-du');
    expect(reply.status).toBe(200);
    // datadir and db1 directory entries, two files, the symlink itself (its target path length).
    const dirs = lstatSync(datadir).size + lstatSync(join(datadir, 'db1')).size;
    expect(reply.body).toBe(dirs + 1000 + 2345 + secret.length);
  });

  test('mysql-datadir-available-space is the free space statfs reports for the datadir', async () => {
    const reply = await client.get('/api/mysql-datadir-available-space');
    expect(reply.status).toBe(200);
    const st = statfsSync(datadir);
    const expected = st.bavail * st.bsize;
    // Other tests write to the same filesystem meanwhile: allow a few MiB of drift.
    expect(Math.abs((reply.body as number) - expected)).toBeLessThan(64 * 1024 * 1024);
    expect(reply.body as number).toBeGreaterThan(0);
  });

  test('mysql-error-log-tail answers the last 20 lines of the configured error log', async () => {
    const reply = await client.get('/api/mysql-error-log-tail');
    expect(reply.status).toBe(200);
    const lines = reply.body as string[];
    expect(lines).toHaveLength(20);
    expect(lines[0]).toBe('2026-11-25 10:00:00 0 [Note] line 981');
    expect(lines[19]).toBe('2026-11-25 10:00:00 0 [Note] line 1000');
  });

  test('available-snapshots-local and available-snapshots list the hosts the commands print', async () => {
    expect(await client.get('/api/available-snapshots-local')).toEqual({ status: 200, body: ['db-local-1', 'db-local-2'] });
    expect(await client.get('/api/available-snapshots')).toEqual({ status: 200, body: ['db-remote-1', 'db-remote-2'] });
  });

  test('create-snapshot runs CreateSnapshotCommand and answers true', async () => {
    expect(await client.get('/api/create-snapshot')).toEqual({ status: 200, body: true });
    expect(existsSync(join(marks, 'snapshot-created'))).toBe(true);
  });

  test('a custom command answers its output in the original {Code, Message} shape', async () => {
    const reply = await client.get('/api/custom-commands/hello');
    expect(reply).toEqual({ status: 200, body: { Code: 'OK', Message: 'hello from orchestrator-agent\n', Details: null } });
    const viaPost = await client.post('/api/custom-commands/hello');
    expect(viaPost.status).toBe(200);
  });

  test('an unknown custom command is a 404 with the original message, a failing one a 500 with its exit code', async () => {
    const unknown = await client.get('/api/custom-commands/nope');
    expect(unknown.status).toBe(404);
    expect(errorMessage(unknown)).toBe('nope : Command not found');
    const inherited = await client.get('/api/custom-commands/constructor');
    expect(inherited.status).toBe(404);
    const fails = await client.get('/api/custom-commands/fails');
    expect(fails.status).toBe(500);
    expect(errorMessage(fails)).toContain('exited with code 3');
  });

  test('post-copy runs PostCopyCommand as configured with no argument, offering the source host in ORCHESTRATOR_AGENT_SOURCE_HOST', async () => {
    const argsFile = join(marks, 'post-copy-args');
    expect(await client.get('/api/post-copy/db-source-1.example.com')).toEqual({ status: 200, body: true });
    expect(readFileSync(argsFile, 'utf8')).toBe('input:0|db-source-1.example.com|');
    expect(await client.get('/api/post-copy/?sourceHost=10.0.0.7')).toEqual({ status: 200, body: true });
    expect(readFileSync(argsFile, 'utf8')).toBe('input:0|10.0.0.7|');
    expect(await client.post('/api/post-copy')).toEqual({ status: 200, body: true });
    expect(readFileSync(argsFile, 'utf8')).toBe('input:0|unset|');
  });

  test('request values with shell metacharacters are refused with 400 and nothing runs', async () => {
    const argsFile = join(marks, 'post-copy-args');
    rmSync(argsFile, { force: true });
    const canary = join(marks, 'pwned');
    const attempts = [
      `/api/post-copy/${encodeURIComponent(`a;touch ${canary}`)}`,
      `/api/post-copy/?sourceHost=${encodeURIComponent(`$(touch ${canary})`)}`,
      `/api/post-copy/${encodeURIComponent('`touch x`')}`,
      `/api/custom-commands/${encodeURIComponent(`hello;touch ${canary}`)}`,
      `/api/custom-commands/${encodeURIComponent('$(id)')}`,
    ];
    for (const path of attempts) {
      const reply = await client.get(path);
      expect(reply.status).toBe(400);
      expect((reply.body as { Code: string }).Code).toBe('ERROR');
    }
    expect(existsSync(canary)).toBe(false);
    expect(existsSync(argsFile)).toBe(false);
    expect(readdirSync(marks).sort()).toEqual(['snapshot-created']);
  });
});

describe('host routes without optional commands', () => {
  const dir = tempDir('oa-host-bare-');
  let agent: AgentProcess;
  let client: AgentClient;
  beforeAll(async () => {
    agent = await startAgentProcess(writeConfig(dir, { TokenHintFile: join(dir, 'token') }));
    client = AgentClient.fromHintFile(agent.baseUrl, join(dir, 'token'));
  });
  afterAll(async () => {
    await agent?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('snapshot host lists are empty arrays and create-snapshot names CreateSnapshotCommand', async () => {
    expect(await client.get('/api/available-snapshots-local')).toEqual({ status: 200, body: [] });
    expect(await client.get('/api/available-snapshots')).toEqual({ status: 200, body: [] });
    const create = await client.get('/api/create-snapshot');
    expect(create.status).toBe(500);
    expect(errorMessage(create)).toContain('CreateSnapshotCommand is not configured');
  });

  test('post-copy without PostCopyCommand succeeds without running anything', async () => {
    expect(await client.get('/api/post-copy/db1')).toEqual({ status: 200, body: true });
  });

  test('du refuses everything when no place is configured', async () => {
    const reply = await client.get('/api/du?path=/tmp');
    expect(reply.status).toBe(403);
    expect((reply.body as { Details: { hint: string } }).Details.hint).toContain('(none configured)');
  });
});

describe('MySQL error log tail', () => {
  const dir = tempDir('oa-errlog-');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('reads the last lines of a file much larger than one chunk, with or without a final newline', async () => {
    const file = join(dir, 'big.err');
    const line = (i: number) => `${i} ${'x'.repeat(200)}`;
    writeFileSync(file, Array.from({ length: 5000 }, (_, i) => line(i)).join('\n'));
    const tail = await tailFile(file);
    expect(tail).toEqual(Array.from({ length: 20 }, (_, i) => line(4980 + i)));
    writeFileSync(file, Array.from({ length: 5000 }, (_, i) => line(i)).join('\n') + '\n\n');
    expect(await tailFile(file)).toEqual(Array.from({ length: 20 }, (_, i) => line(4980 + i)));
  });

  test('a short file gives all its lines, an empty file none, multi-byte text survives chunk edges', async () => {
    const file = join(dir, 'short.err');
    writeFileSync(file, 'one\ntwo\n');
    expect(await tailFile(file)).toEqual(['one', 'two']);
    writeFileSync(file, '');
    expect(await tailFile(file)).toEqual([]);
    const utf = 'é'.repeat(40000);
    writeFileSync(file, `${utf}\nlast ü\n`);
    expect(await tailFile(file)).toEqual([utf, 'last ü']);
  });

  test('finds log-error or log_error in my.cnf, skipping comments and quotes', async () => {
    const cnf = join(dir, 'my.cnf');
    writeFileSync(cnf, '[mysqld]\n# log-error = /nope\ndatadir=/var/lib/mysql\nlog_error = "/var/log/mysql/error.log"\n');
    expect(await errorLogFromMyCnf(cnf)).toBe('/var/log/mysql/error.log');
    writeFileSync(cnf, '[mysqld]\nlog-error=/var/log/mysqld.log\n');
    expect(await errorLogFromMyCnf(cnf)).toBe('/var/log/mysqld.log');
    expect(await errorLogFromMyCnf(join(dir, 'missing.cnf'))).toBeUndefined();
  });

  test('falls back to my.cnf when MySQLErrorLogFile is empty, and runs a customised tail command instead', async () => {
    const log = join(dir, 'from-cnf.err');
    writeFileSync(log, 'a\nb\nc\n');
    const cnf = join(dir, 'fallback.cnf');
    writeFileSync(cnf, `[mysqld]\nlog-error=${log}\n`);
    expect(await mysqlErrorLogTail(defaultConfig(), { myCnf: cnf })).toEqual(['a', 'b', 'c']);
    const custom = { ...defaultConfig(), MySQLTailErrorLogCommand: 'printf "custom 1\\ncustom 2\\n"' };
    expect(await mysqlErrorLogTail(custom, { myCnf: cnf })).toEqual(['custom 1', 'custom 2']);
  });

  test('without a log-error setting answers [""] as the original, and the log says which key to set', async () => {
    const written: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((chunk: string) => written.push(String(chunk)) > 0) as typeof process.stderr.write;
    try {
      expect(await mysqlErrorLogTail(defaultConfig(), { myCnf: join(dir, 'none.cnf') })).toEqual(['']);
    } finally {
      process.stderr.write = write;
    }
    expect(written.join('')).toMatch(/WARN mysql-error-log-tail answers \[""\].*MySQLErrorLogFile is empty and .*none\.cnf has no log-error.*set MySQLErrorLogFile/);
  });

  test('a relative error log path names the key it came from', async () => {
    await expect(mysqlErrorLogTail({ ...defaultConfig(), MySQLErrorLogFile: 'mysqld.err' })).rejects.toThrow(
      /"mysqld.err" \(from MySQLErrorLogFile\) is relative/,
    );
  });
});

describe('post-copy in a target seed', () => {
  const dir = tempDir('oa-postcopy-step-');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('the seed step runs PostCopyCommand as configured, with no argument and no source host, once', async () => {
    const out = join(dir, 'ran');
    const input = join(dir, 'input');
    writeFileSync(input, 'input:');
    const config = { ...defaultConfig(), PostCopyCommand: `cat ${input} >> ${out}; printf '%s|' "$#" "\${ORCHESTRATOR_AGENT_SOURCE_HOST-unset}" >> ${out}` };
    const marks: Record<string, string> = {};
    const seed = { id: 's1', marks: () => marks, mark: (k: string, v: string) => void (marks[k] = v), secrets: () => ({}), setProgress: () => {} };
    const env = { config, seed } as unknown as StepEnv;
    const stepInput = {
      seedId: 's1',
      step: 'postCopy',
      params: { startMySQL: false, stepByStep: false, receiveOnly: false, port: 1 },
      deadlines: { seed: Date.now() + 60_000, connect: null },
      facts: {},
    };
    expect(await ensurePostCopied(stepInput, new AbortController().signal, env)).toEqual({ postCopied: true });
    expect(await ensurePostCopied(stepInput, new AbortController().signal, env)).toEqual({ postCopied: true });
    expect(readFileSync(out, 'utf8')).toBe('input:0|unset|');
  });
});
