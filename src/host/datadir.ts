// The MySQL datadir: size, free space, and purging its content before a seed, behind guardrails that
// refuse to empty anything that looks like a system directory.
import { readdir, realpath, rm, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import type { Config } from '../config.js';
import { AgentError } from '../errors.js';
import { runShell } from '../process-runner.js';
import { ensureNoHolders } from './datadir-holders.js';
import { availableSpace, diskUsage } from './disk.js';
import type { DatadirOps } from './interfaces.js';
import { commandOptions } from './mysql-service.js';

const systemDirs = new Set([
  '/', '/usr', '/etc', '/var', '/home', '/root', '/boot', '/bin', '/sbin', '/opt', '/srv', '/tmp',
  '/proc', '/sys', '/dev', '/run', '/mnt', '/media', '/var/lib', '/usr/local', '/var/tmp',
  // Where /bin and /sbin resolve to on a merged-/usr system, and the rest of /usr and /var's standard tree.
  '/usr/bin', '/usr/sbin', '/usr/share', '/usr/include', '/usr/src', '/var/log', '/var/cache', '/var/spool',
  '/var/mail', '/var/opt', '/var/local', '/var/backups',
]);

function isSystemDir(path: string): boolean {
  return systemDirs.has(path) || /^\/lib[^/]*$/.test(path) || /^\/usr\/lib[^/]*$/.test(path);
}

/**
 * The real directory a purge may empty, or an error saying why not. Symlinks are resolved first, so a
 * datadir that is a link to "/" is refused like "/" itself.
 */
export async function checkPurgeTarget(datadir: string): Promise<string> {
  const given = datadir.trim();
  if (given === '') throw new AgentError('forbidden', 'refusing to delete the content of an empty datadir path');
  if (!isAbsolute(given)) {
    throw new AgentError('forbidden', `refusing to delete the content of relative datadir path "${given}"`, {
      hint: 'MySQLDatadirCommand must print an absolute path',
    });
  }
  // Absolute already, so resolve only normalises: "." and ".." segments, repeated and trailing slashes.
  const lexical = resolve(given);
  if (isSystemDir(lexical)) throw new AgentError('forbidden', `refusing to delete the content of system directory ${lexical}`);
  let real: string;
  try {
    real = await realpath(lexical);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new AgentError(e.code === 'ENOENT' ? 'not_found' : 'io', `cannot resolve datadir ${lexical}: ${e.message}`);
  }
  if (isSystemDir(real)) {
    throw new AgentError('forbidden', `refusing to delete the content of ${lexical}: it resolves to system directory ${real}`);
  }
  const st = await stat(real);
  if (!st.isDirectory()) throw new AgentError('forbidden', `refusing to delete the content of ${lexical}: not a directory`);
  return real;
}

/** Refuses (409) while any process has files open in the datadir, works in it, or locks ibdata1. */
function ensureNotHeld(real: string): Promise<void> {
  return ensureNoHolders(real, `purge the datadir ${real}`, 'a server still runs on this datadir although the status command may say it is stopped: ' +
    'stop that process (and fix MySQLServiceStatusCommand if it said stopped), then retry');
}

export class LocalDatadir implements DatadirOps {
  constructor(private readonly config: Config) {}

  diskUsage(path: string, signal?: AbortSignal): Promise<number> {
    return diskUsage(path, signal);
  }

  availableSpace(path: string): Promise<number> {
    return availableSpace(path);
  }

  async ensureNotInUse(datadir: string): Promise<void> {
    let real: string;
    try {
      real = await checkPurgeTarget(datadir);
    } catch (err) {
      if (err instanceof AgentError && err.code === 'not_found') return; // nothing there to use
      throw err;
    }
    await ensureNotHeld(real);
  }

  /**
   * Deletes everything inside the datadir, not the directory itself (its ownership and mode stay), once the
   * agent has seen for itself that no process uses it. MySQLDeleteDatadirContentCommand, when set, runs
   * instead, with the datadir as $1, after the same checks.
   */
  async purge(datadir: string, signal?: AbortSignal): Promise<void> {
    const real = await checkPurgeTarget(datadir);
    await ensureNotHeld(real);
    const command = this.config.MySQLDeleteDatadirContentCommand.trim();
    if (command !== '') {
      await runShell(command, [real], commandOptions(this.config, signal));
      return;
    }
    try {
      for (const name of await readdir(real)) {
        signal?.throwIfAborted();
        // rm does not follow symlinks: a link inside the datadir is removed, not its target.
        await rm(join(real, name), { recursive: true, force: true });
      }
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.name === 'AbortError') throw new AgentError('aborted', `purging ${real} was aborted`);
      throw new AgentError('io', `cannot delete the content of ${real}: ${e.message}`);
    }
  }
}
