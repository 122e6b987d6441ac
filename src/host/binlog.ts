// Relay logs and binary logs in the MySQL datadir: the relay log index, end coordinates, raw byte ranges
// (with the binlog header computed from the format-description event), mysqlbinlog text, and applying
// relay log contents through the operator's MySQL client command.
import { createReadStream } from 'node:fs';
import { access, constants, mkdtemp, open, readdir, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, delimiter, dirname, isAbsolute, join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { Config } from '../config.js';
import { AgentError, badRequest } from '../errors.js';
import { runProgram, runShell } from '../process-runner.js';
import { isWithin, pathWithin, relayLogName } from '../validate.js';
import { commandOptions } from './mysql-service.js';

/** JSON shape of orchestrator's inst.BinlogCoordinates; Type is its BinlogType enum (0 binary log, 1 relay log). */
export interface BinlogCoordinates {
  LogFile: string;
  LogPos: number;
  Type: number;
}
export const BinlogType = { BinaryLog: 0, RelayLog: 1 } as const;

const binlogMagic = Buffer.from([0xfe, 0x62, 0x69, 0x6e]);
const eventHeaderBytes = 19;
const formatDescriptionEvent = 15;
/** Decompressed relay log contents larger than this are refused (a gzip bomb must not exhaust memory). */
const maxRelayLogBytes = 2 * 1024 * 1024 * 1024;

/** The relay log index in the datadir (*relay*.index); the newest one when a host rename left several. */
export async function relayLogIndexFile(datadir: string): Promise<string> {
  let names: string[];
  try {
    names = await readdir(datadir);
  } catch (err) {
    throw new AgentError('io', `cannot list datadir ${datadir}: ${(err as Error).message}`);
  }
  const candidates = names.filter((n) => n.includes('relay') && n.endsWith('.index'));
  if (candidates.length === 0) {
    throw new AgentError('not_found', `no relay log index (*relay*.index) in ${datadir}`, {
      hint: 'is this host a replica? relay logs may also live outside the datadir (relay_log_index)',
    });
  }
  const withTimes = await Promise.all(
    candidates.map(async (n) => ({ path: join(datadir, n), mtime: (await stat(join(datadir, n))).mtimeMs })),
  );
  withTimes.sort((a, b) => b.mtime - a.mtime || a.path.localeCompare(b.path));
  return withTimes[0]!.path;
}

/** Relay log files listed in the index; relative entries ("./relay-bin.000002") are joined to the index's directory. */
export async function relayLogFiles(datadir: string): Promise<string[]> {
  const index = await relayLogIndexFile(datadir);
  const text = await readFile(index, 'utf8');
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => (isAbsolute(line) ? line : join(dirname(index), line)));
}

/** The end of the last relay log: its file and size. */
export async function relayLogEndCoordinates(datadir: string): Promise<BinlogCoordinates> {
  const files = await relayLogFiles(datadir);
  const last = files.at(-1);
  if (!last) throw new AgentError('not_found', `the relay log index in ${datadir} lists no relay logs`);
  const { size } = await stat(last);
  return { LogFile: last, LogPos: size, Type: BinlogType.RelayLog };
}

/**
 * A binlog name from a request: a plain file name in the datadir or an absolute path inside it. Symlinks
 * are resolved, and the real file must still be inside the datadir.
 */
export async function resolveBinlogFile(datadir: string, value: unknown): Promise<string> {
  const candidate =
    typeof value === 'string' && isAbsolute(value) ? pathWithin(value, [datadir], 'binlog file') : join(datadir, relayLogName(value));
  let real: string;
  let realDatadir: string;
  try {
    [real, realDatadir] = await Promise.all([realpath(candidate), realpath(datadir)]);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new AgentError(e.code === 'ENOENT' ? 'not_found' : 'io', `cannot open binlog file ${candidate}: ${e.message}`);
  }
  if (!isWithin(realDatadir, real) || real === realDatadir) {
    throw new AgentError('forbidden', `binlog file ${candidate} resolves to ${real}, outside the datadir ${realDatadir}`);
  }
  return real;
}

/** Size of the binlog header: the 4-byte magic plus the format-description event that follows it. */
export async function binlogHeaderSize(file: string): Promise<number> {
  const handle = await open(file, 'r');
  try {
    const head = Buffer.alloc(binlogMagic.length + eventHeaderBytes);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    if (bytesRead < head.length || !head.subarray(0, 4).equals(binlogMagic)) {
      throw new AgentError('bad_request', `${file} is not a binary log (no binlog magic header)`);
    }
    // Event header: timestamp(4) type(1) server_id(4) event_size(4) log_pos(4) flags(2), little-endian.
    const type = head.readUInt8(4 + 4);
    const eventSize = head.readUInt32LE(4 + 9);
    if (type !== formatDescriptionEvent) {
      throw new AgentError('bad_request', `${file} does not start with a format description event (type ${type})`);
    }
    return binlogMagic.length + eventSize;
  } finally {
    await handle.close();
  }
}

async function readRange(file: string, start: number, end: number | undefined): Promise<Buffer> {
  if (end !== undefined && end <= start) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  const stream = createReadStream(file, { start, end: end === undefined ? undefined : end - 1 });
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** gzip then base64, wrapped at 76 columns with a final newline, as `gzip | base64` printed it. */
export function gzipBase64(data: Buffer): string {
  const encoded = gzipSync(data).toString('base64');
  return (encoded.match(/.{1,76}/g) ?? []).join('\n') + '\n';
}

/**
 * Raw bytes of binlog files as one stream: with a start position, the first file's header (magic +
 * format description) and then its bytes from start; later files without their header; the last file
 * cut at stop. The same concatenation the original produced with cat/head/tail.
 */
export async function binlogBinaryContents(files: readonly string[], start: number, stop: number): Promise<Buffer> {
  if (files.length === 0) throw badRequest('no binlog files given', 'pass one or more ?binlog= names');
  const parts: Buffer[] = [];
  if (start !== 0) parts.push(await readRange(files[0]!, 0, await binlogHeaderSize(files[0]!)));
  for (let i = 0; i < files.length; i++) {
    const file = files[i]!;
    const from = i === 0 ? start : await binlogHeaderSize(file);
    const to = i === files.length - 1 && stop !== 0 ? stop : undefined;
    parts.push(await readRange(file, from, to));
  }
  return Buffer.concat(parts);
}

let mysqlbinlogPath: string | undefined;

/** mysqlbinlog, or MariaDB's mariadb-binlog where the mysql-named link is not installed. */
export async function findMysqlbinlog(): Promise<string> {
  if (mysqlbinlogPath) return mysqlbinlogPath;
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(['/usr/bin', '/usr/sbin', '/usr/local/bin']);
  for (const name of ['mysqlbinlog', 'mariadb-binlog']) {
    for (const dir of dirs) {
      if (dir === '') continue;
      try {
        await access(join(dir, name), constants.X_OK);
        mysqlbinlogPath = join(dir, name);
        return mysqlbinlogPath;
      } catch {
        /* next */
      }
    }
  }
  throw new AgentError('unavailable', 'neither mysqlbinlog nor mariadb-binlog is installed', {
    hint: 'install the MySQL or MariaDB client package on this host',
  });
}

/** mysqlbinlog's text for the files (argv, no shell), gzip+base64 as the original returned it. */
export async function binlogTextContents(config: Config, files: readonly string[], start: number, stop: number, signal?: AbortSignal): Promise<string> {
  if (files.length === 0) throw badRequest('no binlog files given', 'pass one or more ?binlog= names');
  const args = [...files];
  if (start !== 0) args.push(`--start-position=${start}`);
  if (stop !== 0) args.push(`--stop-position=${stop}`);
  const { stdout } = await runProgram(await findMysqlbinlog(), args, commandOptions(config, signal));
  return gzipBase64(Buffer.from(stdout, 'utf8'));
}

/** Relay logs from `relaylog` (a name from the index) to the last one, bytes from `start`. */
export async function relayLogContentsTail(datadir: string, relaylog: string, start: number): Promise<string> {
  const files = await relayLogFiles(datadir);
  let at = -1;
  files.forEach((f, i) => {
    if (f === relaylog || basename(f) === relaylog) at = i;
  });
  if (at < 0) {
    throw new AgentError('not_found', `relay log ${relaylog} is not in the relay log index`, {
      hint: `relay logs now: ${files.map((f) => basename(f)).join(', ') || '(none)'}`,
    });
  }
  return gzipBase64(await binlogBinaryContents(files.slice(at), start, 0));
}

/** Decodes what orchestrator posts: base64 of gzip, possibly still wrapped as the JSON string it received. */
export function decodeRelayLogContents(body: string): Buffer {
  let text = body.trim();
  if (text.startsWith('"')) {
    try {
      text = JSON.parse(text) as string;
    } catch {
      throw badRequest('relay log contents look like a JSON string but do not parse');
    }
  }
  if (!/^[A-Za-z0-9+/=\s]*$/.test(text) || text.trim() === '') throw badRequest('relay log contents must be base64 of gzip data');
  try {
    return gunzipSync(Buffer.from(text, 'base64'), { maxOutputLength: maxRelayLogBytes });
  } catch (err) {
    throw badRequest(`relay log contents are not gzip data: ${(err as Error).message}`);
  }
}

/**
 * Writes the binlog bytes to a private temp file and runs `mysqlbinlog FILE | MySQLClientCommand`; the
 * file path is $1 and mysqlbinlog's path $2, never spliced into the script.
 */
export async function applyRelayLogContents(config: Config, binlog: Buffer, signal?: AbortSignal): Promise<void> {
  const client = config.MySQLClientCommand.trim();
  const dir = await mkdtemp(join(tmpdir(), 'orchestrator-agent-apply-relaylog-'));
  try {
    const file = join(dir, 'relaylog.bin');
    await writeFile(file, binlog, { mode: 0o600 });
    if (client === '') return; // the original only decoded when no client command was set
    const script = `set -o pipefail\n"$2" "$1" | ${client}`;
    await runShell(script, [file, await findMysqlbinlog()], commandOptions(config, signal, true));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
