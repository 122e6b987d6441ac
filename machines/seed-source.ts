// The source side of a seed: mount the snapshot read-only (skipped when orchestrator already mounted it),
// send the data directory to the target, unmount what we mounted. Failure or ABORT goes through `cleanup`
// (kill our process groups, unmount what we mounted) before `failed` / `aborted`.
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
export const MACHINE_ID = 'seed-source';

export interface SourceParams {
  targetHost: string;
  targetPort: number;
  /** Snapshot (LV or subvolume) to mount; empty when alreadyMounted. */
  snapshot: string;
  /** Original route: the snapshot is mounted at SnapshotMountPoint already; neither mount nor unmount it. */
  alreadyMounted: boolean;
  /** With alreadyMounted: the MySQL data path found on the mount when the seed was created. */
  sourceDir: string;
  stepByStep: boolean;
  /** Built-in transfer: compression asked for this seed (POST /api/seeds "compression"); else SeedTransferCompression. */
  compression?: 'off' | 'fast' | 'strong' | 'auto';
}

export type SourceContext = SeedContext<SourceParams>;
export type SourceStepInput = StepInput<SourceParams>;

export type SourceMachineInput = SeedMachineInput<SourceParams>;

export const seedSourceMachine = setup({
  types: {
    context: {} as SourceContext,
    events: {} as SeedEvent,
    input: {} as SourceMachineInput,
  },
  actors: {
    ensureSnapshotMounted: notProvided<SourceParams>('ensureSnapshotMounted'),
    ensureSent: notProvided<SourceParams>('ensureSent'),
    ensureUnmounted: notProvided<SourceParams>('ensureUnmounted'),
    cleanup: notProvidedCleanup<SourceParams>(),
  },
  guards: {
    ...seedGuards,
    alreadyMounted: ({ context }) => context.params.alreadyMounted,
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
  initial: 'start',
  states: {
    // Transient: the original route's snapshot is already mounted, so the seed begins with sending.
    start: { always: [{ guard: 'alreadyMounted', target: 'sending' }, { target: 'mountingSnapshot' }] },
    mountingSnapshot: runbookStep(MACHINE_ID, 'mountingSnapshot', 'ensureSnapshotMounted', 'sending'),
    sending: runbookStep(
      MACHINE_ID,
      'sending',
      'ensureSent',
      [{ guard: 'alreadyMounted', target: 'done' }, { target: 'unmounting' }],
      'startConnectDeadline',
    ),
    unmounting: runbookStep(MACHINE_ID, 'unmounting', 'ensureUnmounted', 'done'),
    ...seedEndStates(),
  },
});

export const SOURCE_STEP_STATES = ['mountingSnapshot', 'sending', 'unmounting', 'cleanup'] as const;
