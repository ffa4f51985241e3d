/**
 * serve({ maxConnectionsPerIp }): the per-address connection limit (issue 7's security options).
 * Every client here connects from 127.0.0.1, so they share one address.
 */
import { connect, HandshakeError, serve, type WebSocketConnection, type WebSocketServer } from 'rfc6455';

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
  });

  test('refused handshakes do not hold slots', async () => {
    for (let i = 0; i < 3; i++) {
      await expect(connect(server.url, { headers: { 'X-Refuse': '1' } })).rejects.toMatchObject({ status: 403 });
    }
    clients.push(await connect(server.url), await connect(server.url));
    expect(server.connections.size).toBe(2);
  });
});
