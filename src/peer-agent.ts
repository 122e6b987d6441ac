// Agent-to-agent calls: a target agent creating and steering the source half of a seed on the source
// agent. Authenticated by mutual TLS (UseSSL + UseMutualTLS, the agent's own certificate) or by
// AgentFleetSecret: an HMAC-SHA256 over a timestamp, the method, the path and the body's digest, sent in
// FLEET_HEADER. Never the operator's token. Every call is logged on both sides, without secrets.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent as HttpsAgent } from 'node:https';
import type { Context, Middleware } from 'koa';
import fetch from 'node-fetch';
import type { Config } from './config.js';
import { AgentError } from './errors.js';
import { log } from './log.js';

export const FLEET_HEADER = 'X-Orchestrator-Agent-Fleet';
/** How far a signed call's timestamp may be from this agent's clock. */
const MAX_SKEW_SECONDS = 300;

function signature(secret: string, t: string, method: string, path: string, body: string): string {
  const digest = createHash('sha256').update(body).digest('hex');
  return createHmac('sha256', secret).update(`${t}\n${method}\n${path}\n${digest}`).digest('hex');
}

/** The header value for a call: `t=UNIX_SECONDS,sig=HEX`. */
export function signCall(secret: string, method: string, path: string, body: string, now = Date.now()): string {
  const t = String(Math.floor(now / 1000));
  return `t=${t},sig=${signature(secret, t, method, path, body)}`;
}

/** Throws (with the keys to set) when this agent cannot make authenticated agent-to-agent calls. */
export function ensurePeerCallsConfigured(config: Config): void {
  if (!mutualTls(config) && config.AgentFleetSecret === '') throw refuseUnconfigured();
}

function refuseUnconfigured(): AgentError {
  return new AgentError('config', 'agent-to-agent calls need AgentFleetSecret or mutual TLS, and neither is configured', {
    hint: 'set AgentFleetSecret (the same on every agent of the fleet), or UseSSL with UseMutualTLS and the SSL* files',
  });
}

/** Mutual TLS is on for this agent's API (and so for its calls to peers). */
function mutualTls(config: Config): boolean {
  return config.UseSSL && config.UseMutualTLS;
}

/**
 * Middleware for the peer routes: a client certificate verified under mutual TLS, or a fresh valid fleet
 * signature over the request's raw body (kept in ctx.state.rawBody for the handler).
 */
export function requirePeer(config: Config): Middleware {
  return async (ctx: Context, next) => {
    const from = ctx.request.ip;
    const raw = await readRaw(ctx);
    ctx.state.rawBody = raw;
    const socket = ctx.req.socket as { authorized?: boolean };
    let how: string;
    if (mutualTls(config) && socket.authorized === true) {
      how = 'mutual TLS';
    } else if (config.AgentFleetSecret !== '') {
      const m = /^t=(\d{1,12}),sig=([0-9a-f]{64})$/.exec(ctx.get(FLEET_HEADER));
      const skew = m ? Math.abs(Date.now() / 1000 - Number(m[1])) : Infinity;
      const expected = m ? Buffer.from(signature(config.AgentFleetSecret, m[1], ctx.method, ctx.path, raw)) : Buffer.alloc(0);
      if (!m || skew > MAX_SKEW_SECONDS || !timingSafeEqual(expected, Buffer.from(m[2]))) {
        log.warn('agent-to-agent call refused', { from, method: ctx.method, path: ctx.path, why: !m ? `no valid ${FLEET_HEADER} header` : skew > MAX_SKEW_SECONDS ? `timestamp ${Math.round(skew)} s off` : 'bad signature' });
        throw new AgentError('unauthorized', 'agent-to-agent call refused: missing, stale or wrong fleet signature', {
          hint: `the calling agent needs the same AgentFleetSecret and a clock within ${MAX_SKEW_SECONDS} s of this one`,
        });
      }
      how = 'fleet secret';
    } else {
      log.warn('agent-to-agent call refused', { from, method: ctx.method, path: ctx.path, why: 'neither AgentFleetSecret nor mutual TLS configured' });
      throw refuseUnconfigured();
    }
    log.info('agent-to-agent call', { from, method: ctx.method, path: ctx.path, auth: how });
    await next();
  };
}

async function readRaw(ctx: Context): Promise<string> {
  if (ctx.method === 'GET') return '';
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > 64 * 1024) throw new AgentError('bad_request', 'request body larger than 65536 bytes');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export interface PeerAddress {
  host: string;
  port: number;
}

/** Calls a peer agent's peer route; answers its JSON, or throws what the peer said (with its hint). */
export async function callPeer<T>(config: Config, peer: PeerAddress, method: 'GET' | 'POST', path: string, body?: unknown, timeoutMs = 10_000): Promise<T> {
  const useTls = mutualTls(config);
  if (!useTls && config.AgentFleetSecret === '') throw refuseUnconfigured();
  const text = body === undefined ? '' : JSON.stringify(body);
  const scheme = config.UseSSL ? 'https' : 'http';
  const where = `${scheme}://${peer.host}:${peer.port}${path}`;
  const headers: Record<string, string> = { ...(text ? { 'Content-Type': 'application/json' } : {}) };
  if (config.AgentFleetSecret !== '') headers[FLEET_HEADER] = signCall(config.AgentFleetSecret, method, path, text);
  const agent = config.UseSSL
    ? new HttpsAgent({
        keepAlive: false,
        ca: config.SSLCAFile ? readFileSync(config.SSLCAFile) : undefined,
        ...(useTls ? { cert: readFileSync(config.SSLCertFile), key: readFileSync(config.SSLPrivateKeyFile) } : {}),
        rejectUnauthorized: !config.SSLSkipVerify,
      })
    : undefined;
  log.info('agent-to-agent call', { to: `${peer.host}:${peer.port}`, method, path, auth: useTls ? 'mutual TLS' : 'fleet secret' });
  let res;
  try {
    res = await fetch(where, { method, headers, body: text || undefined, agent, signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new AgentError('unavailable', `cannot reach the peer agent at ${peer.host}:${peer.port} (${method} ${path}): ${(err as Error).message}`, {
      hint: 'check the peer agent runs and this host reaches its API port',
    });
  }
  const answer = (await res.json().catch(() => null)) as { Message?: string; Details?: { hint?: string } } | null;
  if (!res.ok) {
    throw new AgentError(res.status === 401 ? 'unauthorized' : 'unavailable', `the peer agent at ${peer.host}:${peer.port} answered ${res.status} to ${method} ${path}: ${answer?.Message ?? 'no message'}`, {
      hint: answer?.Details?.hint ?? undefined,
    });
  }
  return answer as T;
}
