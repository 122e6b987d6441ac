// Resume of the built-in transfer after the connect deadline: once a sender has authenticated, a lost
// session (sender killed, target agent restarted) waits for the sender to come back within the reconnect
// window, keeps every verified file, and gives up only on a deadline whose error says so. Real agents,
// real btrfs snapshot, real TCP on 127.0.0.1; the connect timeout is shorter than the copy.
import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import { rmSync, statSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { tempDir } from './support/agent-process.js';
import { mountsUnder } from './support/btrfs-fixture.js';
import { startSeedAgent, type SeedAgent, type SeedViewJson } from './support/seed-api.js';
import { makeSourceHost, makeTargetHost, stopTargetMysqld, treeDigest, type SourceHost, type TargetHost } from './support/seed-hosts.js';

type View = SeedViewJson & { waiting: { for: string; since: string; until: string; message: string } | null };

let source: SourceHost;
const agents: SeedAgent[] = [];
const targets: TargetHost[] = [];
const dirs: string[] = [];
const stopped: number[] = [];

beforeAll(() => {
  source = makeSourceHost(tempDir('oa-resume-src-'), `oa-resume-${process.pid}`);
});
afterEach(async () => {
  for (const pid of stopped.splice(0)) process.kill(pid, 'SIGCONT');
  for (const a of agents.splice(0)) await a.agent.stop();
  for (const t of targets.splice(0)) stopTargetMysqld(t);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
afterAll(() => source?.cleanup());

async function until(what: string, cond: () => boolean, timeoutMs = 30000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const isFinal = (v: SeedViewJson) => v.status !== 'active';

/** The target's connect timeout: shorter than the copy (about 10 s), longer than the sender's 1 s retry. */
const connectSeconds = 5;

/** A target and a source agent with the built-in transfer, a short connect timeout and a slow link (0.6 MB/s). */
async function pair(extraTarget: Record<string, unknown> = {}, extraSource: Record<string, unknown> = {}, via?: (port: number) => Promise<number>) {
  const tdir = tempDir('oa-resume-tgt-');
  const sdir = tempDir('oa-resume-srcagent-');
  dirs.push(tdir, sdir);
  const host = makeTargetHost(tdir, 0);
  targets.push(host);
  const tconfig = { ...host.config, ReceiveSeedDataCommand: '', SeedTransferBindAddress: '127.0.0.1', SeedTransferConnectTimeoutSeconds: connectSeconds, ...extraTarget };
  // The source waits longer for its first contact than the target: it is created while the target purges.
  const sconfig = { ...source.config, SendSeedDataCommand: '', SeedTransferBandwidthMBps: 0.6, SeedTransferConnectTimeoutSeconds: 120, ...extraSource };
  // The target purges for 3 s, so the sender is already trying (every second) when the receiver listens.
  host.delay('purge', 3);
  const t = await startSeedAgent(tdir, tconfig);
  agents.push(t);
  const s = await startSeedAgent(sdir, sconfig);
  agents.push(s);
  const created = await t.call<{ transfer: { port: number; authKey: string } }>('POST', '/api/seeds', { id: 'rs', role: 'target', startMySQL: true });
  expect(created.status).toBe(201);
  const { port, authKey } = created.body.transfer;
  const targetPort = via ? await via(port) : port;
  expect((await s.call('POST', '/api/seeds', { id: 'rs', role: 'source', targetHost: '127.0.0.1', targetPort, authKey, snapshot: source.bigSnapshot })).status).toBe(201);
  return { host, tdir, sdir, tconfig, sconfig, t, s };
}

/** Waits until the first session has verified `files` files and has run past the connect deadline. */
async function midCopy(t: SeedAgent, files: number): Promise<void> {
  const v = await t.waitFor('rs', (x) => x.state === 'receiving' && ((x.progress as { filesDone?: number } | null)?.filesDone ?? 0) >= files, `${files} files verified`);
  const enteredAt = Date.parse(v.history.find((h) => h.state === 'receiving')!.enteredAt);
  await until('the connect deadline to pass', () => Date.now() > enteredAt + connectSeconds * 1000 + 500);
}

async function replace(agent: SeedAgent, how: 'kill9' | 'none', dir: string, config: Record<string, unknown>): Promise<SeedAgent> {
  if (how === 'kill9') await agent.agent.kill9();
  agents.splice(agents.indexOf(agent), 1);
  const next = await startSeedAgent(dir, config);
  agents.push(next);
  return next;
}

/** A TCP proxy on 127.0.0.1 whose link can be cut (every connection reset, new ones refused) and restored. */
async function cuttableLink(targetPort: number): Promise<{ port: number; cut(): void; restore(): void; close(): void }> {
  const sockets = new Set<Socket>();
  let down = false;
  const server = createServer((client) => {
    if (down) return void client.resetAndDestroy();
    const upstream = connect({ host: '127.0.0.1', port: targetPort });
    for (const sock of [client, upstream]) {
      sockets.add(sock);
      sock.on('error', () => undefined);
      sock.on('close', () => sockets.delete(sock));
    }
    client.pipe(upstream);
    upstream.pipe(client);
    // Either side gone (a receiver not listening yet, a reset): the other goes too, as on a direct link.
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    cut: () => {
      down = true;
      for (const sock of sockets) sock.resetAndDestroy();
    },
    restore: () => {
      down = false;
    },
    close: () => {
      for (const sock of sockets) sock.destroy();
      server.close();
    },
  };
}

function expectCopied(host: TargetHost): void {
  const copied = treeDigest(host.datadir);
  for (const name of Object.keys(copied)) if (name.startsWith('.orchestrator-agent-transfer') || name === 'post-copied') delete copied[name];
  expect(copied).toEqual(treeDigest(join(source.bigSnapshot, 'mysql')));
}

describe('resume of the built-in transfer after the connect deadline', () => {
  test('a sender killed mid-copy comes back: the target waits (shown in its view), keeps the verified files, and both seeds finish', async () => {
    const { host, sdir, sconfig, t, s } = await pair();
    await midCopy(t, 2);
    const kept = statSync(join(host.datadir, 'ibdata0')).ino;

    await s.agent.kill9();
    const waiting = (await t.waitFor('rs', (v) => (v as View).waiting !== null && (v as View).waiting !== undefined, 'waiting for the sender')) as View;
    expect(waiting.status).toBe('active');
    expect(waiting.waiting!.for).toBe('sender');
    expect(Date.parse(waiting.waiting!.until)).toBeGreaterThan(Date.parse(waiting.waiting!.since));
    expect(waiting.waiting!.message).toContain('waiting for it to come back until');

    const s2 = await replace(s, 'none', sdir, sconfig);
    const tv = (await t.waitFor('rs', isFinal, 'an end', 60000)) as View;
    const sv = await s2.waitFor('rs', isFinal, 'an end', 60000);
    expect([tv.status, tv.error]).toEqual(['done', null]);
    expect([sv.status, sv.error]).toEqual(['done', null]);
    expect(tv.waiting).toBeNull();
    expectCopied(host);
    // ibdata0 was verified in the first session: the resumed one did not send it again.
    expect(statSync(join(host.datadir, 'ibdata0')).ino).toBe(kept);
    expect(t.agent.output()).toMatch(/transfer: receive complete .*"filesSkipped":[1-9]/);
  }, 90000);

  test('a target agent restarted after the connect deadline waits for the sender and finishes the copy', async () => {
    const { host, tdir, tconfig, t, s } = await pair();
    await midCopy(t, 2);
    // The sender is held (SIGSTOP) so it cannot be back before the restarted target has shown it waits.
    process.kill(s.agent.child.pid!, 'SIGSTOP');
    stopped.push(s.agent.child.pid!);
    const t2 = await replace(t, 'kill9', tdir, tconfig);
    const waiting = (await t2.waitFor('rs', (v) => !!(v as View).waiting, 'waiting for the sender')) as View;
    expect([waiting.status, waiting.state]).toEqual(['active', 'receiving']);
    expect(waiting.waiting!.message).toContain('this agent restarted');
    process.kill(stopped.pop()!, 'SIGCONT');

    const tv = await t2.waitFor('rs', isFinal, 'an end', 60000);
    const sv = await s.waitFor('rs', isFinal, 'an end', 60000);
    expect([tv.status, tv.error]).toEqual(['done', null]);
    expect([sv.status, sv.error]).toEqual(['done', null]);
    expectCopied(host);
    expect(host.mysqlRunning()).toBe(true);
  }, 90000);

  test('a sender that does not come back within the reconnect window fails the target with an error that says so', async () => {
    const { sdir, sconfig, t, s } = await pair({ SeedTransferReconnectTimeoutSeconds: 2 });
    await midCopy(t, 1);
    await s.agent.kill9();
    const tv = await t.waitFor('rs', isFinal, 'an end', 30000);
    expect(tv.status).toBe('failed');
    expect(tv.error!.message).toMatch(/the sender was lost at \S+ and did not come back by \S+ \(SeedTransferReconnectTimeoutSeconds=2\)/);
    expect(tv.error!.hint).toContain('SeedTransferReconnectTimeoutSeconds');
    // The source side is ended by hand (its snapshot stays mounted until its seed's cleanup).
    const s2 = await replace(s, 'none', sdir, sconfig);
    expect((await s2.call('POST', '/api/seeds/rs/events', { type: 'ABORT' })).status).toBe(200);
    expect((await s2.waitFor('rs', isFinal, 'an end')).status).toBe('aborted');
  }, 60000);

  test('a sender whose receiver does not come back within the reconnect window fails the source seed saying so, and unmounts', async () => {
    const { t, s } = await pair({}, { SeedTransferReconnectTimeoutSeconds: 2 });
    await midCopy(t, 1);
    await t.agent.kill9();
    const sv = await s.waitFor('rs', isFinal, 'an end', 30000);
    expect(sv.status).toBe('failed');
    expect(sv.error!.message).toMatch(/the receiver was lost at \S+ and did not come back by \S+ \(SeedTransferReconnectTimeoutSeconds=2\)/);
    expect(sv.history.map((h) => h.state)).toEqual(['mountingSnapshot', 'sending', 'cleanup', 'failed']);
    expect(mountsUnder(source.mountPoint)).toEqual([]);
  }, 60000);

  test('a network cut after the connect deadline: both agents wait for each other (shown in both views) and the copy resumes when the link is back', async () => {
    let link: Awaited<ReturnType<typeof cuttableLink>> | undefined;
    try {
      const { host, t, s } = await pair({}, {}, async (port) => (link = await cuttableLink(port)).port);
      await midCopy(t, 2);
      const kept = statSync(join(host.datadir, 'ibdata0')).ino;
      link!.cut();
      const tw = (await t.waitFor('rs', (v) => !!(v as View).waiting, 'the target waiting for the sender')) as View;
      const sw = (await s.waitFor('rs', (v) => !!(v as View).waiting, 'the source waiting for the receiver')) as View;
      expect([tw.status, tw.waiting!.for, sw.status, sw.waiting!.for]).toEqual(['active', 'sender', 'active', 'receiver']);
      link!.restore();
      const tv = (await t.waitFor('rs', isFinal, 'an end', 60000)) as View;
      const sv = (await s.waitFor('rs', isFinal, 'an end', 60000)) as View;
      expect([tv.status, tv.error, tv.waiting]).toEqual(['done', null, null]);
      expect([sv.status, sv.error, sv.waiting]).toEqual(['done', null, null]);
      expectCopied(host);
      expect(statSync(join(host.datadir, 'ibdata0')).ino).toBe(kept);
    } finally {
      link?.close();
    }
  }, 90000);
});
