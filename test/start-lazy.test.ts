// The daemon starts on what answering needs; execa, prom-client, node-fetch, the built-in transfer (with
// its native checksum addon) and, with no seed in StateDir, the seed charts and their steps load when first used. Checked on a real agent process by recording every module it loads.
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

  test('a started agent has answered without loading execa, prom-client, the built-in transfer or the seed charts', async () => {
    const res = await fetch(`${agent.baseUrl}/api/hostname`);
    expect(res.status).toBe(200);
    expect(has('/dist/src/agent.js')).toBe(true); // the recorder works
    expect(has('/node_modules/execa/')).toBe(false);
    expect(has('/node_modules/prom-client/')).toBe(false);
    expect(has('/dist/src/transfer/receiver.js')).toBe(false);
    expect(has('/dist/src/transfer/sender.js')).toBe(false);
    expect(has('@node-rs/xxhash')).toBe(false);
    expect(has('@viz-js/viz')).toBe(false); // diagrams are rendered by npm run diagrams, never by the daemon
    expect(has('/dist/src/seeds/seed-methods.js')).toBe(false);
    expect(has('/dist/machines/seed-')).toBe(false);
    expect(has('/dist/src/seeds/steps/')).toBe(false);
    expect(has('/dist/src/host/lvm.js')).toBe(false); // the snapshot backend loads with the first snapshot call
    expect(has('/dist/src/host/btrfs.js')).toBe(false);
    expect(has('/dist/src/seed-cli.js')).toBe(false); // only `orchestrator-agent seed` needs it
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

  test('the first snapshot call loads the snapshot backend', async () => {
    const res = await fetch(`${agent.baseUrl}/api/lvs?token=${token}`);
    expect(has('/dist/src/host/lvm.js')).toBe(true);
    expect(res.status).not.toBe(404);
  });

  test('the first seed request loads the seed charts and their steps', async () => {
    expect(has('/dist/machines/seed-target.js')).toBe(false);
    // A bad role is refused only after the charts are loaded (a valid one would start a seed on this host).
    const res = await fetch(`${agent.baseUrl}/api/seeds`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ id: 'lazy', role: 'neither' }),
    });
    expect(res.status).toBe(400);
    expect(has('/dist/src/seeds/seed-methods.js')).toBe(true);
    expect(has('/dist/machines/seed-target.js')).toBe(true);
    expect(has('/dist/src/seeds/steps/mysql-steps.js')).toBe(true);
  });
});
