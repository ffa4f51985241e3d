/**
 * Headless Debian Chromium (playwright-core, /usr/bin/chromium, never downloaded) against serve()
 * and the adapters, on what the other browser tests leave out: close codes and 123-byte UTF-8
 * reasons both ways, a server close during the browser's burst, terminate(), maxMessageSize,
 * message sizes at the length-encoding boundaries as ArrayBuffer and Blob, astral characters and
 * lone surrogates, permessage-deflate with window and context-takeover settings over many messages
 * (HTTP/1.1 and HTTP/2), subprotocols no route has (and the `protocols` option's), a page leaving (the server's
 * createWebSocketStream ends cleanly), a wss: page from another origin (HTTP/1.1 over TLS from an
 * http2 server), and the Koa, Express and Fastify adapters: a cookie set by a hook on the 101 reaches
 * document.cookie and the next request; a hook's 401 and beforeAccept's 403 fail the browser's
 * WebSocket, with nothing logged as an error. One browser for the file; each page from the server
 * under test (Chromium blocks about:blank from opening connections to 127.0.0.1).
 */
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Browser, Page } from 'playwright-core';
import { createWebSocketStream, serve, serviceMapper, type ServeOptions, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { TLS } from '../http2/helpers.js';
import { launchChromium } from './chromium.js';
import { binaryRoundTrips, inPage, loadPage, page200, REASON_123, ROUND_TRIPS, VISIT, VISIT_SERVERS, VISITED, wssFromTwoOrigins } from './scenarios.js';

let browser: Browser;
beforeAll(async () => {
  browser = await launchChromium(['--ignore-certificate-errors']);
}, 30_000);
afterAll(async () => {
  await browser?.close();
});

/** A page of this file's browser loaded from `origin`, with `open` defined. */
const pageAt = (origin: string): Promise<Page> => loadPage(() => browser.newPage(), origin);

interface Seen {
  path: string;
  kind: string;
  messages: Array<string | number>;
  closeStatus?: number | undefined;
  closeReason?: string | undefined;
}

describe('close codes, limits, message kinds (HTTP/1.1 and HTTP/2)', () => {
  for (const h2 of [false, true]) {
    describe(h2 ? 'over HTTP/2 (extended CONNECT)' : 'over HTTP/1.1', () => {
      let server: WebSocketServer;
      let page: Page;
      let base: string;
      const seen: Seen[] = [];
      const errors: unknown[] = [];
      const closed = new Map<string, Promise<Seen>>();
      let announce: (entry: Seen, conn: WebSocketConnection) => void;
      /** The server side of the next connection to `path`, once closed. */
      const closedAt = (path: string): Promise<Seen> => closed.get(path)!;
      const expectClose = (path: string): void => {
        closed.set(path, new Promise((resolve) => (announce = (entry, conn) => void conn.whenClosed.then(() => resolve(entry)))));
      };

      beforeAll(async () => {
        const track = (conn: WebSocketConnection): Seen => {
          const entry: Seen = { path: conn.path, kind: conn.transport.kind, messages: [] };
          seen.push(entry);
          conn.on('message', (m) => entry.messages.push(typeof m === 'string' ? m : m.length));
          conn.on('close', () => {
            entry.closeStatus = conn.closeStatus;
            entry.closeReason = conn.closeReason;
          });
          announce?.(entry, conn);
          return entry;
        };
        const options: ServeOptions = {
          host: '127.0.0.1',
          port: 0,
          onRequest: page200,
          maxMessageSize: 1 << 20,
          onError: (error) => void errors.push(error),
          ...(h2 ? { http2: true as const, tls: TLS } : {}),
        };
        server = await serve(
          options,
          serviceMapper([
            {
              path: '/echo',
              handler: (conn) => {
                track(conn);
                conn.on('message', (m, binary) => void conn.send(m, { binary }).catch(() => undefined));
              },
            },
            {
              path: /^\/close\/(?<code>\d+)$/,
              handler: (conn, _req, { params }) => {
                track(conn);
                conn.once('message', () => void conn.close(Number(params.code), REASON_123));
              },
            },
            {
              path: '/burst',
              handler: (conn) => {
                const entry = track(conn);
                conn.on('message', () => void (entry.messages.length === 5 && conn.close(4321, 'enough')));
              },
            },
            {
              path: '/terminate',
              handler: (conn) => {
                track(conn);
                conn.once('message', () => conn.terminate());
              },
            },
            {
              path: '/chat',
              protocols: {
                'chat.v1': (conn) => void conn.send(`v1 ${conn.protocol}`),
                'chat.v2': (conn) => void conn.send(`v2 ${conn.protocol}`),
              },
            },
          ]),
        );
        base = `${h2 ? 'wss' : 'ws'}://127.0.0.1:${server.port}`;
        page = await pageAt(`${h2 ? 'https' : 'http'}://127.0.0.1:${server.port}`);
      });
      afterAll(async () => {
        await page?.close();
        await server?.close();
        expect(errors).toEqual([]);
      });

      test('close(4000, a 123-byte UTF-8 reason) from the browser: the server sees that code and reason', async () => {
        expectClose('/echo');
        const events = await inPage(page, `${base}/echo`, { send: ['hi'], closeAfter: 1, closeWith: [4000, REASON_123] });
        expect(events).toEqual([['open', '', 'permessage-deflate'], 'hi', ['close', 4000, REASON_123, true]]);
        const server = await closedAt('/echo');
        expect(server).toMatchObject({ kind: h2 ? 'http2' : 'tcp', closeStatus: 4000, closeReason: REASON_123 });
      });

      test.each([1000, 1001, 1003, 1008, 1011, 1012, 3000, 4999])('the server closes with %i and a 123-byte UTF-8 reason: the browser gets both, cleanly', async (code) => {
        expectClose(`/close/${code}`);
        const events = await inPage(page, `${base}/close/${code}`, { send: ['go'] });
        expect(events).toEqual([['open', '', 'permessage-deflate'], ['close', code, REASON_123, true]]);
        expect(await closedAt(`/close/${code}`)).toMatchObject({ closeStatus: code, closeReason: REASON_123 });
      });

      test('the server closes while the browser sends a burst of 2000 and closes: the handler gets every message sent before the browser’s close frame, in order', async () => {
        expectClose('/burst');
        const body = `const ws = new WebSocket('${base}/burst');
          return new Promise((resolve) => {
            ws.onopen = () => { for (let i = 0; i < 2000; i++) ws.send('m' + i); ws.close(1000, 'me'); };
            ws.onclose = (e) => resolve([e.code, e.reason]);
          });`;
        const browserSide = await page.evaluate(`(async () => { ${body} })()`);
        // The browser reports the server's code whether or not its own close frame left first.
        expect(browserSide).toEqual([4321, 'enough']);
        const server = await closedAt('/burst');
        // Chromium drops what it had not handed to the network yet once the server's close frame
        // comes, and answers it (4321); what it sent before arrived, all of it, in order. When its
        // own close frame left first, the server got all 2000 and that frame.
        expect(server.messages.length).toBeGreaterThanOrEqual(5);
        expect(server.messages).toEqual(Array.from({ length: server.messages.length }, (_, i) => `m${i}`));
        const n = server.messages.length;
        expect([[2000, 1000, 'me'], [n, 4321, 'enough']]).toContainEqual([n, server.closeStatus, server.closeReason]);
      });

      test('terminate(): the browser sees 1006, not clean', async () => {
        expectClose('/terminate');
        const events = await inPage(page, `${base}/terminate`, { send: ['x'] });
        expect(events).toEqual([['open', '', 'permessage-deflate'], ['close', 1006, '', false]]);
        expect((await closedAt('/terminate')).closeStatus).toBe(1006);
      });

      test('a browser message over maxMessageSize (1 MiB, sent compressed: counted while inflating): the browser gets 1009 and the reason, cleanly', async () => {
        expectClose('/echo');
        const events = await inPage(page, `${base}/echo`, { send: ['y'.repeat((1 << 20) + 1)] });
        expect(events).toEqual([['open', '', 'permessage-deflate'], ['close', 1009, 'inflated message exceeds 1048576 bytes', true]]);
        expect((await closedAt('/echo')).closeStatus).toBe(1009);
      });

      test.each(['arraybuffer', 'blob'] as const)('binary messages of 0, 1, 125, 126, 65535, 65536 and 1 MiB round-trip intact (binaryType %s)', async (binaryType) => {
        const sizes = [0, 1, 125, 126, 65535, 65536, 1 << 20];
        const result = await page.evaluate(binaryRoundTrips(`${base}/echo`, binaryType, sizes));
        const type = binaryType === 'blob' ? 'Blob' : 'ArrayBuffer';
        expect(result).toEqual(sizes.map((size) => [type, size, true]));
      });

      test('astral characters round-trip; lone surrogates are sent as U+FFFD (valid UTF-8)', async () => {
        expectClose('/echo');
        const astral = '😀 \u{10FFFF} 𝄞 '.repeat(1000);
        const events = await inPage(page, `${base}/echo`, { send: [astral, 'a\uD800b\uDC00c'], closeAfter: 2 });
        expect(events.slice(1, 3)).toEqual([astral, 'a\uFFFDb\uFFFDc']);
        expect((await closedAt('/echo')).messages).toEqual([astral, 'a\uFFFDb\uFFFDc']);
      });

      test('subprotocols: the route’s handler for the first the browser offers; none the route has: 400, the browser fails (error, 1006), no handler runs', async () => {
        expect(await inPage(page, `${base}/chat`, { protocols: ['zz', 'chat.v2', 'chat.v1'], closeAfter: 1 })).toEqual([
          ['open', 'chat.v2', 'permessage-deflate'],
          'v2 chat.v2',
          ['close', 1000, 'page', true],
        ]);
        const before = seen.length;
        expect(await inPage(page, `${base}/chat`, { protocols: ['zz'] })).toEqual(['error', ['close', 1006, '', false]]);
        expect(await inPage(page, `${base}/chat`)).toEqual(['error', ['close', 1006, '', false]]);
        expect(seen.length).toBe(before);
      });
    });
  }
});

describe('the protocols option with a plain handler', () => {
  test('a browser offering one of the list opens with it; one offering none of them fails (error, 1006), though the server accepted without a subprotocol', async () => {
    const accepted: string[] = [];
    const server = await serve({ host: '127.0.0.1', port: 0, onRequest: page200, protocols: ['chat.v1'] }, (conn) => {
      accepted.push(conn.protocol);
      void conn.close(1000, 'bye').catch(() => undefined);
    });
    const page = await pageAt(`http://127.0.0.1:${server.port}`);
    try {
      expect(await inPage(page, `ws://127.0.0.1:${server.port}/`, { protocols: ['chat.v2', 'chat.v1'] })).toEqual([['open', 'chat.v1', 'permessage-deflate'], ['close', 1000, 'bye', true]]);
      // WHATWG Fetch: a browser that offered subprotocols fails a 101 that names none.
      expect(await inPage(page, `ws://127.0.0.1:${server.port}/`, { protocols: ['chat.v2'] })).toEqual(['error', ['close', 1006, '', false]]);
      while (accepted.length < 2) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(accepted).toEqual(['chat.v1', '']);
    } finally {
      await page.close();
      await server.close();
    }
  });
});

describe('permessage-deflate settings with Chromium’s offer, many messages sharing history', () => {
  test.each([
    ['serverMaxWindowBits 9 + clientNoContextTakeover', { serverMaxWindowBits: 9, clientNoContextTakeover: true }, false, 'permessage-deflate; client_no_context_takeover; server_max_window_bits=9'],
    ['window 8 both ways', { serverMaxWindowBits: 8, clientMaxWindowBits: 8 }, false, 'permessage-deflate; server_max_window_bits=8; client_max_window_bits=8'],
    ['serverNoContextTakeover', { serverNoContextTakeover: true }, false, 'permessage-deflate; server_no_context_takeover'],
    ['serverMaxWindowBits 9 + clientNoContextTakeover over HTTP/2', { serverMaxWindowBits: 9, clientNoContextTakeover: true }, true, 'permessage-deflate; client_no_context_takeover; server_max_window_bits=9'],
  ])('%s: 60 messages each way, intact', async (_name, perMessageDeflate, h2, extensions) => {
    const received: string[] = [];
    const conns: WebSocketConnection[] = [];
    const server = await serve(
      { host: '127.0.0.1', port: 0, onRequest: page200, perMessageDeflate: { threshold: 0, ...perMessageDeflate }, ...(h2 ? { http2: true as const, tls: TLS } : {}) },
      (conn) => {
        conns.push(conn);
        conn.on('message', (m) => {
          received.push(m as string);
          void conn.send(m).catch(() => undefined);
        });
      },
    );
    const page = await pageAt(`${h2 ? 'https' : 'http'}://127.0.0.1:${server.port}`);
    try {
      const result = await page.evaluate(`(${ROUND_TRIPS})('${h2 ? 'wss' : 'ws'}://127.0.0.1:${server.port}/', 60)`);
      expect(result).toEqual([extensions, 0, [1005, true]]);
      expect(conns.map((c) => [c.transport.kind, c.extensions])).toEqual([[h2 ? 'http2' : 'tcp', extensions]]);
      expect(received).toHaveLength(60);
      await conns[0]!.whenClosed;
    } finally {
      await page.close();
      await server.close();
    }
  });
});

describe('an http2 server and Chromium’s choice of transport', () => {
  test('a page on the server’s own HTTP/2 connection opens its WebSocket as an extended CONNECT; a page from another origin opens it over TLS HTTP/1.1 on the same port', async () => {
    const seen: Array<[string, string, string | undefined]> = [];
    await wssFromTwoOrigins(
      pageAt,
      (conn) => void seen.push([conn.transport.kind, conn.requestLine, conn.headers.origin as string | undefined]),
      (h2Port, otherPort) =>
        expect(seen).toEqual([
          ['http2', 'CONNECT /x HTTP/2.0', `https://127.0.0.1:${h2Port}`],
          ['tls', 'GET /x HTTP/1.1', `http://127.0.0.1:${otherPort}`],
        ]),
    );
  });
});

describe('a page that goes away', () => {
  test('navigating away over HTTP/1.1: the server sees 1001, and a createWebSocketStream pipeline resolves with every message', async () => {
    // Chromium sends 1001 and drops the TCP connection without waiting for the answer: about one
    // time in three the server's socket gets ECONNRESET after that close frame (fixed bug: the
    // stream was then destroyed with an error, and the pipeline rejected).
    const results: Array<Promise<unknown>> = [];
    const piped: string[][] = [];
    const conns: WebSocketConnection[] = [];
    const server = await serve({ host: '127.0.0.1', port: 0, onRequest: page200 }, (conn) => {
      conns.push(conn);
      const got: string[] = [];
      piped.push(got);
      const sink = new Writable({
        objectMode: true,
        write(chunk: unknown, _encoding, callback) {
          got.push(String(chunk));
          callback();
        },
      });
      results.push(pipeline(createWebSocketStream(conn, { objectMode: true }), sink).then(() => 'resolved', (error: unknown) => error));
    });
    const page = await pageAt(`http://127.0.0.1:${server.port}`);
    try {
      await page.evaluate(`Promise.all(Array.from({ length: 12 }, (_, i) => new Promise((resolve) => {
        const ws = new WebSocket('ws://127.0.0.1:${server.port}/s' + i);
        ws.onopen = () => { ws.send('a' + i); ws.send('b' + i); ws.send('ready'); resolve(); };
      })))`);
      while (piped.filter((got) => got.includes('ready')).length < 12) await new Promise((resolve) => setTimeout(resolve, 10));
      await page.goto(`http://127.0.0.1:${server.port}/elsewhere`);
      await Promise.all(conns.map((conn) => conn.whenClosed));
      expect(conns.map((conn) => conn.closeStatus)).toEqual(Array(12).fill(1001));
      expect(await Promise.all(results)).toEqual(Array(12).fill('resolved'));
      expect(piped.map((got) => got.slice(0, 2)).sort()).toEqual(Array.from({ length: 12 }, (_, i) => [`a${i}`, `b${i}`]).sort());
    } finally {
      await page.close();
      await server.close();
    }
  });
});

describe('adapters with a browser', () => {

  async function visit(port: number): Promise<unknown> {
    const page = await browser.newPage();
    try {
      await page.goto(`http://127.0.0.1:${port}/`);
      return await page.evaluate(VISIT);
    } finally {
      await page.close();
    }
  }

  test.each(Object.keys(VISIT_SERVERS) as Array<keyof typeof VISIT_SERVERS>)('%s: a cookie set by a hook or middleware on the 101 reaches document.cookie and the next request; its 401 and beforeAccept’s 403 fail the WebSocket; the framework reports no error', async (name) => {
    const app = await VISIT_SERVERS[name]();
    try {
      expect(await visit(app.port)).toEqual(VISITED(name));
      expect(app.problems()).toEqual([]);
    } finally {
      await app.close();
    }
  });
});
