// The process token guards every API route but the open ones (README, Safety and Web view): a missing or
// wrong token is 401 on a route that exists, the right one passes from ?token= (GET only), TokenHttpHeader
// or Authorization: Bearer. Runs the real Koa app in this process on real TCP, with real configured commands.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { Server } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import nodeFetch from 'node-fetch';
import { makeTestPki, type CertFiles } from './support/tls-certs.js';
import { tempDir } from './support/agent-process.js';
import { hostname } from 'node:os';
import { defaultConfig, type Config } from '../src/config.js';
import { createApp } from '../src/http/app.js';
import { createServer, listen } from '../src/http/server.js';
import { LocalDatadir } from '../src/host/datadir.js';
import { ConfiguredMySQLService } from '../src/host/mysql-service.js';
import { registerAgentRoutes } from '../src/routes/agent-routes.js';
import { registerMySQLRoutes } from '../src/routes/mysql-routes.js';
import type { AgentServices } from '../src/services.js';
import { newProcessToken } from '../src/token.js';

interface Agent {
  url: string;
  token: string;
  close(): Promise<void>;
}

async function startApp(overrides: Partial<Config>): Promise<Agent> {
  const config: Config = { ...defaultConfig(), MySQLPortCommand: 'echo 3306', MySQLServiceStopCommand: 'true', ...overrides };
  const token = newProcessToken();
  const services = {
    config,
    token,
    startedAt: Date.now(),
    contact: { lastContactAt: () => Date.now() },
    mysql: new ConfiguredMySQLService(config),
    datadir: new LocalDatadir(config),
  } as unknown as AgentServices; // snapshots and seeds: not used by these route modules
  const server: Server = createServer(createApp(services, [registerAgentRoutes, registerMySQLRoutes]), config);
  const port = await listen(server, 0, '127.0.0.1');
  return {
    url: `${config.UseSSL ? 'https' : 'http'}://127.0.0.1:${port}`,
    token,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

async function call(url: string, init?: RequestInit): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, body: text === '' ? undefined : JSON.parse(text) };
}

function expectRefused(reply: { status: number; body: unknown }, what: string): void {
  expect([what, reply.status]).toEqual([what, 401]);
  expect(reply.body).toEqual(expect.objectContaining({ Code: 'ERROR', Message: expect.stringMatching(/token/i) }));
}

describe('the token check, with TokenHttpHeader set', () => {
  let agent: Agent;
  beforeAll(async () => {
    agent = await startApp({ TokenHttpHeader: 'X-Agent-Token' });
  });
  afterAll(async () => agent?.close());

  test('a route that exists answers 401 without a token or with a wrong one', async () => {
    const { url, token } = agent;
    const wrong = token.slice(0, -1) + (token.endsWith('0') ? '1' : '0');
    expectRefused(await call(`${url}/api/mysql-port`), 'no token');
    expectRefused(await call(`${url}/api/mysql-port?token=`), 'empty ?token=');
    expectRefused(await call(`${url}/api/mysql-port?token=${wrong}`), 'wrong ?token=');
    expectRefused(await call(`${url}/api/mysql-port?token=${token}x`), 'token with a suffix');
    expectRefused(await call(`${url}/api/mysql-port?token=${token.slice(0, 32)}`), 'a prefix of the token');
    expectRefused(await call(`${url}/api/mysql-port`, { headers: { 'X-Agent-Token': wrong } }), 'wrong header');
    expectRefused(await call(`${url}/api/mysql-port`, { headers: { Authorization: `Bearer ${wrong}` } }), 'wrong bearer');
    expectRefused(await call(`${url}/api/mysql-port`, { headers: { Authorization: `Basic ${token}` } }), 'not a bearer');
    expectRefused(await call(`${url}/api/mysql-port`, { headers: { 'X-Other-Header': token } }), 'another header');
  });

  test('the right token passes with 200 from ?token=, from TokenHttpHeader and as a bearer', async () => {
    const { url, token } = agent;
    for (const [what, reply] of [
      ['?token=', await call(`${url}/api/mysql-port?token=${token}`)],
      ['TokenHttpHeader', await call(`${url}/api/mysql-port`, { headers: { 'X-Agent-Token': token } })],
      ['bearer', await call(`${url}/api/mysql-port`, { headers: { Authorization: `Bearer ${token}` } })],
    ] as const) {
      expect([what, reply.status, reply.body]).toEqual([what, 200, 3306]);
    }
  });

  test('the token is one value: a repeated ?token= is refused, even one spelling the token byte by byte', async () => {
    const { url, token } = agent;
    const asBytes = [...token].map((c) => `token=${c.charCodeAt(0)}`).join('&');
    expectRefused(await call(`${url}/api/mysql-port?${asBytes}`), 'the token as repeated byte values');
    expectRefused(await call(`${url}/api/mysql-port?token=${token}&token=${token}`), 'the token twice');
    // Spaces after "Bearer" are not part of the token.
    expect(await call(`${url}/api/mysql-port`, { headers: { Authorization: `Bearer   ${token}` } })).toEqual({ status: 200, body: 3306 });
  });

  test('HEAD takes the token like GET; a refusal says where the token goes', async () => {
    const { url, token } = agent;
    expect((await fetch(`${url}/api/mysql-port?token=${token}`, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(`${url}/api/mysql-port?token=wrong`, { method: 'HEAD' })).status).toBe(401);
    const get = await call(`${url}/api/mysql-port`);
    expect((get.body as { Details: { hint: string } }).Details.hint).toMatch(/\?token= or in a header/);
    const post = await call(`${url}/api/mysql-stop?token=${token}`, { method: 'POST' });
    expect((post.body as { Details: { hint: string } }).Details.hint).toMatch(/only in a header \(X-Agent-Token\)/);
  });

  test('a POST takes the token only from a header, never from the query string', async () => {
    const { url, token } = agent;
    expectRefused(await call(`${url}/api/mysql-stop?token=${token}`, { method: 'POST' }), 'POST with ?token=');
    expectRefused(await call(`${url}/api/mysql-stop`, { method: 'POST' }), 'POST without token');
    const viaHeader = await call(`${url}/api/mysql-stop`, { method: 'POST', headers: { 'X-Agent-Token': token } });
    expect([viaHeader.status, viaHeader.body]).toEqual([200, true]);
    const viaBearer = await call(`${url}/api/mysql-stop`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
    expect([viaBearer.status, viaBearer.body]).toEqual([200, true]);
  });

  test('the open routes need no token', async () => {
    expect(await call(`${agent.url}/api/hostname`)).toEqual({ status: 200, body: hostname() });
    expect(await call(`${agent.url}/api/status`)).toEqual({ status: 200, body: 'OK' });
  });
});

describe('the token check, without TokenHttpHeader', () => {
  let agent: Agent;
  beforeAll(async () => {
    agent = await startApp({ TokenHttpHeader: '' });
  });
  afterAll(async () => agent?.close());

  test('a header of any name is not a token; ?token= and the bearer still pass', async () => {
    const { url, token } = agent;
    expectRefused(await call(`${url}/api/mysql-port`, { headers: { 'X-Agent-Token': token } }), 'unconfigured header');
    expect(await call(`${url}/api/mysql-port?token=${token}`)).toEqual({ status: 200, body: 3306 });
    expect(await call(`${url}/api/mysql-port`, { headers: { Authorization: `Bearer ${token}` } })).toEqual({ status: 200, body: 3306 });
    const post = await call(`${url}/api/mysql-stop?token=${token}`, { method: 'POST' });
    expect((post.body as { Details: { hint: string } }).Details.hint).toMatch(/only in a header \(Authorization: Bearer\)/);
  });
});

describe('basic auth in front of the token (HTTPAuthUser)', () => {
  let agent: Agent;
  beforeAll(async () => {
    agent = await startApp({ HTTPAuthUser: 'orc', HTTPAuthPassword: 'pw', TokenHttpHeader: 'X-Agent-Token' });
  });
  afterAll(async () => agent?.close());
  const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

  test('without or with wrong credentials: 401 with a Basic challenge, whatever the token', async () => {
    for (const [what, headers] of [
      ['no credentials', {}],
      ['wrong password', { Authorization: basic('orc', 'nope') }],
      ['wrong user', { Authorization: basic('other', 'pw') }],
    ] as const) {
      const res = await fetch(`${agent.url}/api/mysql-port?token=${agent.token}`, { headers });
      expect([what, res.status]).toEqual([what, 401]);
      expect(res.headers.get('www-authenticate')).toBe('Basic realm="orchestrator-agent"');
      expect(await res.json()).toEqual(expect.objectContaining({ Code: 'ERROR', Message: expect.stringMatching(/basic authentication/) }));
    }
  });

  test('with the credentials the token is still checked; the status endpoint needs only the credentials', async () => {
    const auth = { Authorization: basic('orc', 'pw') };
    expectRefused(await call(`${agent.url}/api/mysql-port`, { headers: auth }), 'credentials without token');
    expect(await call(`${agent.url}/api/mysql-port`, { headers: { ...auth, 'X-Agent-Token': agent.token } })).toEqual({ status: 200, body: 3306 });
    // The status endpoint takes no token, but asks for the credentials too, as the original.
    expect(await call(`${agent.url}/api/status`, { headers: auth })).toEqual({ status: 200, body: 'OK' });
    expect((await call(`${agent.url}/api/status`)).status).toBe(401);
  });
});

describe('client certificate OUs (UseMutualTLS, SSLValidOUs)', () => {
  const pki = makeTestPki(tempDir('oa-token-pki-'), ['orchestrator', 'intruder', 'ops+orchestrator', '']);
  let agent: Agent;
  beforeAll(async () => {
    agent = await startApp({
      UseSSL: true, UseMutualTLS: true, SSLValidOUs: ['orchestrator'], SSLCertFile: pki.server.cert, SSLPrivateKeyFile: pki.server.key, SSLCAFile: pki.caCert,
    });
  });
  afterAll(async () => agent?.close());
  async function get(path: string, client: CertFiles) {
    const tls = new HttpsAgent({ ca: pki.read(pki.caCert), cert: pki.read(client.cert), key: pki.read(client.key), keepAlive: false });
    const res = await nodeFetch(`${agent.url}${path}`, { agent: tls });
    return { status: res.status, body: (await res.json()) as unknown };
  }

  test('a listed OU is served (the token still checked); another OU gets 403 naming it, except on the status endpoint', async () => {
    expect(await get(`/api/mysql-port?token=${agent.token}`, pki.clients.orchestrator!)).toEqual({ status: 200, body: 3306 });
    expect((await get('/api/mysql-port', pki.clients.orchestrator!)).status).toBe(401);
    const refused = await get(`/api/mysql-port?token=${agent.token}`, pki.clients.intruder!);
    expect(refused.status).toBe(403);
    expect((refused.body as { Message: string }).Message).toBe('client certificate OU ["intruder"] is not in SSLValidOUs');
    expect(await get('/api/status', pki.clients.intruder!)).toEqual({ status: 200, body: 'OK' });
  });

  test('one listed OU among several is enough; a certificate without an OU is refused', async () => {
    expect(await get(`/api/mysql-port?token=${agent.token}`, pki.clients['ops+orchestrator']!)).toEqual({ status: 200, body: 3306 });
    const none = await get(`/api/mysql-port?token=${agent.token}`, pki.clients['']!);
    expect([none.status, (none.body as { Message: string }).Message]).toEqual([403, 'client certificate OU [] is not in SSLValidOUs']);
  });

  test('with SSLValidOUs empty, any certificate the CA signed is served', async () => {
    const open = await startApp({
      UseSSL: true, UseMutualTLS: true, SSLValidOUs: [], SSLCertFile: pki.server.cert, SSLPrivateKeyFile: pki.server.key, SSLCAFile: pki.caCert,
    });
    try {
      for (const client of [pki.clients.intruder!, pki.clients['']!]) {
        const tls = new HttpsAgent({ ca: pki.read(pki.caCert), cert: pki.read(client.cert), key: pki.read(client.key), keepAlive: false });
        const res = await nodeFetch(`${open.url}/api/mysql-port?token=${open.token}`, { agent: tls });
        expect([res.status, await res.json()]).toEqual([200, 3306]);
      }
    } finally {
      await open.close();
    }
  });
});
