// The narrow interfaces through which routes and seed machines touch the host. One module implements
// each; machines and routes never run commands themselves.

/** JSON shape of the original's osagent.LogicalVolume (field names are the wire contract). */
export interface LogicalVolume {
  Name: string;
  GroupName: string;
  Path: string;
  IsSnapshot: boolean;
  SnapshotPercent: number;
}

/** JSON shape of the original's osagent.Mount. */
export interface Mount {
  Path: string;
  Device: string;
  LVPath: string;
  FileSystem: string;
  IsMounted: boolean;
  DiskUsage: number;
  MySQLDataPath: string;
  MySQLDiskUsage: number;
}

/** MySQL service control through the operator's configured commands. */
export interface MySQLService {
  datadir(signal?: AbortSignal): Promise<string>;
  port(signal?: AbortSignal): Promise<number>;
  isRunning(signal?: AbortSignal): Promise<boolean>;
  stop(signal?: AbortSignal): Promise<void>;
  start(signal?: AbortSignal): Promise<void>;
}

/** Snapshots (LVM or btrfs) and the one agreed-upon mount point (SnapshotMountPoint). */
export interface SnapshotBackend {
  /** lvs, filtered by substring pattern (original semantics). */
  list(pattern?: string, signal?: AbortSignal): Promise<LogicalVolume[]>;
  /** One volume by name or path ("" = all). */
  get(name: string, signal?: AbortSignal): Promise<LogicalVolume[]>;
  /** What is mounted at the mount point (IsMounted=false when nothing). */
  getMount(mountPoint: string, signal?: AbortSignal): Promise<Mount>;
  /** Ensure the volume is mounted read-only at the mount point (no-op if it already is). */
  mount(name: string, mountPoint: string, signal?: AbortSignal): Promise<Mount>;
  /** Ensure nothing is mounted at the mount point (no-op if nothing is). */
  unmount(mountPoint: string, signal?: AbortSignal): Promise<Mount>;
  remove(name: string, signal?: AbortSignal): Promise<void>;
  create(signal?: AbortSignal): Promise<void>;
  /**
   * Throws (snapshot_invalid) when what is mounted at the mount point is a snapshot that can no longer be
   * trusted: an LVM snapshot whose copy-on-write space filled up, so device-mapper invalidated it.
   */
  verifyMounted(mountPoint: string, signal?: AbortSignal): Promise<void>;
}

/** Datadir facts and the one destructive operation, behind guardrails. */
export interface DatadirOps {
  /** Bytes used under a path (du -sb equivalent, without spawning du). */
  diskUsage(path: string, signal?: AbortSignal): Promise<number>;
  /** Bytes available to unprivileged users on the filesystem holding path (statfs). */
  availableSpace(path: string): Promise<number>;
  /** Refuses (409, naming pid and command line) while any other process has files open in the datadir,
   *  works in it, or holds a lock on its files (InnoDB's lock on ibdata1). Only reads. */
  ensureNotInUse(datadir: string): Promise<void>;
  /** Delete everything inside the datadir (not the directory itself). Refuses "/", "" and non-directories. */
  purge(datadir: string, signal?: AbortSignal): Promise<void>;
}
