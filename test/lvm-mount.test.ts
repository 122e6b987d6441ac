import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAgentProcess, tempDir, writeConfig, type AgentProcess } from './support/agent-process.js';
import { mountsUnder, run, unmountAllUnder } from './support/btrfs-fixture.js';
import { parseMountInfo } from '../src/host/mounts.js';

// No device-mapper here, so no LV can be activated: an operator's LogicalVolumesCommand presents a
// loop device holding a real xfs filesystem as a snapshot LV, and the rest of the LVM path runs for real
// (blkid, mount -o ro,nouuid, umount), through a `sudo` shim on PATH to check ExecWithSudo.
describe('LVM backend mounting an xfs "LV" on a loop device, with operator commands and ExecWithSudo', () => {
  let agent: AgentProcess;
  let token: string;
  let dir: string;
  let device = '';
  let mountPoint: string;

  const get = async (path: string) => fetch(`${agent.baseUrl}${path}${path.includes('?') ? '&' : '?'}token=${token}`);
  const getJson = async <T>(path: string, status = 200): Promise<T> => {
    const res = await get(path);
    const body = (await res.json()) as T;
    if (res.status !== status) throw new Error(`${path}: expected ${status}, got ${res.status}: ${JSON.stringify(body)}`);
    return body;
  };
  const entriesAt = (p: string) => parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8')).filter((m) => m.mountPoint === p);
  const sudoLog = () => readFileSync(join(dir, 'sudo.log'), 'utf8');

  beforeAll(async () => {
    dir = tempDir('oa-lvm-mount-');
    const image = join(dir, 'lv.img');
    run('truncate', ['-s', '300M', image]);
    run('mkfs.xfs', ['-q', image]);
    device = run('losetup', ['-f', '--show', image]).trim();
    const fill = join(dir, 'fill');
    mkdirSync(fill);
    run('mount', [device, fill]);
    mkdirSync(join(fill, 'lib', 'mysql'), { recursive: true });
    writeFileSync(join(fill, 'lib', 'mysql', 'ibdata1'), Buffer.alloc(4096, 7));
    run('umount', [fill]);

    const shims = join(dir, 'bin');
    mkdirSync(shims);
    writeFileSync(join(shims, 'sudo'), `#!/bin/sh\nprintf '%s\\n' "$*" >> '${join(dir, 'sudo.log')}'\n[ "$1" = -n ] && shift\nexec "$@"\n`);
    chmodSync(join(shims, 'sudo'), 0o755);
    writeFileSync(join(dir, 'sudo.log'), '');

    mountPoint = join(dir, 'mnt');
    agent = await startAgentProcess(
      writeConfig(dir, {
        TokenHintFile: join(dir, 'token'),
        SnapshotMountPoint: mountPoint,
        ExecWithSudo: true,
        // The original's whitespace format: name, group, path, snap_percent (empty for non-snapshots).
        LogicalVolumesCommand: `printf '  snapx fakevg ${device} 0.05\\n  datax fakevg /dev/oa-no-such-lv\\n'`,
        RemoveLVCommand: `echo %s >> '${join(dir, 'removed')}'`,
        MySQLDatadirCommand: 'echo /var/lib/mysql',
      }),
      { PATH: `${shims}:${process.env.PATH ?? ''}` },
    );
    token = readFileSync(join(dir, 'token'), 'utf8');
  });

  afterAll(async () => {
    await agent?.stop();
    if (dir) unmountAllUnder(dir);
    if (device) run('losetup', ['-d', device]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("an operator's LogicalVolumesCommand output is parsed in the original whitespace format", async () => {
    expect(await getJson('/api/lvs')).toEqual([
      { Name: 'snapx', GroupName: 'fakevg', Path: device, IsSnapshot: true, SnapshotPercent: 0.05 },
      { Name: 'datax', GroupName: 'fakevg', Path: '/dev/oa-no-such-lv', IsSnapshot: false, SnapshotPercent: 0 },
    ]);
  });

  test('mountlv mounts the volume read-only with nouuid for xfs, through sudo', async () => {
    const mount = await getJson<Record<string, unknown>>('/api/mountlv?lv=fakevg/snapx');
    expect(mount).toMatchObject({
      Path: mountPoint,
      Device: device,
      LVPath: device,
      FileSystem: 'xfs',
      IsMounted: true,
      MySQLDataPath: join(mountPoint, 'lib', 'mysql'),
    });
    const [entry, ...more] = entriesAt(mountPoint);
    expect(more).toEqual([]);
    expect(entry).toMatchObject({ source: device, fsType: 'xfs' });
    expect(entry.options).toContain('ro');
    expect(entry.superOptions).toContain('nouuid');
    expect(() => writeFileSync(join(mountPoint, 'x'), 'x')).toThrow(expect.objectContaining({ code: 'EROFS' }));
    expect(sudoLog()).toContain(`-n blkid -c /dev/null -o value -s TYPE ${device}\n`);
    expect(sudoLog()).toContain(`-n mount -o ro,nouuid -t xfs ${device} ${mountPoint}\n`);
  });

  test('mounting it again is a no-op; an inactive LV is refused and the mount stays as it was', async () => {
    await getJson('/api/mountlv/snapx');
    expect(entriesAt(mountPoint)).toHaveLength(1);
    const refused = await getJson<{ Message: string }>('/api/mountlv?lv=datax', 503);
    expect(refused.Message).toContain('does not exist (the volume is not active)');
    expect(entriesAt(mountPoint).map((e) => e.source)).toEqual([device]);
    const busy = await getJson<{ Message: string }>('/api/removelv?lv=snapx', 409);
    expect(busy.Message).toBe(`refusing to remove fakevg/snapx: it is mounted at ${mountPoint}`);
    expect(existsSync(join(dir, 'removed'))).toBe(false);
  });

  test('umount unmounts through sudo, and again is a no-op', async () => {
    expect(await getJson('/api/umount')).toMatchObject({ IsMounted: false, Device: '', LVPath: '' });
    expect(mountsUnder(mountPoint)).toEqual([]);
    expect(sudoLog()).toContain(`-n umount ${mountPoint}\n`);
    expect(await getJson('/api/umount')).toMatchObject({ IsMounted: false });
  });

  test("removelv runs the operator's RemoveLVCommand with the volume as $1, and refuses non-snapshots", async () => {
    expect(await getJson('/api/removelv?lv=snapx')).toBe(true);
    expect(readFileSync(join(dir, 'removed'), 'utf8')).toBe('snapx\n');
    expect((await getJson<{ Message: string }>('/api/removelv?lv=datax', 403)).Message).toContain('not a snapshot');
    expect(readFileSync(join(dir, 'removed'), 'utf8')).toBe('snapx\n');
  });
});

describe("LVM backend with the operator's own mount, umount and get-mount commands", () => {
  let agent: AgentProcess;
  let token: string;
  let dir: string;
  let device = '';
  let mountPoint: string;

  const getJson = async <T>(path: string, status = 200): Promise<T> => {
    const res = await fetch(`${agent.baseUrl}${path}${path.includes('?') ? '&' : '?'}token=${token}`);
    const body = (await res.json()) as T;
    if (res.status !== status) throw new Error(`${path}: expected ${status}, got ${res.status}: ${JSON.stringify(body)}`);
    return body;
  };
  const entriesAt = (p: string) => parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8')).filter((m) => m.mountPoint === p);
  const calls = () => readFileSync(join(dir, 'calls.log'), 'utf8');

  beforeAll(async () => {
    dir = tempDir('oa-lvm-custom-');
    const image = join(dir, 'lv.img');
    run('truncate', ['-s', '64M', image]);
    run('mkfs.ext4', ['-q', '-F', image]);
    device = run('losetup', ['-f', '--show', image]).trim();
    mountPoint = join(dir, 'mnt');
    mkdirSync(mountPoint);
    const logged = (what: string) => `echo "${what} $*" >> '${join(dir, 'calls.log')}'; `;
    writeFileSync(join(dir, 'calls.log'), '');
    agent = await startAgentProcess(
      writeConfig(dir, {
        TokenHintFile: join(dir, 'token'),
        SnapshotMountPoint: mountPoint,
        LogicalVolumesCommand: `echo '  snapy vgy ${device} 1.5'`,
        // Scripts see the request's values as $1.. only: the options token, the device, the mount point.
        MountLVCommand: `${logged('mount')}mount %s %s %s`,
        UnmountCommand: `${logged('umount')}umount %s`,
        GetMountCommand: `grep -F " %s " /proc/mounts`,
        // -c /dev/null: blkid's cache trusts a fresh entry, and the xfs test above may have left one for this loop device.
        GetLogicalVolumeFSTypeCommand: `${logged('blkid')}blkid -c /dev/null %s`,
      }),
    );
    token = readFileSync(join(dir, 'token'), 'utf8');
  });

  afterAll(async () => {
    await agent?.stop();
    if (dir) unmountAllUnder(dir);
    if (device) run('losetup', ['-d', device]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('mountlv runs the configured commands with the values as positional parameters', async () => {
    const mount = await getJson<Record<string, unknown>>('/api/mountlv?lv=snapy');
    expect(mount).toMatchObject({ Path: mountPoint, Device: device, LVPath: device, FileSystem: 'ext4', IsMounted: true });
    expect(calls()).toBe(`blkid ${device}\nmount -oro ${device} ${mountPoint}\n`);
    const [entry] = entriesAt(mountPoint);
    expect(entry.options).toContain('ro');
    expect(await getJson('/api/mount')).toEqual(mount);
  });

  test('a second mountlv of the mounted volume is a no-op that does not run the mount command', async () => {
    expect(await getJson('/api/mountlv?lv=snapy')).toMatchObject({ Device: device, IsMounted: true });
    expect(calls().match(/^mount .*$/gm)).toEqual([`mount -oro ${device} ${mountPoint}`]);
    expect(entriesAt(mountPoint)).toHaveLength(1);
  });

  test('umount runs the configured command once, and not at all when nothing is mounted', async () => {
    expect(await getJson('/api/umount')).toMatchObject({ IsMounted: false });
    expect(await getJson('/api/umount')).toMatchObject({ IsMounted: false });
    expect(calls().match(/^umount .*$/gm)).toEqual([`umount ${mountPoint}`]);
    expect(entriesAt(mountPoint)).toEqual([]);
  });

  test('a configured UnmountCommand that finds the mount busy is retried, then fails naming the process holding it', async () => {
    await getJson('/api/mountlv?lv=snapy');
    const holder = spawn('bash', ['-c', 'exec sleep 606'], { cwd: mountPoint, detached: true, stdio: 'ignore' });
    const exited = new Promise((r) => holder.once('exit', r));
    try {
      const before = calls().match(/^umount .*$/gm)!.length;
      const failed = await getJson<{ Message: string }>('/api/umount', 500);
      expect(failed.Message).toContain('target is busy');
      expect(failed.Message).toContain(`pid ${holder.pid} (sleep 606) works in ${mountPoint}`);
      expect(calls().match(/^umount .*$/gm)!.length - before).toBeGreaterThan(1); // retried
      expect(entriesAt(mountPoint)).toHaveLength(1);
    } finally {
      process.kill(-holder.pid!, 'SIGKILL');
      await exited;
    }
    expect(await getJson('/api/umount')).toMatchObject({ IsMounted: false });
  }, 30000);
});
