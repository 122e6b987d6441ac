// StateDir on a real small filesystem (a 512 KiB tmpfs) that fills up or turns read-only, and state files
// that are JSON but not a seed: the agent never dies of it; the one seed that cannot save is held with an
// error naming StateDir and what to do, and every other route keeps answering.
import { afterEach, describe, expect, test } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './support/agent-process.js';
import { startSeedAgent, type SeedAgent } from './support/seed-api.js';
import { freePort, makeSourceHost, makeTargetHost, stopTargetMysqld, taggedPids, type TargetHost } from './support/seed-hosts.js';
import { seedTag } from '../src/seeds/reaper.js';
import { KNOWN_MACHINES } from '../src/seeds/seed-methods.js';
import { SEED_FORMAT_VERSION } from '../src/seeds/seed-store.js';

interface SeedsList {
  seeds: { id: string; status: string; state: string }[];
  corrupt: { file: string; movedTo: string | null; error: string }[];
  stateDir: { path: string; problems: { message: string; hint: string | null }[] };
}

const agents: SeedAgent[] = [];
const targets: TargetHost[] = [];
const mounts: string[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const a of agents.splice(0)) await a.agent.stop();
  for (const t of targets.splice(0)) stopTargetMysqld(t);
  for (const m of mounts.splice(0)) spawnSync('umount', ['-l', m]);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A 512 KiB tmpfs at dir/state (the StateDir the test agents use). */
function smallStateDir(dir: string): string {
  const state = join(dir, 'state');
  mkdirSync(state);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=512k,mode=0700', 'tmpfs', state]);
  mounts.push(state);
  return state;
}

/** Fills the filesystem until ENOSPC (dd fails there, as wanted). */
function fill(state: string): void {
  spawnSync('dd', ['if=/dev/zero', `of=${join(state, 'filler')}`, 'bs=4k'], { stdio: 'ignore' });
}

function readOnly(state: string): void {
  execFileSync('mount', ['-o', 'remount,ro', state]);
}

async function until(what: string, cond: () => boolean, timeoutMs = 20000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Temp files of unfinished writes anywhere under StateDir (seed state and transfer bookkeeping). */
function tmpFiles(state: string): string[] {
  return (readdirSync(state, { recursive: true }) as string[]).filter((n) => /\.tmp-\d+$|\.\d+\.tmp$/.test(n));
}

/** The routes that must keep answering whatever StateDir does. */
async function expectServing(agent: SeedAgent): Promise<void> {
  expect(agent.agent.child.exitCode).toBeNull();
  expect((await agent.call('GET', '/api/mysql-status')).status).toBe(200);
  expect((await agent.call('GET', '/api/seeds')).status).toBe(200);
}

describe('StateDir full or read-only', () => {
  test('a full StateDir holds the seed that cannot save (error naming StateDir, processes killed) and the agent keeps serving, also after a restart', async () => {
    const dir = tempDir('oa-statedir-');
    dirs.push(dir);
    const state = smallStateDir(dir);
    const host = makeTargetHost(dir, await freePort());
    targets.push(host);
    host.delay('purge', 30);
    let agent = await startSeedAgent(dir, host.config);
    agents.push(agent);
    expect((await agent.call('POST', '/api/seeds', { id: 'full', role: 'target' })).status).toBe(201);
    await agent.waitFor('full', (v) => v.state === 'purgingDatadir', 'purgingDatadir');
    const tag = seedTag(agent.stateDir, 'full');
    await until('the purge command', () => taggedPids(tag).length > 0);

    fill(state);
    // The abort is a transition that must be saved: it cannot be.
    expect((await agent.call('POST', '/api/seeds/full/events', { type: 'ABORT' })).status).toBe(200);
    const held = await agent.waitFor('full', (v) => v.status !== 'active', 'held');
    expect(held.status).toBe('failed');
    expect(held.error!.code).toBe('state_unwritable');
    expect(held.error!.message).toContain(`StateDir ${state}`);
    expect(held.error!.message).toMatch(/ENOSPC/);
    expect(held.error!.hint).toContain('is full');
    expect(held.accepts).toEqual([]);
    await until('the purge command to be killed', () => taggedPids(tag).length === 0);
    await expectServing(agent);
    const list = (await agent.call<SeedsList>('GET', '/api/seeds')).body;
    expect(list.stateDir.problems.map((p) => p.message).join('\n')).toContain('ENOSPC');
    expect(tmpFiles(state)).toEqual([]);

    // Restarted on the still full StateDir: it starts, holds the seed again, and serves.
    host.delay('purge', 0);
    await agent.agent.kill9();
    agents.splice(0);
    agent = await startSeedAgent(dir, host.config);
    agents.push(agent);
    const again = await agent.waitFor('full', (v) => v.status !== 'active', 'held after the restart');
    expect(again.error!.code).toBe('state_unwritable');
    await expectServing(agent);
    expect(tmpFiles(state)).toEqual([]);

    // With space again, the next start resumes the seed where it was last saved.
    rmSync(join(state, 'filler'));
    await agent.agent.stop();
    agents.splice(0);
    agent = await startSeedAgent(dir, host.config);
    agents.push(agent);
    const resumed = await agent.waitFor('full', (v) => v.state === 'receiving', 'receiving after space came back');
    expect([resumed.status, resumed.error]).toEqual(['active', null]);
    expect(resumed.history.map((h) => h.state)).toEqual(['stoppingMySQL', 'purgingDatadir', 'receiving']);
    expect((await agent.call('POST', '/api/seeds/full/events', { type: 'ABORT' })).status).toBe(200);
    expect((await agent.waitFor('full', (v) => v.status !== 'active', 'aborted')).status).toBe('aborted');
  }, 90000);

  test('StateDir filling up during a built-in receive holds the target seed, stops the receiver, and the agent keeps serving', async () => {
    const dir = tempDir('oa-statedir-');
    dirs.push(dir);
    const source = makeSourceHost(tempDir('oa-statedir-src-'), `oa-sd-${process.pid}`);
    try {
      const state = smallStateDir(dir);
      const host = makeTargetHost(dir, 0);
      targets.push(host);
      const t = await startSeedAgent(dir, { ...host.config, ReceiveSeedDataCommand: '', SeedTransferBindAddress: '127.0.0.1' });
      agents.push(t);
      const sdir = tempDir('oa-statedir-srcagent-');
      dirs.push(sdir);
      const s = await startSeedAgent(sdir, { ...source.config, SendSeedDataCommand: '', SeedTransferBandwidthMBps: 0.6 });
      agents.push(s);
      const created = await t.call<{ transfer: { port: number; authKey: string } }>('POST', '/api/seeds', { id: 'fill', role: 'target' });
      const { port, authKey } = created.body.transfer;
      expect((await s.call('POST', '/api/seeds', { id: 'fill', role: 'source', targetHost: '127.0.0.1', targetPort: port, authKey, snapshot: source.bigSnapshot })).status).toBe(201);
      await t.waitFor('fill', (v) => v.state === 'receiving' && (v.progress?.bytesDone ?? 0) > 0, 'bytes arriving');

      fill(state);
      const held = await t.waitFor('fill', (v) => v.status !== 'active', 'held');
      expect(held.error!.code).toBe('state_unwritable');
      expect(held.error!.message).toContain(`StateDir ${state}`);
      expect(held.error!.hint).toContain('is full');
      await expectServing(t);
      expect(tmpFiles(state)).toEqual([]);
      // The receiver stopped with the seed: its port is closed.
      await until('the receiver to close', () => spawnSync('bash', ['-c', `exec 3<>/dev/tcp/127.0.0.1/${port}`]).status !== 0);

      expect((await s.call('POST', '/api/seeds/fill/events', { type: 'ABORT' })).status).toBe(200);
      expect((await s.waitFor('fill', (v) => v.status !== 'active', 'aborted')).status).toBe('aborted');
    } finally {
      for (const a of agents.splice(0)) await a.agent.stop();
      source.cleanup();
    }
  }, 90000);

  test('a linked target held by a full StateDir does not end its source half: with space again it resumes and both end done', async () => {
    const fleetSecret = 'fleet-secret-statedir-7c2e';
    const dir = tempDir('oa-statedir-');
    dirs.push(dir);
    const source = makeSourceHost(tempDir('oa-statedir-src-'), `oa-sdl-${process.pid}`);
    try {
      const state = smallStateDir(dir);
      const host = makeTargetHost(dir, 0);
      targets.push(host);
      const targetConfig = { ...host.config, ReceiveSeedDataCommand: '', SeedTransferBindAddress: '127.0.0.1', AgentFleetSecret: fleetSecret };
      let t = await startSeedAgent(dir, targetConfig);
      agents.push(t);
      const sdir = tempDir('oa-statedir-srcagent-');
      dirs.push(sdir);
      const s = await startSeedAgent(sdir, { ...source.config, SendSeedDataCommand: '', SeedTransferBandwidthMBps: 2, AgentFleetSecret: fleetSecret });
      agents.push(s);
      const created = await t.call('POST', '/api/seeds', { id: 'held-link', role: 'target', snapshot: source.bigSnapshot, source: { host: '127.0.0.1', port: s.agent.port } });
      expect(created.status).toBe(201);
      await t.waitFor('held-link', (v) => v.state === 'receiving' && (v.progress?.bytesDone ?? 0) > 0, 'bytes arriving');

      fill(state);
      const held = await t.waitFor('held-link', (v) => v.status !== 'active', 'held');
      expect(held.error!.code).toBe('state_unwritable');
      // Held is not ended: the target resumes once StateDir is writable, so its source must wait for it, not abort.
      rmSync(join(state, 'filler'));
      await t.agent.stop();
      agents.splice(agents.indexOf(t), 1);
      expect(t.agent.output()).not.toContain('/api/peer/seeds/held-link/abort');
      t = await startSeedAgent(dir, targetConfig);
      agents.push(t);
      expect((await t.waitFor('held-link', (v) => v.status !== 'active', 'its end after the restart', 120_000)).status).toBe('done');
      const sourceView = await s.waitFor('held-link', (v) => v.status !== 'active', 'the source half to end', 60_000);
      expect([sourceView.status, sourceView.error]).toEqual(['done', null]);
    } finally {
      for (const a of agents.splice(0)) await a.agent.stop();
      source.cleanup();
    }
  }, 240000);

  test('a read-only StateDir holding a stale temp file and a corrupt file: the agent starts, reports both, refuses new seeds with a hint, and serves', async () => {
    const dir = tempDir('oa-statedir-');
    dirs.push(dir);
    const state = smallStateDir(dir);
    mkdirSync(join(state, 'seeds'));
    writeFileSync(join(state, 'seeds', 'old.json.tmp-12345'), '{"half":');
    writeFileSync(join(state, 'seeds', 'bad.json'), 'not json');
    readOnly(state);
    const host = makeTargetHost(dir, await freePort());
    targets.push(host);
    const agent = await startSeedAgent(dir, host.config);
    agents.push(agent);
    await expectServing(agent);
    const list = (await agent.call<SeedsList>('GET', '/api/seeds')).body;
    expect(list.corrupt).toEqual([expect.objectContaining({ file: join(state, 'seeds', 'bad.json'), movedTo: null })]);
    expect(list.corrupt[0]!.error).toContain('read-only');
    const problems = list.stateDir.problems;
    expect(problems.length).toBeGreaterThan(0);
    expect(problems[0]!.message).toContain(`StateDir ${state}`);
    expect(problems[0]!.hint).toContain('read-only filesystem');
    expect(agent.agent.output()).toContain(`StateDir ${state}`);
    const metrics = await (await fetch(`${agent.agent.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/^orchestrator_agent_state_dir_problems [1-9]/m);
    expect(metrics).toMatch(/^orchestrator_agent_corrupt_state_files 1$/m);

    const refused = await agent.call<{ message?: string; error?: string; hint?: string }>('POST', '/api/seeds', { id: 'ro', role: 'target' });
    expect(refused.status).toBeGreaterThanOrEqual(500);
    expect(JSON.stringify(refused.body)).toContain('read-only filesystem');
    expect(agent.agent.child.exitCode).toBeNull();
  }, 60000);

  test('a StateDir that cannot be created (under a read-only filesystem) is reported with what to do, and the agent serves', async () => {
    const dir = tempDir('oa-statedir-');
    dirs.push(dir);
    const state = smallStateDir(dir);
    readOnly(state);
    const host = makeTargetHost(dir, await freePort());
    targets.push(host);
    const agent = await startSeedAgent(dir, { ...host.config, StateDir: join(state, 'agent') });
    agents.push(agent);
    await expectServing(agent);
    const { problems } = (await agent.call<SeedsList>('GET', '/api/seeds')).body.stateDir;
    expect(problems[0]!.message).toContain(`StateDir ${join(state, 'agent')}: cannot create`);
    expect(problems[0]!.hint).toMatch(/read-only filesystem|does not exist/);
  }, 60000);
});

describe('state files that are JSON but not a seed', () => {
  const context = (id: string) => ({
    seedId: id,
    params: { startMySQL: false, stepByStep: false, receiveOnly: false, port: 1 },
    deadlines: { seed: Date.now() + 3_600_000, connect: null },
    facts: {},
    error: null,
    endReason: null,
    connectTimeoutMs: 1000,
  });
  const record = (id: string, snapshot: unknown, history: unknown[] = []) => ({
    formatVersion: SEED_FORMAT_VERSION,
    id,
    role: 'target',
    machine: 'seed-target',
    machineVersion: KNOWN_MACHINES['seed-target'],
    params: { startMySQL: false },
    secrets: {},
    snapshot,
    history,
    progress: null,
    pgids: [],
    marks: {},
    createdAt: new Date().toISOString(),
    updatedAt: new Date().toISOString(),
  });
  const bad: Record<string, unknown> = {
    'not-a-state': record('not-a-state', { status: 'active', value: 'nonsense', context: context('not-a-state'), children: {} }),
    'not-a-substate': record('not-a-substate', { status: 'active', value: { receiving: 'zzz' }, context: context('not-a-substate'), children: {} }),
    'empty-snapshot': record('empty-snapshot', {}),
    'no-context': record('no-context', { status: 'active', value: { stoppingMySQL: 'paused' }, children: {} }),
    'null-context': record('null-context', { status: 'done', value: 'done', context: null, children: {} }),
    'children-null': record('children-null', { status: 'active', value: { stoppingMySQL: 'paused' }, context: context('children-null'), children: null }),
    'history-numbers': record('history-numbers', { status: 'done', value: 'done', context: context('history-numbers'), children: {} }, [1, 2]),
  };

  test('each is moved to corrupt/ and reported at start; the good seed and every route are there', async () => {
    const dir = tempDir('oa-badsnap-');
    dirs.push(dir);
    const seedsDir = join(dir, 'state', 'seeds');
    mkdirSync(seedsDir, { recursive: true });
    for (const [id, r] of Object.entries(bad)) writeFileSync(join(seedsDir, `${id}.json`), JSON.stringify(r));
    const good = record('good', { status: 'done', value: 'done', context: context('good'), children: {} }, [{ state: 'done', enteredAt: new Date().toISOString(), leftAt: null, error: null }]);
    writeFileSync(join(seedsDir, 'good.json'), JSON.stringify(good));
    const host = makeTargetHost(dir, await freePort());
    targets.push(host);
    const agent = await startSeedAgent(dir, host.config);
    agents.push(agent);
    await expectServing(agent);
    const list = (await agent.call<SeedsList>('GET', '/api/seeds')).body;
    expect(list.seeds.map((s) => [s.id, s.status])).toEqual([['good', 'done']]);
    expect(list.corrupt.map((c) => c.file).sort()).toEqual(Object.keys(bad).map((id) => join(seedsDir, `${id}.json`)).sort());
    for (const c of list.corrupt) expect(c.movedTo!.startsWith(join(seedsDir, 'corrupt') + '/')).toBe(true);
    const errorOf = (id: string) => list.corrupt.find((c) => c.file.endsWith(`/${id}.json`))!.error;
    expect(errorOf('not-a-state')).toContain('is not a state of seed-target');
    expect(errorOf('no-context')).toContain('context');
    expect(errorOf('history-numbers')).toContain('history[0]');
    expect(readdirSync(seedsDir).filter((n) => n.endsWith('.json'))).toEqual(['good.json']);
  }, 60000);
});
