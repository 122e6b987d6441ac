import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { launchBrowser, type Browser } from './support/browser.js';
import { tempDir } from './support/agent-process.js';
import { startSeedAgent, type SeedAgent } from './support/seed-api.js';
import { freePort, makeSourceHost, makeTargetHost, stopTargetMysqld, type SourceHost, type TargetHost } from './support/seed-hosts.js';

// What an operator sees in the web view during real seeds on a real agent process: the target's
// configured commands are slowed so each step is on screen, and the test itself plays the sender.

/** Sends a small datadir to the target's receive command (tar over socat, as the source would). */
function sendTo(port: number, fromDir: string): Promise<number | null> {
  const child = spawn('bash', ['-c', 'tar -cf - -C "$1" . | socat -u STDIN TCP:127.0.0.1:"$2",retry=200,interval=0.1', 'send', fromDir, String(port)], { stdio: 'ignore' });
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

describe('web view during real seeds (headless Chromium)', () => {
  let dir: string;
  let host: TargetHost;
  let target: SeedAgent;
  let browser: Browser;
  let transferPort: number;

  beforeAll(async () => {
    dir = tempDir('oa-ui-e2e-');
    transferPort = await freePort();
    host = makeTargetHost(join(dir, 'target'), transferPort);
    target = await startSeedAgent(join(dir, 'target'), { ...host.config, TokenHttpHeader: 'X-Agent-Token' });
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await target?.agent.stop();
    if (host) stopTargetMysqld(host);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a person watches a target seed go through its steps to done, then sees why a second one failed', async () => {
    const page = await browser.context.newPage();
    await page.goto(`${target.agent.baseUrl}/ui?token=${target.token}`);
    await page.locator('#connection[data-state="live"]').waitFor();

    // Slow steps: each is on screen long enough to be seen, whatever the machine's speed.
    host.delay('stop', 1);
    host.delay('purge', 1);
    host.delay('postcopy', 1);
    host.delay('start', 1);
    const created = await target.call('POST', '/api/seeds', { id: 'ui-seed-1', role: 'target', startMySQL: true });
    expect(created.status).toBeLessThan(300);

    const card = page.locator('[data-seed-id="ui-seed-1"]');
    await card.waitFor();
    // The full diagram is behind the toggle; the person opens it.
    await card.locator('details.detail > summary').click();
    await card.locator('svg').waitFor();
    // The highlighted state follows the seed: stopping MySQL first, then receiving.
    await card.locator('[id^="state:stoppingMySQL"].current').waitFor();
    await card.locator('[id^="state:receiving"].current').waitFor();
    expect(await card.locator('[id^="state:stoppingMySQL"].current').count()).toBe(0);
    expect(await card.locator('[id="state:stoppingMySQL"]').getAttribute('class')).toContain('visited');
    const rowsWhileReceiving = await card.locator('table.history tbody tr').count();

    const source = join(dir, 'source-data');
    mkdirSync(join(source, 'db1'), { recursive: true });
    writeFileSync(join(source, 'ibdata1'), Buffer.alloc(200_000, 1));
    writeFileSync(join(source, 'db1', 't.ibd'), Buffer.alloc(100_000, 2));
    expect(await sendTo(transferPort, source)).toBe(0);

    await card.locator('.badge', { hasText: 'done' }).waitFor();
    expect(await card.getAttribute('data-status')).toBe('done');
    expect(await card.locator('[id="state:done"]').getAttribute('class')).toContain('current');
    // The history grew past what it showed while receiving and names every step the seed went through.
    const steps = await card.locator('table.history tbody tr td:first-child').allTextContents();
    expect(steps.length).toBeGreaterThan(rowsWhileReceiving);
    for (const step of ['stoppingMySQL', 'purgingDatadir', 'receiving', 'postCopy', 'startingMySQL', 'done']) {
      expect(steps.some((s) => s.startsWith(step))).toBe(true);
    }
    expect(await card.locator('.error').isHidden()).toBe(true);
    // The stepper: every runbook step done, each with the time it took.
    const stepper = await card.locator('ol.stepper li').evaluateAll((lis) => lis.map((li) => [li.getAttribute('data-step'), li.getAttribute('data-step-status'), li.querySelector('.took')?.textContent]));
    expect(stepper.map(([step, status]) => [step, status])).toEqual([
      ['stoppingMySQL', 'done'], ['purgingDatadir', 'done'], ['receiving', 'done'], ['postCopy', 'done'], ['startingMySQL', 'done'],
    ]);
    for (const [, , took] of stepper) expect(took).toMatch(/^\d+(s|m \d+s)$/);
    expect(await card.locator('[data-fact="MySQL afterwards"]').textContent()).toBe('started after the post-copy command');
    expect(await card.locator('.aftermath').isHidden()).toBe(true);

    // A second seed whose receive command fails: the page shows the seed failed and why.
    host.receiveExit(3);
    await target.call('POST', '/api/seeds', { id: 'ui-seed-2', role: 'target' });
    const failing = page.locator('[data-seed-id="ui-seed-2"]');
    await failing.locator('details.detail > summary').click();
    await failing.locator('[id^="state:receiving"].current').waitFor();
    expect(await sendTo(transferPort, source)).toBe(0);
    await failing.locator('.badge', { hasText: 'failed' }).waitFor();
    const view = await target.seed('ui-seed-2');
    expect(view.status).toBe('failed');
    expect(view.error?.message).toBeTruthy();
    const shown = await failing.locator('.error').textContent();
    expect(shown).toContain(view.error!.message);
    expect(await failing.locator('table.history td.err').count()).toBeGreaterThan(0);
    // What the failure left on this host, and what to do.
    expect(await failing.locator('[data-step="receiving"]').getAttribute('data-step-status')).toBe('failed');
    expect(await failing.locator('.aftermath').textContent()).toContain('MySQL is stopped and the datadir is empty');
    expect(await failing.locator('.aftermath').textContent()).toContain('Seed again, or restore the datadir before starting MySQL');
    // the page lists the running/failed seed above the finished one
    const order = await page.locator('article.seed').evaluateAll((cards) => cards.map((c) => c.getAttribute('data-seed-id')));
    expect(order.indexOf('ui-seed-2')).toBeLessThan(order.indexOf('ui-seed-1'));
    // The same story in the metrics a Prometheus scrape would read.
    const metrics = await (await fetch(`${target.agent.baseUrl}/metrics`)).text();
    expect(metrics).toContain('orchestrator_agent_seeds{role="target",state="done",status="done"} 1');
    expect(metrics).toContain('orchestrator_agent_seeds{role="target",state="failed",status="failed"} 1');
    expect(metrics).toContain('orchestrator_agent_seed_step_failures_total{machine="seed-target",step="receiving"} 1');
    expect(metrics).toContain('orchestrator_agent_seed_duration_seconds_count{role="target",outcome="done"} 1');
    expect(metrics).toContain('orchestrator_agent_seed_duration_seconds_count{role="target",outcome="failed"} 1');
    // UI_SCREENSHOT=file.png keeps a picture of what the person saw, for a human to look at.
    if (process.env.UI_SCREENSHOT) await page.screenshot({ path: process.env.UI_SCREENSHOT, fullPage: true });
    await page.close();
  });
});

describe('web view during a built-in transfer with a bandwidth limit (headless Chromium)', () => {
  let dirs: string[] = [];
  let host: TargetHost | undefined;
  let source: SourceHost | undefined;
  const agents: SeedAgent[] = [];
  let browser: Browser;

  beforeAll(async () => {
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    for (const a of agents) await a.agent.stop();
    if (host) stopTargetMysqld(host);
    source?.cleanup();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('a person sees the progress bar fill while the data arrives, then the seed done', async () => {
    const targetDir = tempDir('oa-ui-bw-tgt-');
    const sourceDir = tempDir('oa-ui-bw-src-');
    const sourceAgentDir = tempDir('oa-ui-bw-srcagent-');
    dirs = [targetDir, sourceDir, sourceAgentDir];
    host = makeTargetHost(targetDir, await freePort());
    source = makeSourceHost(sourceDir, `oa-ui-${process.pid}`);
    // 350 kB at 50 kB/s: several progress updates on the way.
    const limit = { SeedTransferBandwidthMBps: 0.05 };
    const target = await startSeedAgent(targetDir, { ...host.config, ReceiveSeedDataCommand: '', SeedTransferBindAddress: '127.0.0.1', ...limit });
    agents.push(target);
    const sender = await startSeedAgent(sourceAgentDir, { ...source.config, SendSeedDataCommand: '', ...limit });
    agents.push(sender);

    const page = await browser.context.newPage();
    await page.goto(`${target.agent.baseUrl}/ui?token=${target.token}`);
    await page.locator('#connection[data-state="live"]').waitFor();
    const created = await target.call<{ transfer: { port: number; authKey: string } }>('POST', '/api/seeds', { id: 'ui-builtin', role: 'target' });
    expect(created.status).toBe(201);
    const { port, authKey } = created.body.transfer;
    const sent = await sender.call('POST', '/api/seeds', { id: 'ui-builtin', role: 'source', targetHost: '127.0.0.1', targetPort: port, authKey, snapshot: source.snapshot });
    expect(sent.status).toBe(201);

    const card = page.locator('[data-seed-id="ui-builtin"]');
    const bar = card.locator('.bar');
    // Part way: a value strictly between 0 and 100, then a larger one.
    const first = await page.waitForFunction(() => {
      const v = Number(document.querySelector('[data-seed-id="ui-builtin"] .bar')?.getAttribute('aria-valuenow') || 'NaN');
      return v > 0 && v < 100 ? v : false;
    });
    const partway = Number(await first.jsonValue());
    expect(await card.locator('[id^="state:receiving"].current').count()).toBeGreaterThan(0);
    await page.waitForFunction((before) => {
      const v = Number(document.querySelector('[data-seed-id="ui-builtin"] .bar')?.getAttribute('aria-valuenow') || 'NaN');
      return v > before;
    }, partway);
    const numbers = await card.locator('.progress .numbers').textContent();
    expect(numbers).toMatch(/ of \d+\.\d KiB \(\d+%\)/);
    await card.locator('.badge', { hasText: 'done' }).waitFor();
    expect(await bar.getAttribute('aria-valuenow')).toBe('100.0');
    const kib = `${((await target.seed('ui-builtin')).progress!.bytesDone / 1024).toFixed(1)} KiB`;
    expect(await card.locator('.progress .numbers').textContent()).toContain(`${kib} of ${kib} (100%)`);
    expect(await card.locator('[data-fact="transport"]').textContent()).toBe('built-in transfer');
    await page.close();
  });
});

describe('NEXT and ABORT from the web view (headless Chromium)', () => {
  let dir: string;
  let host: TargetHost;
  let target: SeedAgent;
  let browser: Browser;

  beforeAll(async () => {
    dir = tempDir('oa-ui-buttons-');
    host = makeTargetHost(join(dir, 'target'), await freePort());
    target = await startSeedAgent(join(dir, 'target'), { ...host.config, TokenHttpHeader: 'X-Agent-Token' });
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await target?.agent.stop();
    if (host) stopTargetMysqld(host);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a person steps a paused seed on with NEXT, is told what ABORT will do, cancels once, then aborts it', async () => {
    const page = await browser.context.newPage();
    // A slow network: the answer to NEXT/ABORT reaches the page after the live feed's change (the real
    // server answers at once). The page must still show the newest state, not the older one the answer holds.
    await page.route('**/api/seeds/*/events', async (route) => {
      const response = await route.fetch();
      await new Promise((r) => setTimeout(r, 300));
      await route.fulfill({ response });
    });
    await page.goto(`${target.agent.baseUrl}/ui?token=${target.token}`);
    await page.locator('#connection[data-state="live"]').waitFor();
    const created = await target.call('POST', '/api/seeds', { id: 'ui-steps', role: 'target', stepByStep: true });
    expect(created.status).toBe(201);
    const card = page.locator('[data-seed-id="ui-steps"]');

    // Paused before the first step: the page says it waits for NEXT, the stepper shows where.
    await card.locator('.waiting', { hasText: 'waits for NEXT' }).waitFor();
    expect(await card.locator('.waiting').textContent()).toContain('stop MySQL');
    expect(await card.locator('.badge').textContent()).toBe('paused');
    expect(await card.locator('[data-step="stoppingMySQL"]').getAttribute('data-step-status')).toBe('paused');
    expect(await card.locator('[data-step="startingMySQL"]').getAttribute('data-step-status')).toBe('skipped');
    expect(await card.locator('[data-fact="MySQL afterwards"]').textContent()).toContain('left stopped');
    expect(await card.locator('[data-fact="started"]').textContent()).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
    expect(await card.locator('details.detail').getAttribute('open')).toBeNull();

    await card.locator('button.next').click();
    await card.locator('.action-result', { hasText: 'NEXT sent' }).waitFor();
    await card.locator('[data-step="purgingDatadir"][data-step-status="paused"]').waitFor();
    expect(await card.locator('[data-step="stoppingMySQL"]').getAttribute('data-step-status')).toBe('done');
    const stepped = await target.seed('ui-steps');
    expect(stepped).toMatchObject({ state: 'purgingDatadir', paused: true, status: 'active' });
    expect(host.mysqlRunning()).toBe(false);

    // ABORT first asks, saying what cleanup will do here (the datadir is not purged yet).
    await card.locator('button.abort').click();
    const confirm = card.locator('.confirm');
    await confirm.waitFor();
    expect(await confirm.textContent()).toContain('The datadir has not been touched yet');
    await card.locator('button.cancel-abort').click();
    expect(await confirm.isHidden()).toBe(true);
    expect((await target.seed('ui-steps')).status).toBe('active');

    await card.locator('button.abort').click();
    await card.locator('button.confirm-abort').click();
    // Attached, not visible: the actions hide once the seed accepts no more events.
    await card.locator('.action-result', { hasText: 'ABORT sent' }).waitFor({ state: 'attached' });
    await card.locator('.badge', { hasText: 'aborted' }).waitFor();
    expect((await target.seed('ui-steps')).status).toBe('aborted');
    expect(await card.locator('[data-step="purgingDatadir"]').getAttribute('data-step-status')).toBe('aborted');
    expect(await card.locator('[data-step="receiving"]').getAttribute('data-step-status')).toBe('skipped');
    const after = await card.locator('.aftermath').textContent();
    expect(after).toContain('MySQL is stopped (this seed stopped it); the datadir was not touched');
    expect(after).toContain('What to do:');
    expect(await card.locator('.actions').isHidden()).toBe(true);
    // The datadir really was not touched.
    expect(readFileSync(join(host.datadir, 'ibdata1'), 'utf8')).toBe('old target data');
    await page.close();
  });
});
