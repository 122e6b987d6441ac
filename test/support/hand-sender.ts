// A sender that speaks the built-in transfer protocol by hand over real TCP, so a test can do what the real
// sender never does: stop between two frames, end early, or lie. It uses the protocol module's own framing
// and the key proof, so it follows the wire format; what it sends is up to the test.
import { connect, type Socket } from 'node:net';
import { frameKeys, proof } from '../../src/transfer/auth.js';
import { createChecksum } from '../../src/transfer/checksum.js';
import { FrameReader, FrameType, FrameWriter, MAGIC, PROTOCOL_VERSION, type FrameTypeValue } from '../../src/transfer/protocol.js';

export interface HandFile {
  path: string;
  content: Buffer;
}

export class HandSender {
  private constructor(
    readonly socket: Socket,
    readonly reader: FrameReader,
    private readonly writer: FrameWriter,
    private readonly files: HandFile[],
  ) {}

  /** Queues one frame, tagged as the protocol requires after the handshake. */
  private frame(type: FrameTypeValue, payload: Buffer): void {
    for (const b of this.writer.encode(type, [payload])) this.socket.write(b);
  }

  /** Any frame the test wants next, tagged: the receiver checks the tag, then the content. */
  sendFrame(type: FrameTypeValue, payload: Buffer): void {
    this.frame(type, payload);
  }

  private json(type: FrameTypeValue, body: unknown): void {
    this.frame(type, Buffer.from(JSON.stringify(body), 'utf8'));
  }

  /** Connects, proves the key and sends a manifest listing files (all regular files at the top level). */
  static async start(port: number, authKey: string, files: HandFile[]): Promise<HandSender> {
    const socket = connect({ host: '127.0.0.1', port });
    socket.on('error', () => undefined); // a receiver that refuses closes the connection; the reader reports it
    await new Promise((r) => socket.once('connect', r));
    const reader = new FrameReader(socket);
    const writer = new FrameWriter(socket);
    socket.write(MAGIC);
    const hello = (await reader.json([FrameType.hello], 'hello')).body as { nonce: string };
    const nonce = 'n'.repeat(48);
    await writer.json(FrameType.auth, { mac: proof(authKey, 'sender', hello.nonce), nonce, version: PROTOCOL_VERSION });
    const keys = frameKeys(authKey, hello.nonce, nonce);
    reader.authenticate(keys.receiverToSender);
    writer.authenticate(keys.senderToReceiver);
    await reader.json([FrameType.welcome], 'welcome');
    const entries = files.map((f) => ({ type: 'file', path: f.path, size: f.content.length, mode: 0o640, uid: 0, gid: 0, mtimeMs: 1_700_000_000_000 }));
    const sender = new HandSender(socket, reader, writer, files);
    sender.json(FrameType.manifest, { algorithm: 'xxh3-64', entries });
    return sender;
  }

  /** Sends file number index whole and correct: begin, data, end with its true checksum. */
  sendFile(index: number): void {
    const f = this.files[index]!;
    const hash = createChecksum('xxh3-64');
    hash.update(f.content);
    const digest = hash.digest();
    this.json(FrameType.fileBegin, { index, offset: 0 });
    if (f.content.length > 0) this.frame(FrameType.data, f.content);
    // Files here are smaller than one resume chunk: the chunk ends with the file.
    this.json(FrameType.chunk, { index, end: f.content.length, checksum: digest });
    this.json(FrameType.fileEnd, { index, checksum: digest });
  }

  /** The final frame that says every file was sent. */
  sendEnd(): void {
    this.json(FrameType.end, {});
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
