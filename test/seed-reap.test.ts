// README, Crash safety: "a restarted agent first kills the process groups its predecessor's seed steps left
// (found by the ORCHESTRATOR_AGENT_TAG in their environment)". Here the predecessor left processes for a
// seed no step will run again (its state is gone), so only the start-up reap can end them.
import { afterEach, describe, expect, test } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { TAG_ENV } from '../src/process-runner.js';
import { DAEMON_STARTER, seedTag } from '../src/seeds/reaper.js';
import { tempDir } from './support/agent-process.js';
import { startSeedAgent, type SeedAgent } from './support/seed-api.js';
import { isLive } from './support/seed-hosts.js';

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

/** A "previous agent's" step: bash with a sleeping child, in a process group of its own, carrying tag. */
function leftover(tag: string): { leader: number; child: () => number | undefined } {
  const c = spawn('bash', ['-c', 'sleep 1000 & echo $!; wait'], { detached: true, stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, [TAG_ENV]: tag } });
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
});
