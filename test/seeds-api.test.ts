// Seeds through a real agent process: real commands, real TCP, a real btrfs snapshot on the source.
import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './support/agent-process.js';
import { mountsUnder } from './support/btrfs-fixture.js';
import { startSeedAgent, type SeedAgent } from './support/seed-api.js';
import { freePort, isLive, makeSourceHost, makeTargetHost, stopTargetMysqld, taggedPids, treeDigest, type SourceHost, type TargetHost } from './support/seed-hosts.js';
import { seedTag, stateDirKey } from '../src/seeds/reaper.js';

const agents: SeedAgent[] = [];
const targets: TargetHost[] = [];
const dirs: string[] = [];
let source: SourceHost;

beforeAll(() => {
  source = makeSourceHost(tempDir('oa-seed-src-'), `oa-seed-${process.pid}`);
});
afterEach(async () => {
  for (const a of agents.splice(0)) await a.agent.stop();
  for (const t of targets.splice(0)) stopTargetMysqld(t);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
afterAll(() => source?.cleanup());

async function target(extra: Record<string, unknown> = {}, dir = tempDir('oa-seed-tgt-')) {
  dirs.push(dir);
  const host = makeTargetHost(dir, await freePort());
  targets.push(host);
  const agent = await startSeedAgent(dir, { ...host.config, ...extra });
  agents.push(agent);
  return { host, agent };
}

async function sourceAgent(extra: Record<string, unknown> = {}) {
  const dir = tempDir('oa-seed-srcagent-');
  dirs.push(dir);
  const agent = await startSeedAgent(dir, { ...source.config, ...extra });
  agents.push(agent);
  return agent;
}

const isFinal = (v: { status: string }) => v.status !== 'active';

describe('seeds through the agent API', () => {
  test('a seed copies the snapshot to the target, persisting each state before its step acts', async () => {
    const id = 'seed-e2e';
    const dir = tempDir('oa-seed-tgt-');
    const stateFile = join(dir, 'state', 'seeds', `${id}.json`);
    // The first process of the first step and the post-copy command copy the state file as they start.
    const { host, agent: t } = await target(
      {
        MySQLDatadirCommand: `cp ${stateFile} ${dir}/seen-by-first-step.json 2>>${dir}/cp-errors; echo ${join(dir, 'datadir')}`,
        PostCopyCommand: `cp ${stateFile} ${dir}/seen-by-post-copy.json`,
      },
      dir,
    );
    const s = await sourceAgent();
    const liveBefore = treeDigest(source.live);
    const snapBefore = treeDigest(source.snapshot);

    const created = await t.call<{ seed: { id: string; status: string }; transfer: { port: number } }>('POST', '/api/seeds', {
      id,
      role: 'target',
      startMySQL: true,
    });
    expect(created.status).toBe(201);
    expect(created.body.transfer.port).toBe(host.config.SeedTransferPort);
    const sent = await s.call('POST', '/api/seeds', {
      id,
      role: 'source',
      targetHost: '127.0.0.1',
      targetPort: created.body.transfer.port,
      snapshot: source.snapshot,
    });
    expect(sent.status).toBe(201);

    const tv = await t.waitFor(id, isFinal, 'an end');
    const sv = await s.waitFor(id, isFinal, 'an end');
    expect([tv.status, tv.error]).toEqual(['done', null]);
    expect([sv.status, sv.error]).toEqual(['done', null]);
    // A command-based receive measures what arrived once more when the command ends: the whole copy.
    expect(tv.progress?.bytesDone).toBeGreaterThan(0);
    expect(tv.progress?.bytesTotal).toBe(tv.progress?.bytesDone);
    expect(tv.history.map((h) => h.state)).toEqual(['stoppingMySQL', 'purgingDatadir', 'receiving', 'postCopy', 'startingMySQL', 'done']);
    expect(sv.history.map((h) => h.state)).toEqual(['mountingSnapshot', 'sending', 'unmounting', 'done']);
    for (const h of tv.history.slice(0, -1)) expect(Date.parse(h.leftAt!)).toBeGreaterThanOrEqual(Date.parse(h.enteredAt));

    // A copy that is missing says what the target agent did (it failed once in a full run, cause not found).
    const seen = (name: string) => {
      if (!existsSync(join(dir, name))) {
        const cpErrors = existsSync(join(dir, 'cp-errors')) ? readFileSync(join(dir, 'cp-errors'), 'utf8') : '(none)';
        throw new Error(`${name} is missing; cp said: ${cpErrors}; target agent output:\n${t.agent.output().slice(-6000)}`);
      }
      return JSON.parse(readFileSync(join(dir, name), 'utf8'));
    };
    const first = seen('seen-by-first-step.json');
    expect(first.snapshot.value).toEqual({ stoppingMySQL: 'running' });
    const post = seen('seen-by-post-copy.json');
    expect(post.snapshot.value).toEqual({ postCopy: 'running' });
    expect(post.machineVersion).toBe(1);

    const copied = treeDigest(host.datadir);
    delete copied['post-copied'];
    expect(copied).toEqual(treeDigest(join(source.snapshot, 'mysql')));
    expect(treeDigest(source.live)).toEqual(liveBefore);
    expect(treeDigest(source.snapshot)).toEqual(snapBefore);
    expect(mountsUnder(source.mountPoint)).toEqual([]);
    expect(host.mysqlRunning()).toBe(true);
    // Only MySQL itself, started by the seed's start step, may carry the seed's tag on.
    const ours = [...taggedPids(`seed:${stateDirKey(t.stateDir)}:`), ...taggedPids(`seed:${stateDirKey(s.stateDir)}:`)];
    expect(ours.filter((p) => !host.mysqldPids().includes(p))).toEqual([]);
  });

  test('creating a seed is idempotent by id; other parameters for the same id are a conflict', async () => {
    const { host, agent: t } = await target();
    host.delay('receive', 30);
    const body = { id: 'idem', role: 'target', startMySQL: false };
    const first = await t.call<{ seed: { createdAt: string } }>('POST', '/api/seeds', body);
    const again = await t.call<{ seed: { createdAt: string } }>('POST', '/api/seeds', body);
    expect([first.status, again.status]).toEqual([201, 200]);
    expect(again.body.seed.createdAt).toBe(first.body.seed.createdAt);
    const other = await t.call<{ Message: string }>('POST', '/api/seeds', { ...body, startMySQL: true });
    expect(other.status).toBe(409);
    expect(other.body.Message).toContain('already exists');
    const second = await t.call<{ Message: string }>('POST', '/api/seeds', { ...body, id: 'idem-2' });
    expect(second.status).toBe(409);
    expect(second.body.Message).toContain('still active');
    const bad = await t.call('POST', '/api/seeds', { id: '../x', role: 'target' });
    expect(bad.status).toBe(400);
    const noToken = await fetch(`${t.agent.baseUrl}/api/seeds?token=${t.token}`, { method: 'POST', body: JSON.stringify(body) });
    expect(noToken.status).toBe(401);
    await t.call('POST', '/api/seeds/idem/events', { type: 'ABORT' });
    await t.waitFor('idem', isFinal, 'an end');
  });

  test('step by step: the seed waits before each step for NEXT, refuses events it cannot take, and an abort before the purge leaves the datadir alone', async () => {
    const { host, agent: t } = await target();
    const before = treeDigest(host.datadir);
    await t.call('POST', '/api/seeds', { id: 'steps', role: 'target', stepByStep: true });
    let v = await t.waitFor('steps', (x) => x.state === 'stoppingMySQL' && x.paused, 'paused in stoppingMySQL');
    expect(v.accepts).toEqual(['NEXT', 'ABORT']);
    expect(host.mysqlRunning()).toBe(true);
    expect((await t.call('POST', '/api/seeds/steps/events', { type: 'NEXT' })).status).toBe(200);
    v = await t.waitFor('steps', (x) => x.state === 'purgingDatadir' && x.paused, 'paused in purgingDatadir');
    expect(host.mysqlRunning()).toBe(false);
    const wrong = await t.call<{ Message: string }>('POST', '/api/seeds/steps/events', { type: 'START' });
    expect(wrong.status).toBe(400);
    const badReason = await t.call<{ Message: string }>('POST', '/api/seeds/steps/events', { type: 'ABORT', reason: 'two\nlines' });
    expect([badReason.status, badReason.body.Message]).toEqual([400, expect.stringContaining('reason must be one line')]);
    expect((await t.call('POST', '/api/seeds/steps/events', { type: 'ABORT', reason: ' wrong target host, ticket DBA-42 ' })).status).toBe(200);
    v = await t.waitFor('steps', isFinal, 'an end');
    expect(v.status).toBe('aborted');
    expect(v.error!.message).toBe('seed aborted during purgingDatadir: wrong target host, ticket DBA-42');
    expect(v.history.map((h) => h.state)).toEqual(['stoppingMySQL', 'purgingDatadir', 'cleanup', 'aborted']);
    expect(treeDigest(host.datadir)).toEqual(before);
    const late = await t.call<{ Message: string }>('POST', '/api/seeds/steps/events', { type: 'NEXT' });
    expect(late.status).toBe(409);
    expect(late.body.Message).toContain('does not accept NEXT');
    expect((await t.call('GET', '/api/seeds/nope')).status).toBe(404);
  });

  test('abort kills the whole process group of the running step, grandchildren included, and removes the partial copy', async () => {
    const { host, agent: t } = await target({ ReceiveSeedDataCommand: 'touch %s/partial; : %s; bash -c "sleep 1000; :" & sleep 1000 & wait' });
    await t.call('POST', '/api/seeds', { id: 'abort-me', role: 'target' });
    await t.waitFor('abort-me', (x) => x.state === 'receiving', 'receiving');
    const tag = seedTag(t.stateDir, 'abort-me');
    const deadline = Date.now() + 10000;
    while (taggedPids(tag).length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(taggedPids(tag).length).toBeGreaterThanOrEqual(3);
    const res = await t.call('GET', `/api/abort-seed/abort-me?token=${t.token}`);
    expect([res.status, res.body]).toEqual([200, true]);
    const v = await t.waitFor('abort-me', isFinal, 'an end');
    expect(v.status).toBe('aborted');
    expect(taggedPids(tag)).toEqual([]);
    expect(existsSync(join(host.datadir, 'partial'))).toBe(false);
  });

  test('a restarted agent reaps the process groups its killed predecessor left, and a cut-off receive command fails with a clear error', async () => {
    const dir = tempDir('oa-seed-tgt-');
    const { agent: t } = await target({ ReceiveSeedDataCommand: ': %s %s; bash -c "sleep 1000; :" & sleep 1000 & wait' }, dir);
    await t.call('POST', '/api/seeds', { id: 'reap', role: 'target' });
    await t.waitFor('reap', (x) => x.state === 'receiving', 'receiving');
    const tag = seedTag(t.stateDir, 'reap');
    const deadline = Date.now() + 10000;
    while (taggedPids(tag).length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    // The group is recorded off the event loop (the tag finds it anyway): on disk within moments.
    const recorded = () => (JSON.parse(readFileSync(join(t.stateDir, 'seeds', 'reap.json'), 'utf8')) as { pgids: number[] }).pgids;
    while (recorded().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(recorded().length).toBeGreaterThan(0);
    await t.agent.kill9();
    agents.splice(agents.indexOf(t), 1);
    const left = taggedPids(tag);
    expect(left.length).toBeGreaterThanOrEqual(3);

    const t2 = await startSeedAgent(dir, { ...targets.at(-1)!.config, ReceiveSeedDataCommand: 'sleep 1000' });
    agents.push(t2);
    const v = await t2.waitFor('reap', isFinal, 'an end');
    expect(v.status).toBe('failed');
    expect(v.error!.message).toContain('interrupted by an agent restart');
    expect(v.error!.hint).toContain('start a new seed');
    expect(left.filter(isLive)).toEqual([]);
    expect(taggedPids(tag)).toEqual([]);
  });

  test('a corrupt state file is reported, moved aside, and the agent serves the other seeds', async () => {
    const dir = tempDir('oa-seed-tgt-');
    mkdirSync(join(dir, 'state', 'seeds'), { recursive: true });
    writeFileSync(join(dir, 'state', 'seeds', 'broken.json'), '{"formatVersion":1,"id":"bro');
    const { agent: t } = await target({}, dir);
    const list = await t.call<{ seeds: unknown[]; corrupt: { file: string; movedTo: string; error: string }[] }>('GET', '/api/seeds');
    expect(list.status).toBe(200);
    expect(list.body.corrupt).toHaveLength(1);
    expect(list.body.corrupt[0].file).toBe(join(dir, 'state', 'seeds', 'broken.json'));
    expect(existsSync(list.body.corrupt[0].movedTo)).toBe(true);
    expect(existsSync(join(dir, 'state', 'seeds', 'broken.json'))).toBe(false);
    expect(t.agent.output()).toContain('seed state file is corrupt');
    expect((await t.call('POST', '/api/seeds', { id: 'after-corrupt', role: 'target', stepByStep: true })).status).toBe(201);
    await t.call('POST', '/api/seeds/after-corrupt/events', { type: 'ABORT' });
    await t.waitFor('after-corrupt', isFinal, 'an end');
  });
});

describe('seeds with the built-in transfer', () => {
  test('the target hands out a port and key once, the source sends with them, and both sides finish', async () => {
    const { host, agent: t } = await target({ ReceiveSeedDataCommand: '', SeedTransferBindAddress: '127.0.0.1' });
    const s = await sourceAgent({ SendSeedDataCommand: '' });
    const created = await t.call<{ transfer: { port: number; authKey: string } }>('POST', '/api/seeds', { id: 'builtin', role: 'target', startMySQL: true });
    expect(created.status).toBe(201);
    const { port, authKey } = created.body.transfer;
    expect(authKey).toMatch(/^.{16,}$/);
    expect(JSON.stringify(await t.seed('builtin'))).not.toContain(authKey);
    const noKey = await s.call('POST', '/api/seeds', { id: 'builtin', role: 'source', targetHost: '127.0.0.1', targetPort: port, snapshot: source.snapshot });
    expect(noKey.status).toBe(400);
    const sent = await s.call('POST', '/api/seeds', { id: 'builtin', role: 'source', targetHost: '127.0.0.1', targetPort: port, authKey, snapshot: source.snapshot });
    expect(sent.status).toBe(201);
    const tv = await t.waitFor('builtin', isFinal, 'an end');
    const sv = await s.waitFor('builtin', isFinal, 'an end');
    expect([tv.status, tv.error, sv.status, sv.error]).toEqual(['done', null, 'done', null]);
    expect(tv.progress).toMatchObject({ bytesDone: 350000, bytesTotal: 350000, filesTotal: 3 });
    const copied = treeDigest(host.datadir);
    delete copied['post-copied'];
    // Exactly the source's files: the transfer's bookkeeping stays under StateDir (orchestrator's progress is the datadir's size).
    expect(copied).toEqual(treeDigest(join(source.snapshot, 'mysql')));
    expect(existsSync(join(t.stateDir, 'transfers', 'builtin', 'transfer-manifest.json'))).toBe(true);
    expect(mountsUnder(source.mountPoint)).toEqual([]);
  });
  test('a seed\'s "compression" overrides SeedTransferCompression on the sending agent; bad values and a target-only request are refused', async () => {
    const { host, agent: t } = await target({ ReceiveSeedDataCommand: '', SeedTransferBindAddress: '127.0.0.1' });
    const s = await sourceAgent({ SendSeedDataCommand: '', SeedTransferCompression: 'fast' });
    const alone = await t.call<{ error: string }>('POST', '/api/seeds', { id: 'zipped', role: 'target', compression: 'fast' });
    expect(alone.status).toBe(400);
    expect(JSON.stringify(alone.body)).toMatch(/compression is chosen by the sending side/);
    const created = await t.call<{ transfer: { port: number; authKey: string } }>('POST', '/api/seeds', { id: 'zipped', role: 'target' });
    const { port, authKey } = created.body.transfer;
    const body = { id: 'zipped', role: 'source', targetHost: '127.0.0.1', targetPort: port, authKey, snapshot: source.snapshot };
    const bad = await s.call('POST', '/api/seeds', { ...body, compression: 'zstd' });
    expect(bad.status).toBe(400);
    expect((bad.body as { Message: string }).Message).toBe('compression must be "off", "fast", "strong" or "auto", got "zstd"');
    expect((await s.call('POST', '/api/seeds', { ...body, compression: 'strong' })).status).toBe(201);
    const tv = await t.waitFor('zipped', isFinal, 'an end');
    const sv = await s.waitFor('zipped', isFinal, 'an end');
    expect([tv.status, tv.error, sv.status, sv.error]).toEqual(['done', null, 'done', null]);
    // The seed's "strong" ran, not the agent's own default ("fast"): zstd at strong's level.
    expect(s.agent.output()).toMatch(/transfer: send complete .*"mode":"strong".*"compression":"zstd"/);
    const copied = treeDigest(host.datadir);
    delete copied['post-copied'];
    expect(copied).toEqual(treeDigest(join(source.snapshot, 'mysql')));
  });

  test('a wrong transfer key fails the source at once with the receiver\'s reason; the target shows the refusal and still takes the right sender', async () => {
    const { host, agent: t } = await target({ ReceiveSeedDataCommand: '', SeedTransferBindAddress: '127.0.0.1' });
    const created = await t.call<{ transfer: { port: number; authKey: string } }>('POST', '/api/seeds', { id: 'wrongkey', role: 'target' });
    const { port, authKey } = created.body.transfer;
    const wrongKey = authKey.replace(/^./, (c) => (c === 'a' ? 'b' : 'a'));
    const s1 = await sourceAgent({ SendSeedDataCommand: '' });
    expect((await s1.call('POST', '/api/seeds', { id: 'wrongkey', role: 'source', targetHost: '127.0.0.1', targetPort: port, authKey: wrongKey, snapshot: source.snapshot })).status).toBe(201);
    const sv = await s1.waitFor('wrongkey', isFinal, 'an end', 15000);
    expect(sv.status).toBe('failed');
    expect(sv.error!.message).toMatch(/refused this sender: wrong transfer key/);
    expect(sv.history.map((h) => h.state)).toEqual(['mountingSnapshot', 'sending', 'cleanup', 'failed']);

    const refused = await t.waitFor('wrongkey', (v) => v.warnings.length > 0, 'a refused sender in the view');
    expect([refused.status, refused.state]).toEqual(['active', 'receiving']);
    expect(refused.warnings[0]!.message).toMatch(new RegExp(`refused a connection on transfer port ${port}: .*wrong transfer key`));
    // A retrying sender would come back after a second: one refusal means no retry loop.
    await new Promise((r) => setTimeout(r, 2500));
    expect((await t.seed('wrongkey')).warnings).toHaveLength(1);

    const s2 = await sourceAgent({ SendSeedDataCommand: '' });
    expect((await s2.call('POST', '/api/seeds', { id: 'wrongkey', role: 'source', targetHost: '127.0.0.1', targetPort: port, authKey, snapshot: source.snapshot })).status).toBe(201);
    const tv = await t.waitFor('wrongkey', isFinal, 'an end');
    expect([tv.status, tv.error, (await s2.waitFor('wrongkey', isFinal, 'an end')).status]).toEqual(['done', null, 'done']);
    const copied = treeDigest(host.datadir);
    delete copied['post-copied'];
    expect(copied).toEqual(treeDigest(join(source.snapshot, 'mysql')));
  });

  test('a full target disk fails both seeds with the receiver\'s reason, and the target drops the partial copy and its bookkeeping', async () => {
    const { host, agent: t } = await target({ ReceiveSeedDataCommand: '', SeedTransferBindAddress: '127.0.0.1' });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=128k', 'oa-seed-full', host.datadir]);
    try {
      const created = await t.call<{ transfer: { port: number; authKey: string } }>('POST', '/api/seeds', { id: 'full', role: 'target' });
      const { port, authKey } = created.body.transfer;
      const s = await sourceAgent({ SendSeedDataCommand: '' });
      expect((await s.call('POST', '/api/seeds', { id: 'full', role: 'source', targetHost: '127.0.0.1', targetPort: port, authKey, snapshot: source.snapshot })).status).toBe(201);
      const tv = await t.waitFor('full', isFinal, 'an end', 20000);
      const sv = await s.waitFor('full', isFinal, 'an end', 20000);
      expect(tv.status).toBe('failed');
      expect(tv.error!.message).toMatch(/ENOSPC/);
      expect(sv.status).toBe('failed');
      expect(sv.error!.message).toMatch(/stopped the transfer: .*ENOSPC/);
      expect(sv.error!.message).not.toMatch(/ECONNREFUSED/);
      expect(readdirSync(host.datadir)).toEqual([]);
      expect(existsSync(join(t.stateDir, 'transfers', 'full'))).toBe(false);
    } finally {
      execFileSync('umount', ['-l', host.datadir]);
    }
  });
});

describe('the original seed routes', () => {
  test('orchestrator drives receive and send, polls completed/succeeded, and a failing sender fails its side', async () => {
    const { host, agent: t } = await target();
    const s = await sourceAgent({ SeedTransferPort: host.config.SeedTransferPort });
    const q = (a: SeedAgent) => `token=${a.token}`;
    const get = async (a: SeedAgent, path: string) => {
      const res = await fetch(`${a.agent.baseUrl}${path}${path.includes('?') ? '&' : '?'}${q(a)}`);
      return { status: res.status, body: await res.json() };
    };
    // Orchestrator's sequence: stop MySQL, purge, mount the snapshot, receive, send, poll.
    expect((await get(t, '/api/mysql-stop')).status).toBe(200);
    expect((await get(t, '/api/delete-mysql-datadir')).status).toBe(200);
    expect((await get(s, `/api/mountlv?lv=${encodeURIComponent(source.snapshot)}`)).status).toBe(200);
    expect(await get(t, '/api/seed-command-completed/7')).toEqual({ status: 200, body: false });
    expect(await get(t, '/api/receive-mysql-seed-data/7')).toEqual({ status: 200, body: true });
    expect(await get(s, '/api/send-mysql-seed-data/127.0.0.1/7')).toEqual({ status: 200, body: true });
    await t.waitFor('7', isFinal, 'an end');
    await s.waitFor('7', isFinal, 'an end');
    for (const a of [t, s]) {
      expect(await get(a, '/api/seed-command-completed/7')).toEqual({ status: 200, body: true });
      expect(await get(a, '/api/seed-command-succeeded/7')).toEqual({ status: 200, body: true });
    }
    expect((await t.seed('7')).history.map((h) => h.state)).toEqual(['stoppingMySQL', 'purgingDatadir', 'receiving', 'done']);
    expect((await s.seed('7')).history.map((h) => h.state)).toEqual(['sending', 'done']);
    expect(host.log().split('\n').filter((l) => l === 'stop' || l === 'purge')).toEqual(['stop', 'purge']); // our steps found them done
    expect(mountsUnder(source.mountPoint)).toEqual([source.mountPoint]); // orchestrator unmounts, not the seed

    // Second seed: the sender's command fails after the stream; the source side says so.
    source.sendExit(5);
    try {
      expect(await get(t, '/api/receive-mysql-seed-data/8')).toEqual({ status: 200, body: true });
      expect(await get(s, '/api/send-mysql-seed-data/127.0.0.1/8')).toEqual({ status: 200, body: true });
      const sv = await s.waitFor('8', isFinal, 'an end');
      expect(sv.status).toBe('failed');
      expect(sv.error!.message).toContain('exited with code 5');
      expect(await get(s, '/api/seed-command-completed/8')).toEqual({ status: 200, body: true });
      expect(await get(s, '/api/seed-command-succeeded/8')).toEqual({ status: 200, body: false });
    } finally {
      source.sendExit(0);
      await get(t, '/api/abort-seed/8');
      await t.waitFor('8', isFinal, 'an end');
      await get(s, '/api/umount');
    }
    expect(mountsUnder(source.mountPoint)).toEqual([]);
  });

  test('a directory orchestrator mounted that changes while being sent fails both seeds, with the change in the source seed\'s warnings', async () => {
    const secret = { SeedTransferSecret: 'orchestrator-shared-secret' };
    const { agent: t, host } = await target({ ReceiveSeedDataCommand: '', SeedTransferBindAddress: '127.0.0.1', ...secret });
    const s = await sourceAgent({ SendSeedDataCommand: '', SeedTransferBandwidthMBps: 0.5, SeedTransferPort: host.config.SeedTransferPort, ...secret });
    // Not a snapshot: a writable directory, mounted (bound) where orchestrator would have mounted a snapshot.
    const live = tempDir('oa-seed-live-');
    dirs.push(live);
    mkdirSync(join(live, 'mysql', 'db1'), { recursive: true });
    writeFileSync(join(live, 'mysql', 'ibdata1'), randomBytes(3_000_000));
    writeFileSync(join(live, 'mysql', 'db1', 't.ibd'), randomBytes(10_000));
    execFileSync('mount', ['--bind', live, source.mountPoint]);
    try {
      const get = async (a: SeedAgent, path: string) => (await fetch(`${a.agent.baseUrl}${path}?token=${a.token}`)).json();
      expect(await get(t, '/api/receive-mysql-seed-data/changing')).toBe(true);
      expect(await get(s, '/api/send-mysql-seed-data/127.0.0.1/changing')).toBe(true);
      await s.waitFor('changing', (v) => (v.progress?.bytesDone ?? 0) > 300_000, 'a first part sent');
      appendFileSync(join(live, 'mysql', 'ibdata1'), 'written by a running server');
      const sv = await s.waitFor('changing', isFinal, 'an end');
      expect(sv.status).toBe('failed');
      expect(sv.error!.message).toMatch(/mysql\/ibdata1 changed while being sent \(size 3000000 → 3000027 bytes.*not a consistent datadir/);
      expect(sv.warnings.map((w) => w.message)).toEqual([expect.stringMatching(/mysql\/ibdata1 changed while being sent/)]);
      const tv = await t.waitFor('changing', isFinal, 'an end');
      expect(tv.status).toBe('failed');
      expect(tv.error!.message).toMatch(/the sender stopped the transfer: .*changed while being sent/);
      for (const a of [t, s]) {
        expect(await get(a, '/api/seed-command-completed/changing')).toBe(true);
        expect(await get(a, '/api/seed-command-succeeded/changing')).toBe(false);
      }
    } finally {
      execFileSync('umount', ['-l', source.mountPoint]);
    }
  });

  test('without transfer commands and without SeedTransferSecret the original routes say what to configure', async () => {
    const { agent: t } = await target({ ReceiveSeedDataCommand: '' });
    const res = await fetch(`${t.agent.baseUrl}/api/receive-mysql-seed-data/9?token=${t.token}`);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { Message: string; Details: { hint: string } };
    expect(body.Message).toContain('SeedTransferSecret');
    expect(body.Details.hint).toContain('ReceiveSeedDataCommand');
    expect(stateDirKey(t.stateDir)).toMatch(/^[0-9a-f]{12}$/);
  });
});
