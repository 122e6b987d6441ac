import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { mainJs, tempDir } from './support/agent-process.js';
import { describeHalf } from '../src/seed-cli.js';
import { startSeedAgent, type SeedAgent } from './support/seed-api.js';
import { freePort, makeSourceHost, makeTargetHost, stopTargetMysqld, treeDigest, type SourceHost, type TargetHost } from './support/seed-hosts.js';

// `orchestrator-agent seed --source --target`: one command drives both halves on two real agents
// (built-in transfer, a real btrfs snapshot on the source), shows progress and links the halves.

function runCli(args: string[], env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [mainJs, 'seed', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, output })));
}

describe('orchestrator-agent seed', () => {
  const dirs: string[] = [];
  let host: TargetHost;
  let source: SourceHost;
  let target: SeedAgent;
  let sender: SeedAgent;
  let env: Record<string, string>;
  let args: (id: string, snapshot: string) => string[];

  beforeAll(async () => {
    const [targetDir, sourceDir, sourceAgentDir] = ['oa-cli-tgt-', 'oa-cli-src-', 'oa-cli-srcagent-'].map((p) => tempDir(p));
    dirs.push(targetDir, sourceDir, sourceAgentDir);
    host = makeTargetHost(targetDir, await freePort());
    source = makeSourceHost(sourceDir, `oa-cli-${process.pid}`);
    target = await startSeedAgent(targetDir, { ...host.config, ReceiveSeedDataCommand: '', SeedTransferBindAddress: '127.0.0.1' });
    sender = await startSeedAgent(sourceAgentDir, { ...source.config, SendSeedDataCommand: '' });
    env = { ORCHESTRATOR_AGENT_SOURCE_TOKEN: sender.token, ORCHESTRATOR_AGENT_TARGET_TOKEN: target.token };
    args = (id, snapshot) => ['--source', `127.0.0.1:${sender.agent.port}`, '--target', `127.0.0.1:${target.agent.port}`, '--snapshot', snapshot, '--id', id, '--start-mysql'];
  }, 120_000);
  afterAll(async () => {
    await target?.agent.stop();
    await sender?.agent.stop();
    if (host) stopTargetMysqld(host);
    source?.cleanup();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('copies the snapshot into the target datadir, showing both halves, and exits 0', async () => {
    const { code, output } = await runCli(args('cli-ok', source.snapshot), env);
    expect(output).toContain('seed done');
    expect(code).toBe(0);
    expect(output).toMatch(/target seed created; it receives on 127\.0\.0\.1:\d+/);
    expect(output).toMatch(/\[#+\.*\] target \w+/);
    expect(output).toContain('target (127.0.0.1): done');
    expect(output).toContain('source (127.0.0.1): done');
    expect((await target.seed('cli-ok')).status).toBe('done');
    expect((await sender.seed('cli-ok')).status).toBe('done');
    // The datadir now holds the snapshot's MySQL data (the snapshot keeps it under mysql/).
    const copied = treeDigest(host.datadir);
    const sent = treeDigest(join(source.snapshot, 'mysql'));
    expect(Object.keys(sent)).toContain('ibdata1');
    for (const [file, digest] of Object.entries(sent)) expect(copied[file]).toBe(digest);
    expect(host.mysqlRunning()).toBe(true);
  });

  test('when the source half fails, the target half is aborted at once with the reason and the command exits 1', async () => {
    const { code, output } = await runCli(args('cli-bad', 'no-such-snapshot'), env);
    expect(code).toBe(1);
    const targetView = await target.seed('cli-bad');
    const sourceView = await sender.seed('cli-bad');
    expect(sourceView.status).toBe('failed');
    // The source agent tells its target itself (a short transfer connection), often before the command does.
    expect(['failed', 'aborted']).toContain(targetView.status);
    // It names the step the half failed in (its state is only "failed").
    expect(output).toContain(`source (127.0.0.1): failed during mountingSnapshot: ${sourceView.error!.message}`);
    expect(output).toContain('the seed did not complete');
  });

  test('--method backup --replicate asks both agents for a hot-backup seed that replicates, and reports how it ended', async () => {
    const { code, output } = await runCli(['--source', `127.0.0.1:${sender.agent.port}`, '--target', `127.0.0.1:${target.agent.port}`, '--method', 'backup', '--replicate', '--force', '--id', 'cli-backup'], env);
    expect(output).toContain('(hot backup, then replicating)');
    const view = (await target.seed('cli-backup')) as Awaited<ReturnType<SeedAgent['seed']>> & { method: string };
    expect(view.method).toBe('backup');
    expect(view.params).toMatchObject({ method: 'backup', replicate: true, startMySQL: true, force: true });
    // These agents have no MariaDB credentials for a hot backup: the seed cannot complete, and the command says so.
    expect(code).toBe(1);
    expect(view.status).not.toBe('active');
    expect(output).toContain('the seed did not complete');
  });

  test('--method dump --replicate asks both agents for a logical-dump seed that replicates, and reports how it ended', async () => {
    const { code, output } = await runCli(['--source', `127.0.0.1:${sender.agent.port}`, '--target', `127.0.0.1:${target.agent.port}`, '--method', 'dump', '--replicate', '--id', 'cli-dump'], env);
    expect(output).toContain('(logical dump, then replicating)');
    const view = (await target.seed('cli-dump')) as Awaited<ReturnType<SeedAgent['seed']>> & { method: string; machine: string };
    expect([view.method, view.machine]).toEqual(['dump', 'seed-dump-target']);
    expect(view.params).toMatchObject({ method: 'dump', replicate: true });
    expect((await sender.seed('cli-dump')).method).toBe('dump');
    // These agents have no MariaDB credentials for a dump: the seed cannot complete, and the command says so.
    expect(code).toBe(1);
    expect(view.status).not.toBe('active');
    expect(output).toContain('the seed did not complete');
  });

  test('--compression fast reaches the source half, which compresses the built-in transfer with it', async () => {
    const { code, output } = await runCli([...args('cli-fast', source.snapshot), '--compression', 'fast'], env);
    expect(output).toContain('seed done');
    expect(code).toBe(0);
    expect((await sender.seed('cli-fast')).params).toMatchObject({ compression: 'fast' });
  });

  test('a finished half shows what it moved, not a percentage of the estimate', () => {
    const view = { id: 's', role: 'target', state: 'done', status: 'done' as const, error: null, progress: { bytesDone: 27 * 1024 * 1024, bytesTotal: 134 * 1024 * 1024, rateBytesPerSec: 1, etaSeconds: 9 } };
    expect(describeHalf(view)).toBe('target done 27.0 MiB');
    expect(describeHalf({ ...view, status: 'active', state: 'receiving' })).toMatch(/^target receiving 20% 27\.0 MiB of 134\.0 MiB/);
  });

  test('a compressed sending half says how much smaller its data went on the wire', () => {
    const progress = { bytesDone: 30 * 1024 * 1024, bytesTotal: 100 * 1024 * 1024, wire: { compression: 'zstd', dataBytes: 30 * 1024 * 1024, wireBytes: 9 * 1024 * 1024 } };
    const view = { id: 's', role: 'source', state: 'streaming', status: 'active' as const, error: null, progress };
    expect(describeHalf(view)).toBe('source streaming 30% 30.0 MiB of 100.0 MiB (3.3x smaller on the wire, zstd)');
    expect(describeHalf({ ...view, progress: { ...progress, wire: undefined } })).toBe('source streaming 30% 30.0 MiB of 100.0 MiB');
  });

  test('usage errors: --force with the wrong method, a bad --compression', async () => {
    const base = ['--source', '127.0.0.1:1', '--target', '127.0.0.1:2'];
    const bad = await runCli([...base, '--snapshot', 's', '--compression', 'zstd'], env);
    expect(bad.code).toBe(2);
    expect(bad.output).toContain('--compression must be "off", "fast", "strong" or "auto", got "zstd"');
    const force = await runCli([...base, '--snapshot', 's', '--force'], env);
    expect(force.code).toBe(2);
    expect(force.output).toContain('--force needs --method backup or dump');
  });

  test('usage errors: --replicate without --method backup, --snapshot with it', async () => {
    const base = ['--source', '127.0.0.1:1', '--target', '127.0.0.1:2'];
    const replicate = await runCli([...base, '--snapshot', 's', '--replicate'], env);
    expect(replicate.code).toBe(2);
    expect(replicate.output).toContain('--replicate needs --method backup or dump');
    const snapshot = await runCli([...base, '--method', 'backup', '--snapshot', 's'], env);
    expect(snapshot.code).toBe(2);
    expect(snapshot.output).toContain('--snapshot does not apply to --method backup');
    const dump = await runCli([...base, '--method', 'dump', '--snapshot', 's'], env);
    expect(dump.code).toBe(2);
    expect(dump.output).toContain('--snapshot does not apply to --method dump');
  });

  test('refuses one agent as both source and target (same HOST:PORT, a loopback alias, or one token for both) and creates nothing', async () => {
    const port = target.agent.port;
    const same = await runCli(['--source', `127.0.0.1:${port}`, '--target', `127.0.0.1:${port}`, '--snapshot', 's', '--id', 'cli-same'], env);
    expect(same.code).toBe(2);
    expect(same.output).toContain(`--source and --target name the same agent (127.0.0.1:${port} and 127.0.0.1:${port})`);
    const alias = await runCli(['--source', `localhost:${port}`, '--target', `127.0.0.1:${port}`, '--snapshot', 's', '--id', 'cli-same'], env);
    expect(alias.code).toBe(2);
    expect(alias.output).toContain('--source and --target name the same agent');
    const oneToken = { ORCHESTRATOR_AGENT_SOURCE_TOKEN: target.token, ORCHESTRATOR_AGENT_TARGET_TOKEN: target.token };
    const tokens = await runCli(['--source', `127.0.0.1:${sender.agent.port}`, '--target', `127.0.0.1:${port}`, '--snapshot', 's', '--id', 'cli-same'], oneToken);
    expect(tokens.code).toBe(2);
    expect(tokens.output).toContain('the source and target tokens are the same, so both name one agent');
    expect((await target.call('GET', '/api/seeds/cli-same')).status).toBe(404);
  });

  test('without a token it names where to put one and exits 2', async () => {
    const { code, output } = await runCli(args('cli-none', source.snapshot), { ORCHESTRATOR_AGENT_SOURCE_TOKEN: '', ORCHESTRATOR_AGENT_TARGET_TOKEN: '' });
    expect(code).toBe(2);
    expect(output).toContain('no token for the source agent: set ORCHESTRATOR_AGENT_SOURCE_TOKEN or --source-token-file');
  });
});
