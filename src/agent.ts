// Wires one agent process together: config -> services -> HTTP API (+ registration, seeds).
import { mkdirSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Config } from './config.js';
import { createApp } from './http/app.js';
import { createServer, listen } from './http/server.js';
import { log } from './log.js';
import type { AgentServices } from './services.js';
import { newProcessToken, writeTokenHint } from './token.js';
import { ConfiguredMySQLService } from './host/mysql-service.js';
import { LocalDatadir } from './host/datadir.js';

export interface RunningAgent {
  port: number;
  token: string;
  services: AgentServices;
  stop(): Promise<void>;
}

export async function startAgent(config: Config, opts: { token?: string } = {}): Promise<RunningAgent> {
  mkdirSync(config.StateDir, { recursive: true, mode: 0o700 });
  const token = opts.token ?? newProcessToken();
  if (config.TokenHintFile) writeTokenHint(config.TokenHintFile, token);

  const services: AgentServices = {
    config,
    token,
    startedAt: Date.now(),
    contact: { lastContactAt: () => undefined },
    mysql: new ConfiguredMySQLService(config),
    datadir: new LocalDatadir(config),
  };

  const server: Server = createServer(createApp(services), config);
  const port = await listen(server, config.HTTPPort, config.HTTPBindAddress);
  log.info('orchestrator-agent listening', {
    address: config.HTTPBindAddress || '*',
    port,
    https: config.UseSSL,
    stateDir: config.StateDir,
  });

  return {
    port,
    token,
    services,
    async stop() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
    },
  };
}
