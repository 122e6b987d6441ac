// A real btrfs filesystem on a loop image for snapshot tests: created, mounted, and torn down again
// (every mount under the temp dir, then the loop device, then the files) even after a failed test.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export function run(file: string, args: string[], env: Record<string, string> = {}): string {
  return execFileSync(file, args, { encoding: 'utf8', env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Mount points at or under dir, deepest first (so stacked and nested mounts come off in order). */
export function mountsUnder(dir: string): string[] {
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(dir + '/'));
  return points.sort((a, b) => b.length - a.length);
}

export function unmountAllUnder(dir: string): void {
  for (let i = 0; i < 20; i++) {
    const points = mountsUnder(dir);
    if (points.length === 0) return;
    for (const p of points) {
      try {
        run('umount', [p]);
      } catch {
        /* stacked: the next round gets it */
      }
    }
  }
}

export interface BtrfsFixture {
  dir: string;
  /** Where the whole filesystem is mounted. */
  fsDir: string;
  /** The loop device mount -o loop chose. */
  device: string;
  label: string;
  cleanup(): void;
}

/** mkfs.btrfs on a sparse image under dir, mounted with -o loop (the loop device goes away on umount). */
export function createBtrfs(dir: string, label: string): BtrfsFixture {
  const image = join(dir, 'btrfs.img');
  const fsDir = join(dir, 'fs');
  run('truncate', ['-s', '256M', image]);
  run('mkfs.btrfs', ['-q', '-L', label, image]);
  run('mkdir', ['-p', fsDir]);
  run('mount', ['-o', 'loop', image, fsDir]);
  const device = run('findmnt', ['-n', '-o', 'SOURCE', '--mountpoint', fsDir]).trim();
  return {
    dir,
    fsDir,
    device,
    label,
    cleanup() {
      unmountAllUnder(dir);
      // mount -o loop detaches on umount; make sure, in case it was left attached.
      try {
        const attached = run('losetup', ['-j', image]).trim();
        for (const line of attached.split('\n').filter(Boolean)) run('losetup', ['-d', line.split(':')[0]]);
      } catch {
        /* nothing attached */
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
