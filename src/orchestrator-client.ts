// The agent's calls to orchestrator's agents port: submit-agent and agent-ping (orchestrator go/http/agents_api.go).
// Orchestrator's agents port has no basic auth; TLS follows the agent's SSL* keys as the original's buildTLS did.
import { readFileSync } from 'node:fs';
import { Agent as HttpsAgent } from 'node:https';
import type { FetchError } from 'node-fetch';
import type { Config } from './config.js';
import { AgentError } from './errors.js';
import { clampDelay } from './timers.js';

export interface OrchestratorClientOptions {
  /** AgentsServer + AgentsServerPort, concatenated as the original does ("http://orch" + ":3001"). */
  baseUrl: string;
  /** HttpTimeoutSeconds in ms; covers connect, TLS and the whole response. */
  timeoutMs: number;
  /** Only for https URLs. */
  tls: {
    rejectUnauthorized: boolean;
    ca?: Buffer;
    cert?: Buffer;
    key?: Buffer;
  };
}

/** A timeout of 0 or less would let a silent orchestrator stall registration forever; use the key's default. */
const defaultTimeoutSeconds = 10;

function readTlsFile(key: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new AgentError('config', `cannot read ${key} ${file} for calls to orchestrator: ${(err as Error).message}`, {
      hint: `fix ${key} or the file's permissions`,
    });
  }
}

export function orchestratorClientOptions(config: Config): OrchestratorClientOptions {
  const seconds = config.HttpTimeoutSeconds > 0 ? config.HttpTimeoutSeconds : defaultTimeoutSeconds;
  const withClientCert = config.UseMutualTLS && config.SSLCertFile !== '' && config.SSLPrivateKeyFile !== '';
  return {
    baseUrl: `${config.AgentsServer}${config.AgentsServerPort}`,
    timeoutMs: seconds * 1000,
    tls: {
      rejectUnauthorized: !config.SSLSkipVerify,
      ca: config.SSLCAFile ? readTlsFile('SSLCAFile', config.SSLCAFile) : undefined,
      cert: withClientCert ? readTlsFile('SSLCertFile', config.SSLCertFile) : undefined,
      key: withClientCert ? readTlsFile('SSLPrivateKeyFile', config.SSLPrivateKeyFile) : undefined,
    },
  };
}

/** The token is a credential: never in logs or error messages. */
function redact(url: string, token: string): string {
  return token ? url.split(token).join('<token>') : url;
}

/** Which TLS failures mean "orchestrator's certificate is not trusted". */
const certificateErrors = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

export class OrchestratorClient {
  private readonly httpsAgent: HttpsAgent;

  constructor(private readonly options: OrchestratorClientOptions) {
    // keepAlive off: one short call per interval, and a restarted orchestrator must not meet a stale socket.
    this.httpsAgent = new HttpsAgent({ keepAlive: false, ...options.tls });
  }

  submitAgentUrl(hostname: string, httpPort: number, token: string): string {
    return `${this.options.baseUrl}/api/submit-agent/${hostname}/${httpPort}/${token}`;
  }

  pingUrl(): string {
    return `${this.options.baseUrl}/api/agent-ping`;
  }

  /** Registers this agent; orchestrator answers with the hostname it stored. */
  async submitAgent(hostname: string, httpPort: number, token: string, signal?: AbortSignal): Promise<string> {
    const body = await this.get(this.submitAgentUrl(hostname, httpPort, token), token, signal);
    return typeof body === 'string' ? body : hostname;
  }

  async ping(signal?: AbortSignal): Promise<void> {
    await this.get(this.pingUrl(), '', signal);
  }

  private async get(url: string, token: string, cancel?: AbortSignal): Promise<unknown> {
    const shown = redact(url, token);
    const timeout = AbortSignal.timeout(clampDelay(this.options.timeoutMs));
    const signal = cancel ? AbortSignal.any([timeout, cancel]) : timeout;
    let text: string;
    let status: number;
    try {
      // node-fetch loads with the first call, after the API already listens.
      const { default: fetch } = await import('node-fetch');
      const res = await fetch(url, {
        signal,
        agent: (parsed: URL) => (parsed.protocol === 'https:' ? this.httpsAgent : undefined),
        headers: { Accept: 'application/json' },
      });
      status = res.status;
      text = await res.text();
    } catch (err) {
      throw this.transportError(shown, err, timeout.aborted, cancel?.aborted ?? false);
    }
    if (status < 200 || status > 299) {
      throw new AgentError('unavailable', `GET ${shown} answered HTTP ${status}: ${text.slice(0, 200)}`, {
        hint: 'check orchestrator is up and serves agents on AgentsServer/AgentsServerPort',
        details: { url: shown, status },
      });
    }
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // orchestrator answers JSON; a plain body is kept as text
    }
    // Orchestrator reports a failed submit-agent as HTTP 200 with {"Code":"ERROR","Message":...}.
    if (body !== null && typeof body === 'object' && (body as { Code?: unknown }).Code === 'ERROR') {
      const message = String((body as { Message?: unknown }).Message ?? '');
      throw new AgentError('unavailable', `GET ${shown} answered an error: ${message}`, {
        hint: "see orchestrator's log; its backend database may be unreachable",
        details: { url: shown, status },
      });
    }
    return body;
  }

  private transportError(shown: string, err: unknown, timedOut: boolean, cancelled: boolean): AgentError {
    if (cancelled) return new AgentError('aborted', `GET ${shown} was cancelled`);
    if (timedOut) {
      return new AgentError('unavailable', `GET ${shown} timed out after ${this.options.timeoutMs / 1000}s`, {
        hint: 'orchestrator did not answer in HttpTimeoutSeconds; check it is up and reachable',
        details: { url: shown },
      });
    }
    const code = (err as FetchError).code ?? (err as { cause?: { code?: string } }).cause?.code;
    const reason = err instanceof Error ? err.message.replace(/^request to \S+ failed, reason: /, '') : String(err);
    const hint =
      code && certificateErrors.has(code)
        ? "orchestrator's TLS certificate is not trusted: set SSLCAFile to the CA that signed it (or SSLSkipVerify true)"
        : 'check AgentsServer/AgentsServerPort and that orchestrator is up';
    return new AgentError('unavailable', `GET ${shown} failed: ${reason}${code && !reason.includes(code) ? ` [${code}]` : ''}`, {
      hint,
      details: { url: shown, ...(code ? { errorCode: code } : {}) },
      cause: err,
    });
  }
}
