/**
 * `beforeAccept` headers named Sec-WebSocket-*: the answer's Sec-WebSocket-Extensions (and
 * -Protocol, -Accept) are the handshake's, what the server negotiated and will speak (RFC 7692 §5:
 * the extensions in the response are the ones in use). A hook's went out beside (or instead of)
 * them: with perMessageDeflate false, `Sec-WebSocket-Extensions: permessage-deflate` from the hook
 * had the client compress and each compressed message fail with 1002; with deflate on, the client
 * saw the extension twice. Such a header is now the hook's failure: 500, a TypeError to `onError`,
 * over HTTP/1.1 and HTTP/2; other headers still go on the answer.
 */
import WebSocket from 'ws';
import type { OutgoingHttpHeaders } from 'node:http';
import { connect, HandshakeError, serve, type PerMessageDeflateOptions, type WebSocketServer } from 'rfc6455';
import { CLIENT_TLS, TLS } from '../http2/helpers.js';

const servers: WebSocketServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function hookedServer(http2: boolean, perMessageDeflate: boolean | PerMessageDeflateOptions, headers: OutgoingHttpHeaders) {
  const errors: unknown[] = [];
  let handled = 0;
  const server = await serve(
    { ...(http2 ? { http2: true, tls: TLS } : {}), perMessageDeflate, beforeAccept: () => ({ headers }), onError: (error) => errors.push(error) },
    async (conn) => {
      handled++;
      for await (const m of conn) await conn.send(m);
    },
  );
  servers.push(server);
  return { url: server.url.replace('127.0.0.1', 'localhost'), errors, handled: () => handled };
}

describe.each([
  ['HTTP/1.1', false],
  ['HTTP/2', true],
])('over %s', (_name, http2) => {
  test.each<[string, boolean, OutgoingHttpHeaders]>([
    ['an extension the server declined', false, { 'Sec-WebSocket-Extensions': 'permessage-deflate' }],
    ['other parameters than the negotiated ones', true, { 'sec-websocket-extensions': 'permessage-deflate; server_no_context_takeover' }],
    ['a subprotocol', true, { 'SEC-WEBSOCKET-PROTOCOL': 'chat' }],
    ['an accept value', true, { 'Sec-WebSocket-Accept': 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=' }],
  ])('a hook header announcing %s answers 500 and reports a TypeError; the client never opens', async (_label, perMessageDeflate, headers) => {
    const s = await hookedServer(http2, perMessageDeflate, headers);
    const outcome = await connect(s.url, { http2, tls: CLIENT_TLS, protocols: [] }).then(
      (conn) => {
        conn.terminate();
        return conn.extensions;
      },
      (error: unknown) => error,
    );
    expect(outcome).toBeInstanceOf(HandshakeError);
    expect((outcome as HandshakeError).status).toBe(500);
    expect(s.errors).toHaveLength(1);
    expect(s.errors[0]).toBeInstanceOf(TypeError);
    expect((s.errors[0] as Error).message).toMatch(new RegExp(`the ${Object.keys(headers)[0]!} header, which is the handshake's own`));
    expect(s.handled()).toBe(0);
  });

  test('other hook headers go on the answer, and deflate is negotiated as configured', async () => {
    const s = await hookedServer(http2, { serverNoContextTakeover: true }, { 'X-User': 'u1', 'Sec-WebSocketX': 'not the handshake' });
    const conn = await connect(s.url, { http2, tls: CLIENT_TLS });
    expect(conn.headers['x-user']).toBe('u1');
    expect(conn.extensions).toBe('permessage-deflate; server_no_context_takeover');
    const text = 'compress me '.repeat(200);
    await conn.send(text);
    expect(await conn.recv()).toBe(text);
    await conn.close();
    expect(s.errors).toEqual([]);
  });
});

test('ws as the client (HTTP/1.1): a hook announcing permessage-deflate on a server that declines it is refused with 500 instead of the 1002 ws got on its first compressed message', async () => {
  const s = await hookedServer(false, false, { 'Sec-WebSocket-Extensions': 'permessage-deflate' });
  const status = await new Promise<number>((resolve, reject) => {
    const ws = new WebSocket(s.url);
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.on('open', () => {
      ws.terminate();
      reject(new Error(`opened with extensions ${JSON.stringify(ws.extensions)}`));
    });
    ws.on('error', reject);
  });
  expect(status).toBe(500);
  expect(s.errors[0]).toBeInstanceOf(TypeError);
});
