// Ensure steps for the MySQL service on the target: observe first, act only if needed, check the result.
import { AgentError, asAgentError } from '../../errors.js';
import { log } from '../../log.js';
import type { TargetParams } from '../../../machines/seed-target.js';
import type { StepFn } from './step-env.js';

export const ensureMySQLStopped: StepFn<TargetParams> = async (input, signal, env) => {
  // The datadir is learned once, while MySQL may still answer, and kept in the seed's context.
  const datadir = input.facts.datadir ?? (await env.mysql.datadir(signal));
  if (await env.mysql.isRunning(signal)) {
    log.info('seed is stopping MySQL', { seed: env.seed.id, datadir });
    await env.mysql.stop(signal);
    if (!(await env.mysql.isRunning(signal))) log.info('seed stopped MySQL', { seed: env.seed.id, datadir });
  } else log.info('MySQL already stopped', { seed: env.seed.id, datadir });
  if (await env.mysql.isRunning(signal)) {
    throw new AgentError('command_failed', 'MySQL still runs after MySQLServiceStopCommand', {
      hint: 'check MySQLServiceStopCommand and MySQLServiceStatusCommand, then create the seed again',
    });
  }
  return { datadir };
};

export const ensureMySQLStarted: StepFn<TargetParams> = async (_input, signal, env) => {
  // mysqld inherits the start command's tag; only the command's own group may be reaped, never mysqld.
  if (!(await env.mysql.isRunning(signal))) {
    log.info('seed is starting MySQL', { seed: env.seed.id });
    await env.daemonStarter(() => env.mysql.start(signal)).catch((err: unknown) => {
      const e = asAgentError(err);
      if (e.hint || e.code === 'aborted') throw e;
      throw new AgentError(e.code, e.message, {
        hint: 'look at the MySQL error log (/api/mysql-error-log-tail) and MySQLServiceStartCommand; the copied datadir is in place: start MySQL by hand, or fix and create the seed again',
        details: e.details,
        cause: e,
      });
    });
    if (await env.mysql.isRunning(signal)) log.info('seed started MySQL', { seed: env.seed.id });
  } else log.info('MySQL already running', { seed: env.seed.id });
  if (!(await env.mysql.isRunning(signal))) {
    throw new AgentError('command_failed', 'MySQL is not running after MySQLServiceStartCommand', {
      hint: 'look at the MySQL error log (/api/mysql-error-log-tail); the copied datadir is in place',
    });
  }
  return {};
};
