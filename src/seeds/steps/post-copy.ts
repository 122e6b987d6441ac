// The operator's PostCopyCommand, once: a durable mark keeps a restarted seed from running it twice
// after it completed (a restart while it ran runs it again: its process group was killed).
import { postCopy } from '../../host/operator-commands.js';
import { log } from '../../log.js';
import type { TargetParams } from '../../../machines/seed-target.js';
import { commandCapMs, remainingMs, type StepFn } from './step-env.js';

export const POST_COPIED = 'postCopied';

/** The end of a command's output, for one log line. */
function outputTail(text: string, max = 2000): string {
  const trimmed = text.trim();
  return trimmed.length > max ? '…' + trimmed.slice(-max) : trimmed;
}

export const ensurePostCopied: StepFn<TargetParams> = async (input, signal, env) => {
  if (input.facts.postCopied || env.seed.marks()[POST_COPIED]) return { postCopied: true };
  // The target seed does not know its source host: the command runs as configured, with nothing offered.
  if (env.config.PostCopyCommand.trim() !== '') {
    log.info('seed is running the post-copy command', { seed: env.seed.id });
    const result = await postCopy(env.config, undefined, {
      signal,
      timeoutMs: remainingMs(input.deadlines, commandCapMs(env.config), 'the post-copy command'),
    });
    log.info('post-copy command finished', { seed: env.seed.id, output: outputTail(result?.stdout ?? ''), stderr: outputTail(result?.stderr ?? '') });
  }
  env.seed.mark(POST_COPIED, new Date().toISOString());
  return { postCopied: true };
};
