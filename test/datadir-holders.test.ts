// Purging a datadir never trusts the status command alone: the agent looks at /proc itself (open files,
// working directories, /proc/locks) and refuses, naming who holds the datadir.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, tempDir } from './support/agent-process.js';
import { haveMariaDB, installDatadir, mariadbInstance, runScript, which, type MariaDBInstance } from './support/mariadb.js';
import { startSeedAgent, type SeedAgent } from './support/seed-api.js';
import { freePort, makeTargetHost, stopTargetMysqld } from './support/seed-hosts.js';
import { findHolders, parseProcLocks } from '../src/host/datadir-holders.js';
import { LocalDatadir } from '../src/host/datadir.js';
import { defaultConfig } from '../src/config.js';

const children: ChildProcess[] = [];

/** A process started with `bash -c script`, in its own process group, killed as a group at the end. */
function holder(script: string, cwd?: string): { pid: number; exited: Promise<unknown> } {
  const child = spawn('bash', ['-c', script], { cwd, detached: true, stdio: 'ignore' });
  children.push(child);
  return { pid: child.pid!, exited: new Promise((r) => child.once('exit', r)) };
}

async function waitForFile(path: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      readFileSync(path);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  throw new Error(`${path} never appeared`);
}

afterAll(() => {
  for (const c of children) {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

describe('a plain process using the datadir', () => {
  const dir = tempDir('oa-holders-');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('a process holding a file open under the datadir blocks its purge, named by pid and command line', async () => {
    const data = join(dir, 'open');
    mkdirSync(join(data, 'schema'), { recursive: true });
    writeFileSync(join(data, 'schema', 't.ibd'), 'rows');
    const ready = join(dir, 'open.ready');
    const { pid, exited } = holder(`exec 3<${join(data, 'schema', 't.ibd')}; touch ${ready}; exec sleep 600`);
    await waitForFile(ready);
    const ops = new LocalDatadir(defaultConfig());
    const refused = ops.purge(data);
    await expect(refused).rejects.toMatchObject({ code: 'conflict' });
    await expect(refused).rejects.toThrow(new RegExp(`pid ${pid} \\(sleep 600\\) has ${join(data, 'schema', 't.ibd')} open`));
    expect(readFileSync(join(data, 'schema', 't.ibd'), 'utf8')).toBe('rows');
    process.kill(-pid, 'SIGKILL');
    await exited;
    await ops.purge(data);
    expect(readdirSync(data)).toEqual([]);
  });

  test('a process working in the datadir blocks its purge', async () => {
    const data = join(dir, 'cwd');
    mkdirSync(data);
    writeFileSync(join(data, 'ibdata1'), 'x');
    const ready = join(dir, 'cwd.ready');
    const { pid } = holder(`touch ${ready}; exec sleep 601`, data);
    await waitForFile(ready);
    await expect(new LocalDatadir(defaultConfig()).ensureNotInUse(data)).rejects.toThrow(new RegExp(`pid ${pid} \\(sleep 601\\) works in ${data}`));
    expect(readdirSync(data)).toEqual(['ibdata1']);
  });

  (which('unshare') && which('flock') ? test : test.skip)(
    'a lock on ibdata1 taken through another path (another mount namespace) is found by device and inode',
    async () => {
      const data = join(dir, 'locked');
      const elsewhere = join(dir, 'elsewhere');
      mkdirSync(data);
      mkdirSync(elsewhere);
      writeFileSync(join(data, 'ibdata1'), 'x');
      const ready = join(dir, 'locked.ready');
      // In its own mount namespace the datadir is bind-mounted at another path: its open file reads
      // "elsewhere/ibdata1" here, so only /proc/locks ties it to the datadir.
      holder(`exec unshare -m --propagation private bash -c 'mount --bind ${data} ${elsewhere} && exec flock ${join(elsewhere, 'ibdata1')} bash -c "touch ${ready}; exec sleep 602"'`);
      await waitForFile(ready);
      const { holders } = await findHolders(data);
      const locker = holders.find((h) => h.locked.length > 0);
      expect(locker).toBeDefined();
      expect(locker!.locked).toEqual([join(data, 'ibdata1')]);
      expect(locker!.open).toEqual([]);
      expect(locker!.command).toContain('flock');
      await expect(new LocalDatadir(defaultConfig()).purge(data)).rejects.toThrow(new RegExp(`pid ${locker!.pid} \\(flock [^)]*\\) locks ${join(data, 'ibdata1')}`));
      expect(readdirSync(data)).toEqual(['ibdata1']);
    },
  );

  test('/proc/locks lines are read with their hex device numbers, waiters included', () => {
    const entries = parseProcLocks(
      ['1: POSIX  ADVISORY  WRITE 12051 fe:00:2147666 0 EOF', '2: FLOCK  ADVISORY  WRITE 15282 00:2d:77 0 EOF', '2: -> FLOCK  ADVISORY  WRITE 15290 00:2d:77 0 EOF', '3: OFDLCK ADVISORY  READ -1 08:11:5 0 EOF', ''].join('\n'),
    );
    expect(entries).toEqual([
      { kind: 'POSIX', pid: 12051, major: 254, minor: 0, inode: 2147666n },
      { kind: 'FLOCK', pid: 15282, major: 0, minor: 45, inode: 77n },
      { kind: 'FLOCK', pid: 15290, major: 0, minor: 45, inode: 77n },
      { kind: 'OFDLCK', pid: -1, major: 8, minor: 17, inode: 5n },
    ]);
  });
});

(haveMariaDB ? describe : describe.skip)('a running MariaDB server while the status command says "stopped"', () => {
  const dir = tempDir('oa-holders-mariadb-');
  const datadir = join(dir, 'data');
  let db: MariaDBInstance;
  let agent: SeedAgent;
  let serverPid = 0;
  let before: string[] = [];

  beforeAll(async () => {
    installDatadir(datadir);
    db = await mariadbInstance(dir, datadir, 'lying');
    runScript(db.commands.start);
    serverPid = Number(readFileSync(db.pidFile, 'utf8').trim());
    db.sql('create database keepme');
    db.sql('create table keepme.t (id int primary key) engine=innodb');
    db.sql('insert into keepme.t values (1),(2),(3)');
    before = readdirSync(datadir).sort();
    agent = await startSeedAgent(dir, {
      MySQLDatadirCommand: db.commands.datadir,
      MySQLPortCommand: db.commands.port,
      MySQLServiceStatusCommand: 'exit 1', // lies: "stopped"
      MySQLServiceStopCommand: 'true',
      MySQLServiceStartCommand: 'true',
    });
  }, 180000);

  afterAll(async () => {
    await agent?.agent.stop();
    await db?.kill();
    rmSync(dir, { recursive: true, force: true });
  }, 60000);

  test('delete-mysql-datadir is refused with 409 naming mariadbd and its pid, and the datadir is untouched', async () => {
    const reply = await agent.call<{ Code: string; Message: string; Details: { hint: string; holders: { pid: number }[] } }>('GET', '/api/delete-mysql-datadir');
    expect(reply.status).toBe(409);
    expect(reply.body.Message).toMatch(new RegExp(`pid ${serverPid} \\([^)]*mariadbd [^)]*\\) locks ${datadir}/ibdata1`));
    expect(reply.body.Details.hint).toContain('fix MySQLServiceStatusCommand');
    expect(reply.body.Details.holders.map((h) => h.pid)).toContain(serverPid);
    expect(readdirSync(datadir).sort()).toEqual(before);
    expect(db.sql('select count(*) from keepme.t')).toBe('3');
  });

  test('a target seed fails at purgingDatadir naming mariadbd, and neither the step nor its cleanup touches the datadir', async () => {
    const created = await agent.call('POST', '/api/seeds', { id: 'lying-status', role: 'target' });
    expect(created.status).toBe(201);
    const view = await agent.waitFor('lying-status', (v) => v.status !== 'active', 'an end', 60000);
    expect(view.status).toBe('failed');
    expect(view.history.map((h) => h.state)).toContain('purgingDatadir');
    expect(view.history.map((h) => h.state)).not.toContain('receiving');
    expect(view.error?.message).toContain(`pid ${serverPid} (`);
    expect(view.error?.message).toContain('mariadbd');
    expect(readdirSync(datadir).sort()).toEqual(before);
    expect(db.sql('select count(*) from keepme.t')).toBe('3');
  }, 90000);
});

test('the shipped default config (npm start) points the datadir at a demo datadir under its own StateDir', () => {
  const shipped = JSON.parse(readFileSync(join(repoRoot, 'conf/orchestrator-agent.conf.json'), 'utf8')) as Record<string, string>;
  const cwd = tempDir('oa-shipped-conf-');
  try {
    const printed = execFileSync('bash', ['-c', shipped.MySQLDatadirCommand], { cwd, encoding: 'utf8' }).trim();
    expect(printed).toBe(join(cwd, shipped.StateDir, 'demo-datadir'));
    expect(readdirSync(printed)).toEqual([]);
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
});

test("a failed seed's cleanup leaves the partial copy in place, naming the process that started using the datadir meanwhile", async () => {
  const dir = tempDir('oa-holders-cleanup-');
  const host = makeTargetHost(dir, await freePort());
  let agent: SeedAgent | undefined;
  const holderPidFile = join(dir, 'holder.pid');
  try {
    // The receive command writes part of a copy, then a process outside the seed (no seed tag, its own
    // session: as a server someone started by hand) settles in the datadir, and the receive fails.
    const receive = [
      'echo partial > "$1/partial"',
      `env -u ORCHESTRATOR_AGENT_TAG setsid bash -c 'cd "$1" && echo $$ > ${holderPidFile} && exec sleep 605' _ "$1" </dev/null >/dev/null 2>&1 &`,
      `while [ ! -s ${holderPidFile} ]; do sleep 0.02; done`,
      'echo "receive failing" >&2; exit 1',
    ].join('\n');
    agent = await startSeedAgent(dir, { ...host.config, ReceiveSeedDataCommand: receive });
    // The status command would say running while the stand-in mysqld runs; this seed is told it stopped.
    stopTargetMysqld(host);
    expect((await agent.call('POST', '/api/seeds', { id: 'cleanup-held', role: 'target' })).status).toBe(201);
    const view = await agent.waitFor('cleanup-held', (v) => v.status !== 'active', 'an end', 60000);
    const holderPid = Number(readFileSync(holderPidFile, 'utf8').trim());
    expect(view.status).toBe('failed');
    expect(view.error?.message).toContain('receive failing');
    expect(view.error?.message).toContain(`cleanup also failed: refusing to purge the datadir ${host.datadir}`);
    expect(view.error?.message).toContain(`pid ${holderPid} (sleep 605) works in ${host.datadir}`);
    expect(readdirSync(host.datadir)).toEqual(['partial']);
  } finally {
    await agent?.agent.stop();
    stopTargetMysqld(host);
    if (existsSync(holderPidFile)) {
      try {
        process.kill(-Number(readFileSync(holderPidFile, 'utf8').trim()), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}, 90000);
