// TLS on the data channel, with the same certificate files as the API (SSLCertFile, SSLPrivateKeyFile,
// SSLCAFile). With a CA, each side verifies the other's certificate against it.
import { readFileSync } from 'node:fs';
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
