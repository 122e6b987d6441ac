// Disk facts without spawning du or df: a directory walk for usage, statfs for free space.
import { lstat, opendir, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentError } from '../errors.js';

/**
 * Apparent size in bytes of everything under path, as `du -sb` reports it (files, directories and
 * symlinks themselves, symlinks not followed, hard links counted once).
 */
export async function diskUsage(path: string, signal?: AbortSignal): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  const visit = async (p: string): Promise<void> => {
    signal?.throwIfAborted();
    const st = await lstat(p, { bigint: true });
    if (st.nlink > 1n && !st.isDirectory()) {
      const key = `${st.dev}:${st.ino}`;
      if (seen.has(key)) return;
      seen.add(key);
    }
    total += Number(st.size);
    if (st.isDirectory()) {
      const dir = await opendir(p);
      for await (const entry of dir) await visit(join(p, entry.name));
    }
  };
  try {
    await visit(path);
  } catch (err) {
    if (err instanceof AgentError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.name === 'AbortError') throw new AgentError('aborted', `disk usage of ${path} was aborted`);
    throw new AgentError(e.code === 'ENOENT' ? 'not_found' : 'io', `cannot measure disk usage of ${path}: ${e.message}`);
  }
  return total;
}

/** Bytes available to unprivileged users on the filesystem holding path (df's "Available"). */
export async function availableSpace(path: string): Promise<number> {
  try {
    const st = await statfs(path, { bigint: true });
    return Number(st.bavail * st.bsize);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new AgentError(e.code === 'ENOENT' ? 'not_found' : 'io', `cannot read free space of ${path}: ${e.message}`);
  }
}
