// Writes one received file into its staging file, in order from where it starts (0, or a resumed file's last
// verified chunk), a few positioned writes in flight so a slow one does not stall the socket.
//
// Direct (O_DIRECT) where the destination's filesystem takes it: the bytes are copied into aligned memory
// (aligned-arena.ts) and go from there to the disk without the page cache. That spares the kernel's copy into
// page cache pages (on a VM whose free memory was handed back to the host, each fresh page also faults on the
// host: about 2 CPU s per GiB here) and the final sync's writeback, and leaves the target's page cache alone.
// The last, partial block of a file is written padded with zeros, and the file truncated to its size after.
// Buffered (through the page cache, as before) when the filesystem refuses O_DIRECT, or a resumed file starts
// off a block boundary.
import { constants as fsConstants } from 'node:fs';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { log } from '../log.js';
import { ALIGN, AlignedArena, alignDown, alignUp, type Extent } from './aligned-arena.js';

/** Writes of about this size, this many at a time per file. */
export const WRITE_BYTES = 1024 * 1024;
export const WRITES_IN_FLIGHT = 3;
/** The arena of one receive: the file being received holds up to WRITES_IN_FLIGHT + 1 extents, finishing ones a last one each. */
export const ARENA_BYTES = 16 * 1024 * 1024;

/**
 * An arena for direct writes into dir, or undefined when its filesystem refuses them: one aligned block is
 * written with O_DIRECT to a probe file there (and the probe removed), so a refusal shows before any file.
 */
export async function directWriteArena(dir: string): Promise<AlignedArena | undefined> {
  const probe = join(dir, `.direct-write-probe-${process.pid}`);
  let block: Extent | undefined;
  try {
    // (No WebAssembly under node --jitless: then no aligned memory either.)
    const arena = new AlignedArena(ARENA_BYTES);
    block = await arena.take(ALIGN);
    const fh = await open(probe, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC | fsConstants.O_DIRECT, 0o600);
    try {
      await fh.write(block.buf, 0, ALIGN, 0);
    } finally {
      await fh.close();
    }
    return arena;
  } catch (err) {
    log.info('transfer: direct writes refused here; received files go through the page cache', { dir, error: (err as NodeJS.ErrnoException).code ?? String(err) });
    return undefined;
  } finally {
    block?.release();
    await unlink(probe).catch(() => undefined);
  }
}

/** pwritev until every byte is written (a short write goes on where it stopped). */
export async function writeAllAt(fh: FileHandle, buffers: Buffer[], position: number): Promise<void> {
  let at = position;
  let bufs = buffers;
  while (bufs.length) {
    const { bytesWritten } = await fh.writev(bufs, at);
    at += bytesWritten;
    let skip = bytesWritten;
    while (bufs.length && skip >= bufs[0]!.length) {
      skip -= bufs[0]!.length;
      bufs = bufs.slice(1);
    }
    if (skip > 0) bufs = [bufs[0]!.subarray(skip), ...bufs.slice(1)];
  }
}

export class FileWriter {
  /** The staging file, opened in the background (the stream goes on meanwhile). */
  readonly opened: Promise<FileHandle>;
  readonly direct: boolean;
  /** File offset of the next byte pushed. */
  private position: number;
  private readonly inflight: Promise<void>[] = [];
  // Buffered: the pushed buffers not yet written.
  private batch: Buffer[] = [];
  private batchBytes = 0;
  // Direct: the extent being filled, where in the file it starts, and how much it holds.
  private extent: Extent | undefined;
  private extentStart: number;
  private fill = 0;
  /** The write the next one overlaps (its padded last block), which the next one must follow. */
  private follow: Promise<void> | undefined;
  private padded = false;

  /**
   * path is created (or, resuming at start > 0, truncated there). arena: direct writes when given and start is
   * block-aligned. track: the receive's tracker of background I/O (a failure waits for it before closing).
   */
  constructor(
    path: string,
    start: number,
    private readonly size: number,
    private readonly arena: AlignedArena | undefined,
    private readonly track: <T>(p: Promise<T>) => Promise<T>,
    /** The positioned write itself (tests slow one down). */
    private readonly writeAt: typeof writeAllAt = writeAllAt,
  ) {
    this.direct = arena !== undefined && start % ALIGN === 0;
    this.position = start;
    this.extentStart = start;
    const flags = (start > 0 ? fsConstants.O_RDWR : fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC) | (this.direct ? fsConstants.O_DIRECT : 0);
    this.opened = track(
      (async () => {
        const fh = await open(path, flags, 0o600);
        if (start > 0) await fh.truncate(start).catch(async (err: unknown) => {
          await fh.close().catch(() => undefined);
          throw err;
        });
        return fh;
      })(),
    );
  }

  /** Takes the next bytes of the file. Buffered, it keeps data (do not reuse it); direct, it copies it. */
  async push(data: Buffer): Promise<void> {
    this.position += data.length;
    if (this.direct) return this.copyIn(data);
    this.batch.push(data);
    this.batchBytes += data.length;
    if (this.batchBytes >= WRITE_BYTES) await this.flush();
  }

  /** Starts writing everything pushed so far (at a chunk's end, before the chunk is recorded). */
  async flush(): Promise<void> {
    if (this.direct) {
      if (this.fill > 0) await this.writeExtent(true);
      return;
    }
    if (this.batchBytes === 0) return;
    const buffers = this.batch;
    const at = this.position - this.batchBytes;
    this.batch = [];
    this.batchBytes = 0;
    await this.issue(async () => this.writeAt(await this.opened, buffers, at));
  }

  /** Resolves when every write started so far is done. */
  written(): Promise<void> {
    return Promise.all(this.inflight).then(() => undefined);
  }

  /** The file's end: writes the rest, waits for every write, and cuts a padded last block back to the size. */
  async finish(): Promise<void> {
    if (this.direct && this.fill > 0) await this.writeExtent(false);
    else await this.flush();
    await this.written();
    if (this.padded) await (await this.opened).truncate(this.size);
  }

  private async copyIn(data: Buffer): Promise<void> {
    let rest = data;
    while (rest.length > 0) {
      if (!this.extent) this.extent = await this.arena!.take(Math.min(WRITE_BYTES, alignUp(this.size - this.extentStart)));
      const n = Math.min(rest.length, this.extent.buf.length - this.fill);
      rest.copy(this.extent.buf, this.fill, 0, n);
      this.fill += n;
      rest = rest.subarray(n);
      if (this.fill === this.extent.buf.length) await this.writeExtent(true);
    }
  }

  /**
   * Writes the extent being filled, padded to a whole block. With more to come after a partial block (a
   * chunk's end off a block boundary), that block's bytes start the next extent: written again, after this
   * write, with what follows them.
   */
  private async writeExtent(more: boolean): Promise<void> {
    const extent = this.extent!;
    const start = this.extentStart;
    const fill = this.fill;
    const length = alignUp(fill);
    if (length > fill) {
      extent.buf.fill(0, fill, length);
      this.padded = true;
    }
    const partial = more ? fill - alignDown(fill) : 0;
    const carried = partial > 0 ? Buffer.from(extent.buf.subarray(fill - partial, fill)) : undefined;
    const after = this.follow;
    this.extent = undefined;
    this.fill = 0;
    this.extentStart = start + fill - partial;
    const write = await this.issue(async () => {
      try {
        await after;
        await this.writeAt(await this.opened, [extent.buf.subarray(0, length)], start);
      } finally {
        extent.release();
      }
    }).catch((err: unknown) => {
      extent.release(); // an earlier write failed: this one never started
      throw err;
    });
    this.follow = carried ? write.done : undefined;
    if (carried) await this.copyIn(carried);
  }

  /** Starts a write once fewer than WRITES_IN_FLIGHT run (the oldest's failure throws here); resolves once started. */
  private async issue(run: () => Promise<void>): Promise<{ done: Promise<void> }> {
    if (this.inflight.length >= WRITES_IN_FLIGHT) await this.inflight.shift();
    const done = this.track(run());
    done.catch(() => undefined); // awaited through the in-flight list; a failure fails the file there
    this.inflight.push(done);
    return { done };
  }
}
