// Receiving and sending the data directory. With ReceiveSeedDataCommand / SendSeedDataCommand configured
// they run as the original ran them (command, datadir [, host], port; values as positional parameters),
// tagged and in their own process group; the step succeeds only when the command exits 0, so a sender's
// failure fails the source seed. A command cut off by an agent restart cannot be resumed (the other side's
// stream is gone): the step then fails with a message that says so.
import { AgentError } from '../../errors.js';
import { runShell, templateToScript } from '../../process-runner.js';
import type { SourceParams } from '../../../machines/seed-source.js';
import type { TargetParams } from '../../../machines/seed-target.js';
import { remainingMs, type StepEnv, type StepFn } from './step-env.js';

export const RECEIVE_STARTED = 'receiveStarted';
export const SEND_STARTED = 'sendStarted';
/** Set when the transfer step finished well: seed-command-succeeded reads it. */
export const TRANSFERRED = 'transferred';

function interrupted(side: 'receive' | 'send', since: string): AgentError {
  return new AgentError('aborted', `the ${side} command started at ${since} was interrupted by an agent restart; a command-based ${side} cannot resume`, {
    hint: 'abort the seed on the other side too and start a new seed (the built-in transfer resumes instead)',
  });
}

function noTransfer(side: 'receive' | 'send'): AgentError {
  const key = side === 'receive' ? 'ReceiveSeedDataCommand' : 'SendSeedDataCommand';
  return new AgentError('config', `${key} is not configured and this agent has no built-in transfer`, {
    hint: `set ${key} (e.g. a tar | nc pipeline) on both agents`,
  });
}

/** Polls the receiving datadir's size so the seed shows how much has arrived. */
function watchArrivals(env: StepEnv, datadir: string): () => void {
  let stopped = false;
  const started = Date.now();
  const tick = async () => {
    while (!stopped) {
      await new Promise((r) => setTimeout(r, 1000));
      if (stopped) break;
      try {
        const bytesDone = await env.datadir.diskUsage(datadir);
        const seconds = (Date.now() - started) / 1000;
        env.seed.setProgress({
          bytesDone,
          bytesTotal: null,
          filesDone: null,
          filesTotal: null,
          currentFile: null,
          rateBytesPerSec: seconds > 0 ? Math.round(bytesDone / seconds) : null,
          etaSeconds: null,
        });
      } catch {
        /* files come and go while a copy runs; the next tick tries again */
      }
    }
  };
  void tick();
  return () => {
    stopped = true;
  };
}

export const ensureReceived: StepFn<TargetParams> = async (input, signal, env) => {
  const datadir = input.facts.datadir;
  if (!datadir) throw new AgentError('internal', 'receiving reached without a known datadir');
  if (env.seed.marks()[TRANSFERRED]) return {};
  const command = env.config.ReceiveSeedDataCommand.trim();
  if (command === '') throw noTransfer('receive');
  const started = env.seed.marks()[RECEIVE_STARTED];
  if (started) throw interrupted('receive', started);
  env.seed.mark(RECEIVE_STARTED, new Date().toISOString());
  const stopWatching = watchArrivals(env, datadir);
  try {
    await runShell(templateToScript(command, 2), [datadir, String(env.config.SeedTransferPort)], {
      timeoutMs: remainingMs(input.deadlines, Number.MAX_SAFE_INTEGER, 'receiving'),
      signal,
      sudo: env.config.ExecWithSudo,
    });
  } finally {
    stopWatching();
  }
  env.seed.mark(TRANSFERRED, new Date().toISOString());
  return {};
};

export const ensureSent: StepFn<SourceParams> = async (input, signal, env) => {
  const sourceDir = input.facts.sourceDir ?? input.params.sourceDir;
  if (!sourceDir) throw new AgentError('internal', 'sending reached without a source directory');
  if (env.seed.marks()[TRANSFERRED]) return {};
  const command = env.config.SendSeedDataCommand.trim();
  if (command === '') throw noTransfer('send');
  const started = env.seed.marks()[SEND_STARTED];
  if (started) throw interrupted('send', started);
  env.seed.mark(SEND_STARTED, new Date().toISOString());
  await runShell(templateToScript(command, 3), [sourceDir, input.params.targetHost, String(input.params.targetPort)], {
    timeoutMs: remainingMs(input.deadlines, Number.MAX_SAFE_INTEGER, 'sending'),
    signal,
    sudo: env.config.ExecWithSudo,
  });
  env.seed.mark(TRANSFERRED, new Date().toISOString());
  return {};
};

