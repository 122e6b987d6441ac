// The target side of a seed by logical dump, as a DBA's runbook: check everything that can be checked before
// anything is touched (with the source's facts from the sender's first message; MySQL here must run, and
// unlike a physical backup any source version will do), drop the user schemas the dump brings, receive the
// dump and load it into the running MySQL and, when asked, make it a replica of the source from the
// position the dump recorded and wait until it has caught up. Failure or ABORT goes through `cleanup` (kill
// our processes; drop what a load left half done so nobody reads it as data).
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
export const MACHINE_ID = 'seed-dump-target';

export interface DumpTargetParams {
  method: 'dump';
  /** End only once the target replicates from the source and has caught up with the dump's end. */
  replicate: boolean;
  /** Where the replica reaches the source's MySQL, when not the sender's address and reported port. */
  sourceMySQL: { host: string; port: number } | null;
  /** Skip the "no other client connections" check only. */
  force: boolean;
  stepByStep: boolean;
  /** Port the stream receiver listens on (chosen at creation so the sender can be told at once). */
  port: number;
}

export type DumpTargetContext = SeedContext<DumpTargetParams>;
export type DumpTargetStepInput = StepInput<DumpTargetParams>;

export const seedDumpTargetMachine = setup({
  types: {
    context: {} as DumpTargetContext,
    events: {} as SeedEvent,
    input: {} as SeedMachineInput<DumpTargetParams>,
  },
  actors: {
    ensureDumpTargetChecked: notProvided<DumpTargetParams>('ensureDumpTargetChecked'),
    ensureSchemasDropped: notProvided<DumpTargetParams>('ensureSchemasDropped'),
    ensureDumpLoaded: notProvided<DumpTargetParams>('ensureDumpLoaded'),
    ensureReplicationSetUp: notProvided<DumpTargetParams>('ensureReplicationSetUp'),
    ensureCaughtUp: notProvided<DumpTargetParams>('ensureCaughtUp'),
    cleanup: notProvidedCleanup<DumpTargetParams>(),
  },
  guards: {
    ...seedGuards,
    replicate: ({ context }) => context.params.replicate,
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
  initial: 'checking',
  states: {
    checking: runbookStep(MACHINE_ID, 'checking', 'ensureDumpTargetChecked', 'droppingSchemas', 'startConnectDeadline'),
    droppingSchemas: runbookStep(MACHINE_ID, 'droppingSchemas', 'ensureSchemasDropped', 'loading'),
    loading: runbookStep(MACHINE_ID, 'loading', 'ensureDumpLoaded', [{ guard: 'replicate', target: 'settingUpReplication' }, { target: 'done' }]),
    settingUpReplication: runbookStep(MACHINE_ID, 'settingUpReplication', 'ensureReplicationSetUp', 'catchingUp'),
    catchingUp: runbookStep(MACHINE_ID, 'catchingUp', 'ensureCaughtUp', 'done'),
    ...seedEndStates(),
  },
});

/** The states a kill -9 test must cover, in runbook order. */
export const DUMP_TARGET_STEP_STATES = ['checking', 'droppingSchemas', 'loading', 'settingUpReplication', 'catchingUp', 'cleanup'] as const;
