/**
 * Our RFC 8441 client against an HTTP/2 server that is not Node's: Debian's hypercorn (ASGI, on
 * python3-h2 and python3-wsproto), run as /usr/bin/python3 with the echo app of
 * test/http2/py/hypercorn-echo.py, over TLS (ALPN h2) and over h2c (prior knowledge), and over
 * HTTP/1.1 on the same TLS port as the control. Then our serve({ http2 }) against a client that is
 * not Node's: python3-h2 + python3-wsproto, the extended CONNECT by hand (py/h2-client.py).
 *
 * Checked: hypercorn's SETTINGS_ENABLE_CONNECT_PROTOCOL, the extended CONNECT as the server
 * received it (pseudo-headers and fields), the subprotocol the app chose, echoes of every frame
 * length encoding with and without permessage-deflate, several WebSockets on one session at once,
 * its 100 concurrent streams, pings both ways, closes both ways, redirects, and refusals (403,
 * 401 with a body).
 *
 * hypercorn 0.13.2 has two defects on HTTP/2, asserted here as what our client does about them
 * (docs/http2.md, "Servers other than ours"):
 * - After a close the client started, it sends its close frame back but never ends its side of
 *   the stream (no END_STREAM, no RST_STREAM), so our client waits `closeTimeout` and then resets
 *   the stream (CANCEL), as RFC 6455 §7.1.1 lets a client close a connection the server did not.
 * - Its HTTP/2 layer forgets a WebSocket's stream once the close frames are exchanged (or a
 *   redirect answered), and a DATA frame on it afterwards (our END_STREAM, RFC 8441 §5's orderly
 *   close, or the END_STREAM Node's http2 sends ahead of a RST_STREAM on a stream still open)
 *   raises KeyError in hypercorn, which drops the whole connection: every other WebSocket on that
 *   session ends with 1006 (pgjones/hypercorn#329; fixes proposed in #312, #334 and #365).
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { constants as h2constants, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { connect, EOF, HandshakeError, serve, type ConnectOptions, type WebSocketConnection } from 'rfc6455';
import { bytesOf, textOfBytes } from '../interop/peer-helpers.js';
import { CLIENT_TLS, closeSession, openSession, TLS } from './helpers.js';

const PYTHON = '/usr/bin/python3';
const SCRIPT = join(__dirname, 'py/hypercorn-echo.py');
const CERT = resolve(__dirname, '../fixtures/tls/cert.pem');
const KEY = resolve(__dirname, '../fixtures/tls/key.pem');

test('python3-hypercorn is installed (apt-get install python3-hypercorn python3-h2 python3-wsproto; .ci/run does it)', () => {
  const r = spawnSync(PYTHON, ['-c', 'import hypercorn, h2, wsproto'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${PYTHON} cannot import hypercorn, h2 and wsproto: install Debian's python3-hypercorn (it brings python3-h2 and python3-wsproto)\n${r.stderr}`);
});

type Line = Record<string, unknown>;

/** One hypercorn process: its two ports, and the `disconnect` its app reported for each `?id=`. */
interface Hypercorn {
  tls: number;
  clear: number;
  version: string;
  /** The app's `websocket.disconnect` for the WebSocket opened with `?id=<id>`. */
  disconnect(id: string): Promise<Line>;
  stop(): void;
}

const running = new Set<ChildProcessWithoutNullStreams>();

function startHypercorn(pingInterval?: number): Promise<Hypercorn> {
  const args = [SCRIPT, CERT, KEY, ...(pingInterval === undefined ? [] : [String(pingInterval)])];
  const child = spawn(PYTHON, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  running.add(child);
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const waiting = new Map<string, (l: Line) => void>();
  const seen = new Map<string, Line>();
  return new Promise((resolvePromise, reject) => {
    const rl = createInterface({ input: child.stdout });
    rl.once('line', (first) => {
      const ports = JSON.parse(first) as { tls: number; clear: number; hypercorn: string };
      rl.on('line', (text) => {
        const line = JSON.parse(text) as Line;
        const id = new URLSearchParams(String(line.query)).get('id') ?? '';
        const w = waiting.get(id);
        if (w) w(line);
        else seen.set(id, line);
      });
      resolvePromise({
        tls: ports.tls,
        clear: ports.clear,
        version: ports.hypercorn,
        disconnect: (id) => {
          const l = seen.get(id);
          if (l) return Promise.resolve(l);
          return new Promise((r) => waiting.set(id, r));
        },
        stop: () => {
          child.kill('SIGKILL');
          running.delete(child);
        },
      });
    });
    child.once('exit', (code) => reject(new Error(`hypercorn-echo.py exited (${code}) before listening: ${stderr}`)));
  });
}

afterAll(() => {
  for (const c of running) c.kill('SIGKILL');
});

/** The app's answer to "!scope": what hypercorn handed it of the request. */
interface Scope {
  http_version: string;
  scheme: string;
  path: string;
  query: string;
  headers: Array<[string, string]>;
  subprotocols: string[];
  pseudo: Array<[string, string]> | null;
}

async function scopeOf(conn: WebSocketConnection): Promise<Scope> {
  await conn.send('!scope');
  return JSON.parse((await conn.recv()) as string) as Scope;
}

let peer: Hypercorn;
let ids = 0;
const newId = (): string => `c${++ids}`;
const h2url = (path: string, id: string): string => `wss://127.0.0.1:${peer.tls}${path}?id=${id}`;
const TLS_OPTS: ConnectOptions = { tls: CLIENT_TLS, handshakeTimeout: 5000 };

beforeAll(async () => {
  peer = await startHypercorn();
});

describe('our client → hypercorn over HTTP/2 (RFC 8441)', () => {
  test('hypercorn advertises SETTINGS_ENABLE_CONNECT_PROTOCOL; our CONNECT has :protocol, the app sees origin and version, no HTTP/2-forbidden field; the app chooses the subprotocol', async () => {
    const session = await openSession(`https://127.0.0.1:${peer.tls}`);
    try {
      expect(session.alpnProtocol).toBe('h2');
      expect(session.remoteSettings.enableConnectProtocol).toBe(true);
      const id = newId();
      const conn = await connect(h2url('/hdr', id), {
        ...TLS_OPTS,
        http2: session,
        perMessageDeflate: false,
        protocols: ['chat.v1', 'chat.v2'],
        origin: 'https://app.example',
        // Forbidden in HTTP/2 (RFC 9113 §8.2.2), or meaningless on a CONNECT: left out by our client.
        // h2 would refuse the whole connection (PROTOCOL_ERROR) for any of the first four.
        headers: { 'X-Token': 'abc ok', Connection: 'keep-alive', 'Keep-Alive': 'timeout=5', Upgrade: 'websocket', TE: 'gzip', 'Content-Length': '0' },
      });
      expect(conn.transport.kind).toBe('http2');
      expect((conn.transport.stream as ClientHttp2Stream).session).toBe(session);
      // chat.v2 is the app's first choice, though the client offered it second.
      expect(conn.protocol).toBe('chat.v2');
      expect(conn.extensions).toBe('');
      // The 200's headers, the app's own among them.
      expect(conn.headers).toMatchObject({ 'sec-websocket-protocol': 'chat.v2', 'x-app': 'echo', server: 'hypercorn-h2' });
      expect(conn.headers['sec-websocket-accept']).toBeUndefined();
      const scope = await scopeOf(conn);
      expect(scope.http_version).toBe('2');
      expect(scope.scheme).toBe('wss');
      expect(scope.path).toBe('/hdr');
      expect(scope.query).toBe(`id=${id}`);
      expect(Object.fromEntries(scope.pseudo ?? [])).toEqual({
        ':method': 'CONNECT',
        ':protocol': 'websocket',
        ':scheme': 'https',
        ':path': `/hdr?id=${id}`,
        ':authority': `127.0.0.1:${peer.tls}`,
      });
      expect(scope.subprotocols).toEqual(['chat.v1', 'chat.v2']);
      const headers = new Map(scope.headers);
      expect(headers.get('origin')).toBe('https://app.example');
      expect(headers.get('sec-websocket-version')).toBe('13');
      expect(headers.get('sec-websocket-protocol')).toBe('chat.v1, chat.v2');
      expect(headers.get('x-token')).toBe('abc ok');
      // (hypercorn writes :authority as host.)
      expect(headers.get('host')).toBe(`127.0.0.1:${peer.tls}`);
      for (const name of ['connection', 'keep-alive', 'upgrade', 'te', 'content-length', 'transfer-encoding', 'sec-websocket-key', 'sec-websocket-extensions']) expect(headers.has(name)).toBe(false);
      conn.terminate();
      await conn.whenClosed;
    } finally {
      await closeSession(session);
    }
  });

  test.each([false, true])('text and binary echo, 0 B to 1 MiB and non-ASCII (permessage-deflate %s); the app closes with 4002 and a UTF-8 reason', async (deflate) => {
    const id = newId();
    const conn = await connect(h2url('/echo', id), { ...TLS_OPTS, http2: true, perMessageDeflate: deflate });
    expect(conn.transport.kind).toBe('http2');
    // wsproto accepts our offer (client_max_window_bits with no value) and answers with 15.
    expect(conn.extensions).toBe(deflate ? 'permessage-deflate; client_max_window_bits=15' : '');
    if (deflate) expect(new Map((await scopeOf(conn)).headers).get('sec-websocket-extensions')).toBe('permessage-deflate; client_max_window_bits');
    for (const size of [0, 125, 65536, 1024 * 1024]) {
      const text = textOfBytes(size);
      await conn.send(text);
      expect(await conn.recv()).toBe(text);
      const bytes = bytesOf(size, size);
      await conn.send(bytes);
      const echoed = await conn.recv();
      expect(Buffer.isBuffer(echoed) && echoed.equals(bytes)).toBe(true);
    }
    await conn.send('grüße ✓ 😀 中文');
    expect(await conn.recv()).toBe('grüße ✓ 😀 中文');
    await conn.send('!close 4002 py bye ✓');
    expect(await conn.recv()).toBe(EOF);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(4002);
    expect(conn.closeReason).toBe('py bye ✓');
    // (What hypercorn tells its app is not checked here: our END_STREAM after the close frames
    // makes it drop the connection, which may cancel the app's task before it has reported.)
  });

  test('h2c (cleartext HTTP/2 with prior knowledge): the same CONNECT under :scheme http', async () => {
    const id = newId();
    const conn = await connect(`ws://127.0.0.1:${peer.clear}/plain?id=${id}`, { http2: true, handshakeTimeout: 5000, protocols: 'chat.v1' });
    expect(conn.transport.kind).toBe('http2');
    expect(conn.transport.secure).toBe(false);
    expect(conn.protocol).toBe('chat.v1');
    const scope = await scopeOf(conn);
    expect(scope.http_version).toBe('2');
    expect(scope.scheme).toBe('ws');
    expect(Object.fromEntries(scope.pseudo ?? [])).toMatchObject({ ':method': 'CONNECT', ':protocol': 'websocket', ':scheme': 'http', ':path': `/plain?id=${id}` });
    const bytes = bytesOf(70_000, 3);
    await conn.send(bytes);
    expect((await conn.recv()) as Buffer).toEqual(bytes);
    await conn.send('!close 1000 done');
    expect(await conn.recv()).toBe(EOF);
    expect(conn.closeStatus).toBe(1000);
    expect(conn.closeReason).toBe('done');
  });

  test('six WebSockets on one session at once, each echoing its own messages', async () => {
    const session: ClientHttp2Session = await openSession(`https://127.0.0.1:${peer.tls}`);
    try {
      const wanted = Array.from({ length: 6 }, () => newId());
      const conns = await Promise.all(wanted.map((id) => connect(h2url('/multi', id), { ...TLS_OPTS, http2: session })));
      const streamIds = new Set(conns.map((c) => (c.transport.stream as ClientHttp2Stream).id));
      expect(streamIds.size).toBe(6);
      for (const c of conns) expect((c.transport.stream as ClientHttp2Stream).session).toBe(session);
      await Promise.all(
        conns.map(async (c, i) => {
          const messages = [`hello ${i} ✓`, bytesOf(100_000 + i, i), textOfBytes(30_000 + i)];
          // All sent before any is read: the streams interleave on the connection both ways.
          await Promise.all(messages.map((m) => c.send(m)));
          for (const m of messages) {
            const got = await c.recv();
            if (Buffer.isBuffer(m)) expect(Buffer.isBuffer(got) && got.equals(m)).toBe(true);
            else expect(got).toBe(m);
          }
          const scope = await scopeOf(c);
          expect(scope.http_version).toBe('2');
          expect(scope.query).toBe(`id=${wanted[i]}`);
        }),
      );
      // (Not closed one by one: see the next tests.)
      for (const c of conns) c.terminate();
      await Promise.all(conns.map((c) => c.whenClosed));
    } finally {
      await closeSession(session);
    }
  });

  test('pings both ways: ours is answered (wsproto), hypercorn\'s own pings are answered by ours', async () => {
    const pinging = await startHypercorn(0.05);
    try {
      const conn = await connect(`wss://127.0.0.1:${pinging.tls}/ping?id=p`, { ...TLS_OPTS, http2: true });
      expect(conn.transport.kind).toBe('http2');
      const rtt = await conn.ping('from node ✓');
      expect(rtt).toBeGreaterThanOrEqual(0);
      const ping = await new Promise<Buffer>((r) => conn.once('ping', r));
      expect(ping.length).toBe(0);
      // Still a working connection after hypercorn's ping and our pong.
      await conn.send('after the pings');
      expect(await conn.recv()).toBe('after the pings');
      conn.terminate();
      await conn.whenClosed;
    } finally {
      pinging.stop();
    }
  });

  test('a close our client starts: hypercorn echoes the code and reason, never ends the stream, and our client resets it (CANCEL) at closeTimeout', async () => {
    const id = newId();
    const conn = await connect(h2url('/bye', id), { ...TLS_OPTS, http2: true, closeTimeout: 1000 });
    await conn.send('before the close');
    expect(await conn.recv()).toBe('before the close');
    await conn.close(4001, 'node bye ✓');
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(4001);
    expect(conn.closeReason).toBe('node bye ✓');
    // hypercorn 0.13.2 sent no END_STREAM after its close frame (a server that did would leave
    // rstCode NO_ERROR): our client gave up waiting and reset the stream.
    expect((conn.transport.stream as ClientHttp2Stream).rstCode).toBe(h2constants.NGHTTP2_CANCEL);
    // (And hypercorn tells its app 1006 for any close the client started, whatever its code.)
    expect((await peer.disconnect(id)).code).toBe(1006);
  });

  test('a WebSocket the server closes on a shared session: ours closes cleanly, and hypercorn then drops the session, ending its sibling with 1006', async () => {
    const session = await openSession(`https://127.0.0.1:${peer.tls}`);
    try {
      const sibling = await connect(h2url('/sibling', newId()), { ...TLS_OPTS, http2: session });
      const closing = await connect(h2url('/closing', newId()), { ...TLS_OPTS, http2: session });
      await closing.send('!close 4003 server first');
      expect(await closing.recv()).toBe(EOF);
      await closing.whenClosed;
      expect(closing.closeStatus).toBe(4003);
      expect(closing.closeReason).toBe('server first');
      // Our close frame and END_STREAM went back (RFC 8441 §5: the orderly close); hypercorn had
      // forgotten the stream by the END_STREAM, raised KeyError and dropped the connection.
      await sibling.whenClosed;
      expect(sibling.closeStatus).toBe(1006);
      expect(session.destroyed || session.closed).toBe(true);
    } finally {
      await closeSession(session);
    }
  });

  test('hypercorn\'s SETTINGS_MAX_CONCURRENT_STREAMS (100): the 101st WebSocket on a session waits for a stream to end, then opens', async () => {
    const session = await openSession(`https://127.0.0.1:${peer.tls}`);
    try {
      expect(session.remoteSettings.maxConcurrentStreams).toBe(100);
      const conns = await Promise.all(Array.from({ length: 100 }, () => connect(h2url('/many', newId()), { ...TLS_OPTS, http2: session })));
      let opened = false;
      const late = connect(h2url('/many', newId()), { ...TLS_OPTS, http2: session }).then((c) => {
        opened = true;
        return c;
      });
      // A round trip on the session: hypercorn has had the time to answer a CONNECT sent at once.
      await conns[99]!.send('round trip');
      expect(await conns[99]!.recv()).toBe('round trip');
      expect(opened).toBe(false);
      // (terminate, not close: see the next tests.)
      conns[0]!.terminate();
      const conn = await late;
      expect(conn.transport.kind).toBe('http2');
      await conn.send('in the freed slot');
      expect(await conn.recv()).toBe('in the freed slot');
      for (const c of [...conns, conn]) c.terminate();
      await Promise.all([...conns, conn].map((c) => c.whenClosed));
    } finally {
      await closeSession(session);
    }
  });

  test('a 302 is followed (followRedirects) over HTTP/2: to its own origin, and to ws:// on an h2c session', async () => {
    // (Sessions of its own, \`http2: true\`: on a shared session the 3xx's stream ends with our
    // END_STREAM, and hypercorn drops the session with the next hop on it, as after a refusal below.)
    const id = newId();
    const same = await connect(`wss://127.0.0.1:${peer.tls}/redirect?to=${encodeURIComponent(`/target?id=${id}`)}`, { ...TLS_OPTS, http2: true, followRedirects: true });
    expect(same.transport.kind).toBe('http2');
    expect(same.url).toBe(`/target?id=${id}`);
    expect(Object.fromEntries((await scopeOf(same)).pseudo ?? [])).toMatchObject({ ':scheme': 'https', ':path': `/target?id=${id}` });
    same.terminate();
    const other = newId();
    const cleartext = await connect(`wss://127.0.0.1:${peer.tls}/redirect?to=${encodeURIComponent(`ws://127.0.0.1:${peer.clear}/target?id=${other}`)}`, { ...TLS_OPTS, http2: true, followRedirects: true });
    expect(cleartext.transport.kind).toBe('http2');
    expect(cleartext.transport.secure).toBe(false);
    expect(Object.fromEntries((await scopeOf(cleartext)).pseudo ?? [])).toMatchObject({ ':scheme': 'http', ':path': `/target?id=${other}` });
    cleartext.terminate();
    await Promise.all([same.whenClosed, cleartext.whenClosed]);
  });

  test('a refusal on a shared session: reported, its stream reset once its body is read, and the WebSocket open beside it carries on', async () => {
    const session = await openSession(`https://127.0.0.1:${peer.tls}`);
    try {
      const sibling = await connect(h2url('/sibling', newId()), { ...TLS_OPTS, http2: session });
      const error = (await connect(h2url('/deny', newId()), { ...TLS_OPTS, http2: session }).catch((e: unknown) => e)) as HandshakeError;
      expect(error.status).toBe(401);
      expect((error.body ?? Buffer.alloc(0)).toString()).toBe('no entry');
      // (A RST_STREAM alone, which hypercorn takes: no DATA frame on the stream it has forgotten.)
      await sibling.send('still here');
      expect(await sibling.recv()).toBe('still here');
      const next = await connect(h2url('/after', newId()), { ...TLS_OPTS, http2: session });
      await next.send('and a new one');
      expect(await next.recv()).toBe('and a new one');
      sibling.terminate();
      next.terminate();
      await Promise.all([sibling.whenClosed, next.whenClosed]);
    } finally {
      await closeSession(session);
    }
  });

  test.each([
    ['/refuse', 403, {}, ''],
    ['/deny', 401, { 'x-why': 'nope', 'content-type': 'text/plain' }, 'no entry'],
  ] as const)('the app refuses (%s): WS_UNEXPECTED_RESPONSE with the status, headers and body hypercorn sent over HTTP/2, no fallback', async (path, status, headers, body) => {
    const error = (await connect(h2url(path, newId()), { ...TLS_OPTS, http2: true }).catch((e: unknown) => e)) as HandshakeError;
    expect(error).toBeInstanceOf(HandshakeError);
    expect(error.code).toBe('WS_UNEXPECTED_RESPONSE');
    expect(error.status).toBe(status);
    expect(error.headers).toMatchObject(headers);
    // Answered over HTTP/2 (hypercorn names its protocol), and hypercorn's HTTP/1.1
    // `connection: close` on the 403 was left out by h2 (RFC 9113 §8.2.2).
    expect(error.headers.server).toBe('hypercorn-h2');
    expect(error.headers.connection).toBeUndefined();
    expect((error.body ?? Buffer.alloc(0)).toString()).toBe(body);
  });
});

describe('control: the same app over HTTP/1.1 (ALPN http/1.1 on the same port)', () => {
  test('handshake, echo with permessage-deflate, closes both ways', async () => {
    const id = newId();
    const conn = await connect(h2url('/h1', id), { ...TLS_OPTS, protocols: ['chat.v1', 'chat.v2'], origin: 'https://app.example' });
    expect(conn.transport.kind).toBe('tls');
    expect(conn.protocol).toBe('chat.v2');
    expect(conn.extensions).toBe('permessage-deflate; client_max_window_bits=15');
    const scope = await scopeOf(conn);
    expect(scope.http_version).toBe('1.1');
    expect(scope.pseudo).toBeNull();
    const headers = new Map(scope.headers);
    expect(headers.get('origin')).toBe('https://app.example');
    expect(headers.get('upgrade')).toBe('websocket');
    expect(headers.has('sec-websocket-key')).toBe(true);
    for (const size of [0, 125, 65536, 1024 * 1024]) {
      const bytes = bytesOf(size, 7);
      await conn.send(bytes);
      expect(((await conn.recv()) as Buffer).equals(bytes)).toBe(true);
    }
    await conn.send('grüße ✓ 😀 中文');
    expect(await conn.recv()).toBe('grüße ✓ 😀 中文');
    await conn.close(4001, 'node bye ✓');
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(4001);
    expect(conn.closeReason).toBe('node bye ✓');

    const second = await connect(h2url('/h1', newId()), TLS_OPTS);
    await second.send('!close 4002 py bye ✓');
    expect(await second.recv()).toBe(EOF);
    expect(second.closeStatus).toBe(4002);
    expect(second.closeReason).toBe('py bye ✓');
  });

  test.each([
    ['/refuse', 403, ''],
    ['/deny', 401, 'no entry'],
  ] as const)('the app refuses (%s): the same status and body over HTTP/1.1', async (path, status, body) => {
    const error = (await connect(h2url(path, newId()), TLS_OPTS).catch((e: unknown) => e)) as HandshakeError;
    expect(error).toBeInstanceOf(HandshakeError);
    expect(error.code).toBe('WS_UNEXPECTED_RESPONSE');
    expect(error.status).toBe(status);
    expect(error.headers.server).toBe('hypercorn-h11');
    expect((error.body ?? Buffer.alloc(0)).toString()).toBe(body);
  });
});

describe('an HTTP/2 client that is not Node\'s: python3-h2 + python3-wsproto → our serve({ http2: true, tls })', () => {
  test('extended CONNECT by hand: SETTINGS, two WebSockets interleaved on one connection through a 4 KiB window, one-byte DATA frames, deflate, Origin refused 403, pings, closes both ways', async () => {
    const seen: Array<{ n: string | null; kind: string; httpVersion: string; protocol: string; extensions: string; origin: string | undefined; closed: Promise<void>; conn: WebSocketConnection }> = [];
    const server = await serve({ port: 0, http2: true, tls: TLS, protocols: ['chat.v1', 'chat.v2'], origins: ['https://py.example'] }, async (conn, req) => {
      seen.push({
        n: new URL(req.url ?? '/', 'https://x').searchParams.get('n'),
        kind: conn.transport.kind,
        httpVersion: req.httpVersion,
        protocol: conn.protocol,
        extensions: conn.extensions,
        origin: conn.headers.origin as string | undefined,
        closed: conn.whenClosed,
        conn,
      });
      for await (const m of conn) {
        if (m === 'close-me') await conn.close(4002, 'node bye ✓');
        else {
          if (m === 'ping me') await conn.ping('from-node');
          await conn.send(m);
        }
      }
    });
    try {
      // (Asynchronously: the server answering it runs in this process.)
      const child = spawn(PYTHON, [join(__dirname, 'py/h2-client.py'), String(server.port), CERT], { stdio: ['ignore', 'pipe', 'pipe'] });
      running.add(child as unknown as ChildProcessWithoutNullStreams);
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const status = await new Promise<number | null>((r) => child.once('close', r));
      if (status !== 0) throw new Error(`h2-client.py failed (${String(status)}): ${stderr}\n${stdout}`);
      const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as Line);
      const step = (name: string, n?: string): Line => lines.find((l) => l.step === name && (n === undefined || l.name === n)) ?? {};
      expect(step('settings')).toEqual({ step: 'settings', alpn: 'h2', enable_connect_protocol: 1 });
      // RFC 8441 §5: 200, no Sec-WebSocket-Accept (there was no key).
      expect(step('open', 'a')).toMatchObject({ status: '200', protocol: 'chat.v1', accept: null });
      expect(String(step('open', 'a').extensions)).toMatch(/^permessage-deflate/);
      expect(step('open', 'b')).toMatchObject({ status: '200', protocol: null, extensions: null, accept: null });
      expect(step('echo')).toMatchObject({ a_big: true, b_big: true, a_small: 'héllo ✓', b_empty: true });
      expect(step('split').echo).toBe('one byte per DATA frame ✓');
      // The refused Origin is a 403 on its stream, which ends; the connection carries on.
      expect(step('refused')).toMatchObject({ status: '403', ended: true, reset: null });
      expect(step('pong').ok).toBe(true);
      expect(step('pinged')).toMatchObject({ pings: ['from-node'], echo: 'ping me' });
      // Our server ended the stream (END_STREAM, no reset) after the close handshake, both ways.
      expect(step('server-closed')).toMatchObject({ code: 4002, reason: 'node bye ✓', ended: true, reset: null });
      expect(step('client-closed')).toMatchObject({ code: 4001, reason: 'py bye ✓', ended: true, reset: null });

      await Promise.all(seen.map((s) => s.closed));
      expect(seen.map((s) => s.n).sort()).toEqual(['a', 'b']);
      for (const s of seen) {
        expect(s.kind).toBe('http2');
        expect(s.httpVersion).toBe('2.0');
        expect(s.origin).toBe('https://py.example');
      }
      const a = seen.find((s) => s.n === 'a')!;
      const b = seen.find((s) => s.n === 'b')!;
      expect(a.protocol).toBe('chat.v1');
      expect(a.extensions).toMatch(/^permessage-deflate/);
      expect(b.extensions).toBe('');
      expect([a.conn.closeStatus, a.conn.closeReason]).toEqual([4001, 'py bye ✓']);
      expect([b.conn.closeStatus, b.conn.closeReason]).toEqual([4002, 'node bye ✓']);
    } finally {
      await server.close();
    }
  });
});
