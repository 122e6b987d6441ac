// Sender authentication: the receiving seed makes a random key and hands it to the sender through the seed
// API; each side proves it knows the key with an HMAC over the other side's fresh nonce.
import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';

/** A new per-seed transfer key (64 hex characters). */
export function newAuthKey(): string {
  return randomBytes(32).toString('hex');
}

export function newNonce(): string {
  return randomBytes(24).toString('hex');
}

/** role binds the proof to its direction, so a receiver's answer cannot be replayed as a sender's. */
export function proof(authKey: string, role: 'sender' | 'receiver', nonce: string): string {
  return createHmac('sha256', authKey).update(`orchestrator-agent-transfer/1 ${role} ${nonce}`).digest('hex');
}

export function proofMatches(authKey: string, role: 'sender' | 'receiver', nonce: string, mac: unknown): boolean {
  if (typeof mac !== 'string' || !/^[0-9a-f]{64}$/.test(mac)) return false;
  return timingSafeEqual(Buffer.from(proof(authKey, role, nonce), 'hex'), Buffer.from(mac, 'hex'));
}

/**
 * The keys that tag every frame after the handshake (protocol.ts FrameSealer), one per direction: HKDF-SHA256
 * of the seed's key, salted with both handshake nonces, so each session (and each direction) has its own.
 */
export function frameKeys(authKey: string, receiverNonce: string, senderNonce: string): { senderToReceiver: Buffer; receiverToSender: Buffer } {
  const derive = (direction: string) =>
    Buffer.from(hkdfSync('sha256', authKey, `${receiverNonce}:${senderNonce}`, `orchestrator-agent-transfer/2 frames ${direction}`, 32));
  return { senderToReceiver: derive('sender-to-receiver'), receiverToSender: derive('receiver-to-sender') };
}
