/**
 * Headers the framework's hooks and middleware set on their response for an accepted upgrade go on
 * the 101 (fixed bug: the core wrote its 101 without them, so a session middleware's Set-Cookie
 * never reached the client): real Express + express-session, Koa + koa-session, Fastify +
 * @fastify/cookie (in a child process: it imports an ESM-only package Jest cannot load), real cookies sent back on a second connection; several cookies as several
 * Set-Cookie lines; headers that would break the handshake left out; beforeAccept's headers win
 * over the framework's; a refusal is unchanged. Over HTTP/2 (Fastify, RFC 8441) the reply's
 * headers go on the 200. One Chromium test: a cookie set on the 101 is sent on the next request.
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import session from 'express-session';
import Fastify from 'fastify';
import Koa from 'koa';
import koaSession from 'koa-session';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser } from 'playwright-core';
import { connect, HandshakeError, serviceMapper, type WebSocketConnection } from 'rfc6455';
import { websocket as expressWebSocket } from '@rfc6455/express';
import { websocket as koaWebSocket } from '@rfc6455/koa';
import { wsPlugin } from '@rfc6455/fastify';
import { launchChromium } from '../browser/chromium.js';
import { killAll, spawnNode, type Child } from '../examples/helpers.js';
import { CLIENT_TLS, TLS } from '../http2/helpers.js';
import { EXTRA } from '../fixtures/response-headers.js';

/** `name=value` pairs of Set-Cookie lines, for a Cookie request header. */
function cookieHeader(setCookie: string[] | undefined): string {
  return (setCookie ?? []).map((line) => line.split(';')[0]!).join('; ');
}

/**
 * Two visits: the first gets a new session and its cookie (named `cookie`) on the 101, the second
 * sends the cookie back. Returns both bodies (each app sends `{ id, views }`).
 */
async function sessionRoundTrip(url: string, cookie: string): Promise<{ first: Record<string, unknown>; second: Record<string, unknown> }> {
  const first = await visit(url);
  const setCookie = first.headers['set-cookie'];
  expect(setCookie?.some((line) => line.startsWith(`${cookie}=`))).toBe(true);
  expect(first.body.views).toBe(1);
  const second = await visit(url, cookieHeader(setCookie));
  return { first: first.body, second: second.body };
}

/** Opens a WebSocket, reads the server's one message (JSON) and closes; returns it and the 101's headers. */
async function visit(url: string, cookie?: string): Promise<{ body: Record<string, unknown>; headers: IncomingHttpHeaders }> {
  const conn: WebSocketConnection = await connect(url, cookie === undefined ? {} : { headers: { cookie } });
  try {
    const body = JSON.parse(String(await conn.recv())) as Record<string, unknown>;
    return { body, headers: conn.headers };
  } finally {
    await conn.close();
  }
}

/** What every framework's 101 must show. */
function expectHandshakeIntact(headers: IncomingHttpHeaders): void {
  expect(headers['x-request-id']).toBe('abc123');
  expect(headers['content-length']).toBeUndefined();
  expect(headers['content-type']).toBeUndefined();
  expect(headers['transfer-encoding']).toBeUndefined();
  expect(headers.connection).toBe('Upgrade');
  expect(headers.upgrade).toBe('websocket');
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('Express + express-session', () => {
  let server: Server;
  let host: string;
  const ws = expressWebSocket({
    beforeAccept: (req) => {
      if (req.url === '/ws/refused') return { reject: { status: 403, body: 'no' } };
      if (req.url === '/ws/hook') return { headers: { 'X-Request-Id': 'from-hook', 'Set-Cookie': 'hook=1; Path=/' } };
      return undefined;
    },
  });
  ws.route('/ws(/.*)?', (conn, req) => {
    const r = req as Request;
    void conn.send(JSON.stringify({ id: r.sessionID, views: r.session.views }));
  });
  beforeAll(async () => {
    const app = express();
    // Plain HTTP for the Chromium test, before the session: the page's own load sets no cookie.
    app.get('/cookies', (req, res) => {
      res.json({ cookie: req.headers.cookie ?? null });
    });
    app.get('/', (_req, res) => {
      res.type('html').send('<!doctype html><title>cookies</title>');
    });
    // Nor does any other plain request (Chromium's /favicon.ico): only upgrades go on.
    app.use((req: Request, res: Response, next: NextFunction) => {
      if (req.headers.upgrade === undefined) res.status(404).end();
      else next();
    });
    app.use(session({ secret: 'keyboard cat', resave: false, saveUninitialized: true }));
    app.use((req: Request, res: Response, next: NextFunction) => {
      req.session.views = (req.session.views ?? 0) + 1;
      res.cookie('theme', 'dark');
      res.setHeader(...EXTRA.ordinary);
      if (req.url === '/ws/forbidden') for (const [name, value] of EXTRA.forbidden) res.setHeader(name, value);
      next();
    });
    app.use(ws.middleware);
    server = createServer(app);
    ws.attach(server, app);
    host = await listen(server);
  });
  afterAll(async () => {
    await ws.close();
    await new Promise((resolve) => server.close(resolve));
  });

  it('the new session cookie arrives on the 101, and a second connection sending it back gets the same session', async () => {
    const { first, second } = await sessionRoundTrip(`ws://${host}/ws`, 'connect.sid');
    // express-session saved the session when the response was ended, before the 101.
    expect(second).toEqual({ id: first.id, views: 2 });
  });

  it('two cookies arrive as two Set-Cookie lines', async () => {
    const { headers } = await visit(`ws://${host}/ws`);
    const names = (headers['set-cookie'] ?? []).map((line) => line.split('=')[0]);
    expect(names.sort()).toEqual(['connect.sid', 'theme']);
  });

  it('headers that would break the handshake are left out; ordinary ones pass', async () => {
    const { headers } = await visit(`ws://${host}/ws/forbidden`);
    expectHandshakeIntact(headers);
  });

  it("beforeAccept's headers replace the framework's of the same name; Set-Cookie lines add up", async () => {
    const { headers } = await visit(`ws://${host}/ws/hook`);
    expect(headers['x-request-id']).toBe('from-hook');
    expect((headers['set-cookie'] ?? []).map((line) => line.split('=')[0]).sort()).toEqual(['connect.sid', 'hook', 'theme']);
  });

  it('a refusal is unchanged: no 101, none of the middleware headers', async () => {
    const error = (await connect(`ws://${host}/ws/refused`).catch((e: unknown) => e)) as HandshakeError;
    expect(error).toBeInstanceOf(HandshakeError);
    expect(error.status).toBe(403);
    expect(error.headers?.['set-cookie']).toBeUndefined();
  });

  it('a hybi-00 client gets the session cookie on its 101 too', async () => {
    const conn = await connect(`ws://${host}/ws`, { variant: 'hybi00' });
    try {
      expect(conn.variant).toBe('hybi00');
      expect(String(conn.headers['set-cookie'])).toMatch(/(^|, )connect\.sid=s%3A/);
      expect(String(conn.headers['set-cookie'])).toMatch(/theme=dark/);
      expect(JSON.parse(String(await conn.recv()))).toMatchObject({ views: 1 });
    } finally {
      await conn.close();
    }
  });

  it('Chromium stores a cookie set on the 101 and sends it on the next request', async () => {
    let browser: Browser | undefined;
    try {
      browser = await launchChromium();
      const page = await browser.newPage();
      await page.goto(`http://${host}/`);
      const result = (await page.evaluate(`(async () => {
        const before = (await (await fetch('/cookies')).json()).cookie;
        if (before !== null) throw new Error('cookies before the WebSocket: ' + before);
        await new Promise((resolve, reject) => {
          const ws = new WebSocket('ws://${host}/ws');
          ws.onmessage = () => { ws.close(); resolve(); };
          ws.onerror = () => reject(new Error('WebSocket failed'));
        });
        return (await fetch('/cookies')).json();
      })()`)) as { cookie: string | null };
      expect(result.cookie).toMatch(/(^|; )theme=dark(;|$)/);
      expect(result.cookie).toMatch(/(^|; )connect\.sid=s%3A/);
    } finally {
      await browser?.close();
    }
  });
});

describe('Express: an end wrapper that never ends', () => {
  it('is bounded by handshakeTimeout: the socket is closed, no 101 and no hang', async () => {
    const ws = expressWebSocket({ handshakeTimeout: 300 });
    ws.route('/ws', (conn) => void conn.send('never'));
    const app = express();
    app.use((_req: Request, res: Response, next: NextFunction) => {
      res.end = (() => res) as unknown as Response['end']; // swallows the end: no 'finish', ever
      next();
    });
    app.use(ws.middleware);
    const server = createServer(app);
    ws.attach(server, app);
    const host = await listen(server);
    try {
      const error = (await connect(`ws://${host}/ws`).catch((e: unknown) => e)) as HandshakeError;
      expect(error).toBeInstanceOf(HandshakeError);
      expect(error.code).toBe('WS_CONNECT_FAILED');
      expect(ws.connections.size).toBe(0);
    } finally {
      await ws.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

declare module 'express-session' {
  interface SessionData {
    views: number;
  }
}

describe('Koa + koa-session', () => {
  let server: Server;
  let host: string;
  const koaErrors: string[] = [];
  const ws = koaWebSocket({
    mapper: serviceMapper([
      {
        path: '/ws(/.*)?',
        handler: (conn, _req, { state }) => void conn.send(JSON.stringify(state as Record<string, unknown>)),
      },
    ]),
    beforeAccept: (req) => (req.url === '/ws/hook' ? { headers: { 'X-Request-Id': 'from-hook', 'Set-Cookie': 'hook=1; path=/' } } : undefined),
  });
  beforeAll(async () => {
    const app = new Koa();
    app.keys = ['keyboard cat'];
    app.use(koaSession({ key: 'sess' }, app));
    app.use(async (ctx, next) => {
      const views = ((ctx.session!.views as number | undefined) ?? 0) + 1;
      ctx.session!.views = views;
      ctx.state.views = views;
      ctx.cookies.set('theme', 'dark', { signed: false });
      ctx.set(...EXTRA.ordinary);
      if (ctx.path === '/ws/forbidden') for (const [name, value] of EXTRA.forbidden) ctx.set(name, value);
      await next();
      if (ctx.path === '/ws/throws') throw new Error('failed after next()');
    });
    app.on('error', (error: Error) => koaErrors.push(error.message));
    app.use(ws);
    // Accepting inline: headers set by the time ctx.ws() is called go on the 101.
    app.use(async (ctx) => {
      if ((ctx.path === '/inline' || ctx.path === '/inline-commit') && ctx.ws) {
        ctx.set('X-Inline', 'yes');
        if (ctx.path === '/inline-commit') await ctx.session!.manuallyCommit();
        const conn = await ctx.ws();
        await conn?.send(JSON.stringify({ inline: true }));
      }
    });
    server = createServer(app.callback());
    ws.attach(server, app);
    host = await listen(server);
  });
  afterAll(async () => {
    await ws.close();
    await new Promise((resolve) => server.close(resolve));
  });

  it("koa-session's cookie (set after `await next()` returns) arrives on the 101, and sent back gives the same session", async () => {
    const { first, second } = await sessionRoundTrip(`ws://${host}/ws`, 'sess');
    expect(second.views).toBe(2);
  });

  it('several cookies arrive as separate Set-Cookie lines', async () => {
    const { headers } = await visit(`ws://${host}/ws`);
    const names = (headers['set-cookie'] ?? []).map((line) => line.split('=')[0]);
    // koa-session signs its cookie: sess and sess.sig, plus the middleware's theme.
    expect(names.sort()).toEqual(['sess', 'sess.sig', 'theme']);
  });

  it('headers that would break the handshake are left out; ordinary ones pass', async () => {
    const { headers } = await visit(`ws://${host}/ws/forbidden`);
    expectHandshakeIntact(headers);
  });

  it("beforeAccept's headers replace the framework's of the same name; Set-Cookie lines add up", async () => {
    const { headers } = await visit(`ws://${host}/ws/hook`);
    expect(headers['x-request-id']).toBe('from-hook');
    expect(headers['set-cookie']?.map((line) => line.split('=')[0]).sort()).toEqual(['hook', 'sess', 'sess.sig', 'theme']);
  });

  it('a middleware that throws after `await next()` (before the 101 now) refuses the upgrade with 500; Koa reports it', async () => {
    const error = (await connect(`ws://${host}/ws/throws`).catch((e: unknown) => e)) as HandshakeError;
    expect(error).toBeInstanceOf(HandshakeError);
    expect(error.status).toBe(500);
    expect(koaErrors).toContain('failed after next()');
  });

  it('ctx.ws() inline sends the headers set by the time it is called', async () => {
    const { headers, body } = await visit(`ws://${host}/inline`);
    expect(body).toEqual({ inline: true });
    expect(headers['x-inline']).toBe('yes');
    expect(headers['set-cookie']?.map((line) => line.split('=')[0])).toEqual(['theme']);
    // koa-session's cookie comes after `await next()`: committed first, it is there too.
    const committed = await visit(`ws://${host}/inline-commit`);
    expect(committed.headers['set-cookie']?.map((line) => line.split('=')[0]).sort()).toEqual(['sess', 'sess.sig', 'theme']);
  });
});

describe('Fastify + @fastify/cookie (a real Node process: see test/fixtures/fastify-cookie-server.ts)', () => {
  let child: Child;
  let host: string;
  beforeAll(async () => {
    child = spawnNode(['test/fixtures/fastify-cookie-server.ts']);
    const [, port] = await child.waitFor(/listening (\d+)/);
    host = `127.0.0.1:${port!}`;
  }, 30_000);
  afterAll(() => killAll());

  it("the session cookie set with reply.setCookie (serialized in @fastify/cookie's onSend) arrives on the 101, and sent back gives the same session", async () => {
    const { first, second } = await sessionRoundTrip(`ws://${host}/ws`, 'sid');
    expect(second).toEqual({ id: first.id, views: 2 });
  });

  it('two cookies arrive as two Set-Cookie lines', async () => {
    const { headers } = await visit(`ws://${host}/ws`);
    expect((headers['set-cookie'] ?? []).map((line) => line.split('=')[0]).sort()).toEqual(['sid', 'theme']);
  });

  it('headers that would break the handshake are left out; ordinary ones pass', async () => {
    const { headers } = await visit(`ws://${host}/ws/forbidden`);
    expectHandshakeIntact(headers);
  });

  it("beforeAccept's headers replace the framework's of the same name; Set-Cookie lines add up", async () => {
    const { headers } = await visit(`ws://${host}/ws/hook`);
    expect(headers['x-request-id']).toBe('from-hook');
    expect((headers['set-cookie'] ?? []).map((line) => line.split('=')[0]).sort()).toEqual(['hook', 'sid', 'theme']);
  });
});

describe('Fastify http2 + @fastify/cookie (a real Node process: test/fixtures/fastify-cookie-server.ts --http2)', () => {
  let child: Child;
  let host: string;
  beforeAll(async () => {
    child = spawnNode(['test/fixtures/fastify-cookie-server.ts', '--http2']);
    const [, port] = await child.waitFor(/listening (\d+)/);
    host = `127.0.0.1:${port!}`;
  }, 30_000);
  afterAll(() => killAll());

  it("reply.setCookie()'s cookies arrive on the 200 of an extended CONNECT as on the 101, and sent back give the same session", async () => {
    for (const http2 of [true, false]) {
      const open = async (cookie?: string): Promise<{ body: Record<string, unknown>; headers: IncomingHttpHeaders }> => {
        const conn = await connect(`wss://${host}/ws/hook`, { http2, tls: CLIENT_TLS, headers: cookie === undefined ? {} : { cookie } });
        try {
          expect(conn.transport.kind).toBe(http2 ? 'http2' : 'tls');
          return { body: JSON.parse(String(await conn.recv())) as Record<string, unknown>, headers: conn.headers };
        } finally {
          await conn.close();
        }
      };
      // (Before, over HTTP/2: only the beforeAccept hook's cookie came; @fastify/cookie's onSend hook never ran.)
      const first = await open();
      expect((first.headers['set-cookie'] ?? []).map((line) => line.split('=')[0]).sort()).toEqual(['hook', 'sid', 'theme']);
      const second = await open(cookieHeader(first.headers['set-cookie']));
      expect(second.body).toEqual({ id: first.body.id, views: 2 });
    }
  });
});

describe('Fastify reply headers in process (injectWS)', () => {
  it('headers set with reply.header in a hook arrive on the 101 of injectWS; a hook that refuses is unchanged', async () => {
    const app = Fastify();
    try {
      await app.register(wsPlugin);
      app.addHook('onRequest', async (request, reply) => {
        if (request.url === '/refused') return reply.code(401).header('WWW-Authenticate', 'Bearer').header('Set-Cookie', 'r=1').send('no');
        reply.header('Set-Cookie', ['a=1; Path=/', 'b=2; Path=/']);
        reply.header('X-Request-Id', 'abc123');
        reply.header('Content-Length', '17');
        return undefined;
      });
      app.get('/ws', { websocket: true }, (conn) => void conn.send('hi'));
      app.get('/refused', { websocket: true }, (conn) => void conn.send('hi'));
      const conn = await app.injectWS('/ws');
      try {
        expect(conn.headers['set-cookie']).toEqual(['a=1; Path=/', 'b=2; Path=/']);
        expect(conn.headers['x-request-id']).toBe('abc123');
        expect(conn.headers['content-length']).toBeUndefined();
        expect(await conn.recv()).toBe('hi');
      } finally {
        await conn.close();
      }
      const refused = (await app.injectWS('/refused').catch((e: unknown) => e)) as HandshakeError;
      expect(refused).toBeInstanceOf(HandshakeError);
      expect(refused.status).toBe(401);
      expect(refused.headers?.['set-cookie']).toEqual(['r=1']);
    } finally {
      await app.close();
    }
  });
});

describe('Fastify over HTTP/2 (RFC 8441)', () => {
  it("the reply's headers go on the 200, without the ones HTTP/2 or the handshake forbid", async () => {
    const app = Fastify({ http2: true, https: { ...TLS, allowHTTP1: true } });
    try {
      await app.register(wsPlugin);
      app.addHook('onRequest', async (_request, reply) => {
        reply.header('X-Request-Id', 'abc123');
        reply.header('Set-Cookie', ['a=1; Path=/', 'b=2; Path=/']);
        reply.header('Content-Length', '17');
        reply.header('Connection', 'keep-alive');
      });
      app.get('/ws', { websocket: true }, (conn) => void conn.send('hi'));
      await app.listen({ port: 0, host: '127.0.0.1' });
      const { port } = app.server.address() as AddressInfo;
      const conn = await connect(`wss://127.0.0.1:${port}/ws`, { http2: true, tls: CLIENT_TLS });
      try {
        expect(conn.transport.kind).toBe('http2');
        expect(await conn.recv()).toBe('hi');
        expect(conn.headers['x-request-id']).toBe('abc123');
        expect(conn.headers['set-cookie']).toEqual(['a=1; Path=/', 'b=2; Path=/']);
        expect(conn.headers['content-length']).toBeUndefined();
      } finally {
        await conn.close();
      }
    } finally {
      await app.close();
    }
  });
});
