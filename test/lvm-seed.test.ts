// Seeds from real LVM snapshots: the source agent runs inside the VM of test/support/lvm-vm.ts (real
// device-mapper), the target agent and its MariaDB on this host; the built-in transfer crosses qemu's user
// network (the guest reaches the host as 10.0.2.2). One boot and one guest agent for the whole file.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient, type Reply } from './support/agent-client.js';
import { tempDir } from './support/agent-process.js';
import { bootLvmVm, haveVmTools, startGuestAgent, type GuestAgent, type LvmVm } from './support/lvm-vm.js';
import { freePort, haveMariaDB, installDatadir, mariadbInstance, runScript, type MariaDBInstance } from './support/mariadb.js';
import { startSeedAgent, type SeedAgent } from './support/seed-api.js';

const canRun = haveVmTools && haveMariaDB;
if (!canRun) console.log('SKIPPED: the LVM seed tests need qemu-system-x86, busybox-static and MariaDB (installed by .ci/run)');

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 300000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

function ok(reply: Reply, what: string): unknown {
  if (reply.status !== 200) throw new Error(`${what}: HTTP ${reply.status} ${JSON.stringify(reply.body)}`);
  return reply.body;
}

(canRun ? describe : describe.skip)('seeding from real LVM snapshots (source agent in a VM with device-mapper)', () => {
  const vg = 'vgseed';
  const mountPoint = '/run/oa-snapshot';
  let dir: string;
  let vm: LvmVm;
  let booting: Promise<LvmVm> | undefined;
  let source: GuestAgent;
  let src: AgentClient;
  let target: SeedAgent;
  let tgt: AgentClient;
  let sourceDb: MariaDBInstance;
  let targetDb: MariaDBInstance;
  const expected = { rows: '', checksum: '', orders: '' };

  /** POST JSON to the guest agent's seed API. */
  const srcPost = async (path: string, body: unknown) => {
    const res = await fetch(`${src.baseUrl}${path}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${src.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const lvState = async (lv: string) => (await vm.sh(`lvs --noheadings --separator '|' -o lv_attr,snap_percent ${vg}/${lv}`)).trim();

  beforeAll(async () => {
    dir = tempDir('oa-lvm-seed-');
    // Where the set-up time goes (software emulation on a shared machine is slow): printed as it goes.
    const t0 = Date.now();
    const phase = (what: string) => console.log(`${what} after ${Math.round((Date.now() - t0) / 1000)} s`);
    const transferPort = await freePort();
    // Booting meanwhile; afterAll waits for it even when the set-up fails before it is awaited.
    booting = bootLvmVm({ shareDir: dir, forwardPorts: [3002], diskSizeMB: 1024 });

    // A real MariaDB datadir, made on this host and stopped cleanly: its rows and checksums are the truth.
    const sourceDatadir = join(dir, 'source-data');
    installDatadir(sourceDatadir);
    sourceDb = await mariadbInstance(dir, sourceDatadir, 'source');
    runScript(sourceDb.commands.start);
    sourceDb.sql('CREATE DATABASE seedtest');
    sourceDb.sql('CREATE TABLE seedtest.t (id INT PRIMARY KEY, v VARCHAR(40), n DOUBLE) ENGINE=InnoDB');
    sourceDb.sql("USE seedtest; INSERT INTO seedtest.t SELECT seq, CONCAT('row-', seq), seq * 1.5 FROM seq_1_to_50000");
    sourceDb.sql('CREATE TABLE seedtest.orders (id INT AUTO_INCREMENT PRIMARY KEY, t_id INT, note TEXT) ENGINE=InnoDB');
    sourceDb.sql("USE seedtest; INSERT INTO seedtest.orders (t_id, note) SELECT seq, REPEAT('x', seq % 200) FROM seq_1_to_20000");
    expected.rows = sourceDb.sql('SELECT COUNT(*) FROM seedtest.t');
    expected.checksum = sourceDb.sql('CHECKSUM TABLE seedtest.t');
    expected.orders = sourceDb.sql('CHECKSUM TABLE seedtest.orders');
    runScript(sourceDb.commands.stop);

    // The target: a broken replica, a running server on a datadir the seed replaces.
    const targetDatadir = join(dir, 'target-data');
    installDatadir(targetDatadir);
    targetDb = await mariadbInstance(dir, targetDatadir, 'target');
    runScript(targetDb.commands.start);
    targetDb.sql('CREATE DATABASE stale_replica_data');
    mkdirSync(join(dir, 'target-agent'));
    target = await startSeedAgent(join(dir, 'target-agent'), {
      SeedTransferSecret: 'fleet-wide-secret',
      SeedTransferPort: transferPort,
      SeedTransferBindAddress: '127.0.0.1',
      CommandTimeoutSeconds: 120,
      MySQLDatadirCommand: targetDb.commands.datadir,
      MySQLPortCommand: targetDb.commands.port,
      MySQLServiceStatusCommand: targetDb.commands.status,
      MySQLServiceStartCommand: targetDb.commands.start,
      MySQLServiceStopCommand: targetDb.commands.stop,
    });
    tgt = new AgentClient(target.agent.baseUrl, target.token);

    // The source host: the datadir on an ext4 LV (as /var/lib/mysql would be), and a small volume for
    // the snapshot that fills up.
    vm = await booting;
    phase(`source MariaDB datadir, target agent and VM ready (the boot took ${vm.bootMs} ms)`);
    await vm.sh(
      [
        'set -e',
        `pvcreate -q /dev/vda && vgcreate -q ${vg} /dev/vda`,
        `lvcreate -q -L 400M -n mysql ${vg} && mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 /dev/${vg}/mysql`,
        `lvcreate -q -L 100M -n busy ${vg} && mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 /dev/${vg}/busy`,
        `mkdir -p /run/mysql /run/busy && mount /dev/${vg}/mysql /run/mysql && mount /dev/${vg}/busy /run/busy`,
        `cp -a ${sourceDatadir}/. /run/mysql/`,
        'mkdir -p /run/busy/mysql && head -c 62914560 /dev/urandom > /run/busy/ibdata1 && echo t > /run/busy/mysql/user.frm',
        'sync',
      ].join('\n'),
      300000,
    );
    phase('volumes made and the datadir copied onto the LV');
    source = await startGuestAgent(vm, join(dir, 'source-agent'), {
      SnapshotMountPoint: mountPoint,
      MySQLDatadirCommand: 'echo /var/lib/mysql',
      CreateSnapshotCommand: `lvcreate -q -s -L 200M -n mysql_snap ${vg}/mysql`,
      SeedTransferSecret: 'fleet-wide-secret',
      SeedTransferPort: transferPort,
      CommandTimeoutSeconds: 300,
    });
    phase(`agent in the VM answered (${source.startMs} ms after node started)`);
    src = source.client;
  }, 900000);

  afterAll(async () => {
    await source?.stop().catch(() => undefined);
    await (await booting?.catch(() => undefined))?.stop();
    await target?.agent.stop();
    await sourceDb?.kill();
    await targetDb?.kill();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120000);

  test("a real MariaDB datadir seeded from an LVM snapshot, driven as orchestrator does: the target's checksums equal the source's", async () => {
    expect(ok(await tgt.get('/api/mysql-stop'), 'mysql-stop')).toBe(true);
    expect(ok(await src.get('/api/create-snapshot'), 'create-snapshot')).toBe(true);
    // Writes after the snapshot must not reach the copy: the seed reads the snapshot, not the live volume.
    await vm.sh('rm -rf /run/mysql/seedtest && sync');
    const snapshots = ok(await src.get('/api/lvs-snapshots'), 'lvs-snapshots') as Array<{ Name: string; Path: string }>;
    expect(snapshots.map((s) => s.Name)).toEqual(['mysql_snap']);
    expect(ok(await src.get(`/api/mountlv?lv=${encodeURIComponent(snapshots[0].Path)}`), 'mountlv')).toMatchObject({ IsMounted: true, FileSystem: 'ext4' });
    const mount = ok(await src.get('/api/mount'), 'mount') as { MySQLDataPath: string; MySQLDiskUsage: number };
    expect(mount.MySQLDataPath).toBe(mountPoint);
    expect(mount.MySQLDiskUsage).toBeGreaterThan(10 * 1024 * 1024);

    const seedId = `lvm-mariadb-${process.pid}`;
    expect(ok(await tgt.get('/api/delete-mysql-datadir'), 'delete-mysql-datadir')).toBe(true);
    expect(readdirSync(targetDb.datadir)).toEqual([]);
    expect(ok(await tgt.get(`/api/receive-mysql-seed-data/${seedId}`), 'receive')).toBe(true);
    expect(ok(await src.get(`/api/send-mysql-seed-data/10.0.2.2/${seedId}`), 'send')).toBe(true);
    await until('target seed command completed', async () => ((await tgt.get(`/api/seed-command-completed/${seedId}`)).body === true ? true : undefined));
    await until('source seed command completed', async () => ((await src.get(`/api/seed-command-completed/${seedId}`)).body === true ? true : undefined));
    expect(ok(await tgt.get(`/api/seed-command-succeeded/${seedId}`), 'target succeeded')).toBe(true);
    expect(ok(await src.get(`/api/seed-command-succeeded/${seedId}`), 'source succeeded')).toBe(true);

    expect(ok(await src.get('/api/umount'), 'umount')).toMatchObject({ IsMounted: false });
    expect(ok(await src.get('/api/removelv?lv=vgseed/mysql_snap'), 'removelv')).toBe(true);
    expect(ok(await tgt.get('/api/mysql-start'), 'mysql-start')).toBe(true);
    expect(targetDb.sql('SELECT COUNT(*) FROM seedtest.t')).toBe(expected.rows);
    expect(targetDb.sql('CHECKSUM TABLE seedtest.t')).toBe(expected.checksum);
    expect(targetDb.sql('CHECKSUM TABLE seedtest.orders')).toBe(expected.orders);
    expect(targetDb.sql("SHOW DATABASES LIKE 'stale_replica_data'")).toBe('');
  }, 900000);

  test('a snapshot that fills up while the seed reads it fails the seed with a message saying so, and the target keeps no copy', async () => {
    await vm.sh(`lvcreate -q -s -L 8M -n busy_snap ${vg}/busy`);
    const seedId = `lvm-full-${process.pid}`;
    const created = await target.call<{ transfer: { port: number; authKey: string } }>('POST', '/api/seeds', { id: seedId, role: 'target' });
    expect(created.status).toBe(201);
    const sent = await srcPost('/api/seeds', {
      id: seedId,
      role: 'source',
      targetHost: '10.0.2.2',
      targetPort: created.body.transfer.port,
      authKey: created.body.transfer.authKey,
      snapshot: `${vg}/busy_snap`,
    });
    expect(sent.status).toBe(201);

    // Once bytes arrive, hold the target still (the sender blocks on a full socket, with most of the
    // 60 MB still unread), write more to the origin than the snapshot can hold, then let the copy go on.
    await target.waitFor(seedId, (v) => (v.progress?.bytesDone ?? 0) > 0, 'first bytes received', 300000);
    process.kill(target.agent.child.pid!, 'SIGSTOP');
    try {
      await vm.sh('head -c 16777216 /dev/urandom > /run/busy/later-writes && sync', 120000);
      expect(await lvState('busy_snap')).toMatch(/^s...I.*\|100\.00$/);
    } finally {
      process.kill(target.agent.child.pid!, 'SIGCONT');
    }

    const failed = await until('the source seed to fail', async () => {
      const res = await src.get(`/api/seeds/${seedId}`);
      const view = res.body as { status: string; error: { code: string; message: string; hint: string | null } | null };
      return ['failed', 'done'].includes(view.status) ? view : undefined;
    });
    expect(failed.status).toBe('failed');
    expect(failed.error?.message).toContain(`snapshot ${vg}/busy_snap mounted at ${mountPoint} is no longer valid: its copy-on-write space filled up (100% used)`);
    expect(failed.error?.hint).toContain('take a larger snapshot');
    const targetView = await target.waitFor(seedId, (v) => v.status !== 'active', 'the target seed to end', 300000);
    expect(targetView.status).toBe('failed');
    expect(targetView.error?.message).toContain('the sender stopped the transfer: ');
    expect(targetView.error?.message).toContain('is no longer valid');
    expect(existsSync(join(targetDb.datadir, '.orchestrator-agent-transfer-manifest.json'))).toBe(false);
    // The seed unmounted what it mounted; the invalid snapshot can go.
    expect(await vm.sh(`findmnt -rn --mountpoint ${mountPoint} || true`)).toBe('');
    expect(ok(await src.get(`/api/removelv?lv=${vg}/busy_snap`), 'removelv')).toBe(true);
  }, 900000);
});
