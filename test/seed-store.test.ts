// The seed store on real files: durable writes, and unreadable files moved aside without stopping anything.
import { afterEach, describe, expect, jest, test } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SEED_FORMAT_VERSION, SeedStore, parseSeedRecord, stateDirError, writeFileDurably, type SeedRecord } from '../src/seeds/seed-store.js';
import { tempDir } from './support/agent-process.js';

const machines = { 'seed-target': 1, 'seed-source': 1 };
const dirs: string[] = [];
const mounts: string[] = [];
afterEach(() => {
  for (const m of mounts.splice(0).reverse()) spawnSync('umount', ['-l', m]);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A small tmpfs at dir/name, to be made read-only by the test. */
function tmpfs(dir: string, name: string): string {
  const at = join(dir, name);
  mkdirSync(at);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', at]);
  mounts.push(at);
  return at;
}
const remount = (at: string, mode: 'ro' | 'rw') => execFileSync('mount', ['-o', `remount,${mode}`, at]);

function record(id: string): SeedRecord {
  const now = new Date().toISOString();
  return {
    formatVersion: SEED_FORMAT_VERSION,
    id,
    role: 'target',
    machine: 'seed-target',
    machineVersion: 1,
    params: { startMySQL: false },
    secrets: {},
    snapshot: { status: 'active', value: 'x' },
    history: [],
    progress: null,
    pgids: [],
    marks: {},
    createdAt: now,
    updatedAt: now,
  };
}

describe('seed store', () => {
  test('a saved seed reads back the same and leaves no temp file behind', () => {
    const dir = tempDir();
    dirs.push(dir);
    const store = new SeedStore(dir, machines);
    const r = record('abc-1');
    store.save(r);
    r.pgids.push(4242);
    store.save(r);
    expect(store.dir).toBe(join(dir, 'seeds'));
    expect(readdirSync(dir)).toEqual(['seeds']);
    expect(readdirSync(store.dir)).toEqual(['abc-1.json']);
    expect(readFileSync(store.fileOf('abc-1'), 'utf8')).toBe(JSON.stringify(r, null, 1) + '\n');
    expect(new SeedStore(dir, machines).loadAll()).toEqual([r]);
    expect(store.problems()).toEqual([]);
  });

  test('a temp file left by a write that died before its rename is discarded and the old state kept', () => {
    const dir = tempDir();
    dirs.push(dir);
    const store = new SeedStore(dir, machines);
    store.save(record('s1'));
    writeFileSync(join(store.dir, 's1.json.tmp-999'), '{"half":');
    expect(store.loadAll().map((r) => r.id)).toEqual(['s1']);
    expect(readdirSync(store.dir)).toEqual(['s1.json']);
  });

  test('a background save writes the record off the event loop and leaves no temp file behind', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const store = new SeedStore(dir, machines);
    const r = record('p1');
    store.save(r);
    r.progress = { bytesDone: 5, bytesTotal: 10, filesDone: null, filesTotal: null, currentFile: null, rateBytesPerSec: null, etaSeconds: null };
    const saving = store.saveInBackground(r);
    // Nothing is on disk before the pool has written it: the call returned without waiting for a flush.
    expect(JSON.parse(readFileSync(store.fileOf('p1'), 'utf8')).progress).toBeNull();
    await saving;
    expect(readdirSync(store.dir)).toEqual(['p1.json']);
    expect(new SeedStore(dir, machines).loadAll()).toEqual([r]);
  });

  test('a durable save made while a background save is on its way wins: the older record never replaces it', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const store = new SeedStore(dir, machines);
    const r = record('p2');
    store.save(r);
    r.progress = { bytesDone: 1, bytesTotal: null, filesDone: null, filesTotal: null, currentFile: null, rateBytesPerSec: null, etaSeconds: null };
    const saving = store.saveInBackground(r);
    // The next step's transition, saved durably at once.
    const newer = { ...record('p2'), marks: { received: 'yes' }, progress: null };
    store.save(newer);
    await saving;
    expect(readdirSync(store.dir)).toEqual(['p2.json']);
    expect(new SeedStore(dir, machines).loadAll()).toEqual([newer]);
    // A background save that starts after it is written as usual.
    await store.saveInBackground({ ...newer, progress: r.progress });
    expect(new SeedStore(dir, machines).loadAll()[0]!.progress).toEqual(r.progress);
  });

  test('a background save that fails says why, keeps the last record and leaves no temp file', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const at = tmpfs(dir, 'state');
    const store = new SeedStore(at, machines);
    const r = record('p3');
    store.save(r);
    const before = readFileSync(store.fileOf('p3'), 'utf8');
    // Larger than the 256 KiB filesystem: the write fails with ENOSPC.
    const big = { ...r, params: { pad: 'x'.repeat(400 * 1024) } };
    await expect(store.saveInBackground(big)).rejects.toEqual(
      expect.objectContaining({ code: 'io', message: expect.stringMatching(new RegExp(`^StateDir ${at}: cannot persist seed p3 to ${at}/seeds/p3.json: .*ENOSPC`)), hint: expect.stringContaining('is full') }),
    );
    expect(readFileSync(store.fileOf('p3'), 'utf8')).toBe(before);
    expect(readdirSync(store.dir)).toEqual(['p3.json']);
    expect(store.problems()).toEqual([expect.objectContaining({ message: expect.stringContaining('ENOSPC') })]);
  });

  test('a background save that fails after a newer durable save is moot: no error, no problem, the newer record stays', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const at = tmpfs(dir, 'state');
    const store = new SeedStore(at, machines);
    store.save(record('p4'));
    // Too large for the 256 KiB filesystem, so it fails; the seed ends (durably) while it is on its way.
    const saving = store.saveInBackground({ ...record('p4'), params: { pad: 'x'.repeat(400 * 1024) } });
    const ended = { ...record('p4'), snapshot: { status: 'done', value: 'done' } };
    store.save(ended);
    await expect(saving).resolves.toBeUndefined();
    expect(store.problems()).toEqual([]);
    expect(readdirSync(store.dir)).toEqual(['p4.json']);
    expect(store.loadAll()).toEqual([ended]);
  });

  test('the temp file of a background save killed by kill -9 is discarded at start and the last record kept', () => {
    const dir = tempDir();
    dirs.push(dir);
    const store = new SeedStore(dir, machines);
    store.save(record('s1'));
    writeFileSync(join(store.dir, 's1.json.tmp-999-background'), '{"half":');
    expect(store.loadAll().map((r) => r.id)).toEqual(['s1']);
    expect(readdirSync(store.dir)).toEqual(['s1.json']);
  });

  test('corrupt, foreign-version and mismatched files are moved aside and listed, the rest still load', () => {
    const dir = tempDir();
    dirs.push(dir);
    const store = new SeedStore(dir, machines);
    store.save(record('good'));
    writeFileSync(join(store.dir, 'broken.json'), '{"formatVersion": 1, "id": "bro');
    writeFileSync(join(store.dir, 'old.json'), JSON.stringify({ ...record('old'), machineVersion: 99 }));
    writeFileSync(join(store.dir, 'renamed.json'), JSON.stringify(record('other')));
    const loaded = store.loadAll();
    expect(loaded.map((r) => r.id)).toEqual(['good']);
    const corrupt = store.corruptFiles();
    expect(corrupt.map((c) => c.file).sort()).toEqual(['broken.json', 'old.json', 'renamed.json'].map((n) => join(store.dir, n)));
    for (const c of corrupt) {
      expect(existsSync(c.file)).toBe(false);
      expect(c.movedTo!.startsWith(join(store.dir, 'corrupt') + '/')).toBe(true);
      expect(existsSync(c.movedTo!)).toBe(true);
    }
    expect(corrupt.find((c) => c.file.endsWith('old.json'))!.error).toContain('version 99');
    expect(corrupt.find((c) => c.file.endsWith('renamed.json'))!.error).toBe('file name does not match its id other');
    expect(readFileSync(corrupt.find((c) => c.file.endsWith('broken.json'))!.movedTo!, 'utf8')).toContain('"bro');
  });

  test.each([
    ['EROFS', 'read-only filesystem: remount it read-write'],
    ['ENOSPC', 'is full: free space'],
    ['EACCES', 'may not write in StateDir /srv/oa: make it the owner (chown)'],
    ['ENOENT', 'does not exist and could not be created'],
    ['EPERM', `the agent (uid ${process.getuid!()}) may not write in StateDir /srv/oa: make it the owner (chown)`],
    ['EDQUOT', 'the disk quota of the agent\'s user on StateDir /srv/oa is used up'],
    ['ENOTDIR', 'StateDir /srv/oa (or a part of its path) is not a directory'],
    ['EIO', 'the disk holding StateDir /srv/oa reports I/O errors'],
    ['EXDEV', 'check that StateDir /srv/oa is a writable directory with free space'],
  ])('a StateDir failure with %s names StateDir and says what to do', (errno, hint) => {
    const dir = tempDir();
    dirs.push(dir);
    const e = stateDirError('/srv/oa', 'persist seed s1 to /srv/oa/seeds/s1.json', Object.assign(new Error(`${errno}: failed`), { code: errno }), dir);
    expect(e.message).toBe(`StateDir /srv/oa: cannot persist seed s1 to /srv/oa/seeds/s1.json: ${errno}: failed`);
    expect(e.hint).toContain(hint);
  });

  test('a seed file is readable by root only, in a directory only root may enter', () => {
    const dir = tempDir();
    dirs.push(dir);
    const store = new SeedStore(dir, machines);
    const r = record('s1');
    store.save(r);
    expect(statSync(store.dir).mode & 0o777).toBe(0o700);
    expect(statSync(store.fileOf('s1')).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(store.fileOf('s1'), 'utf8'))).toEqual(r);
  });

  test('a durable write that fails leaves the old file and no temp file, and says why', () => {
    const dir = tempDir();
    dirs.push(dir);
    mkdirSync(join(dir, 'a-dir'));
    writeFileSync(join(dir, 'a-dir', 'inside'), 'x');
    expect(() => writeFileDurably(join(dir, 'a-dir'), dir, 'new')).toThrow(/EISDIR|ENOTEMPTY|EEXIST/);
    expect(readdirSync(dir)).toEqual(['a-dir']);
    writeFileDurably(join(dir, 'f'), dir, 'one');
    writeFileDurably(join(dir, 'f'), dir, 'two');
    expect(readFileSync(join(dir, 'f'), 'utf8')).toBe('two');
    expect(readdirSync(dir).sort()).toEqual(['a-dir', 'f']);
  });

  test('only *.json files are seeds; a temp file of a dead write is removed whatever its pid', () => {
    const dir = tempDir();
    dirs.push(dir);
    const store = new SeedStore(dir, machines);
    store.save(record('s1'));
    writeFileSync(join(store.dir, 'README'), 'not a seed');
    writeFileSync(join(store.dir, 's1.json.bak'), 'not a seed either');
    writeFileSync(join(store.dir, 's2.json.tmp-1'), '{');
    expect(store.loadAll().map((r) => r.id)).toEqual(['s1']);
    expect(store.corruptFiles()).toEqual([]);
    expect(readdirSync(store.dir).sort()).toEqual(['README', 's1.json', 's1.json.bak']);
  });

  test('each malformed field is refused with what is wrong, and the file is moved aside under that error', () => {
    const good = record('ok-1');
    const parse = (changes: Record<string, unknown>) => parseSeedRecord(JSON.stringify({ ...good, ...changes }), machines);
    expect(parse({})).toEqual(good);
    // The optional fields, absent or set.
    expect(parse({ snapshot: null, progress: { bytesDone: 5 }, waiting: null, warnings: [], pgids: [2, 99999], marks: { mounted: '/mnt/x' } }).pgids).toEqual([2, 99999]);
    expect(parse({ waiting: { for: 'sender' }, history: [{ state: 'a', enteredAt: 't', leftAt: null, error: null }, { state: 'b', enteredAt: 't', leftAt: 't2', error: 'e' }] }).history).toHaveLength(2);
    expect(parse({ role: 'source', machine: 'seed-source', id: 'Z9_.-a' }).role).toBe('source');
    const cases: Array<[string | Record<string, unknown>, string]> = [
      ['[1]', 'not a JSON object'],
      ['null', 'not a JSON object'],
      ['"text"', 'not a JSON object'],
      [{ formatVersion: 2 }, 'unknown formatVersion 2, expected 1'],
      [{ formatVersion: '1' }, 'unknown formatVersion "1", expected 1'],
      [{ id: 5 }, 'invalid id 5'],
      [{ id: '-a' }, 'invalid id "-a"'],
      [{ id: 'a/b' }, 'invalid id "a/b"'],
      [{ id: 'x'.repeat(129) }, `invalid id "${'x'.repeat(129)}"`],
      [{ role: 'both' }, 'invalid role "both"'],
      [{ machine: 7 }, 'unknown machine 7'],
      [{ machine: 'seed-other' }, 'unknown machine "seed-other"'],
      [{ machine: 'toString' }, 'unknown machine "toString"'],
      [{ machineVersion: 2 }, 'machine seed-target version 2 is not the version this agent runs (1)'],
      [{ params: null }, 'params is not an object'],
      [{ params: [] }, 'params is not an object'],
      [{ params: 'x' }, 'params is not an object'],
      [{ secrets: [] }, 'secrets is not an object'],
      [{ snapshot: [] }, 'snapshot is not an object'],
      [{ snapshot: 'x' }, 'snapshot is not an object'],
      [{ history: {} }, 'history is not an array'],
      [{ history: [null] }, 'history[0] is not {state, enteredAt, leftAt, error}'],
      [{ history: [{ state: 'a', enteredAt: 't', leftAt: null, error: null }, { state: 1, enteredAt: 't', leftAt: null, error: null }] }, 'history[1] is not {state, enteredAt, leftAt, error}'],
      [{ history: [{ state: 'a', enteredAt: 1, leftAt: null, error: null }] }, 'history[0] is not {state, enteredAt, leftAt, error}'],
      [{ history: [{ state: 'a', enteredAt: 't', leftAt: 1, error: null }] }, 'history[0] is not {state, enteredAt, leftAt, error}'],
      [{ history: [{ state: 'a', enteredAt: 't', leftAt: null }] }, 'history[0] is not {state, enteredAt, leftAt, error}'],
      [{ history: [['a']] }, 'history[0] is not {state, enteredAt, leftAt, error}'],
      [{ progress: {} }, 'progress is neither null nor progress'],
      [{ progress: [] }, 'progress is neither null nor progress'],
      [{ progress: { bytesDone: '5' } }, 'progress is neither null nor progress'],
      [{ waiting: 'x' }, 'waiting is neither null nor an object'],
      [{ waiting: [] }, 'waiting is neither null nor an object'],
      [{ pgids: {} }, 'pgids is not an array of process ids'],
      [{ pgids: [1] }, 'pgids is not an array of process ids'],
      [{ pgids: [5, 2.5] }, 'pgids is not an array of process ids'],
      [{ pgids: ['5'] }, 'pgids is not an array of process ids'],
      [{ marks: [] }, 'marks is not an object of strings'],
      [{ marks: null }, 'marks is not an object of strings'],
      [{ marks: { a: 'x', b: 1 } }, 'marks is not an object of strings'],
      [{ createdAt: 1 }, 'createdAt/updatedAt missing'],
      [{ updatedAt: undefined }, 'createdAt/updatedAt missing'],
    ];
    for (const [change, error] of cases) {
      const text = typeof change === 'string' ? change : JSON.stringify({ ...good, ...change });
      let message = '';
      try {
        parseSeedRecord(text, machines);
      } catch (err) {
        message = (err as Error).message;
      }
      expect([change, message]).toEqual([change, error]);
    }
    // Through the store: moved aside with that error, the good one kept.
    const dir = tempDir();
    dirs.push(dir);
    const store = new SeedStore(dir, machines);
    store.save(good);
    writeFileSync(join(store.dir, 'bad.json'), JSON.stringify({ ...record('bad'), pgids: [1] }));
    expect(store.loadAll()).toEqual([good]);
    expect(store.corruptFiles().map((c) => [c.file, c.error])).toEqual([[join(store.dir, 'bad.json'), 'pgids is not an array of process ids']]);
  });

  test('files moved aside in the same millisecond under the same name are all kept', () => {
    const dir = tempDir();
    dirs.push(dir);
    jest.useFakeTimers({ now: new Date('2026-11-26T10:20:30.456Z'), doNotFake: ['nextTick', 'setImmediate', 'setTimeout', 'setInterval', 'queueMicrotask'] });
    try {
      const store = new SeedStore(dir, machines);
      for (let i = 0; i < 3; i++) {
        writeFileSync(join(store.dir, 'x.json'), `broken ${i}`);
        store.loadAll();
      }
      const stamp = '2026-11-26T10-20-30-456Z';
      expect(readdirSync(store.corruptDir).sort()).toEqual([`x.json.${stamp}`, `x.json.${stamp}.1`, `x.json.${stamp}.2`]);
      expect(store.corruptFiles().map((c) => [c.movedTo, readFileSync(c.movedTo!, 'utf8')])).toEqual([
        [join(store.corruptDir, `x.json.${stamp}`), 'broken 0'],
        [join(store.corruptDir, `x.json.${stamp}.1`), 'broken 1'],
        [join(store.corruptDir, `x.json.${stamp}.2`), 'broken 2'],
      ]);
    } finally {
      jest.useRealTimers();
    }
  });

  test('a corrupt file that cannot be moved aside stays, is not loaded, and its entry says why and what to do', () => {
    const dir = tempDir();
    dirs.push(dir);
    const store = new SeedStore(dir, machines);
    writeFileSync(store.corruptDir, 'a file where the corrupt/ directory belongs');
    writeFileSync(join(store.dir, 'x.json'), '{');
    expect(store.loadAll()).toEqual([]);
    const [entry, ...rest] = store.corruptFiles();
    expect(rest).toEqual([]);
    expect(entry!.file).toBe(join(store.dir, 'x.json'));
    expect(entry!.movedTo).toBeNull();
    expect(entry!.error).toMatch(new RegExp(`^[^;]*JSON[^;]*; StateDir ${dir}: cannot move the corrupt ${join(store.dir, 'x.json')} to ${store.corruptDir}: (Error: )?EEXIST.* \\(check that StateDir ${dir} is a writable directory with free space\\)$`));
    expect(existsSync(join(store.dir, 'x.json'))).toBe(true);
  });

  test('a failure that is not an errno still names StateDir and what was tried', () => {
    const e = stateDirError('/srv/oa', 'list /srv/oa/seeds', 'disk on fire');
    expect([e.code, e.message, e.hint]).toEqual(['io', 'StateDir /srv/oa: cannot list /srv/oa/seeds: disk on fire', 'check that StateDir /srv/oa is a writable directory with free space']);
  });

  test('ENOENT, EACCES or EPERM on a read-only filesystem are told as EROFS; elsewhere they stay what they are', () => {
    const dir = tempDir();
    dirs.push(dir);
    const ro = tmpfs(dir, 'ro');
    writeFileSync(join(ro, 'a-file'), '');
    remount(ro, 'ro');
    const rofs = 'is on a read-only filesystem: remount it read-write';
    for (const errno of ['ENOENT', 'EACCES', 'EPERM']) {
      const err = Object.assign(new Error(errno), { code: errno });
      expect([errno, stateDirError('/srv/oa', 'x', err, join(ro, 'a', 'b')).hint]).toEqual([errno, expect.stringContaining(rofs)]);
      expect([errno, stateDirError('/srv/oa', 'x', err, join(dir, 'a', 'b')).hint]).toEqual([errno, expect.not.stringContaining(rofs)]);
    }
    // Without a path, StateDir itself is asked.
    expect(stateDirError(ro, 'x', Object.assign(new Error('ENOENT'), { code: 'ENOENT' })).hint).toContain(rofs);
    // Any other errno is taken as it is, even there; so is an error whose path cannot be walked.
    expect(stateDirError('/srv/oa', 'x', Object.assign(new Error('EIO'), { code: 'EIO' }), ro).hint).toContain('reports I/O errors');
    writeFileSync(join(dir, 'a-file'), '');
    expect(stateDirError('/srv/oa', 'x', Object.assign(new Error('ENOENT'), { code: 'ENOENT' }), join(dir, 'a-file', 'x')).hint).toContain('does not exist');
    expect(stateDirError('/srv/oa', 'x', Object.assign(new Error('ENOENT'), { code: 'ENOENT' }), join(ro, 'a-file', 'x')).hint).toContain('does not exist');
  });

  test('a StateDir that cannot be created is a problem reported once; saves fail naming it until it can be written', () => {
    const dir = tempDir();
    dirs.push(dir);
    const ro = tmpfs(dir, 'ro');
    remount(ro, 'ro');
    const state = join(ro, 'state');
    const store = new SeedStore(state, machines);
    expect(store.loadAll()).toEqual([]);
    expect(store.loadAll()).toEqual([]);
    const [problem, ...more] = store.problems();
    expect(more).toEqual([]);
    expect(problem).toEqual({ at: expect.any(String), message: expect.stringMatching(new RegExp(`^StateDir ${state}: cannot create ${state}/seeds: `)), hint: expect.stringContaining('read-only filesystem') });
    let saveError: unknown;
    try {
      store.save(record('s1'));
    } catch (err) {
      saveError = err;
    }
    expect(saveError).toEqual(expect.objectContaining({ code: 'io', message: expect.stringMatching(new RegExp(`^StateDir ${state}: cannot persist seed s1 to ${state}/seeds/s1.json: `)) }));
    expect(store.problems()).toEqual([problem, { at: expect.any(String), message: (saveError as Error).message, hint: expect.stringContaining('read-only filesystem') }]);
    // Once writable, the next save succeeds and the save problem is gone; the start problem stays.
    remount(ro, 'rw');
    mkdirSync(join(state, 'seeds'), { recursive: true });
    store.save(record('s1'));
    expect(store.problems()).toEqual([problem]);
  });

  test('a nested StateDir is made with its parents; a stale temp file on a read-only StateDir is a warning and the rest loads', () => {
    const dir = tempDir();
    dirs.push(dir);
    const nested = new SeedStore(join(dir, 'a', 'b'), machines);
    expect(statSync(join(dir, 'a', 'b', 'seeds')).mode & 0o777).toBe(0o700);
    expect(nested.problems()).toEqual([]);
    const fs = tmpfs(dir, 'state');
    const store = new SeedStore(fs, machines);
    store.save(record('s1'));
    writeFileSync(join(store.dir, 's1.json.tmp-77'), '{');
    remount(fs, 'ro');
    expect(store.loadAll().map((r) => r.id)).toEqual(['s1']);
    expect(store.problems()).toEqual([
      { at: expect.any(String), message: expect.stringMatching(new RegExp(`^StateDir ${fs}: cannot remove the unfinished write ${store.dir}/s1.json.tmp-77: `)), hint: expect.stringContaining('read-only filesystem') },
    ]);
  });

  test('a StateDir that cannot be listed is reported, once', () => {
    const dir = tempDir();
    dirs.push(dir);
    const store = new SeedStore(dir, machines);
    rmSync(store.dir, { recursive: true });
    writeFileSync(store.dir, 'not a directory');
    expect(store.loadAll()).toEqual([]);
    expect(store.loadAll()).toEqual([]);
    expect(store.problems()).toEqual([{ at: expect.any(String), message: expect.stringMatching(new RegExp(`^StateDir ${dir}: cannot list ${store.dir}: `)), hint: expect.stringContaining('is not a directory') }]);
  });

  test('saving closes every file and directory it opened', () => {
    const dir = tempDir();
    dirs.push(dir);
    const store = new SeedStore(dir, machines);
    for (let i = 0; i < 20; i++) store.save(record(`s${i % 3}`));
    const open = readdirSync('/proc/self/fd').flatMap((fd) => {
      try {
        return [readlinkSync(`/proc/self/fd/${fd}`)];
      } catch {
        return [];
      }
    });
    expect(open.filter((target) => target.startsWith(dir))).toEqual([]);
  });
});
