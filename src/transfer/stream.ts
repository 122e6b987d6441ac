// One authenticated byte stream between two agents (every frame after the handshake tagged, as protocol.ts does), for seeds whose copy is a program's output (a hot
// backup's mbstream, a logical dump) rather than a directory of files. Same handshake proofs (auth.ts), same
// framing (protocol.ts), same TLS as the datadir transfer, its own magic so neither side mistakes the other.
//
//   sender  → MAGIC                receiver → HELLO {version, nonce}
//   sender  → AUTH {mac, nonce}     receiver → WELCOME {mac}
//   sender  → FACTS (the source's MySQL facts)
//   receiver → LATER (facts noted, come back for the data) | GO | ERROR (a failed check: permanent)
//   after GO: sender → DATA* then END {bytes, checksum, positionAtEnd}; receiver → RESULT once the sink is done.
//
// Compression as on the datadir transfer (compression.ts): HELLO lists the codecs the receiver decodes, AUTH
// names the one the sender uses, and a batch of the program's output may then go as ZDATA (a frame that does
// not shrink goes as DATA). The checksum, END's byte count, progress and the throttle count the program's bytes.
//
// There is no resume inside a stream: a cut stream is restarted from its beginning by both sides' steps.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Server, Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { AgentError, asAgentError } from '../errors.js';
import { log } from '../log.js';
import { frameKeys, newNonce, proof, proofMatches } from './auth.js';
import { createChecksum, DEFAULT_CHECKSUM } from './checksum.js';
import { Packer, Unpacker, chooseCodec, decodableCodecs, offeredCodecs, type Codec, type CompressionMode } from './compression.js';
import { errorBody, FrameReader, frameName, FrameWriter, isPermanentFailure, MAX_DATA_BYTES, peerError, STREAM_MAGIC, STREAM_VERSION, writeAll, type FrameTypeValue } from './protocol.js';
import { answeringOn, releasePort } from './farewell.js';
import { holdStreamHeapGrowth } from './heap-growth.js';
import type { TokenBucket } from './throttle.js';
import type { WireStats } from './progress.js';
import { transferConnect, transferServer, type TransferTls } from './tls.js';

export { STREAM_MAGIC };
const VERSION = STREAM_VERSION;
const F = { hello: 1, auth: 2, welcome: 3, data: 6, end: 8, result: 9, error: 10, zdata: 12, facts: 20, go: 21, later: 22 } as const;
/** Batches compressing at once on libuv's pool while the oldest is sent. */
const COMPRESS_AHEAD = 3;
const t = (type: number) => type as FrameTypeValue;
const handshakeTimeoutMs = 30_000;

/** A binary log coordinate: file and position, and the GTID position when the server has one. */
export interface BinlogPosition {
  file: string;
  position: number;
  gtid: string;
}

/** What the source tells the target before anything is copied (the target's pre-seed checks use them). */
export interface SourceFacts {
  mysqlRunning: boolean;
  version: string;
  /** Bytes in the source's datadir: what the stream will roughly carry. */
  dataBytes: number;
  logBin: boolean;
  gtidMode: boolean;
  /** Where a replica reaches the source's MySQL; host '' means "the address the sender connected from". */
  mysqlHost: string;
  mysqlPort: number;
  /** Seeds by dump: the user schemas the dump brings (the target drops them before loading). */
  schemas?: string[];
}

export interface StreamEnd {
  bytes: number;
  checksum: string;
  /** The source's binary log position when the copy ended (a new replica must apply at least that far). */
  positionAtEnd: BinlogPosition | null;
  /** The codec the stream used on the wire, or null; wireBytes: DATA and ZDATA payload bytes sent (the sender's view). */
  compression?: Codec | null;
  wireBytes?: number;
}

export interface StreamProgress {
  bytesDone: number;
  seconds: number;
  /** The sender only, when the stream is compressed: what its bytes cost on the wire. */
  wire?: WireStats;
}

// ---------------------------------------------------------------- receiver

export interface ListenOptions {
  port: number;
  bindAddress?: string;
  tls?: TransferTls;
  authKey: string;
  signal?: AbortSignal;
  /** How long to wait for an authenticated sender. */
  connectTimeoutMs: number;
  onRefused?: (reason: string) => void;
  idleTimeoutMs?: number;
  /** The codecs offered to the sender; default every one this agent decodes, [] as a receiver before compression. */
  compressionCodecs?: Codec[];
}

/** An authenticated sender that has told its facts, waiting for LATER, GO or ERROR. */
export interface StreamSession {
  peerAddress: string;
  facts: SourceFacts;
  /** Facts noted: the sender comes back later for the data. Closes the session. */
  later(message: string): Promise<void>;
  /** Refuses the seed with err (the sender fails with it and does not retry). */
  refuse(err: AgentError): Promise<void>;
  /** GO: copy DATA into sink until END; finish() (the sink's program ending well) runs before RESULT. */
  receive(sink: Writable, finish: () => Promise<void>, onProgress?: (p: StreamProgress) => void, sinkExited?: Promise<unknown>): Promise<StreamEnd>;
  close(): void;
}

function validFacts(body: unknown): SourceFacts {
  const b = (body ?? {}) as Record<string, unknown>;
  const ok =
    typeof b.mysqlRunning === 'boolean' &&
    typeof b.version === 'string' &&
    typeof b.dataBytes === 'number' &&
    typeof b.logBin === 'boolean' &&
    typeof b.gtidMode === 'boolean' &&
    typeof b.mysqlHost === 'string' &&
    typeof b.mysqlPort === 'number';
  if (!ok) throw new AgentError('bad_request', 'the sender sent malformed source facts', { hint: 'run the same agent version on both hosts' });
  const facts = { mysqlRunning: b.mysqlRunning, version: b.version, dataBytes: b.dataBytes, logBin: b.logBin, gtidMode: b.gtidMode, mysqlHost: b.mysqlHost, mysqlPort: b.mysqlPort } as SourceFacts;
  if (b.schemas !== undefined) {
    if (!Array.isArray(b.schemas) || !b.schemas.every((s) => typeof s === 'string')) throw new AgentError('bad_request', 'the sender sent malformed source facts (schemas)', { hint: 'run the same agent version on both hosts' });
    facts.schemas = b.schemas as string[];
  }
  return facts;
}

/** Listens on port until one sender proves the key and sends its facts; wrong keys are refused and reported. */
export async function acceptStream(opts: ListenOptions): Promise<StreamSession> {
  // A farewell of an ended seed on this port gives it back (as to the datadir receiver); otherwise
  // listening starts at once, before any await.
  if (answeringOn(opts.port)) await releasePort(opts.port);
  const server: Server = transferServer(opts.tls);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new AgentError('unavailable', `cannot listen for the stream on ${opts.bindAddress || '0.0.0.0'}:${opts.port}: ${err.code ?? err.message}`)),
    );
    server.listen({ port: opts.port, host: opts.bindAddress || undefined }, () => resolve());
  });
  const codecs = opts.compressionCodecs ?? decodableCodecs();
  return new Promise<StreamSession>((resolve, reject) => {
    let settled = false;
    const refusals: string[] = [];
    const end = (err?: unknown, session?: StreamSession) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      server.close();
      if (session) resolve(session);
      else reject(err);
    };
    const timer = setTimeout(() => {
      const refused = refusals.length ? `; refused: ${refusals.slice(-3).join('; ')}` : '';
      end(new AgentError('unavailable', `no sender authenticated on port ${opts.port} within ${Math.round(opts.connectTimeoutMs / 1000)} s${refused}`, {
        hint: 'start the source seed (method "backup" or "dump", as the target) with this port and key',
      }));
    }, opts.connectTimeoutMs);
    const onAbort = () => end(new AgentError('aborted', `waiting for the stream on port ${opts.port} was aborted`));
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const refuse = (reason: string) => {
      refusals.push(reason);
      log.warn('stream: refused a connection', { port: opts.port, reason });
      opts.onRefused?.(reason);
    };
    server.on('tlsClientError', (err: Error, socket: Socket) => refuse(`${socket.remoteAddress ?? '?'}: TLS handshake failed (${err.message})`));
    server.on(opts.tls ? 'secureConnection' : 'connection', (socket: Socket) => {
      void (async () => {
        const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
        if (settled) return socket.destroy();
        const reader = new FrameReader(socket);
        const writer = new FrameWriter(socket);
        socket.on('error', () => undefined);
        socket.setNoDelay(true);
        const hs = setTimeout(() => reader.fail(new AgentError('unavailable', 'handshake timed out')), handshakeTimeoutMs);
        try {
          const magic = await reader.exact(STREAM_MAGIC.length);
          if (!magic.equals(STREAM_MAGIC)) throw new AgentError('bad_request', 'not an orchestrator-agent seed stream (is the source seed using the same method?)');
          const nonce = newNonce();
          await writer.json(t(F.hello), { version: VERSION, nonce, ...(codecs.length ? { compression: codecs } : {}) });
          const auth = await reader.json([F.auth], 'during the handshake');
          const body = auth.body as { mac?: unknown; nonce?: unknown };
          if (!proofMatches(opts.authKey, 'sender', nonce, body.mac) || typeof body.nonce !== 'string' || body.nonce.length < 16) {
            const refused = new AgentError('unauthorized', 'wrong transfer key', { hint: 'pass the key the target seed reported when it was created' });
            await writer.json(t(F.error), errorBody(refused)).catch(() => undefined);
            throw refused;
          }
          if (!opts.tls) {
            // From WELCOME on, every frame both ways carries a tag (TLS already protects its own records).
            const keys = frameKeys(opts.authKey, nonce, body.nonce);
            reader.authenticate(keys.senderToReceiver);
            writer.authenticate(keys.receiverToSender);
          }
          await writer.json(t(F.welcome), { mac: proof(opts.authKey, 'receiver', body.nonce) });
          const facts = await reader.json([F.facts], 'instead of the source facts');
          clearTimeout(hs);
          if (facts.type === F.error) {
            // The sender proved the key and says why its seed ends: the wait ends with its reason.
            socket.end();
            setTimeout(() => socket.destroy(), 1000).unref();
            return end(peerError(facts.body, `the sender ${peer}`));
          }
          if (settled) return socket.destroy();
          end(undefined, session(socket, reader, writer, socket.remoteAddress ?? '', validFacts(facts.body), opts, codecs));
        } catch (err) {
          clearTimeout(hs);
          refuse(`${peer}: ${asAgentError(err).message}`);
          socket.end();
          setTimeout(() => socket.destroy(), 1000).unref();
        }
      })();
    });
  });
}

/** How much the receiver queues for the program the stream feeds (mbstream, the loading client) before it waits for it to read. */
const SINK_QUEUE_BYTES = 8 * 1024 * 1024;

/** Waits until sink takes more, or closes or fails (a program that exited never drains); a program that reads nothing for idleMs fails it. */
function drained(sink: Writable, idleMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (sink.destroyed || sink.writableEnded) return resolve();
    const timer = setTimeout(() => {
      cleanup();
      reject(new AgentError('io', `the program the stream feeds read nothing for ${Math.round(idleMs / 1000)} s`));
    }, idleMs);
    const cleanup = () => {
      clearTimeout(timer);
      sink.off('drain', done);
      sink.off('close', done);
      sink.off('error', done);
    };
    const done = () => {
      cleanup();
      resolve();
    };
    sink.once('drain', done);
    sink.once('close', done);
    sink.once('error', done);
  });
}

function session(socket: Socket, reader: FrameReader, writer: FrameWriter, peerAddress: string, facts: SourceFacts, opts: ListenOptions, codecs: Codec[]): StreamSession {
  const close = () => {
    socket.end();
    setTimeout(() => socket.destroy(), 1000).unref();
  };
  return {
    peerAddress: peerAddress.replace(/^::ffff:/, ''),
    facts,
    close,
    async later(message) {
      await writer.json(t(F.later), { message }).catch(() => undefined);
      close();
    },
    async refuse(err) {
      await writer.json(t(F.error), { ...errorBody(err), permanent: true }).catch(() => undefined);
      close();
    },
    async receive(sink, finish, onProgress, sinkExited) {
      const started = performance.now();
      let ending = false;
      // The program the stream feeds ending before the stream did is a failure, whatever it was doing.
      void sinkExited?.then(
        () => !ending && reader.fail(new AgentError('io', 'the program the stream feeds exited before the stream ended')),
        // A failure the sink's owner marked permanent (a loader stopping on a statement) stays permanent for the sender.
        (err: Error) => !ending && reader.fail(new AgentError('io', `the program the stream feeds failed: ${err.message}`, { details: { permanent: isPermanentFailure(err) } })),
      );
      const onAbort = () => reader.fail(new AgentError('aborted', 'the stream was aborted'));
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      const idleMs = opts.idleTimeoutMs ?? 120_000;
      socket.setTimeout(idleMs, () => reader.fail(new AgentError('unavailable', `the sender sent nothing for ${Math.round(idleMs / 1000)} s`)));
      let sinkError: Error | undefined;
      sink.on('error', (err) => {
        sinkError = err;
        reader.fail(new AgentError('io', `the program the stream feeds stopped reading: ${err.message}`));
      });
      const releaseHeap = holdStreamHeapGrowth();
      try {
        await writer.json(t(F.go), {});
        const hash = createChecksum(DEFAULT_CHECKSUM);
        const unpacker = new Unpacker(codecs, 'the stream');
        let bytes = 0;
        let reported = 0;
        /** Hands the program bytes in stream order (a frame's slices, or decoded frames). */
        const deliver = async (parts: Buffer[]) => {
          if (parts.length === 0) return;
          let room = true;
          // One writev for the frame: a frame is many socket reads' worth of bytes.
          if (parts.length > 1) sink.cork();
          for (const p of parts) {
            hash.update(p);
            room = sink.write(p) && room;
            bytes += p.length;
          }
          if (parts.length > 1) sink.uncork();
          // A few MiB queued for the extractor keep its pipe full: waiting for every write to drain would hand it
          // one frame at a time, each a round trip through the scheduler on a busy host.
          if (!room && sink.writableLength > SINK_QUEUE_BYTES) await drained(sink, idleMs);
          if (sinkError) throw sinkError;
          if (sink.destroyed) throw new AgentError('io', `the program the stream feeds stopped reading after ${bytes} bytes`);
          const now = performance.now();
          if (now - reported > 500) {
            reported = now;
            onProgress?.({ bytesDone: bytes, seconds: (now - started) / 1000 });
          }
        };
        for (;;) {
          const h = await reader.header();
          if (!h) throw new AgentError('io', `the stream was cut after ${bytes} bytes`);
          // Compressed frames still decoding come first, in order.
          if (h.type !== F.zdata && unpacker.pending) await deliver(await unpacker.drain());
          if (h.type === F.data || h.type === F.zdata) {
            if (h.length > MAX_DATA_BYTES) throw new AgentError('bad_request', `data frame of ${h.length} bytes is too large`);
            if (h.type === F.zdata) {
              // Checked (tag, codec offered, declared size) before it decodes; decoded a few ahead on libuv's pool.
              await deliver(await unpacker.push(await reader.exact(h.length), Number.POSITIVE_INFINITY));
              continue;
            }
            // The frame's slices as they arrived from the socket (no copy), handed on once its tag checked out.
            const parts: Buffer[] = [];
            for (let left = h.length; left > 0; ) {
              for (const p of await reader.some(left)) {
                parts.push(p);
                left -= p.length;
              }
            }
            await deliver(parts);
            continue;
          }
          const payload = JSON.parse((await reader.exact(h.length)).toString('utf8')) as Record<string, unknown>;
          if (h.type === F.error) throw peerError(payload, 'the sender');
          if (h.type !== F.end) throw new AgentError('bad_request', `unexpected ${frameName(h.type)} frame in the stream`);
          const mine = hash.digest();
          if (payload.bytes !== bytes || payload.checksum !== mine) {
            throw new AgentError('io', `the stream arrived damaged: ${bytes} bytes with checksum ${mine}, the sender sent ${String(payload.bytes)} bytes with ${String(payload.checksum)}`);
          }
          ending = true;
          sink.end();
          await finish();
          await writer.json(t(F.result), { bytes });
          onProgress?.({ bytesDone: bytes, seconds: (performance.now() - started) / 1000 });
          close();
          return { bytes, checksum: mine, positionAtEnd: (payload.positionAtEnd as BinlogPosition | null) ?? null };
        }
      } catch (err) {
        const e = asAgentError(err);
        // Stopped here (the seed aborted, or the agent stopping): the connection is only closed, as a cut.
        // The sender offers its stream again and then learns why from this seed's cleanup (or resumes with
        // the restarted agent); an ERROR now would end the source seed as aborted by its peer either way.
        if (!(e.details?.fromPeer === true) && !opts.signal?.aborted) writer.error(e);
        socket.end();
        setTimeout(() => socket.destroy(), 1000).unref();
        throw e;
      } finally {
        releaseHeap();
        opts.signal?.removeEventListener('abort', onAbort);
      }
    },
  };
}

// ---------------------------------------------------------------- sender

/**
 * The most one DATA frame of the stream carries. The sender puts into one frame what the program wrote since the
 * last one (up to this), so a fast program's output goes out in few large frames (one tag, one write each)
 * while a slow one's still leaves at once.
 */
export const STREAM_FRAME_BYTES = 1024 * 1024;

/**
 * Reads source to its end and hands its bytes to send in batches: every chunk that arrived in one turn of the
 * event loop (libuv reads a pipe up to 32 times per turn), at most maxBytes a batch, in order, one send at a
 * time; source is paused while a send waits (backpressure). Rejects with source's error or send's.
 */
export function pump(source: Readable, maxBytes: number, send: (parts: Buffer[], bytes: number) => Promise<void>): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let busy = false;
    let ended = false;
    let failed = false;
    let immediate: NodeJS.Immediate | undefined;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      if (immediate) clearImmediate(immediate);
      source.off('data', onData);
      reject(err);
    };
    const drain = async () => {
      if (busy || failed) return;
      busy = true;
      try {
        while (pendingBytes > 0 && !failed) {
          // A chunk larger than a frame (not from a pipe, whose reads are 64 KiB) is split.
          let take = 0;
          let n = 0;
          while (take < pending.length && n + pending[take]!.length <= maxBytes) n += pending[take++]!.length;
          let parts: Buffer[];
          if (take === 0) {
            const head = pending[0]!;
            parts = [head.subarray(0, maxBytes)];
            pending[0] = head.subarray(maxBytes);
            n = maxBytes;
          } else {
            parts = pending.slice(0, take);
            pending = pending.slice(take);
          }
          pendingBytes -= n;
          await send(parts, n);
        }
      } catch (err) {
        busy = false;
        return fail(err);
      }
      busy = false;
      if (failed) return;
      if (ended) return resolve();
      source.resume();
    };
    const flush = () => {
      immediate = undefined;
      void drain();
    };
    const onData = (chunk: Buffer) => {
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (busy) {
        // The send in progress takes these next; meanwhile the program waits on its pipe.
        if (pendingBytes >= maxBytes) source.pause();
      } else if (pendingBytes >= maxBytes) {
        source.pause();
        if (immediate) clearImmediate(immediate);
        flush();
      } else {
        immediate ??= setImmediate(flush);
      }
    };
    source.on('data', onData);
    source.once('end', () => {
      ended = true;
      if (immediate) clearImmediate(immediate);
      immediate = undefined;
      if (!busy) void drain().then(() => !failed && !busy && pendingBytes === 0 && resolve());
    });
    source.once('error', fail);
    source.once('close', () => {
      if (!ended) fail(new AgentError('io', 'the program\'s output closed before its end'));
    });
  });
}

export interface StreamSendOptions {
  host: string;
  port: number;
  tls?: TransferTls;
  authKey: string;
  signal?: AbortSignal;
  connectTimeoutMs: number;
  facts: SourceFacts;
  idleTimeoutMs?: number;
  /** Compression of the stream (SeedTransferCompression or the seed's own); off when absent or the receiver offers none. */
  compression?: CompressionMode;
}

export type SenderAnswer =
  | { kind: 'later'; message: string }
  | {
      kind: 'go';
      /** Streams source to the receiver; end() gives the position at the copy's end once source ended well. */
      send(source: Readable, end: () => Promise<BinlogPosition | null>, limiter?: TokenBucket, onProgress?: (p: StreamProgress) => void): Promise<StreamEnd>;
    };

/** Connects, proves the key, tells the facts, and returns the receiver's answer. ERROR from it throws. */
export async function offerStream(opts: StreamSendOptions): Promise<SenderAnswer> {
  const peer = `receiver ${opts.host}:${opts.port}`;
  const socket = await dial(opts, peer);
  const reader = new FrameReader(socket);
  const writer = new FrameWriter(socket);
  socket.on('error', () => undefined);
  socket.setNoDelay(true);
  const onAbort = () => {
    reader.fail(new AgentError('aborted', `stream to ${peer} aborted`));
    socket.destroy();
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const idleMs = opts.idleTimeoutMs ?? 120_000;
  socket.setTimeout(idleMs, () => {
    reader.fail(new AgentError('unavailable', `${peer} did not answer for ${Math.round(idleMs / 1000)} s`));
    socket.destroy();
  });
  const release = () => opts.signal?.removeEventListener('abort', onAbort);
  let codec: Codec | undefined;
  try {
    codec = await senderHandshake(opts, peer, socket, reader, writer);
    await writer.json(t(F.facts), opts.facts);
    const answer = await reader.json([F.later, F.go], 'after the source facts');
    if (answer.type === F.error) throw peerError(answer.body, peer);
    if (answer.type === F.later) {
      socket.end();
      release();
      return { kind: 'later', message: String((answer.body as { message?: unknown }).message ?? '') };
    }
  } catch (err) {
    release();
    socket.destroy();
    throw err;
  }
  return {
    kind: 'go',
    async send(source, end, limiter, onProgress) {
      const started = performance.now();
      const hash = createChecksum(DEFAULT_CHECKSUM);
      let bytes = 0;
      let reported = 0;
      // The receiver speaks again only to end: RESULT, or ERROR at any moment.
      let peerFailure: AgentError | undefined;
      const result = reader.json([F.result], 'before the stream ended').then(
        (f) => {
          if (f.type === F.error) {
            peerFailure = peerError(f.body, peer);
            source.destroy();
            socket.destroy();
            throw peerFailure;
          }
          return f.body as { bytes?: unknown };
        },
        (err: unknown) => {
          // A dead or silent connection (idle timeout) also stops reading the program's output.
          source.destroy(err as Error);
          throw err;
        },
      );
      result.catch(() => undefined);
      const releaseHeap = holdStreamHeapGrowth();
      const packer = codec ? new Packer(codec, opts.compression ?? 'off', socket) : undefined;
      /** Batches compressing, oldest first (sent in this order: their sequence numbers follow it). */
      const compressing: Buffer[] = [];
      const wire = () => (packer ? { wire: packer.wireStats() } : {});
      try {
        await pump(source, STREAM_FRAME_BYTES, async (parts, n) => {
          if (peerFailure) throw peerFailure;
          if (limiter) await limiter.take(n, opts.signal);
          for (const p of parts) hash.update(p);
          bytes += n;
          if (packer) {
            compressing.push(packer.ahead(parts.length === 1 ? parts[0]! : Buffer.concat(parts, n)));
            while (compressing.length > COMPRESS_AHEAD) await packer.send(writer, compressing.shift()!);
          } else {
            await writer.frame(t(F.data), parts);
          }
          const now = performance.now();
          if (now - reported > 500) {
            reported = now;
            onProgress?.({ bytesDone: bytes, seconds: (now - started) / 1000, ...wire() });
          }
        });
        if (packer) while (compressing.length > 0) await packer.send(writer, compressing.shift()!);
        const positionAtEnd = await end();
        const checksum = hash.digest();
        await writer.json(t(F.end), { bytes, checksum, positionAtEnd });
        await result;
        onProgress?.({ bytesDone: bytes, seconds: (performance.now() - started) / 1000, ...wire() });
        socket.end();
        return { bytes, checksum, positionAtEnd, compression: codec ?? null, wireBytes: packer?.wireBytes ?? bytes };
      } catch (err) {
        if (peerFailure) throw peerFailure;
        const e = asAgentError(err);
        writer.error(e);
        socket.end();
        setTimeout(() => socket.destroy(), 1000).unref();
        throw e;
      } finally {
        releaseHeap();
        release();
      }
    },
  };
}

/** The sender's half of the handshake: magic, HELLO, AUTH, WELCOME (each side proves the key). Answers the codec agreed on. */
async function senderHandshake(opts: Pick<StreamSendOptions, 'authKey' | 'tls' | 'compression'>, peer: string, socket: Socket, reader: FrameReader, writer: FrameWriter): Promise<Codec | undefined> {
  await writeAll(socket, [STREAM_MAGIC]);
  const hello = await reader.json([F.hello], 'during the handshake');
  if (hello.type === F.error) throw peerError(hello.body, peer);
  const hb = hello.body as { version?: unknown; nonce?: unknown };
  if (hb.version !== VERSION || typeof hb.nonce !== 'string') throw new AgentError('bad_request', `${peer} speaks stream version ${String(hb.version)}, this sender ${VERSION}`);
  const myNonce = newNonce();
  // A receiver from before compression offers no codec: the stream then goes as plain DATA frames.
  const codec = chooseCodec(opts.compression, offeredCodecs(hello.body));
  await writer.json(t(F.auth), { mac: proof(opts.authKey, 'sender', hb.nonce), nonce: myNonce, ...(codec ? { compression: codec } : {}) });
  if (!opts.tls) {
    const keys = frameKeys(opts.authKey, hb.nonce, myNonce);
    reader.authenticate(keys.receiverToSender);
    writer.authenticate(keys.senderToReceiver);
  }
  // A receiver refusing the key cannot tag its ERROR frame with a key it does not share.
  const welcome = await reader.json([F.welcome], 'during the handshake', { plainError: true });
  if (welcome.type === F.error) {
    const e = peerError(welcome.body, peer);
    throw e.code === 'unauthorized' ? new AgentError('unauthorized', `${peer} refused this sender: wrong transfer key`, { hint: 'pass the key the target seed reported' }) : e;
  }
  if (!proofMatches(opts.authKey, 'receiver', myNonce, (welcome.body as { mac?: unknown }).mac)) {
    throw new AgentError('unauthorized', `${peer} could not prove it holds the transfer key`, { hint: 'check host and port point at the target agent' });
  }
  return codec;
}

export type TellStreamReceiverOptions = Pick<StreamSendOptions, 'host' | 'port' | 'tls' | 'authKey' | 'signal'> & {
  /** How long to keep trying to reach a receiver that is not listening (yet, or again after a cut stream). */
  withinMs?: number;
};

/**
 * A source seed that ends without having streamed the whole copy (failed, aborted, or aborted and then
 * killed and restarted) tells its receiver why: the handshake with the seed's key, then one ERROR frame,
 * marked permanent, instead of the facts. The target seed ends at once with this reason (aborted when this
 * one was) instead of waiting for a stream that will not come until its reconnect deadline. Answers
 * whether the receiver was told.
 */
export async function tellStreamReceiver(opts: TellStreamReceiverOptions, reason: AgentError): Promise<boolean> {
  const peer = `receiver ${opts.host}:${opts.port}`;
  const until = Date.now() + (opts.withinMs ?? 20_000);
  for (;;) {
    if (opts.signal?.aborted) return false;
    let socket: Socket | undefined;
    try {
      socket = await dial({ ...opts, connectTimeoutMs: 5000 }, peer);
      socket.on('error', () => undefined);
      const reader = new FrameReader(socket);
      const writer = new FrameWriter(socket);
      const timer = setTimeout(() => reader.fail(new AgentError('unavailable', `${peer} did not answer the handshake`)), handshakeTimeoutMs);
      try {
        await senderHandshake(opts, peer, socket, reader, writer);
      } finally {
        clearTimeout(timer);
      }
      await writer.json(t(F.error), errorBody(new AgentError(reason.code, reason.message, { hint: reason.hint, details: { permanent: true } })));
      await new Promise<void>((r) => socket!.end(r));
      log.info('stream: told the receiver why this sender stops', { peer, reason: reason.message });
      return true;
    } catch (err) {
      const e = asAgentError(err);
      // Not listening (yet, or any more): try again for a while; any other answer will not change.
      if (e.code !== 'unavailable' || Date.now() >= until) {
        log.warn('stream: could not tell the receiver why this sender stops', { peer, error: e.message });
        return false;
      }
      // The agent stopping cuts the pause short (a background teller must not hold its exit).
      await sleep(1000, undefined, { signal: opts.signal }).catch(() => undefined);
    } finally {
      socket?.destroy();
    }
  }
}

function dial(opts: Pick<StreamSendOptions, 'host' | 'port' | 'tls' | 'connectTimeoutMs'>, peer: string): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const socket: Socket = transferConnect(opts.host, opts.port, opts.tls);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new AgentError('unavailable', `cannot reach ${peer} within ${Math.round(opts.connectTimeoutMs / 1000)} s`));
    }, opts.connectTimeoutMs);
    socket.once(opts.tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new AgentError('unavailable', `cannot connect to ${peer}: ${err.code ?? err.message}`, {
        hint: err.code === 'ECONNREFUSED' ? 'the target is not listening (yet); the source keeps trying until its connect deadline' : undefined,
      }));
    });
  });
}
