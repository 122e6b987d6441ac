// Helpers for the transfer tests: source trees on disk, tree comparison by sha256, and transfer peers run as
// child processes (dist/src/transfer/peer-cli.js) so they can be killed with SIGKILL mid-transfer.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, utimesSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { repoRoot } from './agent-process.js';

export const peerCli = join(repoRoot, 'dist/src/transfer/peer-cli.js');

/** Writes `size` random bytes to path in 4 MiB pieces. */
export function randomFile(path: string, size: number): void {
  const piece = 4 * 1024 * 1024;
  const parts: Buffer[] = [];
  for (let left = size; left > 0; left -= piece) parts.push(randomBytes(Math.min(piece, left)));
  writeFileSync(path, Buffer.concat(parts));
}

/** Writes `size` bytes of table-like text rows (numbers, words and random hex) that compress about 2-3x, like a datadir's. */
export function rowsFile(path: string, size: number): void {
  const words = ['paid', 'shipped', 'returned', 'deliver to', 'gift for', 'back door', 'reception', 'locker'];
  const parts: string[] = [];
  let length = 0;
  for (let i = 0; length < size; i++) {
    const row = `${i},${(i * 7919) % 100003},${((i * 104729) % 1000000) / 100},${words[i % 8]},user${(i * 31) % 99991}@example.com,${randomBytes(6).toString('hex')}\n`;
    parts.push(row);
    length += row.length;
  }
  writeFileSync(path, Buffer.from(parts.join('')).subarray(0, size));
}

/** A small datadir-like tree: nested dirs, an empty dir, empty files, a symlink, odd modes and old mtimes. */
export function makeTree(root: string, bigBytes: number, extraFiles: Array<[string, number]> = []): void {
  mkdirSync(join(root, 'mysql'), { recursive: true });
  mkdirSync(join(root, 'shop/archive/2024'), { recursive: true });
  mkdirSync(join(root, 'empty-db'));
  randomFile(join(root, 'ibdata1'), bigBytes);
  writeFileSync(join(root, 'shop/db.opt'), 'default-character-set=utf8mb4\n');
  randomFile(join(root, 'shop/orders.ibd'), 3 * 1024 * 1024 + 17);
  writeFileSync(join(root, 'shop/archive/2024/empty.ibd'), '');
  writeFileSync(join(root, 'mysql/user.MYD'), randomBytes(5000));
  writeFileSync(join(root, 'auto.cnf'), '[auto]\nserver-uuid=1\n');
  chmodSync(join(root, 'auto.cnf'), 0o640);
  symlinkSync('shop/db.opt', join(root, 'db.opt.link'));
  for (const [name, size] of extraFiles) randomFile(join(root, name), size);
  utimesSync(join(root, 'shop/orders.ibd'), new Date('2024-01-02T03:04:05.678Z'), new Date('2024-01-02T03:04:05.678Z'));
}

export interface TreeEntry {
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  sha256?: string;
  target?: string;
  mtimeMs?: number;
}

/** Every entry under root by relative path, files with their sha256; the transfer's own files excluded. */
export function describeTree(root: string, skip: readonly string[] = []): Record<string, TreeEntry> {
  const out: Record<string, TreeEntry> = {};
  const walk = (rel: string) => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      if (skip.includes(path)) continue;
      const abs = join(root, path);
      const st = lstatSync(abs);
      if (st.isSymbolicLink()) out[path] = { type: 'symlink', mode: 0, target: readlinkSync(abs) };
      else if (st.isDirectory()) {
        out[path] = { type: 'dir', mode: st.mode & 0o7777 };
        walk(path);
      } else out[path] = { type: 'file', mode: st.mode & 0o7777, sha256: createHash('sha256').update(readFileSync(abs)).digest('hex'), mtimeMs: Math.floor(st.mtimeMs) };
    }
  };
  walk('');
  return out;
}

export interface Peer {
  child: ChildProcess;
  /** Parsed JSON lines printed so far. */
  lines: Array<Record<string, unknown>>;
  output(): string;
  /** Resolves with the first line having this key. */
  waitFor(key: string): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
  kill9(): Promise<void>;
}

export function startPeer(args: string[], authKey: string, env: Record<string, string> = {}): Peer {
  const child = spawn(process.execPath, [peerCli, ...args], {
    env: { ...process.env, ORCHESTRATOR_AGENT_TRANSFER_KEY: authKey, ORCHESTRATOR_AGENT_TRANSFER_PROGRESS_MS: '50', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Array<Record<string, unknown>> = [];
  let out = '';
  let pending = '';
  const waiters: Array<() => void> = [];
  child.stdout!.on('data', (d: Buffer) => {
    out += d;
    pending += d;
    let i;
    while ((i = pending.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(pending.slice(0, i)) as Record<string, unknown>);
      pending = pending.slice(i + 1);
    }
    waiters.splice(0).forEach((w) => w());
  });
  child.stderr!.on('data', (d: Buffer) => (out += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => {
    r(code);
    waiters.splice(0).forEach((w) => w());
  }));
  const waitFor = async (key: string) => {
    for (;;) {
      const hit = lines.find((l) => key in l);
      if (hit) return hit;
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`peer exited without "${key}":\n${out}`);
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  return {
    child,
    lines,
    output: () => out,
    waitFor,
    exited,
    kill9: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Paths the receiver's state file lists as verified (empty when there is none). */
export function verifiedInState(destDir: string, stateFile: string): string[] {
  const file = join(destDir, stateFile);
  if (!existsSync(file)) return [];
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { verified: Array<{ path: string }> }).verified.map((v) => v.path);
  } catch {
    return [];
  }
}

/** Waits (polling the disk) until the receiver has durably verified at least n files. */
export async function waitForVerified(destDir: string, stateFile: string, n: number, alive: () => boolean): Promise<string[]> {
  for (;;) {
    const v = verifiedInState(destDir, stateFile);
    if (v.length >= n) return v;
    if (!alive()) throw new Error(`transfer ended before ${n} files were verified`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
