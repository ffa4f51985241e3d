/**
 * Fastify with `http2: true, https: {…}` through @rfc6455/fastify.
 *
 * On an HTTP/2 server the plugin advertises SETTINGS_ENABLE_CONNECT_PROTOCOL and takes the
 * compatibility API's 'connect' event: an extended CONNECT (RFC 8441) goes through Fastify's
 * routing and hooks, routed as the `{ websocket: true }` route's GET, and the core's
 * `handleConnect` answers 200 on the stream. With `allowHTTP1: true`, clients that do not speak
 * HTTP/2 still get an HTTP/1.1 upgrade on the same port. See docs/http2.md.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { wsPlugin } from '@rfc6455/fastify';
import { connect, HandshakeError, serviceMapper, type WebSocketConnection } from 'rfc6455';
import { CLIENT_TLS, closeSession, exchange, openSession, TLS } from './helpers.js';

let app: FastifyInstance | undefined;
/** Server-side connections the WebSocket route accepted, in order. */
let accepted: WebSocketConnection[] = [];

afterEach(async () => {
  await app?.close();
  app = undefined;
  accepted = [];
});

async function start(): Promise<string> {
  const instance = Fastify({ http2: true, https: { ...TLS, allowHTTP1: true } });
  app = instance as unknown as FastifyInstance;
  await instance.register(wsPlugin);
  instance.addHook('onRequest', async (request, reply) => {
    if (!request.url.startsWith('/private')) return;
    if (request.headers.authorization !== 'Bearer letmein') {
      return reply.code(401).header('www-authenticate', 'Bearer').send('Unauthorized');
    }
  });
  const echo = async (conn: WebSocketConnection, req: { raw: { httpVersion: string; method?: string } }): Promise<void> => {
    accepted.push(conn);
    await conn.send(`${conn.transport.kind} ${req.raw.method} HTTP/${req.raw.httpVersion}`);
    for await (const m of conn) await conn.send(m);
  };
  instance.get('/ws', { websocket: true }, echo);
  instance.get('/private/ws', { websocket: true }, echo);
  instance.get('/plain', async (req) => `plain over HTTP/${req.raw.httpVersion}`);
  await instance.listen({ port: 0, host: '127.0.0.1' });
  return `127.0.0.1:${(instance.server.address() as AddressInfo).port}`;
}

/** An extended CONNECT's pseudo-headers for `path`, as our client would send them. */
function wsConnect(host: string, path: string): Record<string, string> {
  return { ':method': 'CONNECT', ':protocol': 'websocket', ':scheme': 'https', ':path': path, ':authority': host, 'sec-websocket-version': '13' };
}

test('Fastify http2 + the plugin: the WebSocket comes over HTTP/2 extended CONNECT and messages round-trip', async () => {
  const host = await start();
  const session = await openSession(`https://${host}`);
  try {
    expect(session.remoteSettings.enableConnectProtocol).toBe(true);
    const plain = await exchange(session, { ':path': '/plain' }, undefined, true);
    expect(String(plain.body)).toBe('plain over HTTP/2.0');
  } finally {
    await closeSession(session);
  }
  const conn = await connect(`wss://${host}/ws`, { http2: true, tls: CLIENT_TLS });
  try {
    expect(conn.transport.kind).toBe('http2');
    expect(await conn.recv()).toBe('http2 CONNECT HTTP/2.0');
    expect(accepted).toHaveLength(1);
    expect(accepted[0]!.transport.kind).toBe('http2');
    await conn.send('echo');
    expect(await conn.recv()).toBe('echo');
    await conn.send(Buffer.from([1, 2, 3]));
    expect(await conn.recv()).toEqual(Buffer.from([1, 2, 3]));
  } finally {
    await conn.close();
  }
  expect(conn.closeStatus).toBe(1000);
});

test('Fastify http2 + allowHTTP1: a client that does not use HTTP/2 still gets an HTTP/1.1 upgrade', async () => {
  const host = await start();
  const conn = await connect(`wss://${host}/ws`, { tls: CLIENT_TLS });
  try {
    expect(conn.transport.kind).toBe('tls');
    expect(await conn.recv()).toBe('tls GET HTTP/1.1');
    await conn.send('echo');
    expect(await conn.recv()).toBe('echo');
  } finally {
    await conn.close();
  }
});

test('Fastify http2: an onRequest hook replying 401 refuses the extended CONNECT with that status', async () => {
  const host = await start();
  const refused = await connect(`wss://${host}/private/ws`, { http2: true, tls: CLIENT_TLS }).then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(refused).toBeInstanceOf(HandshakeError);
  expect((refused as HandshakeError).status).toBe(401);
  expect((refused as HandshakeError).headers['www-authenticate']).toBe('Bearer');
  expect(accepted).toHaveLength(0);

  const conn = await connect(`wss://${host}/private/ws`, { http2: true, tls: CLIENT_TLS, headers: { authorization: 'Bearer letmein' } });
  try {
    expect(await conn.recv()).toBe('http2 CONNECT HTTP/2.0');
  } finally {
    await conn.close();
  }
});

test('Fastify http2: a CONNECT to a plain route or an unknown path is refused 404, a non-WebSocket CONNECT keeps 405', async () => {
  const host = await start();
  const session = await openSession(`https://${host}`);
  try {
    const plain = await exchange(session, wsConnect(host, '/plain'));
    expect(plain.status).toBe(404);
    const unknown = await exchange(session, wsConnect(host, '/nowhere'));
    expect(unknown.status).toBe(404);
    const tunnel = await exchange(session, { ':method': 'CONNECT', ':authority': 'example.com:443' });
    expect(tunnel.status).toBe(405);
  } finally {
    await closeSession(session);
  }
  expect(accepted).toHaveLength(0);
});

test('Fastify http2: app.close() closes a WebSocket over HTTP/2 with 1001', async () => {
  const host = await start();
  const conn = await connect(`wss://${host}/ws`, { http2: true, tls: CLIENT_TLS });
  expect(await conn.recv()).toBe('http2 CONNECT HTTP/2.0');
  await app!.close();
  app = undefined;
  await conn.whenClosed;
  expect(conn.closeStatus).toBe(1001);
});

test('Fastify http2: a service mapper given to the plugin serves extended CONNECTs; paths it does not serve get 404', async () => {
  const instance = Fastify({ http2: true, https: { ...TLS, allowHTTP1: true } });
  app = instance as unknown as FastifyInstance;
  await instance.register(wsPlugin, {
    mapper: serviceMapper([{ path: '/mapped', handler: (conn, req) => void conn.send(`mapped ${conn.transport.kind} ${req.method}`) }]),
  });
  await instance.listen({ port: 0, host: '127.0.0.1' });
  const host = `127.0.0.1:${(instance.server.address() as AddressInfo).port}`;
  const conn = await connect(`wss://${host}/mapped`, { http2: true, tls: CLIENT_TLS });
  try {
    expect(await conn.recv()).toBe('mapped http2 CONNECT');
  } finally {
    await conn.close();
  }
  const session = await openSession(`https://${host}`);
  try {
    expect((await exchange(session, wsConnect(host, '/elsewhere'))).status).toBe(404);
  } finally {
    await closeSession(session);
  }
});

test("Fastify http2: headers an onSend hook sets (where @fastify/cookie writes reply.setCookie()'s cookies) arrive on the 200, as on the 101 over HTTP/1.1", async () => {
  const instance = Fastify({ http2: true, https: { ...TLS, allowHTTP1: true } });
  app = instance as unknown as FastifyInstance;
  await instance.register(wsPlugin);
  /** The status each reply was sent with (onSend runs for a WebSocket's reply too). */
  const finished: number[] = [];
  instance.addHook('onRequest', async (_request, reply) => void reply.header('x-request-id', 'abc123'));
  // What @fastify/cookie's onSend hook does with the cookies of reply.setCookie().
  instance.addHook('onSend', async (_request, reply, payload) => {
    reply.header('set-cookie', ['sid=s1; Path=/; HttpOnly', 'theme=dark; Path=/']);
    return payload;
  });
  instance.addHook('onSend', async (_request, reply, payload) => {
    finished.push(reply.statusCode);
    return payload;
  });
  instance.get('/ws', { websocket: true }, (conn) => void conn.send(conn.transport.kind));
  await instance.listen({ port: 0, host: '127.0.0.1' });
  const host = `127.0.0.1:${(instance.server.address() as AddressInfo).port}`;
  for (const http2 of [true, false]) {
    const conn = await connect(`wss://${host}/ws`, { http2, tls: CLIENT_TLS });
    try {
      expect(await conn.recv()).toBe(http2 ? 'http2' : 'tls');
      // (Before, over HTTP/2: the reply was hijacked first, so no onSend hook ran and no cookie came.)
      expect(conn.headers['set-cookie']).toEqual(['sid=s1; Path=/; HttpOnly', 'theme=dark; Path=/']);
      expect(conn.headers['x-request-id']).toBe('abc123');
      expect(conn.headers['content-type']).toBeUndefined();
    } finally {
      await conn.close();
    }
    expect(conn.closeStatus).toBe(1000);
  }
  expect(finished).toEqual([101, 101]);
});
