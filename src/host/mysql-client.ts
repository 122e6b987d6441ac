// The agent's own SQL connections, through the operator's MySQL client (MySQLClientCommand) and an option
// file (SeedCredentialsFile / ReplicationCredentialsFile): credentials reach the client only through
// --defaults-extra-file, and statements (which may carry a password) only through stdin, never argv.
import { readFileSync, statSync } from 'node:fs';
import { AgentError } from '../errors.js';
import { runProgram } from '../process-runner.js';

export interface ClientOptions {
  user?: string;
  password?: string;
  host?: string;
  port?: number;
  socket?: string;
}

/** Reads the [client] section of a MySQL option file, refusing a file others may read. */
export function readOptionFile(key: string, file: string): ClientOptions {
  if (!file) throw new AgentError('config', `${key} is not configured`, { hint: `set ${key} to an option file with a [client] section (user, password, socket or host/port), mode 0600` });
  let text: string;
  try {
    const st = statSync(file);
    if ((st.mode & 0o077) !== 0) {
      throw new AgentError('config', `${key} ${file} is readable by others (mode ${(st.mode & 0o777).toString(8)})`, { hint: `chmod 600 ${file}` });
    }
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof AgentError) throw err;
    throw new AgentError('config', `cannot read ${key} ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { hint: `create ${file} (mode 0600, owned by the agent's user)` });
  }
  const out: ClientOptions = {};
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = s[1]!.trim().toLowerCase();
      continue;
    }
    if (section !== 'client') continue;
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const name = line.slice(0, eq).trim().replace(/_/g, '-');
    let value = line.slice(eq + 1).trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.endsWith(value[0]!)) value = value.slice(1, -1);
    if (name === 'user') out.user = value;
    else if (name === 'password') out.password = value;
    else if (name === 'host') out.host = value;
    else if (name === 'port' && /^\d+$/.test(value)) out.port = Number(value);
    else if (name === 'socket') out.socket = value;
  }
  if (!out.user) throw new AgentError('config', `${key} ${file} has no user in its [client] section`, { hint: 'add user=... and password=... under [client]' });
  return out;
}

/** A SQL string literal (MySQL/MariaDB escaping). */
export function sqlString(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\0/g, '\\0').replace(/\n/g, '\\n').replace(/\r/g, '\\r')}'`;
}

export type Row = Record<string, string | null>;

export interface QueryOptions {
  signal?: AbortSignal;
  timeoutMs: number;
  /** Connect here over TCP instead of what the option file says (the replication account to the source). */
  host?: string;
  port?: number;
}

/** One account's client: runs statements, returns the last result set as rows keyed by column name. */
export class MySQLClient {
  constructor(
    private readonly program: string,
    /** Config key naming the file, for messages. */
    private readonly key: string,
    private readonly file: string,
  ) {}

  /** Checks the file now (so a missing or world-readable file fails a pre-seed check, not a later step). */
  options(): ClientOptions {
    return readOptionFile(this.key, this.file);
  }

  async query(sql: string, opts: QueryOptions): Promise<Row[]> {
    this.options();
    const args = [`--defaults-extra-file=${this.file}`, '--batch', '--raw'];
    if (opts.host) args.push(`--host=${opts.host}`, `--port=${opts.port ?? 3306}`, '--protocol=TCP');
    let stdout: string;
    try {
      ({ stdout } = await runProgram(this.program, args, { input: sql, signal: opts.signal, timeoutMs: opts.timeoutMs }));
    } catch (err) {
      const e = err as AgentError;
      const stderr = withoutEchoedStatements(typeof e.details?.stderr === 'string' ? e.details.stderr : e.message);
      const where = opts.host ? `${opts.host}:${opts.port ?? 3306}` : 'the local MySQL';
      throw new AgentError(e.code === 'aborted' ? 'aborted' : 'command_failed', `${this.program} with ${this.key} on ${where} failed: ${stderr.trim()}`, {
        hint: e.code === 'aborted' ? undefined : `check the account in ${this.key} and its grants, and that MySQL answers on ${where}`,
        details: { serverError: stderr.trim() },
      });
    }
    return parseBatch(stdout);
  }

  async value(sql: string, opts: QueryOptions): Promise<string | null> {
    const rows = await this.query(sql, opts);
    const first = rows[0];
    return first ? (Object.values(first)[0] ?? null) : null;
  }
}

/**
 * The client's stderr without the statements it echoes before an error (MariaDB's client prints the failing
 * statement between lines of 14 dashes when it reads stdin): a failed CHANGE MASTER would otherwise put the
 * replication password into the error, and from there into the state file, the log and the API answer.
 */
export function withoutEchoedStatements(stderr: string): string {
  const text = stderr.replace(/^-{14}\n[\s\S]*?\n-{14}\n+/gm, '');
  if (!/^-{14}$/m.test(text)) return text.trim();
  // A block cut short (the tail of a long output): keep only the server's error lines.
  const errors = text.split('\n').filter((l) => /^ERROR \d+/.test(l));
  return errors.length > 0 ? errors.join('\n') : "(the client's message echoed a statement and was left out)";
}

/** --batch output: a header line, then tab-separated rows; NULL is the text NULL. Keeps the last result set. */
export function parseBatch(stdout: string): Row[] {
  const lines = stdout.split('\n').filter((l) => l !== '');
  if (lines.length === 0) return [];
  const header = lines[0]!.split('\t');
  return lines.slice(1).map((line) => {
    const cells = line.split('\t');
    const row: Row = {};
    header.forEach((h, i) => (row[h] = cells[i] === 'NULL' ? null : (cells[i] ?? null)));
    return row;
  });
}
