// What a seed step is given: the host interfaces, configuration, and a handle on its own seed for the
// few durable notes a step must leave before acting (so a restarted step or the cleanup knows).
import type { Config } from '../../config.js';
import { AgentError } from '../../errors.js';
import type { DatadirOps, MySQLService, SnapshotBackend } from '../../host/interfaces.js';
import type { SeedDeadlines, SeedFacts, StepInput } from '../../../machines/seed-common.js';
import type { SeedProgress, SeedWaiting } from '../seed-store.js';

export interface SeedHandle {
  readonly id: string;
  /** Durable notes of this seed ("receiveStarted", "mountedBySeed"): survive a crash mid-step. */
  marks(): Readonly<Record<string, string>>;
  /** Written to disk before it returns. */
  mark(key: string, value: string): void;
  /** Secrets stored with the seed (the built-in transfer's key). */
  secrets(): Readonly<Record<string, string>>;
  /** Throttled to disk, immediate to subscribers. */
  setProgress(progress: SeedProgress | null): void;
  /** What the step waits for (shown in the view), or null when it no longer waits. Written to disk before it returns. */
  setWaiting(waiting: SeedWaiting | null): void;
  /** Shown in the seed view's warnings (the most recent few kept) and logged; written to disk. */
  warn(message: string): void;
}

export interface StepEnv {
  config: Config;
  mysql: MySQLService;
  datadir: DatadirOps;
  snapshots: SnapshotBackend;
  seed: SeedHandle;
  /** Runs fn so that processes it starts are reaped only in their own group (a daemon they start survives). */
  daemonStarter<T>(fn: () => Promise<T>): Promise<T>;
  /** Kills the process groups this seed's steps started (cleanup). */
  killSeedProcesses(): Promise<void>;
  /**
   * Runs task in the background, beyond the seed's end (telling the peer why it ended); its signal aborts when
   * the agent stops. Absent where steps run without an agent (unit tests).
   */
  afterEnd?(task: (signal: AbortSignal) => Promise<void>): void;
}

export type StepFn<P> = (input: StepInput<P>, signal: AbortSignal, env: StepEnv) => Promise<SeedFacts>;

/** Time a step may still take: the seed deadline, capped by CommandTimeoutSeconds for one command. */
export function remainingMs(deadlines: SeedDeadlines, capMs: number, what: string): number {
  const left = deadlines.seed - Date.now();
  if (left <= 0) {
    throw new AgentError('command_timeout', `the seed's deadline passed before ${what}`, {
      hint: 'create the seed again with a larger timeoutSeconds',
    });
  }
  return Math.min(left, capMs);
}

export function commandCapMs(config: Config): number {
  return config.CommandTimeoutSeconds * 1000;
}
