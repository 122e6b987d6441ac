// Cross-cutting HTTP concerns as plain Koa middleware: error mapping, access log, basic auth, token, OUs.
import type { Context, Middleware, Next } from 'koa';
import type { TLSSocket } from 'node:tls';
import type Router from '@koa/router';
import auth from 'koa-basic-auth';
import { AgentError } from '../errors.js';
import { log } from '../log.js';
import { tokensEqual } from '../token.js';
import { sendError } from './respond.js';

/** Replaces every secret value in a log line (the process token, passwords) with "[redacted]". */
function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length >= 4) out = out.split(secret).join('[redacted]');
  return out;
}

/**
 * A refused state-changing request (4xx): orchestrator discards the body, so the log is where an operator
 * learns why. Method, route, path, status, reason and hint; never the query string (?token=) or a secret.
 */
function logRefusal(ctx: Context, status: number, err: AgentError | undefined, secrets: readonly string[]): void {
  if (!ctx.state.stateChanging) return;
  const clean = (text: string) => redact(text, secrets);
  const reason = err ? err.message : `HTTP ${status}`;
  log.warn(clean(`refused ${ctx.method} ${ctx.path}: ${reason}`), {
    method: ctx.method,
    route: ctx.state.route ?? null,
    path: clean(ctx.path),
    status,
    hint: err?.hint === undefined ? null : clean(err.hint),
  });
}

/** secrets: the values no refusal log line may show (the process token, passwords). */
export function errorHandler(opts: { secrets: () => readonly string[] }): Middleware {
  const { secrets } = opts;
  return async (ctx: Context, next: Next) => {
    try {
      await next();
      // Refusals answered without a throw (a handler that writes its own response).
      if (ctx.status >= 400 && ctx.status < 500) logRefusal(ctx, ctx.status, undefined, secrets());
    } catch (err) {
      if (err instanceof AgentError) {
        if (err.httpStatus >= 500) log.error('request failed', { method: ctx.method, path: ctx.path, error: err.message });
        else logRefusal(ctx, err.httpStatus, err, secrets());
        sendError(ctx, err);
        return;
      }
      // koa-basic-auth and koa itself throw http-errors (whose status is 400-599): keep what it says, in our
      // shape. Anything else is a failure of ours.
      const status = (err as { status?: number }).status ?? 500;
      if (status === 401) {
        ctx.set('WWW-Authenticate', 'Basic realm="orchestrator-agent"');
        const e = new AgentError('unauthorized', 'basic authentication required', { hint: 'send the HTTPAuthUser / HTTPAuthPassword credentials' });
        sendError(ctx, e);
        logRefusal(ctx, 401, e, secrets());
        return;
      }
      if (status < 500) {
        const e = new AgentError('bad_request', (err as Error).message);
        sendError(ctx, e);
        logRefusal(ctx, e.httpStatus, e, secrets());
        return;
      }
      log.error('request failed', { method: ctx.method, path: ctx.path, error: (err as Error).message });
      sendError(ctx, err);
    }
  };
}

/**
 * Marks a request as state-changing (any method but GET/HEAD/OPTIONS, or a GET on a route that also takes
 * POST: the original's GET actions) and notes its route pattern, for the refusal log.
 */
export function markStateChanging(router: Router): Middleware {
  return async (ctx, next) => {
    const safe = ['GET', 'HEAD', 'OPTIONS'].includes(ctx.method);
    const asPost = router.match(ctx.path, 'POST');
    const own = safe ? router.match(ctx.path, ctx.method) : asPost;
    ctx.state.stateChanging = !safe || asPost.route;
    ctx.state.route = (own.route ? own : asPost).pathAndMethod[0]?.path;
    await next();
  };
}

export function accessLog(): Middleware {
  return async (ctx, next) => {
    const started = Date.now();
    await next();
    log.debug('http', { method: ctx.method, path: ctx.path, status: ctx.status, ms: Date.now() - started });
  };
}

export function basicAuth(user: string, password: string): Middleware {
  return auth({ name: user, pass: password }) as unknown as Middleware;
}

/** Where a request's token may come from: GET (orchestrator's calls) also takes ?token=, POST only headers. */
export function requestToken(ctx: Context, tokenHeader: string, allowQuery: boolean): string | undefined {
  // ctx.get('') is '': no TokenHttpHeader, no header token.
  const fromHeader = ctx.get(tokenHeader);
  if (fromHeader) return fromHeader;
  const authz = ctx.get('Authorization');
  if (authz.startsWith('Bearer ')) return authz.slice('Bearer '.length).trim();
  const q = ctx.query.token;
  // Only one value: a repeated ?token= is an array, never a token.
  if (allowQuery && typeof q === 'string') return q;
  return undefined;
}

export function requireToken(token: string, tokenHeader: string): Middleware {
  return async (ctx, next) => {
    const allowQuery = ctx.method === 'GET' || ctx.method === 'HEAD';
    if (!tokensEqual(token, requestToken(ctx, tokenHeader, allowQuery))) {
      throw new AgentError('unauthorized', 'Invalid token', {
        hint: allowQuery
          ? 'pass the token orchestrator received at registration as ?token= or in a header'
          : `POST routes take the token only in a header (${tokenHeader || 'Authorization: Bearer'})`,
      });
    }
    await next();
  };
}

/** Mutual TLS: the client certificate's OU must be one of SSLValidOUs (when the list is not empty). */
export function requireClientOU(validOUs: readonly string[]): Middleware {
  return async (ctx, next) => {
    if (validOUs.length > 0) {
      // Installed only with UseSSL and UseMutualTLS: a TLS socket whose client showed a certificate.
      const ou = (ctx.req.socket as TLSSocket).getPeerCertificate().subject?.OU;
      const ous = Array.isArray(ou) ? ou : ou ? [ou] : [];
      if (!ous.some((o) => validOUs.includes(o))) {
        throw new AgentError('forbidden', `client certificate OU ${JSON.stringify(ous)} is not in SSLValidOUs`);
      }
    }
    await next();
  };
}
