import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { hostname } from 'node:os';
import { startAgentProcess, tempDir, writeConfig, type AgentProcess } from './support/agent-process.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

describe('HTTP API basics on a real agent process', () => {
  let agent: AgentProcess;
  let token: string;
  beforeAll(async () => {
    const dir = tempDir();
    agent = await startAgentProcess(
      writeConfig(dir, { TokenHintFile: join(dir, 'token'), TokenHttpHeader: 'X-Agent-Token', StatusBadSeconds: 3600 }),
    );
    token = readFileSync(join(dir, 'token'), 'utf8');
  });
  afterAll(async () => agent?.stop());

  test('hostname needs no token and is a JSON string', async () => {
    const res = await fetch(`${agent.baseUrl}/api/hostname`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/application\/json/);
    expect(await res.json()).toBe(hostname());
  });

  test('status endpoint answers 500 "BAD" while orchestrator was never reached, even within StatusBadSeconds of start', async () => {
    const res = await fetch(`${agent.baseUrl}/api/status`);
    expect(res.status).toBe(500);
    expect(await res.json()).toBe('BAD');
  });

  test('a token-protected route refuses a missing or wrong token with the original error shape', async () => {
    for (const url of ['/api/does-not-matter-but-token-first', '/api/mysql-port?token=wrong']) {
      const res = await fetch(`${agent.baseUrl}${url}`);
      expect(res.status).toBeGreaterThanOrEqual(400);
      const body = (await res.json()) as { Code: string; Message: string };
      expect(body.Code).toBe('ERROR');
      expect(typeof body.Message).toBe('string');
    }
  });

  test('the token is accepted from ?token= and from TokenHttpHeader', async () => {
    // /api/nothing is a 404 after the token check; a wrong token would be 401 first on known routes.
    const viaHeader = await fetch(`${agent.baseUrl}/api/registration`, { headers: { 'X-Agent-Token': token } });
    expect(viaHeader.status).toBe(200);
    const unknown = await fetch(`${agent.baseUrl}/api/nothing-here?token=${token}`);
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { Message: string }).Message).toContain('no route GET /api/nothing-here');
  });
});
