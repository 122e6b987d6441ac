// The operator's own commands that the agent runs as configured: custom commands, snapshot host listings,
// snapshot creation and post-copy. Request values reach them only as positional parameters ($1).
import type { Config } from '../config.js';
import { AgentError } from '../errors.js';
import { runProgram, runShell, type RunResult } from '../process-runner.js';
import { outputLines } from './error-log.js';
import { commandOptions } from './mysql-service.js';

/** Output of CustomCommands[name]; unknown names are a 404 with the original's message. */
export async function runCustomCommand(config: Config, name: string, signal?: AbortSignal): Promise<string> {
  if (!Object.hasOwn(config.CustomCommands, name)) {
    throw new AgentError('not_found', `${name} : Command not found`, {
      hint: `configured custom commands: ${Object.keys(config.CustomCommands).join(', ') || '(none)'}`,
    });
  }
  const { stdout } = await runShell(config.CustomCommands[name]!, [], commandOptions(config, signal));
  return stdout;
}

/**
 * Hosts that have snapshots: AvailableLocalSnapshotHostsCommand (same DC) or AvailableSnapshotHostsCommand,
 * one per output line. Not configured means no known hosts: [].
 */
export async function availableSnapshotHosts(config: Config, local: boolean, signal?: AbortSignal): Promise<string[]> {
  const command = (local ? config.AvailableLocalSnapshotHostsCommand : config.AvailableSnapshotHostsCommand).trim();
  if (command === '') return [];
  const { stdout } = await runShell(command, [], commandOptions(config, signal));
  return outputLines(stdout).map((line) => line.trim()).filter((line) => line !== '');
}

export async function createSnapshot(config: Config, signal?: AbortSignal): Promise<void> {
  const command = config.CreateSnapshotCommand.trim();
  if (command === '') {
    throw new AgentError('config', 'CreateSnapshotCommand is not configured, so the agent cannot create a snapshot', {
      hint: 'set CreateSnapshotCommand to the command that takes a snapshot on this host',
    });
  }
  await runShell(command, [], commandOptions(config, signal));
}

/** Where PostCopyCommand finds the validated source host (orchestrator's ?sourceHost=), when there is one. */
export const SOURCE_HOST_ENV = 'ORCHESTRATOR_AGENT_SOURCE_HOST';

/**
 * PostCopyCommand after a seed's copy, before MySQL starts, exactly as configured and with no argument,
 * as the original ran it. The source host (already validated) is offered in ORCHESTRATOR_AGENT_SOURCE_HOST;
 * `env` sets it, so it also survives `sudo -n` (ExecWithSudo), which resets the environment. Unset: a no-op.
 */
export async function postCopy(
  config: Config,
  sourceHost: string | undefined,
  opts: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<RunResult | undefined> {
  const command = config.PostCopyCommand.trim();
  if (command === '') return undefined;
  const options = { ...commandOptions(config, opts.signal, true), ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }) };
  if (sourceHost === undefined) {
    return await runShell(command, [], options);
  } else {
    return await runProgram('env', [`${SOURCE_HOST_ENV}=${sourceHost}`, 'bash', '-c', command, 'orchestrator-agent'], options);
  }
}
