// LVM snapshots, as the original agent served them: lvs/lvremove/mount/umount built as argv arrays, or the
// operator's own commands (when they changed the original's defaults) with request values as $1..$n.
import { existsSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { defaultConfig, type Config } from '../config.js';
import { AgentError } from '../errors.js';
import { runProgram, runShell, runShellStatus, templateToScript, type RunOptions } from '../process-runner.js';
import type { LogicalVolume, Mount, SnapshotBackend } from './interfaces.js';
import { createSnapshot } from './operator-commands.js';
import { withoutWalks } from './disk.js';
import { describeMount, type DatadirSource } from './mount-status.js';
import { ensureMounted, ensureUnmounted, unmountOnce, filesystemType, isSameSource, mountAt, parseBlkidType, readMounts, requireMountPoint, type MountEntry } from './mounts.js';

// The original's defaults: a key still at its default runs our argv version, a changed one the operator's.
const defaults = defaultConfig();

/** lvs as argv: '|'-separated, bytes, no header. stdout only: lvs prints dm errors to stderr and exits 0. */
export const lvsArgs = [
  '--noheadings',
  '--separator',
  '|',
  '--units',
  'b',
  '--nosuffix',
  '-o',
  'lv_name,vg_name,lv_path,origin,snap_percent,lv_attr',
];

/** One volume of `lvs ${lvsArgs}`: the original's JSON, plus what the snapshot check needs. */
interface LvsRow {
  volume: LogicalVolume;
  origin: string;
  /** lv_attr, e.g. "swi-a-s---"; its fifth character is "I" (or "S") for a snapshot device-mapper invalidated. */
  attr: string;
}

function parseLvsRows(stdout: string): LvsRow[] {
  const rows: LvsRow[] = [];
  for (const line of stdout.split('\n')) {
    const fields = line.trim().split('|');
    if (fields.length < 6 || fields[0] === '') continue;
    const [name, group, path, origin, percent, attr] = fields;
    const snapshotAttr = attr.startsWith('s') || attr.startsWith('S');
    const parsedPercent = percent.trim() === '' ? 0 : Number(percent);
    rows.push({
      volume: {
        Name: name,
        GroupName: group,
        Path: path,
        IsSnapshot: snapshotAttr || origin !== '',
        SnapshotPercent: Number.isFinite(parsedPercent) ? parsedPercent : 0,
      },
      origin,
      attr,
    });
  }
  return rows;
}

/** Parses `lvs ${lvsArgs}` output into the original's LogicalVolume JSON. */
export function parseLvsSeparated(stdout: string): LogicalVolume[] {
  return parseLvsRows(stdout).map((row) => row.volume);
}

/** A snapshot device-mapper has invalidated (lv_attr state I or S), or one whose space is used up. */
export function isInvalidSnapshot(row: { volume: LogicalVolume; attr?: string }): boolean {
  const state = row.attr?.[4];
  return row.volume.IsSnapshot && (state === 'I' || state === 'S' || row.volume.SnapshotPercent >= 100);
}

/**
 * Parses the original's whitespace-separated `lvs --noheading -o lv_name,vg_name,lv_path,snap_percent`
 * (an operator's LogicalVolumesCommand). As the original, a volume is a snapshot when its fourth column
 * is a number; unlike it, volumes without that column are listed too (as non-snapshots).
 */
export function parseLvsWhitespace(stdout: string): LogicalVolume[] {
  const volumes: LogicalVolume[] = [];
  for (const line of stdout.split('\n')) {
    const tokens = line.trim().split(/[ \t]+/);
    if (tokens.length < 3) continue;
    const percent = tokens.length >= 4 && /^[0-9]+(\.[0-9]+)?$/.test(tokens[3]) ? Number(tokens[3]) : undefined;
    volumes.push({
      Name: tokens[0],
      GroupName: tokens[1],
      Path: tokens[2],
      IsSnapshot: percent !== undefined,
      SnapshotPercent: percent ?? 0,
    });
  }
  return volumes;
}

/** A volume named as the original accepted: "lv", "vg/lv" or its path "/dev/vg/lv". */
function matchesVolume(lv: LogicalVolume, name: string): boolean {
  return name === lv.Name || name === `${lv.GroupName}/${lv.Name}` || name === lv.Path;
}

export class LvmSnapshots implements SnapshotBackend {
  constructor(
    private readonly config: Config,
    private readonly datadir: DatadirSource,
  ) {}

  private run(signal?: AbortSignal): RunOptions {
    return {
      timeoutMs: this.config.CommandTimeoutSeconds * 1000,
      signal,
      sudo: this.config.ExecWithSudo,
      env: { LVM_SUPPRESS_FD_WARNINGS: '1' },
    };
  }

  private custom(key: 'LogicalVolumesCommand' | 'GetMountCommand' | 'UnmountCommand' | 'MountLVCommand' | 'RemoveLVCommand' | 'GetLogicalVolumeFSTypeCommand'): string | undefined {
    const value = this.config[key];
    return value !== defaults[key] ? value : undefined;
  }

  private async allVolumes(signal?: AbortSignal): Promise<LogicalVolume[]> {
    return (await this.rows(signal)).map((row) => row.volume);
  }

  /** Every volume; lv_attr and origin only from our own lvs (an operator's command prints the original's four columns). */
  private async rows(signal?: AbortSignal): Promise<{ volume: LogicalVolume; origin?: string; attr?: string }[]> {
    const custom = this.custom('LogicalVolumesCommand');
    if (custom !== undefined) {
      const result = await runShell(templateToScript(custom, 0), [], this.run(signal));
      return parseLvsWhitespace(result.stdout).map((volume) => ({ volume }));
    }
    const result = await runProgram('lvs', lvsArgs, this.run(signal));
    return parseLvsRows(result.stdout);
  }

  async list(pattern = '', signal?: AbortSignal): Promise<LogicalVolume[]> {
    return (await this.allVolumes(signal)).filter((lv) => lv.Name.includes(pattern));
  }

  /** By name, vg/name or path; lvs itself would read a bare name as a volume group, so we filter. */
  async get(name: string, signal?: AbortSignal): Promise<LogicalVolume[]> {
    const all = await this.allVolumes(signal);
    return name === '' ? all : all.filter((lv) => matchesVolume(lv, name));
  }

  private async one(name: string, signal?: AbortSignal): Promise<LogicalVolume> {
    const found = await this.get(name, signal);
    if (found.length === 0) {
      throw new AgentError('not_found', `logical volume not found: ${name}`, { hint: 'list the volumes with /api/lvs' });
    }
    if (found.length > 1) {
      throw new AgentError('conflict', `"${name}" names ${found.length} logical volumes (${found.map((lv) => `${lv.GroupName}/${lv.Name}`).join(', ')})`, {
        hint: 'name it as vg/lv',
      });
    }
    return found[0];
  }

  private async fsType(device: string, signal?: AbortSignal): Promise<string> {
    const custom = this.custom('GetLogicalVolumeFSTypeCommand');
    if (custom === undefined) return filesystemType(device, this.run(signal));
    const result = await runShell(templateToScript(custom, 1), [device], this.run(signal));
    const type = parseBlkidType(result.stdout) ?? result.stdout.trim();
    if (type === '') throw new AgentError('command_failed', `cannot find the filesystem type of ${device} with ${custom}`);
    return type;
  }

  async getMount(mountPoint: string, signal?: AbortSignal): Promise<Mount> {
    const target = requireMountPoint(mountPoint);
    const custom = this.custom('GetMountCommand');
    let entry: MountEntry | undefined;
    if (custom === undefined) {
      entry = await mountAt(target);
    } else {
      // The original's format: "DEVICE PATH FSTYPE ..." (an /etc/mtab line); no output means not mounted.
      const result = await runShellStatus(templateToScript(custom, 1), [target], this.run(signal));
      const tokens = result.exitCode === 0 ? result.stdout.trim().split('\n')[0].split(/[ \t]+/) : [];
      if (tokens.length >= 3) {
        entry = { majorMinor: '', root: '/', mountPoint: tokens[1], options: [], fsType: tokens[2], source: tokens[0], superOptions: [] };
      }
    }
    const lvPath = entry ? await this.lvPathOf(entry.source, signal) : '';
    return describeMount(target, entry, lvPath, this.datadir, signal);
  }

  /** The LV path of a mounted device (/dev/mapper/vg-lv or /dev/dm-N -> /dev/vg/lv), '' when not an LV. */
  private async lvPathOf(device: string, signal?: AbortSignal): Promise<string> {
    const volumes = await this.allVolumes(signal).catch(() => []);
    const direct = volumes.find((lv) => lv.Path === device);
    if (direct) return direct.Path;
    const real = await realpath(device).catch(() => device);
    for (const lv of volumes) {
      if ((await realpath(lv.Path).catch(() => '')) === real) return lv.Path;
    }
    return '';
  }

  async mount(name: string, mountPoint: string, signal?: AbortSignal): Promise<Mount> {
    const target = requireMountPoint(mountPoint);
    const lv = await this.one(name, signal);
    if (!existsSync(lv.Path)) {
      throw new AgentError('unavailable', `cannot mount ${lv.GroupName}/${lv.Name}: its device ${lv.Path} does not exist (the volume is not active)`, {
        hint: `activate it (lvchange -ay ${lv.GroupName}/${lv.Name}); this host needs device-mapper for that`,
      });
    }
    const fsType = await this.fsType(lv.Path, signal);
    const options = fsType === 'xfs' ? ['nouuid'] : [];
    const custom = this.custom('MountLVCommand');
    if (custom === undefined) {
      await ensureMounted({ device: lv.Path, mountPoint: target, options, fsType }, this.run(signal));
    } else {
      const current = await mountAt(target);
      if (current && !(await isSameSource(current, lv.Path))) {
        throw new AgentError('conflict', `cannot mount ${lv.Path} at ${target}: ${current.source} (${current.fsType}) is already mounted there`, {
          hint: 'unmount it first (/api/umount) and retry',
        });
      }
      // The original's "mount %s %s %s" = options, device, mount point; options as one getopt token.
      if (!current) await runShell(templateToScript(custom, 3), [`-o${['ro', ...options].join(',')}`, lv.Path, target], this.run(signal));
    }
    return this.getMount(target, signal);
  }

  async unmount(mountPoint: string, signal?: AbortSignal): Promise<Mount> {
    const target = requireMountPoint(mountPoint);
    const custom = this.custom('UnmountCommand');
    if (custom === undefined) {
      await ensureUnmounted(target, this.run(signal));
    } else if (await mountAt(target)) {
      const run = this.run(signal);
      await withoutWalks(target, () => unmountOnce(target, () => runShell(templateToScript(custom, 1), [target], run), run));
    }
    return this.getMount(target, signal);
  }

  /** Removes a snapshot volume; the origin volumes (the data itself) are refused. */
  async remove(name: string, signal?: AbortSignal): Promise<void> {
    const lv = await this.one(name, signal);
    if (!lv.IsSnapshot) {
      throw new AgentError('forbidden', `refusing to remove ${lv.GroupName}/${lv.Name}: it is not a snapshot`, {
        hint: 'this agent only removes snapshot volumes; remove others with lvremove yourself',
      });
    }
    for (const entry of await readMounts()) {
      if (await isSameSource(entry, lv.Path)) {
        throw new AgentError('conflict', `refusing to remove ${lv.GroupName}/${lv.Name}: it is mounted at ${entry.mountPoint}`, {
          hint: 'unmount it first (/api/umount)',
        });
      }
    }
    const custom = this.custom('RemoveLVCommand');
    if (custom === undefined) {
      await runProgram('lvremove', ['--force', `${lv.GroupName}/${lv.Name}`], this.run(signal));
    } else {
      await runShell(templateToScript(custom, 1), [name], this.run(signal));
    }
  }

  /** CreateSnapshotCommand, the operator's own (the original had no built-in way). */
  async create(signal?: AbortSignal): Promise<void> {
    await createSnapshot(this.config, signal);
  }

  /**
   * A snapshot whose copy-on-write space fills up is invalidated by device-mapper: its reads fail (or, from
   * the page cache, still succeed with a mix of old blocks), so nothing copied from it can be trusted.
   */
  async verifyMounted(mountPoint: string, signal?: AbortSignal): Promise<void> {
    const target = requireMountPoint(mountPoint);
    const entry = await mountAt(target);
    if (!entry) return;
    const rows = await this.rows(signal).catch((err: unknown) => {
      throw new AgentError('command_failed', `cannot check whether the snapshot mounted at ${target} is still valid: ${(err as Error).message}`, {
        hint: 'a seed must not finish on a snapshot nobody checked: make lvs work for the agent (or fix LogicalVolumesCommand), then seed again',
        cause: err,
      });
    });
    const real = await realpath(entry.source).catch(() => entry.source);
    let row: (typeof rows)[number] | undefined;
    for (const r of rows) {
      if (r.volume.Path === entry.source || (await realpath(r.volume.Path).catch(() => '')) === real) row = r;
    }
    if (!row || !isInvalidSnapshot(row)) return;
    const { GroupName: vg, Name: name, SnapshotPercent: percent } = row.volume;
    const origin = row.origin ? `${vg}/${row.origin}` : 'its origin volume';
    throw new AgentError(
      'snapshot_invalid',
      `snapshot ${vg}/${name} mounted at ${target} is no longer valid: its copy-on-write space filled up (${percent}% used) while it was in use and device-mapper invalidated it, so what was read from it cannot be trusted`,
      {
        hint: `take a larger snapshot (lvcreate -s -L with room for everything written to ${origin} while a seed runs, or -l 100%ORIGIN) and seed again; unmount and remove this one (/api/umount, /api/removelv?lv=${vg}/${name})`,
        details: { snapshot: `${vg}/${name}`, snapshotPercent: percent, attr: row.attr },
      },
    );
  }
}
