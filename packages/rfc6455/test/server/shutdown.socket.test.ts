/**
 * serve()'s close() and the upgrades still under way when it begins: one waiting for a
 * before-accept hook, one waiting for its hybi-00 key3. Each is answered 503 at once, whatever the
 * hook decides later, so that close() resolves without waiting for them (as over HTTP/2, where the
 * destroyed session resets such a stream).
 */
import { createServer } from 'node:http';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { connect, EOF, handleUpgrade, HandshakeError, serve, type WebSocketConnection } from 'rfc6455';
import { RawClient, upgradeRequest } from '../helpers/raw-client.js';

const sockets: Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
});

describe('close() and upgrades under way', () => {
  test('an upgrade whose request comes after close() began, on a connection made before, is answered 503 and not upgraded', async () => {
    const server = await serve({ perMessageDeflate: false, closeTimeout: 60_000 }, async (conn) => {
      for await (const _ of conn);
    });
    // A peer that never answers the closing handshake: close() waits for it meanwhile.
    const held = await RawClient.connect(server.port);
    const late = netConnect(server.port, '127.0.0.1');
    sockets.push(late);
    await new Promise((resolve) => late.once('connect', resolve));
    const closed = server.close();
    expect((await held.readFrame())?.opcode).toBe(8);
    let answer = '';
    const answered = new Promise<void>((resolve) => {
      late.on('data', (chunk: Buffer) => {
        answer += chunk.toString('latin1');
        if (answer.includes('\r\n\r\n')) resolve();
      });
      late.once('close', () => resolve());
    });
    late.write(upgradeRequest(server.port));
    await answered;
    expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 503 Service Unavailable');
    expect(server.connections.size).toBe(1);
    held.destroy();
    await closed;
  });

  test.each([
    ['', {}],
    [' With maxConnectionsPerIp too.', { maxConnectionsPerIp: 10 }],
  ])('an upgrade whose before-accept hook is pending when close() begins is answered 503 at once, and close() resolves without waiting for the hook (it waited up to handshakeTimeout, or accepted the upgrade the hook let through later and waited for its closing handshake).%s', async (_name, limit) => {
    let hookCalled!: () => void;
    let called = new Promise<void>((resolve) => (hookCalled = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let accepted = 0;
    const server = await serve(
      {
        ...limit,
        perMessageDeflate: false,
        handshakeTimeout: 60_000,
        beforeAccept: async (req) => {
          hookCalled();
          // One hook never settles; the other lets its upgrade through after close() began.
          if (req.url === '/never') await new Promise<never>(() => undefined);
          await released;
          return undefined;
        },
        onConnection: () => accepted++,
      },
      async (conn) => {
        for await (const _ of conn);
      },
    );
    // Two handshakes under way at once (serializeHandshakes: false: else our client holds the
    // second until the first, whose hook never settles, is answered).
    const never = connect(`${server.url}never`, { serializeHandshakes: false }).catch((e: unknown) => e);
    await called;
    called = new Promise<void>((resolve) => (hookCalled = resolve));
    const later = connect(`${server.url}later`, { serializeHandshakes: false }).catch((e: unknown) => e);
    await called;
    await server.close();
    release();
    for (const refused of [await never, await later]) {
      expect(refused).toBeInstanceOf(HandshakeError);
      expect([(refused as HandshakeError).status, (refused as HandshakeError).body?.toString()]).toEqual([503, 'server is shutting down\n']);
    }
    await released;
    expect(accepted).toBe(0);
  });

  test('a hybi-00 upgrade waiting for its key3 when close() begins is answered 503 at once, and close() resolves (it waited for the key3)', async () => {
    const server = await serve({ handshakeTimeout: 60_000 }, async (conn) => {
      for await (const _ of conn);
    });
    let headRead!: () => void;
    const upgrading = new Promise<void>((resolve) => (headRead = resolve));
    server.httpServer.on('upgrade', () => headRead());
    const socket = netConnect({ port: server.port, host: '127.0.0.1' });
    sockets.push(socket);
    let received = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => (received = Buffer.concat([received, d])));
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
    await server.close();
    await socketClosed;
    expect(received.toString('latin1')).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n[^]*\r\n\r\nserver is shutting down\n$/);
  });
});

describe('handleUpgrade() and its shuttingDown option', () => {
  test('an upgrade whose before-accept hook settles once shuttingDown() is true is answered 503, never a 101 (it got a 101, then a close frame with 1001)', async () => {
    let closing = false;
    let hookCalled!: () => void;
    const called = new Promise<void>((resolve) => (hookCalled = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const accepted: Array<WebSocketConnection | undefined> = [];
    const http = createServer();
    http.on('upgrade', (req, socket, head) => {
      void handleUpgrade(req, socket, head, async (conn) => {
        for await (const _ of conn);
      }, {
        shuttingDown: () => closing,
        beforeAccept: async () => {
          hookCalled();
          await released;
          return undefined;
        },
      }).then((conn) => accepted.push(conn));
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    try {
      const outcome = connect(`ws://127.0.0.1:${(http.address() as AddressInfo).port}/`).catch((e: unknown) => e);
      await called;
      closing = true;
      release();
      const refused = await outcome;
      if (!(refused instanceof HandshakeError)) (refused as WebSocketConnection).terminate();
      expect(refused).toBeInstanceOf(HandshakeError);
      expect([(refused as HandshakeError).status, (refused as HandshakeError).body?.toString()]).toEqual([503, 'server is shutting down\n']);
      expect(accepted).toEqual([undefined]);
    } finally {
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    }
  });
});

describe('close() called from the connection an async hook let through', () => {
  test('a handler that calls server.close() at once closes its own connection with 1001, as the others (close() wrote `HTTP/1.1 503` after its 101, and the client failed with 1002)', async () => {
    let closing: Promise<void> | undefined;
    const server = await serve({ perMessageDeflate: false, beforeAccept: async () => undefined }, () => {
      closing = server.close();
    });
    const client = await connect(server.url);
    const errors: unknown[] = [];
    client.on('error', (error) => errors.push(error));
    const messages: unknown[] = [];
    for await (const message of client) messages.push(message);
    await closing;
    expect([client.closeStatus, client.closeReason, errors, messages]).toEqual([1001, 'server shutting down', [], []]);
  });

  test('hybi-00: a handler that calls server.close() at once gets its response, then the closing frame, and nothing else (`HTTP/1.1 503` followed the response)', async () => {
    let closing: Promise<void> | undefined;
    const server = await serve({}, () => {
      closing = server.close();
    });
    const socket = netConnect({ port: server.port, host: '127.0.0.1' });
    sockets.push(socket);
    let received = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      received = Buffer.concat([received, d]);
      // The closing frame answered, as a hybi-00 client does.
      if (received.subarray(-2).equals(Buffer.from([0xff, 0x00]))) socket.end(Buffer.from([0xff, 0x00]));
    });
    const socketClosed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    // draft-76 §1.3's sample request and key3, whose answer is the bytes `8jKS'y:G*Co,Wxa-`.
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
        '^n:ds[4U',
      ].join('\r\n'),
    );
    await socketClosed;
    await closing;
    expect(received.toString('latin1')).toMatch(/^HTTP\/1\.1 101 [^]*\r\n\r\n8jKS'y:G\*Co,Wxa-\xff\x00$/);
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
    // Checked on every call, as conn.close() checks them in every state (a second call resolved
    // with the first one's shutdown).
    await expect(server.close(1005)).rejects.toThrow(RangeError);
    await expect(server.close('1000' as never)).rejects.toThrow(TypeError);
    await expect(server.close()).resolves.toBeUndefined();
  });
});
