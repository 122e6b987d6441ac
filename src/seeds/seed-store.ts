// Durable seed state: one JSON file per seed under StateDir/seeds/<id>.json, written atomically (temp file
// in the same directory, fsync, rename, fsync of the directory) so a kill -9 leaves either the old or the
// new state, never half of one. A file that cannot be read is moved aside and reported, never fatal.
// News that may wait (progress; the process group of a tagged process) is written off the event loop
// (saveInBackground): a flush can wait long on a disk busy with the copy itself.
import { unlink } from 'node:fs/promises';
import { accessSync, closeSync, constants, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { AgentError } from '../errors.js';
import { log } from '../log.js';
import { writeFlushed } from '../transfer/durable.js';
import type { WireStats } from '../transfer/progress.js';

export const SEED_FORMAT_VERSION = 1;

export type SeedRole = 'target' | 'source';

export interface HistoryEntry {
  state: string;
  enteredAt: string;
  leftAt: string | null;
  error: string | null;
  /** When an agent restart resumed this step (absent when none did). */
  resumedAt?: string[];
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
  /** The sending side of a compressed transfer or stream: the codec, data bytes sent and their bytes on the wire (this session). */
  wire?: WireStats;
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
  /** null when StateDir could not be changed (read-only, full): the file stays where it is, unused. */
  movedTo: string | null;
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
  if (typeof r.machine !== 'string' || !Object.hasOwn(knownMachines, r.machine)) throw new Error(`unknown machine ${JSON.stringify(r.machine)}`);
  if (r.machineVersion !== knownMachines[r.machine]) {
    throw new Error(`machine ${r.machine} version ${JSON.stringify(r.machineVersion)} is not the version this agent runs (${knownMachines[r.machine]})`);
  }
  const isObject = (v: unknown) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObject(r.params)) throw new Error('params is not an object');
  if (!isObject(r.secrets)) throw new Error('secrets is not an object');
  if (r.snapshot !== null && !isObject(r.snapshot)) throw new Error('snapshot is not an object');
  if (!Array.isArray(r.history)) throw new Error('history is not an array');
  const optString = (v: unknown) => v === null || typeof v === 'string';
  r.history.forEach((h: unknown, i) => {
    const e = h as Record<string, unknown>;
    if (!isObject(h) || typeof e.state !== 'string' || typeof e.enteredAt !== 'string' || !optString(e.leftAt) || !optString(e.error)) {
      throw new Error(`history[${i}] is not {state, enteredAt, leftAt, error}`);
    }
  });
  if (r.progress !== null && !(isObject(r.progress) && typeof (r.progress as Record<string, unknown>).bytesDone === 'number')) throw new Error('progress is neither null nor progress');
  if (r.waiting !== undefined && r.waiting !== null && !isObject(r.waiting)) throw new Error('waiting is neither null nor an object');
  if (!Array.isArray(r.pgids) || !r.pgids.every((p) => Number.isInteger(p) && p > 1)) throw new Error('pgids is not an array of process ids');
  if (!isObject(r.marks) || !Object.values(r.marks as object).every((v) => typeof v === 'string')) throw new Error('marks is not an object of strings');
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

/** temp + fsync + rename + fsync(dir): after return the content is on disk under its final name; on failure no temp file stays. */
export function writeFileDurably(file: string, dir: string, content: string): void {
  const temp = `${file}.tmp-${process.pid}`;
  try {
    const fd = openSync(temp, 'w', 0o600);
    try {
      writeSync(fd, content);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, file);
  } catch (err) {
    try {
      unlinkSync(temp);
    } catch {
      /* never created, or the filesystem refuses even that: a later start removes it */
    }
    throw err;
  }
  fsyncDir(dir);
}

/**
 * A StateDir failure as an error that names StateDir and what to do, by errno (as config errors do).
 * `what` says what was tried ("persist seed s1 to seeds/s1.json").
 */
export function stateDirError(stateDir: string, what: string, err: unknown, path?: string): AgentError {
  const errno = actualErrno((err as NodeJS.ErrnoException)?.code, path ?? stateDir);
  const reason = err instanceof Error ? err.message : String(err);
  const hints: Record<string, string> = {
    EROFS: `StateDir ${stateDir} is on a read-only filesystem: remount it read-write, or set StateDir in the config to a writable directory, then restart the agent`,
    ENOSPC: `the filesystem holding StateDir ${stateDir} is full: free space there (or set StateDir elsewhere), then restart the agent`,
    EDQUOT: `the disk quota of the agent's user on StateDir ${stateDir} is used up: raise it or free space, then restart the agent`,
    EACCES: `the agent (uid ${process.getuid?.() ?? '?'}) may not write in StateDir ${stateDir}: make it the owner (chown) or set StateDir to a directory it owns, then restart the agent`,
    EPERM: `the agent (uid ${process.getuid?.() ?? '?'}) may not write in StateDir ${stateDir}: make it the owner (chown) or set StateDir to a directory it owns, then restart the agent`,
    ENOENT: `StateDir ${stateDir} (or a directory above it) does not exist and could not be created: create it, or set StateDir in the config to an existing writable directory`,
    ENOTDIR: `StateDir ${stateDir} (or a part of its path) is not a directory: set StateDir in the config to a directory`,
    EIO: `the disk holding StateDir ${stateDir} reports I/O errors: check the device (dmesg), or set StateDir elsewhere`,
  };
  return new AgentError('io', `StateDir ${stateDir}: cannot ${what}: ${reason}`, {
    hint: (errno && hints[errno]) ?? `check that StateDir ${stateDir} is a writable directory with free space`,
    cause: err,
  });
}

/**
 * A recursive mkdir on a read-only filesystem fails with ENOENT, and a write there may say EACCES: ask the
 * nearest existing directory above `path` whether it is writable, which answers EROFS when it is read-only.
 */
function actualErrno(errno: string | undefined, path: string): string | undefined {
  if (errno !== 'ENOENT' && errno !== 'EACCES' && errno !== 'EPERM') return errno;
  for (let dir = path; ; dir = dirname(dir)) {
    try {
      accessSync(dir, constants.W_OK);
      return errno;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EROFS') return 'EROFS';
      if (code !== 'ENOENT' || dir === dirname(dir)) return errno;
    }
  }
}

/** Something wrong with StateDir that the agent works around (reported in /api/seeds and the log). */
export interface StateDirProblem {
  at: string;
  message: string;
  hint: string | null;
}

export class SeedStore {
  readonly dir: string;
  readonly corruptDir: string;
  private readonly corrupt: CorruptFile[] = [];
  private readonly startProblems: StateDirProblem[] = [];
  private lastSaveProblem: StateDirProblem | null = null;
  /** Per seed, how many durable saves so far: a background write started before the last one is dropped. */
  private readonly generations = new Map<string, number>();

  /** Never throws: a StateDir that cannot be created is reported (problems()), and seeds then fail to save. */
  constructor(
    private readonly stateDir: string,
    private readonly knownMachines: Record<string, number>,
  ) {
    this.dir = join(stateDir, 'seeds');
    this.corruptDir = join(this.dir, 'corrupt');
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      this.problem(stateDirError(stateDir, `create ${this.dir}`, err, this.dir));
    }
  }

  fileOf(id: string): string {
    return join(this.dir, `${id}.json`);
  }

  /** Synchronous on purpose: callers persist inside the actor's subscription, before anything else runs. */
  save(record: SeedRecord): void {
    this.generations.set(record.id, (this.generations.get(record.id) ?? 0) + 1);
    try {
      writeFileDurably(this.fileOf(record.id), this.dir, JSON.stringify(record, null, 1) + '\n');
      this.lastSaveProblem = null;
    } catch (err) {
      throw this.failedSave(record.id, err);
    }
  }

  /**
   * Saves a record whose news may wait (progress; the process group of a process that carries the seed's tag,
   * which a restarted agent finds by it), without holding up the event loop: the file is written and
   * flushed on libuv's pool (beside the backup bench's copy, a flush waited up to 0.95 s on the disk the copy
   * is written to, and stopped the stream and the API for as long). The rename then happens here, in one
   * synchronous turn with the check that no durable save of this seed came in between, so an older record
   * never replaces a newer one. No fsync of the directory: a crash before the next durable save may leave
   * the previous record, which is whole, and the step that runs again shows progress again.
   */
  async saveInBackground(record: SeedRecord): Promise<void> {
    const generation = this.generations.get(record.id) ?? 0;
    const file = this.fileOf(record.id);
    const temp = `${file}.tmp-${process.pid}-background`;
    const content = JSON.stringify(record, null, 1) + '\n';
    try {
      await writeFlushed(temp, content);
      if ((this.generations.get(record.id) ?? 0) !== generation) {
        await unlink(temp).catch(() => undefined); // a later start removes what is left; the seed is saved
        return;
      }
      renameSync(temp, file);
      this.lastSaveProblem = null;
    } catch (err) {
      await unlink(temp).catch(() => undefined); // a later start removes what is left
      // A durable save since then made this write moot (the seed may even have ended): its failure is not the seed's.
      if ((this.generations.get(record.id) ?? 0) !== generation) return;
      throw this.failedSave(record.id, err);
    }
  }

  private failedSave(id: string, err: unknown): AgentError {
    const e = stateDirError(this.stateDir, `persist seed ${id} to ${this.fileOf(id)}`, err, this.dir);
    this.lastSaveProblem = { at: new Date().toISOString(), message: e.message, hint: e.hint ?? null };
    return e;
  }

  /** True when StateDir holds a seed file (readable or not): the charts are loaded only then at start. */
  hasSeedFiles(): boolean {
    try {
      return readdirSync(this.dir).some((name) => name.endsWith('.json'));
    } catch {
      return false; // loadAll reports it
    }
  }

  /**
   * Every readable record that `check` accepts; unreadable or rejected ones are moved to seeds/corrupt/
   * and remembered for the API. A StateDir that cannot be read or changed is reported, never fatal.
   */
  loadAll(check: (record: SeedRecord) => void = () => undefined): SeedRecord[] {
    const records: SeedRecord[] = [];
    let names: string[];
    try {
      names = readdirSync(this.dir).sort();
    } catch (err) {
      if (this.startProblems.length === 0) this.problem(stateDirError(this.stateDir, `list ${this.dir}`, err));
      return records;
    }
    for (const name of names) {
      const file = join(this.dir, name);
      if (name.includes('.json.tmp-')) {
        // A write that died before its rename: the previous version (if any) is still in place.
        try {
          unlinkSync(file);
        } catch (err) {
          this.problem(stateDirError(this.stateDir, `remove the unfinished write ${file}`, err), 'warn');
        }
        continue;
      }
      if (!name.endsWith('.json')) continue;
      try {
        const record = parseSeedRecord(readFileSync(file, 'utf8'), this.knownMachines);
        if (`${record.id}.json` !== name) throw new Error(`file name does not match its id ${record.id}`);
        check(record);
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

  /** What is wrong with StateDir now: found at start, and the last failed save (until a save succeeds). */
  problems(): StateDirProblem[] {
    return this.lastSaveProblem ? [...this.startProblems, this.lastSaveProblem] : [...this.startProblems];
  }

  private problem(e: AgentError, level: 'error' | 'warn' = 'error'): void {
    this.startProblems.push({ at: new Date().toISOString(), message: e.message, hint: e.hint ?? null });
    log[level](e.describe());
  }

  private moveAside(file: string, name: string, error: string): void {
    try {
      mkdirSync(this.corruptDir, { recursive: true, mode: 0o700 });
      const stamp = new Date().toISOString().replace(/[:.]/g, '-');
      let movedTo = join(this.corruptDir, `${name}.${stamp}`);
      for (let n = 1; existsSync(movedTo); n++) movedTo = join(this.corruptDir, `${name}.${stamp}.${n}`);
      renameSync(file, movedTo);
      fsyncDir(this.dir);
      log.error('seed state file is corrupt; moved aside, the agent goes on without it', { file, movedTo, error });
      this.corrupt.push({ file, movedTo, error });
    } catch (err) {
      const e = stateDirError(this.stateDir, `move the corrupt ${file} to ${this.corruptDir}`, err, this.corruptDir);
      log.error('seed state file is corrupt and could not be moved aside; the agent goes on without it', { file, error, moveError: e.describe() });
      this.corrupt.push({ file, movedTo: null, error: `${error}; ${e.describe()}` });
    }
  }
}
