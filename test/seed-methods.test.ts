// POST /api/seeds "method": snapshot by default (today's flow, shown as method in the view), dump runs its own
// chart (startMySQL ignored), a clear 400 for a method this agent does not know, and old seed files (no method)
// read as snapshot.
import { afterAll, describe, expect, test } from '@jest/globals';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './support/agent-process.js';
import { startSeedAgent, type SeedAgent } from './support/seed-api.js';
import { freePort, makeTargetHost, stopTargetMysqld, type TargetHost } from './support/seed-hosts.js';

const dir = tempDir('oa-seed-methods-');
let host: TargetHost;
let agent: SeedAgent | undefined;
afterAll(async () => {
  await agent?.agent.stop();
  if (host) stopTargetMysqld(host);
  rmSync(dir, { recursive: true, force: true });
});

describe('seed methods', () => {
  test('snapshot is the default method, dump makes a seed of its own chart, an unknown method 400, and an old seed file reads as snapshot', async () => {
    host = makeTargetHost(dir, await freePort());
    // A seed file written before methods existed (no method anywhere in it), finished.
    mkdirSync(join(dir, 'state', 'seeds'), { recursive: true });
    const now = new Date().toISOString();
    writeFileSync(
      join(dir, 'state', 'seeds', 'old.json'),
      JSON.stringify({
        formatVersion: 1, id: 'old', role: 'target', machine: 'seed-target', machineVersion: 1,
        params: { startMySQL: false, stepByStep: false, receiveOnly: false, port: 1, timeoutSeconds: 60 },
        secrets: {},
        snapshot: {
          status: 'done', value: 'done', children: {}, historyValue: {},
          context: { seedId: 'old', params: { startMySQL: false, stepByStep: false, receiveOnly: false, port: 1 }, deadlines: { seed: Date.now() + 60000, connect: null }, facts: {}, error: null, endReason: null, connectTimeoutMs: 1000 },
        },
        history: [], progress: null, pgids: [], marks: {}, createdAt: now, updatedAt: now,
      }),
    );
    agent = await startSeedAgent(dir, { ...host.config });
    expect((await agent.seed('old')).method).toBe('snapshot');

    const dump = await agent.call<{ seed: { method: string; machine: string; state: string; params: Record<string, unknown> }; transfer: { port: number; authKey: string } }>(
      'POST', '/api/seeds', { id: 'd1', role: 'target', method: 'dump', startMySQL: true, replicate: true },
    );
    expect(dump.status).toBe(201);
    expect([dump.body.seed.method, dump.body.seed.machine, dump.body.seed.state]).toEqual(['dump', 'seed-dump-target', 'checking']);
    // A dump loads into the running MySQL: startMySQL is not a parameter of it.
    expect(dump.body.seed.params).not.toHaveProperty('startMySQL');
    expect(dump.body.seed.params).toMatchObject({ method: 'dump', replicate: true, force: false });
    expect(dump.body.transfer.authKey).toMatch(/^[0-9a-f]{32,}$/);
    await agent.call('POST', '/api/seeds/d1/events', { type: 'ABORT' });
    expect((await agent.waitFor('d1', (v) => v.status !== 'active', 'an end')).status).toBe('aborted');
    const unknown = await agent.call<{ Message: string }>('POST', '/api/seeds', { id: 'u1', role: 'target', method: 'rsync' });
    expect(unknown.status).toBe(400);
    expect(unknown.body.Message).toContain('method must be one of');

    host.delay('receive', 30);
    const created = await agent.call<{ seed: { method: string; machine: string } }>('POST', '/api/seeds', { id: 's1', role: 'target' });
    expect(created.status).toBe(201);
    expect([created.body.seed.method, created.body.seed.machine]).toEqual(['snapshot', 'seed-target']);
    const explicit = await agent.call<{ seed: { method: string } }>('POST', '/api/seeds', { id: 's1', role: 'target', method: 'snapshot' });
    expect(explicit.status).toBe(200);
    await agent.call('POST', '/api/seeds/s1/events', { type: 'ABORT' });
    await agent.waitFor('s1', (v) => v.status !== 'active', 'an end');
  }, 60000);
});
