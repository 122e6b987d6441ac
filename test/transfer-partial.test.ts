// "A seed is never done on a partial copy" (README, The built-in transfer), pinned against a sender that
// speaks the protocol by hand over real TCP and stops early in the two ways the real sender never does.
import { afterAll, afterEach, describe, expect, test } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { AgentError } from '../src/errors.js';
import { MANIFEST_FILE, isTransferComplete, newAuthKey, startReceiver } from '../src/transfer/index.js';
import { FrameType } from '../src/transfer/protocol.js';
import { tempDir } from './support/agent-process.js';
import { HandSender, type HandFile } from './support/hand-sender.js';

const dirs: string[] = [];
const controllers: AbortController[] = [];
const senders: HandSender[] = [];
afterEach(() => {
  for (const c of controllers.splice(0)) c.abort();
  for (const s of senders.splice(0)) s.destroy();
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function setUp(files: HandFile[]) {
  const dest = tempDir('oa-partial-');
  const state = tempDir('oa-partial-state-');
  dirs.push(dest, state);
  const authKey = newAuthKey();
  const c = new AbortController();
  controllers.push(c);
  const receiver = await startReceiver({ destDir: dest, stateDir: state, bindAddress: '127.0.0.1', authKey, signal: c.signal });
  // Marks the outcome handled at once; each test awaits it.
  const outcome = receiver.done.then(
    (r) => ({ ok: true as const, r }),
    (err: unknown) => ({ ok: false as const, err }),
  );
  const sender = await HandSender.start(receiver.port, authKey, files);
  senders.push(sender);
  return { dest, state, sender, outcome };
}

const files: HandFile[] = [
  { path: 'ibdata1', content: randomBytes(64 * 1024) },
  { path: 'ib_logfile0', content: randomBytes(10_000) },
  { path: 'auto.cnf', content: Buffer.from('[auto]\nserver-uuid=1\n') },
];

describe('the receiver never finishes on a partial copy', () => {
  test('a whole, correct sender is accepted (the hand-written sender speaks the protocol)', async () => {
    const { dest, state, sender, outcome } = await setUp(files);
    files.forEach((_, i) => sender.sendFile(i));
    sender.sendEnd();
    const answer = await sender.answer();
    expect(answer?.type).toBe(FrameType.result);
    const o = await outcome;
    expect(o.ok).toBe(true);
    expect(await isTransferComplete(state, dest)).toBe(true);
    for (const f of files) expect(readFileSync(join(dest, f.path)).equals(f.content)).toBe(true);
    // The manifest is kept under the name a restarted or later agent looks for; nothing of the transfer stays in the datadir.
    expect(readdirSync(state)).toContain('transfer-manifest.json');
    expect(readdirSync(dest).sort()).toEqual(files.map((f) => f.path).sort());
  });

  test('a connection closed cleanly between two frames, with files missing, fails the receive and writes no manifest', async () => {
    const { dest, state, sender, outcome } = await setUp(files);
    sender.sendFile(0);
    await sender.closeAtFrameBoundary();
    const o = await outcome;
    expect(o.ok).toBe(false);
    const err = (o as { err: unknown }).err as AgentError;
    expect(err).toBeInstanceOf(AgentError);
    expect(err.message).toMatch(/closed/);
    expect(existsSync(join(state, MANIFEST_FILE))).toBe(false);
    expect(await isTransferComplete(state, dest)).toBe(false);
  });

  test('a connection closed cleanly after every file but before the end frame fails the receive and writes no manifest', async () => {
    const { dest, state, sender, outcome } = await setUp(files);
    files.forEach((_, i) => sender.sendFile(i));
    await sender.closeAtFrameBoundary();
    const o = await outcome;
    expect(o.ok).toBe(false);
    expect(existsSync(join(state, MANIFEST_FILE))).toBe(false);
  });

  test('an end frame while files are still missing fails the receive, names a missing file, tells the sender and writes no manifest', async () => {
    const { dest, state, sender, outcome } = await setUp(files);
    sender.sendFile(0);
    sender.sendFile(2);
    sender.sendEnd();
    const answer = await sender.answer();
    expect(answer?.type).toBe(FrameType.error);
    expect((answer?.body as { message: string }).message).toMatch(/ib_logfile0/);
    const o = await outcome;
    expect(o.ok).toBe(false);
    const err = (o as { err: unknown }).err as AgentError;
    expect(err).toBeInstanceOf(AgentError);
    expect(err.message).toMatch(/ib_logfile0/);
    expect(existsSync(join(state, MANIFEST_FILE))).toBe(false);
    expect(await isTransferComplete(state, dest)).toBe(false);
  });
});
