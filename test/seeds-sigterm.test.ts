// A graceful stop (SIGTERM: `systemctl restart orchestrator-agent`) in the middle of a seed is no abort: the
// other half waits for the stopped agent to come back, and the restarted agent resumes. An ABORT is told to
// the other half, which ends at once. Real agents, the built-in transfer over real TCP, real files, the
// source a real btrfs snapshot (as in seeds-kill9.test.ts).
import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './support/agent-process.js';
import { mountsUnder } from './support/btrfs-fixture.js';
import { startSeedAgent, type SeedAgent, type SeedViewJson } from './support/seed-api.js';
import { freePort, makeSourceHost, makeTargetHost, stopTargetMysqld, taggedPids, treeDigest, type SourceHost, type TargetHost } from './support/seed-hosts.js';
import { seedTag, stateDirKey } from '../src/seeds/reaper.js';

let source: SourceHost;
const agents: SeedAgent[] = [];
const targets: TargetHost[] = [];
const children: ChildProcess[] = [];
const dirs: string[] = [];

beforeAll(() => {
  source = makeSourceHost(tempDir('oa-term-src-'), `oa-term-${process.pid}`);
});
afterEach(async () => {
  for (const a of agents.splice(0)) await a.agent.stop();
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  for (const t of targets.splice(0)) stopTargetMysqld(t);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
afterAll(() => source?.cleanup());

const isFinal = (v: SeedViewJson) => v.status !== 'active';

/** SIGTERM the agent (as systemd does), wait for it to exit, and start another on the same StateDir and config. */
async function gracefulRestart(agent: SeedAgent, dir: string, config: Record<string, unknown>): Promise<SeedAgent> {
  await agent.agent.stop();
  expect(agent.agent.child.exitCode).toBe(0);
  agents.splice(agents.indexOf(agent), 1);
  const next = await startSeedAgent(dir, config);
  agents.push(next);
  return next;
}

function nothingLeft(agent: SeedAgent, host?: TargetHost): void {
  const mysqld = host?.mysqldPids() ?? [];
  expect(taggedPids(`seed:${stateDirKey(agent.stateDir)}:`).filter((p) => !mysqld.includes(p))).toEqual([]);
  expect(mountsUnder(source.mountPoint)).toEqual([]);
}

/** A target and a source agent with the built-in transfer, a seed between them sending the 6 MB snapshot at 0.6 MB/s. */
async function seedPair(id: string) {
  const tdir = tempDir('oa-term-tgt-');
  const sdir = tempDir('oa-term-src-');
  dirs.push(tdir, sdir);
  const host = makeTargetHost(tdir, 0);
  targets.push(host);
  const tconfig = { ...host.config, ReceiveSeedDataCommand: '', SeedTransferBindAddress: '127.0.0.1' };
  const sconfig = { ...source.config, SendSeedDataCommand: '', SeedTransferBandwidthMBps: 0.6 };
  const t = await startSeedAgent(tdir, tconfig);
  agents.push(t);
  const s = await startSeedAgent(sdir, sconfig);
  agents.push(s);
  const created = await t.call<{ transfer: { port: number; authKey: string } }>('POST', '/api/seeds', { id, role: 'target', startMySQL: true });
  expect(created.status).toBe(201);
  const { port, authKey } = created.body.transfer;
  const sent = await s.call('POST', '/api/seeds', { id, role: 'source', targetHost: '127.0.0.1', targetPort: port, authKey, snapshot: source.bigSnapshot });
  expect(sent.status).toBe(201);
  // Mid-transfer: a first megabyte arrived, most of the copy is still to come.
  await t.waitFor(id, (v) => v.state === 'receiving' && (v.progress?.bytesDone ?? 0) >= 1_000_000, 'a first megabyte');
  expect((await t.seed(id)).progress!.bytesDone).toBeLessThan(5_000_000);
  return { host, t, s, tdir, sdir, tconfig, sconfig };
}

/** The operator's kind of sender for a command-based receive, run by hand: the small snapshot's datadir, tar over socat. */
function sendSnapshot(port: number): ChildProcess {
  const child = spawn('bash', ['-c', `tar -cf - -C "$1" . | socat -u STDIN TCP:127.0.0.1:$2,retry=200,interval=0.1`, 'send', join(source.snapshot, 'mysql'), String(port)], {
    stdio: 'ignore',
  });
  children.push(child);
  return child;
}

async function until(what: string, cond: () => boolean, timeoutMs = 20000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function expectCopied(host: TargetHost): void {
  const copied = treeDigest(host.datadir);
  delete copied['post-copied'];
  expect(copied).toEqual(treeDigest(join(source.bigSnapshot, 'mysql')));
}

describe('a graceful restart of either agent mid-transfer resumes the seed', () => {
  test('the target agent stopped with SIGTERM mid-transfer and started again: both seeds end done, the datadir equal to the snapshot', async () => {
    const id = 'term-target';
    const pair = await seedPair(id);
    const t = await gracefulRestart(pair.t, pair.tdir, pair.tconfig);
    // The source never took the stop for an abort: it waited for the target and resumed with it.
    const tv = await t.waitFor(id, isFinal, 'an end', 60000);
    const sv = await pair.s.waitFor(id, isFinal, 'an end', 60000);
    expect([sv.status, sv.error]).toEqual(['done', null]);
    expect([tv.status, tv.error]).toEqual(['done', null]);
    expect(tv.history.find((h) => h.state === 'receiving')!.resumedAt).toHaveLength(1);
    expectCopied(pair.host);
    expect(pair.host.mysqlRunning()).toBe(true);
    nothingLeft(t, pair.host);
    nothingLeft(pair.s);
  }, 120000);

  test('the source agent stopped with SIGTERM mid-transfer and started again: both seeds end done, the datadir equal to the snapshot', async () => {
    const id = 'term-source';
    const pair = await seedPair(id);
    const s = await gracefulRestart(pair.s, pair.sdir, pair.sconfig);
    const sv = await s.waitFor(id, isFinal, 'an end', 60000);
    const tv = await pair.t.waitFor(id, isFinal, 'an end', 60000);
    expect([tv.status, tv.error]).toEqual(['done', null]);
    expect([sv.status, sv.error]).toEqual(['done', null]);
    expect(sv.history.find((h) => h.state === 'sending')!.resumedAt).toHaveLength(1);
    expectCopied(pair.host);
    nothingLeft(pair.t, pair.host);
    nothingLeft(s);
  }, 120000);
});

describe('an ABORT mid-transfer ends the other half at once with the reason', () => {
  test('the target seed aborted mid-transfer: the source seed ends aborted, saying the target was aborted by its operator', async () => {
    const id = 'abort-target';
    const pair = await seedPair(id);
    expect((await pair.t.call('POST', `/api/seeds/${id}/events`, { type: 'ABORT' })).status).toBe(200);
    // SeedTransferReconnectTimeoutSeconds is 1800 s: only being told ends the source within waitFor's 30 s.
    const sv = await pair.s.waitFor(id, isFinal, 'an end');
    expect(sv.status).toBe('aborted');
    expect(sv.error!.message).toContain(`the target seed ${id} was aborted by its operator during receiving`);
    const tv = await pair.t.waitFor(id, isFinal, 'an end');
    expect([tv.status, tv.error!.message]).toEqual(['aborted', 'seed aborted during receiving']);
    // The partial copy is gone, MySQL stays stopped.
    expect(treeDigest(pair.host.datadir)).toEqual({});
    expect(pair.host.mysqlRunning()).toBe(false);
    nothingLeft(pair.t, pair.host);
    nothingLeft(pair.s);
  }, 120000);

  test('the source seed aborted mid-transfer: the target seed ends aborted, saying the source was aborted by its operator, and removes the partial copy', async () => {
    const id = 'abort-source';
    const pair = await seedPair(id);
    expect((await pair.s.call('POST', `/api/seeds/${id}/events`, { type: 'ABORT' })).status).toBe(200);
    const sv = await pair.s.waitFor(id, isFinal, 'an end');
    expect([sv.status, sv.error!.message]).toEqual(['aborted', 'seed aborted during sending']);
    const tv = await pair.t.waitFor(id, isFinal, 'an end');
    expect(tv.status).toBe('aborted');
    expect(tv.error!.message).toContain(`the source seed ${id} was aborted by its operator during sending`);
    expect(treeDigest(pair.host.datadir)).toEqual({});
    expect(pair.host.mysqlRunning()).toBe(false);
    nothingLeft(pair.t, pair.host);
    nothingLeft(pair.s);
  }, 120000);
});

describe('a graceful stop and the processes of seed steps', () => {
  test('SIGTERM while a step\'s command ignores SIGTERM: its group is gone when the agent has exited, and the restarted agent runs the step again', async () => {
    const dir = tempDir('oa-term-proc-');
    dirs.push(dir);
    const port = await freePort();
    const host = makeTargetHost(dir, port);
    targets.push(host);
    // The operator's stop command, run under a shell that ignores SIGTERM (its children inherit that).
    const config = { ...host.config, MySQLServiceStopCommand: `trap '' TERM; ${host.config.MySQLServiceStopCommand as string}` };
    host.delay('stop', 1000);
    let agent = await startSeedAgent(dir, config);
    agents.push(agent);
    const id = 'term-proc';
    expect((await agent.call('POST', '/api/seeds', { id, role: 'target', startMySQL: true })).status).toBe(201);
    await agent.waitFor(id, (v) => v.state === 'stoppingMySQL', 'stoppingMySQL');
    const tag = seedTag(agent.stateDir, id);
    const stops = () => host.log().split('\n').filter((l) => l === 'stop').length;
    await until('the stop command and its sleep', () => stops() === 1 && taggedPids(tag).length >= 2);

    host.delay('stop', 0);
    await agent.agent.stop();
    agents.splice(agents.indexOf(agent), 1);
    // The agent killed the command's whole group (SIGKILL after the grace) before it exited: nothing is left
    // writing beside a host no agent watches until the next start.
    expect(agent.agent.child.exitCode).toBe(0);
    expect(taggedPids(tag)).toEqual([]);

    agent = await startSeedAgent(dir, config);
    agents.push(agent);
    sendSnapshot(port);
    const end = await agent.waitFor(id, isFinal, 'an end', 60000);
    expect([end.status, end.error]).toEqual(['done', null]);
    // The step ran again as an ensure step: its command twice, MySQL stopped by the second run.
    expect(stops()).toBe(2);
    expect(end.history.find((h) => h.state === 'stoppingMySQL')!.resumedAt).toHaveLength(1);
    const copied = treeDigest(host.datadir);
    delete copied['post-copied'];
    expect(copied).toEqual(treeDigest(join(source.snapshot, 'mysql')));
    expect(host.mysqlRunning()).toBe(true);
    nothingLeft(agent, host);
  }, 120000);
});
