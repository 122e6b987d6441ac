import { afterAll, describe, expect, test } from '@jest/globals';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mainJs, repoRoot, tempDir } from './support/agent-process.js';

// What a newcomer does on a fresh machine: `npm ci && npm start`, open /ui with the token the shipped
// config writes, and `npm ci && npm test` as root with nothing installed beforehand.

const packageJson = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('npm start on the shipped configuration', () => {
  test('builds at install (prepare) and starts the built agent without rebuilding', () => {
    expect(packageJson.scripts.prepare).toMatch(/\btsc\b|npm run build/);
    // exec: the shell npm runs the script in hands over to node, so SIGTERM to npm start reaches the agent.
    expect(packageJson.scripts.start).toBe('MALLOC_ARENA_MAX=2 exec node --max-semi-space-size=1 dist/src/main.js'); // as the systemd unit
  });

  test('the shipped config writes a token file under its state dir, and /ui opens with that token', async () => {
    const dir = tempDir('oa-quick-');
    dirs.push(dir);
    // The shipped file as it is, in the original's search order; a local file only moves the port.
    mkdirSync(join(dir, 'conf'));
    copyFileSync(join(repoRoot, 'conf/orchestrator-agent.conf.json'), join(dir, 'conf/orchestrator-agent.conf.json'));
    writeFileSync(join(dir, 'orchestrator-agent.conf.json'), JSON.stringify({ HTTPPort: 0 }));
    const shipped = JSON.parse(readFileSync(join(repoRoot, 'conf/orchestrator-agent.conf.json'), 'utf8')) as Record<string, string>;
    expect(shipped.TokenHintFile.startsWith(`${shipped.StateDir}/`)).toBe(true);
    // The README tells the newcomer where the token is.
    expect(readme).toContain(shipped.TokenHintFile);

    const child = spawn(process.execPath, [mainJs], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
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
      const tokenFile = join(dir, shipped.TokenHintFile);
      expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
      const token = readFileSync(tokenFile, 'utf8').trim();
      const page = await fetch(`http://127.0.0.1:${port}/ui?token=${token}`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('orchestrator-agent');
    } finally {
      child.kill('SIGTERM');
      if (child.exitCode === null && child.signalCode === null) await new Promise((r) => child.once('exit', r));
    }
  });
});

describe('npm test on a fresh machine', () => {
  const script = join(repoRoot, '.ci/system-packages');

  /** Runs the package script with dpkg-query, apt-get and id replaced by shims that log their calls. */
  function runWithShims(opts: { missing: string[]; uid: number }) {
    const dir = tempDir('oa-pkgs-');
    dirs.push(dir);
    const log = join(dir, 'calls.log');
    const shim = (name: string, body: string) => {
      writeFileSync(join(dir, name), `#!/bin/bash\n${body}\n`);
      chmodSync(join(dir, name), 0o755);
    };
    // dpkg-query -W -f=FORMAT PACKAGE: "installed" unless the package is in the missing list.
    shim('dpkg-query', `case " ${opts.missing.join(' ')} " in *" \${@: -1} "*) exit 1;; esac; printf 'install ok installed'`);
    shim('apt-get', `echo "apt-get $*" >> ${log}`);
    shim('id', `echo ${opts.uid}`);
    const r = spawnSync('bash', [script], { env: { ...process.env, PATH: `${dir}:${process.env.PATH}` }, encoding: 'utf8' });
    let calls = '';
    try {
      calls = readFileSync(log, 'utf8');
    } catch {
      // no apt-get call
    }
    return { code: r.status, stderr: r.stderr, calls };
  }

  test('as root, the packages missing from the list are installed with apt-get, and only those', () => {
    const r = runWithShims({ missing: ['chromium', 'socat'], uid: 0 });
    expect(r.code).toBe(0);
    expect(r.calls).toContain('apt-get update');
    expect(r.calls).toMatch(/apt-get install -y -q --no-install-recommends socat chromium\n/);
  });

  test('with everything installed nothing runs', () => {
    const r = runWithShims({ missing: [], uid: 0 });
    expect(r.code).toBe(0);
    expect(r.calls).toBe('');
  });

  test('not as root, it fails naming the missing packages and the command to run', () => {
    const r = runWithShims({ missing: ['mariadb-server-core'], uid: 1000 });
    expect(r.code).toBe(1);
    expect(r.calls).toBe('');
    expect(r.stderr).toContain('apt-get install -y --no-install-recommends mariadb-server-core');
  });

  test('npm test installs them first, and CI runs exactly the README test command', () => {
    expect(packageJson.scripts.pretest).toBe('.ci/system-packages');
    const listed = spawnSync('bash', [script, '--list'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
    for (const p of ['mariadb-server-core', 'btrfs-progs', 'lvm2', 'chromium', 'socat', 'openssl']) expect(listed).toContain(p);
    const readmeTest = /^(.*npm test.*?)\s+#/m.exec(readme)?.[1].trim();
    expect(readmeTest).toBe('npm ci && npm test');
    const ci = readFileSync(join(repoRoot, '.ci/run'), 'utf8');
    expect(ci.trim().split('\n').at(-1)).toBe(readmeTest);
  });
});
