// One end of a backup/dump seed's stream (src/transfer/stream.ts) as a process, for bench/link.ts: the program
// whose output is streamed is `tar -c` of a directory (standing in for mariabackup), the program it feeds
// `tar -x` (standing in for mbstream -x). Key in ORCHESTRATOR_AGENT_TRANSFER_KEY; compression (send) in
// ORCHESTRATOR_AGENT_TRANSFER_COMPRESSION.
//   node dist/bench/stream-peer.js receive <bindAddress> <port> <destDir>   prints {"listening":port}, then {"result"}
//   node dist/bench/stream-peer.js send <host> <port> <sourceDir>           prints {"result"}
// Both print the CPU seconds of their own process with the result.
import { spawn, type ChildProcess } from 'node:child_process';
import { acceptStream, offerStream, type SourceFacts } from '../src/transfer/stream.js';
import { isCompressionMode } from '../src/transfer/compression.js';

const facts: SourceFacts = { mysqlRunning: true, version: '10.11', dataBytes: 0, logBin: true, gtidMode: false, mysqlHost: '', mysqlPort: 3306 };

function exited(c: ChildProcess, what: string): Promise<void> {
  return new Promise((res, rej) => {
    c.once('error', rej);
    c.once('exit', (code, sig) => (code === 0 ? res() : rej(new Error(`${what} exited ${code ?? sig}`))));
  });
}

function emit(obj: unknown): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

async function main([mode, a, b, c]: string[]): Promise<void> {
  const authKey = process.env.ORCHESTRATOR_AGENT_TRANSFER_KEY ?? '';
  if (mode === 'receive' && a && b && c) {
    const waiting = acceptStream({ port: Number(b), bindAddress: a, authKey, connectTimeoutMs: 60_000 });
    emit({ listening: Number(b) });
    const session = await waiting;
    const tar = spawn('tar', ['-xf', '-', '-C', c], { stdio: ['pipe', 'ignore', 'inherit'] });
    const done = exited(tar, 'tar -x');
    const end = await session.receive(tar.stdin, () => done, undefined, done);
    emit({ result: { bytes: end.bytes }, cpuSeconds: cpuSeconds() });
    return;
  }
  if (mode === 'send' && a && b && c) {
    const compression = process.env.ORCHESTRATOR_AGENT_TRANSFER_COMPRESSION ?? 'off';
    if (!isCompressionMode(compression)) throw new Error(`ORCHESTRATOR_AGENT_TRANSFER_COMPRESSION=${compression}: choose off, fast, strong or auto`);
    const answer = await offerStream({ host: a, port: Number(b), authKey, connectTimeoutMs: 60_000, facts, compression });
    if (answer.kind !== 'go') throw new Error(`the receiver answered ${answer.kind}`);
    const tar = spawn('tar', ['-cf', '-', '-C', c, '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const done = exited(tar, 'tar -c');
    const end = await answer.send(tar.stdout!, async () => {
      await done;
      return null;
    });
    emit({ result: { bytes: end.bytes, wireBytes: end.wireBytes, compression: end.compression }, cpuSeconds: cpuSeconds() });
    return;
  }
  throw new Error('usage: stream-peer receive <bindAddress> <port> <destDir> | send <host> <port> <sourceDir>');
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (err: unknown) => {
    emit({ error: err instanceof Error ? err.message : String(err) });
    process.exit(1);
  },
);
