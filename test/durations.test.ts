// User-given durations are checked against an allowed range, and timers longer than setTimeout's limit
// (2^31-1 ms, ~24.8 days) wait instead of firing at once.
import { afterEach, describe, expect, test } from '@jest/globals';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../src/config.js';
import { runShell } from '../src/process-runner.js';
import { MAX_DURATION_SECONDS, MAX_TIMER_MS } from '../src/timers.js';
import { tempDir } from './support/agent-process.js';
import { startSeedAgent, type SeedAgent } from './support/seed-api.js';
import { freePort, makeTargetHost, stopTargetMysqld, type TargetHost } from './support/seed-hosts.js';

const agents: SeedAgent[] = [];
const targets: TargetHost[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) await a.agent.stop();
  for (const t of targets.splice(0)) stopTargetMysqld(t);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('durations', () => {
  test('a command whose timeout is beyond 2^31-1 ms runs to its end instead of being killed at once', async () => {
    const result = await runShell('sleep 0.5; echo finished', [], { timeoutMs: 3_000_000 * 1000 });
    expect(3_000_000 * 1000).toBeGreaterThan(MAX_TIMER_MS);
    expect(result.stdout).toBe('finished\n');
  });

  test('timeoutSeconds outside 1..30 days is refused with a 400 naming the range; the edges are accepted', async () => {
    const dir = tempDir('oa-durations-');
    dirs.push(dir);
    const host = makeTargetHost(dir, await freePort());
    targets.push(host);
    const agent = await startSeedAgent(dir, host.config);
    agents.push(agent);
    for (const timeoutSeconds of [1e308, 3_000_000, MAX_DURATION_SECONDS + 1, 0, -5, 1.5, 'soon']) {
      const res = await agent.call<{ message?: string }>('POST', '/api/seeds', { id: 'd1', role: 'target', stepByStep: true, timeoutSeconds });
      expect([timeoutSeconds, res.status]).toEqual([timeoutSeconds, 400]);
      expect(JSON.stringify(res.body)).toContain(`from 1 to ${MAX_DURATION_SECONDS}`);
    }
    const ok = await agent.call('POST', '/api/seeds', { id: 'd1', role: 'target', stepByStep: true, timeoutSeconds: MAX_DURATION_SECONDS });
    expect(ok.status).toBe(201);
    expect((await agent.call('POST', '/api/seeds/d1/events', { type: 'ABORT' })).status).toBe(200);
  }, 60000);

  test.each([
    ['SeedTransferConnectTimeoutSeconds', 1e10],
    ['SeedTransferReconnectTimeoutSeconds', 0],
    ['CommandTimeoutSeconds', 0],
    ['CommandTimeoutSeconds', MAX_DURATION_SECONDS + 1],
    ['SeedTransferReconnectTimeoutSeconds', MAX_DURATION_SECONDS + 1],
  ])('config key %s = %d is refused naming its range', (key, value) => {
    const dir = tempDir('oa-durations-');
    dirs.push(dir);
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ AgentsServer: 'http://a', [key]: value }));
    expect(() => loadConfig(file)).toThrow(new RegExp(`${key} must be from [01] to \\d+, got ${value}`));
  });
});
