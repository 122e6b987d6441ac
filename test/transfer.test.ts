import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, chmodSync, closeSync, truncateSync, existsSync, openSync, readSync, writeSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import { AgentError } from '../src/errors.js';
import {
  MANIFEST_FILE,
  PARTIAL_FILE,
  STAGING_DIR,
  STATE_FILE,
  isPermanentFailure,
  isTransferComplete,
  newAuthKey,
  readCompletedManifest,
  send,
  startReceiver,
  type TransferProgress,
  type TransferTls,
} from '../src/transfer/index.js';
import { validateManifest } from '../src/transfer/manifest.js';
import { FrameReader, FrameType, FrameWriter, MAGIC } from '../src/transfer/protocol.js';
import { frameKeys, proof } from '../src/transfer/auth.js';
import { startTamperingProxy, type TamperingProxy } from './support/tampering-proxy.js';
import { connect } from 'node:net';
import { createChecksum } from '../src/transfer/checksum.js';
import { TokenBucket, type Clock } from '../src/transfer/throttle.js';
import { ProgressTracker } from '../src/transfer/progress.js';
import { tempDir } from './support/agent-process.js';
import { describeTree, makeTree, randomFile, startPeer, verifiedInState, waitForVerified, type Peer } from './support/transfer-tree.js';

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
    // This filesystem takes O_DIRECT: the files went to the disk without the page cache.
    expect(received.directWrites).toBe(true);
    for (const progress of [receiverProgress, senderProgress]) {
      const last = progress[progress.length - 1]!;
      expect(last).toMatchObject({ bytesDone: total, bytesTotal: total, filesDone: 6, filesTotal: 6, etaSeconds: 0 });
      expect(progress.some((p) => p.currentFile === 'ibdata1' && p.bytesDone < total)).toBe(true);
      expect(progress.every((p, i) => i === 0 || p.bytesDone >= progress[i - 1]!.bytesDone)).toBe(true);
    }
  });

  test.each([
    { what: 'told to write through the page cache, the receiver copies the same tree without O_DIRECT', options: { directWrites: false }, direct: false },
    { what: 'with resume chunks that end off block boundaries, direct writes still copy every byte', options: { resumeChunkBytes: 100_001 }, direct: true },
  ])('$what', async ({ options, direct }) => {
    const dest = dir('dst-writes');
    const authKey = newAuthKey();
    const receiver = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey, ...options });
    await send({ sourceDir: source, host: '127.0.0.1', port: receiver.port, authKey });
    const received = await receiver.done;
    expect(received.directWrites).toBe(direct);
    expect(describeTree(dest)).toEqual(describeTree(source));
  });

  test('a receiver that cannot have aligned memory (node --jitless: no WebAssembly) writes through the page cache', async () => {
    const dest = dir('dst-jitless');
    const authKey = newAuthKey();
    const receiver = startPeer(['receive', dest], authKey, { NODE_OPTIONS: '--jitless' });
    peers.push(receiver);
    const { listening } = await receiver.waitFor('listening');
    await send({ sourceDir: source, host: '127.0.0.1', port: listening as number, authKey });
    const { result } = (await receiver.waitFor('result')) as { result: { directWrites: boolean } };
    expect(result.directWrites).toBe(false);
    expect(describeTree(dest)).toEqual(describeTree(source));
  });

  test('a directory left where the source has a file is replaced by the file, and a one-chunk file gets its whole-file checksum', async () => {
    const dest = dir('dst');
    // Leftovers of something else at two of the source's file paths, one a directory holding a file.
    mkdirSync(join(dest, 'auto.cnf/inside'), { recursive: true });
    writeFileSync(join(dest, 'auto.cnf/inside/x'), 'stale');
    mkdirSync(join(dest, 'shop/orders.ibd'), { recursive: true });
    const authKey = newAuthKey();
    const receiver = await receive({ destDir: dest, bindAddress: '127.0.0.1', port: 0, authKey });
    await send({ sourceDir: source, host: '127.0.0.1', port: receiver.port, authKey });
    await receiver.done;
    expect(describeTree(dest)).toEqual(describeTree(source));
    const manifest = await readCompletedManifest(stateOf(dest));
    const user = manifest!.entries.find((e) => e.path === 'mysql/user.MYD') as { checksum?: string };
    const expected = createChecksum('xxh3-64');
    expected.update(readFileSync(join(source, 'mysql/user.MYD')));
    expect(user.checksum).toBe(expected.digest());
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

  // The same signal stops a receiver whose seed was aborted and one whose agent is stopping (a restart): the
  // sender must not take either for a permanent failure, so it is only cut and tries again.
  test('a receiver stopped mid-transfer closes the connection without an ERROR: the sender fails with a cut it may retry', async () => {
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
    expect(err.message).toMatch(/send to receiver 127\.0\.0\.1:\d+ failed sending ibdata1: .*(closed|ECONNRESET|EPIPE)/);
    expect(err.message).not.toMatch(/stopped the transfer|aborted/);
    expect(err.details?.fromPeer).toBeUndefined();
    expect(isPermanentFailure(err)).toBe(false);
    expect(existsSync(join(stateOf(dest), MANIFEST_FILE))).toBe(false);
  });

  test('a checksum mismatch fails the receive, names the file, tells the sender and leaves no manifest', async () => {
    const dest = dir('dst');
    const authKey = newAuthKey();
    const receiver = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey });
    // A sender speaking the protocol by hand (tagging its frames), whose checksum does not match the bytes it sends.
    const socket = connect({ host: '127.0.0.1', port: receiver.port });
    await new Promise((r) => socket.once('connect', r));
    const reader = new FrameReader(socket);
    const writer = new FrameWriter(socket);
    socket.write(MAGIC);
    const hello = (await reader.json([FrameType.hello], 'hello')).body as { nonce: string };
    const myNonce = 'n'.repeat(32);
    await writer.json(FrameType.auth, { mac: proof(authKey, 'sender', hello.nonce), nonce: myNonce });
    const keys = frameKeys(authKey, hello.nonce, myNonce);
    reader.authenticate(keys.receiverToSender);
    writer.authenticate(keys.senderToReceiver);
    await reader.json([FrameType.welcome], 'welcome');
    const entries = [{ type: 'file', path: 'ibdata1', size: 4, mode: 0o640, uid: 0, gid: 0, mtimeMs: 0 }];
    await writer.json(FrameType.manifest, { algorithm: 'xxh3-64', entries });
    await writer.json(FrameType.fileBegin, { index: 0 });
    await writer.data(Buffer.from('abcd'));
    await writer.json(FrameType.chunk, { index: 0, end: 4, checksum: 'xxh3-64:0000000000000000' });
    const answer = await reader.json([], 'after the file');
    socket.destroy();
    expect(answer.type).toBe(FrameType.error);
    expect((answer.body as { message: string }).message).toMatch(/checksum mismatch on ibdata1/);
    expect((await rejection(receiver.done)).message).toMatch(/checksum mismatch on ibdata1 bytes 0-4: the sender read xxh3-64:0+, this receiver got xxh3-64:[0-9a-f]{16}/);
    expect(existsSync(join(stateOf(dest), MANIFEST_FILE))).toBe(false);
    expect(existsSync(join(dest, 'ibdata1'))).toBe(false);
  });

  test("a source check failing after the last file stops both sides before the receiver finishes, with the sender's reason", async () => {
    const dest = dir('dst');
    const authKey = newAuthKey();
    const receiver = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey });
    let checks = 0;
    const invalid = new AgentError('snapshot_invalid', 'snapshot vg/s is no longer valid', { hint: 'take a larger snapshot' });
    const sending = send({
      sourceDir: source,
      host: '127.0.0.1',
      port: receiver.port,
      authKey,
      verifySource: async () => {
        checks++;
        throw invalid;
      },
    });
    sending.catch(() => undefined); // inspected below, after the receiver's rejection
    const recvErr = await rejection(receiver.done);
    expect([recvErr.code, recvErr.hint]).toEqual(['snapshot_invalid', 'take a larger snapshot']);
    expect(recvErr.message).toMatch(/^receive into .* failed .*: the sender stopped the transfer: snapshot vg\/s is no longer valid$/);
    const err = await rejection(sending);
    expect([err.code, err.hint]).toEqual(['snapshot_invalid', 'take a larger snapshot']);
    expect(err.message).toContain('snapshot vg/s is no longer valid');
    expect(checks).toBe(1);
    expect(existsSync(join(dest, MANIFEST_FILE))).toBe(false);
  });

  test('a read error makes the sender check its source, whose error replaces the read error on both sides', async () => {
    const dest = dir('dst');
    const authKey = newAuthKey();
    const receiver = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey });
    const sourceDir = join(dir('src-vanishing'), 'data');
    mkdirSync(sourceDir);
    writeFileSync(join(sourceDir, 'a'), Buffer.alloc(1000, 1));
    writeFileSync(join(sourceDir, 'b'), Buffer.alloc(1000, 2));
    let checks = 0;
    const sending = send({
      sourceDir,
      host: '127.0.0.1',
      port: receiver.port,
      authKey,
      progressIntervalMs: 0,
      // The walk has listed both files; the first one sent removes the second, so opening it fails.
      onProgress: () => rmSync(join(sourceDir, 'b'), { force: true }),
      verifySource: async () => {
        checks++;
        throw new AgentError('snapshot_invalid', 'snapshot vg/s is no longer valid');
      },
    });
    sending.catch(() => undefined);
    expect((await rejection(receiver.done)).code).toBe('snapshot_invalid');
    const err = await rejection(sending);
    expect(err.code).toBe('snapshot_invalid');
    expect(checks).toBe(1);
    expect(existsSync(join(dest, MANIFEST_FILE))).toBe(false);
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

  test('a sender killed mid-file resumes that file from its last verified chunk, and the copy verifies', async () => {
    const src = join(dir('src'), 'data');
    mkdirSync(src);
    const size = 24 * MiB + 12345;
    randomFile(join(src, 'big.ibd'), size);
    writeFileSync(join(src, 'small.frm'), 'frm');
    const dest = dir('dst');
    const authKey = newAuthKey();
    const chunkBytes = 1 * MiB;
    const first = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey, resumeChunkBytes: chunkBytes });
    const sender = startPeer(['send', src, '127.0.0.1', String(first.port), '8'], authKey);
    peers.push(sender);
    const partialChunks = () => {
      try {
        const st = JSON.parse(readFileSync(join(stateOf(dest), PARTIAL_FILE), 'utf8')) as { partial?: Array<{ path: string; chunks: string[] }> };
        return st.partial?.find((p) => p.path === 'big.ibd')?.chunks.length ?? 0;
      } catch {
        return 0;
      }
    };
    while (partialChunks() < 4) {
      if (sender.child.exitCode !== null) throw new Error(`sender ended early:\n${sender.output()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await sender.kill9();
    await rejection(first.done);
    const recorded = partialChunks();
    expect(recorded).toBeGreaterThanOrEqual(4);
    expect(recorded * chunkBytes).toBeLessThan(size);

    const second = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey, resumeChunkBytes: chunkBytes });
    const sent = await send({ sourceDir: src, host: '127.0.0.1', port: second.port, authKey });
    await second.done;
    // Only what follows the last durable chunk went again (big.ibd's rest, and small.frm if it was not verified yet).
    expect(sent.bytesSent).toBeLessThan(size);
    expect(sent.bytesSent).toBeLessThanOrEqual(size - recorded * chunkBytes + 3);
    expect(describeTree(dest)).toEqual(describeTree(src));
    const whole = createChecksum('xxh3-64');
    whole.update(readFileSync(join(src, 'big.ibd')));
    const manifest = await readCompletedManifest(stateOf(dest));
    expect((manifest!.entries.find((e) => e.path === 'big.ibd') as { checksum?: string }).checksum).toBe(whole.digest());
    expect(existsSync(join(dest, STAGING_DIR))).toBe(false);
    expect(readdirSync(stateOf(dest))).toEqual([MANIFEST_FILE]);
  });

  test('a partly received file whose staging data was damaged resumes only from its last chunk still intact', async () => {
    const src = join(dir('src'), 'data');
    mkdirSync(src);
    const size = 12 * MiB;
    randomFile(join(src, 'big.ibd'), size);
    const dest = dir('dst');
    const authKey = newAuthKey();
    const chunkBytes = 1 * MiB;
    const first = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey, resumeChunkBytes: chunkBytes });
    const sender = startPeer(['send', src, '127.0.0.1', String(first.port), '6'], authKey);
    peers.push(sender);
    const stateFile = join(stateOf(dest), PARTIAL_FILE);
    const chunksOf = () => {
      try {
        return (JSON.parse(readFileSync(stateFile, 'utf8')) as { partial: Array<{ chunks: string[] }> }).partial[0]?.chunks.length ?? 0;
      } catch {
        return 0;
      }
    };
    while (chunksOf() < 6) await new Promise((r) => setTimeout(r, 20));
    await sender.kill9();
    await rejection(first.done);
    // Flip one byte in the third chunk of the staging file: chunks from there on must come again.
    const staged = join(dest, STAGING_DIR, readdirSync(join(dest, STAGING_DIR))[0]!);
    const fd = openSync(staged, 'r+');
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, 2 * chunkBytes + 100);
    b[0] = b[0]! ^ 0xff;
    writeSync(fd, b, 0, 1, 2 * chunkBytes + 100);
    closeSync(fd);

    const second = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey, resumeChunkBytes: chunkBytes });
    const sent = await send({ sourceDir: src, host: '127.0.0.1', port: second.port, authKey });
    await second.done;
    expect(sent.bytesSent).toBe(size - 2 * chunkBytes);
    expect(describeTree(dest)).toEqual(describeTree(src));
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

describe('durability in batches', () => {
  test('a file streamed and renamed into place is recorded as verified only after its batch is fsynced: a receiver stopped before that gets it again', async () => {
    const src = join(dir('src'), 'data');
    mkdirSync(src);
    makeTree(src, 2 * MiB, Array.from({ length: 6 }, (_, i) => [`t${i}.frm`, 900 + i] as [string, number]));
    const files = Object.entries(describeTree(src)).filter(([, e]) => e.type === 'file').map(([p]) => p);
    const dest = dir('dst');
    const authKey = newAuthKey();
    const held: string[][] = [];
    let hold!: () => void;
    const firstBatch = new Promise<void>((r) => (hold = r));
    const stop = new AbortController();
    // The first batch waits until the receiver is stopped: as if it were killed between the rename and the fsync.
    const first = await receive({
      destDir: dest,
      bindAddress: '127.0.0.1',
      authKey,
      signal: stop.signal,
      beforeBatchSync: (paths) => {
        held.push(paths);
        hold();
        return new Promise<void>((r) => stop.signal.addEventListener('abort', () => r(), { once: true }));
      },
    });
    const sending = send({ sourceDir: src, host: '127.0.0.1', port: first.port, authKey });
    sending.catch(() => undefined);
    await firstBatch;
    // Every file arrives and is renamed into place while the first batch waits for its sync...
    for (;;) {
      const here = files.filter((f) => existsSync(join(dest, f)));
      if (here.length === files.length) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(describeTree(dest)).toMatchObject(Object.fromEntries(files.map((f) => [f, describeTree(src)[f]])));
    // ...yet none is recorded as verified, and the receive does not finish.
    await new Promise((r) => setTimeout(r, 700));
    expect(held).toHaveLength(1);
    expect(held[0]!.length).toBeGreaterThan(0);
    expect(verifiedInState(stateOf(dest), STATE_FILE)).toEqual([]);
    expect(existsSync(join(stateOf(dest), MANIFEST_FILE))).toBe(false);
    stop.abort();
    expect((await rejection(first.done)).code).toBe('aborted');
    await rejection(sending);
    expect(verifiedInState(stateOf(dest), STATE_FILE)).toEqual([]);

    const second = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey });
    const sent = await send({ sourceDir: src, host: '127.0.0.1', port: second.port, authKey });
    const received = await second.done;
    expect(sent.filesSkipped).toBe(0);
    expect(received.filesReceived).toBe(files.length);
    expect(describeTree(dest)).toEqual(describeTree(src));
  });
});

describe('a source that changes while being sent', () => {
  /** Sends a fresh 16 MiB file at 8 MB/s and runs change() on it once 2 MiB went; both outcomes and the warnings. */
  async function sendChanging(change: (file: string) => void, sourceIsSnapshot: boolean) {
    const src = join(dir('src'), 'data');
    mkdirSync(src);
    randomFile(join(src, 'ibdata1'), 16 * MiB);
    const dest = dir('dst');
    const authKey = newAuthKey();
    const receiver = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey });
    const warnings: string[] = [];
    let changed = false;
    const sending = send({
      sourceDir: src,
      host: '127.0.0.1',
      port: receiver.port,
      authKey,
      bandwidthMBps: 8,
      sourceIsSnapshot,
      onWarning: (w) => warnings.push(w),
      progressIntervalMs: 0,
      onProgress: (p) => {
        if (!changed && p.bytesDone > 2 * MiB) {
          changed = true;
          change(join(src, 'ibdata1'));
        }
      },
    });
    const [sent, received] = await Promise.allSettled([sending, receiver.done]);
    expect(changed).toBe(true);
    return { dest, warnings, sent, received };
  }

  test('a file truncated mid-send is a warning and fails the send for good when the source is no snapshot; the receiver hears why', async () => {
    const { dest, warnings, sent, received } = await sendChanging((f) => truncateSync(f, 4 * MiB), false);
    expect(warnings).toEqual([expect.stringMatching(/ibdata1 changed while being sent \((it shrank|size 16777216 → 4194304)/)]);
    expect(sent.status).toBe('rejected');
    const err = (sent as PromiseRejectedResult).reason as AgentError;
    expect(err.message).toMatch(/changed while being sent.*not a consistent datadir/);
    expect(isPermanentFailure(err)).toBe(true);
    expect(received.status).toBe('rejected');
    const recvErr = (received as PromiseRejectedResult).reason as AgentError;
    expect(recvErr.message).toMatch(/the sender stopped the transfer: .*changed while being sent/);
    expect(isPermanentFailure(recvErr)).toBe(true);
    expect(existsSync(join(stateOf(dest), MANIFEST_FILE))).toBe(false);
  });

  test('a file that grows mid-send from a snapshot is a warning and the session may be retried', async () => {
    const { warnings, sent } = await sendChanging((f) => appendFileSync(f, 'more'), true);
    expect(warnings).toEqual([expect.stringMatching(/ibdata1 changed while being sent \(size 16777216 → 16777220 bytes/)]);
    expect(sent.status).toBe('rejected');
    const err = (sent as PromiseRejectedResult).reason as AgentError;
    expect(err.message).toMatch(/sent again with a new manifest/);
    expect(isPermanentFailure(err)).toBe(false);
  });
});

describe('without TLS, every frame after the handshake is authenticated', () => {
  let source: string;
  const original = 'server-uuid=1';
  const proxies: TamperingProxy[] = [];
  afterEach(async () => {
    for (const p of proxies.splice(0)) await p.close();
  });

  beforeAll(() => {
    source = join(dir('src'), 'data');
    mkdirSync(source);
    writeFileSync(join(source, 'auto.cnf'), `[auto]\n${original}\n`);
    chmodSync(join(source, 'auto.cnf'), 0o640);
    randomFile(join(source, 'ibdata1'), 2 * MiB);
  });

  /** A receiver, and a send to it through a proxy applying rules; both outcomes. */
  async function sendThrough(rules: Array<[string, string]>) {
    const dest = dir('dst');
    const authKey = newAuthKey();
    const receiver = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey });
    const proxy = await startTamperingProxy(receiver.port, rules);
    proxies.push(proxy);
    const sending = send({ sourceDir: source, host: '127.0.0.1', port: proxy.port, authKey });
    const [sent, received] = await Promise.allSettled([sending, receiver.done]);
    return { dest, proxy, sent, received };
  }

  test('a proxy rewriting the manifest (mode 0640 to 0777, owner 0 to 7) fails the transfer and nothing is written', async () => {
    const { dest, proxy, sent, received } = await sendThrough([
      ['"mode":416', '"mode":511'],
      ['"uid":0,', '"uid":7,'],
    ]);
    expect(proxy.hits()).toBeGreaterThanOrEqual(2);
    expect(received.status).toBe('rejected');
    expect(sent.status).toBe('rejected');
    const recvErr = (received as PromiseRejectedResult).reason as AgentError;
    expect(recvErr.message).toMatch(/a manifest frame failed authentication: it was changed on the way/);
    expect(recvErr.hint).toMatch(/SeedTransferUseSSL/);
    expect(((sent as PromiseRejectedResult).reason as AgentError).message).toMatch(/stopped the transfer: .*manifest frame failed authentication/);
    expect(readdirSync(dest)).toEqual([]);
    expect(existsSync(join(stateOf(dest), MANIFEST_FILE))).toBe(false);
  });

  test('a proxy replacing file content and its unkeyed checksum fails that file and the transfer', async () => {
    const xxh = (text: string) => {
      const c = createChecksum('xxh3-64');
      c.update(Buffer.from(text));
      return c.digest();
    };
    const forged = 'server-uuid=2';
    const { dest, proxy, sent, received } = await sendThrough([
      [original, forged],
      [xxh(`[auto]\n${original}\n`), xxh(`[auto]\n${forged}\n`)],
    ]);
    expect(proxy.hits()).toBeGreaterThanOrEqual(2);
    expect(received.status).toBe('rejected');
    expect(sent.status).toBe('rejected');
    expect(((received as PromiseRejectedResult).reason as AgentError).message).toMatch(/receiving auto\.cnf.*a data frame failed authentication/);
    expect(((sent as PromiseRejectedResult).reason as AgentError).message).toMatch(/data frame failed authentication/);
    expect(existsSync(join(dest, 'auto.cnf'))).toBe(false);
    expect(existsSync(join(stateOf(dest), MANIFEST_FILE))).toBe(false);
  });

  test('through a proxy that changes nothing, the transfer completes', async () => {
    const { dest, proxy, sent, received } = await sendThrough([['no such bytes in this tree', 'NO SUCH BYTES IN THIS TREE']]);
    expect(proxy.hits()).toBe(0);
    expect([sent.status, received.status]).toEqual(['fulfilled', 'fulfilled']);
    expect(describeTree(dest)).toEqual(describeTree(source));
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
    // A rate already, but no ETA from the first second's bytes.
    expect(seen[seen.length - 1]).toMatchObject({ bytesDone: 600, filesDone: 1, currentFile: 'a', rateBytesPerSec: 400, etaSeconds: null });
    clock.t = 1100;
    tracker.bytes(10); // within 250 ms of the last report: not reported
    expect(seen[seen.length - 1]!.bytesDone).toBe(600);
    clock.t = 4000;
    tracker.bytes(290);
    // 700 bytes this session in the 4 s since it started (all within the 5 s window): 175 B/s, 100 bytes left.
    expect(seen[seen.length - 1]).toMatchObject({ bytesDone: 900, rateBytesPerSec: 175, etaSeconds: 0.6 });
    expect(tracker.finish()).toMatchObject({ bytesDone: 900, currentFile: null });
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
