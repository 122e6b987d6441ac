// Strict patterns for every name and path that arrives in a request. Validated once, at the boundary.
import { isAbsolute, normalize, resolve, sep } from 'node:path';
import { badRequest, AgentError } from './errors.js';

const patterns = {
  seedId: /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/,
  // LVM names: letters, digits, and + _ . - (lvm(8)); optionally vg/lv or /dev/vg/lv.
  lvName: /^(\/dev\/)?([A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,127}\/)?[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,127}$/,
  lvPattern: /^[A-Za-z0-9+_.-]{0,128}$/,
  // Not all digits and dots: such a name is an address ("256.1.1.1", "1.2.3"), and the ipv4 pattern judges it.
  hostname: /^(?=.{1,253}$)(?![\d.]*$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$/,
  ipv4: /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/,
  commandName: /^[A-Za-z0-9_.-]{1,64}$/,
  relayLogName: /^[A-Za-z0-9_.-]{1,255}$/,
};

export function seedId(value: unknown): string {
  if (typeof value !== 'string' || !patterns.seedId.test(value) || value.includes('..')) {
    throw badRequest(`invalid seed id ${JSON.stringify(value)}`, 'use 1-128 letters, digits, "_", "." or "-"');
  }
  return value;
}

export function lvName(value: unknown): string {
  if (typeof value !== 'string' || !patterns.lvName.test(value) || value.includes('..')) {
    throw badRequest(`invalid logical volume name ${JSON.stringify(value)}`, 'use an LV name, vg/lv or /dev/vg/lv');
  }
  return value;
}

/**
 * A snapshot named in a request: an LV name (lv, vg/lv, /dev/vg/lv), or with the btrfs backend also the
 * full path of a subvolume directly under its snapshots directory (what /api/lvs reports as Path).
 */
export function snapshotName(value: unknown, snapshotsDir?: string): string {
  if (snapshotsDir && typeof value === 'string' && value.startsWith('/') && !value.startsWith('/dev/')) {
    const dir = resolve(snapshotsDir);
    const base = value.slice(dir.length + 1);
    if (value.startsWith(dir + sep) && patterns.lvName.test(base) && !base.includes('/') && !base.includes('..')) return value;
    throw badRequest(`invalid snapshot ${JSON.stringify(value)}`, `give a name or a path directly under ${dir}`);
  }
  return lvName(value);
}

export function lvPattern(value: unknown): string {
  if (value === undefined) return '';
  if (typeof value !== 'string' || !patterns.lvPattern.test(value)) {
    throw badRequest(`invalid logical volume pattern ${JSON.stringify(value)}`, 'a pattern is a plain substring of LV names');
  }
  return value;
}

export function host(value: unknown): string {
  if (typeof value !== 'string' || !(patterns.hostname.test(value) || patterns.ipv4.test(value))) {
    throw badRequest(`invalid host ${JSON.stringify(value)}`, 'use a DNS name or an IPv4 address');
  }
  return value;
}

export function port(value: unknown): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw badRequest(`invalid port ${JSON.stringify(value)}`, 'use 1-65535');
  return n;
}

export function nonNegativeInt(name: string, value: unknown): number {
  if (Number.isInteger(value) && (value as number) >= 0) return value as number;
  if (typeof value === 'string' && /^\d{1,15}$/.test(value)) return Number(value);
  throw badRequest(`invalid ${name} ${JSON.stringify(value)}`, 'use a non-negative integer');
}

/** A duration in whole seconds within [min, max]; the 400 names the allowed range. */
export function durationSeconds(name: string, value: unknown, min: number, max: number): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d{1,15}$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) {
    throw badRequest(`invalid ${name} ${JSON.stringify(value)}: must be whole seconds from ${min} to ${max}`, `give ${name} in seconds, ${min}..${max} (${Math.round(max / 86400)} days at most)`);
  }
  return n;
}

export function commandName(value: unknown): string {
  if (typeof value !== 'string' || !patterns.commandName.test(value)) throw badRequest(`invalid command name ${JSON.stringify(value)}`);
  return value;
}

export function relayLogName(value: unknown): string {
  if (typeof value !== 'string' || !patterns.relayLogName.test(value) || value === '.' || value === '..') {
    throw badRequest(`invalid relay log name ${JSON.stringify(value)}`);
  }
  return value;
}

/** True when path is root itself or lies under root (after normalisation; no symlink games through "..").*/
export function isWithin(root: string, path: string): boolean {
  const r = resolve(root);
  const p = resolve(path);
  return p === r || p.startsWith(r.endsWith(sep) ? r : r + sep);
}

/** An absolute path inside one of the allowed roots, or a 403 naming them. */
export function pathWithin(value: unknown, roots: readonly string[], what = 'path'): string {
  if (typeof value !== 'string' || !isAbsolute(value) || value.includes('\0')) {
    throw badRequest(`invalid ${what} ${JSON.stringify(value)}`, 'give an absolute path');
  }
  const path = normalize(value);
  const allowed = roots.filter((r) => r !== '');
  if (!allowed.some((root) => isWithin(root, path))) {
    throw new AgentError('forbidden', `${what} ${path} is outside the places this agent may read`, {
      hint: `allowed: ${allowed.join(', ') || '(none configured)'}; add it to DiskUsageAllowedPaths if it should be`,
    });
  }
  return path;
}
