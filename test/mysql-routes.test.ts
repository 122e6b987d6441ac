import { afterAll, beforeAll, beforeEach, describe, expect, test } from '@jest/globals';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAgentProcess, tempDir, writeConfig, type AgentProcess } from './support/agent-process.js';
import { AgentClient, errorMessage } from './support/agent-client.js';
import { checkPurgeTarget, LocalDatadir } from '../src/host/datadir.js';
import { defaultConfig } from '../src/config.js';
import { ConfiguredMySQLService } from '../src/host/mysql-service.js';
import { ensureDatadirPurged } from '../src/seeds/steps/datadir-steps.js';
import { ensureMySQLStopped } from '../src/seeds/steps/mysql-steps.js';
import type { StepEnv } from '../src/seeds/steps/step-env.js';

// The "service" is a state file: the configured commands are small shell scripts that flip it and log calls.
describe('MySQL service routes through configured commands', () => {
  const dir = tempDir('oa-mysql-');
  const datadir = join(dir, 'data');
  const running = join(dir, 'running');
  const calls = join(dir, 'calls');
  let agent: AgentProcess;
  let client: AgentClient;

  beforeAll(async () => {
    mkdirSync(datadir);
    agent = await startAgentProcess(
      writeConfig(dir, {
        TokenHintFile: join(dir, 'token'),
        MySQLDatadirCommand: `echo ${datadir}`,
        MySQLPortCommand: 'echo 33071',
        MySQLServiceStatusCommand: `test -f ${running}`,
        MySQLServiceStopCommand: `rm -f ${running}; echo stop >> ${calls}`,
        MySQLServiceStartCommand: `touch ${running}; echo start >> ${calls}`,
      }),
    );
    client = AgentClient.fromHintFile(agent.baseUrl, join(dir, 'token'));
  });
  afterAll(async () => {
    await agent?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    rmSync(calls, { force: true });
  });

  const callLog = () => (existsSync(calls) ? readFileSync(calls, 'utf8').trim().split('\n') : []);

  test('mysql-port answers the number MySQLPortCommand prints', async () => {
    expect(await client.get('/api/mysql-port')).toEqual({ status: 200, body: 33071 });
  });

  test('mysql-status is true when the status command exits 0 and false otherwise', async () => {
    writeFileSync(running, '');
    expect(await client.get('/api/mysql-status')).toEqual({ status: 200, body: true });
    rmSync(running);
    expect(await client.get('/api/mysql-status')).toEqual({ status: 200, body: false });
  });

  test('mysql-stop runs the stop command once and is a no-op when MySQL is already stopped', async () => {
    writeFileSync(running, '');
    expect(await client.get('/api/mysql-stop')).toEqual({ status: 200, body: true });
    expect(existsSync(running)).toBe(false);
    expect(await client.post('/api/mysql-stop')).toEqual({ status: 200, body: true });
    expect(callLog()).toEqual(['stop']);
  });

  test('mysql-start runs the start command once and is a no-op when MySQL already runs', async () => {
    rmSync(running, { force: true });
    expect(await client.get('/api/mysql-start')).toEqual({ status: 200, body: true });
    expect(existsSync(running)).toBe(true);
    expect(await client.get('/api/mysql-start')).toEqual({ status: 200, body: true });
    expect(callLog()).toEqual(['start']);
  });

  test('delete-mysql-datadir refuses with 409 while MySQL runs and leaves every file in place', async () => {
    writeFileSync(running, '');
    writeFileSync(join(datadir, 'ibdata1'), 'x'.repeat(100));
    const reply = await client.get('/api/delete-mysql-datadir');
    expect(reply.status).toBe(409);
    expect(errorMessage(reply)).toContain('MySQL is running');
    expect(readdirSync(datadir)).toEqual(['ibdata1']);
  });

  test('delete-mysql-datadir empties the datadir but keeps the directory when MySQL is stopped', async () => {
    rmSync(running, { force: true });
    mkdirSync(join(datadir, 'mysql', 'deep'), { recursive: true });
    writeFileSync(join(datadir, 'mysql', 'deep', 'user.frm'), 'y');
    writeFileSync(join(datadir, 'ibdata1'), 'x');
    // A symlink inside the datadir is removed, its target is not touched.
    const outside = join(dir, 'outside');
    mkdirSync(outside, { recursive: true });
    writeFileSync(join(outside, 'keep'), 'k');
    symlinkSync(outside, join(datadir, 'link-out'));
    expect(await client.post('/api/delete-mysql-datadir')).toEqual({ status: 200, body: true });
    expect(statSync(datadir).isDirectory()).toBe(true);
    expect(readdirSync(datadir)).toEqual([]);
    expect(readFileSync(join(outside, 'keep'), 'utf8')).toBe('k');
  });
});

describe('MySQL routes without configured commands', () => {
  const dir = tempDir('oa-mysql-none-');
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

  test('each route names the config key that is missing', async () => {
    const expectations: [string, string][] = [
      ['/api/mysql-port', 'MySQLPortCommand'],
      ['/api/mysql-stop', 'MySQLServiceStopCommand'],
      ['/api/mysql-start', 'MySQLServiceStartCommand'],
      ['/api/mysql-du', 'MySQLDatadirCommand'],
      ['/api/delete-mysql-datadir', 'MySQLServiceStatusCommand'],
    ];
    for (const [path, key] of expectations) {
      const reply = await client.get(path);
      expect(reply.status).toBe(500);
      expect((reply.body as { Code: string }).Code).toBe('ERROR');
      expect(errorMessage(reply)).toContain(`${key} is not configured`);
    }
  });

  test('mysql-status answers true as the original, so orchestrator will not seed onto a host whose state is unknown', async () => {
    expect(await client.get('/api/mysql-status')).toEqual({ status: 200, body: true });
    expect(agent.output()).toMatch(/WARN mysql-status answers true .*MySQLServiceStatusCommand is not configured/);
  });

  test("a seed's stop and purge steps refuse without a status command and leave the datadir alone", async () => {
    const datadir = join(dir, 'data');
    mkdirSync(datadir, { recursive: true });
    writeFileSync(join(datadir, 'ibdata1'), 'live');
    const config = { ...defaultConfig(), MySQLDatadirCommand: `echo ${datadir}`, MySQLServiceStopCommand: 'true' };
    const marks: Record<string, string> = {};
    const env = {
      config,
      mysql: new ConfiguredMySQLService(config),
      datadir: new LocalDatadir(config),
      seed: { id: 's', marks: () => marks, mark: (k: string, v: string) => void (marks[k] = v) },
    } as unknown as StepEnv;
    const input = {
      seedId: 's',
      step: 'x',
      params: { startMySQL: false, stepByStep: false, receiveOnly: false, port: 1 },
      deadlines: { seed: Date.now() + 60_000, connect: null },
      facts: { datadir },
    };
    const signal = new AbortController().signal;
    await expect(ensureMySQLStopped(input, signal, env)).rejects.toThrow(/MySQLServiceStatusCommand is not configured/);
    await expect(ensureDatadirPurged(input, signal, env)).rejects.toThrow(/MySQLServiceStatusCommand is not configured/);
    expect(readdirSync(datadir)).toEqual(['ibdata1']);
    expect(marks).toEqual({});
  });
});

describe('datadir purge guardrails', () => {
  const dir = tempDir('oa-purge-');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('refuses empty, relative and system directory paths', async () => {
    for (const bad of ['', '  ', 'var/lib/mysql', '/', '/usr', '/etc/', '/var', '/home', '/root', '/boot', '/bin', '/sbin', '/lib', '/lib64', '//usr//']) {
      await expect(checkPurgeTarget(bad)).rejects.toMatchObject({ code: 'forbidden' });
    }
  });

  test('refuses a symlink that resolves to a system directory', async () => {
    const link = join(dir, 'datadir-link');
    symlinkSync('/etc', link);
    await expect(checkPurgeTarget(link)).rejects.toThrow(/resolves to system directory \/etc/);
  });

  test('refuses a regular file and accepts a real directory by its real path', async () => {
    writeFileSync(join(dir, 'file'), '');
    await expect(checkPurgeTarget(join(dir, 'file'))).rejects.toThrow(/not a directory/);
    mkdirSync(join(dir, 'data'));
    symlinkSync(join(dir, 'data'), join(dir, 'data-link'));
    await expect(checkPurgeTarget(join(dir, 'data-link'))).resolves.toBe(join(dir, 'data'));
  });

  test("runs the operator's MySQLDeleteDatadirContentCommand with the real datadir as $1 instead of deleting itself", async () => {
    const data = join(dir, 'data2');
    mkdirSync(data);
    writeFileSync(join(data, 'ibdata1'), 'x');
    const marker = join(dir, 'delete-command-arg');
    const ops = new LocalDatadir({ ...defaultConfig(), MySQLDeleteDatadirContentCommand: `printf '%s' "$1" > ${marker}` });
    await ops.purge(`${data}/`);
    expect(readFileSync(marker, 'utf8')).toBe(data);
    expect(readdirSync(data)).toEqual(['ibdata1']);
    await expect(ops.purge('/usr')).rejects.toMatchObject({ code: 'forbidden' });
  });
});
