import { afterAll, describe, expect, test } from '@jest/globals';
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { progressLogger } from '../src/seeds/progress-log.js';
import { tempDir } from './support/agent-process.js';
import { startSeedAgent, type SeedAgent } from './support/seed-api.js';
import { freePort, makeTargetHost, stopTargetMysqld, type TargetHost } from './support/seed-hosts.js';

// What a seed tells the log at INFO: MySQL stopped and started, the datadir purged (with its path), the
// post-copy command's output, and a progress line every 30 s of a transfer.

/** Captures what the logger writes to stderr while `fn` runs. */
function captureStderr(fn: () => void): string[] {
  const lines: string[] = [];
  const original = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    fn();
  } finally {
    process.stderr.write = original;
  }
  return lines;
}

describe('progress lines', () => {
  test('one INFO line every 30 s of a transfer, none in between', () => {
    let t = 1_000_000;
    const logProgress = progressLogger('seed-p', 'target', { now: () => t });
    const progress = (done: number) => ({ bytesDone: done * 1048576, bytesTotal: 100 * 1048576, filesDone: 1, filesTotal: 4, currentFile: 'ibdata1', rateBytesPerSec: 1048576, etaSeconds: 100 - done });
    const lines = captureStderr(() => {
      for (const [at, done] of [[0, 0], [10_000, 10], [29_999, 29], [30_000, 30], [45_000, 45], [59_999, 59], [60_000, 60]]) {
        t = 1_000_000 + at;
        logProgress(progress(done));
      }
    });
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/ INFO seed receiving: 30 MiB of 100 MiB \{"seed":"seed-p","doneMiB":30,"totalMiB":100,"percent":30,"rateMiBps":1,"etaSeconds":70,"files":"1\/4","currentFile":"ibdata1"\}\n$/);
    expect(lines[1]).toContain('seed receiving: 60 MiB of 100 MiB');
  });

  test('a compressed copy\'s line says its codec, MiB on the wire and how much smaller', () => {
    let t = 0;
    const logProgress = progressLogger('seed-z', 'source', { now: () => t });
    const progress = { bytesDone: 30 * 1048576, bytesTotal: null, filesDone: null, filesTotal: null, currentFile: null, rateBytesPerSec: null, etaSeconds: null };
    const lines = captureStderr(() => {
      logProgress({ ...progress, wire: { compression: 'zstd', dataBytes: 30 * 1048576, wireBytes: 10 * 1048576 } });
      t = 30_000;
      logProgress({ ...progress, wire: { compression: 'zstd', dataBytes: 30 * 1048576, wireBytes: 10 * 1048576 } });
    });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/ INFO seed sending: 30 MiB \{.*"compression":"zstd","wireMiB":10,"wireRatio":3\}\n$/);
  });
});

describe('a target seed at INFO on a real agent', () => {
  let dir: string;
  let host: TargetHost | undefined;
  let target: SeedAgent | undefined;
  afterAll(async () => {
    await target?.agent.stop();
    if (host) stopTargetMysqld(host);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('logs MySQL stopped, the datadir purged with its path, the post-copy output and MySQL started', async () => {
    dir = tempDir('oa-seed-logs-');
    const port = await freePort();
    host = makeTargetHost(join(dir, 'target'), port);
    const postCopy = `echo "post-copy: granted repl@%"; ${String(host.config.PostCopyCommand)}`;
    target = await startSeedAgent(join(dir, 'target'), { ...host.config, PostCopyCommand: postCopy });
    expect((await target.call('POST', '/api/seeds', { id: 'log-seed', role: 'target', startMySQL: true })).status).toBe(201);
    await target.waitFor('log-seed', (v) => v.state === 'receiving', 'receiving');
    const source = join(dir, 'source-data');
    mkdirSync(source, { recursive: true });
    writeFileSync(join(source, 'ibdata1'), Buffer.alloc(10_000, 1));
    const sender = spawn('bash', ['-c', 'tar -cf - -C "$1" . | socat -u STDIN TCP:127.0.0.1:"$2",retry=200,interval=0.1', 'send', source, String(port)], { stdio: 'ignore' });
    expect(await new Promise((r) => sender.once('exit', r))).toBe(0);
    await target.waitFor('log-seed', (v) => v.status === 'done', 'done');

    const info = target.agent.output().split('\n').filter((l) => / INFO /.test(l));
    const datadir = JSON.stringify(host.datadir);
    const order = [
      info.findIndex((l) => l.includes('INFO seed stopped MySQL {"seed":"log-seed"') && l.includes(datadir)),
      info.findIndex((l) => l.includes('INFO seed purged the datadir {"seed":"log-seed"') && l.includes(datadir)),
      info.findIndex((l) => l.includes('INFO post-copy command finished {"seed":"log-seed"') && l.includes('"output":"post-copy: granted repl@%"')),
      info.findIndex((l) => l.includes('INFO seed started MySQL {"seed":"log-seed"}')),
    ];
    for (const i of order) expect(i).toBeGreaterThanOrEqual(0);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
  });
});
