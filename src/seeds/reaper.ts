// Finds and kills what seed steps left running. Every process a seed step starts carries
// ORCHESTRATOR_AGENT_TAG=seed:<stateDir hash>:<seed id> in its environment (inherited by its children),
// so after a kill -9 the next agent finds them in /proc even when they left their process group.
// The StateDir hash keeps two agents on one host (and the two sides of a seed, which share its id)
// from reaping each other's processes.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { killProcessGroup, processGroupAlive, TAG_ENV } from '../process-runner.js';
import { log } from '../log.js';

export function stateDirKey(stateDir: string): string {
  return createHash('sha256').update(resolve(stateDir)).digest('hex').slice(0, 12);
}

export function seedTag(stateDir: string, seedId: string): string {
  return `seed:${stateDirKey(stateDir)}:${seedId}`;
}

/**
 * Tag suffix for commands that start a daemon (MySQL): the daemon inherits the tag but runs in a group
 * of its own, which must survive; only the command's own recorded group is reaped.
 */
export const DAEMON_STARTER = ':start';

export interface TaggedProcess {
  pid: number;
  pgid: number;
  tag: string;
}

function pgidOf(pid: string): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z') return undefined; // a zombie holds nothing; its parent or init reaps it
    return Number(fields[2]);
  } catch {
    return undefined;
  }
}

/** Live processes whose tag satisfies `match`. Processes we may not read are skipped. */
export function findTaggedProcesses(match: (tag: string) => boolean): TaggedProcess[] {
  const found: TaggedProcess[] = [];
  const prefix = `${TAG_ENV}=`;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${name}/environ`, 'latin1');
    } catch {
      continue;
    }
    const entry = environ.split('\0').find((e) => e.startsWith(prefix));
    if (!entry) continue;
    const tag = entry.slice(prefix.length);
    if (!match(tag)) continue;
    const pgid = pgidOf(name);
    if (pgid !== undefined) found.push({ pid: Number(name), pgid, tag });
  }
  return found;
}

/** Processes of one seed of this StateDir, or (seedId undefined) of every seed of this StateDir. */
export function seedProcesses(stateDir: string, seedId?: string): TaggedProcess[] {
  const key = `seed:${stateDirKey(stateDir)}:`;
  return findTaggedProcesses((tag) => (seedId === undefined ? tag.startsWith(key) : tag === key + seedId || tag === key + seedId + DAEMON_STARTER));
}

/**
 * Kills every process group holding a tagged process (SIGTERM, then SIGKILL after graceMs), then any
 * tagged process that had moved to a group of its own. Recorded pgids are killed only while a member
 * still carries our tag: a pgid may have been reused by an unrelated process since.
 */
export async function reapSeedProcesses(stateDir: string, seedId: string | undefined, recordedPgids: readonly number[] = [], graceMs = 3000): Promise<number[]> {
  const tagged = seedProcesses(stateDir, seedId);
  const recorded = new Set(recordedPgids);
  const daemonSide = (p: TaggedProcess) => p.tag.endsWith(DAEMON_STARTER);
  const groups = new Set(tagged.filter((p) => !daemonSide(p) || recorded.has(p.pgid)).map((p) => p.pgid));
  for (const pgid of recordedPgids) {
    if (!groups.has(pgid) && processGroupAlive(pgid)) {
      log.debug('recorded process group no longer carries our tag; left alone', { pgid });
    }
  }
  const reaped = [...groups].filter((pgid) => pgid > 1 && pgid !== process.pid);
  if (reaped.length > 0) log.warn('killing process groups left by seed steps', { seedId: seedId ?? '*', pgids: reaped });
  await Promise.all(reaped.map((pgid) => killProcessGroup(pgid, graceMs)));
  // Stragglers: tagged processes that setsid()'d away from the group we knew.
  for (const p of seedProcesses(stateDir, seedId)) {
    if (daemonSide(p)) continue;
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  return reaped;
}
