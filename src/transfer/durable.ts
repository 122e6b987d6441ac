// Durable file operations: temp file, fsync, rename, fsync of the directory.
import { open, rename, unlink } from 'node:fs/promises';
import { dirname, join, basename } from 'node:path';

/** fsync a directory so a rename or unlink inside it survives a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes data to path (a new temp file, readable by its owner only) and flushes it to the disk, before a rename puts it in place. */
export async function writeFlushed(path: string, data: string | Buffer): Promise<void> {
  const fh = await open(path, 'w', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Replaces file with data atomically: a reader (or a crash) sees the old content or the new, never half. */
export async function writeFileDurably(file: string, data: string | Buffer): Promise<void> {
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
  try {
    await writeFlushed(tmp, data);
    await rename(tmp, file);
  } catch (err) {
    // A full or read-only disk leaves no temp file behind.
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dirname(file));
}

/**
 * Replaces file with data atomically (temp, rename) without waiting for the disk: a killed process leaves the
 * old content or the new; a power loss may leave the old one, or none. Only for notes whose loss costs
 * time, never correctness (an fsync also forces out the data being received, which costs a transfer a
 * quarter of its rate when done at every chunk).
 */
export async function writeFileAtomically(file: string, data: string | Buffer): Promise<void> {
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(data);
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
}

/** Removes file if present and makes the removal durable. */
export async function unlinkDurably(file: string): Promise<void> {
  try {
    await unlink(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  await fsyncDir(dirname(file));
}
