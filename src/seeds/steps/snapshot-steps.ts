// Source side: mount the snapshot read-only at SnapshotMountPoint, and unmount only what we mounted.
import { AgentError } from '../../errors.js';
import type { SourceParams } from '../../../machines/seed-source.js';
import type { StepEnv, StepFn } from './step-env.js';

export const MOUNTED_BY_SEED = 'mountedBySeed';

function mountPoint(env: StepEnv): string {
  const point = env.config.SnapshotMountPoint.trim();
  if (point === '') throw new AgentError('config', 'SnapshotMountPoint is not configured', { hint: 'set it to the directory snapshots are mounted on' });
  return point;
}

export const ensureSnapshotMounted: StepFn<SourceParams> = async (input, signal, env) => {
  const point = mountPoint(env);
  // Noted before mounting: a crash mid-mount still leaves the cleanup knowing it must unmount.
  env.seed.mark(MOUNTED_BY_SEED, input.params.snapshot);
  const mount = await env.snapshots.mount(input.params.snapshot, point, signal);
  if (!mount.IsMounted) throw new AgentError('command_failed', `${input.params.snapshot} is not mounted at ${point} after mounting it`);
  if (mount.MySQLDataPath === '') {
    throw new AgentError('not_found', `no MySQL data directory found in snapshot ${input.params.snapshot} mounted at ${point}`, {
      hint: 'check that the snapshot holds the datadir (ibdata1 or mysql/)',
    });
  }
  return { mountedBySeed: true, sourceDir: mount.MySQLDataPath };
};

export const ensureUnmounted: StepFn<SourceParams> = async (_input, signal, env) => {
  if (env.seed.marks()[MOUNTED_BY_SEED] === undefined) return { mountedBySeed: false };
  const mount = await env.snapshots.unmount(mountPoint(env), signal);
  if (mount.IsMounted) throw new AgentError('command_failed', `${mount.Path} is still mounted after unmounting it`);
  return { mountedBySeed: false };
};
