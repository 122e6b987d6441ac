// API bursts: concurrent identical reports share one run of the configured command; nothing is reused once
// a run has ended, and a destructive route always reads the state itself.
import { afterAll, describe, expect, test } from '@jest/globals';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './support/agent-process.js';
import { startSeedAgent, type SeedAgent } from './support/seed-api.js';
import { ConfiguredMySQLService } from '../src/host/mysql-service.js';
import { sharedReads } from '../src/single-flight.js';
import { defaultConfig } from '../src/config.js';

const dir = tempDir('oa-single-flight-');
const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : []);

async function until(what: string, pred: () => boolean): Promise<void> {
  for (let i = 0; i < 1500; i++) {
    if (pred()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

afterAll(() => rmSync(dir, { recursive: true, force: true }));

test('100 concurrent callers of the port read share one MySQLPortCommand run; the next call after it runs again', async () => {
  const runs = join(dir, 'port-runs');
  // Each run prints 3300 + its number, so a reused answer would show.
  const mysql = new ConfiguredMySQLService({ ...defaultConfig(), MySQLPortCommand: `echo run >> ${runs}; sleep 0.2; echo $((3300 + $(wc -l < ${runs})))` });
  const reads = sharedReads(mysql);
  const answers = await Promise.all(Array.from({ length: 100 }, () => reads.port()));
  expect(new Set(answers)).toEqual(new Set([3301]));
  expect(lines(runs)).toHaveLength(1);
  expect(await reads.port()).toBe(3302);
  expect(lines(runs)).toHaveLength(2);
  // Without sharing, every caller runs the command (what the bench compares against).
  await Promise.all(Array.from({ length: 5 }, () => mysql.port()));
  expect(lines(runs)).toHaveLength(7);
});

test('a failed shared run fails every caller that shared it, and the next call runs afresh', async () => {
  const runs = join(dir, 'fail-runs');
  const reads = sharedReads(new ConfiguredMySQLService({ ...defaultConfig(), MySQLPortCommand: `echo run >> ${runs}; [ $(wc -l < ${runs}) -gt 1 ] && echo 3306 || exit 3` }));
  const settled = await Promise.allSettled(Array.from({ length: 10 }, () => reads.port()));
  expect(settled.every((s) => s.status === 'rejected')).toBe(true);
  expect(await reads.port()).toBe(3306);
  expect(lines(runs)).toHaveLength(2);
});

describe('through the agent', () => {
  let agent: SeedAgent;
  const datadir = join(dir, 'data');
  const statusRuns = join(dir, 'status-runs');
  const running = join(dir, 'running');
  const block = join(dir, 'block');

  afterAll(async () => {
    await agent?.agent.stop();
  });

  test('delete-mysql-datadir never takes its answer from a status read already in flight: it runs its own and refuses', async () => {
    mkdirSync(datadir);
    writeFileSync(join(datadir, 'ibdata1'), 'x');
    // The first status run decides "stopped" at once, then waits while `block` exists; later runs do not wait.
    const status = [
      `echo run >> ${statusRuns}`,
      `if [ -f ${running} ]; then r=0; else r=1; fi`,
      `if [ "$(wc -l < ${statusRuns})" -eq 1 ]; then while [ -f ${block} ]; do sleep 0.02; done; fi`,
      'exit $r',
    ].join('; ');
    agent = await startSeedAgent(dir, {
      MySQLDatadirCommand: `echo ${datadir}`,
      MySQLServiceStatusCommand: status,
      MySQLServiceStopCommand: 'true',
      MySQLServiceStartCommand: 'true',
    });
    writeFileSync(block, '');
    const inFlight = agent.call('GET', '/api/mysql-status');
    await until('the first status run', () => lines(statusRuns).length === 1);
    writeFileSync(running, ''); // MySQL "starts" while that read is in flight
    const refused = await agent.call<{ Message: string }>('GET', '/api/delete-mysql-datadir');
    expect(refused.status).toBe(409);
    expect(refused.body.Message).toContain('MySQL is running');
    expect(lines(statusRuns)).toHaveLength(2);
    expect(readdirSync(datadir)).toEqual(['ibdata1']);
    rmSync(block);
    expect(await inFlight).toEqual({ status: 200, body: false }); // what it read before the start
    expect(await agent.call('GET', '/api/mysql-status')).toEqual({ status: 200, body: true }); // a new run
    expect(lines(statusRuns)).toHaveLength(3);
  }, 60000);
});
