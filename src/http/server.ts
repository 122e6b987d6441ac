// HTTP or HTTPS (UseSSL), with client certificates required under UseMutualTLS.
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import type Koa from 'koa';
import type { Config } from '../config.js';
import { AgentError } from '../errors.js';

function readTlsFile(key: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new AgentError('config', `cannot read ${key} ${file}: ${(err as Error).message}`);
  }
}

export function createServer(app: Koa, config: Config): Server {
  const handler = app.callback();
  if (!config.UseSSL) return createHttpServer(handler);
  return createHttpsServer(
    {
      key: readTlsFile('SSLPrivateKeyFile', config.SSLPrivateKeyFile),
      cert: readTlsFile('SSLCertFile', config.SSLCertFile),
      ca: config.SSLCAFile ? readTlsFile('SSLCAFile', config.SSLCAFile) : undefined,
      requestCert: config.UseMutualTLS,
      rejectUnauthorized: config.UseMutualTLS,
      minVersion: 'TLSv1.2',
    },
    handler,
  );
}

export async function listen(server: Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new AgentError('config', `cannot listen on ${host || '*'}:${port}: ${err.message}`, {
          hint: err.code === 'EADDRINUSE' ? 'another process holds the port; stop it or change HTTPPort' : undefined,
        }),
      ),
    );
    server.listen(port, host || undefined, () => resolve());
  });
  const address = server.address();
  return typeof address === 'object' && address ? address.port : port;
}
