// TLS on the data channel, with the same certificate files as the API (SSLCertFile, SSLPrivateKeyFile,
// SSLCAFile). With a CA, each side verifies the other's certificate against it.
import { readFileSync } from 'node:fs';
import { connect as tcpConnect, createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import type { Config } from '../config.js';
import { AgentError } from '../errors.js';

export interface TransferTls {
  key: Buffer | string;
  cert: Buffer | string;
  /** When set, the peer must present a certificate signed by it (both directions). */
  ca?: Buffer | string;
  /** Sender only: skip checking that the receiver's certificate names the host we dialled (SSLSkipVerify). */
  skipHostnameCheck?: boolean;
}

function readTlsFile(key: string, file: string): Buffer {
  if (!file) throw new AgentError('config', `SeedTransferUseSSL is on but ${key} is empty`, { hint: `set ${key} in the config file` });
  try {
    return readFileSync(file);
  } catch (err) {
    throw new AgentError('config', `cannot read ${key} ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/** The transfer's TLS settings from the agent config, or undefined when SeedTransferUseSSL is off. */
export function transferTlsFromConfig(config: Config): TransferTls | undefined {
  if (!config.SeedTransferUseSSL) return undefined;
  return {
    key: readTlsFile('SSLPrivateKeyFile', config.SSLPrivateKeyFile),
    cert: readTlsFile('SSLCertFile', config.SSLCertFile),
    ca: config.SSLCAFile ? readTlsFile('SSLCAFile', config.SSLCAFile) : undefined,
    skipHostnameCheck: config.SSLSkipVerify,
  };
}

/** A server for the receiving end of a transfer connection: TLS when tls is set (with a CA, clients must present a certificate it signed). */
export function transferServer(tls: TransferTls | undefined): Server {
  return tls
    ? createTlsServer({ key: tls.key, cert: tls.cert, ca: tls.ca, requestCert: tls.ca !== undefined, rejectUnauthorized: tls.ca !== undefined, minVersion: 'TLSv1.2' })
    : createTcpServer();
}

/** Dials the receiving end; with TLS the socket is ready on 'secureConnect', without on 'connect'. */
export function transferConnect(host: string, port: number, tls: TransferTls | undefined): Socket {
  return tls
    ? tlsConnect({
        host,
        port,
        key: tls.key,
        cert: tls.cert,
        ca: tls.ca,
        rejectUnauthorized: tls.ca !== undefined,
        ...(tls.skipHostnameCheck ? { checkServerIdentity: () => undefined } : {}),
        minVersion: 'TLSv1.2',
      })
    : tcpConnect({ host, port });
}
