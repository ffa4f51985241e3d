/**
 * Server handshake rejections over real sockets, each with its HTTP status (RFC 6455 §4.2.1,
 * §4.2.2, §4.4), and the before-accept hook: custom rejections, extra 101 headers, state.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { runInNewContext } from 'node:vm';
import { serve, type WebSocketServer } from 'rfc6455';
import { parseProtocols, switchingProtocols, validateRequest } from '../../src/handshake/server.js';
import { formatErrorResponse, formatResponse, hasHeaderToken, headerList, isWebSocketTarget, targetPath } from '../../src/handshake/http.js';
import { rawRequest, upgradeRequest, RawClient } from '../helpers/raw-client.js';
import { until } from '../helpers/wait.js';

/** A thenable that is no Promise (as query builders and older promise libraries return). */
function later<T>(value: T): PromiseLike<T> {
  return {
    then<R1 = T, R2 = never>(resolve?: ((value: T) => R1 | PromiseLike<R1>) | null, reject?: ((reason: unknown) => R2 | PromiseLike<R2>) | null): PromiseLike<R1 | R2> {
      return new Promise<T>((r) => setTimeout(() => r(value), 20)).then(resolve, reject);
    },
  };
}

let server: WebSocketServer;
const accepted: Array<{ state: unknown; path: string }> = [];

beforeAll(async () => {
  server = await serve(
    {
      perMessageDeflate: false,
      beforeAccept(req, info) {
        if (info.path === '/private') {
          return { reject: { status: 401, headers: { 'WWW-Authenticate': 'Bearer realm="ws"', 'X-Reason': 'no-token' }, body: 'token required' } };
        }
        if (info.path === '/teapot') return { reject: { status: 418, body: Buffer.from('short and stout') } };
        if (info.path.startsWith('/status-')) return { reject: { status: Number(info.path.slice('/status-'.length)) } };
        if (info.path === '/stateful') return { headers: { 'X-Session': 'abc123' }, state: { user: req.headers['x-user'] } };
        // Not native Promises: a thenable of another library's making, and another realm's Promise.
        if (info.path === '/thenable-refusal') return later({ reject: { status: 401, body: 'not yet' } });
        if (info.path === '/thenable-state') return later({ headers: { 'X-Later': 'yes' }, state: { user: 'thenable' } });
        if (info.path === '/foreign-promise') return runInNewContext('Promise.resolve(refusal)', { refusal: { reject: { status: 403, body: 'other realm' } } }) as PromiseLike<{ reject: { status: number; body: string } }>;
        return undefined;
      },
    },
    (conn, _req, { state }) => {
      accepted.push({ state, path: conn.path });
      void conn.close();
    },
  );
});
afterAll(() => server.close());

function request(lines: string[]): string {
  return [...lines, '', ''].join('\r\n');
}

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const base = (port: number, overrides: Record<string, string | undefined> = {}, start = 'GET / HTTP/1.1'): string => {
  const headers: Record<string, string | undefined> = {
    Host: `127.0.0.1:${port}`,
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': KEY,
    'Sec-WebSocket-Version': '13',
    ...overrides,
  };
  return request([start, ...Object.entries(headers).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}: ${v}`)]);
};

/** A masked text frame "hi" (key 0), as latin1 text. */
const MASKED_HI = '\x81\x82\x00\x00\x00\x00hi';

describe('server rejects a bad opening handshake with an HTTP status, never a 101', () => {
  test('a valid request with odd casing and token lists is accepted (the control case)', async () => {
    const res = await rawRequest(server.port, base(server.port, { Upgrade: 'WebSocket', Connection: 'keep-alive, UPGRADE' }), 500);
    expect(res.status).toBe(101);
    // RFC 6455 §1.3 sample key.
    expect(res.headers['sec-websocket-accept']).toBe('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  });

  test('Content-Length: 0 is no body: accepted', async () => {
    const res = await rawRequest(server.port, base(server.port, { 'Content-Length': '0' }), 500);
    expect(res.status).toBe(101);
  });

  test.each([
    ['POST', base(0, {}, 'POST / HTTP/1.1').replace('Host: 127.0.0.1:0', 'Host: x\r\nContent-Length: 0'), 400],
    ['HTTP/1.0', base(0, {}, 'GET / HTTP/1.0').replace('Host: 127.0.0.1:0', 'Host: x'), 400],
    ['no Host', base(0, { Host: undefined }), 400],
    // RFC 9112 §3.2: more than one Host line is a 400 (Node itself keeps the first one).
    ['two Host lines', base(0, {}).replace('Host: 127.0.0.1:0', 'Host: x\r\nHost: y'), 400],
    ['two Host lines, the same value, one in lower case', base(0, {}).replace('Host: 127.0.0.1:0', 'Host: x\r\nhost: x'), 400],
    ['Upgrade: h2c instead of websocket', base(0, { Upgrade: 'h2c' }).replace('Host: 127.0.0.1:0', 'Host: x'), 400],
    ['a key of 15 bytes', base(0, { 'Sec-WebSocket-Key': Buffer.alloc(15, 1).toString('base64') }).replace('Host: 127.0.0.1:0', 'Host: x'), 400],
    ['a key that is not base64', base(0, { 'Sec-WebSocket-Key': 'not a key at all!!!!!===' }).replace('Host: 127.0.0.1:0', 'Host: x'), 400],
    ['no key', base(0, { 'Sec-WebSocket-Key': undefined }).replace('Host: 127.0.0.1:0', 'Host: x'), 400],
    // RFC 6455 §4.1 step 7: base64 of exactly 16 bytes, i.e. 22 characters and `==`, nothing around.
    ['a key of 21 characters and ==', base(0, { 'Sec-WebSocket-Key': KEY.slice(1) }), 400],
    ['a key of 22 characters without its padding', base(0, { 'Sec-WebSocket-Key': KEY.slice(0, 22) }), 400],
    ['a key of 22 characters and a single =', base(0, { 'Sec-WebSocket-Key': KEY.slice(0, 23) }), 400],
    ['a key with a character before it', base(0, { 'Sec-WebSocket-Key': `A${KEY}` }), 400],
    ['a key with a character after it', base(0, { 'Sec-WebSocket-Key': `${KEY}A` }), 400],
    // A body (RFC 9110 §9.3.1): it got a 101, then its bytes were read as frames (close 1002).
    // Frames follow it, as a client that meant them to come after the body would send them.
    ['a Content-Length body', base(0, { 'Content-Length': '5' }) + 'hello' + MASKED_HI, 400],
    ['a chunked body', base(0, { 'Transfer-Encoding': 'chunked' }) + '5\r\nhello\r\n0\r\n\r\n' + MASKED_HI, 400],
  ])('%s → 400', async (_name, text, status) => {
    const res = await rawRequest(server.port, text);
    expect(res.status).toBe(status);
    expect(res.headers['sec-websocket-accept']).toBeUndefined();
    // The server ends the connection cleanly after the error response.
    expect(res.ended).toBe(true);
  });

  // RFC 6455 §4.2.1 item 1: the target is a /resource name/ or an absolute HTTP/HTTPS URI naming
  // one; RFC 9112 §3.2: a Host with an invalid value is a 400, as a missing one. Node's parser
  // lets all of these through, and they got a 101 (the handler saw `conn.url === '*'`).
  test.each([
    ['the asterisk-form (OPTIONS only)', 'GET * HTTP/1.1', 'x'],
    ['an absolute-form target of another scheme', 'GET ftp://x/chat HTTP/1.1', 'x'],
    ['an http URI without a host (RFC 9110 §4.2.1)', 'GET http:///chat HTTP/1.1', 'x'],
    ['an http URI with userinfo (RFC 9110 §4.2.4)', 'GET http://user@x/chat HTTP/1.1', 'x'],
    ['a Host with a space', 'GET / HTTP/1.1', 'a b'],
    ['a Host with a path', 'GET / HTTP/1.1', 'x/chat'],
    ['a Host with userinfo', 'GET / HTTP/1.1', 'user@x'],
    ['a Host with two colons outside brackets', 'GET / HTTP/1.1', 'x:1:2'],
    ['a Host whose port is not digits', 'GET / HTTP/1.1', 'x:http'],
  ])('%s → 400, never reaching the handler', async (_name, start, host) => {
    const before = accepted.length;
    const res = await rawRequest(server.port, base(0, { Host: host }, start));
    expect(res.status).toBe(400);
    expect(res.headers['sec-websocket-accept']).toBeUndefined();
    expect(accepted.length).toBe(before);
  });

  test.each([
    ['an absolute-form http target (RFC 9112 §3.2.2: a server MUST accept it)', 'GET http://example.com/a?x=1 HTTP/1.1', 'x', '/a'],
    ['an absolute-form https target with a port, the scheme in capitals', 'GET HTTPS://example.com:8443 HTTP/1.1', 'x', '/'],
    ['an IPv6 Host with a port', 'GET /v6 HTTP/1.1', '[::1]:8080', '/v6'],
    ['an IPv6 Host with a zone', 'GET /zone HTTP/1.1', '[fe80::1%25eth0]', '/zone'],
    ['a Host with a trailing dot, an underscore and an empty port', 'GET /dot HTTP/1.1', 'my_host.example.:', '/dot'],
  ])('%s → 101', async (_name, start, host, path) => {
    const before = accepted.length;
    const res = await rawRequest(server.port, base(0, { Host: host }, start), 500);
    expect(res.status).toBe(101);
    await until(() => accepted.length > before, 'the handler');
    expect(accepted[accepted.length - 1]!.path).toBe(path);
  });

  test('Connection without Upgrade is not an upgrade: answered 426, not 101', async () => {
    const res = await rawRequest(server.port, base(server.port, { Connection: 'keep-alive' }).replace('Connection: keep-alive', 'Connection: close'));
    expect(res.status).toBe(426);
    expect(res.headers['sec-websocket-accept']).toBeUndefined();
    expect(res.ended).toBe(true);
  });

  test.each(['8', '12', '14', undefined])('Sec-WebSocket-Version %s → 426 with Sec-WebSocket-Version: 13', async (version) => {
    const res = await rawRequest(server.port, base(server.port, { 'Sec-WebSocket-Version': version }));
    expect(res.status).toBe(426);
    expect(res.headers['sec-websocket-version']).toBe('13');
  });

  test('a plain HTTP GET → 426 Upgrade Required with Upgrade: websocket', async () => {
    const res = await rawRequest(server.port, request(['GET / HTTP/1.1', 'Host: x', 'Connection: close']));
    expect(res.status).toBe(426);
    expect(res.headers.upgrade).toBe('websocket');
    expect(res.headers['sec-websocket-version']).toBe('13');
    // The client asked for Connection: close; the server honours it after the 426.
    expect(res.ended).toBe(true);
  });

  test('a request head over maxHeaderSize → 431', async () => {
    const res = await rawRequest(server.port, base(server.port, { 'X-Padding': 'a'.repeat(20000) }));
    expect(res.status).toBe(431);
  });
});

describe('before-accept hook', () => {
  test('rejects with a custom status, headers and body', async () => {
    const res = await rawRequest(server.port, upgradeRequest(server.port, { path: '/private' }));
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer realm="ws"');
    expect(res.headers['x-reason']).toBe('no-token');
    expect(res.body.toString()).toBe('token required');
    expect(res.headers['content-length']).toBe(String('token required'.length));
    expect(res.ended).toBe(true);
  });

  test('rejects with a Buffer body and a status without a usual meaning', async () => {
    const res = await rawRequest(server.port, upgradeRequest(server.port, { path: '/teapot' }));
    expect(res.status).toBe(418);
    expect(res.body.toString()).toBe('short and stout');
  });

  test.each([
    [299, 500],
    [300, 300],
    [599, 599],
    [600, 500],
  ])('a refusal with status %i is answered %i (a refusal is a status from 300 to 599; another is the hook\'s failure)', async (status, answered) => {
    const res = await rawRequest(server.port, base(server.port, {}, `GET /status-${status} HTTP/1.1`));
    expect(res.status).toBe(answered);
    expect(res.headers['sec-websocket-accept']).toBeUndefined();
  });

  test('a hook that returns a thenable that is no Promise is waited for: its refusal is answered (it was ignored, and the upgrade accepted)', async () => {
    const res = await rawRequest(server.port, upgradeRequest(server.port, { path: '/thenable-refusal' }));
    expect(res.status).toBe(401);
    expect(res.body.toString()).toBe('not yet');
    expect(accepted.map((a) => a.path)).not.toContain('/thenable-refusal');
    const foreign = await rawRequest(server.port, upgradeRequest(server.port, { path: '/foreign-promise' }));
    expect(foreign.status).toBe(403);
    expect(foreign.body.toString()).toBe('other realm');
  });

  test('a thenable that resolves to headers and state: they reach the 101 and the handler', async () => {
    const raw = await RawClient.connect(server.port, { path: '/thenable-state' });
    expect(raw.response.headers['x-later']).toBe('yes');
    expect((await raw.readClose())?.code).toBe(1000);
    raw.destroy();
    expect(accepted).toContainEqual({ state: { user: 'thenable' }, path: '/thenable-state' });
  });

  test('adds 101 headers and hands state to the handler', async () => {
    const raw = await RawClient.connect(server.port, { path: '/stateful', headers: ['X-User: alice'] });
    expect(raw.response.headers['x-session']).toBe('abc123');
    expect((await raw.readClose())?.code).toBe(1000);
    raw.destroy();
    expect(accepted).toContainEqual({ state: { user: 'alice' }, path: '/stateful' });
  });
});

describe('a refusal the client does not read', () => {
  // A body far larger than the socket buffers: the server cannot hand it all to the kernel.
  const body = Buffer.alloc(32 << 20, 0x61);

  test.each([
    ['RFC 6455', upgradeRequest],
    ['hybi-00', (port: number) => `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\nSec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n\r\n^n:ds[4U`],
  ])('%s: its socket is closed after handshakeTimeout, not held for good', async (_variant, request) => {
    const refusing = await serve({ handshakeTimeout: 200, beforeAccept: () => ({ reject: { status: 403, body } }) }, () => undefined);
    let seen = 0;
    let open = 0;
    refusing.httpServer.on('connection', (socket: Socket) => {
      seen++;
      open++;
      socket.on('close', () => open--);
    });
    const clients: Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const client = netConnect(refusing.port, '127.0.0.1');
        client.on('error', () => undefined);
        client.pause(); // never reads
        client.write(request(refusing.port));
        clients.push(client);
      }
      await until(() => seen === 3, 'the three connections');
      // (Before: all three stayed open as long as their clients did, each with its response queued.)
      await until(() => open === 0, 'the refused sockets to close', 5000);
    } finally {
      for (const client of clients) client.destroy();
      await refusing.close();
    }
  });
});

describe('Sec-WebSocket-Protocol parsing (RFC 6455 §4.1 step 10, a #token list)', () => {
  test('empty list elements are skipped, repeats kept once, order kept; a non-token or an all-empty list is a 400', () => {
    expect(parseProtocols('chat, , superchat,')).toEqual(['chat', 'superchat']);
    expect(parseProtocols(['b, a', ' , b'])).toEqual(['b', 'a']);
    // Several header lines (a header list given by the caller): every line counts, in order.
    expect(parseProtocols(['chat', 'superchat, chat'])).toEqual(['chat', 'superchat']);
    expect(() => parseProtocols('chat, a b')).toThrow(expect.objectContaining({ status: 400, code: 'WS_BAD_PROTOCOL_HEADER' }));
    expect(() => parseProtocols(' , ')).toThrow(expect.objectContaining({ status: 400, code: 'WS_BAD_PROTOCOL_HEADER' }));
  });
});

describe('validateRequest and the 101 head (RFC 6455 §4.2.1, §4.2.2)', () => {
  const headers = (extra: Record<string, string | undefined>): Record<string, string | undefined> => ({
    host: 'x',
    upgrade: 'websocket',
    connection: 'Upgrade',
    'sec-websocket-key': KEY,
    'sec-websocket-version': '13',
    ...extra,
  });

  test('white space around the key and the version (headers built by the caller) is not part of them: the key is given back trimmed', () => {
    const offer = validateRequest({ method: 'GET', headers: headers({ 'sec-websocket-key': ` ${KEY}\t`, 'sec-websocket-version': ' 13 ' }) });
    expect(offer.key).toBe(KEY);
    expect(offer.protocols).toEqual([]);
  });

  test('Content-Length: 0 with white space around it is no body; a value "Host" or another four-letter name is no second Host line', () => {
    expect(validateRequest({ method: 'GET', headers: headers({ 'content-length': ' 0 ' }) }).key).toBe(KEY);
    const rawHeaders = ['Host', 'x', 'X-Name', 'Host', 'From', 'me@example.com', 'Upgrade', 'websocket', 'Connection', 'Upgrade', 'Sec-WebSocket-Key', KEY, 'Sec-WebSocket-Version', '13'];
    expect(validateRequest({ method: 'GET', headers: headers({}), rawHeaders }).key).toBe(KEY);
    expect(() => validateRequest({ method: 'GET', headers: headers({}), rawHeaders: [...rawHeaders, 'hOST', 'x'] })).toThrow(expect.objectContaining({ status: 400, code: 'WS_DUPLICATE_HOST' }));
  });

  test('a missing or another Sec-WebSocket-Version: 426 with Sec-WebSocket-Version: 13, the message naming which', () => {
    for (const [version, message] of [
      [undefined, 'missing Sec-WebSocket-Version'],
      ['8', 'unsupported Sec-WebSocket-Version 8'],
    ] as const) {
      expect(() => validateRequest({ method: 'GET', headers: headers({ 'sec-websocket-version': version }) })).toThrow(
        expect.objectContaining({ status: 426, code: 'WS_BAD_VERSION', message, headers: { 'Sec-WebSocket-Version': '13' } }),
      );
    }
  });

  test('the 101 names a subprotocol and extensions only when there are some', () => {
    const start = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n';
    expect(switchingProtocols(KEY, '', '', [])).toBe(start + '\r\n');
    expect(switchingProtocols(KEY, 'chat', 'permessage-deflate', [['X-A', '1']])).toBe(
      start + 'Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\nX-A: 1\r\n\r\n',
    );
  });
});

describe('headers written raw (refusals, hybi-00 responses): headerList and formatErrorResponse', () => {
  test('a value with CR, LF or NUL, or a name that is no token, is a TypeError (response splitting); other values are kept as written, in order', () => {
    for (const value of ['a\r\nX-Injected: 1', 'a\rb', 'a\nb', 'a\0b']) {
      expect(() => headerList({ 'X-Note': value })).toThrow(TypeError);
      expect(() => headerList([['X-Note', 'fine'], ['X-Note', value]])).toThrow(TypeError);
    }
    for (const name of ['X Note', 'X-Note:', '', 'X\r\nY', '(x)']) expect(() => headerList({ [name]: '1' })).toThrow(TypeError);
    expect(headerList({ "!#$%&'*+-.^_`|~09AZaz": 'a\tb "c"', 'X-N': [1, 'two'] as unknown as string[], 'X-E': '', 'X-U': undefined })).toEqual([
      ["!#$%&'*+-.^_`|~09AZaz", 'a\tb "c"'],
      ['X-N', '1'],
      ['X-N', 'two'],
      ['X-E', ''],
    ]);
  });

  test('formatErrorResponse leaves out every framing header given (Content-Length, Connection, Transfer-Encoding, Keep-Alive, Proxy-Connection, TE, Trailer) and ends a text body with a newline', () => {
    const given = ['Content-Length', 'Connection', 'Transfer-Encoding', 'Keep-Alive', 'Proxy-Connection', 'TE', 'Trailer', 'X-Kept'].map((n): [string, string] => [n, '9']);
    const text = formatErrorResponse(403, 'no', given).toString('latin1');
    expect(text).toBe('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nX-Kept: 9\r\n\r\nno\n');
    expect(formatErrorResponse(400, 'done\n').toString('latin1')).toMatch(/Content-Length: 5\r\n\r\ndone\n$/);
  });

  test('formatResponse: the head alone without a body (or with an empty one), a string body as UTF-8, a Buffer body as it is, a given reason phrase', () => {
    expect(formatResponse(101, [['Upgrade', 'websocket']]).toString('latin1')).toBe('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n');
    expect(formatResponse(204, [], '').toString('latin1')).toBe('HTTP/1.1 204 No Content\r\n\r\n');
    expect(formatResponse(200, [], 'h\u00e9')).toEqual(Buffer.from('HTTP/1.1 200 OK\r\n\r\nh\u00c3\u00a9', 'latin1'));
    expect(formatResponse(599, [], Buffer.of(0, 0xff), 'Mine')).toEqual(Buffer.concat([Buffer.from('HTTP/1.1 599 Mine\r\n\r\n'), Buffer.of(0, 0xff)]));
  });

  test('hasHeaderToken: a token in a comma-separated list, in any case, as browsers send Connection (Firefox: "keep-alive, Upgrade")', () => {
    for (const value of ['Upgrade', 'upgrade', 'UPGRADE', 'keep-alive, Upgrade', 'Upgrade,keep-alive', ' upgrade ', ['close', 'Upgrade']]) {
      expect([value, hasHeaderToken(value, 'upgrade')]).toEqual([value, true]);
    }
    for (const value of [undefined, '', 'upgradex', 'upgrad', 'keep-alive', 'up grade', 'a,b,c,d', ['close']]) {
      expect([value, hasHeaderToken(value, 'upgrade')]).toEqual([value, false]);
    }
  });
});

describe('request targets (RFC 6455 §4.2.1 item 1, RFC 9112 §3.2): isWebSocketTarget and targetPath', () => {
  test('origin-form and absolute http, https, ws and wss URIs (any case, percent escapes and a port in the authority) are taken; other schemes, a prefix before the scheme, an empty authority or userinfo are not', () => {
    for (const url of ['/', '/chat?x=1', 'http://h/chat', 'HTTPS://h:443/', 'ws://h', 'wss://h/chat', 'WSS://h?q', 'http://h%41st/', 'http://[::1]:80/']) {
      expect([url, isWebSocketTarget(url)]).toEqual([url, true]);
    }
    for (const url of ['*', 'h/chat', 'ftp://h/', 'xhttp://h/', 'wsss://h/', 'http:///chat', 'http://u@h/', 'http://h%4/', 'http://h%zz/', 'http://h h/']) {
      expect([url, isWebSocketTarget(url)]).toEqual([url, false]);
    }
  });

  test('the path of a target: no query, no fragment, the path of an absolute-form URI (a "#" or "?" in it ends the authority)', () => {
    const cases: Array<[string, string]> = [
      ['/chat?x=1#f', '/chat'],
      ['/chat#f?x', '/chat'],
      ['/chat', '/chat'],
      ['http://h/chat?x', '/chat'],
      ['wss://h', '/'],
      ['http://h#a/b', '/'],
      ['http://h?a/b', '/'],
      ['HTTP://h//x', '//x'],
    ];
    for (const [url, path] of cases) expect([url, targetPath(url)]).toEqual([url, path]);
  });
});
