import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentError } from '../src/errors.js';
import { MANIFEST_FILE, PARTIAL_FILE, newAuthKey, readCompletedManifest, send, startReceiver } from '../src/transfer/index.js';
import { createChecksum } from '../src/transfer/checksum.js';
import { FrameType, FrameWriter } from '../src/transfer/protocol.js';
import { Packer, autoQueueBytes } from '../src/transfer/compression.js';
import type { TransferProgress } from '../src/transfer/progress.js';
import { PassThrough } from 'node:stream';
import { Encoder } from '@toondepauw/node-zstd';
import { startTamperingProxy, type TamperingProxy } from './support/tampering-proxy.js';
import { tempDir } from './support/agent-process.js';
import { HandSender } from './support/hand-sender.js';
import { describeTree, randomFile, rowsFile, startPeer, type Peer } from './support/transfer-tree.js';

const MiB = 1024 * 1024;
const dirs: string[] = [];
const peers: Peer[] = [];
const controllers: AbortController[] = [];
const proxies: TamperingProxy[] = [];

function dir(prefix: string): string {
  const d = tempDir(`oa-compress-${prefix}-`);
  dirs.push(d);
  return d;
}

const stateOf = (dest: string) => `${dest}.transfer-state`;

afterEach(async () => {
  for (const c of controllers.splice(0)) c.abort();
  for (const p of proxies.splice(0)) await p.close();
  await Promise.all(peers.splice(0).map((p) => p.kill9()));
});

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  for (const d of dirs) rmSync(stateOf(d), { recursive: true, force: true });
});

type ReceiveOpts = Omit<Parameters<typeof startReceiver>[0], 'signal' | 'stateDir'>;

function receive(opts: ReceiveOpts) {
  const c = new AbortController();
  controllers.push(c);
  return startReceiver({ ...opts, stateDir: stateOf(opts.destDir), signal: c.signal });
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

function xxh(buf: Buffer): string {
  const c = createChecksum('xxh3-64');
  c.update(buf);
  return c.digest();
}

/** A datadir-like tree: a big file of rows spanning several chunks, a random (incompressible) one, small ones. */
function compressibleTree(): string {
  const root = join(dir('src'), 'data');
  mkdirSync(join(root, 'shop'), { recursive: true });
  rowsFile(join(root, 'ibdata1'), 6 * MiB + 321);
  randomFile(join(root, 'shop/blobs.ibd'), 2 * MiB + 5);
  rowsFile(join(root, 'shop/orders.ibd'), 200_000);
  writeFileSync(join(root, 'shop/db.opt'), 'default-character-set=utf8mb4\n');
  writeFileSync(join(root, 'shop/empty.ibd'), '');
  return root;
}

describe('compression on the built-in transfer', () => {
  let source: string;
  beforeAll(() => {
    source = compressibleTree();
  });

  // The last two: a receiver from before zstd (it offers lz4 and brotli) gets what suits the mode of those.
  for (const [mode, codec, offered] of [
    ['fast', 'zstd', undefined],
    ['strong', 'zstd', undefined],
    ['fast', 'lz4', ['lz4', 'brotli']],
    ['strong', 'brotli', ['lz4', 'brotli']],
  ] as const) {
    test(`${mode}${offered ? ` to a receiver offering ${offered.join(' and ')}` : ''}: file data crosses as ${codec}, fewer bytes on the wire, and the copy is exact with checksums of the uncompressed bytes`, async () => {
      const dest = dir('dst');
      const authKey = newAuthKey();
      const receiver = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey, resumeChunkBytes: 1 * MiB, compressionCodecs: offered ? [...offered] : undefined });
      const reports: TransferProgress[] = [];
      const sent = await send({ sourceDir: source, host: '127.0.0.1', port: receiver.port, authKey, compression: mode, progressIntervalMs: 0, onProgress: (p) => reports.push(p) });
      await receiver.done;
      expect(sent.compression).toBe(codec);
      // The sender's progress says what the data cost on the wire.
      expect(reports.at(-1)?.wire).toEqual({ compression: codec, dataBytes: sent.bytesSent, wireBytes: sent.wireBytes });
      expect(sent.bytesSent).toBe(6 * MiB + 321 + 2 * MiB + 5 + 200_000 + 30);
      // The rows shrink; the random file goes as it is (a chunk that does not shrink is sent plain).
      expect(sent.wireBytes).toBeLessThan(sent.bytesSent * 0.8);
      expect(sent.wireBytes).toBeGreaterThan(2 * MiB);
      expect(describeTree(dest)).toEqual(describeTree(source));
      const manifest = await readCompletedManifest(stateOf(dest));
      for (const path of ['ibdata1', 'shop/blobs.ibd', 'shop/orders.ibd']) {
        expect((manifest!.entries.find((e) => e.path === path) as { checksum?: string }).checksum).toBe(xxh(readFileSync(join(source, path))));
      }
    });
  }

  test('off sends plain data frames to a receiver that offers compression', async () => {
    const dest = dir('dst');
    const authKey = newAuthKey();
    const receiver = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey });
    const reports: TransferProgress[] = [];
    const sent = await send({ sourceDir: source, host: '127.0.0.1', port: receiver.port, authKey, compression: 'off', progressIntervalMs: 0, onProgress: (p) => reports.push(p) });
    await receiver.done;
    expect(sent.compression).toBeNull();
    expect(reports.length).toBeGreaterThan(0);
    expect(reports.some((p) => p.wire !== undefined)).toBe(false);
    expect(sent.wireBytes).toBe(sent.bytesSent);
    expect(describeTree(dest)).toEqual(describeTree(source));
  });

  test('a receiver that offers no compression (as before it existed) gets plain data frames from a sender asking for it, and the copy is exact', async () => {
    const dest = dir('dst');
    const authKey = newAuthKey();
    const receiver = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey, compressionCodecs: [] });
    const sent = await send({ sourceDir: source, host: '127.0.0.1', port: receiver.port, authKey, compression: 'fast' });
    await receiver.done;
    expect(sent.compression).toBeNull();
    expect(sent.wireBytes).toBe(sent.bytesSent);
    expect(describeTree(dest)).toEqual(describeTree(source));
  });

  test('a receiver offering only brotli gets brotli from a fast sender', async () => {
    const dest = dir('dst');
    const authKey = newAuthKey();
    const receiver = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey, compressionCodecs: ['brotli'] });
    const sent = await send({ sourceDir: source, host: '127.0.0.1', port: receiver.port, authKey, compression: 'fast' });
    await receiver.done;
    expect(sent.compression).toBe('brotli');
    expect(describeTree(dest)).toEqual(describeTree(source));
  });

  test('a sender that names no codec (as before compression) is received as before by a receiver offering it', async () => {
    const dest = dir('dst');
    const authKey = newAuthKey();
    const content = Buffer.from('row 1\nrow 2\n'.repeat(1000));
    const receiver = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey });
    const hand = await HandSender.start(receiver.port, authKey, [{ path: 't.ibd', content }]);
    hand.sendFile(0);
    hand.sendEnd();
    expect((await hand.answer())?.type).toBe(FrameType.result);
    await receiver.done;
    expect(readFileSync(join(dest, 't.ibd')).equals(content)).toBe(true);
  });

  const rows = Buffer.from('row\n'.repeat(1000));

  /**
   * A hand sender's transfer of one file (rows) whose data goes as a ZDATA frame [codec][declared][body]; answers
   * the receiver's failure. thenFileEnd: a FILE_END follows (frames decode a few ahead, and the next frame of
   * another type waits for them, meeting a failure found while decoding).
   */
  async function refusedZdata(codec: number, declared: number, body: Buffer, thenFileEnd = false): Promise<{ err: AgentError; dest: string }> {
    const dest = dir('dst');
    const authKey = newAuthKey();
    const receiver = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey });
    const hand = await HandSender.start(receiver.port, authKey, [{ path: 't.ibd', content: rows }]);
    const head = Buffer.alloc(5);
    head.writeUInt8(codec, 0);
    head.writeUInt32BE(declared, 1);
    hand.sendFrame(FrameType.fileBegin, Buffer.from(JSON.stringify({ index: 0, offset: 0 })));
    hand.sendFrame(FrameType.zdata, Buffer.concat([head, body]));
    if (thenFileEnd) hand.sendFrame(FrameType.fileEnd, Buffer.from(JSON.stringify({ index: 0, checksum: null })));
    return { err: await rejection(receiver.done), dest };
  }

  test('a compressed frame that declares more bytes than its file has left is refused, and nothing is written', async () => {
    const { err, dest } = await refusedZdata(2 /* brotli */, 1 << 30, Buffer.from('not brotli'));
    expect(err.message).toMatch(/receiving t\.ibd.*compressed data frame of t\.ibd declares 1073741824 bytes, more than the 4000 the file has left/);
    expect(existsSync(join(dest, 't.ibd'))).toBe(false);
    expect(existsSync(join(stateOf(dest), MANIFEST_FILE))).toBe(false);
  });

  test('a zstd frame that decodes to another size than it declares is refused, and nothing is written', async () => {
    // zstd frames do not say their size up front: the receiver checks it once decoded.
    const longer = await new Encoder(1).encode(Buffer.concat([rows, rows]));
    const { err, dest } = await refusedZdata(3 /* zstd */, rows.length, longer, true);
    expect(err.message).toMatch(/receiving t\.ibd.*compressed data frame of t\.ibd decodes to 8000 bytes, not the 4000 it declares/);
    expect(existsSync(join(dest, 't.ibd'))).toBe(false);
    expect(existsSync(join(stateOf(dest), MANIFEST_FILE))).toBe(false);
  });

  test('a sender killed mid-file with compression on resumes that file from its last verified chunk, and the copy verifies', async () => {
    const src = join(dir('src'), 'data');
    mkdirSync(src);
    const size = 24 * MiB + 12345;
    rowsFile(join(src, 'big.ibd'), size);
    writeFileSync(join(src, 'small.frm'), 'frm');
    const dest = dir('dst');
    const authKey = newAuthKey();
    const chunkBytes = 1 * MiB;
    const first = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey, resumeChunkBytes: chunkBytes });
    // 8 MB/s of file bytes: slow enough to be killed mid-file.
    const sender = startPeer(['send', src, '127.0.0.1', String(first.port), '8'], authKey, { ORCHESTRATOR_AGENT_TRANSFER_COMPRESSION: 'fast' });
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
    expect(recorded * chunkBytes).toBeLessThan(size);

    const second = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey, resumeChunkBytes: chunkBytes });
    const sent = await send({ sourceDir: src, host: '127.0.0.1', port: second.port, authKey, compression: 'fast' });
    await second.done;
    expect(sent.compression).toBe('zstd');
    expect(sent.bytesSent).toBeLessThanOrEqual(size - recorded * chunkBytes + 3);
    expect(sent.wireBytes).toBeLessThan(sent.bytesSent);
    expect(describeTree(dest)).toEqual(describeTree(src));
    const manifest = await readCompletedManifest(stateOf(dest));
    expect((manifest!.entries.find((e) => e.path === 'big.ibd') as { checksum?: string }).checksum).toBe(xxh(readFileSync(join(src, 'big.ibd'))));
    expect(readdirSync(stateOf(dest))).toEqual([MANIFEST_FILE]);
  });

  test('without TLS, a proxy changing bytes inside a compressed frame fails its tag and the transfer', async () => {
    const src = join(dir('src'), 'data');
    mkdirSync(src);
    // zstd (as lz4) keeps these first bytes as plain literals: the proxy finds the pattern in the compressed frame.
    writeFileSync(join(src, 'auto.cnf'), `[auto]\nserver-uuid=1\n${'padding line\n'.repeat(5000)}`);
    const dest = dir('dst');
    const authKey = newAuthKey();
    const receiver = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey });
    const proxy = await startTamperingProxy(receiver.port, [['server-uuid=1', 'server-uuid=2']]);
    proxies.push(proxy);
    const [sent, received] = await Promise.allSettled([send({ sourceDir: src, host: '127.0.0.1', port: proxy.port, authKey, compression: 'fast' }), receiver.done]);
    expect(proxy.hits()).toBe(1);
    expect(received.status).toBe('rejected');
    expect(sent.status).toBe('rejected');
    expect(((received as PromiseRejectedResult).reason as AgentError).message).toMatch(/receiving auto\.cnf.*a zdata frame failed authentication/);
    expect(existsSync(join(dest, 'auto.cnf'))).toBe(false);
    expect(existsSync(join(stateOf(dest), MANIFEST_FILE))).toBe(false);
  });

  test('auto compresses a chunk only while the socket still holds a backlog (the link is slower than the disk)', async () => {
    const socket = new PassThrough();
    const writer = new FrameWriter(socket);
    const packer = new Packer('lz4', 'auto', socket);
    const rows = Buffer.from('1,7919,10.47,paid,user31@example.com\n'.repeat(30_000));
    /** The peer reads everything sent so far: no backlog left. */
    const drain = async () => {
      while (socket.writableLength > 0 || socket.readableLength > 0) {
        socket.read();
        await new Promise((r) => setImmediate(r));
      }
    };
    await packer.send(writer, rows);
    expect(packer.wireBytes).toBe(rows.length); // nothing queued: sent as it is
    await drain();
    await packer.send(writer, rows);
    expect(packer.wireBytes).toBe(2 * rows.length);
    await drain();
    // A backlog the peer has not read yet: the next chunk is compressed.
    socket.write(Buffer.alloc(autoQueueBytes));
    await packer.send(writer, rows);
    expect(packer.rawBytes).toBe(3 * rows.length);
    expect(packer.wireBytes - 2 * rows.length).toBeLessThan(rows.length / 4);
  });

  describe('over TLS', () => {
    let tls: { key: Buffer; cert: Buffer; ca: Buffer };
    beforeAll(() => {
      const certs = dir('certs');
      const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: certs, stdio: 'pipe' });
      const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
      ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=compress-test-ca');
      ssl('req', ...ec, '-keyout', 'agent.key', '-out', 'agent.csr', '-subj', '/CN=127.0.0.1');
      writeFileSync(join(certs, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
      ssl('x509', '-req', '-in', 'agent.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'agent.crt', '-days', '1', '-extfile', 'ext.cnf');
      tls = { key: readFileSync(join(certs, 'agent.key')), cert: readFileSync(join(certs, 'agent.crt')), ca: readFileSync(join(certs, 'ca.crt')) };
    });

    test('compressed data crosses TLS and the copy is exact', async () => {
      const dest = dir('dst');
      const authKey = newAuthKey();
      const receiver = await receive({ destDir: dest, bindAddress: '127.0.0.1', authKey, tls });
      const sent = await send({ sourceDir: source, host: '127.0.0.1', port: receiver.port, authKey, tls, compression: 'fast' });
      await receiver.done;
      expect(sent.compression).toBe('zstd');
      expect(sent.wireBytes).toBeLessThan(sent.bytesSent);
      expect(describeTree(dest)).toEqual(describeTree(source));
    });
  });
});
