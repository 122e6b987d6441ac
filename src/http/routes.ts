// How a route is exposed. Read-only routes are GET (token from header or ?token=, as orchestrator sends
// it). State-changing routes keep the original GET for orchestrator and add a POST that takes the token
// only from a header, so the token never has to sit in a URL or a proxy log.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { requireToken } from './middleware.js';
import { sendOk } from './respond.js';

export type Handler = (ctx: Context) => Promise<unknown> | unknown;

export interface Routes {
  /** No token: hostname and the status endpoint, as in the original. */
  open(path: string, handler: Handler): void;
  /** GET with token. */
  read(path: string, handler: Handler): void;
  /** GET (compatible) and POST (safe), both with token. */
  action(path: string, handler: Handler): void;
  /** POST only, with token in a header: routes the original did not have. */
  post(path: string, handler: Handler): void;
  /** Escape hatch for handlers that write their own response (streams, SSE). */
  router: Router;
  tokenCheck: ReturnType<typeof requireToken>;
}

function wrap(handler: Handler) {
  return async (ctx: Context) => {
    const value = await handler(ctx);
    if (value !== undefined) sendOk(ctx, value);
  };
}

export function createRoutes(router: Router, token: string, tokenHeader: string): Routes {
  const tokenCheck = requireToken(token, tokenHeader);
  return {
    router,
    tokenCheck,
    open: (path, handler) => void router.get(path, wrap(handler)),
    read: (path, handler) => void router.get(path, tokenCheck, wrap(handler)),
    action: (path, handler) => {
      router.get(path, tokenCheck, wrap(handler));
      router.post(path, tokenCheck, wrap(handler));
    },
    post: (path, handler) => void router.post(path, tokenCheck, wrap(handler)),
  };
}
