import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import { rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { runAgentExpectingExit, startAgentProcess, tempDir, writeConfig, type AgentProcess } from './support/agent-process.js';
import { FakeOrchestrator, waitFor } from './support/fake-orchestrator.js';
import type { RegistrationStatus } from '../src/registration.js';

// Every temp dir this file makes (agent configs and state), removed at the end.
const dirs: string[] = [];
function dirForTest(): string {
  const dir = tempDir('oa-reg-');
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function registrationStatus(agent: AgentProcess, token: string): Promise<RegistrationStatus> {
  const res = await fetch(`${agent.baseUrl}/api/registration?token=${token}`);
  expect(res.status).toBe(200);
  return (await res.json()) as RegistrationStatus;
}

async function statusEndpoint(agent: AgentProcess): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${agent.baseUrl}/api/status`);
  return { status: res.status, body: await res.json() };
}

describe('agent process registers with a fake orchestrator', () => {
  const orchestrator = new FakeOrchestrator();
  let agent: AgentProcess;
  beforeAll(async () => {
    await orchestrator.start();
    agent = await startAgentProcess(writeConfig(dirForTest(), { ...orchestrator.agentConfig(), ContinuousPollSeconds: 1 }));
  });
  afterEach(() => void (orchestrator.mode = 'ok'));
  afterAll(async () => {
    await agent?.stop();
    await orchestrator.close();
  });

  test('submits on start with its hostname, the port it listens on and a token it then accepts', async () => {
    const submit = await waitFor('submit-agent', () => orchestrator.submits()[0]);
    expect(submit.host).toBe(hostname());
    expect(submit.port).toBe(agent.port);
    expect(submit.token).toMatch(/^[0-9a-f]{64}$/);
    const status = await registrationStatus(agent, submit.token!);
    expect(status.hostname).toBe(hostname());
    expect(status.httpPort).toBe(agent.port);
    const refused = await fetch(`${agent.baseUrl}/api/registration?token=not-${submit.token}`);
    expect(refused.status).toBe(401);
  });

  test('pings every ContinuousPollSeconds and reports the contact in its registration status', async () => {
    await waitFor('two pings', () => orchestrator.pings().length >= 2);
    const token = orchestrator.submits()[0].token!;
    const status = await registrationStatus(agent, token);
    expect(status.state).toMatch(/^registered\./);
    expect(status.registered).toBe(true);
    expect(status.lastContactAt).not.toBeNull();
    expect(Date.parse(status.nextPingAt!)).toBeGreaterThan(Date.parse(status.lastContactAt!));
    expect(status.nextAttemptAt).not.toBeNull();
    expect((await statusEndpoint(agent)).body).toBe('OK');
  });

  test('backs off while orchestrator answers 500 and registers again once it answers', async () => {
    const token = orchestrator.submits()[0].token!;
    orchestrator.mode = 'fail';
    const failing = await waitFor('backoff after failures', async () => {
      const s = await registrationStatus(agent, token);
      return s.state === 'backoff' && s.failures >= 2 ? s : undefined;
    });
    expect(failing.lastError).toContain('HTTP 500');
    expect(failing.registered).toBe(false);
    expect(failing.nextRetryAt).not.toBeNull();
    const submitsBefore = orchestrator.submits().length;
    orchestrator.mode = 'ok';
    await waitFor('a new submit-agent', () => orchestrator.submits().length > submitsBefore);
    const recovered = await waitFor('registered again', async () => {
      const s = await registrationStatus(agent, token);
      return s.registered ? s : undefined;
    });
    expect(recovered.failures).toBe(0);
    expect(Date.parse(recovered.lastContactAt!)).toBeGreaterThan(Date.parse(failing.lastFailureAt!));
    expect(orchestrator.submits().at(-1)!.token).toBe(token);
  });
});

describe('status endpoint follows contact with orchestrator', () => {
  const orchestrator = new FakeOrchestrator();
  let agent: AgentProcess;
  beforeAll(async () => {
    // Reserve a port, then close it: the agent starts against a dead orchestrator.
    await orchestrator.start();
    await orchestrator.close();
    agent = await startAgentProcess(
      writeConfig(dirForTest(), { ...orchestrator.agentConfig(), ContinuousPollSeconds: 1, StatusBadSeconds: 1 }),
    );
  });
  afterAll(async () => {
    await agent?.stop();
    await orchestrator.close();
  });

  test('answers 500 "BAD" after StatusBadSeconds without contact and 200 "OK" once orchestrator is back', async () => {
    const bad = await waitFor('BAD', async () => {
      const s = await statusEndpoint(agent);
      return s.status === 500 ? s : undefined;
    });
    expect(bad.body).toBe('BAD');
    await orchestrator.start(); // same port
    const ok = await waitFor('OK', async () => {
      const s = await statusEndpoint(agent);
      return s.status === 200 ? s : undefined;
    });
    expect(ok.body).toBe('OK');
    expect(orchestrator.submits()[0].port).toBe(agent.port);
  });
});

describe('registration settings checked at start', () => {
  test('an unreadable SSLCAFile stops the agent at start with a message naming the key and the file', async () => {
    const dir = dirForTest();
    const missing = `${dir}/no-such-ca.pem`;
    const { code, output } = await runAgentExpectingExit(['--config', writeConfig(dir, { SSLCAFile: missing })]);
    expect(code).not.toBe(0);
    expect(output).toContain(`cannot read SSLCAFile ${missing} for calls to orchestrator`);
  });
});
