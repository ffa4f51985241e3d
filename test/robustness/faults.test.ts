/**
 * Faults: peers that reset mid-frame or mid-handshake, TLS errors, half-open peers found by the
 * idle timeout and by keepalive pings, and handlers that throw or reject.
 */
import { connect, EOF, HandshakeError, type WebSocketConnection } from 'rfc6455';
import { frame } from '../../packages/rfc6455/test/helpers/frames.js';
import { RawClient, upgradeRequest } from '../../packages/rfc6455/test/helpers/raw-client.js';
import { connect as tlsConnect } from 'node:tls';
import { closeAll, eventually, openRaw, selfSignedCert, sleep, startServer } from './helpers.js';

afterEach(closeAll);

async function recordingEcho(options: Parameters<typeof startServer>[0] = {}) {
  const conns: WebSocketConnection[] = [];
  const server = await startServer({ perMessageDeflate: false, closeTimeout: 300, ...options }, async (conn) => {
    conns.push(conn);
    for await (const m of conn) await conn.send(m).catch(() => undefined);
  });
  return { server, conns };
}

async function serverStillEchoes(url: string, options: Parameters<typeof connect>[1] = {}): Promise<void> {
  const conn = await connect(url, options);
  await conn.send('alive?');
  expect(await conn.recv()).toBe('alive?');
  await conn.close();
}

describe('peer resets', () => {
  test('a client that resets in the middle of a frame: the server connection ends 1006, the server lives on', async () => {
    const { server, conns } = await recordingEcho();
    const raw = await RawClient.connect(server.port);
    raw.send({ opcode: 1, payload: 'whole' });
    expect((await raw.readFrame())?.payload.toString()).toBe('whole');
    raw.write(frame({ opcode: 2, mask: true, payload: Buffer.alloc(4000) }).subarray(0, 1000));
    await sleep(20);
    raw.socket.resetAndDestroy();
    await conns[0]!.whenClosed;
    expect(conns[0]!.closeStatus).toBe(1006);
    expect(await eventually(() => server.connections.size === 0)).toBe(true);
    await serverStillEchoes(server.url);
  });

  test('a client that resets in the middle of the handshake head: no connection is made, the server lives on', async () => {
    const { server, conns } = await recordingEcho();
    for (const cut of [1, 20, 60, 100]) {
      const raw = await openRaw(server.port);
      raw.socket.write(upgradeRequest(server.port).slice(0, cut));
      await sleep(10);
      raw.socket.resetAndDestroy();
      await raw.closed;
    }
    expect(conns).toHaveLength(0);
    await serverStillEchoes(server.url);
  });

  test('a client that resets right after the 101 while the server writes: server connection ends 1006', async () => {
    const big = Buffer.alloc(1024 * 1024, 1);
    let serverConn: WebSocketConnection | undefined;
    const server = await startServer({ perMessageDeflate: false }, async (conn) => {
      serverConn = conn;
      for (let i = 0; i < 64 && !conn.closed; i++) await conn.send(big).catch(() => undefined);
    });
    const raw = await RawClient.connect(server.port);
    raw.socket.resetAndDestroy();
    expect(await eventually(() => serverConn !== undefined)).toBe(true);
    await serverConn!.whenClosed;
    expect(serverConn!.closeStatus).toBe(1006);
  });
});

describe('TLS errors', () => {
  const tls = selfSignedCert();

  test('a plain-text upgrade request to a wss: server, garbage, and an untrusted client do not crash it; a trusted client gets in', async () => {
    const { server } = await recordingEcho({ tls });
    // Plain HTTP to the TLS port.
    const plain = await openRaw(server.port);
    plain.socket.write(upgradeRequest(server.port));
    await plain.closed;
    expect(plain.data().toString('latin1')).not.toContain('101');
    // Random bytes.
    const garbage = await openRaw(server.port);
    garbage.socket.write(Buffer.alloc(512, 0x16));
    await garbage.closed;
    // A client that does not trust the certificate.
    let refused: unknown;
    try {
      (await connect(server.url, { handshakeTimeout: 2000 })).terminate();
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(HandshakeError);
    expect((refused as HandshakeError).code).toBe('WS_CONNECT_FAILED');
    // A TLS client that aborts in the middle of the TLS handshake.
    const half = tlsConnect({ port: server.port, host: '127.0.0.1', rejectUnauthorized: false });
    half.on('error', () => undefined);
    half.once('secureConnect', () => half.destroy());
    await new Promise((r) => half.once('close', r));
    await serverStillEchoes(server.url, { tls: { ca: tls.cert } });
  });

  test('a TCP connection that never starts the TLS handshake is closed at handshakeTimeout, by serve({ tls }) and serve({ http2: true, tls })', async () => {
    for (const http2 of [false, true]) {
      const { server, conns } = await recordingEcho({ tls, http2, handshakeTimeout: 300 });
      const silent = await openRaw(server.port);
      // Before: nothing cut it before Node's own TLS handshake timeout (120 s), and then the
      // 'clientError' listener wrote a 408 to the socket, which has no TLS, and kept it open.
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([silent.closed.then(() => 'closed'), new Promise((r) => (timer = setTimeout(r, 5000, 'still open')))]);
      clearTimeout(timer);
      expect(outcome).toBe('closed');
      expect(silent.data().length).toBe(0);
      expect(conns).toHaveLength(0);
      await serverStillEchoes(server.url, { tls: { ca: tls.cert } });
    }
  });

  test('a wss: client against a plain ws: server fails with a typed error', async () => {
    const { server } = await recordingEcho();
    let refused: unknown;
    try {
      (await connect(server.url.replace('ws:', 'wss:'), { handshakeTimeout: 2000, tls: { rejectUnauthorized: false } })).terminate();
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(HandshakeError);
    await serverStillEchoes(server.url);
  });
});

describe('half-open peers', () => {
  test('idleTimeout: a silent client gets close 1001 "idle timeout", and the connection is gone within the close timeout', async () => {
    const { server, conns } = await recordingEcho({ idleTimeout: 200, closeTimeout: 200 });
    const raw = await RawClient.connect(server.port);
    // Never answer, never send: a half-open peer as far as the server can tell.
    const close = await raw.readClose();
    expect(close?.code).toBe(1001);
    expect(close?.reason.toString()).toBe('idle timeout');
    await conns[0]!.whenClosed;
    expect(server.connections.size).toBe(0);
    raw.destroy();
  });

  test('keepaliveInterval: a client that never answers pings is aborted with WS_KEEPALIVE_TIMEOUT after a ping went unanswered', async () => {
    const { server, conns } = await recordingEcho({ keepaliveInterval: 100, idleTimeout: 0 });
    const raw = await RawClient.connect(server.port);
    const first = await raw.readFrame();
    expect(first?.opcode).toBe(9);
    await conns[0]!.whenClosed;
    expect(conns[0]!.closeStatus).toBe(1006);
    expect((conns[0]!.error as { code?: string } | undefined)?.code).toBe('WS_KEEPALIVE_TIMEOUT');
    raw.destroy();
  });

  test('keepaliveInterval: a client that answers pings (our connect()) stays open over many intervals', async () => {
    const { server, conns } = await recordingEcho({ keepaliveInterval: 50, idleTimeout: 0 });
    const client = await connect(server.url);
    let pings = 0;
    client.on('ping', () => pings++);
    expect(await eventually(() => pings >= 5, 400, 10)).toBe(true);
    expect(conns[0]!.readyState).toBe('open');
    await client.send('still here');
    expect(await client.recv()).toBe('still here');
    await client.close();
  });
});

describe('handler failures', () => {
  test.each([
    ['throws synchronously', () => {
      throw new Error('secret: db password hunter2');
    }],
    ['returns a rejected promise', async () => {
      await sleep(5);
      throw new Error('secret: db password hunter2');
    }],
  ])('a handler that %s: close 1011 with no reason, onError gets the error, the server lives on', async (_name, body) => {
    const errors: unknown[] = [];
    const server = await startServer({ perMessageDeflate: false, onError: (e) => errors.push(e) }, async (conn) => {
      if (conn.path === '/fail') return body();
      for await (const m of conn) await conn.send(m);
    });
    const raw = await RawClient.connect(server.port, { path: '/fail' });
    const close = await raw.readClose();
    expect(close?.code).toBe(1011);
    expect(close?.reason.length).toBe(0);
    expect(Buffer.concat(close!.frames.map((f) => f.payload)).toString()).not.toContain('hunter2');
    expect(errors).toHaveLength(1);
    expect((errors[0] as Error).message).toContain('hunter2');
    raw.destroy();
    await serverStillEchoes(server.url);
  });

  test('a message listener that throws: close 1011, onError gets the error, the server lives on', async () => {
    const errors: unknown[] = [];
    const server = await startServer({ perMessageDeflate: false, onError: (e) => errors.push(e) }, (conn) => {
      conn.on('message', (m) => {
        if (m === 'boom') throw new Error('listener exploded');
        void conn.send(m);
      });
    });
    const client = await connect(server.url);
    await client.send('ok');
    expect(await client.recv()).toBe('ok');
    await client.send('boom');
    expect(await client.recv()).toBe(EOF);
    await client.whenClosed;
    expect(client.closeStatus).toBe(1011);
    expect(client.closeReason).toBe('');
    expect((errors[0] as Error | undefined)?.message).toBe('listener exploded');
    await serverStillEchoes(server.url);
  });

  test('a ping or pong listener that throws: close 1011, onError gets the error, the server lives on', async () => {
    const errors: unknown[] = [];
    const server = await startServer({ perMessageDeflate: false, onError: (e) => errors.push(e) }, async (conn) => {
      conn.on('ping', () => {
        throw new Error('ping listener exploded');
      });
      conn.on('pong', () => {
        throw new Error('pong listener exploded');
      });
      if (conn.path === '/pong') void conn.ping().catch(() => undefined);
      for await (const m of conn) await conn.send(m).catch(() => undefined);
    });
    // (Before: the exception escaped from the socket's 'data' event, and the process ended.)
    for (const [path, message] of [['/', 'ping listener exploded'], ['/pong', 'pong listener exploded']] as const) {
      errors.length = 0;
      const client = await connect(`${server.url.replace(/\/$/, '')}${path}`, { perMessageDeflate: false });
      if (path === '/') void client.ping().catch(() => undefined);
      await client.whenClosed;
      expect(client.closeStatus).toBe(1011);
      expect(client.closeReason).toBe('');
      expect((errors[0] as Error | undefined)?.message).toBe(message);
    }
    await serverStillEchoes(server.url);
  });

  test('a close listener that throws: onError gets the error, the server lives on', async () => {
    const errors: unknown[] = [];
    const server = await startServer({ perMessageDeflate: false, onError: (e) => errors.push(e) }, async (conn) => {
      conn.on('close', () => {
        if (conn.path === '/throw') throw new Error('close listener exploded');
      });
      for await (const m of conn) await conn.send(m).catch(() => undefined);
    });
    const client = await connect(`${server.url.replace(/\/$/, '')}/throw`, { perMessageDeflate: false });
    await client.close(4000, 'bye');
    expect(await eventually(() => errors.length === 1)).toBe(true);
    expect((errors[0] as Error).message).toBe('close listener exploded');
    await serverStillEchoes(server.url);
  });

  test("a recvStream() stream's data listener that throws: close 1011, onError gets the error, the rest of the read is parsed", async () => {
    const errors: unknown[] = [];
    const conns: WebSocketConnection[] = [];
    const server = await startServer({ perMessageDeflate: false, closeTimeout: 60_000, onError: (e) => errors.push(e) }, async (conn) => {
      if (conn.path !== '/stream') {
        for await (const m of conn) await conn.send(m);
        return;
      }
      conns.push(conn);
      const stream = await conn.recvStream();
      if (stream === EOF) return;
      stream.on('data', (chunk: Buffer) => {
        if (chunk.toString() === 'bbbbb') throw new Error('data listener exploded');
      });
      await conn.send('reading');
    });
    const raw = await RawClient.connect(server.port, { path: '/stream' });
    raw.send({ opcode: 1, fin: false, payload: 'aaaaa' });
    expect((await raw.readFrame())?.payload.toString()).toBe('reading');
    // The stream flows now: the next piece is emitted to its listener as it is parsed. The rest of
    // the message and a close frame in the same read.
    raw.write(
      Buffer.concat([
        frame({ opcode: 0, fin: false, mask: true, payload: 'bbbbb' }),
        frame({ opcode: 0, mask: true, payload: 'ccccc' }),
        frame({ opcode: 8, mask: true, payload: Buffer.from([0x03, 0xe8]) }),
      ]),
    );
    // (Before: the exception escaped from the socket's read, and the process ended; the close
    // frame after it waited in the parser for the peer's next bytes.)
    expect((await raw.readClose())?.code).toBe(1011);
    await conns[0]!.whenClosed;
    expect(conns[0]!.closeStatus).toBe(1000);
    expect((errors[0] as Error | undefined)?.message).toBe('data listener exploded');
    raw.destroy();
    await serverStillEchoes(server.url);
  });

  test('client side: a message listener that throws closes with 1011 and reaches the error event', async () => {
    const server = await startServer({ perMessageDeflate: false }, async (conn) => {
      for await (const m of conn) await conn.send(m);
    });
    const client = await connect(server.url);
    const errors: Error[] = [];
    client.on('error', (e) => errors.push(e));
    client.on('message', () => {
      throw new Error('client listener exploded');
    });
    await client.send('echo me');
    await client.whenClosed;
    expect(client.closeStatus).toBe(1011);
    expect(errors.map((e) => e.message)).toContain('client listener exploded');
  });
});
