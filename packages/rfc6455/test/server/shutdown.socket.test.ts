/**
 * serve()'s close() and the upgrades still under way when it begins: one waiting for a
 * before-accept hook, one waiting for its hybi-00 key3. Each completes after close() began, and
 * must be closed with 1001 like the connections that were open, so that close() resolves.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect, EOF, serve } from 'rfc6455';

const sockets: Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
});

describe('close() and upgrades under way', () => {
  test('an upgrade whose before-accept hook resolves after close() began is closed with 1001, and close() resolves', async () => {
    let hookCalled!: () => void;
    const called = new Promise<void>((resolve) => (hookCalled = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const server = await serve(
      {
        perMessageDeflate: false,
        beforeAccept: async () => {
          hookCalled();
          await released;
          return undefined;
        },
      },
      async (conn) => {
        for await (const _ of conn);
      },
    );
    const client = connect(server.url);
    await called;
    const closed = server.close();
    release();
    // The hook let the upgrade through; the connection it made goes as the others went.
    const conn = await client;
    expect(await conn.recv()).toBe(EOF);
    expect(conn.closeStatus).toBe(1001);
    await closed;
  });

  test('a hybi-00 upgrade whose key3 arrives after close() began is closed at once, and close() resolves', async () => {
    const server = await serve({}, async (conn) => {
      for await (const _ of conn);
    });
    let headRead!: () => void;
    const upgrading = new Promise<void>((resolve) => (headRead = resolve));
    server.httpServer.on('upgrade', () => headRead());
    const socket = netConnect({ port: server.port, host: '127.0.0.1' });
    sockets.push(socket);
    let received = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      received = Buffer.concat([received, d]);
      // The closing handshake: the server's 0xFF 0x00 answered with ours.
      if (received.subarray(-2).equals(Buffer.from([0xff, 0x00]))) socket.end(Buffer.from([0xff, 0x00]));
    });
    const socketClosed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    // draft-76 §1.3's sample request, its 8 key3 bytes held back.
    socket.write(
      [
        'GET /demo HTTP/1.1',
        'Host: example.com',
        'Connection: Upgrade',
        'Sec-WebSocket-Key2: 12998 5 Y3 1  .P00',
        'Upgrade: WebSocket',
        'Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5',
        'Origin: http://example.com',
        '',
        '',
      ].join('\r\n'),
    );
    await upgrading;
    const closed = server.close();
    socket.write(Buffer.from('^n:ds[4U', 'latin1'));
    await socketClosed;
    const text = received.toString('latin1');
    expect(text.startsWith('HTTP/1.1 101 WebSocket Protocol Handshake\r\n')).toBe(true);
    // The answer (draft-76 §1.3: 8jKS'y:G*Co,Wxa-), then the closing frame 0xFF 0x00.
    expect(text.endsWith("\r\n\r\n8jKS'y:G*Co,Wxa-\xff\x00")).toBe(true);
    await closed;
  });
});

describe('close(code, reason)', () => {
  test('a code or reason a close frame cannot carry rejects with a RangeError and changes nothing (it stopped listening, left every connection open and never resolved)', async () => {
    const server = await serve({}, async (conn) => {
      for await (const message of conn) await conn.send(message);
    });
    const conn = await connect(server.url);
    await expect(server.close(1005)).rejects.toThrow(RangeError);
    await expect(server.close(4000, 'é'.repeat(62))).rejects.toThrow(RangeError);
    await expect(server.close(1000.5)).rejects.toThrow(RangeError);
    // Still open, and still accepting.
    await conn.send('still here');
    expect(await conn.recv()).toBe('still here');
    const later = await connect(server.url);
    await server.close(4000, 'bye');
    expect(await conn.recv()).toBe(EOF);
    expect(await later.recv()).toBe(EOF);
    expect([conn.closeStatus, conn.closeReason, later.closeStatus]).toEqual([4000, 'bye', 4000]);
  });
});
