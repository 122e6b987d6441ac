// The one way this agent runs a process: argv (never a shell string built from input), its own process
// group, a timeout, an optional cancel signal, and on timeout or abort the whole group is killed
// (SIGTERM, then SIGKILL). Errors carry the command, exit code or signal, and the end of stderr.
import { AsyncLocalStorage } from 'node:async_hooks';
import { PassThrough, Readable } from 'node:stream';
import { readdirSync, readFileSync } from 'node:fs';
import type { execa as Execa } from 'execa';
import { AgentError } from './errors.js';
import { log } from './log.js';
import { longTimeout } from './timers.js';

/** The most of a command's stdout (and stderr) the agent keeps; more fails the run. */
export const MAX_OUTPUT_BYTES = 8 * 1024 * 1024;

export interface RunOptions {
  /** Every process has an upper bound. */
  timeoutMs: number;
  /** Aborting kills the process group. */
  signal?: AbortSignal;
  cwd?: string;
  env?: Record<string, string>;
  input?: string;
  /** Wait this long after SIGTERM before SIGKILL (default: killProcessGroup's 5 s). */
  killGraceMs?: number;
  /** Prefix with `sudo -n` (ExecWithSudo, for privileged commands). */
  sudo?: boolean;
  /**
   * Marks the process (and everything it starts) with ORCHESTRATOR_AGENT_TAG=tag in its environment,
   * so a restarted agent can find and reap what its predecessor left running.
   */
  tag?: string;
  /** Called with the pid (= process group id) as soon as the process exists. */
  onStart?: (pgid: number) => void;
}

export interface RunResult {
  command: string;
  exitCode: number;
  stdout: string;
  stderr: string;
}

export const TAG_ENV = 'ORCHESTRATOR_AGENT_TAG';

/**
 * A tag and start hook for every process started inside `fn`, however deep (a seed step calling the
 * MySQL service, which runs the operator's stop command): so a restarted agent can find those too.
 * Explicit RunOptions.tag / onStart take precedence.
 */
export interface ProcessScope {
  tag: string;
  onStart?: (pgid: number) => void;
}
const processScope = new AsyncLocalStorage<ProcessScope>();
export function withProcessScope<T>(scope: ProcessScope, fn: () => Promise<T>): Promise<T> {
  return processScope.run(scope, fn);
}
const stderrTailBytes = 2000;

// execa (about a hundred modules) loads with the first process the agent runs, not at start.
let execaFn: typeof Execa | undefined;
let execaLoading: Promise<typeof Execa> | undefined;
const loadExeca = () => (execaLoading ??= import('execa').then((m) => (execaFn = m.execa)));

/** execa, once loaded; refuses to start `command` if the signal was aborted before or while it loaded. */
async function execaUnlessAborted(command: string, signal: AbortSignal | undefined): Promise<typeof Execa> {
  const execa = execaFn ?? (await loadExeca());
  if (signal?.aborted) throw new AgentError('aborted', `not started, already aborted: ${command}`);
  return execa;
}

function tail(text: string): string {
  const trimmed = text.trim();
  return trimmed.length > stderrTailBytes ? '…' + trimmed.slice(-stderrTailBytes) : trimmed;
}

/**
 * True while the group has a member that is not a zombie. Orphans are reaped by PID 1 only after a
 * while here, and a group of zombies must not be mistaken for one that ignores SIGTERM.
 */
export function processGroupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch {
    return false;
  }
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return true; // no procfs: trust kill(0)
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so parse after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z') return true;
  }
  return false;
}

/** Polls until no member of the group is alive: false if one still is at the deadline. */
async function goneBy(pgid: number, deadline: number): Promise<boolean> {
  while (processGroupAlive(pgid)) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

/** How long the members of a group may take to die after SIGKILL before the agent says so. */
const afterKillMs = 5000;

/**
 * SIGTERM to the group, then SIGKILL after the grace period if any member is left; returns once every
 * member is gone (or has outlived SIGKILL by afterKillMs, which is logged as an error).
 */
export async function killProcessGroup(pgid: number, graceMs = 5000): Promise<void> {
  if (!processGroupAlive(pgid)) return;
  try {
    process.kill(-pgid, 'SIGTERM');
  } catch { // the group ended since the check
    return;
  }
  if (await goneBy(pgid, Date.now() + graceMs)) return;
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch { // the group ended since the last check
    return;
  }
  log.warn('process group ignored SIGTERM, sent SIGKILL', { pgid });
  // SIGKILL takes effect when a member next runs: one in uninterruptible sleep (disk, NFS) dies only after it.
  if (!(await goneBy(pgid, Date.now() + afterKillMs))) log.error('process group still alive after SIGKILL', { pgid, waitedMs: afterKillMs });
}

/** Runs a program with an argument array. Throws AgentError unless it exits 0. */
export async function runProgram(file: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  const result = await runAllowingFailure(file, args, opts);
  if (result.exitCode !== 0) {
    throw new AgentError('command_failed', `${result.command} exited with code ${result.exitCode}${result.stderr ? `: ${tail(result.stderr)}` : ''}`, {
      details: { command: result.command, exitCode: result.exitCode, stderr: tail(result.stderr) },
    });
  }
  return result;
}

/**
 * Runs an operator-configured command through bash. Values from requests are never spliced into the
 * script: they arrive as positional parameters ($1, $2, ...), so the shell never parses them.
 */
export async function runShell(script: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  return runProgram('bash', ['-c', script, 'orchestrator-agent', ...args], opts);
}

/** As runShell, but a non-zero exit is a result, not an error (status commands). */
export async function runShellStatus(script: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  return runAllowingFailure('bash', ['-c', script, 'orchestrator-agent', ...args], opts);
}

/**
 * Turns an original-style command template with %s placeholders into a script that takes the values as
 * positional parameters: "mount %s %s %s" -> 'mount "$1" "$2" "$3"'. Without placeholders the values are
 * appended as arguments, as the original appended them to the command text.
 */
export function templateToScript(template: string, argCount: number): string {
  let n = 0;
  const script = template.replace(/%s/g, () => `"$${++n}"`);
  if (n > 0) return script;
  const appended = Array.from({ length: argCount }, (_, i) => `"$${i + 1}"`).join(' ');
  return appended ? `${template} ${appended}` : template;
}

async function runAllowingFailure(file: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  const env: Record<string, string> = { ...opts.env };
  const scope = processScope.getStore();
  const tag = opts.tag ?? scope?.tag;
  if (tag) env[TAG_ENV] = tag;
  // sudo resets the environment (env_reset): the tag is kept by name, so the reaper finds the command run as
  // root too (sudoers: allowed where the rule's command is ALL, else Defaults env_keep += "ORCHESTRATOR_AGENT_TAG").
  const argv = opts.sudo ? ['-n', ...(tag ? [`--preserve-env=${TAG_ENV}`] : []), file, ...args] : [...args];
  const program = opts.sudo ? 'sudo' : file;
  const command = [program, ...argv].join(' ');
  const onStart = opts.onStart ?? scope?.onStart;
  const execa = await execaUnlessAborted(command, opts.signal);
  const child = execa(program, argv, {
    detached: true, // own process group: we kill the whole group, not just the direct child
    reject: false,
    cwd: opts.cwd,
    env,
    extendEnv: true,
    input: opts.input,
    stdin: opts.input === undefined ? 'ignore' : undefined,
    stripFinalNewline: false,
    // Commands answer with a path, a port, a status: 8 MiB is plenty. (execa escapes what it buffered for its
    // error message; 64 MiB of control bytes made that string too large and crashed the whole agent.)
    maxBuffer: MAX_OUTPUT_BYTES,
    cleanup: false,
  });
  const pgid = child.pid;
  if (pgid !== undefined) onStart?.(pgid);

  let timedOut = false;
  let aborted = false;
  // One kill sequence per run, however many reasons (timeout, abort) ask for it.
  let killing: Promise<void> | undefined;
  const stop = () => {
    if (pgid !== undefined) killing ??= killProcessGroup(pgid, opts.killGraceMs);
  };
  // Any length: a plain setTimeout above 2^31-1 ms would fire at once and kill the command.
  const timer = longTimeout(() => {
    timedOut = true;
    stop();
  }, opts.timeoutMs);
  const onAbort = () => {
    aborted = true;
    stop();
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const result = await child;
    // execa stopped a child that printed too much; what else runs in its group goes too.
    if (result.isMaxBuffer) stop();
    // The direct child is gone; members it left in the group are ours to clean up too.
    if (killing) await killing;
    const stderr = String(result.stderr ?? '');
    if (timedOut) {
      throw new AgentError('command_timeout', `${command} did not finish within ${Math.round(opts.timeoutMs / 1000)}s and was killed`, {
        hint: 'raise CommandTimeoutSeconds if the command is expected to take longer',
        details: { command, stderr: tail(stderr) },
      });
    }
    if (aborted) throw new AgentError('aborted', `${command} was aborted`, { details: { command } });
    if (result.isMaxBuffer) {
      throw new AgentError('command_failed', `${command} printed more than ${MAX_OUTPUT_BYTES / 1024 / 1024} MiB, the most the agent reads of a command's output; its answer was not used`, {
        hint: 'a configured command should print a short answer (a path, a port, a status); run it by hand and fix what it prints',
        details: { command, exitCode: result.exitCode ?? null, stderr: tail(stderr) },
      });
    }
    if (result.failed && result.exitCode === undefined) {
      const why = result.signal ? `was killed by ${result.signal}` : `could not start: ${result.shortMessage ?? result.message}`;
      throw new AgentError('command_failed', `${command} ${why}`, { details: { command, stderr: tail(stderr) } });
    }
    return { command, exitCode: result.exitCode ?? -1, stdout: String(result.stdout ?? ''), stderr };
  } finally {
    timer.clear();
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

/** A running program whose stdin or stdout is a stream the caller feeds or reads (backup streams). */
export interface PipedProcess {
  stdin: NodeJS.WritableStream & import('node:stream').Writable;
  /** Empty when the output was dropped ('ignore'). */
  stdout: import('node:stream').Readable;
  /** Resolves when the program exited 0 (and the rest of its group is gone); rejects otherwise. */
  done: Promise<RunResult>;
  /** Kills the whole group (SIGTERM, then SIGKILL). */
  kill(): Promise<void>;
}

/**
 * As runProgram, but stdin and stdout are pipes the caller uses while it runs (stderr is captured for the
 * error). Same process group, tag, timeout and abort handling.
 */
export async function runPiped(file: string, args: readonly string[], opts: RunOptions, output: 'pipe' | 'ignore' = 'pipe'): Promise<PipedProcess> {
  const command = [file, ...args].join(' ');
  const execa = await execaUnlessAborted(command, opts.signal);
  const env: Record<string, string> = { ...opts.env };
  const scope = processScope.getStore();
  const tag = opts.tag ?? scope?.tag;
  if (tag) env[TAG_ENV] = tag;
  const child = execa(file, [...args], {
    detached: true,
    reject: false,
    cwd: opts.cwd,
    env,
    extendEnv: true,
    stdin: 'pipe',
    // A program fed through stdin (an extractor) has its output dropped, so it can never block on it.
    stdout: output,
    buffer: { stdout: false, stderr: true },
    stripFinalNewline: false,
    maxBuffer: 4 * 1024 * 1024,
    cleanup: false,
  });
  const pgid = child.pid;
  if (pgid !== undefined) (opts.onStart ?? scope?.onStart)?.(pgid);
  let killing: Promise<void> | undefined;
  let why: 'timeout' | 'aborted' | undefined;
  const kill = () => {
    if (pgid !== undefined) killing ??= killProcessGroup(pgid, opts.killGraceMs);
    return killing ?? Promise.resolve();
  };
  const timer = longTimeout(() => {
    why = 'timeout';
    void kill();
  }, opts.timeoutMs);
  const onAbort = () => {
    why ??= 'aborted';
    void kill();
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  child.stdin?.on('error', () => undefined); // a program that exits early: its exit code tells why
  const done = (async () => {
    try {
      const result = await child;
      if (killing) await killing;
      const stderr = String(result.stderr ?? '');
      if (why === 'timeout') throw new AgentError('command_timeout', `${command} did not finish within ${Math.round(opts.timeoutMs / 1000)}s and was killed`, { details: { command, stderr: tail(stderr) } });
      if (why === 'aborted') throw new AgentError('aborted', `${command} was aborted`, { details: { command } });
      if (result.exitCode !== 0) {
        const how = result.exitCode === undefined ? (result.signal ? `was killed by ${result.signal}` : `could not start: ${result.shortMessage ?? ''}`) : `exited with code ${result.exitCode}`;
        throw new AgentError('command_failed', `${command} ${how}${stderr ? `: ${tail(stderr)}` : ''}`, { details: { command, exitCode: result.exitCode ?? -1, stderr: tail(stderr) } });
      }
      return { command, exitCode: 0, stdout: '', stderr };
    } finally {
      timer.clear();
      opts.signal?.removeEventListener('abort', onAbort);
    }
  })();
  done.catch(() => undefined);
  // execa puts an unbuffered stdout in flowing mode a tick later: output nobody reads by then would be lost
  // (the head of a dump). Piped at once into our own stream, it waits for its reader with backpressure.
  const stdout = child.stdout ? child.stdout.pipe(new PassThrough({ highWaterMark: 1024 * 1024 })) : Readable.from([]);
  return { stdin: child.stdin!, stdout, done, kill };
}
