import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import { AgentError } from '../src/errors.js';
import {
  MANIFEST_FILE,
  STAGING_DIR,
  STATE_FILE,
  isTransferComplete,
  newAuthKey,
  readCompletedManifest,
  send,
  startReceiver,
  type TransferProgress,
  type TransferTls,
} from '../src/transfer/index.js';
import { validateManifest } from '../src/transfer/manifest.js';
import { FrameReader, FrameType, MAGIC, frameHeader, jsonFrame } from '../src/transfer/protocol.js';
import { proof } from '../src/transfer/auth.js';
import { connect } from 'node:net';
import { createChecksum } from '../src/transfer/checksum.js';
import { TokenBucket, type Clock } from '../src/transfer/throttle.js';
import { ProgressTracker } from '../src/transfer/progress.js';
import { tempDir } from './support/agent-process.js';
import { describeTree, makeTree, startPeer, verifiedInState, waitForVerified, type Peer } from './support/transfer-tree.js';

const MiB = 1024 * 1024;
const dirs: string[] = [];
const peers: Peer[] = [];
const controllers: AbortController[] = [];

function dir(prefix: string): string {
  const d = tempDir(`oa-transfer-${prefix}-`);
  dirs.push(d);
  return d;
}

afterEach(async () => {
  for (const c of controllers.splice(0)) c.abort();
  await Promise.all(peers.splice(0).map((p) => p.kill9()));
});

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  for (const d of dirs) rmSync(stateOf(d), { recursive: true, force: true });
});

/** The receiver's state directory for dest in these tests (peer-cli's default too): beside it, not in it. */
function stateOf(dest: string): string {
  return `${dest}.transfer-state`;
}

type ReceiveOpts = Omit<Parameters<typeof startReceiver>[0], 'signal' | 'stateDir'> & { signal?: AbortSignal; stateDir?: string };

/** A receiver the test's afterEach aborts, so a failing test never leaves one listening. */
function receive(opts: ReceiveOpts) {
  const c = new AbortController();
  controllers.push(c);
  return startReceiver({ ...opts, stateDir: opts.stateDir ?? stateOf(opts.destDir), signal: opts.signal ?? c.signal });
}

async function rejection(p: Promise<unknown>): Promise<AgentError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(AgentError);
    return err as AgentError;
  }
  throw new Error('expected a rejection');
}

describe('built-in datadir transfer', () => {
  let source: string;

  beforeAll(() => {
    source = join(dir('src'), 'data');
    mkdirSync(source);
    makeTree(source, 64 * MiB);
  });

  test('copies a tree byte for byte with modes, mtimes, empty dirs and symlinks; the datadir holds only those, the manifest comes last in the state directory', async () => {
    const dest = dir('dst');
    const authKey = newAuthKey();
    const manifestSeenEarly: string[] = [];
    const bookkeepingInDest: string[] = [];
    const receiverProgress: TransferProgress[] = [];
    const senderProgress: TransferProgress[] = [];
    const receiver = await receive({
      destDir: dest,
      bindAddress: '127.0.0.1',
      port: 0,
      authKey,
      progressIntervalMs: 0,
      onProgress: (p) => {
        receiverProgress.push(p);
        if (existsSync(join(stateOf(dest), MANIFEST_FILE))) manifestSeenEarly.push(`${p.bytesDone}/${p.bytesTotal}`);
        if (readdirSync(dest).some((name) => name !== STAGING_DIR && !existsSync(join(source, name)))) bookkeepingInDest.push(readdirSync(dest).join(','));
      },
    });
    expect(receiver.port).toBeGreaterThan(0);
    const sent = await send({ sourceDir: source, host: '127.0.0.1', port: receiver.port, authKey, progressIntervalMs: 0, onProgress: (p) => senderProgress.push(p) });
    const received = await receiver.done;

    // Exactly the source's files: orchestrator's progress is the size of this directory.
    expect(describeTree(dest)).toEqual(describeTree(source));
    expect(manifestSeenEarly).toEqual([]);
    expect(bookkeepingInDest).toEqual([]);
    expect(existsSync(join(stateOf(dest), STATE_FILE))).toBe(false);
    expect(received.manifestFile).toBe(join(stateOf(dest), MANIFEST_FILE));
    expect(await isTransferComplete(stateOf(dest), dest)).toBe(true);
    expect(await isTransferComplete(stateOf(dest), source)).toBe(false);
    const manifest = await readCompletedManifest(stateOf(dest));
    const ibdata = manifest!.entries.find((e) => e.path === 'ibdata1') as { checksum?: string };
    const expected = createChecksum('xxh3-64');
    expected.update(readFileSync(join(source, 'ibdata1')));
    expect(ibdata.checksum).toBe(expected.digest());
    expect(ibdata.checksum).toMatch(/^xxh3-64:[0-9a-f]{16}$/);
    expect(lstatSync(join(dest, 'db.opt.link')).isSymbolicLink()).toBe(true);

    const total = 64 * MiB + 3 * MiB + 17 + 5000 + '[auto]\nserver-uuid=1\n'.length + 'default-character-set=utf8mb4\n'.length;
    expect(sent).toMatchObject({ bytesSent: total, filesSent: 6, filesSkipped: 0, bytesTotal: total, filesTotal: 6 });
    expect(received).toMatchObject({ bytesReceived: total, filesReceived: 6, filesSkipped: 0, filesTotal: 6 });
    for (const progress of [receiverProgress, senderProgress]) {
      const last = progress[progress.length - 1]!;
      expect(last).toMatchObject({ bytesDone: total, bytesTotal: total, filesDone: 6, filesTotal: 6, etaSeconds: 0 });
      expect(progress.some((p) => p.currentFile === 'ibdata1' && p.bytesDone < total)).toBe(true);
      expect(progress.every((p, i) => i === 0 || p.bytesDone >= progress[i - 1]!.bytesDone)).toBe(true);
    }
  });

  test('refuses a state directory inside the destination, or one holding it', async () => {
    const dest = dir('dst');
    for (const stateDir of [join(dest, 'state'), dest, join(dest, '..')]) {
      const err = await rejection(receive({ destDir: dest, stateDir, bindAddress: '127.0.0.1', authKey: newAuthKey() }));
      expect(err.message).toMatch(/must be outside the destination/);
    }
  });

  test('refuses a sender with the wrong key and writes nothing', async () => {
    const dest = dir('dst');
    const receiver = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey: newAuthKey(), connectTimeoutMs: 2000 });
    const err = await rejection(send({ sourceDir: source, host: '127.0.0.1', port: receiver.port, authKey: newAuthKey() }));
    expect(err.code).toBe('unauthorized');
    expect(err.describe()).toMatch(/wrong transfer key/);
    const recvErr = await rejection(receiver.done);
    expect(recvErr.message).toMatch(/no sender authenticated .* refused 1 connection/);
    expect(readdirSync(dest)).toEqual([]);
  });

  test('fails both sides and leaves no manifest when the sender aborts mid-transfer', async () => {
    const dest = dir('dst');
    const authKey = newAuthKey();
    const abort = new AbortController();
    controllers.push(abort);
    const receiver = await receive({
      destDir: dest,
      bindAddress: '127.0.0.1',
      authKey,
      progressIntervalMs: 0,
      onProgress: (p) => {
        if (p.bytesDone > 8 * MiB) abort.abort();
      },
    });
    const sending = send({ sourceDir: source, host: '127.0.0.1', port: receiver.port, authKey, bandwidthMBps: 40, signal: abort.signal });
    const err = await rejection(sending);
    expect(err.code).toBe('aborted');
    const recvErr = await rejection(receiver.done);
    expect(recvErr.message).toMatch(/sender (stopped|closed)|connection closed/);
    expect(recvErr.message).toMatch(/ibdata1/);
    expect(existsSync(join(stateOf(dest), MANIFEST_FILE))).toBe(false);
  });

  test('fails both sides when the receiver is aborted mid-transfer', async () => {
    const dest = dir('dst');
    const authKey = newAuthKey();
    const abort = new AbortController();
    controllers.push(abort);
    const receiver = await receive({
      destDir: dest,
      bindAddress: '127.0.0.1',
      authKey,
      signal: abort.signal,
      progressIntervalMs: 0,
      onProgress: (p) => {
        if (p.bytesDone > 8 * MiB) abort.abort();
      },
    });
    const sending = send({ sourceDir: source, host: '127.0.0.1', port: receiver.port, authKey, bandwidthMBps: 40 });
    sending.catch(() => undefined); // inspected below, after the receiver's rejection
    expect((await rejection(receiver.done)).code).toBe('aborted');
    const err = await rejection(sending);
    expect(err.message).toMatch(/receiver 127\.0\.0\.1:\d+ stopped the transfer: receive into .* aborted \(receiving ibdata1\)/);
    expect(existsSync(join(stateOf(dest), MANIFEST_FILE))).toBe(false);
  });

  test('a checksum mismatch fails the receive, names the file, tells the sender and leaves no manifest', async () => {
    const dest = dir('dst');
    const authKey = newAuthKey();
    const receiver = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey });
    // A sender speaking the protocol by hand, whose checksum does not match the bytes it sends.
    const socket = connect({ host: '127.0.0.1', port: receiver.port });
    await new Promise((r) => socket.once('connect', r));
    const reader = new FrameReader(socket);
    socket.write(MAGIC);
    const hello = (await reader.json([FrameType.hello], 'hello')).body as { nonce: string };
    socket.write(jsonFrame(FrameType.auth, { mac: proof(authKey, 'sender', hello.nonce), nonce: 'n'.repeat(32) }));
    await reader.json([FrameType.welcome], 'welcome');
    const entries = [{ type: 'file', path: 'ibdata1', size: 4, mode: 0o640, uid: 0, gid: 0, mtimeMs: 0 }];
    socket.write(jsonFrame(FrameType.manifest, { algorithm: 'xxh3-64', entries }));
    socket.write(jsonFrame(FrameType.fileBegin, { index: 0 }));
    socket.write(Buffer.concat([frameHeader(FrameType.data, 4), Buffer.from('abcd')]));
    socket.write(jsonFrame(FrameType.fileEnd, { index: 0, checksum: 'xxh3-64:0000000000000000' }));
    const answer = await reader.json([], 'after the file');
    socket.destroy();
    expect(answer.type).toBe(FrameType.error);
    expect((answer.body as { message: string }).message).toMatch(/checksum mismatch on ibdata1/);
    expect((await rejection(receiver.done)).message).toMatch(/checksum mismatch on ibdata1: the sender read xxh3-64:0+, this receiver got xxh3-64:[0-9a-f]{16}/);
    expect(existsSync(join(stateOf(dest), MANIFEST_FILE))).toBe(false);
    expect(existsSync(join(dest, 'ibdata1'))).toBe(false);
  });

  test('resumes after the sender is killed with SIGKILL, sending only files not yet verified', async () => {
    const src = join(dir('src'), 'data');
    mkdirSync(src);
    makeTree(src, 4 * MiB, Array.from({ length: 10 }, (_, i) => [`part-${i}.ibd`, 6 * MiB] as [string, number]));
    const dest = dir('dst');
    const authKey = newAuthKey();
    const first = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey });
    const sender = startPeer(['send', src, '127.0.0.1', String(first.port), '15'], authKey);
    peers.push(sender);
    const verified = await waitForVerified(stateOf(dest), STATE_FILE, 3, () => sender.child.exitCode === null);
    await sender.kill9();
    const err = await rejection(first.done);
    expect(err.message).toMatch(/sender closed the connection|connection closed/);
    expect(existsSync(join(stateOf(dest), MANIFEST_FILE))).toBe(false);

    const durable = verifiedInState(stateOf(dest), STATE_FILE);
    expect(durable.length).toBeGreaterThanOrEqual(verified.length);
    const second = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey });
    const sent = await send({ sourceDir: src, host: '127.0.0.1', port: second.port, authKey });
    const received = await second.done;
    expect(sent.filesSkipped).toBe(durable.length);
    expect(received.filesSkipped).toBe(durable.length);
    expect(received.filesReceived).toBe(16 - durable.length);
    expect(sent.filesSent + sent.filesSkipped).toBe(16);
    expect(describeTree(dest)).toEqual(describeTree(src));
    expect(existsSync(join(stateOf(dest), STATE_FILE))).toBe(false);
  });

  test('resumes after the receiver is killed with SIGKILL, on the same destination', async () => {
    const src = join(dir('src'), 'data');
    mkdirSync(src);
    makeTree(src, 4 * MiB, Array.from({ length: 10 }, (_, i) => [`part-${i}.ibd`, 6 * MiB] as [string, number]));
    const dest = dir('dst');
    const authKey = newAuthKey();
    const receiver = startPeer(['receive', dest], authKey);
    peers.push(receiver);
    const { listening } = await receiver.waitFor('listening');
    const sending = send({ sourceDir: src, host: '127.0.0.1', port: listening as number, authKey, bandwidthMBps: 15 });
    sending.catch(() => undefined);
    await waitForVerified(stateOf(dest), STATE_FILE, 3, () => receiver.child.exitCode === null);
    await receiver.kill9();
    const err = await rejection(sending);
    expect(err.message).toMatch(/receiver 127\.0\.0\.1:\d+|connection closed/);
    expect(existsSync(join(stateOf(dest), MANIFEST_FILE))).toBe(false);

    const durable = verifiedInState(stateOf(dest), STATE_FILE);
    expect(durable.length).toBeGreaterThanOrEqual(3);
    const again = startPeer(['receive', dest], authKey);
    peers.push(again);
    const port = (await again.waitFor('listening')).listening as number;
    const sent = await send({ sourceDir: src, host: '127.0.0.1', port, authKey });
    const { result } = await again.waitFor('result');
    expect(sent.filesSkipped).toBe(durable.length);
    expect(result).toMatchObject({ filesSkipped: durable.length, filesReceived: 16 - durable.length, filesTotal: 16 });
    expect(describeTree(dest)).toEqual(describeTree(src));
  });
});

describe('built-in transfer over TLS', () => {
  let certs: string;
  let tls: TransferTls;
  let source: string;

  beforeAll(() => {
    certs = dir('certs');
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: certs, stdio: 'pipe' });
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=transfer-test-ca');
    ssl('req', ...ec, '-keyout', 'agent.key', '-out', 'agent.csr', '-subj', '/CN=127.0.0.1');
    writeFileSync(join(certs, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
    ssl('x509', '-req', '-in', 'agent.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'agent.crt', '-days', '1', '-extfile', 'ext.cnf');
    tls = { key: readFileSync(join(certs, 'agent.key')), cert: readFileSync(join(certs, 'agent.crt')), ca: readFileSync(join(certs, 'ca.crt')) };
    source = join(dir('src'), 'data');
    mkdirSync(source);
    makeTree(source, 8 * MiB);
  });

  test('copies a tree over TLS with certificates verified on both sides, with sha256 checksums', async () => {
    const dest = dir('dst');
    const authKey = newAuthKey();
    const receiver = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey, tls });
    const sent = await send({ sourceDir: source, host: '127.0.0.1', port: receiver.port, authKey, tls, checksum: 'sha256' });
    await receiver.done;
    expect(sent.filesSent).toBe(6);
    const manifest = await readCompletedManifest(stateOf(dest));
    const orders = manifest!.entries.find((e) => e.path === 'shop/orders.ibd') as { checksum?: string };
    expect(orders.checksum).toBe(`sha256:${createHash('sha256').update(readFileSync(join(source, 'shop/orders.ibd'))).digest('hex')}`);
    expect(describeTree(dest)).toEqual(describeTree(source));
  });

  test('a plaintext sender against a TLS receiver fails with a hint about SeedTransferUseSSL', async () => {
    const dest = dir('dst');
    const authKey = newAuthKey();
    const receiver = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey, tls, connectTimeoutMs: 2000 });
    const err = await rejection(send({ sourceDir: source, host: '127.0.0.1', port: receiver.port, authKey }));
    expect(err.describe()).toMatch(/closed the connection before the handshake.*SeedTransferUseSSL/);
    expect((await rejection(receiver.done)).message).toMatch(/refused 1 connection.*TLS handshake failed/);
    expect(readdirSync(dest)).toEqual([]);
  });
});

describe('transfer building blocks', () => {
  function fakeClock(): Clock & { slept: number[]; t: number } {
    const c = {
      t: 0,
      slept: [] as number[],
      now: () => c.t,
      sleep: async (ms: number) => {
        c.slept.push(ms);
        c.t += ms;
      },
    };
    return c;
  }

  test('the token bucket lets a burst through, then paces to the configured rate', async () => {
    const clock = fakeClock();
    const bucket = new TokenBucket(1000, clock, 250);
    await bucket.take(250);
    expect(clock.slept).toEqual([]);
    for (let i = 0; i < 100; i++) await bucket.take(100);
    // 10,000 bytes after the initial burst at 1,000 B/s: 10 s of virtual time, whatever the chunking.
    expect(clock.t).toBeCloseTo(10_000, 0);
    expect(Math.max(...clock.slept)).toBeLessThanOrEqual(100);
  });

  test('the token bucket averages chunks larger than its burst to the rate', async () => {
    const clock = fakeClock();
    const bucket = new TokenBucket(1_000_000, clock);
    for (let i = 0; i < 20; i++) await bucket.take(1024 * 1024);
    // 20 MiB at 1 MB/s, less the first quarter-second burst and the last chunk in debt.
    const expected = ((20 * 1024 * 1024 - 250_000 - 1024 * 1024) / 1_000_000) * 1000;
    expect(clock.t).toBeGreaterThanOrEqual(expected - 1);
    expect(clock.t).toBeLessThanOrEqual(expected + 300);
  });

  test('progress reports rate and ETA from the clock, and counts files already verified', () => {
    const clock = fakeClock();
    const seen: TransferProgress[] = [];
    const tracker = new ProgressTracker(1000, 4, (p) => seen.push(p), 250, clock);
    tracker.alreadyDone(1, 200);
    tracker.fileStarted('a');
    clock.t = 1000;
    tracker.bytes(400);
    expect(seen[seen.length - 1]).toMatchObject({ bytesDone: 600, filesDone: 1, currentFile: 'a', rateBytesPerSec: 400, etaSeconds: 1 });
    clock.t = 1100;
    tracker.bytes(10); // within 250 ms of the last report: not reported
    expect(seen[seen.length - 1]!.bytesDone).toBe(600);
    expect(tracker.finish()).toMatchObject({ bytesDone: 610, currentFile: null });
  });

  test('the receiver refuses manifest paths that escape the destination', () => {
    const owner = { uid: 0, gid: 0 };
    const file = (path: string) => ({ type: 'file', path, size: 1, mode: 0o644, mtimeMs: 0, ...owner });
    const dest = '/var/lib/mysql';
    for (const bad of ['../etc/passwd', '/etc/passwd', 'a/../../x', './x', 'a//b', STAGING_DIR, '']) {
      expect(() => validateManifest([file(bad)], dest)).toThrow(/refusing manifest entry/);
    }
    expect(() => validateManifest([{ type: 'symlink', path: 'l', target: '../../etc', ...owner }], dest)).toThrow(/points outside/);
    expect(() => validateManifest([{ type: 'symlink', path: 'l', target: '/etc/passwd', ...owner }], dest)).toThrow(/absolute/);
    // A file below a symlink would be written through it: its parent must be a directory of the manifest.
    expect(() => validateManifest([{ type: 'symlink', path: 'l', target: 'x', ...owner }, file('l/f')], dest)).toThrow(/not a directory listed before/);
    expect(validateManifest([{ type: 'dir', path: 'd', mode: 0o755, mtimeMs: 0, ...owner }, file('d/f'), { type: 'symlink', path: 'd/l', target: '../d/f', ...owner }], dest)).toHaveLength(3);
  });
});
