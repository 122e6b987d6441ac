// TokenHintFile holds the process token: readable by root only, even when an older file (the original
// agent wrote 0644) is already there, and a file that cannot be written names the key and the fix.
import { afterAll, describe, expect, test } from '@jest/globals';
import { chmodSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentError } from '../src/errors.js';
import { writeTokenHint } from '../src/token.js';
import { tempDir } from './support/agent-process.js';

const dir = tempDir('oa-token-file-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('TokenHintFile', () => {
  test('an existing world-readable token file is rewritten 0600', () => {
    const file = join(dir, 'token');
    writeFileSync(file, 'old-token');
    chmodSync(file, 0o644);
    writeTokenHint(file, 'new-token');
    expect(readFileSync(file, 'utf8')).toBe('new-token');
    expect(statSync(file).mode & 0o777).toBe(0o600);
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
