// The source side of a seed by hot backup: check that the backup can run (MySQL up, credentials file,
// backup program) and learn the facts the target checks, then stream a hot backup of the running server to
// the target (no copy lands on this disk). A cut stream restarts the backup from its beginning. Failure or
// ABORT goes through `cleanup` (kill the backup program's process group).
import { assign, fromPromise, setup } from 'xstate';
import {
  cleanupInput,
  initialSeedContext,
  notProvided,
  runbookStep,
  seedUpdates,
  type CleanupInput,
  type SeedContext,
  type SeedEvent,
  type SeedFacts,
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
    cleanup: fromPromise<SeedFacts, CleanupInput<BackupSourceParams>>(async () => {
      throw new Error('cleanup has no implementation (provide it with machine.provide)');
    }),
  },
  guards: {
    stepByStep: ({ context }) => context.params.stepByStep,
    aborting: ({ context }) => context.endReason === 'aborted',
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
    cleanup: {
      invoke: {
        src: 'cleanup',
        input: ({ context }) => cleanupInput(context),
        onDone: [{ guard: 'aborting', target: 'aborted' }, { target: 'failed' }],
        onError: [
          { guard: 'aborting', target: 'aborted', actions: 'recordCleanupFailure' },
          { target: 'failed', actions: 'recordCleanupFailure' },
        ],
      },
    },
    done: { type: 'final' },
    failed: { type: 'final' },
    aborted: { type: 'final' },
  },
});

export const BACKUP_SOURCE_STEP_STATES = ['checking', 'streaming', 'cleanup'] as const;
