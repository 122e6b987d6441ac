// Wires one agent process together: config -> services -> HTTP API (+ registration, seeds).
import type { Server } from 'node:http';
import { hostname } from 'node:os';
import type { Config } from './config.js';
import { createApp } from './http/app.js';
import { createServer, listen } from './http/server.js';
import { log } from './log.js';
import { Registration } from './registration.js';
import type { AgentServices } from './services.js';
import { newProcessToken, writeTokenHint } from './token.js';
import { ConfiguredMySQLService } from './host/mysql-service.js';
import { LocalDatadir } from './host/datadir.js';
import { createSnapshotBackend } from './host/snapshot-backend.js';
import { SeedManager } from './seeds/seed-manager.js';

export interface RunningAgent {
  port: number;
  token: string;
  services: AgentServices;
  stop(): Promise<void>;
}

export async function startAgent(config: Config, opts: { token?: string } = {}): Promise<RunningAgent> {
  const token = opts.token ?? newProcessToken();
  if (config.TokenHintFile) writeTokenHint(config.TokenHintFile, token);

  const registration = new Registration(config, token);
  const mysql = new ConfiguredMySQLService(config);
  const services: AgentServices = {
    config,
    token,
    startedAt: Date.now(),
    contact: registration,
    registration,
    mysql,
    datadir: new LocalDatadir(config),
    snapshots: createSnapshotBackend(config, (signal) => mysql.datadir(signal)),
  };

  // Restored before the API serves, so the first request already sees every seed.
  const seeds = new SeedManager(services);
  await seeds.start();
  services.seeds = seeds;

  const server: Server = createServer(createApp(services), config);
  const port = await listen(server, config.HTTPPort, config.HTTPBindAddress);
  log.info('orchestrator-agent listening', {
    address: config.HTTPBindAddress || '*',
    port,
    https: config.UseSSL,
    stateDir: config.StateDir,
  });
  // Orchestrator is told the port actually listened on (HTTPPort 0 picks a free one).
  registration.start({ hostname: hostname(), httpPort: port });

  return {
    port,
    token,
    services,
    async stop() {
      await registration.stop();
      await seeds.stop();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Long-lived responses (the web view's seed stream) would otherwise hold close() open.
      server.closeAllConnections();
      await closed;
    },
  };
}
