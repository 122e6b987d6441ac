// What a transfer moves: the entries of a datadir (files, directories, symlinks) with size, mode, owner and
// mtime, and the rules a receiver applies before it lets an entry touch its disk.
import { lstat, readdir, readlink, stat } from 'node:fs/promises';
import { isAbsolute, join, posix, resolve } from 'node:path';
import { AgentError } from '../errors.js';
import { isWithin } from '../validate.js';
import { log } from '../log.js';

/** The receiver's bookkeeping, in its state directory (outside the datadir): resume state and final manifest. */
export const STATE_FILE = 'transfer-state.json';
/** The chunks verified of files received in part; small, rewritten at every chunk (see receiver-state.ts). */
export const PARTIAL_FILE = 'transfer-partial.json';
export const MANIFEST_FILE = 'transfer-manifest.json';
/** The one name the transfer uses inside the destination: files being received, removed before the end. */
export const STAGING_DIR = '.orchestrator-agent-transfer.tmp';
/** Never sent, never written by a sender: the staging area, and the bookkeeping earlier versions kept in the datadir. */
const reservedNames = new Set([STAGING_DIR, '.orchestrator-agent-transfer.json', '.orchestrator-agent-transfer-manifest.json']);

export interface FileEntry {
  type: 'file';
  path: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
}
export interface DirEntry {
  type: 'dir';
  path: string;
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
}
export interface SymlinkEntry {
  type: 'symlink';
  path: string;
  target: string;
  uid: number;
  gid: number;
}
export type ManifestEntry = FileEntry | DirEntry | SymlinkEntry;

/** A file the receiver holds verified: the sender's size and mtime, and the checksum it arrived with. */
export interface VerifiedFile {
  path: string;
  size: number;
  mtimeMs: number;
  checksum: string;
}

/** The final manifest, written last in the destination: its presence means the copy is complete. */
export interface FinalManifest {
  version: 1;
  /** The directory the copy landed in. */
  destDir: string;
  algorithm: string;
  completedAt: string;
  bytesTotal: number;
  filesTotal: number;
  entries: Array<ManifestEntry & { checksum?: string }>;
}

/**
 * Walks sourceDir (following a symlink at the top only) into a sorted list of entries. Sockets, FIFOs and devices
 * (mysql.sock may live in a datadir) are skipped, as are the transfer's own files at the top.
 */
export async function walkSource(sourceDir: string): Promise<ManifestEntry[]> {
  const root = resolve(sourceDir);
  // The top is followed (a datadir is often a link, /var/lib/mysql -> /data/mysql); nothing below it is.
  const top = await stat(root).catch((err: NodeJS.ErrnoException) => {
    throw new AgentError('not_found', `cannot read source directory ${root}: ${err.code ?? err.message}`, {
      hint: 'check the datadir or snapshot mount point the seed sends from',
    });
  });
  if (!top.isDirectory()) throw new AgentError('bad_request', `source ${root} is not a directory`);
  const entries: ManifestEntry[] = [];
  const visit = async (rel: string): Promise<void> => {
    const names = (await readdir(join(root, rel))).sort().filter((name) => rel !== '' || !reservedNames.has(name));
    // A directory's entries are stat'ed many at a time (one after the other, a datadir of hundreds of files
    // waited that many thread-pool round trips before its first byte was sent); the list keeps their order.
    const stats = await mapLimited(names, statsInFlight, (name) => lstat(join(root, rel, name)));
    for (const [i, name] of names.entries()) {
      const path = rel === '' ? name : `${rel}/${name}`;
      const abs = join(root, path);
      const st = stats[i]!;
      const owner = { uid: st.uid, gid: st.gid };
      if (st.isFile()) {
        entries.push({ type: 'file', path, size: st.size, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs, ...owner });
      } else if (st.isDirectory()) {
        entries.push({ type: 'dir', path, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs, ...owner });
        await visit(path);
      } else if (st.isSymbolicLink()) {
        entries.push({ type: 'symlink', path, target: await readlink(abs), ...owner });
      } else {
        log.debug('transfer: skipping special file', { path: abs });
      }
    }
  };
  await visit('');
  return entries;
}

const statsInFlight = 32;

/** fn over items, at most limit at a time, results in the items' order. */
async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function refuse(path: string, why: string): AgentError {
  return new AgentError('forbidden', `refusing manifest entry ${JSON.stringify(path)}: ${why}`, {
    hint: 'the sender must send a relative tree without ".." or absolute paths',
  });
}

/** A relative, normalised, '/'-separated path with no "..", or a 403. */
export function safeRelativePath(path: unknown): string {
  if (typeof path !== 'string' || path === '' || path.includes('\0') || path.includes('\\')) throw refuse(String(path), 'not a plain relative path');
  if (isAbsolute(path)) throw refuse(path, 'absolute path');
  const parts = path.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..')) throw refuse(path, 'empty, "." or ".." component');
  if (reservedNames.has(parts[0]!)) throw refuse(path, 'name reserved for the transfer itself');
  return path;
}

function isInt(v: unknown, min = 0): v is number {
  return Number.isInteger(v) && (v as number) >= min;
}

function isFiniteNumber(v: unknown): v is number {
  return Number.isFinite(v);
}

/**
 * Checks a manifest received from the network: types and numbers, safe paths, no duplicates, parents
 * listed before children and being directories, symlinks resolving inside destDir.
 */
export function validateManifest(raw: unknown, destDir: string): ManifestEntry[] {
  if (!Array.isArray(raw)) throw new AgentError('bad_request', 'manifest entries must be a list');
  const seen = new Map<string, ManifestEntry['type']>();
  const out: ManifestEntry[] = [];
  const root = resolve(destDir);
  for (const e of raw as Array<Record<string, unknown>>) {
    if (e === null || typeof e !== 'object') throw new AgentError('bad_request', 'manifest entry is not an object');
    const path = safeRelativePath(e.path);
    if (seen.has(path)) throw refuse(path, 'listed twice');
    const parent = posix.dirname(path);
    if (parent !== '.' && seen.get(parent) !== 'dir') throw refuse(path, `parent ${parent} is not a directory listed before it`);
    if (!isInt(e.uid) || !isInt(e.gid)) throw refuse(path, 'bad owner');
    if (e.type === 'file' || e.type === 'dir') {
      if (!isInt(e.mode) || e.mode > 0o7777 || !isFiniteNumber(e.mtimeMs)) throw refuse(path, 'bad mode or mtime');
      if (e.type === 'file') {
        if (!isInt(e.size) || e.size > Number.MAX_SAFE_INTEGER) throw refuse(path, 'bad size');
        out.push({ type: 'file', path, size: e.size, mode: e.mode, uid: e.uid, gid: e.gid, mtimeMs: e.mtimeMs });
      } else {
        out.push({ type: 'dir', path, mode: e.mode, uid: e.uid, gid: e.gid, mtimeMs: e.mtimeMs });
      }
    } else if (e.type === 'symlink') {
      if (typeof e.target !== 'string' || e.target === '' || e.target.includes('\0')) throw refuse(path, 'bad symlink target');
      if (isAbsolute(e.target)) throw refuse(path, `symlink target ${e.target} is absolute`);
      const landing = resolve(root, posix.dirname(path), e.target);
      if (!isWithin(root, landing)) throw refuse(path, `symlink target ${e.target} points outside the destination`);
      out.push({ type: 'symlink', path, target: e.target, uid: e.uid, gid: e.gid });
    } else {
      throw refuse(path, `unknown type ${JSON.stringify(e.type)}`);
    }
    seen.set(path, out[out.length - 1]!.type);
  }
  return out;
}

/** The one rule both sides apply: a file is not sent again when the receiver verified this path, size and mtime. */
export function alreadyVerified(entry: FileEntry, have: VerifiedFile | undefined): boolean {
  return have !== undefined && have.size === entry.size && have.mtimeMs === entry.mtimeMs;
}
