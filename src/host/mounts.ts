// What is mounted where (from /proc/self/mountinfo), and ensure-style mount/umount of one mount point:
// mounting is a no-op when the same source is already there, unmounting a no-op when nothing is, and
// mounting over a mount point that holds something else is refused.
import { mkdir, readFile, realpath, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentError } from '../errors.js';
import { runProgram, type RunOptions } from '../process-runner.js';
import { describeHolder, findHolders } from './datadir-holders.js';
import { withoutWalks } from './disk.js';

/** One line of /proc/self/mountinfo (proc(5)), with the octal escapes (\040 etc.) decoded. */
export interface MountEntry {
  /** "major:minor" of the filesystem (for btrfs an anonymous 0:N, not the block device). */
  majorMinor: string;
  /** The directory of the filesystem that is mounted here ("/" or a btrfs subvolume like "/snaps/s1"). */
  root: string;
  mountPoint: string;
  /** Per-mount options ("ro,relatime"). */
  options: string[];
  fsType: string;
  /** The device or other source ("/dev/loop0"). */
  source: string;
  superOptions: string[];
}

function unescapeOctal(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const sep = fields.indexOf('-', 6);
    if (fields.length < 10 || sep < 0 || fields.length < sep + 4) continue;
    entries.push({
      majorMinor: fields[2],
      root: unescapeOctal(fields[3]),
      mountPoint: unescapeOctal(fields[4]),
      options: fields[5].split(','),
      fsType: unescapeOctal(fields[sep + 1]),
      source: unescapeOctal(fields[sep + 2]),
      superOptions: fields[sep + 3].split(','),
    });
  }
  return entries;
}

export async function readMounts(): Promise<MountEntry[]> {
  return parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'));
}

/** The mount visible at path (the last one mounted there: later mounts stack on earlier ones). */
export async function mountAt(path: string): Promise<MountEntry | undefined> {
  const target = resolve(path);
  const matching = (await readMounts()).filter((m) => m.mountPoint === target);
  return matching[matching.length - 1];
}

/** The mount holding path: the one with the longest mount point that contains it. */
export async function mountContaining(path: string): Promise<MountEntry | undefined> {
  const target = resolve(path);
  let best: MountEntry | undefined;
  for (const m of await readMounts()) {
    const inside = m.mountPoint === '/' || target === m.mountPoint || target.startsWith(m.mountPoint + '/');
    if (inside && (!best || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  return best;
}

async function canonicalDevice(device: string): Promise<string> {
  try {
    return await realpath(device);
  } catch {
    return device;
  }
}

/** "major:minor" of a block device node, or undefined if it is not one. */
async function deviceNumbers(device: string): Promise<string | undefined> {
  try {
    const st = await stat(device);
    if (!st.isBlockDevice()) return undefined;
    return `${Math.floor(st.rdev / 256) & 0xfff}:${(st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00)}`;
  } catch {
    return undefined;
  }
}

/**
 * Whether the entry is device (and, for btrfs, subvolume root) mounted. A device is matched by its
 * canonical path or by its device numbers, so /dev/vg/lv matches /dev/mapper/vg-lv and /dev/dm-3.
 */
export async function isSameSource(entry: MountEntry, device: string, root?: string): Promise<boolean> {
  if (root !== undefined && entry.root !== root) return false;
  if ((await canonicalDevice(entry.source)) === (await canonicalDevice(device))) return true;
  const numbers = await deviceNumbers(device);
  return numbers !== undefined && numbers === entry.majorMinor;
}

export interface MountRequest {
  device: string;
  mountPoint: string;
  /** Options besides "ro", e.g. ["nouuid"] for xfs, ["subvol=/snaps/s1"] for btrfs. */
  options: string[];
  /** Passed as -t when known. */
  fsType?: string;
  /** For btrfs: the subvolume root the mount must show ("/snaps/s1"). */
  root?: string;
}

/** Mount device read-only at mountPoint, unless it is already mounted there. */
export async function ensureMounted(req: MountRequest, run: RunOptions): Promise<MountEntry> {
  const mountPoint = resolve(req.mountPoint);
  const current = await mountAt(mountPoint);
  if (current) {
    if (await isSameSource(current, req.device, req.root)) return current;
    const what = current.root === '/' ? current.source : `${current.source}[${current.root}]`;
    throw new AgentError('conflict', `cannot mount ${req.device} at ${mountPoint}: ${what} (${current.fsType}) is already mounted there`, {
      hint: 'unmount it first (/api/umount) and retry',
    });
  }
  await mkdir(mountPoint, { recursive: true }).catch((err: unknown) => {
    throw new AgentError('io', `cannot create mount point ${mountPoint}: ${(err as Error).message}`, {
      hint: 'create SnapshotMountPoint yourself, or check its parent directory',
    });
  });
  const args = ['-o', ['ro', ...req.options].join(',')];
  if (req.fsType) args.push('-t', req.fsType);
  args.push(req.device, mountPoint);
  await runProgram('mount', args, run);
  const mounted = await mountAt(mountPoint);
  if (!mounted) {
    throw new AgentError('command_failed', `mount ${req.device} ${mountPoint} exited 0 but nothing is mounted at ${mountPoint}`);
  }
  return mounted;
}

/** How long an umount that finds the mount busy is retried before it fails naming who holds it. */
export const UNMOUNT_BUSY_RETRY_MS = 5000;

function isBusy(err: unknown): boolean {
  const details = err instanceof AgentError ? err.details : undefined;
  const text = `${(err as Error).message} ${typeof details?.stderr === 'string' ? details.stderr : ''}`;
  return /target is busy|device is busy|EBUSY/i.test(text);
}

/** "pid 123 (rsync -a /mnt/snap /x) has /mnt/snap/a open; pid 456 (bash) works in /mnt/snap". */
async function holdersOf(target: string): Promise<string> {
  const { holders } = await findHolders(target).catch(() => ({ holders: [] }));
  if (holders.length === 0) return 'no process holds a file in it any more (try again)';
  return holders
    .slice(0, 5)
    .map((h) => describeHolder(h.pid === process.pid ? { ...h, command: `this agent: ${h.command}` } : h))
    .join('; ');
}

/**
 * One unmount of target (once: `umount TARGET` or the operator's UnmountCommand), retried while the mount
 * is busy for busyRetryMs; then the error names the processes that hold it.
 */
export async function unmountOnce(target: string, once: () => Promise<unknown>, run: RunOptions, busyRetryMs = UNMOUNT_BUSY_RETRY_MS): Promise<void> {
  const deadline = Date.now() + busyRetryMs;
  let pause = 50;
  for (;;) {
    try {
      await once();
      return;
    } catch (err) {
      const busy = isBusy(err);
      if (busy && Date.now() < deadline) {
        await sleep(Math.min(pause, Math.max(0, deadline - Date.now())), undefined, { signal: run.signal }).catch(() => {
          throw new AgentError('aborted', `unmounting ${target} was aborted while it was busy`);
        });
        pause = Math.min(pause * 2, 500);
        continue;
      }
      throw new AgentError('command_failed', `cannot unmount ${target}: ${(err as Error).message}${busy ? `; still busy after ${busyRetryMs / 1000}s: ${await holdersOf(target)}` : ''}`, {
        hint: busy ? 'stop those processes (or let them finish), then call /api/umount again' : undefined,
        details: err instanceof AgentError ? err.details : undefined,
      });
    }
  }
}

/**
 * Unmount whatever is mounted at mountPoint; nothing mounted is fine. Our own size walks of the mount
 * point let go first (withoutWalks); a busy mount is retried for busyRetryMs, then the error names the
 * processes that hold it.
 */
export async function ensureUnmounted(mountPoint: string, run: RunOptions, busyRetryMs = UNMOUNT_BUSY_RETRY_MS): Promise<void> {
  const target = resolve(mountPoint);
  await withoutWalks(target, async () => {
    // Stacked mounts come off one at a time.
    while (await mountAt(target)) await unmountOnce(target, () => runProgram('umount', [target], run), run, busyRetryMs);
  });
}

/**
 * Filesystem type of a device with `blkid -c /dev/null -o value -s TYPE` (argv, no shell). The cache is
 * bypassed: a reused or reformatted device must not be mounted with the options of its previous filesystem.
 */
export async function filesystemType(device: string, run: RunOptions): Promise<string> {
  const result = await runProgram('blkid', ['-c', '/dev/null', '-o', 'value', '-s', 'TYPE', device], run).catch((err: unknown) => {
    throw new AgentError('command_failed', `cannot find the filesystem type of ${device}: ${(err as Error).message}`, {
      hint: 'blkid exits 2 when the device has no recognisable filesystem or does not exist',
    });
  });
  const type = result.stdout.trim().split('\n')[0]?.trim() ?? '';
  if (type === '') throw new AgentError('command_failed', `blkid found no filesystem type on ${device}`);
  return type;
}

/** Parses the original's `blkid DEVICE` output: the first TYPE="..." wins. */
export function parseBlkidType(output: string): string | undefined {
  return /\bTYPE="([^"]*)"/.exec(output)?.[1];
}

/** The configured SnapshotMountPoint, absolute; a clear config error when it is unset. */
export function requireMountPoint(mountPoint: string): string {
  if (mountPoint === '') {
    throw new AgentError('config', 'SnapshotMountPoint is not set', { hint: 'set it to the directory snapshots are mounted on' });
  }
  return resolve(mountPoint);
}
