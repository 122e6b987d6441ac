// The last lines of the MySQL error log, read from the end of the file in chunks (no tail process, and
// never the whole file in memory). An operator's own MySQLTailErrorLogCommand still wins when set.
import { open, readFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import type { Config } from '../config.js';
import { defaultConfig } from '../config.js';
import { AgentError } from '../errors.js';
import { log } from '../log.js';
import { runShell } from '../process-runner.js';
import { commandOptions } from './mysql-service.js';

export const errorLogTailLines = 20;
const chunkBytes = 64 * 1024;
/** Lines longer than this are cut: a tail is for reading, not for shipping megabytes. */
const maxTailBytes = 1024 * 1024;

/** Splits command output the way the original did: trim newlines at both ends, split on "\n". */
export function outputLines(text: string): string[] {
  const trimmed = text.replace(/^\n+|\n+$/g, '');
  return trimmed === '' ? [] : trimmed.split('\n');
}

/** The last `count` lines of a file, reading backwards in chunks. */
export async function tailFile(path: string, count = errorLogTailLines): Promise<string[]> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new AgentError(e.code === 'ENOENT' ? 'not_found' : 'io', `cannot open MySQL error log ${path}: ${e.message}`, {
      hint: 'set MySQLErrorLogFile to the file log_error points to',
    });
  }
  try {
    const { size } = await handle.stat();
    const chunks: Buffer[] = [];
    let position = size;
    let newlines = 0;
    let read = 0;
    // count+1 newlines guarantee `count` whole lines even when the file ends with "\n".
    while (position > 0 && newlines <= count && read < maxTailBytes) {
      const length = Math.min(chunkBytes, position);
      position -= length;
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buffer, 0, length, position);
      const chunk = buffer.subarray(0, bytesRead);
      for (const byte of chunk) if (byte === 0x0a) newlines++;
      chunks.unshift(chunk);
      read += bytesRead;
    }
    return outputLines(Buffer.concat(chunks).toString('utf8')).slice(-count);
  } finally {
    await handle.close();
  }
}

/** The log-error (or log_error) value in a my.cnf, as the original's default command extracted it. */
export async function errorLogFromMyCnf(myCnf: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(myCnf, 'utf8');
  } catch {
    return undefined;
  }
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#') || line.startsWith(';')) continue;
    const m = /^log[-_]error\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    const value = m[1]!.replace(/\s+#.*$/, '').trim().replace(/^(["'])(.*)\1$/, '$2');
    if (value !== '') return value;
  }
  return undefined;
}

/** The error log's last 20 lines, from MySQLTailErrorLogCommand when customised, else from the file. */
export async function mysqlErrorLogTail(config: Config, opts: { myCnf?: string; signal?: AbortSignal } = {}): Promise<string[]> {
  const command = config.MySQLTailErrorLogCommand.trim();
  if (command !== '' && command !== defaultConfig().MySQLTailErrorLogCommand) {
    const { stdout } = await runShell(command, [], commandOptions(config, opts.signal, true));
    return outputLines(stdout);
  }
  const myCnf = opts.myCnf ?? '/etc/my.cnf';
  const configured = config.MySQLErrorLogFile.trim();
  const file = configured || (await errorLogFromMyCnf(myCnf));
  const source = configured ? 'MySQLErrorLogFile' : myCnf;
  if (!file) {
    // The original's default command then ran `tail -n 20` on empty input and answered [""]: so do we.
    log.warn(`mysql-error-log-tail answers [""] (as the original): MySQLErrorLogFile is empty and ${myCnf} has no log-error`, {
      hint: 'set MySQLErrorLogFile to the path of the MySQL error log (SELECT @@log_error)',
    });
    return [''];
  }
  if (!isAbsolute(file)) {
    throw new AgentError('config', `MySQL error log path "${file}" (from ${source}) is relative`, {
      hint: 'set MySQLErrorLogFile to the absolute path of the MySQL error log (SELECT @@log_error)',
    });
  }
  return tailFile(file);
}
