import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, tempDir } from './support/agent-process.js';

// `npm run package` builds a tarball that installs on a host with Node and no npm: unpack it, run it.

const version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;

describe('npm run package', () => {
  let dir: string;
  let root: string;
  let tarball: string;
  beforeAll(() => {
    dir = tempDir('oa-package-');
    const built = spawnSync('bash', [join(repoRoot, 'scripts/package.sh')], { env: { ...process.env, OUT_DIR: dir }, encoding: 'utf8' });
    expect(built.stderr + built.stdout).toContain('.tar.gz');
    expect(built.status).toBe(0);
    tarball = built.stdout.trim().split('\n').at(-1)!;
    const install = join(dir, 'opt');
    spawnSync('mkdir', ['-p', install]);
    const untar = spawnSync('tar', ['-xzf', tarball, '-C', install], { encoding: 'utf8' });
    expect(untar.status).toBe(0);
    root = join(install, `orchestrator-agent-${version}`);
  }, 300_000);
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the tarball is named with the version and holds the built agent, ui, diagrams and the systemd unit', () => {
    expect(tarball).toMatch(new RegExp(`orchestrator-agent-${version.replace(/\./g, '\\.')}-linux-[a-z0-9]+\\.tar\\.gz$`));
    for (const f of ['dist/src/main.js', 'dist/machines/seed-target.js', 'ui/app.js', 'ui/index.html', 'diagrams/seed-target.svg', 'conf/orchestrator-agent.service', 'bin/orchestrator-agent', 'package.json']) {
      expect(existsSync(join(root, f))).toBe(true);
    }
    expect(existsSync(join(root, 'dist/test'))).toBe(false);
  });

  test('node_modules holds the production dependencies only', () => {
    const modules = readdirSync(join(root, 'node_modules'));
    for (const dep of ['koa', 'xstate', 'execa', 'prom-client']) expect(modules).toContain(dep);
    for (const dev of ['jest', 'typescript', 'playwright-core', '@types']) expect(modules).not.toContain(dev);
  });

  test('the unpacked tree runs without npm: --version, then an agent serving the page, diagrams and version', async () => {
    const v = spawnSync(join(root, 'bin/orchestrator-agent'), ['--version'], { cwd: '/', encoding: 'utf8' });
    expect(v.stdout.trim()).toBe(`orchestrator-agent ${version}`);

    const state = join(dir, 'state');
    const config = join(dir, 'agent.conf.json');
    writeFileSync(config, JSON.stringify({ AgentsServer: 'http://127.0.0.1', AgentsServerPort: ':1', HTTPPort: 0, HTTPBindAddress: '127.0.0.1', StateDir: state, TokenHintFile: join(state, 'token') }));
    // Node itself, with the unpacked tree only: no npm, no repository on the way.
    const child = spawn(process.execPath, [join(root, 'dist/src/main.js'), '--config', config], { cwd: '/', stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      let out = '';
      const port = await new Promise<number>((resolve, reject) => {
        child.stderr!.on('data', (d) => {
          out += d;
          const m = /orchestrator-agent listening .*"port":(\d+)/.exec(out);
          if (m) resolve(Number(m[1]));
        });
        child.once('exit', (code) => reject(new Error(`agent exited with ${code}:\n${out}`)));
      });
      expect(out).toContain(`orchestrator-agent ${version} starting`);
      const token = readFileSync(join(state, 'token'), 'utf8');
      const page = await fetch(`http://127.0.0.1:${port}/ui?token=${token}`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain(`"version":"${version}"`);
      const svg = await fetch(`http://127.0.0.1:${port}/ui/diagrams/seed-target.svg?token=${token}`);
      expect(svg.status).toBe(200);
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toContain(`orchestrator_agent_build_info{version="${version}"} 1`);
    } finally {
      child.kill('SIGTERM');
      if (child.exitCode === null && child.signalCode === null) await new Promise((r) => child.once('exit', r));
    }
  }, 180_000);
});
