/**
 * Page scripts and server pieces shared by the browser suites (Chromium's server-edges.test.ts and
 * Firefox's firefox.test.ts), so that both browsers run the very same scenarios, the three
 * adapters' apps among them (VISIT_SERVERS).
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import Fastify from 'fastify';
import Koa from 'koa';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve, serviceMapper, type ConnectionHandler, type WebSocketConnection } from 'rfc6455';
import { websocket as expressWebSocket } from '@rfc6455/express';
import { websocket as koaWebSocket } from '@rfc6455/koa';
import { wsPlugin } from '@rfc6455/fastify';
import { TLS } from '../http2/helpers.js';

/** The page every scenario runs in (loaded from the server under test: see each suite). */
export const HTML = '<!doctype html><meta charset="utf-8"><title>edges</title>';

/** An `onRequest` that answers every request with {@link HTML}. */
export function page200(_req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(HTML);
}

/** A reason of exactly 123 UTF-8 bytes, with 2-, 3- and 4-byte characters. */
export const REASON_123 = 'é€😀'.repeat(13) + 'abcd';

/**
 * In the page: opens a WebSocket, sends `send` once open (a number n: n bytes of a pattern), closes
 * with `closeWith` after `closeAfter` messages; resolves with the events, as JSON.
 */
export const OPEN = String(function open(
  url: string,
  o: { protocols?: string[]; send?: Array<string | number>; binaryType?: 'blob' | 'arraybuffer'; closeAfter?: number; closeWith?: [number, string] },
): Promise<unknown[]> {
  return new Promise((resolve) => {
    const ws = o.protocols ? new WebSocket(url, o.protocols) : new WebSocket(url);
    ws.binaryType = o.binaryType ?? 'arraybuffer';
    const events: unknown[] = [];
    let received = 0;
    ws.onopen = () => {
      events.push(['open', ws.protocol, ws.extensions]);
      for (const m of o.send ?? []) ws.send(typeof m === 'string' ? m : new Uint8Array(m).map((_, i) => i * 7 + (i >> 8)));
      if (o.closeAfter === 0) ws.close(...(o.closeWith ?? [1000, 'page']));
    };
    ws.onmessage = (e: { data: unknown }) => {
      events.push(typeof e.data === 'string' ? e.data : e.data instanceof Blob ? `blob ${e.data.size}` : `arraybuffer ${(e.data as ArrayBuffer).byteLength}`);
      if (++received === o.closeAfter) ws.close(...(o.closeWith ?? [1000, 'page']));
    };
    ws.onerror = () => events.push('error');
    ws.onclose = (e) => {
      events.push(['close', e.code, e.reason, e.wasClean]);
      resolve(events);
    };
  });
});

/** What a page of either driver offers here (playwright-core's for Chromium, puppeteer-core's for Firefox). */
export interface ScenarioPage {
  goto(url: string): Promise<unknown>;
  evaluate(script: string): Promise<unknown>;
}

/** A new page (`newPage`, the browser's) loaded from `origin`, with {@link OPEN} defined in it. */
export async function loadPage<P extends ScenarioPage>(newPage: () => Promise<P>, origin: string): Promise<P> {
  const page = await newPage();
  await page.goto(origin + '/');
  await page.evaluate(`window.open = ${OPEN}`);
  return page;
}

/** Runs {@link OPEN} in `page` against `url` with options `o`; resolves with its events. */
export function inPage(page: ScenarioPage, url: string, o: Record<string, unknown> = {}): Promise<unknown[]> {
  return page.evaluate(`open(${JSON.stringify(url)}, ${JSON.stringify(o)})`) as Promise<unknown[]>;
}

/**
 * An HTTP/2 server (TLS, pages from {@link page200}, an echo whose connections `onConnection`
 * sees first) and a plain HTTP server of another origin: a page from each, in turn, opens
 * `wss://127.0.0.1:<h2 port>/x`, sends one message and closes once it is echoed, cleanly. Then
 * `check` (given the two ports) runs before both servers close.
 */
export async function wssFromTwoOrigins<P extends ScenarioPage & { close(): Promise<unknown> }>(
  pageAt: (origin: string) => Promise<P>,
  onConnection: ConnectionHandler,
  check: (h2Port: number, otherPort: number) => unknown,
): Promise<void> {
  const h2 = await serve({ host: '127.0.0.1', port: 0, http2: true, tls: TLS, onRequest: page200 }, (conn, req, context) => {
    void onConnection(conn, req, context);
    conn.on('message', (m) => void conn.send(m).catch(() => undefined));
  });
  const other = await serve({ host: '127.0.0.1', port: 0, onRequest: page200 }, () => undefined);
  try {
    for (const origin of [`https://127.0.0.1:${h2.port}`, `http://127.0.0.1:${other.port}`]) {
      const page = await pageAt(origin);
      try {
        expect(await inPage(page, `wss://127.0.0.1:${h2.port}/x`, { send: ['over which?'], closeAfter: 1 })).toEqual([
          ['open', '', 'permessage-deflate'],
          'over which?',
          ['close', 1000, 'page', true],
        ]);
      } finally {
        await page.close();
      }
    }
    await check(h2.port, other.port);
  } finally {
    await h2.close();
    await other.close();
  }
}

/**
 * An expression for the page: sends binary messages of `sizes` bytes (a pattern) to the echo at
 * `url` one at a time, as a Blob or a Uint8Array, and resolves with, for each echo, its class, its
 * length and whether every byte came back.
 */
export function binaryRoundTrips(url: string, binaryType: 'arraybuffer' | 'blob', sizes: number[]): string {
  return `(async () => {
    const ws = new WebSocket(${JSON.stringify(url)});
    ws.binaryType = '${binaryType}';
    const queue = []; let wake;
    ws.onmessage = (e) => { queue.push(e.data); wake?.(); };
    await new Promise((r) => (ws.onopen = r));
    const out = [];
    for (const size of ${JSON.stringify(sizes)}) {
      const bytes = new Uint8Array(size).map((_, i) => (i * 7 + (i >> 8)) & 255);
      ws.send('${binaryType}' === 'blob' ? new Blob([bytes]) : bytes);
      while (!queue.length) await new Promise((r) => (wake = r));
      const got = queue.shift();
      const back = new Uint8Array(got instanceof Blob ? await got.arrayBuffer() : got);
      out.push([got.constructor.name, back.length, back.every((b, i) => b === bytes[i])]);
    }
    ws.close();
    return out;
  })()`;
}

/**
 * In the page: `rounds` round trips of similar text of growing size through the echo at `url`
 * (back-references into earlier messages when the context is kept); resolves with the negotiated
 * extensions, how many echoes differed, and the close's code and wasClean.
 */
export const ROUND_TRIPS = String(async function roundTrips(url: string, rounds: number): Promise<unknown[]> {
  const ws = new WebSocket(url);
  const queue: string[] = [];
  let wake: (() => void) | undefined;
  ws.onmessage = (e: { data: unknown }) => {
    queue.push(e.data as string);
    wake?.();
  };
  await new Promise((resolve) => (ws.onopen = resolve));
  let wrong = 0;
  for (let r = 0; r < rounds; r++) {
    // Similar text each round (back-references into earlier messages), of growing size.
    const text = Array.from({ length: 50 + r * 40 }, (_, i) => `word${(i * 31 + r) % 53}`).join(' ');
    ws.send(text);
    while (!queue.length) await new Promise<void>((resolve) => (wake = resolve));
    if (queue.shift() !== text) wrong++;
  }
  const closed = new Promise((resolve) => (ws.onclose = (e) => resolve([e.code, e.wasClean])));
  ws.close();
  return [ws.extensions, wrong, await closed];
});

/**
 * For the adapter tests, in a page of the adapter's server: the cookie before, the 101's cookie at
 * open, what the server saw, the next fetch, refusals (a 401 at /deny, a 403 at /forbid).
 */
export const VISIT = `(async () => {
  const once = (path) =>
    new Promise((resolve) => {
      const ws = new WebSocket('ws://' + location.host + path);
      const events = [];
      ws.onopen = () => events.push(['open', document.cookie]);
      ws.onmessage = (e) => events.push(e.data);
      ws.onerror = () => events.push('error');
      ws.onclose = (e) => {
        events.push(['close', e.code, e.wasClean]);
        resolve(events);
      };
    });
  return {
    before: document.cookie,
    first: await once('/ws'),
    fetched: await (await fetch('/whoami')).text(),
    second: await once('/ws'),
    unauthorized: await once('/deny'),
    forbidden: await once('/forbid'),
  };
})()`;

/** What {@link VISIT} resolves with when the hook sets the cookie `sid=value`. */
export const VISITED = (value: string): Record<string, unknown> => ({
  before: '',
  first: [['open', `sid=${value}`], 'cookie: ', ['close', 1000, true]],
  fetched: `cookie: sid=${value}`,
  second: [['open', `sid=${value}`], `cookie: sid=${value}`, ['close', 1000, true]],
  unauthorized: ['error', ['close', 1006, false]],
  forbidden: ['error', ['close', 1006, false]],
});

/** The adapters' handler for {@link VISIT}: sends the cookie it saw, then closes with 1000. */
export const hello = (conn: WebSocketConnection, req: { headers: Record<string, string | string[] | undefined> }): void =>
  void conn
    .send(`cookie: ${String(req.headers.cookie ?? '')}`)
    .then(() => conn.close(1000))
    .catch(() => undefined);

/** The adapters' `beforeAccept` for {@link VISIT}: 403 at /forbid. */
export const forbid = (req: IncomingMessage): { reject: { status: number; body: string } } | undefined =>
  req.url === '/forbid' ? { reject: { status: 403, body: 'no' } } : undefined;

/** A framework app serving {@link VISIT}: its port, what it reported as a problem, and its shutdown. */
export interface VisitServer {
  port: number;
  /** Errors the framework reported (Koa's and Express's error events, Fastify's log at warn or above): none expected. */
  problems: () => unknown[];
  close: () => Promise<void>;
}

/** Listens on 127.0.0.1 and returns the port. */
async function listenLocal(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** Closes an adapter's WebSockets, then its HTTP server. */
async function closeBoth(ws: { close: () => Promise<void> }, server: Server): Promise<void> {
  await ws.close();
  await new Promise((resolve) => server.close(resolve));
}

/**
 * The three adapters' apps for {@link VISIT}, each with the framework's own way to refuse (a 401
 * at /deny, sent by a hook or middleware before the adapter), `beforeAccept`'s 403 at /forbid, and
 * a cookie `sid=<framework>` set on the 101 by a hook or middleware when the request has none.
 */
export const VISIT_SERVERS: Record<'koa' | 'express' | 'fastify', () => Promise<VisitServer>> = {
  async koa() {
    const errors: unknown[] = [];
    const app = new Koa();
    app.on('error', (error: unknown) => void errors.push(error));
    const ws = koaWebSocket({
      beforeAccept: forbid,
      mapper: serviceMapper([{ path: '/(ws|deny|forbid)', handler: hello as never }]),
    });
    app.use(async (ctx, next) => {
      if (ctx.path === '/deny') {
        ctx.status = 401;
        ctx.set('WWW-Authenticate', 'Bearer');
        ctx.body = 'Unauthorized';
        return;
      }
      if (ctx.path === '/ws' && !ctx.cookies.get('sid')) ctx.cookies.set('sid', 'koa', { httpOnly: false });
      await next();
    });
    app.use(ws);
    app.use((ctx) => {
      if (ctx.path === '/whoami') ctx.body = `cookie: ${String(ctx.headers.cookie ?? '')}`;
      else {
        ctx.type = 'html';
        ctx.body = HTML;
      }
    });
    const server = createServer(app.callback());
    ws.attach(server, app);
    return { port: await listenLocal(server), problems: () => errors, close: () => closeBoth(ws, server) };
  },

  async express() {
    const errors: unknown[] = [];
    const app = express();
    const ws = expressWebSocket({ beforeAccept: forbid });
    for (const path of ['/ws', '/deny', '/forbid']) ws.route(path, hello as never);
    app.use((req: Request, res: Response, next: NextFunction) => {
      if (req.path === '/deny') {
        res.status(401).set('WWW-Authenticate', 'Bearer').send('Unauthorized');
        return;
      }
      if (req.path === '/ws' && !String(req.headers.cookie ?? '').includes('sid=')) res.cookie('sid', 'express');
      next();
    });
    app.use(ws.middleware);
    app.get('/whoami', (req: Request, res: Response) => void res.send(`cookie: ${String(req.headers.cookie ?? '')}`));
    app.get('/', (_req: Request, res: Response) => void res.type('html').send(HTML));
    app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
      errors.push(error);
      res.status(500).send('error');
    });
    const server = createServer(app);
    ws.attach(server, app);
    return { port: await listenLocal(server), problems: () => errors, close: () => closeBoth(ws, server) };
  },

  async fastify() {
    const lines: string[] = [];
    const app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => void lines.push(line) } } });
    await app.register(wsPlugin, { beforeAccept: forbid });
    app.addHook('onRequest', async (request, reply) => {
      if (request.url === '/deny') return reply.code(401).header('WWW-Authenticate', 'Bearer').send('Unauthorized');
      if (request.url === '/ws' && !String(request.headers.cookie ?? '').includes('sid=')) void reply.header('set-cookie', 'sid=fastify; Path=/');
    });
    for (const path of ['/ws', '/deny', '/forbid']) app.get(path, { websocket: true }, hello as never);
    app.get('/', async (_request, reply) => reply.type('text/html; charset=utf-8').send(HTML));
    app.get('/whoami', async (request) => `cookie: ${String(request.headers.cookie ?? '')}`);
    await app.listen({ host: '127.0.0.1', port: 0 });
    return {
      port: (app.server.address() as AddressInfo).port,
      problems: () => lines.filter((line) => (JSON.parse(line) as { level: number }).level >= 40),
      close: () => app.close(),
    };
  },
};
