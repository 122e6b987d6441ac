// Timers that hold for any delay: Node fires a setTimeout above 2^31-1 ms (~24.8 days) after 1 ms, so every
// timer in the agent goes through clampDelay (one timer, capped) or sleep/longTimeout (several in a row).
import { setTimeout as sleepTimer } from 'node:timers/promises';

/** The longest delay setTimeout honours. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** The longest duration a user may give (timeoutSeconds, the timeout keys): 30 days, in seconds. */
export const MAX_DURATION_SECONDS = 30 * 86400;

/** A delay setTimeout honours: 0..MAX_TIMER_MS (NaN and negatives are 0). */
export function clampDelay(ms: number): number {
  if (!(ms > 0)) return 0;
  return Math.min(ms, MAX_TIMER_MS);
}

/** Waits ms (any length, in several timers if needed); rejects with the signal's reason on abort. */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  const until = Date.now() + ms;
  do {
    await sleepTimer(clampDelay(until - Date.now()), undefined, { signal });
  } while (Date.now() < until);
}

/** setTimeout for any delay: re-arms in steps of at most MAX_TIMER_MS. */
export function longTimeout(fn: () => void, ms: number): { clear(): void } {
  const until = Date.now() + ms;
  let timer: NodeJS.Timeout;
  const arm = () => {
    timer = setTimeout(() => (Date.now() >= until ? fn() : arm()), clampDelay(until - Date.now()));
  };
  arm();
  return { clear: () => clearTimeout(timer) };
}
