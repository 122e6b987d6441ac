// umount against our own size walks and against other processes, on a real btrfs loop filesystem through
// the agent process: orchestrator polls /api/mount (which walks the mounted snapshot) while its seed
// calls /api/umount.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAgentProcess, tempDir, writeConfig, type AgentProcess } from './support/agent-process.js';
import { createBtrfs, mountsUnder, run, type BtrfsFixture } from './support/btrfs-fixture.js';
import type { Mount } from '../src/host/interfaces.js';

describe('umount while /api/mount is polled, on a real btrfs snapshot', () => {
  let fx: BtrfsFixture;
  let agent: AgentProcess;
  let token: string;
  let mountPoint: string;
  let snapshot: string;
  const children: ChildProcess[] = [];

  const call = async (path: string): Promise<{ status: number; body: unknown }> => {
    const res = await fetch(`${agent.baseUrl}${path}${path.includes('?') ? '&' : '?'}token=${token}`);
    return { status: res.status, body: await res.json() };
  };

  beforeAll(async () => {
    const dir = tempDir('oa-umount-');
    fx = createBtrfs(dir, `oa-u-${process.pid}`);
    const live = join(fx.fsDir, 'live');
    run('btrfs', ['subvolume', 'create', live]);
    // Enough entries that a size walk is in progress most of the time it is polled.
    for (let d = 0; d < 40; d++) {
      mkdirSync(join(live, 'mysql', `schema${d}`), { recursive: true });
      for (let f = 0; f < 50; f++) writeFileSync(join(live, 'mysql', `schema${d}`, `t${f}.ibd`), 'x');
    }
    writeFileSync(join(live, 'mysql', 'ibdata1'), 'x');
    mkdirSync(join(fx.fsDir, 'snapshots'));
    snapshot = join(fx.fsDir, 'snapshots', 'snap1');
    run('btrfs', ['subvolume', 'snapshot', '-r', live, snapshot]);
    mountPoint = join(dir, 'mnt');
    agent = await startAgentProcess(
      writeConfig(dir, {
        TokenHintFile: join(dir, 'token'),
        SnapshotBackend: 'btrfs',
        BtrfsSnapshotsDir: join(fx.fsDir, 'snapshots'),
        SnapshotMountPoint: mountPoint,
        MySQLDatadirCommand: 'echo /var/lib/mysql',
      }),
    );
    token = readFileSync(join(dir, 'token'), 'utf8');
  }, 120000);

  afterAll(async () => {
    for (const c of children) {
      try {
        process.kill(-c.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await agent?.stop();
    fx?.cleanup();
  }, 60000);

  test('30 mount/umount rounds while four pollers walk the mount: every umount succeeds', async () => {
    let polling = true;
    let polls = 0;
    let walkedMounted = 0;
    const poller = async () => {
      while (polling) {
        const reply = await call('/api/mount');
        expect(reply.status).toBe(200);
        polls++;
        if ((reply.body as Mount).IsMounted && (reply.body as Mount).DiskUsage > 0) walkedMounted++;
      }
    };
    const pollers = [poller(), poller(), poller(), poller()];
    const failures: string[] = [];
    try {
      for (let round = 0; round < 30; round++) {
        const mounted = await call(`/api/mountlv?lv=snap1`);
        expect(mounted.status).toBe(200);
        expect((mounted.body as Mount).IsMounted).toBe(true);
        // Let the pollers get into the tree before unmounting it.
        const before = polls;
        while (polls < before + 2) await new Promise((r) => setTimeout(r, 5));
        const unmounted = await call('/api/umount');
        if (unmounted.status !== 200 || (unmounted.body as Mount).IsMounted) failures.push(`round ${round}: ${JSON.stringify(unmounted.body)}`);
      }
    } finally {
      polling = false;
      await Promise.all(pollers);
    }
    expect(failures).toEqual([]);
    expect(walkedMounted).toBeGreaterThan(0); // the pollers really walked a mounted snapshot
    expect(mountsUnder(mountPoint)).toEqual([]);
  }, 300000);

  const holdMount = (script: string): { pid: number; exited: Promise<unknown> } => {
    const child = spawn('bash', ['-c', script], { cwd: mountPoint, detached: true, stdio: 'ignore' });
    children.push(child);
    return { pid: child.pid!, exited: new Promise((r) => child.once('exit', r)) };
  };

  test('a busy mount is retried: a process that leaves within the retry window does not fail the umount', async () => {
    expect((await call('/api/mountlv?lv=snap1')).status).toBe(200);
    const { exited } = holdMount('exec sleep 1');
    const unmounted = await call('/api/umount');
    expect(unmounted).toMatchObject({ status: 200, body: { IsMounted: false } });
    await exited;
  }, 60000);

  test('a mount still busy after the retries fails naming the pid and command line of the process holding it', async () => {
    expect((await call('/api/mountlv?lv=snap1')).status).toBe(200);
    const { pid } = holdMount('exec sleep 603');
    const unmounted = await call('/api/umount');
    expect(unmounted.status).toBe(500);
    const message = (unmounted.body as { Message: string }).Message;
    expect(message).toContain('target is busy');
    expect(message).toContain(`pid ${pid} (sleep 603) works in ${mountPoint}`);
    expect(mountsUnder(mountPoint)).toEqual([mountPoint]);
    process.kill(-pid, 'SIGKILL');
    for (let i = 0; i < 100 && mountsUnder(mountPoint).length > 0; i++) {
      const again = await call('/api/umount');
      if (again.status === 200) break;
    }
    expect(mountsUnder(mountPoint)).toEqual([]);
  }, 60000);
});
