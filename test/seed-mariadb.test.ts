// The whole seed, as an unchanged orchestrator drives it, on real parts: a MariaDB datadir on btrfs, a
// read-only snapshot mounted by the source agent, the built-in transfer to the target agent over TCP on
// 127.0.0.1, and the target MariaDB started on the copy with the same rows and table checksums.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient, type Reply } from './support/agent-client.js';
import { startAgentProcess, tempDir, writeConfig, type AgentProcess } from './support/agent-process.js';
import { createBtrfs, mountsUnder, run, type BtrfsFixture } from './support/btrfs-fixture.js';
import { freePort, haveMariaDB, installDatadir, mariadbInstance, runScript, type MariaDBInstance } from './support/mariadb.js';

if (!haveMariaDB) console.log('SKIPPED: the MariaDB seed test needs mariadb-server-core and mariadb-client (installed by .ci/run)');

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 120000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function ok(reply: Reply, what: string): unknown {
  if (reply.status !== 200) throw new Error(`${what}: HTTP ${reply.status} ${JSON.stringify(reply.body)}`);
  return reply.body;
}

(haveMariaDB ? describe : describe.skip)('seeding a real MariaDB replica from a btrfs snapshot, driven as orchestrator does', () => {
  const dir = tempDir('oa-seed-mariadb-');
  const seedId = `mariadb-seed-${process.pid}`;
  let btrfs: BtrfsFixture;
  let sourceDb: MariaDBInstance;
  let targetDb: MariaDBInstance;
  let source: AgentProcess;
  let target: AgentProcess;
  let src: AgentClient;
  let tgt: AgentClient;
  const expected = { rows: '', checksum: '', orders: '' };

  beforeAll(async () => {
    mkdirSync(join(dir, 'btrfs'));
    btrfs = createBtrfs(join(dir, 'btrfs'), 'seedsrc');
    const sourceDatadir = join(btrfs.fsDir, 'datadir');
    run('btrfs', ['subvolume', 'create', sourceDatadir]);
    mkdirSync(join(btrfs.fsDir, 'snapshots'));
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
    sourceDb.sql('FLUSH TABLES');

    // The target is a broken replica: a running server on a datadir the seed replaces.
    const targetDatadir = join(dir, 'target-data');
    installDatadir(targetDatadir);
    targetDb = await mariadbInstance(dir, targetDatadir, 'target');
    runScript(targetDb.commands.start);
    targetDb.sql('CREATE DATABASE stale_replica_data');

    mkdirSync(join(dir, 'source-agent'));
    mkdirSync(join(dir, 'target-agent'));
    const transferPort = await freePort();
    const common = { SeedTransferSecret: 'fleet-wide-secret', SeedTransferPort: transferPort, CommandTimeoutSeconds: 120 };
    source = await startAgentProcess(
      writeConfig(join(dir, 'source-agent'), {
        ...common,
        TokenHintFile: join(dir, 'source-token'),
        SnapshotBackend: 'btrfs',
        BtrfsSnapshotsDir: join(btrfs.fsDir, 'snapshots'),
        BtrfsSnapshotSource: sourceDatadir,
        SnapshotMountPoint: join(dir, 'snapshot-mount'),
        MySQLDatadirCommand: sourceDb.commands.datadir,
        MySQLPortCommand: sourceDb.commands.port,
        MySQLServiceStatusCommand: sourceDb.commands.status,
        MySQLServiceStartCommand: sourceDb.commands.start,
        MySQLServiceStopCommand: sourceDb.commands.stop,
      }),
    );
    target = await startAgentProcess(
      writeConfig(join(dir, 'target-agent'), {
        ...common,
        TokenHintFile: join(dir, 'target-token'),
        MySQLDatadirCommand: targetDb.commands.datadir,
        MySQLPortCommand: targetDb.commands.port,
        MySQLServiceStatusCommand: targetDb.commands.status,
        MySQLServiceStartCommand: targetDb.commands.start,
        MySQLServiceStopCommand: targetDb.commands.stop,
        PostCopyCommand: `touch ${join(dir, 'post-copy-ran')} #`,
      }),
    );
    src = AgentClient.fromHintFile(source.baseUrl, join(dir, 'source-token'));
    tgt = AgentClient.fromHintFile(target.baseUrl, join(dir, 'target-token'));
  }, 300000);

  afterAll(async () => {
    await source?.stop();
    await target?.stop();
    await sourceDb?.kill();
    await targetDb?.kill();
    btrfs?.cleanup();
    for (const p of mountsUnder(dir)) run('umount', ['-l', p]);
    run('rm', ['-rf', dir]);
  }, 120000);

  test('the target MariaDB starts on the copy with the source rows and table checksums', async () => {
    // orchestrator: the target must be down, the source must have a snapshot.
    expect(ok(await tgt.get('/api/mysql-stop'), 'mysql-stop')).toBe(true);
    expect(ok(await tgt.get('/api/mysql-status'), 'mysql-status')).toBe(false);
    expect(ok(await src.get('/api/create-snapshot'), 'create-snapshot')).toBe(true);
    const snapshots = ok(await src.get('/api/lvs-snapshots'), 'lvs-snapshots') as Array<{ Name: string; Path: string; IsSnapshot: boolean }>;
    expect(snapshots.length).toBeGreaterThan(0);
    expect(snapshots[0].IsSnapshot).toBe(true);

    // Mount the first snapshot on the source; read its size.
    const mounted = ok(await src.get(`/api/mountlv?lv=${encodeURIComponent(snapshots[0].Path)}`), 'mountlv') as { IsMounted: boolean };
    expect(mounted.IsMounted).toBe(true);
    const mount = ok(await src.get('/api/mount'), 'mount') as { MySQLDataPath: string; MySQLDiskUsage: number };
    expect(mount.MySQLDataPath).toBe(join(dir, 'snapshot-mount'));
    expect(mount.MySQLDiskUsage).toBeGreaterThan(10 * 1024 * 1024);

    // Empty the target, check room, start receiving, then sending (no sleep needed in between).
    expect(ok(await tgt.get('/api/delete-mysql-datadir'), 'delete-mysql-datadir')).toBe(true);
    expect(readdirSync(targetDb.datadir)).toEqual([]);
    const free = ok(await tgt.get('/api/mysql-datadir-available-space'), 'available space') as number;
    expect(free).toBeGreaterThan(mount.MySQLDiskUsage);
    expect(ok(await tgt.get(`/api/receive-mysql-seed-data/${seedId}`), 'receive')).toBe(true);
    expect(ok(await src.get(`/api/send-mysql-seed-data/127.0.0.1/${seedId}`), 'send')).toBe(true);

    // orchestrator polls completion, then success, on both sides.
    await until('target seed command completed', async () => ((await tgt.get(`/api/seed-command-completed/${seedId}`)).body === true ? true : undefined));
    await until('source seed command completed', async () => ((await src.get(`/api/seed-command-completed/${seedId}`)).body === true ? true : undefined));
    expect(ok(await tgt.get(`/api/seed-command-succeeded/${seedId}`), 'target succeeded')).toBe(true);
    expect(ok(await src.get(`/api/seed-command-succeeded/${seedId}`), 'source succeeded')).toBe(true);

    const view = ok(await tgt.get(`/api/seeds/${seedId}`), 'seed view') as { status: string; progress: { bytesDone: number; bytesTotal: number } | null };
    expect(view.status).toBe('done');
    expect(view.progress?.bytesTotal).toBeGreaterThan(0);
    expect(view.progress?.bytesDone).toBe(view.progress?.bytesTotal);
    // The copy went to the disk with O_DIRECT (this filesystem takes it), and MariaDB reads it back below.
    expect(target.output()).toMatch(/transfer: receive complete .*"directWrites":true/);

    // Finish as orchestrator does: post-copy on the target, umount on the source, start the target.
    expect(ok(await tgt.get('/api/post-copy'), 'post-copy')).toBe(true);
    expect(existsSync(join(dir, 'post-copy-ran'))).toBe(true);
    const unmounted = ok(await src.get('/api/umount'), 'umount') as { IsMounted: boolean };
    expect(unmounted.IsMounted).toBe(false);
    expect(mountsUnder(join(dir, 'snapshot-mount'))).toEqual([]);
    expect(ok(await tgt.get('/api/mysql-start'), 'mysql-start')).toBe(true);

    expect(targetDb.sql('SELECT COUNT(*) FROM seedtest.t')).toBe(expected.rows);
    expect(targetDb.sql('CHECKSUM TABLE seedtest.t')).toBe(expected.checksum);
    expect(targetDb.sql('CHECKSUM TABLE seedtest.orders')).toBe(expected.orders);
    expect(targetDb.sql("SHOW DATABASES LIKE 'stale_replica_data'")).toBe('');
  }, 600000);
});
