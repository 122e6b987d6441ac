// The strict patterns every name, number and path from a request passes (README, Safety): each rule is
// pinned by the values at its edges, accepted and refused, so a loosened pattern (a lost anchor, a longer
// limit, a missing character class) fails here. Refusals are 400 with the value in the message, or a 403
// naming the allowed places.
import { describe, expect, test } from '@jest/globals';
import { join } from 'node:path';
import { AgentError } from '../src/errors.js';
import * as validate from '../src/validate.js';

function refusal(fn: () => unknown): AgentError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AgentError);
    return err as AgentError;
  }
  throw new Error('expected a refusal');
}

/** Each accepted value comes back unchanged; each refused one is a 400 whose message quotes it. */
function pins(check: (v: unknown) => unknown, accepted: unknown[], refused: unknown[], what: RegExp): void {
  for (const v of accepted) expect([v, check(v)]).toEqual([v, v]);
  for (const v of refused) {
    const err = refusal(() => check(v));
    expect([v, err.code, err.httpStatus]).toEqual([v, 'bad_request', 400]);
    expect(err.message).toMatch(what);
    expect(err.message).toContain(JSON.stringify(v) ?? 'undefined');
  }
}

const x = (n: number, c = 'a') => c.repeat(n);
/** The characters every name class takes besides letters and digits. */
const nonString = [undefined, null, 5, ['a'], { a: 1 }];

describe('names from requests', () => {
  test('seed ids: 1-128 of letters, digits, "_", "." and "-", starting with a letter or digit, no ".."', () => {
    pins(
      validate.seedId,
      ['a', 'Z', '7', 'seed-1', 'aZ09_.-', `b${'Az9_.-'.repeat(21)}`, x(128)],
      ['', '-a', '_a', '.a', 'a/b', 'a b', 'a..b', '..', 'é', 'a\n', x(129), ...nonString],
      /invalid seed id/,
    );
    expect(refusal(() => validate.seedId('a b')).hint).toMatch(/1-128 letters, digits/);
  });

  test('LV names: lv, vg/lv or /dev/vg/lv of LVM characters, each part up to 128, no ".."', () => {
    pins(
      validate.lvName,
      ['lv', 'A', '9', '+', '_', '.x', 'a+b_c.d-e', 'vg/lv', 'Vg+9_.-/Lv+9_.-', '/dev/vg/lv', '/dev/lv', `${x(128)}/${x(128)}`, x(128), `/dev/${x(128, 'v')}/${x(128)}`],
      ['', '-lv', 'vg/-lv', '-vg/lv', 'vg/', '/lv', '/vg/lv', 'dev/vg/lv', '/etc/vg/lv', '/dev/a/b/c', 'vg/lv/x', 'a b', 'a*', 'a..b', 'vg/..', x(129), `${x(129)}/lv`, `vg/${x(129)}`, ...nonString],
      /invalid logical volume name/,
    );
    expect(refusal(() => validate.lvName('a b')).hint).toMatch(/vg\/lv/);
  });

  test('snapshots: an LV name, or with a snapshots directory a path directly under it', () => {
    const dir = '/srv/snapshots';
    for (const ok of [`${dir}/snap-1`, `${dir}/A+_.9`, `${dir}/${x(128)}`]) expect(validate.snapshotName(ok, `${dir}/`)).toBe(ok);
    expect(validate.snapshotName('vg/lv', dir)).toBe('vg/lv');
    expect(validate.snapshotName('/dev/vg/lv', dir)).toBe('/dev/vg/lv');
    expect(validate.snapshotName('lv')).toBe('lv');
    for (const bad of [`${dir}/a/b`, `${dir}/`, `${dir}/..`, `${dir}/..x`, `${dir}/-x`, `${dir}/a b`, `${dir}2/snap`, '/srv/snap', '/srv/snapshots', `${dir}/${x(129)}`]) {
      const err = refusal(() => validate.snapshotName(bad, dir));
      expect([bad, err.code]).toEqual([bad, 'bad_request']);
      expect(err.message).toContain(`invalid snapshot ${JSON.stringify(bad)}`);
      expect(err.hint).toBe(`give a name or a path directly under ${dir}`);
    }
    // Without a snapshots directory (LVM), a path is no LV name.
    expect(refusal(() => validate.snapshotName(`${dir}/snap-1`)).message).toMatch(/invalid logical volume name/);
    expect(refusal(() => validate.snapshotName('/dev/vg/a b', dir)).message).toMatch(/invalid logical volume name/);
    for (const bad of nonString) expect(refusal(() => validate.snapshotName(bad, dir)).message).toMatch(/invalid logical volume name/);
  });

  test('LV patterns: absent is "", else up to 128 LVM characters', () => {
    expect(validate.lvPattern(undefined)).toBe('');
    pins(validate.lvPattern, ['', 'a', 'Az09+_.-', x(128)], [x(129), 'a b', 'a*', 'a/b', null, 5], /invalid logical volume pattern/);
    expect(refusal(() => validate.lvPattern('a b')).hint).toMatch(/plain substring/);
  });

  test('hosts: a DNS name (labels of up to 63, 253 in all) or a dotted IPv4 address', () => {
    const label = (c: string) => x(63, c);
    const longest = `${label('a')}.${label('b')}.${label('c')}.${x(61, 'd')}`; // 253
    pins(
      validate.host,
      ['a', 'Z', 'db1', 'db-1', 'A-9', 'db-1.example.com', 'x.Y9', '9db.a-b.c0m', label('a'), `a.${label('b')}`, longest, 'localhost',
        '0.0.0.0', '1.2.3.4', '255.255.255.255', '249.250.251.252', '200.201.199.100', '10.99.9.0', '172.16.254.1'],
      ['', '-db', 'db_1', 'db..x', 'db.', '.db', 'db.-x', 'a b', 'db/x', 'db:3306', x(64), `a.${x(64)}`, `${longest}x`, `${longest}.e`,
        '256.1.1.1', '1.256.1.1', '1.1.1.256', '260.1.1.1', '300.1.1.1', '1.2.3.1000', '01.2.3.4', '1.02.3.4', '1.2.3', '1.2.3.4.5', '1..2.3', '1.2.3.', '1234', '9',
        ...nonString],
      /invalid host/,
    );
    expect(refusal(() => validate.host('db_1')).hint).toMatch(/DNS name or an IPv4/);
  });

  test('command and relay log names: 1-64 or 1-255 of letters, digits, "_", "." and "-"; "." and ".." are no file', () => {
    pins(validate.commandName, ['a', 'Az09_.-', '.', x(64)], ['', x(65), 'a b', 'a/b', 'a;b', '+', ...nonString], /invalid command name/);
    pins(validate.relayLogName, ['a', 'relay-bin.000001', 'Az09_.-', '...', x(255)], ['', '.', '..', x(256), 'a b', 'a/b', '../x', '+', ...nonString], /invalid relay log name/);
  });
});

describe('numbers from requests', () => {
  test('ports: 1-65535, as a number or a string of digits', () => {
    for (const [given, want] of [[1, 1], [65535, 65535], ['1', 1], ['65535', 65535], ['00080', 80], ['3306', 3306]] as const) {
      expect([given, validate.port(given)]).toEqual([given, want]);
    }
    pins(validate.port, [], [0, -1, 65536, 1.5, NaN, '0', '65536', '123456', '', '1a', '-1', '+1', ' 1', '1 ', '1e3', '0x50', null, undefined, [80], true], /invalid port/);
    expect(refusal(() => validate.port(0)).hint).toBe('use 1-65535');
  });

  test('non-negative integers: a number, or a string of 1-15 digits', () => {
    for (const [given, want] of [[0, 0], [7, 7], ['0', 0], ['42', 42], ['123456789012345', 123456789012345]] as const) {
      expect([given, validate.nonNegativeInt('offset', given)]).toEqual([given, want]);
    }
    pins((v) => validate.nonNegativeInt('offset', v), [], [-1, 1.5, NaN, '', '1234567890123456', '-1', '1a', 'a1', ' 1', '1 ', '1e3', null, undefined, [5], true], /invalid offset/);
    expect(refusal(() => validate.nonNegativeInt('offset', -1)).hint).toMatch(/non-negative integer/);
  });

  test('durations: whole seconds within the range, which the refusal names', () => {
    const d = (v: unknown) => validate.durationSeconds('timeoutSeconds', v, 10, 2 * 86400);
    for (const [given, want] of [[10, 10], [172800, 172800], ['10', 10], ['172800', 172800], ['0000011', 11]] as const) expect([given, d(given)]).toEqual([given, want]);
    for (const bad of [9, 172801, 10.5, NaN, '9', '172801', '', '1a', 'a1', ' 12', '12 ', '1e3', '0x20', '1234567890123456', null, undefined, [11], true]) {
      const err = refusal(() => d(bad));
      expect([bad, err.code]).toEqual([bad, 'bad_request']);
      expect(err.message).toBe(`invalid timeoutSeconds ${JSON.stringify(bad)}: must be whole seconds from 10 to 172800`);
      expect(err.hint).toBe('give timeoutSeconds in seconds, 10..172800 (2 days at most)');
    }
  });
});

describe('paths from requests', () => {
  test('isWithin: the root itself and what lies under it, never a sibling that shares a prefix', () => {
    expect(validate.isWithin('/x/data', '/x/data')).toBe(true);
    expect(validate.isWithin('/x/data/', '/x/data')).toBe(true);
    expect(validate.isWithin('/x/data', '/x/data/')).toBe(true);
    expect(validate.isWithin('/x/data', '/x/data/a/b')).toBe(true);
    expect(validate.isWithin('/x/data/', '/x/data/a')).toBe(true);
    expect(validate.isWithin('/', '/etc/passwd')).toBe(true);
    expect(validate.isWithin('/x/data', '/x/data2')).toBe(false);
    expect(validate.isWithin('/x/data', '/x/data2/a')).toBe(false);
    expect(validate.isWithin('/x/data', '/x')).toBe(false);
    expect(validate.isWithin('/x/data', '/x/data/../data2')).toBe(false);
    expect(validate.isWithin('/x/data', '/x/other/../data/a')).toBe(true);
  });

  test('pathWithin: an absolute path under an allowed root comes back normalised; anything else is refused', () => {
    const roots = ['/var/lib/mysql', '', '/srv/backup/'];
    expect(validate.pathWithin('/var/lib/mysql', roots)).toBe('/var/lib/mysql');
    expect(validate.pathWithin('/var/lib/mysql/./db//t1.ibd', roots)).toBe('/var/lib/mysql/db/t1.ibd');
    expect(validate.pathWithin('/srv/backup/x/../y', roots)).toBe('/srv/backup/y');
    for (const bad of ['', 'var/lib/mysql', './x', '/var/lib/mysql/\0x', 5, null, undefined]) {
      const err = refusal(() => validate.pathWithin(bad, roots, 'datadir'));
      expect([bad, err.code]).toEqual([bad, 'bad_request']);
      expect(err.message).toBe(`invalid datadir ${JSON.stringify(bad)}`);
      expect(err.hint).toBe('give an absolute path');
    }
    for (const bad of ['/var/lib/mysql2', '/var/lib/mysql/../mysql2/x', '/var/lib', '/etc/shadow', '/srv/backupx']) {
      const err = refusal(() => validate.pathWithin(bad, roots));
      expect([bad, err.code, err.httpStatus]).toEqual([bad, 'forbidden', 403]);
      expect(err.message).toMatch(/^path \/\S+ is outside the places this agent may read$/);
      expect(err.hint).toBe('allowed: /var/lib/mysql, /srv/backup/; add it to DiskUsageAllowedPaths if it should be');
    }
    // An empty root is no root: it must not stand for the working directory.
    const inCwd = join(process.cwd(), 'x');
    const err = refusal(() => validate.pathWithin(inCwd, ['']));
    expect(err.code).toBe('forbidden');
    expect(err.hint).toBe('allowed: (none configured); add it to DiskUsageAllowedPaths if it should be');
  });
});
