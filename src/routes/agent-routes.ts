// Routes about the agent itself: hostname and the configurable status endpoint.
import { hostname } from 'node:os';
import type { Routes } from '../http/routes.js';
import type { AgentServices } from '../services.js';
import { sendJson } from '../http/respond.js';

export function registerAgentRoutes(routes: Routes, services: AgentServices): void {
  routes.open('/api/hostname', () => hostname());

  // "OK" with 200 while orchestrator answered within StatusBadSeconds, else "BAD" with 500 (original).
  routes.open(services.config.StatusEndpoint, (ctx) => {
    const last = services.contact.lastContactAt() ?? services.startedAt;
    const silentSeconds = (Date.now() - last) / 1000;
    if (silentSeconds > services.config.StatusBadSeconds) sendJson(ctx, 500, 'BAD');
    else sendJson(ctx, 200, 'OK');
  });
}
