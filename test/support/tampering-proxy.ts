// A man in the middle for transfer tests: a real TCP proxy on 127.0.0.1 that forwards to a receiver and
// rewrites byte patterns (same length, so frame lengths stay valid) in what the sender sends.
import { connect, createServer, type Socket } from 'node:net';

export interface TamperingProxy {
  port: number;
  /** How many times a pattern was rewritten. */
  hits(): number;
  close(): Promise<void>;
}

export async function startTamperingProxy(targetPort: number, rules: Array<[string | Buffer, string | Buffer]>): Promise<TamperingProxy> {
  const pairs = rules.map(([from, to]) => [Buffer.from(from), Buffer.from(to)] as const);
  for (const [from, to] of pairs) if (from.length !== to.length) throw new Error('a rewrite must keep the length');
  const keep = Math.max(...pairs.map(([from]) => from.length)) - 1;
  let hits = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect({ host: '127.0.0.1', port: targetPort });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    upstream.pipe(client);
    // Sender to receiver: hold back the last few bytes (a pattern may continue in the next chunk) until more
    // comes or the line goes quiet.
    let pending = Buffer.alloc(0);
    let timer: NodeJS.Timeout | undefined;
    const forward = (upTo: number) => {
      if (upTo <= 0) return;
      upstream.write(pending.subarray(0, upTo));
      pending = pending.subarray(upTo);
    };
    client.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      for (const [from, to] of pairs) {
        for (let at = pending.indexOf(from); at >= 0; at = pending.indexOf(from, at + to.length)) {
          to.copy(pending, at);
          hits++;
        }
      }
      forward(pending.length - keep);
      clearTimeout(timer);
      timer = setTimeout(() => forward(pending.length), 30);
    });
    client.on('end', () => {
      clearTimeout(timer);
      forward(pending.length);
      upstream.end();
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  const port = await new Promise<number>((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : 0);
    });
  });
  return {
    port,
    hits: () => hits,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
