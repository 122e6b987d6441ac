// Durable seed state: one JSON file per seed under StateDir/seeds/<id>.json, written atomically (temp file
// in the same directory, fsync, rename, fsync of the directory) so a kill -9 leaves either the old or the
// new state, never half of one. A file that cannot be read is moved aside and reported, never fatal.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { AgentError } from '../errors.js';
import { log } from '../log.js';

export const SEED_FORMAT_VERSION = 1;

export type SeedRole = 'target' | 'source';

export interface HistoryEntry {
  state: string;
  enteredAt: string;
  leftAt: string | null;
  error: string | null;
}

export interface SeedProgress {
  bytesDone: number;
  /** null while unknown (a configured receive command does not say how much will come). */
  bytesTotal: number | null;
  filesDone: number | null;
  filesTotal: number | null;
  currentFile: string | null;
  rateBytesPerSec: number | null;
  etaSeconds: number | null;
}

/** A step waiting for the other side (a lost sender coming back): shown in the seed view. */
export interface SeedWaiting {
  /** Who is awaited: "sender" (target side) or "receiver" (source side). */
  for: 'sender' | 'receiver';
  /** When the other side was lost (ISO). */
  since: string;
  /** When the step gives up (ISO). */
  until: string;
  /** One sentence: what was lost, why, and until when the step waits. */
  message: string;
}

/** Something a seed met that did not stop it but the operator should see (a refused sender, a changing source). */
export interface SeedWarning {
  at: string;
  message: string;
}

/** What is on disk for one seed. `snapshot` is the XState persisted snapshot, opaque to the store. */
export interface SeedRecord {
  formatVersion: number;
  id: string;
  role: SeedRole;
  machine: string;
  machineVersion: number;
  params: Record<string, unknown>;
  /** Secrets the seed needs after a restart (built-in transfer key); never shown except at creation. */
  secrets: Record<string, string>;
  /** null until the actor first started (a crash right after creation restarts it from params). */
  snapshot: unknown;
  history: HistoryEntry[];
  progress: SeedProgress | null;
  /** The most recent warnings (absent in records written before warnings existed). */
  warnings?: SeedWarning[];
  /** Process groups this seed started; a restarted agent reaps those still carrying our tag. */
  pgids: number[];
  /** Durable notes of steps ("we mounted", "receive started") that survive a crash mid-step. */
  marks: Record<string, string>;
  /** Set while a step waits for the other side to come back; absent in files of earlier versions. */
  waiting?: SeedWaiting | null;
  createdAt: string;
  updatedAt: string;
}

export interface CorruptFile {
  file: string;
  movedTo: string;
  error: string;
}

const idPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Checks the shape once where it enters; after this the record is typed. */
export function parseSeedRecord(text: string, knownMachines: Record<string, number>): SeedRecord {
  const value: unknown = JSON.parse(text);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not a JSON object');
  const r = value as Record<string, unknown>;
  if (r.formatVersion !== SEED_FORMAT_VERSION) throw new Error(`unknown formatVersion ${JSON.stringify(r.formatVersion)}, expected ${SEED_FORMAT_VERSION}`);
  if (typeof r.id !== 'string' || !idPattern.test(r.id)) throw new Error(`invalid id ${JSON.stringify(r.id)}`);
  if (r.role !== 'target' && r.role !== 'source') throw new Error(`invalid role ${JSON.stringify(r.role)}`);
  if (typeof r.machine !== 'string' || !(r.machine in knownMachines)) throw new Error(`unknown machine ${JSON.stringify(r.machine)}`);
  if (r.machineVersion !== knownMachines[r.machine]) {
    throw new Error(`machine ${r.machine} version ${JSON.stringify(r.machineVersion)} is not the version this agent runs (${knownMachines[r.machine]})`);
  }
  const isObject = (v: unknown) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObject(r.params)) throw new Error('params is not an object');
  if (!isObject(r.secrets)) throw new Error('secrets is not an object');
  if (r.snapshot !== null && !isObject(r.snapshot)) throw new Error('snapshot is not an object');
  if (!Array.isArray(r.history)) throw new Error('history is not an array');
  if (!Array.isArray(r.pgids) || !r.pgids.every((p) => Number.isInteger(p) && p > 1)) throw new Error('pgids is not an array of process ids');
  if (!isObject(r.marks)) throw new Error('marks is not an object');
  if (typeof r.createdAt !== 'string' || typeof r.updatedAt !== 'string') throw new Error('createdAt/updatedAt missing');
  return value as SeedRecord;
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** temp + fsync + rename + fsync(dir): after return the content is on disk under its final name. */
export function writeFileDurably(file: string, dir: string, content: string): void {
  const temp = `${file}.tmp-${process.pid}`;
  const fd = openSync(temp, 'w', 0o600);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, file);
  fsyncDir(dir);
}

export class SeedStore {
  readonly dir: string;
  readonly corruptDir: string;
  private readonly corrupt: CorruptFile[] = [];

  constructor(stateDir: string, private readonly knownMachines: Record<string, number>) {
    this.dir = join(stateDir, 'seeds');
    this.corruptDir = join(this.dir, 'corrupt');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  fileOf(id: string): string {
    return join(this.dir, `${id}.json`);
  }

  /** Synchronous on purpose: callers persist inside the actor's subscription, before anything else runs. */
  save(record: SeedRecord): void {
    try {
      writeFileDurably(this.fileOf(record.id), this.dir, JSON.stringify(record, null, 1) + '\n');
    } catch (err) {
      throw new AgentError('io', `cannot persist seed ${record.id} to ${this.fileOf(record.id)}: ${(err as Error).message}`, {
        hint: 'check that StateDir is writable and its filesystem has space',
      });
    }
  }

  /** Every readable record; unreadable ones are moved to seeds/corrupt/ and remembered for the API. */
  loadAll(): SeedRecord[] {
    const records: SeedRecord[] = [];
    for (const name of readdirSync(this.dir).sort()) {
      const file = join(this.dir, name);
      if (name.includes('.json.tmp-')) {
        // A write that died before its rename: the previous version (if any) is still in place.
        unlinkSync(file);
        continue;
      }
      if (!name.endsWith('.json')) continue;
      try {
        const record = parseSeedRecord(readFileSync(file, 'utf8'), this.knownMachines);
        if (`${record.id}.json` !== name) throw new Error(`file name does not match its id ${record.id}`);
        records.push(record);
      } catch (err) {
        this.moveAside(file, name, (err as Error).message);
      }
    }
    return records;
  }

  corruptFiles(): CorruptFile[] {
    return [...this.corrupt];
  }

  private moveAside(file: string, name: string, error: string): void {
    mkdirSync(this.corruptDir, { recursive: true, mode: 0o700 });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    let movedTo = join(this.corruptDir, `${name}.${stamp}`);
    for (let n = 1; existsSync(movedTo); n++) movedTo = join(this.corruptDir, `${name}.${stamp}.${n}`);
    renameSync(file, movedTo);
    fsyncDir(this.dir);
    log.error('seed state file is corrupt; moved aside, the agent goes on without it', { file, movedTo, error });
    this.corrupt.push({ file, movedTo, error });
  }
}
