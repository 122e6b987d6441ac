// GET /metrics in Prometheus text format. No token: the token changes on every agent start and a
// Prometheus job cannot learn it; the endpoint sits behind basic auth (HTTPAuthUser) like the rest of
// the API, and exposes counts and states only.
import type { Routes } from '../http/routes.js';
import type { AgentServices } from '../services.js';
import { createMetrics } from '../metrics.js';
import { seedFeedOf } from '../seed-feed.js';

export function registerMetricsRoutes(routes: Routes, services: AgentServices): void {
  const seeds = seedFeedOf(services);
  const host = services.mysql && services.datadir ? { mysql: services.mysql, datadir: services.datadir } : undefined;
  const metrics = createMetrics(services.config, services.contact, seeds, host);
  seeds?.subscribe((view) => metrics.observe(view));
  routes.router.get('/metrics', async (ctx) => {
    const { contentType, body } = await metrics.render();
    ctx.status = 200;
    ctx.type = contentType;
    ctx.body = body;
  });
}
