// While a backup or dump stream runs, every socket and pipe read hands the agent a fresh buffer (64 KiB each,
// hundreds of MB per seed). V8 counts that memory against the old generation's limit, which it sets from the
// agent's small live heap (~12 MB) with ~16 MB of room: measured on the backup bench, each agent ran a full
// mark-compact every 15-25 MB streamed (20-40 per 550 MiB seed, the largest item in the agents' CPU profiles).
// A larger heap growing factor for the length of a stream lets the cheap young-generation collections free
// those buffers instead (2-6 mark-compacts per seed, a quarter less CPU in both agents). The agent's own
// setting comes back when the last stream ends, so the idle agent's memory does not change.
import { setFlagsFromString } from 'node:v8';

/** V8's heap growing factor while a stream runs: the old generation may grow to 4x its live size before a full collection. */
const STREAMING_GROWING_PERCENT = 300;

let holders = 0;

/** Raises the heap growing factor until the returned release is called (once; nested holds are counted). */
export function holdStreamHeapGrowth(): () => void {
  if (holders++ === 0) setFlagsFromString(`--heap-growing-percent=${STREAMING_GROWING_PERCENT}`);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    // 0 is V8's own default: the factor it chooses from the collector's speed.
    if (--holders === 0) setFlagsFromString('--heap-growing-percent=0');
  };
}

/** How many streams hold the larger factor now (for tests and the debug log). */
export function streamHeapGrowthHolders(): number {
  return holders;
}
