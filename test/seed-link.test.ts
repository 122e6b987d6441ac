import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { readdirSync, rmSync } from 'node:fs';
import { tempDir } from './support/agent-process.js';
import { startSeedAgent, type SeedAgent } from './support/seed-api.js';
import { freePort, makeSourceHost, makeTargetHost, stopTargetMysqld, type SourceHost, type TargetHost } from './support/seed-hosts.js';

// The two halves of a seed stay linked without anyone watching both: a source seed that ends without
// sending tells its target over a short transfer connection, so the target ends within seconds with the
// source's reason instead of waiting out its connect deadline (600 s here, the default).

describe('linked seed halves (two requests, built-in transfer)', () => {
  const dirs: string[] = [];
  let host: TargetHost;
  let source: SourceHost;
  let target: SeedAgent;
  let sender: SeedAgent;

  beforeAll(async () => {
    const [targetDir, sourceDir, sourceAgentDir] = ['oa-link-tgt-', 'oa-link-src-', 'oa-link-srcagent-'].map((p) => tempDir(p));
    dirs.push(targetDir, sourceDir, sourceAgentDir);
    host = makeTargetHost(targetDir, await freePort());
    source = makeSourceHost(sourceDir, `oa-link-${process.pid}`);
    target = await startSeedAgent(targetDir, { ...host.config, ReceiveSeedDataCommand: '', SeedTransferBindAddress: '127.0.0.1', SeedTransferConnectTimeoutSeconds: 600 });
    sender = await startSeedAgent(sourceAgentDir, { ...source.config, SendSeedDataCommand: '' });
  }, 120_000);
  afterAll(async () => {
    await target?.agent.stop();
    await sender?.agent.stop();
    if (host) stopTargetMysqld(host);
    source?.cleanup();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  async function createTarget(id: string): Promise<{ port: number; authKey: string }> {
    const res = await target.call<{ transfer: { port: number; authKey: string } }>('POST', '/api/seeds', { id, role: 'target' });
    expect(res.status).toBe(201);
    await target.waitFor(id, (v) => v.state === 'receiving', 'receiving');
    return res.body.transfer;
  }

  test('a source created with a wrong snapshot fails, and its target ends at once with that reason, MySQL stopped and the datadir empty', async () => {
    const { port, authKey } = await createTarget('link-bad');
    const res = await sender.call('POST', '/api/seeds', { id: 'link-bad', role: 'source', targetHost: '127.0.0.1', targetPort: port, authKey, snapshot: 'no-such-snapshot' });
    expect(res.status).toBe(201);
    const sourceView = await sender.waitFor('link-bad', (v) => v.status !== 'active', 'its end');
    expect(sourceView.status).toBe('failed');
    // Well before the target's 600 s connect deadline.
    const targetView = await target.waitFor('link-bad', (v) => v.status !== 'active', 'its end', 60_000);
    expect(targetView.status).toBe('failed');
    expect(targetView.error!.message).toContain('the source seed link-bad failed during mountingSnapshot');
    expect(targetView.error!.message).toContain(sourceView.error!.message);
    expect(targetView.history.find((h) => h.state === 'receiving')?.error).toContain('the source seed link-bad failed');
    // What the page tells the operator: MySQL is stopped and the datadir is empty.
    expect(host.mysqlRunning()).toBe(false);
    expect(readdirSync(host.datadir)).toEqual([]);
    expect(sender.agent.output()).toContain('told the receiver why this sender stops');
  });

  test('an operator ABORT of the source before it sends ends the target as aborted by the peer, not failed', async () => {
    const { port, authKey } = await createTarget('link-abort');
    const res = await sender.call('POST', '/api/seeds', { id: 'link-abort', role: 'source', targetHost: '127.0.0.1', targetPort: port, authKey, snapshot: 'no-such-snapshot', stepByStep: true });
    expect(res.status).toBe(201);
    await sender.waitFor('link-abort', (v) => v.paused, 'paused before its first step');
    expect((await sender.call('POST', '/api/seeds/link-abort/events', { type: 'ABORT' })).status).toBe(200);
    expect((await sender.waitFor('link-abort', (v) => v.status !== 'active', 'its end')).status).toBe('aborted');
    const targetView = await target.waitFor('link-abort', (v) => v.status !== 'active', 'its end', 60_000);
    expect(targetView.status).toBe('aborted');
    expect(targetView.error!.code).toBe('aborted');
    expect(targetView.error!.message).toContain('the source seed link-abort was aborted by its operator during mountingSnapshot');
  });
});
