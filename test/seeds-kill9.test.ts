// THE crash matrix: for every state of every seed chart that invokes a step, hold a seed there with the
// step's process running (a slow operator command), SIGKILL the agent, start a new agent on the same
// StateDir, and check that the seed finishes (or fails cleanly where a command-based transfer cannot
// resume), that the source data is byte-for-byte untouched, and that no tagged process or mount is left.
// The states come from the charts themselves (machines/): a new step state fails the first test until a
// case covers it.
import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, tempDir } from './support/agent-process.js';
import { mountsUnder } from './support/btrfs-fixture.js';
import { startSeedAgent, type SeedAgent, type SeedViewJson } from './support/seed-api.js';
import { freePort, makeSourceHost, makeTargetHost, stopTargetMysqld, taggedPids, treeDigest, type SourceHost, type TargetHost } from './support/seed-hosts.js';
import { seedTag, stateDirKey } from '../src/seeds/reaper.js';
import { topState } from '../machines/seed-common.js';
import { seedTargetMachine, TARGET_STEP_STATES } from '../machines/seed-target.js';
import { seedSourceMachine, SOURCE_STEP_STATES } from '../machines/seed-source.js';
import { BACKUP_SOURCE_STEP_STATES, seedBackupSourceMachine } from '../machines/seed-backup-source.js';
import { BACKUP_TARGET_STEP_STATES, seedBackupTargetMachine } from '../machines/seed-backup-target.js';
import { BACKUP_METHOD, DUMP_METHOD, hotSeedRig, type HotSeedKillCase, type HotSeedMethod, type HotSeedRig } from './support/hot-seed-kill9.js';
import { haveMariaDB, which } from './support/mariadb.js';
import { DUMP_SOURCE_STEP_STATES, seedDumpSourceMachine } from '../machines/seed-dump-source.js';
import { DUMP_TARGET_STEP_STATES, seedDumpTargetMachine } from '../machines/seed-dump-target.js';

let source: SourceHost;
let snapshotDigest: Record<string, string>;
let liveDigest: Record<string, string>;
const agents: SeedAgent[] = [];
const targets: TargetHost[] = [];
const children: ChildProcess[] = [];
const dirs: string[] = [];

beforeAll(() => {
  source = makeSourceHost(tempDir('oa-k9-src-'), `oa-k9-${process.pid}`);
  snapshotDigest = treeDigest(source.snapshot);
  liveDigest = treeDigest(source.live);
});
afterEach(async () => {
  for (const a of agents.splice(0)) await a.agent.stop();
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  for (const t of targets.splice(0)) stopTargetMysqld(t);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  expect(treeDigest(source.snapshot)).toEqual(snapshotDigest);
  expect(treeDigest(source.live)).toEqual(liveDigest);
});
afterAll(() => source?.cleanup());

async function until(what: string, cond: () => boolean, timeoutMs = 20000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** SIGKILL the agent and start another on the same StateDir and config. */
async function crashAndRestart(agent: SeedAgent, dir: string, config: Record<string, unknown>): Promise<SeedAgent> {
  await agent.agent.kill9();
  agents.splice(agents.indexOf(agent), 1);
  const next = await startSeedAgent(dir, config);
  agents.push(next);
  return next;
}

/** The operator's kind of sender, run by hand: the snapshot's datadir, tar over socat. */
function sendSnapshot(port: number): ChildProcess {
  const child = spawn('bash', ['-c', `tar -cf - -C "$1" . | socat -u STDIN TCP:127.0.0.1:$2,retry=200,interval=0.1`, 'send', join(source.snapshot, 'mysql'), String(port)], {
    stdio: 'ignore',
  });
  children.push(child);
  return child;
}

function receiveInto(dest: string, port: number): ChildProcess {
  const child = spawn('bash', ['-c', `socat -u TCP-LISTEN:$2,bind=127.0.0.1,reuseaddr STDOUT | tar -xf - -C "$1"`, 'recv', dest, String(port)], { stdio: 'ignore' });
  children.push(child);
  return child;
}

const isFinal = (v: SeedViewJson) => v.status !== 'active';

/** No tagged process is left but MySQL itself (started by a seed step, so carrying its tag). */
function assertNothingLeft(agent: SeedAgent, host?: TargetHost): void {
  const mysqld = host?.mysqldPids() ?? [];
  expect(taggedPids(`seed:${stateDirKey(agent.stateDir)}:`).filter((p) => !mysqld.includes(p))).toEqual([]);
  expect(mountsUnder(source.mountPoint)).toEqual([]);
}

interface ChartNode {
  invoke?: unknown[];
  states?: Record<string, ChartNode>;
}
interface Chart {
  id: string;
  root: ChartNode;
}

/** The top-level states of a chart in which some actor is invoked (its own or a child state's). */
function invokingStates(chart: Chart): string[] {
  const invokes = (node: ChartNode): boolean =>
    (node.invoke?.length ?? 0) > 0 || Object.values(node.states ?? {}).some(invokes);
  return Object.entries(chart.root.states ?? {})
    .filter(([, node]) => invokes(node))
    .map(([name]) => name);
}

/** Every state machine exported by a module of machines/, by chart id. */
async function allCharts(): Promise<Map<string, Chart>> {
  const charts = new Map<string, Chart>();
  const dir = join(repoRoot, 'dist/machines');
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.js'))) {
    const mod = (await import(join(dir, file))) as Record<string, unknown>;
    for (const value of Object.values(mod)) {
      const v = value as Partial<Chart> & { provide?: unknown };
      if (v && typeof v === 'object' && typeof v.id === 'string' && v.root && typeof v.provide === 'function') charts.set(v.id, v as Chart);
    }
  }
  return charts;
}

/** Charts whose actors are not seed steps: nothing persisted to resume, a restart begins them anew. */
const NOT_PERSISTED = ['registration'];

/** Filled by the cases below: chart id -> states a case kills the agent in while the step's process runs. */
const covered: Record<string, readonly string[]> = {};

/**
 * Step states known to have no kill -9 case yet, by chart id (empty: every chart is covered). Listed by
 * name so that any other step state, or a new one, still fails the test below. A method adding charts may
 * list its states here until its cases cover them: a HotSeedMethod (test/support/hot-seed-kill9.ts: the
 * config keys of its programs, each behind a hold point) and a hotSeedKillCases(method, cases) call below,
 * one case per state naming the chart, the state and the program to hold.
 */
const NOT_YET_COVERED: Record<string, readonly string[]> = {};

describe('the matrix covers the charts', () => {
  test('every state of every seed chart that invokes a step has a kill -9 case below', async () => {
    const charts = await allCharts();
    expect(charts.size).toBeGreaterThanOrEqual(3);
    const needed = Object.fromEntries(
      [...charts.values()].filter((c) => !NOT_PERSISTED.includes(c.id)).map((c) => [c.id, invokingStates(c).sort()]),
    );
    const have: Record<string, string[]> = {};
    for (const [id, states] of [...Object.entries(covered), ...Object.entries(NOT_YET_COVERED)]) have[id] = [...(have[id] ?? []), ...states].sort();
    expect(have).toEqual(needed);
  });

  test('each chart\'s *_STEP_STATES list is exactly its invoking states', () => {
    expect([...TARGET_STEP_STATES].sort()).toEqual(invokingStates(seedTargetMachine as unknown as Chart).sort());
    expect([...SOURCE_STEP_STATES].sort()).toEqual(invokingStates(seedSourceMachine as unknown as Chart).sort());
    expect([...BACKUP_SOURCE_STEP_STATES].sort()).toEqual(invokingStates(seedBackupSourceMachine as unknown as Chart).sort());
    expect([...BACKUP_TARGET_STEP_STATES].sort()).toEqual(invokingStates(seedBackupTargetMachine as unknown as Chart).sort());
    expect([...DUMP_SOURCE_STEP_STATES].sort()).toEqual(invokingStates(seedDumpSourceMachine as unknown as Chart).sort());
    expect([...DUMP_TARGET_STEP_STATES].sort()).toEqual(invokingStates(seedDumpTargetMachine as unknown as Chart).sort());
  });
});

describe('kill -9 in every state of the target machine', () => {
  type Case = {
    state: string;
    /** Slow the step down and make sure its process runs before the kill. */
    hold: (host: TargetHost) => void;
    started: (host: TargetHost) => boolean;
    extra?: (dir: string) => Record<string, unknown>;
    expectStatus: 'done' | 'failed';
    errorContains?: string;
  };
  const count = (host: TargetHost, line: string) => host.log().split('\n').filter((l) => l.startsWith(line)).length;
  const cases: Case[] = [
    { state: 'stoppingMySQL', hold: (h) => h.delay('stop', 30), started: (h) => count(h, 'stop') === 1, expectStatus: 'done' },
    { state: 'purgingDatadir', hold: (h) => h.delay('purge', 30), started: (h) => count(h, 'purge') === 1, expectStatus: 'done' },
    {
      state: 'receiving',
      hold: (h) => h.delay('receive', 30),
      started: (h) => count(h, 'receive') === 1,
      expectStatus: 'failed',
      errorContains: 'interrupted by an agent restart',
    },
    { state: 'postCopy', hold: (h) => h.delay('postcopy', 30), started: (h) => count(h, 'post-copy') === 1, expectStatus: 'done' },
    { state: 'startingMySQL', hold: (h) => h.delay('start', 30), started: (h) => count(h, 'start') === 1, expectStatus: 'done' },
    {
      // The receive command leaves a partial file and fails, and makes the purge slow: cleanup is caught purging.
      state: 'cleanup',
      hold: () => undefined,
      started: (h) => count(h, 'purge') === 2,
      extra: (dir) => ({ ReceiveSeedDataCommand: `echo partial > "$1/partial"; echo 30 > ${dir}/delay-purge; echo "receive failing" >&2; exit 1` }),
      expectStatus: 'failed',
      errorContains: 'exited with code 1',
    },
  ];

  covered[seedTargetMachine.id] = cases.map((c) => c.state);

  test.each(cases)('killed in $state, the restarted agent ends the seed $expectStatus, leaving nothing behind', async (c) => {
    const dir = tempDir('oa-k9-tgt-');
    dirs.push(dir);
    const host = makeTargetHost(dir, await freePort());
    targets.push(host);
    const config = { ...host.config, ...(c.extra?.(dir) ?? {}) };
    const agent = await startSeedAgent(dir, config);
    agents.push(agent);
    c.hold(host);
    const id = `k9-${c.state}`;
    expect((await agent.call('POST', '/api/seeds', { id, role: 'target', startMySQL: true })).status).toBe(201);
    // Senders connect with retries; the receive (first or again) takes the stream when it listens.
    if (c.state !== 'receiving' && c.state !== 'cleanup') sendSnapshot(host.config.SeedTransferPort as number);
    await agent.waitFor(id, (v) => v.state === c.state, c.state);
    await until(`the ${c.state} step's process`, () => c.started(host));
    const persisted = JSON.parse(readFileSync(join(agent.stateDir, 'seeds', `${id}.json`), 'utf8'));
    expect(topState(persisted.snapshot.value)).toBe(c.state);

    for (const step of ['stop', 'purge', 'postcopy', 'start', 'receive'] as const) host.delay(step, 0);
    const again = await crashAndRestart(agent, dir, config);
    const end = await again.waitFor(id, isFinal, 'an end');
    expect(end.status).toBe(c.expectStatus);
    if (c.expectStatus === 'done') {
      expect(end.error).toBeNull();
      const copied = treeDigest(host.datadir);
      delete copied['post-copied'];
      expect(copied).toEqual(treeDigest(join(source.snapshot, 'mysql')));
      expect(existsSync(join(host.datadir, 'post-copied'))).toBe(true);
      expect(host.mysqlRunning()).toBe(true);
    } else {
      expect(end.error!.message).toContain(c.errorContains);
      // The partial copy is gone and MySQL was not started on it.
      expect(treeDigest(host.datadir)).toEqual({});
      expect(host.mysqlRunning()).toBe(false);
    }
    expect(end.history.at(-1)!.state).toBe(c.expectStatus);
    assertNothingLeft(again, host);
  });
});

describe('kill -9 in every state of the source machine', () => {
  async function sourceAgentIn(dir: string, extra: Record<string, unknown> = {}) {
    const config = { ...source.config, ...extra };
    const agent = await startSeedAgent(dir, config);
    agents.push(agent);
    return { agent, config };
  }

  async function next(agent: SeedAgent, id: string, state: string) {
    await agent.waitFor(id, (v) => v.state === state && v.paused, `paused in ${state}`);
    expect((await agent.call('POST', `/api/seeds/${id}/events`, { type: 'NEXT' })).status).toBe(200);
  }

  covered[seedSourceMachine.id] = ['mountingSnapshot', 'sending', 'unmounting', 'cleanup'];

  /**
   * The source host seen through the LVM backend with the operator's own commands, so mount and unmount
   * can be held mid-way: the "volume" is the btrfs snapshot directory, bind-mounted read-only by a script
   * that first sleeps as long as its delay file says.
   */
  function slowMountConfig(dir: string): Record<string, unknown> {
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    const script = (name: string, body: string) => {
      // The delay is read before the command logs itself: a test that sees the log line and then clears
      // the delay must not race the read.
      writeFileSync(join(bin, name), `#!/bin/bash\nd="$(cat ${dir}/delay-${name} 2>/dev/null || echo 0)"\necho ${name} >> ${dir}/ops.log\nsleep "$d"\n${body}\n`, { mode: 0o755 });
      return join(bin, name);
    };
    return {
      ...source.config,
      SnapshotBackend: 'lvm',
      LogicalVolumesCommand: `echo "snap1 vg0 ${source.snapshot} 0.00"`,
      GetLogicalVolumeFSTypeCommand: ': %s; echo btrfs',
      // $1 is the original's "-oro" option token, $2 the volume, $3 the mount point.
      MountLVCommand: `${script('mount', 'mount --bind "$2" "$3" && mount -o remount,bind,ro "$3"')} %s %s %s`,
      UnmountCommand: `${script('umount', 'umount "$1"')} %s`,
    };
  }

  test.each(['mountingSnapshot', 'unmounting'])(
    'killed in %s while the mount command runs, the restarted agent reaps it, runs the step again and finishes',
    async (state) => {
      const dir = tempDir('oa-k9-srcmount-');
      const dest = join(dir, 'received');
      mkdirSync(dest);
      dirs.push(dir);
      const port = await freePort();
      const { agent, config } = await sourceAgentIn(dir, slowMountConfig(dir));
      const command = state === 'mountingSnapshot' ? 'mount' : 'umount';
      writeFileSync(join(dir, `delay-${command}`), '30');
      receiveInto(dest, port);
      const id = `k9-srcmount-${state}`;
      expect((await agent.call('POST', '/api/seeds', { id, role: 'source', targetHost: '127.0.0.1', targetPort: port, snapshot: 'vg0/snap1' })).status).toBe(201);
      await agent.waitFor(id, (v) => v.state === state, state);
      const tag = seedTag(agent.stateDir, id);
      const ops = () => (existsSync(join(dir, 'ops.log')) ? readFileSync(join(dir, 'ops.log'), 'utf8').split('\n').filter(Boolean) : []);
      await until(`the ${command} command`, () => ops().includes(command) && taggedPids(tag).length > 0);
      const persisted = JSON.parse(readFileSync(join(agent.stateDir, 'seeds', `${id}.json`), 'utf8'));
      expect(topState(persisted.snapshot.value)).toBe(state);
      expect(mountsUnder(source.mountPoint)).toEqual(state === 'unmounting' ? [source.mountPoint] : []);
      writeFileSync(join(dir, `delay-${command}`), '0');
      const again = await crashAndRestart(agent, dir, config);
      const end = await again.waitFor(id, isFinal, 'an end');
      expect([end.status, end.error]).toEqual(['done', null]);
      // The killed command ran once, the step's second run once more.
      expect(ops().filter((o) => o === command)).toEqual([command, command]);
      expect(treeDigest(dest)).toEqual(treeDigest(join(source.snapshot, 'mysql')));
      assertNothingLeft(again);
    },
  );

  test.each(['mountingSnapshot', 'unmounting'])(
    'killed while waiting in %s (step by step), the seed goes on after the restart and finishes',
    async (state) => {
      const dir = tempDir('oa-k9-srcagent-');
      const dest = join(dir, 'received');
      mkdirSync(dest);
      dirs.push(dir);
      const port = await freePort();
      const { agent, config } = await sourceAgentIn(dir);
      receiveInto(dest, port);
      const id = `k9-src-${state}`;
      await agent.call('POST', '/api/seeds', { id, role: 'source', targetHost: '127.0.0.1', targetPort: port, snapshot: source.snapshot, stepByStep: true });
      if (state === 'unmounting') {
        await next(agent, id, 'mountingSnapshot');
        await next(agent, id, 'sending');
      }
      await agent.waitFor(id, (v) => v.state === state && v.paused, `paused in ${state}`);
      expect(mountsUnder(source.mountPoint)).toEqual(state === 'unmounting' ? [source.mountPoint] : []);
      const again = await crashAndRestart(agent, dir, config);
      if (state === 'mountingSnapshot') {
        await next(again, id, 'mountingSnapshot');
        await next(again, id, 'sending');
      }
      await next(again, id, 'unmounting');
      const end = await again.waitFor(id, isFinal, 'an end');
      expect([end.status, end.error]).toEqual(['done', null]);
      expect(treeDigest(dest)).toEqual(treeDigest(join(source.snapshot, 'mysql')));
      assertNothingLeft(again);
    },
  );

  test('killed mid-send, the restarted agent fails the seed (a send command cannot resume) and unmounts the snapshot', async () => {
    const dir = tempDir('oa-k9-srcagent-');
    dirs.push(dir);
    const { agent, config } = await sourceAgentIn(dir);
    source.delay('send', 30);
    try {
      await agent.call('POST', '/api/seeds', { id: 'k9-src-sending', role: 'source', targetHost: '127.0.0.1', targetPort: await freePort(), snapshot: source.snapshot });
      await agent.waitFor('k9-src-sending', (v) => v.state === 'sending', 'sending');
      const tag = seedTag(agent.stateDir, 'k9-src-sending');
      await until('the send command', () => taggedPids(tag).length > 0);
      expect(mountsUnder(source.mountPoint)).toEqual([source.mountPoint]);
      source.delay('send', 0);
      const again = await crashAndRestart(agent, dir, config);
      const end = await again.waitFor('k9-src-sending', isFinal, 'an end');
      expect(end.status).toBe('failed');
      expect(end.error!.message).toContain('send command');
      expect(end.error!.message).toContain('interrupted by an agent restart');
      assertNothingLeft(again);
    } finally {
      source.delay('send', 0);
    }
  });

  test('killed during cleanup (a send that ignores SIGTERM holds it), the restarted agent finishes the cleanup and the abort', async () => {
    const dir = tempDir('oa-k9-srcagent-');
    dirs.push(dir);
    const { agent, config } = await sourceAgentIn(dir, { SendSeedDataCommand: `trap '' TERM; sleep 1000 & wait; sleep 1000` });
    await agent.call('POST', '/api/seeds', { id: 'k9-src-cleanup', role: 'source', targetHost: '127.0.0.1', targetPort: await freePort(), snapshot: source.snapshot });
    await agent.waitFor('k9-src-cleanup', (v) => v.state === 'sending', 'sending');
    const tag = seedTag(agent.stateDir, 'k9-src-cleanup');
    await until('the send command', () => taggedPids(tag).length >= 2);
    expect((await agent.call('POST', '/api/seeds/k9-src-cleanup/events', { type: 'ABORT' })).status).toBe(200);
    await agent.waitFor('k9-src-cleanup', (v) => v.state === 'cleanup', 'cleanup');
    const again = await crashAndRestart(agent, dir, config);
    const end = await again.waitFor('k9-src-cleanup', isFinal, 'an end');
    expect(end.status).toBe('aborted');
    expect(end.history.map((h) => h.state)).toEqual(['mountingSnapshot', 'sending', 'cleanup', 'aborted']);
    assertNothingLeft(again);
  });
});

describe('kill -9 with the built-in transfer', () => {
  test('killing the sending and then the receiving agent mid-transfer still finishes the seed on both sides, resuming the copy', async () => {
    const bigDigest = treeDigest(source.bigSnapshot);
    const tdir = tempDir('oa-k9-bi-tgt-');
    const sdir = tempDir('oa-k9-bi-src-');
    dirs.push(tdir, sdir);
    const host = makeTargetHost(tdir, 0);
    targets.push(host);
    const tconfig = { ...host.config, ReceiveSeedDataCommand: '', SeedTransferBindAddress: '127.0.0.1' };
    const sconfig = { ...source.config, SendSeedDataCommand: '', SeedTransferBandwidthMBps: 0.6 };
    let t = await startSeedAgent(tdir, tconfig);
    agents.push(t);
    let s = await startSeedAgent(sdir, sconfig);
    agents.push(s);

    const created = await t.call<{ transfer: { port: number; authKey: string } }>('POST', '/api/seeds', { id: 'bi', role: 'target', startMySQL: true });
    expect(created.status).toBe(201);
    const { port, authKey } = created.body.transfer;
    expect((await s.call('POST', '/api/seeds', { id: 'bi', role: 'source', targetHost: '127.0.0.1', targetPort: port, authKey, snapshot: source.bigSnapshot })).status).toBe(201);

    const arrived = (min: number) => (v: SeedViewJson) => v.state === 'receiving' && (v.progress?.bytesDone ?? 0) >= min;
    await t.waitFor('bi', arrived(1_000_000), 'a first megabyte');
    s = await crashAndRestart(s, sdir, sconfig);
    await s.waitFor('bi', (v) => v.state === 'sending', 'sending again');
    const before = (await t.seed('bi')).progress!.bytesDone;
    expect(before).toBeLessThan(6_000_000);
    await t.waitFor('bi', arrived(before + 1), 'more bytes after the sender restarted');
    t = await crashAndRestart(t, tdir, tconfig);

    const tv = await t.waitFor('bi', isFinal, 'an end', 45000);
    const sv = await s.waitFor('bi', isFinal, 'an end', 45000);
    expect([tv.status, tv.error]).toEqual(['done', null]);
    expect([sv.status, sv.error]).toEqual(['done', null]);
    const copied = treeDigest(host.datadir);
    delete copied['post-copied'];
    // Exactly the source's files: the transfer's bookkeeping stays under StateDir (orchestrator's progress is the datadir's size).
    expect(copied).toEqual(treeDigest(join(source.bigSnapshot, 'mysql')));
    expect(treeDigest(source.bigSnapshot)).toEqual(bigDigest);
    expect(host.mysqlRunning()).toBe(true);
    assertNothingLeft(t, host);
    assertNothingLeft(s);
  }, 120000);
});

/** The hot-seed methods need real MariaDB servers and their tools (installed by .ci/run). */
const haveHotSeed = haveMariaDB;
const canRun = (method: HotSeedMethod) => haveHotSeed && method.needs.every((p) => which(p) !== undefined);
for (const m of [BACKUP_METHOD, DUMP_METHOD]) {
  if (!canRun(m)) console.log(`SKIPPED: the kill -9 cases of seeds by ${m.method} need mariadb-server-core, mariadb-client and ${m.needs.join(', ')}`);
}

describe('kill -9 in every state of the hot-seed charts, between two agents on real MariaDB servers', () => {
  let rig: HotSeedRig;
  beforeAll(async () => {
    if (!haveHotSeed) return;
    // Not in dirs: the servers live across the cases (afterEach empties dirs).
    rig = await hotSeedRig(tempDir('oa-k9-hot-'));
  }, 180000);
  afterAll(async () => {
    await rig?.close();
    if (rig) rmSync(rig.dir, { recursive: true, force: true });
  }, 120000);

  /** Registers a method's cases: each covers its chart's state, and runs on the shared servers. */
  function hotSeedKillCases(method: HotSeedMethod, cases: HotSeedKillCase[]): void {
    for (const c of cases) covered[c.chart] = [...new Set([...(covered[c.chart] ?? []), c.state])];
    const named = cases.map((c) => ({
      ...c,
      name: `${c.chart} ${c.state}, ${c.hold.program} held on the ${c.hold.side}, ${(c.kill ?? [c.hold.side]).join(' and ')} ${c.graceful ? 'stopped with SIGTERM' : 'killed'}`,
    }));
    (canRun(method) ? test.each(named) : test.skip.each(named))(`$name`, (c) => rig.run(method, c), 600000);
  }

  const done = { status: 'done' } as const;
  const S = seedBackupSourceMachine.id;
  const T = seedBackupTargetMachine.id;
  hotSeedKillCases(BACKUP_METHOD, [
    // The source learns its facts (the client asks the version) while the target waits for them.
    { chart: S, state: 'checking', hold: { side: 'source', program: 'client', match: 'VERSION\\(\\)' }, expect: { source: done, target: done } },
    // mariabackup is started and the target's mbstream waits for its stream: the restart streams anew.
    { chart: S, state: 'streaming', hold: { side: 'source', program: 'backup', match: '--backup' }, expect: { source: done, target: done } },
    // Aborted while mariabackup ignores SIGTERM: the cleanup waits for the reaper's SIGKILL. The restarted
    // cleanup still tells the target, which ends aborted at once and removes what it received.
    {
      chart: S,
      state: 'cleanup',
      hold: { side: 'source', program: 'backup', match: '--backup', stubborn: true },
      abort: 'source',
      expect: {
        source: { status: 'aborted', error: 'seed aborted during streaming' },
        target: { status: 'aborted', error: 'was aborted by its operator during streaming' },
      },
    },
    // The checks run with the source's facts (the sender waits for the answer).
    { chart: T, state: 'checking', hold: { side: 'target', program: 'client', match: 'VERSION\\(\\)' }, expect: { source: done, target: done } },
    { chart: T, state: 'stoppingMySQL', hold: { side: 'target', program: 'stop' }, expect: { source: done, target: done } },
    { chart: T, state: 'purgingDatadir', hold: { side: 'target', program: 'purge' }, expect: { source: done, target: done } },
    // mbstream is started and reads nothing: the source's send is cut, and the backup restarts from the beginning.
    { chart: T, state: 'receiving', hold: { side: 'target', program: 'extract' }, expect: { source: done, target: done } },
    // Both agents at once, mariabackup and mbstream both running: both restart and stream anew.
    { chart: T, state: 'receiving', hold: { side: 'target', program: 'extract' }, kill: ['source', 'target'], expect: { source: done, target: done } },
    // A graceful restart (SIGTERM) of the target mid-stream is no abort: its receiver only closes the connection,
    // the source offers its stream again and the restarted target takes it from the beginning.
    { chart: T, state: 'receiving', hold: { side: 'target', program: 'extract' }, graceful: true, expect: { source: done, target: done } },
    // The prepare did its work but the agent never learned it: a copy is never prepared twice, so the seed
    // fails and removes it.
    {
      chart: T,
      state: 'preparing',
      hold: { side: 'target', program: 'backup', match: '--prepare', mode: 'after' },
      expect: { source: done, target: { status: 'failed', error: 'a backup is never prepared twice' } },
      runs: [{ side: 'target', program: 'backup', match: '--prepare', count: 1 }],
    },
    { chart: T, state: 'fixingOwner', hold: { side: 'target', program: 'chown' }, expect: { source: done, target: done } },
    // The start command started mysqld and has not exited: the restart reaps the command, never mysqld.
    { chart: T, state: 'startingMySQL', hold: { side: 'target', program: 'start', mode: 'after' }, expect: { source: done, target: done } },
    // CHANGE MASTER ran but the agent did not record it: the restart configures replication again.
    { chart: T, state: 'settingUpReplication', hold: { side: 'target', program: 'client', match: 'CHANGE MASTER', mode: 'after' }, expect: { source: done, target: done } },
    { chart: T, state: 'catchingUp', hold: { side: 'target', program: 'client', match: 'SHOW SLAVE STATUS' }, expect: { source: done, target: done } },
    // Aborted while the stop command ignores SIGTERM: the restarted cleanup tells the source, which ends
    // aborted at once; MySQL was never stopped.
    {
      chart: T,
      state: 'cleanup',
      hold: { side: 'target', program: 'stop', stubborn: true },
      abort: 'target',
      expect: {
        source: { status: 'aborted', error: 'was aborted by its operator during stoppingMySQL' },
        target: { status: 'aborted', error: 'seed aborted during stoppingMySQL' },
      },
      targetUntouched: true,
    },
    // The prepare fails; the cleanup empties the unprepared copy with the purge command, which is held.
    {
      chart: T,
      state: 'cleanup',
      hold: { side: 'target', program: 'purge', nth: 2 },
      also: [{ side: 'target', program: 'backup', match: '--prepare', mode: 'fail' }],
      expect: { source: done, target: { status: 'failed', error: 'failed at a hold point' } },
    },
  ]);

  const DS = seedDumpSourceMachine.id;
  const DT = seedDumpTargetMachine.id;
  const reloaded = { source: 'restarts from the beginning', target: 'loaded again from the beginning' };
  hotSeedKillCases(DUMP_METHOD, [
    // The source learns its facts (its schemas among them) while the target waits for them.
    { chart: DS, state: 'checking', hold: { side: 'source', program: 'client', match: 'VERSION\\(\\)' }, expect: { source: done, target: done } },
    // mariadb-dump wrote the whole dump and has not exited: the target loaded it all but never got the
    // stream's end. It drops what it loaded, and the restarted source dumps and streams anew.
    {
      chart: DS,
      state: 'streaming',
      hold: { side: 'source', program: 'dump', match: '--single-transaction', mode: 'after' },
      expect: { source: done, target: done },
      warnings: reloaded,
    },
    // Aborted while mariadb-dump ignores SIGTERM: the restarted cleanup tells the target, which ends aborted
    // at once and drops the schemas it had emptied for the load.
    {
      chart: DS,
      state: 'cleanup',
      hold: { side: 'source', program: 'dump', match: '--single-transaction', stubborn: true },
      abort: 'source',
      expect: {
        source: { status: 'aborted', error: 'seed aborted during streaming' },
        target: { status: 'aborted', error: 'was aborted by its operator during streaming' },
      },
    },
    // The checks run with the source's facts (the sender waits for the answer).
    { chart: DT, state: 'checking', hold: { side: 'target', program: 'client', match: 'VERSION\\(\\)' }, expect: { source: done, target: done } },
    // The drop ran but the agent never learned it: dropping again is a no-op.
    { chart: DT, state: 'droppingSchemas', hold: { side: 'target', program: 'client', match: 'DROP DATABASE', mode: 'after' }, expect: { source: done, target: done } },
    // The loading client loaded the whole dump and has not exited: the restarted target drops it and loads anew.
    {
      chart: DT,
      state: 'loading',
      hold: { side: 'target', program: 'load', mode: 'after' },
      expect: { source: done, target: done },
      warnings: reloaded,
      runs: [{ side: 'source', program: 'dump', match: '--single-transaction', count: 2 }],
    },
    // Both agents at once, the loading client started (the source may not have had GO yet): both restart, and
    // the target drops what it had emptied and loads anew.
    {
      chart: DT,
      state: 'loading',
      hold: { side: 'target', program: 'load' },
      kill: ['source', 'target'],
      expect: { source: done, target: done },
      warnings: { target: reloaded.target },
    },
    // A graceful restart (SIGTERM) of the target while the dump streams into the loading client is no abort: the
    // source offers its dump again and the restarted target loads it anew.
    { chart: DT, state: 'loading', hold: { side: 'target', program: 'load' }, graceful: true, expect: { source: done, target: done } },
    // CHANGE MASTER ran but the agent did not record it: the restart configures replication again.
    { chart: DT, state: 'settingUpReplication', hold: { side: 'target', program: 'client', match: 'CHANGE MASTER', mode: 'after' }, expect: { source: done, target: done } },
    { chart: DT, state: 'catchingUp', hold: { side: 'target', program: 'client', match: 'SHOW SLAVE STATUS' }, expect: { source: done, target: done } },
    // Aborted while the loading client ignores SIGTERM: the restarted cleanup tells the source, which ends
    // aborted at once, and drops the half-loaded schemas.
    {
      chart: DT,
      state: 'cleanup',
      hold: { side: 'target', program: 'load', stubborn: true },
      abort: 'target',
      expect: {
        source: { status: 'aborted', error: 'was aborted by its operator during loading' },
        target: { status: 'aborted', error: 'seed aborted during loading' },
      },
    },
    // The drop fails (the source waits, told "later"); the cleanup drops again with the client, which is held.
    // The restarted cleanup tells the source why the target failed.
    {
      chart: DT,
      state: 'cleanup',
      hold: { side: 'target', program: 'client', match: 'DROP DATABASE', nth: 2 },
      also: [{ side: 'target', program: 'client', match: 'DROP DATABASE', mode: 'fail' }],
      expect: {
        source: { status: 'failed', error: 'failed during droppingSchemas' },
        target: { status: 'failed', error: 'failed at a hold point' },
      },
    },
  ]);
});
