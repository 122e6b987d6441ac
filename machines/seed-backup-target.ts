// The target side of a seed by hot backup, as a DBA's runbook: check everything that can be checked before
// anything is touched (with the source's facts from the sender's first message), stop MySQL, purge the
// datadir, receive the backup stream and extract it, prepare it (once), fix the owner, start MySQL and,
// when asked, make it a replica of the source and wait until it has caught up. Failure or ABORT goes
// through `cleanup` (kill our processes; remove an unprepared copy so nobody starts MySQL on it).
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
export const MACHINE_ID = 'seed-backup-target';

export interface BackupTargetParams {
  method: 'backup';
  /** Start MySQL on the prepared copy (implied by replicate). */
  startMySQL: boolean;
  /** End only once the target replicates from the source and has caught up with the copy's end. */
  replicate: boolean;
  /** Where the replica reaches the source's MySQL, when not the sender's address and reported port. */
  sourceMySQL: { host: string; port: number } | null;
  /** Skip the "no other client connections" check only. */
  force: boolean;
  stepByStep: boolean;
  /** Port the stream receiver listens on (chosen at creation so the sender can be told at once). */
  port: number;
}

export type BackupTargetContext = SeedContext<BackupTargetParams>;
export type BackupTargetStepInput = StepInput<BackupTargetParams>;

export const seedBackupTargetMachine = setup({
  types: {
    context: {} as BackupTargetContext,
    events: {} as SeedEvent,
    input: {} as SeedMachineInput<BackupTargetParams>,
  },
  actors: {
    ensurePreSeedChecked: notProvided<BackupTargetParams>('ensurePreSeedChecked'),
    ensureMySQLStopped: notProvided<BackupTargetParams>('ensureMySQLStopped'),
    ensureDatadirPurged: notProvided<BackupTargetParams>('ensureDatadirPurged'),
    ensureBackupExtracted: notProvided<BackupTargetParams>('ensureBackupExtracted'),
    ensureBackupPrepared: notProvided<BackupTargetParams>('ensureBackupPrepared'),
    ensureOwnerFixed: notProvided<BackupTargetParams>('ensureOwnerFixed'),
    ensureMySQLStarted: notProvided<BackupTargetParams>('ensureMySQLStarted'),
    ensureReplicationSetUp: notProvided<BackupTargetParams>('ensureReplicationSetUp'),
    ensureCaughtUp: notProvided<BackupTargetParams>('ensureCaughtUp'),
    cleanup: notProvidedCleanup<BackupTargetParams>(),
  },
  guards: {
    ...seedGuards,
    startMySQL: ({ context }) => context.params.startMySQL || context.params.replicate,
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
    checking: runbookStep(MACHINE_ID, 'checking', 'ensurePreSeedChecked', 'stoppingMySQL', 'startConnectDeadline'),
    stoppingMySQL: runbookStep(MACHINE_ID, 'stoppingMySQL', 'ensureMySQLStopped', 'purgingDatadir'),
    purgingDatadir: runbookStep(MACHINE_ID, 'purgingDatadir', 'ensureDatadirPurged', 'receiving'),
    receiving: runbookStep(MACHINE_ID, 'receiving', 'ensureBackupExtracted', 'preparing'),
    preparing: runbookStep(MACHINE_ID, 'preparing', 'ensureBackupPrepared', 'fixingOwner'),
    fixingOwner: runbookStep(MACHINE_ID, 'fixingOwner', 'ensureOwnerFixed', [{ guard: 'startMySQL', target: 'startingMySQL' }, { target: 'done' }]),
    startingMySQL: runbookStep(MACHINE_ID, 'startingMySQL', 'ensureMySQLStarted', [{ guard: 'replicate', target: 'settingUpReplication' }, { target: 'done' }]),
    settingUpReplication: runbookStep(MACHINE_ID, 'settingUpReplication', 'ensureReplicationSetUp', 'catchingUp'),
    catchingUp: runbookStep(MACHINE_ID, 'catchingUp', 'ensureCaughtUp', 'done'),
    ...seedEndStates(),
  },
});

/** The states a kill -9 test must cover, in runbook order. */
export const BACKUP_TARGET_STEP_STATES = [
  'checking',
  'stoppingMySQL',
  'purgingDatadir',
  'receiving',
  'preparing',
  'fixingOwner',
  'startingMySQL',
  'settingUpReplication',
  'catchingUp',
  'cleanup',
] as const;
