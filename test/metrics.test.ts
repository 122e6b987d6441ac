import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { defaultConfig } from '../src/config.js';
import { createMetrics } from '../src/metrics.js';
import { lazyMetrics } from '../src/routes/metrics-routes.js';
import { startAgentProcess, tempDir, writeConfig, type AgentProcess } from './support/agent-process.js';
import { MemoryFeed, seedView } from './support/seed-views.js';
import { availableSpace } from '../src/host/disk.js';
import { version } from '../src/version.js';
import { rmSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { startSeedAgent, type SeedAgent } from './support/seed-api.js';
import { freePort, makeTargetHost, stopTargetMysqld, type TargetHost } from './support/seed-hosts.js';
import { waitFor } from './support/fake-orchestrator.js';

/** The value of one sample line, e.g. sample(text, 'orchestrator_agent_seeds{role="target",...}'). */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('Prometheus metrics', () => {
  test('seed changes become seeds-by-state, bytes, step failures and one duration per finished seed', async () => {
    const old = seedView({ id: 'old', role: 'source', machine: 'seedSource', state: 'failed', status: 'failed', progress: { bytesDone: 999, bytesTotal: 999 },
      history: [{ state: 'sending', enteredAt: 0, leftAt: 1, error: { code: 'command_failed', message: 'tar exited 2' } }] });
    const feed = new MemoryFeed([old]);
    const metrics = createMetrics(defaultConfig(), { lastContactAt: () => undefined }, feed);
    feed.subscribe((v) => metrics.observe(v));

    const created = seedView({ id: 's1', state: 'stopMySQL', createdAt: '2026-01-01T00:00:00.000Z' });
    feed.emit(created);
    feed.emit({ ...created, state: 'receiving', progress: { bytesDone: 1000, bytesTotal: 5000 } });
    feed.emit({ ...created, state: 'receiving', progress: { bytesDone: 4000, bytesTotal: 5000 } });
    feed.emit({ ...created, state: 'postCopy', progress: { bytesDone: 5000, bytesTotal: 5000 },
      history: [{ state: 'postCopy', enteredAt: 0, leftAt: 1, error: { code: 'command_failed', message: 'post-copy exited 1' } }] });
    const finished = { ...created, state: 'done', status: 'done' as const, updatedAt: '2026-01-01T00:10:00.000Z', progress: { bytesDone: 5000, bytesTotal: 5000 },
      history: [{ state: 'postCopy', enteredAt: 0, leftAt: 1, error: { code: 'command_failed', message: 'post-copy exited 1' } }] };
    feed.emit(finished);
    feed.emit(finished); // a repeated view changes nothing

    const { body, contentType } = await metrics.render();
    expect(contentType).toMatch(/^text\/plain/);
    expect(sample(body, 'orchestrator_agent_seeds{role="target",state="done",status="done"}')).toBe(1);
    expect(sample(body, 'orchestrator_agent_seeds{role="source",state="failed",status="failed"}')).toBe(1);
    expect(body).not.toContain('state="receiving"');
    expect(sample(body, 'orchestrator_agent_seed_bytes_transferred_total{role="target"}')).toBe(5000);
    // the seed that was already there at start is a baseline, not new traffic
    expect(body).not.toContain('orchestrator_agent_seed_bytes_transferred_total{role="source"}');
    expect(sample(body, 'orchestrator_agent_seed_step_failures_total{machine="seedTarget",step="postCopy"}')).toBe(1);
    expect(body).not.toContain('step="sending"');
    expect(sample(body, 'orchestrator_agent_seed_duration_seconds_count{role="target",outcome="done"}')).toBe(1);
    expect(sample(body, 'orchestrator_agent_seed_duration_seconds_sum{role="target",outcome="done"}')).toBe(600);
  });

  test('a seed that fails without an errored step counts one failure at the step it was in', async () => {
    const feed = new MemoryFeed();
    const metrics = createMetrics(defaultConfig(), { lastContactAt: () => undefined }, feed);
    feed.subscribe((v) => metrics.observe(v));
    const s = seedView({ id: 's2', state: 'stopMySQL', history: [{ state: 'stopMySQL', enteredAt: 0, leftAt: null, error: null }] });
    feed.emit(s);
    feed.emit({ ...s, state: 'failed', status: 'failed', error: { code: 'command_failed', message: 'stop failed' },
      history: [{ state: 'stopMySQL', enteredAt: 0, leftAt: 1, error: null }, { state: 'failed', enteredAt: 1, leftAt: null, error: null }] });
    const { body } = await metrics.render();
    expect(sample(body, 'orchestrator_agent_seed_step_failures_total{machine="seedTarget",step="stopMySQL"}')).toBe(1);
    expect(sample(body, 'orchestrator_agent_seed_duration_seconds_count{role="target",outcome="failed"}')).toBe(1);
  });

  test("an operator's ABORT is no step failure; per-seed bytes done and total show while a seed is active", async () => {
    const feed = new MemoryFeed();
    const metrics = createMetrics(defaultConfig(), { lastContactAt: () => undefined }, feed);
    feed.subscribe((v) => metrics.observe(v));
    const s = seedView({ id: 's3', state: 'receiving', progress: { bytesDone: 300, bytesTotal: 1200 }, history: [{ state: 'receiving', enteredAt: 0, leftAt: null, error: null }] });
    feed.emit(s);
    let body = (await metrics.render()).body;
    expect(sample(body, 'orchestrator_agent_seed_bytes_done{seed="s3",role="target"}')).toBe(300);
    expect(sample(body, 'orchestrator_agent_seed_bytes_total{seed="s3",role="target"}')).toBe(1200);
    // What the seed manager emits on ABORT: the step it was in carries "seed aborted during ...".
    feed.emit({ ...s, state: 'aborted', status: 'aborted', error: { code: 'aborted', message: 'seed aborted during receiving' },
      history: [{ state: 'receiving', enteredAt: 0, leftAt: 1, error: 'seed aborted during receiving' }, { state: 'cleanup', enteredAt: 1, leftAt: 2, error: null }, { state: 'aborted', enteredAt: 2, leftAt: null, error: null }] });
    body = (await metrics.render()).body;
    expect(body).not.toContain('orchestrator_agent_seed_step_failures_total{');
    expect(sample(body, 'orchestrator_agent_seed_duration_seconds_count{role="target",outcome="aborted"}')).toBe(1);
    expect(body).not.toContain('seed="s3"');
  });

  test('the build version, MySQL up and the datadir free bytes are read at scrape time', async () => {
    const dir = tempDir('oa-metrics-host-');
    const config = { ...defaultConfig(), MySQLServiceStatusCommand: 'true', MySQLDatadirCommand: `echo ${dir}` };
    let running = true;
    const asked: string[] = [];
    const host = {
      mysql: { isRunning: async () => running, datadir: async () => dir },
      datadir: { availableSpace: async (path: string) => (asked.push(path), availableSpace(path).then(() => 123_456_789)) },
    };
    const metrics = createMetrics(config, { lastContactAt: () => undefined }, undefined, host);
    let body = (await metrics.render()).body;
    expect(sample(body, `orchestrator_agent_build_info{version="${version}"}`)).toBe(1);
    expect(sample(body, 'orchestrator_agent_mysql_up')).toBe(1);
    expect(sample(body, 'orchestrator_agent_datadir_free_bytes')).toBe(123_456_789);
    expect(asked).toEqual([dir]);
    running = false;
    body = (await metrics.render()).body;
    expect(sample(body, 'orchestrator_agent_mysql_up')).toBe(0);
    rmSync(dir, { recursive: true, force: true });
    // A datadir that cannot be read is unknown (NaN), not a wrong number.
    expect(sample((await metrics.render()).body, 'orchestrator_agent_datadir_free_bytes')).toBeNaN();
  });

  test('seed changes before the first scrape (prom-client not loaded yet) count as if it had watched from the start', async () => {
    const old = seedView({ id: 'old', role: 'source', machine: 'seedSource', state: 'sending', progress: { bytesDone: 700, bytesTotal: 999 } });
    const feed = new MemoryFeed([old]);
    const metrics = lazyMetrics(defaultConfig(), { lastContactAt: () => undefined }, feed);
    const created = seedView({ id: 's1', state: 'receiving', createdAt: '2026-01-01T00:00:00.000Z', progress: { bytesDone: 4000, bytesTotal: 5000 } });
    feed.emit(created);
    // a retried transfer starts its count again: the 4000 bytes already moved still count
    feed.emit({ ...created, progress: { bytesDone: 1000, bytesTotal: 5000 },
      history: [{ state: 'receiving', enteredAt: 0, leftAt: 1, error: { code: 'unavailable', message: 'sender went away' } }] });
    feed.emit({ ...old, progress: { bytesDone: 900, bytesTotal: 999 } });
    let body = (await metrics.render()).body;
    expect(sample(body, 'orchestrator_agent_seed_bytes_transferred_total{role="target"}')).toBe(4000);
    expect(sample(body, 'orchestrator_agent_seed_bytes_transferred_total{role="source"}')).toBe(200);
    expect(sample(body, 'orchestrator_agent_seed_step_failures_total{machine="seedTarget",step="receiving"}')).toBe(1);
    expect(sample(body, 'orchestrator_agent_seeds{role="target",state="receiving",status="active"}')).toBe(1);

    // once loaded, changes are observed as they come
    feed.emit({ ...created, state: 'done', status: 'done', updatedAt: '2026-01-01T00:10:00.000Z', progress: { bytesDone: 5000, bytesTotal: 5000 },
      history: [{ state: 'receiving', enteredAt: 0, leftAt: 1, error: { code: 'unavailable', message: 'sender went away' } }] });
    body = (await metrics.render()).body;
    expect(sample(body, 'orchestrator_agent_seed_bytes_transferred_total{role="target"}')).toBe(5000);
    expect(sample(body, 'orchestrator_agent_seed_duration_seconds_sum{role="target",outcome="done"}')).toBe(600);
  });

  test('registration status is 1 only while orchestrator answered within StatusBadSeconds', async () => {
    const config = { ...defaultConfig(), StatusBadSeconds: 60 };
    let last: number | undefined;
    const metrics = createMetrics(config, { lastContactAt: () => last });
    expect(sample((await metrics.render()).body, 'orchestrator_agent_registered')).toBe(0);
    last = Date.now() - 10_000;
    let body = (await metrics.render()).body;
    expect(sample(body, 'orchestrator_agent_registered')).toBe(1);
    expect(sample(body, 'orchestrator_agent_last_contact_timestamp_seconds')).toBe(last / 1000);
    last = Date.now() - 61_000;
    body = (await metrics.render()).body;
    expect(sample(body, 'orchestrator_agent_registered')).toBe(0);
  });

  describe('GET /metrics on a real agent process with basic auth', () => {
    let agent: AgentProcess;
    beforeAll(async () => {
      agent = await startAgentProcess(writeConfig(tempDir(), { HTTPAuthUser: 'prom', HTTPAuthPassword: 's3cret' }));
    });
    afterAll(async () => agent?.stop());

    test('answers Prometheus text to basic auth alone, without the process token', async () => {
      const res = await fetch(`${agent.baseUrl}/metrics`, { headers: { Authorization: `Basic ${Buffer.from('prom:s3cret').toString('base64')}` } });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      const body = await res.text();
      expect(body).toContain('# TYPE orchestrator_agent_seeds gauge');
      expect(body).toContain('# TYPE orchestrator_agent_seed_duration_seconds histogram');
      expect(sample(body, 'orchestrator_agent_registered')).toBe(0);
      expect(body).toContain('process_cpu_user_seconds_total');
    });

    test('refuses a scrape without the basic auth credentials', async () => {
      const res = await fetch(`${agent.baseUrl}/metrics`);
      expect(res.status).toBe(401);
      const wrong = await fetch(`${agent.baseUrl}/metrics`, { headers: { Authorization: `Basic ${Buffer.from('prom:nope').toString('base64')}` } });
      expect(wrong.status).toBe(401);
    });
  });
});

describe('GET /metrics during a real built-in transfer seed', () => {
  let dir: string;
  let host: TargetHost | undefined;
  let target: SeedAgent | undefined;
  afterAll(async () => {
    await target?.agent.stop();
    if (host) stopTargetMysqld(host);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('counts a refused transfer connection, shows MySQL up then down, and an ABORT is no step failure', async () => {
    dir = tempDir('oa-metrics-seed-');
    host = makeTargetHost(join(dir, 'target'), await freePort());
    target = await startSeedAgent(join(dir, 'target'), { ...host.config, ReceiveSeedDataCommand: '', SeedTransferBindAddress: '127.0.0.1' });
    const scrape = async () => (await fetch(`${target!.agent.baseUrl}/metrics`)).text();
    let body = await scrape();
    expect(sample(body, 'orchestrator_agent_mysql_up')).toBe(1);
    expect(sample(body, 'orchestrator_agent_datadir_free_bytes')).toBeGreaterThan(0);
    expect(sample(body, 'orchestrator_agent_transfer_connections_refused_total')).toBe(0);

    const created = await target.call<{ transfer: { port: number } }>('POST', '/api/seeds', { id: 'm-seed', role: 'target' });
    expect(created.status).toBe(201);
    await target.waitFor('m-seed', (v) => v.state === 'receiving', 'receiving');
    // Someone without the key: the receiver refuses the connection (retried until the receiver listens).
    const talkedTo = () =>
      new Promise<boolean>((resolve) => {
        let connected = false;
        const socket = connect(created.body.transfer.port, '127.0.0.1', () => {
          connected = true;
          socket.write('not the handshake\n'.repeat(64));
        });
        socket.on('error', () => undefined);
        socket.on('close', () => resolve(connected));
      });
    await waitFor('a connection the receiver accepted, then refused', talkedTo);
    body = await scrape();
    expect(sample(body, 'orchestrator_agent_transfer_connections_refused_total')).toBe(1);
    expect(sample(body, 'orchestrator_agent_mysql_up')).toBe(0);

    expect((await target.call('POST', '/api/seeds/m-seed/events', { type: 'ABORT' })).status).toBe(200);
    await target.waitFor('m-seed', (v) => v.status === 'aborted', 'aborted');
    body = await scrape();
    expect(sample(body, 'orchestrator_agent_seeds{role="target",state="aborted",status="aborted"}')).toBe(1);
    expect(body).not.toContain('orchestrator_agent_seed_step_failures_total{');
  });
});
