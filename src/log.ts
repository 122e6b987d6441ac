// One logger for the daemon: lines on stderr, level and format (text or JSON lines) set once from the
// command line. Text: `ISO-time LEVEL message {fields}`; JSON: {"time","level","msg",...fields}.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFormat = 'text' | 'json';
const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
let threshold: LogLevel = (process.env.ORCHESTRATOR_AGENT_LOG_LEVEL as LogLevel) in order
  ? (process.env.ORCHESTRATOR_AGENT_LOG_LEVEL as LogLevel)
  : 'info';
let format: LogFormat = 'text';

export function setLogLevel(level: LogLevel): void {
  threshold = level;
}

export function getLogLevel(): LogLevel {
  return threshold;
}

export function isLogLevel(value: string): value is LogLevel {
  return Object.hasOwn(order, value);
}

export function setLogFormat(next: LogFormat): void {
  format = next;
}

function write(level: LogLevel, message: string, fields?: Record<string, unknown>): void {
  if (order[level] < order[threshold]) return;
  const time = new Date().toISOString();
  if (format === 'json') {
    // The line's own keys win over a field of the same name.
    process.stderr.write(JSON.stringify({ ...fields, time, level, msg: message }) + '\n');
    return;
  }
  const extra = fields && Object.keys(fields).length > 0 ? ' ' + JSON.stringify(fields) : '';
  process.stderr.write(`${time} ${level.toUpperCase()} ${message}${extra}\n`);
}

export const log = {
  debug: (m: string, f?: Record<string, unknown>) => write('debug', m, f),
  info: (m: string, f?: Record<string, unknown>) => write('info', m, f),
  warn: (m: string, f?: Record<string, unknown>) => write('warn', m, f),
  error: (m: string, f?: Record<string, unknown>) => write('error', m, f),
};
