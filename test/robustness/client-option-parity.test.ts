/**
 * Client options take effect the same on every client path (the client-side mirror of
 * option-parity.test.ts): connect() over HTTP/1.1, TLS, HTTP/2 with a session of its own and with
 * a session passed in, hybi-00, and the WebSocket and WebSocketStream classes (which take every
 * connect() option but `textMessages`, docs/client.md). Each option is given the way the path
 * takes it, against our serve() with handlers that misbehave on request, and its effect is seen:
 * an incoming message over maxMessageSize or a frame over maxFrameSize failed with 1009,
 * idleTimeout closing with 1001, a keepalive ping or a close frame the server never answers
 * aborting (1006), a server that does not read failed with 1008 past maxBufferedAmount, text as
 * bytes with textMessages: 'buffer', and the request the server saw (permessage-deflate offered or
 * not, protocols, origin, headers); handshakeTimeout fails a handshake the server never answers;
 * readHighWaterMark pauses the socket once more than it is unread (not for the WebSocket class,
 * which does not read the socket while a message waits for its event), writeHighWaterMark stops a loop of awaited sends at
 * the mark and one message, and compressThreshold, perMessageDeflate.threshold and level 0 are
 * seen on the wire by the server's maxFrameSize. hybi-00 has no frame size, ping
 * (keepaliveInterval is ignored there, docs/hybi00.md) or extensions.
 */
import type { ClientHttp2Session } from 'node:http2';
import { connect, serve, serviceMapper, WebSocket, WebSocketStream, type ConnectOptions, type WebSocketConnection } from 'rfc6455';
import { CLIENT_TLS, closeSession, openSession, TLS } from '../http2/helpers.js';
import { until } from '../../packages/rfc6455/test/helpers/wait.js';

type Server = Awaited<ReturnType<typeof serve>>;

/** The request headers the server's beforeAccept saw, in order. */
let seen: Record<string, string | string[] | undefined>[] = [];

function handler(conn: WebSocketConnection): void {
      conn.on('error', () => undefined);
      if (conn.path === '/deaf') conn.pause(); // reads nothing: no pong, no close answered, no data taken
      else if (conn.path === '/big') void conn.send('x'.repeat(2000)).catch(() => undefined);
      else if (conn.path === '/bigframe') void conn.send(Buffer.alloc(200, 1)).catch(() => undefined);
      else if (conn.path === '/text') void conn.send('hello').catch(() => undefined);
      else if (conn.path === '/flood16') {
        // 16 messages of 16 KiB (256 KiB, under the default readHighWaterMark of 1 MiB); hybi-00 is text only.
        for (let i = 0; i < 16; i++) void conn.send(flood16(conn.variant === 'hybi00', i), { compress: false }).catch(() => undefined);
      } else if (conn.path === '/fragments') void conn.sendStream(['a', 'b', 'c', 'd'].map((c) => Buffer.from(c)), { fragmentSize: 1 }).catch(() => undefined);
}

/** The i-th message of /flood16. */
function flood16(hybi00: boolean, i: number): string | Buffer {
  return hybi00 ? String.fromCharCode(97 + i).repeat(8 * 1024) : Buffer.alloc(16 * 1024, i);
}

/** Whether a message read is the i-th of /flood16 (equals(): toEqual() walks a Buffer a byte at a time). */
function isFlood16(got: unknown, hybi00: boolean, i: number): boolean {
  const want = flood16(hybi00, i);
  if (typeof got === 'string' || typeof want === 'string') return got === want;
  return got instanceof Uint8Array && Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(want);
}

const mapper = serviceMapper([{ path: '/.*', handler, protocols: { 'chat.v1': handler } }]);

const serverOptions = {
  idleTimeout: 0,
  // (A client's frame of 2000 bytes, a message it did not compress, fails with 1009; only the
  // tests of the compression options send one. The /deaf server never reads what it is sent.)
  maxFrameSize: 1500,
  beforeAccept: (req: { headers: Record<string, string | string[] | undefined>; url?: string }) => {
    seen.push({ ...req.headers });
    // Never answers: the client's handshakeTimeout has to end it.
    if (req.url?.startsWith('/hang') || req.headers[':path'] === '/hang') return new Promise<never>(() => undefined);
    if (req.headers[':path'] === '/elsewhere') return { reject: { status: 302, headers: { Location: `wss://127.0.0.1:${tls.port}/text` } } };
    if (req.url === '/redirect' || req.headers[':path'] === '/redirect') return { reject: { status: 302, headers: { Location: '/text' } } };
    return true;
  },
};

let h1: Server;
let tls: Server;
let h2: Server;

beforeAll(async () => {
  h1 = await serve(serverOptions as never, mapper);
  tls = await serve({ ...serverOptions, tls: TLS } as never, mapper);
  h2 = await serve({ ...serverOptions, tls: TLS, http2: true } as never, mapper);
});

afterAll(async () => {
  await Promise.all([h1.close(), tls.close(), h2.close()]);
});

beforeEach(() => {
  seen = [];
});

interface Opened {
  conn: WebSocketConnection;
  /** Text messages arrive through this (the classes keep their own): the message and its kind. */
  firstMessage(): Promise<unknown>;
  /** Reads the next message (recv(), the WebSocketStream's readable); none for the WebSocket class, whose messages are events. */
  read?: () => Promise<unknown>;
  done(): Promise<void>;
}

interface ClientPath {
  name: string;
  hybi00?: boolean;
  /** Over HTTP/2. */
  h2?: boolean;
  /** The classes do not take textMessages (docs/client.md). */
  classApi?: boolean;
  /**
   * The WebSocket class hands each message over as an event, in a task of its own, with the
   * socket unread meanwhile (the connection paused): nothing piles up for readHighWaterMark.
   */
  events?: boolean;
  open(path: string, options: ConnectOptions): Promise<Opened>;
  /** Resolves with the error code a handshake failed with. */
  fail(path: string, options: ConnectOptions): Promise<string | undefined>;
}

function connectPath(name: string, url: () => string, base: () => Promise<{ options: ConnectOptions; done(): Promise<void> }>, hybi00 = false): ClientPath {
  return {
    name,
    hybi00,
    h2: name.includes('HTTP/2'),
    async open(path, options) {
      const b = await base();
      const conn = await connect(url() + path, { ...b.options, ...options });
      conn.on('error', () => undefined);
      return {
        conn,
        firstMessage: () => new Promise((resolve) => conn.once('message', (data) => resolve(data))),
        read: () => conn.recv(),
        done: async () => {
          conn.terminate();
          await b.done();
        },
      };
    },
    async fail(path, options) {
      const b = await base();
      try {
        const conn = await connect(url() + path, { ...b.options, ...options });
        conn.terminate();
        return undefined;
      } catch (error) {
        return (error as { code?: string }).code;
      } finally {
        await b.done();
      }
    },
  };
}

const none = async () => ({ options: {}, done: async () => undefined });

const paths: ClientPath[] = [
  connectPath('connect() over HTTP/1.1', () => `ws://127.0.0.1:${h1.port}`, none),
  connectPath('connect() over TLS', () => `wss://127.0.0.1:${tls.port}`, async () => ({ options: { tls: CLIENT_TLS }, done: async () => undefined })),
  connectPath('connect() over HTTP/2 (own session)', () => `wss://127.0.0.1:${h2.port}`, async () => ({ options: { http2: true, tls: CLIENT_TLS }, done: async () => undefined })),
  connectPath('connect() over HTTP/2 (session passed in)', () => `wss://127.0.0.1:${h2.port}`, async () => {
    const session: ClientHttp2Session = await openSession(`https://127.0.0.1:${h2.port}`);
    return { options: { http2: session }, done: () => closeSession(session) };
  }),
  connectPath('connect() hybi-00', () => `ws://127.0.0.1:${h1.port}`, async () => ({ options: { variant: 'hybi00' }, done: async () => undefined }), true),
];

/** The transports the classes are run over (they take every connect() option but textMessages). */
const classTransports: { name: string; url: () => string; options: () => ConnectOptions; hybi00?: boolean }[] = [
  { name: 'HTTP/1.1', url: () => `ws://127.0.0.1:${h1.port}`, options: () => ({}) },
  { name: 'TLS', url: () => `wss://127.0.0.1:${tls.port}`, options: () => ({ tls: CLIENT_TLS }) },
  { name: 'HTTP/2', url: () => `wss://127.0.0.1:${h2.port}`, options: () => ({ http2: true, tls: CLIENT_TLS }) },
  { name: 'hybi-00', url: () => `ws://127.0.0.1:${h1.port}`, options: () => ({ variant: 'hybi00' }), hybi00: true },
];

for (const t of classTransports) {
  paths.push({
    name: `WebSocket class over ${t.name}`,
    classApi: true,
    events: true,
    hybi00: t.hybi00 === true,
    h2: t.name === 'HTTP/2',
    async open(path, options) {
      const ws = new WebSocket(t.url() + path, { ...t.options(), ...options } as never);
      ws.binaryType = 'nodebuffer';
      await new Promise<void>((resolve, reject) => {
        ws.onopen = () => resolve();
        ws.onerror = (event) => reject((event as { error?: unknown }).error);
      });
      ws.onerror = null;
      const conn = ws.connection!;
      conn.on('error', () => undefined);
      return { conn, firstMessage: () => Promise.reject(new Error('unused')), done: async () => conn.terminate() };
    },
    async fail(path, options) {
      const ws = new WebSocket(t.url() + path, { ...t.options(), ...options } as never);
      return new Promise((resolve) => {
        ws.onopen = () => {
          ws.close();
          resolve(undefined);
        };
        ws.onerror = (event) => resolve((event as { error?: { code?: string } }).error?.code);
      });
    },
  });
  paths.push({
    name: `WebSocketStream class over ${t.name}`,
    classApi: true,
    hybi00: t.hybi00 === true,
    h2: t.name === 'HTTP/2',
    async open(path, options) {
      const wss = new WebSocketStream(t.url() + path, { ...t.options(), ...options } as never);
      wss.closed.catch(() => undefined);
      const { readable } = await wss.opened;
      const conn = wss.connection!;
      conn.on('error', () => undefined);
      const reader = readable.getReader();
      const read = async () => (await reader.read()).value;
      return { conn, firstMessage: () => Promise.reject(new Error('unused')), read, done: async () => conn.terminate() };
    },
    async fail(path, options) {
      const wss = new WebSocketStream(t.url() + path, { ...t.options(), ...options } as never);
      wss.closed.catch(() => undefined);
      try {
        await wss.opened;
        wss.close();
        return undefined;
      } catch (error) {
        return (error as { cause?: { code?: string } }).cause?.code;
      }
    },
  });
}

const closed = (conn: WebSocketConnection): Promise<number | undefined> => conn.whenClosed.then(() => conn.closeStatus);

async function withOpen(path: ClientPath, where: string, options: ConnectOptions, body: (opened: Opened) => Promise<void>): Promise<void> {
  const opened = await path.open(where, options);
  try {
    await body(opened);
  } finally {
    await opened.done();
  }
}

describe.each(paths.map((p) => [p.name, p] as const))('%s', (_name, path) => {
  const hybi00 = path.hybi00 === true;

  test('maxMessageSize: an incoming message over it fails the connection with 1009', async () => {
    await withOpen(path, '/big', { maxMessageSize: 1000 }, async ({ conn }) => {
      expect(await closed(conn)).toBe(1009);
    });
  });

  if (!hybi00) {
    test('maxFrameSize: an incoming frame over it fails the connection with 1009', async () => {
      await withOpen(path, '/bigframe', { maxFrameSize: 100 }, async ({ conn }) => {
        expect(await closed(conn)).toBe(1009);
      });
    });

    test('keepaliveInterval: a server that never answers the ping is aborted (1006)', async () => {
      await withOpen(path, '/deaf', { keepaliveInterval: 50, idleTimeout: 0 }, async ({ conn }) => {
        expect(await closed(conn)).toBe(1006);
      });
    });
  }

  if (!hybi00) {
    test('maxFragments: an incoming message of more fragments fails the connection with 1009', async () => {
      await withOpen(path, '/fragments', { maxFragments: 2 }, async ({ conn }) => {
        expect(await closed(conn)).toBe(1009);
      });
    });
  }

  test('connections: the Set given is filled while open and emptied once closed', async () => {
    const mine = new Set<WebSocketConnection>();
    await withOpen(path, '/idle', { connections: mine }, async ({ conn }) => {
      expect([...mine]).toEqual([conn]);
      void conn.close(1000).catch(() => undefined);
      await conn.whenClosed;
      expect(mine.size).toBe(0);
    });
  });

  test('maxHeaderSize: a response head over it fails the handshake with WS_RESPONSE_TOO_LARGE', async () => {
    expect(await path.fail('/idle', { maxHeaderSize: 40 })).toBe('WS_RESPONSE_TOO_LARGE');
  });

  if (!hybi00) {
    test('followRedirects: a 302 is followed to the WebSocket (and fails the handshake without it)', async () => {
      expect(await path.fail('/redirect', {})).toBe('WS_UNEXPECTED_RESPONSE');
      await withOpen(path, '/redirect', { followRedirects: true }, async ({ conn }) => {
        expect(conn.path).toBe('/text');
        // (Over HTTP/2, the hop is over HTTP/2 too.)
        expect(seen.map((h) => h[':path'] ?? 'HTTP/1.1')).toEqual(path.h2 ? ['/redirect', '/redirect', '/text'] : ['HTTP/1.1', 'HTTP/1.1', 'HTTP/1.1']);
      });
    });
  }

  test('idleTimeout: closes with 1001 (hybi-00: its closing frame, 1005)', async () => {
    await withOpen(path, '/idle', { idleTimeout: 100 }, async ({ conn }) => {
      expect(await closed(conn)).toBe(hybi00 ? 1005 : 1001);
    });
  });

  test('closeTimeout: a server that never answers our close is cut (1006)', async () => {
    await withOpen(path, '/deaf', { closeTimeout: 100, idleTimeout: 0 }, async ({ conn }) => {
      void conn.close(1000).catch(() => undefined);
      expect(await closed(conn)).toBe(1006);
    });
  });

  test('maxBufferedAmount: a server that does not read is failed with 1008 (WS_SEND_BUFFER_FULL)', async () => {
    await withOpen(path, '/deaf', { maxBufferedAmount: 256 * 1024, idleTimeout: 0 }, async ({ conn }) => {
      const chunk = hybi00 ? 'x'.repeat(64 * 1024) : Buffer.alloc(64 * 1024, 7);
      for (let i = 0; i < 512 && conn.readyState === 'open'; i++) void conn.send(chunk).catch(() => undefined);
      expect(await closed(conn)).toBe(1008);
      expect((conn.error as { code?: string } | undefined)?.code).toBe('WS_SEND_BUFFER_FULL');
    });
  });

  if (!path.classApi) {
    test("textMessages: 'buffer': text arrives as a Buffer", async () => {
      await withOpen(path, '/text', { textMessages: 'buffer' }, async ({ firstMessage }) => {
        const data = await firstMessage();
        expect(Buffer.isBuffer(data) && data.toString()).toBe('hello');
      });
    });
  }

  test('protocols, origin and headers reach the server', async () => {
    await withOpen(path, '/idle', { protocols: ['chat.v2', 'chat.v1'], origin: 'https://app.example', headers: { 'x-token': 'abc' } }, async ({ conn }) => {
      expect(conn.protocol).toBe('chat.v1');
      expect(seen).toHaveLength(1);
      expect(seen[0]!['sec-websocket-protocol']).toBe('chat.v2, chat.v1');
      expect(seen[0]!.origin).toBe('https://app.example');
      expect(seen[0]!['x-token']).toBe('abc');
    });
  });

  if (!hybi00) {
    test('perMessageDeflate: false offers nothing; an object offers its parameters; the default offers it', async () => {
      await withOpen(path, '/idle', { perMessageDeflate: false }, async ({ conn }) => {
        expect(seen[0]!['sec-websocket-extensions']).toBeUndefined();
        expect(conn.extensions).toBe('');
      });
      await withOpen(path, '/idle', { perMessageDeflate: { clientNoContextTakeover: true, serverMaxWindowBits: 10 } }, async ({ conn }) => {
        expect(seen[1]!['sec-websocket-extensions']).toMatch(/^permessage-deflate;.*client_no_context_takeover/);
        expect(seen[1]!['sec-websocket-extensions']).toMatch(/server_max_window_bits=10/);
        expect(conn.extensions).toContain('permessage-deflate');
      });
      await withOpen(path, '/idle', {}, async () => {
        expect(seen[2]!['sec-websocket-extensions']).toMatch(/^permessage-deflate/);
      });
    });
  }

  test('handshakeTimeout: a handshake the server never answers fails with WS_HANDSHAKE_TIMEOUT', async () => {
    expect(await path.fail('/hang', { handshakeTimeout: 150 })).toBe('WS_HANDSHAKE_TIMEOUT');
  });

  if (path.events !== true) {
    test('readHighWaterMark: the socket is paused once more than it is unread (recv(): until half of it is read); every message then arrives in order', async () => {
      await withOpen(path, '/flood16', { readHighWaterMark: 64 * 1024, idleTimeout: 0 }, async ({ conn, read }) => {
        const stream = conn.transport.stream;
        await until(() => stream.isPaused(), 'the client to pause reading', 5000);
        // Reading one of more than the mark leaves more than half of it: the connection's queue
        // stays paused. (The WebSocketStream's readable reads on once it has room below the mark
        // again, when the application reads, docs/client.md.)
        expect(isFlood16(await read!(), hybi00, 0)).toBe(true);
        if (path.classApi !== true) expect(stream.isPaused()).toBe(true);
        for (let i = 1; i < 16; i++) expect(isFlood16(await read!(), hybi00, i)).toBe(true);
        expect(stream.isPaused()).toBe(false);
      });
    });
  }

  test('writeHighWaterMark: awaited sends to a server that does not read stop with at most the mark and one message buffered', async () => {
    const mark = 64 * 1024;
    await withOpen(path, '/deaf', { writeHighWaterMark: mark, idleTimeout: 0 }, async ({ conn }) => {
      const chunk = hybi00 ? 'x'.repeat(16 * 1024) : Buffer.alloc(16 * 1024, 7);
      let most = 0;
      void (async () => {
        while (conn.readyState === 'open') {
          const sent = conn.send(chunk, { compress: false });
          most = Math.max(most, conn.bufferedAmount);
          await sent.catch(() => undefined);
        }
      })();
      // Once the server's buffers are full, the send that takes it past the mark waits for drain
      // (with the default 1 MiB the loop would go on, without a turn of the event loop, to 1 MiB).
      await until(() => most > mark, 'the client to buffer past the mark', 10_000);
      expect(most).toBeLessThanOrEqual(mark + 16 * 1024 + 14);
    });
  });

  if (!hybi00) {
    test('compressThreshold, perMessageDeflate.threshold and level 0: a message goes uncompressed or stored (a frame of 2000 bytes, over the server\'s maxFrameSize: 1009); compressed by default; compressThreshold decides when both are given', async () => {
      const sendAndClose = async (conn: WebSocketConnection) => {
        void conn.send('x'.repeat(2000)).catch(() => undefined);
        void conn.close(1000).catch(() => undefined);
        return closed(conn);
      };
      for (const options of [{}, { compressThreshold: 1024, perMessageDeflate: { threshold: 4096 } }]) {
        await withOpen(path, '/idle', options, async ({ conn }) => {
          expect(await sendAndClose(conn)).toBe(1000);
        });
      }
      for (const options of [{ compressThreshold: 4096 }, { perMessageDeflate: { threshold: 4096 } }, { compressThreshold: 4096, perMessageDeflate: { threshold: 0 } }, { perMessageDeflate: { level: 0 } }]) {
        await withOpen(path, '/idle', options, async ({ conn }) => {
          expect(conn.extensions).toContain('permessage-deflate');
          expect(await sendAndClose(conn)).toBe(1009);
        });
      }
    });

    test('perMessageDeflate: serverNoContextTakeover and clientMaxWindowBits are offered, and the answer taken', async () => {
      await withOpen(path, '/idle', { perMessageDeflate: { serverNoContextTakeover: true, clientMaxWindowBits: 10 } }, async ({ conn }) => {
        const offer = String(seen[0]!['sec-websocket-extensions']).split(/;\s*/).sort();
        expect(offer).toEqual(['client_max_window_bits=10', 'permessage-deflate', 'server_no_context_takeover']);
        expect(conn.extensions.split(/;\s*/)).toContain('server_no_context_takeover');
      });
    });
  }
});

test('followRedirects over a session passed in: a redirect to another origin is not sent on that session (a session of its own, here an HTTP/1.1 fallback)', async () => {
  const session = await openSession(`https://127.0.0.1:${h2.port}`);
  try {
    const conn = await connect(`wss://127.0.0.1:${h2.port}/elsewhere`, { http2: session, tls: CLIENT_TLS, followRedirects: true });
    conn.on('error', () => undefined);
    const first = new Promise((resolve) => conn.once('message', (data) => resolve(data)));
    // The TLS server (HTTP/1.1 only) took it: not the HTTP/2 server through the session.
    expect(seen.map((h) => h[':path'] ?? 'HTTP/1.1')).toEqual(['/elsewhere', 'HTTP/1.1']);
    expect(await first).toBe('hello');
    conn.terminate();
    expect(session.closed || session.destroyed).toBe(false);
  } finally {
    await closeSession(session);
  }
});
