// What the operator views (metrics, web page, SSE) read from the seed manager: its list and its change
// feed. Kept to this narrow shape so the views don't depend on how seeds are run or stored.
import type { AgentServices } from './services.js';
import type { WireStats } from './transfer/progress.js';

export interface SeedHistoryEntry {
  state: string;
  enteredAt: string | number;
  leftAt: string | number | null;
  error: { code?: string; message: string; hint?: string | null } | string | null;
}

export interface SeedProgress {
  bytesDone: number;
  bytesTotal: number | null;
  filesDone?: number | null;
  filesTotal?: number | null;
  currentFile?: string | null;
  rateBytesPerSec?: number | null;
  etaSeconds?: number | null;
  /** The sending side of a compressed copy: the codec, data bytes sent and their bytes on the wire. */
  wire?: WireStats;
}

export type SeedStatus = 'active' | 'done' | 'failed' | 'aborted';

export interface SeedView {
  id: string;
  role: string;
  machine: string;
  machineVersion?: number | string;
  state: string;
  status: SeedStatus;
  createdAt: string | number;
  updatedAt: string | number;
  params?: Record<string, unknown>;
  history: SeedHistoryEntry[];
  progress: SeedProgress | null;
  error: { code: string; message: string; hint?: string | null } | null;
  transfer?: { port: number } | null;
  /** True while a step-by-step seed waits for NEXT. */
  paused?: boolean;
  /** Events the seed accepts now (NEXT, ABORT). */
  accepts?: string[];
  /** snapshot, backup or dump. */
  method?: string;
  /** How the data moves: the built-in transfer or the configured commands. */
  transport?: string;
  /** What the seed's steps have done to this host so far (purgeStarted, transferred, postCopied...). */
  marks?: string[];
  /** While a step waits for the other side to come back: since when, until when, why. */
  waiting?: { for: string; since: string; until: string; message: string } | null;
  /** What the seed met without failing (refused senders...). */
  warnings?: { at: string; message: string }[];
}

export interface SeedFeed {
  list(): SeedView[];
  /** Called with a seed's view on every change; returns the unsubscribe function. */
  subscribe(listener: (view: SeedView) => void): () => void;
  /** What is wrong with StateDir now (cannot be created or written, full); empty when all is well. */
  stateDirProblems?(): readonly unknown[];
  /** State files found corrupt at start. */
  corruptFiles?(): readonly unknown[];
}

/** The seed manager when this agent runs one (absent in tests that build an app alone). */
export function seedFeedOf(services: AgentServices): SeedFeed | undefined {
  return services.seeds;
}

/** Timestamps may arrive as ISO strings or epoch ms; both become ms. */
export function toMillis(value: string | number | null | undefined): number | undefined {
  if (value === null || value === undefined) return undefined;
  const ms = typeof value === 'number' ? value : Date.parse(value);
  return Number.isFinite(ms) ? ms : undefined;
}
