// Errors are values with a code: what was tried, what happened and, where we know it, what to do.
export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'config'
  | 'command_failed'
  | 'command_timeout'
  | 'aborted'
  | 'io'
  | 'state_corrupt'
  | 'snapshot_invalid'
  | 'unavailable'
  | 'internal';

const httpStatusOf: Record<ErrorCode, number> = {
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  config: 500,
  command_failed: 500,
  command_timeout: 504,
  aborted: 409,
  io: 500,
  state_corrupt: 500,
  snapshot_invalid: 409,
  unavailable: 503,
  internal: 500,
};

export class AgentError extends Error {
  readonly code: ErrorCode;
  readonly hint?: string;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, opts: { hint?: string; details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'AgentError';
    this.code = code;
    this.hint = opts.hint;
    this.details = opts.details;
  }

  get httpStatus(): number {
    return httpStatusOf[this.code];
  }

  /** One line for logs and persisted seed state: message, then the fix when we know it. */
  describe(): string {
    return this.hint ? `${this.message} (${this.hint})` : this.message;
  }
}

export function badRequest(message: string, hint?: string): AgentError {
  return new AgentError('bad_request', message, { hint });
}

export function asAgentError(err: unknown): AgentError {
  if (err instanceof AgentError) return err;
  if (err instanceof Error) return new AgentError('internal', err.message, { cause: err });
  return new AgentError('internal', String(err));
}

export function describeError(err: unknown): string {
  return asAgentError(err).describe();
}
