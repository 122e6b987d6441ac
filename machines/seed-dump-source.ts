// The source side of a seed by logical dump: check that the dump can run (MySQL up, credentials file, dump
// program) and learn the facts the target checks (among them the user schemas the dump will bring), then
// stream a consistent dump of the running server to the target (nothing lands on this disk). A cut stream
// restarts the dump from its beginning. Failure or ABORT goes through `cleanup` (kill the dump program).
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
export const MACHINE_ID = 'seed-dump-source';

export interface DumpSourceParams {
  method: 'dump';
  targetHost: string;
  targetPort: number;
  stepByStep: boolean;
  /** Compression of the stream asked for this seed (POST /api/seeds "compression"); else SeedTransferCompression. */
  compression?: 'off' | 'fast' | 'strong' | 'auto';
}

export type DumpSourceContext = SeedContext<DumpSourceParams>;
export type DumpSourceStepInput = StepInput<DumpSourceParams>;

export const seedDumpSourceMachine = setup({
  types: {
    context: {} as DumpSourceContext,
    events: {} as SeedEvent,
    input: {} as SeedMachineInput<DumpSourceParams>,
  },
  actors: {
    ensureDumpSourceChecked: notProvided<DumpSourceParams>('ensureDumpSourceChecked'),
    ensureDumpStreamed: notProvided<DumpSourceParams>('ensureDumpStreamed'),
    cleanup: notProvidedCleanup<DumpSourceParams>(),
  },
  guards: {
    ...seedGuards,
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
    checking: runbookStep(MACHINE_ID, 'checking', 'ensureDumpSourceChecked', 'streaming'),
    streaming: runbookStep(MACHINE_ID, 'streaming', 'ensureDumpStreamed', 'done', 'startConnectDeadline'),
    ...seedEndStates(),
  },
});

export const DUMP_SOURCE_STEP_STATES = ['checking', 'streaming', 'cleanup'] as const;
