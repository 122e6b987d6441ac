// What runs on every way into `failed` or `aborted`: kill the seed's process groups, then undo what the
// seed did that must not stay (a partial copy on the target, our mount on the source). Idempotent: it may
// run again after a restart.
import { readdir, rm } from 'node:fs/promises';
import { AgentError, type ErrorCode } from '../../errors.js';
import type { CleanupInput } from '../../../machines/seed-common.js';
import type { SourceParams } from '../../../machines/seed-source.js';
import type { TargetParams } from '../../../machines/seed-target.js';
import type { SeedFacts } from '../../../machines/seed-common.js';
import { PURGE_STARTED } from './datadir-steps.js';
import { MOUNTED_BY_SEED } from './snapshot-steps.js';
import { RECEIVER_MARKS, SENDER_MARKS, TRANSFERRED, transferStateDir } from './transfer-steps.js';
import { answerSenders, keepTellingTarget } from './farewell-steps.js';
import type { StepEnv } from './step-env.js';

export type CleanupFn<P> = (input: CleanupInput<P>, signal: AbortSignal, env: StepEnv) => Promise<SeedFacts>;

export const cleanupTarget: CleanupFn<TargetParams> = async (input, signal, env) => {
  await env.killSeedProcesses();
  await tellSource(input, env);
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
  await tellTarget(input, signal, env);
  if (!input.params.alreadyMounted && env.seed.marks()[MOUNTED_BY_SEED] !== undefined) {
    const point = env.config.SnapshotMountPoint.trim();
    const mount = await env.snapshots.unmount(point, signal);
    if (mount.IsMounted) throw new AgentError('command_failed', `${point} is still mounted after unmounting it`);
  }
  return {};
};

/** Why this half ends, as the other half shows it ("the target seed s1 was aborted by its operator during ..."). */
export function endReason(role: 'source' | 'target', input: CleanupInput<unknown>, id: string): AgentError {
  const step = input.error?.step ?? input.failedStep ?? 'its first step';
  if (input.reason === 'aborted') {
    return new AgentError('aborted', `the ${role} seed ${id} was aborted by its operator during ${step}`, {
      hint: `the ${role} side was stopped on purpose; start a new seed when ready`,
    });
  }
  const code = ((input.error?.code === 'aborted' ? 'io' : input.error?.code) ?? 'io') as ErrorCode;
  return new AgentError(code, `the ${role} seed ${id} failed during ${step}: ${input.error?.message ?? 'no reason recorded'}`, { hint: input.error?.hint ?? undefined });
}

/**
 * A target seed ending before the whole copy arrived keeps answering on its transfer port for a while: a
 * sender with the key is told this reason at once (the source seed then ends within a second). Also
 * mid-transfer: the receiver, stopped by the same signal whether the seed was aborted or the agent is
 * stopping, only closed the connection, and the sender is trying to send again. Until the connect deadline
 * when the sender never came; once it had, for SeedTransferReconnectTimeoutSeconds (how long it keeps
 * trying). Not when the source gave the reason.
 */
async function tellSource(input: CleanupInput<TargetParams>, env: StepEnv): Promise<void> {
  const authKey = env.seed.secrets().authKey;
  const marks = env.seed.marks();
  const port = input.params.port;
  if (!authKey || !port || marks[TRANSFERRED] !== undefined || input.error?.fromPeer) return;
  const untilMs = marks[SENDER_MARKS.authenticated]
    ? Math.min(input.deadlines.seed, Date.now() + env.config.SeedTransferReconnectTimeoutSeconds * 1000)
    : Math.min(input.deadlines.connect ?? Infinity, Date.now() + env.config.SeedTransferConnectTimeoutSeconds * 1000);
  if (untilMs <= Date.now()) return;
  await answerSenders(env, port, authKey, endReason('target', input, env.seed.id), untilMs);
}

/**
 * A source seed ending without having sent tells its target seed why over a short transfer connection, so
 * the target ends within seconds with this reason (and aborted when this one was), not at its connect or
 * reconnect deadline. Also mid-transfer when this seed was aborted: the sender, stopped by the same signal
 * whether the seed was aborted or the agent is stopping, only cut the connection, and the receiver waits
 * for it to come back. Not when the target itself gave the reason, nor when a live session already carried
 * this seed's own failure (the sender's ERROR frame).
 */
async function tellTarget(input: CleanupInput<SourceParams>, signal: AbortSignal, env: StepEnv): Promise<void> {
  const authKey = env.seed.secrets().authKey;
  const marks = env.seed.marks();
  // A refused key: the receiver would refuse this connection too (one more refusal in its warnings).
  if (!authKey || marks[TRANSFERRED] !== undefined || input.error?.fromPeer || input.error?.code === 'unauthorized') return;
  if (input.reason !== 'aborted' && marks[RECEIVER_MARKS.authenticated] && !marks[RECEIVER_MARKS.lost]) return;
  const reason = endReason('source', input, env.seed.id);
  const { tellReceiver, transferTlsFromConfig } = await import('../../transfer/index.js');
  const told = await tellReceiver({ host: input.params.targetHost, port: input.params.targetPort, tls: transferTlsFromConfig(env.config), authKey, signal }, reason);
  if (!told && !signal.aborted) keepTellingTarget(env, 'datadir', input.params.targetHost, input.params.targetPort, authKey, reason);
}
