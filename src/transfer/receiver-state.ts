// The receiver's bookkeeping for destDir, so a restarted receiver (after kill -9) tells the sender what not to
// send again: files verified whole (STATE_FILE: atomic and fsynced), and files verified up to a chunk
// (PARTIAL_FILE: their sender's size and mtime and the checksum of every verified chunk; rewritten at every
// chunk, atomically but not fsynced, since a restarted receiver reads those chunks back from the staging
// file and keeps only what is intact). Kept in the receiver's state directory, never in destDir (whose size
// orchestrator reads as the progress); removed when the final manifest is written.
import { createHash } from 'node:crypto';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { log } from '../log.js';
import { PARTIAL_FILE, STAGING_DIR, STATE_FILE, safeRelativePath, type VerifiedFile } from './manifest.js';
import { unlinkDurably, writeFileAtomically, writeFileDurably } from './durable.js';
import { createChecksum, isChecksumAlgorithm, type Checksum, type ChecksumAlgorithm } from './checksum.js';

/** A file received in part: its first chunks.length chunks of chunkBytes are in its staging file, verified. */
export interface PartialFile {
  path: string;
  /** The sender's size and mtime: a resume only continues the same version of the file. */
  size: number;
  mtimeMs: number;
  algorithm: ChecksumAlgorithm;
  chunkBytes: number;
  /** Checksum of each verified chunk, in order. */
  chunks: string[];
}

interface StateFile {
  version: 1 | 2;
  /** Checksums carry their algorithm ("xxh3-64:…"). */
  verified: VerifiedFile[];
  /** Only in files written before PARTIAL_FILE existed. */
  partial?: PartialFile[];
}

interface PartialStateFile {
  version: 1;
  partial: PartialFile[];
}

/** The staging file of a path: a fixed name, so a resumed receive finds the bytes an earlier one wrote. */
export function stagingName(path: string): string {
  return createHash('sha256').update(path).digest('hex').slice(0, 32);
}

export class ReceiverState {
  private readonly verified = new Map<string, VerifiedFile>();
  private readonly partials = new Map<string, PartialFile>();
  /** Checksum of each partial file's verified prefix, read back from disk at load, to continue the whole-file checksum. */
  private readonly prefixHashes = new Map<string, Checksum>();
  private readonly file: string;
  private readonly partialFile: string;

  private constructor(
    private readonly destDir: string,
    stateDir: string,
  ) {
    this.file = join(stateDir, STATE_FILE);
    this.partialFile = join(stateDir, PARTIAL_FILE);
  }

  /**
   * Loads the state file, keeping only entries whose file is still in place with the recorded size, and of
   * each partial file the chunks its staging file still holds intact (read back and checked). Staging files
   * no partial entry owns are removed. A state file we cannot read only costs a full re-send, so it is
   * reported and ignored.
   */
  static async load(destDir: string, stateDir: string): Promise<ReceiverState> {
    const state = new ReceiverState(destDir, stateDir);
    let legacyPartial: PartialFile[] = [];
    const raw = await readIfThere(state.file);
    if (raw !== undefined) {
      try {
        const parsed = JSON.parse(raw) as StateFile;
        if ((parsed.version !== 1 && parsed.version !== 2) || !Array.isArray(parsed.verified)) throw new Error('unknown format');
        for (const v of parsed.verified) {
          const path = safeRelativePath(v.path);
          if (typeof v.size !== 'number' || typeof v.mtimeMs !== 'number' || typeof v.checksum !== 'string') throw new Error(`bad entry ${path}`);
          const st = await stat(join(destDir, path)).catch(() => undefined);
          if (st?.isFile() && st.size === v.size) state.verified.set(path, { path, size: v.size, mtimeMs: v.mtimeMs, checksum: v.checksum });
        }
        legacyPartial = Array.isArray(parsed.partial) ? parsed.partial : [];
      } catch (err) {
        log.warn('transfer: receiver state is unusable, starting over', { file: state.file, error: String(err) });
        state.verified.clear();
      }
    }
    const rawPartial = await readIfThere(state.partialFile);
    try {
      let partial = legacyPartial;
      if (rawPartial !== undefined) {
        const pf = JSON.parse(rawPartial) as PartialStateFile;
        if (pf.version !== 1 || !Array.isArray(pf.partial)) throw new Error('unknown format');
        partial = pf.partial;
      }
      for (const p of partial) if (!state.verified.has(p.path)) await state.loadPartial(p);
    } catch (err) {
      log.warn('transfer: the record of partly received files is unusable; they are sent whole again', { file: state.partialFile, error: String(err) });
      state.partials.clear();
      state.prefixHashes.clear();
    }
    await state.removeStrayStaging();
    return state;
  }

  private async loadPartial(p: PartialFile): Promise<void> {
    const path = safeRelativePath(p.path);
    const ok =
      Number.isInteger(p.size) && typeof p.mtimeMs === 'number' && isChecksumAlgorithm(p.algorithm) && Number.isInteger(p.chunkBytes) && p.chunkBytes > 0 &&
      Array.isArray(p.chunks) && p.chunks.every((c) => typeof c === 'string');
    if (!ok) throw new Error(`bad partial entry ${path}`);
    // Read the verified prefix back: a chunk counts only if the disk still holds it as it was checked.
    const whole = createChecksum(p.algorithm);
    const good: string[] = [];
    const fh = await open(join(this.destDir, STAGING_DIR, stagingName(path)), 'r').catch(() => undefined);
    if (!fh) return;
    try {
      const buf = Buffer.allocUnsafe(p.chunkBytes);
      for (const expected of p.chunks) {
        const at = good.length * p.chunkBytes;
        const want = Math.min(p.chunkBytes, p.size - at);
        if (want <= 0) break;
        const { bytesRead } = await fh.read(buf, 0, want, at);
        if (bytesRead !== want) break;
        const c = createChecksum(p.algorithm);
        c.update(buf.subarray(0, want));
        if (c.digest() !== expected) break;
        whole.update(buf.subarray(0, want));
        good.push(expected);
      }
    } finally {
      await fh.close();
    }
    if (good.length === 0) return;
    if (good.length < p.chunks.length) log.warn('transfer: a partly received file lost verified chunks; they are sent again', { path, kept: good.length, recorded: p.chunks.length });
    this.partials.set(path, { path, size: p.size, mtimeMs: p.mtimeMs, algorithm: p.algorithm, chunkBytes: p.chunkBytes, chunks: good });
    this.prefixHashes.set(path, whole);
  }

  private async removeStrayStaging(): Promise<void> {
    const dir = join(this.destDir, STAGING_DIR);
    const keep = new Set([...this.partials.keys()].map(stagingName));
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names) if (!keep.has(name)) await unlinkDurably(join(dir, name));
  }

  list(): VerifiedFile[] {
    return [...this.verified.values()];
  }

  get(path: string): VerifiedFile | undefined {
    return this.verified.get(path);
  }

  /** Records files whose data, rename and directory entry are already durable. */
  add(files: readonly VerifiedFile[]): void {
    for (const f of files) {
      this.verified.set(f.path, f);
      this.forgetPartial(f.path);
    }
  }

  forget(path: string): void {
    this.verified.delete(path);
  }

  partialList(): PartialFile[] {
    return [...this.partials.values()];
  }

  partial(path: string): PartialFile | undefined {
    return this.partials.get(path);
  }

  /** The whole-file checksum over a partial file's verified prefix, ready to continue (once). */
  takePrefixHash(path: string): Checksum | undefined {
    const h = this.prefixHashes.get(path);
    this.prefixHashes.delete(path);
    return h;
  }

  /** Records a file's chunks whose bytes are already durable in its staging file. */
  setPartial(p: PartialFile): void {
    this.partials.set(p.path, p);
  }

  forgetPartial(path: string): void {
    this.partials.delete(path);
    this.prefixHashes.delete(path);
  }

  /** Records the verified files durably, and the partly received ones. */
  async save(): Promise<void> {
    const body: StateFile = { version: 2, verified: this.list() };
    await writeFileDurably(this.file, JSON.stringify(body));
    await this.savePartials();
  }

  /** Records the partly received files: atomic, not fsynced (see the top of this file). */
  async savePartials(): Promise<void> {
    const body: PartialStateFile = { version: 1, partial: this.partialList() };
    await writeFileAtomically(this.partialFile, JSON.stringify(body));
  }

  async remove(): Promise<void> {
    await unlinkDurably(this.partialFile);
    await unlinkDurably(this.file);
  }
}

/** A file's text, or undefined when it is not there (or unreadable, which is logged: it only costs a re-send). */
async function readIfThere(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn('transfer: cannot read receiver state, starting over', { file, error: String(err) });
    return undefined;
  }
}
