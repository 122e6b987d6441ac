import { describe, expect, test } from '@jest/globals';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentError } from '../src/errors.js';
import { runPiped, runProgram, runShell, templateToScript, TAG_ENV } from '../src/process-runner.js';
import { tempDir } from './support/agent-process.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor(cond: () => boolean, what: string, ms = 10000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function rejection(p: Promise<unknown>): Promise<AgentError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(AgentError);
    return err as AgentError;
  }
  throw new Error('expected a rejection');
}

describe('process runner', () => {
  test('runs a program from an argument array and returns its output', async () => {
    const r = await runProgram('printf', ['%s|%s', 'a b', '$HOME'], { timeoutMs: 5000 });
    expect(r.stdout).toBe('a b|$HOME');
    expect(r.exitCode).toBe(0);
  });

  test('a non-zero exit is an error that names the command, the exit code and stderr', async () => {
    const err = await rejection(runProgram('bash', ['-c', 'echo disk full >&2; exit 3'], { timeoutMs: 5000 }));
    expect(err.code).toBe('command_failed');
    expect(err.message).toContain('exited with code 3');
    expect(err.message).toContain('disk full');
  });

  test('a program that does not exist is an error, not a crash', async () => {
    const err = await rejection(runProgram('/nonexistent/program', [], { timeoutMs: 5000 }));
    expect(err.code).toBe('command_failed');
    expect(err.message).toContain('/nonexistent/program');
  });

  test('on timeout the whole process group is killed, grandchildren included', async () => {
    const dir = tempDir();
    const pidFile = join(dir, 'grandchild.pid');
    const err = await rejection(
      runProgram('bash', ['-c', `sleep 1000 & echo $! > ${pidFile}; wait`], { timeoutMs: 500, killGraceMs: 1000 }),
    );
    expect(err.code).toBe('command_timeout');
    const grandchild = Number(readFileSync(pidFile, 'utf8'));
    await waitFor(() => !alive(grandchild), 'grandchild to die');
  });

  test('a group that ignores SIGTERM is killed with SIGKILL after the grace period', async () => {
    const dir = tempDir();
    const pidFile = join(dir, 'stubborn.pid');
    const err = await rejection(
      runProgram('bash', ['-c', `trap '' TERM; (trap '' TERM; sleep 1000) & echo $! > ${pidFile}; wait`], {
        timeoutMs: 300,
        killGraceMs: 300,
      }),
    );
    expect(err.code).toBe('command_timeout');
    const stubborn = Number(readFileSync(pidFile, 'utf8'));
    await waitFor(() => !alive(stubborn), 'stubborn process to be SIGKILLed');
  });

  test('abort kills the whole process group and says it was aborted', async () => {
    const dir = tempDir();
    const pidFile = join(dir, 'grandchild.pid');
    const controller = new AbortController();
    const run = runProgram('bash', ['-c', `sleep 1000 & echo $! > ${pidFile}; wait`], {
      timeoutMs: 60000,
      signal: controller.signal,
      killGraceMs: 1000,
    });
    await waitFor(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '', 'grandchild to start');
    controller.abort();
    const err = await rejection(run);
    expect(err.code).toBe('aborted');
    await waitFor(() => !alive(Number(readFileSync(pidFile, 'utf8'))), 'grandchild to die');
  });

  test('the tag reaches every process of the group through its environment', async () => {
    let pgid = 0;
    const r = await runProgram('bash', ['-c', `tr '\\0' '\\n' < /proc/$$/environ | grep ^${TAG_ENV}=; ps -o pgid= -p $$`], {
      timeoutMs: 5000,
      tag: 'seed:test-1',
      onStart: (p) => (pgid = p),
    });
    const [tagLine, groupLine] = r.stdout.trim().split('\n');
    expect(tagLine).toBe(`${TAG_ENV}=seed:test-1`);
    expect(Number(groupLine.trim())).toBe(pgid);
    expect(pgid).not.toBe(process.pid);
  });

  test('request values reach a configured command as positional parameters, never parsed by the shell', async () => {
    const dir = tempDir();
    const marker = join(dir, 'pwned');
    const hostile = `x; touch ${marker}; $(touch ${marker}) \`touch ${marker}\``;
    const r = await runShell(templateToScript('echo -n %s', 1), [hostile], { timeoutMs: 5000 });
    expect(r.stdout).toBe(hostile);
    expect(existsSync(marker)).toBe(false);
  });

  test('original command templates become scripts with positional parameters', () => {
    expect(templateToScript('mount %s %s %s', 3)).toBe('mount "$1" "$2" "$3"');
    expect(templateToScript('/usr/local/bin/post-copy', 1)).toBe('/usr/local/bin/post-copy "$1"');
    expect(templateToScript('/usr/local/bin/start', 0)).toBe('/usr/local/bin/start');
  });

  test('a piped program\'s output that nobody read yet is kept until its reader comes (the head of a dump)', async () => {
    const p = await runPiped('seq', ['1', '100000'], { timeoutMs: 30000 });
    // The reader comes late, as a step that first awaits something else.
    await new Promise((r) => setTimeout(r, 300));
    let text = '';
    for await (const chunk of p.stdout as AsyncIterable<Buffer>) text += chunk.toString();
    await p.done;
    const lines = text.split('\n').filter(Boolean);
    expect(lines.length).toBe(100000);
    expect(lines[0]).toBe('1');
    expect(lines.at(-1)).toBe('100000');
  });
});
