// A transfer's progress as an INFO line every 30 s, so a log alone shows a long copy moving (or stuck).
import { log } from '../log.js';
import type { SeedProgress } from './seed-store.js';

export const PROGRESS_LOG_INTERVAL_MS = 30_000;

const mib = (n: number) => Math.round((n / 1048576) * 10) / 10;

/** One progress line's fields: MiB done/total, percent, MiB/s, ETA seconds, files. */
export function progressFields(p: SeedProgress): Record<string, unknown> {
  return {
    doneMiB: mib(p.bytesDone),
    totalMiB: p.bytesTotal === null ? null : mib(p.bytesTotal),
    percent: p.bytesTotal ? Math.round((1000 * p.bytesDone) / p.bytesTotal) / 10 : null,
    rateMiBps: p.rateBytesPerSec === null ? null : mib(p.rateBytesPerSec),
    etaSeconds: p.etaSeconds === null ? null : Math.round(p.etaSeconds),
    files: p.filesTotal === null ? p.filesDone : `${p.filesDone ?? 0}/${p.filesTotal}`,
    currentFile: p.currentFile,
    ...(p.wire ? { compression: p.wire.compression, wireMiB: mib(p.wire.wireBytes), wireRatio: p.wire.wireBytes > 0 ? Math.round((p.wire.dataBytes / p.wire.wireBytes) * 100) / 100 : null } : {}),
  };
}

/**
 * Returns what to call with every progress update of one step: it logs when `everyMs` has passed since
 * the step's first update or the last line (the first line comes `everyMs` into the transfer).
 */
export function progressLogger(seedId: string, role: string, opts: { everyMs?: number; now?: () => number } = {}): (p: SeedProgress) => void {
  const everyMs = opts.everyMs ?? PROGRESS_LOG_INTERVAL_MS;
  const now = opts.now ?? Date.now;
  let last: number | undefined;
  return (p) => {
    const t = now();
    if (last === undefined) last = t;
    if (t - last < everyMs) return;
    last = t;
    log.info(`seed ${role === 'source' ? 'sending' : 'receiving'}: ${mib(p.bytesDone)} MiB${p.bytesTotal ? ` of ${mib(p.bytesTotal)} MiB` : ''}`, { seed: seedId, ...progressFields(p) });
  };
}
