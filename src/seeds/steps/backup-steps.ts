// The steps of a seed by hot backup. Target: the pre-seed checks (with the facts from the sender's first
// message), receiving the stream into the extractor, preparing the copy exactly once, giving the datadir
// its owner back. Source: the facts, then streaming a hot backup of the running server. Each is an ensure
// step: a restarted agent runs the current one again, and durable marks say what is already done.
import { readFile, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentError, asAgentError } from '../../errors.js';
import { log } from '../../log.js';
import { MySQLClient, type Row } from '../../host/mysql-client.js';
import { binlogStatusQuery, gtidPositionQuery, sourceUsesGtid, sqlFlavor } from '../../host/replication-sql.js';
import { runPiped, runProgram } from '../../process-runner.js';
import type { SourceFacts, StreamProgress } from '../../transfer/stream.js';
import { isPermanentFailure } from '../../transfer/protocol.js';
import type { SeedCheck } from '../pre-seed-checks.js';
import type { BackupTargetParams } from '../../../machines/seed-backup-target.js';
import type { BackupSourceParams } from '../../../machines/seed-backup-source.js';
import type { BinlogCoordinates, CleanupInput, SeedFacts, StepInput } from '../../../machines/seed-common.js';
import { endReason } from './cleanup.js';
import { PURGE_STARTED } from './datadir-steps.js';
import { remainingMs, type StepEnv, type StepFn } from './step-env.js';
import { sleep } from '../../timers.js';

// The stream, TLS and checks load with the first backup seed, not when the agent starts.
const stream = () => import('../../transfer/stream.js');
const transferTls = async (env: StepEnv) => (await import('../../transfer/tls.js')).transferTlsFromConfig(env.config);

export const CHECKS = 'checks';
export const STREAM_ATTEMPTS = 'streamAttempts';
export const EXTRACTED = 'backupExtracted';
export const PREPARE_STARTED = 'prepareStarted';
export const PREPARED = 'backupPrepared';

export function seedClient(env: StepEnv): MySQLClient {
  return new MySQLClient(env.config.MySQLClientCommand || 'mysql', 'SeedCredentialsFile', env.config.SeedCredentialsFile);
}

export function replicationClient(env: StepEnv): MySQLClient {
  return new MySQLClient(env.config.MySQLClientCommand || 'mysql', 'ReplicationCredentialsFile', env.config.ReplicationCredentialsFile);
}

export function transferKey(env: StepEnv): string {
  const key = env.seed.secrets().authKey;
  if (!key) throw new AgentError('internal', `seed ${env.seed.id} has no transfer key`, { hint: 'create the seed again' });
  return key;
}

/** Where the replica reaches the source: the seed's sourceMySQL, else the sender's address and reported port. */
export function sourceMySQLOf(params: BackupTargetParams, facts: SeedFacts): { host: string; port: number } {
  if (params.sourceMySQL) return params.sourceMySQL;
  const s = facts.source;
  if (!s) throw new AgentError('internal', 'the source facts are unknown at this step');
  return { host: s.mysqlHost || s.address || '', port: s.mysqlPort };
}

export function progress(env: StepEnv, total: number | null) {
  return (p: StreamProgress) => {
    const rate = p.seconds > 0 ? Math.round(p.bytesDone / p.seconds) : null;
    env.seed.setProgress({
      bytesDone: p.bytesDone,
      bytesTotal: total,
      filesDone: null,
      filesTotal: null,
      currentFile: null,
      rateBytesPerSec: rate,
      etaSeconds: rate && total && total > p.bytesDone ? Math.round((total - p.bytesDone) / rate) : null,
    });
  };
}

/** How long to wait for the peer now: the connect deadline first, then a reconnect window from now. */
export function peerDeadline(input: StepInput<unknown>, env: StepEnv, seen: boolean): number {
  const connect = input.deadlines.connect ?? Date.now() + env.config.SeedTransferConnectTimeoutSeconds * 1000;
  const until = seen ? Math.max(connect, Date.now() + env.config.SeedTransferReconnectTimeoutSeconds * 1000) : connect;
  return Math.min(until, input.deadlines.seed);
}

// ------------------------------------------------------------------ target

export const ensurePreSeedChecked: StepFn<BackupTargetParams> = async (input, signal, env) => {
  const datadirPath = input.facts.datadir ?? (await env.mysql.datadir(signal));
  const st = await stat(datadirPath).catch(() => undefined);
  const datadirOwner = input.facts.datadirOwner ?? (st ? { uid: st.uid, gid: st.gid } : { uid: 0, gid: 0 });
  env.seed.setWaiting({ for: 'sender', since: new Date().toISOString(), until: new Date(input.deadlines.connect ?? Date.now()).toISOString(), message: 'waiting for the source seed to connect and tell its facts' });
  const { acceptStream } = await stream();
  const session = await acceptStream({
    port: input.params.port,
    bindAddress: env.config.SeedTransferBindAddress,
    tls: await transferTls(env),
    authKey: transferKey(env),
    signal,
    connectTimeoutMs: Math.max(1000, peerDeadline(input, env, false) - Date.now()),
    onRefused: (reason) => env.seed.warn(`refused a connection on transfer port ${input.params.port}: ${reason}`),
  });
  env.seed.setWaiting(null);
  const source = { ...session.facts, address: session.peerAddress };
  let checks: SeedCheck[];
  try {
    const { inspectBackupTarget } = await import('../pre-seed-checks.js');
    checks = await inspectBackupTarget({
      config: env.config,
      mysql: env.mysql,
      datadir: env.datadir,
      client: seedClient(env),
      replication: replicationClient(env),
      datadirPath,
      source: session.facts,
      sourceMySQL: sourceMySQLOf(input.params, { source }),
      replicate: input.params.replicate,
      force: input.params.force,
      signal,
    });
  } catch (err) {
    session.close();
    throw err;
  }
  env.seed.mark(CHECKS, JSON.stringify(checks));
  const failed = checks.filter((c) => !c.ok);
  if (failed.length > 0) {
    const err = new AgentError('conflict', `pre-seed checks failed, nothing was changed on this host: ${failed.map((c) => c.message).join('; ')}`, {
      hint: 'fix what the failed checks name (GET /api/seeds/:id shows every check) and create a new seed',
    });
    await session.refuse(err);
    throw err;
  }
  await session.later('pre-seed checks passed; come back for the data');
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
  let seen = false;
  for (;;) {
    const attempts = Number(env.seed.marks()[STREAM_ATTEMPTS] ?? '0');
    if (attempts > 0) {
      // A stream has no middle to resume from: what arrived is thrown away and the backup starts over.
      await emptyDatadir(env, datadir, signal);
    }
    const until = peerDeadline(input, env, seen || attempts > 0);
    if (Date.now() >= until) {
      throw new AgentError('unavailable', `no source streamed the backup by ${new Date(until).toISOString()}`, {
        hint: 'check the source seed (GET /api/seeds/:id on the source agent); raise SeedTransferConnectTimeoutSeconds / SeedTransferReconnectTimeoutSeconds for slow hosts',
      });
    }
    const { acceptStream } = await stream();
    const session = await acceptStream({
      port: input.params.port,
      bindAddress: env.config.SeedTransferBindAddress,
      tls: await transferTls(env),
      authKey: transferKey(env),
      signal,
      connectTimeoutMs: Math.max(1000, until - Date.now()),
      onRefused: (reason) => env.seed.warn(`refused a connection on transfer port ${input.params.port}: ${reason}`),
    });
    seen = true;
    env.seed.setWaiting(null);
    env.seed.mark(STREAM_ATTEMPTS, String(attempts + 1));
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
      const e = asAgentError(err);
      if (extractorFailure && !signal.aborted) log.warn('backup stream: the extractor ended', { seed: env.seed.id, error: extractorFailure.message });
      if (signal.aborted || isPermanentFailure(e)) throw e;
      env.seed.warn(`the backup stream was cut (${e.message}); the received part is removed and the backup restarts from the beginning`);
      await sleep(1000, signal);
    }
  }
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
  const { tellSenders } = await import('../../transfer/farewell.js');
  const reason = endReason('target', input, env.seed.id);
  const ok = await tellSenders({ port, bindAddress: env.config.SeedTransferBindAddress, tls: await transferTls(env), authKey, reason, untilMs });
  if (!ok) log.warn('transfer port is taken: the source seed is not told why this target seed ends', { id: env.seed.id, port });
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

/**
 * How soon the source offers the stream again while the target gets ready: while it stops MySQL and purges it
 * does not listen, so an offer is a refused connection; the first offer after it listens again starts the
 * stream, so this wait is time the seed loses (250 ms cost a small seed a tenth of its time).
 */
const OFFER_RETRY_MS = 50;

export const ensureBackupStreamed: StepFn<BackupSourceParams> = async (input, signal, env) => {
  const source = input.facts.source as SourceFacts | undefined;
  const sourceDir = input.facts.sourceDir;
  if (!source || !sourceDir) throw new AgentError('internal', 'streaming reached without the source facts');
  // The target goes quiet while it stops MySQL and purges (it answered LATER), or when a stream was cut: it
  // has SeedTransferReconnectTimeoutSeconds from the last contact (or this agent's restart) to answer again.
  let lastContact = env.seed.marks()[STREAM_ATTEMPTS] ? Date.now() : 0;
  let last: unknown;
  for (;;) {
    const connect = input.deadlines.connect ?? Date.now() + env.config.SeedTransferConnectTimeoutSeconds * 1000;
    const until = Math.min(input.deadlines.seed, lastContact ? lastContact + env.config.SeedTransferReconnectTimeoutSeconds * 1000 : connect);
    if (Date.now() >= until) {
      throw new AgentError('unavailable', `the target did not take the backup stream by ${new Date(until).toISOString()}${last ? `; last: ${(last as Error).message}` : ''}`, {
        hint: 'create the target seed first (method "backup") and pass its port and key; check it with GET /api/seeds/:id on the target agent',
      });
    }
    let answer;
    try {
      const { offerStream } = await stream();
      answer = await offerStream({
        host: input.params.targetHost,
        port: input.params.targetPort,
        tls: await transferTls(env),
        authKey: transferKey(env),
        signal,
        connectTimeoutMs: Math.max(1000, Math.min(30_000, until - Date.now())),
        facts: source,
      });
    } catch (err) {
      if (signal.aborted || isPermanentFailure(err)) throw err;
      last = err;
      await sleep(OFFER_RETRY_MS, signal);
      continue;
    }
    if (answer.kind === 'later') {
      // One waiting note (written once), not one per second.
      if (!lastContact) {
        const until = new Date(Math.min(input.deadlines.seed, Date.now() + env.config.SeedTransferReconnectTimeoutSeconds * 1000)).toISOString();
        env.seed.setWaiting({ for: 'receiver', since: new Date().toISOString(), until, message: `the target is getting ready: ${answer.message}` });
      }
      lastContact = Date.now();
      await sleep(OFFER_RETRY_MS, signal);
      continue;
    }
    lastContact = Date.now();
    env.seed.setWaiting(null);
    const attempts = Number(env.seed.marks()[STREAM_ATTEMPTS] ?? '0');
    if (attempts > 0) env.seed.warn('the backup stream restarts from the beginning (an earlier stream was cut or an agent restarted)');
    env.seed.mark(STREAM_ATTEMPTS, String(attempts + 1));
    const scratch = backupScratch(env);
    await rm(scratch, { recursive: true, force: true });
    const backup = await runPiped(
      env.config.SeedBackupProgram,
      // Credentials only through the option file, which must come first.
      [`--defaults-extra-file=${env.config.SeedCredentialsFile}`, '--backup', '--stream=xbstream', `--target-dir=${scratch}`, `--datadir=${sourceDir}`, ...env.config.SeedBackupFlags],
      { timeoutMs: remainingMs(input.deadlines, Number.MAX_SAFE_INTEGER, 'streaming'), signal },
    );
    try {
      const end = await answer.send(
        backup.stdout,
        async () => {
          await backup.done.catch((e: AgentError) => {
            // The backup program's own failure (privileges, disk) would fail again: the target must not wait.
            throw new AgentError(e.code, e.message, { hint: 'see the backup program\'s message; check the grants of the SeedCredentialsFile account (README: seeds by backup)', details: { ...e.details, permanent: true } });
          });
          return sourcePosition(env, source.version, signal);
        },
        (await import('../../transfer/throttle.js')).bandwidthLimiter(env.config.SeedTransferBandwidthMBps),
        progress(env, source.dataBytes),
      );
      log.info('backup streamed', { seed: env.seed.id, bytes: end.bytes });
      await rm(scratch, { recursive: true, force: true });
      return {};
    } catch (err) {
      await backup.kill();
      // A cut stream starts over; the backup program's own failure came back permanent.
      if (signal.aborted || isPermanentFailure(err)) throw err;
      last = err;
      lastContact = Date.now();
      env.seed.warn(`the backup stream was cut (${(err as Error).message}); the backup restarts from the beginning`);
      await sleep(1000, signal);
    }
  }
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
  const told = await tellStreamReceiver(
    { host: input.params.targetHost, port: input.params.targetPort, tls: await transferTls(env), authKey, signal },
    endReason('source', input, env.seed.id),
  );
  if (!told) log.warn('the target seed could not be told why this source seed ends; it ends at its own deadline', { id: env.seed.id });
}
