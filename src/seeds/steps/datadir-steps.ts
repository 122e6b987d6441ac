// Ensure the target datadir is empty before the copy arrives. Refuses while MySQL runs (by the status
// command) or while any process uses the datadir (seen by the agent itself).
import { readdir } from 'node:fs/promises';
import { AgentError } from '../../errors.js';
import { log } from '../../log.js';
import type { TargetParams } from '../../../machines/seed-target.js';
import type { StepFn } from './step-env.js';

export const PURGE_STARTED = 'purgeStarted';

async function isEmpty(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length === 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
}

export const ensureDatadirPurged: StepFn<TargetParams> = async (input, signal, env) => {
  const datadir = input.facts.datadir;
  if (!datadir) throw new AgentError('internal', 'purgingDatadir reached without a known datadir');
  if (await env.mysql.isRunning(signal)) {
    throw new AgentError('conflict', `MySQL is running; refusing to purge ${datadir}`, { hint: 'stop MySQL first' });
  }
  // The status command is the operator's word; the agent also looks for itself (open files, InnoDB's lock).
  await env.datadir.ensureNotInUse(datadir);
  // From here on the datadir holds no live data: cleanup may remove a partial copy.
  env.seed.mark(PURGE_STARTED, new Date().toISOString());
  if (!(await isEmpty(datadir))) {
    log.info('seed is purging the datadir', { seed: env.seed.id, datadir });
    await env.datadir.purge(datadir, signal);
    log.info('seed purged the datadir', { seed: env.seed.id, datadir });
  } else log.info('datadir already empty', { seed: env.seed.id, datadir });
  return {};
};
