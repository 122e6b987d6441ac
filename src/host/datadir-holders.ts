// Who is using a directory, seen by the agent itself rather than through a configured status command:
// processes with a file open under it (/proc/PID/fd), with their working directory in it (/proc/PID/cwd),
// and POSIX/flock/OFD locks on its top-level files such as InnoDB's ibdata1 (/proc/locks, by device and
// inode, so a server in another mount namespace that sees the directory under another path is found too).
// This module only reads.
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentError } from '../errors.js';
import { log } from '../log.js';

export interface Holder {
  pid: number;
  /** The process's command line (arguments joined by spaces, cut at 300 characters), or its comm name. */
  command: string;
  /** Paths under the directory it has open (the first 5). */
  open: string[];
  /** Its working directory, when under the directory. */
  cwd?: string;
  /** Files of the directory it holds a lock on (ibdata1: InnoDB's lock). */
  locked: string[];
}

export interface HolderScan {
  holders: Holder[];
  /** Processes whose fds could not be read (not running as root): only their locks were seen. */
  uninspected: number;
}

export interface HolderOptions {
  /** Pids not to report (the agent leaves itself out: its own work is sequenced by itself). */
  excludePids?: number[];
  /** Where /proc is (tests of the parsing only). */
  procDir?: string;
}

function isUnder(path: string, dir: string): boolean {
  const clean = path.replace(/ \(deleted\)$/, '');
  return clean === dir || clean.startsWith(dir === '/' ? '/' : `${dir}/`);
}

/** Major and minor of a device number as glibc encodes it (what Node's stat returns). */
function majorMinor(dev: bigint): [number, number] {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return [Number(major), Number(minor)];
}

interface LockEntry {
  pid: number;
  major: number;
  minor: number;
  inode: bigint;
  kind: string;
}

/** Parses /proc/locks: "1: POSIX  ADVISORY  WRITE 12051 fe:00:2147666 0 EOF" (waiters carry "->"). */
export function parseProcLocks(text: string): LockEntry[] {
  const entries: LockEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^\d+:\s+(?:->\s+)?(\S+)\s+\S+\s+\S+\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/i.exec(line);
    if (!m) continue;
    entries.push({ kind: m[1], pid: Number(m[2]), major: parseInt(m[3], 16), minor: parseInt(m[4], 16), inode: BigInt(m[5]) });
  }
  return entries;
}

async function commandLine(proc: string, pid: number): Promise<string> {
  try {
    const raw = await readFile(join(proc, String(pid), 'cmdline'), 'utf8');
    const text = raw.replace(/\0+$/, '').split('\0').join(' ').trim();
    if (text !== '') return text.length > 300 ? `${text.slice(0, 300)}...` : text;
  } catch {
    /* gone, or a kernel thread */
  }
  try {
    return `[${(await readFile(join(proc, String(pid), 'comm'), 'utf8')).trim()}]`;
  } catch {
    return '(exited)';
  }
}

/** The files directly in dir whose locks count (ibdata1, aria_log_control, ...), by device and inode. */
async function lockableFiles(dir: string): Promise<Map<string, string>> {
  const byKey = new Map<string, string>();
  let names: string[] = [];
  try {
    names = await readdir(dir);
  } catch {
    return byKey;
  }
  for (const name of names.includes('ibdata1') ? names : [...names, 'ibdata1']) {
    try {
      const st = await lstat(join(dir, name), { bigint: true });
      if (!st.isFile()) continue;
      const [major, minor] = majorMinor(st.dev);
      byKey.set(`${major}:${minor}:${st.ino}`, join(dir, name));
      // btrfs subvolumes report their own anonymous device to stat while /proc/locks shows the
      // filesystem's: for anonymous devices (major 0) the inode alone decides (a false match only refuses).
      if (major === 0) byKey.set(`0:*:${st.ino}`, join(dir, name));
    } catch {
      /* vanished or unreadable: nothing to match */
    }
  }
  return byKey;
}

/**
 * Every process (but the excluded ones) that has a file open under dir, its working directory in dir, or a
 * lock on a file directly in dir. dir must be a real path (symlinks resolved), as /proc shows real paths.
 */
export async function findHolders(dir: string, opts: HolderOptions = {}): Promise<HolderScan> {
  const proc = opts.procDir ?? '/proc';
  const exclude = new Set(opts.excludePids ?? []);
  const found = new Map<number, Holder>();
  const note = (pid: number, how: 'open' | 'cwd' | 'lock', path: string) => {
    let h = found.get(pid);
    if (!h) found.set(pid, (h = { pid, command: '', open: [], locked: [] }));
    if (how === 'cwd') h.cwd = path;
    const list = how === 'open' ? h.open : h.locked;
    if (how !== 'cwd' && list.length < 5 && !list.includes(path)) list.push(path);
  };

  let uninspected = 0;
  const pids = (await readdir(proc)).filter((n) => /^\d+$/.test(n)).map(Number);
  for (const pid of pids) {
    if (exclude.has(pid)) continue;
    const base = join(proc, String(pid));
    try {
      const cwd = await readlink(join(base, 'cwd'));
      if (isUnder(cwd, dir)) note(pid, 'cwd', cwd);
    } catch {
      /* gone, or not ours to read */
    }
    let fds: string[];
    try {
      fds = await readdir(join(base, 'fd'));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') uninspected++;
      continue;
    }
    for (const fd of fds) {
      try {
        const target = await readlink(join(base, 'fd', fd));
        if (target.startsWith('/') && isUnder(target, dir)) note(pid, 'open', target.replace(/ \(deleted\)$/, ''));
      } catch {
        /* closed meanwhile */
      }
    }
  }

  const files = await lockableFiles(dir);
  let locks: LockEntry[] = [];
  try {
    locks = parseProcLocks(await readFile(join(proc, 'locks'), 'utf8'));
  } catch {
    /* no /proc/locks: the fd scan stands alone */
  }
  for (const lock of locks) {
    const path = files.get(`${lock.major}:${lock.minor}:${lock.inode}`) ?? (lock.major === 0 ? files.get(`0:*:${lock.inode}`) : undefined);
    if (path === undefined) continue;
    // OFD locks show pid -1: the fd scan names whoever has that file open.
    if (lock.pid > 0 && !exclude.has(lock.pid)) note(lock.pid, 'lock', path);
    else if (lock.pid <= 0 && ![...found.values()].some((h) => h.open.includes(path))) note(0, 'lock', path);
  }

  const holders = [...found.values()].sort((a, b) => a.pid - b.pid);
  // ibdata1 (InnoDB's lock) first, the rest by name, so the message reads the same every time.
  const byImportance = (x: string, y: string) => Number(y.endsWith('/ibdata1')) - Number(x.endsWith('/ibdata1')) || x.localeCompare(y);
  for (const h of holders) h.locked.sort(byImportance);
  for (const h of holders) h.command = h.pid > 0 ? await commandLine(proc, h.pid) : '(an open file description lock; owner not visible)';
  return { holders, uninspected };
}

/** One sentence per holder: "pid 123 (/usr/sbin/mariadbd --datadir=...) has open ... and locks ...". */
export function describeHolder(h: Holder): string {
  const parts: string[] = [];
  if (h.locked.length > 0) parts.push(`locks ${h.locked.join(', ')}`);
  if (h.open.length > 0) parts.push(`has ${h.open.join(', ')}${h.open.length === 5 ? ', ...' : ''} open`);
  if (h.cwd !== undefined) parts.push(`works in ${h.cwd}`);
  return `pid ${h.pid} (${h.command}) ${parts.join(', ')}`;
}

/**
 * Refuses (409) when any process but the agent uses dir, naming each holder (pid and command line) and what to
 * do. `action` says what was about to happen ("purge the datadir /data/mysql").
 */
export async function ensureNoHolders(dir: string, action: string, hint: string, opts: HolderOptions = {}): Promise<void> {
  const { holders, uninspected } = await findHolders(dir, { ...opts, excludePids: [process.pid, ...(opts.excludePids ?? [])] });
  if (uninspected > 0) {
    log.warn('some processes could not be inspected for open files (the agent does not run as root); only their locks were checked', { dir, uninspected });
  }
  if (holders.length === 0) return;
  const shown = holders.slice(0, 5).map(describeHolder).join('; ');
  const more = holders.length > 5 ? `; and ${holders.length - 5} more` : '';
  throw new AgentError('conflict', `refusing to ${action}: ${holders.length === 1 ? 'a process uses it' : `${holders.length} processes use it`}: ${shown}${more}`, {
    hint,
    details: { holders: holders.map((h) => ({ pid: h.pid, command: h.command })) },
  });
}
