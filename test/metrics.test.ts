import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { defaultConfig } from '../src/config.js';
import { createMetrics } from '../src/metrics.js';
import { lazyMetrics } from '../src/routes/metrics-routes.js';
import { startAgentProcess, tempDir, writeConfig, type AgentProcess } from './support/agent-process.js';
import { MemoryFeed, seedView } from './support/seed-views.js';

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
