// orchestrator-agent entry point: `node dist/src/main.js [--config FILE] [--verbose|--debug]`.
import { parseArgs } from 'node:util';
import { loadConfig } from './config.js';
import { startAgent } from './agent.js';
import { configLogLevel, reloadOnSighup } from './config-reload.js';
import { describeError } from './errors.js';
import { log, setLogLevel } from './log.js';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string' },
      verbose: { type: 'boolean', default: false },
      debug: { type: 'boolean', default: false },
    },
  });
  if (values.debug) setLogLevel('debug');
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
  log.error(`orchestrator-agent cannot start: ${describeError(err)}`);
  process.exit(1);
});
