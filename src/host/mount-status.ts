// The original's Mount JSON for the snapshot mount point: what is mounted, how big it is, and where the
// MySQL data directory sits inside it.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { diskUsage } from './disk.js';
import type { Mount } from './interfaces.js';
import type { MountEntry } from './mounts.js';
import { log } from '../log.js';

/** The MySQL datadir of this host (MySQLService.datadir), injected so this module needs no MySQL code. */
export type DatadirSource = (signal?: AbortSignal) => Promise<string>;

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The original's heuristic: a snapshot of the volume holding datadir /var/lib/mysql may have been taken
 * of /var, /var/lib or the datadir itself, so look for ibdata1 under mountPoint + datadir, then with the
 * datadir's leading components stripped one by one (/lib/mysql, /mysql, ""). Undefined when not found.
 */
export async function heuristicMySQLDataPath(mountPoint: string, datadir: string): Promise<string | undefined> {
  let rest = datadir;
  for (;;) {
    const candidate = join(mountPoint, rest);
    if (await exists(join(candidate, 'ibdata1'))) return candidate;
    if (rest === '') return undefined;
    const m = /^\/*[^/]+(.*)$/.exec(rest);
    if (!m) return undefined;
    rest = m[1];
  }
}

export async function describeMount(
  mountPoint: string,
  entry: MountEntry | undefined,
  lvPath: string,
  datadir: DatadirSource,
  signal?: AbortSignal,
): Promise<Mount> {
  const mount: Mount = {
    Path: mountPoint,
    Device: '',
    LVPath: '',
    FileSystem: '',
    IsMounted: false,
    DiskUsage: 0,
    MySQLDataPath: '',
    MySQLDiskUsage: 0,
  };
  if (!entry) return mount;
  mount.IsMounted = true;
  mount.Device = entry.source;
  mount.FileSystem = entry.fsType;
  mount.LVPath = lvPath;
  // As the original: the sizes and the datadir are best effort; a failure leaves them empty.
  mount.DiskUsage = await diskUsage(mountPoint, signal).catch(() => 0);
  const dir = await datadir(signal).catch((err: unknown) => {
    log.debug('datadir unknown, MySQLDataPath left empty', { error: (err as Error).message });
    return undefined;
  });
  if (dir !== undefined) {
    const dataPath = await heuristicMySQLDataPath(mountPoint, dir.trim());
    if (dataPath !== undefined) {
      mount.MySQLDataPath = dataPath;
      mount.MySQLDiskUsage = await diskUsage(dataPath, signal).catch(() => 0);
    }
  }
  return mount;
}
