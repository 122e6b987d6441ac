// Routes about the agent itself: hostname and the configurable status endpoint.
import { hostname } from 'node:os';
import type { Routes } from '../http/routes.js';
import type { AgentServices } from '../services.js';
import { sendJson } from '../http/respond.js';

export function registerAgentRoutes(routes: Routes, services: AgentServices): void {
  routes.open('/api/hostname', () => hostname());

  // As the original: "BAD" with 500 until the first successful contact with orchestrator, then "OK"
  // with 200 while the last contact is within StatusBadSeconds.
  routes.open(services.config.StatusEndpoint, (ctx) => {
    const last = services.contact.lastContactAt();
    const silentSeconds = last === undefined ? Infinity : (Date.now() - last) / 1000;
    if (silentSeconds > services.config.StatusBadSeconds) sendJson(ctx, 500, 'BAD');
    else sendJson(ctx, 200, 'OK');
  });
}
