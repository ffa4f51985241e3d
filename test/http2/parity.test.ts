/**
 * One behaviour suite, run over HTTP/2 extended CONNECT (RFC 8441) and over the HTTP/1.1 upgrade:
 * our client against our serve({ http2: true, tls }) server, which answers both on one TLS port.
 * Every case also checks, on the server side, which transport actually carried the WebSocket, so
 * the HTTP/2 column cannot silently pass over HTTP/1.1.
 *
 * Then what only HTTP/2 has: several WebSockets on one shared ClientHttp2Session, and the client's
 * fallback to HTTP/1.1 when the server does not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL.
 */
import { connect as h2connect, constants as h2constants, createSecureServer, createServer as createHttp2Server, type ClientHttp2Session, type Http2SecureServer, type Http2Server } from 'node:http2';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { attachHttp2, connect, ConnectionClosedError, EOF, HandshakeError, handleUpgrade, serve, serviceMapper, type ConnectOptions, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { zlibLimiter } from '../../packages/rfc6455/src/extensions/zlib-limiter.js';
import { CLIENT_TLS, closeSession, openSession, originOf, TLS } from './helpers.js';

/** What the server saw of one connection, reported when it closed. */
interface ServerView {
  kind: string;
  httpVersion: string;
  protocol: string;
  extensions: string;
  closeStatus: number | undefined;
  closeReason: string | undefined;
  received: Array<string | Buffer>;
}

const views = new Map<string, { promise: Promise<ServerView>; resolve: (v: ServerView) => void }>();
function viewOf(id: string): Promise<ServerView> {
  let entry = views.get(id);
  if (!entry) {
    let resolve!: (v: ServerView) => void;
    const promise = new Promise<ServerView>((r) => (resolve = r));
    entry = { promise, resolve };
    views.set(id, entry);
  }
  return entry.promise;
}
let nextId = 0;
const newId = (): string => `t${++nextId}`;

/** Echoes every message back (text as text, binary as binary), then reports what it saw. */
async function echo(conn: WebSocketConnection, req: IncomingMessage, reply?: (m: string | Buffer) => string | Buffer): Promise<void> {
  const id = new URL(req.url ?? '/', 'https://x').searchParams.get('id') ?? 'none';
  const received: Array<string | Buffer> = [];
  for await (const m of conn) {
    received.push(m);
    await conn.send(reply ? reply(m) : m).catch(() => undefined);
  }
  await conn.whenClosed;
  viewOf(id);
  views.get(id)!.resolve({
    kind: conn.transport.kind,
    httpVersion: req.httpVersion,
    protocol: conn.protocol,
    extensions: conn.extensions,
    closeStatus: conn.closeStatus,
    closeReason: conn.closeReason,
    received,
  });
}

const mapper = serviceMapper([
  { path: '/echo', handler: (conn, req) => echo(conn, req) },
  {
    path: '/chat',
    protocols: {
      'chat.v2': (conn, req) => echo(conn, req, (m) => `v2:${String(m)}`),
      'chat.v1': (conn, req) => echo(conn, req, (m) => `v1:${String(m)}`),
    },
  },
  {
    path: '/server-closes/(?<code>\\d+)',
    handler: async (conn, req, { params }) => {
      const done = echo(conn, req);
      await conn.close(Number(params.code), 'server says bye');
      await done;
    },
  },
]);

let server: WebSocketServer;
let origin: string;

beforeAll(async () => {
  server = await serve({ host: '127.0.0.1', port: 0, http2: true, tls: TLS }, mapper);
  origin = originOf(server.url);
});

afterAll(async () => {
  await server.close();
});

describe.each(['http2', 'http1'] as const)('over %s', (mode) => {
  const expectedKind = mode === 'http2' ? 'http2' : 'tls';
  const expectedVersion = mode === 'http2' ? '2.0' : '1.1';
  const open = (path: string, id: string, options: ConnectOptions = {}): Promise<WebSocketConnection> =>
    connect(`${server.url.replace(/\/$/, '')}${path}${path.includes('?') ? '&' : '?'}id=${id}`, {
      tls: CLIENT_TLS,
      ...(mode === 'http2' ? { http2: true } : {}),
      ...options,
    });

  test('client and server exchange text and the right transport carries it', async () => {
    const id = newId();
    const conn = await open('/echo', id);
    expect(conn.transport.kind).toBe(expectedKind);
    await conn.send('hello über 🌍');
    expect(await conn.recv()).toBe('hello über 🌍');
    await conn.close();
    const view = await viewOf(id);
    expect(view.kind).toBe(expectedKind);
    expect(view.httpVersion).toBe(expectedVersion);
    expect(view.received).toEqual(['hello über 🌍']);
  });

  test('client sends binary (empty, small, 300 KiB) and gets the same bytes back', async () => {
    const id = newId();
    const conn = await open('/echo', id, { perMessageDeflate: false });
    const big = Buffer.alloc(300 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;
    for (const payload of [Buffer.alloc(0), Buffer.from([0, 1, 2, 255]), big]) {
      await conn.send(payload);
      const back = await conn.recv();
      expect(Buffer.isBuffer(back)).toBe(true);
      expect((back as Buffer).equals(payload)).toBe(true);
    }
    await conn.close();
    expect((await viewOf(id)).kind).toBe(expectedKind);
  });

  test('client sends a fragmented message with sendStream and the server reassembles it', async () => {
    const id = newId();
    const conn = await open('/echo', id, { perMessageDeflate: false });
    const parts = ['alpha-', 'beta-', 'gamma-', 'delta'];
    await conn.sendStream(parts, { binary: false, fragmentSize: 3 });
    expect(await conn.recv()).toBe(parts.join(''));
    const chunks = Array.from({ length: 20 }, (_, i) => Buffer.alloc(5000, i));
    await conn.sendStream(chunks, { fragmentSize: 4096 });
    expect(((await conn.recv()) as Buffer).equals(Buffer.concat(chunks))).toBe(true);
    await conn.close();
    expect((await viewOf(id)).received.length).toBe(2);
  });

  test('client pings and gets the pong with its payload', async () => {
    const id = newId();
    const conn = await open('/echo', id);
    const pongs: Buffer[] = [];
    conn.on('pong', (p) => pongs.push(p));
    const rtt = await conn.ping('are you there');
    expect(rtt).toBeGreaterThanOrEqual(0);
    expect(pongs.map(String)).toEqual(['are you there']);
    await conn.close();
  });

  test('client closes with a code and reason that the server receives', async () => {
    const id = newId();
    const conn = await open('/echo', id);
    await conn.close(4001, 'client says bye');
    expect(conn.closeStatus).toBe(4001);
    const view = await viewOf(id);
    expect(view.closeStatus).toBe(4001);
    expect(view.closeReason).toBe('client says bye');
  });

  test('server closes with a code and reason that the client receives', async () => {
    const id = newId();
    const conn = await open('/server-closes/4002', id);
    expect(await conn.recv()).toBe(EOF);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(4002);
    expect(conn.closeReason).toBe('server says bye');
    expect((await viewOf(id)).closeStatus).toBe(4002);
  });

  test('terminate(): a send made after it rejects with ConnectionClosedError and no error is reported; the server sees 1006', async () => {
    const id = newId();
    const conn = await open('/echo', id);
    const errors: Error[] = [];
    conn.on('error', (e) => errors.push(e));
    conn.terminate();
    // (Before: it resolved as if sent, and over HTTP/2 its write to the ended stream made the
    // connection report ERR_STREAM_WRITE_AFTER_END.)
    await expect(conn.send('too late')).rejects.toBeInstanceOf(ConnectionClosedError);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1006);
    expect(errors).toEqual([]);
    expect(conn.error).toBeUndefined();
    expect((await viewOf(id)).closeStatus).toBe(1006);
  });

  test('client offers subprotocols and the service mapper picks the first it serves', async () => {
    const id = newId();
    const conn = await open('/chat', id, { protocols: ['chat.v3', 'chat.v1', 'chat.v2'] });
    expect(conn.protocol).toBe('chat.v1');
    await conn.send('hi');
    expect(await conn.recv()).toBe('v1:hi');
    await conn.close();
    const view = await viewOf(id);
    expect(view.protocol).toBe('chat.v1');
    expect(view.kind).toBe(expectedKind);
  });

  test('a route that requires a subprotocol refuses a client without one (400)', async () => {
    await expect(open('/chat', newId())).rejects.toMatchObject({ status: 400 });
  });

  test('an unknown path is refused with 404', async () => {
    await expect(open('/nowhere', newId())).rejects.toMatchObject({ status: 404 });
  });

  test('permessage-deflate is negotiated and compressible messages round-trip', async () => {
    const id = newId();
    const conn = await open('/echo', id, { perMessageDeflate: { threshold: 0 } });
    expect(conn.extensions).toMatch(/^permessage-deflate/);
    const text = 'compress me '.repeat(5000);
    await conn.send(text);
    expect(await conn.recv()).toBe(text);
    const bin = Buffer.alloc(100_000, 'z');
    await conn.send(bin);
    expect(((await conn.recv()) as Buffer).equals(bin)).toBe(true);
    await conn.close();
    const view = await viewOf(id);
    expect(view.extensions).toMatch(/^permessage-deflate/);
    expect(view.kind).toBe(expectedKind);
  });

  test("the client's perMessageDeflate.concurrencyLimit sets the process-wide zlib limit (it was ignored over HTTP/2)", async () => {
    const before = zlibLimiter.limit;
    try {
      zlibLimiter.setLimit(before === 7 ? 6 : 7);
      const conn = await open('/echo', newId(), { perMessageDeflate: { concurrencyLimit: 3 } });
      expect(conn.extensions).toMatch(/^permessage-deflate/);
      expect(zlibLimiter.limit).toBe(3);
      await conn.close();
    } finally {
      zlibLimiter.setLimit(before);
    }
  });

  test('permessage-deflate declined by the client leaves no extension', async () => {
    const id = newId();
    const conn = await open('/echo', id, { perMessageDeflate: false });
    expect(conn.extensions).toBe('');
    await conn.send('plain');
    expect(await conn.recv()).toBe('plain');
    await conn.close();
    expect((await viewOf(id)).extensions).toBe('');
  });
});

describe('HTTP/2 only', () => {
  let session: ClientHttp2Session | undefined;
  afterEach(async () => {
    if (session) await closeSession(session);
    session = undefined;
  });

  test('several WebSockets share one ClientHttp2Session, interleaved, and the session outlives them', async () => {
    session = await openSession(origin);
    const ids = Array.from({ length: 5 }, newId);
    const conns = await Promise.all(ids.map((id) => connect(`${server.url}echo?id=${id}`, { tls: CLIENT_TLS, http2: session })));
    for (const conn of conns) {
      expect(conn.transport.kind).toBe('http2');
      expect((conn.transport.stream as unknown as { session: unknown }).session).toBe(session);
    }
    // Interleave: every connection sends before any reads.
    await Promise.all(conns.map((c, i) => c.send(`msg ${i}`)));
    await Promise.all(conns.map((c, i) => c.send(Buffer.alloc(20_000, i))));
    for (const [i, c] of conns.entries()) {
      expect(await c.recv()).toBe(`msg ${i}`);
      expect(((await c.recv()) as Buffer).equals(Buffer.alloc(20_000, i))).toBe(true);
    }
    // Closing one does not disturb the others or the session.
    await conns[0]!.close(1000, 'first done');
    expect(session.closed).toBe(false);
    await conns[1]!.send('still here');
    expect(await conns[1]!.recv()).toBe('still here');
    await Promise.all(conns.slice(1).map((c) => c.close()));
    expect(session.closed).toBe(false);
    const seen = await Promise.all(ids.map(viewOf));
    expect(seen.map((v) => v.kind)).toEqual(Array(5).fill('http2'));
    expect(seen[0]!.closeReason).toBe('first done');
    // And a new WebSocket still opens on it.
    const again = await connect(`${server.url}echo?id=${newId()}`, { tls: CLIENT_TLS, http2: session });
    await again.send('once more');
    expect(await again.recv()).toBe('once more');
    await again.close();
  });

  test('WebSockets opened one after another on a long-lived session leave no listener behind on it', async () => {
    session = await openSession(origin);
    const before = session.listenerCount('error');
    for (let i = 0; i < 15; i++) {
      const conn = await connect(`${server.url}echo?id=${newId()}`, { tls: CLIENT_TLS, http2: session });
      await conn.send('x');
      expect(await conn.recv()).toBe('x');
      await conn.close();
    }
    // Before: every connect() added an 'error' listener to the session for good (a
    // MaxListenersExceededWarning at the 11th, and a leak for a session that lives on).
    expect(session.listenerCount('error')).toBeLessThanOrEqual(before + 1);
  });

  test('twelve WebSockets opened at once on a new session (its SETTINGS not yet in) all open, with one wait on the session', async () => {
    // A session just made, its SETTINGS not arrived: every connect() waits for them.
    const fresh = h2connect(origin, { ca: TLS.cert });
    session = fresh;
    fresh.on('error', () => undefined);
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const opening = Promise.allSettled(Array.from({ length: 12 }, () => connect(`${server.url}echo?id=${newId()}`, { tls: CLIENT_TLS, http2: fresh })));
      // One set of listeners on the session, not one per connect() (before: 12 of each, and a
      // MaxListenersExceededWarning on the session and on its socket).
      const waiting = [fresh.listenerCount('remoteSettings'), fresh.listenerCount('close')];
      // Before: each sent its own PING, and those past Node's 10 outstanding ones failed
      // (WS_CONNECT_FAILED, "HTTP2 ping cancelled").
      const outcomes = await opening;
      expect(outcomes.filter((o) => o.status === 'rejected')).toEqual([]);
      expect(waiting).toEqual([1, 1]);
      const conns = outcomes.map((o) => (o as PromiseFulfilledResult<WebSocketConnection>).value);
      await Promise.all(conns.map(async (conn, i) => {
        await conn.send(`n${i}`);
        expect(await conn.recv()).toBe(`n${i}`);
        await conn.close();
      }));
      expect(fresh.listenerCount('remoteSettings')).toBe(0);
      expect(fresh.listenerCount('close')).toBe(0);
    } finally {
      process.off('warning', onWarning);
    }
    // (Warnings are emitted on the next tick.)
    await new Promise((resolve) => setImmediate(resolve));
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
  });

  test('an AbortSignal aborts the handshake: one aborted before, and one aborted while the server holds the CONNECT unanswered', async () => {
    // A server that advertises extended CONNECT and never answers one.
    const h2: Http2SecureServer = createSecureServer({ ...TLS, settings: { enableConnectProtocol: true } });
    const held: Array<import('node:http2').ServerHttp2Stream> = [];
    const controller = new AbortController();
    h2.on('stream', (stream) => {
      held.push(stream);
      stream.on('error', () => undefined);
      controller.abort(new Error('the user gave up'));
    });
    let sessions = 0;
    h2.on('session', () => sessions++);
    await new Promise<void>((r) => h2.listen(0, '127.0.0.1', r));
    const url = `wss://127.0.0.1:${(h2.address() as AddressInfo).port}/`;
    try {
      // (Before: the HTTP/2 path ignored the signal, and both waited for the handshake timeout.)
      const early = await connect(url, { tls: CLIENT_TLS, http2: true, signal: AbortSignal.abort(), handshakeTimeout: 4000 }).catch((e: unknown) => e);
      expect(early).toBeInstanceOf(HandshakeError);
      expect((early as HandshakeError).code).toBe('WS_CONNECT_FAILED');
      expect(sessions).toBe(0);
      const late = await connect(url, { tls: CLIENT_TLS, http2: true, signal: controller.signal, handshakeTimeout: 4000 }).catch((e: unknown) => e);
      expect(late).toBeInstanceOf(HandshakeError);
      expect((late as HandshakeError).code).toBe('WS_CONNECT_FAILED');
      expect(((late as HandshakeError).cause as Error).name).toBe('AbortError');
      expect(((late as HandshakeError).cause as Error).cause).toBe(controller.signal.reason);
      // The CONNECT stream was cancelled.
      expect(held).toHaveLength(1);
      await new Promise<void>((r) => (held[0]!.closed ? r() : held[0]!.once('close', () => r())));
      expect(held[0]!.rstCode).toBe(h2constants.NGHTTP2_CANCEL);
    } finally {
      for (const stream of held) stream.destroy();
      await new Promise<void>((r) => h2.close(() => r()));
    }
  }, 15_000);

  test('a CONNECT stream the server closes without answering (RST_STREAM NO_ERROR) fails the handshake at once, a refusal keeps its status', async () => {
    const h2: Http2SecureServer = createSecureServer({ ...TLS, settings: { enableConnectProtocol: true } });
    h2.on('stream', (stream, headers) => {
      stream.on('error', () => undefined);
      if (headers[':path'] === '/refuse') {
        stream.respond({ ':status': 403 });
        stream.end('not you');
      } else {
        stream.destroy(); // RST_STREAM(NO_ERROR): Node's client reports no error for it
      }
    });
    await new Promise<void>((r) => h2.listen(0, '127.0.0.1', r));
    const base = `wss://127.0.0.1:${(h2.address() as AddressInfo).port}`;
    try {
      // (Before: it waited for the handshake timeout and failed with WS_HANDSHAKE_TIMEOUT.)
      const dropped = await connect(`${base}/drop`, { tls: CLIENT_TLS, http2: true, handshakeTimeout: 4000 }).catch((e: unknown) => e);
      expect(dropped).toBeInstanceOf(HandshakeError);
      expect((dropped as HandshakeError).code).toBe('WS_CONNECT_FAILED');
      const refused = await connect(`${base}/refuse`, { tls: CLIENT_TLS, http2: true, handshakeTimeout: 4000 }).catch((e: unknown) => e);
      expect((refused as HandshakeError).code).toBe('WS_UNEXPECTED_RESPONSE');
      expect((refused as HandshakeError).status).toBe(403);
      expect(String((refused as HandshakeError).body)).toBe('not you');
    } finally {
      await new Promise<void>((r) => h2.close(() => r()));
    }
  });

  test('a 200 that came in time while the event loop was held past handshakeTimeout is taken (it failed with WS_HANDSHAKE_TIMEOUT)', async () => {
    const h2: Http2SecureServer = createSecureServer({ ...TLS, settings: { enableConnectProtocol: true } });
    h2.on('stream', (stream) => {
      stream.on('error', () => undefined);
      stream.respond({ ':status': 200 });
      // Once the 200 is on its way, the loop is held past the client's handshakeTimeout.
      setImmediate(() => {
        const end = Date.now() + 600;
        while (Date.now() < end);
      });
    });
    await new Promise<void>((r) => h2.listen(0, '127.0.0.1', r));
    try {
      const conn = await connect(`wss://127.0.0.1:${(h2.address() as AddressInfo).port}/`, { tls: CLIENT_TLS, http2: true, handshakeTimeout: 300 });
      expect(conn.transport.kind).toBe('http2');
      expect(conn.readyState).toBe('open');
      conn.terminate();
    } finally {
      await new Promise<void>((r) => h2.close(() => r()));
    }
  });

  test('handshakeTimeout: Infinity waits for the SETTINGS and the 200 (it failed at once)', async () => {
    const conn = await connect(`${server.url}echo?id=${newId()}`, { tls: CLIENT_TLS, http2: true, handshakeTimeout: Infinity });
    expect(conn.transport.kind).toBe('http2');
    await conn.close();
  });

  test('the session our client opens itself is closed with the WebSocket', async () => {
    const conn = await connect(`${server.url}echo?id=${newId()}`, { tls: CLIENT_TLS, http2: true });
    const own = (conn.transport.stream as unknown as { session: ClientHttp2Session }).session;
    expect(own.closed).toBe(false);
    await conn.close();
    await new Promise<void>((r) => (own.destroyed ? r() : own.once('close', () => r())));
    expect(own.destroyed).toBe(true);
  });
});

/** A handshake that must fail with HandshakeError WS_CONNECT_FAILED (a connection made instead is closed and fails the test). */
async function connectFailure(promise: Promise<WebSocketConnection>): Promise<HandshakeError> {
  const error = await promise.then(
    (conn) => {
      conn.terminate();
      throw new Error('connected, expected a HandshakeError');
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(HandshakeError);
  expect((error as HandshakeError).code).toBe('WS_CONNECT_FAILED');
  return error as HandshakeError;
}

describe('the signal over HTTP/2', () => {
  /** What an aborted handshake rejects with, over HTTP/1.1 too: WS_CONNECT_FAILED, caused by an AbortError. */
  async function aborted(promise: Promise<WebSocketConnection>): Promise<HandshakeError> {
    const error = await connectFailure(promise);
    expect((error.cause as Error).name).toBe('AbortError');
    return error;
  }

  test('aborts a CONNECT the server never answers (the stream is cancelled), and a session whose SETTINGS never come; it was ignored until the handshake timed out', async () => {
    // An HTTP/2 server that allows extended CONNECT and never answers one.
    const h2: Http2SecureServer = createSecureServer({ ...TLS, settings: { enableConnectProtocol: true } });
    const resets: Array<Promise<number>> = [];
    h2.on('stream', (stream) => resets.push(new Promise((r) => stream.on('close', () => r(stream.rstCode ?? -1)))));
    // A TLS server that selects h2 and then says nothing (no SETTINGS).
    const mute = createTlsServer({ ...TLS, ALPNProtocols: ['h2'] });
    const sockets = new Set<Duplex>();
    for (const s of [h2, mute]) s.on('secureConnection', (socket: TLSSocket) => sockets.add(socket));
    await Promise.all([h2, mute].map((s) => new Promise<void>((r) => s.listen(0, '127.0.0.1', r))));
    const url = (s: { address(): unknown }): string => `wss://127.0.0.1:${(s.address() as AddressInfo).port}/`;
    try {
      const controller = new AbortController();
      const pending = connect(url(h2), { tls: CLIENT_TLS, http2: true, handshakeTimeout: 3000, signal: controller.signal });
      for (let i = 0; i < 500 && resets.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(resets).toHaveLength(1);
      controller.abort();
      await aborted(pending);
      expect(await resets[0]).toBe(8); // RST_STREAM(CANCEL)

      const settings = new AbortController();
      const waiting = connect(url(mute), { tls: CLIENT_TLS, http2: true, handshakeTimeout: 3000, signal: settings.signal });
      for (let i = 0; i < 500 && sockets.size < 2; i++) await new Promise((r) => setTimeout(r, 10));
      settings.abort();
      await aborted(waiting);

      // Already aborted: nothing connects.
      await aborted(connect(url(h2), { tls: CLIENT_TLS, http2: true, signal: AbortSignal.abort() }));
      expect(resets).toHaveLength(1);
    } finally {
      for (const socket of sockets) socket.destroy();
      await Promise.all([h2, mute].map((s) => new Promise<void>((r) => s.close(() => r()))));
    }
  });

  test('once open, aborting does nothing', async () => {
    const controller = new AbortController();
    const conn = await connect(`${server.url}echo?id=${newId()}`, { tls: CLIENT_TLS, http2: true, signal: controller.signal });
    expect(conn.transport.kind).toBe('http2');
    controller.abort();
    await conn.send('still open');
    expect(await conn.recv()).toBe('still open');
    await conn.close();
    expect(conn.closeStatus).toBe(1000);
  });
});

describe('refusals over HTTP/2', () => {
  test('a refusal whose body runs on rejects with its status and the first 64 KiB of the body, not all of it in memory until the handshake timed out', async () => {
    const h2: Http2SecureServer = createSecureServer({ ...TLS, settings: { enableConnectProtocol: true } });
    h2.on('stream', (stream) => {
      stream.on('error', () => undefined);
      stream.respond({ ':status': 403 });
      const chunk = Buffer.alloc(256 * 1024, 'x');
      let written = 0;
      const more = (): void => {
        if (stream.destroyed || stream.closed || written >= 64 * 1024 * 1024) return;
        written += chunk.length;
        stream.write(chunk, more);
      };
      more();
    });
    await new Promise<void>((r) => h2.listen(0, '127.0.0.1', r));
    try {
      const error = await connect(`wss://127.0.0.1:${(h2.address() as AddressInfo).port}/`, { tls: CLIENT_TLS, http2: true, handshakeTimeout: 20_000 }).then(
        () => {
          throw new Error('connected, expected a HandshakeError');
        },
        (e: unknown) => e as HandshakeError,
      );
      expect(error.code).toBe('WS_UNEXPECTED_RESPONSE');
      expect(error.status).toBe(403);
      expect(error.body).toEqual(Buffer.alloc(64 * 1024, 'x'));
    } finally {
      await new Promise<void>((r) => h2.close(() => r()));
    }
  });
});

describe('client falls back to HTTP/1.1', () => {
  test('when the HTTP/2 server does not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL', async () => {
    // A user's own h2 server with allowHTTP1 and an upgrade listener, but no extended CONNECT.
    const h2: Http2SecureServer = createSecureServer({ ...TLS, allowHTTP1: true });
    const kinds: string[] = [];
    h2.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      void handleUpgrade(req, socket, head, async (conn) => {
        kinds.push(`${conn.transport.kind} ${req.httpVersion}`);
        for await (const m of conn) await conn.send(m);
      });
    });
    const sockets = new Set<Duplex>();
    h2.on('secureConnection', (socket: Duplex) => sockets.add(socket));
    const streams: string[] = [];
    h2.on('stream', (_s, headers) => streams.push(String(headers[':method'])));
    await new Promise<void>((r) => h2.listen(0, '127.0.0.1', r));
    const port = (h2.address() as AddressInfo).port;
    try {
      const conn = await connect(`wss://127.0.0.1:${port}/`, { tls: CLIENT_TLS, http2: true });
      expect(conn.transport.kind).toBe('tls');
      await conn.send('over h1');
      expect(await conn.recv()).toBe('over h1');
      await conn.close();
      expect(kinds).toEqual(['tls 1.1']);
      expect(streams).toEqual([]); // no CONNECT was attempted on the h2 session
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((r) => h2.close(() => r()));
    }
  });

  test('when the server speaks only HTTP/1.1 (an https server, no h2 in ALPN)', async () => {
    const h1 = await serve({ host: '127.0.0.1', port: 0, tls: TLS }, async (conn, req) => {
      await conn.send(`${conn.transport.kind} ${req.httpVersion}`);
      await conn.close();
    });
    try {
      const conn = await connect(h1.url, { tls: CLIENT_TLS, http2: true });
      expect(conn.transport.kind).toBe('tls');
      expect(await conn.recv()).toBe('tls 1.1');
      await conn.whenClosed;
      expect(conn.closeStatus).toBe(1000);
    } finally {
      await h1.close();
    }
  });
});

describe('cleartext (ws:) with http2: true', () => {
  // No ALPN in cleartext: the client speaks h2c with prior knowledge and falls back to HTTP/1.1
  // when the server answers the HTTP/2 preface as HTTP/1.1 (fixed bug: WS_CONNECT_FAILED).
  test("falls back to HTTP/1.1 against Node's own HTTP/1.1-only server", async () => {
    const h1 = createHttpServer((_req, res) => res.end('page'));
    const seen: string[] = [];
    h1.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      void handleUpgrade(req, socket, head, async (conn) => {
        seen.push(`${conn.transport.kind} ${req.httpVersion}`);
        await conn.send('over h1');
        await conn.close();
      });
    });
    await new Promise<void>((r) => h1.listen(0, '127.0.0.1', r));
    try {
      const conn = await connect(`ws://127.0.0.1:${(h1.address() as AddressInfo).port}/`, { http2: true });
      expect(conn.transport.kind).toBe('tcp');
      expect(await conn.recv()).toBe('over h1');
      await conn.whenClosed;
      expect(conn.closeStatus).toBe(1000);
      expect(seen).toEqual(['tcp 1.1']);
    } finally {
      h1.closeAllConnections();
      await new Promise<void>((r) => h1.close(() => r()));
    }
  });

  test('falls back to HTTP/1.1 against serve() without tls', async () => {
    const h1 = await serve({ host: '127.0.0.1', port: 0 }, async (conn, req) => {
      await conn.send(`${conn.transport.kind} ${req.httpVersion}`);
      await conn.close();
    });
    try {
      const conn = await connect(h1.url, { http2: true });
      expect(conn.transport.kind).toBe('tcp');
      expect(await conn.recv()).toBe('tcp 1.1');
      await conn.whenClosed;
      expect(conn.closeStatus).toBe(1000);
    } finally {
      await h1.close();
    }
  });

  test('speaks h2c with prior knowledge to an http2.createServer() with attachHttp2', async () => {
    const h2c: Http2Server = createHttp2Server();
    attachHttp2(h2c, async (conn, req) => {
      await conn.send(`${conn.transport.kind} ${req.httpVersion}`);
      await conn.close();
    });
    await new Promise<void>((r) => h2c.listen(0, '127.0.0.1', r));
    try {
      const conn = await connect(`ws://127.0.0.1:${(h2c.address() as AddressInfo).port}/`, { http2: true });
      expect(conn.transport.kind).toBe('http2');
      expect(await conn.recv()).toBe('http2 2.0');
      await conn.whenClosed;
      expect(conn.closeStatus).toBe(1000);
    } finally {
      await new Promise<void>((r) => h2c.close(() => r()));
    }
  });

  test('the HTTP/1.1 fallback has what is left of handshakeTimeout, not a fresh one (a server slow to break the h2c attempt gave connect() up to twice it)', async () => {
    // The h2c connection is broken 1000 ms in; the HTTP/1.1 one is answered with a valid 101 at
    // 1700 ms: 500 ms after the 1200 ms handshakeTimeout, and 500 ms before 1000 + 1200 ms (what a
    // fresh timeout for the fallback allowed), margins wide enough for a loaded machine.
    const started = Date.now();
    const timers: NodeJS.Timeout[] = [];
    const at = (ms: number, fn: () => void): void => void timers.push(setTimeout(fn, ms - (Date.now() - started)));
    const raw = createNetServer((socket) => {
      socket.on('error', () => undefined);
      let head = '';
      socket.on('data', (chunk: Buffer) => {
        if (head.includes('\r\n\r\n')) return;
        head += chunk.toString('latin1');
        if (head.startsWith('PRI * HTTP/2.0')) return at(1000, () => socket.destroy());
        const key = /^sec-websocket-key:\s*(\S+)/im.exec(head)?.[1];
        if (key === undefined) return;
        const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
        at(1700, () => socket.end(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`));
      });
    });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
    try {
      const outcome = await connect(`ws://127.0.0.1:${(raw.address() as AddressInfo).port}/`, { http2: true, handshakeTimeout: 1200, perMessageDeflate: false }).then(
        (conn) => {
          conn.terminate();
          return 'connected';
        },
        (e: unknown) => (e as HandshakeError).code,
      );
      expect(outcome).toBe('WS_HANDSHAKE_TIMEOUT');
    } finally {
      for (const timer of timers) clearTimeout(timer);
      raw.close();
    }
  });

  test('nothing listening is still WS_CONNECT_FAILED (ECONNREFUSED)', async () => {
    const h1 = createHttpServer();
    await new Promise<void>((r) => h1.listen(0, '127.0.0.1', r));
    const port = (h1.address() as AddressInfo).port;
    await new Promise<void>((r) => h1.close(() => r()));
    await expect(connect(`ws://127.0.0.1:${port}/`, { http2: true })).rejects.toMatchObject({ code: 'WS_CONNECT_FAILED', cause: { code: 'ECONNREFUSED' } });
  });
});

describe('a 200 whose negotiation the client refuses', () => {
  test('a subprotocol or an extension that was not offered, unacceptable deflate parameters, or an empty extensions header: HandshakeError with status 200 (it said 101)', async () => {
    const answers = [
      { 'sec-websocket-protocol': 'not.offered' },
      { 'sec-websocket-extensions': 'x-unknown' },
      { 'sec-websocket-extensions': 'permessage-deflate; server_max_window_bits=99' },
      // RFC 6455 §9.1: 1#extension (an empty header was taken as no extension).
      { 'sec-websocket-extensions': '' },
    ];
    let next = 0;
    const h2: Http2SecureServer = createSecureServer({ ...TLS, settings: { enableConnectProtocol: true } });
    h2.on('session', (session) => session.on('error', () => undefined));
    h2.on('stream', (stream) => {
      stream.on('error', () => undefined);
      stream.respond({ ':status': 200, ...answers[next++] });
    });
    await new Promise<void>((r) => h2.listen(0, '127.0.0.1', r));
    const url = `wss://127.0.0.1:${(h2.address() as AddressInfo).port}/`;
    try {
      const codes: string[] = [];
      for (let i = 0; i < answers.length; i++) {
        const error = await connect(url, { tls: CLIENT_TLS, http2: true, protocols: ['chat.v1'] }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(HandshakeError);
        expect((error as HandshakeError).statusLine).toBe('HTTP/2 200');
        expect((error as HandshakeError).status).toBe(200);
        codes.push((error as HandshakeError).code);
      }
      expect(codes).toEqual(['WS_BAD_PROTOCOL', 'WS_BAD_EXTENSION_RESPONSE', 'WS_BAD_EXTENSION_RESPONSE', 'WS_BAD_EXTENSION_RESPONSE']);
    } finally {
      await new Promise<void>((r) => h2.close(() => r()));
    }
  });
});

describe('a shared session that cannot open the WebSocket', () => {
  test('closed (GOAWAY), destroyed, or destroyed while its SETTINGS are awaited: HandshakeError WS_CONNECT_FAILED at once (it was Node’s own error, or the handshake timeout)', async () => {
    const failure = connectFailure;
    const closed = await openSession(origin);
    closed.close();
    expect((await failure(connect(server.url, { tls: CLIENT_TLS, http2: closed }))).message).toMatch(/GOAWAY/);
    const destroyed = await openSession(origin);
    destroyed.destroy();
    await failure(connect(server.url, { tls: CLIENT_TLS, http2: destroyed }));

    // A TLS server that selects h2 and then says nothing (no SETTINGS): the session is destroyed
    // while the client waits for them.
    const mute = createTlsServer({ ...TLS, ALPNProtocols: ['h2'] });
    const sockets = new Set<Duplex>();
    let connected!: () => void;
    const secured = new Promise<void>((r) => (connected = r));
    mute.on('secureConnection', (socket: TLSSocket) => {
      sockets.add(socket);
      socket.on('data', () => connected());
    });
    await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
    const muteOrigin = `https://127.0.0.1:${(mute.address() as AddressInfo).port}`;
    const session: ClientHttp2Session = h2connect(muteOrigin, { ca: TLS.cert });
    session.on('error', () => undefined);
    try {
      const pending = connect(`${muteOrigin.replace('https', 'wss')}/`, { tls: CLIENT_TLS, http2: session, handshakeTimeout: 20_000 });
      await secured; // the client's preface arrived: it is waiting for the server's SETTINGS
      session.destroy();
      await failure(pending);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((r) => mute.close(() => r()));
    }
  });
});

describe('request headers of the caller over HTTP/2', () => {
  test('HTTP/1.1-only ones (Connection, Keep-Alive, Upgrade, TE) are left out, Host becomes :authority; it failed every connect({ http2: true })', async () => {
    const seen: Array<{ version: string; authority: unknown; custom: unknown; connection: unknown }> = [];
    const own = await serve({ host: '127.0.0.1', port: 0, http2: true, tls: TLS }, async (conn, req) => {
      seen.push({ version: req.httpVersion, authority: req.headers[':authority'], custom: req.headers['x-custom'], connection: req.headers.connection });
      await conn.close();
    });
    try {
      const conn = await connect(own.url, {
        tls: CLIENT_TLS,
        http2: true,
        headers: { Connection: 'keep-alive', 'Keep-Alive': 'timeout=5', Upgrade: 'websocket', TE: 'gzip', Host: 'example.com', 'X-Custom': 'kept' },
      });
      expect(conn.transport.kind).toBe('http2');
      await conn.whenClosed;
      expect(seen).toEqual([{ version: '2.0', authority: 'example.com', custom: 'kept', connection: undefined }]);
    } finally {
      await own.close();
    }
  });
});
