// Picks the snapshot backend named by SnapshotBackend ("lvm", the original's, or "btrfs").
import type { Config } from '../config.js';
import { BtrfsSnapshots } from './btrfs.js';
import type { SnapshotBackend } from './interfaces.js';
import { LvmSnapshots } from './lvm.js';
import type { DatadirSource } from './mount-status.js';

export type { DatadirSource } from './mount-status.js';

/** datadir: MySQLService.datadir, used for the Mount JSON's MySQLDataPath heuristic. */
export function createSnapshotBackend(config: Config, datadir: DatadirSource): SnapshotBackend {
  const backend = config.SnapshotBackend === 'btrfs' ? new BtrfsSnapshots(config, datadir) : new LvmSnapshots(config, datadir);
  return serialized(backend);
}

/**
 * Changes (mount, unmount, remove, create) run one at a time: two mountlv requests racing would both
 * see an empty mount point and stack two mounts on it.
 */
function serialized(backend: SnapshotBackend): SnapshotBackend {
  let tail: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(work: () => Promise<T>): Promise<T> => {
    const result = tail.then(work, work);
    tail = result.catch(() => undefined);
    return result;
  };
  return {
    list: (pattern, signal) => backend.list(pattern, signal),
    get: (name, signal) => backend.get(name, signal),
    getMount: (mountPoint, signal) => backend.getMount(mountPoint, signal),
    mount: (name, mountPoint, signal) => exclusive(() => backend.mount(name, mountPoint, signal)),
    unmount: (mountPoint, signal) => exclusive(() => backend.unmount(mountPoint, signal)),
    remove: (name, signal) => exclusive(() => backend.remove(name, signal)),
    create: (signal) => exclusive(() => backend.create(signal)),
    verifyMounted: (mountPoint, signal) => backend.verifyMounted(mountPoint, signal),
  };
}
