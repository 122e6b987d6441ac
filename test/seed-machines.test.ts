// The two seed charts on their own, with recording fakes for the steps (machine.provide): order, skips,
// failure and abort through cleanup, step-by-step mode, and that a restored snapshot runs its step again.
import { describe, expect, test } from '@jest/globals';
import { createActor, fromPromise, waitFor, type AnyActorLogic, type AnyActorRef } from 'xstate';
import { seedTargetMachine, type TargetParams } from '../machines/seed-target.js';
import { seedSourceMachine, type SourceParams } from '../machines/seed-source.js';
import type { CleanupInput, SeedFacts, StepInput } from '../machines/seed-common.js';
import { topState } from '../machines/seed-common.js';

type Behaviour = 'ok' | 'fail' | 'hang';

function recorder(behaviours: Record<string, Behaviour> = {}) {
  const calls: string[] = [];
  const cleanups: CleanupInput<unknown>[] = [];
  const aborted: string[] = [];
  const step = <P>(name: string, output: SeedFacts = {}) =>
    fromPromise<SeedFacts, StepInput<P>>(async ({ signal }) => {
      calls.push(name);
      const b = behaviours[name] ?? 'ok';
      if (b === 'fail') throw Object.assign(new Error(`${name} broke`), { code: 'command_failed', hint: 'fix it' });
      if (b === 'hang') {
        await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
        aborted.push(name);
        throw new Error('aborted');
      }
      return output;
    });
  const cleanup = <P>() => fromPromise<SeedFacts, CleanupInput<P>>(async ({ input }) => {
    calls.push('cleanup');
    cleanups.push(input as CleanupInput<unknown>);
    if (behaviours.cleanup === 'fail') throw new Error('umount failed');
    return {};
  });
  return { calls, cleanups, aborted, step, cleanup };
}

function target(params: Partial<TargetParams>, behaviours: Record<string, Behaviour> = {}) {
  const r = recorder(behaviours);
  const machine = seedTargetMachine.provide({
    actors: {
      ensureMySQLStopped: r.step('ensureMySQLStopped', { datadir: '/data' }),
      ensureDatadirPurged: r.step('ensureDatadirPurged'),
      ensureReceived: r.step('ensureReceived'),
      ensurePostCopied: r.step('ensurePostCopied', { postCopied: true }),
      ensureMySQLStarted: r.step('ensureMySQLStarted'),
      cleanup: r.cleanup(),
    },
  });
  const actor = createActor(machine, {
    input: {
      seedId: 's1',
      params: { startMySQL: false, stepByStep: false, receiveOnly: false, port: 21234, ...params },
      seedDeadline: Date.now() + 3600_000,
      connectTimeoutMs: 60_000,
    },
  });
  return { ...r, machine, actor };
}

function source(params: Partial<SourceParams>, behaviours: Record<string, Behaviour> = {}) {
  const r = recorder(behaviours);
  const machine = seedSourceMachine.provide({
    actors: {
      ensureSnapshotMounted: r.step('ensureSnapshotMounted', { mountedBySeed: true, sourceDir: '/mnt/snap/mysql' }),
      ensureSent: r.step('ensureSent'),
      ensureUnmounted: r.step('ensureUnmounted'),
      cleanup: r.cleanup(),
    },
  });
  const actor = createActor(machine, {
    input: {
      seedId: 's2',
      params: { targetHost: 'db2', targetPort: 21234, snapshot: 'snap1', alreadyMounted: false, sourceDir: '', stepByStep: false, ...params },
      seedDeadline: Date.now() + 3600_000,
      connectTimeoutMs: 60_000,
    },
  });
  return { ...r, machine, actor };
}

async function finish(actor: AnyActorRef) {
  return waitFor(actor, (s) => s.status === 'done', { timeout: 5000 });
}

async function reach(actor: AnyActorRef, state: string, sub = 'running') {
  return waitFor(actor, (s) => topState(s.value) === state && JSON.stringify(s.value).includes(sub), { timeout: 5000 });
}

describe('target seed chart', () => {
  test('runs the runbook in order and starts MySQL only when asked', async () => {
    const withStart = target({ startMySQL: true });
    withStart.actor.start();
    const end = await finish(withStart.actor);
    expect(end.value).toBe('done');
    expect(withStart.calls).toEqual(['ensureMySQLStopped', 'ensureDatadirPurged', 'ensureReceived', 'ensurePostCopied', 'ensureMySQLStarted']);
    expect(end.context.facts).toEqual({ datadir: '/data', postCopied: true });

    const without = target({ startMySQL: false });
    without.actor.start();
    expect((await finish(without.actor)).value).toBe('done');
    expect(without.calls).not.toContain('ensureMySQLStarted');
  });

  test('the original receive route stops after receiving, leaving post-copy and start to orchestrator', async () => {
    const t = target({ receiveOnly: true, startMySQL: true });
    t.actor.start();
    expect((await finish(t.actor)).value).toBe('done');
    expect(t.calls).toEqual(['ensureMySQLStopped', 'ensureDatadirPurged', 'ensureReceived']);
  });

  test.each(['ensureMySQLStopped', 'ensureDatadirPurged', 'ensureReceived', 'ensurePostCopied', 'ensureMySQLStarted'])(
    'a failure in %s runs cleanup and ends failed with the step and the error',
    async (failing) => {
      const t = target({ startMySQL: true }, { [failing]: 'fail' });
      t.actor.start();
      const end = await finish(t.actor);
      expect(end.value).toBe('failed');
      expect(t.calls.at(-1)).toBe('cleanup');
      expect(t.calls).toHaveLength(t.calls.indexOf(failing) + 2);
      expect(end.context.error).toMatchObject({ code: 'command_failed', message: `${failing} broke`, hint: 'fix it' });
      expect(t.cleanups[0]).toMatchObject({ reason: 'failed', failedStep: end.context.error!.step });
    },
  );

  test.each(['stoppingMySQL', 'purgingDatadir', 'receiving', 'postCopy', 'startingMySQL'])(
    'ABORT during %s cancels the running step, runs cleanup and ends aborted',
    async (state) => {
      const stepOf: Record<string, string> = {
        stoppingMySQL: 'ensureMySQLStopped',
        purgingDatadir: 'ensureDatadirPurged',
        receiving: 'ensureReceived',
        postCopy: 'ensurePostCopied',
        startingMySQL: 'ensureMySQLStarted',
      };
      const t = target({ startMySQL: true }, { [stepOf[state]]: 'hang' });
      t.actor.start();
      await reach(t.actor, state);
      expect(t.actor.getSnapshot().can({ type: 'ABORT' })).toBe(true);
      t.actor.send({ type: 'ABORT' });
      const end = await finish(t.actor);
      expect(end.value).toBe('aborted');
      expect(t.aborted).toEqual([stepOf[state]]);
      expect(t.cleanups).toEqual([expect.objectContaining({ reason: 'aborted', failedStep: state })]);
    },
  );

  test('a failing cleanup still ends the seed, and the error tells both stories', async () => {
    const t = target({}, { ensureReceived: 'fail', cleanup: 'fail' });
    t.actor.start();
    const end = await finish(t.actor);
    expect(end.value).toBe('failed');
    expect(end.context.error!.message).toBe('ensureReceived broke; cleanup also failed: umount failed');
  });

  test('step-by-step mode waits in paused before each step and accepts only NEXT and ABORT there', async () => {
    const t = target({ stepByStep: true, startMySQL: true });
    t.actor.start();
    const order = ['stoppingMySQL', 'purgingDatadir', 'receiving', 'postCopy', 'startingMySQL'];
    for (const [i, state] of order.entries()) {
      const snap = await reach(t.actor, state, 'paused');
      expect(t.calls).toHaveLength(i);
      expect(snap.can({ type: 'NEXT' })).toBe(true);
      t.actor.send({ type: 'NEXT' });
    }
    expect((await finish(t.actor)).value).toBe('done');
    expect(t.calls).toHaveLength(5);
  });

  test('NEXT is not accepted while a step runs nor after the seed ended', async () => {
    const t = target({}, { ensureReceived: 'hang' });
    t.actor.start();
    const running = await reach(t.actor, 'receiving');
    expect(running.can({ type: 'NEXT' })).toBe(false);
    t.actor.send({ type: 'ABORT' });
    const end = await finish(t.actor);
    expect(end.can({ type: 'ABORT' })).toBe(false);
    expect(end.can({ type: 'NEXT' })).toBe(false);
  });

  test('the receive step starts a connect deadline once, kept in context rather than a timer', async () => {
    const t = target({}, { ensureReceived: 'hang' });
    const before = Date.now();
    t.actor.start();
    const snap = await reach(t.actor, 'receiving');
    expect(snap.context.deadlines.connect).toBeGreaterThanOrEqual(before + 60_000);
    t.actor.send({ type: 'ABORT' });
    await finish(t.actor);
  });

  test('a restored snapshot runs its invoked step again and goes on from there', async () => {
    const first = target({ startMySQL: true }, { ensureReceived: 'hang' });
    first.actor.start();
    await reach(first.actor, 'receiving');
    const persisted = JSON.parse(JSON.stringify(first.actor.getPersistedSnapshot()));
    first.actor.stop();

    const second = target({ startMySQL: true });
    const restored = createActor(second.machine as AnyActorLogic, { snapshot: persisted });
    restored.start();
    const end = await finish(restored);
    expect(end.value).toBe('done');
    expect(second.calls).toEqual(['ensureReceived', 'ensurePostCopied', 'ensureMySQLStarted']);
    expect(end.context.facts.datadir).toBe('/data');
  });
});

describe('source seed chart', () => {
  test('mounts, sends and unmounts the snapshot', async () => {
    const s = source({});
    s.actor.start();
    const end = await finish(s.actor);
    expect(end.value).toBe('done');
    expect(s.calls).toEqual(['ensureSnapshotMounted', 'ensureSent', 'ensureUnmounted']);
    expect(end.context.facts).toEqual({ mountedBySeed: true, sourceDir: '/mnt/snap/mysql' });
  });

  test('the original send route neither mounts nor unmounts: orchestrator did and will', async () => {
    const s = source({ alreadyMounted: true, snapshot: '' });
    s.actor.start();
    expect((await finish(s.actor)).value).toBe('done');
    expect(s.calls).toEqual(['ensureSent']);
  });

  test.each(['ensureSnapshotMounted', 'ensureSent', 'ensureUnmounted'])('a failure in %s runs cleanup and ends failed', async (failing) => {
    const s = source({}, { [failing]: 'fail' });
    s.actor.start();
    const end = await finish(s.actor);
    expect(end.value).toBe('failed');
    expect(s.calls.at(-1)).toBe('cleanup');
    expect(end.context.error!.message).toBe(`${failing} broke`);
  });

  test.each(['mountingSnapshot', 'sending', 'unmounting'])('ABORT during %s runs cleanup and ends aborted', async (state) => {
    const stepOf: Record<string, string> = { mountingSnapshot: 'ensureSnapshotMounted', sending: 'ensureSent', unmounting: 'ensureUnmounted' };
    const s = source({}, { [stepOf[state]]: 'hang' });
    s.actor.start();
    await reach(s.actor, state);
    s.actor.send({ type: 'ABORT' });
    const end = await finish(s.actor);
    expect(end.value).toBe('aborted');
    expect(s.cleanups).toEqual([expect.objectContaining({ reason: 'aborted', failedStep: state })]);
  });
});
