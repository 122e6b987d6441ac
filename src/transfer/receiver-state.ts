// The receiver's durable list of files already verified in destDir, so a restarted receiver (after kill -9)
// tells the sender what not to send again. Kept in the receiver's state directory, never in destDir (whose
// size orchestrator reads as the progress); written atomically; removed when the final manifest is written.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { log } from '../log.js';
import { STATE_FILE, safeRelativePath, type VerifiedFile } from './manifest.js';
import { unlinkDurably, writeFileDurably } from './durable.js';

interface StateFile {
  version: 1;
  /** Checksums carry their algorithm ("xxh3-64:…"). */
  verified: VerifiedFile[];
}

export class ReceiverState {
  private readonly verified = new Map<string, VerifiedFile>();
  private readonly file: string;

  private constructor(
    private readonly destDir: string,
    stateDir: string,
  ) {
    this.file = join(stateDir, STATE_FILE);
  }

  /**
   * Loads the state file, keeping only entries whose file is still in place with the recorded size. A state
   * file we cannot read only costs a full re-send, so it is reported and ignored.
   */
  static async load(destDir: string, stateDir: string): Promise<ReceiverState> {
    const state = new ReceiverState(destDir, stateDir);
    let raw: string;
    try {
      raw = await readFile(state.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn('transfer: cannot read receiver state, starting over', { file: state.file, error: String(err) });
      return state;
    }
    try {
      const parsed = JSON.parse(raw) as StateFile;
      if (parsed.version !== 1 || !Array.isArray(parsed.verified)) throw new Error('unknown format');
      for (const v of parsed.verified) {
        const path = safeRelativePath(v.path);
        if (typeof v.size !== 'number' || typeof v.mtimeMs !== 'number' || typeof v.checksum !== 'string') throw new Error(`bad entry ${path}`);
        const st = await stat(join(destDir, path)).catch(() => undefined);
        if (st?.isFile() && st.size === v.size) state.verified.set(path, { path, size: v.size, mtimeMs: v.mtimeMs, checksum: v.checksum });
      }
    } catch (err) {
      log.warn('transfer: receiver state is unusable, starting over', { file: state.file, error: String(err) });
      state.verified.clear();
    }
    return state;
  }

  list(): VerifiedFile[] {
    return [...this.verified.values()];
  }

  get(path: string): VerifiedFile | undefined {
    return this.verified.get(path);
  }

  /** Records files whose data, rename and directory entry are already durable. */
  add(files: readonly VerifiedFile[]): void {
    for (const f of files) this.verified.set(f.path, f);
  }

  forget(path: string): void {
    this.verified.delete(path);
  }

  async save(): Promise<void> {
    const body: StateFile = { version: 1, verified: this.list() };
    await writeFileDurably(this.file, JSON.stringify(body));
  }

  async remove(): Promise<void> {
    await unlinkDurably(this.file);
  }
}
