/**
 * Our hybi-00 client against our server over real sockets: the same connection API on both sides,
 * routing (plain handler, service mapper by path and Sec-WebSocket-Protocol), the before-accept
 * hook, UTF-8 text both ways, the message size limit, the closing handshake in both directions,
 * and the typed errors for what hybi-00 cannot do.
 */
import { lookup as dnsLookup } from 'node:dns';
import type { IncomingMessage } from 'node:http';
import {
  connect,
  type CloseEvent,
  EOF,
  HandshakeError,
  serve,
  serviceMapper,
  UnsupportedError,
  WebSocket,
  WebSocketStream,
  type ConnectOptions,
  type ServeOptions,
  type UpgradeTarget,
  type WebSocketConnection,
  type WebSocketServer,
} from '../../src/index.js';
import { rawServer } from '../helpers/raw-server.js';
import { until } from '../helpers/wait.js';

const servers: WebSocketServer[] = [];
const clients: WebSocketConnection[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.terminate();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start<State = unknown>(target: UpgradeTarget<State>, options: ServeOptions<State> = {}): Promise<WebSocketServer> {
  const server = await serve<State>(options, target);
  servers.push(server as WebSocketServer);
  return server as WebSocketServer;
}

async function open(url: string | URL, options: ConnectOptions = {}): Promise<WebSocketConnection> {
  const conn = await connect(url, { variant: 'hybi00', ...options });
  clients.push(conn);
  return conn;
}

async function recvText(conn: WebSocketConnection): Promise<string> {
  const m = await conn.recv();
  if (m === EOF) throw new Error(`closed: ${conn.closeStatus} ${conn.closeReason}`);
  expect(typeof m).toBe('string');
  return m as string;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
}

async function handshakeStatus(url: string | URL, options: ConnectOptions = {}): Promise<number> {
  const error = await rejection(open(url, options));
  expect(error).toBeInstanceOf(HandshakeError);
  return (error as HandshakeError).status;
}

/** Resolves with the server-side connection of the next accepted upgrade. */
function nextServerConn(server: WebSocketServer): Promise<WebSocketConnection> {
  const known = new Set(server.connections);
  return new Promise((resolve) => {
    const check = (): void => {
      const fresh = [...server.connections].find((c) => !known.has(c));
      if (fresh) resolve(fresh);
      else setImmediate(check);
    };
    check();
  });
}

const echo = async (conn: WebSocketConnection): Promise<void> => {
  for await (const m of conn) await conn.send(m).catch(() => undefined);
};

const TEXTS = ['', 'plain ascii', 'héllo wörld', '日本語のテキスト', 'astral 😀🎉 𝄞', 'nul \u0000 inside', '\uFEFF bom and \u2028 separators'];

describe('connection API on hybi-00', () => {
  test('both sides report variant hybi00 and what the variant supports; an RFC 6455 connection differs', async () => {
    const server = await start(echo);
    const serverSide = nextServerConn(server);
    const conn = await open(server.url);
    const peer = await serverSide;
    for (const c of [conn, peer]) {
      expect(c.variant).toBe('hybi00');
      expect(c.supportsFragmentation).toBe(false);
      expect(c.supportsPayloadType('text')).toBe(true);
      expect(c.supportsPayloadType('binary')).toBe(false);
      expect(c.signalsStatusOnClose).toBe(false);
    }
    const modern = await connect(server.url);
    clients.push(modern);
    expect(modern.variant).toBe('rfc6455');
    expect(modern.supportsFragmentation).toBe(true);
    expect(modern.supportsPayloadType('binary')).toBe(true);
    expect(modern.signalsStatusOnClose).toBe(true);
  });

  test('client and server exchange UTF-8 text both ways', async () => {
    const server = await start(echo);
    const conn = await open(new URL('/echo?q=1', server.url));
    for (const text of TEXTS) {
      await conn.send(text);
      expect(await recvText(conn)).toBe(text);
    }
  });

  test('server sends first, and many messages keep their order', async () => {
    const server = await start(async (conn) => {
      for (let i = 0; i < 200; i++) await conn.send(`n${i} ✓`);
    });
    const conn = await open(server.url);
    const got: string[] = [];
    for (let i = 0; i < 200; i++) got.push(await recvText(conn));
    expect(got).toEqual(Array.from({ length: 200 }, (_, i) => `n${i} ✓`));
  });

  test('client sends binary, streams and pings: rejected with typed errors, and the connection still works', async () => {
    const server = await start(echo);
    const conn = await open(server.url);
    const binary = await rejection(conn.send(Buffer.from('bytes')));
    expect(binary).toBeInstanceOf(UnsupportedError);
    expect((binary as UnsupportedError).code).toBe('WS_HYBI00_TEXT_ONLY');
    const forced = await rejection(conn.send('text as binary', { binary: true }));
    expect((forced as UnsupportedError).code).toBe('WS_HYBI00_TEXT_ONLY');
    // Bytes marked as text are text: sent (once checked), and echoed as text.
    await conn.send(Buffer.from('bytes as text ✓'), { binary: false });
    expect(await recvText(conn)).toBe('bytes as text ✓');
    const notUtf8 = await rejection(conn.send(Buffer.of(0x61, 0xff), { binary: false }));
    expect(notUtf8).toBeInstanceOf(TypeError);
    const stream = await rejection(conn.sendStream(['a', 'b']));
    expect(stream).toBeInstanceOf(UnsupportedError);
    expect((stream as UnsupportedError).code).toBe('WS_HYBI00_NO_FRAGMENTS');
    const ping = await rejection(conn.ping());
    expect(ping).toBeInstanceOf(UnsupportedError);
    expect((ping as UnsupportedError).code).toBe('WS_HYBI00_NO_PING');
    await conn.send('still open');
    expect(await recvText(conn)).toBe('still open');
  });

  test('recvStream() rejects with UnsupportedError (WS_UNSUPPORTED) whether or not messages are queued, before and after the close, and the messages stay for recv() (with one queued it resolved with a stream)', async () => {
    const server = await start(async (conn) => {
      const go = await conn.recv();
      await conn.send(`first after ${String(go)}`);
      await conn.send('second');
      await conn.close();
    });
    const conn = await open(server.url);
    // Nothing queued: the next message would have to be streamed.
    const waiting = await rejection(conn.recvStream());
    expect(waiting).toBeInstanceOf(UnsupportedError);
    expect((waiting as UnsupportedError).code).toBe('WS_UNSUPPORTED');
    await conn.send('go');
    // The closing frame comes after both messages: once closed, both are queued.
    await conn.whenClosed;
    const queued = await rejection(conn.recvStream());
    expect((queued as UnsupportedError).code).toBe('WS_UNSUPPORTED');
    expect(await recvText(conn)).toBe('first after go');
    expect(await recvText(conn)).toBe('second');
    expect((await rejection(conn.recvStream()) as UnsupportedError).code).toBe('WS_UNSUPPORTED');
    expect(await conn.recv()).toBe(EOF);
  });

  test('server handler sending binary or pinging gets the same typed errors', async () => {
    const codes: string[] = [];
    const server = await start(async (conn) => {
      for (const attempt of [() => conn.send(new Uint8Array([1, 2])), () => conn.ping('x'), () => conn.sendStream([Buffer.from('x')])]) {
        const error = await rejection(attempt());
        codes.push(error instanceof UnsupportedError ? error.code : String(error));
      }
      await conn.send(codes.join(','));
    });
    const conn = await open(server.url);
    expect(await recvText(conn)).toBe('WS_HYBI00_TEXT_ONLY,WS_HYBI00_NO_PING,WS_HYBI00_NO_FRAGMENTS');
  });
});

describe('the WebSocket class over hybi-00', () => {
  test('send() of binary data throws UnsupportedError WS_HYBI00_TEXT_ONLY (it was dropped without a word), and the socket stays open', async () => {
    const got: string[] = [];
    const server = await start(async (conn) => {
      for await (const m of conn) got.push(String(m));
    });
    const ws = new WebSocket(`${server.url}w`, { variant: 'hybi00' });
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    const closed = new Promise<CloseEvent>((resolve) => (ws.onclose = resolve));
    ws.send('before');
    for (const data of [new Uint8Array([1, 2]), new ArrayBuffer(3), new DataView(new ArrayBuffer(1)), new Blob(['blob'])]) {
      let thrown: unknown;
      try {
        ws.send(data);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(UnsupportedError);
      expect((thrown as UnsupportedError).code).toBe('WS_HYBI00_TEXT_ONLY');
    }
    expect(ws.readyState).toBe(WebSocket.OPEN);
    ws.send('after');
    ws.close();
    expect((await closed).code).toBe(1005);
    expect(got).toEqual(['before', 'after']);
  });
});

describe('the WebSocketStream class over hybi-00', () => {
  test('an unread readable holds back a server flooding empty messages (each counted 0 bytes, they were read and queued without end); all arrive once read', async () => {
    const COUNT = 100_000;
    const server = await start(async (conn) => {
      await conn.recv();
      for (let i = 0; i < COUNT; i++) void conn.send('').catch(() => undefined);
      void conn.send('last').catch(() => undefined);
    });
    const wss = new WebSocketStream(`${server.url}s`, { variant: 'hybi00', readHighWaterMark: 64 * 1024 });
    const { readable, writable } = await wss.opened;
    const conn = wss.connection!;
    let delivered = 0;
    conn.on('message', () => void delivered++);
    const writer = writable.getWriter();
    await writer.write('go');
    // Either the readable's queue fills and the connection pauses, or every message got in.
    await until(() => conn.isPaused || delivered > COUNT, 'a pause or the whole flood');
    expect(conn.isPaused).toBe(true);
    expect(delivered).toBeLessThan(COUNT);
    let empty = 0;
    for await (const message of readable) {
      if (message !== '') {
        expect(message).toBe('last');
        break;
      }
      empty++;
    }
    expect(empty).toBe(COUNT);
    wss.close();
    expect((await wss.closed).closeCode).toBe(1005);
  });
});

describe('timers', () => {
  test('server keepaliveInterval does not ping hybi-00 connections (no ping exists), which stay open', async () => {
    const server = await start(
      async (conn) => {
        // Outlive a few keepalive rounds, then talk.
        await new Promise((resolve) => setTimeout(resolve, 1200));
        await conn.send('still here');
        await echo(conn);
      },
      { keepaliveInterval: 250 },
    );
    const conn = await open(server.url);
    expect(await recvText(conn)).toBe('still here');
    await conn.send('and echoing');
    expect(await recvText(conn)).toBe('and echoing');
    expect(conn.closed).toBe(false);
  });

  test('server idleTimeout closes an idle hybi-00 connection with a closing frame (the client sees 1005)', async () => {
    const server = await start(echo, { idleTimeout: 500 });
    const serverSide = nextServerConn(server);
    const conn = await open(server.url);
    const peer = await serverSide;
    expect(await conn.recv()).toBe(EOF);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1005);
    await peer.whenClosed;
    expect(peer.closed).toBe(true);
  });
});

describe('timeouts over what setTimeout takes', () => {
  test('handshakeTimeout: Infinity (and closeTimeout: Infinity) wait: the connect failed at once, "timed out"', async () => {
    const server = await start(echo, { closeTimeout: Infinity });
    const conn = await open(server.url, { handshakeTimeout: Infinity, closeTimeout: Infinity });
    await conn.send('here');
    expect(await recvText(conn)).toBe('here');
    await conn.close();
    expect(conn.closeStatus).toBe(1005);
  });

  test('handshakeTimeout bounds the connect and the answer together, as over RFC 6455: a slow lookup then a slow answer, each shorter than it, fail (each had a whole one)', async () => {
    // (Margins: the answer comes 400 ms after the one deadline, and 400 ms before the second
    // lookup-then-answer deadlines gave.)
    const handshakeTimeout = 1200;
    let started = 0;
    let asked = false;
    // The server answers once the client's whole handshakeTimeout has run out.
    const server = await start(echo, {
      beforeAccept: async () => {
        asked = true;
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, started + handshakeTimeout + 400 - performance.now())));
        return undefined;
      },
    });
    // The lookup takes most of handshakeTimeout, but not all of it.
    const lookup = ((_host: string, options: object, callback: (...args: unknown[]) => void): void => {
      setTimeout(() => dnsLookup('127.0.0.1', options, callback as never), (handshakeTimeout * 2) / 3);
    }) as NonNullable<ConnectOptions['lookup']>;
    started = performance.now();
    const error = await rejection(open(`ws://hybi00.test:${server.port}/`, { handshakeTimeout, lookup }));
    expect(asked).toBe(true);
    expect(error).toBeInstanceOf(HandshakeError);
    expect((error as HandshakeError).code).toBe('WS_HANDSHAKE_TIMEOUT');
    // The whole handshakeTimeout, as the RFC 6455 client says (it said only "handshake timed out").
    expect((error as HandshakeError).message).toBe(`handshake timed out after ${handshakeTimeout} ms`);
  });

  test('a 101 and its answer that came in time while the event loop was held past handshakeTimeout are taken, as over RFC 6455 (it failed with WS_HANDSHAKE_TIMEOUT)', async () => {
    const server = await start(async (conn) => {
      // The server's 101 is written: the loop is held past the client's handshakeTimeout with it unread.
      const end = Date.now() + 400;
      while (Date.now() < end);
      await echo(conn);
    });
    const conn = await open(server.url, { handshakeTimeout: 200 });
    await conn.send('in time');
    expect(await recvText(conn)).toBe('in time');
  });
});

describe('closing handshake', () => {
  test('client closes: both sides see 1005 (no status on the wire) and the client gets EOF', async () => {
    const server = await start(echo);
    const serverSide = nextServerConn(server);
    const conn = await open(server.url);
    const peer = await serverSide;
    await conn.send('before close');
    expect(await recvText(conn)).toBe('before close');
    await conn.close(4000, 'ignored by hybi-00');
    expect(conn.closed).toBe(true);
    expect(conn.closeStatus).toBe(1005);
    expect(await conn.recv()).toBe(EOF);
    await peer.whenClosed;
    expect(peer.closeStatus).toBe(1005);
  });

  test('server closes: the client answers, reports 1005, and sends after close reject', async () => {
    const server = await start(async (conn) => {
      await conn.send('bye soon');
      await conn.close();
    });
    const conn = await open(server.url);
    expect(await recvText(conn)).toBe('bye soon');
    expect(await conn.recv()).toBe(EOF);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1005);
    await expect(conn.send('too late')).rejects.toMatchObject({ code: expect.any(String) });
  });

  test('serve().close() closes hybi-00 connections too', async () => {
    const server = await start(echo);
    const conn = await open(server.url);
    await server.close();
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1005);
  });
});

describe('message size limit', () => {
  const LIMIT = 64 * 1024;

  test('server echoes a message of exactly maxMessageSize bytes (multi-byte UTF-8 counted in bytes)', async () => {
    const server = await start(echo, { maxMessageSize: LIMIT });
    const conn = await open(server.url, { maxMessageSize: LIMIT });
    const text = 'é'.repeat(LIMIT / 2); // 2 bytes each
    expect(Buffer.byteLength(text)).toBe(LIMIT);
    await conn.send(text);
    expect(await recvText(conn)).toBe(text);
  });

  test('server closes the connection on a message one byte over maxMessageSize', async () => {
    const server = await start(echo, { maxMessageSize: LIMIT });
    const serverSide = nextServerConn(server);
    const conn = await open(server.url);
    const peer = await serverSide;
    await conn.send('x'.repeat(LIMIT + 1)).catch(() => undefined);
    expect(await conn.recv()).toBe(EOF);
    await conn.whenClosed;
    await peer.whenClosed;
    expect(peer.closeStatus).toBe(1009);
    expect(peer.error?.name).toBe('MessageTooBigError');
    // The server's closing frame has no status: the client can only say 1005 (or 1006).
    expect([1005, 1006]).toContain(conn.closeStatus);
  });

  test('client closes the connection on a message over its own maxMessageSize', async () => {
    const server = await start(async (conn) => {
      await conn.send('y'.repeat(LIMIT + 10)).catch(() => undefined);
      await conn.whenClosed;
    });
    const conn = await open(server.url, { maxMessageSize: LIMIT });
    expect(await conn.recv()).toBe(EOF);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1009);
    expect(conn.error?.name).toBe('MessageTooBigError');
  });

  test('a 4 MiB message crosses both ways under the default limit', async () => {
    const server = await start(echo);
    const conn = await open(server.url);
    const text = 'abcdefgh✓'.repeat((4 * 1024 * 1024) / 11);
    await conn.send(text);
    expect(await recvText(conn)).toBe(text);
  });
});

describe('routing and negotiation', () => {
  test('plain handler: the server picks the subprotocol offered in Sec-WebSocket-Protocol', async () => {
    const server = await start((conn, _req, { protocol }) => void conn.send(`proto=${protocol}`), { protocols: ['chat'] });
    const conn = await open(server.url, { protocols: 'chat' });
    expect(conn.protocol).toBe('chat');
    expect(await recvText(conn)).toBe('proto=chat');
    // Several offers travel comma-joined in the one header; the server picks from the list.
    const several = await open(server.url, { protocols: ['superchat', 'chat'] });
    expect(several.protocol).toBe('chat');
    expect(await recvText(several)).toBe('proto=chat');
    const none = await open(server.url);
    expect(none.protocol).toBe('');
    expect(await recvText(none)).toBe('proto=');
  });

  test('subprotocols with a comma, given twice, or that are not tokens are a TypeError before anything is sent, as over RFC 6455 (`[\'a,b\']` was sent as a list of two, and the server\'s choice of a failed the handshake with WS_BAD_PROTOCOL)', async () => {
    let requests = 0;
    const server = await start((conn, _req, { protocol }) => void conn.send(`proto=${protocol}`), {
      protocols: ['a', 'b'],
      beforeAccept: () => void requests++,
    });
    for (const protocols of [['a,b'], ['a', 'a'], 'a b', ['b', 'chat/1']]) {
      const error = await rejection(open(server.url, { protocols }));
      expect([protocols, (error as Error).name]).toEqual([protocols, 'TypeError']);
    }
    expect(requests).toBe(0);
    const conn = await open(server.url, { protocols: ['b', 'a'] });
    expect(conn.protocol).toBe('b');
    expect(await recvText(conn)).toBe('proto=b');
  });

  test('a Host in headers replaces the URL\'s, as over RFC 6455: one Host line, and the location is checked against it', async () => {
    let seen: IncomingMessage | undefined;
    const server = await start(echo, {
      beforeAccept: (req) => {
        seen = req;
      },
    });
    const conn = await open(`${server.url}vhost?x=1`, { headers: { Host: 'chat.example:80', 'X-Extra': 'kept' } });
    expect(seen!.rawHeaders.filter((_, i) => i % 2 === 0 && seen!.rawHeaders[i]!.toLowerCase() === 'host')).toHaveLength(1);
    expect(seen!.headers.host).toBe('chat.example:80');
    expect(seen!.headers['x-extra']).toBe('kept');
    // The server leaves the default port out of the location; the client expects it so.
    expect(conn.headers['sec-websocket-location']).toBe('ws://chat.example/vhost?x=1');
    await conn.send('via vhost');
    expect(await recvText(conn)).toBe('via vhost');
  });

  test('service mapper routes by path, params and subprotocol; unknown path 404, unknown protocol 400', async () => {
    const mapper = serviceMapper([
      { path: '/rooms/(?<room>\\w+)', handler: (conn, _req, { params }) => void conn.send(`room ${params.room}`) },
      {
        path: '/test',
        protocols: { subprotocol: (conn) => void conn.send('This is the subprotocol handler') },
        handler: (conn) => void conn.send('no subprotocol'),
      },
    ]);
    const server = await start(mapper);
    const room = await open(new URL('/rooms/lobby?x=y', server.url));
    expect(await recvText(room)).toBe('room lobby');
    expect(room.path).toBe('/rooms/lobby');
    const sub = await open(new URL('/test', server.url), { protocols: 'subprotocol' });
    expect(sub.protocol).toBe('subprotocol');
    expect(await recvText(sub)).toBe('This is the subprotocol handler');
    const plain = await open(new URL('/test', server.url));
    expect(await recvText(plain)).toBe('no subprotocol');
    expect(await handshakeStatus(new URL('/nowhere', server.url))).toBe(404);
    expect(await handshakeStatus(new URL('/test', server.url), { protocols: 'other' })).toBe(400);
  });

  test('before-accept hook sees the hybi-00 request, passes state and headers, and can refuse with its status', async () => {
    const seen: Array<{ path: string; protocol: string; origin: string | undefined }> = [];
    const server = await start<{ user: string }>(
      (conn, _req, { state }) => void conn.send(`user ${state.user}`),
      {
        protocols: ['chat'],
        beforeAccept(req, info) {
          seen.push({ path: info.path, protocol: info.protocol, origin: req.headers.origin });
          if (req.headers.authorization !== 'Bearer ok') {
            return { reject: { status: 401, headers: { 'WWW-Authenticate': 'Bearer' }, body: 'who are you?' } };
          }
          return { state: { user: 'alice' }, headers: { 'X-Hook': 'ran' } };
        },
      },
    );
    const conn = await open(new URL('/private', server.url), {
      protocols: ['chat'],
      origin: 'http://example.com',
      headers: { Authorization: 'Bearer ok' },
    });
    expect(await recvText(conn)).toBe('user alice');
    expect(conn.headers['x-hook']).toBe('ran');
    expect(seen[0]).toEqual({ path: '/private', protocol: 'chat', origin: 'http://example.com' });

    const refused = await rejection(open(new URL('/private', server.url)));
    expect(refused).toBeInstanceOf(HandshakeError);
    expect((refused as HandshakeError).status).toBe(401);
    expect((refused as HandshakeError).headers?.['www-authenticate']).toBe('Bearer');
    // The hook's body is sent as given (as on the RFC 6455 path), before the connection closes.
    expect((refused as HandshakeError).body?.toString()).toBe('who are you?');
    expect(server.connections.size).toBe(1);
  });

  test("another server's refusal: its whole body (not its first 16 bytes), a short one on a connection kept open at once (it waited for handshakeTimeout), an unfinished one at the timeout", async () => {
    const long = 'you need a valid token for this endpoint';
    const refusing = await rawServer((head, socket) => {
      // Kept open (keep-alive), as a server may: the Content-Length says where the body ends.
      if (head.startsWith('GET /short ')) socket.write('HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno');
      else if (head.startsWith('GET /unfinished ')) socket.write('HTTP/1.1 429 Too Many Requests\r\nContent-Length: 100\r\n\r\nslow');
      else socket.end(`HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\n\r\n${long}`);
    });
    try {
      const short = await rejection(open(new URL('/short', refusing.url), { handshakeTimeout: 5000 }));
      expect(short).toBeInstanceOf(HandshakeError);
      expect((short as HandshakeError).code).toBe('WS_UNEXPECTED_RESPONSE');
      expect((short as HandshakeError).status).toBe(403);
      expect((short as HandshakeError).body?.toString()).toBe('no');
      const whole = await rejection(open(new URL('/long', refusing.url)));
      expect((whole as HandshakeError).status).toBe(401);
      expect((whole as HandshakeError).body?.toString()).toBe(long);
      // A body still unfinished at handshakeTimeout: the refusal, with what came of it.
      const unfinished = await rejection(open(new URL('/unfinished', refusing.url), { handshakeTimeout: 200 }));
      expect((unfinished as HandshakeError).status).toBe(429);
      expect((unfinished as HandshakeError).body?.toString()).toBe('slow');
    } finally {
      await refusing.close();
    }
  });

  test('a response header continued by obs-fold (a line end then SP or HTAB) is read whole, the fold as a space (RFC 9112 §5.2; the continuation was dropped)', async () => {
    const refusing = await rawServer((_head, socket) => {
      socket.end('HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate:\r\n Bearer\r\nX-Note: one\r\n\t two\r\nContent-Length: 2\r\n\r\nno');
    });
    try {
      const refused = (await rejection(open(refusing.url))) as HandshakeError;
      expect([refused.status, refused.headers?.['www-authenticate'], refused.headers?.['x-note'], refused.body?.toString()]).toEqual([401, 'Bearer', 'one two', 'no']);
    } finally {
      await refusing.close();
    }
  });

  test('a response head over maxHeaderSize fails with status 0 and WS_RESPONSE_TOO_LARGE, as over RFC 6455 (it was 431 WS_HEAD_TOO_LARGE, a status the server never sent)', async () => {
    const verbose = await rawServer((_head, socket) => {
      socket.end(`HTTP/1.1 101 WebSocket Protocol Handshake\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nX-Padding: ${'x'.repeat(2000)}\r\n\r\n`);
    });
    try {
      const hybi00 = (await rejection(open(verbose.url, { maxHeaderSize: 1024 }))) as HandshakeError;
      const rfc6455 = (await rejection(connect(verbose.url, { maxHeaderSize: 1024 }))) as HandshakeError;
      expect(hybi00).toBeInstanceOf(HandshakeError);
      expect([hybi00.status, hybi00.code]).toEqual([0, 'WS_RESPONSE_TOO_LARGE']);
      expect([hybi00.status, hybi00.code]).toEqual([rfc6455.status, rfc6455.code]);
    } finally {
      await verbose.close();
    }
  });

  test('origin allow-list: an allowed Origin is echoed in Sec-WebSocket-Origin, another gets 403', async () => {
    const server = await start(echo, { origins: ['http://good.example'] });
    const conn = await open(server.url, { origin: 'http://good.example' });
    expect(conn.headers['sec-websocket-origin']).toBe('http://good.example');
    expect(await handshakeStatus(server.url, { origin: 'http://evil.example' })).toBe(403);
  });

  test('a before-accept hook that never settles: the upgrade ends at handshakeTimeout, unanswered, as over RFC 6455, and frees its maxConnections slot (the socket was held for good)', async () => {
    let hooks = 0;
    const server = await start(echo, {
      handshakeTimeout: 300,
      maxConnections: 1,
      beforeAccept: () => (hooks++ === 0 ? new Promise<never>(() => undefined) : undefined),
    });
    // The client would wait much longer: the server closes the socket first.
    const stuck = await rejection(open(server.url, { handshakeTimeout: 10_000 }));
    expect(stuck).toBeInstanceOf(HandshakeError);
    expect((stuck as HandshakeError).code).toBe('WS_CONNECT_FAILED');
    const conn = await open(server.url);
    await conn.send('in');
    expect(await recvText(conn)).toBe('in');
  });

  test('serve().close() resolves while a before-accept hook never settles, the upgrade answered 503 (it waited for the hybi-00 socket for good)', async () => {
    let hookCalled!: () => void;
    const called = new Promise<void>((resolve) => (hookCalled = resolve));
    const server = await start(echo, {
      handshakeTimeout: 300,
      beforeAccept: () => {
        hookCalled();
        return new Promise<never>(() => undefined);
      },
    });
    const attempt = rejection(open(server.url, { handshakeTimeout: 10_000 }));
    await called;
    servers.splice(servers.indexOf(server), 1);
    await server.close();
    expect([((await attempt) as HandshakeError).code, ((await attempt) as HandshakeError).status]).toEqual(['WS_UNEXPECTED_RESPONSE', 503]);
  });

  test('a hybi-00 client gets HandshakeError 426 from a server with hybi00: false', async () => {
    const server = await start(echo, { hybi00: false });
    expect(await handshakeStatus(server.url)).toBe(426);
  });
});

describe('the signal', () => {
  /** What an aborted handshake rejects with, as over RFC 6455: WS_CONNECT_FAILED, caused by an AbortError. */
  async function aborted(promise: Promise<WebSocketConnection>): Promise<void> {
    const error = await rejection(promise);
    expect(error).toBeInstanceOf(HandshakeError);
    expect((error as HandshakeError).code).toBe('WS_CONNECT_FAILED');
    expect(((error as HandshakeError).cause as Error).name).toBe('AbortError');
  }

  test('gives up a handshake the server never answers (it was ignored until the handshake timed out); an aborted one connects nothing', async () => {
    const silent = await rawServer(() => undefined);
    try {
      const controller = new AbortController();
      const pending = open(silent.url, { handshakeTimeout: 3000, signal: controller.signal });
      for (let i = 0; i < 500 && silent.requests.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(silent.requests).toHaveLength(1);
      controller.abort();
      await aborted(pending);
      await aborted(open(silent.url, { signal: AbortSignal.abort() }));
      expect(silent.requests).toHaveLength(1);
    } finally {
      await silent.close();
    }
  });

  test('once open, aborting does nothing', async () => {
    const server = await start(echo);
    const controller = new AbortController();
    const conn = await open(server.url, { signal: controller.signal });
    controller.abort();
    await conn.send('still open');
    expect(await recvText(conn)).toBe('still open');
  });
});
