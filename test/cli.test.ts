import { afterAll, describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { mainJs, repoRoot, runAgentExpectingExit, startAgentProcess, tempDir, writeConfig, type AgentProcess } from './support/agent-process.js';

// The daemon's command line: --help, --version, --log-format json, and the version in the log banner.

const version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
const dirs: string[] = [];
const agents: AgentProcess[] = [];
afterAll(async () => {
  for (const a of agents) await a.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('orchestrator-agent command line', () => {
  test('--version prints the package version and exits 0', () => {
    const r = spawnSync(process.execPath, [mainJs, '--version'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`orchestrator-agent ${version}\n`);
  });

  test('--help lists every option and exits 0 without starting', () => {
    const r = spawnSync(process.execPath, [mainJs, '--help'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    for (const option of ['--config FILE', '--debug', '--verbose', '--log-format', '--version', '--help']) expect(r.stdout).toContain(option);
    expect(r.stderr).not.toContain('listening');
  });

  test('an unknown option or log format exits 2 with the usage', async () => {
    const unknown = await runAgentExpectingExit(['--no-such-option']);
    expect(unknown.code).toBe(2);
    expect(unknown.output).toContain("Unknown option '--no-such-option'");
    expect(unknown.output).toContain('Usage: orchestrator-agent');
    const format = await runAgentExpectingExit(['--log-format', 'xml']);
    expect(format.code).toBe(2);
    expect(format.output).toContain('--log-format must be "text" or "json"');
  });

  test('the log banner names the version', async () => {
    const dir = tempDir('oa-cli-');
    dirs.push(dir);
    const agent = await startAgentProcess(writeConfig(dir, {}));
    agents.push(agent);
    expect(agent.output()).toMatch(new RegExp(`INFO orchestrator-agent ${version.replace(/\./g, '\\.')} starting`));
  });

  test('--log-format json writes one JSON object a line with time, level and message', async () => {
    const dir = tempDir('oa-cli-json-');
    dirs.push(dir);
    const child = spawnSync(process.execPath, [mainJs, '--log-format', 'json', '--config', join(dir, 'missing.json')], { encoding: 'utf8' });
    expect(child.status).toBe(1);
    const lines = child.stderr.trim().split('\n');
    const parsed = lines.map((l) => JSON.parse(l) as { time: string; level: string; msg: string; version?: string });
    expect(parsed[0]).toMatchObject({ level: 'info', msg: `orchestrator-agent ${version} starting`, version });
    expect(Date.parse(parsed[0].time)).not.toBeNaN();
    expect(parsed.at(-1)).toMatchObject({ level: 'error' });
    expect(parsed.at(-1)!.msg).toContain('missing.json does not exist');
  });
});
