import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { Agent as HttpsAgent } from 'node:https';
import { join } from 'node:path';
import fetch from 'node-fetch';
import { mainJs, startAgentProcess, writeConfig, type AgentProcess } from './support/agent-process.js';
import { spawn } from 'node:child_process';
import { makeTestPki, type TestPki } from './support/tls-certs.js';
import { tempDir } from './support/agent-process.js';
import { startSeedAgent, type SeedAgent } from './support/seed-api.js';
import { freePort, makeSourceHost, makeTargetHost, stopTargetMysqld, type SourceHost, type TargetHost } from './support/seed-hosts.js';

// The two halves of a seed stay linked without anyone watching both: a source seed that ends without
// sending tells its target over a short transfer connection, so the target ends within seconds with the
// source's reason instead of waiting out its connect deadline (600 s here, the default).

const fleetSecret = 'fleet-secret-for-tests-5f1c9a';

describe('linked seed halves (two requests, built-in transfer)', () => {
  const dirs: string[] = [];
  let host: TargetHost;
  let source: SourceHost;
  let target: SeedAgent;
  let sender: SeedAgent;
  let targetDir: string;
  let targetConfig: Record<string, unknown>;
  let senderDir: string;
  let senderConfig: Record<string, unknown>;

  beforeAll(async () => {
    const [tgtDir, sourceDir, sourceAgentDir] = ['oa-link-tgt-', 'oa-link-src-', 'oa-link-srcagent-'].map((p) => tempDir(p));
    targetDir = tgtDir;
    dirs.push(targetDir, sourceDir, sourceAgentDir);
    host = makeTargetHost(targetDir, await freePort());
    source = makeSourceHost(sourceDir, `oa-link-${process.pid}`);
    targetConfig = { ...host.config, ReceiveSeedDataCommand: '', SeedTransferBindAddress: '127.0.0.1', SeedTransferConnectTimeoutSeconds: 600, AgentFleetSecret: fleetSecret };
    target = await startSeedAgent(targetDir, targetConfig);
    senderDir = sourceAgentDir;
    senderConfig = { ...source.config, SendSeedDataCommand: '', AgentFleetSecret: fleetSecret };
    sender = await startSeedAgent(senderDir, senderConfig);
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

  test('a target aborted before its sender connected tells the source on its transfer port, which ends aborted at once', async () => {
    const res = await target.call<{ transfer: { port: number; authKey: string } }>('POST', '/api/seeds', { id: 'link-tport', role: 'target', stepByStep: true });
    expect(res.status).toBe(201);
    const { port, authKey } = res.body.transfer;
    await target.waitFor('link-tport', (v) => v.paused, 'paused before its first step');
    expect((await sender.call('POST', '/api/seeds', { id: 'link-tport', role: 'source', targetHost: '127.0.0.1', targetPort: port, authKey, snapshot: source.snapshot })).status).toBe(201);
    await sender.waitFor('link-tport', (v) => v.state === 'sending', 'sending (no receiver yet)');
    expect((await target.call('POST', '/api/seeds/link-tport/events', { type: 'ABORT' })).status).toBe(200);
    expect((await target.waitFor('link-tport', (v) => v.status !== 'active', 'its end')).status).toBe('aborted');
    // Well before the source's 600 s connect deadline.
    const sourceView = await sender.waitFor('link-tport', (v) => v.status !== 'active', 'its end', 60_000);
    expect(sourceView.status).toBe('aborted');
    expect(sourceView.error!.message).toContain('the target seed link-tport was aborted by its operator during stoppingMySQL');
    expect(target.agent.output()).toContain('told a sender why this receiver ended');
  });

  test('a target aborted before its sender came still tells the source after its agent was killed (-9) and restarted', async () => {
    const res = await target.call<{ transfer: { port: number; authKey: string } }>('POST', '/api/seeds', { id: 'link-farewell', role: 'target', stepByStep: true });
    expect(res.status).toBe(201);
    const { port, authKey } = res.body.transfer;
    await target.waitFor('link-farewell', (v) => v.paused, 'paused before its first step');
    expect((await target.call('POST', '/api/seeds/link-farewell/events', { type: 'ABORT' })).status).toBe(200);
    expect((await target.waitFor('link-farewell', (v) => v.status !== 'active', 'its end')).status).toBe('aborted');
    // The agent dies while it answers on the port; the one started after it answers again.
    await target.agent.kill9();
    target = await startSeedAgent(targetDir, targetConfig);
    expect((await sender.call('POST', '/api/seeds', { id: 'link-farewell', role: 'source', targetHost: '127.0.0.1', targetPort: port, authKey, snapshot: source.snapshot })).status).toBe(201);
    // Well before the source's 600 s connect deadline.
    const sourceView = await sender.waitFor('link-farewell', (v) => v.status !== 'active', 'its end', 60_000);
    expect(sourceView.status).toBe('aborted');
    expect(sourceView.error!.message).toContain('the target seed link-farewell was aborted by its operator');
    expect(target.agent.output()).toContain('answering senders again on the transfer port of an ended target seed');
    expect(target.agent.output()).toContain('told a sender why this receiver ended');
  });

  test('a source aborted while its target agent is down keeps telling the target, across its own restart, until the target is back', async () => {
    const { port, authKey } = await createTarget('link-tell');
    await target.agent.kill9();
    const res = await sender.call('POST', '/api/seeds', { id: 'link-tell', role: 'source', targetHost: '127.0.0.1', targetPort: port, authKey, snapshot: source.snapshot, stepByStep: true });
    expect(res.status).toBe(201);
    await sender.waitFor('link-tell', (v) => v.paused, 'paused before its first step');
    expect((await sender.call('POST', '/api/seeds/link-tell/events', { type: 'ABORT' })).status).toBe(200);
    // Its cleanup tries the target for 20 s, then the seed ends and the telling goes on in the background.
    expect((await sender.waitFor('link-tell', (v) => v.status !== 'active', 'its end', 60_000)).status).toBe('aborted');
    expect(sender.agent.output()).toContain('will keep telling the target seed why this source seed ended');
    // The source agent dies too; the one started after it takes the telling up again.
    await sender.agent.kill9();
    sender = await startSeedAgent(senderDir, senderConfig);
    target = await startSeedAgent(targetDir, targetConfig);
    const targetView = await target.waitFor('link-tell', (v) => v.status !== 'active', 'its end', 60_000);
    expect(targetView.status).toBe('aborted');
    expect(targetView.error!.message).toContain('the source seed link-tell was aborted by its operator');
    expect(sender.agent.output()).toContain('telling the target seed again why this source seed ended');
  }, 120_000);

  test('one POST on the target with "source" creates both halves over an authenticated agent-to-agent call and shows the peer', async () => {
    const res = await target.call<{ seed: { id: string }; transfer: Record<string, unknown> }>('POST', '/api/seeds', {
      id: 'link-one',
      role: 'target',
      startMySQL: true,
      snapshot: source.snapshot,
      source: { host: '127.0.0.1', port: sender.agent.port },
    });
    expect(res.status).toBe(201);
    expect(res.body.transfer.authKey).toBeUndefined(); // handed over to the source agent, not to the caller
    expect((await target.waitFor('link-one', (v) => v.status !== 'active', 'its end', 60_000)).status).toBe('done');
    expect((await sender.waitFor('link-one', (v) => v.status !== 'active', 'its end')).status).toBe('done');
    const view = (await target.seed('link-one')) as unknown as { peer: Record<string, unknown> };
    expect(view.peer).toMatchObject({ host: '127.0.0.1', port: sender.agent.port, seedId: 'link-one', role: 'source', state: 'done', status: 'done' });
    expect(target.agent.output()).toMatch(/agent-to-agent call.*POST.*\/api\/peer\/seeds/);
    expect(sender.agent.output()).toMatch(/agent-to-agent call.*fleet secret/);
    for (const out of [target.agent.output(), sender.agent.output()]) expect(out).not.toContain(fleetSecret);
    expect(host.mysqlRunning()).toBe(true);
  });

  test('orchestrator-agent seed --linked lets the target agent create the source half and follows both to done', async () => {
    const child = spawn(
      process.execPath,
      [mainJs, 'seed', '--linked', '--source', `127.0.0.1:${sender.agent.port}`, '--target', `127.0.0.1:${target.agent.port}`, '--snapshot', source.snapshot, '--id', 'link-cli'],
      { env: { ...process.env, ORCHESTRATOR_AGENT_SOURCE_TOKEN: sender.token, ORCHESTRATOR_AGENT_TARGET_TOKEN: target.token }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    expect(output).toContain('source seed created by the target agent');
    expect(code).toBe(0);
    expect((await sender.seed('link-cli')).status).toBe('done');
    expect(((await target.seed('link-cli')) as unknown as { peer: { seedId: string } }).peer.seedId).toBe('link-cli');
  });

  test('a linked target aborted before its sender connected ends the source at once as aborted by its peer', async () => {
    const res = await target.call('POST', '/api/seeds', {
      id: 'link-tabort',
      role: 'target',
      stepByStep: true,
      snapshot: source.snapshot,
      source: { host: '127.0.0.1', port: sender.agent.port },
    });
    expect(res.status).toBe(201);
    await target.waitFor('link-tabort', (v) => v.paused, 'paused before its first step');
    await sender.waitFor('link-tabort', (v) => v.state === 'sending', 'sending (no receiver yet)');
    expect((await target.call('POST', '/api/seeds/link-tabort/events', { type: 'ABORT' })).status).toBe(200);
    expect((await target.waitFor('link-tabort', (v) => v.status !== 'active', 'its end')).status).toBe('aborted');
    const sourceView = await sender.waitFor('link-tabort', (v) => v.status !== 'active', 'its end', 60_000);
    expect(sourceView.status).toBe('aborted');
    // Told by the target agent's call or by its transfer port, whichever comes first: the same reason.
    expect(sourceView.error!.message).toContain('the target seed link-tabort was aborted');
  });

  test('agent-to-agent routes refuse a call without a valid fleet signature, and the operator token does not open them', async () => {
    const url = `${sender.agent.baseUrl}/api/peer/seeds`;
    const body = JSON.stringify({ id: 'link-forged', role: 'source', targetHost: '127.0.0.1', targetPort: 1, authKey: 'x'.repeat(32), snapshot: 'a' });
    const forged = await fetch(url, { method: 'POST', body, headers: { 'X-Orchestrator-Agent-Fleet': `t=${Math.floor(Date.now() / 1000)},sig=${'0'.repeat(64)}` } });
    expect(forged.status).toBe(401);
    const withToken = await fetch(url, { method: 'POST', body, headers: { Authorization: `Bearer ${sender.token}` } });
    expect(withToken.status).toBe(401);
    expect((await sender.call('GET', '/api/seeds/link-forged')).status).toBe(404);
    expect(sender.agent.output()).toContain('agent-to-agent call refused');
  });

  test('without AgentFleetSecret or mutual TLS, a request with "source" is refused before any seed is made, naming what to set', async () => {
    const dir = tempDir('oa-link-nosecret-');
    dirs.push(dir);
    const lone = await startSeedAgent(dir, { ...host.config, ReceiveSeedDataCommand: '' });
    try {
      const res = await lone.call<{ Message: string; Details: { hint: string } }>('POST', '/api/seeds', {
        id: 'link-nosecret',
        role: 'target',
        snapshot: source.snapshot,
        source: { host: '127.0.0.1', port: sender.agent.port },
      });
      expect(res.status).toBe(500);
      expect(res.body.Message).toContain('need AgentFleetSecret or mutual TLS');
      expect(res.body.Details.hint).toContain('set AgentFleetSecret');
      expect((await lone.call('GET', '/api/seeds/link-nosecret')).status).toBe(404);
      expect((await sender.call('GET', '/api/seeds/link-nosecret')).status).toBe(404);
    } finally {
      await lone.agent.stop();
    }
  });

  test('an agent restart is marked in the step history where it picked the seed up', async () => {
    expect((await target.call('POST', '/api/seeds', { id: 'link-restart', role: 'target', stepByStep: true })).status).toBe(201);
    await target.waitFor('link-restart', (v) => v.paused, 'paused before its first step');
    await target.agent.stop();
    target = await startSeedAgent(targetDir, targetConfig);
    const view = (await target.waitFor('link-restart', (v) => v.paused, 'paused again after the restart')) as unknown as {
      history: { state: string; resumedAt?: string[] }[];
      warnings: { message: string }[];
    };
    const entry = view.history.at(-1)!;
    expect(entry.state).toBe('stoppingMySQL');
    expect(entry.resumedAt).toHaveLength(1);
    expect(view.warnings.map((w) => w.message)).toContain(`the agent restarted at ${entry.resumedAt![0]}; the seed resumed in stoppingMySQL`);
    expect((await target.call('POST', '/api/seeds/link-restart/events', { type: 'ABORT' })).status).toBe(200);
    await target.waitFor('link-restart', (v) => v.status === 'aborted', 'aborted');
  });
});

describe('linked seed halves over mutual TLS (no fleet secret)', () => {
  const dirs: string[] = [];
  let pki: TestPki;
  let host: TargetHost;
  let target: AgentProcess;
  let sourceAgent: AgentProcess;
  const tokens: Record<number, string> = {};

  async function call<T>(agent: AgentProcess, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const client = pki.clients.orchestrator;
    const httpsAgent = new HttpsAgent({ ca: pki.read(pki.caCert), cert: pki.read(client.cert), key: pki.read(client.key), keepAlive: false });
    const res = await fetch(`https://127.0.0.1:${agent.port}${path}`, {
      method,
      agent: httpsAgent,
      headers: { Authorization: `Bearer ${tokens[agent.port]}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    return { status: res.status, body: (await res.json()) as T };
  }

  async function waitEnded(agent: AgentProcess, id: string): Promise<{ status: string; error: { message: string } | null }> {
    for (let i = 0; i < 600; i++) {
      const res = await call<{ status: string; error: { message: string } | null }>(agent, 'GET', `/api/seeds/${id}`);
      if (res.status === 200 && res.body.status !== 'active') return res.body;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`seed ${id} did not end:\n${agent.output().slice(-3000)}`);
  }

  async function start(dir: string, config: Record<string, unknown>): Promise<AgentProcess> {
    const ssl = { UseSSL: true, UseMutualTLS: true, SSLCertFile: pki.server.cert, SSLPrivateKeyFile: pki.server.key, SSLCAFile: pki.caCert };
    const agent = await startAgentProcess(writeConfig(dir, { TokenHintFile: join(dir, 'token'), StatusBadSeconds: 3600, ...ssl, ...config }));
    tokens[agent.port] = readFileSync(join(dir, 'token'), 'utf8');
    return agent;
  }

  beforeAll(async () => {
    const [pkiDir, targetDir, sourceDir] = ['oa-link-pki-', 'oa-link-mtls-tgt-', 'oa-link-mtls-src-'].map((p) => tempDir(p));
    dirs.push(pkiDir, targetDir, sourceDir);
    pki = makeTestPki(pkiDir, ['orchestrator']);
    host = makeTargetHost(targetDir, await freePort());
    target = await start(targetDir, { ...host.config, ReceiveSeedDataCommand: '', SeedTransferBindAddress: '127.0.0.1' });
    // A source whose snapshot directory is empty: its seed fails at mounting, after it was made over mutual TLS.
    mkdirSync(join(sourceDir, 'snapshots'));
    mkdirSync(join(sourceDir, 'mnt'));
    sourceAgent = await start(sourceDir, { SnapshotBackend: 'btrfs', BtrfsSnapshotsDir: join(sourceDir, 'snapshots'), SnapshotMountPoint: join(sourceDir, 'mnt'), SendSeedDataCommand: '' });
  }, 120_000);
  afterAll(async () => {
    await target?.stop();
    await sourceAgent?.stop();
    if (host) stopTargetMysqld(host);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('the target agent creates the source half with its own certificate, and the source failing ends the target with its reason', async () => {
    const res = await call(target, 'POST', '/api/seeds', { id: 'mtls-1', role: 'target', snapshot: 'no-such-snapshot', source: { host: '127.0.0.1', port: sourceAgent.port } });
    expect(res.status).toBe(201);
    const sourceView = await waitEnded(sourceAgent, 'mtls-1');
    expect(sourceView.status).toBe('failed');
    const targetView = await waitEnded(target, 'mtls-1');
    expect(targetView.status).toBe('failed');
    expect(targetView.error!.message).toContain('the source seed mtls-1 failed during mountingSnapshot');
    expect(sourceAgent.output()).toMatch(/agent-to-agent call .*"auth":"mutual TLS"/);
    expect(target.output()).toMatch(/agent-to-agent call .*"to":"127\.0\.0\.1:\d+".*"auth":"mutual TLS"/);
  });
});
