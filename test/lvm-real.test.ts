// The LVM backend against real device-mapper: a small qemu VM (test/support/lvm-vm.ts) with a Debian
// kernel, this host's own lvm2/e2fsprogs/xfsprogs/util-linux binaries, and the agent running inside it
// (it must: it mounts snapshots and reads their files and /proc/self/mountinfo). One boot for this file.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './support/agent-process.js';
import { errorMessage, type Reply } from './support/agent-client.js';
import { bootLvmVm, haveVmTools, startGuestAgent, type GuestAgent, type LvmVm } from './support/lvm-vm.js';

if (!haveVmTools) console.log('SKIPPED: the real LVM tests need qemu-system-x86 and busybox-static (installed by .ci/run)');

(haveVmTools ? describe : describe.skip)('a VM with real device-mapper, driven through its command port', () => {
  let vm: LvmVm;
  let dir: string;

  beforeAll(async () => {
    dir = tempDir('oa-lvm-real-');
    vm = await bootLvmVm({ shareDir: dir, forwardPorts: [3002] });
    console.log(`LVM VM booted in ${vm.bootMs} ms`);
  }, 240000);

  afterAll(async () => {
    await vm?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60000);

  test("commands answer with their own stdout, stderr and exit status, output without a final newline included", async () => {
    expect(await vm.exec('printf out; printf err >&2; exit 3')).toEqual({ code: 3, stdout: 'out', stderr: 'err' });
    expect(await vm.exec("printf 'two\\nlines\\n'")).toEqual({ code: 0, stdout: 'two\nlines\n', stderr: '' });
    await expect(vm.sh('false')).rejects.toThrow('VM command exited 1: false');
  });

  test('the guest runs its own kernel with device-mapper snapshots, and this host’s lvm binary', async () => {
    expect(await vm.sh('uname -n')).toBe('oa-lvm-vm\n');
    expect(await vm.sh('uname -r')).not.toBe(readFileSync('/proc/sys/kernel/osrelease', 'utf8'));
    expect(await vm.sh('dmsetup targets')).toMatch(/^snapshot\s/m);
    expect(await vm.sh('lvm version')).toContain('LVM version');
    expect(await vm.sh('test -b /dev/vda && echo disk')).toBe('disk\n');
  });

  test('the shared directory is the same path on both sides, and guest files can be read', async () => {
    writeFileSync(join(dir, 'from-host'), 'hello guest');
    expect(await vm.sh(`cat ${join(dir, 'from-host')}; head -c 3 /dev/zero > ${join(dir, 'from-guest')}`)).toBe('hello guest');
    expect(readFileSync(join(dir, 'from-guest'))).toEqual(Buffer.alloc(3));
    await vm.sh('head -c 70000 /dev/urandom > /run/blob; sha256sum /run/blob > /run/blob.sum');
    const blob = await vm.readFile('/run/blob');
    expect(blob).toHaveLength(70000);
    const { createHash } = await import('node:crypto');
    expect((await vm.sh('cat /run/blob.sum')).split(' ')[0]).toBe(createHash('sha256').update(blob).digest('hex'));
    await expect(vm.readFile('/run/no-such-file')).rejects.toThrow('cannot read /run/no-such-file');
  });

  describe('the lvm backend (agent inside the VM) on real volumes: ext4 and xfs origins, each with a snapshot', () => {
    let agent: GuestAgent;
    const mountPoint = '/run/oa-snapshot';
    const vg = 'vgoa';
    const ok = (reply: Reply, status = 200): unknown => {
      if (reply.status !== status) throw new Error(`expected HTTP ${status}, got ${reply.status}: ${JSON.stringify(reply.body)}`);
      return reply.body;
    };
    const get = async (path: string, status = 200) => ok(await agent.client.get(path), status);
    /** What lvs itself says about one volume: snap_percent and the attribute string. */
    const lvsOf = async (lv: string) => {
      const [percent, attr] = (await vm.sh(`lvs --noheadings --separator '|' -o snap_percent,lv_attr ${vg}/${lv}`)).trim().split('|');
      return { percent, attr };
    };
    const mountsAt = async (path: string) => (await vm.sh(`findmnt -rn -o SOURCE,FSTYPE,OPTIONS --mountpoint ${path} || true`)).trim();

    beforeAll(async () => {
      // Origins mounted read-write as a MySQL host has them; each snapshot taken, then the origin changed.
      await vm.sh(
        [
          'set -e',
          `pvcreate -q /dev/vda && vgcreate -q ${vg} /dev/vda`,
          `lvcreate -q -L 100M -n data ${vg} && mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 /dev/${vg}/data`,
          `lvcreate -q -L 320M -n xdata ${vg} && mkfs.xfs -q /dev/${vg}/xdata`,
          `mkdir -p /run/origin /run/xorigin && mount /dev/${vg}/data /run/origin && mount /dev/${vg}/xdata /run/xorigin`,
          'for d in /run/origin /run/xorigin; do mkdir -p $d/seedtest; head -c 1048576 /dev/urandom > $d/ibdata1; echo before > $d/seedtest/version; done; sync',
          `lvcreate -q -s -L 20M -n data_snap1 ${vg}/data`,
          `lvcreate -q -s -L 20M -n xdata_snap1 ${vg}/xdata`,
          'for d in /run/origin /run/xorigin; do echo after > $d/seedtest/version; head -c 3145728 /dev/urandom > $d/ibdata1; done; sync',
        ].join('\n'),
        180000,
      );
      agent = await startGuestAgent(vm, join(dir, 'agent'), {
        SnapshotMountPoint: mountPoint,
        MySQLDatadirCommand: 'echo /var/lib/mysql',
        CreateSnapshotCommand: `lvcreate -q -s -L 8M -n data_snap2 ${vg}/data`,
        CommandTimeoutSeconds: 120,
      });
      console.log(`agent in the VM answered ${agent.startMs} ms after node started`);
    }, 300000);

    afterAll(async () => {
      await agent?.stop();
    }, 60000);

    test('/api/lvs parses real lvs output, the snapshots with the percent lvs reports', async () => {
      const lvs = (await get('/api/lvs')) as Array<Record<string, unknown>>;
      const snap1 = await lvsOf('data_snap1');
      const xsnap1 = await lvsOf('xdata_snap1');
      expect(Number(snap1.percent)).toBeGreaterThan(0);
      expect(lvs).toEqual([
        { Name: 'data', GroupName: vg, Path: `/dev/${vg}/data`, IsSnapshot: false, SnapshotPercent: 0 },
        { Name: 'data_snap1', GroupName: vg, Path: `/dev/${vg}/data_snap1`, IsSnapshot: true, SnapshotPercent: Number(snap1.percent) },
        { Name: 'xdata', GroupName: vg, Path: `/dev/${vg}/xdata`, IsSnapshot: false, SnapshotPercent: 0 },
        { Name: 'xdata_snap1', GroupName: vg, Path: `/dev/${vg}/xdata_snap1`, IsSnapshot: true, SnapshotPercent: Number(xsnap1.percent) },
      ]);
    });

    test('/api/lvs/:pattern, /api/lvs-snapshots and /api/lv pick from the same volumes', async () => {
      expect(((await get('/api/lvs/xdata')) as Array<{ Name: string }>).map((lv) => lv.Name)).toEqual(['xdata', 'xdata_snap1']);
      expect(((await get('/api/lvs-snapshots')) as Array<{ Name: string }>).map((lv) => lv.Name)).toEqual(['data_snap1', 'xdata_snap1']);
      expect(await get(`/api/lv?lv=${vg}/data_snap1`)).toEqual([expect.objectContaining({ Name: 'data_snap1', IsSnapshot: true })]);
      expect(await get(`/api/lv?lv=/dev/${vg}/xdata`)).toEqual([expect.objectContaining({ Name: 'xdata', IsSnapshot: false })]);
    });

    test('/api/create-snapshot runs the configured lvcreate -s, and the new snapshot is listed', async () => {
      expect(await get('/api/create-snapshot')).toBe(true);
      const made = await lvsOf('data_snap2');
      expect(made.attr).toMatch(/^s/);
      expect(await get('/api/lv?lv=data_snap2')).toEqual([
        { Name: 'data_snap2', GroupName: vg, Path: `/dev/${vg}/data_snap2`, IsSnapshot: true, SnapshotPercent: Number(made.percent) },
      ]);
    });

    test('/api/mountlv mounts an ext4 snapshot read-only, showing the data as it was when the snapshot was taken', async () => {
      const mount = (await get(`/api/mountlv?lv=${vg}/data_snap1`)) as Record<string, unknown>;
      expect(mount).toMatchObject({ Path: mountPoint, LVPath: `/dev/${vg}/data_snap1`, FileSystem: 'ext4', IsMounted: true, MySQLDataPath: mountPoint });
      expect(mount.DiskUsage).toBeGreaterThan(1048576);
      expect(mount.MySQLDiskUsage).toBeGreaterThan(1048576);
      const mounted = await mountsAt(mountPoint);
      expect(mounted).toMatch(new RegExp(`^/dev/mapper/${vg}-data_snap1 ext4 ro,`));
      expect(mount.Device).toBe(mounted.split(' ')[0]);
      expect(await vm.sh(`cat ${mountPoint}/seedtest/version /run/origin/seedtest/version`)).toBe('before\nafter\n');
      expect(await vm.sh(`stat -c %s ${mountPoint}/ibdata1`)).toBe('1048576\n');
      expect((await vm.exec(`touch ${mountPoint}/x`)).stderr).toContain('Read-only file system');
      expect(await get('/api/mount')).toEqual(mount);
      expect(await get(`/api/mountlv?lv=${vg}/data_snap1`)).toEqual(mount);
    });

    test('/api/removelv refuses the mounted snapshot; /api/umount unmounts it, and again is a no-op', async () => {
      expect(errorMessage(await agent.client.get(`/api/removelv?lv=${vg}/data_snap1`))).toBe(`refusing to remove ${vg}/data_snap1: it is mounted at ${mountPoint}`);
      expect(await get('/api/umount')).toMatchObject({ Path: mountPoint, IsMounted: false, LVPath: '', Device: '' });
      expect(await mountsAt(mountPoint)).toBe('');
      expect(await get('/api/umount')).toMatchObject({ IsMounted: false });
    });

    test('/api/mountlv mounts an xfs snapshot while its origin is mounted, with nouuid', async () => {
      expect((await vm.exec(`mkdir -p /run/plain && mount -o ro /dev/${vg}/xdata_snap1 /run/plain`)).code).not.toBe(0);
      const mount = (await get(`/api/mountlv?lv=${vg}/xdata_snap1`)) as Record<string, unknown>;
      expect(mount).toMatchObject({ LVPath: `/dev/${vg}/xdata_snap1`, FileSystem: 'xfs', IsMounted: true, MySQLDataPath: mountPoint });
      expect(await mountsAt(mountPoint)).toMatch(new RegExp(`^/dev/mapper/${vg}-xdata_snap1 xfs ro,.*nouuid`));
      expect(await vm.sh(`cat ${mountPoint}/seedtest/version /run/xorigin/seedtest/version`)).toBe('before\nafter\n');
      expect(errorMessage(await agent.client.get(`/api/mountlv?lv=${vg}/data_snap1`))).toContain('is already mounted there');
      expect(await get('/api/umount')).toMatchObject({ IsMounted: false });
    });

    test('/api/removelv removes a snapshot and refuses an origin volume', async () => {
      const refused = await agent.client.get(`/api/removelv?lv=${vg}/data`);
      expect(refused.status).toBe(403);
      expect(errorMessage(refused)).toBe(`refusing to remove ${vg}/data: it is not a snapshot`);
      expect(await get(`/api/removelv?lv=${vg}/data_snap2`)).toBe(true);
      expect((await vm.sh(`lvs --noheadings -o lv_name ${vg}`)).split(/\s+/).filter(Boolean)).toEqual(['data', 'data_snap1', 'xdata', 'xdata_snap1']);
    });
  });
});
