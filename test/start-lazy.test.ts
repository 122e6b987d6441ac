// The daemon starts on what answering needs; execa, prom-client, node-fetch and the built-in transfer (with
// its native checksum addon) load when first used. Checked on a real agent process by recording every module it loads.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startAgentProcess, tempDir, writeConfig, type AgentProcess } from './support/agent-process.js';

const recorder = resolve(new URL('.', import.meta.url).pathname, 'support/load-recorder.js');

describe('what the agent loads at start', () => {
  let agent: AgentProcess;
  let record: string;
  let token: string;
  const loaded = () => (existsSync(record) ? readFileSync(record, 'utf8').split('\n').filter(Boolean) : []);
  const has = (part: string) => loaded().some((url) => url.includes(part));

  beforeAll(async () => {
    const dir = tempDir();
    record = join(dir, 'loaded.txt');
    agent = await startAgentProcess(writeConfig(dir, { MySQLPortCommand: 'echo 3306', TokenHintFile: join(dir, 'token') }), {
      NODE_OPTIONS: `--import=${recorder}`,
      LOAD_RECORD_FILE: record,
    });
    token = readFileSync(join(dir, 'token'), 'utf8').trim();
  });
  afterAll(async () => agent?.stop());

  test('a started agent has answered without loading execa, prom-client or the built-in transfer', async () => {
    const res = await fetch(`${agent.baseUrl}/api/hostname`);
    expect(res.status).toBe(200);
    expect(has('/dist/src/agent.js')).toBe(true); // the recorder works
    expect(has('/node_modules/execa/')).toBe(false);
    expect(has('/node_modules/prom-client/')).toBe(false);
    expect(has('/dist/src/transfer/receiver.js')).toBe(false);
    expect(has('/dist/src/transfer/sender.js')).toBe(false);
    expect(has('@node-rs/xxhash')).toBe(false);
    expect(has('@viz-js/viz')).toBe(false); // diagrams are rendered by npm run diagrams, never by the daemon
  });

  test('the first scrape loads prom-client and the first command loads execa', async () => {
    const metrics = await fetch(`${agent.baseUrl}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('# TYPE orchestrator_agent_seeds gauge');
    expect(has('/node_modules/prom-client/')).toBe(true);

    const port = await fetch(`${agent.baseUrl}/api/mysql-port?token=${token}`);
    expect(port.status).toBe(200);
    expect(await port.json()).toBe(3306);
    expect(has('/node_modules/execa/')).toBe(true);
  });
});
