/**
 * serve({ maxConnectionsPerIp }): the per-address connection limit (issue 7's security options).
 * Every client here connects from 127.0.0.1, so they share one address.
 */
import { connect, HandshakeError, serve, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { CLIENT_TLS, TLS } from '../http2/helpers.js';
import { until } from '../../packages/rfc6455/test/helpers/wait.js';

describe('serve({ maxConnectionsPerIp })', () => {
  let server: WebSocketServer;
  const clients: WebSocketConnection[] = [];

  beforeEach(async () => {
    server = await serve({
      maxConnectionsPerIp: 2,
      beforeAccept: (req) => (req.headers['x-refuse'] ? { reject: { status: 403, body: 'refused' } } : undefined),
    }, (conn) => {
      conn.on('message', (m) => void conn.send(m));
    });
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
    await server.close();
  });

  test('the third connection from one address is refused with 429 and Retry-After', async () => {
    clients.push(await connect(server.url), await connect(server.url));
    const refused = await connect(server.url).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(HandshakeError);
    expect((refused as HandshakeError).status).toBe(429);
    expect((refused as HandshakeError).headers['retry-after']).toBe('1');
    // The two admitted connections still work.
    await clients[0]!.send('still here');
    expect(await clients[0]!.recv()).toBe('still here');
  });

  test('a slot is released when a connection closes', async () => {
    const a = await connect(server.url);
    clients.push(await connect(server.url));
    await a.close();
    // The server sees the close once its side of the TCP connection is gone too.
    await new Promise<void>((resolve) => {
      const poll = (): void => (server.connections.size < 2 ? resolve() : void setTimeout(poll, 10));
      poll();
    });
    const c = await connect(server.url);
    clients.push(c);
    await c.send('admitted');
    expect(await c.recv()).toBe('admitted');
    // One slot was freed, not both: the address has its two connections again.
    await expect(connect(server.url)).rejects.toMatchObject({ status: 429 });
  });

  test('refused handshakes do not hold slots', async () => {
    for (let i = 0; i < 3; i++) {
      await expect(connect(server.url, { headers: { 'X-Refuse': '1' } })).rejects.toMatchObject({ status: 403 });
    }
    clients.push(await connect(server.url), await connect(server.url));
    expect(server.connections.size).toBe(2);
  });
});

describe('serve({ maxConnectionsPerIp }) without a beforeAccept hook (upgrades settled at once)', () => {
  let server: WebSocketServer;
  const clients: WebSocketConnection[] = [];

  beforeEach(async () => {
    server = await serve({ maxConnectionsPerIp: 1 }, (conn) => {
      conn.on('message', (m) => void conn.send(m));
    });
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
    await server.close();
  });

  test('the second connection is refused with 429; once the first closes, its slot is free again', async () => {
    const a = await connect(server.url);
    await expect(connect(server.url)).rejects.toMatchObject({ status: 429 });
    await a.close();
    await until(() => server.connections.size === 0, 'the connection to close');
    const b = await connect(server.url);
    clients.push(b);
    await b.send('admitted');
    expect(await b.recv()).toBe('admitted');
  });

  test('each remote address has its own slots (127.0.0.1 and 127.0.0.2, both loopback on Linux)', async () => {
    clients.push(await connect(server.url, { localAddress: '127.0.0.1' }));
    const other = await connect(server.url, { localAddress: '127.0.0.2' });
    clients.push(other);
    await other.send('other address');
    expect(await other.recv()).toBe('other address');
    await expect(connect(server.url, { localAddress: '127.0.0.2' })).rejects.toMatchObject({ status: 429 });
  });
});

test('over HTTP/2: an address at maxConnectionsPerIp gets 429 for its next CONNECT; a slot is free again once a connection closes', async () => {
  const server = await serve({ maxConnectionsPerIp: 1, http2: true, tls: TLS, perMessageDeflate: false }, (conn) => {
    conn.on('message', (m) => void conn.send(m));
  });
  try {
    const a = await connect(server.url, { http2: true, tls: CLIENT_TLS });
    expect(a.transport.kind).toBe('http2');
    await expect(connect(server.url, { http2: true, tls: CLIENT_TLS })).rejects.toMatchObject({ status: 429 });
    await a.close();
    await until(() => server.connections.size === 0, 'the connection to close');
    // The slot is released when the connection is closed, not before: poll until the release ran.
    let b: WebSocketConnection | undefined;
    for (let i = 0; i < 100 && b === undefined; i++) {
      b = await connect(server.url, { http2: true, tls: CLIENT_TLS }).catch(() => undefined);
    }
    expect(b).toBeDefined();
    await b!.send('admitted');
    expect(await b!.recv()).toBe('admitted');
    // b holds the only slot.
    await expect(connect(server.url, { http2: true, tls: CLIENT_TLS })).rejects.toMatchObject({ status: 429 });
    await b!.close();
  } finally {
    await server.close();
  }
});
