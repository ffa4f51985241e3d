/**
 * Connection options take effect the same on every server entry point: each option is given the
 * way that entry point takes options (serve()'s and attachHttp2()'s options, handleUpgrade()'s
 * last argument, the adapters' websocket() / plugin options), and a real client (our connect())
 * sees its effect: a message over maxMessageSize or a frame over maxFrameSize failed with 1009,
 * idleTimeout closing with 1001, a keepalive ping or a close frame the peer never answers aborting
 * (1006), a peer that does not read failed with 1008 past maxBufferedAmount, text handed over as
 * bytes with textMessages: 'buffer', and no permessage-deflate with perMessageDeflate: false;
 * readHighWaterMark pausing the socket (transport.stream.isPaused()) once more than it is queued
 * unread, writeHighWaterMark stopping a loop of awaited sends at the mark and one message,
 * compressThreshold, perMessageDeflate.threshold and level 0 seen on the wire by the client's
 * maxFrameSize (a 2000-byte message deflates to about 20 bytes: a frame of 2000 is one sent
 * uncompressed or stored), and the takeover and window parameters answered. (memLevel, syncLimit
 * and concurrencyLimit change memory, where the work runs and the process-wide zlib limit, nothing
 * a peer sees; directReads only how plain TCP is read.)
 *
 * Entry points as in server-parity.test.ts: serve() over HTTP/1.1, TLS and HTTP/2 (and HTTP/1.1 on
 * its HTTP/2 port); handleUpgrade() on a Node http.Server; attachHttp2() on an h2c server; a
 * hybi-00 client of serve(); the Express, Koa and Fastify adapters (Fastify over HTTP/2 too).
 * hybi-00 has no frame size, fragments, ping (keepaliveInterval is ignored there,
 * docs/hybi00.md) or extensions.
 */
import { connect, serviceMapper, type ConnectOptions, type UpgradeOptions, type WebSocketConnection } from 'rfc6455';
import { until } from '../../packages/rfc6455/test/helpers/wait.js';
import { ATTACH_HTTP2, EXPRESS, FASTIFY, FASTIFY_HTTP2, HANDLE_UPGRADE, KOA, SERVE, SERVE_HTTP2, SERVE_TLS, toHttp1Client, toHybi00Client } from './entry-points.js';

/** The server side of each accepted connection, in order. */
let accepted: WebSocketConnection[] = [];
let waiting: ((conn: WebSocketConnection) => void)[] = [];
function nextServerConn(): Promise<WebSocketConnection> {
  const conn = accepted.shift();
  if (conn) return Promise.resolve(conn);
  return new Promise((resolve) => waiting.push(resolve));
}

/** The most a /pump connection had buffered right after a send(). */
const pumped = new WeakMap<WebSocketConnection, { most: number }>();

const closed = (conn: WebSocketConnection): Promise<number | undefined> => conn.whenClosed.then(() => conn.closeStatus);

const mapper = serviceMapper([
  {
    path: '/.*',
    handler: (conn) => {
      conn.on('error', () => undefined);
      const waiter = waiting.shift();
      if (waiter) waiter(conn);
      else accepted.push(conn);
      if (conn.path === '/echo-kind') {
        conn.on('message', (data, binary) => void conn.send(`${Buffer.isBuffer(data) ? 'buffer' : typeof data} ${binary}`).catch(() => undefined));
      } else if (conn.path === '/close') {
        // (On the client's word, once it has stopped reading.)
        conn.once('message', () => void conn.close(1000).catch(() => undefined));
      } else if (conn.path === '/pump') {
        // Awaited sends, as long as the connection is open, from the client's word on: what is
        // buffered right after each send() is recorded (the most it ever was).
        conn.once('message', async () => {
          const chunk = conn.variant === 'hybi00' ? 'x'.repeat(16 * 1024) : Buffer.alloc(16 * 1024, 7);
          const stats = { most: 0 };
          pumped.set(conn, stats);
          while (conn.readyState === 'open') {
            const sent = conn.send(chunk, { compress: false });
            stats.most = Math.max(stats.most, conn.bufferedAmount);
            await sent.catch(() => undefined);
          }
        });
      } else if (conn.path === '/2k') {
        // 2000 bytes that deflate to about 20.
        void conn.send('x'.repeat(2000)).catch(() => undefined);
      } else if (conn.path === '/flood') {
        conn.once('message', () => {
          // (hybi-00 is text only.)
          const chunk = conn.variant === 'hybi00' ? 'x'.repeat(64 * 1024) : Buffer.alloc(64 * 1024, 7);
          for (let i = 0; i < 512 && conn.readyState === 'open'; i++) void conn.send(chunk).catch(() => undefined);
        });
      }
    },
  },
]);

/** The entry points, each started with `options` and the mapper. */
const entryPoints = [
  SERVE,
  SERVE_TLS,
  SERVE_HTTP2,
  // (Its port takes HTTP/1.1 upgrades too: the client over TLS, as for serve({ tls }).)
  toHttp1Client(SERVE_HTTP2),
  toHybi00Client(SERVE),
  HANDLE_UPGRADE,
  ATTACH_HTTP2,
  EXPRESS,
  KOA,
  FASTIFY,
  FASTIFY_HTTP2,
].map((entry) => ({ name: entry.name, transport: entry.transport, start: (options: UpgradeOptions<unknown>) => entry.start({ target: mapper, options }) }));
type EntryPoint = (typeof entryPoints)[number];

beforeEach(() => {
  accepted = [];
  waiting = [];
});

/** Starts the entry point with `options`, connects to `path`, runs `body`, and closes everything. */
async function withConn(entry: EntryPoint, options: UpgradeOptions<unknown>, path: string, body: (client: WebSocketConnection, server: WebSocketConnection) => Promise<void>, clientOptions: ConnectOptions = {}): Promise<void> {
  const running = await entry.start(options);
  let client: WebSocketConnection | undefined;
  try {
    const serverConn = nextServerConn();
    client = await connect(running.url(path), { ...running.client, ...clientOptions });
    client.on('error', () => undefined);
    await body(client, await serverConn);
  } finally {
    client?.terminate();
    await running.close();
  }
}

describe.each(entryPoints.map((e) => [e.name, e] as const))('%s', (_name, entry) => {
  const hybi00 = entry.transport === 'hybi00';

  // handleUpgrade() and attachHttp2() add each connection to the Set given; serve() and the
  // adapters keep their own (server.connections, ws.connections, app.websocketConnections) and
  // refuse one (it was replaced by theirs without a word, and stayed empty).
  const takesSet = entry.name.startsWith('handleUpgrade') || entry.name.startsWith('attachHttp2');
  test(`connections: a Set given is ${takesSet ? 'filled' : 'refused with a TypeError that says where the connections are'}, never silently left empty`, async () => {
    const mine = new Set<WebSocketConnection>();
    if (!takesSet) {
      await expect(entry.start({ connections: mine })).rejects.toThrow(/connections is not taken here: its connections are in \S/);
      return;
    }
    await withConn(entry, { connections: mine }, '/idle', async (_client, server) => {
      expect([...mine]).toEqual([server]);
    });
  });

  test('maxMessageSize: a message over it fails the connection with 1009', async () => {
    await withConn(entry, { maxMessageSize: 1000 }, '/idle', async (client, server) => {
      void client.send('x'.repeat(2000)).catch(() => undefined);
      // (hybi-00 has no status codes: the server's side tells.)
      expect(await closed(server)).toBe(1009);
      if (!hybi00) expect(await closed(client)).toBe(1009);
    });
  });

  if (!hybi00) {
    test('maxFrameSize: a frame over it fails the connection with 1009 (the message is under maxMessageSize)', async () => {
      await withConn(entry, { maxFrameSize: 100 }, '/idle', async (client, server) => {
        void client.send(Buffer.alloc(200)).catch(() => undefined);
        expect(await closed(server)).toBe(1009);
        expect(await closed(client)).toBe(1009);
      });
    });

    test('maxFragments: a message of more fragments fails the connection with 1009', async () => {
      await withConn(entry, { maxFragments: 2 }, '/idle', async (client, server) => {
        void client.sendStream(['a', 'b', 'c', 'd'].map((s) => Buffer.from(s)), { fragmentSize: 1 }).catch(() => undefined);
        expect(await closed(server)).toBe(1009);
        expect(await closed(client)).toBe(1009);
      });
    });
  }

  test('idleTimeout: a connection with no frame for that long is closed with 1001 (hybi-00: its closing frame, 1005)', async () => {
    await withConn(entry, { idleTimeout: 200 }, '/idle', async (client, server) => {
      expect(await closed(server)).toBe(hybi00 ? 1005 : 1001);
      if (hybi00) expect(await closed(client)).toBe(1005);
      if (!hybi00) {
        expect(await closed(client)).toBe(1001);
        expect(client.closeReason).toBe('idle timeout');
      }
    });
  });

  if (!hybi00) {
    test('keepaliveInterval: a peer that never answers the ping is aborted (1006)', async () => {
      await withConn(entry, { keepaliveInterval: 100, idleTimeout: 0 }, '/idle', async (client, server) => {
        client.pause(); // reads nothing: the ping stays unanswered
        expect(await closed(server)).toBe(1006);
      });
    });
  }

  test('closeTimeout: a peer that never answers the close frame is cut (1006)', async () => {
    await withConn(entry, { closeTimeout: 200, idleTimeout: 0 }, '/close', async (client, server) => {
      client.pause();
      await client.send('go');
      expect(await closed(server)).toBe(1006);
    }, { closeTimeout: 60_000 });
  });

  test('maxBufferedAmount: a peer that does not read is failed with 1008 (WS_SEND_BUFFER_FULL)', async () => {
    await withConn(entry, { maxBufferedAmount: 256 * 1024, idleTimeout: 0 }, '/flood', async (client, server) => {
      client.pause();
      await client.send('go');
      expect(await closed(server)).toBe(1008);
      expect((server.error as { code?: string } | undefined)?.code).toBe('WS_SEND_BUFFER_FULL');
    });
  });

  test("textMessages: 'buffer': text arrives as a Buffer, not binary", async () => {
    await withConn(entry, { textMessages: 'buffer' }, '/echo-kind', async (client) => {
      void client.send('hello');
      expect(await client.recv()).toBe('buffer false');
    });
  });

  if (!hybi00) {
    test('perMessageDeflate: false: no extension negotiated with a client that offers it (and one by default)', async () => {
      await withConn(entry, { perMessageDeflate: false }, '/idle', async (client, server) => {
        expect(client.extensions).toBe('');
        expect(server.extensions).toBe('');
      }, { perMessageDeflate: true });
      await withConn(entry, {}, '/idle', async (client) => {
        expect(client.extensions).toContain('permessage-deflate');
      }, { perMessageDeflate: true });
    });
  }

  test('readHighWaterMark: the socket is paused once more than it is queued unread, and stays paused until half of it is taken; every message then arrives in order', async () => {
    await withConn(entry, { readHighWaterMark: 64 * 1024, idleTimeout: 0 }, '/idle', async (client, server) => {
      // 16 messages of 16 KiB (256 KiB) to a server that reads none: the default 1 MiB would hold them all.
      const message = (i: number) => (hybi00 ? String.fromCharCode(97 + i).repeat(8 * 1024) : Buffer.alloc(16 * 1024, i));
      for (let i = 0; i < 16; i++) void client.send(message(i), { compress: false }).catch(() => undefined);
      const stream = server.transport.stream;
      await until(() => stream.isPaused(), 'the server to pause reading', 5000);
      // Taking one of more than the mark leaves more than half of it: still paused.
      // (Compared with equals(): toEqual() walks a Buffer a byte at a time.)
      const same = (got: unknown, i: number) => (typeof got === 'string' ? got === message(i) : Buffer.isBuffer(got) && got.equals(message(i) as Buffer));
      expect(same(await server.recv(), 0)).toBe(true);
      expect(stream.isPaused()).toBe(true);
      for (let i = 1; i < 16; i++) expect(same(await server.recv(), i)).toBe(true);
      expect(stream.isPaused()).toBe(false);
    });
  });

  test('writeHighWaterMark: awaited sends to a peer that does not read stop with at most the mark and one message buffered', async () => {
    const mark = 64 * 1024;
    await withConn(entry, { writeHighWaterMark: mark, idleTimeout: 0 }, '/pump', async (client, server) => {
      client.pause();
      await client.send('go');
      // Once the peer's buffers are full, the send that takes it past the mark waits for drain
      // (with the default 1 MiB the loop would go on, without a turn of the event loop, to 1 MiB).
      await until(() => (pumped.get(server)?.most ?? 0) > mark, 'the server to buffer past the mark', 10_000);
      expect(pumped.get(server)!.most).toBeLessThanOrEqual(mark + 16 * 1024 + 14);
    });
  });

  if (!hybi00) {
    test('compressThreshold and perMessageDeflate.threshold: a message under it goes uncompressed (a frame of 2000 bytes, over the client\'s maxFrameSize: 1009); compressed by default; compressThreshold decides when both are given', async () => {
      const client = { perMessageDeflate: true, maxFrameSize: 1000 } as const;
      for (const options of [{}, { compressThreshold: 1024, perMessageDeflate: { threshold: 4096 } }]) {
        await withConn(entry, options, '/2k', async (c) => {
          expect(await c.recv()).toBe('x'.repeat(2000));
        }, client);
      }
      for (const options of [{ compressThreshold: 4096 }, { perMessageDeflate: { threshold: 4096 } }, { compressThreshold: 4096, perMessageDeflate: { threshold: 0 } }]) {
        await withConn(entry, options, '/2k', async (c) => {
          expect(await closed(c)).toBe(1009);
        }, client);
      }
    });

    test('perMessageDeflate: level 0 stores the message (2000 bytes on the wire: 1009 for the client\'s maxFrameSize)', async () => {
      await withConn(entry, { perMessageDeflate: { level: 0 } }, '/2k', async (c) => {
        expect(c.extensions).toContain('permessage-deflate');
        expect(await closed(c)).toBe(1009);
      }, { perMessageDeflate: true, maxFrameSize: 1000 });
    });

    test('perMessageDeflate: the takeover and window parameters are answered', async () => {
      const options = { perMessageDeflate: { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 10, clientMaxWindowBits: 11 } };
      await withConn(entry, options, '/idle', async (client, server) => {
        const answer = client.extensions.split(/;\s*/).sort();
        expect(answer).toEqual(['client_max_window_bits=11', 'client_no_context_takeover', 'permessage-deflate', 'server_max_window_bits=10', 'server_no_context_takeover']);
        expect(server.extensions).toBe(client.extensions);
      }, { perMessageDeflate: true });
    });
  }
});
