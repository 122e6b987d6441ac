// A stand-in for orchestrator's agents port (go/http/agents_api.go): GET /api/submit-agent/:host/:port/:token
// answers the hostname, GET /api/agent-ping answers "OK". Records every call; can answer 500, or be closed and
// reopened on the same port to play an orchestrator that goes down and comes back. Real TCP on 127.0.0.1.
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';

export interface OrchestratorCall {
  kind: 'submit' | 'ping' | 'other';
  path: string;
  host?: string;
  port?: number;
  token?: string;
  /** OU of the client certificate, when the fake asks for one. */
  clientOU?: string[];
  at: number;
}

export interface FakeOrchestratorOptions {
  tls?: { key: Buffer; cert: Buffer; ca?: Buffer; requestCert?: boolean };
  /** Reopen on this port (after close) or use a chosen free port. */
  port?: number;
}

export class FakeOrchestrator {
  readonly calls: OrchestratorCall[] = [];
  /** 'ok', 'fail' (HTTP 500) or 'apiError' (HTTP 200 with {"Code":"ERROR"}, as orchestrator on a DB error). */
  mode: 'ok' | 'fail' | 'apiError' = 'ok';
  port = 0;
  private server?: Server;

  constructor(private readonly options: FakeOrchestratorOptions = {}) {}

  get scheme(): 'http' | 'https' {
    return this.options.tls ? 'https' : 'http';
  }

  /** Config keys that point an agent here. */
  agentConfig(): { AgentsServer: string; AgentsServerPort: string } {
    return { AgentsServer: `${this.scheme}://127.0.0.1`, AgentsServerPort: `:${this.port}` };
  }

  submits(): OrchestratorCall[] {
    return this.calls.filter((c) => c.kind === 'submit');
  }

  pings(): OrchestratorCall[] {
    return this.calls.filter((c) => c.kind === 'ping');
  }

  async start(): Promise<this> {
    const handler = (req: IncomingMessage, res: ServerResponse) => this.handle(req, res);
    const tls = this.options.tls;
    const server = tls
      ? createHttpsServer({ key: tls.key, cert: tls.cert, ca: tls.ca, requestCert: tls.requestCert ?? false, rejectUnauthorized: false }, handler)
      : createHttpServer(handler);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port || this.options.port || 0, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    this.port = typeof address === 'object' && address ? address.port : 0;
    this.server = server;
    return this;
  }

  /** Closes the listener and every open connection: the agent sees connection refused. */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const submit = /^\/api\/submit-agent\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    const socket = req.socket as TLSSocket;
    const peer = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate() : undefined;
    const ou = peer?.subject?.OU;
    const call: OrchestratorCall = {
      kind: submit ? 'submit' : url.pathname === '/api/agent-ping' ? 'ping' : 'other',
      path: url.pathname,
      at: Date.now(),
      ...(submit ? { host: decodeURIComponent(submit[1]), port: Number(submit[2]), token: submit[3] } : {}),
      ...(ou ? { clientOU: Array.isArray(ou) ? ou : [ou] } : {}),
    };
    this.calls.push(call);
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (call.kind === 'other') return send(404, { Code: 'ERROR', Message: `no route ${url.pathname}` });
    if (this.mode === 'fail') return send(500, { Code: 'ERROR', Message: 'fake orchestrator told to fail' });
    if (this.mode === 'apiError') return send(200, { Code: 'ERROR', Message: 'Error 1045: Access denied for user orchestrator' });
    send(200, call.kind === 'submit' ? call.host : 'OK');
  }
}

/** Waits until `check` returns a truthy value; the timeout is generous because it is not what is tested. */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 30_000, everyMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
