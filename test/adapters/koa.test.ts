/**
 * @rfc6455/koa: the shared suite with a real Koa app (@koa/router for plain HTTP), plus what only
 * Koa has (ctx.ws() accepting inline downstream, ctx.status/headers/body refusing).
 */
import Router from '@koa/router';
import Koa from 'koa';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { connect, EOF, HandshakeError, serviceMapper } from 'rfc6455';
import { websocket, type KoaWebSocketMiddleware } from '@rfc6455/koa';
import { adapterSuite, authorized, HELLO_BODY, listenStarted, suiteRoutes, type AdapterFixture, type TlsMaterial } from '../shared/adapter-suite.js';

interface App {
  app: Koa;
  ws: KoaWebSocketMiddleware;
}

function buildApp(): App {
  const app = new Koa();
  const ws = websocket(serviceMapper(suiteRoutes((_req, state) => (state as { user: string }).user)));
  app.use(async (ctx, next) => {
    if (ctx.path === '/private' || ctx.path === '/inline-private') {
      if (!authorized(ctx.get('authorization'))) {
        ctx.status = 401;
        ctx.set('WWW-Authenticate', 'Bearer');
        ctx.body = 'who are you?';
        return;
      }
      ctx.state.user = 'alice';
    }
    await next();
  });
  app.use(ws);
  const router = new Router();
  router.get('/hello', (ctx) => {
    ctx.body = HELLO_BODY;
  });
  // Accepting inline, downstream of the websocket middleware (koa-easy-ws style).
  router.get('/inline', async (ctx) => {
    if (!ctx.ws) {
      ctx.body = 'not a websocket request';
      return;
    }
    const conn = await ctx.ws();
    if (!conn) return;
    for await (const message of conn) await conn.send(`inline: ${message.toString()}`);
  });
  router.get('/inline-private', async (ctx) => {
    if (ctx.ws) await ctx.ws((conn, _req, { state }) => void conn.send(`inline user ${String(state.user)}`));
  });
  app.use(router.routes());
  return { app, ws };
}

async function start(options: { tls?: TlsMaterial } = {}): Promise<AdapterFixture & App> {
  const { app, ws } = buildApp();
  const server: Server = options.tls ? createHttpsServer(options.tls, app.callback()) : createHttpServer(app.callback());
  ws.attach(server, app);
  const { port, close } = await listenStarted(server, () => ws.close());
  return { app, ws, server, connections: ws.connections, url: `${options.tls ? 'wss' : 'ws'}://127.0.0.1:${port}`, close };
}

adapterSuite({ name: '@rfc6455/koa', leavesUnclaimedUpgrades: true, start });

describe('@rfc6455/koa specifics', () => {
  let fixture: Awaited<ReturnType<typeof start>>;
  beforeAll(async () => {
    fixture = await start();
  });
  afterAll(async () => {
    await fixture.close();
  });

  it('ctx.ws() accepts inline in a downstream route and returns the connection', async () => {
    const conn = await connect(fixture.url + '/inline');
    await conn.send('one');
    expect(await conn.recv()).toBe('inline: one');
    await conn.close();
  });

  it('ctx.ws(handler) hands ctx.state to the handler', async () => {
    const conn = await connect(fixture.url + '/inline-private', { headers: { Authorization: 'Bearer letmein' } });
    expect(await conn.recv()).toBe('inline user alice');
    await conn.close();
  });

  it('ctx.status = 401 with a body refuses with exactly that response', async () => {
    const error = await connect(fixture.url + '/inline-private').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(HandshakeError);
    expect((error as HandshakeError).status).toBe(401);
    expect((error as HandshakeError).headers['www-authenticate']).toBe('Bearer');
    expect((error as HandshakeError).body?.toString()).toBe('who are you?');
  });

  it('a plain HTTP request sees no ctx.ws', async () => {
    const response = await fetch(fixture.url.replace(/^ws/, 'http') + '/inline');
    expect(await response.text()).toBe('not a websocket request');
  });

  it('an upgrade to a plain HTTP route gets that route\'s response, not a 101', async () => {
    const error = await connect(fixture.url + '/hello').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((error as HandshakeError).status).toBe(200);
    expect((error as HandshakeError).body?.toString()).toBe('hello over http');
  });

  it('middleware that throws after accepting inline (await ctx.ws()) closes the connection with 1011 and Koa hears of the error (it stayed open)', async () => {
    const app = new Koa();
    const errors: string[] = [];
    app.on('error', (error: Error) => errors.push(error.message));
    const ws = websocket();
    app.use(ws);
    app.use(async (ctx) => {
      if (!ctx.ws) return;
      const conn = await ctx.ws();
      await conn?.send('accepted');
      throw new Error('failed after accepting');
    });
    const server = createHttpServer(app.callback());
    ws.attach(server, app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const conn = await connect(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/`);
      expect(await conn.recv()).toBe('accepted');
      expect(await conn.recv()).toBe(EOF);
      expect(conn.closeStatus).toBe(1011);
      expect(errors).toEqual(['failed after accepting']);
    } finally {
      await ws.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
  });

  it('with @koa/router under a prefix: ctx.throw(401) in router middleware refuses, and ctx.ws(handler) gets the route\'s params and ctx.state', async () => {
    const app = new Koa();
    app.silent = true;
    const ws = websocket();
    app.use(ws);
    const router = new Router({ prefix: '/api' });
    router.use(async (ctx, next) => {
      if (ctx.get('authorization') !== 'Bearer letmein') ctx.throw(401, 'who are you?', { headers: { 'WWW-Authenticate': 'Bearer' } });
      ctx.state.user = 'alice';
      await next();
    });
    router.get('/rooms/:room', async (ctx) => {
      await ctx.ws?.((conn, _req, { params, state }) => void conn.send(`${String(state.user)} in ${params.room}`));
    });
    app.use(router.routes());
    const server = createHttpServer(app.callback());
    ws.attach(server, app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/api/rooms/lobby`;
    try {
      const refused = await connect(url).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((refused as HandshakeError).status).toBe(401);
      expect((refused as HandshakeError).headers['www-authenticate']).toBe('Bearer');
      // (Before: "alice in undefined", the handler's params were {}.)
      const conn = await connect(url, { headers: { Authorization: 'Bearer letmein' } });
      expect(await conn.recv()).toBe('alice in lobby');
      await conn.close();
    } finally {
      await ws.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
  });

  it('close() with a code or reason a close frame cannot carry rejects with a RangeError and changes nothing (it refused new upgrades, left every connection open and resolved)', async () => {
    const own = await start();
    try {
      const conn = await connect(own.url + '/echo');
      await expect(own.ws.close(1005)).rejects.toThrow(RangeError);
      await expect(own.ws.close(4000, 'x'.repeat(124))).rejects.toThrow(RangeError);
      // Still open, and still accepting.
      await conn.send('still here');
      expect(await conn.recv()).toBe('still here');
      const later = await connect(own.url + '/echo');
      await own.ws.close(4000, 'bye');
      expect(await conn.recv()).toBe(EOF);
      expect(await later.recv()).toBe(EOF);
      expect([conn.closeStatus, conn.closeReason, later.closeStatus]).toEqual([4000, 'bye', 4000]);
    } finally {
      await own.close();
    }
  });

  it('the connection ends when the server shuts down', async () => {
    const own = await start();
    try {
      const conn = await connect(own.url + '/inline');
      await own.close();
      expect(await conn.recv()).toBe(EOF);
      expect(conn.closeStatus).toBe(1001);
    } finally {
      await own.close();
    }
  });
});

describe('@rfc6455/koa: several websocket() middlewares on one server', () => {
  it('each takes the paths its mapper serves, and an upgrade none serves gets the app\'s 404', async () => {
    const app = new Koa();
    const seen: string[] = [];
    app.use(async (ctx, next) => {
      seen.push(ctx.url);
      await next();
    });
    const chat = websocket(serviceMapper([{ path: '/chat', handler: (conn) => void conn.send('chat') }]));
    const news = websocket(serviceMapper([{ path: '/news', handler: (conn) => void conn.send('news') }]));
    app.use(chat).use(news);
    const server = createHttpServer(app.callback());
    chat.attach(server, app);
    news.attach(server, app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      for (const name of ['chat', 'news']) {
        const conn = await connect(`${url}/${name}`);
        expect(await conn.recv()).toBe(name);
        await conn.close();
      }
      // (Before: each middleware left it to the other listener, the other middleware, and nobody
      // answered: this timed out.)
      const refused = await connect(`${url}/none`, { handshakeTimeout: 2000 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((refused as HandshakeError).status).toBe(404);
      expect(seen).toEqual(['/chat', '/news', '/none']);
    } finally {
      await Promise.all([chat.close(), news.close()]);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }, 10000);
});
