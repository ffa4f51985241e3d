/**
 * In each adapter, handshakeTimeout bounds the whole upgrade, as docs/limits-and-security.md
 * says: the framework's hooks or middleware and the before-accept hook share one deadline,
 * counted from when the adapter took the request. Fixed bug: the framework's part had
 * handshakeTimeout, then beforeAccept another whole one, up to twice it in all.
 *
 * A framework hook takes most of the timeout, then beforeAccept more than what is left but less
 * than a whole timeout: the upgrade must be cut (no connection), where it used to be accepted. The
 * margins either way are 400 ms or more.
 */
import Fastify from 'fastify';
import express from 'express';
import Koa from 'koa';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect, HandshakeError, type UpgradeOptions, type WebSocketConnection } from 'rfc6455';
import { wsPlugin } from '@rfc6455/fastify';
import { websocket as expressWebSocket } from '@rfc6455/express';
import { websocket as koaWebSocket } from '@rfc6455/koa';

const TIMEOUT = 1500;
const FRAMEWORK_DELAY = 900;
const HOOK_DELAY = 1100;

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const options: UpgradeOptions<never> = {
  handshakeTimeout: TIMEOUT,
  beforeAccept: async () => {
    await delay(HOOK_DELAY);
    return undefined;
  },
};

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function stop(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

const APPS: Array<[string, () => Promise<{ port: number; stop: () => Promise<void> }>]> = [
  [
    'fastify',
    async () => {
      const app = Fastify();
      await app.register(wsPlugin, options as never);
      app.addHook('onRequest', async () => delay(FRAMEWORK_DELAY));
      app.get('/', { websocket: true }, () => undefined);
      await app.listen({ port: 0, host: '127.0.0.1' });
      return { port: (app.server.address() as AddressInfo).port, stop: () => app.close() };
    },
  ],
  [
    'express',
    async () => {
      const app = express();
      const ws = expressWebSocket(options as never);
      ws.route('/', () => undefined);
      app.use((_req, _res, next) => void delay(FRAMEWORK_DELAY).then(() => next()));
      app.use(ws.middleware);
      const server = createServer(app);
      ws.attach(server, app);
      return { port: await listen(server), stop: () => stop(server) };
    },
  ],
  [
    'koa',
    async () => {
      const app = new Koa();
      const ws = koaWebSocket(options as never);
      app.use(async (_ctx, next) => {
        await delay(FRAMEWORK_DELAY);
        await next();
      });
      app.use(ws);
      app.use(async (ctx) => {
        if (ctx.ws) await ctx.ws(() => undefined);
      });
      const server = createServer(app.callback());
      ws.attach(server, app);
      return { port: await listen(server), stop: () => stop(server) };
    },
  ],
];

test.each(APPS)('%s: the framework\'s hooks and beforeAccept share one handshakeTimeout', async (_name, start) => {
  const running = await start();
  try {
    const outcome = await connect(`ws://127.0.0.1:${running.port}/`).then(
      (conn) => conn,
      (error: unknown) => error,
    );
    // Before: beforeAccept had a whole handshakeTimeout of its own and the upgrade was accepted.
    if (!(outcome instanceof HandshakeError)) (outcome as WebSocketConnection).terminate();
    expect(outcome).toBeInstanceOf(HandshakeError);
    // Cut by the deadline: the socket closed without an answer (or, on a machine so loaded that a
    // timer ran more than 600 ms late, answered 408 while still in the framework's hooks).
    expect([0, 408]).toContain((outcome as HandshakeError).status);
  } finally {
    await running.stop();
  }
});
