// The receiver's durable bookkeeping for destDir, so a restarted receiver (after kill -9) tells the sender what
// not to send again: files verified whole, and files verified up to a chunk (their staging file and the
// checksum of every verified chunk). Kept in the receiver's state directory, never in destDir (whose size
// orchestrator reads as the progress); written atomically; removed when the final manifest is written.
import { createHash } from 'node:crypto';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { log } from '../log.js';
import { STAGING_DIR, STATE_FILE, safeRelativePath, type VerifiedFile } from './manifest.js';
import { unlinkDurably, writeFileDurably } from './durable.js';
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
  partial?: PartialFile[];
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

  private constructor(
    private readonly destDir: string,
    stateDir: string,
  ) {
    this.file = join(stateDir, STATE_FILE);
  }

  /**
   * Loads the state file, keeping only entries whose file is still in place with the recorded size, and of
   * each partial file the chunks its staging file still holds intact (read back and checked). Staging files
   * no partial entry owns are removed. A state file we cannot read only costs a full re-send, so it is
   * reported and ignored.
   */
  static async load(destDir: string, stateDir: string): Promise<ReceiverState> {
    const state = new ReceiverState(destDir, stateDir);
    let raw: string | undefined;
    try {
      raw = await readFile(state.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn('transfer: cannot read receiver state, starting over', { file: state.file, error: String(err) });
    }
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
        for (const p of parsed.partial ?? []) await state.loadPartial(p);
      } catch (err) {
        log.warn('transfer: receiver state is unusable, starting over', { file: state.file, error: String(err) });
        state.verified.clear();
        state.partials.clear();
        state.prefixHashes.clear();
      }
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

  async save(): Promise<void> {
    const body: StateFile = { version: 2, verified: this.list(), partial: this.partialList() };
    await writeFileDurably(this.file, JSON.stringify(body));
  }

  async remove(): Promise<void> {
    await unlinkDurably(this.file);
  }
}
