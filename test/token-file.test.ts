// TokenHintFile holds the process token: readable by root only, even when an older file (the original
// agent wrote 0644) is already there, and a file that cannot be written names the key and the fix.
import { afterAll, describe, expect, test } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentError } from '../src/errors.js';
import { writeTokenHint } from '../src/token.js';
import { tempDir } from './support/agent-process.js';

const dir = tempDir('oa-token-file-');
const mounts: string[] = [];
afterAll(() => {
  for (const m of mounts.splice(0)) spawnSync('umount', ['-l', m]);
  rmSync(dir, { recursive: true, force: true });
});

function writeError(file: string, token: string): AgentError {
  try {
    writeTokenHint(file, token);
  } catch (err) {
    expect(err).toBeInstanceOf(AgentError);
    return err as AgentError;
  }
  throw new Error('expected an error');
}

describe('TokenHintFile', () => {
  test('an existing world-readable token file is rewritten 0600', () => {
    const file = join(dir, 'token');
    writeFileSync(file, 'old-token');
    chmodSync(file, 0o644);
    writeTokenHint(file, 'new-token');
    expect(readFileSync(file, 'utf8')).toBe('new-token');
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  test('a missing directory (one level, as a StateDir not made yet) is made 0700, the file in it 0600', () => {
    const file = join(dir, 'state', 'token');
    writeTokenHint(file, 'the-token');
    expect(readFileSync(file, 'utf8')).toBe('the-token');
    expect(statSync(join(dir, 'state')).mode & 0o777).toBe(0o700);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    // An existing directory is used as it is.
    writeTokenHint(join(dir, 'state', 'token2'), 'the-token');
    expect(readFileSync(join(dir, 'state', 'token2'), 'utf8')).toBe('the-token');
  });

  test('the error names the cause of the first step that failed: EROFS for a directory that cannot be made', () => {
    const ro = join(dir, 'ro');
    mkdirSync(ro);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,ro', 'tmpfs', ro]);
    mounts.push(ro);
    const file = join(ro, 'state', 'token');
    const err = writeError(file, 'secret-token-value');
    expect(err.code).toBe('config');
    expect(err.message).toBe(`cannot write TokenHintFile ${file}: EROFS`);
    const missing = join(dir, 'no', 'such', 'token');
    expect(writeError(missing, 'x').message).toBe(`cannot write TokenHintFile ${missing}: ENOENT`);
  });

  test('a token file that cannot be written is an error naming TokenHintFile and what to do', () => {
    const blocker = join(dir, 'not-a-dir');
    writeFileSync(blocker, '');
    mkdirSync(join(dir, 'ok'), { recursive: true });
    let caught: unknown;
    try {
      writeTokenHint(join(blocker, 'sub', 'token'), 'secret-token-value');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(AgentError);
    expect((caught as AgentError).message).toContain('TokenHintFile');
    expect((caught as AgentError).hint).toMatch(/TokenHintFile/);
    expect(JSON.stringify(caught) + String((caught as Error).message)).not.toContain('secret-token-value');
  });
});
