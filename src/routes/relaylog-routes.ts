// Relay log and binary log routes: index file, files, end coordinates, contents (text and raw), and
// applying relay log contents that orchestrator posts.
import type { Context, Next } from 'koa';
import type { Routes } from '../http/routes.js';
import type { AgentServices } from '../services.js';
import { AgentError, badRequest } from '../errors.js';
import { requestToken } from '../http/middleware.js';
import { sendOk } from '../http/respond.js';
import { tokensEqual } from '../token.js';
import * as validate from '../validate.js';
import {
  applyRelayLogContents,
  binlogBinaryContents,
  binlogTextContents,
  decodeRelayLogContents,
  gzipBase64,
  relayLogContentsTail,
  relayLogEndCoordinates,
  relayLogFiles,
  relayLogIndexFile,
  resolveBinlogFile,
} from '../host/binlog.js';

/** Upper bound for a posted relay log body (base64 text). */
const maxApplyBodyBytes = 512 * 1024 * 1024;

async function readBody(ctx: Context, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new AgentError('bad_request', `request body larger than ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function queryList(value: string | string[] | undefined): string[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

function position(ctx: Context, name: 'start' | 'stop'): number {
  const value = ctx.query[name];
  if (value === undefined || value === '') return 0;
  return validate.nonNegativeInt(`${name} position`, value);
}

export function registerRelayLogRoutes(routes: Routes, services: AgentServices): void {
  const { config, mysql } = services;

  routes.read('/api/mysql-relay-log-index-file', async () => relayLogIndexFile(await mysql.datadir()));
  routes.read('/api/mysql-relay-log-files', async () => relayLogFiles(await mysql.datadir()));
  routes.read('/api/mysql-relay-log-end-coordinates', async () => relayLogEndCoordinates(await mysql.datadir()));

  const requestedBinlogs = async (ctx: Context): Promise<string[]> => {
    const names = queryList(ctx.query.binlog);
    if (names.length === 0) throw badRequest('no binlog files given', 'pass one or more ?binlog= names from the datadir');
    const dir = await mysql.datadir();
    return Promise.all(names.map((name) => resolveBinlogFile(dir, name)));
  };

  routes.read('/api/mysql-binlog-contents', async (ctx) => {
    const start = position(ctx, 'start');
    const stop = position(ctx, 'stop');
    return binlogTextContents(config, await requestedBinlogs(ctx), start, stop);
  });

  routes.read('/api/mysql-binlog-binary-contents', async (ctx) => {
    const start = position(ctx, 'start');
    const stop = position(ctx, 'stop');
    return gzipBase64(await binlogBinaryContents(await requestedBinlogs(ctx), start, stop));
  });

  routes.read('/api/mysql-relaylog-contents-tail/:relaylog/:start', async (ctx) => {
    const relaylog = validate.relayLogName(ctx.params.relaylog);
    const start = validate.nonNegativeInt('start position', ctx.params.start);
    return relayLogContentsTail(await mysql.datadir(), relaylog, start);
  });

  // Orchestrator posts with ?token= in the URL (executeAgentPostCommand), so this POST keeps the query token.
  const compatibleTokenCheck = async (ctx: Context, next: Next) => {
    if (!tokensEqual(services.token, requestToken(ctx, config.TokenHttpHeader, true))) {
      throw new AgentError('unauthorized', 'Invalid token');
    }
    await next();
  };
  routes.router.post('/api/apply-relaylog-contents', compatibleTokenCheck, async (ctx: Context) => {
    const binlog = decodeRelayLogContents(await readBody(ctx, maxApplyBodyBytes));
    await applyRelayLogContents(config, binlog);
    sendOk(ctx, 'OK');
  });
}
