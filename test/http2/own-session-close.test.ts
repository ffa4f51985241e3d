/**
 * The HTTP/2 session connect({ http2: true }) (connectHttp2) opens for a WebSocket of its own is closed with it:
 * gracefully (GOAWAY, then our side of the connection ended), which waits for the server to close
 * its side. A server that does not (here a proxy in between that never passes an end on) must not
 * keep that connection, and the process, alive: it is destroyed after closeTimeout, as a stalled
 * server's connection is over HTTP/1.1.
 */
import { createServer as createH2Server, type Http2Server } from 'node:http2';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { attachHttp2, connectHttp2, EOF } from 'rfc6455';

let h2: Http2Server;
let proxy: Server;
const proxied = new Set<Socket>();

beforeAll(async () => {
  h2 = createH2Server();
  h2.on('session', (session) => session.on('error', () => undefined));
  attachHttp2(h2, async (conn) => {
    conn.on('error', () => undefined);
    for (;;) {
      const message = await conn.recv();
      if (message === EOF) return;
      await conn.send(message).catch(() => undefined);
    }
  });
  await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve));
  // Bytes both ways; an end or a close is never passed on, nor is this side ever closed.
  proxy = createNetServer({ allowHalfOpen: true }, (client) => {
    const upstream = netConnect({ port: (h2.address() as AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
    proxied.add(client).add(upstream);
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    client.on('data', (chunk: Buffer) => upstream.write(chunk));
    upstream.on('data', (chunk: Buffer) => {
      if (!client.destroyed) client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  for (const socket of proxied) socket.destroy();
  await new Promise((resolve) => proxy.close(resolve));
  await new Promise((resolve) => h2.close(resolve));
});

test('a session of our own whose server never closes its side is destroyed closeTimeout after its WebSocket closed', async () => {
  let socket: Socket | undefined;
  const port = (proxy.address() as AddressInfo).port;
  const conn = await connectHttp2(new URL(`ws://127.0.0.1:${port}/`), {
    closeTimeout: 200,
    sessionOptions: {
      createConnection: () => (socket = netConnect({ port, host: '127.0.0.1' })),
    },
  });
  if (conn === undefined) throw new Error('the server did not advertise extended CONNECT');
  expect(conn.transport.kind).toBe('http2');
  await conn.send('ping');
  expect(await conn.recv()).toBe('ping');
  const socketClosed = new Promise<string>((resolve) => socket!.once('close', () => resolve('closed')));
  await conn.close();
  expect(conn.closeStatus).toBe(1000);
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([socketClosed, new Promise<string>((resolve) => (timer = setTimeout(resolve, 3000, 'still open after 3 s')))]);
  clearTimeout(timer);
  expect(outcome).toBe('closed');
});
