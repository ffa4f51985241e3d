/**
 * connect() and its option checks, where mutation testing (round 12) found no test that tells the
 * code from a wrong version of it: each test here fails on one such version. Real sockets, real
 * servers (raw ones that answer as the test says, and serve()).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as http2Connect, createServer as createHttp2Server, type ServerHttp2Session } from 'node:http2';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { attachHttp2, buildRequestHeaders, checkClientHeaders, checkUpgradeOptions, connect, generateKey, HandshakeError, serve, verifyResponse, type WebSocketConnection } from 'rfc6455';
import { checkClientOptions, checkOwnConnections, checkServeOptions } from '../../src/check-options.js';
import { abortedHandshake, bareHostname, connectFailed, factoryFailed, percentDecode, redirectLocation, refusalBody, sniOption, unixTarget, watchStatusLine } from '../../src/client-target.js';
import { acceptKey } from '../../src/handshake/server.js';
import { handshakeFailure, rawServer, switching, type RawServer } from '../helpers/raw-server.js';

const FIXTURES = path.join(__dirname, '../../../../test/fixtures/tls');
const TLS = { key: readFileSync(path.join(FIXTURES, 'key.pem')), cert: readFileSync(path.join(FIXTURES, 'cert.pem')) };

let servers: RawServer[] = [];
const conns: WebSocketConnection[] = [];
async function answering(respond: (head: string) => string): Promise<RawServer> {
  const s = await rawServer((head, socket) => socket.write(respond(head)));
  servers.push(s);
  return s;
}
afterEach(async () => {
  for (const c of conns.splice(0)) c.terminate();
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
});

describe('redirects', () => {
  test('followRedirects: true follows 5, as ws does: a loop is asked 6 times, then fails with its last 3xx', async () => {
    const loop = await answering(() => ['HTTP/1.1 307 Temporary Redirect', 'Location: /again', 'Content-Length: 0', '', ''].join('\r\n'));
    const error = await handshakeFailure(loop.url, { followRedirects: true });
    expect([error.code, error.status, loop.requests.length]).toEqual(['WS_UNEXPECTED_RESPONSE', 307, 6]);
  });
  test('credentials in the Location are sent, as Basic authentication, on the hop they name', async () => {
    const to = await answering((head) => switching(head));
    const next = `ws://dora:s%3Ecret@127.0.0.1:${to.port}/landed`;
    const redirecting = await answering(() => ['HTTP/1.1 307 Temporary Redirect', `Location: ${next}`, 'Content-Length: 0', '', ''].join('\r\n'));
    conns.push(await connect(redirecting.url, { perMessageDeflate: false, followRedirects: 1 }));
    expect(redirecting.requests[0]).not.toMatch(/^authorization:/im);
    expect(to.requests[0]).toMatch(new RegExp(`^authorization: Basic ${Buffer.from('dora:s>cret').toString('base64')}$`, 'im'));
  });

  test('a password without a user name in the URL is sent too (as ":password")', async () => {
    const s = await answering((head) => switching(head));
    const url = new URL(s.url);
    url.password = 'only';
    conns.push(await connect(url, { perMessageDeflate: false }));
    expect(s.requests[0]).toMatch(new RegExp(`^authorization: Basic ${Buffer.from(':only').toString('base64')}$`, 'im'));
  });

  test('credentials in the URL are added to the caller\'s headers, which are all still sent', async () => {
    const s = await answering((head) => switching(head));
    const url = new URL(s.url);
    url.username = 'eve';
    conns.push(await connect(url, { perMessageDeflate: false, headers: { 'X-Trace': 't1' } }));
    expect(s.requests[0]).toMatch(/^x-trace: t1$/im);
    expect(s.requests[0]).toMatch(/^authorization: Basic /im);
  });

  test('another port of the same host name is another host: credentials are not sent on to it', async () => {
    const to = await answering((head) => switching(head));
    const from = await answering(() => ['HTTP/1.1 302 Found', `Location: ws://127.0.0.1:${to.port}/`, 'Content-Length: 0', '', ''].join('\r\n'));
    conns.push(await connect(from.url, { perMessageDeflate: false, followRedirects: true, headers: { Authorization: 'Bearer secret', 'X-Kept': 'yes' } }));
    expect(from.requests[0]).toMatch(/^authorization: Bearer secret$/im);
    expect(to.requests[0]).not.toMatch(/^authorization:/im);
    expect(to.requests[0]).toMatch(/^x-kept: yes$/im);
  });

  test('an https: URL is taken as wss:, and an https: Location is followed as wss:', async () => {
    const server = await serve({ tls: TLS, perMessageDeflate: false }, (conn) => void conn.send(`tls ${conn.url}`));
    const s = await answering(() => ['HTTP/1.1 302 Found', `Location: https://localhost:${server.port}/moved`, 'Content-Length: 0', '', ''].join('\r\n'));
    try {
      const direct = await connect(`https://localhost:${server.port}/direct`, { tls: { ca: TLS.cert } });
      conns.push(direct);
      expect(await direct.recv()).toBe('tls /direct');
      const moved = await connect(s.url, { tls: { ca: TLS.cert }, followRedirects: true, perMessageDeflate: false });
      conns.push(moved);
      expect(await moved.recv()).toBe('tls /moved');
    } finally {
      for (const conn of conns.splice(0)) conn.terminate();
      await server.close();
    }
  });

  test('a followed redirect is a new handshake, with a handshakeTimeout of its own (not what the 3xx left of the first)', async () => {
    // Each answer comes 600 ms after its request: the two together take longer than the 1000 ms.
    const slow = await rawServer((head, socket) => {
      setTimeout(() => socket.write(head.startsWith('GET /start ') ? ['HTTP/1.1 302 Found', 'Location: /final', 'Content-Length: 0', '', ''].join('\r\n') : switching(head)), 600);
    });
    servers.push(slow);
    conns.push(await connect(`${slow.url}start`, { perMessageDeflate: false, followRedirects: true, handshakeTimeout: 1000 }));
    expect(slow.requests.map((head) => head.split('\r\n')[0])).toEqual(['GET /start HTTP/1.1', 'GET /final HTTP/1.1']);
  });

  test('over HTTP/2 a redirect is followed at once, its body (one that never ends) not read', async () => {
    const target = await serve({ perMessageDeflate: false }, (conn) => void conn.send(`at ${conn.url}`));
    const h2 = createHttp2Server({ settings: { enableConnectProtocol: true } });
    const sessions: ServerHttp2Session[] = [];
    h2.on('session', (session) => sessions.push(session));
    h2.on('stream', (stream) => {
      stream.on('error', () => undefined);
      stream.respond({ ':status': 302, location: `ws://127.0.0.1:${target.port}/final` });
      stream.write('moved');
    });
    await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve));
    try {
      // (The signal only keeps a client that waits for the body's end from hanging the test.)
      const conn = await connect(`ws://127.0.0.1:${(h2.address() as AddressInfo).port}/start`, {
        http2: true,
        followRedirects: true,
        perMessageDeflate: false,
        handshakeTimeout: 60_000,
        signal: AbortSignal.timeout(5000),
      });
      conns.push(conn);
      expect(await conn.recv()).toBe('at /final');
    } finally {
      for (const session of sessions) session.destroy();
      await new Promise<void>((resolve) => h2.close(() => resolve()));
      await target.close();
    }
  });

  test('over a session passed in, a redirect to its own origin is a stream on that session; one to another origin opens an HTTP/2 session of its own', async () => {
    const seen: string[] = [];
    const closers: Array<() => Promise<void>> = [];
    const h2c = async (beforeAccept?: (req: unknown, at: { path: string }) => { reject: { status: number; headers: Record<string, string> } } | undefined): Promise<{ port: number; sessions: () => number }> => {
      const server = createHttp2Server({ settings: { enableConnectProtocol: true } });
      const sessions: ServerHttp2Session[] = [];
      server.on('session', (session) => sessions.push(session));
      attachHttp2(server, (conn, req) => void seen.push(`${conn.url} ${req.httpVersion}`), { perMessageDeflate: false, beforeAccept });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      closers.push(async () => {
        for (const session of sessions) session.destroy();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      });
      return { port: (server.address() as AddressInfo).port, sessions: () => sessions.length };
    };
    const b = await h2c();
    const moved = (location: string) => ({ reject: { status: 302, headers: { location } } });
    const a = await h2c((_req, { path }) => (path === '/start' ? moved('/final') : path === '/away' ? moved(`ws://127.0.0.1:${b.port}/there`) : undefined));
    const session = http2Connect(`http://127.0.0.1:${a.port}`);
    try {
      for (const start of ['/start', '/away']) {
        conns.push(await connect(`ws://127.0.0.1:${a.port}${start}`, { http2: session, followRedirects: true, perMessageDeflate: false }));
      }
      expect(seen).toEqual(['/final 2.0', '/there 2.0']);
      expect([a.sessions(), b.sessions()]).toEqual([1, 1]);
    } finally {
      for (const conn of conns.splice(0)) conn.terminate();
      session.destroy();
      for (const close of closers) await close();
    }
  });

});

describe('Unix domain sockets', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'rfc6455-mut-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('two Unix sockets are two hosts (RFC 6455 §4.1 requirement 2): a connect() to one opens while a handshake on the other is still in CONNECTING', async () => {
    // A socket whose server takes the request and never answers: that connect() stays CONNECTING.
    const heldPath = path.join(dir, 'held.sock');
    const held: Socket[] = [];
    let arrived!: () => void;
    const requestIn = new Promise<void>((resolve) => (arrived = resolve));
    const holding: Server = createNetServer((socket) => {
      held.push(socket);
      socket.on('error', () => undefined);
      socket.once('data', () => arrived());
    });
    await new Promise<void>((resolve) => holding.listen(heldPath, resolve));
    const open = await serve({ path: path.join(dir, 'open.sock'), perMessageDeflate: false }, (conn) => void conn.send('open'));
    try {
      const first = connect(`ws+unix://${heldPath}:/`, { perMessageDeflate: false, handshakeTimeout: 30_000 }).then(
        (conn) => conn,
        (e: unknown) => e,
      );
      await requestIn;
      // (Had both been keyed by the URL's host, localhost, this one would wait for the first's
      // turn until its handshakeTimeout.)
      const second = await connect(open.url, { perMessageDeflate: false, handshakeTimeout: 5000 });
      conns.push(second);
      expect(await second.recv()).toBe('open');
      for (const socket of held) socket.destroy();
      expect(await first).toBeInstanceOf(HandshakeError);
    } finally {
      for (const socket of held) socket.destroy();
      await open.close();
      await new Promise<void>((resolve) => holding.close(() => resolve()));
    }
  });
});

describe('the client handshake (RFC 6455 §4.1)', () => {
  test('buildRequestHeaders (exported): the handshake headers, a single subprotocol offered as a list of one, the extension offer and Origin when given; a subprotocol that is no token, or offered twice, is a TypeError', () => {
    const key = generateKey();
    const base = { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Key': key, 'Sec-WebSocket-Version': '13' };
    expect(buildRequestHeaders({ key })).toEqual(base);
    expect(buildRequestHeaders({ key, protocols: [] })).toEqual(base);
    expect(buildRequestHeaders({ key, protocols: ['chat'], extensions: 'permessage-deflate', origin: 'https://app.example' })).toEqual({
      ...base,
      'Sec-WebSocket-Protocol': 'chat',
      'Sec-WebSocket-Extensions': 'permessage-deflate',
      Origin: 'https://app.example',
    });
    expect(buildRequestHeaders({ key, protocols: ['chat', 'superchat'] })['Sec-WebSocket-Protocol']).toBe('chat, superchat');
    for (const protocols of [['a b'], ['chat', 'chat'], ['']]) expect(() => buildRequestHeaders({ key, protocols })).toThrow(TypeError);
  });

  test('connect() sends one subprotocol offered, the permessage-deflate offer and the origin, and takes the answer', async () => {
    const server = await serve({ protocols: ['chat'] }, (conn) => void conn.send('hi'));
    try {
      const conn = await connect(server.url, { protocols: 'chat', origin: 'https://app.example' });
      conns.push(conn);
      expect([conn.protocol, conn.extensions.split(';')[0]]).toEqual(['chat', 'permessage-deflate']);
      expect(await conn.recv()).toBe('hi');
    } finally {
      await server.close();
    }
    const s = await answering((head) => switching(head));
    conns.push(await connect(s.url, { protocols: ['chat'], origin: 'https://app.example' }));
    expect(s.requests[0]).toMatch(/^sec-websocket-protocol: chat$/im);
    expect(s.requests[0]).toMatch(/^origin: https:\/\/app\.example$/im);
    expect(s.requests[0]).toMatch(/^sec-websocket-extensions: permessage-deflate\b/im);
  });

  test('a Sec-WebSocket-Accept that differs from the right one in case only fails with WS_BAD_ACCEPT (base64 is case-sensitive), the HandshakeError carrying the response\'s headers', async () => {
    const swapCase = (text: string): string => text.replace(/[a-z]/gi, (c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()));
    const s = await answering((head) => switching(head).replace(/^(Sec-WebSocket-Accept: )(.*)$/m, (_, name: string, value: string) => `${name}${swapCase(value)}`).replace('\r\n\r\n', '\r\nX-Served-By: raw\r\n\r\n'));
    const error = await handshakeFailure(s.url);
    expect([error.code, error.status, error.headers['x-served-by']]).toEqual(['WS_BAD_ACCEPT', 101, 'raw']);
  });

  test("a status code Node's parser refuses (not three digits) fails with WS_BAD_STATUS_LINE, the parser's error its cause", async () => {
    for (const line of ['HTTP/1.1 1x1 Switching Protocols', 'HTTP/1.1 99999 Switching Protocols']) {
      const s = await answering(() => `${line}\r\n\r\n`);
      const error = await handshakeFailure(s.url);
      expect([line, error.code, error.status, (error.cause as { code?: string }).code]).toEqual([line, 'WS_BAD_STATUS_LINE', 0, 'HPE_INVALID_STATUS']);
    }
  });

  test('verifyResponse (exported) on headers not from Node\'s parser: values with whitespace around them, a header given twice as an array', () => {
    const key = generateKey();
    const line = 'HTTP/1.1 101 Switching Protocols';
    const good = { upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-accept': acceptKey(key) };
    const outcome = (headers: Record<string, string | string[]>, protocols?: string[]): unknown => {
      try {
        return verifyResponse(line, headers, { key, protocols, extensionNames: ['permessage-deflate'] });
      } catch (error) {
        return (error as HandshakeError).code;
      }
    };
    // Whitespace around a value is no part of it (RFC 9110 §5.5).
    expect(outcome({ ...good, upgrade: ' WebSocket ', 'sec-websocket-accept': ` ${acceptKey(key)} ` })).toEqual({ protocol: '', extensions: [] });
    expect(outcome({ ...good, 'sec-websocket-protocol': ' chat ' }, ['chat'])).toEqual({ protocol: 'chat', extensions: [] });
    // A subprotocol, or permessage-deflate, answered twice (two header lines) fails.
    expect(outcome({ ...good, 'sec-websocket-protocol': ['chat', 'chat'] }, ['chat'])).toBe('WS_BAD_PROTOCOL');
    expect(outcome({ ...good, 'sec-websocket-extensions': ['permessage-deflate', 'permessage-deflate'] })).toBe('WS_BAD_EXTENSION_RESPONSE');
  });
});

describe('option checks, each bound exactly', () => {
  /** What checkClientOptions() (connect()'s check) does with these options: 'ok', or the error's class and message. */
  const client = (options: object): string => {
    try {
      checkClientOptions(options as Parameters<typeof checkClientOptions>[0]);
      return 'ok';
    } catch (error) {
      return `${(error as Error).name}: ${(error as Error).message}`;
    }
  };
  /** The same for checkUpgradeOptions() (serve(), handleUpgrade(), the adapters), a fresh object each time. */
  const server = (options: object): string => {
    try {
      checkUpgradeOptions('serve()', { ...options } as Parameters<typeof checkUpgradeOptions>[1]);
      return 'ok';
    } catch (error) {
      return `${(error as Error).name}: ${(error as Error).message}`;
    }
  };

  const positive = ['maxMessageSize', 'maxFrameSize', 'maxFragments', 'handshakeTimeout'];
  const nonNegative = ['closeTimeout', 'idleTimeout', 'keepaliveInterval', 'readHighWaterMark', 'writeHighWaterMark', 'maxBufferedAmount', 'compressThreshold'];

  test.each(positive)('%s: more than 0 (0 is a RangeError, a string a TypeError that quotes it), for a client and a server', (name) => {
    for (const check of [client, server]) {
      expect(check({ [name]: 0.5 })).toBe('ok');
      expect(check({ [name]: Infinity })).toBe('ok');
      expect(check({ [name]: 0 })).toMatch(new RegExp(`^RangeError: .*: ${name} must be more than 0 \\(Infinity for no limit\\), not 0$`));
      expect(check({ [name]: '10' })).toMatch(new RegExp(`^TypeError: .*: ${name} must be a number, not "10"$`));
    }
  });

  test.each(nonNegative)('%s: 0 or more (-1 and NaN are RangeErrors, a string a TypeError), for a client and a server', (name) => {
    for (const check of [client, server]) {
      expect(check({ [name]: 0 })).toBe('ok');
      expect(check({ [name]: -1 })).toMatch(new RegExp(`^RangeError: .*: ${name} must be 0 or more \\(Infinity for no limit\\), not -1$`));
      expect(check({ [name]: NaN })).toMatch(/^RangeError: /);
      expect(check({ [name]: '0' })).toMatch(new RegExp(`^TypeError: .*: ${name} must be a number, not "0"$`));
      expect(check({ [name]: null })).toMatch(new RegExp(`^TypeError: .*: ${name} must be a number, not object$`));
    }
  });

  test.each([
    ['serverMaxWindowBits', 8, 15],
    ['clientMaxWindowBits', 8, 15],
    ['level', -1, 9],
    ['memLevel', 1, 9],
  ])('perMessageDeflate.%s: an integer from %d to %d, both ends taken', (name, min, max) => {
    for (const check of [client, server]) {
      for (const value of [min, max]) expect([value, check({ perMessageDeflate: { [name]: value } })]).toEqual([value, 'ok']);
      for (const value of [min - 1, max + 1, min + 0.5]) {
        expect(check({ perMessageDeflate: { [name]: value } })).toBe(`RangeError: ${check === client ? 'connect()' : 'serve()'}: perMessageDeflate.${name} must be an integer from ${min} to ${max}, not ${value}`);
      }
    }
  });

  test('perMessageDeflate: the other parameters, and a value that is neither a boolean nor an object', () => {
    for (const check of [client, server]) {
      expect(check({ perMessageDeflate: { concurrencyLimit: 1, threshold: 0, syncLimit: 0, serverNoContextTakeover: true, clientNoContextTakeover: false } })).toBe('ok');
      expect(check({ perMessageDeflate: { concurrencyLimit: 0 } })).toMatch(/^RangeError: .*concurrencyLimit/);
      expect(check({ perMessageDeflate: { threshold: -1 } })).toMatch(/^RangeError: .*threshold/);
      expect(check({ perMessageDeflate: { syncLimit: -1 } })).toMatch(/^RangeError: .*syncLimit/);
      expect(check({ perMessageDeflate: { clientNoContextTakeover: 'yes' } })).toMatch(/^TypeError: .*clientNoContextTakeover must be true or false, not "yes"$/);
      expect(check({ perMessageDeflate: { zlibInflateOptions: {} } })).toMatch(/^TypeError: .*perMessageDeflate\.zlibInflateOptions is an option of ws/);
      for (const value of ['true', 1, null]) expect(check({ perMessageDeflate: value })).toMatch(/^TypeError: .*perMessageDeflate must be a boolean or an object of options$/);
      for (const value of [true, false, undefined]) expect(check({ perMessageDeflate: value })).toBe('ok');
    }
  });

  test("connect()'s own options: maxHeaderSize from 1 and followRedirects from 0, family 0, 4 or 6, localAddress an IP address, http2 a boolean or a session, textMessages 'string' or 'buffer'", () => {
    expect(client({ maxHeaderSize: 1, followRedirects: 0 })).toBe('ok');
    expect(client({ followRedirects: true })).toBe('ok');
    expect(client({ followRedirects: -1 })).toMatch(/^RangeError: connect\(\): followRedirects must be an integer from 0/);
    expect(client({ followRedirects: 'yes' })).toBe('TypeError: connect(): followRedirects must be a number, not "yes"');
    for (const family of [0, 4, 6]) expect(client({ family })).toBe('ok');
    for (const family of [1, 5]) expect(client({ family })).toBe(`RangeError: connect(): family must be 4 or 6 (0 for either), not ${family}`);
    expect(client({ family: '4' })).toBe('TypeError: connect(): family must be 4 or 6 (0 for either), not "4"');
    expect(client({ localAddress: '::1' })).toBe('ok');
    expect(client({ localAddress: 'localhost' })).toBe('TypeError: connect(): localAddress must be an IP address, not "localhost"');
    expect(client({ localAddress: 2130706433 })).toBe('TypeError: connect(): localAddress must be an IP address, not number');
    // (An object whose text is an address is no string: Node's connect would be given the object.)
    expect(client({ localAddress: { toString: () => '127.0.0.1' } })).toBe('TypeError: connect(): localAddress must be an IP address, not object');
    expect(client({ lookup: 'dns' })).toBe('TypeError: connect(): lookup must be a function (dns.lookup\'s signature), not string');
    expect(client({ http2: {} })).toBe('ok');
    expect(client({ http2: null })).toBe('TypeError: connect(): http2 must be true, false or a ClientHttp2Session, not null');
    expect(client({ http2: 1 })).toBe('TypeError: connect(): http2 must be true, false or a ClientHttp2Session, not number');
    for (const variant of ['rfc6455', 'hybi00']) expect(client({ variant })).toBe('ok');
    for (const textMessages of ['string', 'buffer']) expect(client({ textMessages })).toBe('ok');
    expect(client({ textMessages: 'text' })).toBe("TypeError: connect(): textMessages must be 'string' or 'buffer', not text");
    expect(client({ serializeHandshakes: 'no' })).toMatch(/^TypeError: .*serializeHandshakes/);
  });

  test("ws's option names are refused with what to use instead, each of them", () => {
    for (const name of ['maxPayload', 'skipUTF8Validation', 'autoPong', 'maxRedirects', 'ca', 'cert', 'key', 'pfx', 'passphrase', 'rejectUnauthorized', 'servername', 'checkServerIdentity']) {
      expect([name, client({ [name]: false })]).toEqual([name, expect.stringMatching(new RegExp(`^TypeError: connect\\(\\): ${name} is an option of ws`))]);
    }
    for (const name of ['maxPayload', 'verifyClient', 'handleProtocols', 'noServer', 'server', 'clientTracking']) {
      expect([name, server({ [name]: false })]).toEqual([name, expect.stringMatching(new RegExp(`^TypeError: serve\\(\\): ${name} is an option of ws`))]);
    }
    // null is a value given (only undefined is no option).
    expect(client({ maxPayload: null })).toMatch(/^TypeError: /);
  });

  test('headers and origin: what a header can carry, the handshake\'s own names in any case, an array value item by item', () => {
    expect(client({ headers: { 'X-A': ['one', 'two'], 'X-B': 'caf\xe9\tok', 'X-C': undefined }, origin: 'https://caf\xe9.example' })).toBe('ok');
    expect(client({ headers: { 'Sec-WebSocket-Version': '13' } })).toMatch(/^TypeError: connect\(\): the Sec-WebSocket-Version header is the handshake's own/);
    for (const name of ['Sec-WebSocket-Key', 'Sec-WebSocket-Key1', 'Sec-WebSocket-Key2', 'Sec-WebSocket-Accept', 'SEC-WEBSOCKET-PROTOCOL', 'sec-websocket-extensions']) {
      expect([name, client({ headers: { [name]: 'x' } })]).toEqual([name, expect.stringMatching(/the handshake's own/)]);
    }
    expect(client({ headers: { 'X-A': ['ok', 'a\x7f'] } })).toBe('TypeError: connect(): invalid character in the value of header X-A');
    expect(client({ headers: { 'X-A': 'a\x00' } })).toBe('TypeError: connect(): invalid character in the value of header X-A');
    expect(client({ headers: [['X-A', '1']] })).toBe('TypeError: connect(): headers must be an object of header names and values');
    expect(client({ headers: null })).toBe('TypeError: connect(): headers must be an object of header names and values');
    expect(client({ headers: 'X-A: 1' })).toBe('TypeError: connect(): headers must be an object of header names and values');
    // checkClientHeaders (exported, for an adapter's in-memory client) checks them as connect() does.
    expect(() => checkClientHeaders('injectWS()', { 'Sec-WebSocket-Key': 'x' })).toThrow(new TypeError("injectWS(): the Sec-WebSocket-Key header is the handshake's own (the handshake makes a fresh key)"));
    expect(() => checkClientHeaders('injectWS()', { 'X-A': 'a\r\nb' })).toThrow(TypeError);
    expect(() => checkClientHeaders('injectWS()', { 'X-A': 'ok' })).not.toThrow();
    expect(client({ origin: 42 })).toBe('TypeError: connect(): origin must be a string that a header can carry, not number');
    expect(client({ origin: 'https://a.example\x7f' })).toMatch(/^TypeError: connect\(\): origin must be/);
  });

  test('origins and protocols of a server: arrays of strings or functions; what is wrong is named', () => {
    expect(server({ origins: () => true, protocols: () => 'chat' })).toBe('ok');
    expect(server({ protocols: false })).toBe('ok');
    expect(server({ origins: null })).toBe('TypeError: serve(): origins must be an array of origin strings or a function, not null');
    expect(server({ origins: [1] })).toBe('TypeError: serve(): origins must be an array of origin strings or a function, not an array with a value that is not a string');
    expect(server({ origins: new Set() })).toBe('TypeError: serve(): origins must be an array of origin strings or a function, not a Set (use an array)');
    expect(server({ protocols: 'chat' })).toBe('TypeError: serve(): protocols must be an array of subprotocol strings or a function, not a string ("chat": write ["chat"])');
    expect(server({ protocols: 7 })).toBe('TypeError: serve(): protocols must be an array of subprotocol strings or a function, not number');
    expect(server({ hybi00: 'no' })).toMatch(/^TypeError: serve\(\): hybi00 must be true or false/);
  });

  test('checkUpgradeOptions remembers an object that passed (handleUpgrade() checks the options of every request), and checks it on every call until then', () => {
    const options = { maxMessageSize: NaN };
    expect(() => checkUpgradeOptions('handleUpgrade()', options)).toThrow(RangeError);
    expect(() => checkUpgradeOptions('handleUpgrade()', options)).toThrow(RangeError);
    options.maxMessageSize = 1024;
    checkUpgradeOptions('handleUpgrade()', options);
    // Passed once: not checked again.
    options.maxMessageSize = NaN;
    expect(() => checkUpgradeOptions('handleUpgrade()', options)).not.toThrow();
  });

  test("serve()'s own options: connections (any value given, null too) is refused, the limits are 0 or more, http2 and tuneAllocator are booleans", () => {
    const outcome = (options: object): string => {
      try {
        checkServeOptions(options);
        return 'ok';
      } catch (error) {
        return `${(error as Error).name}: ${(error as Error).message}`;
      }
    };
    expect(outcome({ maxConnections: 0, maxConnectionsPerIp: 0, http2: true, tuneAllocator: false, connections: undefined })).toBe('ok');
    for (const connections of [new Set(), null, false]) expect(outcome({ connections })).toMatch(/^TypeError: serve\(\): connections is not taken here: its connections are in server\.connections/);
    expect(() => checkOwnConnections('websocket()', null, 'the plugin')).toThrow(TypeError);
    expect(outcome({ maxConnections: -1 })).toMatch(/^RangeError: serve\(\): maxConnections must be 0 or more/);
    expect(outcome({ maxConnectionsPerIp: -1 })).toMatch(/^RangeError: serve\(\): maxConnectionsPerIp must be 0 or more/);
    expect(outcome({ http2: 'yes' })).toBe('TypeError: serve(): http2 must be true or false, not "yes"');
    expect(outcome({ tuneAllocator: 1 })).toBe('TypeError: serve(): tuneAllocator must be true or false, not number');
    expect(outcome({ path: '/tmp/s.sock', host: '127.0.0.1' })).toMatch(/^TypeError: serve\(\): path is a Unix domain socket/);
    expect(outcome({ path: '/tmp/s.sock', port: 8080 })).toMatch(/^TypeError: serve\(\): path is a Unix domain socket/);
  });

});

describe('where a connection goes (client-target)', () => {
  test('percentDecode: %XX with two hex digits of either case is the byte; any other % stays', () => {
    expect(percentDecode('%30%39%41%46%61%66%2F%2f')).toEqual(Buffer.from('09AFaf//'));
    expect(percentDecode('%aA%Ff%a0%F9%0a')).toEqual(Buffer.from([0xaa, 0xff, 0xa0, 0xf9, 0x0a]));
    // Not hex: the '%' and what follows stay as they are.
    for (const text of ['%2g', '%g2', '%/0', '%:0', '%@0', '%G0', '%`0', '%2', '%', '100%']) expect([text, percentDecode(text).toString('latin1')]).toEqual([text, text]);
    expect(percentDecode('a%25%41b')).toEqual(Buffer.from('a%Ab'));
    expect(percentDecode('%e9t\u00e9')).toEqual(Buffer.from([0xe9, 0x74, 0xc3, 0xa9]));
  });

  test('redirectLocation: a 3xx (300 to 399) with a Location that is not empty', () => {
    const location = { location: '/next' };
    expect([299, 300, 301, 399, 400].map((status) => redirectLocation(status, location))).toEqual([undefined, '/next', '/next', '/next', undefined]);
    expect(redirectLocation(302, { location: '' })).toBeUndefined();
    expect(redirectLocation(302, {})).toBeUndefined();
  });

  test('sniOption and bareHostname: no servername for an IPv4 or IPv6 address; a DNS name without its trailing dot', () => {
    expect(sniOption('127.0.0.1')).toEqual({});
    expect(sniOption('::1')).toEqual({});
    expect(sniOption('example.com.')).toEqual({ servername: 'example.com' });
    expect(sniOption('example.com')).toEqual({ servername: 'example.com' });
    expect(bareHostname(new URL('wss://[::1]:8443/'))).toBe('::1');
    expect(bareHostname(new URL('wss://example.com/'))).toBe('example.com');
  });

  test('lookup is asked with the family given; a lookup that throws fails the connection with WS_CONNECT_FAILED, what it threw the cause', async () => {
    const s = await answering((head) => switching(head));
    const families: unknown[] = [];
    const lookup = ((_hostname: string, options: { family?: unknown; all?: boolean }, callback: (...args: unknown[]) => void) => {
      families.push(options.family);
      if (options.all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
      else callback(null, '127.0.0.1', 4);
    }) as unknown as NonNullable<Parameters<typeof connect>[1]>['lookup'];
    conns.push(await connect(`ws://upstream.test:${s.port}/`, { perMessageDeflate: false, family: 4, lookup }));
    expect(families).toEqual([4]);
    const boom = new Error('no resolver');
    const throwing = (() => {
      throw boom;
    }) as unknown as NonNullable<Parameters<typeof connect>[1]>['lookup'];
    const error = await handshakeFailure(`ws://upstream.test:${s.port}/`, { lookup: throwing });
    expect([error.code, error.status, error.cause]).toEqual(['WS_CONNECT_FAILED', 0, boom]);
  });

  test('unixTarget: the socket path up to the first colon, decoded; the request path as written, / when there is none', () => {
    expect(unixTarget(new URL('ws+unix:///tmp/a.sock:/x:y?q=1'))).toEqual({ socketPath: '/tmp/a.sock', target: new URL('ws://localhost/x:y?q=1') });
    expect(unixTarget(new URL('wss+unix:///tmp/a.sock:'))).toEqual({ socketPath: '/tmp/a.sock', target: new URL('wss://localhost/') });
    expect(unixTarget(new URL('ws+unix:///tmp/a.sock:x'))!.target.pathname).toBe('/x');
  });

  test('connectFailed, factoryFailed, abortedHandshake: the errors of a connection that was not made', () => {
    const cause = new Error('ECONNRESET here');
    const failed = connectFailed(cause);
    expect([failed.message, failed.status, failed.code, failed.cause]).toEqual(['connection failed: ECONNRESET here', 0, 'WS_CONNECT_FAILED', cause]);
    expect(connectFailed('no message').message).toBe('connection failed: no message');
    expect(connectFailed(null).message).toBe('connection failed: null');
    for (const error of [new TypeError('bad agent'), new RangeError('bad option')]) expect(() => factoryFailed(error)).toThrow(error);
    let thrown: unknown;
    try {
      factoryFailed(new Error('refused'));
    } catch (error) {
      thrown = error;
    }
    expect([(thrown as HandshakeError).code, (thrown as HandshakeError).message]).toEqual(['WS_CONNECT_FAILED', 'connection failed: refused']);
    const controller = new AbortController();
    controller.abort('gone');
    const aborted = abortedHandshake(controller.signal);
    const abort = aborted.cause as Error & { code?: string };
    expect([aborted.code, abort.name, abort.code, abort.cause]).toEqual(['WS_CONNECT_FAILED', 'AbortError', 'ABORT_ERR', 'gone']);
  });

  test('refusalBody: keeps the first 64 KiB exactly, calling done once that much is in, or at the end', () => {
    const body = new PassThrough();
    let done = 0;
    const received = refusalBody(body, () => done++);
    body.write(Buffer.alloc(64 * 1024 - 1, 'a'));
    expect(done).toBe(0);
    // 64 KiB exactly: done.
    body.write(Buffer.from('b'));
    expect(done).toBe(1);
    // What comes after is not kept (done is called again: the caller settles once).
    body.write(Buffer.from('cd'));
    body.write(Buffer.from('ef'));
    expect(received()).toEqual(Buffer.concat([Buffer.alloc(64 * 1024 - 1, 'a'), Buffer.from('b')]));
    const over = new PassThrough();
    const overReceived = refusalBody(over, () => undefined);
    over.write(Buffer.alloc(64 * 1024 - 1, 'a'));
    over.write(Buffer.from('bc'));
    over.write(Buffer.from('de'));
    expect(overReceived()).toEqual(Buffer.concat([Buffer.alloc(64 * 1024 - 1, 'a'), Buffer.from('b')]));
    const short = new PassThrough();
    let ended = false;
    const got = refusalBody(short, () => (ended = true));
    short.end('denied');
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        expect([ended, got().toString()]).toEqual([true, 'denied']);
        resolve();
      }),
    );
  });

  test('watchStatusLine: the first status line that is not HTTP, after interim 1xx responses and blank lines; none for HTTP', async () => {
    const watching: Array<Promise<string | undefined>> = [];
    const watch = (...chunks: string[]): void => {
      const socket = new PassThrough();
      const notHttp = watchStatusLine(socket);
      // (Read as a socket is read once Node's HTTP client listens: the watch's listener sees each chunk first.)
      socket.on('data', () => undefined);
      watching.push(new Promise((resolve) => socket.on('end', () => resolve(notHttp()))));
      for (const chunk of chunks) socket.write(Buffer.from(chunk, 'latin1'));
      socket.end();
    };
    watch('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n');
    watch('RTSP/1.0 101 OK\r\n');
    watch('RTSP/1.0 101 OK\n');
    watch('\r\nICE/1.0 101 OK\r\n');
    watch('HTTP/1.1 100 Continue\r\nX: y\r\n\r\nRTSP/1.0 101 OK\r\n');
    watch('HTTP/1.1 103 Early Hints\r\n\r\n', 'HTTP/1.1 100 Continue\r\n\r\n', 'ICE/1.0 101 OK\r\n');
    watch('HTTP/1.1 100\r\n\r\nRTSP/1.0 101 OK\r\n');
    // A final response ends the watch: what follows it (a frame, the next response) is not read.
    watch('HTTP/1.1 101 Switching Protocols\r\n\r\nRTSP/1.0 200 OK\r\n');
    watch('HTTP/1.1 1010 X\r\n\r\nRTSP/1.0 200 OK\r\n');
    watch('HTTP/1.1 1000 X\r\n\r\nRTSP/1.0 200 OK\r\n');
    // The first line that is not HTTP is the one reported, an interim one too.
    watch('RTSP/1.0 100 Continue\r\n\r\nICE/1.0 101 OK\r\n');
    watch('HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\nRTSP/1.0 200 OK\r\n');
    watch('HTTPS/1.1 101 OK\r\n');
    watch(`X${'y'.repeat(300)}\r\n`);
    expect(await Promise.all(watching)).toEqual([
      undefined,
      'RTSP/1.0 101 OK',
      'RTSP/1.0 101 OK',
      'ICE/1.0 101 OK',
      'RTSP/1.0 101 OK',
      'ICE/1.0 101 OK',
      'RTSP/1.0 101 OK',
      undefined,
      undefined,
      undefined,
      'RTSP/1.0 100 Continue',
      undefined,
      'HTTPS/1.1 101 OK',
      `X${'y'.repeat(255)}`,
    ]);
  });
});
