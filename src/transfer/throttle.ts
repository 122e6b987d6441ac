// Bandwidth limit: a token bucket refilled at the configured rate. The clock and sleep are injectable so the
// limiter is tested without timing.
import { clampDelay } from '../timers.js';

export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realClock: Clock = {
  now: () => performance.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const t = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, clampDelay(ms));
      const onAbort = () => {
        clearTimeout(t);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

export class TokenBucket {
  private tokens: number;
  private last: number;
  readonly bytesPerSec: number;
  readonly burstBytes: number;

  /** bytesPerSec > 0; the bucket starts full and holds at most burstBytes (default: 1/4 s of traffic). */
  constructor(bytesPerSec: number, private readonly clock: Clock = realClock, burstBytes?: number) {
    if (!(bytesPerSec > 0)) throw new RangeError('bytesPerSec must be positive');
    this.bytesPerSec = bytesPerSec;
    this.burstBytes = Math.max(1, burstBytes ?? Math.floor(bytesPerSec / 4));
    this.tokens = this.burstBytes;
    this.last = clock.now();
  }

  private refill(): void {
    const now = this.clock.now();
    this.tokens = Math.min(this.burstBytes, this.tokens + ((now - this.last) * this.bytesPerSec) / 1000);
    this.last = now;
  }

  /** How long take(n) would wait now, in ms (0 when the tokens are there). */
  delayFor(n: number): number {
    this.refill();
    return this.tokens >= n ? 0 : ((n - this.tokens) * 1000) / this.bytesPerSec;
  }

  /**
   * Waits until n bytes may pass. A request larger than the burst is let through once the bucket is full and
   * leaves it in debt, so big chunks still average out to the rate.
   */
  async take(n: number, signal?: AbortSignal): Promise<void> {
    for (;;) {
      this.refill();
      const need = Math.min(n, this.burstBytes);
      if (this.tokens >= need) {
        this.tokens -= n;
        return;
      }
      await this.clock.sleep(((need - this.tokens) * 1000) / this.bytesPerSec, signal);
    }
  }
}

/** A limiter for MB/s (10^6 bytes) from configuration; undefined when unlimited. */
export function bandwidthLimiter(mbps: number | undefined, clock: Clock = realClock): TokenBucket | undefined {
  return mbps && mbps > 0 ? new TokenBucket(mbps * 1_000_000, clock) : undefined;
}
