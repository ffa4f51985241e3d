/**
 * RFC 6455 §4.1, the client's requirement 2: no more than one connection to a host in the
 * CONNECTING state; the others wait, in order, until it is open or has failed
 * (`serializeHandshakes`, default on). Over real sockets: a raw server that holds a handshake's
 * answer, and counts the connections it accepts with a probe connection of its own as a barrier
 * (loopback connections are accepted in the order their connect() calls were made), so that what
 * is checked is the order of what the server saw, never a time.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { connect as h2connect, createSecureServer as createHttp2Server, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { connect, connectHttp2, connectHybi00, HandshakeError, serve, WebSocket, type ConnectOptions, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { hostKey, hostsConnecting } from '../../src/connecting.js';
import { switching } from '../helpers/raw-server.js';
import { until } from '../helpers/wait.js';

const FIXTURES = path.join(__dirname, '../../../../test/fixtures/tls');
const TLS = { key: readFileSync(path.join(FIXTURES, 'key.pem')), cert: readFileSync(path.join(FIXTURES, 'cert.pem')) };

interface Arrival {
  socket: Socket;
  head: string;
}

interface HostServer {
  port: number;
  url(path: string): string;
  /** The request paths, in the order they came. */
  requests: string[];
  /** Resolves when the request for `path` (one whose path begins `/hold`, left unanswered) has come. */
  arrived(path: string): Promise<Arrival>;
  /** How many connections were accepted since the last call before a probe connection made now. */
  othersBefore(): Promise<number>;
  close(): Promise<void>;
}

const servers: Array<{ close(): Promise<void> }> = [];
const conns: WebSocketConnection[] = [];
afterEach(async () => {
  for (const c of conns.splice(0)) c.terminate();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/**
 * A raw server: a request whose path begins `/hold` is left for the test to answer, `/redirect?to=URL`
 * is answered 302 to URL, any other is answered 101 at once.
 */
async function hostServer(): Promise<HostServer> {
  const accepted: number[] = [];
  const requests: string[] = [];
  const arrivals = new Map<string, Arrival>();
  const waiting = new Map<string, (arrival: Arrival) => void>();
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    accepted.push(socket.remotePort ?? 0);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let acc = '';
    socket.on('data', (chunk: Buffer) => {
      if (acc.includes('\r\n\r\n')) return;
      acc += chunk.toString('latin1');
      const end = acc.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = acc.slice(0, end);
      const target = head.split(' ')[1] ?? '';
      requests.push(target);
      if (target.startsWith('/hold')) {
        const arrival = { socket, head };
        arrivals.set(target, arrival);
        waiting.get(target)?.(arrival);
      } else if (target.startsWith('/redirect')) {
        const to = new URL(target, 'http://x').searchParams.get('to') ?? '';
        socket.end(`HTTP/1.1 302 Found\r\nLocation: ${to}\r\nContent-Length: 0\r\n\r\n`);
      } else {
        socket.write(switching(head));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const host: HostServer = {
    port,
    url: (p) => `ws://127.0.0.1:${port}${p}`,
    requests,
    arrived: (p) => {
      const arrival = arrivals.get(p);
      return arrival ? Promise.resolve(arrival) : new Promise((resolve) => waiting.set(p, resolve));
    },
    async othersBefore() {
      const probe = netConnect(port, '127.0.0.1');
      await new Promise<void>((resolve) => probe.once('connect', resolve));
      const own = probe.localPort ?? -1;
      await until(() => accepted.includes(own), 'the probe to be accepted');
      probe.destroy();
      return accepted.splice(0, accepted.indexOf(own) + 1).length - 1;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  servers.push(host);
  return host;
}

const opened = (promise: Promise<WebSocketConnection>): Promise<WebSocketConnection> =>
  promise.then((conn) => {
    conns.push(conn);
    return conn;
  });

const failure = (promise: Promise<WebSocketConnection | undefined>): Promise<HandshakeError> =>
  promise.then(
    (conn) => {
      conn?.terminate();
      throw new Error('connected, expected a HandshakeError');
    },
    (error: unknown) => {
      if (!(error instanceof HandshakeError)) throw error;
      return error;
    },
  );

/** The connection, pushed for terminating, or the error thrown (no unhandled rejection if a test fails first). */
const outcome = (promise: Promise<WebSocketConnection | undefined>): Promise<WebSocketConnection | undefined | Error> =>
  promise.then(
    (conn) => {
      if (conn) conns.push(conn);
      return conn;
    },
    (error: Error) => error,
  );

const plain: ConnectOptions = { perMessageDeflate: false };

describe('one connection in CONNECTING to a host (RFC 6455 §4.1, requirement 2)', () => {
  test('a second connect() to a host makes no connection until the first is open, then opens', async () => {
    const s = await hostServer();
    // Accepted so far: none (the barrier's own count starts here).
    expect(await s.othersBefore()).toBe(0);
    const first = opened(connect(s.url('/hold'), plain));
    const second = opened(connect(s.url('/second'), plain));
    const held = await s.arrived('/hold');
    // The first's connection only: the second has not connected (it was made at once, before).
    expect(await s.othersBefore()).toBe(1);
    held.socket.write(switching(held.head));
    await first;
    await second;
    expect(s.requests).toEqual(['/hold', '/second']);
    expect(hostsConnecting()).toBe(0);
  });

  test('the first failing gives the turn to the next: a connection that ends, and a refusal at its head', async () => {
    const s = await hostServer();
    const first = failure(connect(s.url('/hold1'), plain));
    const second = failure(connect(s.url('/hold2'), plain));
    const third = opened(connect(s.url('/third'), plain));
    const held1 = await s.arrived('/hold1');
    expect(await s.othersBefore()).toBe(1);
    held1.socket.destroy();
    expect((await first).code).toBe('WS_CONNECT_FAILED');
    // A refusal whose body has not all come: the connection has failed at its head, and the
    // third connects while the second still reads the body.
    const held2 = await s.arrived('/hold2');
    held2.socket.write('HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\nnot');
    await third;
    held2.socket.end('-you!!!');
    const refused = await second;
    expect([refused.code, refused.status, refused.body?.toString()]).toEqual(['WS_UNEXPECTED_RESPONSE', 403, 'not-you!!!']);
    expect(s.requests).toEqual(['/hold1', '/hold2', '/third']);
    expect(hostsConnecting()).toBe(0);
  });

  test('a refused TCP connection (ECONNREFUSED) gives the turn to the next', async () => {
    const s = await hostServer();
    const port = s.port;
    await s.close();
    const errors = await Promise.all([failure(connect(`ws://127.0.0.1:${port}/a`, plain)), failure(connect(`ws://127.0.0.1:${port}/b`, plain))]);
    expect(errors.map((e) => [e.code, (e.cause as NodeJS.ErrnoException).code])).toEqual([
      ['WS_CONNECT_FAILED', 'ECONNREFUSED'],
      ['WS_CONNECT_FAILED', 'ECONNREFUSED'],
    ]);
    expect(hostsConnecting()).toBe(0);
  });

  test('a queued connect() aborted by its signal fails at once, connects nowhere, and leaves the others in order', async () => {
    const s = await hostServer();
    const first = opened(connect(s.url('/hold'), plain));
    const abort = new AbortController();
    const second = failure(connect(s.url('/second'), { ...plain, signal: abort.signal }));
    const third = opened(connect(s.url('/third'), plain));
    const held = await s.arrived('/hold');
    abort.abort(new Error('not now'));
    const error = await second;
    expect([error.code, (error.cause as Error).name, ((error.cause as Error).cause as Error).message]).toEqual(['WS_CONNECT_FAILED', 'AbortError', 'not now']);
    expect(await s.othersBefore()).toBe(1);
    held.socket.write(switching(held.head));
    await first;
    await third;
    expect(s.requests).toEqual(['/hold', '/third']);
    expect(hostsConnecting()).toBe(0);
  });

  test('the wait counts in handshakeTimeout: a connect() still waiting when it runs out fails with WS_HANDSHAKE_TIMEOUT, without connecting', async () => {
    const s = await hostServer();
    const first = opened(connect(s.url('/hold'), plain));
    const error = await failure(connect(s.url('/second'), { ...plain, handshakeTimeout: 50 }));
    const held = await s.arrived('/hold');
    expect(await s.othersBefore()).toBe(1);
    held.socket.write(switching(held.head));
    await first;
    expect(s.requests).toEqual(['/hold']);
    expect(hostsConnecting()).toBe(0);
    // Its message says it made no connection, and why: not a server that did not answer.
    expect([error.code, error.message]).toEqual([
      'WS_HANDSHAKE_TIMEOUT',
      `handshake timed out after 50 ms waiting for its turn: another connection to 127.0.0.1:${s.port} was still connecting (RFC 6455 §4.1, one at a time to a host; serializeHandshakes: false does not wait)`,
    ]);
  });

  test('another port is another host, and so is another name for the same address', async () => {
    const a = await hostServer();
    const b = await hostServer();
    const first = opened(connect(a.url('/hold'), plain));
    const held = await a.arrived('/hold');
    await opened(connect(b.url('/other-port'), plain));
    await opened(connect(`ws://localhost:${a.port}/other-name`, { ...plain, family: 4 }));
    held.socket.write(switching(held.head));
    await first;
    expect(a.requests).toEqual(['/hold', '/other-name']);
    expect(hostKey(new URL('WSS://Example.COM./x'), undefined)).toBe(hostKey(new URL('ws://example.com:443/y'), undefined));
    expect(hostKey(new URL('ws://[::1]/'), undefined)).toBe('::1 80');
    expect(hostKey(new URL('ws://localhost/'), '/run/a.sock')).not.toBe(hostKey(new URL('ws://localhost/'), '/run/b.sock'));
  });

  test('a URL of another scheme fails with its TypeError at once, without waiting for the host\'s turn', async () => {
    const s = await hostServer();
    const first = opened(connect(s.url('/hold'), plain));
    const held = await s.arrived('/hold');
    await expect(connect(`ftp://127.0.0.1:${s.port}/`, plain)).rejects.toThrow(new TypeError('unsupported URL scheme ftp: (use ws: or wss:)'));
    held.socket.write(switching(held.head));
    await first;
  });

  test('a URL of another scheme fails at once over HTTP/2 and hybi-00 too: no turn waited for, nothing connected', async () => {
    const s = await hostServer();
    const first = opened(connect(s.url('/hold'), plain));
    const held = await s.arrived('/hold');
    const refused = new TypeError('unsupported URL scheme ftp: (use ws: or wss:)');
    await expect(connect(`ftp://127.0.0.1:${s.port}/h2`, { ...plain, http2: true, handshakeTimeout: 2000 })).rejects.toThrow(refused);
    await expect(connect(`ftp://127.0.0.1:${s.port}/hybi`, { variant: 'hybi00', handshakeTimeout: 2000 })).rejects.toThrow(refused);
    // The first's connection only.
    expect(await s.othersBefore()).toBe(1);
    held.socket.write(switching(held.head));
    await first;
    expect(s.requests).toEqual(['/hold']);
    expect(hostsConnecting()).toBe(0);
  });

  test('serializeHandshakes: false connects at once, beside a handshake in progress', async () => {
    const s = await hostServer();
    const first = opened(connect(s.url('/hold'), { ...plain, serializeHandshakes: false }));
    const held = await s.arrived('/hold');
    await opened(connect(s.url('/second'), { ...plain, serializeHandshakes: false }));
    // And a connect() that does serialize is not held up by one that did not take a turn.
    await opened(connect(s.url('/third'), plain));
    held.socket.write(switching(held.head));
    await first;
    expect(s.requests).toEqual(['/hold', '/second', '/third']);
  });

  test('serializeHandshakes must be a boolean', async () => {
    await expect(connect('ws://127.0.0.1:1/', { serializeHandshakes: 'false' as unknown as boolean })).rejects.toThrow(
      new TypeError("connect(): serializeHandshakes must be true or false, not \"false\""),
    );
    expect(() => new WebSocket('ws://127.0.0.1:1/', { serializeHandshakes: 0 as unknown as boolean })).toThrow(TypeError);
  });

  test('a followed redirect gives back the first host\'s turn at the 3xx, and takes the next host\'s', async () => {
    const a = await hostServer();
    const b = await hostServer();
    const blocker = opened(connect(b.url('/hold-b'), plain));
    const heldB = await b.arrived('/hold-b');
    const redirected = opened(connect(a.url(`/redirect?to=${encodeURIComponent(b.url('/after-redirect'))}`), { ...plain, followRedirects: true }));
    // The redirected one is waiting for b's turn, not a's: this one to a connects at once.
    await until(() => a.requests.length === 1, 'the redirect to be asked for');
    await opened(connect(a.url('/a-again'), plain));
    expect(await b.othersBefore()).toBe(1);
    heldB.socket.write(switching(heldB.head));
    await blocker;
    await redirected;
    expect([a.requests.length, a.requests[1], b.requests]).toEqual([2, '/a-again', ['/hold-b', '/after-redirect']]);
    expect(hostsConnecting()).toBe(0);
  });

  test('the WebSocket class waits too: its second open comes after the first', async () => {
    const s = await hostServer();
    const events: string[] = [];
    const first = new WebSocket(s.url('/hold'), { perMessageDeflate: false });
    const second = new WebSocket(s.url('/second'), { perMessageDeflate: false });
    const opens = [first, second].map((ws, i) => new Promise<void>((resolve) => ws.addEventListener('open', () => resolve(void events.push(`open ${i + 1}`)))));
    const held = await s.arrived('/hold');
    expect(await s.othersBefore()).toBe(1);
    held.socket.write(switching(held.head));
    await Promise.all(opens);
    expect([events, s.requests]).toEqual([
      ['open 1', 'open 2'],
      ['/hold', '/second'],
    ]);
    first.close();
    second.close();
  });

  test('hybi-00 connects wait their turn too', async () => {
    const s = await hostServer();
    const first = failure(connect(s.url('/hold1'), { variant: 'hybi00' }));
    const second = failure(connect(s.url('/hold2'), { variant: 'hybi00' }));
    const held = await s.arrived('/hold1');
    expect(await s.othersBefore()).toBe(1);
    held.socket.destroy();
    expect((await first).code).toBe('WS_CONNECT_FAILED');
    (await s.arrived('/hold2')).socket.destroy();
    await second;
    expect(s.requests).toEqual(['/hold1', '/hold2']);
    expect(hostsConnecting()).toBe(0);
  });

  test('hybi-00: a refusal gives the turn to the next at its head, and connectHybi00() called directly waits its turn too', async () => {
    const s = await hostServer();
    // (The others' deadline is short of the refusal's: a turn held through its body fails them.)
    const first = failure(connect(s.url('/hold1'), { variant: 'hybi00', handshakeTimeout: 20_000 }));
    const held1 = await s.arrived('/hold1');
    const second = failure(connectHybi00(new URL(s.url('/hold2')), { handshakeTimeout: 3000 }));
    const third = failure(connectHybi00(new URL(s.url('/hold3')), { handshakeTimeout: 3000 }));
    // connectHybi00() waits for the first, which is still connecting.
    expect(await s.othersBefore()).toBe(1);
    // A refusal whose body has not all come (no Content-Length: it ends with the connection).
    held1.socket.write('HTTP/1.1 403 Forbidden\r\n\r\nnot');
    const held2 = await Promise.race([s.arrived('/hold2'), second]);
    expect(held2).not.toBeInstanceOf(Error);
    expect(await s.othersBefore()).toBe(1);
    (held2 as Arrival).socket.destroy();
    expect((await second).code).toBe('WS_CONNECT_FAILED');
    (await s.arrived('/hold3')).socket.destroy();
    await third;
    held1.socket.end('-you');
    const refused = await first;
    expect([refused.code, refused.status, refused.body?.toString()]).toEqual(['WS_UNEXPECTED_RESPONSE', 403, 'not-you']);
    expect(s.requests).toEqual(['/hold1', '/hold2', '/hold3']);
    expect(hostsConnecting()).toBe(0);
  });
});

describe('over HTTP/2', () => {
  async function h2Server(held: Promise<void>): Promise<{ server: WebSocketServer; url(path: string): string; seen: string[]; accepted(): number }> {
    const seen: string[] = [];
    let connections = 0;
    const server = await serve(
      {
        port: 0,
        host: '127.0.0.1',
        tls: TLS,
        http2: true,
        perMessageDeflate: false,
        beforeAccept: async (req) => {
          seen.push(req.url ?? '');
          if (req.url === '/hold') await held;
          return undefined;
        },
      },
      async (conn) => {
        for await (const m of conn) await conn.send(m);
      },
    );
    server.httpServer.on('connection', () => void connections++);
    servers.push(server);
    return { server, url: (p) => `wss://127.0.0.1:${new URL(server.url).port}${p}`, seen, accepted: () => connections };
  }

  test('a refusal over a session of our own gives the turn to the next at its head: reading its body does not hold it', async () => {
    const seen: string[] = [];
    const refusals: ServerHttp2Stream[] = [];
    const server = createHttp2Server({ ...TLS, settings: { enableConnectProtocol: true } });
    const sessions = new Set<ServerHttp2Session>();
    server.on('session', (session) => {
      sessions.add(session);
      session.on('error', () => undefined);
    });
    server.on('stream', (stream, headers) => {
      const p = String(headers[':path']);
      seen.push(p);
      stream.on('error', () => undefined);
      if (p.startsWith('/refuse')) {
        // The head and the start of the body; the rest when the test says.
        stream.respond({ ':status': 403 });
        stream.write('not');
        refusals.push(stream);
      } else {
        stream.respond({ ':status': 200 });
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push({
      close: () =>
        new Promise<void>((resolve) => {
          for (const session of sessions) session.destroy();
          server.close(() => resolve());
        }),
    });
    const url = (p: string): string => `wss://127.0.0.1:${(server.address() as AddressInfo).port}${p}`;
    const tls = { ca: TLS.cert };
    // (The next ones' deadline is short of the refusals': a turn held through the body fails them.)
    const first = failure(connect(url('/refuse-1'), { ...plain, tls, http2: true, handshakeTimeout: 20_000 }));
    const second = failure(connectHttp2(new URL(url('/refuse-2')), { ...plain, tls, handshakeTimeout: 20_000 }));
    const third = opened(connect(url('/third'), { ...plain, tls, http2: true, handshakeTimeout: 3000 }));
    expect((await third).transport.kind).toBe('http2');
    expect(seen).toEqual(['/refuse-1', '/refuse-2', '/third']);
    for (const stream of refusals) stream.end('-you');
    const errors = await Promise.all([first, second]);
    expect(errors.map((e) => [e.code, e.status, e.body?.toString()])).toEqual([
      ['WS_UNEXPECTED_RESPONSE', 403, 'not-you'],
      ['WS_UNEXPECTED_RESPONSE', 403, 'not-you'],
    ]);
    expect(hostsConnecting()).toBe(0);
  });

  test('a stream on a shared session is no new connection and does not wait; a session of our own does', async () => {
    let release!: () => void;
    const s = await h2Server(new Promise<void>((resolve) => (release = resolve)));
    const tls = { ca: TLS.cert };
    const first = opened(connect(s.url('/hold'), { ...plain, tls }));
    await until(() => s.seen.length === 1, 'the first handshake to reach beforeAccept');
    const session = h2connect(`https://127.0.0.1:${new URL(s.server.url).port}`, { ca: TLS.cert });
    session.on('error', () => undefined);
    try {
      // (Settled outcomes: a rejection is looked at only at the end.)
      const own = outcome(connect(s.url('/own-session'), { ...plain, tls, http2: true }));
      const own2 = outcome(connectHttp2(new URL(s.url('/own-session-2')), { ...plain, tls }));
      // Opened on the shared session while the first is held (it would wait for it, else).
      const shared = await opened(connect(s.url('/shared'), { ...plain, tls, http2: session }));
      expect(shared.transport.kind).toBe('http2');
      // The first's connection and the caller's session: the own sessions have not connected.
      expect(s.accepted()).toBe(2);
      release();
      await first;
      const kind = (o: WebSocketConnection | undefined | Error): string => (o instanceof Error ? o.message : (o?.transport.kind ?? 'no connection'));
      expect([kind(await own), kind(await own2)]).toEqual(['http2', 'http2']);
      expect(s.seen).toEqual(['/hold', '/shared', '/own-session', '/own-session-2']);
      expect(hostsConnecting()).toBe(0);
    } finally {
      session.destroy();
    }
  });
});
