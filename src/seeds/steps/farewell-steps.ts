// A target seed that ended before its sender came keeps answering on its transfer port for a while
// (transfer/farewell.ts), telling a sender with the key why. The window is recorded in the seed's marks, so an
// agent restarted within it (kill -9, systemctl restart) answers again: the source seed, still offering its data
// every second, then ends at once with the target's reason instead of at its own deadline.
import { AgentError, type ErrorCode } from '../../errors.js';
import type { Config } from '../../config.js';
import { log } from '../../log.js';
import type { StepEnv } from './step-env.js';

/** Mark: JSON { port, untilMs, reason: { code, message, hint } } of the farewell this seed's cleanup started. */
export const FAREWELL = 'farewellUntil';

interface FarewellMark {
  port: number;
  untilMs: number;
  reason: { code: string; message: string; hint: string | null };
}

/** The farewell listener and the transfer's TLS settings, without the rest of the transfer. */
async function farewellModules() {
  const [{ tellSenders }, { transferTlsFromConfig }] = await Promise.all([import('../../transfer/farewell.js'), import('../../transfer/tls.js')]);
  return { tellSenders, transferTlsFromConfig };
}

/** Starts answering senders on port until untilMs with reason, and records it for a restarted agent. */
export async function answerSenders(env: StepEnv, port: number, authKey: string, reason: AgentError, untilMs: number): Promise<boolean> {
  const { tellSenders, transferTlsFromConfig } = await farewellModules();
  const ok = await tellSenders({ port, bindAddress: env.config.SeedTransferBindAddress, tls: transferTlsFromConfig(env.config), authKey, reason, untilMs });
  if (ok) {
    const mark: FarewellMark = { port, untilMs, reason: { code: reason.code, message: reason.message, hint: reason.hint ?? null } };
    env.seed.mark(FAREWELL, JSON.stringify(mark));
  }
  return ok;
}

/**
 * At start: an ended seed whose recorded farewell window is still open answers on its port again (what the
 * agent killed mid-window stopped). A mark that cannot be read is left alone: nothing depends on it.
 */
export async function resumeFarewell(seedId: string, marks: Readonly<Record<string, string>>, authKey: string | undefined, config: Config): Promise<void> {
  const raw = marks[FAREWELL];
  if (!raw || !authKey) return;
  let mark: FarewellMark;
  try {
    mark = JSON.parse(raw) as FarewellMark;
  } catch {
    return;
  }
  if (!(mark.untilMs > Date.now()) || !Number.isInteger(mark.port)) return;
  const { tellSenders, transferTlsFromConfig } = await farewellModules();
  const reason = new AgentError(mark.reason.code as ErrorCode, mark.reason.message, { hint: mark.reason.hint ?? undefined });
  const ok = await tellSenders({ port: mark.port, bindAddress: config.SeedTransferBindAddress, tls: transferTlsFromConfig(config), authKey, reason, untilMs: mark.untilMs });
  if (ok) log.info('answering senders again on the transfer port of an ended target seed', { id: seedId, port: mark.port, until: new Date(mark.untilMs).toISOString() });
  else log.warn('transfer port is taken: a sender still trying to connect is not told why this target seed ended', { id: seedId, port: mark.port });
}
