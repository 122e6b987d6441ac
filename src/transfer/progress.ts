// Progress of one transfer as both sides see it: bytes and files done against the totals, rate, ETA and the
// file in flight. Callbacks are throttled; the final state is always reported.
import type { Clock } from './throttle.js';
import { realClock } from './throttle.js';

/** A session's rate is an estimate worth an ETA only after this long. */
export const ETA_AFTER_MS = 3000;

/** What the sender's data cost on the wire in this session: the codec, the data bytes sent and their bytes on the wire. */
export interface WireStats {
  compression: string | null;
  dataBytes: number;
  wireBytes: number;
}

export interface TransferProgress {
  bytesDone: number;
  bytesTotal: number;
  filesDone: number;
  filesTotal: number;
  currentFile: string | null;
  /** Bytes per second moved in this session (already verified bytes excluded). */
  rateBytesPerSec: number;
  /** Seconds left at the current rate; null until a rate is known. */
  etaSeconds: number | null;
  /** The sending side only: compression and bytes on the wire (absent on the receiving side). */
  wire?: WireStats;
}

export type ProgressListener = (p: TransferProgress) => void;

export class ProgressTracker {
  private bytesDone = 0;
  private filesDone = 0;
  private sessionBytes = 0;
  private currentFile: string | null = null;
  private readonly started: number;
  private lastEmit = -Infinity;
  // The rate over a sliding window of samples, so a stall shows quickly.
  private samples: Array<{ t: number; bytes: number }> = [];
  private wire: (() => WireStats) | undefined;

  constructor(
    private readonly bytesTotal: number,
    private readonly filesTotal: number,
    private readonly listener: ProgressListener | undefined,
    private readonly intervalMs = 250,
    private readonly clock: Clock = realClock,
  ) {
    this.started = clock.now();
  }

  /** Files (and their bytes) already present before this session, e.g. verified in an earlier attempt. */
  alreadyDone(files: number, bytes: number): void {
    this.filesDone += files;
    this.bytesDone += bytes;
  }

  /** The sender's wire figures, read with every report. */
  reportWire(stats: () => WireStats): void {
    this.wire = stats;
  }

  fileStarted(path: string): void {
    this.currentFile = path;
    this.maybeEmit();
  }

  bytes(n: number): void {
    this.bytesDone += n;
    this.sessionBytes += n;
    this.maybeEmit();
  }

  fileDone(): void {
    this.filesDone += 1;
    this.maybeEmit();
  }

  snapshot(): TransferProgress {
    const now = this.clock.now();
    this.samples.push({ t: now, bytes: this.sessionBytes });
    while (this.samples.length > 2 && now - this.samples[0]!.t > 5000) this.samples.shift();
    const first = this.samples[0]!;
    const windowMs = now - first.t;
    const rate = windowMs > 0 ? ((this.sessionBytes - first.bytes) * 1000) / windowMs : 0;
    const overallMs = now - this.started;
    const rateBytesPerSec = Math.round(windowMs >= 1000 || overallMs <= 0 ? rate : (this.sessionBytes * 1000) / overallMs);
    const left = Math.max(0, this.bytesTotal - this.bytesDone);
    return {
      bytesDone: this.bytesDone,
      bytesTotal: this.bytesTotal,
      filesDone: this.filesDone,
      filesTotal: this.filesTotal,
      currentFile: this.currentFile,
      rateBytesPerSec,
      // No ETA from the first seconds' rate (a connection's first bytes say "34 h" or "2 s"): unknown until then.
      etaSeconds: left === 0 ? 0 : rateBytesPerSec > 0 && overallMs >= ETA_AFTER_MS ? Math.round((left / rateBytesPerSec) * 10) / 10 : null,
      ...(this.wire ? { wire: this.wire() } : {}),
    };
  }

  private maybeEmit(): void {
    if (!this.listener) return;
    const now = this.clock.now();
    if (now - this.lastEmit < this.intervalMs) return;
    this.lastEmit = now;
    this.listener(this.snapshot());
  }

  /** Reports the final state regardless of the interval. */
  finish(): TransferProgress {
    this.currentFile = null;
    const p = this.snapshot();
    this.listener?.(p);
    return p;
  }
}
