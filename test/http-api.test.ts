import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { hostname } from 'node:os';
import { startAgentProcess, tempDir, writeConfig, type AgentProcess } from './support/agent-process.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from './support/fake-orchestrator.js';
import { RefusedSeedIds } from '../src/routes/seed-routes.js';

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

  test('every refused state-changing request is logged at WARN with method, route, reason and hint, never the token', async () => {
    const wrongToken = await fetch(`${agent.baseUrl}/api/mysql-stop`, { method: 'POST', headers: { Authorization: 'Bearer not-the-token' } });
    expect(wrongToken.status).toBe(401);
    const line = (text: string) => waitFor(text, () => agent.output().split('\n').find((l) => l.includes(text)));
    expect(await line('refused POST /api/mysql-stop')).toMatch(
      /WARN refused POST \/api\/mysql-stop: Invalid token .*"route":"\/api\/mysql-stop".*"status":401,"hint":"POST routes take the token only in a header/,
    );

    // Orchestrator's GET with ?token=: refused because SeedTransferSecret is unset.
    const noSecret = await fetch(`${agent.baseUrl}/api/receive-mysql-seed-data/seed-42?token=${token}`);
    expect(noSecret.status).toBe(400);
    expect(await line('refused GET /api/receive-mysql-seed-data/seed-42')).toMatch(
      /WARN .*need SeedTransferSecret, which is not configured .*"route":"\/api\/receive-mysql-seed-data\/:seedId".*"hint":"configure SeedTransferSecret/,
    );

    // A body that is not JSON and holds the token: refused, and the token is not repeated.
    const badBody = await fetch(`${agent.baseUrl}/api/seeds`, {
      method: 'POST',
      headers: { 'X-Agent-Token': token },
      body: `{"id":"x","authKey":"${token}"`,
    });
    expect(badBody.status).toBe(400);
    expect(JSON.stringify(await badBody.json())).not.toContain(token);
    expect(await line('refused POST /api/seeds')).toContain('request body is not JSON');

    // A read route refused is not a state change: not at WARN.
    expect((await fetch(`${agent.baseUrl}/api/mysql-port?token=wrong`)).status).toBe(401);
    // The log is in order: once a later refusal is there, a line for the read would be there too.
    await fetch(`${agent.baseUrl}/api/mysql-start`, { method: 'POST' });
    await line('refused POST /api/mysql-start');
    expect(agent.output()).not.toMatch(/WARN refused GET \/api\/mysql-port/);
    expect(agent.output()).not.toContain(token);
  });

  test('a seed id the original seed routes refused is completed and not succeeded, so orchestrator fails it at its next poll', async () => {
    const get = async (path: string) => {
      const res = await fetch(`${agent.baseUrl}${path}?token=${token}`);
      return [res.status, await res.json()];
    };
    // No SeedTransferSecret and no transfer commands: both original routes refuse.
    expect(await get('/api/receive-mysql-seed-data/refused-1')).toEqual([400, expect.objectContaining({ Code: 'ERROR' })]);
    expect(await get('/api/send-mysql-seed-data/db-target-1/refused-2')).toEqual([400, expect.objectContaining({ Code: 'ERROR' })]);
    for (const id of ['refused-1', 'refused-2']) {
      expect(await get(`/api/seed-command-completed/${id}`)).toEqual([200, true]);
      expect(await get(`/api/seed-command-succeeded/${id}`)).toEqual([200, false]);
    }
    // An id never asked for is not completed, as before.
    expect(await get('/api/seed-command-completed/never-asked')).toEqual([200, false]);
    expect(await get('/api/seed-command-succeeded/never-asked')).toEqual([200, false]);
  });
});

test('refused seed ids are remembered up to a limit, the oldest forgotten first', () => {
  const refused = new RefusedSeedIds(2);
  refused.add('a');
  refused.add('b');
  refused.add('a'); // asked again: now the newest
  refused.add('c');
  expect(['a', 'b', 'c'].map((id) => refused.has(id))).toEqual([true, false, true]);
  refused.delete('a');
  expect(refused.has('a')).toBe(false);
});
