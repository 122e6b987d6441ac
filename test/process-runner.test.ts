import { describe, expect, test } from '@jest/globals';
import { spawn, spawnSync } from 'node:child_process';
import { getEventListeners } from 'node:events';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentError } from '../src/errors.js';
import { killProcessGroup, processGroupAlive, runPiped, runProgram, runShell, runShellStatus, templateToScript, TAG_ENV, withProcessScope } from '../src/process-runner.js';
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

/** Lines the agent logs (text format, on stderr) while fn runs. */
async function logged<T>(fn: () => Promise<T>): Promise<[T, string[]]> {
  const lines: string[] = [];
  const realWrite = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array) => {
    lines.push(...String(chunk).split('\n').filter(Boolean));
    return true;
  }) as typeof process.stderr.write;
  try {
    return [await fn(), lines];
  } finally {
    process.stderr.write = realWrite;
  }
}

/** The process runner module as compiled next to this test: loaded afresh by a separate node process. */
const runnerModule = new URL('../src/process-runner.js', import.meta.url).pathname;

/**
 * Runs an ES module script in a node process of its own (a fresh process runner: execa not loaded yet),
 * optionally in a mount namespace where /proc cannot be read, and returns what it printed as JSON.
 */
function inFreshNode(script: string, opts: { withoutProcfs?: boolean } = {}): unknown {
  const code = `const runner = await import(${JSON.stringify(runnerModule)});\n${script}`;
  const r = opts.withoutProcfs
    ? // A tmpfs with mode 000 over /proc, and root without the capabilities that bypass file modes.
      spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs -o mode=000 none /proc && exec setpriv --bounding-set -dac_override,-dac_read_search "$0" --input-type=module -e "$1"', process.execPath, code], { encoding: 'utf8', timeout: 50_000 })
    : spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 50_000 });
  if (r.status !== 0) throw new Error(`node script failed (${r.status ?? r.signal}): ${r.stderr}`);
  return JSON.parse(r.stdout);
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
    let pgid = 0;
    const err = await rejection(
      runProgram('bash', ['-c', `sleep 1000 & echo $! > ${pidFile}; wait`], { timeoutMs: 500, killGraceMs: 1000, onStart: (p) => (pgid = p) }),
    );
    expect(err.code).toBe('command_timeout');
    // The run ends only once the whole group is gone.
    expect(processGroupAlive(pgid)).toBe(false);
    const grandchild = Number(readFileSync(pidFile, 'utf8'));
    await waitFor(() => !alive(grandchild), 'grandchild to die');
  });

  test('a group that ignores SIGTERM is killed with SIGKILL after the grace period', async () => {
    const dir = tempDir();
    const pidFile = join(dir, 'stubborn.pid');
    let pgid = 0;
    const [err, lines] = await logged(() =>
      rejection(
        runProgram('bash', ['-c', `trap '' TERM; (trap '' TERM; sleep 1000) & echo $! > ${pidFile}; wait`], {
          timeoutMs: 300,
          killGraceMs: 300,
          onStart: (p) => (pgid = p),
        }),
      ),
    );
    expect(err.code).toBe('command_timeout');
    const stubborn = Number(readFileSync(pidFile, 'utf8'));
    await waitFor(() => !alive(stubborn), 'stubborn process to be SIGKILLed');
    // The operator learns that a command needed SIGKILL, and which group.
    expect(lines.filter((l) => l.includes(' process group ')).map((l) => l.replace(/^\S+ /, ''))).toEqual([`WARN process group ignored SIGTERM, sent SIGKILL {"pgid":${pgid}}`]);
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
    const command = `bash -c sleep 1000 & echo $! > ${pidFile}; wait`;
    expect([err.code, err.message, err.details]).toEqual(['aborted', `${command} was aborted`, { command }]);
    await waitFor(() => !alive(Number(readFileSync(pidFile, 'utf8'))), 'grandchild to die');
  });

  test('the tag reaches every process of the group through its environment', async () => {
    let pgid = 0;
    // The variable's name is part of the contract: the sudoers line (env_keep) and a restarted agent's reaper name it.
    const r = await runProgram('bash', ['-c', `tr '\\0' '\\n' < /proc/$$/environ | grep ^ORCHESTRATOR_AGENT_TAG=; ps -o pgid= -p $$`], {
      timeoutMs: 5000,
      tag: 'seed:test-1',
      onStart: (p) => (pgid = p),
    });
    const [tagLine, groupLine] = r.stdout.trim().split('\n');
    expect(tagLine).toBe('ORCHESTRATOR_AGENT_TAG=seed:test-1');
    expect(Number(groupLine.trim())).toBe(pgid);
    expect(pgid).not.toBe(process.pid);
  });

  test('under ExecWithSudo the tag reaches the command sudo runs, though sudo resets the environment', async () => {
    // A stand-in sudo (none is installed here) that does what env_reset does: the command gets a fresh
    // environment holding only the variables named by --preserve-env.
    const shims = join(tempDir(), 'bin');
    mkdirSync(shims);
    writeFileSync(
      join(shims, 'sudo'),
      `#!/bin/bash
keep=()
while [ $# -gt 0 ]; do
  case "$1" in
    -n) shift ;;
    --preserve-env=*) IFS=, read -ra names <<< "\${1#--preserve-env=}"; for n in "\${names[@]}"; do [ -n "\${!n+x}" ] && keep+=("$n=\${!n}"); done; shift ;;
    -*) echo "stand-in sudo: unknown option $1" >&2; exit 1 ;;
    *) break ;;
  esac
done
exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "\${keep[@]}" "$@"
`,
    );
    chmodSync(join(shims, 'sudo'), 0o755);
    const env = { PATH: `${shims}:${process.env.PATH}`, OTHER_VARIABLE: 'dropped by sudo' };
    const script = `echo "tag=$${TAG_ENV} other=$OTHER_VARIABLE"; bash -c 'tr "\\0" "\\n" < /proc/$$/environ | grep ^${TAG_ENV}='`;
    const tagged = await runProgram('bash', ['-c', script], { timeoutMs: 5000, sudo: true, tag: 'seed:abc:one', env });
    expect(tagged.stdout).toBe(`tag=seed:abc:one other=\n${TAG_ENV}=seed:abc:one\n`);
    const shell = await runShell(`echo "tag=$${TAG_ENV}"`, [], { timeoutMs: 5000, sudo: true, tag: 'seed:abc:two', env });
    expect(shell.stdout).toBe('tag=seed:abc:two\n');
    // Untagged commands (routes outside a seed) run as before: sudo -n FILE ARGS.
    const untagged = await runProgram('bash', ['-c', `echo "tag=$${TAG_ENV}"`], { timeoutMs: 5000, sudo: true, env });
    expect(untagged.stdout).toBe('tag=\n');
    expect(untagged.command).toBe(`sudo -n bash -c echo "tag=$${TAG_ENV}"`);
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

  test('a template without placeholders gets each value appended as an argument of its own', async () => {
    expect(templateToScript('/usr/local/bin/post-copy', 2)).toBe('/usr/local/bin/post-copy "$1" "$2"');
    expect((await runShell(templateToScript('echo', 2), ['a  b', 'c'], { timeoutMs: 5000 })).stdout).toBe('a  b c\n');
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

describe('what a run gives back', () => {
  test('output as printed (final newline kept), stdin closed unless input is given, cwd and env applied', async () => {
    const dir = tempDir();
    const r = await runProgram('bash', ['-c', 'echo out; echo err >&2'], { timeoutMs: 5000 });
    expect(r).toEqual({ command: 'bash -c echo out; echo err >&2', exitCode: 0, stdout: 'out\n', stderr: 'err\n' });
    // No input: stdin is closed, so a program reading it ends at once.
    expect((await runProgram('cat', [], { timeoutMs: 5000 })).stdout).toBe('');
    expect((await runProgram('cat', [], { timeoutMs: 5000, input: 'from stdin' })).stdout).toBe('from stdin');
    expect((await runProgram('pwd', [], { timeoutMs: 5000, cwd: dir })).stdout).toBe(`${dir}\n`);
    const env = await runProgram('bash', ['-c', 'echo "$OA_TEST_VAR:$PATH"'], { timeoutMs: 5000, env: { OA_TEST_VAR: 'set' } });
    expect(env.stdout).toBe(`set:${process.env.PATH}\n`);
  });

  test('a configured command gets its values as $1.. and the agent as $0; a status command may fail', async () => {
    expect((await runShell('echo "$0|$1|$2"', ['a b', '$c'], { timeoutMs: 5000 })).stdout).toBe('orchestrator-agent|a b|$c\n');
    const status = await runShellStatus('echo "$1" >&2; exit 3', ['stopped'], { timeoutMs: 5000 });
    expect(status).toEqual({ command: 'bash -c echo "$1" >&2; exit 3 orchestrator-agent stopped', exitCode: 3, stdout: '', stderr: 'stopped\n' });
  });

  test('a failure names the command, the exit code or signal, and the end of a long stderr', async () => {
    const quiet = await rejection(runProgram('bash', ['-c', 'exit 4'], { timeoutMs: 5000 }));
    expect([quiet.code, quiet.message, quiet.details]).toEqual(['command_failed', 'bash -c exit 4 exited with code 4', { command: 'bash -c exit 4', exitCode: 4, stderr: '' }]);
    const long = await rejection(runProgram('bash', ['-c', 'head -c 3000 /dev/zero | tr "\\0" a >&2; printf "%02000d" 0 | tr 0 b >&2; echo " " >&2; exit 1'], { timeoutMs: 5000 }));
    expect(long.message).toBe(`bash -c head -c 3000 /dev/zero | tr "\\0" a >&2; printf "%02000d" 0 | tr 0 b >&2; echo " " >&2; exit 1 exited with code 1: …${'b'.repeat(2000)}`);
    expect(long.details!.stderr).toBe(`…${'b'.repeat(2000)}`);
    const killed = await rejection(runProgram('bash', ['-c', 'kill -9 $$'], { timeoutMs: 5000 }));
    expect([killed.code, killed.message]).toEqual(['command_failed', 'bash -c kill -9 $$ was killed by SIGKILL']);
    const missing = await rejection(runProgram('/nonexistent/program', ['x'], { timeoutMs: 5000 }));
    expect([missing.code, missing.message, missing.details]).toEqual([
      'command_failed',
      '/nonexistent/program x could not start: Command failed with ENOENT: /nonexistent/program x\nspawn /nonexistent/program ENOENT',
      { command: '/nonexistent/program x', stderr: '' },
    ]);
  });

  test('a stderr of exactly the tail\'s length is shown whole, without an ellipsis', async () => {
    const err = await rejection(runProgram('bash', ['-c', 'printf "%02000d" 0 | tr 0 c >&2; exit 1'], { timeoutMs: 5000 }));
    expect(err.details!.stderr).toBe('c'.repeat(2000));
    expect(err.message.endsWith(`exited with code 1: ${'c'.repeat(2000)}`)).toBe(true);
  });

  test('a finished run leaves no listener on a long-lived abort signal (a seed\'s, shared by all its commands)', async () => {
    const controller = new AbortController();
    await runProgram('true', [], { timeoutMs: 5000, signal: controller.signal });
    await rejection(runProgram('false', [], { timeoutMs: 5000, signal: controller.signal }));
    await runShellStatus('exit 3', [], { timeoutMs: 5000, signal: controller.signal });
    const piped = await runPiped('true', [], { timeoutMs: 5000, signal: controller.signal });
    await piped.done;
    const failed = await runPiped('false', [], { timeoutMs: 5000, signal: controller.signal });
    await rejection(failed.done);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  test('an abort that comes while the runner first loads execa runs nothing', () => {
    // A fresh node process: the first runs wait for execa to load, and the signals are aborted meanwhile.
    const dir = tempDir();
    const [one, two] = [join(dir, 'one'), join(dir, 'two')];
    const outcome = inFreshNode(`
      const { existsSync } = await import('node:fs');
      const outcome = (p) => p.then(() => 'ran', (e) => [e.code, e.message]);
      const c1 = new AbortController();
      const c2 = new AbortController();
      const program = outcome(runner.runProgram('touch', [${JSON.stringify(one)}], { timeoutMs: 5000, signal: c1.signal }));
      const piped = outcome(runner.runPiped('touch', [${JSON.stringify(two)}], { timeoutMs: 5000, signal: c2.signal }).then((p) => p.done));
      const other = runner.runPiped('printf', ['x'], { timeoutMs: 5000 }).then(async (p) => {
        let out = '';
        for await (const chunk of p.stdout) out += chunk;
        await p.done;
        return out;
      }, (e) => String(e));
      c1.abort();
      c2.abort();
      console.log(JSON.stringify({ program: await program, piped: await piped, other: await other, ran: [existsSync(${JSON.stringify(one)}), existsSync(${JSON.stringify(two)})] }));
    `);
    expect(outcome).toEqual({
      program: ['aborted', `not started, already aborted: touch ${one}`],
      piped: ['aborted', `not started, already aborted: touch ${two}`],
      other: 'x',
      ran: [false, false],
    });
  });

  test('a command that prints more than 8 MiB fails with what to do, its group killed, and the agent lives (control bytes too)', async () => {
    // Beyond execa's buffer, 64 MiB of control bytes once crashed the process building the error message.
    const dir = tempDir();
    const marker = join(dir, 'group-member-alive');
    const err = await rejection(
      runProgram('bash', ['-c', `(sleep 31.7; touch ${marker}) >/dev/null 2>&1 & head -c 70M /dev/zero | tr '\\0' '\\001'; exit 3`], { timeoutMs: 60_000, killGraceMs: 1000 }),
    );
    expect([err.code, err.message, err.hint]).toEqual([
      'command_failed',
      expect.stringMatching(/printed more than 8 MiB, the most the agent reads of a command's output; its answer was not used$/),
      expect.stringContaining('should print a short answer'),
    ]);
    // Exit 0 with too much output is no answer either: never a silently cut one.
    const big = await rejection(runProgram('bash', ['-c', 'head -c 20M /dev/zero | tr "\\0" a'], { timeoutMs: 60_000 }));
    expect(big.message).toContain('printed more than 8 MiB');
    // The background member of the first command's group was killed with it.
    expect(spawnSync('pgrep', ['-f', 'sleep 31.7']).stdout.toString()).toBe('');
    expect(existsSync(marker)).toBe(false);
  });

  test('a timeout says how long it allowed and what to do; an abort before the start runs nothing', async () => {
    const err = await rejection(runProgram('bash', ['-c', 'echo partial >&2; exec sleep 600'], { timeoutMs: 600, killGraceMs: 1000 }));
    expect([err.code, err.message, err.hint, err.details]).toEqual([
      'command_timeout',
      'bash -c echo partial >&2; exec sleep 600 did not finish within 1s and was killed',
      'raise CommandTimeoutSeconds if the command is expected to take longer',
      { command: 'bash -c echo partial >&2; exec sleep 600', stderr: 'partial' },
    ]);
    const dir = tempDir();
    const controller = new AbortController();
    controller.abort();
    const marker = join(dir, 'ran');
    const early = await rejection(runProgram('touch', [marker], { timeoutMs: 5000, signal: controller.signal }));
    expect([early.code, early.message]).toEqual(['aborted', `not started, already aborted: touch ${marker}`]);
    const piped = await rejection(runPiped('touch', [marker], { timeoutMs: 5000, signal: controller.signal }));
    expect([piped.code, piped.message]).toEqual(['aborted', `not started, already aborted: touch ${marker}`]);
    expect(existsSync(marker)).toBe(false);
  });

  test('a scope tags and reports every process started inside it; explicit options win', async () => {
    const seen: number[] = [];
    const tagOf = `tr '\\0' '\\n' < /proc/$$/environ | grep ^${TAG_ENV}= || echo untagged`;
    const [scoped, explicit, outside] = await withProcessScope({ tag: 'seed:scope-1', onStart: (p) => seen.push(p) }, async () => [
      await runProgram('bash', ['-c', `${tagOf}; echo $$`], { timeoutMs: 5000 }),
      await runProgram('bash', ['-c', tagOf], { timeoutMs: 5000, tag: 'seed:own' }),
    ]).then(async (r) => [...r, await runProgram('bash', ['-c', tagOf], { timeoutMs: 5000 })]);
    const [tagLine, pid] = scoped!.stdout.trim().split('\n');
    expect(tagLine).toBe(`${TAG_ENV}=seed:scope-1`);
    expect(explicit!.stdout).toBe(`${TAG_ENV}=seed:own\n`);
    expect(outside!.stdout).toBe('untagged\n');
    expect(seen).toHaveLength(2);
    expect(seen[0]).toBe(Number(pid));
    // Piped processes too.
    const piped = await withProcessScope({ tag: 'seed:scope-2', onStart: (p) => seen.push(p) }, () => runPiped('bash', ['-c', tagOf], { timeoutMs: 5000 }));
    piped.stdin.end();
    const out: Buffer[] = [];
    for await (const chunk of piped.stdout) out.push(chunk as Buffer);
    await piped.done;
    expect(Buffer.concat(out).toString()).toBe(`${TAG_ENV}=seed:scope-2\n`);
    expect(seen).toHaveLength(3);
  });

  test('with sudo the program runs as "sudo -n program args" (a stand-in sudo records its arguments)', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'sudo'), `#!/bin/sh\nprintf '%s\\n' "$@" > ${join(dir, 'sudo.args')}\nshift\nexec "$@"\n`, { mode: 0o755 });
    const env = { PATH: `${dir}:${process.env.PATH}` };
    const r = await runProgram('printf', ['%s', 'a b'], { timeoutMs: 5000, sudo: true, env });
    expect([r.command, r.stdout]).toEqual(['sudo -n printf %s a b', 'a b']);
    expect(readFileSync(join(dir, 'sudo.args'), 'utf8')).toBe('-n\nprintf\n%s\na b\n');
    const plain = await runProgram('printf', ['%s', 'x'], { timeoutMs: 5000, env });
    expect(plain.command).toBe('printf %s x');
  });
});

describe('process groups', () => {
  test('a group whose only member is a zombie is gone: nothing to kill', async () => {
    // setsid puts "sleep 0" in a group of its own; its parent then becomes "sleep 600", which never reaps it.
    const parent = spawn('bash', ['-c', 'setsid sleep 0 & echo $!; exec sleep 600'], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const first = await new Promise<string>((r) => parent.stdout!.once('data', (d: Buffer) => r(d.toString())));
      const pgid = Number(first.trim());
      await waitFor(() => {
        try {
          return readFileSync(`/proc/${pgid}/stat`, 'utf8').split(') ')[1]!.startsWith('Z');
        } catch {
          return false;
        }
      }, 'the zombie');
      expect(processGroupAlive(pgid)).toBe(false);
      expect(processGroupAlive(parent.pid!)).toBe(true);
      await killProcessGroup(pgid, 60_000); // returns at once: nothing alive in it
      expect(readFileSync(`/proc/${pgid}/stat`, 'utf8')).toMatch(/\) Z /);
    } finally {
      process.kill(-parent.pid!, 'SIGKILL');
    }
  });

  test('a group whose members end on SIGTERM gets no SIGKILL, even when one is left a zombie', async () => {
    // "setsid sleep 600" is a group of its own whose parent, "sleep 1000", never reaps it once it ends.
    const parent = spawn('bash', ['-c', 'setsid sleep 600 & echo $!; exec sleep 1000'], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const pgid = Number((await new Promise<Buffer>((r) => parent.stdout!.once('data', r))).toString().trim());
      await waitFor(() => processGroupAlive(pgid), 'the group');
      const [, lines] = await logged(() => killProcessGroup(pgid, 60_000));
      expect(readFileSync(`/proc/${pgid}/stat`, 'utf8')).toMatch(/\) Z /);
      expect(lines.filter((l) => l.includes(' process group '))).toEqual([]);
    } finally {
      process.kill(-parent.pid!, 'SIGKILL');
    }
  });

  test('killing a group ends every member; a group that is gone is left alone', async () => {
    const child = spawn('bash', ['-c', 'sleep 600 & sleep 600 & wait'], { detached: true, stdio: 'ignore' });
    const pgid = child.pid!;
    await waitFor(() => processGroupAlive(pgid), 'the group');
    await killProcessGroup(pgid, 2000);
    await waitFor(() => !processGroupAlive(pgid), 'the group to be gone');
    await killProcessGroup(pgid, 2000);
    expect(processGroupAlive(pgid)).toBe(false);
  });

  test('a group whose leader has exited is alive while a member runs, and killing it ends that member', async () => {
    const leader = spawn('bash', ['-c', 'sleep 600 >/dev/null 2>&1 & echo $!'], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
    const pgid = leader.pid!;
    try {
      const member = Number((await new Promise<Buffer>((r) => leader.stdout!.once('data', r))).toString().trim());
      await new Promise((r) => (leader.exitCode !== null ? r(null) : leader.once('exit', r)));
      expect(alive(pgid)).toBe(false); // the leader is gone (and reaped)
      expect(processGroupAlive(pgid)).toBe(true);
      await killProcessGroup(pgid, 60_000);
      expect(processGroupAlive(pgid)).toBe(false);
      await waitFor(() => !alive(member) || readFileSync(`/proc/${member}/stat`, 'utf8').includes(') Z '), 'the member to die');
    } finally {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        /* gone, as it should be */
      }
    }
  });

  test('a group that stops on SIGTERM is given its grace period to finish and is never sent SIGKILL', async () => {
    const marker = join(tempDir(), 'cleaned');
    const child = spawn('bash', ['-c', `trap 'sleep 0.3; echo cleaned > ${marker}; exit 0' TERM; sleep 600 >/dev/null & echo ready; wait`], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
    const ended = new Promise<[number | null, string | null]>((r) => child.once('exit', (code, signal) => r([code, signal])));
    try {
      await new Promise((r) => child.stdout!.once('data', r));
      // Returns once the group is gone, long before the grace period ends.
      const [, lines] = await logged(() => killProcessGroup(child.pid!, 60_000));
      expect(lines.filter((l) => l.includes(' process group '))).toEqual([]);
      expect(processGroupAlive(child.pid!)).toBe(false);
      expect(await ended).toEqual([0, null]);
      expect(readFileSync(marker, 'utf8')).toBe('cleaned\n');
    } finally {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone, as it should be */
      }
    }
  }, 20_000);

  test('a run ends only once the members its program left in the group are gone, even those that ignore SIGTERM', async () => {
    const dir = tempDir();
    const pidFile = join(dir, 'member.pid');
    let pgid = 0;
    const controller = new AbortController();
    // The member holds none of the program's pipes: the program's own end does not wait for it.
    const run = runProgram('bash', ['-c', `(trap '' TERM; echo $BASHPID > ${pidFile}; exec sleep 600 </dev/null >/dev/null 2>&1) & wait`], {
      timeoutMs: 60_000,
      killGraceMs: 300,
      signal: controller.signal,
      onStart: (p) => (pgid = p),
    });
    await waitFor(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').endsWith('\n'), 'the member to start');
    const [err, lines] = await logged(() => {
      controller.abort();
      return rejection(run);
    });
    expect(err.code).toBe('aborted');
    expect(processGroupAlive(pgid)).toBe(false);
    // SIGKILL was needed, and the member died of it (it was waited for, not given up on).
    expect(lines.filter((l) => l.includes(' process group ')).map((l) => l.replace(/^\S+ /, ''))).toEqual([`WARN process group ignored SIGTERM, sent SIGKILL {"pgid":${pgid}}`]);
  });

  test('without a readable /proc, kill(0) on the group decides whether it is alive', () => {
    const outcome = inFreshNode(
      `
      const { spawn } = await import('node:child_process');
      const { readdirSync } = await import('node:fs');
      let procfs = true;
      try { readdirSync('/proc'); } catch { procfs = false; }
      const child = spawn('sleep', ['600'], { detached: true, stdio: 'ignore' });
      const ended = new Promise((r) => child.once('exit', (code, signal) => r(signal)));
      await new Promise((r) => child.once('spawn', r));
      const alive = runner.processGroupAlive(child.pid);
      await runner.killProcessGroup(child.pid, 2000);
      try { process.kill(-child.pid, 'SIGKILL'); } catch {}
      const signal = await ended;
      console.log(JSON.stringify({ procfs, alive, signal, after: runner.processGroupAlive(child.pid) }));
    `,
      { withoutProcfs: true },
    );
    expect(outcome).toEqual({ procfs: false, alive: true, signal: 'SIGTERM', after: false });
  });
});

describe('piped processes (backup streams)', () => {
  async function collect(stream: NodeJS.ReadableStream): Promise<string> {
    const out: Buffer[] = [];
    for await (const chunk of stream) out.push(chunk as Buffer);
    return Buffer.concat(out).toString();
  }

  test('stdin and stdout are streams; done resolves once the program exited 0', async () => {
    let pgid = 0;
    const p = await runPiped('tr', ['a-z', 'A-Z'], { timeoutMs: 5000, onStart: (g) => (pgid = g) });
    p.stdin.end('backup stream');
    expect(await collect(p.stdout)).toBe('BACKUP STREAM');
    expect(await p.done).toEqual({ command: 'tr a-z A-Z', exitCode: 0, stdout: '', stderr: '' });
    expect(pgid).toBeGreaterThan(1);
    // Output dropped: nothing to read, nothing to block on.
    const dropped = await runPiped('bash', ['-c', 'cat; head -c 1000000 /dev/zero'], { timeoutMs: 5000, cwd: tempDir(), env: { X: '1' } }, 'ignore');
    dropped.stdin.end('x');
    expect(await collect(dropped.stdout)).toBe('');
    expect((await dropped.done).exitCode).toBe(0);
    const dir = tempDir();
    const placed = await runPiped('bash', ['-c', 'echo "$OA_TEST_VAR $PWD"'], { timeoutMs: 5000, cwd: dir, env: { OA_TEST_VAR: 'set' } });
    placed.stdin.end();
    expect(await collect(placed.stdout)).toBe(`set ${dir}\n`);
    await placed.done;
    // What it wrote on stderr comes back as printed, as from runProgram.
    const noted = await runPiped('bash', ['-c', 'echo note >&2'], { timeoutMs: 5000 }, 'ignore');
    noted.stdin.end();
    expect(await noted.done).toEqual({ command: 'bash -c echo note >&2', exitCode: 0, stdout: '', stderr: 'note\n' });
  });

  test('a piped stream of any size flows through: its output is not held in memory', async () => {
    const p = await runPiped('head', ['-c', String(32 << 20), '/dev/zero'], { timeoutMs: 30_000 });
    p.stdin.end();
    let bytes = 0;
    for await (const chunk of p.stdout) bytes += (chunk as Buffer).length;
    expect(bytes).toBe(32 << 20);
    expect((await p.done).exitCode).toBe(0);
  });

  test('kill() and done end only once the whole group is gone, a member that ignores SIGTERM included', async () => {
    for (const how of ['kill', 'abort'] as const) {
      const pidFile = join(tempDir(), 'member.pid');
      let pgid = 0;
      const controller = new AbortController();
      const p = await runPiped('bash', ['-c', `(trap '' TERM; echo $BASHPID > ${pidFile}; exec sleep 600 </dev/null >/dev/null 2>&1) & wait`], {
        timeoutMs: 60_000,
        killGraceMs: 300,
        signal: controller.signal,
        onStart: (g) => (pgid = g),
      });
      await waitFor(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').endsWith('\n'), 'the member to start');
      const [, lines] = await logged(async () => {
        if (how === 'kill') {
          await p.kill();
          expect(processGroupAlive(pgid)).toBe(false);
          await rejection(p.done);
        } else {
          controller.abort();
          expect((await rejection(p.done)).code).toBe('aborted');
          expect(processGroupAlive(pgid)).toBe(false);
        }
      });
      expect(lines.filter((l) => l.includes(' process group ')).map((l) => l.replace(/^\S+ /, ''))).toEqual([`WARN process group ignored SIGTERM, sent SIGKILL {"pgid":${pgid}}`]);
    }
  });

  test('a program that cannot start ends done with why, and is never reported as started', async () => {
    let started = false;
    const missing = await runPiped('/nonexistent/extractor', ['-x'], { timeoutMs: 5000, onStart: () => (started = true) });
    const err = await rejection(missing.done);
    expect([err.code, err.message, err.details]).toEqual([
      'command_failed',
      '/nonexistent/extractor -x could not start: Command failed with ENOENT: /nonexistent/extractor -x\nspawn /nonexistent/extractor ENOENT',
      { command: '/nonexistent/extractor -x', exitCode: -1, stderr: '' },
    ]);
    expect(started).toBe(false);
    let startedToo = false;
    await rejection(runProgram('/nonexistent/program', [], { timeoutMs: 5000, onStart: () => (startedToo = true) }));
    expect(startedToo).toBe(false);
  });

  test('an explicit tag marks a piped process', async () => {
    const p = await runPiped('bash', ['-c', `tr '\\0' '\\n' < /proc/$$/environ | grep ^${TAG_ENV}=`], { timeoutMs: 5000, tag: 'seed:piped-1' });
    p.stdin.end();
    expect(await collect(p.stdout)).toBe(`${TAG_ENV}=seed:piped-1\n`);
    await p.done;
  });

  test('a failure, a timeout, an abort and a kill each end done with what happened', async () => {
    const failing = await runPiped('bash', ['-c', 'cat >/dev/null; echo "bad input" >&2; exit 4'], { timeoutMs: 5000 });
    failing.stdin.end('x');
    const failed = await rejection(failing.done);
    expect([failed.code, failed.message, failed.details]).toEqual(['command_failed', 'bash -c cat >/dev/null; echo "bad input" >&2; exit 4 exited with code 4: bad input', { command: 'bash -c cat >/dev/null; echo "bad input" >&2; exit 4', exitCode: 4, stderr: 'bad input' }]);

    let pgid = 0;
    const slow = await runPiped('bash', ['-c', 'echo started >&2; sleep 600 & wait'], { timeoutMs: 300, killGraceMs: 1000, onStart: (p) => (pgid = p) });
    const timedOut = await rejection(slow.done);
    expect(processGroupAlive(pgid)).toBe(false);
    expect([timedOut.code, timedOut.message, timedOut.details]).toEqual(['command_timeout', 'bash -c echo started >&2; sleep 600 & wait did not finish within 0s and was killed', { command: 'bash -c echo started >&2; sleep 600 & wait', stderr: 'started' }]);

    const controller = new AbortController();
    const aborting = await runPiped('sleep', ['600'], { timeoutMs: 60_000, signal: controller.signal, killGraceMs: 1000 });
    controller.abort();
    const aborted = await rejection(aborting.done);
    expect([aborted.code, aborted.message, aborted.details]).toEqual(['aborted', 'sleep 600 was aborted', { command: 'sleep 600' }]);

    const killing = await runPiped('sleep', ['600'], { timeoutMs: 60_000, killGraceMs: 1000 });
    await killing.kill();
    await killing.kill(); // once is enough; again is harmless
    const killed = await rejection(killing.done);
    expect([killed.code, killed.message, killed.details]).toEqual(['command_failed', 'sleep 600 was killed by SIGTERM', { command: 'sleep 600', exitCode: -1, stderr: '' }]);
  });
});
