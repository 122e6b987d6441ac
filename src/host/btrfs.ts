// btrfs snapshots answering the original's LVM routes with the same JSON: the snapshots are the subvolumes
// directly under BtrfsSnapshotsDir, and mounting one mounts that subvolume read-only (subvol=) of the
// filesystem's device at SnapshotMountPoint.
import { readdir, stat } from 'node:fs/promises';
import { dirname, join, posix, relative, resolve } from 'node:path';
import type { Config } from '../config.js';
import { AgentError } from '../errors.js';
import { runProgram, type RunOptions } from '../process-runner.js';
import type { LogicalVolume, Mount, SnapshotBackend } from './interfaces.js';
import { createSnapshot } from './operator-commands.js';
import { describeMount, type DatadirSource } from './mount-status.js';
import { ensureMounted, ensureUnmounted, mountAt, mountContaining, readMounts, requireMountPoint, type MountEntry } from './mounts.js';

/** The root directory of every btrfs subvolume has inode 256 (BTRFS_FIRST_FREE_OBJECTID). */
const subvolumeRootInode = 256;

async function isSubvolume(path: string): Promise<boolean> {
  try {
    const st = await stat(path);
    return st.isDirectory() && st.ino === subvolumeRootInode;
  } catch {
    return false;
  }
}

export class BtrfsSnapshots implements SnapshotBackend {
  private readonly dir: string;

  constructor(
    private readonly config: Config,
    private readonly datadir: DatadirSource,
  ) {
    this.dir = resolve(config.BtrfsSnapshotsDir);
  }

  private run(signal?: AbortSignal): RunOptions {
    return { timeoutMs: this.config.CommandTimeoutSeconds * 1000, signal, sudo: this.config.ExecWithSudo };
  }

  /** The btrfs mount holding the snapshots directory: its device and the subvolume it shows. */
  private async filesystem(): Promise<MountEntry> {
    const entry = await mountContaining(this.dir);
    if (!entry || entry.fsType !== 'btrfs') {
      throw new AgentError('config', `BtrfsSnapshotsDir ${this.dir} is not on a mounted btrfs filesystem${entry ? ` (it is on ${entry.fsType})` : ''}`, {
        hint: 'point BtrfsSnapshotsDir at a directory of a mounted btrfs filesystem',
      });
    }
    return entry;
  }

  /** The subvolume path as the filesystem knows it ("/snapshots/s1"), what subvol= and mountinfo use. */
  private subvolumeRoot(fs: MountEntry, path: string): string {
    return posix.join(fs.root, relative(fs.mountPoint, path));
  }

  private async label(signal?: AbortSignal): Promise<string> {
    const result = await runProgram('btrfs', ['filesystem', 'label', this.dir], this.run(signal)).catch(() => undefined);
    const label = result?.stdout.trim() ?? '';
    return label === '' ? 'btrfs' : label;
  }

  private async isReadOnly(path: string, signal?: AbortSignal): Promise<boolean> {
    const result = await runProgram('btrfs', ['property', 'get', '-ts', path, 'ro'], this.run(signal));
    return result.stdout.trim() === 'ro=true';
  }

  private async all(signal?: AbortSignal): Promise<LogicalVolume[]> {
    let names: string[];
    try {
      names = (await readdir(this.dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch (err) {
      throw new AgentError('io', `cannot list BtrfsSnapshotsDir ${this.dir}: ${(err as Error).message}`);
    }
    names.sort();
    const group = await this.label(signal);
    const volumes: LogicalVolume[] = [];
    for (const name of names) {
      const path = join(this.dir, name);
      if (!(await isSubvolume(path))) continue;
      volumes.push({ Name: name, GroupName: group, Path: path, IsSnapshot: await this.isReadOnly(path, signal), SnapshotPercent: 0 });
    }
    return volumes;
  }

  async list(pattern = '', signal?: AbortSignal): Promise<LogicalVolume[]> {
    return (await this.all(signal)).filter((v) => v.Name.includes(pattern));
  }

  /** By name or by full path; only subvolumes directly under BtrfsSnapshotsDir exist for this backend. */
  async get(name: string, signal?: AbortSignal): Promise<LogicalVolume[]> {
    const all = await this.all(signal);
    return name === '' ? all : all.filter((v) => v.Name === name || v.Path === resolve(name));
  }

  private async one(name: string, signal?: AbortSignal): Promise<LogicalVolume> {
    const outside = name.startsWith('/') ? dirname(resolve(name)) !== this.dir : name.includes('/');
    if (outside) {
      throw new AgentError('forbidden', `${name} is not a snapshot of this agent`, { hint: `snapshots are the subvolumes directly under ${this.dir}` });
    }
    const [found] = await this.get(name, signal);
    if (!found) throw new AgentError('not_found', `snapshot not found: ${name}`, { hint: `list the subvolumes under ${this.dir} with /api/lvs` });
    return found;
  }

  async getMount(mountPoint: string, signal?: AbortSignal): Promise<Mount> {
    const target = requireMountPoint(mountPoint);
    const entry = await mountAt(target);
    let lvPath = '';
    if (entry?.fsType === 'btrfs') {
      // Map the mounted subvolume back to its path under the snapshots directory, if it is one of ours.
      const fs = await this.filesystem().catch(() => undefined);
      if (fs && fs.source === entry.source) {
        const rel = posix.relative(fs.root, entry.root);
        const path = join(fs.mountPoint, rel);
        if (!rel.startsWith('..') && dirname(path) === this.dir) lvPath = path;
      }
    }
    return describeMount(target, entry, lvPath, this.datadir, signal);
  }

  async mount(name: string, mountPoint: string, signal?: AbortSignal): Promise<Mount> {
    const target = requireMountPoint(mountPoint);
    const snapshot = await this.one(name, signal);
    const fs = await this.filesystem();
    const root = this.subvolumeRoot(fs, snapshot.Path);
    if (root.includes(',')) {
      throw new AgentError('bad_request', `cannot mount subvolume ${root}: a "," in its name cannot be passed to mount -o subvol=`);
    }
    await ensureMounted({ device: fs.source, mountPoint: target, options: [`subvol=${root}`], fsType: 'btrfs', root }, this.run(signal));
    return this.getMount(target, signal);
  }

  async unmount(mountPoint: string, signal?: AbortSignal): Promise<Mount> {
    const target = requireMountPoint(mountPoint);
    await ensureUnmounted(target, this.run(signal));
    return this.getMount(target, signal);
  }

  /** Deletes a read-only snapshot; btrfs would delete a mounted one, so that is refused here. */
  async remove(name: string, signal?: AbortSignal): Promise<void> {
    const snapshot = await this.one(name, signal);
    if (!snapshot.IsSnapshot) {
      throw new AgentError('forbidden', `refusing to delete ${snapshot.Path}: it is a writable subvolume, not a read-only snapshot`);
    }
    const fs = await this.filesystem();
    const root = this.subvolumeRoot(fs, snapshot.Path);
    const mountedAt = (await readMounts()).find((m) => m.fsType === 'btrfs' && m.source === fs.source && m.root === root);
    if (mountedAt) {
      throw new AgentError('conflict', `refusing to delete ${snapshot.Path}: it is mounted at ${mountedAt.mountPoint}`, {
        hint: 'unmount it first (/api/umount)',
      });
    }
    await runProgram('btrfs', ['subvolume', 'delete', snapshot.Path], this.run(signal));
  }

  /** CreateSnapshotCommand when set; else a read-only snapshot of BtrfsSnapshotSource, named by time. */
  async create(signal?: AbortSignal): Promise<void> {
    if (this.config.CreateSnapshotCommand !== '') return createSnapshot(this.config, signal);
    const source = this.config.BtrfsSnapshotSource;
    if (source === '') {
      throw new AgentError('config', 'neither CreateSnapshotCommand nor BtrfsSnapshotSource is set: nothing to snapshot', {
        hint: 'set BtrfsSnapshotSource to the subvolume holding the MySQL data',
      });
    }
    if (!(await isSubvolume(source))) {
      throw new AgentError('config', `BtrfsSnapshotSource ${source} is not a btrfs subvolume`);
    }
    const name = `snapshot-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    await runProgram('btrfs', ['subvolume', 'snapshot', '-r', source, join(this.dir, name)], this.run(signal));
  }

  /** A read-only btrfs snapshot has no space of its own to run out of: nothing to check. */
  async verifyMounted(): Promise<void> {}
}
