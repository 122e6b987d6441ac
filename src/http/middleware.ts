// Cross-cutting HTTP concerns as plain Koa middleware: error mapping, access log, basic auth, token, OUs.
import type { Context, Middleware, Next } from 'koa';
import type { TLSSocket } from 'node:tls';
import auth from 'koa-basic-auth';
import { AgentError } from '../errors.js';
import { log } from '../log.js';
import { tokensEqual } from '../token.js';
import { sendError } from './respond.js';

export function errorHandler(): Middleware {
  return async (ctx: Context, next: Next) => {
    try {
      await next();
    } catch (err) {
      const status = (err as { status?: number }).status;
      // koa-basic-auth and koa itself throw http-errors; keep their status, give them our shape.
      if (status === 401 && !(err instanceof AgentError)) {
        ctx.set('WWW-Authenticate', 'Basic realm="orchestrator-agent"');
        sendError(ctx, new AgentError('unauthorized', 'basic authentication required'));
        return;
      }
      if (!(err instanceof AgentError) && typeof status === 'number' && status >= 400 && status < 500) {
        sendError(ctx, new AgentError('bad_request', (err as Error).message));
        return;
      }
      if (!(err instanceof AgentError) || err.httpStatus >= 500) {
        log.error('request failed', { method: ctx.method, path: ctx.path, error: (err as Error).message });
      }
      sendError(ctx, err);
    }
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
  if (tokenHeader) {
    const fromHeader = ctx.get(tokenHeader);
    if (fromHeader) return fromHeader;
  }
  const authz = ctx.get('Authorization');
  if (authz.startsWith('Bearer ')) return authz.slice('Bearer '.length).trim();
  const q = ctx.query.token;
  if (allowQuery && typeof q === 'string' && q !== '') return q;
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
      const socket = ctx.req.socket as TLSSocket;
      const cert = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate() : undefined;
      const ou = cert?.subject?.OU;
      const ous = Array.isArray(ou) ? ou : ou ? [ou] : [];
      if (!ous.some((o) => validOUs.includes(o))) {
        throw new AgentError('forbidden', `client certificate OU ${JSON.stringify(ous)} is not in SSLValidOUs`);
      }
    }
    await next();
  };
}
