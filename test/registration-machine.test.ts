import { describe, expect, test } from '@jest/globals';
import { createActor, fromPromise } from 'xstate';
import { backoffDelay, registrationMachine, type RegistrationOptions } from '../machines/registration.js';
import { defaultConfig } from '../src/config.js';
import { Registration, registrationOptionsFromConfig } from '../src/registration.js';
import { FakeOrchestrator, waitFor } from './support/fake-orchestrator.js';

const fast: RegistrationOptions = { pingIntervalMs: 20, resubmitIntervalMs: 400, backoffInitialMs: 10, backoffMaxMs: 40 };

/** The machine with counting actors; `failSubmits` submits fail before one succeeds. */
function scripted(opts: { failSubmits?: number; failPingAfter?: number } = {}) {
  const log: string[] = [];
  let submits = 0;
  let pings = 0;
  const machine = registrationMachine.provide({
    actors: {
      submitAgent: fromPromise<string>(async () => {
        submits++;
        log.push('submit');
        if (submits <= (opts.failSubmits ?? 0)) throw new Error(`orchestrator down (submit ${submits})`);
        return 'host';
      }),
      ping: fromPromise<void>(async () => {
        pings++;
        log.push('ping');
        if (opts.failPingAfter !== undefined && pings > opts.failPingAfter) throw new Error('ping refused');
      }),
    },
  });
  return { machine, log, counts: () => ({ submits, pings }) };
}

describe('registration machine (in process, short intervals)', () => {
  test('the backoff delay doubles per consecutive failure and stops at the cap', () => {
    const o = { backoffInitialMs: 1000, backoffMaxMs: 60_000 };
    expect([1, 2, 3, 4, 5, 6, 7, 8, 50].map((n) => backoffDelay(n, o))).toEqual([1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]);
  });

  test('the original keys map to the machine in their own units: seconds for pings, minutes for resubmits', () => {
    const options = registrationOptionsFromConfig({ ...defaultConfig(), ContinuousPollSeconds: 1, ResubmitAgentIntervalMinutes: 2 });
    expect(options).toEqual({ pingIntervalMs: 1000, resubmitIntervalMs: 120_000, backoffInitialMs: 1000, backoffMaxMs: 60_000 });
  });

  test('submits, then pings every interval and resubmits when the resubmit deadline passes', async () => {
    const { machine, log } = scripted();
    const actor = createActor(machine, { input: fast }).start();
    try {
      await waitFor('three submits', () => log.filter((c) => c === 'submit').length >= 3);
      expect(log[0]).toBe('submit');
      // Between two submits the machine keeps pinging.
      const second = log.indexOf('submit', 1);
      expect(log.slice(1, second)).toContain('ping');
      const ctx = actor.getSnapshot().context;
      expect(ctx.lastContactAt).toBeDefined();
      expect(ctx.failures).toBe(0);
    } finally {
      actor.stop();
    }
  });

  test('backs off exponentially (capped) while submits fail and registers once orchestrator answers', async () => {
    const { machine } = scripted({ failSubmits: 5 });
    const actor = createActor(machine, { input: { ...fast, pingIntervalMs: 60_000, resubmitIntervalMs: 0 } });
    const delays = new Map<number, number>();
    actor.subscribe((s) => {
      const c = s.context;
      if (s.matches('backoff') && c.nextRetryAt !== undefined && c.lastFailureAt !== undefined) delays.set(c.failures, c.nextRetryAt - c.lastFailureAt);
    });
    actor.start();
    try {
      await waitFor('registered', () => actor.getSnapshot().matches('registered'));
      expect([...delays.entries()]).toEqual([[1, 10], [2, 20], [3, 40], [4, 40], [5, 40]]);
      const ctx = actor.getSnapshot().context;
      expect(ctx.failures).toBe(0);
      expect(ctx.lastError).toContain('orchestrator down (submit 5)');
      expect(ctx.lastContactAt).toBeGreaterThanOrEqual(ctx.lastFailureAt!);
      expect(ctx.nextRetryAt).toBeUndefined();
      expect(ctx.nextPingAt).toBeGreaterThan(ctx.lastContactAt!);
      expect(ctx.nextResubmitAt).toBeUndefined(); // interval 0 never resubmits, as the original
    } finally {
      actor.stop();
    }
  });

  test('a failed ping sends the machine to backoff, and it submits again before pinging on', async () => {
    const { machine, log } = scripted({ failPingAfter: 1 });
    const actor = createActor(machine, { input: { ...fast, resubmitIntervalMs: 0 } }).start();
    try {
      await waitFor('a resubmit after the failed ping', () => log.filter((c) => c === 'submit').length >= 2);
      expect(log.slice(0, 4)).toEqual(['submit', 'ping', 'ping', 'submit']);
      expect(actor.getSnapshot().context.lastError).toContain('ping refused');
    } finally {
      actor.stop();
    }
  });

  test('STOP ends the machine in stopped and aborts the call in flight', async () => {
    let signalSeen: AbortSignal | undefined;
    const machine = registrationMachine.provide({
      actors: {
        submitAgent: fromPromise<string>(({ signal }) => {
          signalSeen = signal;
          return new Promise<string>(() => {}); // orchestrator never answers
        }),
      },
    });
    const actor = createActor(machine, { input: fast }).start();
    await waitFor('submit in flight', () => signalSeen);
    actor.send({ type: 'STOP' });
    const snapshot = actor.getSnapshot();
    expect(snapshot.status).toBe('done');
    expect(snapshot.value).toBe('stopped');
    expect(signalSeen!.aborted).toBe(true);
    expect(snapshot.context.nextRetryAt).toBeUndefined();
  });
});

describe('Registration with the real client and a fake orchestrator (in process)', () => {
  test('resubmits after the resubmit interval given through the options parameter', async () => {
    const orchestrator = await new FakeOrchestrator().start();
    const config = { ...defaultConfig(), ...orchestrator.agentConfig() };
    const registration = new Registration(config, 'tok-in-process', { pingIntervalMs: 50, resubmitIntervalMs: 300 });
    try {
      expect(registration.status().state).toBe('not started');
      registration.start({ hostname: 'in-process-host', httpPort: 4321 });
      await waitFor('two submits', () => orchestrator.submits().length >= 2);
      expect(orchestrator.submits()[1]).toMatchObject({ host: 'in-process-host', port: 4321, token: 'tok-in-process' });
      const status = registration.status();
      expect(status.lastContactAt).not.toBeNull();
      expect(registration.lastContactAt()).toBeGreaterThan(0);
      expect(status.orchestrator).toBe(`http://127.0.0.1:${orchestrator.port}`);
    } finally {
      await registration.stop();
      await orchestrator.close();
    }
    expect(registration.status().state).toBe('stopped');
  });
});
