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

  test('status endpoint answers "OK" while within StatusBadSeconds', async () => {
    const res = await fetch(`${agent.baseUrl}/api/status`);
    expect(res.status).toBe(200);
    expect(await res.json()).toBe('OK');
  });

  test('a route that exists refuses a missing or wrong token with 401 and the original error shape', async () => {
    for (const [what, init, url] of [
      ['no token', {}, '/api/registration'],
      ['wrong ?token=', {}, '/api/registration?token=wrong'],
      ['wrong TokenHttpHeader', { headers: { 'X-Agent-Token': 'wrong' } }, '/api/registration'],
      ['?token= on a POST', { method: 'POST' }, `/api/mysql-stop?token=${token}`],
    ] as const) {
      const res = await fetch(`${agent.baseUrl}${url}`, init);
      expect([what, res.status]).toEqual([what, 401]);
      const body = (await res.json()) as { Code: string; Message: string };
      expect(body.Code).toBe('ERROR');
      expect(body.Message).toMatch(/token/i);
    }
  });

  test('the token is accepted from ?token= and from TokenHttpHeader on a route that exists', async () => {
    const viaQuery = await fetch(`${agent.baseUrl}/api/registration?token=${token}`);
    expect(viaQuery.status).toBe(200);
    expect(await viaQuery.json()).toHaveProperty('state');
    const viaHeader = await fetch(`${agent.baseUrl}/api/registration`, { headers: { 'X-Agent-Token': token } });
    expect(viaHeader.status).toBe(200);
    const unknown = await fetch(`${agent.baseUrl}/api/nothing-here?token=${token}`);
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { Message: string }).Message).toContain('no route GET /api/nothing-here');
  });
});
