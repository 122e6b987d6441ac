// The sending side of the built-in transfer: walks the source tree, proves the seed's key to the receiver,
// learns which files the receiver already verified, and streams the rest with a checksum computed on the way.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Socket } from 'node:net';
import { open, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { AgentError, asAgentError } from '../errors.js';
import { log } from '../log.js';
import { frameKeys, newNonce, proof, proofMatches } from './auth.js';
import { alreadyVerified, walkSource, type FileEntry, type VerifiedFile } from './manifest.js';
import { FrameReader, FrameType, FrameWriter, MAGIC, PROTOCOL_VERSION, errorBody, peerError, writeAll } from './protocol.js';
import { ProgressTracker, type ProgressListener } from './progress.js';
import { bandwidthLimiter } from './throttle.js';
import { transferConnect, type TransferTls } from './tls.js';
import { clampDelay } from '../timers.js';
import { DEFAULT_CHECKSUM, createChecksum, type ChecksumAlgorithm } from './checksum.js';
import { Packer, chooseCodec, offeredCodecs, type Codec, type CompressionMode } from './compression.js';

export interface SendOptions {
  /** The tree to send (a datadir or a mounted snapshot). */
  sourceDir: string;
  host: string;
  port: number;
  tls?: TransferTls;
  /** The key the receiving seed generated and handed over through the seed API. */
  authKey: string;
  /** MB/s (10^6 bytes); 0 or undefined = unlimited (SeedTransferBandwidthMBps). */
  bandwidthMBps?: number;
  /** Stops the send (the seed aborted, or the agent stopping): the connection is cut, with no ERROR frame. */
  signal?: AbortSignal;
  onProgress?: ProgressListener;
  /** Called once the receiver proved the key, before any data is sent (the seed records it durably). */
  onReceiverAuthenticated?: () => void;
  connectTimeoutMs?: number;
  /** How long the receiver may stay silent (e.g. while it makes the last files durable). Default 120 s. */
  idleTimeoutMs?: number;
  progressIntervalMs?: number;
  /** Default xxh3-64 (see checksum.ts for why); sha256 when a cryptographic digest is wanted in the manifest. */
  checksum?: ChecksumAlgorithm;
  /** Read size; 1 MiB by default (measured in bench/run.ts). */
  chunkBytes?: number;
  /**
   * Runs after the last file was read, before the final frame lets the receiver finish, and after a read
   * fails: throwing stops the transfer (e.g. the snapshot being read was invalidated meanwhile). Its error
   * is sent to the receiver and replaces the read error.
   */
  verifySource?: () => Promise<void>;
  /**
   * The source is a read-only snapshot (the seed mounted it itself). A file that changes while being sent is
   * then a warning and the session fails so a new one sends it again; otherwise (a live or already-mounted
   * directory) it is fatal: the copy would not be a consistent datadir.
   */
  sourceIsSnapshot?: boolean;
  /** Told of a source file that changed while being sent (always, fatal or not). */
  onWarning?: (message: string) => void;
  /** Compression on the wire (SeedTransferCompression, compression.ts); off by default, and off with a receiver that offers none. */
  compression?: CompressionMode;
}

export interface SendResult {
  bytesSent: number;
  filesSent: number;
  /** Files the receiver had verified in an earlier session. */
  filesSkipped: number;
  bytesTotal: number;
  filesTotal: number;
  seconds: number;
  /** The codec agreed with the receiver, or null (compression off, or a receiver without it). */
  compression: Codec | null;
  /** Bytes on the wire for the file data of bytesSent (smaller than it when compression helped). */
  wireBytes: number;
}

/** Sends sourceDir; resolves only after the receiver reports every file verified and its manifest durable. */
export async function send(opts: SendOptions): Promise<SendResult> {
  const started = performance.now();
  const peer = `receiver ${opts.host}:${opts.port}`;
  if (opts.signal?.aborted) throw new AgentError('aborted', `send to ${peer} aborted before it started`);
  const root = resolve(opts.sourceDir);
  const entries = await walkSource(root);
  const files = entries.map((e, index) => ({ e, index })).filter((x): x is { e: FileEntry; index: number } => x.e.type === 'file');

  let where = 'connecting';
  let firstError: AgentError | undefined;
  let peerFailure: AgentError | undefined;
  let authenticated = false;
  const socket = await connect(opts, peer);
  const reader = new FrameReader(socket);
  const writer = new FrameWriter(socket);
  socket.on('error', () => undefined); // surfaces through the reader and writeAll
  socket.setNoDelay(true); // a frame's tail must not wait for a delayed ACK
  const fail = (err: unknown) => {
    firstError ??= asAgentError(err);
    reader.fail(firstError);
    socket.destroy();
  };
  const onAbort = () => fail(new AgentError('aborted', `send to ${peer} aborted (${where})`));
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const idleMs = opts.idleTimeoutMs ?? 120_000;
  socket.setTimeout(idleMs, () => fail(new AgentError('unavailable', `${peer} did not answer for ${Math.round(idleMs / 1000)} s (${where})`)));

  try {
    where = 'during the handshake';
    const wb = await handshake(opts, peer, socket, reader, writer, where);
    const packer = wb.codec ? new Packer(wb.codec, opts.compression ?? 'off', socket) : undefined;
    const sendData = (buf: Buffer, onWritten?: () => void) => (packer ? packer.send(writer, buf, onWritten) : writer.data(buf, onWritten));
    opts.onReceiverAuthenticated?.();
    authenticated = true;
    const algorithm = opts.checksum ?? DEFAULT_CHECKSUM;
    const have = new Map<string, VerifiedFile>();
    if (Array.isArray(wb.have)) for (const v of wb.have as VerifiedFile[]) if (v && typeof v.path === 'string') have.set(v.path, v);
    const chunkBytes = typeof wb.chunkBytes === 'number' && Number.isInteger(wb.chunkBytes) && wb.chunkBytes > 0 ? wb.chunkBytes : undefined;
    if (!chunkBytes) throw new AgentError('bad_request', `${peer} did not say how it checks chunks`, { hint: 'run the same agent version on both hosts' });

    const toSend = files.filter((f) => !alreadyVerified(f.e, have.get(f.e.path)));
    // Where partly received files resume: the receiver verified their first chunks of this same version.
    const resumeAt = new Map<string, number>();
    const offered = Array.isArray(wb.resume) ? (wb.resume as Array<Record<string, unknown>>) : [];
    for (const { e } of toSend) {
      const r = offered.find((o) => o && o.path === e.path);
      const offset = r?.offset;
      if (r && r.size === e.size && r.mtimeMs === e.mtimeMs && r.algorithm === algorithm && typeof offset === 'number' && offset > 0 && offset < e.size && offset % chunkBytes === 0) {
        resumeAt.set(e.path, offset);
      }
    }
    const bytesTotal = files.reduce((s, f) => s + f.e.size, 0);
    const progress = new ProgressTracker(bytesTotal, files.length, opts.onProgress, opts.progressIntervalMs);
    if (packer) progress.reportWire(() => packer.wireStats());
    const skipped = files.length - toSend.length;
    progress.alreadyDone(skipped, bytesTotal - toSend.reduce((s, f) => s + f.e.size, 0));

    where = 'sending the manifest';
    await writer.json(FrameType.manifest, { algorithm, entries });
    // From here the receiver speaks only to end the transfer: RESULT, or ERROR at any moment.
    let result: unknown;
    const answer = reader.json([FrameType.result], 'before the transfer finished').then(
      (f) => {
        if (f.type === FrameType.error) {
          peerFailure = peerError(f.body, peer);
          fail(peerFailure);
        } else result = f.body;
      },
      (err) => fail(err),
    );

    const limiter = bandwidthLimiter(opts.bandwidthMBps);
    // Under a low bandwidth limit, reads no larger than the limiter's burst: the data then flows at the rate
    // (and progress moves) instead of in 1 MiB bursts separated by long pauses.
    const chunk = opts.chunkBytes ?? (limiter ? Math.min(1024 * 1024, Math.max(16 * 1024, limiter.burstBytes)) : 1024 * 1024);
    let bytesSent = 0;
    // Enough for the reads ahead and the few MiB the socket keeps queued (writeAll).
    const readBuffers = new ReadBuffers(chunk, readsAhead + 8);
    // Small files (one read) are read ahead across files, so the socket never waits for an open and a read
    // of each of a datadir's hundreds of small files in turn.
    const small = (e: FileEntry) => e.size <= chunk && e.size <= chunkBytes && !resumeAt.has(e.path);
    const prefetched = new Map<string, Promise<SmallFile>>();
    let prefetchAt = 0;
    let prefetchBytes = 0;
    const prefetch = (from: number) => {
      prefetchAt = Math.max(prefetchAt, from);
      while (prefetchAt < toSend.length && prefetched.size < smallFilesAhead && prefetchBytes < smallBytesAhead) {
        const { e } = toSend[prefetchAt++]!;
        if (!small(e)) continue;
        const read = readSmallFile(join(root, e.path), e.size);
        read.then((f) => void ('buf' in f && packer?.ahead(f.buf)), () => undefined); // awaited in order below
        prefetched.set(e.path, read);
        prefetchBytes += e.size;
      }
    };
    try {
    for (const [n, { e, index }] of toSend.entries()) {
      where = `sending ${e.path}`;
      const offset = resumeAt.get(e.path) ?? 0;
      progress.fileStarted(e.path);
      progress.alreadyDone(0, offset);
      // Control frames ride with the next data (or the next file's), one write per small file.
      writer.hold(FrameType.fileBegin, { index, offset });
      if (small(e)) {
        prefetch(n);
        const read = prefetched.get(e.path) ?? readSmallFile(join(root, e.path), e.size);
        prefetched.delete(e.path);
        const f = await read;
        prefetchBytes -= e.size;
        prefetch(n + 1);
        const changed = (what: string) => sourceChanged(join(root, e.path), what, opts);
        if ('openError' in f) throw new AgentError('io', `cannot open ${join(root, e.path)}: ${f.openError}`);
        if (f.after.size !== e.size || f.after.mtimeMs !== e.mtimeMs) throw changed(describeChange(e, f.after));
        if (f.buf.length < e.size) throw changed(`it shrank: only ${f.buf.length} of its ${e.size} bytes could be read`);
        if (limiter) await limiter.take(f.buf.length, opts.signal);
        if (firstError) throw firstError;
        if (e.size > 0) {
          const checksum = createChecksum(algorithm);
          checksum.update(f.buf);
          await sendData(f.buf);
          writer.hold(FrameType.chunk, { index, end: e.size, checksum: checksum.digest() });
        }
        progress.bytes(e.size);
        bytesSent += e.size;
        writer.hold(FrameType.fileEnd, { index, checksum: null });
        progress.fileDone();
        continue;
      }
      // Every chunk's checksum goes to the receiver, which checks each one (and computes the whole file's for
      // its manifest): one pass over the data here.
      let chunkHash = createChecksum(algorithm);
      const fh = await open(join(root, e.path), 'r').catch((err: NodeJS.ErrnoException) => {
        throw new AgentError('io', `cannot open ${join(root, e.path)}: ${err.code ?? err.message}`);
      });
      const changed = (what: string) => sourceChanged(join(root, e.path), what, opts);
      // Reads run a few chunks ahead of the socket (read-ahead), each at its own position, never across a
      // chunk boundary (the receiver checks each chunk as it completes).
      const ahead: Array<{ read: Promise<Buffer>; length: number }> = [];
      let readPos = offset;
      const readAhead = () => {
        while (ahead.length < readsAhead && readPos < e.size) {
          const length = Math.min(chunk, e.size - readPos, chunkBytes - (readPos % chunkBytes));
          const read = packer ? readChunk(fh, readPos, length, readBuffers).then(packer.ahead) : readChunk(fh, readPos, length, readBuffers);
          read.catch(() => undefined); // awaited in order below; only marks it handled meanwhile
          ahead.push({ read, length });
          readPos += length;
        }
      };
      try {
        const before = await fh.stat();
        if (before.size !== e.size || before.mtimeMs !== e.mtimeMs) throw changed(describeChange(e, before));
        let pos = offset;
        readAhead();
        while (pos < e.size) {
          const next = ahead.shift()!;
          const buf = await next.read;
          if (buf.length < next.length) throw changed(`it shrank: only ${pos + buf.length} of its ${e.size} bytes could be read`);
          pos += buf.length;
          readAhead();
          chunkHash.update(buf);
          if (limiter) await limiter.take(buf.length, opts.signal);
          if (firstError) throw firstError;
          await sendData(buf, () => readBuffers.give(buf));
          progress.bytes(buf.length);
          bytesSent += buf.length;
          if (pos === e.size) {
            // Written to while we read it: what was sent is no consistent version of the file.
            const after = await fh.stat();
            if (after.size !== e.size || after.mtimeMs !== e.mtimeMs) throw changed(describeChange(e, after));
          }
          if (pos % chunkBytes === 0 || pos === e.size) {
            writer.hold(FrameType.chunk, { index, end: pos, checksum: chunkHash.digest() });
            chunkHash = createChecksum(algorithm);
          }
        }
        if (e.size === 0) {
          const after = await fh.stat();
          if (after.size !== 0 || after.mtimeMs !== e.mtimeMs) throw changed(describeChange(e, after));
        }
      } finally {
        await Promise.allSettled(ahead.map((a) => a.read));
        await fh.close();
      }
      writer.hold(FrameType.fileEnd, { index, checksum: null });
      progress.fileDone();
    }
    } finally {
      await Promise.allSettled(prefetched.values());
    }
    where = 'checking the source after reading it';
    await opts.verifySource?.();
    where = 'waiting for the receiver to verify and write its manifest';
    await writer.json(FrameType.end, {});
    await answer;
    if (firstError) throw firstError;
    if (result === undefined) throw new AgentError('io', `${peer} closed without confirming the transfer`);
    progress.finish();
    socket.end();
    const seconds = (performance.now() - started) / 1000;
    const r: SendResult = {
      bytesSent,
      filesSent: toSend.length,
      filesSkipped: skipped,
      bytesTotal,
      filesTotal: files.length,
      seconds,
      compression: packer?.codec ?? null,
      wireBytes: packer?.wireBytes ?? bytesSent,
    };
    // The mode says which level the codec ran at (fast and strong may both be zstd).
    log.info('transfer: send complete', { peer, mode: opts.compression ?? 'off', ...r });
    return r;
  } catch (caught) {
    let err = caught;
    // Our side failed (a read, the source check), not the connection: a source that can no longer be
    // trusted (a snapshot invalidated meanwhile) explains a read error better than the read error does.
    if (opts.verifySource && authenticated && !firstError && !peerFailure && where !== 'checking the source after reading it') {
      await opts.verifySource().catch((e: unknown) => (err = e));
    }
    // Tell the receiver why, so it does not wait for a sender that will not come back (a permanent failure).
    // Not when stopped (the seed aborted, or this agent stopping: one signal for both): the connection is
    // only cut, so the receiver waits for this sender to come back; an aborted seed's cleanup tells it why.
    const own = asAgentError(err);
    if (authenticated && !peerFailure && own.details?.fromPeer !== true && !opts.signal?.aborted) writer.error(own);
    fail(err);
    // A receiver's ERROR frame explains a broken pipe better than the broken pipe does.
    await new Promise((r) => setTimeout(r, 50));
    const e = peerFailure ?? firstError ?? asAgentError(err);
    throw e.message.includes(where) || e.message.includes(peer)
      ? e
      : new AgentError(e.code === 'internal' ? 'io' : e.code, `send to ${peer} failed ${where}: ${e.message}`, { hint: e.hint, cause: err });
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    socket.destroy();
  }
}

type HandshakeOptions = Pick<SendOptions, 'authKey' | 'tls' | 'compression'>;

/** Proves the key to the receiver and checks its proof back; answers the receiver's WELCOME body. */
async function handshake(
  opts: HandshakeOptions,
  peer: string,
  socket: Socket,
  reader: FrameReader,
  writer: FrameWriter,
  where: string,
): Promise<{ mac?: unknown; have?: unknown; resume?: unknown; chunkBytes?: unknown; codec?: Codec }> {
  await writeAll(socket, [MAGIC]);
  const hello = await reader.json([FrameType.hello], where).catch((err) => {
    throw closedEarly(err, peer, !!opts.tls);
  });
  if (hello.type === FrameType.error) throw peerError(hello.body, peer);
  const hb = hello.body as { version?: unknown; nonce?: unknown };
  if (hb.version !== PROTOCOL_VERSION || typeof hb.nonce !== 'string') {
    throw new AgentError('bad_request', `${peer} speaks transfer protocol ${String(hb.version)}, this sender ${PROTOCOL_VERSION}`, { hint: 'run the same agent version on both hosts' });
  }
  const myNonce = newNonce();
  // A receiver without compression offers no codec: this sender then sends plain DATA frames, as before.
  const codec = chooseCodec(opts.compression, offeredCodecs(hb));
  await writer.json(FrameType.auth, { mac: proof(opts.authKey, 'sender', hb.nonce), nonce: myNonce, version: PROTOCOL_VERSION, ...(codec ? { compression: codec } : {}) });
  if (!opts.tls) {
    // From WELCOME on, every frame both ways carries a tag (TLS already protects its own records).
    const keys = frameKeys(opts.authKey, hb.nonce, myNonce);
    reader.authenticate(keys.receiverToSender);
    writer.authenticate(keys.senderToReceiver);
  }
  // A receiver refusing the key cannot tag its ERROR frame with a key it does not share.
  const welcome = await reader.json([FrameType.welcome], where, { plainError: true });
  if (welcome.type === FrameType.error) {
    const e = peerError(welcome.body, peer);
    throw e.code === 'unauthorized'
      ? new AgentError('unauthorized', `${peer} refused this sender: wrong transfer key`, { hint: 'pass the key the receiving seed reported' })
      : e;
  }
  const wb = welcome.body as { mac?: unknown; have?: unknown; resume?: unknown; chunkBytes?: unknown };
  if (!proofMatches(opts.authKey, 'receiver', myNonce, wb.mac)) {
    throw new AgentError('unauthorized', `${peer} could not prove it holds the transfer key`, { hint: 'check host and port point at the receiving agent' });
  }
  return { ...wb, codec };
}

export type TellReceiverOptions = Pick<SendOptions, 'host' | 'port' | 'tls' | 'authKey' | 'signal'> & {
  /** How long to keep trying to reach a receiver that is not listening yet (default 20 s). */
  withinMs?: number;
};

/**
 * A source seed that will not send (it failed before or during sending, or was aborted) tells its receiver
 * why over a short transfer connection: the handshake with the seed's key, then one ERROR frame marked
 * permanent, so the target seed ends within seconds with this reason instead of at its connect deadline.
 * Tries to reach a receiver that is not listening yet for `withinMs`; answers whether the receiver was told.
 */
export async function tellReceiver(opts: TellReceiverOptions, reason: AgentError): Promise<boolean> {
  const peer = `receiver ${opts.host}:${opts.port}`;
  const until = Date.now() + (opts.withinMs ?? 20_000);
  for (;;) {
    if (opts.signal?.aborted) return false;
    let socket: Socket | undefined;
    try {
      socket = await connect({ ...opts, sourceDir: '', connectTimeoutMs: 5000 }, peer);
      socket.on('error', () => undefined);
      const reader = new FrameReader(socket);
      const writer = new FrameWriter(socket);
      const timer = setTimeout(() => reader.fail(new AgentError('unavailable', `${peer} did not answer the handshake`)), 15_000);
      try {
        await handshake(opts, peer, socket, reader, writer, 'while telling it why this sender stops');
      } finally {
        clearTimeout(timer);
      }
      await writer.json(FrameType.error, errorBody(new AgentError(reason.code, reason.message, { hint: reason.hint, details: { permanent: true } })));
      await new Promise<void>((r) => socket!.end(r));
      log.info('transfer: told the receiver why this sender stops', { peer, reason: reason.message });
      return true;
    } catch (err) {
      const e = asAgentError(err);
      // Not listening (yet, or any more): try again for a while; any other answer will not change.
      if (e.code !== 'unavailable' || Date.now() >= until) {
        log.warn('transfer: could not tell the receiver why this sender stops', { peer, error: e.message });
        return false;
      }
      // The agent stopping cuts the pause short (a background teller must not hold its exit).
      await sleep(1000, undefined, { signal: opts.signal }).catch(() => undefined);
    } finally {
      socket?.destroy();
    }
  }
}

const readsAhead = 3;
/** Small files read ahead of the one being sent, at most this many and this many bytes. */
const smallFilesAhead = 64;
const smallBytesAhead = 16 * 1024 * 1024;

type SmallFile = { openError: string } | { buf: Buffer; after: { size: number; mtimeMs: number } };

/**
 * Opens, reads whole (up to size) and stats a small file; the caller judges what it finds. One stat, after
 * the read: a change before or during it shows there as a size or mtime other than the manifest's.
 */
async function readSmallFile(path: string, size: number): Promise<SmallFile> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    return { openError: (err as NodeJS.ErrnoException).code ?? (err as Error).message };
  }
  try {
    const buf = size > 0 ? await readChunk(fh, 0, size) : Buffer.alloc(0);
    const after = await fh.stat();
    return { buf, after };
  } finally {
    await fh.close();
  }
}

function describeChange(e: FileEntry, now: { size: number; mtimeMs: number }): string {
  const parts: string[] = [];
  if (now.size !== e.size) parts.push(`size ${e.size} → ${now.size} bytes`);
  if (now.mtimeMs !== e.mtimeMs) parts.push(`mtime ${new Date(e.mtimeMs).toISOString()} → ${new Date(now.mtimeMs).toISOString()}`);
  return parts.join(', ');
}

/** A source file changed under the sender: reported as a warning, and fatal unless the source is a snapshot. */
function sourceChanged(file: string, what: string, opts: SendOptions): AgentError {
  const message = `${file} changed while being sent (${what})`;
  try {
    opts.onWarning?.(message);
  } catch (err) {
    log.warn('transfer: onWarning listener failed', { error: String(err) });
  }
  if (opts.sourceIsSnapshot) {
    return new AgentError('conflict', `${message}; the snapshot is sent again with a new manifest`, { hint: 'a read-only snapshot should not change: check what writes to it' });
  }
  return new AgentError('conflict', `${message}; a copy of a changing directory is not a consistent datadir`, {
    hint: 'send from a read-only snapshot, or stop MySQL on the source first',
    details: { permanent: true },
  });
}

/**
 * Read buffers of one size, given back once the socket has taken their bytes: a large file is read into a few
 * buffers over and over instead of a fresh 1 MiB allocation per read (whose pages the kernel must clear, and
 * whose external memory drives V8's garbage collections).
 */
class ReadBuffers {
  private readonly free: Buffer[] = [];
  constructor(
    readonly size: number,
    private readonly keep: number,
  ) {}

  take(length: number): Buffer {
    return length === this.size ? (this.free.pop() ?? Buffer.allocUnsafe(this.size)) : Buffer.allocUnsafe(length);
  }

  give(buf: Buffer): void {
    if (buf.length === this.size && this.free.length < this.keep) this.free.push(buf);
  }
}

async function readChunk(fh: FileHandle, position: number, length: number, buffers?: ReadBuffers): Promise<Buffer> {
  const buf = buffers ? buffers.take(length) : Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got === length ? buf : buf.subarray(0, got);
}

function closedEarly(err: unknown, peer: string, tls: boolean): AgentError {
  const e = asAgentError(err);
  if (e.code === 'aborted' || e.code === 'unavailable') return e;
  return new AgentError('io', `${peer} closed the connection before the handshake: ${e.message}`, {
    hint: tls ? 'check the receiver runs the built-in transfer on this port' : 'if the receiving agent uses TLS for transfers (SeedTransferUseSSL), enable it here too',
  });
}

function connect(opts: SendOptions, peer: string): Promise<Socket> {
  const timeoutMs = opts.connectTimeoutMs ?? 30_000;
  return new Promise<Socket>((resolveSocket, reject) => {
    const socket: Socket = transferConnect(opts.host, opts.port, opts.tls);
    const event = opts.tls ? 'secureConnect' : 'connect';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new AgentError('unavailable', `cannot reach ${peer} within ${Math.round(timeoutMs / 1000)} s`));
    }, clampDelay(timeoutMs));
    const onAbort = () => {
      socket.destroy();
      reject(new AgentError('aborted', `send to ${peer} aborted while connecting`));
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    socket.once(event, () => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      resolveSocket(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      const tlsHint = opts.tls ? 'if the receiving agent does not use TLS for transfers (SeedTransferUseSSL), disable it here too' : undefined;
      reject(
        new AgentError('unavailable', `cannot connect to ${peer}: ${err.code ?? err.message}`, {
          hint: err.code === 'ECONNREFUSED' ? 'the receiver is not listening; start the receive first and use the port it reports' : tlsHint,
        }),
      );
    });
  });
}
