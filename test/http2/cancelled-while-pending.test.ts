/**
 * An extended CONNECT (RFC 8441) that the client cancels while the server's before-accept hook is
 * still pending ends with its stream, as an HTTP/1.1 upgrade ends with its socket: the handshake
 * stops waiting for the hook (it held the stream, its request and its 408 timer until the hook
 * settled or handshakeTimeout, for good with a hook that never settles), and serve()'s
 * maxConnections slot is freed at once (it was held until handshakeTimeout, every later CONNECT
 * answered 503 meanwhile).
 */
import { constants as h2, createSecureServer, type ClientHttp2Session, type Http2ServerRequest, type Http2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { connect, handleConnect, serve, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { closeSession, openSession, originOf, TLS } from './helpers.js';
import { until } from '../../packages/rfc6455/test/helpers/wait.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * serve() over HTTP/2 with maxConnections 1 and `beforeAccept`, echoing, and a client session to
 * it (both closed after the test).
 */
async function echoServerAndSession(beforeAccept: () => Promise<undefined> | undefined): Promise<{ server: WebSocketServer; session: ClientHttp2Session }> {
  const server = await serve(
    { host: '127.0.0.1', port: 0, http2: true, tls: TLS, maxConnections: 1, perMessageDeflate: false, handshakeTimeout: 60_000, beforeAccept },
    async (conn) => {
      for await (const m of conn) await conn.send(m);
    },
  );
  cleanups.push(() => server.close());
  const session = await openSession(originOf(server.url));
  cleanups.push(() => closeSession(session));
  return { server, session };
}

/** Sends a WebSocket CONNECT on `session`, waits until the server's hook has it, then cancels it. */
async function cancelWhilePending(session: ClientHttp2Session, authority: string, path: string, hookCalled: () => boolean): Promise<void> {
  const stream = session.request({ ':method': 'CONNECT', ':protocol': 'websocket', ':scheme': 'https', ':path': path, ':authority': authority, 'sec-websocket-version': '13' }, { endStream: false });
  stream.on('error', () => undefined);
  await until(hookCalled, 'the before-accept hook to be called');
  const closed = new Promise((resolve) => stream.once('close', resolve));
  stream.close(h2.NGHTTP2_CANCEL);
  await closed;
}

test('serve(): a CONNECT cancelled while its hook is pending frees its maxConnections slot at once (held until handshakeTimeout: the next CONNECT got 503)', async () => {
  let hooks = 0;
  const { server, session } = await echoServerAndSession(() => (hooks++ === 0 ? new Promise<never>(() => undefined) : undefined));
  await cancelWhilePending(session, new URL(server.url).host, '/', () => hooks === 1);
  // On the same session: the server has read the cancellation before this CONNECT.
  const conn: WebSocketConnection = await connect(server.url, { http2: session });
  expect(hooks).toBe(2);
  await conn.send('in');
  expect(await conn.recv()).toBe('in');
  await conn.close();
});

test('serve(): a CONNECT cancelled while its hook is pending frees its maxConnections slot once, however its hook settles later (freed twice, the slot count went below zero and one CONNECT too many got in)', async () => {
  let hooks = 0;
  let settle!: () => void;
  const { server, session } = await echoServerAndSession(() => (hooks++ === 0 ? new Promise<undefined>((resolve) => (settle = () => resolve(undefined))) : undefined));
  await cancelWhilePending(session, new URL(server.url).host, '/', () => hooks === 1);
  // The hook of the cancelled CONNECT settles after its stream closed.
  settle();
  await new Promise((resolve) => setImmediate(resolve));
  const conn: WebSocketConnection = await connect(server.url, { http2: session });
  await conn.send('in');
  expect(await conn.recv()).toBe('in');
  // One connection open, maxConnections 1: the next CONNECT is refused.
  await expect(connect(server.url, { http2: session })).rejects.toMatchObject({ status: 503 });
  expect(server.connections.size).toBe(1);
  await conn.close();
});

test('handleConnect(): the handshake ends (undefined) once the client cancels the CONNECT, without waiting for a hook that has not settled; a later acceptance opens nothing', async () => {
  let accept!: () => void;
  let hookCalled = false;
  let handlerCalls = 0;
  let serverStream: ServerHttp2Stream | undefined;
  let handshake: Promise<WebSocketConnection | undefined> | undefined;
  const server = createSecureServer({ ...TLS, settings: { enableConnectProtocol: true } });
  server.on('request', (_req, res) => res.writeHead(404).end());
  server.on('connect', (req: Http2ServerRequest) => {
    serverStream = req.stream;
    handshake = handleConnect(req, () => void handlerCalls++, {
      perMessageDeflate: false,
      handshakeTimeout: 60_000,
      beforeAccept: () => {
        hookCalled = true;
        return new Promise<undefined>((resolve) => (accept = () => resolve(undefined)));
      },
    });
  });
  const sessions = new Set<Http2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    for (const s of sessions) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const authority = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const session = await openSession(`https://${authority}`);
  cleanups.push(() => closeSession(session));

  await cancelWhilePending(session, authority, '/ws', () => hookCalled);
  const stream = serverStream!;
  if (!stream.destroyed) await new Promise((resolve) => stream.once('close', resolve));
  // What the stream's close set off has run by the next turn of the loop.
  let outcome: { value: WebSocketConnection | undefined } | undefined;
  void handshake!.then((value) => (outcome = { value }));
  await new Promise((resolve) => setImmediate(resolve));
  // (Before: still pending, until the hook settled.)
  expect(outcome).toEqual({ value: undefined });
  accept();
  await new Promise((resolve) => setImmediate(resolve));
  expect(handlerCalls).toBe(0);
});
