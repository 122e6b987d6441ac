// Disk facts without spawning du or df: a directory walk for usage, statfs for free space.
import { lstat, opendir, statfs } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { AgentError } from '../errors.js';

interface Walk {
  root: string;
  /** Aborted when a change (an umount) needs the tree: the walk lets go and starts again after it. */
  yieldTo: AbortController;
  /** Settles once the walk has closed every directory it opened. */
  settled: Promise<void>;
}

/** Size walks running now, and the paths a change has asked them to keep off. */
const walks = new Set<Walk>();
const gates = new Set<{ root: string; released: Promise<void> }>();

function overlaps(a: string, b: string): boolean {
  return a === b || a === '/' || b === '/' || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}

/**
 * Runs work (an umount) while no size walk holds a directory open under or above path: walks in progress
 * are cancelled and awaited (each starts again once work is done), and walks that would start meanwhile
 * wait. So our own /api/mount polling can never make an umount fail with EBUSY.
 */
export async function withoutWalks<T>(path: string, work: () => Promise<T>): Promise<T> {
  const root = resolve(path);
  let release!: () => void;
  const gate = { root, released: new Promise<void>((r) => (release = r)) };
  gates.add(gate);
  try {
    const inTheWay = [...walks].filter((w) => overlaps(w.root, root));
    for (const w of inTheWay) w.yieldTo.abort();
    await Promise.all(inTheWay.map((w) => w.settled));
    return await work();
  } finally {
    gates.delete(gate);
    release();
  }
}

async function gatesClear(root: string): Promise<void> {
  for (;;) {
    const blocking = [...gates].filter((g) => overlaps(g.root, root));
    if (blocking.length === 0) return;
    await Promise.all(blocking.map((g) => g.released));
  }
}

async function walkSize(path: string, signal: AbortSignal): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  const visit = async (p: string): Promise<void> => {
    signal.throwIfAborted();
    const st = await lstat(p, { bigint: true });
    if (st.nlink > 1n && !st.isDirectory()) {
      const key = `${st.dev}:${st.ino}`;
      if (seen.has(key)) return;
      seen.add(key);
    }
    total += Number(st.size);
    if (st.isDirectory()) {
      // for await closes the directory when a visit throws, before the error leaves this loop.
      const dir = await opendir(p);
      for await (const entry of dir) await visit(join(p, entry.name));
    }
  };
  await visit(path);
  return total;
}

/**
 * Apparent size in bytes of everything under path, as `du -sb` reports it (files, directories and
 * symlinks themselves, symlinks not followed, hard links counted once). A walk gives way to an umount
 * of its tree (withoutWalks) and then starts again, measuring what is there after it.
 */
export async function diskUsage(path: string, signal?: AbortSignal): Promise<number> {
  const root = resolve(path);
  try {
    for (;;) {
      await gatesClear(root);
      signal?.throwIfAborted();
      const yieldTo = new AbortController();
      let settle!: () => void;
      const walk: Walk = { root, yieldTo, settled: new Promise<void>((r) => (settle = r)) };
      walks.add(walk);
      try {
        return await walkSize(path, signal ? AbortSignal.any([signal, yieldTo.signal]) : yieldTo.signal);
      } catch (err) {
        if (yieldTo.signal.aborted && !signal?.aborted) continue;
        throw err;
      } finally {
        walks.delete(walk);
        settle();
      }
    }
  } catch (err) {
    if (err instanceof AgentError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.name === 'AbortError') throw new AgentError('aborted', `disk usage of ${path} was aborted`);
    throw new AgentError(e.code === 'ENOENT' ? 'not_found' : 'io', `cannot measure disk usage of ${path}: ${e.message}`);
  }
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
