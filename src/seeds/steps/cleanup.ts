// What runs on every way into `failed` or `aborted`: kill the seed's process groups, then undo what the
// seed did that must not stay (a partial copy on the target, our mount on the source). Idempotent: it may
// run again after a restart.
import { readdir, rm } from 'node:fs/promises';
import { AgentError } from '../../errors.js';
import type { CleanupInput } from '../../../machines/seed-common.js';
import type { SourceParams } from '../../../machines/seed-source.js';
import type { TargetParams } from '../../../machines/seed-target.js';
import type { SeedFacts } from '../../../machines/seed-common.js';
import { PURGE_STARTED } from './datadir-steps.js';
import { MOUNTED_BY_SEED } from './snapshot-steps.js';
import { TRANSFERRED, transferStateDir } from './transfer-steps.js';
import type { StepEnv } from './step-env.js';

export type CleanupFn<P> = (input: CleanupInput<P>, signal: AbortSignal, env: StepEnv) => Promise<SeedFacts>;

export const cleanupTarget: CleanupFn<TargetParams> = async (input, signal, env) => {
  await env.killSeedProcesses();
  const marks = env.seed.marks();
  const datadir = input.facts.datadir;
  // Only once we purged (the live data is gone anyway) and before a complete copy arrived.
  if (datadir && marks[PURGE_STARTED] && !marks[TRANSFERRED]) {
    if (await env.mysql.isRunning(signal)) {
      throw new AgentError('conflict', `MySQL runs on ${datadir}, so the partial copy was left in place`, {
        hint: 'stop MySQL and purge the datadir before using this host',
      });
    }
    const entries = await readdir(datadir).catch(() => []);
    if (entries.length > 0) await env.datadir.purge(datadir, signal);
    // The built-in receiver's bookkeeping describes the copy just removed: a later seed starts clean.
    await rm(transferStateDir(env.config.StateDir, env.seed.id), { recursive: true, force: true });
  }
  return {};
};

export const cleanupSource: CleanupFn<SourceParams> = async (input, signal, env) => {
  await env.killSeedProcesses();
  if (!input.params.alreadyMounted && env.seed.marks()[MOUNTED_BY_SEED] !== undefined) {
    const point = env.config.SnapshotMountPoint.trim();
    const mount = await env.snapshots.unmount(point, signal);
    if (mount.IsMounted) throw new AgentError('command_failed', `${point} is still mounted after unmounting it`);
  }
  return {};
};
