import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { Server } from 'node:http';
import { defaultConfig, type Config } from '../src/config.js';
import { createApp } from '../src/http/app.js';
import { createServer, listen } from '../src/http/server.js';
import type { AgentServices } from '../src/services.js';
import type { SeedView } from '../src/seed-feed.js';
import { launchBrowser, type Browser } from './support/browser.js';
import { MemoryFeed, seedView } from './support/seed-views.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, startAgentProcess, tempDir, writeConfig } from './support/agent-process.js';

// The web view against a real HTTP server whose seed feed the test drives step by step, so every
// change the page must show is known. The end-to-end test with a real seed is in seed-ui.e2e.test.ts.

const token = 'a'.repeat(64);
const basic = { username: 'ops', password: 'pw' };
const basicHeader = `Basic ${Buffer.from(`${basic.username}:${basic.password}`).toString('base64')}`;

async function startServer(overrides: Partial<Config>, feed: MemoryFeed) {
  const config: Config = { ...defaultConfig(), AgentsServer: 'http://127.0.0.1', StateDir: tempDir(), ...overrides };
  const services = { config, token, startedAt: Date.now(), contact: { lastContactAt: () => undefined }, seeds: feed } as AgentServices & { seeds: MemoryFeed };
  const server: Server = createServer(createApp(services), config);
  const port = await listen(server, 0, '127.0.0.1');
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    /** Cuts every open connection (the streams too) while the server keeps listening. */
    dropConnections: () => server.closeAllConnections(),
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Reads Server-Sent Events from a response until `until` says stop; returns them as {event, data}. */
async function readEvents(res: Response, until: (events: { event: string; data: unknown }[]) => boolean) {
  const events: { event: string; data: unknown }[] = [];
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  while (!until(events)) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (event && data) events.push({ event, data: JSON.parse(data) });
    }
  }
  await reader.cancel();
  return events;
}

describe('web view and seed stream', () => {
  const feed = new MemoryFeed([seedView({ id: 'old-seed', state: 'done', status: 'done', machine: 'registration' })]);
  let server: Awaited<ReturnType<typeof startServer>>;
  beforeAll(async () => {
    server = await startServer({ TokenHttpHeader: 'X-Agent-Token', HTTPAuthUser: basic.username, HTTPAuthPassword: basic.password }, feed);
  });
  afterAll(async () => server?.stop());

  test('the seed stream sends a snapshot, then each seed change, and unsubscribes when the client goes', async () => {
    const res = await fetch(`${server.baseUrl}/api/seeds-stream`, { headers: { Authorization: basicHeader, 'X-Agent-Token': token } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const before = feed.listenerCount();
    const reading = readEvents(res, (events) => events.length >= 2);
    await new Promise((r) => setTimeout(r, 50));
    feed.emit(seedView({ id: 'new-seed', state: 'receiving', machine: 'registration' }));
    const events = await reading;
    expect(events[0].event).toBe('snapshot');
    expect((events[0].data as { seeds: SeedView[] }).seeds.map((s) => s.id)).toContain('old-seed');
    expect(events[1]).toEqual({ event: 'seed', data: expect.objectContaining({ id: 'new-seed', state: 'receiving' }) });
    for (let i = 0; i < 100 && feed.listenerCount() >= before; i++) await new Promise((r) => setTimeout(r, 20));
    expect(feed.listenerCount()).toBe(before - 1);
  });

  test('the stream and the page refuse a caller without the token', async () => {
    for (const path of ['/api/seeds-stream', '/ui', '/ui/diagrams/registration.svg']) {
      const res = await fetch(`${server.baseUrl}${path}`, { headers: { Authorization: basicHeader } });
      expect(res.status).toBe(401);
    }
    const noBasic = await fetch(`${server.baseUrl}/ui?token=${token}`);
    expect(noBasic.status).toBe(401);
  });

  test('the page is served to a caller with the token, uncached, and diagrams are served by machine name', async () => {
    const res = await fetch(`${server.baseUrl}/ui?token=${token}`, { headers: { Authorization: basicHeader } });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const html = await res.text();
    expect(html).toContain('<section id="seeds">');
    expect(html).toContain('"tokenVia":"header"');
    const svg = await fetch(`${server.baseUrl}/ui/diagrams/registration.svg`, { headers: { Authorization: basicHeader, 'X-Agent-Token': token } });
    expect(svg.status).toBe(200);
    expect(await svg.text()).toContain('id="state:submitting"');
    const bad = await fetch(`${server.baseUrl}/ui/diagrams/..%2Fpackage.json`, { headers: { Authorization: basicHeader, 'X-Agent-Token': token } });
    expect(bad.status).toBe(400);
    const none = await fetch(`${server.baseUrl}/ui/diagrams/noSuchMachine.svg`, { headers: { Authorization: basicHeader, 'X-Agent-Token': token } });
    expect(none.status).toBe(404);
  });

  describe('in headless Chromium', () => {
    let browser: Browser;
    beforeAll(async () => {
      browser = await launchBrowser({ httpCredentials: basic });
    });
    afterAll(async () => browser?.close());

    test('a person sees each seed change live: highlighted state, progress, history, then the error', async () => {
      const page = await browser.context.newPage();
      await page.goto(`${server.baseUrl}/ui?token=${token}`);
      // the token leaves the address bar
      await page.waitForFunction(() => !location.search.includes('token'));
      // the header names the agent's version
      const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
      expect(await page.locator('#version').textContent()).toBe(`v${version}`);
      const card = page.locator('[data-seed-id="live-seed"]');
      const start = seedView({ id: 'live-seed', machine: 'registration', state: 'submitting', history: [{ state: 'submitting', enteredAt: Date.now(), leftAt: null, error: null }] });
      await page.locator('#connection[data-state="live"]').waitFor();
      feed.emit(start);
      await card.locator('[id="state:submitting"].current').waitFor();
      expect(await card.locator('.badge').textContent()).toBe('active');

      feed.emit({ ...start, state: 'registered.waiting', progress: { bytesDone: 512 * 1024 * 1024, bytesTotal: 1024 * 1024 * 1024, rateBytesPerSec: 10 * 1024 * 1024, etaSeconds: 51, currentFile: 'ibdata1', filesDone: 3, filesTotal: 9 },
        history: [{ ...start.history[0], leftAt: Date.now() }, { state: 'registered.waiting', enteredAt: Date.now(), leftAt: null, error: null }] });
      await card.locator('[id="state:registered.waiting"].current').waitFor();
      expect(await card.locator('[id="state:submitting"]').getAttribute('class')).toContain('visited');
      expect(await card.locator('[id="state:registered"]').getAttribute('class')).toContain('current-parent');
      expect(await card.locator('[id="state:submitting"]').getAttribute('class')).not.toContain('current');
      expect(await card.locator('.bar').getAttribute('aria-valuenow')).toBe('50.0');
      const numbers = await card.locator('.progress .numbers').textContent();
      expect(numbers).toContain('512.0 MiB of 1.0 GiB (50%)');
      expect(numbers).toContain('10.0 MiB/s');
      expect(numbers).toContain('ETA 51s');
      expect(numbers).toContain('current ibdata1');
      expect(numbers).not.toContain('on the wire');
      expect(await card.locator('table.history tbody tr').count()).toBe(2);
      // A compressed copy's sending side: what the data cost on the wire.
      const wire = { compression: 'zstd', dataBytes: 512 * 1024 * 1024, wireBytes: 160 * 1024 * 1024 };
      feed.emit({ ...start, state: 'registered.waiting', progress: { bytesDone: 600 * 1024 * 1024, bytesTotal: 1024 * 1024 * 1024, rateBytesPerSec: null, etaSeconds: null, currentFile: null, filesDone: 3, filesTotal: 9, wire },
        history: [{ ...start.history[0], leftAt: Date.now() }, { state: 'registered.waiting', enteredAt: Date.now(), leftAt: null, error: null }] });
      await card.locator('.progress .numbers', { hasText: 'on the wire' }).waitFor();
      expect(await card.locator('.progress .numbers').textContent()).toContain('160.0 MiB on the wire (3.2x smaller, zstd)');

      feed.emit({ ...start, state: 'backoff', status: 'failed', error: { code: 'command_failed', message: 'post-copy exited with 3: disk full', hint: 'free space on /var/lib/mysql' },
        history: [{ ...start.history[0], leftAt: Date.now() }, { state: 'registered.waiting', enteredAt: Date.now(), leftAt: Date.now(), error: { code: 'command_failed', message: 'post-copy exited with 3: disk full' } }] });
      await card.locator('.badge', { hasText: 'failed' }).waitFor();
      expect(await card.locator('.error').textContent()).toContain('post-copy exited with 3: disk full');
      expect(await card.locator('.error').textContent()).toContain('free space on /var/lib/mysql');
      expect(await card.locator('table.history td.err').textContent()).toContain('disk full');
      expect(await card.locator('[id="state:registered.waiting"]').getAttribute('class')).toContain('failed-here');
      expect(await card.locator('[id="state:backoff"]').getAttribute('class')).toContain('current');
      await page.close();
    });

    test('a finished seed shows its steps, skipped ones, its full duration in UTC and no transfer rate', async () => {
      const page = await browser.context.newPage();
      await page.goto(`${server.baseUrl}/ui?token=${token}`);
      await page.locator('#connection[data-state="live"]').waitFor();
      const t0 = Date.parse('2026-03-01T10:00:00Z');
      const at = (s: number) => new Date(t0 + s * 1000).toISOString();
      feed.emit(seedView({
        id: 'finished-seed', machine: 'seed-target', state: 'done', status: 'done', createdAt: at(0), updatedAt: at(95),
        params: { startMySQL: false, stepByStep: false, receiveOnly: false, port: 4000 }, method: 'snapshot', transport: 'built-in transfer',
        marks: ['purgeStarted', 'transferred', 'postCopied'],
        progress: { bytesDone: 2048, bytesTotal: 2048, rateBytesPerSec: 1024, etaSeconds: 0, filesDone: 2, filesTotal: 2, currentFile: null },
        history: [
          { state: 'stoppingMySQL', enteredAt: at(0), leftAt: at(5), error: null },
          { state: 'purgingDatadir', enteredAt: at(5), leftAt: at(7), error: null },
          { state: 'receiving', enteredAt: at(7), leftAt: at(90), error: null },
          { state: 'postCopy', enteredAt: at(90), leftAt: at(95), error: null },
          { state: 'done', enteredAt: at(95), leftAt: null, error: null },
        ],
      }));
      const card = page.locator('[data-seed-id="finished-seed"]');
      await card.locator('.badge', { hasText: 'done' }).waitFor();
      const steps = await card.locator('ol.stepper li').evaluateAll((lis) => lis.map((li) => `${li.getAttribute('data-step')} ${li.getAttribute('data-step-status')} ${li.querySelector('.took')?.textContent}`));
      expect(steps).toEqual(['stoppingMySQL done 5s', 'purgingDatadir done 2s', 'receiving done 1m 23s', 'postCopy done 5s', 'startingMySQL skipped ']);
      expect(await card.locator('[data-fact="started"]').textContent()).toBe('2026-03-01 10:00:00 UTC');
      expect(await card.locator('[data-fact="ended"]').textContent()).toBe('2026-03-01 10:01:35 UTC');
      expect(await card.locator('[data-fact="took"]').textContent()).toBe('1m 35s');
      expect(await card.locator('[data-fact="transport"]').textContent()).toBe('built-in transfer');
      const numbers = await card.locator('.progress .numbers').textContent();
      expect(numbers).toContain('2.0 KiB of 2.0 KiB (100%)');
      expect(numbers).not.toContain('/s');
      expect(await card.locator('.actions').isHidden()).toBe(true);
      await page.close();
    });

    test('a failed source seed says MySQL was not touched and what to do; a peer and snapshot are shown', async () => {
      const page = await browser.context.newPage();
      await page.goto(`${server.baseUrl}/ui?token=${token}`);
      await page.locator('#connection[data-state="live"]').waitFor();
      feed.emit(seedView({
        id: 'failed-source', role: 'source', machine: 'seed-source', state: 'failed', status: 'failed',
        params: { targetHost: 'db2.example.com', targetPort: 4000, snapshot: 'snap-1', alreadyMounted: false, sourceDir: '', stepByStep: false },
        marks: ['mountedBySeed'],
        error: { code: 'transfer_refused', message: 'the target refused the key', hint: 'create a new target seed' },
        history: [
          { state: 'mountingSnapshot', enteredAt: Date.now() - 3000, leftAt: Date.now() - 2000, error: null },
          { state: 'sending', enteredAt: Date.now() - 2000, leftAt: Date.now() - 1000, error: 'the target refused the key' },
          { state: 'cleanup', enteredAt: Date.now() - 1000, leftAt: Date.now(), error: null },
          { state: 'failed', enteredAt: Date.now(), leftAt: null, error: null },
        ],
      }));
      const card = page.locator('[data-seed-id="failed-source"]');
      await card.locator('.badge', { hasText: 'failed' }).waitFor();
      expect(await card.locator('[data-fact="peer"]').textContent()).toBe('target db2.example.com:4000');
      expect(await card.locator('[data-fact="snapshot"]').textContent()).toBe('snap-1');
      const steps = await card.locator('ol.stepper li').evaluateAll((lis) => lis.map((li) => `${li.getAttribute('data-step')} ${li.getAttribute('data-step-status')}`));
      expect(steps).toEqual(['mountingSnapshot done', 'sending failed', 'unmounting skipped', 'cleanup done']);
      const after = await card.locator('.aftermath').textContent();
      expect(after).toContain('MySQL on this host was not touched, and the snapshot this seed mounted was unmounted');
      expect(after).toContain('What to do:');
      await page.close();
    });

    test('a target waiting for its sender says since when, and shows refused senders as warnings', async () => {
      const page = await browser.context.newPage();
      await page.goto(`${server.baseUrl}/ui?token=${token}`);
      await page.locator('#connection[data-state="live"]').waitFor();
      const view = seedView({
        id: 'waiting-seed', machine: 'seed-target', state: 'receiving', createdAt: '2026-03-01T12:40:00Z',
        history: [{ state: 'receiving', enteredAt: '2026-03-01T12:41:00Z', leftAt: null, error: null }],
        warnings: [{ at: '2026-03-01T12:42:00Z', message: 'refused a sender from 10.0.0.9: wrong transfer key' }],
      });
      feed.emit(view);
      const card = page.locator('[data-seed-id="waiting-seed"]');
      await card.locator('.peer-wait').waitFor();
      expect(await card.locator('.peer-wait').textContent()).toBe('Waiting for the sender since 2026-03-01 12:41:00 UTC · 1 warning, last: refused a sender from 10.0.0.9: wrong transfer key');
      expect(await card.locator('ul.warnings li').allTextContents()).toEqual(['2026-03-01 12:42:00 UTC refused a sender from 10.0.0.9: wrong transfer key']);
      // A lost sender the step waits for: since when, until when, why.
      feed.emit({ ...view, waiting: { for: 'sender', since: '2026-03-01T12:50:00Z', until: '2026-03-01T13:00:00Z', message: 'the sender went away after 2 files' } });
      await card.locator('.peer-wait', { hasText: 'gives up at' }).waitFor();
      expect(await card.locator('.peer-wait').textContent()).toContain('Waiting for the sender since 2026-03-01 12:50:00 UTC (gives up at 2026-03-01 13:00:00 UTC): the sender went away after 2 files');
      await page.close();
    });

    test('a backup seed shows its own runbook, that it will replicate, and what a replication failure left', async () => {
      const page = await browser.context.newPage();
      await page.goto(`${server.baseUrl}/ui?token=${token}`);
      await page.locator('#connection[data-state="live"]').waitFor();
      const steps = ['checking', 'stoppingMySQL', 'purgingDatadir', 'receiving', 'preparing', 'fixingOwner', 'startingMySQL', 'settingUpReplication', 'catchingUp'];
      feed.emit(seedView({
        id: 'backup-seed', machine: 'seed-backup-target', method: 'backup', state: 'failed', status: 'failed',
        params: { method: 'backup', startMySQL: false, replicate: true, stepByStep: false, port: 4000 },
        marks: ['purgeStarted', 'backupExtracted', 'backupPrepared'],
        error: { code: 'replication_failed', message: 'the replica stopped: Error 1236', hint: null },
        history: [...steps.map((state) => ({ state, enteredAt: Date.now() - 1000, leftAt: Date.now(), error: state === 'catchingUp' ? 'the replica stopped: Error 1236' : null })),
          { state: 'cleanup', enteredAt: Date.now(), leftAt: Date.now(), error: null }, { state: 'failed', enteredAt: Date.now(), leftAt: null, error: null }],
      } as Parameters<typeof seedView>[0]));
      const card = page.locator('[data-seed-id="backup-seed"]');
      await card.locator('.badge', { hasText: 'failed' }).waitFor();
      const shown = await card.locator('ol.stepper li').evaluateAll((lis) => lis.map((li) => `${li.getAttribute('data-step')} ${li.getAttribute('data-step-status')}`));
      expect(shown).toEqual([...steps.slice(0, -1).map((s) => `${s} done`), 'catchingUp failed', 'cleanup done']);
      expect(await card.locator('[data-fact="MySQL afterwards"]').textContent()).toBe('started, then set up to replicate from the source until caught up');
      expect(await card.locator('.aftermath').textContent()).toContain('MySQL runs on the complete copy, but replication is not caught up.');
      await page.close();
    });

    test('a backup seed whose pre-seed checks failed says nothing on the host was changed', async () => {
      const page = await browser.context.newPage();
      await page.goto(`${server.baseUrl}/ui?token=${token}`);
      await page.locator('#connection[data-state="live"]').waitFor();
      const message = 'pre-seed checks failed, nothing was changed on this host: 1 client connection(s) on this MySQL (app@10.0.0.5)';
      feed.emit(seedView({
        id: 'backup-checks', machine: 'seed-backup-target', method: 'backup', state: 'failed', status: 'failed',
        params: { method: 'backup', startMySQL: true, replicate: true, stepByStep: false, port: 4002 },
        marks: [],
        error: { code: 'conflict', message, hint: 'fix what the failed checks name' },
        history: [{ state: 'checking', enteredAt: Date.now() - 1000, leftAt: Date.now(), error: message },
          { state: 'cleanup', enteredAt: Date.now(), leftAt: Date.now(), error: null }, { state: 'failed', enteredAt: Date.now(), leftAt: null, error: null }],
      } as Parameters<typeof seedView>[0]));
      const card = page.locator('[data-seed-id="backup-checks"]');
      await card.locator('.badge', { hasText: 'failed' }).waitFor();
      const after = await card.locator('.aftermath').textContent();
      expect(after).toContain('Nothing was changed on this host: the pre-seed checks failed before MySQL was stopped or anything deleted.');
      expect(after).not.toContain('MySQL may be stopped');
      await page.close();
    });

    test('a dump seed shows its own runbook, that MySQL keeps running, and that a failed load dropped only the replaced schemas', async () => {
      const page = await browser.context.newPage();
      await page.goto(`${server.baseUrl}/ui?token=${token}`);
      await page.locator('#connection[data-state="live"]').waitFor();
      feed.emit(seedView({
        id: 'dump-seed', machine: 'seed-dump-target', method: 'dump', state: 'failed', status: 'failed',
        params: { method: 'dump', replicate: true, force: false, stepByStep: false, port: 4001 },
        marks: ['checks', 'schemasDropStarted', 'streamAttempts'],
        error: { code: 'command_failed', message: 'loading the dump into this MySQL failed: INSERT command denied', hint: null },
        history: [...['checking', 'droppingSchemas', 'loading'].map((state) => ({ state, enteredAt: Date.now() - 1000, leftAt: Date.now(), error: state === 'loading' ? 'loading the dump into this MySQL failed' : null })),
          { state: 'cleanup', enteredAt: Date.now(), leftAt: Date.now(), error: null }, { state: 'failed', enteredAt: Date.now(), leftAt: null, error: null }],
      } as Parameters<typeof seedView>[0]));
      const card = page.locator('[data-seed-id="dump-seed"]');
      await card.locator('.badge', { hasText: 'failed' }).waitFor();
      const shown = await card.locator('ol.stepper li').evaluateAll((lis) => lis.map((li) => `${li.getAttribute('data-step')} ${li.getAttribute('data-step-status')}`));
      expect(shown).toEqual(['checking done', 'droppingSchemas done', 'loading failed', 'settingUpReplication skipped', 'catchingUp skipped', 'cleanup done']);
      expect(await card.locator('[data-step="loading"] .step-label').textContent()).toBe('receive and load the dump');
      expect(await card.locator('[data-fact="MySQL afterwards"]').textContent()).toContain('keeps running with the loaded dump');
      expect(await card.locator('.aftermath').textContent()).toContain('the schemas the dump replaces were dropped');
      await page.close();
    });

    test('the page reconnects after the stream drops and shows what changed meanwhile', async () => {
      const page = await browser.context.newPage();
      await page.goto(`${server.baseUrl}/ui?token=${token}`);
      await page.locator('#connection[data-state="live"]').waitFor();
      await page.locator('[data-seed-id="old-seed"]').waitFor();
      server.dropConnections();
      // Emitted while no stream is open: only the snapshot of the reconnected stream can carry it.
      feed.emit(seedView({ id: 'while-away', machine: 'registration', state: 'stopped', status: 'aborted' }));
      await page.locator('[data-seed-id="while-away"] .badge', { hasText: 'aborted' }).waitFor();
      await page.locator('#connection[data-state="live"]').waitFor();
      await page.close();
    });
  });
});

describe('web view with basic auth and no TokenHttpHeader (headless Chromium)', () => {
  const feed = new MemoryFeed([seedView({ id: 'paused-seed', machine: 'seed-target', state: 'stoppingMySQL', paused: true, accepts: ['NEXT', 'ABORT'] })]);
  let server: Awaited<ReturnType<typeof startServer>>;
  let browser: Browser;
  beforeAll(async () => {
    server = await startServer({ HTTPAuthUser: basic.username, HTTPAuthPassword: basic.password }, feed);
    browser = await launchBrowser({ httpCredentials: basic });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('NEXT and ABORT are shown but disabled, saying why: a POST takes the token only from a header basic auth already uses', async () => {
    const page = await browser.context.newPage();
    await page.goto(`${server.baseUrl}/ui?token=${token}`);
    const card = page.locator('[data-seed-id="paused-seed"]');
    await card.locator('button.next').waitFor();
    expect(await card.locator('button.next').isDisabled()).toBe(true);
    expect(await card.locator('button.abort').isDisabled()).toBe(true);
    expect(await card.locator('button.next').getAttribute('title')).toContain('TokenHttpHeader');
    expect(await card.locator('.waiting').textContent()).toContain('waits for NEXT');
    await page.close();
  });
});

describe('seed stream on a real agent process', () => {
  test('the agent stops on SIGTERM while a client holds the seed stream open', async () => {
    const dir = tempDir();
    const agent = await startAgentProcess(writeConfig(dir, { TokenHintFile: join(dir, 'token') }));
    try {
      const url = `${agent.baseUrl}/api/seeds-stream?token=${readFileSync(join(dir, 'token'), 'utf8')}`;
      const events = await readEvents(await fetch(url), (e) => e.length >= 1);
      expect(events[0].event).toBe('snapshot');
      const open = await fetch(url); // left open while the agent stops
      expect(open.status).toBe(200);
      await agent.stop();
      expect(agent.child.exitCode).toBe(0);
    } finally {
      await agent.kill9();
    }
  });
});
