// Starts the real agent (dist/src/main.js) as a child process on a temp config, on an ephemeral port.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const repoRoot = resolve(new URL('.', import.meta.url).pathname, '../../..');
export const mainJs = join(repoRoot, 'dist/src/main.js');

export interface AgentProcess {
  child: ChildProcess;
  port: number;
  baseUrl: string;
  configFile: string;
  output(): string;
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>;
  /** SIGKILL: the crash a durable seed must survive. */
  kill9(): Promise<void>;
}

export function tempDir(prefix = 'oa-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function writeConfig(dir: string, config: Record<string, unknown>): string {
  const file = join(dir, 'agent.conf.json');
  writeFileSync(
    file,
    JSON.stringify({ AgentsServer: 'http://127.0.0.1', AgentsServerPort: ':1', HTTPPort: 0, HTTPBindAddress: '127.0.0.1', StateDir: join(dir, 'state'), ...config }, null, 2),
  );
  return file;
}

export async function startAgentProcess(configFile: string, extraEnv: Record<string, string> = {}): Promise<AgentProcess> {
  const child = spawn(process.execPath, [mainJs, '--config', configFile, '--debug'], {
    env: { ...process.env, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const port = await new Promise<number>((resolvePort, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent did not start:\n${out}`)), 20000);
    const check = () => {
      const m = /orchestrator-agent listening .*"port":(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolvePort(Number(m[1]));
      }
    };
    child.stderr!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`agent exited with ${code}:\n${out}`));
    });
  });
  const end = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return {
    child,
    port,
    baseUrl: `http://127.0.0.1:${port}`,
    configFile,
    output: () => out,
    stop: () => end('SIGTERM'),
    kill9: () => end('SIGKILL'),
  };
}

/** Runs the agent to completion (for start-up failures): exit code and output. */
export async function runAgentExpectingExit(args: string[], cwd = repoRoot): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [mainJs, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  return { code, output: out };
}
