/**
 * A second real browser: headless Debian Firefox ESR (puppeteer-core over WebDriver BiDi,
 * /usr/bin/firefox-esr, never downloaded) against serve() and the three adapters. Firefox's
 * WebSocket code (Necko) is independent of Chromium's: the same scenarios as server-edges.test.ts
 * (shared in scenarios.ts) and more, over HTTP/1.1 with and without permessage-deflate and over
 * HTTP/2 (RFC 8441 extended CONNECT, which this Firefox uses by default): text at the
 * length-encoding boundaries in 1- to 4-byte characters, binary as ArrayBuffer and Blob, a
 * thousand messages in order, Firefox's permessage-deflate offer and every server setting we have,
 * close codes and 123-byte UTF-8 reasons both ways, terminate(), refusals (beforeAccept's 403, an
 * Origin not allowed, a subprotocol no route has), maxMessageSize, messages sent right before the
 * server's close, wss: over TLS, and a cookie set by a Fastify hook, a Koa or an Express middleware.
 * One browser for the file; each page from the server under test.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Browser, Page } from 'puppeteer-core';
import { serve, serviceMapper, type PerMessageDeflateOptions, type ServeOptions, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { TLS } from '../http2/helpers.js';
import { launchFirefox } from './firefox.js';
import { binaryRoundTrips, forbid, inPage, loadPage, page200, REASON_123, ROUND_TRIPS, VISIT, VISIT_SERVERS, VISITED, wssFromTwoOrigins } from './scenarios.js';

/** What Firefox 153 offers, on every WebSocket: permessage-deflate without parameters. */
const FIREFOX_OFFER = 'permessage-deflate';

let browser: Browser;
beforeAll(async () => {
  browser = await launchFirefox({ acceptInsecureCerts: true });
}, 30_000);
afterAll(async () => {
  await browser?.close();
});

/** A page of this file's browser loaded from `origin`, with `open` defined. */
const pageAt = (origin: string): Promise<Page> => loadPage(() => browser.newPage(), origin);

/** A string of exactly `bytes` UTF-8 bytes: `unit` repeated, padded with ASCII. */
function ofBytes(unit: string, bytes: number): string {
  const size = Buffer.byteLength(unit);
  return unit.repeat(Math.floor(bytes / size)) + 'a'.repeat(bytes % size);
}

/** What the server saw of one connection. */
interface Seen {
  path: string;
  kind: string;
  requestLine: string;
  offer: string | undefined;
  extensions: string;
  messages: Array<string | number>;
  socket: Socket;
  /** Over HTTP/2: the stream's RST_STREAM code at its close (0 is NO_ERROR, our reset right after our END_STREAM; 8 would be CANCEL, at closeTimeout). */
  reset?: number | undefined;
  closeStatus?: number | undefined;
  closeReason?: string | undefined;
}

function tracker(): { seen: Seen[]; track: (conn: WebSocketConnection, req: IncomingMessage) => Seen; next: (path?: string) => Promise<Seen>; drain: () => void } {
  const seen: Seen[] = [];
  const waiting: Array<[string | undefined, (entry: Seen) => void]> = [];
  const closedOnes: Seen[] = [];
  return {
    seen,
    track(conn, req) {
      const entry: Seen = {
        path: conn.path,
        kind: conn.transport.kind,
        requestLine: conn.requestLine,
        offer: req.headers['sec-websocket-extensions'] as string | undefined,
        extensions: conn.extensions,
        messages: [],
        socket: req.socket,
      };
      seen.push(entry);
      conn.on('message', (m) => entry.messages.push(typeof m === 'string' ? m : m.length));
      void conn.whenClosed.then(() => {
        entry.closeStatus = conn.closeStatus;
        entry.closeReason = conn.closeReason;
        if (conn.transport.kind === 'http2') entry.reset = (conn.transport as unknown as { stream: { rstCode?: number } }).stream.rstCode;
        const at = waiting.findIndex(([path]) => path === undefined || path === entry.path);
        if (at >= 0) waiting.splice(at, 1)[0]![1](entry);
        else closedOnes.push(entry);
      });
      return entry;
    },
    /** The next connection to close (in the order they close), of `path` if given. */
    next: (path) => {
      const at = closedOnes.findIndex((entry) => path === undefined || entry.path === path);
      return at >= 0 ? Promise.resolve(closedOnes.splice(at, 1)[0]!) : new Promise((resolve) => waiting.push([path, resolve]));
    },
    /** Forgets the connections closed and not taken (a failed test's), so that the next test's next() is its own. */
    drain: () => void closedOnes.splice(0),
  };
}

/** The server sends these right before its close(4001): all must reach the page. */
const FLUSHED: Array<string | number> = Array.from({ length: 300 }, (_, i) => (i % 50 === 49 ? 'x'.repeat(200_000 + i) : i % 7 === 3 ? i * 10 : `m${i}`));

describe.each([
  ['HTTP/1.1 with permessage-deflate', true, false],
  ['HTTP/1.1 without compression', false, false],
  ['HTTP/2 (extended CONNECT) with permessage-deflate', true, true],
] as const)('Firefox against serve() over %s', (_name, deflate, h2) => {
  let server: WebSocketServer;
  let page: Page;
  let base: string;
  let origin: string;
  const errors: unknown[] = [];
  const { seen, track, next, drain } = tracker();
  const extensions = deflate ? 'permessage-deflate' : '';
  const kind = h2 ? 'http2' : 'tcp';

  beforeAll(async () => {
    const options: ServeOptions = {
      host: '127.0.0.1',
      port: 0,
      onRequest: page200,
      maxMessageSize: 1 << 20,
      perMessageDeflate: deflate,
      // Only pages of this server (req.headers.host is :authority over HTTP/2).
      origins: (offered, req) => offered === `${h2 ? 'https' : 'http'}://${String(req.headers.host)}`,
      beforeAccept: forbid,
      onError: (error) => void errors.push(error),
      ...(h2 ? { http2: true as const, tls: TLS } : {}),
    };
    server = await serve(
      options,
      serviceMapper([
        {
          path: /^\/(echo|forbid)$/,
          handler: (conn, req) => {
            track(conn, req);
            conn.on('message', (m, binary) => void conn.send(m, { binary }).catch(() => undefined));
          },
        },
        {
          path: /^\/close\/(?<code>\d+)$/,
          handler: (conn, req, { params }) => {
            track(conn, req);
            conn.once('message', () => void conn.close(Number(params.code), REASON_123));
          },
        },
        {
          path: '/terminate',
          handler: (conn, req) => {
            track(conn, req);
            conn.once('message', () => conn.terminate());
          },
        },
        {
          path: '/flush',
          handler: (conn, req) => {
            track(conn, req);
            // Not awaited: close() comes right after the sends, with compression still under way.
            for (const m of FLUSHED) void conn.send(typeof m === 'string' ? m : Buffer.alloc(m, m & 255)).catch(() => undefined);
            void conn.close(4001, 'flushed').catch(() => undefined);
          },
        },
        {
          path: '/chat',
          protocols: {
            'chat.v1': (conn, req) => void (track(conn, req), conn.send(`v1 ${conn.protocol}`)),
            'chat.v2': (conn, req) => void (track(conn, req), conn.send(`v2 ${conn.protocol}`)),
          },
        },
      ]),
    );
    origin = `${h2 ? 'https' : 'http'}://127.0.0.1:${server.port}`;
    base = `${h2 ? 'wss' : 'ws'}://127.0.0.1:${server.port}`;
    page = await pageAt(origin);
  });
  beforeEach(drain);
  afterAll(async () => {
    await page?.close();
    await server?.close();
    expect(errors).toEqual([]);
  });

  test(`Firefox offers exactly "${FIREFOX_OFFER}"; the server answers "${extensions}"; the connection is ${kind}`, async () => {
    const events = await inPage(page, `${base}/echo`, { send: ['hi'], closeAfter: 1 });
    expect(events).toEqual([['open', '', extensions], 'hi', ['close', 1000, 'page', true]]);
    const entry = await next('/echo');
    expect(entry).toMatchObject({
      kind,
      requestLine: h2 ? 'CONNECT /echo HTTP/2.0' : 'GET /echo HTTP/1.1',
      offer: FIREFOX_OFFER,
      extensions,
      messages: ['hi'],
      closeStatus: 1000,
      closeReason: 'page',
    });
    // Over HTTP/2, Firefox 153 answers our END_STREAM with neither END_STREAM nor RST_STREAM
    // (Chromium ends its side): the server does not wait for it, and resets the stream with
    // NO_ERROR right after its END_STREAM (RFC 9113 §8.1), a clean close, not CANCEL at
    // closeTimeout (5 s here, the default; this test would take that long for each connection).
    expect(entry.reset).toBe(h2 ? 0 : undefined);
  });

  test('text of 0 to 65537 UTF-8 bytes (the 125/126/65535/65536 edges) in 1-, 2-, 3- and 4-byte characters round-trips exactly', async () => {
    const texts = ['a', 'é', '€', '😀'].flatMap((unit) => [0, 1, 125, 126, 127, 65535, 65536, 65537].map((bytes) => ofBytes(unit, bytes)));
    const result = await page.evaluate(`(async () => {
      const ws = new WebSocket('${base}/echo');
      const queue = []; let wake;
      ws.onmessage = (e) => { queue.push(e.data); wake?.(); };
      await new Promise((r) => (ws.onopen = r));
      const out = [];
      for (const text of ${JSON.stringify(texts)}) {
        ws.send(text);
        while (!queue.length) await new Promise((r) => (wake = r));
        const got = queue.shift();
        out.push([new TextEncoder().encode(got).length, got === text]);
      }
      ws.close();
      return out;
    })()`);
    expect(result).toEqual(texts.map((text) => [Buffer.byteLength(text), true]));
    const entry = await next('/echo');
    expect(entry.messages).toEqual(texts);
    expect(entry.closeStatus).toBe(1005);
  });

  test.each(['arraybuffer', 'blob'] as const)('binary of 0, 1, 125, 126, 65535, 65536 and 1 MiB round-trips intact (binaryType %s)', async (binaryType) => {
    const sizes = [0, 1, 125, 126, 65535, 65536, 1 << 20];
    const result = await page.evaluate(binaryRoundTrips(`${base}/echo`, binaryType, sizes));
    expect(result).toEqual(sizes.map((size) => [binaryType === 'blob' ? 'Blob' : 'ArrayBuffer', size, true]));
    expect((await next('/echo')).messages).toEqual(sizes);
  });

  test('1000 messages sent at once, text and binary mixed, arrive in order both ways', async () => {
    const result = await page.evaluate(`(async () => {
      const ws = new WebSocket('${base}/echo');
      ws.binaryType = 'arraybuffer';
      const got = [];
      await new Promise((r) => (ws.onopen = r));
      const done = new Promise((r) => (ws.onmessage = (e) => { got.push(typeof e.data === 'string' ? e.data : e.data.byteLength); if (got.length === 1000) r(); }));
      for (let i = 0; i < 1000; i++) ws.send(i % 3 ? 'n' + i + '-' + 'é'.repeat(i) : new Uint8Array(i));
      await done;
      ws.close(1000);
      return got;
    })()`);
    const expected = Array.from({ length: 1000 }, (_, i) => (i % 3 ? `n${i}-${'é'.repeat(i)}` : i));
    expect(result).toEqual(expected);
    expect((await next('/echo')).messages).toEqual(expected);
  });

  test('close(4000, a 123-byte UTF-8 reason) from the page: the server sees that code and reason', async () => {
    const events = await inPage(page, `${base}/echo`, { send: ['hi'], closeAfter: 1, closeWith: [4000, REASON_123] });
    expect(events).toEqual([['open', '', extensions], 'hi', ['close', 4000, REASON_123, true]]);
    expect(await next('/echo')).toMatchObject({ kind, closeStatus: 4000, closeReason: REASON_123 });
  });

  test.each([1000, 1001, 1011, 3000, 4000, 4999])('the server closes with %i and a 123-byte UTF-8 reason: the page gets both, cleanly', async (code) => {
    const events = await inPage(page, `${base}/close/${code}`, { send: ['go'] });
    expect(events).toEqual([['open', '', extensions], ['close', code, REASON_123, true]]);
    expect(await next(`/close/${code}`)).toMatchObject({ closeStatus: code, closeReason: REASON_123 });
  });

  test('terminate(): the page sees an error event, then 1006, not clean', async () => {
    const events = await inPage(page, `${base}/terminate`, { send: ['x'] });
    // Unlike Chromium, which fires no error event when the connection drops after the open.
    expect(events).toEqual([['open', '', extensions], 'error', ['close', 1006, '', false]]);
    expect((await next('/terminate')).closeStatus).toBe(1006);
  });

  test('a message over maxMessageSize (1 MiB): the page gets 1009 and the reason', async () => {
    const events = await inPage(page, `${base}/echo`, { send: ['y'.repeat((1 << 20) + 1)] });
    // Firefox sends it as one frame: uncompressed, maxFrameSize (maxMessageSize's) catches it first.
    const reason = deflate ? 'inflated message exceeds 1048576 bytes' : 'frame of 1048577 bytes exceeds maxFrameSize 1048576';
    // A failure ends our side right after our close frame (RFC 6455 §7.1.7), without waiting for
    // the peer's. Chromium answers it and reports a clean close. Firefox, when it reads our FIN
    // (or END_STREAM) with the close frame, reports wasClean false without answering: over TCP
    // it most of the time ends its side then; over HTTP/2, every time in our runs, it neither
    // answers nor ends the stream: our server resets it with NO_ERROR right after its END_STREAM,
    // as after a completed close handshake (the peer's input is not read after a failure).
    expect(events.slice(0, 1)).toEqual([['open', '', extensions]]);
    expect(events.slice(1).map((event) => (event as unknown[]).slice(0, 3))).toEqual([['close', 1009, reason]]);
    const entry = await next('/echo');
    expect(entry).toMatchObject({ closeStatus: 1009, closeReason: reason });
    expect(entry.reset).toBe(h2 ? 0 : undefined);
  });

  test('300 messages (six of about 200 kB) sent right before the server’s close(4001) all reach the page, in order, then the close', async () => {
    const events = await inPage(page, `${base}/flush`);
    const expected = FLUSHED.map((m) => (typeof m === 'number' ? `arraybuffer ${m}` : m));
    expect(events).toEqual([['open', '', extensions], ...expected, ['close', 4001, 'flushed', true]]);
    expect(await next('/flush')).toMatchObject({ closeStatus: 4001, closeReason: 'flushed' });
  });

  test('refusals fail the page’s WebSocket (error, then close 1006) and run no handler: beforeAccept’s 403, an Origin not allowed, a subprotocol no route has', async () => {
    expect(await inPage(page, `${base}/chat`, { protocols: ['zz', 'chat.v2', 'chat.v1'], closeAfter: 1 })).toEqual([
      ['open', 'chat.v2', extensions],
      'v2 chat.v2',
      ['close', 1000, 'page', true],
    ]);
    expect(await next('/chat')).toMatchObject({ closeStatus: 1000 });
    const before = seen.length;
    const failed = ['error', ['close', 1006, '', false]];
    expect(await inPage(page, `${base}/forbid`, { send: ['x'] })).toEqual(failed);
    expect(await inPage(page, `${base}/chat`, { protocols: ['zz'] })).toEqual(failed);
    expect(await inPage(page, `${base}/chat`)).toEqual(failed);
    // A page from another origin (another server), to the same echo route that takes this server's pages.
    const other = await serve({ host: '127.0.0.1', port: 0, onRequest: page200 }, () => undefined);
    const foreign = await pageAt(`http://127.0.0.1:${other.port}`);
    try {
      expect(await inPage(foreign, `${base}/echo`, { send: ['x'] })).toEqual(failed);
    } finally {
      await foreign.close();
      await other.close();
    }
    expect(seen.length).toBe(before);
  });
});

/** In the page: sends each of `messages` (a number n: n zero bytes) and checks its echo; then closes. */
const LARGE = String(async function large(url: string, messages: Array<string | number>): Promise<unknown[]> {
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  const queue: unknown[] = [];
  let wake: (() => void) | undefined;
  ws.onmessage = (e: { data: unknown }) => {
    queue.push(e.data);
    wake?.();
  };
  await new Promise((resolve) => (ws.onopen = resolve));
  const out: unknown[] = [];
  for (const m of messages) {
    ws.send(typeof m === 'string' ? m : new Uint8Array(m));
    while (!queue.length) await new Promise<void>((resolve) => (wake = resolve));
    const got = queue.shift();
    out.push(typeof m === 'string' ? got === m : got instanceof ArrayBuffer && got.byteLength === m && new Uint8Array(got).every((b) => b === 0));
  }
  const closed = new Promise((resolve) => (ws.onclose = (e) => resolve([e.code, e.wasClean])));
  ws.close();
  return [ws.extensions, out, await closed];
});

describe('permessage-deflate with Firefox’s offer and each server setting: 60 similar messages, then large repetitive ones, each way', () => {
  // About 2.6 MB each way in all: 60 growing texts sharing words, 1 MiB of "abc", 1 MiB of zero
  // bytes and 64 kB of varied text. Compressed, the socket carries a small part of it.
  const large: Array<string | number> = ['abc'.repeat(349_525), 1 << 20, Array.from({ length: 8192 }, (_, i) => `w${(i * 7919) % 1000}`.padEnd(8, '.')).join('')];

  test.each<[string, PerMessageDeflateOptions | false, boolean, string]>([
    ['our defaults', {}, false, 'permessage-deflate'],
    ['serverNoContextTakeover', { serverNoContextTakeover: true }, false, 'permessage-deflate; server_no_context_takeover'],
    ['clientNoContextTakeover', { clientNoContextTakeover: true }, false, 'permessage-deflate; client_no_context_takeover'],
    ['serverMaxWindowBits 9', { serverMaxWindowBits: 9 }, false, 'permessage-deflate; server_max_window_bits=9'],
    ['serverMaxWindowBits 8, both no context takeover', { serverMaxWindowBits: 8, serverNoContextTakeover: true, clientNoContextTakeover: true }, false, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8'],
    // Firefox's offer has no client_max_window_bits, so the server cannot bound Firefox's window
    // (RFC 7692 §7.1.2.2): with clientMaxWindowBits below 15 we decline, and Firefox gets no compression.
    ['clientMaxWindowBits 9 (Firefox does not offer client_max_window_bits: declined)', { clientMaxWindowBits: 9 }, false, ''],
    ['threshold 1024', { threshold: 1024 }, false, 'permessage-deflate'],
    ['serverMaxWindowBits 10 + serverNoContextTakeover over HTTP/2', { serverMaxWindowBits: 10, serverNoContextTakeover: true }, true, 'permessage-deflate; server_no_context_takeover; server_max_window_bits=10'],
    ['compression off', false, false, ''],
  ])('%s', async (_name, perMessageDeflate, h2, extensions) => {
    // Firefox's WebSocket.extensions names the extension without the parameters of the answer.
    const inPageExtensions = extensions.split(';')[0];
    const { seen, track, next } = tracker();
    const server = await serve({ host: '127.0.0.1', port: 0, onRequest: page200, perMessageDeflate, ...(h2 ? { http2: true as const, tls: TLS } : {}) }, (conn, req) => {
      track(conn, req);
      conn.on('message', (m, binary) => void conn.send(m, { binary }).catch(() => undefined));
    });
    const page = await pageAt(`${h2 ? 'https' : 'http'}://127.0.0.1:${server.port}`);
    try {
      const url = `${h2 ? 'wss' : 'ws'}://127.0.0.1:${server.port}/`;
      expect(await page.evaluate(`(${ROUND_TRIPS})('${url}', 60)`)).toEqual([inPageExtensions, 0, [1005, true]]);
      expect(await page.evaluate(`(${LARGE})('${url}', ${JSON.stringify(large)})`)).toEqual([inPageExtensions, [true, true, true], [1005, true]]);
      const [rounds, big] = [await next(), await next()];
      expect(seen.map((entry) => [entry.kind, entry.offer, entry.extensions])).toEqual(Array(2).fill([h2 ? 'http2' : 'tcp', FIREFOX_OFFER, extensions]));
      expect(rounds.messages).toHaveLength(60);
      expect(big.messages).toEqual([large[0], 1 << 20, large[2]]);
      if (!h2) {
        // What crossed the socket of the large messages' connection (handshake included), each way.
        const total = Buffer.byteLength(large[0] as string) + (1 << 20) + Buffer.byteLength(large[2] as string);
        if (extensions === '') {
          expect(big.socket.bytesRead).toBeGreaterThan(total);
          expect(big.socket.bytesWritten).toBeGreaterThan(total);
        } else {
          expect(big.socket.bytesRead).toBeLessThan(total / 10);
          expect(big.socket.bytesWritten).toBeLessThan(total / 10);
        }
      }
    } finally {
      await page.close();
      await server.close();
    }
  });

  test('threshold: messages under it go out uncompressed, the rest compressed (bytes on the socket, 200 echoes of 1000 repetitive bytes)', async () => {
    const written: number[] = [];
    for (const threshold of [1024, 0]) {
      const { track, next } = tracker();
      const server = await serve({ host: '127.0.0.1', port: 0, onRequest: page200, perMessageDeflate: { threshold } }, (conn, req) => {
        track(conn, req);
        conn.on('message', (m) => void conn.send(m).catch(() => undefined));
      });
      const page = await pageAt(`http://127.0.0.1:${server.port}`);
      try {
        const messages = Array.from({ length: 200 }, (_, i) => `${i}`.padEnd(1000, 'z'));
        expect(await page.evaluate(`(${LARGE})('ws://127.0.0.1:${server.port}/', ${JSON.stringify(messages)})`)).toEqual(['permessage-deflate', Array(200).fill(true), [1005, true]]);
        written.push((await next()).socket.bytesWritten);
      } finally {
        await page.close();
        await server.close();
      }
    }
    expect(written[0]).toBeGreaterThan(200 * 1000);
    expect(written[1]).toBeLessThan(200 * 100);
  });
});

describe('wss: and HTTP/2', () => {
  test('wss: over serve({ tls }) (TLS, HTTP/1.1): echo, subprotocol, permessage-deflate, close both ways', async () => {
    const { track, next } = tracker();
    const server = await serve({ host: '127.0.0.1', port: 0, onRequest: page200, tls: TLS, protocols: ['chat.v1'] }, (conn, req) => {
      track(conn, req);
      conn.on('message', (m) => void (m === 'bye' ? conn.close(4002, REASON_123) : conn.send(m)).catch(() => undefined));
    });
    const page = await pageAt(`https://127.0.0.1:${server.port}`);
    try {
      const url = `wss://127.0.0.1:${server.port}/tls`;
      expect(await inPage(page, url, { protocols: ['chat.v1'], send: ['héllo 😀', 70_000], closeAfter: 2, closeWith: [4000, 'page'] })).toEqual([
        ['open', 'chat.v1', 'permessage-deflate'],
        'héllo 😀',
        'arraybuffer 70000',
        ['close', 4000, 'page', true],
      ]);
      expect(await next()).toMatchObject({ kind: 'tls', requestLine: 'GET /tls HTTP/1.1', offer: FIREFOX_OFFER, messages: ['héllo 😀', 70_000], closeStatus: 4000 });
      expect(await inPage(page, url, { send: ['bye'] })).toEqual([['open', '', 'permessage-deflate'], ['close', 4002, REASON_123, true]]);
      expect(await next()).toMatchObject({ kind: 'tls', closeStatus: 4002, closeReason: REASON_123 });
    } finally {
      await page.close();
      await server.close();
    }
  });

  test('an http2 server: a page of its own origin, and one from another origin, both open their WebSocket as an RFC 8441 extended CONNECT', async () => {
    const { track, next } = tracker();
    const methods: Array<[string | undefined, string]> = [];
    await wssFromTwoOrigins(
      pageAt,
      (conn, req) => {
        methods.push([req.method, req.httpVersion]);
        track(conn, req);
      },
      async () => {
        const entries = [await next(), await next()];
        expect(entries.map((entry) => [entry.kind, entry.requestLine, entry.offer])).toEqual(Array(2).fill(['http2', 'CONNECT /x HTTP/2.0', FIREFOX_OFFER]));
        expect(methods).toEqual(Array(2).fill(['CONNECT', '2.0']));
      },
    );
  });
});

test.each(Object.keys(VISIT_SERVERS) as Array<keyof typeof VISIT_SERVERS>)('%s: a cookie set by a hook or middleware on the 101 reaches document.cookie and the next request; its 401 and beforeAccept’s 403 fail the WebSocket; the framework reports no error', async (name) => {
  const app = await VISIT_SERVERS[name]();
  // A context of its own: cookies are kept per host, not per port, and each app sets `sid`.
  const context = await browser.createBrowserContext();
  try {
    const page = await context.newPage();
    await page.goto(`http://127.0.0.1:${app.port}/`);
    expect(await page.evaluate(VISIT)).toEqual(VISITED(name));
    expect(app.problems()).toEqual([]);
  } finally {
    await context.close();
    await app.close();
  }
});
