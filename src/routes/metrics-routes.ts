// GET /metrics in Prometheus text format. No token: the token changes on every agent start and a
// Prometheus job cannot learn it; the endpoint sits behind basic auth (HTTPAuthUser) like the rest of
// the API, and exposes counts and states only.
import type { Config } from '../config.js';
import type { Routes } from '../http/routes.js';
import type { AgentMetrics, MetricsHost } from '../metrics.js';
import type { AgentServices, ContactStatus } from '../services.js';
import { seedFeedOf, type SeedFeed, type SeedView } from '../seed-feed.js';

/**
 * The agent's metrics, with prom-client (and the process collectors it starts) loaded at the first scrape
 * rather than at start. Until then it keeps the latest view of each seed that changed (with the most bytes
 * seen), and the first scrape replays them over the seeds present at start: the counters read as if
 * prom-client had watched from the start.
 */
export function lazyMetrics(config: Config, contact: ContactStatus, seeds?: SeedFeed, host?: MetricsHost): Pick<AgentMetrics, 'render'> {
  const baseline = seeds?.list() ?? [];
  const changed = new Map<string, SeedView>();
  let metrics: AgentMetrics | undefined;
  seeds?.subscribe((view) => {
    if (metrics) return metrics.observe(view);
    const mostBytes = Math.max(view.progress?.bytesDone ?? 0, changed.get(view.id)?.progress?.bytesDone ?? 0);
    changed.set(view.id, view.progress ? { ...view, progress: { ...view.progress, bytesDone: mostBytes } } : view);
  });
  let loading: Promise<AgentMetrics> | undefined;
  const load = () =>
    (loading ??= import('../metrics.js').then(({ createMetrics }) => {
      const created = createMetrics(config, contact, seeds, host, baseline);
      for (const view of changed.values()) created.observe(view);
      changed.clear();
      return (metrics = created);
    }));
  return { render: async () => (await load()).render() };
}

export function registerMetricsRoutes(routes: Routes, services: AgentServices): void {
  const seeds = seedFeedOf(services);
  const host = services.mysql && services.datadir ? { mysql: services.mysql, datadir: services.datadir } : undefined;
  const metrics = lazyMetrics(services.config, services.contact, seeds, host);
  routes.router.get('/metrics', async (ctx) => {
    const { contentType, body } = await metrics.render();
    ctx.status = 200;
    ctx.type = contentType;
    ctx.body = body;
  });
}
