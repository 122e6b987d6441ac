// What the streamed seed methods (backup, dump) share: the target accepting the source's stream on its
// transfer port, and both ends' loop around one stream. A stream has no middle to resume from, so every
// attempt after the first starts from the beginning: the target first throws away what an earlier attempt
// left (reset), the source runs its program again. Each method brings only its program and what it does
// with the bytes; the deadlines, warnings and retry rules are the same for all of them.
import type { Readable } from 'node:stream';
import { AgentError, asAgentError } from '../../errors.js';
import { log } from '../../log.js';
import type { BinlogPosition, SourceFacts, StreamEnd, StreamProgress, StreamSession } from '../../transfer/stream.js';
import { isPermanentFailure } from '../../transfer/protocol.js';
import type { CompressionMode } from '../../transfer/compression.js';
import { ETA_AFTER_MS } from '../../transfer/progress.js';
import type { StepInput } from '../../../machines/seed-common.js';
import type { SeedCheck } from '../pre-seed-checks.js';
import { sleep } from '../../timers.js';
import type { StepEnv } from './step-env.js';

// The stream and TLS load with the first streamed seed, not when the agent starts.
export const stream = () => import('../../transfer/stream.js');
export const transferTls = async (env: StepEnv) => (await import('../../transfer/tls.js')).transferTlsFromConfig(env.config);

/** Mark: the pre-seed checks' results (the seed view shows them). */
export const CHECKS = 'checks';

/** Mark: how many streams were started (a restarted step knows the next one starts over). */
export const STREAM_ATTEMPTS = 'streamAttempts';

/**
 * How soon the source offers the stream again while the target gets ready: while it stops MySQL and purges it
 * does not listen, so an offer is a refused connection; the first offer after it listens again starts the
 * stream, so this wait is time the seed loses (250 ms cost a small seed a tenth of its time). It grows by half
 * each time up to 1 s, so a purge that takes minutes is not met with twenty connections (and handshakes) a second.
 */
const OFFER_RETRY_MS = 50;
const OFFER_RETRY_MAX_MS = 1000;

export function transferKey(env: StepEnv): string {
  const key = env.seed.secrets().authKey;
  if (!key) throw new AgentError('internal', `seed ${env.seed.id} has no transfer key`, { hint: 'create the seed again' });
  return key;
}

/** How long to wait for the peer now: the connect deadline first, then a reconnect window from now. */
export function peerDeadline(input: StepInput<unknown>, env: StepEnv, seen: boolean): number {
  const connect = input.deadlines.connect ?? Date.now() + env.config.SeedTransferConnectTimeoutSeconds * 1000;
  const until = seen ? Math.max(connect, Date.now() + env.config.SeedTransferReconnectTimeoutSeconds * 1000) : connect;
  return Math.min(until, input.deadlines.seed);
}

/** The seed's progress from the stream's: bytes against the source's data size (a stream has no file count). */
export function progress(env: StepEnv, total: number | null) {
  return (p: StreamProgress) => {
    const rate = p.seconds > 0 ? Math.round(p.bytesDone / p.seconds) : null;
    env.seed.setProgress({
      bytesDone: p.bytesDone,
      bytesTotal: total,
      filesDone: null,
      filesTotal: null,
      currentFile: null,
      rateBytesPerSec: rate,
      etaSeconds: rate && total && total > p.bytesDone && p.seconds * 1000 >= ETA_AFTER_MS ? Math.round((total - p.bytesDone) / rate) : null,
      ...(p.wire ? { wire: p.wire } : {}),
    });
  };
}

/** The target: waits on its transfer port until `until` for the source seed's authenticated connection. */
export async function acceptSeedStream(input: StepInput<{ port: number }>, env: StepEnv, signal: AbortSignal, until: number): Promise<StreamSession> {
  const { acceptStream } = await stream();
  return acceptStream({
    port: input.params.port,
    bindAddress: env.config.SeedTransferBindAddress,
    tls: await transferTls(env),
    authKey: transferKey(env),
    signal,
    connectTimeoutMs: Math.max(1000, until - Date.now()),
    onRefused: (reason) => env.seed.warn(`refused a connection on transfer port ${input.params.port}: ${reason}`),
  });
}

export interface StreamReceiving<R> {
  /** "backup", "dump": how the view and the errors name the stream. */
  what: string;
  /** Before a second attempt: throw away what an earlier one left (the stream starts from its beginning). */
  reset: () => Promise<void>;
  /** The warning when a new attempt starts over (none: the cut's own warning says it). */
  restarted?: string;
  /** After "the <what> stream was cut (why); ": what happens now. */
  onCut: string;
  /** Takes one whole stream from the session (its program started, fed, and killed when it throws). */
  take: (session: StreamSession) => Promise<R>;
}

/**
 * The target's loop around one stream: accept the source's connection (within the connect deadline, then
 * the reconnect window), take the stream; a cut stream is warned about and taken again from the start, a
 * permanent failure or an abort ends the step.
 */
export async function receiveFromTheStart<R>(input: StepInput<{ port: number }>, signal: AbortSignal, env: StepEnv, r: StreamReceiving<R>): Promise<R> {
  let seen = false;
  for (;;) {
    const attempts = Number(env.seed.marks()[STREAM_ATTEMPTS] ?? '0');
    if (attempts > 0) await r.reset();
    const until = peerDeadline(input, env, seen || attempts > 0);
    if (Date.now() >= until) {
      throw new AgentError('unavailable', `no source streamed the ${r.what} by ${new Date(until).toISOString()}`, {
        hint: 'check the source seed (GET /api/seeds/:id on the source agent); raise SeedTransferConnectTimeoutSeconds / SeedTransferReconnectTimeoutSeconds for slow hosts',
      });
    }
    const session = await acceptSeedStream(input, env, signal, until);
    seen = true;
    env.seed.setWaiting(null);
    env.seed.mark(STREAM_ATTEMPTS, String(attempts + 1));
    if (attempts > 0 && r.restarted) env.seed.warn(r.restarted);
    try {
      return await r.take(session);
    } catch (err) {
      const e = asAgentError(err);
      if (signal.aborted || isPermanentFailure(e)) throw e;
      env.seed.warn(`the ${r.what} stream was cut (${e.message}); ${r.onCut}`);
      await sleep(1000, signal);
    }
  }
}

/** One run of the source's program: its output is the stream. */
export interface StreamProducer {
  stdout: Readable;
  /** Once the output ended: resolves when the program ended well (a failure of its own must be permanent). */
  end: () => Promise<BinlogPosition | null>;
  kill: () => Promise<void>;
}

export interface StreamOffering {
  what: string;
  /** For the error when the target never takes the stream: which target seed to create. */
  method: string;
  facts: SourceFacts;
  /** Starts the program for one attempt. */
  start: () => Promise<StreamProducer>;
}

/**
 * The source's loop around one stream: offer it to the target (which answers LATER while it gets ready:
 * checks, stopping MySQL, purging), run the program and send its output; a cut stream is warned about and
 * offered again from the start, within SeedTransferReconnectTimeoutSeconds of the last contact.
 */
export async function streamFromTheStart(input: StepInput<{ targetHost: string; targetPort: number; compression?: CompressionMode }>, signal: AbortSignal, env: StepEnv, o: StreamOffering): Promise<StreamEnd> {
  // The target goes quiet while it gets ready (it answered LATER), or when a stream was cut: it has
  // SeedTransferReconnectTimeoutSeconds from the last contact (or this agent's restart) to answer again.
  let lastContact = env.seed.marks()[STREAM_ATTEMPTS] ? Date.now() : 0;
  let last: unknown;
  let retryMs = OFFER_RETRY_MS;
  const offerAgainSoon = async () => {
    await sleep(retryMs, signal);
    retryMs = Math.min(OFFER_RETRY_MAX_MS, Math.round(retryMs * 1.5));
  };
  for (;;) {
    const connect = input.deadlines.connect ?? Date.now() + env.config.SeedTransferConnectTimeoutSeconds * 1000;
    const until = Math.min(input.deadlines.seed, lastContact ? lastContact + env.config.SeedTransferReconnectTimeoutSeconds * 1000 : connect);
    if (Date.now() >= until) {
      throw new AgentError('unavailable', `the target did not take the ${o.what} stream by ${new Date(until).toISOString()}${last ? `; last: ${(last as Error).message}` : ''}`, {
        hint: `create the target seed first (method "${o.method}") and pass its port and key; check it with GET /api/seeds/:id on the target agent`,
      });
    }
    let answer;
    try {
      const { offerStream } = await stream();
      answer = await offerStream({
        host: input.params.targetHost,
        port: input.params.targetPort,
        tls: await transferTls(env),
        authKey: transferKey(env),
        signal,
        connectTimeoutMs: Math.max(1000, Math.min(30_000, until - Date.now())),
        facts: o.facts,
        compression: input.params.compression ?? (env.config.SeedTransferCompression as CompressionMode),
      });
    } catch (err) {
      if (signal.aborted || isPermanentFailure(err)) throw err;
      last = err;
      await offerAgainSoon();
      continue;
    }
    if (answer.kind === 'later') {
      // One waiting note (written once), not one per offer.
      if (!lastContact) {
        const waitUntil = new Date(Math.min(input.deadlines.seed, Date.now() + env.config.SeedTransferReconnectTimeoutSeconds * 1000)).toISOString();
        env.seed.setWaiting({ for: 'receiver', since: new Date().toISOString(), until: waitUntil, message: `the target is getting ready: ${answer.message}` });
      }
      lastContact = Date.now();
      await offerAgainSoon();
      continue;
    }
    lastContact = Date.now();
    retryMs = OFFER_RETRY_MS;
    env.seed.setWaiting(null);
    const attempts = Number(env.seed.marks()[STREAM_ATTEMPTS] ?? '0');
    if (attempts > 0) env.seed.warn(`the ${o.what} stream restarts from the beginning (an earlier stream was cut or an agent restarted)`);
    env.seed.mark(STREAM_ATTEMPTS, String(attempts + 1));
    const producer = await o.start();
    try {
      const end = await answer.send(
        producer.stdout,
        producer.end,
        (await import('../../transfer/throttle.js')).bandwidthLimiter(env.config.SeedTransferBandwidthMBps),
        progress(env, o.facts.dataBytes),
      );
      log.info(`${o.what} streamed`, { seed: env.seed.id, bytes: end.bytes, compression: end.compression ?? null, wireBytes: end.wireBytes ?? end.bytes });
      return end;
    } catch (err) {
      await producer.kill();
      // A cut stream starts over; the program's own failure came back permanent.
      if (signal.aborted || isPermanentFailure(err)) throw err;
      last = err;
      lastContact = Date.now();
      env.seed.warn(`the ${o.what} stream was cut (${(err as Error).message}); the ${o.what} restarts from the beginning`);
      await sleep(1000, signal);
    }
  }
}

/**
 * The target's pre-seed checks: wait for the source seed's first connection, which tells its facts, run the
 * method's checks against them, and either refuse the source with what failed (nothing was changed here) or
 * tell it to come back for the data once this host is ready. Returns the facts, with the source's address.
 */
export async function checkedAgainstTheSource(
  input: StepInput<{ port: number }>,
  signal: AbortSignal,
  env: StepEnv,
  comeBackFor: string,
  inspect: (source: SourceFacts & { address: string }) => Promise<SeedCheck[]>,
): Promise<SourceFacts & { address: string }> {
  env.seed.setWaiting({ for: 'sender', since: new Date().toISOString(), until: new Date(input.deadlines.connect ?? Date.now()).toISOString(), message: 'waiting for the source seed to connect and tell its facts' });
  const session = await acceptSeedStream(input, env, signal, peerDeadline(input, env, false));
  env.seed.setWaiting(null);
  const source = { ...session.facts, address: session.peerAddress };
  let checks: SeedCheck[];
  try {
    checks = await inspect(source);
  } catch (err) {
    session.close();
    throw err;
  }
  env.seed.mark(CHECKS, JSON.stringify(checks));
  const failed = checks.filter((c) => !c.ok);
  if (failed.length > 0) {
    const err = new AgentError('conflict', `pre-seed checks failed, nothing was changed on this host: ${failed.map((c) => c.message).join('; ')}`, {
      hint: 'fix what the failed checks name (GET /api/seeds/:id shows every check) and create a new seed',
    });
    await session.refuse(err);
    throw err;
  }
  await session.later(`pre-seed checks passed; come back for the ${comeBackFor}`);
  return source;
}
