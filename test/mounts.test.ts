import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { closeSync, mkdirSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './support/agent-process.js';
import { run, unmountAllUnder } from './support/btrfs-fixture.js';
import { ensureMounted, ensureUnmounted, mountAt, parseMountInfo } from '../src/host/mounts.js';
import { heuristicMySQLDataPath } from '../src/host/mount-status.js';
import { parseLvsSeparated, parseLvsWhitespace } from '../src/host/lvm.js';

const run5s = { timeoutMs: 5000 };

describe('mountinfo parsing and ensure-style mounts on real tmpfs mounts', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir('oa-mounts-');
  });
  afterAll(() => {
    unmountAllUnder(dir);
    rmSync(dir, { recursive: true, force: true });
  });

  test('decodes octal escapes and finds the fields after the optional ones', () => {
    const line = '36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue';
    expect(parseMountInfo(line)).toEqual([
      {
        majorMinor: '98:0',
        root: '/mnt1',
        mountPoint: '/mnt/with space',
        options: ['rw', 'noatime'],
        fsType: 'ext3',
        source: '/dev/root',
        superOptions: ['rw', 'errors=continue'],
      },
    ]);
  });

  test('finds a real mount whose path has a space, a tab and a backslash', async () => {
    const target = join(dir, 'a b\tc\\d');
    mkdirSync(target);
    run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'oa-tmpfs', target]);
    expect(await mountAt(target)).toMatchObject({ mountPoint: target, source: 'oa-tmpfs', fsType: 'tmpfs' });
    await ensureUnmounted(target, run5s);
    expect(await mountAt(target)).toBeUndefined();
  });

  test('refuses to mount over a mount point that holds something else, and unmounts stacked mounts', async () => {
    const target = join(dir, 'stack');
    mkdirSync(target);
    run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'oa-first', target]);
    run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'oa-second', target]);
    expect((await mountAt(target))?.source).toBe('oa-second');
    await expect(ensureMounted({ device: '/dev/null', mountPoint: target, options: [] }, run5s)).rejects.toMatchObject({
      code: 'conflict',
      message: `cannot mount /dev/null at ${target}: oa-second (tmpfs) is already mounted there`,
    });
    await ensureUnmounted(target, run5s);
    expect(await mountAt(target)).toBeUndefined();
  });

  test('unmounting a mount point still busy after the retries fails naming the process holding it, and works once it is free', async () => {
    const target = join(dir, 'busy');
    mkdirSync(target);
    run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'oa-busy', target]);
    const fd = openSync(join(target, 'held-open'), 'w');
    try {
      const failed = ensureUnmounted(target, run5s, 300);
      await expect(failed).rejects.toMatchObject({ code: 'command_failed', hint: 'stop those processes (or let them finish), then call /api/umount again' });
      await expect(failed).rejects.toThrow(new RegExp(`^cannot unmount ${target}: umount ${target} exited with code 32: .*target is busy`));
      // The holder here is this test process: named as the agent itself, with its open file.
      await expect(failed).rejects.toThrow(new RegExp(`still busy after 0.3s: pid ${process.pid} \\(this agent: [^)]*\\) has ${target}/held-open open`));
      expect((await mountAt(target))?.source).toBe('oa-busy');
    } finally {
      closeSync(fd);
    }
    await ensureUnmounted(target, run5s);
    expect(await mountAt(target)).toBeUndefined();
  });

  test('the MySQL data path heuristic strips leading datadir components until ibdata1 is found', async () => {
    const mountPoint = join(dir, 'snapshot');
    mkdirSync(join(mountPoint, 'lib', 'mysql'), { recursive: true });
    expect(await heuristicMySQLDataPath(mountPoint, '/var/lib/mysql')).toBeUndefined();
    writeFileSync(join(mountPoint, 'lib', 'mysql', 'ibdata1'), '');
    expect(await heuristicMySQLDataPath(mountPoint, '/var/lib/mysql')).toBe(join(mountPoint, 'lib', 'mysql'));
    writeFileSync(join(mountPoint, 'ibdata1'), '');
    expect(await heuristicMySQLDataPath(mountPoint, '/srv/db')).toBe(mountPoint);
  });
});

describe('lvs output parsing', () => {
  test("reads '|'-separated lvs output; a snapshot is an 's' attribute or an origin", () => {
    const stdout = [
      '  data|vg0|/dev/vg0/data|||owi-aos---',
      '  snap1|vg0|/dev/vg0/snap1|data|12.50|swi-a-s---',
      '  invalid|vg0|/dev/vg0/invalid|data|100.00|Swi-I-s---',
      '  thin1|vg0|/dev/vg0/thin1|data||Vwi-a-tz--',
      '',
    ].join('\n');
    expect(parseLvsSeparated(stdout)).toEqual([
      { Name: 'data', GroupName: 'vg0', Path: '/dev/vg0/data', IsSnapshot: false, SnapshotPercent: 0 },
      { Name: 'snap1', GroupName: 'vg0', Path: '/dev/vg0/snap1', IsSnapshot: true, SnapshotPercent: 12.5 },
      { Name: 'invalid', GroupName: 'vg0', Path: '/dev/vg0/invalid', IsSnapshot: true, SnapshotPercent: 100 },
      { Name: 'thin1', GroupName: 'vg0', Path: '/dev/vg0/thin1', IsSnapshot: true, SnapshotPercent: 0 },
    ]);
  });

  test("reads the original's whitespace format, where only a numeric fourth column makes a snapshot", () => {
    expect(parseLvsWhitespace('  data vg0 /dev/vg0/data\n  snap1 vg0 /dev/vg0/snap1 0.01\n\n')).toEqual([
      { Name: 'data', GroupName: 'vg0', Path: '/dev/vg0/data', IsSnapshot: false, SnapshotPercent: 0 },
      { Name: 'snap1', GroupName: 'vg0', Path: '/dev/vg0/snap1', IsSnapshot: true, SnapshotPercent: 0.01 },
    ]);
  });
});
