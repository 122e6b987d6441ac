// One end of the built-in transfer as a process: used by the resume tests (killed with SIGKILL mid-transfer),
// by bench/run.ts, and by an operator moving a datadir by hand.
//   node dist/src/transfer/peer-cli.js receive <destDir> [port] [stateDir]   (key in ORCHESTRATOR_AGENT_TRANSFER_KEY;
//                                                                         stateDir defaults to <destDir>.transfer-state)
//   node dist/src/transfer/peer-cli.js send <sourceDir> <host> <port> [MBps]
// Prints JSON lines on stdout: {"listening":port}, {"progress":...}, {"result":...,"cpuSeconds":n} or {"error":...}.
// TLS: ORCHESTRATOR_AGENT_TRANSFER_TLS_{KEY,CERT,CA} name PEM files; ORCHESTRATOR_AGENT_TRANSFER_CHECKSUM=sha256;
// ORCHESTRATOR_AGENT_TRANSFER_COMPRESSION=off|fast|strong|auto (send); ORCHESTRATOR_AGENT_TRANSFER_BIND (receive,
// default 127.0.0.1); ORCHESTRATOR_AGENT_TRANSFER_CODECS=lz4,brotli (receive: offer only these, as an agent from
// before zstd does; the link bench measures each codec this way); ORCHESTRATOR_AGENT_TRANSFER_DIRECT_WRITES=off (receive:
// write through the page cache instead of O_DIRECT; the benches compare both).
// ORCHESTRATOR_AGENT_TRANSFER_START=stdin: send prints {"ready":true} once loaded and starts at the first line on
// stdin, as an agent already running starts a seed (the benches time the transfer, not node's start-up).
import { readFileSync } from 'node:fs';
import { describeError } from '../errors.js';
import { send, startReceiver, type TransferTls } from './index.js';
import { CODECS, isCompressionMode, type Codec } from './compression.js';

function tlsFromEnv(): TransferTls | undefined {
  const { ORCHESTRATOR_AGENT_TRANSFER_TLS_KEY: key, ORCHESTRATOR_AGENT_TRANSFER_TLS_CERT: cert, ORCHESTRATOR_AGENT_TRANSFER_TLS_CA: ca } = process.env;
  if (!key || !cert) return undefined;
  return { key: readFileSync(key), cert: readFileSync(cert), ca: ca ? readFileSync(ca) : undefined };
}

/** User + system CPU of this process so far (bench/run.ts reports it: less sensitive to a busy machine than rates). */
function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** The codecs a receiver offers, from ORCHESTRATOR_AGENT_TRANSFER_CODECS; undefined: all it can decode. */
function codecsFromEnv(): Codec[] | undefined {
  const list = process.env.ORCHESTRATOR_AGENT_TRANSFER_CODECS;
  if (list === undefined) return undefined;
  const codecs = list.split(',').filter((c) => c !== '');
  const unknown = codecs.filter((c) => !(CODECS as readonly string[]).includes(c));
  if (unknown.length > 0) throw new Error(`ORCHESTRATOR_AGENT_TRANSFER_CODECS: unknown codec ${unknown.join(', ')}; choose from ${CODECS.join(', ')}`);
  return codecs as Codec[];
}

function emit(obj: unknown): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

async function main(argv: string[]): Promise<number> {
  const authKey = process.env.ORCHESTRATOR_AGENT_TRANSFER_KEY ?? '';
  const progressIntervalMs = Number(process.env.ORCHESTRATOR_AGENT_TRANSFER_PROGRESS_MS ?? 250);
  const onProgress = (p: unknown) => emit({ progress: p });
  const [mode, ...args] = argv;
  if (mode === 'receive' && args[0]) {
    const r = await startReceiver({ destDir: args[0], stateDir: args[2] ?? `${args[0].replace(/\/+$/, '')}.transfer-state`, port: Number(args[1] ?? 0), bindAddress: process.env.ORCHESTRATOR_AGENT_TRANSFER_BIND ?? '127.0.0.1', authKey, tls: tlsFromEnv(), compressionCodecs: codecsFromEnv(), directWrites: process.env.ORCHESTRATOR_AGENT_TRANSFER_DIRECT_WRITES !== 'off', onProgress, progressIntervalMs });
    emit({ listening: r.port });
    emit({ result: await r.done, cpuSeconds: cpuSeconds() });
    return 0;
  }
  if (mode === 'send' && args.length >= 3) {
    if (process.env.ORCHESTRATOR_AGENT_TRANSFER_START === 'stdin') {
      emit({ ready: true });
      await new Promise<void>((go) => {
        process.stdin.once('data', () => go());
        process.stdin.once('end', () => go());
      });
      process.stdin.pause();
    }
    const compression = process.env.ORCHESTRATOR_AGENT_TRANSFER_COMPRESSION;
    if (compression !== undefined && !isCompressionMode(compression)) throw new Error(`ORCHESTRATOR_AGENT_TRANSFER_COMPRESSION=${compression}: choose off, fast, strong or auto`);
    const result = await send({
      compression, sourceDir: args[0]!, host: args[1]!, port: Number(args[2]), bandwidthMBps: Number(args[3] ?? 0), checksum: process.env.ORCHESTRATOR_AGENT_TRANSFER_CHECKSUM === 'sha256' ? 'sha256' : undefined, authKey, tls: tlsFromEnv(), onProgress, progressIntervalMs });
    emit({ result, cpuSeconds: cpuSeconds() });
    return 0;
  }
  process.stderr.write('usage: peer-cli receive <destDir> [port] [stateDir] | send <sourceDir> <host> <port> [MBps]\n');
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    emit({ error: describeError(err) });
    process.exit(1);
  },
);
