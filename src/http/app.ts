// The Koa application: middleware in order (errors, log, auth, mTLS OUs), then every route module.
import Koa from 'koa';
import Router from '@koa/router';
import type { AgentServices } from '../services.js';
import { accessLog, basicAuth, errorHandler, markStateChanging, requireClientOU } from './middleware.js';
import { createRoutes, type Routes } from './routes.js';
import { registerAgentRoutes } from '../routes/agent-routes.js';
import { registerHostRoutes } from '../routes/host-routes.js';
import { registerMySQLRoutes } from '../routes/mysql-routes.js';
import { registerRelayLogRoutes } from '../routes/relaylog-routes.js';
import { registerRegistrationRoutes } from '../routes/registration-routes.js';
import { registerMetricsRoutes } from '../routes/metrics-routes.js';
import { registerSnapshotRoutes } from '../routes/snapshot-routes.js';
import { registerUiRoutes } from '../routes/ui-routes.js';
import { registerSeedRoutes } from '../routes/seed-routes.js';
import { AgentError } from '../errors.js';

export type RouteModule = (routes: Routes, services: AgentServices) => void;

/** Every route module, in one list so a new area is one line here. */
export const routeModules: RouteModule[] = [
  registerAgentRoutes,
  registerHostRoutes,
  registerMySQLRoutes,
  registerRelayLogRoutes,
  registerRegistrationRoutes,
  registerMetricsRoutes,
  registerSnapshotRoutes,
  registerUiRoutes,
  registerSeedRoutes,
];

export function createApp(services: AgentServices, modules: RouteModule[] = routeModules): Koa {
  const { config } = services;
  const app = new Koa();
  app.proxy = false;
  const router = new Router();
  const routes = createRoutes(router, services.token, config.TokenHttpHeader);
  for (const register of modules) register(routes, services);
  app.use(errorHandler({ secrets: () => [services.token, config.HTTPAuthPassword, config.SeedTransferSecret, config.AgentFleetSecret] }));
  app.use(markStateChanging(router));
  app.use(accessLog());
  if (config.UseSSL && config.UseMutualTLS) {
    const ous = requireClientOU(config.SSLValidOUs);
    // StatusOUVerify=false leaves the status endpoint open to any valid client certificate (original).
    app.use(async (ctx, next) => (ctx.path === config.StatusEndpoint && !config.StatusOUVerify ? next() : ous(ctx, next)));
  }
  if (config.HTTPAuthUser !== '') {
    const auth = basicAuth(config.HTTPAuthUser, config.HTTPAuthPassword);
    // Everything, the status endpoint included, as the original; a load balancer's check may be let through.
    // Agent-to-agent routes carry their own authentication (fleet signature or client certificate).
    app.use(async (ctx, next) =>
      (ctx.path === config.StatusEndpoint && config.StatusEndpointWithoutBasicAuth) || ctx.path.startsWith('/api/peer/') ? next() : auth(ctx, next),
    );
  }
  app.use(router.routes());
  app.use(router.allowedMethods());
  app.use(async (ctx) => {
    throw new AgentError('not_found', `no route ${ctx.method} ${ctx.path}`);
  });
  return app;
}
