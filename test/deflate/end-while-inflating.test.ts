/**
 * The peer's end (TCP FIN, or END_STREAM over HTTP/2) arriving while frames it sent before it wait
 * for inflation: a compressed message inflating in the thread pool (recv()), or one read as a
 * stream whose reader has not read yet (recvStream()). The frames are parsed first: the message
 * arrives whole, and the close frame sent with it makes the close clean (1000).
 *
 * Before, the end was handled at once: the parser's buffered frames were dropped, the message was
 * lost (recv() got EOF, the stream failed) and the close was 1006.
 */
import { once } from 'node:events';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { constants, deflateRawSync } from 'node:zlib';
import { EOF, serve, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { closePayload, frame } from '../../packages/rfc6455/test/helpers/frames.js';
import { RawClient } from '../../packages/rfc6455/test/helpers/raw-client.js';
import { closeSession, openSession, originOf, TLS } from '../http2/helpers.js';
import { extensionOf, until } from './helpers.js';

/** Zeros: 64 MiB is about 64 KiB on the wire, over syncLimit, so recv() inflates it in the thread pool. */
const MESSAGE = 64 * 1024 * 1024;

let server: WebSocketServer;
let h2: WebSocketServer;
const accepted: Array<(conn: WebSocketConnection) => void> = [];

beforeAll(async () => {
  const handler = (conn: WebSocketConnection): void => {
    conn.on('error', () => undefined);
    accepted.shift()?.(conn);
  };
  server = await serve({ port: 0, host: '127.0.0.1', maxMessageSize: 2 * MESSAGE }, handler);
  h2 = await serve({ port: 0, host: '127.0.0.1', http2: true, tls: TLS, maxMessageSize: 2 * MESSAGE }, handler);
});
afterAll(() => Promise.all([server.close(), h2.close()]));

/** A compressed binary message of MESSAGE zeros, then a close frame (1000 'done'), masked. */
function messageThenClose(): Buffer {
  const payload = deflateRawSync(Buffer.alloc(MESSAGE), { finishFlush: constants.Z_SYNC_FLUSH });
  return Buffer.concat([
    frame({ opcode: 0x2, payload: payload.subarray(0, payload.length - 4), rsv1: true, mask: true }),
    frame({ opcode: 0x8, payload: closePayload(1000, 'done'), mask: true }),
  ]);
}

async function length(message: Readable | Buffer | string | typeof EOF): Promise<number> {
  if (message === EOF || typeof message === 'string') throw new Error(`expected bytes, got ${String(message)}`);
  if (Buffer.isBuffer(message)) return message.length;
  let n = 0;
  for await (const chunk of message) n += (chunk as Buffer).length;
  return n;
}

for (const how of ['recv', 'recvStream'] as const) {
  test(`over TCP: a compressed message and a close frame, then FIN, while the message waits for inflation (${how}): whole, then 1000`, async () => {
    const serverSide = new Promise<WebSocketConnection>((resolve) => accepted.push(resolve));
    const raw = await RawClient.connect(Number(new URL(server.url).port), { headers: ['Sec-WebSocket-Extensions: permessage-deflate'] });
    const conn = await serverSide;
    expect(extensionOf(conn)).toBeDefined();
    const message = how === 'recv' ? conn.recv() : conn.recvStream();
    raw.write(messageThenClose());
    raw.end();
    if (how === 'recvStream') {
      // The stream is not read until the FIN has come.
      await message;
      const socket = conn.transport.stream as Socket;
      await until(() => socket.readableEnded, 5000, 'the FIN');
    }
    expect(await length(await message)).toBe(MESSAGE);
    expect((await raw.readClose())?.code).toBe(1000);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1000);
    raw.destroy();
  });

  test(`over HTTP/2: a compressed message and a close frame, then END_STREAM, while the message waits for inflation (${how}): whole, then 1000`, async () => {
    const serverSide = new Promise<WebSocketConnection>((resolve) => accepted.push(resolve));
    const session = await openSession(originOf(h2.url));
    try {
      const stream = session.request(
        { ':method': 'CONNECT', ':protocol': 'websocket', ':scheme': 'https', ':path': '/', ':authority': new URL(h2.url).host, 'sec-websocket-version': '13', 'sec-websocket-extensions': 'permessage-deflate' },
        { endStream: false },
      );
      stream.on('error', () => undefined);
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      await once(stream, 'response');
      const conn = await serverSide;
      expect(conn.transport.kind).toBe('http2');
      expect(extensionOf(conn)).toBeDefined();
      const message = how === 'recv' ? conn.recv() : conn.recvStream();
      stream.end(messageThenClose());
      if (how === 'recvStream') {
        await message;
        const transport = conn.transport.stream as unknown as { readableEnded: boolean };
        await until(() => transport.readableEnded, 5000, 'END_STREAM');
      }
      expect(await length(await message)).toBe(MESSAGE);
      await conn.whenClosed;
      expect(conn.closeStatus).toBe(1000);
    } finally {
      await closeSession(session);
    }
  });
}

/**
 * The same over TCP once the application has asked for `conn.transport` (to log the peer's
 * address, say), which the connection keeps from then on. Before, it then took the socket for
 * another kind of transport while a message inflated: asked for first, the socket was not kept
 * half open, and the FIN closed the connection ahead of the message (lost, 1006); asked for while
 * the message inflated, the socket was left half open for good once it was parsed, and a FIN
 * without a close frame never closed the connection.
 */
describe('over TCP, once conn.transport was asked for', () => {
  /** A compressed binary message of MESSAGE zeros, masked, without a close frame. */
  function messageOnly(): Buffer {
    const payload = deflateRawSync(Buffer.alloc(MESSAGE), { finishFlush: constants.Z_SYNC_FLUSH });
    return frame({ opcode: 0x2, payload: payload.subarray(0, payload.length - 4), rsv1: true, mask: true });
  }

  test('before the message: a compressed message and a close frame, then FIN, while it inflates: whole, then 1000', async () => {
    const serverSide = new Promise<WebSocketConnection>((resolve) => accepted.push(resolve));
    const raw = await RawClient.connect(Number(new URL(server.url).port), { headers: ['Sec-WebSocket-Extensions: permessage-deflate'] });
    const conn = await serverSide;
    expect(conn.transport.kind).toBe('tcp');
    const message = conn.recv();
    raw.write(messageThenClose());
    raw.end();
    expect(await length(await message)).toBe(MESSAGE);
    expect((await raw.readClose())?.code).toBe(1000);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1000);
    raw.destroy();
  });

  test('while the message inflates: a compressed message, then FIN without a close frame: whole, then the connection closes (1006)', async () => {
    const serverSide = new Promise<WebSocketConnection>((resolve) => accepted.push(resolve));
    const raw = await RawClient.connect(Number(new URL(server.url).port), { headers: ['Sec-WebSocket-Extensions: permessage-deflate'] });
    raw.socket.on('error', () => undefined);
    const conn = await serverSide;
    const message = conn.recvStream();
    raw.write(messageOnly());
    raw.end();
    // The stream's reader has not read: the message waits, and the FIN comes meanwhile.
    const stream = await message;
    const socket = conn.transport.stream as Socket;
    await until(() => socket.readableEnded, 5000, 'the FIN');
    expect(await length(stream)).toBe(MESSAGE);
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([conn.whenClosed.then(() => 'closed'), new Promise((r) => (timer = setTimeout(r, 3000, 'still open after 3 s')))]);
    clearTimeout(timer);
    expect(outcome).toBe('closed');
    expect(conn.closeStatus).toBe(1006);
    raw.destroy();
  });
});
