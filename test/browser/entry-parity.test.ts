/**
 * Headless Debian Chromium (playwright-core, /usr/bin/chromium, never downloaded) against every
 * server entry point, as a table: serve() over HTTP/1.1, TLS and HTTP/2; handleUpgrade() on a Node
 * http.Server; attachHttp2() on a Node http2 secure server; the Express, Koa and Fastify adapters
 * (Fastify over HTTP/2 too); and serve()'s and Fastify's HTTP/2 ports from a page of another origin
 * (Chromium then has no HTTP/2 session there and upgrades over TLS HTTP/1.1). The page comes from a
 * server (Chromium blocks about:blank from connecting to 127.0.0.1), and the same script runs in it:
 * the subprotocol and permessage-deflate negotiated, text (ASCII, astral, 64 KiB) and binary
 * (ArrayBuffer, Blob, 1 MiB) echoed, a ping from the server (Chromium's pong resolves
 * conn.ping()), the server's close with 4000 and a UTF-8 reason, the browser's with 3001 and one,
 * no subprotocol the route has (refused, no handler runs), a message over maxMessageSize (1009),
 * the page going away, and the entry point's own shutdown (1001, after 4 MiB still being sent).
 * Every row is the same. Where Chromium speaks HTTP/2 to the page's origin it opens its WebSockets
 * as extended CONNECTs (RFC 8441) on that session (conn.transport.kind 'http2'), on all three
 * HTTP/2 entry points; the one cell that differs there is the page going away (Chromium resets the
 * stream without a close frame: 1006, where HTTP/1.1 gets its 1001).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Browser } from 'playwright-core';
import { serve, serviceMapper, type UpgradeOptions, type WebSocketConnection } from 'rfc6455';
import { attachHttp2Entry, EXPRESS, FASTIFY_HTTP2, fastifyEntry, handleUpgradeEntry, KOA, SERVE, SERVE_HTTP2, SERVE_TLS, type EntryPoint as Entry, type Mount } from '../robustness/entry-points.js';
import { launchChromium } from './chromium.js';

const HTML = '<!doctype html><meta charset="utf-8"><title>entry parity</title>';
const MAX = 2 << 20;
const SERVER_REASON = 'fermé ✓ 😀';
const BROWSER_REASON = 'adieu — ☃';

function page200(_req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse): void {
  (res as ServerResponse).writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(HTML);
}

/** What the server saw of one connection. */
interface ServerSide {
  path: string;
  kind: string;
  protocol: string;
  extensions: string;
  closeStatus?: number | undefined;
  closeReason?: string | undefined;
}

let seen: ServerSide[] = [];
let opened: WebSocketConnection[] = [];
let onOpen: (() => void) | undefined;

function handler(conn: WebSocketConnection): void {
  const entry: ServerSide = { path: conn.path, kind: conn.transport.kind, protocol: conn.protocol, extensions: conn.extensions };
  seen.push(entry);
  opened.push(conn);
  conn.on('error', () => undefined);
  conn.on('close', (code, reason) => {
    entry.closeStatus = code;
    entry.closeReason = reason;
  });
  if (conn.path === '/echo') {
    conn.on('message', (m, binary) => void conn.send(m, { binary }).catch(() => undefined));
  } else if (conn.path === '/ping') {
    conn.ping(Buffer.from('are you there')).then(
      () => void conn.send('pong').catch(() => undefined),
      (error: unknown) => void conn.send(`ping failed: ${String(error)}`).catch(() => undefined),
    );
  } else if (conn.path === '/close') {
    conn.once('message', () => void conn.close(4000, SERVER_REASON).catch(() => undefined));
  }
  onOpen?.();
}

const mapper = serviceMapper([{ path: /^\/(echo|ping|close|leave|quit)$/, protocols: { 'chat.v1': handler } }]);
const OPTIONS: UpgradeOptions<unknown> = { maxMessageSize: MAX };

interface Running {
  /** The server's origin (http: or https:); the page's too unless `pageOrigin` is given. */
  origin: string;
  /** The origin of the page, when it comes from another server. */
  pageOrigin?: string;
  /** Closes the WebSockets the way that entry point does on shutdown. */
  shutdown(): Promise<void>;
  /** Stops whatever is left. */
  stop(): Promise<void>;
}

interface EntryPoint {
  name: string;
  /** The transport Chromium uses from a page of the same server. */
  kind: 'tcp' | 'tls' | 'http2';
  start(): Promise<Running>;
}

/** The shutdown of handleUpgrade() and attachHttp2(): the connections Set, each closed with 1001. */
async function closeAll(connections: Set<WebSocketConnection>): Promise<void> {
  await Promise.all([...connections].map((conn) => conn.close(1001, 'server shutting down').catch(() => undefined)));
}

/** The page, on each framework's app: its own route (or middleware). */
const PAGES: Mount = {
  express: (app) => void app.get('/', (req, res) => page200(req, res)),
  koa: (app) =>
    void app.use((ctx) => {
      ctx.type = 'html';
      ctx.body = HTML;
    }),
  fastify: (app) => void app.get('/', async (_request, reply) => reply.type('text/html; charset=utf-8').send(HTML)),
};

const KINDS = { h1: 'tcp', tls: 'tls', h2: 'http2' } as const;

/** `entry` with the mapper and OPTIONS, the page on every plain GET /. */
function entryPoint(entry: Entry): EntryPoint {
  return {
    name: entry.name,
    kind: KINDS[entry.transport as keyof typeof KINDS],
    async start() {
      // handleUpgrade() and attachHttp2() are given a connections Set (they have no shutdown of their own).
      const connections = new Set<WebSocketConnection>();
      const takesSet = entry.api === 'handleUpgrade' || entry.api === 'attachHttp2';
      const options = { ...OPTIONS, ...(entry.api === 'serve' && { onRequest: page200 }), ...(takesSet && { connections }) };
      const started = await entry.start({ target: mapper, options, mount: PAGES });
      return { origin: started.origin, shutdown: takesSet ? () => closeAll(connections) : started.shutdown!, stop: started.close };
    },
  };
}

const entryPoints: EntryPoint[] = [
  SERVE,
  SERVE_TLS,
  SERVE_HTTP2,
  handleUpgradeEntry('handleUpgrade() on http.Server', page200),
  attachHttp2Entry('attachHttp2() on http2.createSecureServer', { secure: true, serverOptions: {}, requestListener: page200 }),
  EXPRESS,
  KOA,
  fastifyEntry(false, 'Fastify', true),
  FASTIFY_HTTP2,
].map(entryPoint);

/**
 * The entry point `entry` of an HTTP/2 server (which takes HTTP/1.1 upgrades over TLS too) from a
 * page of another origin (plain HTTP): Chromium has no HTTP/2 session to the server then, and
 * opens its WebSockets with an HTTP/1.1 upgrade over TLS.
 */
function fromAnotherOrigin(entry: EntryPoint): EntryPoint {
  return {
    name: `${entry.name}, page from another origin`,
    kind: 'tls',
    async start() {
      const running = await entry.start();
      const pages = await serve({ host: '127.0.0.1', port: 0, onRequest: page200 }, () => undefined);
      return {
        ...running,
        pageOrigin: `http://127.0.0.1:${pages.port}`,
        stop: async () => {
          await pages.close();
          await running.stop();
        },
      };
    },
  };
}
entryPoints.push(...entryPoints.filter((e) => e.name === 'serve({ http2: true })' || e.name === 'Fastify over HTTP/2').map(fromAnotherOrigin));

/** In the page: every check but the shutdown, in order; resolves with what the browser saw. */
const PROBE = String(async function probe(base: string, maxMessageSize: number, browserReason: string): Promise<Record<string, unknown>> {
  const open = (path: string, protocols = ['zz', 'chat.v1']) => {
    const ws = new WebSocket(base + path, protocols);
    ws.binaryType = 'arraybuffer';
    const queue: unknown[] = [];
    let wake: (() => void) | undefined;
    ws.onmessage = (e) => {
      queue.push(e.data);
      wake?.();
    };
    const opened = new Promise((resolve) => {
      ws.onopen = () => resolve(true);
      ws.onerror = () => resolve(false);
    });
    const closed = new Promise<unknown[]>((resolve) => (ws.onclose = (e) => resolve([e.code, e.reason, e.wasClean])));
    const next = async (): Promise<unknown> => {
      while (!queue.length) await new Promise<void>((resolve) => (wake = resolve));
      return queue.shift();
    };
    return { ws, opened, closed, next };
  };
  const bytes = (n: number) => new Uint8Array(n).map((_, i) => (i * 7 + (i >> 8)) & 255);
  const same = async (sent: Uint8Array, got: unknown) => {
    const back = new Uint8Array(got instanceof Blob ? await got.arrayBuffer() : (got as ArrayBuffer));
    return got instanceof ArrayBuffer && back.length === sent.length && back.every((b, i) => b === sent[i]);
  };
  const row: Record<string, unknown> = {};

  const echo = open('/echo');
  row.opened = await echo.opened;
  row.protocol = echo.ws.protocol;
  row.extensions = echo.ws.extensions;
  const texts = ['hello', '😀 𝄞 \u{10FFFF} '.repeat(500), Array.from({ length: 65536 }, (_, i) => String.fromCharCode(32 + ((i * 31) % 95))).join('')];
  row.text = [];
  for (const text of texts) {
    echo.ws.send(text);
    (row.text as unknown[]).push((await echo.next()) === text);
  }
  row.binary = [];
  for (const [kind, sent] of [['arraybuffer', bytes(1000)], ['blob', bytes(5000)], ['1 MiB', bytes(1 << 20)]] as const) {
    echo.ws.send(kind === 'arraybuffer' ? sent.buffer : kind === 'blob' ? new Blob([sent]) : sent);
    (row.binary as unknown[]).push(await same(sent, await echo.next()));
  }
  echo.ws.close(3001, browserReason);
  row.browserClose = await echo.closed;

  const ping = open('/ping');
  row.ping = await ping.next();
  ping.ws.close();
  await ping.closed;

  const close = open('/close');
  await close.opened;
  close.ws.send('go');
  row.serverClose = await close.closed;

  // No subprotocol the route has: refused (400) before any handler runs; the browser fails.
  const refused = open('/echo', ['zz']);
  row.refused = [await refused.opened, await refused.closed];

  const big = open('/echo');
  await big.opened;
  big.ws.send(bytes(maxMessageSize + 1));
  row.tooBig = await big.closed;
  return row;
});

let browser: Browser;
beforeAll(async () => {
  browser = await launchChromium(['--ignore-certificate-errors']);
}, 30_000);
afterAll(async () => {
  await browser?.close();
});

describe.each(entryPoints.map((e) => [e.name, e] as const))('%s', (_name, entry) => {
  test('Chromium: the same row as every other entry point', async () => {
    seen = [];
    opened = [];
    const running = await entry.start();
    const page = await browser.newPage();
    try {
      await page.goto((running.pageOrigin ?? running.origin) + '/');
      const base = running.origin.replace(/^http/, 'ws');
      const row = (await page.evaluate(`(${PROBE})(${JSON.stringify(base)}, ${MAX}, ${JSON.stringify(BROWSER_REASON)})`)) as Record<string, unknown>;

      /** Opens a WebSocket to `path` in the page (its close event, with the bytes received, as `window[path]`); resolves with the server's side. */
      const openInPage = async (path: string): Promise<WebSocketConnection> => {
        const serverSide = new Promise<WebSocketConnection>((resolve) => (onOpen = () => opened.at(-1)!.path === path && resolve(opened.at(-1)!)));
        await page.evaluate(`window[${JSON.stringify(path)}] = new Promise((resolve) => {
          const ws = new WebSocket(${JSON.stringify(base + path)}, ['chat.v1']);
          ws.binaryType = 'arraybuffer';
          let received = 0;
          ws.onmessage = (e) => (received += e.data.byteLength);
          ws.onclose = (e) => resolve([e.code, e.reason, e.wasClean, received]);
        }), 0`);
        return serverSide;
      };
      await Promise.all(opened.map((conn) => conn.whenClosed));

      // The page going away: over HTTP/1.1 Chromium sends a close frame with 1001 (and drops the
      // connection); over HTTP/2 it resets the stream (RST_STREAM CANCEL) without a close frame,
      // which is 1006 (docs/http2.md: a stream reset ends that one WebSocket with 1006).
      const leaving = await openInPage('/leave');
      await page.goto((running.pageOrigin ?? running.origin) + '/?away');
      await leaving.whenClosed;

      // The shutdown: a WebSocket open in the page, then the entry point's own way of closing.
      // (With 4 MiB of messages still on their way to the browser: they arrive first.)
      const quitting = await openInPage('/quit');
      for (let i = 0; i < 4; i++) void quitting.send(Buffer.alloc(1 << 20, i)).catch(() => undefined);
      await running.shutdown();
      row.shutdown = await page.evaluate(`window['/quit']`);
      await quitting.whenClosed;
      await Promise.all(opened.map((conn) => conn.whenClosed));

      expect(row).toEqual({
        opened: true,
        protocol: 'chat.v1',
        extensions: 'permessage-deflate',
        text: [true, true, true],
        binary: [true, true, true],
        browserClose: [3001, BROWSER_REASON, true],
        ping: 'pong',
        serverClose: [4000, SERVER_REASON, true],
        refused: [false, [1006, '', false]],
        tooBig: [1009, `inflated message exceeds ${MAX} bytes`, true],
        shutdown: [1001, 'server shutting down', true, 4 << 20],
      });
      const server = (path: string, closeStatus: number, closeReason: string): ServerSide => ({
        path,
        kind: entry.kind,
        protocol: 'chat.v1',
        extensions: 'permessage-deflate',
        closeStatus,
        closeReason,
      });
      expect(seen).toEqual([
        server('/echo', 3001, BROWSER_REASON),
        server('/ping', 1005, ''),
        server('/close', 4000, SERVER_REASON),
        server('/echo', 1009, `inflated message exceeds ${MAX} bytes`),
        server('/leave', entry.kind === 'http2' ? 1006 : 1001, ''),
        server('/quit', 1001, 'server shutting down'),
      ]);
    } finally {
      onOpen = undefined;
      await page.close();
      await running.stop();
    }
  });
});
