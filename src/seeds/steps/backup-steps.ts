// The steps of a seed by hot backup. Target: the pre-seed checks (with the facts from the sender's first
// message), receiving the stream into the extractor, preparing the copy exactly once, giving the datadir
// its owner back. Source: the facts, then streaming a hot backup of the running server. Each is an ensure
// step: a restarted agent runs the current one again, and durable marks say what is already done.
import { readFile, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentError } from '../../errors.js';
import { log } from '../../log.js';
import { MySQLClient, type Row } from '../../host/mysql-client.js';
import { binlogStatusQuery, gtidPositionQuery, sourceUsesGtid, sqlFlavor } from '../../host/replication-sql.js';
import { runPiped, runProgram } from '../../process-runner.js';
import type { SourceFacts } from '../../transfer/stream.js';
import type { BackupTargetParams } from '../../../machines/seed-backup-target.js';
import type { BackupSourceParams } from '../../../machines/seed-backup-source.js';
import type { BinlogCoordinates, CleanupInput, SeedFacts } from '../../../machines/seed-common.js';
import { endReason } from './cleanup.js';
import { answerSenders, keepTellingTarget } from './farewell-steps.js';
import { PURGE_STARTED } from './datadir-steps.js';
import { remainingMs, type StepEnv, type StepFn } from './step-env.js';
import { checkedAgainstTheSource, progress, receiveFromTheStart, stream, streamFromTheStart, transferTls } from './stream-steps.js';

export const EXTRACTED = 'backupExtracted';
export const PREPARE_STARTED = 'prepareStarted';
export const PREPARED = 'backupPrepared';

export function seedClient(env: StepEnv): MySQLClient {
  return new MySQLClient(env.config.MySQLClientCommand || 'mysql', 'SeedCredentialsFile', env.config.SeedCredentialsFile);
}

export function replicationClient(env: StepEnv): MySQLClient {
  return new MySQLClient(env.config.MySQLClientCommand || 'mysql', 'ReplicationCredentialsFile', env.config.ReplicationCredentialsFile);
}

/** Where the replica reaches the source: the seed's sourceMySQL, else the sender's address and reported port. */
export function sourceMySQLOf(params: BackupTargetParams, facts: SeedFacts): { host: string; port: number } {
  if (params.sourceMySQL) return params.sourceMySQL;
  const s = facts.source;
  if (!s) throw new AgentError('internal', 'the source facts are unknown at this step');
  return { host: s.mysqlHost || s.address || '', port: s.mysqlPort };
}

// ------------------------------------------------------------------ target

export const ensurePreSeedChecked: StepFn<BackupTargetParams> = async (input, signal, env) => {
  const datadirPath = input.facts.datadir ?? (await env.mysql.datadir(signal));
  const st = await stat(datadirPath).catch(() => undefined);
  const datadirOwner = input.facts.datadirOwner ?? (st ? { uid: st.uid, gid: st.gid } : { uid: 0, gid: 0 });
  const source = await checkedAgainstTheSource(input, signal, env, 'data', async (source) => {
    const { inspectBackupTarget } = await import('../pre-seed-checks.js');
    return inspectBackupTarget({
      config: env.config,
      mysql: env.mysql,
      datadir: env.datadir,
      client: seedClient(env),
      replication: replicationClient(env),
      datadirPath,
      source,
      sourceMySQL: sourceMySQLOf(input.params, { source }),
      replicate: input.params.replicate,
      force: input.params.force,
      signal,
    });
  });
  return { datadir: datadirPath, datadirOwner, source };
};

async function emptyDatadir(env: StepEnv, datadir: string, signal: AbortSignal): Promise<void> {
  if (await env.mysql.isRunning(signal)) {
    throw new AgentError('conflict', `MySQL runs on ${datadir}; refusing to empty it for the backup`, { hint: 'stop MySQL and abort the seed' });
  }
  if ((await readdir(datadir).catch(() => [])).length > 0) await env.datadir.purge(datadir, signal);
}

export const ensureBackupExtracted: StepFn<BackupTargetParams> = async (input, signal, env) => {
  const datadir = input.facts.datadir;
  if (!datadir) throw new AgentError('internal', 'receiving reached without a known datadir');
  const marks = env.seed.marks();
  if (marks[EXTRACTED]) return { positionAtEnd: JSON.parse(marks[EXTRACTED]) as BinlogCoordinates | null };
  return receiveFromTheStart(input, signal, env, {
    what: 'backup',
    // A stream has no middle to resume from: what arrived is thrown away and the backup starts over.
    reset: () => emptyDatadir(env, datadir, signal),
    onCut: 'the received part is removed and the backup restarts from the beginning',
    take: async (session) => {
      const extractor = await runPiped(
        env.config.SeedBackupExtractProgram,
        ['-x', '-C', datadir],
        { timeoutMs: remainingMs(input.deadlines, Number.MAX_SAFE_INTEGER, 'receiving'), signal },
        'ignore',
      );
      try {
        const end = await session.receive(
          extractor.stdin,
          async () => {
            await extractor.done;
            await runProgram('sync', ['-f', datadir], { timeoutMs: 600_000, signal });
          },
          progress(env, session.facts.dataBytes),
          extractor.done,
        );
        env.seed.mark(EXTRACTED, JSON.stringify(end.positionAtEnd));
        log.info('backup stream extracted', { seed: env.seed.id, bytes: end.bytes });
        return { positionAtEnd: end.positionAtEnd };
      } catch (err) {
        await extractor.kill();
        const extractorFailure = await extractor.done.then(() => undefined, (e: unknown) => e as Error);
        if (extractorFailure && !signal.aborted) log.warn('backup stream: the extractor ended', { seed: env.seed.id, error: extractorFailure.message });
        throw err;
      }
    },
  });
};

/** The files a backup records its binary log position in: mariabackup's, then xtrabackup's (older mariabackup too). */
export const BINLOG_INFO_FILES = ['mariadb_backup_binlog_info', 'xtrabackup_binlog_info'];

/**
 * "file<TAB>position[<TAB>gtid]": MariaDB's GTID position ("0-1-42,1-2-7") or MySQL's GTID set, which
 * xtrabackup writes over several lines ("uuid:1-5,\nuuid:1-3"); whitespace inside it is dropped.
 */
export function parseBinlogInfo(text: string): BinlogCoordinates | null {
  const m = /^\s*(\S+)\s+(\d+)([\s\S]*)$/.exec(text);
  if (!m) return null;
  return { file: m[1]!, position: Number(m[2]), gtid: m[3]!.replace(/\s+/g, '') };
}

/** The binary log position the backup recorded (where a replica of the copy starts). */
export async function backupPosition(datadir: string): Promise<BinlogCoordinates | null> {
  for (const name of BINLOG_INFO_FILES) {
    const text = await readFile(join(datadir, name), 'utf8').catch(() => undefined);
    const position = text === undefined ? null : parseBinlogInfo(text);
    if (position) return position;
  }
  return null;
}

export const ensureBackupPrepared: StepFn<BackupTargetParams> = async (input, signal, env) => {
  const datadir = input.facts.datadir;
  if (!datadir) throw new AgentError('internal', 'preparing reached without a known datadir');
  const marks = env.seed.marks();
  if (!marks[PREPARED]) {
    if (marks[PREPARE_STARTED]) {
      throw new AgentError('conflict', `the prepare of the backup in ${datadir} started at ${marks[PREPARE_STARTED]} was interrupted; a backup is never prepared twice, so this copy cannot be trusted`, {
        hint: 'the seed removes the copy; create a new seed',
      });
    }
    env.seed.mark(PREPARE_STARTED, new Date().toISOString());
    await runProgram(env.config.SeedBackupProgram, ['--prepare', `--target-dir=${datadir}`, ...env.config.SeedBackupPrepareFlags], {
      timeoutMs: remainingMs(input.deadlines, Number.MAX_SAFE_INTEGER, 'preparing'),
      signal,
    });
    await runProgram('sync', ['-f', datadir], { timeoutMs: 600_000, signal });
    env.seed.mark(PREPARED, new Date().toISOString());
  }
  return { backupPosition: await backupPosition(datadir) };
};

export const ensureOwnerFixed: StepFn<BackupTargetParams> = async (input, signal, env) => {
  const datadir = input.facts.datadir;
  const owner = input.facts.datadirOwner;
  if (!datadir || !owner) throw new AgentError('internal', 'fixingOwner reached without a known datadir and owner');
  await runProgram('chown', ['-R', `${owner.uid}:${owner.gid}`, '--', datadir], { timeoutMs: remainingMs(input.deadlines, 3_600_000, 'fixingOwner'), signal });
  return {};
};

export async function cleanupBackupTarget(input: CleanupInput<BackupTargetParams>, signal: AbortSignal, env: StepEnv): Promise<SeedFacts> {
  await env.killSeedProcesses();
  await tellStreamSource(input, env, env.seed.marks()[EXTRACTED] !== undefined);
  const marks = env.seed.marks();
  const datadir = input.facts.datadir;
  // Once purged and before the copy is prepared, what is there is no database: nobody may start MySQL on it.
  if (datadir && marks[PURGE_STARTED] && !marks[PREPARED]) await emptyDatadir(env, datadir, signal);
  return {};
}

/**
 * A target seed of a streamed method (backup, dump) ends before the whole stream arrived (`received` false):
 * keep answering on its transfer port for a while, so the source seed (offering its stream again every
 * second) is told why and ends now, aborted when this one was, instead of at its reconnect deadline. Again
 * after a restart in cleanup. Not when the source gave the reason.
 */
export async function tellStreamSource(input: CleanupInput<{ port: number }>, env: StepEnv, received: boolean): Promise<void> {
  const authKey = env.seed.secrets().authKey;
  const port = input.params.port;
  if (!authKey || !port || received || input.error?.fromPeer) return;
  const untilMs = Math.min(input.deadlines.seed, Date.now() + env.config.SeedTransferConnectTimeoutSeconds * 1000);
  if (untilMs <= Date.now()) return;
  await answerSenders(env, port, authKey, endReason('target', input, env.seed.id), untilMs);
}

// ------------------------------------------------------------------ source

/** Scratch directory mariabackup wants even when streaming (it holds no data). */
function backupScratch(env: StepEnv): string {
  return join(env.config.StateDir, 'backup-scratch', env.seed.id);
}

export const ensureSourceChecked: StepFn<BackupSourceParams> = async (_input, signal, env) => {
  const opts = { signal, timeoutMs: 30_000 };
  const client = seedClient(env);
  client.options(); // a missing or readable-by-others credentials file fails here, before the target waits on it
  // Independent reads, run at once (each a process): the target waits on these facts.
  const [, sourceDir, running] = await Promise.all([
    runProgram(env.config.SeedBackupProgram, ['--version'], opts).catch((err: Error) => {
      throw new AgentError('config', `the backup program ${env.config.SeedBackupProgram} does not run here: ${err.message}`, { hint: 'install mariadb-backup (MariaDB) or percona-xtrabackup of the server\'s version (MySQL/Percona) and set SeedBackupProgram' });
    }),
    env.mysql.datadir(signal),
    env.mysql.isRunning(signal),
  ]);
  if (!running) {
    // The target's checks report it and fail the seed there too.
    const source: SourceFacts = { mysqlRunning: false, version: '', dataBytes: 0, logBin: false, gtidMode: false, mysqlHost: '', mysqlPort: 0 };
    return { sourceDir, source };
  }
  const [{ row: r, gtidMode }, dataBytes] = await Promise.all([
    client.query('SELECT VERSION() AS version, @@log_bin AS log_bin, @@port AS port', opts).then(async (rows) => {
      const row: Row = rows[0] ?? {};
      return { row, gtidMode: await sourceUsesGtid(sqlFlavor(row.version ?? ''), (sql) => client.query(sql, opts)) };
    }),
    env.datadir.diskUsage(sourceDir, signal),
  ]);
  const source: SourceFacts = {
    mysqlRunning: true,
    version: r.version ?? '',
    dataBytes,
    logBin: r.log_bin === '1' || r.log_bin?.toUpperCase() === 'ON',
    gtidMode,
    mysqlHost: '',
    mysqlPort: Number(r.port ?? 3306),
  };
  return { sourceDir, source };
};

export async function sourcePosition(env: StepEnv, version: string, signal: AbortSignal): Promise<BinlogCoordinates | null> {
  const client = seedClient(env);
  const flavor = sqlFlavor(version);
  const rows = await client.query(binlogStatusQuery(flavor), { signal, timeoutMs: 30_000 });
  const r = rows[0];
  if (!r || !r.File) return null;
  const gtid = (await client.value(gtidPositionQuery(flavor), { signal, timeoutMs: 30_000 }).catch(() => '')) ?? '';
  return { file: r.File, position: Number(r.Position ?? 0), gtid };
}

export const ensureBackupStreamed: StepFn<BackupSourceParams> = async (input, signal, env) => {
  const source = input.facts.source as SourceFacts | undefined;
  const sourceDir = input.facts.sourceDir;
  if (!source || !sourceDir) throw new AgentError('internal', 'streaming reached without the source facts');
  const scratch = backupScratch(env);
  await streamFromTheStart(input, signal, env, {
    what: 'backup',
    method: 'backup',
    facts: source,
    start: async () => {
      await rm(scratch, { recursive: true, force: true });
      const backup = await runPiped(
        env.config.SeedBackupProgram,
        // Credentials only through the option file, which must come first.
        [`--defaults-extra-file=${env.config.SeedCredentialsFile}`, '--backup', '--stream=xbstream', `--target-dir=${scratch}`, `--datadir=${sourceDir}`, ...env.config.SeedBackupFlags],
        { timeoutMs: remainingMs(input.deadlines, Number.MAX_SAFE_INTEGER, 'streaming'), signal },
      );
      return {
        stdout: backup.stdout,
        end: async () => {
          await backup.done.catch((e: AgentError) => {
            // The backup program's own failure (privileges, disk) would fail again: the target must not wait.
            throw new AgentError(e.code, e.message, { hint: 'see the backup program\'s message; check the grants of the SeedCredentialsFile account (README: seeds by backup)', details: { ...e.details, permanent: true } });
          });
          return sourcePosition(env, source.version, signal);
        },
        kill: () => backup.kill(),
      };
    },
  });
  await rm(scratch, { recursive: true, force: true });
  return {};
};

export async function cleanupBackupSource(input: CleanupInput<BackupSourceParams>, signal: AbortSignal, env: StepEnv): Promise<SeedFacts> {
  await env.killSeedProcesses();
  await rm(backupScratch(env), { recursive: true, force: true });
  await tellStreamTarget(input, signal, env);
  return {};
}

/**
 * A source seed of a streamed method (backup, dump) ends without having streamed the whole stream (the
 * chart reaches cleanup only then): tell the target seed why, so it ends now with this reason (aborted when
 * this one was) instead of waiting for a stream until its reconnect deadline. Again after a restart in
 * cleanup. Not when the target gave the reason, nor with a key it refused.
 */
export async function tellStreamTarget(input: CleanupInput<{ targetHost: string; targetPort: number }>, signal: AbortSignal, env: StepEnv): Promise<void> {
  const authKey = env.seed.secrets().authKey;
  if (!authKey || input.error?.fromPeer || input.error?.code === 'unauthorized') return;
  const { tellStreamReceiver } = await stream();
  const reason = endReason('source', input, env.seed.id);
  const told = await tellStreamReceiver({ host: input.params.targetHost, port: input.params.targetPort, tls: await transferTls(env), authKey, signal }, reason);
  if (!told && !signal.aborted) keepTellingTarget(env, 'stream', input.params.targetHost, input.params.targetPort, authKey, reason);
}
