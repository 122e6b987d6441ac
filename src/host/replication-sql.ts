// The replication statements of the two server families, chosen by the version string: MariaDB (CHANGE
// MASTER ... MASTER_USE_GTID, gtid_slave_pos), MySQL before 8.0.22/23 (CHANGE MASTER, MASTER_AUTO_POSITION)
// and MySQL/Percona from then on (CHANGE REPLICATION SOURCE, START REPLICA, SHOW REPLICA STATUS; from 8.2
// SHOW BINARY LOG STATUS and RESET BINARY LOGS AND GTIDS, the old names being gone in 8.4). Text only: the
// statements run through MySQLClient, on stdin.
import { sqlString, type Row } from './mysql-client.js';
import type { BinlogCoordinates } from '../../machines/seed-common.js';

export interface SqlFlavor {
  mariadb: boolean;
  /** major * 10000 + minor * 100 + patch; 0 when the version string has no number. */
  version: number;
}

export function sqlFlavor(version: string): SqlFlavor {
  const m = /(\d+)\.(\d+)(?:\.(\d+))?/.exec(version);
  const n = m ? Number(m[1]) * 10000 + Number(m[2]) * 100 + Number(m[3] ?? 0) : 0;
  return { mariadb: /mariadb/i.test(version), version: n };
}

const mysqlFrom = (f: SqlFlavor, v: number) => !f.mariadb && f.version >= v;

/** The source's current binary log file and position (first row: File, Position). */
export function binlogStatusQuery(f: SqlFlavor): string {
  return mysqlFrom(f, 80200) ? 'SHOW BINARY LOG STATUS' : 'SHOW MASTER STATUS';
}

/** The source's GTID position (MariaDB) or executed GTID set (MySQL; one line, its line breaks dropped). */
export function gtidPositionQuery(f: SqlFlavor): string {
  return f.mariadb ? 'SELECT @@GLOBAL.gtid_binlog_pos' : "SELECT REPLACE(REPLACE(@@GLOBAL.gtid_executed, '\\n', ''), ' ', '')";
}

export function replicaStatusQuery(f: SqlFlavor): string {
  return mysqlFrom(f, 80022) ? 'SHOW REPLICA STATUS' : 'SHOW SLAVE STATUS';
}

export function startReplicaSql(f: SqlFlavor): string {
  return mysqlFrom(f, 80022) ? 'START REPLICA;' : 'START SLAVE;';
}

export interface ChangeSource {
  host: string;
  port: number;
  user: string;
  password: string;
  from: BinlogCoordinates;
  /** Replicate by GTID from from.gtid (MariaDB slave_pos; MySQL auto-position with gtid_purged). */
  gtid: boolean;
}

/**
 * Stops the threads and points this server at its source, from the position (or GTIDs) the copy recorded.
 * Safe to run again before the threads are started: nothing has been applied in between.
 */
export function changeSourceSql(f: SqlFlavor, c: ChangeSource): string {
  const account = (p: string) => `${p}_HOST=${sqlString(c.host)}, ${p}_PORT=${c.port}, ${p}_USER=${sqlString(c.user)}, ${p}_PASSWORD=${sqlString(c.password)}`;
  if (f.mariadb) {
    return [
      'STOP SLAVE;',
      ...(c.gtid ? [`SET GLOBAL gtid_slave_pos = ${sqlString(c.from.gtid)};`] : []),
      `CHANGE MASTER TO ${account('MASTER')}, ` +
        (c.gtid ? 'MASTER_USE_GTID=slave_pos;' : `MASTER_USE_GTID=no, MASTER_LOG_FILE=${sqlString(c.from.file)}, MASTER_LOG_POS=${c.from.position};`),
    ].join('\n');
  }
  const modern = mysqlFrom(f, 80023);
  const p = modern ? 'SOURCE' : 'MASTER';
  return [
    mysqlFrom(f, 80022) ? 'STOP REPLICA;' : 'STOP SLAVE;',
    // The copy's own GTID history is replaced by the one the backup recorded: what it contains.
    ...(c.gtid ? [mysqlFrom(f, 80200) ? 'RESET BINARY LOGS AND GTIDS;' : 'RESET MASTER;', `SET GLOBAL gtid_purged = ${sqlString(c.from.gtid)};`] : []),
    `${modern ? 'CHANGE REPLICATION SOURCE TO' : 'CHANGE MASTER TO'} ${account(p)}, ` +
      (c.gtid ? `${p}_AUTO_POSITION=1;` : `${p}_AUTO_POSITION=0, ${p}_LOG_FILE=${sqlString(c.from.file)}, ${p}_LOG_POS=${c.from.position};`),
  ].join('\n');
}

/** One replica status, whichever family's column names the server used. */
export interface ReplicaStatus {
  ioRunning: string;
  sqlRunning: string;
  /** The source's binary log file and position the SQL thread has executed up to. */
  sourceFile: string;
  executedPosition: number;
  secondsBehind: number | null;
  ioErrno: string;
  ioError: string;
  sqlErrno: string;
  sqlError: string;
}

export function replicaStatusOf(r: Row): ReplicaStatus {
  const col = (...names: string[]) => names.map((n) => r[n]).find((v) => v !== undefined) ?? null;
  const behind = col('Seconds_Behind_Source', 'Seconds_Behind_Master');
  return {
    ioRunning: col('Replica_IO_Running', 'Slave_IO_Running') ?? '',
    sqlRunning: col('Replica_SQL_Running', 'Slave_SQL_Running') ?? '',
    sourceFile: col('Relay_Source_Log_File', 'Relay_Master_Log_File') ?? '',
    executedPosition: Number(col('Exec_Source_Log_Pos', 'Exec_Master_Log_Pos') ?? 0),
    secondsBehind: behind === null || behind === '' ? null : Number(behind),
    ioErrno: col('Last_IO_Errno') ?? '0',
    ioError: col('Last_IO_Error') ?? '',
    sqlErrno: col('Last_SQL_Errno') ?? '0',
    sqlError: col('Last_SQL_Error') ?? '',
  };
}

/**
 * Whether a replica of this source should follow it by GTID. MySQL: gtid_mode ON. MariaDB records GTIDs
 * always, so it counts as using them when gtid_strict_mode is ON or when the source itself replicates with
 * GTID (Using_Gtid not No in SHOW ALL SLAVES STATUS, which needs SLAVE MONITOR; without it, the answer is no
 * and the replica follows file and position, which works as well).
 */
export async function sourceUsesGtid(f: SqlFlavor, query: (sql: string) => Promise<Row[]>): Promise<boolean> {
  const first = async (sql: string) => Object.values((await query(sql).catch(() => []))[0] ?? {})[0] ?? '';
  if (!f.mariadb) return (await first('SELECT @@GLOBAL.gtid_mode')).toUpperCase() === 'ON';
  if ((await first('SELECT @@GLOBAL.gtid_strict_mode')) === '1') return true;
  const connections = await query('SHOW ALL SLAVES STATUS').catch(() => []);
  return connections.some((c) => (c.Using_Gtid ?? 'No') !== 'No');
}
