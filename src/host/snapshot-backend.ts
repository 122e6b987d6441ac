// Picks the snapshot backend named by SnapshotBackend ("lvm", the original's, or "btrfs"). Its module (with
// the mount and LVM/btrfs code) loads with the first snapshot call, not with the agent.
import type { Config } from '../config.js';
import type { Mount, SnapshotBackend } from './interfaces.js';
import type { DatadirSource } from './mount-status.js';

export type { DatadirSource } from './mount-status.js';

/** datadir: MySQLService.datadir, used for the Mount JSON's MySQLDataPath heuristic. */
export function createSnapshotBackend(config: Config, datadir: DatadirSource): SnapshotBackend {
  let loading: Promise<SnapshotBackend> | undefined;
  const load = () =>
    (loading ??=
      config.SnapshotBackend === 'btrfs'
        ? import('./btrfs.js').then((m) => new m.BtrfsSnapshots(config, datadir))
        : import('./lvm.js').then((m) => new m.LvmSnapshots(config, datadir)));
  return serialized({
    list: async (pattern, signal) => (await load()).list(pattern, signal),
    get: async (name, signal) => (await load()).get(name, signal),
    getMount: async (mountPoint, signal) => (await load()).getMount(mountPoint, signal),
    mount: async (name, mountPoint, signal) => (await load()).mount(name, mountPoint, signal),
    unmount: async (mountPoint, signal) => (await load()).unmount(mountPoint, signal),
    remove: async (name, signal) => (await load()).remove(name, signal),
    create: async (signal) => (await load()).create(signal),
    verifyMounted: async (mountPoint, signal) => (await load()).verifyMounted(mountPoint, signal),
  });
}

/**
 * Changes (mount, unmount, remove, create) run one at a time: two mountlv requests racing would both
 * see an empty mount point and stack two mounts on it. A getMount overlapping an unmount answers what is
 * there after it (its size walk gave way to the umount: see withoutWalks).
 */
function serialized(backend: SnapshotBackend): SnapshotBackend {
  let tail: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(work: () => Promise<T>): Promise<T> => {
    const result = tail.then(work, work);
    tail = result.catch(() => undefined);
    return result;
  };
  let unmounts = 0;
  let unmounting: Promise<unknown> = Promise.resolve();
  const getMount = async (mountPoint: string, signal?: AbortSignal): Promise<Mount> => {
    for (;;) {
      await unmounting;
      const seen = unmounts;
      const mount = await backend.getMount(mountPoint, signal);
      if (seen === unmounts) return mount;
    }
  };
  const unmount = (mountPoint: string, signal?: AbortSignal): Promise<Mount> => {
    const result = exclusive(() => {
      unmounts++;
      return backend.unmount(mountPoint, signal);
    });
    unmounting = result.catch(() => undefined);
    return result;
  };
  return {
    list: (pattern, signal) => backend.list(pattern, signal),
    get: (name, signal) => backend.get(name, signal),
    getMount,
    mount: (name, mountPoint, signal) => exclusive(() => backend.mount(name, mountPoint, signal)),
    unmount,
    remove: (name, signal) => exclusive(() => backend.remove(name, signal)),
    create: (signal) => exclusive(() => backend.create(signal)),
    verifyMounted: (mountPoint, signal) => backend.verifyMounted(mountPoint, signal),
  };
}
