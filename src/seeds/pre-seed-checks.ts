// The pre-seed checks of a seed's target, in the manner of gh-ost's inspector: it only reads (the target's
// MySQL, its filesystem, a test connection of the replication account to the source) and answers each
// check with pass/fail and one sentence. The checking step runs it before anything is stopped or deleted.
import type { Config } from '../config.js';
import type { DatadirOps, MySQLService } from '../host/interfaces.js';
import type { MySQLClient } from '../host/mysql-client.js';
import { runProgram } from '../process-runner.js';
import type { SourceFacts } from '../transfer/stream.js';

export interface SeedCheck {
  name: string;
  ok: boolean;
  message: string;
}

export interface TargetInspection {
  config: Config;
  mysql: MySQLService;
  datadir: DatadirOps;
  /** The agent's own account on this MySQL (SeedCredentialsFile). */
  client: MySQLClient;
  /** The replication account (ReplicationCredentialsFile), tried against the source. */
  replication: MySQLClient;
  datadirPath: string;
  source: SourceFacts;
  /** Where the replica will reach the source's MySQL. */
  sourceMySQL: { host: string; port: number };
  replicate: boolean;
  force: boolean;
  signal: AbortSignal;
}

const GiB = 1024 ** 3;
const size = (n: number) => (n >= GiB ? `${(n / GiB).toFixed(1)} GiB` : `${(n / 1024 ** 2).toFixed(0)} MiB`);
/** "10.11" of "10.11.19-MariaDB-0+deb12u1"; "8.0" of "8.0.36". */
export function majorVersion(version: string): string {
  const m = /(\d+)\.(\d+)/.exec(version);
  return m ? `${m[1]}.${m[2]}` : version;
}
/** Room beyond the source's data: redo logs grow during prepare, and the source grows during the copy. */
const MARGIN = 0.1;

const systemThreads = `USER NOT IN ('system user', 'event_scheduler') AND COMMAND NOT IN ('Daemon', 'Binlog Dump', 'Binlog Dump GTID', 'Slave_IO', 'Slave_SQL', 'Slave_worker')`;

async function attempt(name: string, fn: () => Promise<SeedCheck>): Promise<SeedCheck> {
  try {
    return await fn();
  } catch (err) {
    return { name, ok: false, message: (err as Error).message };
  }
}

/** Every check, in the order shown; none changes anything. */
export async function inspectBackupTarget(i: TargetInspection): Promise<SeedCheck[]> {
  const opts = { signal: i.signal, timeoutMs: 30_000 };
  // Independent reads, run at once (each a process or two); the answers keep the order shown.
  const checks: Array<SeedCheck | Promise<SeedCheck>> = [];
  const running = await i.mysql.isRunning(i.signal);

  checks.push(
    i.source.mysqlRunning
      ? { name: 'sourceMySQLRunning', ok: true, message: `the source's MySQL ${i.source.version} runs` }
      : { name: 'sourceMySQLRunning', ok: false, message: "the source's MySQL is not running: a hot backup needs it up; start it on the source and seed again" },
  );

  checks.push(
    attempt('sameMajorVersion', async () => {
      const mine = running
        ? ((await i.client.value('SELECT VERSION()', opts)) ?? '')
        : await runProgram(i.config.SeedBackupProgram, ['--version'], opts).then((r) => `${r.stderr} ${r.stdout}`); // mariabackup says it on stderr
      const ok = majorVersion(mine) === majorVersion(i.source.version);
      const what = running ? 'this MySQL' : `${i.config.SeedBackupProgram} here (MySQL is stopped)`;
      return {
        name: 'sameMajorVersion',
        ok,
        message: ok
          ? `source ${i.source.version} and ${what} are both ${majorVersion(mine)}`
          : `source runs ${i.source.version}, ${what} is ${majorVersion(mine)}: a physical backup needs the same major version; use method "dump" or upgrade this host first`,
      };
    }),
  );

  checks.push(
    attempt('freeSpace', async () => {
      const free = await i.datadir.availableSpace(i.datadirPath);
      const replaced = await i.datadir.diskUsage(i.datadirPath, i.signal).catch(() => 0);
      const need = Math.ceil(i.source.dataBytes * (1 + MARGIN));
      const have = free + replaced;
      return {
        name: 'freeSpace',
        ok: have >= need,
        message:
          have >= need
            ? `${size(have)} available for ${i.datadirPath} (free plus the data the seed replaces), ${size(need)} needed`
            : `${i.datadirPath} has ${size(free)} free plus ${size(replaced)} the seed would replace, the source's data needs ${size(need)} (${size(i.source.dataBytes)} + ${MARGIN * 100}%): free space or choose another target`,
      };
    }),
  );

  if (running) {
    checks.push(
      attempt('noReplicasAttached', async () => {
        const n = Number(await i.client.value(`SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND IN ('Binlog Dump', 'Binlog Dump GTID')`, opts));
        return n === 0
          ? { name: 'noReplicasAttached', ok: true, message: 'no replicas replicate from this MySQL' }
          : { name: 'noReplicasAttached', ok: false, message: `${n} replica(s) replicate from this MySQL: it is a primary; move its replicas away before seeding over it` };
      }),
    );
    // After the checks above: their own connections to this MySQL are not clients.
    const before = Promise.all(checks);
    checks.push(
      i.force
        ? { name: 'noClientConnections', ok: true, message: 'skipped: the seed was created with force' }
        : before.then(() => attempt('noClientConnections', async () => {
            const rows = await i.client.query(`SELECT USER AS user, HOST AS host FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND ${systemThreads}`, opts);
            const who = rows.slice(0, 5).map((r) => `${r.user}@${r.host}`).join(', ');
            return rows.length === 0
              ? { name: 'noClientConnections', ok: true, message: 'no client is connected to this MySQL besides the agent' }
              : { name: 'noClientConnections', ok: false, message: `${rows.length} client connection(s) on this MySQL (${who}): stop those clients, or create the seed with "force": true to replace the data under them` };
          })),
    );
  } else {
    checks.push({ name: 'noReplicasAttached', ok: true, message: 'this MySQL is stopped: no replicas can be attached' });
    checks.push({ name: 'noClientConnections', ok: true, message: 'this MySQL is stopped: no clients are connected' });
  }

  if (i.replicate) {
    checks.push(
      i.source.logBin
        ? { name: 'sourceBinaryLog', ok: true, message: "the source writes a binary log: a replica can follow it" }
        : { name: 'sourceBinaryLog', ok: false, message: 'the source has binary logging off, so nothing can replicate from it: set log_bin (and server_id) on the source and restart it, or seed without replicate' },
    );
    checks.push(
      attempt('replicationAccount', async () => {
        await i.replication.value('SELECT 1', { ...opts, host: i.sourceMySQL.host, port: i.sourceMySQL.port });
        return { name: 'replicationAccount', ok: true, message: `the replication account connects to ${i.sourceMySQL.host}:${i.sourceMySQL.port}` };
      }).then((c) => (c.ok ? c : { ...c, message: `the replication account in ReplicationCredentialsFile cannot connect to the source: ${c.message}` })),
    );
    checks.push(
      attempt('seedAccount', async () => {
        i.client.options();
        return { name: 'seedAccount', ok: true, message: 'SeedCredentialsFile is readable only by the agent, for setting up replication' };
      }),
    );
  }
  return Promise.all(checks);
}
