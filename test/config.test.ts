import { describe, expect, test } from '@jest/globals';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configKeys, defaultConfig, loadConfig, validateConfig } from '../src/config.js';
import { runAgentExpectingExit, startAgentProcess, tempDir, writeConfig } from './support/agent-process.js';

function write(dir: string, name: string, value: unknown): string {
  const file = join(dir, name);
  writeFileSync(file, typeof value === 'string' ? value : JSON.stringify(value));
  return file;
}

describe('configuration', () => {
  test('has every key of the original agent with its default', () => {
    const c = defaultConfig();
    expect(c.HTTPPort).toBe(3002);
    expect(c.SeedTransferPort).toBe(21234);
    expect(c.ContinuousPollSeconds).toBe(60);
    expect(c.ResubmitAgentIntervalMinutes).toBe(60);
    expect(c.StatusEndpoint).toBe('/api/status');
    expect(c.StatusBadSeconds).toBe(300);
    expect(c.HttpTimeoutSeconds).toBe(10);
    expect(c.MySQLClientCommand).toBe('mysql');
    expect(c.LogicalVolumesCommand).toBe('lvs --noheading -o lv_name,vg_name,lv_path,snap_percent');
    expect(c.CustomCommands).toEqual({});
    expect(c.SSLValidOUs).toEqual([]);
    for (const key of [
      'SnapshotMountPoint', 'GetMountCommand', 'UnmountCommand', 'MountLVCommand', 'RemoveLVCommand',
      'MySQLTailErrorLogCommand', 'GetLogicalVolumeFSTypeCommand', 'CreateSnapshotCommand',
      'AvailableLocalSnapshotHostsCommand', 'AvailableSnapshotHostsCommand', 'SnapshotVolumesFilter',
      'MySQLDatadirCommand', 'MySQLPortCommand', 'MySQLDeleteDatadirContentCommand', 'MySQLServiceStopCommand',
      'MySQLServiceStartCommand', 'MySQLServiceStatusCommand', 'ReceiveSeedDataCommand', 'SendSeedDataCommand',
      'PostCopyCommand', 'AgentsServer', 'AgentsServerPort', 'HTTPAuthUser', 'HTTPAuthPassword', 'UseSSL',
      'UseMutualTLS', 'SSLSkipVerify', 'SSLPrivateKeyFile', 'SSLCertFile', 'SSLCAFile', 'StatusOUVerify',
      'ExecWithSudo', 'TokenHintFile', 'TokenHttpHeader',
    ]) {
      expect(configKeys()).toContain(key);
    }
  });

  test('reads the original search paths in order, later files overriding earlier ones, skipping missing ones', () => {
    const dir = tempDir();
    const a = write(dir, 'a.json', { AgentsServer: 'http://a', HTTPPort: 1111 });
    const b = write(dir, 'b.json', { HTTPPort: 2222 });
    const { config, files } = loadConfig(undefined, [a, join(dir, 'missing.json'), b]);
    expect(files).toEqual([a, b]);
    expect(config.AgentsServer).toBe('http://a');
    expect(config.HTTPPort).toBe(2222);
  });

  test('an unknown key is a warning naming the key, the file and the closest known key, and is ignored', () => {
    const dir = tempDir();
    const f = write(dir, 'c.json', { AgentsServer: 'http://a', HTTPPrt: 1, ObsoleteSetting: true, StatusEndpiont: '/x' });
    const { config, warnings } = loadConfig(f);
    expect(config.HTTPPort).toBe(3002);
    expect(config.StatusEndpoint).toBe('/api/status');
    expect(warnings).toEqual([
      `unknown key "HTTPPrt" in config file ${f} is ignored (the original ignored it too): did you mean "HTTPPort"?`,
      `unknown key "ObsoleteSetting" in config file ${f} is ignored (the original ignored it too): remove it; README "Configuration" lists the keys`,
      `unknown key "StatusEndpiont" in config file ${f} is ignored (the original ignored it too): did you mean "StatusEndpoint"?`,
    ]);
  });

  test('a key differing from a known one only in case is read as that key, as Go JSON did for the original, with a warning', () => {
    const dir = tempDir();
    const f = write(dir, 'c2.json', { AgentsServer: 'http://a', HttpPort: 3010 });
    const { config, warnings } = loadConfig(f);
    expect(config.HTTPPort).toBe(3010);
    expect(warnings).toEqual([`key "HttpPort" in config file ${f} is read as "HTTPPort" (as the original did): spell it "HTTPPort"`]);
    const g = write(dir, 'c3.json', { AgentsServer: 'http://a', httpport: 'x' });
    expect(() => loadConfig(g)).toThrow(/key "httpport" in config file .*c3\.json must be a non-negative integer/);
  });

  test('the agent starts with an unknown key and says so at WARN', async () => {
    const dir = tempDir();
    const agent = await startAgentProcess(writeConfig(dir, { ObsoleteSetting: 1, HTTPAuthUsr: 'x' }));
    try {
      expect((await fetch(`${agent.baseUrl}/api/hostname`)).status).toBe(200);
      expect(agent.output()).toContain(`WARN unknown key "ObsoleteSetting" in config file ${agent.configFile} is ignored`);
      expect(agent.output()).toContain(`WARN unknown key "HTTPAuthUsr" in config file ${agent.configFile} is ignored (the original ignored it too): did you mean "HTTPAuthUser"?`);
    } finally {
      await agent.stop();
    }
  });

  test('an ill-typed key is an error naming the key, the file and the expected type', () => {
    const dir = tempDir();
    const f = write(dir, 'd.json', { AgentsServer: 'http://a', HTTPPort: '3002' });
    expect(() => loadConfig(f)).toThrow(/key "HTTPPort" in config file .*d\.json must be a non-negative integer, got "3002"/);
    const g = write(dir, 'e.json', { AgentsServer: 'http://a', CustomCommands: { x: 1 } });
    expect(() => loadConfig(g)).toThrow(/CustomCommands.*an object of strings/);
  });

  test('every ill-typed key and every failed check is reported in one error, across the files read', () => {
    const dir = tempDir();
    const first = write(dir, 'first.json', { AgentsServer: 'http://a', HTTPPort: '3002', UseSSL: 'yes' });
    const second = write(dir, 'second.json', { CommandTimeoutSeconds: 0, LogLevel: 'loud', CustomCommands: { x: 1 } });
    let error: Error | undefined;
    try {
      loadConfig(undefined, [first, second]);
    } catch (err) {
      error = err as Error;
    }
    expect(error?.message).toMatch(/^5 problems in the configuration: \(1\) /);
    expect(error?.message).toMatch(/key "HTTPPort" in config file .*first\.json must be a non-negative integer, got "3002"/);
    expect(error?.message).toMatch(/key "UseSSL" in config file .*first\.json must be true or false/);
    expect(error?.message).toMatch(/key "CustomCommands" in config file .*second\.json must be an object of strings/);
    expect(error?.message).toContain('CommandTimeoutSeconds must be from 1 to');
    expect(error?.message).toContain('LogLevel must be "debug", "info", "warn", "error" or "", got "loud"');
    expect((error as { hint?: string }).hint).toContain('timers in the agent hold at most');
  });

  test('invalid JSON names the file', () => {
    const dir = tempDir();
    const f = write(dir, 'bad.json', '{"AgentsServer": ');
    expect(() => loadConfig(f)).toThrow(/cannot read config file .*bad\.json/);
  });

  test('AgentsServer is required, as in the original', () => {
    const dir = tempDir();
    const f = write(dir, 'f.json', { HTTPPort: 1 });
    expect(() => loadConfig(f)).toThrow(/AgentsServer is not set/);
  });

  test('SeedTransferCompression is off by default and takes only off, fast, strong or auto', () => {
    expect(defaultConfig().SeedTransferCompression).toBe('off');
    const dir = tempDir();
    expect(loadConfig(write(dir, 'ok.json', { AgentsServer: 'http://o', SeedTransferCompression: 'auto' })).config.SeedTransferCompression).toBe('auto');
    expect(() => loadConfig(write(dir, 'bad.json', { AgentsServer: 'http://o', SeedTransferCompression: 'zstd' }))).toThrow(
      /SeedTransferCompression must be "off", "fast", "strong" or "auto", got "zstd"/,
    );
  });

  test('the agent refuses to start on a bad config and says why', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'conf'));
    const f = write(dir, 'conf/orchestrator-agent.conf.json', { AgentsServer: 'http://a', UseSSL: 'yes' });
    const { code, output } = await runAgentExpectingExit([], dir);
    expect(code).toBe(1);
    expect(output).toContain(`key "UseSSL" in config file ${'conf/orchestrator-agent.conf.json'} must be true or false`);
    expect(f).toContain(dir);
  });

  test('with no configuration file found, the error lists where the agent looked and the working directory', () => {
    let message = '';
    try {
      validateConfig(defaultConfig(), []);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('AgentsServer is not set');
    expect(message).toContain('/etc/orchestrator-agent.conf.json, conf/orchestrator-agent.conf.json, orchestrator-agent.conf.json');
    expect(message).toContain(process.cwd());
  });
});
