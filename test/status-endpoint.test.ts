import { afterAll, describe, expect, test } from '@jest/globals';
import type { Server } from 'node:http';
import { rmSync } from 'node:fs';
import { defaultConfig, type Config } from '../src/config.js';
import { createApp } from '../src/http/app.js';
import { createServer, listen } from '../src/http/server.js';
import type { AgentServices } from '../src/services.js';
import { startAgentProcess, tempDir, writeConfig, type AgentProcess } from './support/agent-process.js';
import { FakeOrchestrator, waitFor } from './support/fake-orchestrator.js';

// GET /api/status as the original answers it: 500 "BAD" until the first successful contact with
// orchestrator, then 200 "OK" while the last contact is within StatusBadSeconds.

const servers: Server[] = [];
const agents: AgentProcess[] = [];
const orchestrators: FakeOrchestrator[] = [];
const dirs: string[] = [];
afterAll(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  for (const a of agents) await a.stop();
  for (const o of orchestrators) await o.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** An API whose last contact with orchestrator is whatever `lastContact` holds when asked. */
async function apiWithContact(lastContact: { at?: number }): Promise<string> {
  const dir = tempDir('oa-status-');
  dirs.push(dir);
  const config: Config = { ...defaultConfig(), StateDir: dir, StatusBadSeconds: 60 };
  const services = { config, token: 't'.repeat(64), startedAt: Date.now(), contact: { lastContactAt: () => lastContact.at } } as AgentServices;
  const server = createServer(createApp(services), config);
  servers.push(server);
  return `http://127.0.0.1:${await listen(server, 0, '127.0.0.1')}`;
}

async function status(baseUrl: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${baseUrl}/api/status`);
  return { status: res.status, body: await res.json() };
}

describe('status endpoint', () => {
  test('BAD right after start when orchestrator was never reached, OK after a contact, BAD once it is older than StatusBadSeconds', async () => {
    const contact: { at?: number } = {};
    const url = await apiWithContact(contact);
    expect(await status(url)).toEqual({ status: 500, body: 'BAD' });
    contact.at = Date.now() - 59_000;
    expect(await status(url)).toEqual({ status: 200, body: 'OK' });
    contact.at = Date.now() - 61_000;
    expect(await status(url)).toEqual({ status: 500, body: 'BAD' });
  });

  test('a real agent turns OK once it has registered with orchestrator', async () => {
    const o = await new FakeOrchestrator().start();
    orchestrators.push(o);
    // Orchestrator answers 500 at first: submitted but never successfully reached.
    o.mode = 'fail';
    const dir = tempDir('oa-status-agent-');
    dirs.push(dir);
    const agent = await startAgentProcess(writeConfig(dir, { ...o.agentConfig(), StatusBadSeconds: 3600 }));
    agents.push(agent);
    await waitFor('a failed submit', () => o.submits()[0]);
    expect(await status(agent.baseUrl)).toEqual({ status: 500, body: 'BAD' });
    o.mode = 'ok';
    await waitFor('status OK', async () => (await status(agent.baseUrl)).status === 200);
    expect(await status(agent.baseUrl)).toEqual({ status: 200, body: 'OK' });
  });
});
