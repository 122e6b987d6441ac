// The small checks the built-in transfer's guarantees rest on, each pinned by what it must accept and
// refuse: checksums (format and value), the key proof (bound to key, nonce and direction; strict MAC
// format), and the manifest rules (paths, owners, modes, sizes, parents, symlinks, resume).
import { describe, expect, test } from '@jest/globals';
import { createHash } from 'node:crypto';
import { xxh3 } from '@node-rs/xxhash';
import { frameKeys, newAuthKey, newNonce, proof, proofMatches } from '../src/transfer/auth.js';
import { CHECKSUM_ALGORITHMS, DEFAULT_CHECKSUM, createChecksum, isChecksumAlgorithm } from '../src/transfer/checksum.js';
import { alreadyVerified, safeRelativePath, STAGING_DIR, validateManifest } from '../src/transfer/manifest.js';
import { tokensEqual } from '../src/token.js';
import { AgentError } from '../src/errors.js';

function digestOf(algorithm: 'xxh3-64' | 'sha256', ...parts: string[]): string {
  const c = createChecksum(algorithm);
  for (const p of parts) c.update(Buffer.from(p));
  return c.digest();
}

describe('checksums', () => {
  test('xxh3-64 is the default and gives the reference values, as "xxh3-64:" and 16 hex digits', () => {
    expect(DEFAULT_CHECKSUM).toBe('xxh3-64');
    expect(digestOf('xxh3-64')).toBe('xxh3-64:2d06800538d394c2');
    expect(digestOf('xxh3-64', 'abc')).toBe('xxh3-64:78af5f94892f3950');
    expect(digestOf('xxh3-64', 'a', 'b', 'c')).toBe('xxh3-64:78af5f94892f3950');
    // A value with leading zero digits keeps all 16 of them.
    const small = Array.from({ length: 2000 }, (_, i) => String(i)).find((x) => {
      const h = xxh3.Xxh3.withSeed();
      h.update(Buffer.from(x));
      return h.digest() < 1n << 60n;
    });
    expect(small).toBeDefined();
    expect(digestOf('xxh3-64', small!)).toMatch(/^xxh3-64:0[0-9a-f]{15}$/);
  });

  test('sha256 gives the standard digest, as "sha256:" and 64 hex digits', () => {
    expect(digestOf('sha256', 'abc')).toBe(`sha256:${createHash('sha256').update('abc').digest('hex')}`);
    expect(digestOf('sha256', 'ab', 'c')).toBe('sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(digestOf('sha256', 'abd')).not.toBe(digestOf('sha256', 'abc'));
  });

  test('only the known algorithms are accepted from a peer', () => {
    expect([...CHECKSUM_ALGORITHMS]).toEqual(['xxh3-64', 'sha256']);
    for (const ok of ['xxh3-64', 'sha256']) expect(isChecksumAlgorithm(ok)).toBe(true);
    for (const bad of ['md5', 'SHA256', 'xxh3', '', undefined, null, 7, ['sha256']]) expect(isChecksumAlgorithm(bad)).toBe(false);
  });
});

describe('the transfer key proof', () => {
  const key = newAuthKey();
  const nonce = newNonce();

  test('keys and nonces are fresh random hex', () => {
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    expect(newAuthKey()).not.toBe(key);
    expect(nonce).toMatch(/^[0-9a-f]{48}$/);
    expect(newNonce()).not.toBe(nonce);
  });

  test('a proof matches only for the same key, nonce and direction', () => {
    const mac = proof(key, 'sender', nonce);
    expect(mac).toMatch(/^[0-9a-f]{64}$/);
    expect(proofMatches(key, 'sender', nonce, mac)).toBe(true);
    expect(proofMatches(key, 'receiver', nonce, mac)).toBe(false);
    expect(proofMatches(key, 'sender', newNonce(), mac)).toBe(false);
    expect(proofMatches(newAuthKey(), 'sender', nonce, mac)).toBe(false);
    expect(proof(key, 'receiver', nonce)).not.toBe(mac);
  });

  test('proofs and frame keys are the protocol\'s fixed values, so agents of different versions agree', () => {
    // Known answers: a changed label, salt or hash is a protocol change that older peers would refuse.
    const fixedKey = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff';
    const receiverNonce = 'a'.repeat(48);
    const senderNonce = 'b'.repeat(48);
    expect(proof(fixedKey, 'sender', receiverNonce)).toBe('9a04b0e018987bbb1ce6f75acae042d592bf8a40400f0306fd577b378d2ed044');
    expect(proof(fixedKey, 'receiver', senderNonce)).toBe('dfb4c4c9451915cfe92eb1f815d8777d1dd849267e22c376621520ada74dfeb4');
    const keys = frameKeys(fixedKey, receiverNonce, senderNonce);
    expect(keys.senderToReceiver.toString('hex')).toBe('01746a83a4733826d60b3eb5e716eb695d6e5a174607d0e27d7780e4f86c0107');
    expect(keys.receiverToSender.toString('hex')).toBe('932c6d2edabfa5989fca95d0792228b7acc086a91cdf1877aadc5b2aaa59d495');
    // The nonces' order is part of the salt.
    expect(frameKeys(fixedKey, senderNonce, receiverNonce).senderToReceiver.toString('hex')).toBe('2fca1c479e8c05f537db1845fe252bbc9b4097e5556e99c5d53b5870241aa266');
  });

  test('a MAC that is not exactly 64 lowercase hex digits is refused without an exception', () => {
    const mac = proof(key, 'sender', nonce);
    for (const bad of [mac.toUpperCase(), mac.slice(1), `${mac}0`, ` ${mac}`, `${mac}\n`, '', undefined, null, 12, [mac], { mac }]) {
      expect(proofMatches(key, 'sender', nonce, bad)).toBe(false);
    }
  });
});

describe('the process token comparison', () => {
  test('equal only when byte for byte equal; a missing, shorter, longer or multi-byte look-alike token is refused', () => {
    expect(tokensEqual('abc123', 'abc123')).toBe(true);
    for (const bad of [undefined, '', 'abc12', 'abc1234', 'abc124', 'ABC123', 'abc12é']) expect(tokensEqual('abc123', bad)).toBe(false);
    expect(tokensEqual('abcdé', 'abcdef')).toBe(false);
  });
});

describe('manifest rules', () => {
  const owner = { uid: 27, gid: 27 };
  const file = (path: string, extra: Record<string, unknown> = {}) => ({ type: 'file', path, size: 10, mode: 0o640, mtimeMs: 1000, ...owner, ...extra });
  const dir = (path: string, extra: Record<string, unknown> = {}) => ({ type: 'dir', path, mode: 0o750, mtimeMs: 1000, ...owner, ...extra });
  const link = (path: string, target: unknown) => ({ type: 'symlink', path, target, ...owner });
  const dest = '/x/data';

  test('a good manifest comes back typed and complete', () => {
    expect(validateManifest([dir('db1'), file('db1/t.ibd'), link('db1/l', 't.ibd'), file('ibdata1', { size: 0 })], dest)).toEqual([
      { type: 'dir', path: 'db1', mode: 0o750, uid: 27, gid: 27, mtimeMs: 1000 },
      { type: 'file', path: 'db1/t.ibd', size: 10, mode: 0o640, uid: 27, gid: 27, mtimeMs: 1000 },
      { type: 'symlink', path: 'db1/l', target: 't.ibd', uid: 27, gid: 27 },
      { type: 'file', path: 'ibdata1', size: 0, mode: 0o640, uid: 27, gid: 27, mtimeMs: 1000 },
    ]);
    expect(validateManifest([], dest)).toEqual([]);
  });

  test('paths must be plain, relative, normalised and not the transfer\'s staging area (or its former in-datadir files)', () => {
    for (const bad of ['', '/etc/passwd', '../x', 'a/../b', 'a/./b', './a', 'a/', 'a//b', 'a\\b', 'a\0b', '..', '.', STAGING_DIR, `${STAGING_DIR}/x`, '.orchestrator-agent-transfer.json', '.orchestrator-agent-transfer-manifest.json', 7, null]) {
      expect(() => safeRelativePath(bad)).toThrow(/refusing manifest entry/);
      expect(() => validateManifest([file(bad as string)], dest)).toThrow(/refusing manifest entry/);
    }
    expect(safeRelativePath('db1/t.ibd')).toBe('db1/t.ibd');
    expect(safeRelativePath('..hidden')).toBe('..hidden');
  });

  test('refusals are 403 with a hint for path problems, 400 for malformed manifests', () => {
    let err: unknown;
    try {
      validateManifest([file('../x')], dest);
    } catch (e) {
      err = e;
    }
    expect(err).toEqual(expect.objectContaining({ code: 'forbidden', hint: expect.stringMatching(/relative/) }));
    for (const bad of [{}, 'x', null, [null], ['x']]) {
      let e: unknown;
      try {
        validateManifest(bad, dest);
      } catch (x) {
        e = x;
      }
      expect(e).toEqual(expect.objectContaining({ code: 'bad_request', message: expect.stringMatching(/manifest entr/) }));
    }
  });

  test('each refusal names the entry and says why', () => {
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [file(''), '""', 'not a plain relative path'],
      [file('a\\b'), '"a\\\\b"', 'not a plain relative path'],
      [file('a\0b'), '"a\\u0000b"', 'not a plain relative path'],
      [file('/etc/passwd'), '"/etc/passwd"', 'absolute path'],
      [file('a//b'), '"a//b"', 'empty, "." or ".." component'],
      [file('a/..'), '"a/.."', 'empty, "." or ".." component'],
      [file('.orchestrator-agent-transfer.tmp/x'), '".orchestrator-agent-transfer.tmp/x"', 'name reserved for the transfer itself'],
      [file('f', { gid: -1 }), '"f"', 'bad owner'],
      [file('f', { mtimeMs: '1000' }), '"f"', 'bad mode or mtime'],
      [file('f', { size: -1 }), '"f"', 'bad size'],
      [link('l', ''), '"l"', 'bad symlink target'],
      [link('l', '/etc/passwd'), '"l"', 'symlink target /etc/passwd is absolute'],
      [link('l', '../data2'), '"l"', 'symlink target ../data2 points outside the destination'],
      [{ type: 'fifo', path: 'p', ...owner }, '"p"', 'unknown type "fifo"'],
    ];
    for (const [entry, quoted, why] of cases) {
      expect(() => validateManifest([entry], dest)).toThrow(new AgentError('forbidden', `refusing manifest entry ${quoted}: ${why}`));
    }
  });

  test('owners, modes, mtimes and sizes must be sane numbers', () => {
    const bad: Array<Record<string, unknown>> = [
      file('f', { uid: -1 }),
      file('f', { gid: 1.5 }),
      file('f', { uid: '0' }),
      file('f', { mode: 0o10000 }),
      file('f', { mode: -1 }),
      file('f', { mode: '644' }),
      file('f', { mtimeMs: Infinity }),
      file('f', { mtimeMs: NaN }),
      file('f', { mtimeMs: '1000' }),
      file('f', { size: -1 }),
      file('f', { size: 1.5 }),
      file('f', { size: Number.MAX_SAFE_INTEGER + 2 }),
      file('f', { size: '10' }),
      dir('d', { mode: 0o10000 }),
      dir('d', { mtimeMs: undefined }),
      { type: 'fifo', path: 'p', ...owner },
      { type: 'fifo', path: 'p', target: 'ibdata1', ...owner },
      { type: 'hardlink', path: 'p', target: 'ibdata1', mode: 0o640, size: 1, mtimeMs: 0, ...owner },
      { type: undefined, path: 'p', ...owner },
    ];
    for (const entry of bad) expect(() => validateManifest([entry], dest)).toThrow(/refusing manifest entry/);
    expect(validateManifest([file('f', { mode: 0o7777, uid: 0, gid: 0, mtimeMs: -5.5, size: Number.MAX_SAFE_INTEGER })], dest)).toHaveLength(1);
  });

  test('no duplicates; parents must be directories listed before their children', () => {
    expect(() => validateManifest([file('a'), file('a')], dest)).toThrow(/listed twice/);
    expect(() => validateManifest([dir('a'), dir('a')], dest)).toThrow(/listed twice/);
    expect(() => validateManifest([file('d/f'), dir('d')], dest)).toThrow(/parent d is not a directory listed before it/);
    expect(() => validateManifest([file('d'), file('d/f')], dest)).toThrow(/parent d is not a directory/);
    expect(() => validateManifest([link('d', '.'), file('d/f')], dest)).toThrow(/parent d is not a directory/);
    expect(validateManifest([dir('d'), dir('d/e'), file('d/e/f')], dest)).toHaveLength(3);
  });

  test('symlinks must have a relative target that stays inside the destination', () => {
    for (const target of ['', '/etc/passwd', 'a\0b', 7, undefined]) expect(() => validateManifest([link('l', target)], dest)).toThrow(/refusing manifest entry/);
    for (const target of ['..', '../data2', '../data2/f', '../../etc']) expect(() => validateManifest([link('l', target)], dest)).toThrow(/points outside/);
    expect(() => validateManifest([dir('d'), link('d/l', '../../data2')], dest)).toThrow(/points outside/);
    expect(validateManifest([link('l', '.')], dest)).toHaveLength(1);
    expect(validateManifest([dir('d'), link('d/l', '../ibdata1')], dest)).toHaveLength(2);
  });

  test('a file is skipped on resume only when the receiver verified the same path, size and mtime', () => {
    const entry = { type: 'file' as const, path: 'f', size: 10, mode: 0o640, uid: 0, gid: 0, mtimeMs: 1000 };
    const have = { path: 'f', size: 10, mtimeMs: 1000, checksum: 'xxh3-64:0000000000000001' };
    expect(alreadyVerified(entry, have)).toBe(true);
    expect(alreadyVerified(entry, undefined)).toBe(false);
    expect(alreadyVerified(entry, { ...have, size: 11 })).toBe(false);
    expect(alreadyVerified(entry, { ...have, mtimeMs: 1001 })).toBe(false);
  });
});
