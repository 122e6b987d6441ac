// The operator's web view: GET /ui (the page), GET /ui/diagrams/:machine.svg (the generated diagrams)
// and GET /api/seeds-stream (seed views as Server-Sent Events). All need the process token; basic auth
// applies as to every route. The page is served only to a caller who presented the token, and carries
// it so the page can send it as a header from then on.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { Context } from 'koa';
import type { Routes } from '../http/routes.js';
import { requestToken } from '../http/middleware.js';
import type { AgentServices } from '../services.js';
import { AgentError } from '../errors.js';
import { seedFeedOf, type SeedView } from '../seed-feed.js';
import { version } from '../version.js';
import { SEED_METHODS } from '../seeds/seed-method-names.js';

/** Repository root (dist/src/routes/ -> ../../..): ui/ and diagrams/ are read from there. */
const repoRoot = resolve(new URL('.', import.meta.url).pathname, '../../..');
const uiDir = join(repoRoot, 'ui');
const diagramsDir = join(repoRoot, 'diagrams');
const machineName = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

/**
 * The runbook steps of each seed chart, in order: its states built by runbookStep (they start at `gate`).
 * The charts (with xstate) load with the first page, not with the agent.
 */
export async function runbooks(): Promise<Record<string, string[]>> {
  const { chartFor } = await import('../seeds/seed-methods.js');
  const out: Record<string, string[]> = {};
  const machines = SEED_METHODS.flatMap((method) =>
    (['target', 'source'] as const).flatMap((role) => {
      try {
        return [chartFor(method, role).machine];
      } catch {
        return []; // a method without charts yet
      }
    }),
  );
  for (const machine of machines) {
    const states = (machine.config.states ?? {}) as Record<string, { initial?: unknown }>;
    out[machine.id] = Object.entries(states)
      .filter(([, state]) => state.initial === 'gate')
      .map(([name]) => name);
  }
  return out;
}

/** How often an idle stream sends a comment line, so proxies and the page see the connection alive. */
export const heartbeatMs = 15_000;

function readUiFile(name: string): string {
  try {
    return readFileSync(join(uiDir, name), 'utf8');
  } catch (err) {
    throw new AgentError('internal', `cannot read the web view's ${name} from ${uiDir}: ${(err as Error).message}`, {
      hint: 'install the ui/ directory beside dist/ (see README "Web view")',
    });
  }
}

/** JSON that is safe inside a <script> element. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026');
}

function sseEvent(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

export function registerUiRoutes(routes: Routes, services: AgentServices): void {
  const { config } = services;

  routes.router.get('/ui', routes.tokenCheck, async (ctx: Context) => {
    // Where the page should put the token: the configured header; Authorization: Bearer unless basic
    // auth already uses that header; otherwise the query string is the only place left.
    const tokenVia = config.TokenHttpHeader ? 'header' : config.HTTPAuthUser ? 'query' : 'bearer';
    const boot = {
      token: requestToken(ctx, config.TokenHttpHeader, true),
      tokenHeader: config.TokenHttpHeader,
      tokenVia,
      hostname: hostname(),
      version,
      heartbeatMs,
      runbooks: await runbooks(),
    };
    // Function replacements: the inserted text is taken literally ('$' has no special meaning).
    const html = readUiFile('index.html')
      .replace('/*STYLE*/', () => readUiFile('style.css'))
      .replace('/*APP*/', () => readUiFile('app.js'))
      .replace('"BOOT"', () => scriptJson(boot));
    ctx.status = 200;
    ctx.type = 'text/html; charset=utf-8';
    ctx.set('Cache-Control', 'no-store');
    ctx.set('Referrer-Policy', 'no-referrer');
    ctx.set('Content-Security-Policy', "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:");
    ctx.body = html;
  });

  routes.router.get('/ui/diagrams/:machine', routes.tokenCheck, (ctx: Context) => {
    const file = String(ctx.params.machine ?? '');
    const name = file.endsWith('.svg') ? file.slice(0, -'.svg'.length) : '';
    if (!machineName.test(name)) throw new AgentError('bad_request', `"${file}" is not a machine diagram name`, { hint: 'ask for <machine-id>.svg' });
    let svg: string;
    try {
      svg = readFileSync(join(diagramsDir, `${name}.svg`), 'utf8');
    } catch {
      throw new AgentError('not_found', `no diagram for machine "${name}" in ${diagramsDir}`, { hint: 'run npm run diagrams' });
    }
    ctx.status = 200;
    ctx.type = 'image/svg+xml';
    ctx.set('Cache-Control', 'no-cache');
    ctx.body = svg;
  });

  routes.router.get('/api/seeds-stream', routes.tokenCheck, (ctx: Context) => {
    const feed = seedFeedOf(services);
    const socket = ctx.req.socket;
    socket.setTimeout(0);
    socket.setNoDelay(true);
    socket.setKeepAlive(true);
    ctx.status = 200;
    ctx.type = 'text/event-stream';
    ctx.set('Cache-Control', 'no-cache, no-store');
    ctx.set('X-Accel-Buffering', 'no');
    // We write the response ourselves: a client going away is normal here, not an error to log.
    ctx.respond = false;
    const res = ctx.res;
    res.flushHeaders();
    const send = (text: string) => {
      if (!res.writableEnded && !res.destroyed) res.write(text);
    };

    // The snapshot first, then every change; a reconnecting client gets a fresh snapshot.
    send('retry: 2000\n\n');
    send(sseEvent('snapshot', { seeds: feed?.list() ?? [], seedsAvailable: feed !== undefined }));
    const unsubscribe = feed?.subscribe((view: SeedView) => send(sseEvent('seed', view))) ?? (() => undefined);
    const heartbeat = setInterval(() => send(`: heartbeat ${new Date().toISOString()}\n\n`), heartbeatMs);
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      clearInterval(heartbeat);
      unsubscribe();
      if (!res.writableEnded) res.end();
    };
    ctx.req.once('close', close);
    res.once('close', close);
    res.once('error', close);
  });
}
