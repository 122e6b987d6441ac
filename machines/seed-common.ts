// What every seed chart shares: the step actor contract, the context, the small pure actions and how a chart ends.
// Effects live in src/seeds/steps (registered by name); the charts only say what happens in which order.
import { fromPromise } from 'xstate';

/** The error a seed shows: what was tried, what happened, what to do. */
export interface SeedError {
  code: string;
  message: string;
  hint: string | null;
  /** The step (top-level state) that failed. */
  step: string | null;
  /** The other half of the seed sent this reason (it knows already; nothing to tell it back). */
  fromPeer?: true;
}

/** Timestamps (ms since epoch), never timers: a restored step recomputes what is left from them. */
export interface SeedDeadlines {
  /** The whole seed must be over by then. */
  seed: number;
  /** Set when the transfer step first starts: the other side must connect by then. */
  connect: number | null;
}

/** Facts steps learn and later steps need; persisted with the machine. */
export interface SeedFacts {
  datadir?: string;
  sourceDir?: string;
  postCopied?: boolean;
  mountedBySeed?: boolean;
  transferPort?: number;
  /** Backup seeds: the source's MySQL as its agent reported it (address: where its sender connected from). */
  source?: { mysqlRunning: boolean; version: string; dataBytes: number; logBin: boolean; gtidMode: boolean; mysqlHost: string; mysqlPort: number; address?: string; schemas?: string[] };
  /** Backup seeds, target: owner of the datadir before the seed, given back to the copy. */
  datadirOwner?: { uid: number; gid: number };
  /** Where the copy is consistent (replication starts there), from the backup's own record. */
  backupPosition?: BinlogCoordinates | null;
  /** The source's binary log position when the copy ended: a new replica has caught up once it applied that far. */
  positionAtEnd?: BinlogCoordinates | null;
}

export interface BinlogCoordinates {
  file: string;
  position: number;
  gtid: string;
}

export interface SeedContext<P> {
  seedId: string;
  params: P;
  deadlines: SeedDeadlines;
  facts: SeedFacts;
  error: SeedError | null;
  /** Why we are in cleanup, so it ends in the right final state. */
  endReason: 'failed' | 'aborted' | null;
  /** Connect timeout for the transfer step (ms); from config at creation. */
  connectTimeoutMs: number;
}

/** What every step actor receives (JSON: it is persisted with the invoked actor's snapshot). */
export interface StepInput<P> {
  seedId: string;
  step: string;
  params: P;
  deadlines: SeedDeadlines;
  facts: SeedFacts;
}

/** What the cleanup actor receives: also why it runs and where the seed was. */
export interface CleanupInput<P> extends StepInput<P> {
  reason: 'failed' | 'aborted';
  failedStep: string | null;
  /** Why the seed ends (absent in cleanups persisted before it was passed): told to the peer seed. */
  error?: SeedError | null;
}

/** ABORT from the other half's agent carries its reason (fromPeer): this half then says it was aborted by the peer. */
export type SeedEvent = { type: 'NEXT' } | { type: 'ABORT'; reason?: string; fromPeer?: boolean };

export function stepInput<P>(context: SeedContext<P>, step: string): StepInput<P> {
  return { seedId: context.seedId, step, params: context.params, deadlines: context.deadlines, facts: context.facts };
}

export function cleanupInput<P>(context: SeedContext<P>): CleanupInput<P> {
  return { ...stepInput(context, 'cleanup'), reason: context.endReason ?? 'failed', failedStep: context.error?.step ?? null, error: context.error };
}

/** Any thrown value as a SeedError (AgentError-like values keep their code and hint). */
export function toSeedError(err: unknown, step: string | null): SeedError {
  if (err !== null && typeof err === 'object') {
    const e = err as { code?: unknown; message?: unknown; hint?: unknown; details?: { fromPeer?: unknown } };
    return {
      code: typeof e.code === 'string' ? e.code : 'internal',
      message: typeof e.message === 'string' ? e.message : String(err),
      hint: typeof e.hint === 'string' ? e.hint : null,
      step,
      ...(e.details?.fromPeer === true ? { fromPeer: true as const } : {}),
    };
  }
  return { code: 'internal', message: String(err), hint: null, step };
}

/** An error the other half of the seed sent (details.fromPeer) saying it was aborted. */
export function isPeerAbort(err: unknown): boolean {
  if (err === null || typeof err !== 'object') return false;
  const e = err as { code?: unknown; details?: { fromPeer?: unknown } };
  return e.code === 'aborted' && e.details?.fromPeer === true;
}

/** Top-level state name of a snapshot value ("receiving" for {receiving: "running"}). */
export function topState(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object') return Object.keys(value)[0] ?? '';
  return '';
}

/** Sub-state of a step ("paused", "running") or null. */
export function subState(value: unknown): string | null {
  if (value !== null && typeof value === 'object') {
    const inner = Object.values(value)[0];
    return typeof inner === 'string' ? inner : null;
  }
  return null;
}


/**
 * One runbook step as a state: in step-by-step mode it first waits for NEXT, then runs its ensure-step
 * actor; done goes on to `next` (recording the facts the step learned), an error or ABORT goes through
 * cleanup. Both seed charts are a list of these, so each reads as the procedure it runs.
 */
export function runbookStep<const A extends string, const G extends string = never>(
  machineId: string,
  step: string,
  actor: A,
  next: string | ReadonlyArray<{ guard?: G; target: string }>,
  entry?: 'startConnectDeadline',
) {
  const to = (target: string) => `#${machineId}.${target}`;
  const onDone =
    typeof next === 'string'
      ? { target: to(next), actions: 'recordFacts' as const }
      : next.map((n) => ({ ...(n.guard ? { guard: n.guard } : {}), target: to(n.target), actions: 'recordFacts' as const }));
  return {
    initial: 'gate' as const,
    on: { ABORT: { target: to('cleanup'), actions: { type: 'recordAbort' as const, params: { step } } } },
    states: {
      gate: { always: [{ guard: 'stepByStep' as const, target: 'paused' }, { target: 'running' }] },
      paused: { on: { NEXT: 'running' } },
      running: {
        ...(entry ? { entry } : {}),
        invoke: {
          src: actor,
          input: <P>({ context }: { context: SeedContext<P> }) => stepInput(context, step),
          onDone,
          onError: { target: to('cleanup'), actions: { type: 'recordFailure' as const, params: { step } } },
        },
      },
    },
  };
}

type Ctx = { context: SeedContext<unknown>; event: unknown };
/** Action params are set by runbookStep as { step }. */
const stepOf = (params: unknown): string => (params as { step: string }).step;

/**
 * The context updates both charts make, as assign() mappers: remember what a step learned, why the seed
 * is ending, and when the other side must have connected.
 */
export const seedUpdates = {
  recordFacts: {
    facts: ({ context, event }: Ctx): SeedFacts => ({ ...context.facts, ...((event as { output?: SeedFacts }).output ?? {}) }),
  },
  recordFailure: {
    error: ({ event }: Ctx, params: unknown): SeedError => toSeedError((event as { error?: unknown }).error, stepOf(params)),
    // The peer seed was aborted by its operator and said so: this half ends aborted too, not failed.
    endReason: ({ event }: Ctx): 'failed' | 'aborted' => (isPeerAbort((event as { error?: unknown }).error) ? 'aborted' : 'failed'),
  },
  recordAbort: {
    error: ({ event }: Ctx, params: unknown): SeedError => {
      const e = event as { reason?: unknown; fromPeer?: unknown };
      if (e.fromPeer === true && typeof e.reason === 'string') {
        return { code: 'aborted', message: `seed aborted by its peer during ${stepOf(params)}: ${e.reason}`, hint: null, step: stepOf(params), fromPeer: true };
      }
      return { code: 'aborted', message: `seed aborted during ${stepOf(params)}`, hint: null, step: stepOf(params) };
    },
    endReason: () => 'aborted' as const,
  },
  recordCleanupFailure: {
    error: ({ context, event }: Ctx): SeedError => {
      const e = toSeedError((event as { error?: unknown }).error, 'cleanup');
      const first = context.error ?? { code: 'aborted', message: 'seed aborted', hint: null, step: null };
      return { ...first, message: `${first.message}; cleanup also failed: ${e.message}` };
    },
  },
  startConnectDeadline: {
    deadlines: ({ context }: Ctx): SeedDeadlines =>
      context.deadlines.connect === null ? { ...context.deadlines, connect: Date.now() + context.connectTimeoutMs } : context.deadlines,
  },
};

/** What creating a seed actor takes, for either chart. */
export interface SeedMachineInput<P> {
  seedId: string;
  params: P;
  seedDeadline: number;
  connectTimeoutMs: number;
}

/** A chart's starting context: deadlines as timestamps, nothing learned, no error. */
export function initialSeedContext<P>(input: SeedMachineInput<P>): SeedContext<P> {
  return {
    seedId: input.seedId,
    params: input.params,
    deadlines: { seed: input.seedDeadline, connect: null },
    facts: {},
    error: null,
    endReason: null,
    connectTimeoutMs: input.connectTimeoutMs,
  };
}

/** A step slot in a chart; the seed manager provides the real step with machine.provide. */
export function notProvided<P>(name: string) {
  return fromPromise<SeedFacts, StepInput<P>>(async () => {
    throw new Error(`step ${name} has no implementation (provide it with machine.provide)`);
  });
}

/** The cleanup slot in a chart; the seed manager provides the real cleanup with machine.provide. */
export function notProvidedCleanup<P>() {
  return fromPromise<SeedFacts, CleanupInput<P>>(async () => {
    throw new Error('cleanup has no implementation (provide it with machine.provide)');
  });
}

/** The guards every chart has: wait for NEXT before each step; cleanup ends in `aborted`, not `failed`. */
export const seedGuards = {
  stepByStep: ({ context }: { context: SeedContext<{ stepByStep: boolean }> }) => context.params.stepByStep,
  aborting: ({ context }: { context: SeedContext<unknown> }) => context.endReason === 'aborted',
};

/**
 * How every chart ends: a failure or ABORT goes to `cleanup`, whose actor always runs (and may fail too,
 * which is recorded), then the seed ends `aborted` or `failed`; a seed that got through its steps is `done`.
 */
export function seedEndStates() {
  return {
    cleanup: {
      invoke: {
        src: 'cleanup' as const,
        input: <P>({ context }: { context: SeedContext<P> }) => cleanupInput(context),
        onDone: [{ guard: 'aborting' as const, target: 'aborted' }, { target: 'failed' }],
        onError: [
          { guard: 'aborting' as const, target: 'aborted', actions: 'recordCleanupFailure' as const },
          { target: 'failed', actions: 'recordCleanupFailure' as const },
        ],
      },
    },
    done: { type: 'final' as const },
    failed: { type: 'final' as const },
    aborted: { type: 'final' as const },
  };
}
