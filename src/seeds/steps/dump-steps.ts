// The steps of a seed by logical dump. Target: the pre-seed checks (with the facts from the sender's first
// message), dropping the user schemas the dump brings, receiving the dump stream straight into the loading
// client (noting the binary log position the dump records as it passes). Source: the facts, then streaming a
// consistent dump of the running server (nothing written to its disk). Each is an ensure step: a restarted
// agent runs the current one again; a cut stream drops what was loaded and loads from the beginning.
import { Transform } from 'node:stream';
import { AgentError, asAgentError } from '../../errors.js';
import { log } from '../../log.js';
import { withoutEchoedStatements } from '../../host/mysql-client.js';
import { runPiped, runProgram } from '../../process-runner.js';
import type { SourceFacts } from '../../transfer/stream.js';
import { isPermanentFailure } from '../../transfer/protocol.js';
import type { SeedCheck } from '../pre-seed-checks.js';
import type { DumpTargetParams } from '../../../machines/seed-dump-target.js';
import type { DumpSourceParams } from '../../../machines/seed-dump-source.js';
import type { BackupTargetParams } from '../../../machines/seed-backup-target.js';
import type { BinlogCoordinates, CleanupInput, SeedFacts } from '../../../machines/seed-common.js';
import {
  CHECKS,
  STREAM_ATTEMPTS,
  peerDeadline,
  progress,
  replicationClient,
  seedClient,
  sourceMySQLOf,
  sourcePosition,
  tellStreamSource,
  tellStreamTarget,
  transferKey,
} from './backup-steps.js';
import { isSystemSchema, sqlIdentifier, userSchemas, schemaBytes } from '../dump-checks.js';
import { remainingMs, type StepEnv, type StepFn } from './step-env.js';
import { sleep } from '../../timers.js';

// The stream and TLS load with the first dump seed, not when the agent starts.
const stream = () => import('../../transfer/stream.js');
const transferTls = async (env: StepEnv) => (await import('../../transfer/tls.js')).transferTlsFromConfig(env.config);

/** Marks: the drop has begun (from then on a half-done load is dropped at cleanup), and the load ended well. */
export const DROP_STARTED = 'schemasDropStarted';
export const LOADED = 'dumpLoaded';

const dumpParams = (p: DumpTargetParams) => p as unknown as BackupTargetParams;

// ------------------------------------------------------------------ target

export const ensureDumpTargetChecked: StepFn<DumpTargetParams> = async (input, signal, env) => {
  const datadirPath = input.facts.datadir ?? (await env.mysql.datadir(signal));
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
    const { inspectDumpTarget } = await import('../dump-checks.js');
    checks = await inspectDumpTarget({
      config: env.config,
      mysql: env.mysql,
      datadir: env.datadir,
      client: seedClient(env),
      replication: replicationClient(env),
      datadirPath,
      source: session.facts,
      sourceMySQL: sourceMySQLOf(dumpParams(input.params), { source }),
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
  await session.later('pre-seed checks passed; come back for the dump');
  return { datadir: datadirPath, source };
};

/** The user schemas the source said its dump brings (never a system schema: checked again here). */
function replacedSchemas(facts: SeedFacts): string[] {
  const schemas = facts.source?.schemas ?? [];
  const system = schemas.filter(isSystemSchema);
  if (system.length > 0) throw new AgentError('internal', `refusing to drop system schemas ${system.join(', ')}`);
  return schemas;
}

async function dropSchemas(env: StepEnv, schemas: readonly string[], signal: AbortSignal): Promise<void> {
  if (schemas.length === 0) return;
  const sql = schemas.map((s) => `DROP DATABASE IF EXISTS ${sqlIdentifier(s)};`).join('\n');
  await seedClient(env).query(sql, { signal, timeoutMs: 3_600_000 });
}

export const ensureSchemasDropped: StepFn<DumpTargetParams> = async (input, signal, env) => {
  const schemas = replacedSchemas(input.facts);
  env.seed.mark(DROP_STARTED, new Date().toISOString());
  // A replica being re-seeded must not apply its old source's changes into what is being reloaded.
  if (input.params.replicate) await seedClient(env).query('STOP SLAVE;', { signal, timeoutMs: 60_000 });
  log.info('seed is dropping the schemas the dump replaces', { seed: env.seed.id, schemas: schemas.join(', ') });
  await dropSchemas(env, schemas, signal);
  return {};
};

/** Watches a dump go by for the binary log position it records (mariadb-dump / mysqldump --master-data=2). */
export class DumpPositionScanner extends Transform {
  file = '';
  position = -1;
  gtid = '';
  private tail = Buffer.alloc(0);
  private static readonly coords = /\n-- CHANGE (?:MASTER|REPLICATION SOURCE) TO (?:MASTER|SOURCE)_LOG_FILE='([^'\n]+)', (?:MASTER|SOURCE)_LOG_POS=(\d+);/;
  private static readonly gtidPos = /\n-- SET GLOBAL gtid_slave_pos='([^'\n]*)';/;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null, data?: Buffer) => void): void {
    // A marker starts a line of under 512 bytes; data lines cannot hold one (the dump escapes newlines in values).
    const buf = this.tail.length ? Buffer.concat([this.tail, chunk]) : chunk;
    if (this.position < 0 && buf.includes('\n-- CHANGE ')) {
      const m = DumpPositionScanner.coords.exec(buf.toString('latin1'));
      if (m) {
        this.file = m[1]!;
        this.position = Number(m[2]);
      }
    }
    if (buf.includes('\n-- SET GLOBAL gtid_slave_pos=')) {
      const m = DumpPositionScanner.gtidPos.exec(buf.toString('latin1'));
      if (m) this.gtid = m[1]!;
    }
    this.tail = Buffer.from(buf.subarray(Math.max(0, buf.length - 512)));
    done(null, chunk);
  }

  recorded(): BinlogCoordinates | null {
    return this.position >= 0 ? { file: this.file, position: this.position, gtid: this.gtid } : null;
  }
}

export const ensureDumpLoaded: StepFn<DumpTargetParams> = async (input, signal, env) => {
  const marks = env.seed.marks();
  if (marks[LOADED]) return JSON.parse(marks[LOADED]) as SeedFacts;
  const schemas = replacedSchemas(input.facts);
  let seen = false;
  for (;;) {
    const attempts = Number(env.seed.marks()[STREAM_ATTEMPTS] ?? '0');
    if (attempts > 0) {
      // A stream has no middle to resume from: what was loaded is dropped and the dump loads from the start.
      await dropSchemas(env, schemas, signal);
    }
    const until = peerDeadline(input, env, seen || attempts > 0);
    if (Date.now() >= until) {
      throw new AgentError('unavailable', `no source streamed the dump by ${new Date(until).toISOString()}`, {
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
    if (attempts > 0) env.seed.warn('the dump is loaded again from the beginning (an earlier stream was cut or an agent restarted); what was loaded was dropped');
    // Credentials only through the option file, which must come first; the dump arrives on stdin.
    const loader = await runPiped(
      env.config.SeedLoadProgram,
      [`--defaults-extra-file=${env.config.SeedCredentialsFile}`, '--batch'],
      { timeoutMs: remainingMs(input.deadlines, Number.MAX_SAFE_INTEGER, 'loading'), signal },
      'ignore',
    );
    let loaderEnded = false;
    // The client stopping on a statement of the dump (a missing grant, a full disk) would stop there again:
    // permanent, for this step and for the sender.
    const loaded = loader.done.then(
      (r) => {
        loaderEnded = true;
        return r;
      },
      (e: AgentError) => {
        loaderEnded = true;
        // Not the statement the client echoes before its error: a row of the source's tables has no place in a log or state file.
        const said = typeof e.details?.stderr === 'string' ? `${env.config.SeedLoadProgram} stopped: ${withoutEchoedStatements(e.details.stderr)}` : e.message;
        throw new AgentError('command_failed', `loading the dump into this MySQL failed: ${said}`, {
          hint: 'check the grants of the SeedCredentialsFile account on the target (README: seeds by logical dump) and the MySQL error log, then create a new seed',
          details: { permanent: true },
        });
      },
    );
    loaded.catch(() => undefined);
    const scanner = new DumpPositionScanner();
    scanner.pipe(loader.stdin);
    // A client that stopped reads no more: the stream must not wait on it to drain.
    loaded.catch((e: Error) => scanner.destroy(e));
    try {
      const end = await session.receive(
        scanner,
        async () => {
          await loaded;
        },
        progress(env, session.facts.dataBytes),
        loaded,
      );
      const dumped = scanner.recorded();
      if (input.params.replicate && !dumped) {
        throw new AgentError('conflict', 'the dump recorded no binary log position (no "-- CHANGE MASTER TO" line), so there is no position to replicate from', {
          hint: 'enable log_bin on the source (and check SeedDumpProgram writes --master-data=2 output), then seed again',
          details: { permanent: true },
        });
      }
      const facts: SeedFacts = { backupPosition: dumped, positionAtEnd: end.positionAtEnd };
      env.seed.mark(LOADED, JSON.stringify(facts));
      log.info('dump loaded', { seed: env.seed.id, bytes: end.bytes, position: dumped ? `${dumped.file}:${dumped.position}` : null });
      return facts;
    } catch (err) {
      const ownFailure = loaderEnded ? await loaded.then(() => undefined, (e: unknown) => e as AgentError) : undefined;
      await loader.kill();
      if (ownFailure && !signal.aborted) throw ownFailure;
      const e = asAgentError(err);
      if (signal.aborted || isPermanentFailure(e)) throw e;
      env.seed.warn(`the dump stream was cut (${e.message}); what was loaded is dropped and the dump restarts from the beginning`);
      await sleep(1000, signal);
    }
  }
};

export async function cleanupDumpTarget(input: CleanupInput<DumpTargetParams>, signal: AbortSignal, env: StepEnv): Promise<SeedFacts> {
  await env.killSeedProcesses();
  // The source, offering its stream again, learns at once why this seed ends (as with backup seeds).
  await tellStreamSource(input, env, env.seed.marks()[LOADED] !== undefined);
  const marks = env.seed.marks();
  // Once the drop began and before a load ended well, what is in those schemas is no copy: drop it, so nobody reads it as data.
  if (marks[DROP_STARTED] && !marks[LOADED]) await dropSchemas(env, replacedSchemas(input.facts), signal);
  return {};
}

// ------------------------------------------------------------------ source

export const ensureDumpSourceChecked: StepFn<DumpSourceParams> = async (_input, signal, env) => {
  const opts = { signal, timeoutMs: 30_000 };
  const client = seedClient(env);
  client.options(); // a missing or readable-by-others credentials file fails here, before the target waits on it
  await runProgram(env.config.SeedDumpProgram, ['--version'], opts).catch((err: Error) => {
    throw new AgentError('config', `the dump program ${env.config.SeedDumpProgram} does not run here: ${err.message}`, { hint: 'install mariadb-client (or set SeedDumpProgram)' });
  });
  if (!(await env.mysql.isRunning(signal))) {
    // The target's checks report it and fail the seed there too.
    const source: SourceFacts = { mysqlRunning: false, version: '', dataBytes: 0, logBin: false, gtidMode: false, mysqlHost: '', mysqlPort: 0, schemas: [] };
    return { source };
  }
  const rows = await client.query('SELECT VERSION() AS version, @@log_bin AS log_bin, @@port AS port', opts);
  const r = rows[0] ?? {};
  const version = r.version ?? '';
  // MariaDB always records GTIDs but replicas use them only when asked; MySQL's gtid_mode says it.
  const gtidMode = /mariadb/i.test(version) ? false : ((await client.value('SELECT @@gtid_mode', opts).catch(() => 'OFF')) ?? 'OFF').toUpperCase() === 'ON';
  const schemas = await userSchemas(client, opts);
  const source: SourceFacts = {
    mysqlRunning: true,
    version,
    dataBytes: await schemaBytes(client, schemas, opts),
    logBin: r.log_bin === '1' || r.log_bin?.toUpperCase() === 'ON',
    gtidMode,
    mysqlHost: '',
    mysqlPort: Number(r.port ?? 3306),
    schemas,
  };
  return { source };
};

/** The dump program's arguments: credentials file first, one consistent snapshot, the position recorded as a comment. */
export function dumpArgs(credentialsFile: string, schemas: readonly string[], logBin: boolean): string[] {
  return [
    `--defaults-extra-file=${credentialsFile}`,
    '--single-transaction',
    ...(logBin ? ['--master-data=2'] : []),
    '--routines',
    '--events',
    '--triggers',
    '--add-drop-database',
    '--no-tablespaces',
    '--databases',
    '--', // schema names are never read as options
    ...schemas,
  ];
}

export const ensureDumpStreamed: StepFn<DumpSourceParams> = async (input, signal, env) => {
  const source = input.facts.source as SourceFacts | undefined;
  if (!source) throw new AgentError('internal', 'streaming reached without the source facts');
  // The target goes quiet while it drops the schemas (it answered LATER), or when a stream was cut: it has
  // SeedTransferReconnectTimeoutSeconds from the last contact (or this agent's restart) to answer again.
  let lastContact = env.seed.marks()[STREAM_ATTEMPTS] ? Date.now() : 0;
  let last: unknown;
  for (;;) {
    const connect = input.deadlines.connect ?? Date.now() + env.config.SeedTransferConnectTimeoutSeconds * 1000;
    const until = Math.min(input.deadlines.seed, lastContact ? lastContact + env.config.SeedTransferReconnectTimeoutSeconds * 1000 : connect);
    if (Date.now() >= until) {
      throw new AgentError('unavailable', `the target did not take the dump stream by ${new Date(until).toISOString()}${last ? `; last: ${(last as Error).message}` : ''}`, {
        hint: 'create the target seed first (method "dump") and pass its port and key; check it with GET /api/seeds/:id on the target agent',
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
      await sleep(1000, signal);
      continue;
    }
    if (answer.kind === 'later') {
      if (!lastContact) {
        const until = new Date(Math.min(input.deadlines.seed, Date.now() + env.config.SeedTransferReconnectTimeoutSeconds * 1000)).toISOString();
        env.seed.setWaiting({ for: 'receiver', since: new Date().toISOString(), until, message: `the target is getting ready: ${answer.message}` });
      }
      lastContact = Date.now();
      await sleep(1000, signal);
      continue;
    }
    lastContact = Date.now();
    env.seed.setWaiting(null);
    const attempts = Number(env.seed.marks()[STREAM_ATTEMPTS] ?? '0');
    if (attempts > 0) env.seed.warn('the dump stream restarts from the beginning (an earlier stream was cut or an agent restarted)');
    env.seed.mark(STREAM_ATTEMPTS, String(attempts + 1));
    // The schemas as they are now: one created since the checks comes too (the dump drops and creates each on the target).
    const schemas = await userSchemas(seedClient(env), { signal, timeoutMs: 30_000 });
    const dump = await runPiped(env.config.SeedDumpProgram, dumpArgs(env.config.SeedCredentialsFile, schemas, source.logBin), {
      timeoutMs: remainingMs(input.deadlines, Number.MAX_SAFE_INTEGER, 'streaming'),
      signal,
    });
    try {
      const end = await answer.send(
        dump.stdout,
        async () => {
          await dump.done.catch((e: AgentError) => {
            // The dump program's own failure (privileges, a table gone) would fail again: the target must not wait.
            throw new AgentError(e.code, e.message, { hint: "see the dump program's message; check the grants of the SeedCredentialsFile account (README: seeds by logical dump)", details: { ...e.details, permanent: true } });
          });
          return source.logBin ? sourcePosition(env, source.version, signal) : null;
        },
        (await import('../../transfer/throttle.js')).bandwidthLimiter(env.config.SeedTransferBandwidthMBps),
        progress(env, source.dataBytes),
      );
      log.info('dump streamed', { seed: env.seed.id, bytes: end.bytes });
      return {};
    } catch (err) {
      await dump.kill();
      if (signal.aborted || isPermanentFailure(err)) throw err;
      last = err;
      lastContact = Date.now();
      env.seed.warn(`the dump stream was cut (${(err as Error).message}); the dump restarts from the beginning`);
      await sleep(1000, signal);
    }
  }
};

export async function cleanupDumpSource(input: CleanupInput<DumpSourceParams>, signal: AbortSignal, env: StepEnv): Promise<SeedFacts> {
  await env.killSeedProcesses();
  // The target, waiting for the stream (or a new one after a cut), learns at once why this seed ends.
  await tellStreamTarget(input, signal, env);
  return {};
}
