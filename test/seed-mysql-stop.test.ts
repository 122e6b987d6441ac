// The target chart with its real MySQL steps against a real stand-in mysqld (a process, with the operator's
// status, stop and start scripts): the datadir is purged only once MySQL is really stopped, and a stop
// command that does not stop it fails the seed before anything is deleted.
import { afterEach, describe, expect, test } from '@jest/globals';
import { rmSync, writeFileSync } from 'node:fs';
import { createActor, fromPromise, waitFor } from 'xstate';
import { seedTargetMachine, type TargetParams } from '../machines/seed-target.js';
import type { CleanupInput, SeedFacts, StepInput } from '../machines/seed-common.js';
import { defaultConfig, type Config } from '../src/config.js';
import { LocalDatadir } from '../src/host/datadir.js';
import { ConfiguredMySQLService } from '../src/host/mysql-service.js';
import { ensureMySQLStarted, ensureMySQLStopped } from '../src/seeds/steps/mysql-steps.js';
import type { StepEnv, StepFn } from '../src/seeds/steps/step-env.js';
import { tempDir } from './support/agent-process.js';
import { isLive, makeTargetHost, stopTargetMysqld, type TargetHost } from './support/seed-hosts.js';

const hosts: TargetHost[] = [];
afterEach(() => {
  for (const h of hosts.splice(0)) {
    stopTargetMysqld(h);
    rmSync(h.dir, { recursive: true, force: true });
  }
});

function envFor(config: Config): StepEnv {
  const marks: Record<string, string> = {};
  return {
    config,
    mysql: new ConfiguredMySQLService(config),
    datadir: new LocalDatadir(config),
    snapshots: undefined as unknown as StepEnv['snapshots'], // the target chart never mounts
    seed: {
      id: 'stop-test',
      marks: () => marks,
      mark: (k, v) => void (marks[k] = v),
      secrets: () => ({}),
      setProgress: () => undefined,
      setWaiting: () => undefined,
      warn: () => undefined,
    },
    daemonStarter: (fn) => fn(),
    killSeedProcesses: async () => undefined,
  };
}

/** The target chart with the real MySQL steps; the other steps record what they saw of the stand-in mysqld. */
function runTarget(host: TargetHost) {
  const config: Config = { ...defaultConfig(), ...(host.config as Partial<Config>) };
  const env = envFor(config);
  const real = (fn: StepFn<TargetParams>) => fromPromise<SeedFacts, StepInput<TargetParams>>(({ input, signal }) => fn(input, signal, env));
  const seen: Array<{ step: string; mysqlRunning: boolean }> = [];
  const observing = (step: string, output: SeedFacts = {}) =>
    fromPromise<SeedFacts, StepInput<TargetParams>>(async () => {
      seen.push({ step, mysqlRunning: host.mysqlRunning() });
      return output;
    });
  const machine = seedTargetMachine.provide({
    actors: {
      ensureMySQLStopped: real(ensureMySQLStopped),
      ensureDatadirPurged: observing('purge'),
      ensureReceived: observing('receive'),
      ensurePostCopied: observing('postCopy', { postCopied: true }),
      ensureMySQLStarted: real(ensureMySQLStarted),
      cleanup: fromPromise<SeedFacts, CleanupInput<TargetParams>>(async () => {
        seen.push({ step: 'cleanup', mysqlRunning: host.mysqlRunning() });
        return {};
      }),
    },
  });
  const actor = createActor(machine, {
    input: {
      seedId: 'stop-test',
      params: { startMySQL: true, stepByStep: false, receiveOnly: false, port: 0 },
      seedDeadline: Date.now() + 3600_000,
      connectTimeoutMs: 60_000,
    },
  });
  return { actor, seen };
}

describe('the target chart stops the real MySQL before it touches the datadir', () => {
  test('a running mysqld is stopped (its process gone) before the purge, and started again at the end', async () => {
    const host = makeTargetHost(tempDir('oa-stop-'), 0);
    hosts.push(host);
    const [mysqld] = host.mysqldPids();
    expect(mysqld).toBeGreaterThan(0);
    expect(host.mysqlRunning()).toBe(true);
    const { actor, seen } = runTarget(host);
    actor.start();
    const end = await waitFor(actor, (s) => s.status === 'done', { timeout: 30000 });
    expect(end.value).toBe('done');
    expect(end.context.facts.datadir).toBe(host.datadir);
    expect(seen).toEqual([
      { step: 'purge', mysqlRunning: false },
      { step: 'receive', mysqlRunning: false },
      { step: 'postCopy', mysqlRunning: false },
    ]);
    expect(isLive(mysqld!)).toBe(false);
    expect(host.log().split('\n').filter(Boolean)).toEqual(['stop', 'start']);
    expect(host.mysqlRunning()).toBe(true);
  });

  test('a stop command that leaves mysqld running fails the seed in stoppingMySQL and nothing is purged', async () => {
    const host = makeTargetHost(tempDir('oa-stop-'), 0);
    hosts.push(host);
    const [mysqld] = host.mysqldPids();
    // The operator's stop "succeeds" but the server keeps running.
    const stopScript = String(host.config.MySQLServiceStopCommand);
    writeFileSync(stopScript, '#!/bin/bash\necho stop >> /dev/null\nexit 0\n');
    const { actor, seen } = runTarget(host);
    actor.start();
    const end = await waitFor(actor, (s) => s.status === 'done', { timeout: 30000 });
    expect(end.value).toBe('failed');
    expect(end.context.error).toEqual(expect.objectContaining({ step: 'stoppingMySQL', message: expect.stringMatching(/still runs/) }));
    expect(seen).toEqual([{ step: 'cleanup', mysqlRunning: true }]);
    expect(isLive(mysqld!)).toBe(true);
  });

  test('a start command that fails ends the seed in startingMySQL with its output and what to do next', async () => {
    const host = makeTargetHost(tempDir('oa-stop-'), 0);
    hosts.push(host);
    writeFileSync(String(host.config.MySQLServiceStartCommand), '#!/bin/bash\necho "Job for mariadb.service failed" >&2\nexit 1\n');
    const { actor } = runTarget(host);
    actor.start();
    const end = await waitFor(actor, (s) => s.status === 'done', { timeout: 30000 });
    expect(end.value).toBe('failed');
    expect(end.context.error).toEqual(
      expect.objectContaining({
        step: 'startingMySQL',
        code: 'command_failed',
        message: expect.stringContaining('Job for mariadb.service failed'),
        hint: expect.stringMatching(/error log.*MySQLServiceStartCommand.*copied datadir is in place/),
      }),
    );
  });
});
