// The source side of a seed by hot backup: check that the backup can run (MySQL up, credentials file,
// backup program) and learn the facts the target checks, then stream a hot backup of the running server to
// the target (no copy lands on this disk). A cut stream restarts the backup from its beginning. Failure or
// ABORT goes through `cleanup` (kill the backup program's process group).
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
export const MACHINE_ID = 'seed-backup-source';

export interface BackupSourceParams {
  method: 'backup';
  targetHost: string;
  targetPort: number;
  stepByStep: boolean;
  /** Compression of the stream asked for this seed (POST /api/seeds "compression"); else SeedTransferCompression. */
  compression?: 'off' | 'fast' | 'strong' | 'auto';
}

export type BackupSourceContext = SeedContext<BackupSourceParams>;
export type BackupSourceStepInput = StepInput<BackupSourceParams>;

export const seedBackupSourceMachine = setup({
  types: {
    context: {} as BackupSourceContext,
    events: {} as SeedEvent,
    input: {} as SeedMachineInput<BackupSourceParams>,
  },
  actors: {
    ensureSourceChecked: notProvided<BackupSourceParams>('ensureSourceChecked'),
    ensureBackupStreamed: notProvided<BackupSourceParams>('ensureBackupStreamed'),
    cleanup: notProvidedCleanup<BackupSourceParams>(),
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
    checking: runbookStep(MACHINE_ID, 'checking', 'ensureSourceChecked', 'streaming'),
    streaming: runbookStep(MACHINE_ID, 'streaming', 'ensureBackupStreamed', 'done', 'startConnectDeadline'),
    ...seedEndStates(),
  },
});

export const BACKUP_SOURCE_STEP_STATES = ['checking', 'streaming', 'cleanup'] as const;
