/**
 * Odd values of the numeric options of serve(), handleUpgrade(), connect() and the WebSocket
 * classes: a TypeError or RangeError at the call, not a limit silently turned off (a NaN limit
 * compared false) or a timer that fired after 1 ms (Infinity and 2^31 ms or more, in setTimeout).
 */
import { existsSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createHttp2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { WebSocket as WsClient } from 'ws';
import { websocket as expressWebSocket } from '@rfc6455/express';
import { attachHttp2, connect, handleUpgrade, serve, WebSocket, WebSocketStream, type ServeOptions, type WebSocketServer } from 'rfc6455';

const servers: WebSocketServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function echoServer(options: ServeOptions = {}): Promise<WebSocketServer> {
  const server = await serve(options, async (conn) => {
    for await (const m of conn) await conn.send(m);
  });
  servers.push(server);
  return server;
}

/** What serve(options) did: the error it threw, or 'listened' (the server is closed again). */
function serveOutcome(options: ServeOptions): Promise<unknown> {
  return serve(options, () => undefined).then(
    (server) => server.close().then(() => 'listened'),
    (error: unknown) => error,
  );
}

/** A 20 ms wait: longer than the 1 ms setTimeout made of 2^31 ms, which was set before it. */
const later = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 20));

describe('numeric options out of range are refused where they are given', () => {
  test.each([
    ['maxMessageSize', NaN],
    ['maxMessageSize', 0],
    ['maxFrameSize', NaN],
    ['maxFragments', -1],
    ['closeTimeout', NaN],
    ['idleTimeout', -5],
    ['keepaliveInterval', NaN],
    ['readHighWaterMark', NaN],
    ['writeHighWaterMark', -1],
    ['maxBufferedAmount', NaN],
    ['compressThreshold', NaN],
    ['maxConnections', NaN],
    ['maxConnectionsPerIp', -1],
  ])('serve({ %s: %p }) throws a RangeError', async (name, value) => {
    const outcome = await serveOutcome({ [name]: value });
    expect(outcome).toBeInstanceOf(RangeError);
    expect((outcome as Error).message).toContain(name);
  });

  test.each([
    ['maxMessageSize', '1000'],
    ['maxBufferedAmount', '1000'],
    ['maxConnections', '10'],
  ])('serve({ %s: %p }) (a string) throws a TypeError', async (name, value) => {
    expect(await serveOutcome({ [name]: value } as ServeOptions)).toBeInstanceOf(TypeError);
  });

  test('permessage-deflate parameters out of range fail serve(), not every handshake with 500', async () => {
    for (const deflate of [{ serverMaxWindowBits: 16 }, { clientMaxWindowBits: 7 }, { level: 10 }, { memLevel: 0 }, { threshold: NaN }]) {
      expect(await serveOutcome({ perMessageDeflate: deflate })).toBeInstanceOf(RangeError);
    }
  });

  test('valid edge values still listen: 0 disables idleTimeout and keepaliveInterval, Infinity lifts a limit', async () => {
    const outcome = await serveOutcome({
      idleTimeout: 0,
      keepaliveInterval: 0,
      maxMessageSize: Infinity,
      maxBufferedAmount: Infinity,
      maxConnections: 0,
      closeTimeout: 0,
      compressThreshold: 0,
      perMessageDeflate: { serverMaxWindowBits: 8, level: -1, threshold: 0 },
    });
    expect(outcome).toBe('listened');
  });

  test('connect() rejects with the error; the WebSocket and WebSocketStream constructors throw it', async () => {
    const server = await echoServer();
    await expect(connect(server.url, { maxMessageSize: NaN })).rejects.toThrow(RangeError);
    await expect(connect(server.url, { handshakeTimeout: 0 })).rejects.toThrow(/handshakeTimeout/);
    await expect(connect(server.url, { followRedirects: 1.5 })).rejects.toThrow(RangeError);
    await expect(connect(server.url, { idleTimeout: '1000' as unknown as number })).rejects.toThrow(TypeError);
    expect(() => new WebSocket(server.url, { maxFrameSize: NaN })).toThrow(RangeError);
    expect(() => new WebSocketStream(server.url, { closeTimeout: -1 })).toThrow(RangeError);
    expect(server.connections.size).toBe(0);
  });

  test('attachHttp2() throws at the call', () => {
    const h2 = createHttp2Server();
    expect(() => attachHttp2(h2, () => undefined, { handshakeTimeout: NaN })).toThrow(RangeError);
    h2.close();
  });

  test('handleUpgrade() throws at the call and answers the request 500', async () => {
    let thrown: unknown;
    const http: Server = createServer();
    http.on('upgrade', (req, socket, head) => {
      try {
        void handleUpgrade(req, socket, head, () => undefined, { maxFragments: NaN });
      } catch (error) {
        thrown = error;
      }
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    try {
      const error = await connect(`ws://127.0.0.1:${(http.address() as AddressInfo).port}/`).catch((e: unknown) => e);
      expect((error as { status?: number }).status).toBe(500);
      expect(thrown).toBeInstanceOf(RangeError);
      expect((thrown as Error).message).toContain('maxFragments');
    } finally {
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    }
  });
});

describe('the options Node checks are checked whatever the transport', () => {
  test("serve({ port: 'web' }) (a string of no number) is Node's RangeError, not a Unix domain socket of that name", async () => {
    const name = `port-name-${process.pid}`;
    try {
      const outcome = await serveOutcome({ port: name as unknown as number });
      // (Node's own RangeError, of another realm than the test's.)
      expect(outcome).toMatchObject({ name: 'RangeError', code: 'ERR_SOCKET_BAD_PORT' });
      expect(existsSync(name)).toBe(false);
    } finally {
      rmSync(name, { force: true });
    }
    // A port given as a string of a number still listens, as Node takes it.
    const server = await echoServer({ port: '0' as unknown as number });
    expect(server.port).toBeGreaterThan(0);
    expect(server.url).toBe(`ws://127.0.0.1:${server.port}/`);
  });

  test('connect({ maxHeaderSize }) is checked as Node checks it, for hybi-00 too, before connecting; 0 is refused over every transport (Node took it for its default over HTTP/1.1; HTTP/2 and hybi-00 failed every handshake with WS_RESPONSE_TOO_LARGE)', async () => {
    const server = await echoServer();
    // (By name: over HTTP/1.1 Node's own check used to throw, with errors of another realm.)
    const refused = (name: string) => ({ name, message: expect.stringContaining('maxHeaderSize') as unknown });
    for (const options of [{}, { http2: true }, { variant: 'hybi00' as const }]) {
      await expect(connect(server.url, { ...options, maxHeaderSize: 0 })).rejects.toMatchObject(refused('RangeError'));
    }
    for (const variant of ['rfc6455', 'hybi00'] as const) {
      await expect(connect(server.url, { variant, maxHeaderSize: -1 })).rejects.toMatchObject(refused('RangeError'));
      await expect(connect(server.url, { variant, maxHeaderSize: 1.5 })).rejects.toMatchObject(refused('RangeError'));
      await expect(connect(server.url, { variant, maxHeaderSize: NaN })).rejects.toMatchObject(refused('RangeError'));
      await expect(connect(server.url, { variant, maxHeaderSize: '16384' as unknown as number })).rejects.toMatchObject(refused('TypeError'));
    }
    expect(() => new WebSocket(server.url, { variant: 'hybi00', maxHeaderSize: NaN })).toThrow(/maxHeaderSize/);
    expect(server.connections.size).toBe(0);
    // A valid limit still connects, and still limits: the 101 of a hybi-00 server is over 100 bytes.
    const conn = await connect(server.url, { variant: 'hybi00', maxHeaderSize: 4096 });
    await conn.close();
    await expect(connect(server.url, { variant: 'hybi00', maxHeaderSize: 100 })).rejects.toMatchObject({ code: 'WS_RESPONSE_TOO_LARGE' });
  });
});

describe('lists and switches of the wrong type are refused where they are given', () => {
  /** The status a `ws` client with this Origin gets from the server (101 when let in). */
  function statusFor(url: string, origin: string): Promise<number> {
    const ws = new WsClient(url, { origin });
    return new Promise<number>((resolve) => {
      ws.on('upgrade', () => resolve(101));
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('error', () => resolve(0));
    }).finally(() => ws.terminate());
  }

  test("serve({ origins: 'https://app.example.com' }) (a string) throws a TypeError: it matched any part of the string, and let https://app.example.co in", async () => {
    const outcome = await serveOutcome({ origins: 'https://app.example.com' as unknown as string[] });
    expect(outcome).toBeInstanceOf(TypeError);
    expect((outcome as Error).message).toMatch(/origins must be an array/);
    // The list form allows that origin alone.
    const server = await echoServer({ origins: ['https://app.example.com'] });
    expect(await statusFor(server.url, 'https://app.example.co')).toBe(403);
    expect(await statusFor(server.url, 'https://app.example.com')).toBe(101);
  });

  test.each([
    ['origins', new Set(['https://app.example.com'])],
    ['origins', [1]],
    ['origins', null],
    ['protocols', 'chat.v2'],
    ['hybi00', 'false'],
    ['directReads', 'false'],
    ['tuneAllocator', 0],
    ['http2', 'false'],
    ['perMessageDeflate', { serverNoContextTakeover: 'false' }],
  ])('serve({ %s: %p }) throws a TypeError', async (name, value) => {
    const outcome = await serveOutcome({ [name]: value } as unknown as ServeOptions);
    expect(outcome).toBeInstanceOf(TypeError);
    expect((outcome as Error).message).toContain(name);
  });

  test('handleUpgrade() and the adapters check them too; a list, a function, false for protocols and booleans still listen', async () => {
    const socket = new PassThrough();
    expect(() => handleUpgrade({} as never, socket, Buffer.alloc(0), () => undefined, { protocols: 'chat' as unknown as string[] })).toThrow(/protocols must be an array/);
    socket.destroy();
    expect(() => expressWebSocket({ origins: 'https://a.example' as unknown as string[] })).toThrow(/origins/);
    const outcome = await serveOutcome({
      origins: (origin) => origin === 'https://a.example',
      protocols: ['chat'],
      hybi00: false,
      directReads: true,
      tuneAllocator: false,
      http2: false,
    });
    expect(outcome).toBe('listened');
    expect(await serveOutcome({ origins: [], protocols: false as unknown as string[] })).toBe('listened');
  });

  test("connect() rejects before connecting for variant: 'hybi-00', http2: 'false' and directReads: 'no'", async () => {
    const server = await echoServer();
    await expect(connect(server.url, { variant: 'hybi-00' as 'hybi00' })).rejects.toThrow(/variant/);
    await expect(connect(server.url, { http2: 'false' as unknown as boolean })).rejects.toThrow(TypeError);
    await expect(connect(server.url, { directReads: 'no' as unknown as boolean })).rejects.toThrow(TypeError);
    expect(() => new WebSocket(server.url, { directReads: 'no' as unknown as boolean })).toThrow(TypeError);
    expect(server.connections.size).toBe(0);
  });
});

describe('timeouts of 2^31 ms and more (Infinity too) mean no timeout, not 1 ms', () => {
  test('serve({ handshakeTimeout: Infinity }) listens and waits for a slow before-accept hook', async () => {
    const server = await echoServer({
      handshakeTimeout: Infinity,
      beforeAccept: async () => {
        await later();
        return {};
      },
    });
    const conn = await connect(server.url);
    await conn.send('waited');
    expect(await conn.recv()).toBe('waited');
    await conn.close();
  });

  test('serve({ handshakeTimeout: 2 ** 31 }): the hook is not cut after 1 ms', async () => {
    const server = await echoServer({
      handshakeTimeout: 2 ** 31,
      beforeAccept: async () => {
        await later();
        return {};
      },
    });
    const conn = await connect(server.url);
    expect(conn.readyState).toBe('open');
    await conn.close();
  });

  test('connect({ handshakeTimeout: 2 ** 31 }) does not time out after 1 ms', async () => {
    const server = await echoServer({
      beforeAccept: async () => {
        await later();
        return {};
      },
    });
    const conn = await connect(server.url, { handshakeTimeout: 2 ** 31 });
    expect(conn.readyState).toBe('open');
    await conn.close();
  });

  test('closeTimeout: Infinity waits for the peer\'s close frame instead of aborting after 1 ms', async () => {
    let resume!: () => void;
    let onAccepted!: () => void;
    const accepted = new Promise<void>((resolve) => (onAccepted = resolve));
    const server = await serve({}, (conn) => {
      // The server does not read: our close frame waits in its socket until it resumes.
      conn.pause();
      resume = () => conn.resume();
      onAccepted();
    });
    servers.push(server);
    const client = await connect(server.url, { closeTimeout: Infinity });
    await accepted;
    const closing = client.close(1000, 'bye');
    await later();
    expect(client.readyState).toBe('closing');
    resume();
    await closing;
    expect(client.closeStatus).toBe(1000);
  });
});
