// Receiving and sending the data directory. With ReceiveSeedDataCommand / SendSeedDataCommand configured
// they run as the original ran them (command, datadir [, host], port; values as positional parameters),
// tagged and in their own process group; the step succeeds only when the command exits 0, so a sender's
// failure fails the source seed. A command cut off by an agent restart cannot be resumed (the other side's
// stream is gone): the step then fails with a message that says so. Without the commands the built-in
// transfer runs: it verifies every file and the final manifest (the receiver succeeds only when the
// sender's last frame checks out) and resumes after a restart, keeping files verified before.
import { AgentError } from '../../errors.js';
import { log } from '../../log.js';
import { isTransferComplete, send, startReceiver, transferTlsFromConfig, type TransferProgress } from '../../transfer/index.js';
import { runShell, templateToScript } from '../../process-runner.js';
import type { SourceParams } from '../../../machines/seed-source.js';
import type { TargetParams } from '../../../machines/seed-target.js';
import { remainingMs, type StepEnv, type StepFn } from './step-env.js';
import type { StepInput } from '../../../machines/seed-common.js';

export const RECEIVE_STARTED = 'receiveStarted';
export const SEND_STARTED = 'sendStarted';
/** Set when the transfer step finished well: seed-command-succeeded reads it. */
export const TRANSFERRED = 'transferred';

function interrupted(side: 'receive' | 'send', since: string): AgentError {
  return new AgentError('aborted', `the ${side} command started at ${since} was interrupted by an agent restart; a command-based ${side} cannot resume`, {
    hint: 'abort the seed on the other side too and start a new seed (the built-in transfer resumes instead)',
  });
}

function transferKey(env: StepEnv): string {
  const key = env.seed.secrets().authKey;
  if (!key) throw new AgentError('internal', `seed ${env.seed.id} has no transfer key`, { hint: 'create the seed again' });
  return key;
}

function progressOf(p: TransferProgress) {
  return { ...p };
}

/** Sessions per transfer step: a peer that crashed and came back (resuming) gets a new session. */
const builtinAttempts = 5;
/** A sender retries this often while the receiver is not (yet, again) listening. */
const senderAttempts = 60;

function retryable(err: unknown, signal: AbortSignal): boolean {
  return !signal.aborted && !(err instanceof AgentError && ['aborted', 'config', 'snapshot_invalid'].includes(err.code));
}

/** Throws when the snapshot the source reads from (mounted at SnapshotMountPoint) can no longer be trusted. */
function verifySnapshot(env: StepEnv, signal: AbortSignal): () => Promise<void> {
  const mountPoint = env.config.SnapshotMountPoint.trim();
  return async () => {
    if (mountPoint !== '') await env.snapshots.verifyMounted(mountPoint, signal);
  };
}

async function receiveBuiltIn(input: StepInput<TargetParams>, datadir: string, signal: AbortSignal, env: StepEnv): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    if (await isTransferComplete(datadir)) return;
    const connectDeadline = input.deadlines.connect ?? Date.now() + env.config.SeedTransferConnectTimeoutSeconds * 1000;
    // The first sender must come by the connect deadline; a sender that dropped out gets a fresh wait.
    const connectTimeoutMs = attempt === 1 ? Math.max(1000, connectDeadline - Date.now()) : env.config.SeedTransferConnectTimeoutSeconds * 1000;
    try {
      const receiver = await startReceiver({
        destDir: datadir,
        bindAddress: env.config.SeedTransferBindAddress,
        port: input.params.port,
        tls: transferTlsFromConfig(env.config),
        authKey: transferKey(env),
        signal,
        connectTimeoutMs: Math.min(connectTimeoutMs, remainingMs(input.deadlines, Number.MAX_SAFE_INTEGER, 'receiving')),
        onProgress: (p) => env.seed.setProgress(progressOf(p)),
      });
      await receiver.done;
      return;
    } catch (err) {
      if (attempt >= builtinAttempts || !retryable(err, signal) || (attempt === 1 && Date.now() >= connectDeadline)) throw err;
      log.warn('receive session failed; waiting for the sender to resume', { seed: env.seed.id, attempt, error: (err as Error).message });
    }
  }
}

async function sendBuiltIn(input: StepInput<SourceParams>, sourceDir: string, signal: AbortSignal, env: StepEnv): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const connectDeadline = input.deadlines.connect ?? Date.now() + env.config.SeedTransferConnectTimeoutSeconds * 1000;
    try {
      await send({
        sourceDir,
        host: input.params.targetHost,
        port: input.params.targetPort,
        tls: transferTlsFromConfig(env.config),
        authKey: transferKey(env),
        bandwidthMBps: env.config.SeedTransferBandwidthMBps,
        signal,
        connectTimeoutMs: Math.max(1000, attempt === 1 ? connectDeadline - Date.now() : env.config.SeedTransferConnectTimeoutSeconds * 1000),
        onProgress: (p) => env.seed.setProgress(progressOf(p)),
        verifySource: verifySnapshot(env, signal),
      });
      return;
    } catch (err) {
      if (attempt >= senderAttempts || !retryable(err, signal)) throw err;
      log.warn('send session failed; sending again (the receiver keeps verified files)', { seed: env.seed.id, attempt, error: (err as Error).message });
      await new Promise((r) => setTimeout(r, 1000));
      remainingMs(input.deadlines, Number.MAX_SAFE_INTEGER, 'sending');
    }
  }
}

/**
 * Polls the receiving datadir's size so a command-based receive shows how much has arrived; `measure(true)`
 * after the command succeeded records the whole copy (a fast copy may end before the first poll).
 */
function watchArrivals(env: StepEnv, datadir: string): { stop(): void; measure(complete: boolean): Promise<void> } {
  let stopped = false;
  const started = Date.now();
  const measure = async (complete: boolean) => {
    try {
      const bytesDone = await env.datadir.diskUsage(datadir);
      const seconds = (Date.now() - started) / 1000;
      env.seed.setProgress({
        bytesDone,
        bytesTotal: complete ? bytesDone : null,
        filesDone: null,
        filesTotal: null,
        currentFile: null,
        rateBytesPerSec: seconds > 0 ? Math.round(bytesDone / seconds) : null,
        etaSeconds: complete ? 0 : null,
      });
    } catch {
      /* files come and go while a copy runs; the next poll tries again */
    }
  };
  const poll = async () => {
    while (!stopped) {
      await new Promise((r) => setTimeout(r, 1000));
      if (!stopped) await measure(false);
    }
  };
  void poll();
  return {
    stop: () => {
      stopped = true;
    },
    measure,
  };
}

export const ensureReceived: StepFn<TargetParams> = async (input, signal, env) => {
  const datadir = input.facts.datadir;
  if (!datadir) throw new AgentError('internal', 'receiving reached without a known datadir');
  if (env.seed.marks()[TRANSFERRED]) return {};
  const command = env.config.ReceiveSeedDataCommand.trim();
  if (command === '') {
    remainingMs(input.deadlines, Number.MAX_SAFE_INTEGER, 'receiving');
    await receiveBuiltIn(input, datadir, signal, env);
    env.seed.mark(TRANSFERRED, new Date().toISOString());
    return {};
  }
  const started = env.seed.marks()[RECEIVE_STARTED];
  if (started) throw interrupted('receive', started);
  env.seed.mark(RECEIVE_STARTED, new Date().toISOString());
  const arrivals = watchArrivals(env, datadir);
  try {
    await runShell(templateToScript(command, 2), [datadir, String(input.params.port || env.config.SeedTransferPort)], {
      timeoutMs: remainingMs(input.deadlines, Number.MAX_SAFE_INTEGER, 'receiving'),
      signal,
      sudo: env.config.ExecWithSudo,
    });
  } finally {
    arrivals.stop();
  }
  await arrivals.measure(true);
  env.seed.mark(TRANSFERRED, new Date().toISOString());
  return {};
};

export const ensureSent: StepFn<SourceParams> = async (input, signal, env) => {
  const sourceDir = input.facts.sourceDir ?? input.params.sourceDir;
  if (!sourceDir) throw new AgentError('internal', 'sending reached without a source directory');
  if (env.seed.marks()[TRANSFERRED]) return {};
  const command = env.config.SendSeedDataCommand.trim();
  if (command === '') {
    remainingMs(input.deadlines, Number.MAX_SAFE_INTEGER, 'sending');
    await sendBuiltIn(input, sourceDir, signal, env);
    env.seed.mark(TRANSFERRED, new Date().toISOString());
    return {};
  }
  const started = env.seed.marks()[SEND_STARTED];
  if (started) throw interrupted('send', started);
  env.seed.mark(SEND_STARTED, new Date().toISOString());
  const verify = verifySnapshot(env, signal);
  await runShell(templateToScript(command, 3), [sourceDir, input.params.targetHost, String(input.params.targetPort)], {
    timeoutMs: remainingMs(input.deadlines, Number.MAX_SAFE_INTEGER, 'sending'),
    signal,
    sudo: env.config.ExecWithSudo,
  }).catch(async (err: unknown) => {
    await verify();
    throw err;
  });
  // The command's receiver may already have what it sent: the source seed at least fails and says why.
  await verify();
  env.seed.mark(TRANSFERRED, new Date().toISOString());
  return {};
};

