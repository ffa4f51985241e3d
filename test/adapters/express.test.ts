/**
 * @rfc6455/express: the shared suite with a real Express app, plus what only Express has
 * (next(err) reaching the error handler, mounting, plain HTTP through the same chain).
 */
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { connect, EOF, HandshakeError, serviceMapper } from 'rfc6455';
import { websocket, type ExpressWebSocket } from '@rfc6455/express';
import {
  adapterSuite,
  authorized,
  echoHandler,
  HELLO_BODY,
  listenStarted,
  privateHandler,
  protoProtocols,
  roomHandler,
  type AdapterFixture,
  type TlsMaterial,
} from '../shared/adapter-suite.js';

interface App {
  app: Express;
  ws: ExpressWebSocket;
}

function buildApp(): App {
  const app = express();
  // Routes declared on the adapter (typed params) and a core mapper, both served by one middleware.
  const ws = websocket({ mapper: serviceMapper([{ path: '/proto', protocols: protoProtocols }]) });
  ws.route('/echo', echoHandler);
  ws.route('/rooms/(?<room>\\w+)', (conn, req, ctx) => roomHandler(conn, req, ctx));
  ws.route('/private', privateHandler((_req, state) => (state as { user: string }).user));
  ws.route('/boom', () => undefined);
  app.get('/hello', (_req, res) => {
    res.send(HELLO_BODY);
  });
  app.use('/private', (req: Request, res: Response, next: NextFunction) => {
    if (!authorized(req.headers.authorization)) {
      res.status(401).set('WWW-Authenticate', 'Bearer').send('who are you?');
      return;
    }
    res.locals.user = 'alice';
    next();
  });
  app.use('/boom', (_req: Request, _res: Response, next: NextFunction) => next(new Error('middleware failed')));
  app.use(ws.middleware);
  app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
    res.status(503).set('X-Error-Handler', 'yes').send(`handled: ${error.message}`);
  });
  return { app, ws };
}

async function start(options: { tls?: TlsMaterial } = {}): Promise<AdapterFixture & App> {
  const { app, ws } = buildApp();
  const server: Server = options.tls ? createHttpsServer(options.tls, app) : createHttpServer(app);
  ws.attach(server, app);
  const { port, close } = await listenStarted(server, () => ws.close());
  return { app, ws, server, connections: ws.connections, url: `${options.tls ? 'wss' : 'ws'}://127.0.0.1:${port}`, close };
}

adapterSuite({ name: '@rfc6455/express', leavesUnclaimedUpgrades: true, start });

describe('@rfc6455/express specifics', () => {
  let fixture: Awaited<ReturnType<typeof start>>;
  beforeAll(async () => {
    fixture = await start();
  });
  afterAll(async () => {
    await fixture.close();
  });

  it('next(err) in the chain reaches the Express error handler, whose response refuses the upgrade', async () => {
    const error = await connect(fixture.url + '/boom').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(HandshakeError);
    const refusal = error as HandshakeError;
    expect(refusal.status).toBe(503);
    expect(refusal.headers['x-error-handler']).toBe('yes');
    expect(refusal.body?.toString()).toBe('handled: middleware failed');
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

  it('the handler receives the Express request (with its properties)', async () => {
    const { app, ws } = buildApp();
    const server = createHttpServer(app);
    const seen = new Promise<string>((resolve) => {
      ws.route('/whoami', (conn, req) => {
        resolve(`${req.path} ${req.query.name as string} ${typeof req.get}`);
        void conn.close();
      });
    });
    ws.attach(server, app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const conn = await connect(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/whoami?name=bob`);
      expect(await seen).toBe('/whoami bob function');
      expect(await conn.recv()).toBe(EOF);
    } finally {
      await ws.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('ws.middleware mounted under a prefix (in a router, or with app.use(path)) routes by the full path', async () => {
    const app = express();
    const ws = websocket();
    ws.route('/api/rooms/(?<room>\\w+)', (conn, req, { params, state }) => void conn.send(`${params.room} ${String(state.via)} ${conn.url} ${req.originalUrl}`));
    ws.route('/live', (conn) => void conn.send(`live ${conn.url}`));
    const router = express.Router();
    router.use((_req: Request, res: Response, next: NextFunction) => {
      res.locals.via = 'router';
      next();
    });
    router.use(ws.middleware);
    app.use('/api', router);
    app.use('/live', ws.middleware);
    const server = createHttpServer(app);
    ws.attach(server, app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      // (Before: 404, the core routing by the req.url Express had cut the prefix off.)
      const room = await connect(`${url}/api/rooms/lobby?x=1`);
      expect(await room.recv()).toBe('lobby router /api/rooms/lobby?x=1 /api/rooms/lobby?x=1');
      await room.close();
      const live = await connect(`${url}/live`);
      expect(await live.recv()).toBe('live /live');
      await live.close();
    } finally {
      await ws.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('claims() tells which paths the WebSocket routes serve', () => {
    expect(fixture.ws.claims('/rooms/abc')).toBe(true);
    expect(fixture.ws.claims('/proto')).toBe(true);
    expect(fixture.ws.claims('/hello')).toBe(false);
  });

  it('a plain HTTP GET on a WebSocket path passes through to the rest of the app', async () => {
    const response = await fetch(fixture.url.replace(/^ws/, 'http') + '/echo');
    expect(response.status).toBe(404);
  });

  it('a beforeAccept hook in the options can refuse, or replace res.locals as the state', async () => {
    const app = express();
    const ws = websocket({
      beforeAccept(req) {
        if (req.headers['x-deny']) return { reject: { status: 403, headers: { 'X-Why': 'denied' }, body: 'no' } };
        return { state: { user: 'from-hook' }, headers: { 'X-Extra': 'yes' } };
      },
    });
    ws.route('/s', (conn, _req, { state }) => void conn.send(String(state.user)));
    app.use((_req: Request, res: Response, next: NextFunction) => {
      res.locals.user = 'from-locals';
      next();
    });
    app.use(ws.middleware);
    const server = createHttpServer(app);
    ws.attach(server, app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/s`;
    try {
      const conn = await connect(url);
      expect(conn.headers['x-extra']).toBe('yes');
      expect(await conn.recv()).toBe('from-hook');
      await conn.close();
      const error = (await connect(url, { headers: { 'X-Deny': '1' } }).catch((e: unknown) => e)) as HandshakeError;
      expect(error.status).toBe(403);
      expect(error.headers['x-why']).toBe('denied');
    } finally {
      await ws.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('@rfc6455/express: route() checks', () => {
  it('a route() that throws (bad pattern, no handler) is not kept: later routes and upgrades still work', async () => {
    const ws = websocket();
    expect(() => ws.route('/(unclosed', () => undefined)).toThrow(SyntaxError);
    expect(() => ws.route('/empty', {})).toThrow(TypeError);
    ws.route('/ok', (conn) => void conn.send('ok'));
    expect(ws.claims('/ok')).toBe(true);
    expect(ws.claims('/empty')).toBe(false);
    const app = express();
    app.use(ws.middleware);
    const server = createHttpServer(app);
    ws.attach(server, app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const conn = await connect(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/ok`);
      expect(await conn.recv()).toBe('ok');
      await conn.close();
    } finally {
      await ws.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('@rfc6455/express: several websocket() instances on one server', () => {
  it('each router\'s instance takes its own paths, an upgrade to one both serve goes through the app once, and one none serves gets the app\'s 404', async () => {
    const app = express();
    const seen: string[] = [];
    app.use((req: Request, _res: Response, next: NextFunction) => {
      seen.push(req.url);
      next();
    });
    const chat = websocket();
    chat.route('/chat', (conn) => void conn.send('chat'));
    chat.route('/both', (conn) => void conn.send('both via chat'));
    const news = websocket();
    news.route('/news', (conn) => void conn.send('news'));
    news.route('/both', (conn) => void conn.send('both via news'));
    const chatRouter = express.Router();
    chatRouter.use(chat.middleware);
    const newsRouter = express.Router();
    newsRouter.use(news.middleware);
    app.use(chatRouter, newsRouter);
    const server = createHttpServer(app);
    chat.attach(server, app);
    news.attach(server, app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      for (const [path, expected] of [['/chat', 'chat'], ['/news', 'news'], ['/both', 'both via chat']]) {
        const conn = await connect(url + path);
        expect(await conn.recv()).toBe(expected);
        await conn.close();
      }
      // (Before: each instance left it to the other, and nobody answered: this timed out.)
      const refused = await connect(`${url}/none`, { handshakeTimeout: 2000 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((refused as HandshakeError).status).toBe(404);
      // (Before: '/both' went through the app twice, once per instance.)
      expect(seen).toEqual(['/chat', '/news', '/both', '/none']);
    } finally {
      await Promise.all([chat.close(), news.close()]);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }, 10000);
});
