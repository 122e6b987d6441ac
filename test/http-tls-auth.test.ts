import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { readFileSync, rmSync } from 'node:fs';
import { Agent as HttpsAgent } from 'node:https';
import fetch from 'node-fetch';
import type { RegistrationStatus } from '../src/registration.js';
import { startAgentProcess, tempDir, writeConfig, type AgentProcess } from './support/agent-process.js';
import { FakeOrchestrator, waitFor } from './support/fake-orchestrator.js';
import { makeTestPki, type CertFiles, type TestPki } from './support/tls-certs.js';

let pki: TestPki;
const agents: AgentProcess[] = [];
const orchestrators: FakeOrchestrator[] = [];
const dirs: string[] = [];
function dirForTest(): string {
  const dir = tempDir('oa-reg-');
  dirs.push(dir);
  return dir;
}

beforeAll(() => {
  pki = makeTestPki(tempDir('oa-pki-'), ['orchestrator', 'intruder']);
});
afterAll(async () => {
  for (const a of agents) await a.stop();
  for (const o of orchestrators) await o.close();
  rmSync(pki.dir, { recursive: true, force: true });
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function orchestrator(tls?: { cert: CertFiles; requestCert?: boolean }): Promise<FakeOrchestrator> {
  const o = new FakeOrchestrator(
    tls ? { tls: { cert: pki.read(tls.cert.cert), key: pki.read(tls.cert.key), ca: pki.read(pki.caCert), requestCert: tls.requestCert } } : {},
  );
  orchestrators.push(o);
  return o.start();
}

async function agentWith(config: Record<string, unknown>): Promise<AgentProcess> {
  const a = await startAgentProcess(writeConfig(dirForTest(), config));
  agents.push(a);
  return a;
}

/** GET over HTTPS trusting the test CA, optionally presenting a client certificate. */
async function httpsGet(port: number, path: string, client?: CertFiles): Promise<{ status: number; body: unknown }> {
  const agent = new HttpsAgent({
    ca: pki.read(pki.caCert),
    ...(client ? { cert: pki.read(client.cert), key: pki.read(client.key) } : {}),
    keepAlive: false,
  });
  const res = await fetch(`https://127.0.0.1:${port}${path}`, { agent, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as unknown };
}

const sslKeys = () => ({ UseSSL: true, SSLCertFile: pki.server.cert, SSLPrivateKeyFile: pki.server.key, SSLCAFile: pki.caCert });

describe('agent API over TLS', () => {
  test('with UseSSL the agent serves HTTPS and refuses plain HTTP', async () => {
    const o = await orchestrator();
    const agent = await agentWith({ ...o.agentConfig(), ...sslKeys() });
    const submit = await waitFor('submit-agent', () => o.submits()[0]);
    const reg = await httpsGet(agent.port, `/api/registration?token=${submit.token}`);
    expect(reg.status).toBe(200);
    expect((reg.body as RegistrationStatus).httpPort).toBe(agent.port);
    // BAD until the agent's first successful contact with orchestrator, OK from then on.
    await waitFor('status OK', async () => (await httpsGet(agent.port, '/api/status')).status === 200);
    expect(await httpsGet(agent.port, '/api/status')).toEqual({ status: 200, body: 'OK' });
    await expect(fetch(`http://127.0.0.1:${agent.port}/api/status`, { signal: AbortSignal.timeout(10_000) })).rejects.toThrow(
      /socket hang up|ECONNRESET|Parse Error/,
    );
  });

  describe('with UseMutualTLS and SSLValidOUs ["orchestrator"]', () => {
    let agent: AgentProcess;
    let token: string;
    let o: FakeOrchestrator;
    beforeAll(async () => {
      // The fake orchestrator asks for the agent's client certificate, to see which one the agent presents.
      o = await orchestrator({ cert: pki.server, requestCert: true });
      agent = await agentWith({ ...o.agentConfig(), ...sslKeys(), UseMutualTLS: true, SSLValidOUs: ['orchestrator'] });
      token = (await waitFor('submit-agent', () => o.submits()[0])).token!;
    });

    test('a client without a certificate cannot connect', async () => {
      // TLS 1.3: the server's refusal arrives as an alert after the client's handshake ends.
      await expect(httpsGet(agent.port, `/api/registration?token=${token}`)).rejects.toThrow(/certificate required|socket hang up|ECONNRESET/);
      await expect(httpsGet(agent.port, '/api/status')).rejects.toThrow(/certificate required|socket hang up|ECONNRESET/);
    });

    test('a client whose certificate OU is listed is served', async () => {
      const reply = await httpsGet(agent.port, `/api/registration?token=${token}`, pki.clients.orchestrator);
      expect(reply.status).toBe(200);
      expect((reply.body as RegistrationStatus).registered).toBe(true);
    });

    test('a client whose certificate OU is not listed gets 403 naming its OU', async () => {
      const reply = await httpsGet(agent.port, `/api/registration?token=${token}`, pki.clients.intruder);
      expect(reply.status).toBe(403);
      expect((reply.body as { Message: string }).Message).toContain('intruder');
    });

    test('the status endpoint answers any valid client certificate when StatusOUVerify is false', async () => {
      await waitFor('status OK', async () => (await httpsGet(agent.port, '/api/status', pki.clients.intruder)).status === 200);
      expect(await httpsGet(agent.port, '/api/status', pki.clients.intruder)).toEqual({ status: 200, body: 'OK' });
    });

    test('the agent presents its own certificate to orchestrator', async () => {
      expect(o.submits()[0].clientOU).toEqual(['agents']);
    });
  });

  test('with StatusOUVerify the status endpoint also checks the OU', async () => {
    const o = await orchestrator();
    const agent = await agentWith({
      ...o.agentConfig(), ...sslKeys(), UseMutualTLS: true, SSLValidOUs: ['orchestrator'], StatusOUVerify: true,
    });
    expect((await httpsGet(agent.port, '/api/status', pki.clients.intruder)).status).toBe(403);
    await waitFor('status OK', async () => (await httpsGet(agent.port, '/api/status', pki.clients.orchestrator)).status === 200);
    expect(await httpsGet(agent.port, '/api/status', pki.clients.orchestrator)).toEqual({ status: 200, body: 'OK' });
  });
});

describe('registration with an HTTPS orchestrator', () => {
  async function statusOf(agent: AgentProcess, token: string): Promise<RegistrationStatus> {
    const res = await fetch(`${agent.baseUrl}/api/registration?token=${token}`);
    return (await res.json()) as RegistrationStatus;
  }

  test('an untrusted certificate is accepted with SSLSkipVerify true', async () => {
    const o = await orchestrator({ cert: pki.untrusted });
    const agent = await agentWith({ ...o.agentConfig(), SSLSkipVerify: true });
    const submit = await waitFor('submit-agent over HTTPS', () => o.submits()[0]);
    expect(submit.port).toBe(agent.port);
    await waitFor('registered', async () => (await statusOf(agent, submit.token!)).registered);
  });

  test('an untrusted certificate fails registration with SSLSkipVerify false, saying why and what to do', async () => {
    const o = await orchestrator({ cert: pki.untrusted });
    const dir = dirForTest();
    const agent = await startAgentProcess(writeConfig(dir, { ...o.agentConfig(), SSLSkipVerify: false, TokenHintFile: `${dir}/token` }));
    agents.push(agent);
    const token = readFileSync(`${dir}/token`, 'utf8');
    const status = await waitFor('a failed submit', async () => {
      const s = await statusOf(agent, token);
      return s.lastError ? s : undefined;
    });
    expect(status.registered).toBe(false);
    expect(status.lastError).toContain(`https://127.0.0.1:${o.port}/api/submit-agent/`);
    expect(status.lastError).toMatch(/self[- ]signed/i);
    expect(status.lastError).toContain('SSLCAFile');
    expect(status.lastError).not.toContain(token);
    expect(o.submits()).toHaveLength(0); // the TLS handshake failed before any request
  });

  test('a certificate from the CA in SSLCAFile is trusted without SSLSkipVerify', async () => {
    const o = await orchestrator({ cert: pki.server });
    const agent = await agentWith({ ...o.agentConfig(), SSLCAFile: pki.caCert });
    const submit = await waitFor('submit-agent over HTTPS', () => o.submits()[0]);
    expect(submit.port).toBe(agent.port);
  });
});

describe('basic auth (HTTPAuthUser / HTTPAuthPassword)', () => {
  let agent: AgentProcess;
  let token: string;
  beforeAll(async () => {
    const o = await orchestrator();
    agent = await agentWith({ ...o.agentConfig(), HTTPAuthUser: 'orc', HTTPAuthPassword: 's3cret' });
    token = (await waitFor('submit-agent', () => o.submits()[0])).token!;
  });
  const basic = (user: string, pass: string) => ({ Authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}` });

  test('a request without credentials or with a wrong password gets 401 with a Basic challenge', async () => {
    const none = await fetch(`${agent.baseUrl}/api/registration?token=${token}`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Basic /);
    const wrong = await fetch(`${agent.baseUrl}/api/registration?token=${token}`, { headers: basic('orc', 'nope') });
    expect(wrong.status).toBe(401);
  });

  test('a request with the credentials (and the token) is served', async () => {
    const res = await fetch(`${agent.baseUrl}/api/registration?token=${token}`, { headers: basic('orc', 's3cret') });
    expect(res.status).toBe(200);
    expect(((await res.json()) as RegistrationStatus).hostname).not.toBeNull();
  });

  test('the status endpoint asks for the credentials too, as the original', async () => {
    await waitFor('status OK', async () => (await fetch(`${agent.baseUrl}/api/status`, { headers: basic('orc', 's3cret') })).status === 200);
    const none = await fetch(`${agent.baseUrl}/api/status`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Basic /);
    const res = await fetch(`${agent.baseUrl}/api/status`, { headers: basic('orc', 's3cret') });
    expect(res.status).toBe(200);
    expect(await res.json()).toBe('OK');
  });

  test('StatusEndpointWithoutBasicAuth opens the status endpoint alone to a load balancer', async () => {
    const o = await orchestrator();
    const open = await agentWith({ ...o.agentConfig(), HTTPAuthUser: 'orc', HTTPAuthPassword: 's3cret', StatusEndpointWithoutBasicAuth: true });
    // BAD (500, not 401) until the first contact with orchestrator, then OK.
    await waitFor('status OK', async () => (await fetch(`${open.baseUrl}/api/status`)).status === 200);
    const res = await fetch(`${open.baseUrl}/api/status`);
    expect(res.status).toBe(200);
    expect(await res.json()).toBe('OK');
    expect((await fetch(`${open.baseUrl}/api/hostname`)).status).toBe(401);
  });
});
