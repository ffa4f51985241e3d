/**
 * connect() against a hostile raw server: bad handshakes (wrong Accept, a 101 without Upgrade, an
 * oversized or endless response head, silence, a reset) and frames a server must not send (masked,
 * 2^63 lengths, oversized, invalid UTF-8, invalid close codes).
 */
import { connect, EOF, HandshakeError, acceptKey, type WebSocketConnection } from 'rfc6455';
import { closePayload, decodeFrames, frame } from '../../packages/rfc6455/test/helpers/frames.js';
import { rawServer, requestKey, type RawServer } from '../../packages/rfc6455/test/helpers/raw-server.js';
import type { Socket } from 'node:net';

const servers: RawServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function hostile(respond: (head: string, socket: Socket) => void): Promise<RawServer> {
  const s = await rawServer(respond);
  servers.push(s);
  return s;
}

function good101(head: string): string {
  return `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(requestKey(head))}\r\n\r\n`;
}

async function handshakeError(promise: Promise<WebSocketConnection>): Promise<HandshakeError> {
  try {
    const conn = await promise;
    conn.terminate();
  } catch (error) {
    expect(error).toBeInstanceOf(HandshakeError);
    return error as HandshakeError;
  }
  throw new Error('the handshake succeeded');
}

/** A server that completes the handshake, then writes `bytes` and records what the client sends back. */
async function serverSending(bytes: Buffer): Promise<{ server: RawServer; received: () => Buffer }> {
  let received = Buffer.alloc(0);
  const server = await hostile((head, socket) => {
    socket.on('data', (c: Buffer) => (received = Buffer.concat([received, c])));
    socket.write(good101(head));
    socket.write(bytes);
  });
  return { server, received: () => received };
}

describe('client refuses a bad handshake', () => {
  test('a wrong Sec-WebSocket-Accept', async () => {
    const s = await hostile((_head, socket) => {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey('AAAAAAAAAAAAAAAAAAAAAA==')}\r\n\r\n`);
    });
    const error = await handshakeError(connect(s.url, { handshakeTimeout: 2000 }));
    expect(error.code).toBe('WS_BAD_ACCEPT');
  });

  test('a 101 without an Upgrade header', async () => {
    const s = await hostile((head, socket) => {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(requestKey(head))}\r\n\r\n`);
    });
    await handshakeError(connect(s.url, { handshakeTimeout: 1000 }));
  });

  test('a 101 with Upgrade: h2c', async () => {
    const s = await hostile((head, socket) => {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(requestKey(head))}\r\n\r\n`);
    });
    await handshakeError(connect(s.url, { handshakeTimeout: 1000 }));
  });

  test('a response head over maxHeaderSize → WS_RESPONSE_TOO_LARGE', async () => {
    const s = await hostile((head, socket) => {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nX-Big: ${'b'.repeat(64 * 1024)}\r\n` + good101(head).slice(good101(head).indexOf('\r\n') + 2));
    });
    const error = await handshakeError(connect(s.url, { maxHeaderSize: 8192, handshakeTimeout: 2000 }));
    expect(error.code).toBe('WS_RESPONSE_TOO_LARGE');
  });

  test('an endless response head is cut (bounded by maxHeaderSize, not by memory)', async () => {
    const s = await hostile((_head, socket) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\n');
      let n = 0;
      const pump = (): void => {
        // Bounded: at most 4 MiB of header lines, stopping when the client hangs up.
        while (n < 4096 && !socket.destroyed) {
          n++;
          if (!socket.write(`X-${n}: ${'c'.repeat(1000)}\r\n`)) return void socket.once('drain', pump);
        }
      };
      pump();
    });
    const error = await handshakeError(connect(s.url, { maxHeaderSize: 16384, handshakeTimeout: 5000 }));
    expect(error.code).toBe('WS_RESPONSE_TOO_LARGE');
  });

  test('a server that never answers → handshake timeout', async () => {
    const s = await hostile(() => undefined);
    const error = await handshakeError(connect(s.url, { handshakeTimeout: 200 }));
    expect(error.code).toBe('WS_HANDSHAKE_TIMEOUT');
  });

  test('a server that resets mid-response → WS_CONNECT_FAILED', async () => {
    const s = await hostile((_head, socket) => {
      socket.write('HTTP/1.1 101 Switching Pro');
      setTimeout(() => socket.resetAndDestroy(), 20);
    });
    const error = await handshakeError(connect(s.url, { handshakeTimeout: 2000 }));
    expect(error.code).toBe('WS_CONNECT_FAILED');
  });
});

describe('client receives frames a server must not send', () => {
  test('a masked frame → the client fails with 1002 (RFC 6455 §5.1)', async () => {
    const { server, received } = await serverSending(frame({ opcode: 1, payload: 'masked!', mask: true }));
    const conn = await connect(server.url);
    expect(await conn.recv()).toBe(EOF);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1002);
    const sent = decodeFrames(received()).frames;
    expect(sent.at(-1)?.opcode).toBe(8);
    expect(sent.at(-1)?.masked).toBe(true);
    expect(sent.at(-1)?.payload.readUInt16BE(0)).toBe(1002);
  });

  test('a 64-bit length of 2^63 → 1002, no allocation', async () => {
    const { server } = await serverSending(frame({ opcode: 2, lengthBits: 64, declaredLength: 2n ** 63n }));
    const conn = await connect(server.url);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1002);
  });

  test('a frame over the client maxMessageSize → 1009 from the header alone', async () => {
    const { server } = await serverSending(frame({ opcode: 2, lengthBits: 64, declaredLength: 1024 * 1024 + 1 }));
    const conn = await connect(server.url, { maxMessageSize: 1024 * 1024 });
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1009);
  });

  test('invalid UTF-8 in a text frame → 1007', async () => {
    const { server } = await serverSending(frame({ opcode: 1, payload: Buffer.of(0x61, 0xc3, 0x28) }));
    const conn = await connect(server.url);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1007);
  });

  test('invalid UTF-8 in a text frame that arrives in pieces → 1007 before the rest of the frame', async () => {
    let sent = 0;
    let received = Buffer.alloc(0);
    const s = await hostile((head, socket) => {
      socket.on('data', (c: Buffer) => (received = Buffer.concat([received, c])));
      socket.write(good101(head));
      // 2 bytes of header, 10 valid bytes, a code point over U+10FFFF, 9 more bytes.
      const bytes = frame({ opcode: 1, payload: Buffer.concat([Buffer.from('valid ⇒ '), Buffer.of(0xf4, 0x90, 0x80, 0x80), Buffer.from(' and more')]) });
      // The header and the valid bytes; then the bad sequence and one byte past it; the rest never.
      socket.write(bytes.subarray(0, 12));
      setTimeout(() => {
        sent = 17;
        socket.write(bytes.subarray(12, 17));
      }, 30);
    });
    const conn = await connect(s.url);
    await conn.whenClosed;
    expect(sent).toBe(17);
    expect(conn.closeStatus).toBe(1007);
    const frames = decodeFrames(received).frames;
    expect(frames.at(-1)?.opcode).toBe(8);
    expect(frames.at(-1)?.payload.readUInt16BE(0)).toBe(1007);
  });

  test.each([0, 1004, 1005, 1006, 1015, 2000, 5000])('a close frame with code %i → 1002', async (code) => {
    const { server } = await serverSending(frame({ opcode: 8, payload: closePayload(code) }));
    const conn = await connect(server.url);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1002);
  });

  test('a server that sends frames then resets mid-frame → 1006, the whole messages before it delivered', async () => {
    let sock: Socket | undefined;
    const s = await hostile((head, socket) => {
      sock = socket;
      socket.write(good101(head));
      socket.write(Buffer.concat([frame({ opcode: 1, payload: 'one' }), frame({ opcode: 1, payload: 'two' }), frame({ opcode: 2, payload: Buffer.alloc(1000) }).subarray(0, 500)]));
      setTimeout(() => socket.resetAndDestroy(), 50);
    });
    const conn = await connect(s.url);
    expect(await conn.recv()).toBe('one');
    expect(await conn.recv()).toBe('two');
    expect(await conn.recv()).toBe(EOF);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1006);
    expect(sock).toBeDefined();
  });
});
