// Compression on the built-in transfer's wire, negotiated in the handshake so that a peer without it (protocol 3
// before compression, today's main) is unaffected:
//   - the receiver lists the codecs it can decode in HELLO ({ compression: ['zstd', 'lz4', 'brotli'] }); an
//     older receiver lists fewer or none, and an older sender ignores the list;
//   - a sender that wants compression and finds a codec there names it in AUTH and may then send ZDATA frames
//     instead of DATA frames: [codec u8][raw length u32 BE][compressed bytes]. A chunk that does not shrink
//     goes as plain DATA, so incompressible files cost no bytes.
// Only the bytes on the wire change: each ZDATA frame is tagged (GMAC) or TLS-protected like any frame, and
// checked before it is decoded; chunk and file checksums, resume offsets and progress count the
// uncompressed bytes. A frame decodes alone (no state across frames), so resume needs nothing more.
//
// Codecs, measured on the bench's MariaDB datadir (README "Compression"): zstd (@toondepauw/node-zstd, napi-rs
// with its binary inside the npm package) level 1 ~3.3x for about lz4's CPU, level 3 ~3.6x; lz4 (lz4-napi)
// ~2.3x; brotli quality 1 (Node's zlib) ~3.2x at twice zstd's CPU. Modes: fast = zstd level 1, strong = zstd
// level 3, auto = fast for the chunks read while the link is the bottleneck (the socket still holds more
// than autoQueueBytes unsent when the chunk comes off the disk), plain otherwise; off = never. lz4 and brotli
// remain for receivers from before zstd (and a platform where its binary does not load).
import { createRequire } from 'node:module';
import type { Duplex } from 'node:stream';
import { promisify } from 'node:util';
import { brotliCompress, brotliDecompress, constants as zlibConstants } from 'node:zlib';
import { AgentError } from '../errors.js';
import { log } from '../log.js';
import { FrameType, MAX_DATA_BYTES, writeAll, type FrameWriter } from './protocol.js';
import type { WireStats } from './progress.js';

export const COMPRESSION_MODES = ['off', 'fast', 'strong', 'auto'] as const;
export type CompressionMode = (typeof COMPRESSION_MODES)[number];
export const CODECS = ['lz4', 'brotli', 'zstd'] as const;
export type Codec = (typeof CODECS)[number];

const codecIds: Record<Codec, number> = { lz4: 1, brotli: 2, zstd: 3 };
/** ZDATA payload header: codec id, then the uncompressed length. */
export const ZDATA_HEADER_BYTES = 5;
/** auto: a chunk is compressed when the socket still holds this much unsent data as the chunk is read. */
export const autoQueueBytes = 1024 * 1024;
const brotliQuality = 1;
/** zstd levels: fast's is the cheapest that still beats lz4's ratio by far; strong's the library's default. */
const zstdLevels = { fast: 1, strong: 3 } as const;

export function isCompressionMode(v: unknown): v is CompressionMode {
  return typeof v === 'string' && (COMPRESSION_MODES as readonly string[]).includes(v);
}

interface Lz4 {
  compress(data: Buffer): Promise<Buffer>;
  uncompress(data: Buffer): Promise<Buffer>;
}

let lz4Module: Lz4 | null | undefined;
/** lz4-napi's native binding, or null where it does not load (a platform without a prebuilt binary): lz4 is then not offered. */
function lz4(): Lz4 | null {
  if (lz4Module === undefined) {
    try {
      lz4Module = createRequire(import.meta.url)('lz4-napi') as Lz4;
    } catch (err) {
      log.warn('transfer: lz4 compression unavailable (lz4-napi did not load); brotli only', { error: String(err) });
      lz4Module = null;
    }
  }
  return lz4Module;
}

interface ZstdBinding {
  Encoder: new (level: number) => { encode(data: Buffer): Promise<Buffer> };
  Decoder: new () => { decode(data: Buffer): Promise<Buffer> };
}

interface Zstd {
  encode(level: keyof typeof zstdLevels, data: Buffer): Promise<Buffer>;
  decode(data: Buffer): Promise<Buffer>;
}

let zstdModule: Zstd | null | undefined;
/** The zstd binding (encoders per level, one decoder), or null where it does not load: zstd is then not offered. */
function zstd(): Zstd | null {
  if (zstdModule === undefined) {
    try {
      const { Encoder, Decoder } = createRequire(import.meta.url)('@toondepauw/node-zstd') as ZstdBinding;
      const encoders = { fast: new Encoder(zstdLevels.fast), strong: new Encoder(zstdLevels.strong) };
      const decoder = new Decoder();
      zstdModule = { encode: (level, data) => encoders[level].encode(data), decode: (data) => decoder.decode(data) };
    } catch (err) {
      log.warn('transfer: zstd compression unavailable (@toondepauw/node-zstd did not load); lz4 and brotli only', { error: String(err) });
      zstdModule = null;
    }
  }
  return zstdModule;
}

const brotli = promisify(brotliCompress);
const unbrotli = promisify(brotliDecompress);

/** The codecs this agent decodes, in the order a receiver offers them. */
export function decodableCodecs(): Codec[] {
  return CODECS.filter((c) => (c === 'zstd' ? zstd() : c === 'lz4' ? lz4() : true));
}

/** The codecs a HELLO offers (an older receiver's HELLO has none). */
export function offeredCodecs(body: unknown): Codec[] {
  const list = (body as { compression?: unknown } | null)?.compression;
  return Array.isArray(list) ? CODECS.filter((c) => list.includes(c)) : [];
}

/** The codec a sender in this mode uses with a receiver offering these, or undefined for plain DATA frames. */
export function chooseCodec(mode: CompressionMode | undefined, offered: readonly Codec[]): Codec | undefined {
  if (!mode || mode === 'off') return undefined;
  const local = decodableCodecs();
  // zstd first; with a receiver from before it, what suits the mode best of what it offers.
  const order: Codec[] = mode === 'strong' ? ['zstd', 'brotli', 'lz4'] : ['zstd', 'lz4', 'brotli'];
  return order.find((c) => offered.includes(c) && local.includes(c));
}

async function compress(codec: Codec, mode: CompressionMode, buf: Buffer): Promise<Buffer> {
  if (codec === 'zstd') return zstd()!.encode(mode === 'strong' ? 'strong' : 'fast', buf);
  if (codec === 'lz4') return lz4()!.compress(buf);
  return brotli(buf, {
    params: { [zlibConstants.BROTLI_PARAM_QUALITY]: brotliQuality, [zlibConstants.BROTLI_PARAM_SIZE_HINT]: buf.length },
  });
}

/**
 * The sender's side: decides per chunk whether to compress, starts compressing as soon as a chunk is read (so
 * several compress in parallel on libuv's pool while the socket sends), and sends each chunk as ZDATA when
 * that is smaller, DATA otherwise. Counts raw and wire bytes.
 */
export class Packer {
  /** File bytes handed to send(). */
  rawBytes = 0;
  /** Payload bytes of the DATA and ZDATA frames sent for them. */
  wireBytes = 0;
  private readonly started = new WeakMap<Buffer, Promise<Buffer | undefined>>();

  constructor(
    readonly codec: Codec,
    private readonly mode: CompressionMode,
    private readonly socket: Duplex,
  ) {}

  /** What the data sent so far cost on the wire (the sender's progress reports it). */
  wireStats(): WireStats {
    return { compression: this.codec, dataBytes: this.rawBytes, wireBytes: this.wireBytes };
  }

  /** Starts compressing buf if this chunk is to be compressed; returns buf (chain it after a read). */
  ahead = (buf: Buffer): Buffer => {
    if (buf.length > 0 && !this.started.has(buf) && this.wanted()) {
      const p = compress(this.codec, this.mode, buf).then(
        (z) => (z.length + ZDATA_HEADER_BYTES < buf.length ? z : undefined),
        (err: unknown) => {
          log.warn('transfer: compressing a chunk failed; sending it uncompressed', { codec: this.codec, error: String(err) });
          return undefined;
        },
      );
      this.started.set(buf, p);
    }
    return buf;
  };

  private wanted(): boolean {
    return this.mode !== 'auto' || this.socket.writableLength >= autoQueueBytes;
  }

  /** Sends buf as one frame: ZDATA when compressing it made it smaller, DATA otherwise. */
  async send(writer: FrameWriter, buf: Buffer, onWritten?: () => void): Promise<void> {
    this.ahead(buf);
    const z = await this.started.get(buf);
    this.started.delete(buf);
    this.rawBytes += buf.length;
    if (!z) {
      this.wireBytes += buf.length;
      return writer.data(buf, onWritten);
    }
    const head = Buffer.allocUnsafe(ZDATA_HEADER_BYTES);
    head.writeUInt8(codecIds[this.codec], 0);
    head.writeUInt32BE(buf.length, 1);
    this.wireBytes += ZDATA_HEADER_BYTES + z.length;
    // Through the writer: control frames it holds (a small file's FILE_BEGIN) go first, in sequence.
    return writer.frame(FrameType.zdata, [head, z], onWritten);
  }
}

/**
 * The receiver's side for one file: decodes ZDATA payloads a few ahead (on libuv's pool, while the receiver
 * hashes and writes what came before) and hands them back in order. `left` is what the file has left beyond
 * the bytes already taken; frames still decoding count against it by the length they declare.
 */
export class Unpacker {
  private readonly queue: Array<{ raw: Promise<Buffer>; declared: number }> = [];
  private queuedBytes = 0;
  constructor(
    private readonly accepted: readonly Codec[],
    private readonly what: string,
    private readonly ahead = 3,
  ) {}

  /** Starts decoding payload; answers the frames now due, oldest first (keeping up to `ahead` decoding). */
  async push(payload: Buffer, left: number): Promise<Buffer[]> {
    const frame = zdataHeader(payload, this.accepted, Math.min(MAX_DATA_BYTES, Math.max(0, left - this.queuedBytes)), this.what);
    const raw = decode(frame, this.what);
    raw.catch(() => undefined); // awaited in order below
    this.queue.push({ raw, declared: frame.rawLength });
    this.queuedBytes += frame.rawLength;
    return this.take(this.ahead);
  }

  /** True while frames are decoding (the receiver drains them before any other frame). */
  get pending(): boolean {
    return this.queue.length > 0;
  }

  /** Every frame still decoding, in order: before the receiver handles any other frame. */
  drain(): Promise<Buffer[]> {
    return this.take(0);
  }

  private async take(keep: number): Promise<Buffer[]> {
    const out: Buffer[] = [];
    while (this.queue.length > keep) {
      const { raw, declared } = this.queue.shift()!;
      this.queuedBytes -= declared;
      out.push(await raw);
    }
    return out;
  }
}

/**
 * The receiver's side: checks one ZDATA payload's header (its tag already checked): a codec this receiver
 * offered, and a raw length of at most maxBytes (what is left of the file), so a frame cannot make the
 * receiver allocate more than the file it announced. Throws at once, before any decoding.
 */
function zdataHeader(payload: Buffer, accepted: readonly Codec[], maxBytes: number, what: string): { codec: Codec; rawLength: number; body: Buffer } {
  if (payload.length < ZDATA_HEADER_BYTES) throw badFrame(what, 'is shorter than its header');
  const codec = CODECS.find((c) => codecIds[c] === payload.readUInt8(0));
  if (!codec || !accepted.includes(codec)) throw badFrame(what, `uses codec ${payload.readUInt8(0)}, which this receiver did not offer`);
  const rawLength = payload.readUInt32BE(1);
  if (rawLength > maxBytes) throw badFrame(what, `declares ${rawLength} bytes, more than the ${maxBytes} the file has left`);
  return { codec, rawLength, body: payload.subarray(ZDATA_HEADER_BYTES) };
}

function badFrame(what: string, why: string): AgentError {
  return new AgentError('bad_request', `a compressed data frame of ${what} ${why}`, { hint: 'run the same agent version on both hosts', details: { permanent: true } });
}

/** Decodes a ZDATA payload (its header checked by zdataHeader) into exactly the raw length it declares. */
async function decode({ codec, rawLength, body }: { codec: Codec; rawLength: number; body: Buffer }, what: string): Promise<Buffer> {
  let raw: Buffer;
  try {
    if (codec === 'zstd') {
      // The binding cannot bound its output before decoding (its frames carry no size): the frame's tag, checked
      // before this, limits what arrives here to the key holder's own frames; the size is checked below.
      raw = await zstd()!.decode(body);
    } else if (codec === 'lz4') {
      // lz4-napi's block format starts with the uncompressed size (u32 LE), which it allocates: check it first.
      if (body.length < 4 || body.readUInt32LE(0) !== rawLength) throw new Error(`its lz4 block declares another size`);
      raw = await lz4()!.uncompress(body);
    } else {
      raw = await unbrotli(body, { maxOutputLength: Math.max(1, rawLength) });
    }
  } catch (err) {
    throw badFrame(what, `does not decode (${codec}): ${(err as Error).message}`);
  }
  if (raw.length !== rawLength) throw badFrame(what, `decodes to ${raw.length} bytes, not the ${rawLength} it declares`);
  return raw;
}
