// SIGHUP on a real agent process: live keys change, start-only keys wait for a restart, a bad file is
// refused with the start-up message, and the process never dies of the signal.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyConfig } from '../src/config-reload.js';
import { defaultConfig } from '../src/config.js';
import { AgentClient } from './support/agent-client.js';
import { startAgentProcess, tempDir, writeConfig, type AgentProcess } from './support/agent-process.js';
import { waitFor } from './support/fake-orchestrator.js';

describe('SIGHUP reloads the configuration of a running agent', () => {
  const dir = tempDir('oa-reload-');
  const base = { TokenHintFile: join(dir, 'token'), MySQLPortCommand: 'echo 3306', CommandTimeoutSeconds: 600 };
  let agent: AgentProcess;
  let client: AgentClient;
  const outcomes = () => agent.output().split('\n').filter((l) => /configuration reload(ed| refused)/.test(l));
  /** Sends SIGHUP and returns the log from that signal on, once the reload's outcome line is there. */
  const hup = async (): Promise<string> => {
    const before = outcomes().length;
    const from = agent.output().length;
    agent.child.kill('SIGHUP');
    await waitFor('the reload to be logged', () => outcomes().length > before || undefined);
    return agent.output().slice(from);
  };

  beforeAll(async () => {
    agent = await startAgentProcess(writeConfig(dir, base));
    client = AgentClient.fromHintFile(agent.baseUrl, join(dir, 'token'));
  });
  afterAll(async () => {
    await agent?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('commands and log level apply at once; listener and auth keys are named as needing a restart', async () => {
    expect(await client.get('/api/mysql-port')).toEqual({ status: 200, body: 3306 });
    writeConfig(dir, { ...base, MySQLPortCommand: 'echo 3307', CommandTimeoutSeconds: 30, LogLevel: 'info', HTTPAuthUser: 'orc', HTTPAuthPassword: 'pw-not-logged', ObsoleteKey: 1 });
    const log = await hup();
    expect(log).toMatch(/INFO configuration reloaded: applied MySQLPortCommand, CommandTimeoutSeconds, LogLevel/);
    expect(log).toMatch(/WARN configuration reload: HTTPAuthUser, HTTPAuthPassword changed; such changes take effect only when the agent restarts/);
    expect(log).toContain(`WARN unknown key "ObsoleteKey" in config file ${agent.configFile} is ignored`);
    expect(log).not.toContain('pw-not-logged');

    expect(await client.get('/api/mysql-port')).toEqual({ status: 200, body: 3307 });
    // Basic auth would need a restart: the running agent still serves without it.
    expect((await fetch(`${agent.baseUrl}/api/hostname`)).status).toBe(200);
    // LogLevel info: the request lines logged at debug under --debug stop.
    const from = agent.output().length;
    await client.get('/api/hostname');
    await fetch(`${agent.baseUrl}/api/mysql-stop`, { method: 'POST' }); // refused: a WARN line marks the end
    await waitFor('the refusal line', () => agent.output().slice(from).includes('refused POST /api/mysql-stop') || undefined);
    expect(agent.output().slice(from)).not.toContain('DEBUG');
  });

  test('a bad new file is refused with the start-up message and the running configuration stays', async () => {
    writeConfig(dir, { ...base, MySQLPortCommand: 'echo 4000', HTTPPort: 'not a port' });
    const wrongType = await hup();
    expect(wrongType).toMatch(
      new RegExp(`ERROR configuration reload refused, the running configuration stays: key "HTTPPort" in config file ${agent.configFile} must be a non-negative integer`),
    );
    writeFileSync(agent.configFile, '{"AgentsServer": ');
    expect(await hup()).toMatch(/ERROR configuration reload refused, the running configuration stays: cannot read config file .* \(fix the JSON syntax/);
    writeConfig(dir, { ...base, LogLevel: 'loud' });
    expect(await hup()).toMatch(/reload refused.*LogLevel must be "debug", "info", "warn", "error" or "", got "loud"/);
    rmSync(agent.configFile);
    expect(await hup()).toMatch(/reload refused.*config file .* does not exist/);

    expect(agent.child.exitCode).toBeNull();
    expect(agent.child.signalCode).toBeNull();
    expect(await client.get('/api/mysql-port')).toEqual({ status: 200, body: 3307 });
  });

  test('the same file again changes nothing, and the agent still shuts down cleanly on SIGTERM', async () => {
    writeConfig(dir, { ...base, MySQLPortCommand: 'echo 3307', CommandTimeoutSeconds: 30, LogLevel: 'info', HTTPAuthUser: 'orc', HTTPAuthPassword: 'pw-not-logged' });
    const log = await hup();
    expect(log).toMatch(/configuration reloaded: nothing applied/);
    expect(log).toMatch(/HTTPAuthUser, HTTPAuthPassword changed; such changes take effect only when the agent restarts/);
    await agent.stop();
    expect(agent.child.exitCode).toBe(0);
  });
});

test('applyConfig changes live keys in place and leaves start-only keys at their running value', () => {
  const running = defaultConfig();
  const sameObject = running;
  const next = { ...defaultConfig(), PostCopyCommand: 'true', CustomCommands: { a: 'echo a' }, HTTPPort: 4000, StateDir: '/elsewhere' };
  expect(applyConfig(running, next)).toEqual({ applied: ['PostCopyCommand', 'CustomCommands'], needRestart: ['HTTPPort', 'StateDir'] });
  expect(sameObject.PostCopyCommand).toBe('true');
  expect(sameObject.CustomCommands).toEqual({ a: 'echo a' });
  expect([sameObject.HTTPPort, sameObject.StateDir]).toEqual([3002, '/var/lib/orchestrator-agent']);
  next.CustomCommands.a = 'changed later';
  expect(sameObject.CustomCommands.a).toBe('echo a');
});
