/**
 * What happens, in each adapter, while an upgrade is still on its way (the framework's hooks or
 * middleware, or the before-accept hook, still running):
 *
 * - the adapter's close (Fastify's `app.close()`, `ws.close()` for Express and Koa) begins. Such an
 *   upgrade is answered 503 at once, as serve()'s close() answers one whose beforeAccept is
 *   pending, whether it is in the framework's hands or the core's. (Fixed bugs: it got its 101
 *   after the others were closed and stayed open; Fastify's `app.close()` waited for it; then it
 *   was answered only when the framework reached the adapter, or, past beforeAccept, got a 101
 *   and a close frame with 1001.)
 * - the client goes away. The handler's connection then ends at once (1006). (Fixed bug: the
 *   socket's end came before the connection listened for it, and the connection stayed open for
 *   good, its handler waiting for a message.)
 */
import Fastify from 'fastify';
import express from 'express';
import Koa from 'koa';
import { createServer, type Server } from 'node:http';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { once } from 'node:events';
import { connect, EOF, HandshakeError, type UpgradeOptions, type WebSocketConnection } from 'rfc6455';
import { wsPlugin } from '@rfc6455/fastify';
import { websocket as expressWebSocket } from '@rfc6455/express';
import { websocket as koaWebSocket } from '@rfc6455/koa';

/** A promise opened from outside. */
function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}

/**
 * Where the upgrades of a test wait: `/slow` in the framework's chain (`entered` gives its socket),
 * `/hooked` in beforeAccept. `ended` gives the close code the handler's connection ended with.
 */
interface Gates {
  entered: ReturnType<typeof gate<Socket | undefined>>;
  release: ReturnType<typeof gate>;
  ended: ReturnType<typeof gate<number | undefined>>;
}

interface Running {
  port: number;
  connections: ReadonlySet<WebSocketConnection>;
  /** The adapter's shutdown (Fastify: the whole app.close()). */
  shutdown(): Promise<void>;
  /** Resolves once shutdown() has begun closing connections (Fastify's preClose hooks run later). */
  closing: Promise<void>;
  /** Stops what shutdown() leaves running. */
  dispose(): Promise<void>;
}

function echoer(gates: Gates) {
  return async (conn: WebSocketConnection): Promise<void> => {
    for await (const message of conn) await conn.send(message).catch(() => undefined);
    gates.ended.open(conn.closeStatus);
  };
}

function hookOptions(gates: Gates): UpgradeOptions<never> {
  return {
    async beforeAccept(_req, { path }) {
      if (path !== '/hooked') return undefined;
      gates.entered.open(undefined);
      await gates.release.promise;
      return undefined;
    },
  };
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function stopServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

const APPS: Array<[string, (gates: Gates) => Promise<Running>]> = [
  [
    'fastify',
    async (gates) => {
      const app = Fastify();
      await app.register(wsPlugin, hookOptions(gates) as never);
      app.addHook('onRequest', async (request) => {
        if (request.url !== '/slow') return;
        gates.entered.open(request.raw.socket);
        await gates.release.promise;
      });
      for (const path of ['/open', '/slow', '/hooked']) app.get(path, { websocket: true }, echoer(gates));
      // Runs after the plugin's preClose hook, registered before it.
      const closing = gate();
      app.addHook('preClose', async () => closing.open());
      await app.listen({ port: 0, host: '127.0.0.1' });
      return {
        closing: closing.promise,
        port: (app.server.address() as AddressInfo).port,
        connections: app.websocketConnections,
        shutdown: () => app.close(),
        dispose: () => app.close(),
      };
    },
  ],
  [
    'express',
    async (gates) => {
      const app = express();
      const ws = expressWebSocket(hookOptions(gates) as never);
      ws.route('/(open|slow|hooked)', echoer(gates));
      app.use('/slow', (req, _res, next) => {
        gates.entered.open(req.socket);
        void gates.release.promise.then(() => next());
      });
      app.use(ws.middleware);
      const server = createServer(app);
      ws.attach(server, app);
      return { port: await listen(server), connections: ws.connections, shutdown: () => ws.close(), closing: Promise.resolve(), dispose: () => stopServer(server) };
    },
  ],
  [
    'koa',
    async (gates) => {
      const app = new Koa();
      const ws = koaWebSocket(hookOptions(gates) as never);
      app.use(async (ctx, next) => {
        if (ctx.path === '/slow') {
          gates.entered.open(ctx.req.socket);
          await gates.release.promise;
        }
        await next();
      });
      app.use(ws);
      app.use(async (ctx) => {
        if (ctx.ws) await ctx.ws(echoer(gates));
      });
      const server = createServer(app.callback());
      ws.attach(server, app);
      return { port: await listen(server), connections: ws.connections, shutdown: () => ws.close(), closing: Promise.resolve(), dispose: () => stopServer(server) };
    },
  ],
];

describe.each(APPS)('%s: an upgrade still under way', (_name, start) => {
  let gates: Gates;
  let running: Running;
  beforeEach(async () => {
    gates = { entered: gate(), release: gate(), ended: gate() };
    running = await start(gates);
  });
  afterEach(async () => {
    gates.release.open(undefined);
    await running.dispose();
  });

  test('an upgrade still in the framework\'s hooks or middleware is answered 503 at once, and shutdown completes', async () => {
    const open = await connect(`ws://127.0.0.1:${running.port}/open`);
    const pending = connect(`ws://127.0.0.1:${running.port}/slow`).then(
      (conn) => conn,
      (error: unknown) => error,
    );
    await gates.entered.promise;
    const shutdown = running.shutdown();
    expect(await open.recv()).toBe(EOF);
    expect(open.closeStatus).toBe(1001);
    // Answered while the hook or middleware still runs (the gate is still closed), as serve()'s
    // close() answers an upgrade whose beforeAccept is pending. Before: only once the framework
    // reached the adapter (up to handshakeTimeout later, Fastify's app.close() waiting for it).
    const outcome = await pending;
    if (!(outcome instanceof HandshakeError)) (outcome as WebSocketConnection).terminate();
    expect(outcome).toBeInstanceOf(HandshakeError);
    expect((outcome as HandshakeError).status).toBe(503);
    // The shutdown completes while the framework's hook still waits.
    await shutdown;
    // The hook or middleware ends later and finds the request answered: nothing more is accepted.
    gates.release.open(undefined);
    await new Promise((resolve) => setImmediate(resolve));
    expect(running.connections.size).toBe(0);
  });

  test('an upgrade still in the before-accept hook is answered 503 at once, never accepted', async () => {
    const pending = connect(`ws://127.0.0.1:${running.port}/hooked`).then(
      (conn) => conn,
      (error: unknown) => error,
    );
    await gates.entered.promise;
    const shutdown = running.shutdown();
    // Before: the hook's acceptance got a 101 (after the shutdown had closed the others), then a
    // close frame with 1001; and only once the hook settled.
    const outcome = await pending;
    if (!(outcome instanceof HandshakeError)) (outcome as WebSocketConnection).terminate();
    expect(outcome).toBeInstanceOf(HandshakeError);
    expect((outcome as HandshakeError).status).toBe(503);
    await shutdown;
    gates.release.open(undefined);
    await new Promise((resolve) => setImmediate(resolve));
    expect(running.connections.size).toBe(0);
  }, 5000);

  test('a client that leaves while the framework\'s hooks or middleware run: the handler\'s connection ends (1006)', async () => {
    const client = netConnect(running.port, '127.0.0.1');
    client.on('error', () => undefined);
    client.write(
      'GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    const socket = (await gates.entered.promise)!;
    client.destroy();
    if (!socket.readableEnded) await once(socket, 'end');
    gates.release.open(undefined);
    // Before: the connection stayed open, and the handler never got past its first recv().
    expect(await gates.ended.promise).toBe(1006);
    expect(running.connections.size).toBe(0);
  }, 5000);
});

describe.each([
  ['express', () => expressWebSocket({ perMessageDeflate: false })],
  ['koa', () => koaWebSocket({ perMessageDeflate: false })],
] as const)('%s: close() from the handler of the connection just accepted', (name, make) => {
  test('the connection is closed with 1001 like the others, not answered 503 after its 101', async () => {
    const ws = make();
    const server = createServer();
    const handler = (conn: WebSocketConnection): void => {
      // Called while the core is still accepting (before handleUpgrade's promise settles).
      void ws.close();
      void (async () => {
        for await (const _ of conn);
      })();
    };
    if (name === 'express') {
      const app = express();
      (ws as ReturnType<typeof expressWebSocket>).route('/', handler);
      app.use((ws as ReturnType<typeof expressWebSocket>).middleware);
      server.on('request', app);
      (ws as ReturnType<typeof expressWebSocket>).attach(server, app);
    } else {
      const app = new Koa();
      app.use(ws as ReturnType<typeof koaWebSocket>);
      app.use(async (ctx) => {
        if (ctx.ws) await ctx.ws(handler);
      });
      server.on('request', app.callback());
      (ws as ReturnType<typeof koaWebSocket>).attach(server, app);
    }
    const port = await listen(server);
    try {
      const conn = await connect(`ws://127.0.0.1:${port}/`);
      // Before: `HTTP/1.1 503 …` was written after the 101, into the WebSocket stream (a protocol
      // error for the client, 1002 or 1006), and the socket ended.
      expect(await conn.recv()).toBe(EOF);
      expect(conn.closeStatus).toBe(1001);
    } finally {
      await stopServer(server);
    }
  });
});
