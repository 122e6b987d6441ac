// What an ended seed still owes its peer: why it ended.
// - A target seed that ended before its sender came keeps answering on its transfer port for a while
//   (transfer/farewell.ts), telling a sender with the key why.
// - A source seed whose target could not be told within its cleanup (the target's agent down or restarting)
//   keeps trying in the background, beyond the seed's end, as long as the target may still wait for it.
// Both are recorded in the seed's marks, so an agent restarted meanwhile (kill -9, systemctl restart) goes on:
// the other seed then ends at once with this one's reason instead of at its own deadline.
import { AgentError, type ErrorCode } from '../../errors.js';
import type { Config } from '../../config.js';
import { log } from '../../log.js';
import type { SeedHandle, StepEnv } from './step-env.js';

/** Mark: JSON { port, untilMs, reason: { code, message, hint } } of the farewell this seed's cleanup started. */
export const FAREWELL = 'farewellUntil';
/** Mark: JSON { kind, host, port, untilMs, reason, toldAt? } of a source seed still telling its target why it ended. */
export const TELLING_TARGET = 'tellingTargetUntil';

type Reason = { code: string; message: string; hint: string | null };

interface FarewellMark {
  port: number;
  untilMs: number;
  reason: Reason;
}

interface TellingMark {
  /** The target's kind of receiver: the datadir transfer's (snapshot seeds) or a stream's (backup, dump). */
  kind: 'datadir' | 'stream';
  host: string;
  port: number;
  untilMs: number;
  reason: Reason;
  toldAt?: string;
}

const asReason = (e: AgentError): Reason => ({ code: e.code, message: e.message, hint: e.hint ?? null });
const fromReason = (r: Reason) => new AgentError(r.code as ErrorCode, r.message, { hint: r.hint ?? undefined });

function readMark<T>(marks: Readonly<Record<string, string>>, key: string): T | undefined {
  try {
    return marks[key] ? (JSON.parse(marks[key]) as T) : undefined;
  } catch {
    return undefined; // nothing depends on it: the peer then ends at its own deadline
  }
}

/** Answers senders on the mark's port until its untilMs with its reason; a port another holds is only logged. */
async function answerOnPort(seedId: string, mark: FarewellMark, authKey: string, config: Config): Promise<boolean> {
  // The farewell listener and the transfer's TLS settings, without the rest of the transfer.
  const [{ tellSenders }, { transferTlsFromConfig }] = await Promise.all([import('../../transfer/farewell.js'), import('../../transfer/tls.js')]);
  const ok = await tellSenders({ port: mark.port, bindAddress: config.SeedTransferBindAddress, tls: transferTlsFromConfig(config), authKey, reason: fromReason(mark.reason), untilMs: mark.untilMs });
  if (!ok) log.warn('transfer port is taken: a sender still trying to connect is not told why this target seed ends', { id: seedId, port: mark.port });
  return ok;
}

/** Starts answering senders on port until untilMs with reason, and records it for a restarted agent. */
export async function answerSenders(env: StepEnv, port: number, authKey: string, reason: AgentError, untilMs: number): Promise<void> {
  const mark: FarewellMark = { port, untilMs, reason: asReason(reason) };
  if (await answerOnPort(env.seed.id, mark, authKey, env.config)) env.seed.mark(FAREWELL, JSON.stringify(mark));
}

/**
 * A source seed's cleanup could not tell its target why it ends (connection refused for its whole try): keeps
 * trying in the background until the target stops waiting for a sender (the longer of the connect and
 * reconnect timeouts from now), recorded so a restarted agent goes on.
 */
export function keepTellingTarget(env: StepEnv, kind: TellingMark['kind'], host: string, port: number, authKey: string, reason: AgentError): void {
  const untilMs = Date.now() + Math.max(env.config.SeedTransferConnectTimeoutSeconds, env.config.SeedTransferReconnectTimeoutSeconds) * 1000;
  const mark: TellingMark = { kind, host, port, untilMs, reason: asReason(reason) };
  env.seed.mark(TELLING_TARGET, JSON.stringify(mark));
  log.info('will keep telling the target seed why this source seed ended, in the background', { id: env.seed.id, target: `${host}:${port}`, until: new Date(untilMs).toISOString() });
  env.afterEnd?.((signal) => tellTarget(env.seed, mark, authKey, env.config, signal));
}

async function tellTarget(seed: SeedHandle, mark: TellingMark, authKey: string, config: Config, signal: AbortSignal): Promise<void> {
  const tls = (await import('../../transfer/tls.js')).transferTlsFromConfig(config);
  const opts = { host: mark.host, port: mark.port, tls, authKey, signal, withinMs: Math.max(0, mark.untilMs - Date.now()) };
  const told =
    mark.kind === 'stream'
      ? await (await import('../../transfer/stream.js')).tellStreamReceiver(opts, fromReason(mark.reason))
      : await (await import('../../transfer/sender.js')).tellReceiver(opts, fromReason(mark.reason));
  if (told) seed.mark(TELLING_TARGET, JSON.stringify({ ...mark, toldAt: new Date().toISOString() }));
}

/**
 * At start, for an ended seed: what it still owed its peer and the agent stopped doing: the farewell on its
 * transfer port while its window is open, or telling its target why it ended.
 */
export async function resumeAfterEnd(seed: SeedHandle, config: Config, signal: AbortSignal): Promise<void> {
  const authKey = seed.secrets().authKey;
  if (!authKey) return;
  const farewell = readMark<FarewellMark>(seed.marks(), FAREWELL);
  if (farewell && farewell.untilMs > Date.now() && Number.isInteger(farewell.port) && (await answerOnPort(seed.id, farewell, authKey, config))) {
    log.info('answering senders again on the transfer port of an ended target seed', { id: seed.id, port: farewell.port, until: new Date(farewell.untilMs).toISOString() });
  }
  const telling = readMark<TellingMark>(seed.marks(), TELLING_TARGET);
  if (telling && !telling.toldAt && telling.untilMs > Date.now()) {
    log.info('telling the target seed again why this source seed ended, in the background', { id: seed.id, target: `${telling.host}:${telling.port}` });
    await tellTarget(seed, telling, authKey, config, signal);
  }
}
