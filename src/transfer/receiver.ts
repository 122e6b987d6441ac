// The receiving side of the built-in transfer: listens on a port it chooses, authenticates one sender, writes
// each file under a staging name, verifies its checksum, makes it durable and renames it into place, keeps a
// durable list of verified files, and writes the final manifest last, only when every file verified.
import type { Server, Socket } from 'node:net';
import { lchown, lstat, mkdir, rename, rm, symlink, unlink, utimes, chmod, chown, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { AgentError, asAgentError } from '../errors.js';
import { log } from '../log.js';
import { isWithin } from '../validate.js';
import { transferStats } from './stats.js';
import { frameKeys, newNonce, proof, proofMatches } from './auth.js';
import { fsyncDir, unlinkDurably, writeFileDurably } from './durable.js';
import {
  MANIFEST_FILE,
  STAGING_DIR,
  alreadyVerified,
  validateManifest,
  type FileEntry,
  type FinalManifest,
  type ManifestEntry,
  type VerifiedFile,
} from './manifest.js';
import { FrameReader, FrameType, FrameWriter, MAGIC, MAX_DATA_BYTES, PROTOCOL_VERSION, errorBody, frameName, peerError } from './protocol.js';
import { ProgressTracker, type ProgressListener } from './progress.js';
import { ReceiverState, stagingName, type PartialFile } from './receiver-state.js';
import { createChecksum, isChecksumAlgorithm, type ChecksumAlgorithm } from './checksum.js';
import { Unpacker, decodableCodecs, type Codec } from './compression.js';
import { FileWriter, directWriteArena } from './file-writer.js';
import type { AlignedArena } from './aligned-arena.js';
import { transferServer, type TransferTls } from './tls.js';
import { releasePort } from './farewell.js';
import { clampDelay } from '../timers.js';

export interface ReceiverOptions {
  /** Where the tree lands (the datadir). Created if missing. */
  destDir: string;
  /**
   * This transfer's bookkeeping (resume state, final manifest), outside destDir so the datadir holds exactly
   * the source's files; one directory per receiving seed (StateDir/transfers/<seed>). Created if missing.
   */
  stateDir: string;
  /** Address to listen on (SeedTransferBindAddress); default all interfaces. */
  bindAddress?: string;
  /** 0 (default) lets the OS choose a free port. */
  port?: number;
  tls?: TransferTls;
  /** The per-seed secret the sender must prove it knows (see newAuthKey). */
  authKey: string;
  /**
   * Stops the receive (the seed aborted, or the agent stopping): the sender's connection is closed as a
   * cut, with no ERROR frame, so the sender waits to send again; a reason for it is the seed's to give.
   */
  signal?: AbortSignal;
  onProgress?: ProgressListener;
  /** Told of every connection refused while waiting (wrong key, TLS mismatch, not a sender); the wait goes on. */
  onRefused?: (reason: string) => void;
  /** How long to wait for an authenticated sender (SeedTransferConnectTimeoutSeconds). Default 600 s. */
  connectTimeoutMs?: number;
  /**
   * Resume granularity: the sender checksums every chunk of this size, and a partly received file resumes
   * from its last verified chunk. Default 16 MiB.
   */
  resumeChunkBytes?: number;
  /** How long the sender may stay silent mid-transfer before the receive fails. Default 120 s. */
  idleTimeoutMs?: number;
  progressIntervalMs?: number;
  /** Called once a sender proved the key, before any data is taken (the seed records it durably). */
  onSenderAuthenticated?: (peer: string) => void;
  /**
   * Called with the paths of each batch of received files (already renamed into place) before they are
   * fsynced and recorded as verified; the batch waits for it. Tests use it to stop a receiver in between.
   */
  beforeBatchSync?: (paths: string[]) => Promise<void>;
  /** The codecs offered to the sender (compression.ts); default every one this agent decodes, [] as a receiver before compression. */
  compressionCodecs?: Codec[];
  /**
   * Writes files with O_DIRECT where the destination's filesystem takes it (file-writer.ts); default true.
   * false: through the page cache (the benches compare both).
   */
  directWrites?: boolean;
}

export interface ReceiveResult {
  /** Bytes received and verified in this session. */
  bytesReceived: number;
  filesReceived: number;
  /** Files not sent again because an earlier session had verified them. */
  filesSkipped: number;
  bytesTotal: number;
  filesTotal: number;
  seconds: number;
  /** In stateDir. */
  manifestFile: string;
  /** Address of the sender. */
  peer: string;
  /** Whether files were written with O_DIRECT (false: through the page cache). */
  directWrites: boolean;
}

export interface Receiver {
  /** The port actually listened on; report it to the sender. */
  port: number;
  /** Resolves when every file is verified and the final manifest is durable; rejects with an AgentError. */
  done: Promise<ReceiveResult>;
}

const handshakeTimeoutMs = 15_000;
/**
 * Received files are made durable in batches, at this pace or sooner when many wait: fsynced together (a
 * few at a time, so the filesystem's journal commits them in one go rather than one file after the other),
 * their directories fsynced, then recorded in the state file. A crash loses at most a batch, re-sent.
 * Fewer, larger batches mean fewer journal commits, each of which also waits for whatever else the
 * filesystem's journal holds (on the bench's MariaDB datadir 300 ms and 64 files did no better).
 */
const commitIntervalMs = 1000;
const batchFiles = 256;
const batchBytes = 256 * 1024 * 1024;
/** Beyond this many received files not yet durable, the receive waits for the batch being synced. */
const maxUnsyncedFiles = 512;
/** fsyncs run in parallel: each holds a libuv pool thread, and the file being received needs some for writes. */
const syncsInFlight = 3;
/**
 * Files being written, given their attributes and renamed in the background while the next ones stream in, at
 * most this many and this many bytes: each small file is a few pool round trips (open, write, chown, chmod
 * and utimes, rename), which on a busy host take milliseconds, so many run at once.
 */
const maxFinalizing = 64;
const maxFinalizingBytes = 32 * 1024 * 1024;
export const DEFAULT_RESUME_CHUNK_BYTES = 16 * 1024 * 1024;

/**
 * Prepares destDir and stateDir (removes any final manifest, so a partial copy never looks complete; loads
 * the verified files and chunks, checking partly received files on disk; clears the rest of the staging
 * area), then listens. Resolves once listening.
 */
export async function startReceiver(opts: ReceiverOptions): Promise<Receiver> {
  const destDir = resolve(opts.destDir);
  const stateDir = resolve(opts.stateDir ?? '');
  if (!opts.authKey) throw new AgentError('bad_request', 'a transfer receiver needs an auth key');
  if (!opts.stateDir || isWithin(destDir, stateDir) || isWithin(stateDir, destDir)) {
    throw new AgentError('bad_request', `the transfer's state directory ${stateDir} must be outside the destination ${destDir}, and not contain it`, {
      hint: 'keep the bookkeeping under StateDir, apart from the datadir',
    });
  }
  if (opts.signal?.aborted) throw new AgentError('aborted', `receive into ${destDir} aborted before it started`);
  const staging = join(destDir, STAGING_DIR);
  try {
    await mkdir(destDir, { recursive: true });
  } catch (err) {
    throw new AgentError('io', `cannot prepare ${destDir} to receive: ${(err as Error).message}`, { hint: 'check the datadir exists and is writable' });
  }
  try {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await unlinkDurably(join(stateDir, MANIFEST_FILE));
  } catch (err) {
    throw new AgentError('io', `cannot prepare the transfer's state directory ${stateDir}: ${(err as Error).message}`, {
      hint: 'check that StateDir is writable and its filesystem has space',
    });
  }
  const state = await ReceiverState.load(destDir, stateDir);
  await releasePort(opts.port);

  const server: Server = transferServer(opts.tls);

  const port = await new Promise<number>((resolvePort, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new AgentError('unavailable', `cannot listen for the transfer on ${opts.bindAddress ?? '0.0.0.0'}:${opts.port ?? 0}: ${err.code ?? err.message}`, {
          hint: err.code === 'EADDRINUSE' ? 'another process holds the port; use port 0 to let the agent choose' : undefined,
        }),
      ),
    );
    server.listen({ port: opts.port ?? 0, host: opts.bindAddress || undefined }, () => {
      const addr = server.address();
      resolvePort(typeof addr === 'object' && addr ? addr.port : 0);
    });
  });
  log.info('transfer: receiver listening', { destDir, port, tls: !!opts.tls });

  const session = new ReceiveSession(destDir, stateDir, staging, state, opts, server, port);
  const done = session.run();
  done.catch(() => undefined); // the caller awaits it; this only keeps Node from calling it unhandled meanwhile
  return { port, done };
}

class ReceiveSession {
  private settled = false;
  private resolveDone!: (r: ReceiveResult) => void;
  private rejectDone!: (e: AgentError) => void;
  private socket: Socket | undefined;
  private reader: FrameReader | undefined;
  private writer: FrameWriter | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private commitTimer: NodeJS.Timeout | undefined;
  private readonly refusals: string[] = [];
  private readonly started = performance.now();
  private readonly openFiles = new Set<FileHandle>();
  private finalizing: Promise<void>[] = [];
  private finalizingBytes = 0;
  /** Opens and writes of files being received, running in the background: a failure waits for them before closing files. */
  private readonly pendingIo = new Set<Promise<unknown>>();
  /** Files verified and renamed into place, still open: recorded once a batch fsynced them and their directory. */
  private unsynced: Array<{ fh: FileHandle; file: VerifiedFile }> = [];
  private unsyncedBytes = 0;
  /** Partly received files with a newly verified chunk written (not fsynced: read back by a restarted receiver). */
  private pendingPartial = new Map<string, PartialFile>();
  private readonly chunkBytes: number;
  private committing: Promise<void> = Promise.resolve();
  private commitQueued = false;
  private syncWanted = false;
  private where = 'waiting for the sender';
  private readonly codecs: Codec[];
  /** Aligned memory for direct writes; undefined: files are written through the page cache. */
  private arena: AlignedArena | undefined;

  constructor(
    private readonly destDir: string,
    private readonly stateDir: string,
    private readonly staging: string,
    private readonly state: ReceiverState,
    private readonly opts: ReceiverOptions,
    private readonly server: Server,
    private readonly port: number,
  ) {
    this.chunkBytes = Math.max(64 * 1024, Math.floor(opts.resumeChunkBytes ?? DEFAULT_RESUME_CHUNK_BYTES));
    this.codecs = opts.compressionCodecs ?? decodableCodecs();
  }

  run(): Promise<ReceiveResult> {
    const done = new Promise<ReceiveResult>((res, rej) => {
      this.resolveDone = res;
      this.rejectDone = rej;
    });
    const connectTimeoutMs = this.opts.connectTimeoutMs ?? 600_000;
    this.connectTimer = setTimeout(() => {
      const refused = this.refusals.length ? `; refused ${this.refusals.length} connection(s): ${this.refusals.slice(-3).join('; ')}` : '';
      this.fail(
        new AgentError('unavailable', `no sender authenticated on port ${this.port} within ${Math.round(connectTimeoutMs / 1000)} s${refused}`, {
          hint: 'start the send on the source agent with this port and key',
        }),
      );
    }, clampDelay(connectTimeoutMs));
    const onAbort = () => this.fail(new AgentError('aborted', `receive into ${this.destDir} aborted (${this.where})`));
    this.opts.signal?.addEventListener('abort', onAbort, { once: true });
    done.finally(() => this.opts.signal?.removeEventListener('abort', onAbort)).catch(() => undefined);

    const event = this.opts.tls ? 'secureConnection' : 'connection';
    this.server.on(event, (socket: Socket) => void this.handshake(socket));
    this.server.on('tlsClientError', (err: Error, socket: Socket) => {
      this.refuse(`${socket.remoteAddress ?? '?'}: TLS handshake failed (${err.message}); is the sender using TLS (SeedTransferUseSSL)?`);
    });
    return done;
  }

  private refuse(reason: string): void {
    this.refusals.push(reason);
    transferStats.refusedConnections++;
    log.warn('transfer: refused a connection', { port: this.port, reason });
    try {
      this.opts.onRefused?.(reason);
    } catch (err) {
      log.warn('transfer: onRefused listener failed', { error: String(err) });
    }
  }

  /** Checks the magic and the sender's proof; the first sender that passes owns this receiver. */
  private async handshake(socket: Socket): Promise<void> {
    const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    if (this.socket || this.settled) {
      socket.destroy();
      return;
    }
    const reader = new FrameReader(socket);
    const writer = new FrameWriter(socket);
    socket.on('error', () => undefined); // failures surface through the reader
    socket.setNoDelay(true);
    const timer = setTimeout(() => reader.fail(new AgentError('unavailable', 'handshake timed out')), handshakeTimeoutMs);
    try {
      const magic = await reader.exact(MAGIC.length);
      if (!magic.equals(MAGIC)) {
        throw new AgentError(
          'bad_request',
          magic[0] === 0x16 ? 'the sender speaks TLS but this receiver is plaintext (SeedTransferUseSSL differs between agents)' : 'not an orchestrator-agent transfer',
        );
      }
      const nonce = newNonce();
      await writer.json(FrameType.hello, { version: PROTOCOL_VERSION, nonce, ...(this.codecs.length ? { compression: this.codecs } : {}) });
      const auth = await reader.json([FrameType.auth], 'during the handshake');
      const body = auth.body as { mac?: unknown; nonce?: unknown; compression?: unknown };
      if (!proofMatches(this.opts.authKey, 'sender', nonce, body.mac) || typeof body.nonce !== 'string' || body.nonce.length < 16) {
        const refused = new AgentError('unauthorized', 'wrong transfer key', { hint: 'pass the key the receiving seed reported when it was created' });
        await writer.json(FrameType.error, errorBody(refused)).catch(() => undefined);
        throw refused;
      }
      if (this.socket || this.settled) throw new AgentError('conflict', 'another sender is already connected');
      clearTimeout(timer);
      this.socket = socket;
      this.reader = reader;
      this.writer = writer;
      if (!this.opts.tls) {
        // From WELCOME on, every frame both ways carries a tag (TLS already protects its own records).
        const keys = frameKeys(this.opts.authKey, nonce, body.nonce);
        reader.authenticate(keys.senderToReceiver);
        writer.authenticate(keys.receiverToSender);
      }
      clearTimeout(this.connectTimer);
      this.server.close(); // one sender per receive; later connections are refused by the OS
      log.info('transfer: sender authenticated', { peer, destDir: this.destDir, compression: typeof body.compression === 'string' ? body.compression : null });
      this.opts.onSenderAuthenticated?.(peer);
      // Partly received files are offered from their last verified chunk, if they were chunked the same way.
      const resume = this.state
        .partialList()
        .filter((p) => p.chunkBytes === this.chunkBytes)
        .map((p) => ({ path: p.path, size: p.size, mtimeMs: p.mtimeMs, algorithm: p.algorithm, offset: p.chunks.length * p.chunkBytes }));
      await writer.json(FrameType.welcome, { mac: proof(this.opts.authKey, 'receiver', body.nonce), have: this.state.list(), resume, chunkBytes: this.chunkBytes });
    } catch (err) {
      clearTimeout(timer);
      if (this.socket === socket) return this.fail(err);
      this.refuse(`${peer}: ${asAgentError(err).message}`);
      socket.end();
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    try {
      const result = await this.receive(socket, reader, writer, peer);
      this.succeed(result);
    } catch (err) {
      this.fail(err);
    }
  }

  private async receive(socket: Socket, reader: FrameReader, writer: FrameWriter, peer: string): Promise<ReceiveResult> {
    const idleMs = this.opts.idleTimeoutMs ?? 120_000;
    socket.setTimeout(idleMs, () => reader.fail(new AgentError('unavailable', `the sender sent nothing for ${Math.round(idleMs / 1000)} s (${this.where})`)));

    this.where = 'reading the manifest';
    const m = await reader.json([FrameType.manifest], 'instead of the manifest');
    if (m.type === FrameType.error) throw peerFailure(m.body);
    const mb = m.body as { algorithm?: unknown; entries?: unknown };
    if (!isChecksumAlgorithm(mb.algorithm)) throw new AgentError('bad_request', `the sender checksums with ${String(mb.algorithm)}, which this receiver does not know`, { hint: 'run the same agent version on both hosts' });
    const algorithm = mb.algorithm;
    const entries = validateManifest(mb.entries, this.destDir);
    const files = entries.filter((e): e is FileEntry => e.type === 'file');
    const bytesTotal = files.reduce((s, f) => s + f.size, 0);
    const progress = new ProgressTracker(bytesTotal, files.length, this.opts.onProgress, this.opts.progressIntervalMs);
    const checksums = new Map<string, string>();
    let skipped = 0;
    let skippedBytes = 0;
    for (const f of files) {
      const have = this.state.get(f.path);
      if (alreadyVerified(f, have)) {
        checksums.set(f.path, have!.checksum);
        skipped++;
        skippedBytes += f.size;
      } else if (have) {
        this.state.forget(f.path);
      }
    }
    // A partly received file resumes only as the same version of the file, chunked and checksummed the same way.
    const listed = new Map(files.map((f) => [f.path, f]));
    for (const p of this.state.partialList()) {
      const f = listed.get(p.path);
      if (!f || checksums.has(p.path) || f.size !== p.size || f.mtimeMs !== p.mtimeMs || p.algorithm !== algorithm || p.chunkBytes !== this.chunkBytes) {
        this.state.forgetPartial(p.path);
      }
    }
    progress.alreadyDone(skipped, skippedBytes);

    this.where = 'creating directories';
    await mkdir(this.staging, { recursive: true, mode: 0o700 });
    this.arena = this.opts.directWrites === false ? undefined : await directWriteArena(this.staging);
    for (const e of entries) if (e.type === 'dir') await this.ensureDir(e.path);

    this.commitTimer = setInterval(() => void this.requestCommit(), commitIntervalMs);
    let bytesReceived = 0;
    let filesReceived = 0;
    for (;;) {
      const h = await reader.header();
      if (!h) throw new AgentError('io', `the sender closed the connection ${this.where}`);
      if (h.type === FrameType.end) {
        await reader.exact(h.length);
        break;
      }
      if (h.type === FrameType.error) throw peerFailure(JSON.parse((await reader.exact(h.length)).toString('utf8')));
      if (h.type !== FrameType.fileBegin) throw new AgentError('bad_request', `unexpected ${frameName(h.type)} frame ${this.where}`);
      const begin = JSON.parse((await reader.exact(h.length)).toString('utf8')) as { index?: unknown; offset?: unknown };
      const entry = typeof begin.index === 'number' ? entries[begin.index] : undefined;
      if (!entry || entry.type !== 'file') throw new AgentError('bad_request', `file number ${String(begin.index)} is not a file of the manifest`);
      const offset = begin.offset ?? 0;
      const partial = this.state.partial(entry.path);
      if (offset !== 0 && (!partial || offset !== partial.chunks.length * partial.chunkBytes)) {
        throw new AgentError('bad_request', `the sender resumes ${entry.path} at byte ${String(offset)}, which this receiver did not offer`);
      }
      this.where = `receiving ${entry.path}`;
      progress.fileStarted(entry.path);
      if (offset > 0) progress.alreadyDone(0, offset as number);
      if (this.unsynced.length >= maxUnsyncedFiles) await this.requestCommit();
      const checksum = await this.receiveFile(reader, entry, begin.index as number, offset as number, algorithm, progress);
      checksums.set(entry.path, checksum);
      bytesReceived += entry.size - (offset as number);
      filesReceived++;
      progress.fileDone();
    }

    this.where = 'making the last files durable';
    await Promise.all(this.finalizing);
    clearInterval(this.commitTimer);
    await this.requestCommit();
    const missing = files.filter((f) => !checksums.has(f.path));
    if (missing.length) throw new AgentError('io', `the sender finished without sending ${missing.length} file(s), first ${missing[0]!.path}`);

    this.where = 'creating symlinks and directory attributes';
    await this.finishTree(entries);
    // The staging area goes before the manifest is written: a complete copy never leaves it behind.
    await rm(this.staging, { recursive: true, force: true });
    await fsyncDir(this.destDir);
    this.where = 'writing the final manifest';
    progress.finish();
    const manifest: FinalManifest = {
      version: 1,
      destDir: this.destDir,
      algorithm,
      completedAt: new Date().toISOString(),
      bytesTotal,
      filesTotal: files.length,
      entries: entries.map((e) => (e.type === 'file' ? { ...e, checksum: checksums.get(e.path)! } : e)),
    };
    const manifestFile = join(this.stateDir, MANIFEST_FILE);
    await writeFileDurably(manifestFile, JSON.stringify(manifest));
    await this.state.remove();
    const result: ReceiveResult = {
      bytesReceived,
      filesReceived,
      filesSkipped: skipped,
      bytesTotal,
      filesTotal: files.length,
      seconds: (performance.now() - this.started) / 1000,
      manifestFile,
      peer,
      directWrites: this.arena !== undefined,
    };
    // The copy is complete and durable now; a sender gone before hearing so does not undo that.
    await writer.json(FrameType.result, { bytesReceived, filesReceived, filesSkipped: skipped }).catch((err: unknown) =>
      log.warn('transfer: could not confirm the completed copy to the sender', { destDir: this.destDir, error: String(err) }),
    );
    socket.end();
    return result;
  }

  /**
   * Streams one file into the staging area from offset (0, or where an earlier session's verified chunks end),
   * checks each chunk against the sender's checksum as it completes (recording it durably, so a restart
   * resumes there), returns the whole file's checksum and finalizes the file in the background.
   */
  private async receiveFile(reader: FrameReader, entry: FileEntry, index: number, offset: number, algorithm: ChecksumAlgorithm, progress: ProgressTracker): Promise<string> {
    const tmp = join(this.staging, stagingName(entry.path));
    const prefix = offset > 0 ? this.state.takePrefixHash(entry.path) : undefined;
    if (offset > 0 && !prefix) throw new AgentError('internal', `no checksum of the verified part of ${entry.path}`);
    // The file is opened, written and finalized in the background: the stream goes on to the next frames (and
    // files) while the pool threads do the I/O, never waiting for an open or a write to come back.
    // Bytes past the last verified chunk are not trusted: the writer truncates the file there.
    const out = new FileWriter(tmp, offset, entry.size, this.arena, (p) => this.io(p));
    const opened = this.io(
      out.opened.then((fh) => {
        this.openFiles.add(fh);
        return fh;
      }),
    );
    const hash = prefix ?? createChecksum(algorithm);
    // A file of one chunk received whole: its chunk's checksum is the whole file's, so one pass over its bytes.
    const oneChunk = offset === 0 && entry.size <= this.chunkBytes;
    const chunks = offset > 0 ? [...this.state.partial(entry.path)!.chunks] : [];
    let chunkHash = createChecksum(algorithm);
    let verifiedTo = offset;
    let position = offset;
    const unpacker = new Unpacker(this.codecs, entry.path);
    /** Decoded bytes of ZDATA frames, in order: as DATA frames' bytes below. */
    const take = async (raw: Buffer) => {
      hash.update(raw);
      chunkHash.update(raw);
      position += raw.length;
      progress.bytes(raw.length);
      await out.push(raw);
    };
    for (;;) {
      const h = await reader.header();
      if (!h) throw new AgentError('io', `the sender closed the connection while sending ${entry.path} (${position} of ${entry.size} bytes)`);
      if (h.type !== FrameType.zdata && unpacker.pending) for (const raw of await unpacker.drain()) await take(raw);
      if (h.type === FrameType.data) {
        if (h.length > MAX_DATA_BYTES || position + h.length > entry.size) {
          throw new AgentError('bad_request', `the sender sent more data than the ${entry.size} bytes of ${entry.path}`);
        }
        let left = h.length;
        while (left > 0) {
          for (const slice of await reader.some(left)) {
            if (!oneChunk) hash.update(slice);
            chunkHash.update(slice);
            position += slice.length;
            left -= slice.length;
            progress.bytes(slice.length);
            await out.push(slice);
          }
        }
        continue;
      }
      if (h.type === FrameType.zdata) {
        // Checked against its tag by exact(), then decoded; checksums run over the decoded bytes.
        if (h.length > MAX_DATA_BYTES) throw new AgentError('bad_request', `the sender sent a compressed frame of ${h.length} bytes for ${entry.path}`);
        for (const raw of await unpacker.push(await reader.exact(h.length), entry.size - position)) await take(raw);
        continue;
      }
      if (h.type === FrameType.error) throw peerFailure(JSON.parse((await reader.exact(h.length)).toString('utf8')));
      if (h.type === FrameType.chunk) {
        const c = JSON.parse((await reader.exact(h.length)).toString('utf8')) as { index?: unknown; end?: unknown; checksum?: unknown };
        if (c.index !== index || c.end !== position || position <= verifiedTo || (position % this.chunkBytes !== 0 && position !== entry.size)) {
          throw new AgentError('bad_request', `chunk end ${String(c.end)} of ${entry.path} does not match the ${position} bytes received in chunks of ${this.chunkBytes}`);
        }
        const got = chunkHash.digest();
        if (c.checksum !== got) {
          throw new AgentError('io', `checksum mismatch on ${entry.path} bytes ${verifiedTo}-${position}: the sender read ${String(c.checksum)}, this receiver got ${got}`, {
            hint: 'the data was corrupted on the way or on disk; run the seed again',
          });
        }
        chunks.push(got);
        verifiedTo = position;
        chunkHash = createChecksum(algorithm);
        // The last chunk is recorded with the whole file; an earlier one once its bytes are written, so a restart
        // resumes after it (no stall: the record waits for the writes, the stream does not).
        if (position < entry.size) {
          await out.flush();
          this.recordChunks(out.written(), { path: entry.path, size: entry.size, mtimeMs: entry.mtimeMs, algorithm, chunkBytes: this.chunkBytes, chunks: [...chunks] });
        }
        continue;
      }
      if (h.type !== FrameType.fileEnd) throw new AgentError('bad_request', `unexpected ${frameName(h.type)} frame while receiving ${entry.path}`);
      const end = JSON.parse((await reader.exact(h.length)).toString('utf8')) as { index?: unknown; checksum?: unknown };
      if (end.index !== index) throw new AgentError('bad_request', `file end for number ${String(end.index)} while receiving ${entry.path}`);
      if (position !== entry.size) throw new AgentError('io', `${entry.path}: received ${position} bytes, the manifest says ${entry.size}`);
      if (verifiedTo !== entry.size) throw new AgentError('bad_request', `${entry.path}: the sender checksummed ${verifiedTo} of its ${entry.size} bytes`);
      const got = oneChunk && chunks.length === 1 ? chunks[0]! : hash.digest();
      // Every chunk was checked as it came; a whole-file checksum, when a sender gives one, is checked too.
      if (typeof end.checksum === 'string' && end.checksum !== got) {
        throw new AgentError('io', `checksum mismatch on ${entry.path}: the sender read ${String(end.checksum)}, this receiver got ${got}`, {
          hint: 'the data was corrupted on the way or on disk; run the seed again',
        });
      }
      while (this.finalizing.length >= maxFinalizing || (this.finalizingBytes >= maxFinalizingBytes && this.finalizing.length > 0)) await this.finalizing.shift();
      const received = entry.size - offset;
      this.finalizingBytes += received;
      const finalizing = (async () => {
        try {
          await out.finish();
          await this.finalize(await opened, tmp, entry, got);
        } finally {
          this.finalizingBytes -= received;
        }
      })();
      finalizing.catch((err) =>
        this.fail(new AgentError('io', `cannot write ${entry.path} into ${this.destDir}: ${(err as Error).message}`, { hint: (err as AgentError).hint, cause: err })),
      );
      this.finalizing.push(finalizing);
      return got;
    }
  }

  /**
   * Records a file's verified chunks once their writes are done. Their data is not fsynced one by one (that
   * halved the rate): a restarted receiver reads the recorded chunks back and keeps only those the disk
   * still holds intact, so after a power loss it resumes from an earlier chunk, never from bad data; after a
   * kill -9 (page cache intact) it resumes after the last chunk recorded.
   */
  private recordChunks(written: Promise<unknown>, partial: PartialFile): void {
    written.then(
      () => {
        if (!this.settled) {
          this.pendingPartial.set(partial.path, partial);
          void this.requestCommit(false); // at once, so a restart after kill -9 re-sends at most about a chunk
        }
      },
      () => undefined, // the write's failure fails the file where it is awaited
    );
  }

  /** Tracks a background open or write until it settles (awaited where it matters; only marked handled here). */
  private io<T>(p: Promise<T>): Promise<T> {
    this.pendingIo.add(p);
    p.then(
      () => this.pendingIo.delete(p),
      () => this.pendingIo.delete(p),
    );
    return p;
  }

  /** Owner, mode and mtime, rename into place; the file stays open until a batch sync makes it durable and records it. */
  private async finalize(fh: FileHandle, tmp: string, entry: FileEntry, checksum: string): Promise<void> {
    // chown before chmod (a chown may clear set-id bits); the mtime meanwhile.
    const owned = process.getuid?.() === 0 ? fh.chown(entry.uid, entry.gid) : Promise.resolve();
    await Promise.all([owned.then(() => fh.chmod(entry.mode)), fh.utimes(entry.mtimeMs / 1000, entry.mtimeMs / 1000)]);
    const final = join(this.destDir, entry.path);
    // A rename replaces a file; only a directory in the way (a rare leftover) needs removing first.
    await rename(tmp, final).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EISDIR' && err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
      await rm(final, { recursive: true, force: true });
      await rename(tmp, final);
    });
    this.unsynced.push({ fh, file: { path: entry.path, size: entry.size, mtimeMs: entry.mtimeMs, checksum } });
    this.unsyncedBytes += entry.size;
    if (this.unsynced.length >= batchFiles || this.unsyncedBytes >= batchBytes) void this.requestCommit();
  }

  /**
   * Queues a commit (one at a time; a queued one takes whatever is pending when it starts): with syncFiles, a
   * batch sync of the files received whole; without, only the newly verified chunks are saved (no fsync).
   */
  private requestCommit(syncFiles = true): Promise<void> {
    if (syncFiles) this.syncWanted = true;
    if (!this.commitQueued) {
      this.commitQueued = true;
      this.committing = this.committing.then(() => {
        this.commitQueued = false;
        const sync = this.syncWanted;
        this.syncWanted = false;
        return this.commit(sync);
      });
      this.committing.catch((err) => this.fail(new AgentError('io', `cannot make received files durable in ${this.destDir}: ${(err as Error).message}`)));
    }
    return this.committing;
  }

  /**
   * Makes the pending files durable and only then records them: fsync the batch's files a few in parallel,
   * close them, fsync their directories, save the state file (with the newly verified chunks of files
   * received in part). A receiver killed before the save re-receives the batch.
   */
  private async commit(syncFiles: boolean): Promise<void> {
    if (this.settled) return;
    const batch = syncFiles ? this.unsynced : [];
    const partials = [...this.pendingPartial.values()];
    if (batch.length === 0 && partials.length === 0) return;
    if (syncFiles) {
      this.unsynced = [];
      this.unsyncedBytes = 0;
    }
    this.pendingPartial.clear();
    if (batch.length > 0) {
      await this.opts.beforeBatchSync?.(batch.map((b) => b.file.path));
      await inParallel(batch, syncsInFlight, ({ fh }) => fh.sync());
      await Promise.all(
        batch.map(async ({ fh }) => {
          this.openFiles.delete(fh);
          await fh.close();
        }),
      );
      await inParallel([...new Set(batch.map((b) => dirname(join(this.destDir, b.file.path))))], syncsInFlight, fsyncDir);
    }
    if (this.settled) return;
    // Chunks first: a file verified whole in the same batch then replaces its partial entry.
    for (const p of partials) this.state.setPartial(p);
    this.state.add(batch.map((b) => b.file));
    // Verified files durably (fsync); chunks alone atomically only: an fsync at every chunk would force
    // out the data being received each time (a quarter of the rate, measured), and chunks are re-checked
    // on disk by a restarted receiver anyway.
    if (batch.length > 0) await this.state.save();
    else await this.state.savePartials();
  }

  /** A real directory at path: anything else there (a stale symlink, a file) is removed first. */
  private async ensureDir(path: string): Promise<void> {
    const abs = join(this.destDir, path);
    const st = await lstat(abs).catch(() => undefined);
    if (st?.isDirectory()) return;
    if (st) await rm(abs, { recursive: true, force: true });
    await mkdir(abs, { mode: 0o700 });
  }

  private async finishTree(entries: readonly ManifestEntry[]): Promise<void> {
    const root = process.getuid?.() === 0;
    for (const e of entries) {
      if (e.type !== 'symlink') continue;
      const abs = join(this.destDir, e.path);
      const st = await lstat(abs).catch(() => undefined);
      if (st?.isDirectory()) await rm(abs, { recursive: true, force: true });
      else if (st) await unlink(abs);
      await symlink(e.target, abs);
      if (root) await lchown(abs, e.uid, e.gid);
    }
    // Deepest first: setting a directory's mtime must come after everything inside it changed.
    const dirs = entries.filter((e) => e.type === 'dir').reverse();
    for (const d of dirs) {
      const abs = join(this.destDir, d.path);
      if (root) await chown(abs, d.uid, d.gid);
      await chmod(abs, d.mode);
      await utimes(abs, d.mtimeMs / 1000, d.mtimeMs / 1000);
    }
    // Then all made durable together (an fsync changes no mtime): one journal commit rather than one per directory.
    await inParallel(dirs, syncsInFlight, (d) => fsyncDir(join(this.destDir, d.path)));
  }

  private succeed(result: ReceiveResult): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.connectTimer);
    log.info('transfer: receive complete', { destDir: this.destDir, ...result });
    this.resolveDone(result);
  }

  private fail(err: unknown): void {
    if (this.settled) return;
    this.settled = true;
    const e = asAgentError(err);
    // Say where it broke when the error itself does not (a dropped connection knows nothing of files).
    const error =
      e.message.includes(this.where) || e.code === 'unauthorized'
        ? e
        : new AgentError(e.code === 'internal' ? 'io' : e.code, `receive into ${this.destDir} failed ${this.where}: ${e.message}`, { hint: e.hint, details: e.details, cause: err });
    clearTimeout(this.connectTimer);
    clearInterval(this.commitTimer);
    this.server.close();
    this.reader?.fail(error);
    if (this.socket && !this.socket.destroyed) {
      // Stopped here (the seed aborted, or this agent stopping: one signal for both): the connection is only
      // closed, as a cut. The sender then waits to send again (SeedTransferReconnectTimeoutSeconds): a
      // restarted agent resumes with it, and an aborted seed's cleanup tells it why on this port
      // (farewell.ts). An ERROR frame now would end the source seed as aborted by its peer either way.
      if (!this.opts.signal?.aborted) this.writer?.error(error);
      this.socket.end();
      const s = this.socket;
      setTimeout(() => s.destroy(), 1000).unref();
    }
    log.warn('transfer: receive failed', { destDir: this.destDir, error: error.describe() });
    void (async () => {
      await Promise.allSettled([...this.finalizing, ...this.pendingIo]);
      for (const fh of this.openFiles) await fh.close().catch(() => undefined);
      await this.committing.catch(() => undefined);
      // The staging area stays: the next receive resumes its files from their last verified chunk.
    })().finally(() => this.rejectDone(error));
  }
}

/** Runs fn over items with at most limit at a time. */
async function inParallel<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** The sender's ERROR frame; a source that cannot be trusted (snapshot_invalid) keeps its code: resuming cannot help. */
function peerFailure(body: unknown): AgentError {
  return peerError(body, 'the sender');
}
