// The host-safety promises of the README, pinned so that weakening one fails here: the purge guard refuses
// system directories (also behind a symlink), path checks do not let a sibling with a common prefix pass,
// and every configured command is bounded by CommandTimeoutSeconds and killed as a group.
import { afterAll, describe, expect, test } from '@jest/globals';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultConfig, type Config } from '../src/config.js';
import { AgentError } from '../src/errors.js';
import { LocalDatadir } from '../src/host/datadir.js';
import { ConfiguredMySQLService } from '../src/host/mysql-service.js';
import { availableSnapshotHosts, createSnapshot, postCopy, runCustomCommand } from '../src/host/operator-commands.js';
import { isWithin, pathWithin } from '../src/validate.js';
import { validateManifest } from '../src/transfer/manifest.js';
import { tempDir } from './support/agent-process.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function dir(prefix: string): string {
  const d = tempDir(`oa-guards-${prefix}-`);
  dirs.push(d);
  return d;
}

async function rejection(p: Promise<unknown>): Promise<AgentError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(AgentError);
    return err as AgentError;
  }
  throw new Error('expected a rejection');
}

function config(overrides: Partial<Config>): Config {
  return { ...defaultConfig(), ...overrides };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor(cond: () => boolean, what: string, ms = 10000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Directories a purge must never empty (README, Safety and host endpoints), whether they exist here or not. */
const systemDirs = [
  '/', '/usr', '/etc', '/var', '/home', '/root', '/boot', '/bin', '/sbin', '/opt', '/srv', '/tmp', '/proc', '/sys',
  '/dev', '/run', '/mnt', '/media', '/var/lib', '/usr/local', '/var/tmp', '/lib', '/lib64', '/lib32', '/usr/lib',
  '/usr/lib64', '/usr/libexec', '/usr/bin', '/usr/sbin', '/usr/share', '/var/log', '/var/cache', '/var/spool',
  '/usr/include', '/usr/src', '/var/mail', '/var/opt', '/var/local', '/var/backups',
];

describe('the datadir purge guard', () => {
  // The guarded purge runs MySQLDeleteDatadirContentCommand instead of deleting anything itself, so a guard
  // weakened by a bug (or a mutant) only leaves a mark here, never empties a real system directory.
  const marks = dir('marks');
  const markFile = join(marks, 'purged');
  const guarded = new LocalDatadir(config({ MySQLDeleteDatadirContentCommand: `printf '%s\\n' "$1" >> ${markFile}` }));
  const purged = () => (existsSync(markFile) ? readFileSync(markFile, 'utf8') : '');

  test('refuses every system directory, however the path is spelled, and runs nothing', async () => {
    for (const sys of systemDirs) {
      for (const spelling of new Set([sys, `${sys}/`, `/${sys}`, `${sys}/.`, `${sys}//`])) {
        const err = await rejection(guarded.purge(spelling));
        expect([spelling, err.code]).toEqual([spelling, 'forbidden']);
        expect(err.message).toMatch(/refusing to delete the content of system directory/);
      }
    }
    expect(purged()).toBe('');
  });

  test('refuses a datadir that is a symlink to a system directory, and runs nothing', async () => {
    const links = dir('links');
    for (const [i, sys] of systemDirs.entries()) {
      if (!existsSync(sys)) continue;
      const link = join(links, `datadir-${i}`);
      symlinkSync(sys, link);
      const err = await rejection(guarded.purge(link));
      expect([link, err.code]).toEqual([link, 'forbidden']);
      expect(err.message).toMatch(/resolves to system directory/);
    }
    expect(purged()).toBe('');
  });

  test('refuses an empty, relative or non-directory datadir, and runs nothing', async () => {
    const base = dir('odd');
    writeFileSync(join(base, 'a-file'), 'x');
    for (const bad of ['', '   ', 'var/lib/mysql', './data', join(base, 'a-file')]) {
      const err = await rejection(guarded.purge(bad));
      expect([bad, err.code]).toEqual([bad, 'forbidden']);
    }
    expect((await rejection(guarded.purge(join(base, 'missing')))).code).toBe('not_found');
    symlinkSync(join(base, 'loop-b'), join(base, 'loop-a'));
    symlinkSync(join(base, 'loop-a'), join(base, 'loop-b'));
    expect((await rejection(guarded.purge(join(base, 'loop-a')))).code).toBe('io');
    expect(purged()).toBe('');
  });

  test('below or beside a system directory is no system directory: the guard lets it through to the next check', async () => {
    // None of these exist: past the guard, the purge stops at "not found", never at "system directory".
    for (const path of ['/var/lib/mysql-oa-missing', '/usr/lib/oa-missing', '/lib/oa-missing', '/usr/libx/oa-missing', '/libx/oa-missing',
      '/srv/lib', '/srv/oa-missing/lib64', '/opt/usr/lib', '/tmp/oa-missing/var', '/var/lib/../lib/oa-missing']) {
      const err = await rejection(guarded.purge(path));
      expect([path, err.code, err.message]).toEqual([path, 'not_found', expect.stringMatching(/^cannot resolve datadir \/\S+: ENOENT/)]);
    }
    expect(purged()).toBe('');
  });

  test('refusals say which datadir and why', async () => {
    const base = dir('why');
    writeFileSync(join(base, 'a-file'), 'x');
    const cases: Array<[string, string, string | undefined]> = [
      ['', 'refusing to delete the content of an empty datadir path', undefined],
      [' \n', 'refusing to delete the content of an empty datadir path', undefined],
      ['data/mysql', 'refusing to delete the content of relative datadir path "data/mysql"', 'MySQLDatadirCommand must print an absolute path'],
      ['/var/lib/', 'refusing to delete the content of system directory /var/lib', undefined],
      [join(base, 'a-file'), `refusing to delete the content of ${join(base, 'a-file')}: not a directory`, undefined],
    ];
    for (const [given, message, hint] of cases) {
      const err = await rejection(guarded.purge(given));
      expect([given, err.code, err.message, err.hint]).toEqual([given, 'forbidden', message, hint]);
    }
    expect(purged()).toBe('');
  });

  test('the datadir as a command printed it (a newline, spaces) is the datadir; a blank purge command is no command', async () => {
    const base = dir('spaced');
    mkdirSync(join(base, 'mysql'));
    await guarded.purge(` ${join(base, 'mysql')}/\n`);
    expect(purged()).toBe(`${join(base, 'mysql')}\n`);
    rmSync(markFile);
    writeFileSync(join(base, 'mysql', 'ibdata1'), 'x');
    await new LocalDatadir(config({ MySQLDeleteDatadirContentCommand: ' \n' })).purge(join(base, 'mysql'));
    expect(readdirSync(join(base, 'mysql'))).toEqual([]);
  });

  test('a datadir in use is refused (409) before anything is deleted; a missing one is not in use', async () => {
    const base = dir('inuse');
    const data = join(base, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'ibdata1'), 'x');
    const ops = new LocalDatadir(config({}));
    await ops.ensureNotInUse(data);
    await ops.ensureNotInUse(join(base, 'missing'));
    expect((await rejection(ops.ensureNotInUse('/var'))).code).toBe('forbidden');
    const holder = spawn('sleep', ['600'], { cwd: data, stdio: 'ignore', detached: true });
    try {
      await waitFor(() => {
        try {
          return readlinkSync(`/proc/${holder.pid}/cwd`) === data;
        } catch {
          return false;
        }
      }, 'the holder to start');
      for (const err of [await rejection(ops.ensureNotInUse(data)), await rejection(ops.purge(data)), await rejection(guarded.purge(data))]) {
        expect([err.code, err.message]).toEqual(['conflict', expect.stringContaining(`pid ${holder.pid} (sleep 600) works in ${data}`)]);
        expect(err.message).toMatch(new RegExp(`^refusing to purge the datadir ${data}: a process uses it: `));
        expect(err.hint).toBe('a server still runs on this datadir although the status command may say it is stopped: stop that process (and fix MySQLServiceStatusCommand if it said stopped), then retry');
      }
      expect(readdirSync(data)).toEqual(['ibdata1']);
      expect(purged()).toBe('');
    } finally {
      holder.kill('SIGKILL');
    }
  });

  test('an aborted purge stops before deleting; one that cannot delete says so', async () => {
    const base = dir('abort');
    const data = join(base, 'data');
    mkdirSync(join(data, 'ro'), { recursive: true });
    writeFileSync(join(data, 'ibdata1'), 'x');
    const ops = new LocalDatadir(config({}));
    const aborted = new AbortController();
    aborted.abort();
    const err = await rejection(ops.purge(data, aborted.signal));
    expect([err.code, err.message]).toEqual(['aborted', `purging ${data} was aborted`]);
    expect(readdirSync(data).sort()).toEqual(['ibdata1', 'ro']);
    // A read-only filesystem mounted inside: its content cannot be deleted.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', join(data, 'ro')]);
    try {
      writeFileSync(join(data, 'ro', 'table.ibd'), 'y');
      execFileSync('mount', ['-o', 'remount,ro', join(data, 'ro')]);
      const io = await rejection(ops.purge(data));
      expect([io.code, io.message]).toEqual(['io', expect.stringMatching(new RegExp(`^cannot delete the content of ${data}: .*(EROFS|EBUSY)`))]);
    } finally {
      execFileSync('umount', ['-l', join(data, 'ro')]);
    }
  });

  test('size and free space are measured on the real directory', async () => {
    const base = dir('size');
    writeFileSync(join(base, 'f'), Buffer.alloc(256 * 1024, 1));
    const ops = new LocalDatadir(config({}));
    expect(await ops.diskUsage(base)).toBeGreaterThanOrEqual(256 * 1024);
    expect(await ops.availableSpace(base)).toBeGreaterThan(0);
  });

  test('a real datadir passes the guard: the command gets the resolved path', async () => {
    const base = dir('real');
    mkdirSync(join(base, 'mysql'));
    symlinkSync(join(base, 'mysql'), join(base, 'link'));
    await guarded.purge(join(base, 'link') + '/');
    expect(purged()).toBe(`${join(base, 'mysql')}\n`);
    rmSync(markFile);
  });

  test('without a command it empties the datadir, keeps the directory and does not follow links inside', async () => {
    const base = dir('purge');
    const data = join(base, 'data');
    const outside = join(base, 'outside');
    mkdirSync(join(data, 'db1'), { recursive: true });
    mkdirSync(outside);
    writeFileSync(join(data, 'ibdata1'), 'x');
    writeFileSync(join(data, 'db1', 't.ibd'), 'y');
    writeFileSync(join(outside, 'keep'), 'z');
    symlinkSync(outside, join(data, 'link-out'));
    const mode = statSync(data).mode;
    await new LocalDatadir(config({})).purge(data);
    expect(readdirSync(data)).toEqual([]);
    expect(statSync(data).mode).toBe(mode);
    expect(readFileSync(join(outside, 'keep'), 'utf8')).toBe('z');
  });
});

describe('path checks and sibling directories with a common prefix', () => {
  test('isWithin counts the root and what lies under it, never a sibling that shares its prefix', () => {
    expect(isWithin('/x/data', '/x/data')).toBe(true);
    expect(isWithin('/x/data', '/x/data/')).toBe(true);
    expect(isWithin('/x/data/', '/x/data/db1/t.ibd')).toBe(true);
    expect(isWithin('/x/data', '/x/data2')).toBe(false);
    expect(isWithin('/x/data', '/x/data2/f')).toBe(false);
    expect(isWithin('/x/data', '/x/data-old')).toBe(false);
    expect(isWithin('/x/data', '/x/dat')).toBe(false);
    expect(isWithin('/x/data', '/x')).toBe(false);
    expect(isWithin('/x/data', '/x/data/../data2')).toBe(false);
    expect(isWithin('/', '/anything')).toBe(true);
  });

  test('pathWithin refuses a sibling of an allowed root with 403 and names the allowed roots', () => {
    expect(pathWithin('/x/data/db1', ['/x/data'])).toBe('/x/data/db1');
    expect(pathWithin('/x/data2/../data/f', ['/nowhere', '/x/data'])).toBe('/x/data/f');
    for (const bad of ['/x/data2', '/x/data2/f', '/x/data/../data2', '/x/dat']) {
      let err: unknown;
      try {
        pathWithin(bad, ['/x/data', '']);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(AgentError);
      expect([bad, (err as AgentError).code, (err as AgentError).httpStatus]).toEqual([bad, 'forbidden', 403]);
      expect((err as AgentError).hint).toContain('/x/data');
    }
    // An empty root is no root: it must not stand for the agent's working directory.
    expect(() => pathWithin(join(process.cwd(), 'f'), ['', '/x/data'])).toThrow(/outside the places this agent may read/);
    expect(() => pathWithin(join(process.cwd(), 'f'), [''])).toThrow(/outside the places this agent may read/);
    for (const bad of ['', 'x/data', '/x/data/\0', 7, undefined]) {
      expect(() => pathWithin(bad, ['/x/data'])).toThrow(/invalid path/);
    }
  });

  test('a transfer refuses a symlink that lands in a sibling of the destination with a common prefix', () => {
    const owner = { uid: 0, gid: 0 };
    expect(() => validateManifest([{ type: 'symlink', path: 'l', target: '../data2/ibdata1', ...owner }], '/x/data')).toThrow(
      /points outside the destination/,
    );
    expect(validateManifest([{ type: 'symlink', path: 'l', target: '../data/ibdata1', ...owner }], '/x/data')).toHaveLength(1);
  });
});

describe('configured commands are bounded by CommandTimeoutSeconds', () => {
  test('a slow command under a 1 s timeout is killed with its whole process group, and the error says so', async () => {
    const base = dir('slow');
    const pidFile = (name: string) => join(base, `${name}.pid`);
    // Each command leaves a grandchild (sleep in the background) and waits: only a group kill ends both.
    const slow = (name: string) => `sleep 600 & echo $! > ${pidFile(name)}; wait`;
    const cfg = config({
      CommandTimeoutSeconds: 1,
      MySQLServiceStopCommand: slow('stop'),
      MySQLServiceStartCommand: slow('start'),
      MySQLPortCommand: slow('port'),
      MySQLDatadirCommand: slow('datadir'),
      CustomCommands: { slow: slow('custom') },
      AvailableSnapshotHostsCommand: slow('hosts'),
      CreateSnapshotCommand: slow('snapshot'),
      PostCopyCommand: slow('postcopy'),
      MySQLDeleteDatadirContentCommand: slow('purge'),
    });
    const mysql = new ConfiguredMySQLService(cfg);
    mkdirSync(join(base, 'data'));
    const started: Array<[string, Promise<unknown>]> = [
      ['stop', mysql.stop()],
      ['start', mysql.start()],
      ['port', mysql.port()],
      ['datadir', mysql.datadir()],
      ['custom', runCustomCommand(cfg, 'slow')],
      ['hosts', availableSnapshotHosts(cfg, false)],
      ['snapshot', createSnapshot(cfg)],
      ['postcopy', postCopy(cfg, 'db-source-1')],
      ['purge', new LocalDatadir(cfg).purge(join(base, 'data'))],
    ];
    // All run at once (their rejections are handled from the start), then each is checked.
    const runs = started.map(([name, run]) => [name, run.then(() => 'it finished', (err: unknown) => err)] as const);
    for (const [name, run] of runs) {
      const outcome = await run;
      expect([name, outcome]).toEqual([name, expect.any(AgentError)]);
      const err = outcome as AgentError;
      expect([name, err.code]).toEqual([name, 'command_timeout']);
      expect(err.message).toMatch(/did not finish within 1s and was killed/);
      expect(err.hint).toMatch(/CommandTimeoutSeconds/);
      const grandchild = Number(readFileSync(pidFile(name), 'utf8'));
      await waitFor(() => !alive(grandchild), `${name}: the background sleep ${grandchild} to be killed with its group`);
    }
  }, 30000);
});
