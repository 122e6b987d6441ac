// The HTTP error handling of README "Safety": every refusal has the original's error shape; a refused
// state-changing request is logged at WARN (method, route, path, status, reason, hint) since orchestrator
// discards the body, with every secret of four characters or more redacted; read routes are not logged;
// server errors are logged at ERROR. The real app (createApp) on real TCP, with route modules of its own.
import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import type { Server } from 'node:http';
import { defaultConfig, type Config } from '../src/config.js';
import { AgentError, badRequest } from '../src/errors.js';
import { createApp, type RouteModule } from '../src/http/app.js';
import { createServer, listen } from '../src/http/server.js';
import { setLogFormat, setLogLevel } from '../src/log.js';
import { sendJson } from '../src/http/respond.js';
import type { AgentServices } from '../src/services.js';
import { newProcessToken } from '../src/token.js';

const testRoutes: RouteModule = (routes) => {
  routes.action('/api/act', () => 'done');
  routes.read('/api/read', () => {
    throw badRequest('bad read', 'read better');
  });
  routes.post('/api/item/:id', (ctx) => {
    throw new AgentError('not_found', `no item ${String(ctx.params.id)}`, { hint: `ask for another than ${String(ctx.params.id)}` });
  });
  routes.post('/api/too-large', (ctx) => ctx.throw(413, 'body too large'));
  routes.post('/api/koa-400', (ctx) => ctx.throw(400, 'koa says bad'));
  routes.post('/api/koa-500', (ctx) => ctx.throw(500, 'koa failed'));
  // Handlers that write their own answer (streams, SSE) may refuse without a throw.
  routes.post('/api/own-400', (ctx) => sendJson(ctx, 400, 'no'));
  routes.post('/api/own-500', (ctx) => sendJson(ctx, 500, 'BAD'));
  routes.post('/api/boom', () => {
    throw new Error('kaput');
  });
  routes.post('/api/disk', () => {
    throw new AgentError('io', 'disk gone');
  });
};

interface App {
  url: string;
  token: string;
  close(): Promise<void>;
}

async function startApp(overrides: Partial<Config>): Promise<App> {
  const config: Config = { ...defaultConfig(), TokenHttpHeader: 'X-Agent-Token', ...overrides };
  const token = newProcessToken();
  const services = { config, token } as unknown as AgentServices;
  const server: Server = createServer(createApp(services, [testRoutes]), config);
  const port = await listen(server, 0, '127.0.0.1');
  return { url: `http://127.0.0.1:${port}`, token, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** The agent's stderr log lines (JSON) while a test runs. */
let lines: string[] = [];
const realWrite = process.stderr.write.bind(process.stderr);
beforeAll(() => {
  setLogFormat('json');
  setLogLevel('info');
  process.stderr.write = ((chunk: string | Uint8Array) => {
    lines.push(...String(chunk).split('\n').filter((l) => l.startsWith('{')));
    return true;
  }) as typeof process.stderr.write;
});
afterAll(() => {
  process.stderr.write = realWrite;
  setLogFormat('text');
});
afterEach(() => {
  lines = [];
});
const logged = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>).map(({ time: _t, ...rest }) => rest);

async function call(url: string, init?: RequestInit): Promise<{ status: number; body: { Code: string; Message: string; Details: Record<string, unknown> } }> {
  const res = await fetch(url, init);
  return { status: res.status, body: JSON.parse(await res.text()) };
}

describe('refusals and errors, with secrets to keep out of the log', () => {
  let app: App;
  // HTTPAuthUser is empty: the password is only a secret here. Four characters are redacted, three are not
  // (a short value would blank out ordinary words).
  beforeAll(async () => {
    app = await startApp({ HTTPAuthPassword: 'pw4x', AgentFleetSecret: 'abc', SeedTransferSecret: '' });
  });
  afterAll(async () => app?.close());

  test('a refused POST is logged at WARN with route, path, status, reason and hint', async () => {
    const reply = await call(`${app.url}/api/act`, { method: 'POST' });
    expect(reply.status).toBe(401);
    expect(reply.body).toEqual({ Code: 'ERROR', Message: 'Invalid token', Details: { code: 'unauthorized', hint: 'POST routes take the token only in a header (X-Agent-Token)' } });
    expect(logged()).toEqual([
      { level: 'warn', msg: 'refused POST /api/act: Invalid token', method: 'POST', route: '/api/act', path: '/api/act', status: 401, hint: 'POST routes take the token only in a header (X-Agent-Token)' },
    ]);
  });

  test("a state-changing GET (the original's actions) is logged without its query string; a read route is not logged", async () => {
    expect((await call(`${app.url}/api/act?token=wrong-${app.token}`)).status).toBe(401);
    expect((await call(`${app.url}/api/read?token=wrong`)).status).toBe(401);
    expect((await fetch(`${app.url}/api/read?token=wrong`, { method: 'HEAD' })).status).toBe(401);
    expect((await fetch(`${app.url}/api/read`, { method: 'OPTIONS' })).status).toBe(404);
    const read = await call(`${app.url}/api/read?token=${app.token}`);
    expect([read.status, read.body.Message, read.body.Details.hint]).toEqual([400, 'bad read', 'read better']);
    expect((await call(`${app.url}/api/nothing?token=${app.token}`)).status).toBe(404);
    expect(logged()).toEqual([
      { level: 'warn', msg: 'refused GET /api/act: Invalid token', method: 'GET', route: '/api/act', path: '/api/act', status: 401, hint: 'pass the token orchestrator received at registration as ?token= or in a header' },
    ]);
    expect((await call(`${app.url}/api/act?token=${app.token}`)).body).toBe('done');
  });

  test('secrets of four characters or more are redacted from the reason, the path and the hint', async () => {
    const headers = { 'X-Agent-Token': app.token };
    for (const id of [app.token, 'pw4x', 'abc']) expect((await call(`${app.url}/api/item/${id}`, { method: 'POST', headers })).status).toBe(404);
    expect(logged()).toEqual([
      { level: 'warn', msg: 'refused POST /api/item/[redacted]: no item [redacted]', method: 'POST', route: '/api/item/:id', path: '/api/item/[redacted]', status: 404, hint: 'ask for another than [redacted]' },
      { level: 'warn', msg: 'refused POST /api/item/[redacted]: no item [redacted]', method: 'POST', route: '/api/item/:id', path: '/api/item/[redacted]', status: 404, hint: 'ask for another than [redacted]' },
      { level: 'warn', msg: 'refused POST /api/item/abc: no item abc', method: 'POST', route: '/api/item/:id', path: '/api/item/abc', status: 404, hint: 'ask for another than abc' },
    ]);
  });

  test('a 4xx a handler answers itself is logged, a 500 it answers is not; another method or no route is a logged 404', async () => {
    const headers = { 'X-Agent-Token': app.token };
    expect((await fetch(`${app.url}/api/own-400`, { method: 'POST', headers })).status).toBe(400);
    expect((await fetch(`${app.url}/api/own-500`, { method: 'POST', headers })).status).toBe(500);
    expect((await fetch(`${app.url}/api/act`, { method: 'POST', headers })).status).toBe(200);
    expect((await fetch(`${app.url}/api/act`, { method: 'PUT', headers })).status).toBe(404);
    expect((await call(`${app.url}/api/nothing`, { method: 'POST' })).status).toBe(404);
    expect(logged()).toEqual([
      { level: 'warn', msg: 'refused POST /api/own-400: HTTP 400', method: 'POST', route: '/api/own-400', path: '/api/own-400', status: 400, hint: null },
      { level: 'warn', msg: 'refused PUT /api/act: no route PUT /api/act', method: 'PUT', route: '/api/act', path: '/api/act', status: 404, hint: null },
      { level: 'warn', msg: 'refused POST /api/nothing: no route POST /api/nothing', method: 'POST', route: null, path: '/api/nothing', status: 404, hint: null },
    ]);
  });

  test("koa's own 4xx errors get the error shape as a 400; failures are 500 and logged at ERROR, not as refusals", async () => {
    const headers = { 'X-Agent-Token': app.token };
    const large = await call(`${app.url}/api/too-large`, { method: 'POST', headers });
    expect([large.status, large.body]).toEqual([400, { Code: 'ERROR', Message: 'body too large', Details: { code: 'bad_request', hint: null } }]);
    const koa400 = await call(`${app.url}/api/koa-400`, { method: 'POST', headers });
    expect([koa400.status, koa400.body.Message, koa400.body.Details.code]).toEqual([400, 'koa says bad', 'bad_request']);
    const koa500 = await call(`${app.url}/api/koa-500`, { method: 'POST', headers });
    expect([koa500.status, koa500.body.Message, koa500.body.Details.code]).toEqual([500, 'koa failed', 'internal']);
    const boom = await call(`${app.url}/api/boom`, { method: 'POST', headers });
    expect([boom.status, boom.body.Message, boom.body.Details.code]).toEqual([500, 'kaput', 'internal']);
    const disk = await call(`${app.url}/api/disk`, { method: 'POST', headers });
    expect([disk.status, disk.body.Message, disk.body.Details.code]).toEqual([500, 'disk gone', 'io']);
    expect(logged()).toEqual([
      { level: 'warn', msg: 'refused POST /api/too-large: body too large', method: 'POST', route: '/api/too-large', path: '/api/too-large', status: 400, hint: null },
      { level: 'warn', msg: 'refused POST /api/koa-400: koa says bad', method: 'POST', route: '/api/koa-400', path: '/api/koa-400', status: 400, hint: null },
      { level: 'error', msg: 'request failed', method: 'POST', path: '/api/koa-500', error: 'koa failed' },
      { level: 'error', msg: 'request failed', method: 'POST', path: '/api/boom', error: 'kaput' },
      { level: 'error', msg: 'request failed', method: 'POST', path: '/api/disk', error: 'disk gone' },
    ]);
  });
});

describe('the access log', () => {
  test('at debug level every request is a line with method, path, status and duration', async () => {
    const app = await startApp({});
    setLogLevel('debug');
    try {
      expect((await fetch(`${app.url}/api/act?token=${app.token}`)).status).toBe(200);
    } finally {
      setLogLevel('info');
      await app.close();
    }
    const [line, ...rest] = logged();
    expect(rest).toEqual([]);
    expect(line).toEqual({ level: 'debug', msg: 'http', method: 'GET', path: '/api/act', status: 200, ms: expect.any(Number) });
    // A duration, not a point in time.
    expect(line!.ms).toBeGreaterThanOrEqual(0);
    expect(line!.ms).toBeLessThan(60_000);
  });
});

describe('basic authentication', () => {
  let app: App;
  beforeAll(async () => {
    app = await startApp({ HTTPAuthUser: 'admin', HTTPAuthPassword: 'secret-pw' });
  });
  afterAll(async () => app?.close());

  test('missing credentials: 401 with a Basic challenge in the error shape, logged with what to send', async () => {
    const res = await fetch(`${app.url}/api/act`, { method: 'POST', headers: { 'X-Agent-Token': app.token } });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Basic realm="orchestrator-agent"');
    const hint = 'send the HTTPAuthUser / HTTPAuthPassword credentials';
    expect(JSON.parse(await res.text())).toEqual({ Code: 'ERROR', Message: 'basic authentication required', Details: { code: 'unauthorized', hint } });
    expect(logged()).toEqual([
      { level: 'warn', msg: 'refused POST /api/act: basic authentication required', method: 'POST', route: '/api/act', path: '/api/act', status: 401, hint },
    ]);
    const auth = `Basic ${Buffer.from('admin:secret-pw').toString('base64')}`;
    const ok = await fetch(`${app.url}/api/act`, { method: 'POST', headers: { 'X-Agent-Token': app.token, Authorization: auth } });
    expect(ok.status).toBe(200);
  });
});
