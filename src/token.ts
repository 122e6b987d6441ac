// The process token orchestrator learns at submit-agent time and sends back on every call.
import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { AgentError } from './errors.js';
import { dirname } from 'node:path';

export function newProcessToken(): string {
  return createHash('sha256').update(randomBytes(32)).digest('hex');
}

export function tokensEqual(expected: string, given: string | undefined): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** TokenHintFile: readable by root only, unlike the original's 0644. */
export function writeTokenHint(file: string, token: string): void {
  // Its directory may not exist yet (the shipped config puts it under a StateDir made later at start):
  // one level is made, as a StateDir would be; a missing grandparent is the operator's to create.
  try {
    try {
      mkdirSync(dirname(file), { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    writeFileSync(file, token, { mode: 0o600 });
    // writeFileSync's mode only applies to a new file: one left 0644 (by the original agent) is tightened.
    chmodSync(file, 0o600);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new AgentError('config', `cannot write TokenHintFile ${file}: ${e.code ?? e.message}`, {
      hint: `make ${dirname(file)} exist and writable by the agent, or set TokenHintFile to "" to write no token file`,
    });
  }
}
