// The seed store on real files: durable writes, and unreadable files moved aside without stopping anything.
import { afterEach, describe, expect, test } from '@jest/globals';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SEED_FORMAT_VERSION, SeedStore, stateDirError, type SeedRecord } from '../src/seeds/seed-store.js';
import { tempDir } from './support/agent-process.js';

const machines = { 'seed-target': 1, 'seed-source': 1 };
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

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
    expect(readdirSync(store.dir)).toEqual(['abc-1.json']);
    expect(new SeedStore(dir, machines).loadAll()).toEqual([r]);
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
    expect(readFileSync(corrupt.find((c) => c.file.endsWith('broken.json'))!.movedTo!, 'utf8')).toContain('"bro');
  });

  test.each([
    ['EROFS', 'read-only filesystem: remount it read-write'],
    ['ENOSPC', 'is full: free space'],
    ['EACCES', 'may not write in StateDir /srv/oa: make it the owner (chown)'],
    ['ENOENT', 'does not exist and could not be created'],
  ])('a StateDir failure with %s names StateDir and says what to do', (errno, hint) => {
    const dir = tempDir();
    dirs.push(dir);
    const e = stateDirError('/srv/oa', 'persist seed s1 to /srv/oa/seeds/s1.json', Object.assign(new Error(`${errno}: failed`), { code: errno }), dir);
    expect(e.message).toBe(`StateDir /srv/oa: cannot persist seed s1 to /srv/oa/seeds/s1.json: ${errno}: failed`);
    expect(e.hint).toContain(hint);
  });
});
