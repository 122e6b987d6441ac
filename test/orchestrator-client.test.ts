import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import { createServer, type Server, type Socket } from 'node:net';
import { defaultConfig, type Config } from '../src/config.js';
import { AgentError } from '../src/errors.js';
import { OrchestratorClient, orchestratorClientOptions } from '../src/orchestrator-client.js';
import { FakeOrchestrator } from './support/fake-orchestrator.js';

function clientFor(overrides: Partial<Config>): OrchestratorClient {
  return new OrchestratorClient(orchestratorClientOptions({ ...defaultConfig(), ...overrides }));
}

describe('orchestrator client against a fake orchestrator', () => {
  const orchestrator = new FakeOrchestrator();
  beforeAll(async () => void (await orchestrator.start()));
  afterEach(() => void (orchestrator.mode = 'ok'));
  afterAll(async () => orchestrator.close());

  test('submit-agent and agent-ping use the original URLs: AgentsServer + AgentsServerPort + path', async () => {
    const client = clientFor(orchestrator.agentConfig());
    expect(client.submitAgentUrl('db1.example.com', 3002, 'tok')).toBe(
      `http://127.0.0.1:${orchestrator.port}/api/submit-agent/db1.example.com/3002/tok`,
    );
    expect(client.pingUrl()).toBe(`http://127.0.0.1:${orchestrator.port}/api/agent-ping`);
    await expect(client.submitAgent('db1.example.com', 3002, 'tok')).resolves.toBe('db1.example.com');
    await client.ping();
    expect(orchestrator.calls.slice(-2).map((c) => c.path)).toEqual(['/api/submit-agent/db1.example.com/3002/tok', '/api/agent-ping']);
    expect(orchestrator.submits().at(-1)).toMatchObject({ host: 'db1.example.com', port: 3002, token: 'tok' });
  });

  test('a non-2xx answer is an error naming the URL and the status, without the token', async () => {
    orchestrator.mode = 'fail';
    const client = clientFor(orchestrator.agentConfig());
    const err = await client.submitAgent('h', 1, 'secret-token-123').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgentError);
    const message = (err as AgentError).message;
    expect(message).toContain(`http://127.0.0.1:${orchestrator.port}/api/submit-agent/h/1/<token>`);
    expect(message).toContain('HTTP 500');
    expect(message).not.toContain('secret-token-123');
    await expect(client.ping()).rejects.toThrow(/agent-ping answered HTTP 500/);
  });

  test('orchestrator\'s HTTP 200 {"Code":"ERROR"} answer to submit-agent is an error carrying its message', async () => {
    orchestrator.mode = 'apiError';
    const client = clientFor(orchestrator.agentConfig());
    await expect(client.submitAgent('h', 1, 't')).rejects.toThrow(/answered an error: Error 1045: Access denied/);
  });

  test('connection refused is an error naming the URL and the reason', async () => {
    const closed = await new FakeOrchestrator().start();
    await closed.close();
    const client = clientFor(closed.agentConfig());
    await expect(client.ping()).rejects.toThrow(new RegExp(`GET http://127.0.0.1:${closed.port}/api/agent-ping failed: .*ECONNREFUSED`));
  });
});

describe('orchestrator client timeouts', () => {
  let silent: Server;
  const sockets: Socket[] = [];
  let port = 0;
  beforeAll(async () => {
    // Accepts connections and never answers: orchestrator hung on its backend.
    silent = createServer((s) => void sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    port = (silent.address() as { port: number }).port;
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => silent.close(() => r()));
  });

  test('a silent orchestrator fails the call after HttpTimeoutSeconds', async () => {
    const client = clientFor({ AgentsServer: 'http://127.0.0.1', AgentsServerPort: `:${port}`, HttpTimeoutSeconds: 1 });
    await expect(client.ping()).rejects.toThrow(/agent-ping timed out after 1s/);
  });

  test('a cancelled call ends at once with an aborted error', async () => {
    const client = clientFor({ AgentsServer: 'http://127.0.0.1', AgentsServerPort: `:${port}`, HttpTimeoutSeconds: 600 });
    const cancel = new AbortController();
    const call = client.ping(cancel.signal).catch((e: unknown) => e);
    cancel.abort();
    const err = (await call) as AgentError;
    expect(err.code).toBe('aborted');
  });
});
