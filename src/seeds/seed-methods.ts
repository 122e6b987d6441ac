// Which chart and which steps run a seed: one entry per (method, role). The seed manager asks this module
// for a seed's chart and only runs and persists it; adding a method adds entries here and its own charts in
// machines/, and changes no other method's chart.
import type { AnyStateMachine } from 'xstate';
import { AgentError } from '../errors.js';
import { MACHINE_ID as SOURCE_ID, MACHINE_VERSION as SOURCE_VERSION, seedSourceMachine } from '../../machines/seed-source.js';
import { MACHINE_ID as TARGET_ID, MACHINE_VERSION as TARGET_VERSION, seedTargetMachine } from '../../machines/seed-target.js';
import { MACHINE_ID as BACKUP_SOURCE_ID, MACHINE_VERSION as BACKUP_SOURCE_VERSION, seedBackupSourceMachine } from '../../machines/seed-backup-source.js';
import { MACHINE_ID as BACKUP_TARGET_ID, MACHINE_VERSION as BACKUP_TARGET_VERSION, seedBackupTargetMachine } from '../../machines/seed-backup-target.js';
import { MACHINE_ID as DUMP_SOURCE_ID, MACHINE_VERSION as DUMP_SOURCE_VERSION, seedDumpSourceMachine } from '../../machines/seed-dump-source.js';
import { MACHINE_ID as DUMP_TARGET_ID, MACHINE_VERSION as DUMP_TARGET_VERSION, seedDumpTargetMachine } from '../../machines/seed-dump-target.js';
import type { SeedRole } from './seed-store.js';
import {
  cleanupBackupSource,
  cleanupBackupTarget,
  ensureBackupExtracted,
  ensureBackupPrepared,
  ensureBackupStreamed,
  ensureOwnerFixed,
  ensurePreSeedChecked,
  ensureSourceChecked,
} from './steps/backup-steps.js';
import { ensureCaughtUp, ensureReplicationSetUp } from './steps/replication-steps.js';
import {
  cleanupDumpSource,
  cleanupDumpTarget,
  ensureDumpLoaded,
  ensureDumpSourceChecked,
  ensureDumpStreamed,
  ensureDumpTargetChecked,
  ensureSchemasDropped,
} from './steps/dump-steps.js';
import { cleanupSource, cleanupTarget, type CleanupFn } from './steps/cleanup.js';
import { ensureDatadirPurged } from './steps/datadir-steps.js';
import { ensureMySQLStarted, ensureMySQLStopped } from './steps/mysql-steps.js';
import { ensurePostCopied } from './steps/post-copy.js';
import { ensureSnapshotMounted, ensureUnmounted } from './steps/snapshot-steps.js';
import type { StepFn } from './steps/step-env.js';
import { ensureReceived, ensureSent } from './steps/transfer-steps.js';
import type { SeedMethod } from './seed-method-names.js';

export { isSeedMethod, SEED_METHODS, type SeedMethod } from './seed-method-names.js';

/** A chart and the implementations of its step slots (names as in the chart's setup). */
export interface SeedChart {
  method: SeedMethod;
  role: SeedRole;
  machineId: string;
  machineVersion: number;
  machine: AnyStateMachine;
  /* eslint-disable @typescript-eslint/no-explicit-any -- each chart has its own params type */
  steps: Record<string, StepFn<any>>;
  cleanup: CleanupFn<any>;
  /* eslint-enable @typescript-eslint/no-explicit-any */
  /** The state shown before the actor first ran. */
  firstState: string;
}

const charts: SeedChart[] = [
  {
    method: 'snapshot',
    role: 'target',
    machineId: TARGET_ID,
    machineVersion: TARGET_VERSION,
    machine: seedTargetMachine,
    steps: { ensureMySQLStopped, ensureDatadirPurged, ensureReceived, ensurePostCopied, ensureMySQLStarted },
    cleanup: cleanupTarget,
    firstState: 'stoppingMySQL',
  },
  {
    method: 'snapshot',
    role: 'source',
    machineId: SOURCE_ID,
    machineVersion: SOURCE_VERSION,
    machine: seedSourceMachine,
    steps: { ensureSnapshotMounted, ensureSent, ensureUnmounted },
    cleanup: cleanupSource,
    firstState: 'created',
  },
  {
    method: 'backup',
    role: 'target',
    machineId: BACKUP_TARGET_ID,
    machineVersion: BACKUP_TARGET_VERSION,
    machine: seedBackupTargetMachine,
    steps: {
      ensurePreSeedChecked,
      ensureMySQLStopped,
      ensureDatadirPurged,
      ensureBackupExtracted,
      ensureBackupPrepared,
      ensureOwnerFixed,
      ensureMySQLStarted,
      ensureReplicationSetUp,
      ensureCaughtUp,
    },
    cleanup: cleanupBackupTarget,
    firstState: 'checking',
  },
  {
    method: 'backup',
    role: 'source',
    machineId: BACKUP_SOURCE_ID,
    machineVersion: BACKUP_SOURCE_VERSION,
    machine: seedBackupSourceMachine,
    steps: { ensureSourceChecked, ensureBackupStreamed },
    cleanup: cleanupBackupSource,
    firstState: 'checking',
  },
  {
    method: 'dump',
    role: 'target',
    machineId: DUMP_TARGET_ID,
    machineVersion: DUMP_TARGET_VERSION,
    machine: seedDumpTargetMachine,
    steps: { ensureDumpTargetChecked, ensureSchemasDropped, ensureDumpLoaded, ensureReplicationSetUp, ensureCaughtUp },
    cleanup: cleanupDumpTarget,
    firstState: 'checking',
  },
  {
    method: 'dump',
    role: 'source',
    machineId: DUMP_SOURCE_ID,
    machineVersion: DUMP_SOURCE_VERSION,
    machine: seedDumpSourceMachine,
    steps: { ensureDumpSourceChecked, ensureDumpStreamed },
    cleanup: cleanupDumpSource,
    firstState: 'checking',
  },
];

/** Machine id -> version, for the seed store (a persisted seed names the chart it runs). */
export const KNOWN_MACHINES: Record<string, number> = Object.fromEntries(charts.map((c) => [c.machineId, c.machineVersion]));

/** The chart a new seed runs; a clear 400 for a method this agent does not have yet. */
export function chartFor(method: SeedMethod, role: SeedRole): SeedChart {
  const chart = charts.find((c) => c.method === method && c.role === role);
  if (!chart) {
    throw new AgentError('bad_request', `seed method "${method}" is not yet implemented on this agent`, {
      hint: `use one of: ${[...new Set(charts.map((c) => c.method))].join(', ')}`,
    });
  }
  return chart;
}

/** The chart a persisted seed runs (records written before methods existed name the snapshot charts). */
export function chartOf(machineId: string): SeedChart {
  const chart = charts.find((c) => c.machineId === machineId);
  if (!chart) throw new AgentError('internal', `no chart ${machineId} on this agent`);
  return chart;
}
