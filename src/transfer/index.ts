// The built-in datadir transfer between two agents, for the seed steps. Used when ReceiveSeedDataCommand /
// SendSeedDataCommand are unset.
//
//   Receiving seed (target host):
//     const authKey = newAuthKey();                       // persist it with the seed; hand it to the sender
//     const { port, done } = await startReceiver({ destDir: datadir, stateDir: seedTransferDir, authKey, bindAddress: config.SeedTransferBindAddress,
//       tls: transferTlsFromConfig(config), connectTimeoutMs: config.SeedTransferConnectTimeoutSeconds * 1000,
//       signal, onProgress });
//     // report port (and authKey) through the seed API now: the receiver is already listening
//     const result = await done;                          // every file verified, final manifest durable
//
//   Sending seed (source host):
//     const result = await send({ sourceDir, host: targetHost, port, authKey, tls: transferTlsFromConfig(config),
//       bandwidthMBps: config.SeedTransferBandwidthMBps, compression: config.SeedTransferCompression, signal, onProgress });
//
// Resume: after either side dies, start a new receiver on the same destDir and stateDir and send again;
// files verified before are not sent again (ReceiveResult.filesSkipped / SendResult.filesSkipped).
// isTransferComplete() tells whether a stateDir records a finished copy into destDir. The bookkeeping lives in
// stateDir only: destDir ends holding exactly the source's files. Failures reject with an AgentError.
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { MANIFEST_FILE, type FinalManifest } from './manifest.js';

export { startReceiver, type ReceiverOptions, type ReceiveResult, type Receiver } from './receiver.js';
export { send, tellReceiver, type SendOptions, type SendResult, type TellReceiverOptions } from './sender.js';
export { newAuthKey } from './auth.js';
export { tellSenders, releasePort } from './farewell.js';
export { isPermanentFailure } from './protocol.js';
export { transferTlsFromConfig, type TransferTls } from './tls.js';
export { COMPRESSION_MODES, isCompressionMode, type CompressionMode, type Codec } from './compression.js';
export type { TransferProgress, ProgressListener } from './progress.js';
export { MANIFEST_FILE, PARTIAL_FILE, STATE_FILE, STAGING_DIR, type FinalManifest } from './manifest.js';
export { DEFAULT_CHECKSUM, CHECKSUM_ALGORITHMS, type ChecksumAlgorithm } from './checksum.js';

/** The final manifest a receiver wrote in stateDir, or undefined when no copy completed there. */
export async function readCompletedManifest(stateDir: string): Promise<FinalManifest | undefined> {
  try {
    return JSON.parse(await readFile(join(stateDir, MANIFEST_FILE), 'utf8')) as FinalManifest;
  } catch {
    return undefined;
  }
}

/** True when the receiver using stateDir completed a copy into destDir. */
export async function isTransferComplete(stateDir: string, destDir: string): Promise<boolean> {
  return (await readCompletedManifest(stateDir))?.destDir === resolve(destDir);
}
