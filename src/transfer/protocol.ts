// Wire format of the built-in transfer: a magic line from the sender, then length-prefixed frames both ways.
// A frame is [type u8][length u32 BE][payload]; control frames carry JSON, DATA frames carry file bytes.
// Without TLS, every frame after the handshake (from WELCOME on) ends with a 16-byte tag: AES-256-GCM over an
// empty plaintext with the frame's header and payload as additional data (GMAC), keyed per direction from the
// seed's key and both handshake nonces (auth.ts frameKeys), with the frame's sequence number as the IV. So a
// changed, dropped, replayed or reordered frame fails its tag and the transfer; the payload stays readable
// (confidentiality is TLS's job), and GMAC runs at several GB/s where HMAC-SHA256 runs at ~1.3.
import { createCipheriv, createDecipheriv, type DecipherGCM } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { AgentError } from '../errors.js';

/** Sent first by the sender, so a TLS/plaintext mismatch fails at once instead of both sides waiting. */
export const MAGIC = Buffer.from('OATRANSFER/1\n', 'ascii');
/** 2: frames after the handshake carry a tag when the channel is not TLS. 3: per-chunk checksums and resume. */
export const PROTOCOL_VERSION = 3;
/** The stream of seeds by backup or dump (stream.ts): the same frames and handshake, its own magic so neither side mistakes the other. */
export const STREAM_MAGIC = Buffer.from('OASTREAM/1\n', 'ascii');
export const STREAM_VERSION = 1;
export const TAG_BYTES = 16;

export const FrameType = {
  /** R→S: { version, nonce, compression?: codecs it decodes (compression.ts) } */
  hello: 1,
  /** S→R: { mac, nonce, compression?: the codec its ZDATA frames use } */
  auth: 2,
  /** R→S: { mac, have: VerifiedFile[], resume: [{ path, size, mtimeMs, algorithm, offset }], chunkBytes } */
  welcome: 3,
  /** S→R: { entries: ManifestEntry[], sendCount, sendBytes } */
  manifest: 4,
  /** S→R: { index, offset } (offset: where a partly received file resumes, 0 otherwise) */
  fileBegin: 5,
  /** S→R: raw bytes of the current file */
  data: 6,
  /** S→R: { index, checksum } (checksum of the whole file, or null: every chunk was checked already) */
  fileEnd: 7,
  /** S→R: {} every file was sent */
  end: 8,
  /** R→S: ReceiveSummary, after the final manifest is durable */
  result: 9,
  /** either way: { code, message, hint, permanent } then the connection closes */
  error: 10,
  /** S→R: { index, end, checksum } after each chunk of a file (welcome's chunkBytes; the last may be shorter) */
  chunk: 11,
  /** S→R: file bytes compressed, only to a receiver that offered the codec: [codec u8][raw length u32 BE][bytes] */
  zdata: 12,
} as const;
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

export const HEADER_BYTES = 5;
/** Control frames hold JSON (the manifest of a large datadir can be tens of MB). */
export const MAX_CONTROL_BYTES = 512 * 1024 * 1024;
export const MAX_DATA_BYTES = 16 * 1024 * 1024;

export function frameHeader(type: FrameTypeValue, length: number): Buffer {
  const h = Buffer.allocUnsafe(HEADER_BYTES);
  h.writeUInt8(type, 0);
  h.writeUInt32BE(length, 1);
  return h;
}

export function jsonFrame(type: FrameTypeValue, body: unknown): Buffer {
  const payload = Buffer.from(JSON.stringify(body), 'utf8');
  return Buffer.concat([frameHeader(type, payload.length), payload]);
}

function frameIv(seq: bigint): Buffer {
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64BE(seq, 4);
  return iv;
}

/** Tags the frames one side sends, numbering them; the other side's FrameReader checks them in order. */
export class FrameSealer {
  private seq = 0n;
  constructor(private readonly key: Buffer) {}

  tag(header: Buffer, payload: readonly Buffer[]): Buffer {
    const gmac = createCipheriv('aes-256-gcm', this.key, frameIv(this.seq++));
    gmac.setAAD(header);
    for (const p of payload) gmac.setAAD(p);
    gmac.final();
    return gmac.getAuthTag();
  }
}

/**
 * Writes frames to a socket, tagged once authenticate() gave it a key. Encoding is synchronous, so the frames
 * leave in the order they were encoded (the sequence numbers the peer expects).
 */
export class FrameWriter {
  private sealer: FrameSealer | undefined;
  /** Frames encoded by hold(), sent ahead of the next frame written (one write, one segment for a small file). */
  private held: Buffer[] = [];
  constructor(private readonly socket: Duplex) {}

  authenticate(key: Buffer): void {
    this.sealer = new FrameSealer(key);
  }

  /**
   * Encodes a control frame now (its place in the sequence) and sends it with the next frame written, so a
   * small file's FILE_BEGIN, DATA, CHUNK and FILE_END leave in one write instead of four.
   */
  hold(type: FrameTypeValue, body: unknown): void {
    this.held.push(...this.encodeJson(type, body));
  }

  private withHeld(buffers: Buffer[]): Buffer[] {
    if (this.held.length === 0) return buffers;
    const all = [...this.held, ...buffers];
    this.held = [];
    return all;
  }

  encode(type: FrameTypeValue, payload: readonly Buffer[]): Buffer[] {
    const length = payload.reduce((n, p) => n + p.length, 0);
    const header = frameHeader(type, length);
    return this.sealer ? [header, ...payload, this.sealer.tag(header, payload)] : [header, ...payload];
  }

  encodeJson(type: FrameTypeValue, body: unknown): Buffer[] {
    return this.encode(type, [Buffer.from(JSON.stringify(body), 'utf8')]);
  }

  json(type: FrameTypeValue, body: unknown): Promise<void> {
    return writeAll(this.socket, this.withHeld(this.encodeJson(type, body)));
  }

  /** onWritten: called once the socket has taken buf's bytes (so the caller may reuse it), not on failure. */
  data(buf: Buffer, onWritten?: () => void): Promise<void> {
    return this.frame(FrameType.data, [buf], onWritten);
  }

  /** Any frame, after the held ones; onWritten as for data(). */
  frame(type: FrameTypeValue, payload: readonly Buffer[], onWritten?: () => void): Promise<void> {
    return writeAll(this.socket, this.withHeld(this.encode(type, payload)), onWritten);
  }

  /** For failure paths: queues the ERROR frame (after any held ones, whose sequence numbers come first) without waiting. */
  error(err: AgentError): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    for (const b of this.withHeld(this.encodeJson(FrameType.error, errorBody(err)))) this.socket.write(b);
  }
}

export function frameName(type: number): string {
  return Object.entries(FrameType).find(([, v]) => v === type)?.[0] ?? `unknown(${type})`;
}

/**
 * Pull-style reader over a socket: buffers incoming chunks (pausing the socket above a high-water mark,
 * so TCP pushes back on the sender) and hands out exact byte counts or whatever slices are available.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  private openKey: Buffer | undefined;
  private openSeq = 0n;
  /** The frame being read when authenticated: its GMAC so far and the payload bytes still to come. */
  private open: { gmac: DecipherGCM; left: number; type: number } | undefined;
  private static readonly high = 8 * 1024 * 1024;
  private static readonly low = 2 * 1024 * 1024;

  constructor(private readonly stream: Duplex) {
    stream.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      if (this.buffered > FrameReader.high) stream.pause();
      this.notify();
    });
    stream.on('end', () => {
      this.ended = true;
      this.notify();
    });
    stream.on('close', () => {
      this.ended = true;
      this.notify();
    });
    stream.on('error', (err: Error) => {
      this.failure ??= err;
      this.notify();
    });
  }

  /** From now on every frame must carry a valid tag made with key (see FrameSealer). */
  authenticate(key: Buffer): void {
    this.openKey = key;
  }

  /** Makes every pending and later read fail with err (abort, timeout). */
  fail(err: Error): void {
    this.failure ??= err;
    this.notify();
  }

  get bufferedBytes(): number {
    return this.buffered;
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private async waitFor(n: number): Promise<boolean> {
    while (this.buffered < n) {
      if (this.failure) throw this.failure;
      if (this.ended) return false;
      await new Promise<void>((r) => (this.wake = r));
    }
    if (this.failure) throw this.failure;
    return true;
  }

  private take(n: number): Buffer[] {
    const out: Buffer[] = [];
    let need = n;
    while (need > 0) {
      const head = this.chunks[0]!;
      if (head.length <= need) {
        out.push(head);
        this.chunks.shift();
        need -= head.length;
      } else {
        out.push(head.subarray(0, need));
        this.chunks[0] = head.subarray(need);
        need = 0;
      }
    }
    this.buffered -= n;
    if (this.buffered < FrameReader.low && this.stream.isPaused()) this.stream.resume();
    return out;
  }

  /**
   * The next frame header, or null when the peer closed cleanly between frames. plainError: an ERROR frame
   * here may come untagged (a receiver refusing the key cannot tag with a key it does not share).
   */
  async header(opts: { plainError?: boolean } = {}): Promise<{ type: number; length: number } | null> {
    if (this.open) throw new AgentError('internal', `the previous ${frameName(this.open.type)} frame was not read to its end`);
    if (!(await this.waitFor(HEADER_BYTES))) {
      if (this.buffered === 0) return null;
      throw new AgentError('io', 'connection closed in the middle of a frame header');
    }
    const h = Buffer.concat(this.take(HEADER_BYTES));
    const type = h.readUInt8(0);
    const length = h.readUInt32BE(1);
    if (this.openKey && !(opts.plainError && type === FrameType.error)) {
      const gmac = createDecipheriv('aes-256-gcm', this.openKey, frameIv(this.openSeq++));
      gmac.setAAD(h);
      this.open = { gmac, left: length, type };
      if (length === 0) await this.closeFrame();
    }
    return { type, length };
  }

  /** Feeds payload bytes to the frame's GMAC; at the frame's end reads its tag and checks it. */
  private async authenticated(parts: Buffer[]): Promise<void> {
    const open = this.open;
    if (!open) return;
    for (const p of parts) {
      open.gmac.setAAD(p);
      open.left -= p.length;
    }
    if (open.left <= 0) await this.closeFrame();
  }

  private async closeFrame(): Promise<void> {
    const open = this.open!;
    if (!(await this.waitFor(TAG_BYTES))) throw new AgentError('io', `connection closed before the tag of a ${frameName(open.type)} frame`);
    const tag = Buffer.concat(this.take(TAG_BYTES));
    this.open = undefined;
    try {
      open.gmac.setAuthTag(tag);
      open.gmac.final();
    } catch {
      throw new AgentError('io', `a ${frameName(open.type)} frame failed authentication: it was changed on the way`, {
        hint: 'something between the agents alters the transfer; use SeedTransferUseSSL or check the network path',
        details: { permanent: true },
      });
    }
  }

  async exact(n: number): Promise<Buffer> {
    if (n === 0) return Buffer.alloc(0);
    if (!(await this.waitFor(n))) throw new AgentError('io', `connection closed while ${n} bytes were expected`);
    const parts = this.take(n);
    await this.authenticated(parts);
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /** Whatever is buffered, at least one byte and at most max, as slices (no copy); a frame's last bytes only once its tag checked out. */
  async some(max: number): Promise<Buffer[]> {
    if (!(await this.waitFor(1))) throw new AgentError('io', 'connection closed in the middle of file data');
    const parts = this.take(Math.min(max, this.buffered));
    await this.authenticated(parts);
    return parts;
  }

  /** Reads one control frame and parses its JSON. */
  async json(expected: readonly number[], stage: string, opts: { plainError?: boolean } = {}): Promise<{ type: number; body: unknown }> {
    const h = await this.header(opts);
    if (!h) throw new AgentError('io', `peer closed the connection ${stage}`);
    if (h.type === FrameType.data) throw new AgentError('bad_request', `unexpected file data ${stage}`);
    if (h.length > MAX_CONTROL_BYTES) throw new AgentError('bad_request', `control frame of ${h.length} bytes ${stage} is too large`);
    const payload = await this.exact(h.length);
    if (h.type !== FrameType.error && !expected.includes(h.type)) {
      throw new AgentError('bad_request', `unexpected ${frameName(h.type)} frame ${stage}`);
    }
    let body: unknown;
    try {
      body = JSON.parse(payload.toString('utf8'));
    } catch {
      throw new AgentError('bad_request', `malformed ${frameName(h.type)} frame ${stage}`);
    }
    return { type: h.type, body };
  }
}

/** errno codes that no retry fixes: the disk or the permissions on the receiving side must change first. */
const permanentErrnos = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'ENOTDIR', 'EISDIR', 'ENAMETOOLONG']);

/**
 * True when trying the transfer again cannot help: a refused key or manifest, a full or read-only disk, an
 * aborted peer, an invalidated source snapshot, or the peer said so in its ERROR frame. A dropped
 * connection, a timeout or a checksum mismatch may go well the next time. Both sides' retry loops and the receiver's ERROR frame use this.
 */
export function isPermanentFailure(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof AgentError) {
      if (e.details?.permanent === true) return true;
      if (['unauthorized', 'forbidden', 'bad_request', 'config', 'aborted', 'snapshot_invalid'].includes(e.code)) return true;
    } else {
      const errno = (e as NodeJS.ErrnoException).code;
      if (typeof errno === 'string' && permanentErrnos.has(errno)) return true;
    }
  }
  return false;
}

/** The ERROR frame's body for err: what the peer shows as its failure, and whether retrying could help. */
export function errorBody(err: AgentError): { code: string; message: string; hint: string | null; permanent: boolean } {
  return { code: err.code, message: err.message, hint: err.hint ?? null, permanent: isPermanentFailure(err) };
}

/**
 * The peer's ERROR frame as an AgentError, keeping its code when it is one we know; details.fromPeer marks
 * it as the other side's own reason (which a later "connection refused" must not hide).
 */
export function peerError(body: unknown, peer: string): AgentError {
  const b = (body ?? {}) as { code?: unknown; message?: unknown; hint?: unknown; permanent?: unknown };
  const known = ['unauthorized', 'forbidden', 'bad_request', 'io', 'aborted', 'conflict', 'unavailable', 'snapshot_invalid'];
  const code = typeof b.code === 'string' && known.includes(b.code) ? (b.code as 'io') : 'io';
  const message = typeof b.message === 'string' ? b.message : 'no reason given';
  return new AgentError(code, `${peer} stopped the transfer: ${message}`, {
    hint: typeof b.hint === 'string' ? b.hint : undefined,
    details: { fromPeer: true, permanent: b.permanent === true },
  });
}

const queueBytes = 4 * 1024 * 1024;

/** Writes buffers and waits when the socket's buffer is full (backpressure); onWritten once all were taken (not on failure). */
export async function writeAll(socket: Duplex, buffers: readonly Buffer[], onWritten?: () => void): Promise<void> {
  let ok = true;
  if (buffers.length > 1) socket.cork();
  for (const [i, b] of buffers.entries()) {
    ok = (onWritten && i === buffers.length - 1 ? socket.write(b, (err) => err || onWritten()) : socket.write(b)) && ok;
  }
  if (buffers.length > 1) socket.uncork();
  // Keep a few MiB queued rather than waiting for every write to drain, so the socket never runs dry.
  if (!ok && socket.writableLength > queueBytes && !socket.destroyed) {
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        socket.off('drain', onDrain);
        socket.off('close', onClose);
        socket.off('error', done);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = () => done();
      const onClose = () => done(new AgentError('io', 'connection closed while sending'));
      socket.on('drain', onDrain);
      socket.on('close', onClose);
      socket.on('error', done);
    });
  }
  if (socket.destroyed) throw new AgentError('io', 'connection closed while sending');
}
