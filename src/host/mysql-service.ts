// MySQL service control through the operator's configured commands (MySQLDatadirCommand, MySQLPortCommand,
// MySQLServiceStatus/Stop/StartCommand). The agent never guesses how MySQL is managed on a host.
import type { Config } from '../config.js';
import { AgentError } from '../errors.js';
import { runShell, runShellStatus, type RunOptions } from '../process-runner.js';
import type { MySQLService } from './interfaces.js';

type CommandKey =
  | 'MySQLDatadirCommand'
  | 'MySQLPortCommand'
  | 'MySQLServiceStatusCommand'
  | 'MySQLServiceStopCommand'
  | 'MySQLServiceStartCommand';

const examples: Record<CommandKey, string> = {
  MySQLDatadirCommand: `mysql -NBe 'select @@datadir'`,
  MySQLPortCommand: `mysql -NBe 'select @@port'`,
  MySQLServiceStatusCommand: 'service mysql status',
  MySQLServiceStopCommand: 'service mysql stop',
  MySQLServiceStartCommand: 'service mysql start',
};

/** The configured command for key, or a config error naming the key to set. */
export function requireCommand(config: Config, key: CommandKey, purpose: string): string {
  const command = config[key].trim();
  if (command === '') {
    throw new AgentError('config', `${key} is not configured, so the agent cannot ${purpose}`, {
      hint: `set ${key} in the agent's config, e.g. "${examples[key]}"`,
    });
  }
  return command;
}

export function commandOptions(config: Config, signal?: AbortSignal, sudo = false): RunOptions {
  return { timeoutMs: config.CommandTimeoutSeconds * 1000, signal, sudo: sudo && config.ExecWithSudo };
}

export class ConfiguredMySQLService implements MySQLService {
  constructor(private readonly config: Config) {}

  async datadir(signal?: AbortSignal): Promise<string> {
    const command = requireCommand(this.config, 'MySQLDatadirCommand', 'find the MySQL datadir');
    const { stdout } = await runShell(command, [], commandOptions(this.config, signal));
    const datadir = stdout.trim();
    if (datadir === '') {
      throw new AgentError('command_failed', `MySQLDatadirCommand (${command}) printed nothing`, {
        hint: 'the command must print the datadir path, e.g. /var/lib/mysql',
      });
    }
    return datadir;
  }

  async port(signal?: AbortSignal): Promise<number> {
    const command = requireCommand(this.config, 'MySQLPortCommand', 'find the MySQL port');
    const { stdout } = await runShell(command, [], commandOptions(this.config, signal));
    const text = stdout.trim();
    if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
      throw new AgentError('command_failed', `MySQLPortCommand (${command}) printed ${JSON.stringify(text.slice(0, 200))}, not a port number`, {
        hint: 'the command must print only the port, e.g. 3306',
      });
    }
    return Number(text);
  }

  /** Exit code 0 of MySQLServiceStatusCommand means running; any other exit code means not running. */
  async isRunning(signal?: AbortSignal): Promise<boolean> {
    const command = requireCommand(this.config, 'MySQLServiceStatusCommand', 'tell whether MySQL is running');
    const { exitCode } = await runShellStatus(command, [], commandOptions(this.config, signal));
    return exitCode === 0;
  }

  /** Ensures MySQL is stopped: when a status command is configured and says stopped, nothing runs. */
  async stop(signal?: AbortSignal): Promise<void> {
    const command = requireCommand(this.config, 'MySQLServiceStopCommand', 'stop MySQL');
    if (this.config.MySQLServiceStatusCommand.trim() !== '' && !(await this.isRunning(signal))) return;
    await runShell(command, [], commandOptions(this.config, signal));
  }

  /** Ensures MySQL is running: when a status command is configured and says running, nothing runs. */
  async start(signal?: AbortSignal): Promise<void> {
    const command = requireCommand(this.config, 'MySQLServiceStartCommand', 'start MySQL');
    if (this.config.MySQLServiceStatusCommand.trim() !== '' && (await this.isRunning(signal))) return;
    await runShell(command, [], commandOptions(this.config, signal));
  }
}
