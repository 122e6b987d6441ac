import { describe, expect, test } from '@jest/globals';
import { cpus } from 'node:os';
import { hogCount, startHogs } from '../bench/hog.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('the bench CPU hog', () => {
  test('--hog means one per core, --hog=N means N, nothing means none, and a bad count is refused', () => {
    expect(hogCount(['datadir', '--hog'])).toBe(cpus().length);
    expect(hogCount(['--hog=3'])).toBe(3);
    expect(hogCount(['datadir'])).toBe(process.env.BENCH_HOG ? Number(process.env.BENCH_HOG) : 0);
    expect(() => hogCount(['--hog=lots'])).toThrow(/--hog=lots/);
  });

  test('starts spinning processes, each in its own process group, and stop() kills them', async () => {
    const hogs = startHogs(2);
    const pids = hogs.pids();
    expect(pids).toHaveLength(2);
    await new Promise((r) => setTimeout(r, 200));
    for (const pid of pids) {
      expect(alive(pid)).toBe(true);
      // Its own group: the group id is its pid.
      expect(alive(-pid)).toBe(true);
    }
    hogs.stop();
    for (let i = 0; i < 50 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 100));
    expect(pids.filter(alive)).toEqual([]);
  });
});
