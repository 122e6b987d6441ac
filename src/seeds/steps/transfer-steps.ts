// Receiving and sending the data directory. With ReceiveSeedDataCommand / SendSeedDataCommand configured
// they run as the original ran them (command, datadir [, host], port; values as positional parameters),
// tagged and in their own process group; the step succeeds only when the command exits 0, so a sender's
// failure fails the source seed. A command cut off by an agent restart cannot be resumed (the other side's
// stream is gone): the step then fails with a message that says so. Without the commands the built-in
// transfer runs: it verifies every file and the final manifest (the receiver succeeds only when the
// sender's last frame checks out) and resumes after a restart, keeping files verified before.
import { join } from 'node:path';
import { AgentError } from '../../errors.js';
import { log } from '../../log.js';
import type { CompressionMode, TransferProgress } from '../../transfer/index.js';
import { isPermanentFailure } from '../../transfer/protocol.js';
import { runShell, templateToScript } from '../../process-runner.js';
import type { SourceParams } from '../../../machines/seed-source.js';
import type { TargetParams } from '../../../machines/seed-target.js';
import { remainingMs, type StepEnv, type StepFn } from './step-env.js';
import { transferKey } from './stream-steps.js';
import type { StepInput } from '../../../machines/seed-common.js';
import { clampDelay, sleep } from '../../timers.js';

/** The built-in transfer (with its native checksum addon) loads with the first built-in receive or send. */
const builtInTransfer = () => import('../../transfer/index.js');

export const RECEIVE_STARTED = 'receiveStarted';
export const SEND_STARTED = 'sendStarted';
/** Set when the transfer step finished well: seed-command-succeeded reads it. */
export const TRANSFERRED = 'transferred';

function interrupted(side: 'receive' | 'send', since: string): AgentError {
  return new AgentError('aborted', `the ${side} command started at ${since} was interrupted by an agent restart; a command-based ${side} cannot resume`, {
    hint: 'abort the seed on the other side too and start a new seed (the built-in transfer resumes instead)',
  });
}

/** The built-in receiver's bookkeeping for one seed (resume state, final manifest), outside the datadir. */
export function transferStateDir(stateDir: string, seedId: string): string {
  return join(stateDir, 'transfers', seedId);
}

function progressOf(p: TransferProgress) {
  return { ...p };
}

/**
 * Durable notes of the built-in transfer's peer, per side. Until the peer first authenticated, the step waits
 * for it until the connect deadline (SeedTransferConnectTimeoutSeconds, a timestamp in the context). Once it
 * did, a lost session (peer killed and restarted, a network cut, this agent restarted) opens a reconnect
 * window measured from the loss (SeedTransferReconnectTimeoutSeconds, persisted as `until`).
 */
interface PeerMarks {
  peer: 'sender' | 'receiver';
  authenticated: string;
  /** ISO time of the latest loss; '' once the peer authenticated again. */
  lost: string;
  until: string;
}
export const SENDER_MARKS: PeerMarks = { peer: 'sender', authenticated: 'senderAuthenticatedAt', lost: 'senderLostAt', until: 'senderWaitUntil' };
export const RECEIVER_MARKS: PeerMarks = { peer: 'receiver', authenticated: 'receiverAuthenticatedAt', lost: 'receiverLostAt', until: 'receiverWaitUntil' };

interface PeerWait {
  until: number;
  /** null: waiting for the first contact (connect deadline); else when the peer was lost. */
  lostAt: string | null;
}

function peerAuthenticated(env: StepEnv, m: PeerMarks, peer: string): void {
  const marks = env.seed.marks();
  if (marks[m.lost]) env.seed.mark(m.lost, '');
  env.seed.mark(m.authenticated, new Date().toISOString());
  env.seed.setWaiting(null);
  if (marks[m.lost]) log.info(`transfer: the ${m.peer} is back`, { seed: env.seed.id, peer, lostAt: marks[m.lost] });
}

function peerLost(env: StepEnv, m: PeerMarks, why: string): PeerWait {
  const now = Date.now();
  const since = new Date(now).toISOString();
  const until = new Date(now + env.config.SeedTransferReconnectTimeoutSeconds * 1000).toISOString();
  env.seed.mark(m.until, until);
  env.seed.mark(m.lost, since);
  const message = `${m.peer} lost at ${since} (${why}); waiting for it to come back until ${until}`;
  env.seed.setWaiting({ for: m.peer, since, until, message });
  log.warn(`transfer: ${message}`, { seed: env.seed.id });
  return { until: Date.parse(until), lostAt: since };
}

/** Until when the step waits for its peer now (see PeerMarks). */
function peerWait(input: StepInput<unknown>, env: StepEnv, m: PeerMarks): PeerWait {
  const marks = env.seed.marks();
  if (!marks[m.authenticated]) {
    return { until: input.deadlines.connect ?? Date.now() + env.config.SeedTransferConnectTimeoutSeconds * 1000, lostAt: null };
  }
  const lost = marks[m.lost];
  const until = Date.parse(marks[m.until] ?? '');
  if (lost && Number.isFinite(until)) return { until, lostAt: lost };
  // The peer had authenticated and no loss was recorded since: this agent restarted mid-session.
  return peerLost(env, m, 'this agent restarted during the transfer');
}

function gaveUp(m: PeerMarks, wait: PeerWait, env: StepEnv, last: unknown): AgentError {
  const lastError = last === undefined ? '' : `; last: ${(last as Error).message}`;
  const until = new Date(wait.until).toISOString();
  if (wait.lostAt === null) {
    return new AgentError('unavailable', `no ${m.peer} connected by the connect deadline ${until} (SeedTransferConnectTimeoutSeconds=${env.config.SeedTransferConnectTimeoutSeconds})${lastError}`, {
      hint: m.peer === 'sender' ? 'start the send on the source agent with this port and key' : 'start the receiving seed on the target first and use the port and key it reports',
    });
  }
  return new AgentError('unavailable', `the ${m.peer} was lost at ${wait.lostAt} and did not come back by ${until} (SeedTransferReconnectTimeoutSeconds=${env.config.SeedTransferReconnectTimeoutSeconds})${lastError}`, {
    hint: `check the ${m.peer === 'sender' ? 'source' : 'target'} agent and its seed (GET /api/seeds/${env.seed.id} there); raise SeedTransferReconnectTimeoutSeconds for longer outages`,
  });
}

/** Local storage failures: another session would fail the same way. */
const storageErrnos = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'EIO']);
function isStorageError(err: unknown): boolean {
  for (let e = err, depth = 0; e !== null && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && storageErrnos.has(code)) return true;
  }
  return false;
}

/** A refused key, a full or read-only disk, a refused manifest, an abort: no new session can fix those. */
function retryable(err: unknown, signal: AbortSignal): boolean {
  return !signal.aborted && !isPermanentFailure(err) && !isStorageError(err);
}

/** The receiver's own reason (its ERROR frame), when it sent one. */
function fromReceiver(err: unknown): AgentError | undefined {
  return err instanceof AgentError && err.details?.fromPeer === true ? err : undefined;
}

/**
 * The error the source seed ends with: the receiver's reason when it gave one, not what the last retry met
 * (a receiver that failed stops listening, so later attempts only say "connection refused").
 */
function sendFailure(err: unknown, receiverReason: AgentError | undefined): unknown {
  if (!receiverReason || fromReceiver(err) || !(err instanceof AgentError)) return err;
  return new AgentError(receiverReason.code, `${receiverReason.message} (sending again then failed: ${err.message})`, {
    hint: receiverReason.hint,
    details: receiverReason.details,
    cause: err,
  });
}

/** How long one session may wait for its peer: until `until`, within the seed's deadline, in one timer. */
function sessionWaitMs(input: StepInput<unknown>, until: number, what: string): number {
  return clampDelay(Math.max(1000, Math.min(until - Date.now(), remainingMs(input.deadlines, Number.MAX_SAFE_INTEGER, what))));
}

/** Throws when the snapshot the source reads from (mounted at SnapshotMountPoint) can no longer be trusted. */
function verifySnapshot(env: StepEnv, signal: AbortSignal): () => Promise<void> {
  const mountPoint = env.config.SnapshotMountPoint.trim();
  return async () => {
    if (mountPoint !== '') await env.snapshots.verifyMounted(mountPoint, signal);
  };
}

async function receiveBuiltIn(input: StepInput<TargetParams>, datadir: string, signal: AbortSignal, env: StepEnv): Promise<void> {
  const { isTransferComplete, startReceiver, transferTlsFromConfig } = await builtInTransfer();
  const stateDir = transferStateDir(env.config.StateDir, env.seed.id);
  let last: unknown;
  for (;;) {
    if (await isTransferComplete(stateDir, datadir)) return;
    const wait = peerWait(input, env, SENDER_MARKS);
    if (Date.now() >= wait.until) throw gaveUp(SENDER_MARKS, wait, env, last);
    let authenticated = false;
    try {
      const receiver = await startReceiver({
        destDir: datadir,
        stateDir,
        bindAddress: env.config.SeedTransferBindAddress,
        port: input.params.port,
        tls: transferTlsFromConfig(env.config),
        authKey: transferKey(env),
        signal,
        connectTimeoutMs: sessionWaitMs(input, wait.until, 'receiving'),
        onSenderAuthenticated: (peer) => {
          authenticated = true;
          peerAuthenticated(env, SENDER_MARKS, peer);
        },
        onProgress: (p) => env.seed.setProgress(progressOf(p)),
        onRefused: (reason) => env.seed.warn(`refused a connection on transfer port ${input.params.port}: ${reason}`),
      });
      await receiver.done;
      env.seed.setWaiting(null);
      return;
    } catch (err) {
      if (!retryable(err, signal)) throw err;
      last = err;
      if (authenticated) {
        // Every verified file stays; the next session tells the sender which ones it has.
        peerLost(env, SENDER_MARKS, (err as Error).message);
      } else {
        if (Date.now() >= wait.until) throw gaveUp(SENDER_MARKS, wait, env, err);
        log.warn('transfer: no sender in this session; listening again', { seed: env.seed.id, until: new Date(wait.until).toISOString(), error: (err as Error).message });
        await sleep(1000, signal);
      }
    }
  }
}

async function sendBuiltIn(input: StepInput<SourceParams>, sourceDir: string, signal: AbortSignal, env: StepEnv): Promise<void> {
  const { send, transferTlsFromConfig } = await builtInTransfer();
  let last: unknown;
  let receiverReason: AgentError | undefined;
  for (;;) {
    const wait = peerWait(input, env, RECEIVER_MARKS);
    if (Date.now() >= wait.until) throw sendFailure(gaveUp(RECEIVER_MARKS, wait, env, last), receiverReason);
    let authenticated = false;
    try {
      await send({
        sourceDir,
        host: input.params.targetHost,
        port: input.params.targetPort,
        tls: transferTlsFromConfig(env.config),
        authKey: transferKey(env),
        bandwidthMBps: env.config.SeedTransferBandwidthMBps,
        compression: input.params.compression ?? (env.config.SeedTransferCompression as CompressionMode),
        // Our own mount is a read-only snapshot; a directory orchestrator mounted may be anything.
        sourceIsSnapshot: !input.params.alreadyMounted,
        onWarning: (message) => env.seed.warn(message),
        signal,
        connectTimeoutMs: sessionWaitMs(input, wait.until, 'sending'),
        onReceiverAuthenticated: () => {
          authenticated = true;
          peerAuthenticated(env, RECEIVER_MARKS, `${input.params.targetHost}:${input.params.targetPort}`);
        },
        onProgress: (p) => env.seed.setProgress(progressOf(p)),
        verifySource: verifySnapshot(env, signal),
      });
      env.seed.setWaiting(null);
      return;
    } catch (err) {
      receiverReason = fromReceiver(err) ?? receiverReason;
      // A refused key, a full disk on the target: no new session can fix those.
      if (!retryable(err, signal)) throw sendFailure(err, receiverReason);
      last = err;
      if (authenticated) peerLost(env, RECEIVER_MARKS, (err as Error).message);
      else log.warn('transfer: send session failed; sending again (the receiver keeps verified files)', { seed: env.seed.id, error: (err as Error).message });
      await sleep(1000, signal);
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

