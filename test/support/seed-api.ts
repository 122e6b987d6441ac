// Calls to a real agent's seed API, and polling until a seed reaches a state.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAgentProcess, writeConfig, type AgentProcess } from './agent-process.js';

export interface SeedViewJson {
  id: string;
  role: string;
  method: string;
  state: string;
  paused: boolean;
  status: string;
  accepts: string[];
  params: Record<string, unknown>;
  history: { state: string; enteredAt: string; leftAt: string | null; error: string | null; resumedAt?: string[] }[];
  progress: { bytesDone: number; bytesTotal: number | null; wire?: { compression: string | null; dataBytes: number; wireBytes: number } } | null;
  warnings: { at: string; message: string }[];
  error: { code: string; message: string; hint: string | null } | null;
  transfer: { port: number } | null;
}

export interface SeedAgent {
  agent: AgentProcess;
  token: string;
  stateDir: string;
  call<T = unknown>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: T }>;
  seed(id: string): Promise<SeedViewJson>;
  /** Polls GET /api/seeds/:id until pred holds (or the timeout, with the last view in the error). */
  waitFor(id: string, pred: (v: SeedViewJson) => boolean, what: string, timeoutMs?: number): Promise<SeedViewJson>;
}

/** An agent on StateDir dir/state; env is added to its environment (a PATH with a test's programs first, say). */
export async function startSeedAgent(dir: string, config: Record<string, unknown>, env: Record<string, string> = {}): Promise<SeedAgent> {
  const configFile = writeConfig(dir, { TokenHintFile: join(dir, 'token'), StatusBadSeconds: 3600, ...config });
  const agent = await startAgentProcess(configFile, env);
  const token = readFileSync(join(dir, 'token'), 'utf8');
  const call = async <T>(method: 'GET' | 'POST', path: string, body?: unknown) => {
    const res = await fetch(`${agent.baseUrl}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as T };
  };
  const seed = async (id: string) => {
    const res = await call<SeedViewJson>('GET', `/api/seeds/${id}`);
    if (res.status !== 200) throw new Error(`GET /api/seeds/${id}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  };
  return {
    agent,
    token,
    stateDir: join(dir, 'state'),
    call,
    seed,
    async waitFor(id, pred, what, timeoutMs = 30000) {
      const deadline = Date.now() + timeoutMs;
      let last: SeedViewJson | undefined;
      while (Date.now() < deadline) {
        last = await seed(id).catch(() => undefined);
        if (last && pred(last)) return last;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`seed ${id} did not reach ${what}; last view: ${JSON.stringify(last)}\nagent output:\n${agent.output().split("\n").filter((l) => !l.includes("DEBUG http")).join("\n").slice(-3000)}`);
    },
  };
}
