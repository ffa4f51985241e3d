/**
 * `beforeAccept` headers that are the handshake's own. RFC 6455 §4.2.2 has the server write
 * Upgrade, Connection, Sec-WebSocket-Accept and the negotiated subprotocol and extensions, and
 * §11.3 each Sec-WebSocket-* at most once in a response. A hook's `headers` were written after the
 * core's: `Sec-WebSocket-Protocol: chat` went out twice (or named a subprotocol the connection did
 * not have), `Upgrade` twice, and clients (ours, `ws`) failed the handshake after the server had
 * counted an accepted connection. Now such a header is the hook's failure, as a refusal with a 101
 * status is: 500, a TypeError reported to `onError`, the handler never run; on both transports.
 */
import { connect, HandshakeError, serve, type WebSocketServer } from 'rfc6455';
import type { OutgoingHttpHeaders } from 'node:http';
import WebSocket from 'ws';
import { CLIENT_TLS, TLS } from './helpers.js';

const servers: WebSocketServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function hookServer(headers: OutgoingHttpHeaders, async = false): Promise<{ server: WebSocketServer; errors: unknown[]; handled: () => number }> {
  const errors: unknown[] = [];
  let handled = 0;
  const server = await serve(
    {
      http2: true,
      tls: TLS,
      protocols: ['chat'],
      beforeAccept: () => (async ? Promise.resolve({ headers }) : { headers }),
      onError: (error) => errors.push(error),
    },
    async (conn) => {
      handled++;
      await conn.send(conn.protocol);
      await conn.close();
    },
  );
  servers.push(server);
  return { server, errors, handled: () => handled };
}

describe.each([
  ['HTTP/2', true],
  ['HTTP/1.1', false],
])('over %s', (_name, http2) => {
  test.each([
    [{ 'Sec-WebSocket-Protocol': 'chat' }, false, /Sec-WebSocket-Protocol.*protocols option/],
    [{ 'sec-websocket-protocol': 'other' }, true, /sec-websocket-protocol/],
    [{ 'Sec-WebSocket-Extensions': 'permessage-deflate' }, false, /perMessageDeflate option/],
    [{ 'Sec-WebSocket-Accept': 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=' }, true, /Sec-WebSocket-Accept/],
    [{ Upgrade: 'websocket' }, false, /Upgrade/],
    [{ Connection: 'close' }, false, /Connection/],
  ])('a hook header %p (from an async hook: %p) answers 500 and reports a TypeError to onError; the handler never runs', async (headers, async, message) => {
    const { server, errors, handled } = await hookServer(headers, async);
    const url = server.url.replace('127.0.0.1', 'localhost');
    const outcome = await connect(url, { http2, tls: CLIENT_TLS, protocols: ['chat'], handshakeTimeout: 5000 }).then(
      (conn) => {
        conn.terminate();
        return conn;
      },
      (error: unknown) => error,
    );
    expect(outcome).toBeInstanceOf(HandshakeError);
    expect((outcome as HandshakeError).status).toBe(500);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(TypeError);
    expect((errors[0] as Error).message).toMatch(message);
    expect(handled()).toBe(0);
  });

  test('other hook headers still reach the client, next to the subprotocol the server chose', async () => {
    const { server, errors, handled } = await hookServer({ 'X-Session': 'abc', 'Sec-Fetch-Thing': 'kept' });
    const url = server.url.replace('127.0.0.1', 'localhost');
    const conn = await connect(url, { http2, tls: CLIENT_TLS, protocols: ['chat'] });
    expect([conn.protocol, conn.headers['x-session'], conn.headers['sec-fetch-thing']]).toEqual(['chat', 'abc', 'kept']);
    expect(await conn.recv()).toBe('chat');
    await conn.whenClosed;
    expect(errors).toEqual([]);
    expect(handled()).toBe(1);
  });
});

test('ws as the client: a hook Sec-WebSocket-Protocol is a 500, not a 101 ws fails on ("Server sent an invalid subprotocol")', async () => {
  const { server, errors } = await hookServer({ 'Sec-WebSocket-Protocol': 'chat' });
  const status = await new Promise<number | string>((resolve) => {
    const ws = new WebSocket(server.url.replace('127.0.0.1', 'localhost'), ['chat'], { ca: CLIENT_TLS.ca });
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.on('open', () => {
      resolve('open');
      ws.terminate();
    });
    ws.on('error', (error) => resolve(error.message));
  });
  expect(status).toBe(500);
  expect(errors).toHaveLength(1);
});
