// The agent's version, from the package.json installed beside dist/ (the same file `npm run package` ships).
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** Install root: dist/src/ -> ../.. */
const root = resolve(new URL('.', import.meta.url).pathname, '../..');

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

export const version: string = readVersion();
