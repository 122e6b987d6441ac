// What the sender lists from a real datadir (README, The built-in transfer): every file, directory and
// symlink with its size, mode (setgid and sticky bits included), owner and mtime, sorted, without following
// links; sockets and FIFOs skipped, and the transfer's own names skipped at the top only.
import { afterAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, lchownSync, mkdirSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join, relative } from 'node:path';
import { AgentError } from '../src/errors.js';
import { walkSource } from '../src/transfer/manifest.js';
import { tempDir } from './support/agent-process.js';

const dirs: string[] = [];
const servers: Server[] = [];
afterAll(() => {
  for (const s of servers) s.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function rejection(p: Promise<unknown>): Promise<AgentError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(AgentError);
    return err as AgentError;
  }
  throw new Error('expected a rejection');
}

describe('walking the source datadir', () => {
  test('lists files, directories and symlinks with their metadata, sorted, skipping special files and the transfer\'s own names at the top', async () => {
    const src = tempDir('oa-walk-');
    dirs.push(src);
    const at = (p: string) => join(src, p);
    // Made out of order, so an unsorted listing shows.
    writeFileSync(at('zz'), 'last');
    mkdirSync(at('db1'));
    writeFileSync(at('db1/t.ibd'), '0123456789');
    writeFileSync(at('db1/.orchestrator-agent-transfer.tmp'), 'a table may have any name below the top');
    mkdirSync(at('db1/empty'));
    writeFileSync(at('ibdata1'), 'x'.repeat(100));
    writeFileSync(at('Aria'), '');
    symlinkSync('db1/t.ibd', at('link'));
    mkdirSync(at('.orchestrator-agent-transfer.tmp'));
    writeFileSync(at('.orchestrator-agent-transfer.tmp/partial'), 'staged');
    writeFileSync(at('.orchestrator-agent-transfer.json'), '{}');
    writeFileSync(at('.orchestrator-agent-transfer-manifest.json'), '{}');
    execFileSync('mkfifo', [at('fifo')]);
    const sock = createServer();
    servers.push(sock);
    await new Promise<void>((r) => sock.listen(at('mysql.sock'), r));

    chmodSync(at('db1'), 0o2750);
    chmodSync(at('db1/t.ibd'), 0o640);
    chmodSync(at('db1/empty'), 0o1700);
    chmodSync(at('ibdata1'), 0o660);
    chmodSync(at('Aria'), 0o604);
    chmodSync(at('zz'), 0o600);
    chmodSync(at('db1/.orchestrator-agent-transfer.tmp'), 0o644);
    for (const p of ['db1', 'db1/t.ibd', 'db1/.orchestrator-agent-transfer.tmp', 'db1/empty', 'ibdata1', 'Aria', 'zz']) chownSync(at(p), 27, 28);
    lchownSync(at('link'), 29, 30);
    const mtimes: Record<string, number> = { 'db1/t.ibd': 1_000_000, 'db1/.orchestrator-agent-transfer.tmp': 1_000_500, ibdata1: 2_000_000, Aria: 3_000_000, zz: 4_000_000, 'db1/empty': 5_000_000, db1: 6_000_000 };
    for (const [p, ms] of Object.entries(mtimes)) utimesSync(at(p), ms / 1000, ms / 1000);

    const owner = { uid: 27, gid: 28 };
    // Given as a relative path: the listing is of the same directory.
    expect(await walkSource(relative(process.cwd(), src))).toEqual([
      { type: 'file', path: 'Aria', size: 0, mode: 0o604, mtimeMs: 3_000_000, ...owner },
      { type: 'dir', path: 'db1', mode: 0o2750, mtimeMs: 6_000_000, ...owner },
      { type: 'file', path: 'db1/.orchestrator-agent-transfer.tmp', size: 39, mode: 0o644, mtimeMs: 1_000_500, ...owner },
      { type: 'dir', path: 'db1/empty', mode: 0o1700, mtimeMs: 5_000_000, ...owner },
      { type: 'file', path: 'db1/t.ibd', size: 10, mode: 0o640, mtimeMs: 1_000_000, ...owner },
      { type: 'file', path: 'ibdata1', size: 100, mode: 0o660, mtimeMs: 2_000_000, ...owner },
      { type: 'symlink', path: 'link', target: 'db1/t.ibd', uid: 29, gid: 30 },
      { type: 'file', path: 'zz', size: 4, mode: 0o600, mtimeMs: 4_000_000, ...owner },
    ]);
  });

  test('a missing source is 404 naming it and what to check; a file is no source', async () => {
    const base = tempDir('oa-walk-odd-');
    dirs.push(base);
    const missing = join(base, 'missing');
    const err = await rejection(walkSource(missing));
    expect([err.code, err.message]).toEqual(['not_found', `cannot read source directory ${missing}: ENOENT`]);
    expect(err.hint).toBe('check the datadir or snapshot mount point the seed sends from');
    writeFileSync(join(base, 'a-file'), 'x');
    const notDir = await rejection(walkSource(join(base, 'a-file')));
    expect([notDir.code, notDir.message]).toEqual(['bad_request', `source ${join(base, 'a-file')} is not a directory`]);
  });

  test('a datadir that is a symlink is walked through (only at the top)', async () => {
    const base = tempDir('oa-walk-link-');
    dirs.push(base);
    mkdirSync(join(base, 'data'));
    writeFileSync(join(base, 'data', 'ibdata1'), 'abc');
    symlinkSync(join(base, 'data'), join(base, 'datadir'));
    symlinkSync(join(base, 'data'), join(base, 'data', 'loop'));
    const listed = await walkSource(join(base, 'datadir'));
    expect(listed.map((e) => [e.type, e.path])).toEqual([
      ['file', 'ibdata1'],
      ['symlink', 'loop'],
    ]);
  });
});
