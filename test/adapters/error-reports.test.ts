/**
 * The adapters without `onError`, with the real frameworks: a handler's error (1011) and a
 * beforeAccept's (500) are reported the way each framework reports errors. Express: the core's
 * stderr report (Express has no app-level error event). Koa: the app's 'error' event (Koa's own
 * `app.onerror` logs it, `app.silent` quiets it, `app.on('error')` gets it). Fastify: its logger.
 */
import express from 'express';
import Fastify from 'fastify';
import Koa from 'koa';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { connect, EOF, HandshakeError, serviceMapper, type WebSocketConnection } from 'rfc6455';
import { websocket as expressWebsocket } from '@rfc6455/express';
import { websocket as koaWebsocket } from '@rfc6455/koa';
import wsPlugin from '@rfc6455/fastify';
import { capturedConsoleErrors } from '../shared/console-errors.js';

const logged = capturedConsoleErrors();
const servers: Server[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

/** What failed on purpose, by path: '/throws' (the handler) and '/hook' (beforeAccept). */
function failures(): { thrown: Map<string, Error>; handler: () => void; beforeAccept: (req: IncomingMessage) => undefined } {
  const thrown = new Map<string, Error>();
  const fail = (path: string, message: string): Error => {
    const error = new Error(message);
    thrown.set(path, error);
    return error;
  };
  return {
    thrown,
    handler: () => {
      throw fail('/throws', 'handler failed');
    },
    beforeAccept: (req) => {
      if (req.url === '/hook') throw fail('/hook', 'hook failed');
      return undefined;
    },
  };
}

async function listen(server: Server): Promise<string> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** '/throws' ends 1011 after the 101, '/hook' is refused 500. */
async function meetFailures(base: string): Promise<void> {
  const conn = await connect(`${base}/throws`);
  expect(await conn.recv()).toBe(EOF);
  expect(conn.closeStatus).toBe(1011);
  const refusal = await connect(`${base}/hook`).catch((error: unknown) => error);
  expect(refusal).toBeInstanceOf(HandshakeError);
  expect((refusal as HandshakeError).status).toBe(500);
}

test('Express without onError: the core reports on stderr, with the context and the stack', async () => {
  const { thrown, handler, beforeAccept } = failures();
  const app = express();
  const ws = expressWebsocket({ beforeAccept });
  ws.route('/throws', handler).route('/hook', () => undefined);
  app.use(ws.middleware);
  const server = createServer(app);
  ws.attach(server, app);
  await meetFailures(await listen(server));
  expect(logged()).toEqual([
    `rfc6455: WebSocket handler failed on /throws: connection closed with 1011\n${thrown.get('/throws')!.stack}`,
    `rfc6455: WebSocket upgrade of /hook failed: answered 500\n${thrown.get('/hook')!.stack}`,
  ]);
});

describe('Koa without onError', () => {
  async function koaApp(setUp: (app: Koa) => void): Promise<{ thrown: Map<string, Error> }> {
    const { thrown, handler, beforeAccept } = failures();
    const app = new Koa();
    setUp(app);
    const ws = koaWebsocket({ mapper: serviceMapper([{ path: '/throws', handler }, { path: '/hook', handler: () => undefined }]), beforeAccept });
    app.use(ws);
    const server = createServer();
    ws.attach(server, app);
    await meetFailures(await listen(server));
    return { thrown };
  }

  test("app.on('error') gets the error object itself: the handler's without a context, the hook's with the upgrade's", async () => {
    const events: Array<[Error, Koa.Context | undefined]> = [];
    const { thrown } = await koaApp((app) => app.on('error', (error: Error, ctx?: Koa.Context) => void events.push([error, ctx])));
    expect(events).toHaveLength(2);
    expect(events[0]![0]).toBe(thrown.get('/throws'));
    expect(events[0]![1]).toBeUndefined();
    expect(events[1]![0]).toBe(thrown.get('/hook'));
    expect(events[1]![1]?.path).toBe('/hook');
    expect(logged()).toEqual([]);
  });

  test("Koa's own app.onerror logs them (its format)", async () => {
    const { thrown } = await koaApp(() => undefined);
    expect(logged()).toEqual([`\n${thrown.get('/throws')!.stack!.replace(/^/gm, '  ')}\n`, `\n${thrown.get('/hook')!.stack!.replace(/^/gm, '  ')}\n`]);
  });

  test('app.silent quiets them, as it quiets Koa', async () => {
    const { thrown } = await koaApp((app) => {
      app.silent = true;
    });
    expect(thrown.size).toBe(2);
    expect(logged()).toEqual([]);
  });

  test("a connection's transport errors are the connection's: a reset reaches its 'error' listener, not the app's 'error' event nor Koa's log; a reset after the peer's close frame, nothing", async () => {
    for (const appListens of [true, false]) {
      const events: unknown[] = [];
      const app = new Koa();
      if (appListens) app.on('error', (error: unknown) => void events.push(error));
      const accepted: WebSocketConnection[] = [];
      const connErrors: unknown[] = [];
      const ws = koaWebsocket({
        mapper: serviceMapper([{ path: '/.*', handler: (conn) => {
          conn.on('error', (error) => void connErrors.push(error));
          accepted.push(conn);
        } }]),
      });
      app.use(ws);
      const server = createServer();
      ws.attach(server, app);
      const base = await listen(server);
      // A TCP reset: the connection reports it (1006).
      let client = await connect(`${base}/reset`);
      await client.ping(); // (the server's side is open and reading)
      (client.transport.stream as Socket).resetAndDestroy();
      await accepted[0]!.whenClosed;
      expect(accepted[0]!.closeStatus).toBe(1006);
      expect(connErrors.map((error) => (error as { code?: string }).code)).toEqual(['ECONNRESET']);
      // A browser leaving a page: 1001, then a reset before our answer is taken.
      client = await connect(`${base}/leave`);
      await client.ping();
      void client.close(1001).catch(() => undefined);
      await new Promise((resolve) => setImmediate(resolve));
      (client.transport.stream as Socket).resetAndDestroy();
      await accepted[1]!.whenClosed;
      expect(accepted[1]!.closeStatus).toBe(1001);
      expect(connErrors).toHaveLength(1);
      expect(events).toEqual([]);
      expect(logged()).toEqual([]);
    }
  });

  test('onError given replaces the app event', async () => {
    const { thrown, handler } = failures();
    const reported: unknown[] = [];
    const events: unknown[] = [];
    const app = new Koa();
    app.on('error', (error: unknown) => void events.push(error));
    const ws = koaWebsocket({ mapper: serviceMapper([{ path: '/throws', handler }]), onError: (error) => void reported.push(error) });
    app.use(ws);
    const server = createServer();
    ws.attach(server, app);
    const conn = await connect(`${await listen(server)}/throws`);
    await conn.whenClosed;
    expect(reported).toEqual([thrown.get('/throws')]);
    expect(events).toEqual([]);
  });
});

test("Fastify without onError: a beforeAccept's error is logged through its logger as an upgrade failure", async () => {
  const entries: Array<{ msg?: string; err?: { message?: string } }> = [];
  const { beforeAccept } = failures();
  const app = Fastify({ logger: { level: 'error', stream: { write: (line: string) => void entries.push(JSON.parse(line)) } } });
  await app.register(wsPlugin, { beforeAccept });
  app.get('/hook', { websocket: true }, () => undefined);
  await app.listen({ port: 0, host: '127.0.0.1' });
  try {
    const refusal = await connect(`ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/hook`).catch((error: unknown) => error);
    expect((refusal as HandshakeError).status).toBe(500);
  } finally {
    await app.close();
  }
  expect(entries.map((entry) => [entry.msg, entry.err?.message])).toEqual([['WebSocket upgrade failed', 'hook failed']]);
  expect(logged()).toEqual([]);
});
