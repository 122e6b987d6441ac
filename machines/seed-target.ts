// The target side of a seed, as a DBA's runbook: stop MySQL, purge the datadir, receive the copy, run the
// post-copy command, start MySQL (when asked). Any failure or ABORT goes through `cleanup`, whose actor
// always runs (kill our process groups, stop the receiver, remove a partial copy so nobody starts MySQL on
// it) before the seed ends `failed` or `aborted`. Every step state can first wait in `paused` for NEXT
// (step-by-step mode). Steps are ensure steps: a restored agent runs the current one again.
import { assign, setup } from 'xstate';
import {
  initialSeedContext,
  notProvided,
  notProvidedCleanup,
  runbookStep,
  seedEndStates,
  seedGuards,
  seedUpdates,
  type SeedContext,
  type SeedEvent,
  type SeedMachineInput,
  type StepInput,
} from './seed-common.js';

/** Stored with every persisted seed; bump when states or context change incompatibly. */
export const MACHINE_VERSION = 1;
export const MACHINE_ID = 'seed-target';

export interface TargetParams {
  /** Start MySQL after the post-copy step. */
  startMySQL: boolean;
  /** Wait for NEXT before each step. */
  stepByStep: boolean;
  /** Original route: orchestrator stops MySQL, purges, runs post-copy and starts MySQL itself. */
  receiveOnly: boolean;
  /** Port the receiver listens on (chosen at creation so the sender can be told at once). */
  port: number;
}

export type TargetContext = SeedContext<TargetParams>;
export type TargetStepInput = StepInput<TargetParams>;

export type TargetMachineInput = SeedMachineInput<TargetParams>;

export const seedTargetMachine = setup({
  types: {
    context: {} as TargetContext,
    events: {} as SeedEvent,
    input: {} as TargetMachineInput,
  },
  actors: {
    ensureMySQLStopped: notProvided<TargetParams>('ensureMySQLStopped'),
    ensureDatadirPurged: notProvided<TargetParams>('ensureDatadirPurged'),
    ensureReceived: notProvided<TargetParams>('ensureReceived'),
    ensurePostCopied: notProvided<TargetParams>('ensurePostCopied'),
    ensureMySQLStarted: notProvided<TargetParams>('ensureMySQLStarted'),
    cleanup: notProvidedCleanup<TargetParams>(),
  },
  guards: {
    ...seedGuards,
    receiveOnly: ({ context }) => context.params.receiveOnly,
    startMySQL: ({ context }) => context.params.startMySQL,
  },
  actions: {
    recordFacts: assign(seedUpdates.recordFacts),
    recordFailure: assign(seedUpdates.recordFailure),
    recordAbort: assign(seedUpdates.recordAbort),
    recordCleanupFailure: assign(seedUpdates.recordCleanupFailure),
    startConnectDeadline: assign(seedUpdates.startConnectDeadline),
  },
}).createMachine({
  id: MACHINE_ID,
  context: ({ input }) => initialSeedContext(input),
  initial: 'stoppingMySQL',
  states: {
    stoppingMySQL: runbookStep(MACHINE_ID, 'stoppingMySQL', 'ensureMySQLStopped', 'purgingDatadir'),
    purgingDatadir: runbookStep(MACHINE_ID, 'purgingDatadir', 'ensureDatadirPurged', 'receiving'),
    receiving: runbookStep(
      MACHINE_ID,
      'receiving',
      'ensureReceived',
      [{ guard: 'receiveOnly', target: 'done' }, { target: 'postCopy' }],
      'startConnectDeadline',
    ),
    postCopy: runbookStep(MACHINE_ID, 'postCopy', 'ensurePostCopied', [{ guard: 'startMySQL', target: 'startingMySQL' }, { target: 'done' }]),
    startingMySQL: runbookStep(MACHINE_ID, 'startingMySQL', 'ensureMySQLStarted', 'done'),
    ...seedEndStates(),
  },
});

/** The states a kill -9 test must cover, in runbook order. */
export const TARGET_STEP_STATES = ['stoppingMySQL', 'purgingDatadir', 'receiving', 'postCopy', 'startingMySQL', 'cleanup'] as const;
