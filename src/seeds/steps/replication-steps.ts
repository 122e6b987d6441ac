// The end of a seed with replicate: make the target a replica of the source from the position the copy
// recorded, with the replication account, and wait until both threads run and it has applied what the
// source had written when the copy ended. The password reaches MySQL only through the client's stdin.
import { AgentError } from '../../errors.js';
import { readOptionFile, sqlString, type Row } from '../../host/mysql-client.js';
import type { BackupTargetParams } from '../../../machines/seed-backup-target.js';
import type { BinlogCoordinates } from '../../../machines/seed-common.js';
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
}

const pos = (p: BinlogCoordinates | null | undefined) => (p ? `${p.file}:${p.position}` : null);

async function slaveStatus(env: StepEnv, signal: AbortSignal): Promise<Row | undefined> {
  return (await seedClient(env).query('SHOW SLAVE STATUS', { signal, timeoutMs: 30_000 }))[0];
}

export const ensureReplicationSetUp: StepFn<BackupTargetParams> = async (input, signal, env) => {
  const from = input.facts.backupPosition;
  if (!from) {
    throw new AgentError('conflict', 'the backup recorded no binary log position (mariadb_backup_binlog_info), so there is no position to replicate from', {
      hint: 'enable log_bin on the source and seed again',
    });
  }
  const { host, port } = sourceMySQLOf(input.params, input.facts);
  const client = seedClient(env);
  const opts = { signal, timeoutMs: 60_000 };
  if (!env.seed.marks()[REPLICATION_CONFIGURED]) {
    const account = readOptionFile('ReplicationCredentialsFile', env.config.ReplicationCredentialsFile);
    const gtid = input.facts.source?.gtidMode === true && from.gtid !== '';
    const sql = [
      'STOP SLAVE;',
      ...(gtid ? [`SET GLOBAL gtid_slave_pos = ${sqlString(from.gtid)};`] : []),
      `CHANGE MASTER TO MASTER_HOST=${sqlString(host)}, MASTER_PORT=${port}, MASTER_USER=${sqlString(account.user ?? '')}, MASTER_PASSWORD=${sqlString(account.password ?? '')}, ` +
        (gtid ? 'MASTER_USE_GTID=slave_pos;' : `MASTER_LOG_FILE=${sqlString(from.file)}, MASTER_LOG_POS=${from.position};`),
    ].join('\n');
    await client.query(sql, opts);
    env.seed.mark(REPLICATION_CONFIGURED, new Date().toISOString());
  }
  // Ensure-style: once configured, only (re)start the threads; the position has moved on since.
  await client.query('START SLAVE;', opts);
  const view: ReplicationView = {
    source: `${host}:${port}`,
    startedFrom: input.facts.source?.gtidMode && from.gtid ? `GTID ${from.gtid}` : `${from.file}:${from.position}`,
    ioRunning: 'starting',
    sqlRunning: 'starting',
    secondsBehind: null,
    executed: `${from.file}:${from.position}`,
    caughtUpTo: pos(input.facts.positionAtEnd),
    lastError: null,
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
    hint: hints[errno] ?? `fix the cause on the target (SHOW SLAVE STATUS), then START SLAVE; the copied data stays in place and MySQL runs`,
  });
}

const transientIo = new Set(['2003', '2002', '2005', '2006', '2013']);

export const ensureCaughtUp: StepFn<BackupTargetParams> = async (input, signal, env) => {
  const end = input.facts.positionAtEnd ?? null;
  const { host, port } = sourceMySQLOf(input.params, input.facts);
  const source = `${host}:${port}`;
  for (;;) {
    remainingMs(input.deadlines, Number.MAX_SAFE_INTEGER, 'catchingUp');
    const s = await slaveStatus(env, signal);
    if (!s) throw new AgentError('conflict', 'this MySQL is not configured as a replica any more (SHOW SLAVE STATUS is empty)', { hint: 'someone ran RESET SLAVE ALL; create a new seed or set up replication by hand' });
    const io = s.Slave_IO_Running ?? '';
    const sql = s.Slave_SQL_Running ?? '';
    const file = s.Relay_Master_Log_File ?? '';
    const at = Number(s.Exec_Master_Log_Pos ?? 0);
    const ioErr = s.Last_IO_Errno ?? '0';
    const sqlErr = s.Last_SQL_Errno ?? '0';
    const previous = JSON.parse(env.seed.marks()[REPLICATION] ?? '{}') as Partial<ReplicationView>;
    const view: ReplicationView = {
      source,
      startedFrom: previous.startedFrom ?? '',
      ioRunning: io,
      sqlRunning: sql,
      secondsBehind: s.Seconds_Behind_Master === null || s.Seconds_Behind_Master === undefined ? null : Number(s.Seconds_Behind_Master),
      executed: `${file}:${at}`,
      caughtUpTo: pos(end),
      lastError: ioErr !== '0' ? `IO ${ioErr}: ${s.Last_IO_Error ?? ''}` : sqlErr !== '0' ? `SQL ${sqlErr}: ${s.Last_SQL_Error ?? ''}` : null,
    };
    if (JSON.stringify(view) !== JSON.stringify(previous)) env.seed.mark(REPLICATION, JSON.stringify(view));
    if (sqlErr !== '0' && sql !== 'Yes') throw replicationFailure('SQL', sqlErr, s.Last_SQL_Error ?? '', source);
    if (ioErr !== '0' && io !== 'Yes' && !transientIo.has(ioErr)) throw replicationFailure('IO', ioErr, s.Last_IO_Error ?? '', source);
    if (io === 'Yes' && sql === 'Yes' && (end === null || reached(file, at, end))) return {};
    await sleep(1000, signal);
  }
};
