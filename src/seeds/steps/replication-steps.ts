// The end of a seed with replicate: make the target a replica of the source from the position the copy
// recorded, with the replication account, and wait until both threads run and it has applied what the
// source had written when the copy ended. The password reaches MySQL only through the client's stdin.
import { AgentError } from '../../errors.js';
import { readOptionFile } from '../../host/mysql-client.js';
import { changeSourceSql, replicaStatusOf, replicaStatusQuery, sqlFlavor, startReplicaSql, type ReplicaStatus, type SqlFlavor } from '../../host/replication-sql.js';
import type { BackupTargetParams } from '../../../machines/seed-backup-target.js';
import type { BinlogCoordinates, SeedFacts } from '../../../machines/seed-common.js';
import { seedClient, sourceMySQLOf } from './backup-steps.js';
import { remainingMs, type StepEnv, type StepFn } from './step-env.js';
import { sleep } from '../../timers.js';

export const REPLICATION_CONFIGURED = 'replicationConfigured';
/** What the view shows while and after the replica catches up (JSON). */
export const REPLICATION = 'replication';

export interface ReplicationView {
  source: string;
  startedFrom: string;
  ioRunning: string;
  sqlRunning: string;
  secondsBehind: number | null;
  executed: string;
  caughtUpTo: string | null;
  lastError: string | null;
  /** Why the seed counted the replica as caught up: it applied up to caughtUpTo, or lagged at most SeedReplicationMaxLagSeconds. */
  caughtUpBy?: 'position' | 'lag' | null;
}

const pos = (p: BinlogCoordinates | null | undefined) => (p ? `${p.file}:${p.position}` : null);

/** The target runs the source's copy: its statements are those of the source's server family and version. */
function flavorOf(facts: SeedFacts): SqlFlavor {
  return sqlFlavor(facts.source?.version ?? '');
}

/**
 * The agent's own client on this MySQL. After a backup this MySQL runs the source's copy, with the source's
 * accounts and passwords: a login refused now (1045) means SeedCredentialsFile here names an account or password
 * the source does not have, which the generic "check the account" would not make plain.
 */
function localClient(env: StepEnv, method: 'backup' | 'dump') {
  const client = seedClient(env);
  return {
    async query(sql: string, opts: { signal: AbortSignal; timeoutMs: number }) {
      try {
        return await client.query(sql, opts);
      } catch (err) {
        const e = err as AgentError;
        if (method !== 'backup' || !/\bERROR 1045\b/.test(String(e.details?.serverError ?? ''))) throw err;
        throw new AgentError(e.code, `${e.message} (after the backup this MySQL has the source's accounts and passwords, not its own)`, {
          hint: `SeedCredentialsFile on this host (${env.config.SeedCredentialsFile}) must name an account of the source with the source's password: use the same agent account and password on every host (README: seeds by backup, grants), or copy the source's file here; MySQL runs on the complete copy: set up replication by hand or seed again`,
          details: e.details,
        });
      }
    },
  };
}

async function replicaStatus(env: StepEnv, method: 'backup' | 'dump', flavor: SqlFlavor, signal: AbortSignal): Promise<ReplicaStatus | undefined> {
  const row = (await localClient(env, method).query(replicaStatusQuery(flavor), { signal, timeoutMs: 30_000 }))[0];
  return row ? replicaStatusOf(row) : undefined;
}

export const ensureReplicationSetUp: StepFn<BackupTargetParams> = async (input, signal, env) => {
  const from = input.facts.backupPosition;
  if (!from) {
    throw new AgentError('conflict', 'the backup recorded no binary log position (mariadb_backup_binlog_info / xtrabackup_binlog_info), so there is no position to replicate from', {
      hint: 'enable log_bin on the source and seed again',
    });
  }
  const { host, port } = sourceMySQLOf(input.params, input.facts);
  const flavor = flavorOf(input.facts);
  const client = localClient(env, input.params.method);
  const opts = { signal, timeoutMs: 60_000 };
  // GTID when the source uses GTIDs (its facts say) and the backup recorded them; else file and position.
  const gtid = input.facts.source?.gtidMode === true && from.gtid !== '';
  if (!env.seed.marks()[REPLICATION_CONFIGURED]) {
    if (input.facts.source?.gtidMode && !gtid) env.seed.warn('the source uses GTIDs but the backup recorded none: the replica follows the binary log file and position instead');
    const account = readOptionFile('ReplicationCredentialsFile', env.config.ReplicationCredentialsFile);
    await client.query(changeSourceSql(flavor, { host, port, user: account.user ?? '', password: account.password ?? '', from, gtid }), opts);
    env.seed.mark(REPLICATION_CONFIGURED, new Date().toISOString());
  }
  // Ensure-style: once configured, only (re)start the threads; the position has moved on since.
  await client.query(startReplicaSql(flavor), opts);
  const view: ReplicationView = {
    source: `${host}:${port}`,
    startedFrom: gtid ? `GTID ${from.gtid}` : `${from.file}:${from.position}`,
    ioRunning: 'starting',
    sqlRunning: 'starting',
    secondsBehind: null,
    executed: `${from.file}:${from.position}`,
    caughtUpTo: pos(input.facts.positionAtEnd),
    lastError: null,
    caughtUpBy: null,
  };
  env.seed.mark(REPLICATION, JSON.stringify(view));
  return {};
};

/** a >= b in binary log order (files sort by their numbered suffix). */
export function reached(file: string, position: number, target: BinlogCoordinates): boolean {
  if (file !== target.file) return file > target.file;
  return position >= target.position;
}

function replicationFailure(thread: 'IO' | 'SQL', errno: string, error: string, source: string): AgentError {
  const hints: Record<string, string> = {
    '1045': 'the source refused the replication account: check user and password in ReplicationCredentialsFile and GRANT REPLICATION SLAVE ON *.* to it on the source',
    '1236': "the source no longer has the binary log the copy starts from (purged?): keep binary logs longer on the source and seed again",
    '1227': 'the replication account lacks a privilege: GRANT REPLICATION SLAVE ON *.* to it on the source',
  };
  return new AgentError('command_failed', `replication from ${source} broke: the ${thread} thread stopped with error ${errno}: ${error}`, {
    hint: hints[errno] ?? `fix the cause on the target (SHOW SLAVE STATUS, or SHOW REPLICA STATUS on MySQL 8), then START SLAVE (START REPLICA); the copied data stays in place and MySQL runs`,
  });
}

const transientIo = new Set(['2003', '2002', '2005', '2006', '2013']);

/** Caught up: both threads run and it applied up to the copy's end, or (maxLag > 0) lags at most maxLag seconds. */
export function caughtUp(s: ReplicaStatus, end: BinlogCoordinates | null, maxLagSeconds: number): 'position' | 'lag' | null {
  if (s.ioRunning !== 'Yes' || s.sqlRunning !== 'Yes') return null;
  if (end === null || reached(s.sourceFile, s.executedPosition, end)) return 'position';
  if (maxLagSeconds > 0 && s.secondsBehind !== null && s.secondsBehind <= maxLagSeconds) return 'lag';
  return null;
}

export const ensureCaughtUp: StepFn<BackupTargetParams> = async (input, signal, env) => {
  const end = input.facts.positionAtEnd ?? null;
  const { host, port } = sourceMySQLOf(input.params, input.facts);
  const source = `${host}:${port}`;
  const flavor = flavorOf(input.facts);
  for (;;) {
    remainingMs(input.deadlines, Number.MAX_SAFE_INTEGER, 'catchingUp');
    const s = await replicaStatus(env, input.params.method, flavor, signal);
    if (!s) throw new AgentError('conflict', 'this MySQL is not configured as a replica any more (its replica status is empty)', { hint: 'someone ran RESET SLAVE ALL / RESET REPLICA ALL; create a new seed or set up replication by hand' });
    const previous = JSON.parse(env.seed.marks()[REPLICATION] ?? '{}') as Partial<ReplicationView>;
    // Read live: a SIGHUP that changes SeedReplicationMaxLagSeconds applies to a seed catching up.
    const by = caughtUp(s, end, env.config.SeedReplicationMaxLagSeconds);
    const view: ReplicationView = {
      source,
      startedFrom: previous.startedFrom ?? '',
      ioRunning: s.ioRunning,
      sqlRunning: s.sqlRunning,
      secondsBehind: s.secondsBehind,
      executed: `${s.sourceFile}:${s.executedPosition}`,
      caughtUpTo: pos(end),
      lastError: s.ioErrno !== '0' ? `IO ${s.ioErrno}: ${s.ioError}` : s.sqlErrno !== '0' ? `SQL ${s.sqlErrno}: ${s.sqlError}` : null,
      caughtUpBy: by,
    };
    if (JSON.stringify(view) !== JSON.stringify(previous)) env.seed.mark(REPLICATION, JSON.stringify(view));
    if (s.sqlErrno !== '0' && s.sqlRunning !== 'Yes') throw replicationFailure('SQL', s.sqlErrno, s.sqlError, source);
    if (s.ioErrno !== '0' && s.ioRunning !== 'Yes' && !transientIo.has(s.ioErrno)) throw replicationFailure('IO', s.ioErrno, s.ioError, source);
    if (by) return {};
    await sleep(1000, signal);
  }
};
