// orchestrator-agent entry point: `node dist/src/main.js [--config FILE] [--verbose|--debug] [--log-format json]`.
import { parseArgs } from 'node:util';
import { loadConfig } from './config.js';
import { startAgent } from './agent.js';
import { configLogLevel, reloadOnSighup } from './config-reload.js';
import { describeError } from './errors.js';
import { log, setLogFormat, setLogLevel } from './log.js';
import { version } from './version.js';

const usage = `orchestrator-agent ${version}: MySQL host agent for orchestrator (host facts, snapshots, seeding)

Usage: orchestrator-agent [options]      (node dist/src/main.js [options])
       orchestrator-agent seed --source HOST:PORT --target HOST:PORT --snapshot NAME [...]
                                         (drive one seed through two agents; seed --help)

Options:
  --config FILE        read only FILE; without it: /etc/orchestrator-agent.conf.json,
                       conf/orchestrator-agent.conf.json, orchestrator-agent.conf.json (later override earlier)
  --verbose            accepted for the original's command line (INFO is the default level)
  --debug              log at DEBUG level
  --log-format FORMAT  "text" (default: time LEVEL message {fields}) or "json" (one JSON object a line)
  --version            print the version and exit
  --help               print this help and exit

Logs go to stderr. SIGTERM or SIGINT stops the agent; unfinished seeds resume at the next start.
SIGHUP reads the configuration files again (see README "Configuration").
`;

async function main(): Promise<void> {
  if (process.argv[2] === 'seed') {
    const { runSeedCli } = await import('./seed-cli.js');
    process.exitCode = await runSeedCli(process.argv.slice(3));
    return;
  }
  const { values } = parseArgs({
    options: {
      config: { type: 'string' },
      verbose: { type: 'boolean', default: false },
      debug: { type: 'boolean', default: false },
      'log-format': { type: 'string', default: 'text' },
      help: { type: 'boolean', short: 'h', default: false },
      version: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(usage);
    return;
  }
  if (values.version) {
    process.stdout.write(`orchestrator-agent ${version}\n`);
    return;
  }
  const format = values['log-format'];
  if (format !== 'text' && format !== 'json') {
    process.stderr.write(`--log-format must be "text" or "json", got "${format}"\n\n${usage}`);
    process.exit(2);
  }
  setLogFormat(format);
  if (values.debug) setLogLevel('debug');
  log.info(`orchestrator-agent ${version} starting`, { version, node: process.version, pid: process.pid });
  const { config, files } = loadConfig(values.config);
  // SIGHUP reads the same files again (applying what can change live) instead of ending the process.
  reloadOnSighup(config, () => loadConfig(values.config), configLogLevel(config));
  log.info('read config', { files });
  const agent = await startAgent(config);
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`received ${signal}, shutting down; unfinished seeds resume at next start`);
    agent.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err) => {
  const message = `orchestrator-agent cannot start: ${describeError(err)}`;
  // An unknown option is a usage error: say so and show the usage.
  if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`${message}\n\n${usage}`);
    process.exit(2);
  }
  log.error(message);
  process.exit(1);
});
