// One authenticated byte stream between two agents (src/transfer/stream.ts), over real TCP on 127.0.0.1:
// facts first, LATER or GO or a refusal, the bytes with a checksum, and a cut stream that fails (to restart).
import { describe, expect, test } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { AgentError } from '../src/errors.js';
import { newAuthKey } from '../src/transfer/auth.js';
import { isPermanentFailure } from '../src/transfer/protocol.js';
import { acceptStream, offerStream, pump, STREAM_FRAME_BYTES, tellStreamReceiver, type SourceFacts, type StreamProgress } from '../src/transfer/stream.js';
import { releasePort, tellSenders } from '../src/transfer/farewell.js';
import { holdStreamHeapGrowth, streamHeapGrowthHolders } from '../src/transfer/heap-growth.js';
import { freePort } from './support/seed-hosts.js';

const facts: SourceFacts = { mysqlRunning: true, version: '10.11.19-MariaDB', dataBytes: 123456, logBin: true, gtidMode: false, mysqlHost: '', mysqlPort: 3306 };

function collect(sink: PassThrough): Promise<Buffer> {
  const parts: Buffer[] = [];
  sink.on('data', (d: Buffer) => parts.push(d));
  return new Promise((r) => sink.on('end', () => r(Buffer.concat(parts))));
}

describe('the backup stream', () => {
  test('the sender puts what the program wrote in one turn into few frames of at most STREAM_FRAME_BYTES, in order, and holds the program while a frame waits', async () => {
    const source = new PassThrough({ highWaterMark: 64 * 1024 });
    const data = randomBytes(64 * 64 * 1024 + 5);
    const batches: Buffer[][] = [];
    let release: (() => void) | undefined;
    const sent = pump(source, STREAM_FRAME_BYTES, async (parts, n) => {
      expect(n).toBe(parts.reduce((a, p) => a + p.length, 0));
      batches.push(parts);
      // The first frame waits (a full socket): the program's output is not read on meanwhile.
      if (batches.length === 1) await new Promise<void>((r) => (release = r));
    });
    // 64 pipe reads' worth in one turn, as a fast program fills its pipe, then a tail.
    for (let at = 0; at < data.length - 5; at += 64 * 1024) source.write(data.subarray(at, at + 64 * 1024));
    await new Promise((r) => setTimeout(r, 50));
    expect(batches).toHaveLength(1);
    expect(source.isPaused()).toBe(true);
    release!();
    source.end(data.subarray(data.length - 5));
    await sent;
    expect(Buffer.concat(batches.flat()).equals(data)).toBe(true);
    // One frame per MiB, not one per 64 KiB read.
    expect(batches.length).toBeLessThanOrEqual(6);
    for (const b of batches) expect(b.reduce((a, p) => a + p.length, 0)).toBeLessThanOrEqual(STREAM_FRAME_BYTES);
    // A single chunk larger than a frame is split.
    const big: Buffer[][] = [];
    await pump(Readable.from([data]), STREAM_FRAME_BYTES, async (parts) => void big.push(parts));
    expect(big.length).toBe(Math.ceil(data.length / STREAM_FRAME_BYTES));
    expect(Buffer.concat(big.flat()).equals(data)).toBe(true);
  });

  test('the sender stops on its program\'s failure and on a failed frame', async () => {
    const broken = new PassThrough();
    const failing = pump(broken, STREAM_FRAME_BYTES, async () => undefined);
    broken.write(Buffer.alloc(10));
    broken.destroy(new Error('program output failed'));
    await expect(failing).rejects.toThrow('program output failed');
    const source = new PassThrough();
    const refused = pump(source, STREAM_FRAME_BYTES, async () => {
      throw new AgentError('io', 'socket gone');
    });
    source.end(Buffer.alloc(100));
    await expect(refused).rejects.toThrow('socket gone');
  });

  test('the sender tells its facts, is told to come back later, then streams every byte with the position at the end', async () => {
    const port = await freePort();
    const authKey = newAuthKey();
    const listen = { port, bindAddress: '127.0.0.1', authKey, connectTimeoutMs: 10000 };
    const first = acceptStream(listen);
    const answer = offerStream({ host: '127.0.0.1', port, authKey, connectTimeoutMs: 5000, facts });
    const session = await first;
    expect(session.facts).toEqual(facts);
    expect(session.peerAddress).toBe('127.0.0.1');
    await session.later('checks passed');
    expect(await answer).toEqual({ kind: 'later', message: 'checks passed' });

    const data = randomBytes(5 * 1024 * 1024 + 17);
    const second = acceptStream(listen);
    const offered = offerStream({ host: '127.0.0.1', port, authKey, connectTimeoutMs: 5000, facts });
    const receiving = await second;
    const sink = new PassThrough();
    const received = collect(sink);
    let finished = false;
    // GO goes out when the receiver starts receiving; the sender's offer resolves with it.
    const gettingData = receiving.receive(sink, async () => {
      finished = true;
    });
    const go = await offered;
    const [sent, got] = await Promise.all([
      go.kind === 'go' ? go.send(Readable.from([data.subarray(0, 1000), data.subarray(1000)]), async () => ({ file: 'bin.000002', position: 4711, gtid: '0-1-9' })) : Promise.reject(new Error('no GO')),
      gettingData,
    ]);
    expect(finished).toBe(true);
    expect((await received).equals(data)).toBe(true);
    expect(got.bytes).toBe(data.length);
    expect(got.checksum).toBe(sent.checksum);
    expect(got.positionAtEnd).toEqual({ file: 'bin.000002', position: 4711, gtid: '0-1-9' });
    expect(streamHeapGrowthHolders()).toBe(0);
  });

  /** Sends chunks through a fresh receiver and sender; answers both ends and what the sink got. */
  async function streamOnce(chunks: Buffer[], opts: { compression?: 'off' | 'fast' | 'strong' | 'auto'; offered?: Array<'lz4' | 'brotli' | 'zstd'> }) {
    const port = await freePort();
    const authKey = newAuthKey();
    const accepting = acceptStream({ port, bindAddress: '127.0.0.1', authKey, connectTimeoutMs: 10000, compressionCodecs: opts.offered });
    const offered = offerStream({ host: '127.0.0.1', port, authKey, connectTimeoutMs: 5000, facts, compression: opts.compression });
    const session = await accepting;
    const sink = new PassThrough();
    const received = collect(sink);
    const gettingData = session.receive(sink, async () => undefined);
    const go = await offered;
    if (go.kind !== 'go') throw new Error('no GO');
    const reports: StreamProgress[] = [];
    const [sent, got] = await Promise.all([go.send(Readable.from(chunks), async () => null, undefined, (p) => reports.push(p)), gettingData]);
    return { sent, got, data: await received, last: reports.at(-1) };
  }

  test('compressed, the stream carries the same bytes in fewer: zstd frames, a frame that does not shrink as plain data between them, checksum over the program\'s bytes', async () => {
    const MiB = 1024 * 1024;
    const rows = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => `${i},${(i * 7919) % 10007},paid,user${i % 97}@example.com\n`).join('')).subarray(0, MiB);
    // 1 MiB chunks: one frame each, so the random one goes plain between compressed ones still decoding.
    const chunks = [rows(40_000), rows(40_000), randomBytes(MiB), rows(40_000), Buffer.from('tail')];
    const data = Buffer.concat(chunks);
    for (const [mode, codec] of [
      ['fast', 'zstd'],
      ['strong', 'zstd'],
    ] as const) {
      const { sent, got, data: arrived, last } = await streamOnce(chunks, { compression: mode });
      expect(arrived.equals(data)).toBe(true);
      expect(last?.wire).toEqual({ compression: codec, dataBytes: data.length, wireBytes: sent.wireBytes });
      expect(sent.compression).toBe(codec);
      expect(got.bytes).toBe(data.length);
      expect(sent.bytes).toBe(data.length);
      expect(got.checksum).toBe(sent.checksum);
      // The rows shrink, the random MiB crosses as it is.
      expect(sent.wireBytes).toBeGreaterThan(MiB);
      expect(sent.wireBytes).toBeLessThan(2 * MiB);
    }
    // A receiver from before zstd gets lz4; one from before compression (no codec offered) plain data.
    const older = await streamOnce(chunks, { compression: 'fast', offered: ['lz4', 'brotli'] });
    expect([older.sent.compression, older.data.equals(data)]).toEqual(['lz4', true]);
    expect(older.sent.wireBytes).toBeLessThan(data.length);
    const oldest = await streamOnce(chunks, { compression: 'fast', offered: [] });
    expect([oldest.sent.compression, oldest.sent.wireBytes, oldest.data.equals(data)]).toEqual([null, data.length, true]);
    const off = await streamOnce(chunks, { compression: 'off' });
    expect([off.sent.compression, off.sent.wireBytes, off.data.equals(data), off.last?.wire]).toEqual([null, data.length, true, undefined]);
  });

  test('the larger heap growth is held while any stream runs and given back once, when the last one ends', () => {
    const first = holdStreamHeapGrowth();
    const second = holdStreamHeapGrowth();
    expect(streamHeapGrowthHolders()).toBe(2);
    first();
    first();
    expect(streamHeapGrowthHolders()).toBe(1);
    second();
    expect(streamHeapGrowthHolders()).toBe(0);
  });

  test('a wrong key is refused and reported, and a refusal by the target reaches the sender as permanent', async () => {
    const port = await freePort();
    const authKey = newAuthKey();
    const refusals: string[] = [];
    const waiting = acceptStream({ port, bindAddress: '127.0.0.1', authKey, connectTimeoutMs: 10000, onRefused: (r) => refusals.push(r) });
    const wrong = await offerStream({ host: '127.0.0.1', port, authKey: newAuthKey(), connectTimeoutMs: 5000, facts }).catch((e: AgentError) => e);
    expect(wrong).toBeInstanceOf(AgentError);
    expect((wrong as AgentError).code).toBe('unauthorized');
    expect(isPermanentFailure(wrong)).toBe(true);
    expect(refusals.join()).toContain('wrong transfer key');

    const offered = offerStream({ host: '127.0.0.1', port, authKey, connectTimeoutMs: 5000, facts });
    const session = await waiting;
    await session.refuse(new AgentError('conflict', 'pre-seed checks failed: not enough space'));
    const refused = await offered.catch((e: AgentError) => e);
    expect((refused as AgentError).message).toContain('pre-seed checks failed: not enough space');
    expect(isPermanentFailure(refused)).toBe(true);
  });

  test('a stream cut in the middle fails the receiver with a retryable error', async () => {
    const port = await freePort();
    const authKey = newAuthKey();
    const waiting = acceptStream({ port, bindAddress: '127.0.0.1', authKey, connectTimeoutMs: 10000 });
    const offered = offerStream({ host: '127.0.0.1', port, authKey, connectTimeoutMs: 5000, facts });
    const session = await waiting;
    const source = new Readable({ read() {} });
    source.push(randomBytes(1024 * 1024));
    const sink = new PassThrough();
    sink.resume();
    const receiving = session.receive(sink, async () => undefined).catch((e: AgentError) => e);
    const go = await offered;
    const sending = go.kind === 'go' ? go.send(source, async () => null).catch((e: AgentError) => e) : Promise.resolve(undefined);
    await new Promise((r) => setTimeout(r, 200));
    // Both halves stream (in this one process): each holds the larger heap growth while its data flows.
    expect(streamHeapGrowthHolders()).toBe(2);
    source.destroy(new Error('mariabackup died'));
    const err = await receiving;
    expect(err).toBeInstanceOf(AgentError);
    expect(isPermanentFailure(err)).toBe(false);
    expect(await sending).toBeInstanceOf(AgentError);
    // A failed stream gives it back as an ended one does.
    expect(streamHeapGrowthHolders()).toBe(0);
  });

  test('a sender that will not stream tells the waiting receiver why: the wait ends at once with its reason, permanent; a wrong key tells nothing', async () => {
    const port = await freePort();
    const authKey = newAuthKey();
    const refusals: string[] = [];
    // Not listening yet (a receiver emptying a cut stream's copy): the sender keeps trying.
    const telling = tellStreamReceiver({ host: '127.0.0.1', port, authKey }, new AgentError('aborted', 'the source seed s1 was aborted by its operator during streaming'));
    await new Promise((r) => setTimeout(r, 1500));
    const waiting = acceptStream({ port, bindAddress: '127.0.0.1', authKey, connectTimeoutMs: 60000, onRefused: (r) => refusals.push(r) }).catch((e: AgentError) => e);
    expect(await telling).toBe(true);
    const err = await waiting;
    expect(err).toBeInstanceOf(AgentError);
    expect((err as AgentError).code).toBe('aborted');
    expect((err as AgentError).message).toContain('the source seed s1 was aborted by its operator during streaming');
    expect((err as AgentError).details?.fromPeer).toBe(true);
    expect(isPermanentFailure(err)).toBe(true);
    expect(refusals).toEqual([]);

    // Without the key the receiver goes on waiting, and the one who tried is refused.
    const stillWaiting = acceptStream({ port, bindAddress: '127.0.0.1', authKey, connectTimeoutMs: 60000, onRefused: (r) => refusals.push(r) });
    expect(await tellStreamReceiver({ host: '127.0.0.1', port, authKey: newAuthKey() }, new AgentError('aborted', 'forged'))).toBe(false);
    expect(refusals.join()).toContain('wrong transfer key');
    const offered = offerStream({ host: '127.0.0.1', port, authKey, connectTimeoutMs: 5000, facts });
    const session = await stillWaiting;
    await session.later('still here');
    expect(await offered).toEqual({ kind: 'later', message: 'still here' });
  });

  test('a target seed that ended answers a stream sender with its reason: the offer fails at once, permanent; a new receiver takes the port back', async () => {
    const port = await freePort();
    const authKey = newAuthKey();
    const reason = new AgentError('aborted', 'the target seed s1 was aborted by its operator during stoppingMySQL');
    expect(await tellSenders({ port, bindAddress: '127.0.0.1', authKey, reason, untilMs: Date.now() + 60000 })).toBe(true);
    try {
      const err = await offerStream({ host: '127.0.0.1', port, authKey, connectTimeoutMs: 5000, facts }).catch((e: AgentError) => e);
      expect(err).toBeInstanceOf(AgentError);
      expect((err as AgentError).code).toBe('aborted');
      expect((err as AgentError).message).toContain('was aborted by its operator during stoppingMySQL');
      expect((err as AgentError).details?.fromPeer).toBe(true);
      expect(isPermanentFailure(err)).toBe(true);
      const wrong = await offerStream({ host: '127.0.0.1', port, authKey: newAuthKey(), connectTimeoutMs: 5000, facts }).catch((e: AgentError) => e);
      expect((wrong as AgentError).code).toBe('unauthorized');

      const waiting = acceptStream({ port, bindAddress: '127.0.0.1', authKey, connectTimeoutMs: 30000 });
      // The receiver listens once the farewell let go of the port; a sender retries until then, as the source seed's step does.
      const offerUntilListening = async (): Promise<Awaited<ReturnType<typeof offerStream>>> => {
        for (let i = 0; ; i++) {
          try {
            return await offerStream({ host: '127.0.0.1', port, authKey, connectTimeoutMs: 5000, facts });
          } catch (err) {
            if (isPermanentFailure(err) || i > 100) throw err;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      };
      const offered = offerUntilListening();
      await (await waiting).later('a new seed');
      expect(await offered).toEqual({ kind: 'later', message: 'a new seed' });
    } finally {
      await releasePort(port);
    }
  });
});
