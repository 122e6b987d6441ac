// JSON responses shaped as the original's: a bare value on success, {Code, Message, Details} on error.
import type { Context } from 'koa';
import { asAgentError } from '../errors.js';

export function sendJson(ctx: Context, status: number, value: unknown): void {
  ctx.status = status;
  ctx.type = 'application/json';
  ctx.body = JSON.stringify(value);
}

export function sendOk(ctx: Context, value: unknown): void {
  sendJson(ctx, 200, value);
}

/** The original's APIResponse: {"Code":"OK"|"ERROR","Message":...,"Details":...}. */
export function apiResponse(code: 'OK' | 'ERROR', message: string, details: unknown = null) {
  return { Code: code, Message: message, Details: details };
}

export function sendError(ctx: Context, err: unknown): void {
  const e = asAgentError(err);
  sendJson(ctx, e.httpStatus, apiResponse('ERROR', e.message, { code: e.code, hint: e.hint ?? null, ...e.details }));
}
