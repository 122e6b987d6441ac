// A target seed that ended before its sender came (failed, or aborted by its operator) keeps answering on
// its transfer port for a while, to datadir senders and stream senders (backup, dump) alike: a sender that proves
// the seed's key gets one ERROR frame with the target's reason, marked permanent, so the source seed ends
// within a second instead of at its connect deadline. A sender without the key learns nothing. A new
// receiver on the same port takes the port back at once.
import type { Server, Socket } from 'node:net';
import { AgentError } from '../errors.js';
import { log } from '../log.js';
import { clampDelay } from '../timers.js';
import { newNonce, proofMatches } from './auth.js';
import { FrameReader, FrameType, FrameWriter, MAGIC, PROTOCOL_VERSION, STREAM_MAGIC, STREAM_VERSION, errorBody } from './protocol.js';
import { transferServer, type TransferTls } from './tls.js';

export interface FarewellOptions {
  port: number;
  bindAddress?: string;
  tls?: TransferTls;
  authKey: string;
  reason: AgentError;
  /** Stop answering then (ms since epoch). */
  untilMs: number;
}

const listening = new Map<number, () => Promise<void>>();

/** Whether a farewell listener of this agent holds the port. */
export function answeringOn(port: number): boolean {
  return listening.has(port);
}

/** Frees a port a farewell listener holds (a new receiver wants it). */
export async function releasePort(port: number | undefined): Promise<void> {
  if (port === undefined || port === 0) return;
  await listening.get(port)?.();
}

/** Starts answering senders on opts.port with the reason; answers false when the port cannot be had. */
export async function tellSenders(opts: FarewellOptions): Promise<boolean> {
  await releasePort(opts.port);
  const server: Server = transferServer(opts.tls);
  const ok = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen({ port: opts.port, host: opts.bindAddress || undefined }, () => resolve(true));
  });
  if (!ok) return false;
  server.unref(); // never what keeps a stopping agent alive
  const body = errorBody(new AgentError(opts.reason.code, opts.reason.message, { hint: opts.reason.hint, details: { permanent: true } }));
  const sockets = new Set<Socket>();
  server.on(opts.tls ? 'secureConnection' : 'connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    void answer(socket, opts.authKey, body);
  });
  server.on('tlsClientError', () => undefined);
  const close = () =>
    new Promise<void>((resolve) => {
      if (listening.get(opts.port) !== close) return resolve();
      listening.delete(opts.port);
      clearTimeout(timer);
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  const timer = setTimeout(() => void close(), clampDelay(Math.max(0, opts.untilMs - Date.now())));
  timer.unref();
  listening.set(opts.port, close);
  log.info('transfer: answering senders on the port with why this receiver ended', { port: opts.port, until: new Date(opts.untilMs).toISOString() });
  return true;
}

async function answer(socket: Socket, authKey: string, body: ReturnType<typeof errorBody>): Promise<void> {
  const reader = new FrameReader(socket);
  const writer = new FrameWriter(socket);
  socket.on('error', () => undefined);
  const timer = setTimeout(() => socket.destroy(), 15_000);
  try {
    // A datadir sender (snapshot seeds) or a stream's sender (backup, dump seeds): the same handshake frames, each its
    // own magic and version.
    const head = await reader.exact(STREAM_MAGIC.length);
    let version = STREAM_VERSION;
    if (!head.equals(STREAM_MAGIC)) {
      const magic = Buffer.concat([head, await reader.exact(MAGIC.length - STREAM_MAGIC.length)]);
      if (!magic.equals(MAGIC)) return;
      version = PROTOCOL_VERSION;
    }
    const nonce = newNonce();
    await writer.json(FrameType.hello, { version, nonce });
    const auth = await reader.json([FrameType.auth], 'during the handshake');
    const mac = (auth.body as { mac?: unknown }).mac;
    if (!proofMatches(authKey, 'sender', nonce, mac)) {
      await writer.json(FrameType.error, errorBody(new AgentError('unauthorized', 'wrong transfer key')));
      return;
    }
    // The sender reads a plain ERROR in place of WELCOME (as for a refused key): it ends with our reason.
    await writer.json(FrameType.error, body);
    log.info('transfer: told a sender why this receiver ended', { peer: `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}` });
  } catch {
    /* a sender that went away or spoke nonsense: nothing to tell it */
  } finally {
    clearTimeout(timer);
    socket.end();
  }
}
