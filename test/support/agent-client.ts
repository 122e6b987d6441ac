// A small client for tests: calls a running agent with its token, returns status and parsed JSON.
import { readFileSync } from 'node:fs';

export interface Reply {
  status: number;
  body: unknown;
}

export class AgentClient {
  constructor(
    readonly baseUrl: string,
    readonly token: string,
  ) {}

  static fromHintFile(baseUrl: string, tokenHintFile: string): AgentClient {
    return new AgentClient(baseUrl, readFileSync(tokenHintFile, 'utf8').trim());
  }

  /** GET with ?token= as orchestrator sends it. */
  async get(path: string): Promise<Reply> {
    const sep = path.includes('?') ? '&' : '?';
    const res = await fetch(`${this.baseUrl}${path}${sep}token=${encodeURIComponent(this.token)}`);
    return { status: res.status, body: await res.json() };
  }

  /** POST with the token in the Authorization header. */
  async post(path: string, body?: string): Promise<Reply> {
    const res = await fetch(`${this.baseUrl}${path}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${this.token}`, 'Content-Type': 'text/plain' },
      body,
    });
    return { status: res.status, body: await res.json() };
  }
}

export function errorMessage(reply: Reply): string {
  return (reply.body as { Message?: string }).Message ?? '';
}
