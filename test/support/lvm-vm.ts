// A small qemu VM with a real device-mapper, for the LVM tests (this machine's kernel has none).
//
// What it is: Debian's kernel (from `apt-get download`, unpacked with dpkg -x, not installed) booted under
// qemu's software emulation, with an initramfs made of busybox-static and the kernel modules LVM, ext4,
// xfs, virtio, 9p and the network need. The initramfs only mounts the host's `/` read-only over 9p and runs
// test/support/lvm-vm-guest.sh from it; every command then runs chrooted into the host's own root, so the
// guest uses this host's lvm2, e2fsprogs, xfsprogs, util-linux, node and MariaDB binaries, and the agent
// under test is this checkout's dist/. Kernel and initramfs are built once per machine into VM_CACHE.
//
// A test drives the guest through a virtio-serial port (one command at a time, stdout, stderr and exit
// status back), shares a host directory at the same path inside the guest, and reaches guest TCP ports
// through qemu's user network (the guest reaches the host as 10.0.2.2).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { basename, join } from 'node:path';
import { AgentClient } from './agent-client.js';
import { repoRoot } from './agent-process.js';
import { freePort } from './seed-hosts.js';

export const VM_CACHE = process.env.OA_VM_CACHE ?? '/var/cache/orchestrator-agent-tests/lvm-vm';
const qemu = '/usr/bin/qemu-system-x86_64';
const qboot = '/usr/share/qemu/qboot.rom';
const busybox = '/bin/busybox';
export const GUEST_SCRIPT = join(repoRoot, 'test/support/lvm-vm-guest.sh');

/** qemu-system-x86 and busybox-static are installed (.ci/run installs them). */
export const haveVmTools = existsSync(qemu) && existsSync(busybox);

/** In load order's spirit: each is loaded after what its depends= names (resolved while building). */
const wantedModules = [
  'virtio_pci', 'virtio_blk', 'virtio_console', 'virtio_net',
  'dm_mod', 'dm_snapshot', 'crc32c_generic', 'ext4', 'xfs',
  '9pnet_virtio', '9p',
];

function sh(program: string, args: string[], opts: { cwd?: string; input?: Buffer } = {}): Buffer {
  return execFileSync(program, args, { cwd: opts.cwd, input: opts.input, maxBuffer: 512 * 1024 * 1024, timeout: 600000, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** The kernel package linux-image-amd64 currently depends on, e.g. linux-image-6.1.0-56-amd64. */
function kernelPackage(): string {
  if (process.env.OA_VM_KERNEL_PACKAGE) return process.env.OA_VM_KERNEL_PACKAGE;
  const out = sh('apt-cache', ['depends', 'linux-image-amd64']).toString();
  const m = /Depends: (linux-image-[0-9][^\s]*-amd64)/.exec(out);
  if (!m) throw new Error(`apt-cache depends linux-image-amd64 names no kernel package:\n${out}`);
  return m[1];
}

/** The uncompressed ELF inside a bzImage whose payload is xz (Debian's): PVH boot with qboot takes it. */
function extractVmlinux(vmlinuz: string, out: string): void {
  const image = readFileSync(vmlinuz);
  const at = image.indexOf(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]));
  if (at < 0) throw new Error(`${vmlinuz} holds no xz stream`);
  const elf = sh('xz', ['-dc', '--single-stream'], { input: image.subarray(at) });
  if (elf.subarray(0, 4).toString('latin1') !== '\x7fELF') throw new Error(`the xz stream in ${vmlinuz} is not an ELF kernel`);
  writeFileSync(out, elf);
}

const modName = (file: string) => basename(file).replace(/\.ko$/, '').replace(/-/g, '_');

/** Module files in dependency order (each one's depends= from its .modinfo loaded before it). */
function moduleOrder(modulesDir: string, wanted: string[]): string[] {
  const byName = new Map<string, string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ko')) byName.set(modName(entry.name), path);
    }
  };
  walk(modulesDir);
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    const file = byName.get(name);
    if (!file) return; // built into the kernel
    const info = /depends=([^\0]*)\0/.exec(readFileSync(file).toString('latin1'));
    for (const dep of (info?.[1] ?? '').split(',').filter(Boolean)) visit(dep.replace(/-/g, '_'));
    order.push(file);
  };
  for (const name of wanted) {
    if (!byName.has(name)) throw new Error(`kernel module ${name} not found under ${modulesDir}`);
    visit(name);
  }
  return order;
}

/** A newc cpio archive (what the kernel unpacks as initramfs) of the given entries. */
function cpioNewc(entries: { name: string; mode: number; data?: Buffer; rdev?: [number, number] }[]): Buffer {
  const parts: Buffer[] = [];
  const pad = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
  let ino = 1;
  const push = (name: string, mode: number, data: Buffer, rdev: [number, number]) => {
    const hex = (v: number) => v.toString(16).padStart(8, '0');
    const nameBytes = Buffer.from(name + '\0');
    const header = '070701' + [ino++, mode, 0, 0, 1, 0, data.length, 0, 0, rdev[0], rdev[1], nameBytes.length, 0].map(hex).join('');
    parts.push(Buffer.from(header), nameBytes, pad(110 + nameBytes.length), data, pad(data.length));
  };
  for (const e of entries) push(e.name, e.mode, e.data ?? Buffer.alloc(0), e.rdev ?? [0, 0]);
  push('TRAILER!!!', 0, Buffer.alloc(0), [0, 0]);
  return Buffer.concat(parts);
}

// Stage one, inside the initramfs: modules, the host's root over 9p (read-only), then stage two from it.
const initScript = `#!/bin/busybox sh
export PATH=/bin
/bin/busybox --install -s /bin
mount -t devtmpfs dev /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
while read -r m; do insmod "/lib/modules/$m" || echo "oa-vm: insmod $m failed" > /dev/console; done < /modules.order
mkdir -p /h
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=loose,ro hostroot /h; then
  echo "oa-vm: cannot mount the host's root" > /dev/console; poweroff -f
fi
for arg in $(cat /proc/cmdline); do case "$arg" in oa.stage2=*) stage2="\${arg#oa.stage2=}";; esac; done
exec /bin/sh "/h$stage2"
`;

export interface VmAssets {
  kernel: string;
  initrd: string;
  /** The kernel package they come from. */
  kernelPackage: string;
}

/** Kernel and initramfs, built on first use into VM_CACHE/<kernel package>/ (about 15 s), then reused. */
export function vmAssets(): VmAssets {
  const pkg = kernelPackage();
  const dir = join(VM_CACHE, pkg);
  const assets = { kernel: join(dir, 'vmlinux'), initrd: join(dir, 'initrd.cpio'), kernelPackage: pkg };
  if (existsSync(join(dir, 'ready'))) return assets;
  mkdirSync(VM_CACHE, { recursive: true });
  const work = mkdtempSync(join(VM_CACHE, '.build-'));
  try {
    sh('apt-get', ['download', pkg], { cwd: work });
    const deb = readdirSync(work).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${pkg} left no .deb in ${work}`);
    const root = join(work, 'root');
    sh('dpkg', ['-x', join(work, deb), root]);
    const release = pkg.replace(/^linux-image-/, '');
    const out = join(work, 'out');
    mkdirSync(out);
    extractVmlinux(join(root, 'boot', `vmlinuz-${release}`), join(out, 'vmlinux'));
    const modules = moduleOrder(join(root, 'lib', 'modules', release, 'kernel'), wantedModules);
    const entries: Parameters<typeof cpioNewc>[0] = [
      ...['bin', 'dev', 'proc', 'sys', 'lib', 'lib/modules', 'h'].map((name) => ({ name, mode: 0o40755 })),
      { name: 'dev/console', mode: 0o20600, rdev: [5, 1] },
      { name: 'bin/busybox', mode: 0o100755, data: readFileSync(busybox) },
      { name: 'init', mode: 0o100755, data: Buffer.from(initScript) },
      { name: 'modules.order', mode: 0o100644, data: Buffer.from(modules.map((m) => basename(m) + '\n').join('')) },
      ...modules.map((m) => ({ name: `lib/modules/${basename(m)}`, mode: 0o100644, data: readFileSync(m) })),
    ];
    writeFileSync(join(out, 'initrd.cpio'), cpioNewc(entries));
    writeFileSync(join(out, 'ready'), `${pkg}\n${modules.map((m) => basename(m)).join(' ')}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(out, dir);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return assets;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface VmOptions {
  /** Host directory shared read-write at the same path in the guest (it holds the disk image, too). */
  shareDir: string;
  /** Guest TCP ports reachable from the host on 127.0.0.1 (see hostPort). */
  forwardPorts?: number[];
  diskSizeMB?: number;
  memoryMB?: number;
}

export interface LvmVm {
  /** Runs a bash script chrooted into the host's root inside the guest. */
  exec(script: string, timeoutMs?: number): Promise<ExecResult>;
  /** exec, throwing (with stderr) unless it exits 0; answers stdout. */
  sh(script: string, timeoutMs?: number): Promise<string>;
  readFile(path: string): Promise<Buffer>;
  /** The host port that reaches this guest port. */
  hostPort(guestPort: number): number;
  /** Milliseconds from starting qemu to the guest's command loop answering. */
  bootMs: number;
  /** The guest's kernel console (for failure messages). */
  console(): string;
  stop(): Promise<void>;
}

/** Boots a VM with one empty virtio disk (/dev/vda in the guest). */
export async function bootLvmVm(opts: VmOptions): Promise<LvmVm> {
  // The guest mounts tmpfs over the host's /tmp and /var/tmp: a checkout there (CI may clone into /tmp) is
  // shared once more, read-only, and mounted at its own path over that tmpfs.
  const hiddenRepo = /^\/(var\/)?tmp\//.test(repoRoot);
  const assets = vmAssets();
  const started = Date.now();
  const dir = mkdtempSync(join(opts.shareDir, '.vm-'));
  const disk = join(dir, 'disk.img');
  writeFileSync(disk, '');
  execFileSync('truncate', ['-s', `${opts.diskSizeMB ?? 1024}M`, disk]);
  const socketPath = join(dir, 'cmd.sock');
  const consoleLog = join(dir, 'console.log');
  const forwards = new Map<number, number>();
  for (const port of opts.forwardPorts ?? []) forwards.set(port, await freePort());
  const hostfwd = [...forwards].map(([guest, host]) => `,hostfwd=tcp:127.0.0.1:${host}-:${guest}`).join('');
  const args = [
    '-accel', 'tcg,thread=multi', '-smp', '2', '-m', String(opts.memoryMB ?? 1024),
    '-nodefaults', '-display', 'none', '-no-reboot',
    '-bios', qboot, '-kernel', assets.kernel, '-initrd', assets.initrd,
    '-append', `console=ttyS0 quiet panic=-1 oa.stage2=${GUEST_SCRIPT} oa.work=${opts.shareDir}${hiddenRepo ? ` oa.repo=${repoRoot}` : ''}`,
    '-serial', `file:${consoleLog}`,
    '-drive', `file=${disk},if=virtio,format=raw,cache=unsafe`,
    '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    '-virtfs', `local,path=${opts.shareDir},mount_tag=work,security_model=none,multidevs=remap`,
    ...(hiddenRepo ? ['-virtfs', `local,path=${repoRoot},mount_tag=repo,security_model=none,readonly=on,multidevs=remap`] : []),
    '-device', 'virtio-serial-pci',
    '-chardev', `socket,id=cmd,path=${socketPath},server=on,wait=off`,
    '-device', 'virtserialport,chardev=cmd,name=oa.cmd',
    '-netdev', `user,id=net${hostfwd}`, '-device', 'virtio-net-pci,netdev=net',
  ];
  const child: ChildProcess = spawn(qemu, args, { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  let qemuErr = '';
  child.stderr!.on('data', (d) => (qemuErr += d));
  let gone = false;
  const exited = new Promise<void>((r) =>
    child.once('exit', () => {
      gone = true;
      for (const w of waiters.splice(0)) w('OA-EXIT');
      r();
    }),
  );
  const consoleText = () => (existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '');
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await exited;
  };

  let socket: Socket | undefined;
  let buffer = '';
  const waiters: ((line: string) => void)[] = [];
  const lines: string[] = [];
  const onLine = (line: string) => {
    const w = waiters.shift();
    if (w) w(line);
    else lines.push(line);
  };
  const nextLine = (timeoutMs: number, what: string) =>
    new Promise<string>((resolve, reject) => {
      const queued = lines.shift();
      if (queued !== undefined) return resolve(queued);
      if (gone) return reject(new Error(`VM: qemu has exited (waiting for ${what})\nqemu: ${qemuErr}\nconsole:\n${consoleText()}`));
      const timer = setTimeout(() => {
        const i = waiters.indexOf(done);
        if (i >= 0) waiters.splice(i, 1);
        reject(new Error(`VM: no answer to ${what} within ${timeoutMs} ms\nqemu: ${qemuErr}\nconsole:\n${consoleText()}`));
      }, timeoutMs);
      const done = (line: string) => {
        clearTimeout(timer);
        if (line === 'OA-EXIT') reject(new Error(`VM: qemu exited while waiting for ${what}\nqemu: ${qemuErr}\nconsole:\n${consoleText()}`));
        else resolve(line);
      };
      waiters.push(done);
    });

  try {
    for (let i = 0; !existsSync(socketPath); i++) {
      if (child.exitCode !== null || i > 200) throw new Error(`qemu did not start: ${qemuErr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect(socketPath, () => resolve(s));
      s.once('error', reject);
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
        onLine(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
      }
    });
    for (;;) {
      const line = await nextLine(180000, 'boot');
      if (line === 'OA-READY') break;
    }
  } catch (err) {
    await kill();
    throw err;
  }
  const bootMs = Date.now() - started;

  let seq = 0;
  let queue: Promise<unknown> = Promise.resolve();
  const exec = (script: string, timeoutMs = 120000): Promise<ExecResult> => {
    const run = async (): Promise<ExecResult> => {
      const id = ++seq;
      socket!.write(`${id} ${Buffer.from(script).toString('base64')}\n`);
      for (;;) {
        const line = await nextLine(timeoutMs, script.slice(0, 200));
        const [tag, rid, code, out = '', err = ''] = line.split(' ');
        if (tag !== 'OA-RESULT' || Number(rid) !== id) continue;
        return { code: Number(code), stdout: Buffer.from(out, 'base64').toString('utf8'), stderr: Buffer.from(err, 'base64').toString('utf8') };
      }
    };
    const result = queue.then(run, run);
    queue = result.catch(() => undefined);
    return result;
  };
  return {
    exec,
    async sh(script, timeoutMs) {
      const r = await exec(script, timeoutMs);
      if (r.code !== 0) throw new Error(`VM command exited ${r.code}: ${script}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
      return r.stdout;
    },
    async readFile(path) {
      const r = await exec(`base64 -w0 -- ${shellQuote(path)}`);
      if (r.code !== 0) throw new Error(`VM: cannot read ${path}: ${r.stderr}`);
      return Buffer.from(r.stdout, 'base64');
    },
    hostPort(guestPort) {
      const port = forwards.get(guestPort);
      if (port === undefined) throw new Error(`guest port ${guestPort} is not forwarded (VmOptions.forwardPorts)`);
      return port;
    },
    bootMs,
    console: consoleText,
    async stop() {
      socket?.destroy();
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One word for bash, whatever it holds. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

// For a quick look by hand: node dist/test/support/lvm-vm.js (builds the assets, boots, runs lvs, stops).
if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\/dist\//, '/dist/'))) {
  const share = mkdtempSync('/tmp/oa-vm-manual-');
  const vm = await bootLvmVm({ shareDir: share });
  console.log(`booted in ${vm.bootMs} ms`, await vm.exec('uname -a; lvm version | head -1; ls /dev/vda'));
  await vm.stop();
  rmSync(share, { recursive: true, force: true });
}

export interface GuestAgent {
  client: AgentClient;
  /** Milliseconds from starting node in the guest to the API answering. */
  startMs: number;
  log(): string;
  stop(): Promise<void>;
}

/**
 * Starts this checkout's agent (dist/src/main.js) inside the guest on port 3002 (forwarded to the host,
 * see VmOptions.forwardPorts), with the given config keys; files go to `dir`, a directory inside the
 * shared one. Node runs from the host's root over 9p, under software emulation: it starts slowly.
 */
export async function startGuestAgent(vm: LvmVm, dir: string, config: Record<string, unknown>): Promise<GuestAgent> {
  mkdirSync(dir, { recursive: true });
  const tokenFile = join(dir, 'token');
  const logFile = join(dir, 'agent.log');
  const pidFile = join(dir, 'agent.pid');
  rmSync(tokenFile, { force: true });
  const configFile = join(dir, 'agent.conf.json');
  writeFileSync(
    configFile,
    JSON.stringify(
      { AgentsServer: 'http://127.0.0.1', AgentsServerPort: ':1', HTTPPort: 3002, HTTPBindAddress: '0.0.0.0', StateDir: '/run/oa-agent-state', TokenHintFile: tokenFile, ...config },
      null,
      2,
    ),
  );
  const started = Date.now();
  await vm.sh(
    `cd ${shellQuote(repoRoot)} && setsid node dist/src/main.js --config ${shellQuote(configFile)} --debug > ${shellQuote(logFile)} 2>&1 < /dev/null & echo $! > ${shellQuote(pidFile)}`,
  );
  const baseUrl = `http://127.0.0.1:${vm.hostPort(3002)}`;
  const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  for (;;) {
    if (existsSync(tokenFile)) {
      const token = readFileSync(tokenFile, 'utf8').trim();
      // Bounded: qemu's forwarder may accept a connection before the guest listens and never answer it.
      const ok = await fetch(`${baseUrl}/api/hostname?token=${token}`, { signal: AbortSignal.timeout(5000) }).then((r) => r.ok, () => false);
      if (ok) {
        return {
          client: new AgentClient(baseUrl, token),
          startMs: Date.now() - started,
          log,
          async stop() {
            await vm.exec(`pid=$(cat ${shellQuote(pidFile)}); kill "$pid"; for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done; kill -9 "$pid"`);
          },
        };
      }
    }
    if (Date.now() - started > 120000) throw new Error(`the agent in the VM did not answer within 120 s:\n${log()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
