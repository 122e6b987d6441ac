// Direct (O_DIRECT) writes of received files: the aligned arena hands out and takes back aligned extents, and
// the file writer puts every byte where it belongs, whatever the file's size, the chunk ends and the resume
// offset, with O_DIRECT really on the file where the filesystem takes it (read back from /proc).
import { afterAll, describe, expect, test } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { constants as fsConstants } from 'node:fs';
import { ALIGN, AlignedArena } from '../src/transfer/aligned-arena.js';
import { ARENA_BYTES, FileWriter, WRITE_BYTES, directWriteArena, writeAllAt } from '../src/transfer/file-writer.js';
import { tempDir } from './support/agent-process.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function dir(): string {
  const d = tempDir('oa-fwrite-');
  dirs.push(d);
  return d;
}

const untracked = <T>(p: Promise<T>) => p;

/** Whether fd was opened with O_DIRECT, from its flags in /proc/self/fdinfo (octal). */
function openedDirect(fd: number): boolean {
  const flags = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!;
  return (parseInt(flags, 8) & fsConstants.O_DIRECT) !== 0;
}

/** Feeds data into a writer in pieces of the given sizes (cycled), flushing at each chunk end as the receiver does. */
async function writeThrough(w: FileWriter, data: Buffer, from: number, pieces: number[], chunkBytes: number): Promise<void> {
  let at = from;
  let i = 0;
  while (at < data.length) {
    const nextChunkEnd = (Math.floor(at / chunkBytes) + 1) * chunkBytes;
    const n = Math.min(pieces[i++ % pieces.length]!, data.length - at, nextChunkEnd - at);
    await w.push(Buffer.from(data.subarray(at, at + n)));
    at += n;
    if (at % chunkBytes === 0 && at < data.length) await w.flush();
  }
  await w.finish();
}

describe('aligned arena', () => {
  test('extents are aligned views, rounded up to whole blocks, and come back coalesced', async () => {
    const arena = new AlignedArena(1024 * 1024);
    const a = await arena.take(1);
    const b = await arena.take(ALIGN + 1);
    const c = await arena.take(3 * ALIGN);
    expect([a.buf.length, b.buf.length, c.buf.length]).toEqual([ALIGN, 2 * ALIGN, 3 * ALIGN]);
    for (const e of [a, b, c]) expect(e.buf.byteOffset % ALIGN).toBe(0);
    // They do not overlap: each keeps what was written into it.
    a.buf.fill(1);
    b.buf.fill(2);
    c.buf.fill(3);
    expect([a.buf.every((x) => x === 1), b.buf.every((x) => x === 2), c.buf.every((x) => x === 3)]).toEqual([true, true, true]);
    b.release();
    a.release();
    a.release(); // a second release gives nothing back twice
    c.release();
    expect(arena.freeBytes).toBe(1024 * 1024);
    // Coalesced: the whole arena fits one extent again.
    const all = await arena.take(1024 * 1024);
    expect(all.buf.length).toBe(1024 * 1024);
    all.release();
  });

  test('a take that does not fit waits for a release, and one larger than the arena is refused', async () => {
    const arena = new AlignedArena(256 * 1024);
    const held = await arena.take(200 * 1024);
    let got = false;
    const waiting = arena.take(100 * 1024).then((e) => {
      got = true;
      return e;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(got).toBe(false);
    held.release();
    const e = await waiting;
    expect(e.buf.length).toBe(100 * 1024);
    await expect(arena.take(512 * 1024)).rejects.toThrow(/does not fit/);
  });
});

describe('file writer', () => {
  test('this test filesystem takes direct writes (else the tests below would test only the fallback)', async () => {
    expect(await directWriteArena(dir())).toBeDefined();
  });

  const sizes = [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, WRITE_BYTES - 1, WRITE_BYTES, WRITE_BYTES + 1, 3 * WRITE_BYTES + 12345];
  test.each(sizes)('a file of %d bytes is written whole, directly, and cut to its size', async (size) => {
    const d = dir();
    const arena = (await directWriteArena(d))!;
    const data = randomBytes(size);
    const path = join(d, 'f');
    const w = new FileWriter(path, 0, size, arena, untracked);
    const fh = await w.opened;
    expect(w.direct).toBe(true);
    expect(openedDirect(fh.fd)).toBe(true);
    // Pieces of odd sizes, as frames and socket reads cut them.
    await writeThrough(w, data, 0, [65536, 1000, 300000, 7], 16 * WRITE_BYTES);
    await fh.close();
    expect(statSync(path).size).toBe(size);
    expect(readFileSync(path).equals(data)).toBe(true);
    expect(arena.freeBytes).toBe(ARENA_BYTES);
  });

  test('chunk ends off a block boundary: the partial block is written again with what follows, after the padded write', async () => {
    const d = dir();
    const arena = (await directWriteArena(d))!;
    const size = 5 * 100_000 + 777;
    const data = randomBytes(size);
    const path = join(d, 'f');
    // Earlier writes take longer than later ones: a rewrite of a padded block that did not wait for the write
    // it follows would land first and then be overwritten with the padding.
    const slowPadded: typeof writeAllAt = async (fh, bufs, at) => {
      await new Promise((r) => setTimeout(r, Math.max(0, 60 - Math.floor(at / 100_000) * 12)));
      await writeAllAt(fh, bufs, at);
    };
    const w = new FileWriter(path, 0, size, arena, untracked, slowPadded);
    await writeThrough(w, data, 0, [4096, 9999, 65536], 100_000);
    await (await w.opened).close();
    expect(readFileSync(path).equals(data)).toBe(true);
    expect(arena.freeBytes).toBe(ARENA_BYTES);
  });

  test('after a chunk flush, written() covers every byte pushed so far (what recording the chunk waits for)', async () => {
    const d = dir();
    const arena = (await directWriteArena(d))!;
    const data = randomBytes(300_000);
    const path = join(d, 'f');
    const w = new FileWriter(path, 0, data.length, arena, untracked);
    await w.push(data.subarray(0, 100_000));
    await w.flush();
    await w.written();
    expect(readFileSync(path).subarray(0, 100_000).equals(data.subarray(0, 100_000))).toBe(true);
    await w.push(data.subarray(100_000));
    await w.finish();
    await (await w.opened).close();
    expect(readFileSync(path).equals(data)).toBe(true);
  });

  test('resuming at a block boundary truncates there and goes on directly; off a boundary it goes through the page cache', async () => {
    for (const offset of [2 * WRITE_BYTES, 100_000]) {
      const d = dir();
      const arena = (await directWriteArena(d))!;
      const data = randomBytes(3 * WRITE_BYTES + 999);
      const path = join(d, 'f');
      // What an earlier session left: the verified part, then bytes past it that are not trusted.
      writeFileSync(path, Buffer.concat([data.subarray(0, offset), Buffer.alloc(50_000, 0xee)]));
      const w = new FileWriter(path, offset, data.length, arena, untracked);
      const fh = await w.opened;
      expect([offset, w.direct, openedDirect(fh.fd)]).toEqual([offset, offset % ALIGN === 0, offset % ALIGN === 0]);
      await writeThrough(w, data, offset, [65536], 16 * WRITE_BYTES);
      await fh.close();
      expect(readFileSync(path).equals(data)).toBe(true);
    }
  });

  test('without an arena it writes through the page cache', async () => {
    const d = dir();
    const data = randomBytes(WRITE_BYTES + 5);
    const path = join(d, 'f');
    const w = new FileWriter(path, 0, data.length, undefined, untracked);
    const fh = await w.opened;
    expect([w.direct, openedDirect(fh.fd)]).toEqual([false, false]);
    await writeThrough(w, data, 0, [65536], 16 * WRITE_BYTES);
    await fh.close();
    expect(readFileSync(path).equals(data)).toBe(true);
  });

  test('a failed write fails the file where it is awaited, and gives its memory back', async () => {
    const d = dir();
    const arena = (await directWriteArena(d))!;
    const path = join(d, 'f');
    const w = new FileWriter(path, 0, 4 * WRITE_BYTES, arena, untracked);
    await (await w.opened).close(); // every write on it now fails (EBADF)
    await expect(
      (async () => {
        for (let i = 0; i < 4; i++) await w.push(Buffer.alloc(WRITE_BYTES, i));
        await w.finish();
      })(),
    ).rejects.toThrow(/EBADF|closed/);
    await new Promise((r) => setTimeout(r, 20));
    expect(arena.freeBytes).toBe(ARENA_BYTES);
  });
});
