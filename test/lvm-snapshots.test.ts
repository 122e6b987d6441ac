import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAgentProcess, tempDir, writeConfig, type AgentProcess } from './support/agent-process.js';
import { mountsUnder } from './support/btrfs-fixture.js';
import { createLvm, type LvmFixture } from './support/lvm-fixture.js';

interface LogicalVolume {
  Name: string;
  GroupName: string;
  Path: string;
  IsSnapshot: boolean;
  SnapshotPercent: number;
}

describe('LVM backend against real lvs/lvremove on metadata-only LVM (no device-mapper here)', () => {
  let fx: LvmFixture;
  let agent: AgentProcess;
  let token: string;
  let dir: string;
  const vg = `oatest${process.pid}`;

  const get = async (path: string) => fetch(`${agent.baseUrl}${path}${path.includes('?') ? '&' : '?'}token=${token}`);
  const getJson = async <T>(path: string, status = 200): Promise<T> => {
    const res = await get(path);
    const body = (await res.json()) as T;
    if (res.status !== status) throw new Error(`${path}: expected ${status}, got ${res.status}: ${JSON.stringify(body)}`);
    return body;
  };
  const volume = (name: string, isSnapshot: boolean): LogicalVolume => ({
    Name: name,
    GroupName: vg,
    Path: `/dev/${vg}/${name}`,
    IsSnapshot: isSnapshot,
    SnapshotPercent: 0,
  });

  beforeAll(async () => {
    dir = tempDir('oa-lvm-');
    fx = createLvm(dir, vg);
    agent = await startAgentProcess(
      writeConfig(dir, { TokenHintFile: join(dir, 'token'), SnapshotMountPoint: join(dir, 'mnt'), SnapshotVolumesFilter: 'a' }),
      fx.env,
    );
    token = readFileSync(join(dir, 'token'), 'utf8');
  });

  afterAll(async () => {
    await agent?.stop();
    fx?.cleanup();
  });

  test('/api/lvs parses real lvs output: the origin, the snapshot and a plain volume', async () => {
    expect(await getJson<LogicalVolume[]>('/api/lvs')).toEqual([volume('data', false), volume('other', false), volume('snap1', true)]);
  });

  test('/api/lvs-snapshots lists only snapshots matching SnapshotVolumesFilter; /api/lvs/:pattern all matches', async () => {
    // The filter "a" matches data and snap1: orchestrator seeds from the first entry, which must be a snapshot.
    expect(await getJson<LogicalVolume[]>('/api/lvs-snapshots')).toEqual([volume('snap1', true)]);
    expect(await getJson<LogicalVolume[]>('/api/lvs/a')).toEqual([volume('data', false), volume('snap1', true)]);
    expect(await getJson<LogicalVolume[]>('/api/lvs/ath')).toEqual([]);
    expect(await getJson<LogicalVolume[]>('/api/lvs/dat')).toEqual([volume('data', false)]);
  });

  test('/api/lv finds a volume by name, vg/name or path', async () => {
    for (const name of ['snap1', `${vg}/snap1`, `/dev/${vg}/snap1`]) {
      expect(await getJson<LogicalVolume[]>(`/api/lv?lv=${encodeURIComponent(name)}`)).toEqual([volume('snap1', true)]);
    }
    expect(await getJson<LogicalVolume[]>('/api/lv/snap1')).toEqual([volume('snap1', true)]);
  });

  test('mounting an inactive LV fails with a clear error and leaves nothing mounted', async () => {
    const res = await get('/api/mountlv?lv=snap1');
    expect(res.status).toBe(503);
    const body = (await res.json()) as { Code: string; Message: string; Details: { hint: string } };
    expect(body.Code).toBe('ERROR');
    expect(body.Message).toBe(`cannot mount ${vg}/snap1: its device /dev/${vg}/snap1 does not exist (the volume is not active)`);
    expect(body.Details.hint).toContain(`lvchange -ay ${vg}/snap1`);
    expect(mountsUnder(join(dir, 'mnt'))).toEqual([]);
    expect(await getJson<{ IsMounted: boolean }>('/api/mount')).toMatchObject({ Path: join(dir, 'mnt'), IsMounted: false });
  });

  test('removelv refuses a volume that is not a snapshot and one that does not exist', async () => {
    expect((await getJson<{ Message: string }>('/api/removelv?lv=data', 403)).Message).toContain('it is not a snapshot');
    expect((await getJson<{ Message: string }>('/api/removelv?lv=nosuch', 404)).Message).toContain('logical volume not found: nosuch');
    expect(fx.lvs()).toMatch(/\bdata\b/);
  });

  test('removelv runs the real lvremove on the snapshot', async () => {
    expect(fx.lvs()).toMatch(/snap1\s+data/);
    expect(await getJson<boolean>(`/api/removelv?lv=${vg}/snap1`)).toBe(true);
    expect(fx.lvs()).not.toMatch(/snap1/);
    expect(await getJson<LogicalVolume[]>('/api/lvs')).toEqual([volume('data', false), volume('other', false)]);
  });

  test('invalid volume names are refused with 400', async () => {
    for (const bad of ['../x', 'a;b', '$(x)', `${vg}/../x`, '/etc/passwd']) {
      for (const route of ['/api/mountlv', '/api/removelv', '/api/lv']) {
        const res = await get(`${route}?lv=${encodeURIComponent(bad)}`);
        expect([route, bad, res.status]).toEqual([route, bad, 400]);
      }
    }
    expect(fx.lvs()).toMatch(/\bdata\b/);
  });

  test('umount with nothing mounted is fine', async () => {
    expect(await getJson<{ IsMounted: boolean }>('/api/umount')).toMatchObject({ IsMounted: false });
  });
});
