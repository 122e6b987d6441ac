// The process token orchestrator learns at submit-agent time and sends back on every call.
import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';

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
  writeFileSync(file, token, { mode: 0o600 });
}
