// README, Crash safety: "a restarted agent first kills the process groups its predecessor's seed steps left
// (found by the ORCHESTRATOR_AGENT_TAG in their environment)". Here the predecessor left processes for a
// seed no step will run again (its state is gone), so only the start-up reap can end them.
import { afterEach, describe, expect, test } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { TAG_ENV } from '../src/process-runner.js';
import { DAEMON_STARTER, seedTag } from '../src/seeds/reaper.js';
import { tempDir } from './support/agent-process.js';
import { startSeedAgent, type SeedAgent } from './support/seed-api.js';
import { freePort, isLive, makeTargetHost, stopTargetMysqld } from './support/seed-hosts.js';

const agents: SeedAgent[] = [];
const children: ChildProcess[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) await a.agent.stop();
  for (const c of children.splice(0)) {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/**
 * A "previous agent's" step: bash with a sleeping child, in a process group of its own, carrying tag.
 * Stubborn: both ignore SIGTERM, so the reap needs its SIGKILL after the grace time (3 s).
 */
function leftover(tag: string, stubborn = false): { leader: number; child: () => number | undefined } {
  const c = spawn('bash', ['-c', `${stubborn ? "trap '' TERM; " : ''}sleep 1000 & echo $!; wait`], { detached: true, stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, [TAG_ENV]: tag } });
  children.push(c);
  let grandchild: number | undefined;
  c.stdout!.on('data', (d) => (grandchild ??= Number(String(d).trim())));
  return { leader: c.pid!, child: () => grandchild };
}

async function until(what: string, cond: () => boolean, timeoutMs = 20000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the start-up reap', () => {
  test("kills the process groups a killed predecessor's seed steps left, even for a seed that will not run again, and nothing else", async () => {
    const dir = tempDir('oa-reap-');
    dirs.push(dir);
    const stateDir = join(dir, 'state'); // what startSeedAgent configures
    const orphan = leftover(seedTag(stateDir, 'gone-seed'));
    const otherAgents = leftover(seedTag(join(dir, 'another-agent-state'), 'gone-seed'));
    const mysqld = leftover(seedTag(stateDir, 'gone-seed') + DAEMON_STARTER);
    await until('the leftovers to start their children', () => [orphan, otherAgents, mysqld].every((p) => p.child() !== undefined));

    const agent = await startSeedAgent(dir, {});
    agents.push(agent);
    await until('the orphaned step and its child to be killed', () => !isLive(orphan.leader) && !isLive(orphan.child()!));
    // Another agent's StateDir and a daemon started by a seed step (MySQL) are not this agent's to kill.
    for (const p of [otherAgents, mysqld]) {
      expect(isLive(p.leader)).toBe(true);
      expect(isLive(p.child()!)).toBe(true);
    }
    expect((await agent.call('GET', '/api/seeds')).status).toBe(200);
  });

  test("a seed created while the start-up reap still waits for a stubborn leftover runs no step before the leftover is gone", async () => {
    const dir = tempDir('oa-reap-');
    dirs.push(dir);
    const stateDir = join(dir, 'state');
    const stubborn = leftover(seedTag(stateDir, 'gone-seed'), true);
    await until('the leftover to start its child', () => stubborn.child() !== undefined);
    const host = makeTargetHost(join(dir, 'target'), await freePort());
    // The target's first step asks for the datadir: the command notes whether the leftover still lives.
    const seen = join(dir, 'leftover-seen-by-first-step');
    const datadirCommand = `kill -0 ${stubborn.leader} 2>/dev/null && echo alive >> ${seen} || echo gone >> ${seen}; echo ${host.datadir}`;
    try {
      // The agent answers at once; the reap sends SIGTERM, which the leftover ignores for 3 s.
      const agent = await startSeedAgent(dir, { ...host.config, MySQLDatadirCommand: datadirCommand });
      agents.push(agent);
      expect((await agent.call('POST', '/api/seeds', { id: 'new-seed', role: 'target' })).status).toBe(201);
      await until('the first step to run', () => existsSync(seen) && readFileSync(seen, 'utf8').length > 0);
      expect(readFileSync(seen, 'utf8').split('\n')[0]).toBe('gone');
      expect(isLive(stubborn.leader)).toBe(false);
      await agent.call('POST', '/api/seeds/new-seed/events', { type: 'ABORT' });
      await agent.waitFor('new-seed', (v) => v.status !== 'active', 'its end');
    } finally {
      stopTargetMysqld(host);
    }
  });
});
