// Registration with orchestrator, as a runbook:
//   submitting -> registered (wait; ping every ContinuousPollSeconds; resubmit every ResubmitAgentIntervalMinutes)
//   any failure -> backoff (1s, 2s, 4s ... capped) -> submitting again, so a returning orchestrator re-learns us.
//   STOP from anywhere -> stopped.
// Deadlines live in context as timestamps; every `after` delay is derived from them on entry, so a state
// re-entered (or a timer clamped to setTimeout's limit) never loses or shifts a deadline.
// The work (HTTP calls) is in src/registration.ts, given by name; tests swap it with machine.provide().
import { assign, fromPromise, setup } from 'xstate';
import { MAX_TIMER_MS } from '../src/timers.js';

export interface RegistrationOptions {
  /** ContinuousPollSeconds in ms; 0 never pings (as the original's zero ticker never fired). */
  pingIntervalMs: number;
  /** ResubmitAgentIntervalMinutes in ms; 0 never resubmits (as the original). */
  resubmitIntervalMs: number;
  /** First retry delay after a failure; doubles per consecutive failure. */
  backoffInitialMs: number;
  /** Cap of the retry delay. */
  backoffMaxMs: number;
}

export interface RegistrationContext {
  options: RegistrationOptions;
  /** ms since epoch of the last call orchestrator answered (submit or ping). */
  lastContactAt?: number;
  lastSubmittedAt?: number;
  lastError?: string;
  lastFailureAt?: number;
  /** Consecutive failures since the last success. */
  failures: number;
  nextPingAt?: number;
  nextResubmitAt?: number;
  nextRetryAt?: number;
}

export type RegistrationEvent = { type: 'STOP' };

/** setTimeout fires at once for delays above 2^31-1 ms; longer waits are done in several timers. */
const maxTimerMs = MAX_TIMER_MS;

function delayUntil(deadline: number | undefined): number {
  if (deadline === undefined) return maxTimerMs;
  return Math.min(Math.max(0, deadline - Date.now()), maxTimerMs);
}

function due(deadline: number | undefined): boolean {
  return deadline !== undefined && Date.now() >= deadline;
}

/** Retry delay after `failures` consecutive failures (1 -> initial, doubling, capped). */
export function backoffDelay(failures: number, options: Pick<RegistrationOptions, 'backoffInitialMs' | 'backoffMaxMs'>): number {
  const exponent = Math.min(Math.max(failures - 1, 0), 30);
  return Math.min(options.backoffInitialMs * 2 ** exponent, options.backoffMaxMs);
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const hint = (error as { hint?: unknown }).hint;
    return typeof hint === 'string' && hint ? `${error.message} (${hint})` : error.message;
  }
  return String(error);
}

function notProvided<T>(name: string) {
  return fromPromise<T>(async () => {
    throw new Error(`registration actor ${name} is not provided; see src/registration.ts`);
  });
}

export const registrationMachine = setup({
  types: {
    context: {} as RegistrationContext,
    events: {} as RegistrationEvent,
    input: {} as RegistrationOptions,
  },
  actors: {
    /** GET {AgentsServer}{AgentsServerPort}/api/submit-agent/:hostname/:port/:token */
    submitAgent: notProvided<string>('submitAgent'),
    /** GET {AgentsServer}{AgentsServerPort}/api/agent-ping */
    ping: notProvided<void>('ping'),
  },
  actions: {
    recordSubmitted: assign(({ context }) => {
      const now = Date.now();
      const { pingIntervalMs, resubmitIntervalMs } = context.options;
      return {
        lastContactAt: now,
        lastSubmittedAt: now,
        failures: 0,
        nextRetryAt: undefined,
        nextPingAt: pingIntervalMs > 0 ? now + pingIntervalMs : undefined,
        nextResubmitAt: resubmitIntervalMs > 0 ? now + resubmitIntervalMs : undefined,
      };
    }),
    recordPinged: assign(({ context }) => {
      const now = Date.now();
      return { lastContactAt: now, failures: 0, nextPingAt: now + context.options.pingIntervalMs };
    }),
    recordFailure: assign(({ context }, params: { error: unknown }) => {
      const now = Date.now();
      const failures = context.failures + 1;
      return {
        failures,
        lastError: describe(params.error),
        lastFailureAt: now,
        nextRetryAt: now + backoffDelay(failures, context.options),
        nextPingAt: undefined,
        nextResubmitAt: undefined,
      };
    }),
    clearDeadlines: assign({ nextPingAt: undefined, nextResubmitAt: undefined, nextRetryAt: undefined }),
  },
  guards: {
    pingDue: ({ context }) => due(context.nextPingAt),
    resubmitDue: ({ context }) => due(context.nextResubmitAt),
    retryDue: ({ context }) => due(context.nextRetryAt),
  },
  delays: {
    untilNextCall: ({ context }) => Math.min(delayUntil(context.nextPingAt), delayUntil(context.nextResubmitAt)),
    untilRetry: ({ context }) => delayUntil(context.nextRetryAt),
  },
}).createMachine({
  id: 'registration',
  context: ({ input }) => ({ options: input, failures: 0 }),
  initial: 'submitting',
  on: {
    STOP: { target: '.stopped' },
  },
  states: {
    submitting: {
      invoke: {
        src: 'submitAgent',
        onDone: { target: 'registered', actions: 'recordSubmitted' },
        onError: { target: 'backoff', actions: { type: 'recordFailure', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    registered: {
      initial: 'waiting',
      states: {
        waiting: {
          // One timer to the nearest deadline; resubmit wins when both are due (a submit also counts as contact).
          after: {
            untilNextCall: [
              { guard: 'resubmitDue', target: '#registration.submitting' },
              { guard: 'pingDue', target: 'pinging' },
              { target: 'waiting', reenter: true },
            ],
          },
        },
        pinging: {
          invoke: {
            src: 'ping',
            onDone: { target: 'waiting', actions: 'recordPinged' },
            onError: {
              target: '#registration.backoff',
              actions: { type: 'recordFailure', params: ({ event }) => ({ error: event.error }) },
            },
          },
        },
      },
    },
    backoff: {
      after: {
        untilRetry: [{ guard: 'retryDue', target: 'submitting' }, { target: 'backoff', reenter: true }],
      },
    },
    stopped: {
      type: 'final',
      entry: 'clearDeadlines',
    },
  },
});

export default registrationMachine;
