import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAgentProcess, tempDir, writeConfig, type AgentProcess } from './support/agent-process.js';
import { createBtrfs, mountsUnder, run, type BtrfsFixture } from './support/btrfs-fixture.js';
import { parseMountInfo } from '../src/host/mounts.js';
import type { Mount } from '../src/host/interfaces.js';

interface LogicalVolume {
  Name: string;
  GroupName: string;
  Path: string;
  IsSnapshot: boolean;
  SnapshotPercent: number;
}
interface ApiError {
  Code: string;
  Message: string;
  Details: { code: string; hint: string | null };
}

describe('btrfs snapshot backend on a real btrfs loop filesystem, through the agent process', () => {
  let fx: BtrfsFixture;
  let agent: AgentProcess;
  let token: string;
  let snapshotsDir: string;
  let mountPoint: string;
  const ibdataBytes = 12345;

  const get = async (path: string) => fetch(`${agent.baseUrl}${path}${path.includes('?') ? '&' : '?'}token=${token}`);
  const getJson = async <T>(path: string, status = 200): Promise<T> => {
    const res = await get(path);
    const body = (await res.json()) as T;
    if (res.status !== status) throw new Error(`${path}: expected ${status}, got ${res.status}: ${JSON.stringify(body)}`);
    return body;
  };
  const mountEntriesAt = (p: string) => parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8')).filter((m) => m.mountPoint === p);

  beforeAll(async () => {
    const dir = tempDir('oa-btrfs-');
    fx = createBtrfs(dir, `oa-${process.pid}`);
    const live = join(fx.fsDir, 'live');
    run('btrfs', ['subvolume', 'create', live]);
    mkdirSync(join(live, 'mysql'));
    writeFileSync(join(live, 'mysql', 'ibdata1'), Buffer.alloc(ibdataBytes, 1));
    writeFileSync(join(live, 'marker'), 'before snapshot');
    snapshotsDir = join(fx.fsDir, 'snapshots');
    mkdirSync(snapshotsDir);
    run('btrfs', ['subvolume', 'snapshot', '-r', live, join(snapshotsDir, 'snap1')]);
    run('btrfs', ['subvolume', 'snapshot', '-r', live, join(snapshotsDir, 'snap2')]);
    run('btrfs', ['subvolume', 'create', join(snapshotsDir, 'writable')]);
    mkdirSync(join(snapshotsDir, 'plain-directory'));
    writeFileSync(join(live, 'marker'), 'after snapshot');
    // A space in the mount point: mountinfo writes it as \040.
    mountPoint = join(dir, 'snap mount');
    agent = await startAgentProcess(
      writeConfig(dir, {
        TokenHintFile: join(dir, 'token'),
        SnapshotBackend: 'btrfs',
        BtrfsSnapshotsDir: snapshotsDir,
        BtrfsSnapshotSource: live,
        SnapshotMountPoint: mountPoint,
        // The snapshot holds /data/mysql's content at mysql/: the heuristic strips "/data".
        MySQLDatadirCommand: 'echo /data/mysql',
      }),
    );
    token = readFileSync(join(dir, 'token'), 'utf8');
  });

  afterAll(async () => {
    await agent?.stop();
    fx?.cleanup();
  });

  test('lists the subvolumes under BtrfsSnapshotsDir in the original LogicalVolume shape', async () => {
    const lvs = await getJson<LogicalVolume[]>('/api/lvs');
    expect(lvs).toEqual([
      { Name: 'snap1', GroupName: fx.label, Path: join(snapshotsDir, 'snap1'), IsSnapshot: true, SnapshotPercent: 0 },
      { Name: 'snap2', GroupName: fx.label, Path: join(snapshotsDir, 'snap2'), IsSnapshot: true, SnapshotPercent: 0 },
      { Name: 'writable', GroupName: fx.label, Path: join(snapshotsDir, 'writable'), IsSnapshot: false, SnapshotPercent: 0 },
    ]);
  });

  test('filters by pattern, by SnapshotVolumesFilter, and finds one volume by name or path', async () => {
    expect((await getJson<LogicalVolume[]>('/api/lvs/ap2')).map((v) => v.Name)).toEqual(['snap2']);
    // No SnapshotVolumesFilter: every read-only snapshot, and not the writable subvolume.
    expect((await getJson<LogicalVolume[]>('/api/lvs-snapshots')).map((v) => v.Name)).toEqual(['snap1', 'snap2']);
    expect((await getJson<LogicalVolume[]>('/api/lv/snap1')).map((v) => v.Path)).toEqual([join(snapshotsDir, 'snap1')]);
    const byPath = await getJson<LogicalVolume[]>(`/api/lv?lv=${encodeURIComponent(join(snapshotsDir, 'snap2'))}`);
    expect(byPath.map((v) => v.Name)).toEqual(['snap2']);
    expect(await getJson<LogicalVolume[]>('/api/lv/nosuch')).toEqual([]);
  });

  test('mountlv mounts the snapshot read-only at SnapshotMountPoint and reports the original Mount JSON', async () => {
    const mount = await getJson<Mount>('/api/mountlv?lv=snap1');
    expect(mount).toMatchObject({
      Path: mountPoint,
      Device: fx.device,
      LVPath: join(snapshotsDir, 'snap1'),
      FileSystem: 'btrfs',
      IsMounted: true,
      MySQLDataPath: join(mountPoint, 'mysql'),
    });
    expect(mount.DiskUsage).toBeGreaterThan(ibdataBytes);
    expect(mount.MySQLDiskUsage).toBe(statSync(join(mountPoint, 'mysql')).size + ibdataBytes);

    const entries = mountEntriesAt(mountPoint);
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ root: '/snapshots/snap1', fsType: 'btrfs', source: fx.device });
    expect(entries[0].options).toContain('ro');
    expect(readFileSync(join(mountPoint, 'marker'), 'utf8')).toBe('before snapshot');
    expect(() => writeFileSync(join(mountPoint, 'new-file'), 'x')).toThrow(expect.objectContaining({ code: 'EROFS' }));

    expect(await getJson<Mount>('/api/mount')).toEqual(mount);
  });

  test('mounting the same snapshot again is a no-op and another one is refused while it is mounted', async () => {
    const again = await getJson<Mount>(`/api/mountlv/snap1`);
    expect(again.LVPath).toBe(join(snapshotsDir, 'snap1'));
    expect(mountEntriesAt(mountPoint)).toHaveLength(1);

    const other = await getJson<ApiError>('/api/mountlv?lv=snap2', 409);
    expect(other.Message).toContain(`cannot mount ${fx.device} at ${mountPoint}`);
    expect(other.Message).toContain('already mounted there');
    expect(mountEntriesAt(mountPoint).map((m) => m.root)).toEqual(['/snapshots/snap1']);
  });

  test('removelv refuses a mounted snapshot, a writable subvolume, and a missing one', async () => {
    expect((await getJson<ApiError>('/api/removelv?lv=snap1', 409)).Message).toContain('is mounted at');
    expect((await getJson<ApiError>('/api/removelv?lv=writable', 403)).Message).toContain('not a read-only snapshot');
    expect((await getJson<ApiError>('/api/removelv?lv=nosuch', 404)).Message).toContain('snapshot not found');
    expect(existsSync(join(snapshotsDir, 'snap1'))).toBe(true);
    expect(existsSync(join(snapshotsDir, 'writable'))).toBe(true);
  });

  test('umount unmounts, and unmounting again is fine', async () => {
    const first = await getJson<Mount>('/api/umount');
    expect(first).toMatchObject({ Path: mountPoint, IsMounted: false, Device: '', DiskUsage: 0 });
    expect(mountsUnder(mountPoint)).toEqual([]);
    expect((await getJson<Mount>('/api/umount')).IsMounted).toBe(false);
    expect((await getJson<Mount>('/api/mount')).IsMounted).toBe(false);
  });

  test('concurrent mountlv requests end with exactly one mount: one succeeds, the other is refused', async () => {
    const replies = await Promise.all(['snap1', 'snap2', 'snap1', 'snap2'].map((lv) => get(`/api/mountlv?lv=${lv}`)));
    const statuses = replies.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(2);
    expect(statuses.filter((s) => s === 409)).toHaveLength(2);
    expect(mountEntriesAt(mountPoint)).toHaveLength(1);
    expect((await getJson<Mount>('/api/umount')).IsMounted).toBe(false);
    expect(mountsUnder(mountPoint)).toEqual([]);
  });

  test('removelv deletes a read-only snapshot with btrfs subvolume delete', async () => {
    expect(await getJson<boolean>(`/api/removelv?lv=${encodeURIComponent(join(snapshotsDir, 'snap2'))}`)).toBe(true);
    expect(existsSync(join(snapshotsDir, 'snap2'))).toBe(false);
    expect((await getJson<LogicalVolume[]>('/api/lvs')).map((v) => v.Name)).toEqual(['snap1', 'writable']);
  });

  test('create-snapshot takes a read-only snapshot of BtrfsSnapshotSource', async () => {
    expect(await getJson<boolean>('/api/create-snapshot')).toBe(true);
    const created = (await getJson<LogicalVolume[]>('/api/lvs/snapshot-')).filter((v) => v.Name.startsWith('snapshot-'));
    expect(created).toHaveLength(1);
    expect(created[0].IsSnapshot).toBe(true);
    expect(readFileSync(join(created[0].Path, 'marker'), 'utf8')).toBe('after snapshot');
  });

  test('invalid volume names are refused with 400 before anything runs', async () => {
    for (const bad of ['../x', 'a;b', '$(x)', join(fx.fsDir, 'live'), `${snapshotsDir}/../live`]) {
      for (const route of ['/api/mountlv', '/api/removelv', '/api/lv']) {
        const res = await get(`${route}?lv=${encodeURIComponent(bad)}`);
        expect([route, bad, res.status]).toEqual([route, bad, 400]);
      }
    }
    expect((await get('/api/mountlv')).status).toBe(400);
    expect(mountsUnder(mountPoint)).toEqual([]);
    expect(existsSync(join(fx.fsDir, 'live'))).toBe(true);
  });

  test('state-changing routes also take POST with the token in a header, and not in the URL', async () => {
    const ok = await fetch(`${agent.baseUrl}/api/mountlv?lv=snap1`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
    expect(ok.status).toBe(200);
    expect(mountEntriesAt(mountPoint)).toHaveLength(1);
    const refused = await fetch(`${agent.baseUrl}/api/umount?token=${token}`, { method: 'POST' });
    expect(refused.status).toBe(401);
    expect(mountEntriesAt(mountPoint)).toHaveLength(1);
    const off = await fetch(`${agent.baseUrl}/api/umount`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
    expect(off.status).toBe(200);
    expect(mountEntriesAt(mountPoint)).toHaveLength(0);
  });
});
