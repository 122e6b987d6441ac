// Two "hosts" for seed tests on one machine: a target with a fake MySQL service (operator scripts that
// keep a pid file of a real `sleep` standing in for mysqld) and a datadir, and a source with a real btrfs
// snapshot on a loop device. Transfers are the operator's own kind of commands: tar over socat on 127.0.0.1.
// Each step can be slowed through a delay file, so a test can hold a seed in any state.
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, relative } from 'node:path';
import { createBtrfs, run, type BtrfsFixture } from './btrfs-fixture.js';

export type TargetDelay = 'stop' | 'start' | 'purge' | 'postcopy' | 'receive';

export interface TargetHost {
  dir: string;
  datadir: string;
  /** Config keys for the target agent. */
  config: Record<string, unknown>;
  delay(step: TargetDelay, seconds: number): void;
  /** Make the receive command exit with this code after receiving (0 = normal). */
  receiveExit(code: number): void;
  mysqlRunning(): boolean;
  /** The stand-in mysqld's pid while it runs (it may carry a seed's tag: it was started by a seed step). */
  mysqldPids(): number[];
  log(): string;
}

export interface SourceHost {
  dir: string;
  fx: BtrfsFixture;
  /** The live datadir (subvolume) and the read-only snapshot of it. */
  live: string;
  snapshotsDir: string;
  snapshot: string;
  /** A larger snapshot (6 x 1 MB) for transfers a test must catch midway. */
  bigSnapshot: string;
  mountPoint: string;
  config: Record<string, unknown>;
  delay(step: 'send', seconds: number): void;
  sendExit(code: number): void;
  cleanup(): void;
}

function script(path: string, body: string): string {
  writeFileSync(path, `#!/bin/bash\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

/** A port free right now on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export function makeTargetHost(dir: string, transferPort: number): TargetHost {
  const bin = join(dir, 'bin');
  const datadir = join(dir, 'datadir');
  mkdirSync(bin, { recursive: true });
  mkdirSync(join(datadir, 'mysql'), { recursive: true });
  writeFileSync(join(datadir, 'ibdata1'), 'old target data');
  writeFileSync(join(datadir, 'mysql', 'user.frm'), 'old');
  const pidFile = join(dir, 'mysqld.pid');
  const logFile = join(dir, 'ops.log');
  // A step's script reads its delay before it logs itself: a test that sees the log line and then clears the
  // delay must not race the read.
  const delayed = (name: string, logLine: string) => `d="$(cat ${dir}/delay-${name} 2>/dev/null || echo 0)"; echo ${logLine} >> ${logFile}; sleep "$d"`;
  // The stand-in mysqld is started with setsid so it is no seed's process group: MySQL must outlive seeds.
  const startMysqld = `setsid sleep 100000 </dev/null >/dev/null 2>&1 & echo $! > ${pidFile}; echo $! >> ${pidFile}.all`;
  script(join(bin, 'mysql-status'), `test -s ${pidFile} && kill -0 "$(cat ${pidFile})" 2>/dev/null`);
  script(join(bin, 'mysql-stop'), `${delayed('stop', 'stop')}; test -s ${pidFile} && kill "$(cat ${pidFile})"; rm -f ${pidFile}; exit 0`);
  script(join(bin, 'mysql-start'), `${delayed('start', 'start')}; ${startMysqld}`);
  script(join(bin, 'purge'), `${delayed('purge', 'purge')}; find "$1" -mindepth 1 -delete`);
  script(join(bin, 'post-copy'), `${delayed('postcopy', 'post-copy')}; touch ${datadir}/post-copied`);
  script(
    join(bin, 'receive'),
    `${delayed('receive', '"receive $1 $2"')}; socat -u TCP-LISTEN:$2,bind=127.0.0.1,reuseaddr STDOUT | tar -xf - -C "$1" || exit 3; exit "$(cat ${dir}/receive-exit 2>/dev/null || echo 0)"`,
  );
  run('bash', ['-c', startMysqld]);
  return {
    dir,
    datadir,
    config: {
      MySQLDatadirCommand: `echo ${datadir}`,
      MySQLServiceStatusCommand: join(bin, 'mysql-status'),
      MySQLServiceStopCommand: join(bin, 'mysql-stop'),
      MySQLServiceStartCommand: join(bin, 'mysql-start'),
      MySQLDeleteDatadirContentCommand: `${join(bin, 'purge')} "$1"`,
      PostCopyCommand: join(bin, 'post-copy'),
      ReceiveSeedDataCommand: join(bin, 'receive'),
      SeedTransferPort: transferPort,
      CommandTimeoutSeconds: 60,
    },
    delay: (step, seconds) => writeFileSync(join(dir, `delay-${step}`), String(seconds)),
    receiveExit: (code) => writeFileSync(join(dir, 'receive-exit'), String(code)),
    mysqlRunning: () => {
      try {
        process.kill(Number(readFileSync(pidFile, 'utf8')), 0);
        return true;
      } catch {
        return false;
      }
    },
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
    mysqldPids: () => (existsSync(pidFile) ? [Number(readFileSync(pidFile, 'utf8'))] : []),
  };
}

/** Stops the stand-in mysqld a target host may have left running. */
export function stopTargetMysqld(host: TargetHost): void {
  const all = join(host.dir, 'mysqld.pid.all');
  if (!existsSync(all)) return;
  for (const pid of readFileSync(all, 'utf8').split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid));
    } catch {
      /* not running */
    }
  }
}

export function makeSourceHost(dir: string, label: string): SourceHost {
  const fx = createBtrfs(dir, label);
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  const live = join(fx.fsDir, 'live');
  run('btrfs', ['subvolume', 'create', live]);
  mkdirSync(join(live, 'mysql', 'db1'), { recursive: true });
  writeFileSync(join(live, 'mysql', 'ibdata1'), Buffer.alloc(300_000, 7));
  writeFileSync(join(live, 'mysql', 'db1', 't.ibd'), Buffer.from(Array.from({ length: 50_000 }, (_, i) => i % 251)));
  writeFileSync(join(live, 'mysql', 'db1', 'empty'), '');
  const snapshotsDir = join(fx.fsDir, 'snapshots');
  mkdirSync(snapshotsDir);
  const snapshot = join(snapshotsDir, 'snap1');
  run('btrfs', ['subvolume', 'snapshot', '-r', live, snapshot]);
  const bigLive = join(fx.fsDir, 'live-big');
  run('btrfs', ['subvolume', 'create', bigLive]);
  mkdirSync(join(bigLive, 'mysql'), { recursive: true });
  for (let i = 0; i < 6; i++) writeFileSync(join(bigLive, 'mysql', `ibdata${i}`), Buffer.alloc(1_000_000, i + 1));
  const bigSnapshot = join(snapshotsDir, 'snap-big');
  run('btrfs', ['subvolume', 'snapshot', '-r', bigLive, bigSnapshot]);
  const mountPoint = join(dir, 'snapmount');
  mkdirSync(mountPoint);
  const delay = `sleep "$(cat ${dir}/delay-send 2>/dev/null || echo 0)"`;
  script(
    join(bin, 'send'),
    `${delay}; tar -cf - -C "$1" . | socat -u STDIN TCP:$2:$3,retry=100,interval=0.1 || exit 4; exit "$(cat ${dir}/send-exit 2>/dev/null || echo 0)"`,
  );
  return {
    dir,
    fx,
    live,
    snapshotsDir,
    snapshot,
    bigSnapshot,
    mountPoint,
    config: {
      SnapshotBackend: 'btrfs',
      BtrfsSnapshotsDir: snapshotsDir,
      SnapshotMountPoint: mountPoint,
      // The snapshot holds /data/mysql's content at mysql/: the heuristic finds ibdata1 there.
      MySQLDatadirCommand: 'echo /data/mysql',
      SendSeedDataCommand: join(bin, 'send'),
      CommandTimeoutSeconds: 60,
    },
    delay: (_step, seconds) => writeFileSync(join(dir, 'delay-send'), String(seconds)),
    sendExit: (code) => writeFileSync(join(dir, 'send-exit'), String(code)),
    cleanup: () => fx.cleanup(),
  };
}

/** sha256 of every file (and the list of directories) under root: equal before and after = untouched. */
export function treeDigest(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const st = statSync(path);
      const rel = relative(root, path);
      if (st.isDirectory()) {
        out[rel + '/'] = 'dir';
        walk(path);
      } else {
        out[rel] = createHash('sha256').update(readFileSync(path)).digest('hex');
      }
    }
  };
  walk(root);
  return out;
}

/** Live processes whose environment carries ORCHESTRATOR_AGENT_TAG with this prefix. */
export function taggedPids(prefix = 'seed:'): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const env = readFileSync(`/proc/${name}/environ`, 'latin1');
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      if (env.split('\0').some((e) => e.startsWith(`ORCHESTRATOR_AGENT_TAG=${prefix}`))) pids.push(Number(name));
    } catch {
      /* gone or not ours to read */
    }
  }
  return pids;
}

/** A process that exists and is not a zombie (killed orphans linger as zombies until init reaps them). */
export function isLive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}
