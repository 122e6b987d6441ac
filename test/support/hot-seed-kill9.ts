// The kill -9 matrix for the hot-seed methods (backup, dump): two real agents over TCP on 127.0.0.1
// seeding between two real MariaDB servers, which every case shares. Every program the agents run for a
// seed (the MySQL client, the service commands, the purge command, chown, the method's own programs) is
// behind a hold point: a wrapper that logs the run and, when a test arms it, holds that run (before the
// real program, or after it did its work) until the agent is killed. A case arms the hold of the process
// its state runs, waits until that process runs under the seed's tag, SIGKILLs the agent(s), restarts them
// on the same StateDir and checks the end: done with equal data and a replica that replicates, or failed
// with a clear error and no half copy; no tagged process and no scratch data left either way.
//
// A method plugs in with a HotSeedMethod (its programs' config keys, its accounts' grants, what it replaces
// on the target) and its cases with hotSeedKillCases (test/seeds-kill9.test.ts).
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from '@jest/globals';
import { installDatadir, mariadbInstance, runScript, which, type MariaDBInstance } from './mariadb.js';
import { startSeedAgent, type SeedAgent, type SeedViewJson } from './seed-api.js';
import { isLive, taggedPids } from './seed-hosts.js';
import { seedTag, stateDirKey } from '../../src/seeds/reaper.js';
import { chartFor, type SeedMethod } from '../../src/seeds/seed-methods.js';
import { topState } from '../../machines/seed-common.js';

export type Side = 'source' | 'target';
export const SIDES: readonly Side[] = ['source', 'target'];

const AGENT_PASSWORD = 'k9-agent-pw-3c1e';
const REPL_PASSWORD = 'k9-repl-pw-77a0';

/**
 * Where a program run is held. `program` is a hold point's name (`client`, `stop`, `start`, `purge`,
 * `chown`, or one a method adds, e.g. `backup`, `extract`, `dump`, `load`); `match` an extended regex over its
 * arguments and (for the client) its SQL; the `nth` matching run is held (default the first). Several holds
 * may name one program: each counts the runs it matches, and a run is held by the first whose count it meets.
 */
export interface Hold {
  side: Side;
  program: string;
  match?: string;
  nth?: number;
  /**
   * before: hold before the real program starts; after: let it do its work, then hold before exiting (the
   * agent never learns it finished); fail: exit 1 at once, without holding (to lead a seed into cleanup).
   */
  mode?: 'before' | 'after' | 'fail';
  /** The held process ignores SIGTERM (only the reaper's SIGKILL ends it). */
  stubborn?: boolean;
}

export interface HotSeedMethod {
  method: SeedMethod;
  /**
   * The config keys of one side's agent for the method's own programs; `wrap(program, real)` returns the
   * path of a hold point named `program` in front of the real executable.
   */
  config(side: Side, wrap: (program: string, real: string) => string): Record<string, unknown>;
  /** Paths (given the side's StateDir) that must not exist once a seed `id` ended: scratch, partial copies. */
  leftovers?(side: Side, stateDir: string, id: string): string[];
  /** Programs it needs installed here (its cases are skipped without them). */
  needs: string[];
  /** Privileges (a GRANT's list) each side's agent account needs for it, besides the rig's own. */
  grants?: Partial<Record<Side, string>>;
  /**
   * What a seed replaces on the target: the whole datadir (MySQL stopped, emptied, started on the copy), or
   * the source's user schemas in the running MySQL (the target's other schemas stay; a seed that ends
   * without a copy drops what it loaded and leaves MySQL running).
   */
  replaces: 'datadir' | 'schemas';
}

export type Outcome = { status: 'done' } | { status: 'failed' | 'aborted'; error: string };

export interface HotSeedKillCase {
  /** The chart (machine id) and the state killed in: the state the held process's side is in. */
  chart: string;
  state: string;
  /** The held process; its side is the side that runs `state`. */
  hold: Hold;
  /** Further holds armed with it (a failing step that leads into a cleanup, say). */
  also?: Hold[];
  /** Once held, ABORT this side (a cleanup reached by an abort) and wait until the side runs `state`. */
  abort?: Side;
  /** The agents SIGKILLed while the process is held (default: the side that runs the state). */
  kill?: Side[];
  /**
   * Stop those agents with SIGTERM instead (a graceful restart, `systemctl restart`): no abort, so the other
   * half waits for the stopped one and the restarted agent resumes the seed.
   */
  graceful?: true;
  expect: Record<Side, Outcome>;
  /** The target seed ends before touching the target's MySQL: it runs on its own data still. */
  targetUntouched?: boolean;
  /** How many times a program ran (arguments matching `match`) over the whole seed, restarts included. */
  runs?: { side: Side; program: string; match: string; count: number }[];
  /** Text a side's seed warnings must hold at the end (a stream said to restart from the beginning, say). */
  warnings?: Partial<Record<Side, string>>;
}

export interface HotSeedRig {
  dir: string;
  source: MariaDBInstance;
  target: MariaDBInstance;
  /** Runs one case from a seed's creation to the checks of its end. */
  run(method: HotSeedMethod, c: HotSeedKillCase): Promise<void>;
  close(): Promise<void>;
}

function optionFile(path: string, lines: string[]): string {
  writeFileSync(path, ['[client]', ...lines, ''].join('\n'), { mode: 0o600 });
  chmodSync(path, 0o600);
  return path;
}

function realProgram(name: string): string {
  const path = which(name);
  if (!path) throw new Error(`${name} is not installed`);
  return path;
}

/** The hold point in front of `real`: logs each run, and holds the run a hold file in `dir` describes. */
function holdPoint(dir: string, name: string, real: string, readsSql: boolean): string {
  const path = join(dir, 'bin', name);
  const run = readsSql ? `"${real}" "$@" <<<"$sql"` : `"${real}" "$@"`;
  writeFileSync(
    path,
    [
      '#!/bin/bash',
      `# hold point ${name} in front of ${real}`,
      `d=${dir}; name=${name}`,
      readsSql ? 'sql=$(cat)' : 'sql=',
      'echo "$name $*" >> "$d/runs.log"',
      'hold=',
      'for f in "$d/hold-$name" "$d/hold-$name".*; do',
      '  [ -f "$f" ] || continue',
      '  match=; mode=before; nth=1; stubborn=0',
      '  . "$f"',
      '  if [ -z "$match" ] || printf "%s\\n%s\\n" "$*" "$sql" | grep -qE -- "$match"; then',
      '    seen="$d/seen-${f##*/hold-}"',
      '    n=$(( $(cat "$seen" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$seen"',
      '    [ -z "$hold" ] && [ "$n" = "$nth" ] && hold=$mode',
      '  fi',
      'done',
      'pause() { [ "$stubborn" = 1 ] && trap "" TERM; echo "$name $$" >> "$d/held"; while :; do sleep 1; done; }',
      'case "$hold" in',
      '  before) pause ;;',
      `  after) ${run}; pause ;;`,
      '  fail) echo "$name failed at a hold point of the test" >&2; exit 1 ;;',
      `  *) exec ${run} ;;`,
      'esac',
      '',
    ].join('\n'),
  );
  chmodSync(path, 0o755);
  return path;
}

/** Both MariaDB servers (source with a binary log), their accounts, and the agents' common config. */
export async function hotSeedRig(dir: string): Promise<HotSeedRig> {
  const sourceData = join(dir, 'source-data');
  installDatadir(sourceData);
  const source = await mariadbInstance(dir, sourceData, 'source', [`--log-bin=${join(dir, 'source-bin')}`, '--server-id=1', '--binlog-format=ROW']);
  const target = await mariadbInstance(dir, join(dir, 'target-data'), 'target', ['--server-id=2']);
  try {
    return await rig(dir, source, target);
  } catch (err) {
    await source.kill();
    await target.kill();
    throw err;
  }
}

async function rig(dir: string, source: MariaDBInstance, target: MariaDBInstance): Promise<HotSeedRig> {
  runScript(source.commands.start);
  source.sql(`CREATE USER agent@localhost IDENTIFIED BY '${AGENT_PASSWORD}'`);
  source.sql('GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, REPLICATION SLAVE ADMIN, SLAVE MONITOR ON *.* TO agent@localhost');
  source.sql(`CREATE USER repl@'%' IDENTIFIED BY '${REPL_PASSWORD}'`);
  source.sql(`GRANT REPLICATION SLAVE ON *.* TO repl@'%'`);
  source.sql('CREATE DATABASE seedtest');
  source.sql('CREATE TABLE seedtest.t (id INT PRIMARY KEY, v VARCHAR(40), n DOUBLE) ENGINE=InnoDB');
  source.sql("USE seedtest; INSERT INTO seedtest.t SELECT seq, CONCAT('row-', seq), seq * 1.5 FROM seq_1_to_2000");
  source.sql('CREATE TABLE seedtest.cases (name VARCHAR(100) PRIMARY KEY) ENGINE=InnoDB');

  const targetData = target.datadir;
  /** A fresh target server with old data of its own (after a case that left it stopped and empty). */
  const resetTarget = () => {
    rmSync(targetData, { recursive: true, force: true });
    installDatadir(targetData);
    runScript(target.commands.start);
    target.sql(`CREATE USER agent@localhost IDENTIFIED BY '${AGENT_PASSWORD}'`);
    target.sql('GRANT PROCESS, REPLICATION SLAVE ADMIN, SLAVE MONITOR ON *.* TO agent@localhost');
  };
  resetTarget();
  const running = (db: MariaDBInstance) => {
    try {
      execFileSync('bash', ['-c', db.commands.status], { stdio: 'ignore', timeout: 30000 });
      return true;
    } catch {
      return false;
    }
  };
  const mysqldPid = (db: MariaDBInstance) => (existsSync(db.pidFile) ? Number(readFileSync(db.pidFile, 'utf8').trim()) : 0);

  const agents: SeedAgent[] = [];
  let cases = 0;
  const db = { source, target };

  async function run(method: HotSeedMethod, c: HotSeedKillCase): Promise<void> {
    const id = `k9-${method.method}-${c.state}-${c.hold.side}-${++cases}`;
    const caseDir = join(dir, `case-${cases}`);
    const sideDir = (side: Side) => join(caseDir, side);
    const holdDir = (side: Side) => join(sideDir(side), 'holds');
    for (const side of SIDES) mkdirSync(join(holdDir(side), 'bin'), { recursive: true });
    if (!running(target)) resetTarget();
    for (const s of SIDES) if (method.grants?.[s]) db[s].sql(`GRANT ${method.grants[s]} ON *.* TO agent@localhost`);
    // Old data of the target's own: a schema the source does not have, and a table in one it has.
    target.sql('CREATE DATABASE IF NOT EXISTS stale_target_data');
    target.sql('CREATE DATABASE IF NOT EXISTS seedtest');
    target.sql('CREATE TABLE IF NOT EXISTS seedtest.stale_only (i INT)');
    source.sql(`INSERT INTO seedtest.cases VALUES ('${id}')`);

    // Each side's programs behind its own hold points; chown through PATH (the agent runs it by name).
    const wrap = (side: Side) => (program: string, real: string) => holdPoint(holdDir(side), program, real, program === 'client');
    const configs = {} as Record<Side, Record<string, unknown>>;
    for (const side of SIDES) {
      const w = wrap(side);
      const m = db[side];
      mkdirSync(join(holdDir(side), 'path'));
      const chown = w('chown', realProgram('chown'));
      execFileSync('ln', ['-s', chown, join(holdDir(side), 'path', 'chown')]);
      const bash = realProgram('bash');
      configs[side] = {
        MySQLDatadirCommand: m.commands.datadir,
        MySQLPortCommand: m.commands.port,
        MySQLServiceStatusCommand: m.commands.status,
        MySQLServiceStartCommand: `${w('start', bash)} ${m.commands.start.replace(/^bash /, '')}`,
        MySQLServiceStopCommand: `${w('stop', bash)} ${m.commands.stop.replace(/^bash /, '')}`,
        MySQLDeleteDatadirContentCommand: `${w('purge', realProgram('find'))} "$1" -mindepth 1 -delete`,
        MySQLClientCommand: w('client', realProgram('mariadb')),
        CommandTimeoutSeconds: 300,
        SeedTransferBindAddress: '127.0.0.1',
        SeedCredentialsFile: optionFile(join(caseDir, `${side}-agent.cnf`), ['user=agent', `password=${AGENT_PASSWORD}`, `socket=${m.socket}`]),
        ReplicationCredentialsFile: optionFile(join(caseDir, `${side}-repl.cnf`), ['user=repl', `password=${REPL_PASSWORD}`]),
        // Every other case streams compressed: a restarted stream negotiates its codec again.
        SeedTransferCompression: cases % 2 === 0 ? 'fast' : 'off',
        ...method.config(side, w),
      };
    }
    const env = (side: Side) => ({ PATH: `${join(holdDir(side), 'path')}:${process.env.PATH ?? ''}` });
    const start = async (side: Side) => {
      const a = await startSeedAgent(sideDir(side), configs[side], env(side));
      agents.push(a);
      return a;
    };
    /** Writes hold `i`'s file (the first on a program is hold-NAME, further ones hold-NAME.i). */
    const arm = (h: Hold, i: number, all: Hold[]) => {
      const vars = { match: h.match ?? '', mode: h.mode ?? 'before', nth: String(h.nth ?? 1), stubborn: h.stubborn ? '1' : '0' };
      const first = all.findIndex((o) => o.side === h.side && o.program === h.program) === i;
      const name = first ? h.program : `${h.program}.${i}`;
      rmSync(join(holdDir(h.side), `seen-${name}`), { force: true });
      writeFileSync(join(holdDir(h.side), `hold-${name}`), Object.entries(vars).map(([k, v]) => `${k}='${v.replace(/'/g, `'\\''`)}'`).join('\n') + '\n');
    };
    const disarm = () => {
      for (const side of SIDES) for (const f of readdirSync(holdDir(side))) if (f.startsWith('hold-')) rmSync(join(holdDir(side), f));
    };
    const held = (h: Hold) => {
      const file = join(holdDir(h.side), 'held');
      if (!existsSync(file)) return undefined;
      const line = readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith(`${h.program} `));
      return line ? Number(line.split(' ')[1]) : undefined;
    };
    const runs = (side: Side, program: string, match: string) => {
      const file = join(holdDir(side), 'runs.log');
      const lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n') : [];
      return lines.filter((l) => l.startsWith(`${program} `) && new RegExp(match).test(l.slice(program.length + 1))).length;
    };
    const persistedState = (agent: SeedAgent) => {
      const record = JSON.parse(readFileSync(join(agent.stateDir, 'seeds', `${id}.json`), 'utf8')) as { machine: string; snapshot: { value: unknown } | null };
      return { machine: record.machine, state: topState(record.snapshot?.value) };
    };

    const side = c.hold.side;
    expect(chartFor(method.method, side).machineId).toBe(c.chart);
    const ag = { source: await start('source'), target: await start('target') } as Record<Side, SeedAgent>;
    const play = async () => {
      const holds = [c.hold, ...(c.also ?? [])];
      holds.forEach((h, i) => arm(h, i, holds));
      const created = await ag.target.call<{ transfer: { port: number; authKey: string } }>('POST', '/api/seeds', {
        id, role: 'target', method: method.method, replicate: true, timeoutSeconds: 900,
      });
      expect(created.status).toBe(201);
      const sent = await ag.source.call('POST', '/api/seeds', {
        id, role: 'source', method: method.method, targetHost: '127.0.0.1', targetPort: created.body.transfer.port, authKey: created.body.transfer.authKey,
      });
      expect(sent.status).toBe(201);

      // The held process runs, as a process of this seed's step.
      await until(`${side} ${c.hold.program} held in ${c.state}`, () => held(c.hold) !== undefined, ag);
      const pid = held(c.hold)!;
      expect(taggedPids(seedTag(ag[side].stateDir, id))).toContain(pid);
      if (c.abort) {
        expect((await ag[c.abort].call('POST', `/api/seeds/${id}/events`, { type: 'ABORT' })).status).toBe(200);
        // Read from the file (persisted before the cleanup acts): the cleanup may be short.
        await until(`${side} in ${c.state}`, () => persistedState(ag[side]).state === c.state, ag, 20);
      }
      disarm();
      const killed = c.kill ?? [side];
      await Promise.all(killed.map((s) => (c.graceful ? ag[s].agent.stop() : ag[s].agent.kill9())));
      expect(persistedState(ag[side])).toEqual({ machine: c.chart, state: c.state });
      for (const s of killed) {
        agents.splice(agents.indexOf(ag[s]), 1);
        ag[s] = await start(s);
      }

      const end = {} as Record<Side, SeedViewJson>;
      for (const s of SIDES) end[s] = await ag[s].waitFor(id, (v) => v.status !== 'active', 'an end', 300000);
      for (const s of SIDES) {
        const want = c.expect[s];
        const got = end[s];
        if (want.status === 'done') expect([s, got.status, got.error]).toEqual([s, 'done', null]);
        else {
          expect([s, got.status]).toEqual([s, want.status]);
          expect(got.error?.message).toContain(want.error);
        }
      }
      // The killed side resumed in the state it was killed in.
      expect(end[side].history.find((h) => h.state === c.state)?.resumedAt).toHaveLength(1);

      const schemas = method.replaces === 'schemas';
      if (c.expect.target.status === 'done') {
        // The copy replicates from the source and holds exactly its data, this case's row included.
        expect(target.sql(`SELECT name FROM seedtest.cases WHERE name = '${id}'`)).toBe(id);
        expect(target.sql("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'Slave_running'")).toBe('ON');
        for (const table of ['seedtest.t', 'seedtest.cases']) expect(target.sql(`CHECKSUM TABLE ${table}`)).toBe(source.sql(`CHECKSUM TABLE ${table}`));
        expect(target.sql("SHOW TABLES FROM seedtest LIKE 'stale_only'")).toBe('');
        // A datadir copy replaced everything; a dump only the source's schemas.
        expect(target.sql("SHOW DATABASES LIKE 'stale_target_data'")).toBe(schemas ? 'stale_target_data' : '');
      } else if (c.targetUntouched) {
        expect(running(target)).toBe(true);
        expect(target.sql("SHOW DATABASES LIKE 'stale_target_data'")).toBe('stale_target_data');
        expect(target.sql("SHOW TABLES FROM seedtest LIKE 'stale_only'")).toBe('stale_only');
      } else if (schemas) {
        // No half-loaded schema anyone could read as data; MySQL runs on, with the target's other schemas.
        expect(running(target)).toBe(true);
        expect(target.sql("SHOW DATABASES LIKE 'seedtest'")).toBe('');
        expect(target.sql("SHOW DATABASES LIKE 'stale_target_data'")).toBe('stale_target_data');
      } else {
        // No half copy anyone could start MySQL on.
        expect(running(target)).toBe(false);
        expect(readdirSync(target.datadir)).toEqual([]);
      }
      for (const s of SIDES) {
        const want = c.warnings?.[s];
        if (want) expect([s, end[s].warnings.map((w) => w.message).join('\n')]).toEqual([s, expect.stringContaining(want)]);
      }
      expect(running(source)).toBe(true);
      // Nothing of either agent's seed runs any more but the target's MySQL (a seed step started it).
      const mysqld = [mysqldPid(target)];
      for (const s of SIDES) {
        const left = taggedPids(`seed:${stateDirKey(ag[s].stateDir)}:`).filter((p) => !mysqld.includes(p));
        expect([s, left]).toEqual([s, []]);
        for (const path of method.leftovers?.(s, ag[s].stateDir, id) ?? []) expect([s, path, existsSync(path)]).toEqual([s, path, false]);
      }
      expect(isLive(pid)).toBe(false);
      for (const r of c.runs ?? []) expect([r.side, r.program, r.match, runs(r.side, r.program, r.match)]).toEqual([r.side, r.program, r.match, r.count]);
    };
    try {
      await play();
    } finally {
      // Whatever the outcome, the next case starts with no agent and no held program of this one.
      for (const a of agents.splice(0)) await a.agent.stop();
      const mysqld = mysqldPid(target);
      for (const s of SIDES) {
        for (const p of taggedPids(`seed:${stateDirKey(ag[s].stateDir)}:`)) {
          if (p === mysqld) continue;
          try {
            process.kill(p, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
      }
    }
  }

  return {
    dir,
    source,
    target,
    run,
    async close() {
      for (const a of agents.splice(0)) await a.agent.stop();
      await source.kill();
      await target.kill();
    },
  };
}

async function until(what: string, cond: () => boolean, agents: Record<Side, SeedAgent>, seconds = 240): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (!cond()) {
    if (Date.now() > deadline) {
      const views = await Promise.all(SIDES.map((s) => agents[s].call('GET', '/api/seeds').then((r) => JSON.stringify(r.body)).catch(() => '?')));
      throw new Error(`timed out waiting for ${what}; seeds: ${views.join('\n')}\n${SIDES.map((s) => agents[s].agent.output().slice(-2000)).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The backup method's programs: mariabackup on both sides (backup, prepare), mbstream on the target. */
export const BACKUP_METHOD: HotSeedMethod = {
  method: 'backup',
  needs: ['mariabackup', 'mbstream'],
  replaces: 'datadir',
  config: (_side, wrap) => ({
    SeedBackupProgram: wrap('backup', realProgram('mariabackup')),
    SeedBackupExtractProgram: wrap('extract', realProgram('mbstream')),
  }),
  leftovers: (side, stateDir, id) => (side === 'source' ? [join(stateDir, 'backup-scratch', id)] : []),
};

/**
 * The dump method's programs: mariadb-dump on the source, the loading client on the target (the client for
 * checks and replication is the rig's). Its accounts' grants are the README's for seeds by logical dump.
 */
export const DUMP_METHOD: HotSeedMethod = {
  method: 'dump',
  needs: ['mariadb-dump'],
  replaces: 'schemas',
  grants: {
    source: 'SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, BINLOG MONITOR',
    target:
      'SELECT, INSERT, CREATE, DROP, ALTER, INDEX, CREATE VIEW, SHOW VIEW, TRIGGER, CREATE ROUTINE, ALTER ROUTINE, EVENT, LOCK TABLES, REFERENCES, SET USER, PROCESS, REPLICATION SLAVE ADMIN, SLAVE MONITOR',
  },
  config: (_side, wrap) => ({
    SeedDumpProgram: wrap('dump', realProgram('mariadb-dump')),
    SeedLoadProgram: wrap('load', realProgram('mariadb')),
  }),
};
