// Page-aligned memory for direct (O_DIRECT) file writes, which need their buffer's address, offset and length
// aligned to the device's block size. Node cannot tell a Buffer's address, but a WebAssembly.Memory is mapped
// on its own pages, so every view at a multiple of ALIGN into it is aligned. One arena per receive, carved
// first-fit into extents of ALIGN multiples; a take() that does not fit waits for a release (the writes
// holding the memory finish on their own, so the wait ends).

/** Alignment of every extent: the largest logical block size of common devices (and the page size). */
export const ALIGN = 4096;
const wasmPageBytes = 64 * 1024;

export const alignUp = (n: number): number => Math.ceil(n / ALIGN) * ALIGN;
export const alignDown = (n: number): number => Math.floor(n / ALIGN) * ALIGN;

export interface Extent {
  /** A view of the arena, ALIGN-aligned, its length a multiple of ALIGN. */
  buf: Buffer;
  /** Gives the memory back; once only, after every write from buf has finished. */
  release(): void;
}

export class AlignedArena {
  private readonly memory: Buffer;
  /** Free ranges [start, length) in ALIGN units' bytes, sorted by start, never adjacent (coalesced). */
  private free: Array<[number, number]>;
  private readonly waiters: Array<() => void> = [];

  constructor(readonly bytes: number) {
    const pages = Math.ceil(bytes / wasmPageBytes);
    this.memory = Buffer.from(new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer);
    this.free = [[0, pages * wasmPageBytes]];
  }

  /** An extent of at least `bytes` (rounded up to ALIGN, at most the arena), once that much is free in one piece. */
  async take(bytes: number): Promise<Extent> {
    const want = alignUp(Math.max(1, bytes));
    if (want > this.memory.length) throw new RangeError(`an extent of ${want} bytes does not fit an arena of ${this.memory.length}`);
    for (;;) {
      const i = this.free.findIndex(([, len]) => len >= want);
      if (i >= 0) return this.carve(i, want);
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  /** Bytes free now (tests check every extent came back). */
  get freeBytes(): number {
    return this.free.reduce((sum, [, len]) => sum + len, 0);
  }

  private carve(i: number, want: number): Extent {
    const [start, len] = this.free[i]!;
    if (len === want) this.free.splice(i, 1);
    else this.free[i] = [start + want, len - want];
    let released = false;
    return {
      buf: this.memory.subarray(start, start + want),
      release: () => {
        if (released) return;
        released = true;
        this.give(start, want);
      },
    };
  }

  private give(start: number, len: number): void {
    const i = this.free.findIndex(([s]) => s > start);
    const at = i < 0 ? this.free.length : i;
    this.free.splice(at, 0, [start, len]);
    // Coalesce with the next range, then the previous one.
    const next = this.free[at + 1];
    if (next && start + len === next[0]) {
      this.free[at] = [start, len + next[1]];
      this.free.splice(at + 1, 1);
    }
    const prev = this.free[at - 1];
    if (prev && prev[0] + prev[1] === start) {
      prev[1] += this.free[at]![1];
      this.free.splice(at, 1);
    }
    // Every waiter looks again: the one that fits takes it, the others wait for the next release.
    for (const w of this.waiters.splice(0)) w();
  }
}
