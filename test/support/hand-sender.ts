// A sender that speaks the built-in transfer protocol by hand over real TCP, so a test can do what the real
// sender never does: stop between two frames, end early, or lie. It uses the protocol module's own framing
// and the key proof, so it follows the wire format; what it sends is up to the test.
import { connect, type Socket } from 'node:net';
import { proof } from '../../src/transfer/auth.js';
import { createChecksum } from '../../src/transfer/checksum.js';
import { FrameReader, FrameType, MAGIC, frameHeader, jsonFrame } from '../../src/transfer/protocol.js';

export interface HandFile {
  path: string;
  content: Buffer;
}

export class HandSender {
  private constructor(
    readonly socket: Socket,
    readonly reader: FrameReader,
    private readonly files: HandFile[],
  ) {}

  /** Connects, proves the key and sends a manifest listing files (all regular files at the top level). */
  static async start(port: number, authKey: string, files: HandFile[]): Promise<HandSender> {
    const socket = connect({ host: '127.0.0.1', port });
    socket.on('error', () => undefined); // a receiver that refuses closes the connection; the reader reports it
    await new Promise((r) => socket.once('connect', r));
    const reader = new FrameReader(socket);
    socket.write(MAGIC);
    const hello = (await reader.json([FrameType.hello], 'hello')).body as { nonce: string };
    socket.write(jsonFrame(FrameType.auth, { mac: proof(authKey, 'sender', hello.nonce), nonce: 'n'.repeat(48) }));
    await reader.json([FrameType.welcome], 'welcome');
    const entries = files.map((f) => ({ type: 'file', path: f.path, size: f.content.length, mode: 0o640, uid: 0, gid: 0, mtimeMs: 1_700_000_000_000 }));
    socket.write(jsonFrame(FrameType.manifest, { algorithm: 'xxh3-64', entries }));
    return new HandSender(socket, reader, files);
  }

  /** Sends file number index whole and correct: begin, data, end with its true checksum. */
  sendFile(index: number): void {
    const f = this.files[index]!;
    const hash = createChecksum('xxh3-64');
    hash.update(f.content);
    this.socket.write(jsonFrame(FrameType.fileBegin, { index }));
    if (f.content.length > 0) this.socket.write(Buffer.concat([frameHeader(FrameType.data, f.content.length), f.content]));
    this.socket.write(jsonFrame(FrameType.fileEnd, { index, checksum: hash.digest() }));
  }

  /** The final frame that says every file was sent. */
  sendEnd(): void {
    this.socket.write(jsonFrame(FrameType.end, {}));
  }

  /** Closes the sending direction cleanly, right after the last whole frame. */
  async closeAtFrameBoundary(): Promise<void> {
    await new Promise<void>((r) => this.socket.end(r));
  }

  /** The receiver's answer (RESULT or ERROR frame), or undefined when it only closed. */
  async answer(): Promise<{ type: number; body: unknown } | undefined> {
    try {
      return await this.reader.json([FrameType.result], 'answer');
    } catch {
      return undefined;
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}
