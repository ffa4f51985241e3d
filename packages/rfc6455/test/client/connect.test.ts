/**
 * The client handshake against raw servers that answer wrongly (RFC 6455 §4.1: the client MUST
 * fail the connection), error responses surfacing as HandshakeError, and redirects.
 */
import { attachHttp2, connect, serve, HandshakeError, WebSocket, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { createServer as createHttp2Server } from 'node:http2';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { acceptKey } from '../../src/handshake/server.js';
import { redirectedOptions } from '../../src/client.js';
import { verifyNegotiation, verifyResponse } from '../../src/handshake/client.js';
import type { Socket } from 'node:net';
import { handshakeFailure, rawServer, requestKey, switching, type RawServer } from '../helpers/raw-server.js';
import { closePayload, decodeFrames, frame, type DecodedFrame } from '../helpers/frames.js';

let servers: RawServer[] = [];
async function answering(respond: (head: string) => string): Promise<RawServer> {
  const s = await rawServer((head, socket) => socket.write(respond(head)));
  servers.push(s);
  return s;
}
afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
});

describe('client verifies the 101 response', () => {
  test('a correct 101 from a raw server is accepted (the control case)', async () => {
    const s = await answering((head) => switching(head));
    const conn = await connect(s.url, { perMessageDeflate: false });
    expect(conn.readyState).toBe('open');
    // What the client sent: a 16-byte random key and version 13 (§4.1 items 7, 9).
    expect(Buffer.from(requestKey(s.requests[0]!), 'base64')).toHaveLength(16);
    expect(s.requests[0]).toMatch(/^sec-websocket-version: 13$/im);
    conn.terminate();
  });

  test('a response that is not HTTP (RTSP/1.0 101, ICE/1.0 101, ICY 101, whatever its status) fails with WS_BAD_STATUS_LINE, as in Chromium (it was taken for HTTP/1.0 101: Node parses RTSP/ and ICE/)', async () => {
    const cases: Array<[string, string | undefined]> = [
      ['RTSP/1.0 101 Switching Protocols', 'RTSP/1.0 101 Switching Protocols'],
      ['ICE/1.0 101 Switching Protocols', 'ICE/1.0 101 Switching Protocols'],
      ['HTTP/1.1 100 Continue\r\nX: y\r\n\r\nRTSP/1.0 101 Switching Protocols', 'RTSP/1.0 101 Switching Protocols'],
      ['RTSP/1.0 302 Found\r\nLocation: /elsewhere', 'RTSP/1.0 302 Found'],
      // Refused by Node's parser (it was WS_CONNECT_FAILED, "connection failed: Parse Error").
      ['ICY 101 Switching Protocols', undefined],
      ['HTTP/2 101 Switching Protocols', undefined],
    ];
    for (const [first, statusLine] of cases) {
      const s = await answering((head) => switching(head).replace('HTTP/1.1 101 Switching Protocols', first));
      const error = await handshakeFailure(s.url, { followRedirects: true });
      expect([first, error.code, error.status, error.statusLine]).toEqual([first, 'WS_BAD_STATUS_LINE', 0, statusLine]);
      expect(s.requests).toHaveLength(1);
    }
    // Any HTTP version is taken, as Chromium and ws take it; interim responses before the 101 too.
    for (const first of ['HTTP/1.0 101 Switching Protocols', 'HTTP/2.0 101 Switching Protocols', 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols']) {
      const s = await rawServer((head, socket) => socket.write(`${switching(head).replace('HTTP/1.1 101 Switching Protocols', first)}\x81\x02hi`, 'latin1'));
      servers.push(s);
      const conn = await connect(s.url, { perMessageDeflate: false });
      expect([first, await conn.recv()]).toEqual([first, 'hi']);
      conn.terminate();
    }
  });

  test('a wrong Sec-WebSocket-Accept fails with WS_BAD_ACCEPT', async () => {
    const s = await answering((head) => switching(head, [], acceptKey('dGhlIHNhbXBsZSBub25jZQ==')));
    const error = await handshakeFailure(s.url);
    expect(error.code).toBe('WS_BAD_ACCEPT');
    expect(error.status).toBe(101);
  });

  test('a 101 without Upgrade, or without Connection: Upgrade, fails with WS_BAD_UPGRADE / WS_BAD_CONNECTION, not as a refusal (it was WS_UNEXPECTED_RESPONSE, "server answered 101")', async () => {
    // Node's HTTP client does not take such a 101 for an upgrade: it comes as a plain response.
    const cases: Array<[string, (head: string) => string, string]> = [
      ['no Upgrade', (head) => switching(head).replace('Upgrade: websocket\r\n', ''), 'WS_BAD_UPGRADE'],
      ['no Connection', (head) => switching(head).replace('Connection: Upgrade\r\n', ''), 'WS_BAD_CONNECTION'],
      ['Connection: upgradex', (head) => switching(head).replace('Connection: Upgrade', 'Connection: upgradex'), 'WS_BAD_CONNECTION'],
    ];
    for (const [name, respond, code] of cases) {
      const s = await answering(respond);
      const error = await handshakeFailure(s.url);
      expect([name, error.code, error.status, error.statusLine]).toEqual([name, code, 101, 'HTTP/1.1 101 Switching Protocols']);
    }
    // Connection is a token list (any case, with other tokens, repeated).
    const s = await answering((head) => switching(head, ['Connection: Upgrade']).replace('Connection: Upgrade', 'Connection: keep-alive, UPGRADE'));
    (await connect(s.url, { perMessageDeflate: false })).terminate();
  });

  test('an Upgrade that is not websocket alone (a list, the header twice) fails with WS_BAD_UPGRADE, as in ws and undici; its case does not matter', async () => {
    // §4.1: fail if Upgrade "contains a value that is not an ASCII case-insensitive match for the
    // value 'websocket'" (fixed bug: `h2c, websocket` was accepted).
    for (const upgrade of ['h2c, websocket', 'websocket, websocket', 'websocket/13']) {
      const s = await answering((head) => switching(head).replace('Upgrade: websocket', `Upgrade: ${upgrade}`));
      const error = await handshakeFailure(s.url);
      expect([upgrade, error.code, error.status]).toEqual([upgrade, 'WS_BAD_UPGRADE', 101]);
    }
    const twice = await answering((head) => switching(head).replace('Upgrade: websocket\r\n', 'Upgrade: websocket\r\nUpgrade: websocket\r\n'));
    expect((await handshakeFailure(twice.url)).code).toBe('WS_BAD_UPGRADE');
    const s = await answering((head) => switching(head).replace('Upgrade: websocket', 'Upgrade: WebSocket'));
    const conn = await connect(s.url, { perMessageDeflate: false });
    conn.terminate();
  });

  test('a subprotocol we did not offer fails with WS_BAD_PROTOCOL', async () => {
    const s = await answering((head) => switching(head, ['Sec-WebSocket-Protocol: superchat']));
    const error = await handshakeFailure(s.url, { protocols: ['chat'] });
    expect(error.code).toBe('WS_BAD_PROTOCOL');
    expect(error.headers['sec-websocket-protocol']).toBe('superchat');
  });

  test('Sec-WebSocket-Protocol twice (the same offered name), or a list of two offered names, fails with WS_BAD_PROTOCOL; Sec-WebSocket-Accept twice (the right value) with WS_BAD_ACCEPT (RFC 6455 §4.1, §11.3.3, §11.3.4: one value, at most once in a response)', async () => {
    const cases: Array<[string, (head: string) => string, string]> = [
      ['the subprotocol twice', (head) => switching(head, ['Sec-WebSocket-Protocol: chat', 'Sec-WebSocket-Protocol: chat']), 'WS_BAD_PROTOCOL'],
      ['a list of two', (head) => switching(head, ['Sec-WebSocket-Protocol: chat, superchat']), 'WS_BAD_PROTOCOL'],
      ['the accept twice', (head) => switching(head, [`Sec-WebSocket-Accept: ${acceptKey(requestKey(head))}`]), 'WS_BAD_ACCEPT'],
    ];
    for (const [name, respond, code] of cases) {
      const s = await answering(respond);
      const error = await handshakeFailure(s.url, { protocols: ['chat', 'superchat'] });
      expect([name, error.code, error.status]).toEqual([name, code, 101]);
    }
    // (The control case: one of the two, once.)
    const s = await answering((head) => switching(head, ['Sec-WebSocket-Protocol: superchat']));
    const conn = await connect(s.url, { protocols: ['chat', 'superchat'], perMessageDeflate: false });
    expect(conn.protocol).toBe('superchat');
    conn.terminate();
  });

  test('the same subprotocol offered twice is a TypeError, over HTTP/1.1 and HTTP/2, and nothing is sent (RFC 6455 §4.1: unique; it was sent as "chat, chat")', async () => {
    const s = await answering((head) => switching(head));
    for (const http2 of [false, true]) {
      await expect(connect(s.url, { protocols: ['chat', 'v2', 'chat'], http2 })).rejects.toThrow(TypeError);
    }
    // (Exact duplicates: names that differ in case are different names here.)
    (await connect(s.url, { protocols: ['chat', 'Chat'], perMessageDeflate: false })).terminate();
    expect(s.requests).toHaveLength(1);
    expect(s.requests[0]).toMatch(/^sec-websocket-protocol: chat, Chat$/im);
  });

  test('a subprotocol that is not a token is a TypeError, over HTTP/1.1 and HTTP/2, and nothing is sent (RFC 6455 §4.1 item 10)', async () => {
    const s = await answering((head) => switching(head, ['Sec-WebSocket-Protocol: a b']));
    for (const http2 of [false, true]) {
      for (const protocols of [['a b'], ['chat', 'a,b'], ['chat', ''], ['x"y'], 'a b']) {
        await expect(connect(s.url, { protocols, http2, perMessageDeflate: false })).rejects.toThrow(TypeError);
      }
    }
    expect(s.requests).toHaveLength(0);
  });

  test('a URL with a fragment is a SyntaxError before anything is sent (RFC 6455 §3; it was dropped silently); a %23 is data', async () => {
    const s = await answering((head) => switching(head));
    for (const url of [`${s.url}#x`, `${s.url}#`, `${s.url}?q=1#`, s.url.replace('ws:', 'http:') + '#top']) {
      await expect(connect(url, { perMessageDeflate: false })).rejects.toThrow(SyntaxError);
    }
    expect(s.requests).toHaveLength(0);
    (await connect(`${s.url}a%23b`, { perMessageDeflate: false })).terminate();
    expect(s.requests[0]).toMatch(/^GET \/a%23b HTTP\/1.1$/m);
  });

  test('a subprotocol when we offered none fails', async () => {
    const s = await answering((head) => switching(head, ['Sec-WebSocket-Protocol: chat']));
    expect((await handshakeFailure(s.url)).code).toBe('WS_BAD_PROTOCOL');
  });

  test('verifyResponse (exported) checks every item itself: Upgrade, Connection: Upgrade, the accept value; a malformed Sec-WebSocket-Extensions is a 101 HandshakeError with its cause (Node never hands connect() a 101 without Connection: upgrade, so only a direct call reaches that check)', () => {
    const key = 'dGhlIHNhbXBsZSBub25jZQ==';
    const good = { upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-accept': acceptKey(key) };
    const code = (headers: Record<string, string>): unknown => {
      try {
        verifyResponse('HTTP/1.1 101 Switching Protocols', headers, { key, extensionNames: ['permessage-deflate'] });
        return 'accepted';
      } catch (error) {
        expect(error).toBeInstanceOf(HandshakeError);
        const e = error as HandshakeError;
        return [e.code, e.status, e.statusLine];
      }
    };
    const line = 'HTTP/1.1 101 Switching Protocols';
    expect(code(good)).toBe('accepted');
    expect(code({ ...good, connection: 'keep-alive, UPGRADE' })).toBe('accepted');
    expect(code({ ...good, upgrade: 'h2c' })).toEqual(['WS_BAD_UPGRADE', 101, line]);
    expect(code({ upgrade: 'websocket', 'sec-websocket-accept': acceptKey(key) })).toEqual(['WS_BAD_CONNECTION', 101, line]);
    expect(code({ ...good, connection: 'upgradex' })).toEqual(['WS_BAD_CONNECTION', 101, line]);
    expect(code({ ...good, 'sec-websocket-accept': acceptKey('x' + key) })).toEqual(['WS_BAD_ACCEPT', 101, line]);
    expect(code({ ...good, 'sec-websocket-extensions': 'permessage-deflate; ="' })).toEqual(['WS_BAD_EXTENSION_RESPONSE', 101, line]);
    let malformed: unknown;
    try {
      verifyResponse(line, { ...good, 'sec-websocket-extensions': 'a b' }, { key });
    } catch (error) {
      malformed = error;
    }
    expect((malformed as HandshakeError).cause).toBeInstanceOf(HandshakeError);
  });

  test('an extension we did not offer fails', async () => {
    const s = await answering((head) => switching(head, ['Sec-WebSocket-Extensions: x-webkit-deflate-frame']));
    expect((await handshakeFailure(s.url)).code).toBe('WS_BAD_EXTENSION_RESPONSE');
  });

  test('permessage-deflate accepted twice (one header line or two), or beside an extension we did not offer, fails with WS_BAD_EXTENSION_RESPONSE (RFC 7692 §5: one accepted offer)', async () => {
    for (const lines of [
      ['Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate'],
      ['Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10', 'Sec-WebSocket-Extensions: permessage-deflate'],
      ['Sec-WebSocket-Extensions: permessage-deflate, x-webkit-deflate-frame'],
    ]) {
      const s = await answering((head) => switching(head, lines));
      const error = await handshakeFailure(s.url, { perMessageDeflate: true });
      expect([lines, error.code, error.status]).toEqual([lines, 'WS_BAD_EXTENSION_RESPONSE', 101]);
    }
    // The control case: once, as offered.
    const s = await answering((head) => switching(head, ['Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10']));
    const conn = await connect(s.url);
    expect(conn.extensions).toBe('permessage-deflate; client_max_window_bits=10');
    conn.terminate();
  });

  test('an empty Sec-WebSocket-Extensions (blank, or commas alone) fails with WS_BAD_EXTENSION_RESPONSE, offered or not, as in Chromium and ws (RFC 6455 §9.1: 1#extension; it was taken as no extension)', async () => {
    for (const value of ['', '   ', ',', ' , ,']) {
      for (const perMessageDeflate of [true, false]) {
        const s = await answering((head) => switching(head, [`Sec-WebSocket-Extensions: ${value}`]));
        const error = await handshakeFailure(s.url, { perMessageDeflate });
        expect([value, perMessageDeflate, error.code, error.status]).toEqual([value, perMessageDeflate, 'WS_BAD_EXTENSION_RESPONSE', 101]);
      }
    }
    // The same check on the HTTP/2 path's headers (RFC 8441: a 200 with the same fields).
    expect(() => verifyNegotiation('HTTP/2 200', { 'sec-websocket-extensions': '' }, { extensionNames: ['permessage-deflate'] })).toThrow(HandshakeError);
    expect(verifyNegotiation('HTTP/2 200', {}, { extensionNames: ['permessage-deflate'] }).extensions).toEqual([]);
  });

  test('an empty Sec-WebSocket-Protocol fails with WS_BAD_PROTOCOL whether we offered subprotocols or not, as in Chromium and ws', async () => {
    for (const protocols of [['chat'], undefined]) {
      const s = await answering((head) => switching(head, ['Sec-WebSocket-Protocol: ']));
      expect((await handshakeFailure(s.url, { protocols })).code).toBe('WS_BAD_PROTOCOL');
    }
  });

  test('permessage-deflate accepted by the server when we did not offer it fails', async () => {
    const s = await answering((head) => switching(head, ['Sec-WebSocket-Extensions: permessage-deflate']));
    expect(s.requests).toEqual([]);
    const error = await handshakeFailure(s.url, { perMessageDeflate: false });
    expect(s.requests[0]).not.toMatch(/sec-websocket-extensions/i);
    expect(error.code).toBe('WS_BAD_EXTENSION_RESPONSE');
  });
});

describe('client receives an HTTP error instead of 101', () => {
  test('a 401 surfaces as HandshakeError with status, headers and body', async () => {
    const body = '{"error":"token expired"}';
    const s = await answering(() =>
      ['HTTP/1.1 401 Unauthorized', 'WWW-Authenticate: Bearer', 'Content-Type: application/json', `Content-Length: ${body.length}`, '', body].join('\r\n'),
    );
    const error = await handshakeFailure(s.url);
    expect(error.status).toBe(401);
    expect(error.statusLine).toBe('HTTP/1.1 401 Unauthorized');
    expect(error.headers['www-authenticate']).toBe('Bearer');
    expect(error.body?.toString()).toBe(body);
  });

  test('our own server’s 400 reaches the client with its reason in the body', async () => {
    const server = await serve({ perMessageDeflate: false, beforeAccept: () => ({ reject: { status: 403, body: 'forbidden here' } }) }, () => undefined);
    try {
      const error = await handshakeFailure(server.url);
      expect(error.status).toBe(403);
      expect(error.body?.toString()).toBe('forbidden here');
    } finally {
      await server.close();
    }
  });

  test('a refusal whose body runs on (or never ends) still rejects with its status and the first 64 KiB of the body, the rest unread', async () => {
    // A 403 whose chunked body goes on for as long as the client reads it.
    let written = 0;
    const endless = await rawServer((_, socket) => {
      socket.write('HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n');
      const more = (): void => {
        if (socket.destroyed || written >= 64 * 1024 * 1024) return;
        written += 16 * 1024;
        socket.write(`4000\r\n${'x'.repeat(16 * 1024)}\r\n`, more);
      };
      more();
    });
    servers.push(endless);
    // (The whole body was read, until the handshake timed out: WS_HANDSHAKE_TIMEOUT, status 0.)
    const error = await handshakeFailure(endless.url, { handshakeTimeout: 20_000 });
    expect(error.code).toBe('WS_UNEXPECTED_RESPONSE');
    expect(error.status).toBe(403);
    expect(error.body).toEqual(Buffer.alloc(64 * 1024, 'x'));
    // A body that stops short of 64 KiB and never ends: the refusal once the handshake times out.
    const stalled = await answering(() => 'HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n7\r\ndenied.\r\n');
    const timedOut = await handshakeFailure(stalled.url, { handshakeTimeout: 200 });
    expect(timedOut.code).toBe('WS_UNEXPECTED_RESPONSE');
    expect(timedOut.status).toBe(401);
    expect(timedOut.body?.toString()).toBe('denied.');
  });

  test('a refusal whose chunked body breaks off in an invalid chunk rejects with its status, headers and the body that came, as one whose connection ends early (it was WS_CONNECT_FAILED, status 0)', async () => {
    const s = await answering(() => 'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nTransfer-Encoding: chunked\r\n\r\n7\r\ndenied.\r\nzz\r\n');
    const error = await handshakeFailure(s.url);
    expect([error.code, error.status, error.statusLine, error.headers['www-authenticate'], error.body?.toString()]).toEqual(['WS_UNEXPECTED_RESPONSE', 401, 'HTTP/1.1 401 Unauthorized', 'Bearer', 'denied.']);
  });

  test("a response head Node's parser refuses after its status line (a line that is no header, a control character in a value, two Content-Lengths, a bare LF, an obs-fold) fails with WS_BAD_RESPONSE, the parser's error its cause (it was WS_CONNECT_FAILED, as if nothing had answered)", async () => {
    const heads = [
      ['HTTP/1.1 101 Switching Protocols', 'Not A Header: x', 'Upgrade: websocket', '', ''].join('\r\n'),
      ['HTTP/1.1 401 Unauthorized', 'X-Note: a\x01b', 'Content-Length: 0', '', ''].join('\r\n'),
      ['HTTP/1.1 401 Unauthorized', 'Content-Length: 1', 'Content-Length: 2', '', 'ab'].join('\r\n'),
      'HTTP/1.1 401 Unauthorized\nContent-Length: 0\n\n',
      // obs-fold (docs/client.md: refused, as Node's parser refuses it for ws and undici).
      ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'X-Note: one', ' two', '', ''].join('\r\n'),
    ];
    for (const head of heads) {
      const s = await answering(() => head);
      const error = await handshakeFailure(s.url);
      expect([head, error.code, error.status, (error.cause as { code?: string } | undefined)?.code?.startsWith('HPE_')]).toEqual([head, 'WS_BAD_RESPONSE', 0, true]);
    }
  });

  test('a connection refused is a HandshakeError with status 0', async () => {
    const s = await answering(() => '');
    const url = s.url;
    await s.close();
    servers = [];
    const error = await handshakeFailure(url);
    expect(error.status).toBe(0);
    expect(error.code).toBe('WS_CONNECT_FAILED');
  });
});

describe('handshakeTimeout', () => {
  test.each([Infinity, 2 ** 31])('%d, more than setTimeout takes, waits for the answer (it failed at once: "timed out after Infinity ms")', async (handshakeTimeout) => {
    // The 101 comes a little later, as over any real network.
    const slow = await rawServer((head, socket) => void setTimeout(() => socket.write(switching(head)), 30));
    servers.push(slow);
    const conn = await connect(slow.url, { perMessageDeflate: false, handshakeTimeout });
    expect(conn.readyState).toBe('open');
    conn.terminate();
  });

  test('a 101 that came in time while the event loop was held past handshakeTimeout is taken (it failed with WS_HANDSHAKE_TIMEOUT)', async () => {
    const holding = await rawServer((head, socket) => {
      socket.write(switching(head));
      // The loop is held past the client's handshakeTimeout with the 101 waiting unread.
      const end = Date.now() + 400;
      while (Date.now() < end);
    });
    servers.push(holding);
    const conn = await connect(holding.url, { perMessageDeflate: false, handshakeTimeout: 200 });
    expect(conn.readyState).toBe('open');
    conn.terminate();
  });
});

describe('redirects', () => {
  let target: WebSocketServer;
  beforeAll(async () => {
    target = await serve({ perMessageDeflate: false }, (conn) => void conn.send(`arrived at ${conn.url}`));
  });
  afterAll(() => target.close());

  const redirector = (): Promise<RawServer> =>
    answering(() => ['HTTP/1.1 302 Found', `Location: http://127.0.0.1:${target.port}/landed?x=1`, 'Content-Length: 0', '', ''].join('\r\n'));

  test('are not followed by default: the 302 surfaces as HandshakeError with Location', async () => {
    const s = await redirector();
    const error = await handshakeFailure(s.url);
    expect(error.status).toBe(302);
    expect(error.headers.location).toBe(`http://127.0.0.1:${target.port}/landed?x=1`);
  });

  test('are followed when asked (http: Location mapped to ws:)', async () => {
    const s = await redirector();
    const conn = await connect(s.url, { perMessageDeflate: false, followRedirects: true });
    expect(await conn.recv()).toBe('arrived at /landed?x=1');
    await conn.close();
  });

  test('credentials do not follow a redirect to another host: Authorization and Cookie dropped, other headers kept', async () => {
    const seen: Array<Record<string, string | string[] | undefined>> = [];
    const landing = await serve({ host: '127.0.0.2', perMessageDeflate: false }, (conn, req) => {
      seen.push({ authorization: req.headers.authorization, cookie: req.headers.cookie, 'x-trace': req.headers['x-trace'] });
      void conn.send('landed');
    });
    try {
      // 127.0.0.1:<port> and 127.0.0.2:<other port>: another host (both on the loopback interface).
      const s = await answering(() => ['HTTP/1.1 307 Temporary Redirect', `Location: ws://127.0.0.2:${landing.port}/`, 'Content-Length: 0', '', ''].join('\r\n'));
      const headers = { Authorization: 'Bearer secret', cookie: 'session=abc', 'X-Trace': 't1' };
      const conn = await connect(s.url, { perMessageDeflate: false, followRedirects: true, headers });
      expect(await conn.recv()).toBe('landed');
      await conn.close();
      // The first server got them; the other host did not.
      expect(s.requests[0]).toMatch(/^authorization: Bearer secret$/im);
      expect(s.requests[0]).toMatch(/^cookie: session=abc$/im);
      expect(seen).toEqual([{ authorization: undefined, cookie: undefined, 'x-trace': 't1' }]);
    } finally {
      await landing.close();
    }
  });

  test('credentials follow a redirect on the same host', async () => {
    const s = await answering((head) =>
      head.startsWith('GET /start ') ? ['HTTP/1.1 302 Found', 'Location: /final', 'Content-Length: 0', '', ''].join('\r\n') : switching(head),
    );
    const conn = await connect(`${s.url}start`, { perMessageDeflate: false, followRedirects: true, headers: { Authorization: 'Bearer secret' } });
    conn.terminate();
    expect(s.requests.map((h) => h.split('\r\n')[0])).toEqual(['GET /start HTTP/1.1', 'GET /final HTTP/1.1']);
    expect(s.requests[1]).toMatch(/^authorization: Bearer secret$/im);
  });

  test('the rule for each kind of redirect (another host, wss: to ws:, same host, ws: to wss:)', () => {
    const options = { headers: { authorization: 'a', Cookie: 'c', Host: 'h', 'x-other': 'o' }, socketPath: '/run/s.sock' };
    const from = new URL('wss://a.example/');
    const other = redirectedOptions(from, new URL('wss://b.example/'), options);
    expect([other.headers, other.socketPath]).toEqual([{ 'x-other': 'o' }, undefined]);
    const downgrade = redirectedOptions(from, new URL('ws://a.example/'), options);
    expect([downgrade.headers, downgrade.socketPath]).toEqual([{ Host: 'h', 'x-other': 'o' }, '/run/s.sock']);
    expect(redirectedOptions(from, new URL('wss://a.example/elsewhere'), options)).toBe(options);
    expect(redirectedOptions(new URL('ws://a.example/'), new URL('wss://a.example/'), options)).toBe(options);
  });

  test('are followed at once, without waiting for the end of the redirect\'s body (it waited up to handshakeTimeout for one that did not end)', async () => {
    const s = await answering((head) =>
      // A 302 whose chunked body never ends (the server keeps the connection open), as ws follows.
      head.startsWith('GET /start ') ? ['HTTP/1.1 302 Found', 'Location: /final', 'Transfer-Encoding: chunked', '', '5', 'moved', ''].join('\r\n') : switching(head),
    );
    // (The signal only keeps the old behaviour from hanging the test until handshakeTimeout.)
    const conn = await connect(`${s.url}start`, { perMessageDeflate: false, followRedirects: true, handshakeTimeout: 60_000, signal: AbortSignal.timeout(3000) });
    conn.terminate();
    expect(s.requests.map((h) => h.split('\r\n')[0])).toEqual(['GET /start HTTP/1.1', 'GET /final HTTP/1.1']);
  });

  test.each([
    ['no URL', 'http://[::1', 'not a valid URL'],
    ['a fragment', '/final#part', 'may not have a fragment'],
    ['another scheme', 'ftp://127.0.0.1/', 'unsupported scheme ftp:'],
    ['a Unix socket', 'ws+unix:///tmp/s.sock:/', 'unsupported scheme ws+unix:'],
  ])('a Location with %s fails the handshake with WS_BAD_REDIRECT and the 3xx (was a TypeError, or the fragment dropped)', async (_, location, why) => {
    const s = await answering((head) =>
      head.startsWith('GET /start ') ? ['HTTP/1.1 302 Found', `Location: ${location}`, 'Content-Length: 0', '', ''].join('\r\n') : switching(head),
    );
    const error = await handshakeFailure(`${s.url}start`, { followRedirects: true });
    expect(error).toBeInstanceOf(HandshakeError);
    expect([error.code, error.status, error.headers.location]).toEqual(['WS_BAD_REDIRECT', 302, location]);
    expect(error.message).toContain(why);
    // Nothing followed it.
    expect(s.requests).toHaveLength(1);
  });

  test('stop at the maximum: a redirect loop fails with the last 3xx', async () => {
    const loop = await answering(() => ['HTTP/1.1 307 Temporary Redirect', 'Location: /again', 'Content-Length: 0', '', ''].join('\r\n'));
    const error = await handshakeFailure(loop.url, { followRedirects: 2 });
    expect(error.status).toBe(307);
    expect(loop.requests).toHaveLength(3);
  });
});

describe('request headers', () => {
  // Over HTTP/2 (`http2: true`) a raw server sees the connection preface as a request head.
  const refusing = (head: string): string => (head.startsWith('PRI * HTTP/2.0') ? '' : 'HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
  const transports = [{ variant: 'rfc6455', http2: false }, { variant: 'rfc6455', http2: true }, { variant: 'hybi00', http2: false }] as const;

  test('a header name or value a header cannot carry (CR, LF, NUL, another control character; a name that is no token, such as :path), or such an origin, is a TypeError before anything is sent, over HTTP/1.1, HTTP/2 and hybi-00, and from the WebSocket constructor (over HTTP/2 a connection was made, then the header dropped, the stream failed, or the handshake waited for its timeout)', async () => {
    const s = await answering(refusing);
    const bad = [
      { headers: { 'X-Note': 'a\r\nX-Injected: 1' } },
      { headers: { 'X-Note': 'a\nb' } },
      { headers: { 'X-Note': ['fine', 'a\0b'] } },
      { headers: { 'X-Note': 'bell\x07' } },
      { headers: { 'X-Note\r\nX-Injected': '1' } },
      { headers: { ':path': '/elsewhere' } },
      { headers: { Host: 'example.com\r\nX-Injected: 1' } },
      { origin: 'https://example.com\r\nX-Injected: 1' },
    ];
    for (const { variant, http2 } of transports) {
      for (const options of bad) {
        const outcome = await connect(s.url, { variant, http2, handshakeTimeout: 500, perMessageDeflate: false, ...options }).then(
          (conn) => (conn.terminate(), 'connected'),
          // (By name: Node's own TypeErrors come from another realm than the test's.)
          (e: unknown) => ((e as Error).name === 'TypeError' ? 'TypeError' : String(e)),
        );
        expect([variant, http2, options, outcome]).toEqual([variant, http2, options, 'TypeError']);
      }
    }
    for (const options of bad) expect(() => new WebSocket(s.url, options)).toThrow(TypeError);
    expect(s.requests).toEqual([]);
    // Tab, obs-text (latin1) and a number are values a header can carry.
    await handshakeFailure(s.url, { headers: { 'X-Note': 'a\tb \xe9', 'X-Count': 3 as unknown as string } });
    expect(s.requests[0]).toMatch(/^X-Note: a\tb \xe9\r\nX-Count: 3$/m);
  });

  test("the handshake's own headers (Sec-WebSocket-Key, -Version, -Protocol, -Extensions, hybi-00's keys; any case) given in headers are a TypeError naming what to use, before anything is sent (they were replaced silently, sent in place of the handshake's over HTTP/2, or sent and failed the handshake); Upgrade and Connection are the handshake's, sent once, over hybi-00 too (they were sent twice)", async () => {
    const s = await answering(refusing);
    const own = ['Sec-WebSocket-Key', 'sec-websocket-version', 'SEC-WEBSOCKET-PROTOCOL', 'Sec-WebSocket-Extensions', 'Sec-WebSocket-Key1', 'Sec-WebSocket-Key2', 'Sec-WebSocket-Accept'];
    for (const { variant, http2 } of transports) {
      for (const name of own) {
        const error = await connect(s.url, { variant, http2, handshakeTimeout: 500, headers: { [name]: 'x' } }).then(
          (conn) => (conn.terminate(), undefined),
          (e: unknown) => e,
        );
        expect([variant, http2, name, (error as Error | undefined)?.name]).toEqual([variant, http2, name, 'TypeError']);
        expect((error as Error).message).toContain(name);
      }
    }
    await expect(connect(s.url, { headers: { 'Sec-WebSocket-Protocol': 'chat' } })).rejects.toThrow(/use the protocols option/);
    await expect(connect(s.url, { headers: { 'Sec-WebSocket-Extensions': 'permessage-deflate' } })).rejects.toThrow(/use the perMessageDeflate option/);
    expect(() => new WebSocket(s.url, { headers: { 'Sec-WebSocket-Version': '8' } })).toThrow(TypeError);
    expect(s.requests).toEqual([]);

    // Upgrade and Connection (and an undefined value) are accepted, and the handshake's are sent, once.
    const headers = { Upgrade: 'h2c', Connection: 'keep-alive', 'Sec-WebSocket-Key': undefined, 'X-Kept': 'yes' };
    for (const variant of ['rfc6455', 'hybi00'] as const) {
      await expect(connect(s.url, { variant, headers, perMessageDeflate: false })).rejects.toBeInstanceOf(HandshakeError);
      const head = s.requests.at(-1)!;
      expect([variant, head.match(/^upgrade:.*$/gim), head.match(/^connection:.*$/gim), head.match(/^x-kept:.*$/gim)]).toEqual([
        variant,
        [variant === 'hybi00' ? 'Upgrade: WebSocket' : 'Upgrade: websocket'],
        ['Connection: Upgrade'],
        ['X-Kept: yes'],
      ]);
    }
  });
});

describe('a header whose value is undefined', () => {
  test('is not sent, over HTTP/1.1, HTTP/2 (h2c) and hybi-00 alike (over HTTP/1.1 it was a TypeError from Node, ERR_HTTP_INVALID_HEADER_VALUE)', async () => {
    const report = async (conn: WebSocketConnection, req: IncomingMessage): Promise<void> => {
      await conn.send(JSON.stringify({ version: req.httpVersion, names: Object.keys(req.headers).filter((name) => name.startsWith('x-')) }));
      await conn.close();
    };
    const h1 = await serve({ host: '127.0.0.1', port: 0 }, report);
    const h2c = createHttp2Server();
    attachHttp2(h2c, report);
    await new Promise<void>((r) => h2c.listen(0, '127.0.0.1', r));
    const headers = { 'X-Absent': undefined, 'X-Present': 'yes' };
    try {
      const seen: unknown[] = [];
      for (const [url, options] of [
        [h1.url, {}],
        [`ws://127.0.0.1:${(h2c.address() as AddressInfo).port}/`, { http2: true }],
        [h1.url, { variant: 'hybi00' }],
      ] as const) {
        const conn = await connect(url, { ...options, headers });
        seen.push(JSON.parse(String(await conn.recv())));
        await conn.whenClosed;
      }
      expect(seen).toEqual([
        { version: '1.1', names: ['x-present'] },
        { version: '2.0', names: ['x-present'] },
        { version: '1.1', names: ['x-present'] },
      ]);
    } finally {
      await h1.close();
      await new Promise<void>((r) => h2c.close(() => r()));
    }
  });
});

describe('credentials in the URL', () => {
  const basic = (credentials: string): string => `Basic ${Buffer.from(credentials, 'utf8').toString('base64')}`;

  test('are sent as Basic authentication, percent-decoded and in UTF-8 (as ws and curl do)', async () => {
    const s = await answering((head) => switching(head));
    const url = new URL(s.url);
    url.username = 'al%C3%AFce';
    url.password = 'p%3Ass w';
    const conn = await connect(url, { perMessageDeflate: false });
    conn.terminate();
    expect(s.requests[0]).toMatch(new RegExp(`^authorization: ${basic('alïce:p:ss w')}$`, 'im'));
    // Never in the request target.
    expect(s.requests[0]?.split('\r\n')[0]).toBe('GET / HTTP/1.1');
  });

  test("a '%' that begins no escape is sent as it is, as the URL standard decodes (it threw 'URI malformed' and nothing connected)", async () => {
    const s = await answering((head) => switching(head));
    const url = new URL(s.url);
    url.username = 'u%40x';
    url.password = '50%off%';
    expect(url.password).toBe('50%off%');
    (await connect(url, { perMessageDeflate: false })).terminate();
    expect(s.requests[0]).toMatch(new RegExp(`^authorization: ${basic('u@x:50%off%')}$`, 'im'));
    // The bytes escaped are sent as they are, UTF-8 or not.
    url.username = '%C3%A9';
    url.password = '%FF';
    (await connect(url, { perMessageDeflate: false })).terminate();
    const sent = /^authorization: Basic (\S+)$/im.exec(s.requests[1] ?? '')?.[1];
    expect(Buffer.from(sent ?? '', 'base64')).toEqual(Buffer.from([0xc3, 0xa9, 0x3a, 0xff]));
  });

  test('a user without a password, and an Authorization header of the caller\'s, which wins', async () => {
    const s = await answering((head) => switching(head));
    const url = new URL(s.url);
    url.username = 'bob';
    (await connect(url, { perMessageDeflate: false })).terminate();
    (await connect(url, { perMessageDeflate: false, headers: { AUTHORIZATION: 'Bearer t' } })).terminate();
    expect(s.requests[0]).toMatch(new RegExp(`^authorization: ${basic('bob:')}$`, 'im'));
    expect(s.requests[1]).toMatch(/^authorization: Bearer t$/im);
    expect(s.requests[1]?.match(/^authorization:/gim)).toHaveLength(1);
  });

  test('are not sent on a redirect to another host', async () => {
    const seen: Array<string | undefined> = [];
    const landing = await serve({ host: '127.0.0.2', perMessageDeflate: false }, (conn, req) => {
      seen.push(req.headers.authorization);
      void conn.send('landed');
    });
    try {
      const s = await answering(() => ['HTTP/1.1 302 Found', `Location: ws://127.0.0.2:${landing.port}/`, 'Content-Length: 0', '', ''].join('\r\n'));
      const url = new URL(s.url);
      url.username = 'carol';
      url.password = 'secret';
      const conn = await connect(url, { perMessageDeflate: false, followRedirects: true });
      expect(await conn.recv()).toBe('landed');
      await conn.close();
      expect(s.requests[0]).toMatch(new RegExp(`^authorization: ${basic('carol:secret')}$`, 'im'));
      expect(seen).toEqual([undefined]);
    } finally {
      await landing.close();
    }
  });
});

describe('bytes that come with the 101', () => {
  /**
   * A raw server that writes the 101 and `early` in one write (one TCP segment on loopback), then
   * `later` in writes of their own, and collects the frames the client sends; it answers a close
   * frame with one of its own and ends TCP.
   */
  async function greeter(early: Buffer[], later: Buffer[] = []): Promise<{ url: string; frames: DecodedFrame[]; ended: Promise<void> }> {
    const frames: DecodedFrame[] = [];
    let ended!: () => void;
    const endedPromise = new Promise<void>((resolve) => (ended = resolve));
    const s = await rawServer((head, socket: Socket) => {
      socket.write(Buffer.concat([Buffer.from(switching(head), 'latin1'), ...early]));
      for (const b of later) socket.write(b);
      let acc = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        acc = Buffer.concat([acc, chunk]);
        const { frames: got, used } = decodeFrames(acc);
        acc = acc.subarray(used);
        for (const f of got) {
          frames.push(f);
          if (f.opcode === 8) socket.end(frame({ opcode: 8, payload: f.payload.subarray(0, 2) }));
        }
      });
      socket.on('close', () => ended());
    });
    servers.push(s);
    return { url: s.url, frames, ended: endedPromise };
  }

  test('a greeting followed in the same segment by a frame that fails the connection is answered before the failure', async () => {
    // A text, then a frame with RSV2 set (1002): the listener added after `await connect()` gets
    // the text as it is parsed and its reply leaves before the close frame. (Before, the bytes
    // were parsed inside connect(): the connection had failed before anyone could answer.)
    const g = await greeter([frame({ opcode: 1, payload: 'hello' }), frame({ opcode: 1, payload: 'x', rsv2: true })]);
    const conn = await connect(g.url, { perMessageDeflate: false });
    const seen: unknown[] = [];
    conn.on('message', (m) => {
      seen.push(m);
      void conn.send(`echo:${String(m)}`).catch(() => undefined);
    });
    await conn.whenClosed;
    await g.ended;
    expect(seen).toEqual(['hello']);
    expect(g.frames.map((f) => [f.opcode, f.opcode === 8 ? f.payload.readUInt16BE(0) : f.payload.toString()])).toEqual([
      [1, 'echo:hello'],
      [8, 1002],
    ]);
    expect(g.frames.every((f) => f.masked)).toBe(true);
    expect(conn.closeStatus).toBe(1002);
  });

  test('what came with the 101 is handed over before what the socket reads later, in order', async () => {
    const texts = Array.from({ length: 6 }, (_, i) => `m${i}`);
    const g = await greeter(
      texts.slice(0, 3).map((t) => frame({ opcode: 1, payload: t })),
      texts.slice(3).map((t) => frame({ opcode: 1, payload: t })),
    );
    const conn = await connect(g.url, { perMessageDeflate: false });
    const seen: unknown[] = [];
    const all = new Promise<void>((resolve) => conn.on('message', (m) => seen.push(m) === texts.length && resolve()));
    await all;
    expect(seen).toEqual(texts);
    await conn.close();
    expect(conn.closeStatus).toBe(1000);
  });

  test('pause() right after connect() holds the early messages; close() right after connect() still completes the closing handshake', async () => {
    const g = await greeter([frame({ opcode: 1, payload: 'one' }), frame({ opcode: 2, payload: Buffer.of(2) })]);
    const conn = await connect(g.url, { perMessageDeflate: false });
    conn.pause();
    const seen: unknown[] = [];
    conn.on('message', (m) => seen.push(m));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(seen).toEqual([]);
    conn.resume();
    expect(seen).toEqual(['one', Buffer.of(2)]);

    // Closed (while paused) before the held bytes were parsed: the server's answer is still read.
    const h = await greeter([frame({ opcode: 1, payload: 'early' })]);
    const second = await connect(h.url, { perMessageDeflate: false, closeTimeout: 20_000 });
    second.pause();
    await second.close(4000, 'bye');
    expect([second.closeStatus, second.closeReason]).toEqual([4000, '']);
    expect(h.frames.map((f) => f.opcode)).toEqual([8]);
    expect(h.frames[0]!.payload.equals(closePayload(4000, 'bye'))).toBe(true);
  });
});
