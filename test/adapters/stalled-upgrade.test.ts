/**
 * A framework hook or middleware that never finishes on an upgrade request (a lost `next()`, a
 * call that hangs): the upgrade is answered 408 once `handshakeTimeout` has passed, in each
 * adapter, instead of holding the socket open for good (Node's own request timeouts do not apply
 * to upgrade requests). An upgrade that completes is not affected by that deadline.
 */
import Fastify from 'fastify';
import express from 'express';
import Koa from 'koa';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'rfc6455';
import { wsPlugin } from '@rfc6455/fastify';
import { websocket as expressWebSocket } from '@rfc6455/express';
import { websocket as koaWebSocket } from '@rfc6455/koa';
import { upgradeRequest } from '../../packages/rfc6455/test/helpers/raw-client.js';
import { exchange } from '../robustness/helpers.js';
import { listenStarted, type Started } from '../shared/adapter-suite.js';

const handshakeTimeout = 300;

/** Each app: /stuck never gets past its framework's chain; /ok is an echo. */
const APPS: Array<[string, () => Promise<Started>]> = [
  [
    'express',
    async () => {
      const app = express();
      const ws = expressWebSocket({ handshakeTimeout });
      ws.route('/ok', (conn) => void conn.on('message', (m) => void conn.send(m).catch(() => undefined)));
      ws.route('/stuck', () => undefined);
      app.use('/stuck', () => undefined); // never calls next() nor answers
      app.use(ws.middleware);
      const server = createServer(app);
      ws.attach(server, app);
      return listenStarted(server, () => ws.close());
    },
  ],
  [
    'koa',
    async () => {
      const app = new Koa();
      const ws = koaWebSocket({ handshakeTimeout });
      app.use(async (ctx, next) => {
        if (ctx.path === '/stuck') await new Promise(() => undefined); // never settles
        await next();
      });
      app.use(ws);
      app.use(async (ctx) => {
        if (ctx.path === '/ok' && ctx.ws) {
          const conn = await ctx.ws();
          conn?.on('message', (m) => void conn.send(m).catch(() => undefined));
        }
      });
      const server = createServer(app.callback());
      ws.attach(server, app);
      return listenStarted(server, () => ws.close());
    },
  ],
  [
    'fastify',
    async () => {
      const app = Fastify();
      await app.register(wsPlugin, { handshakeTimeout });
      app.addHook('onRequest', (request, _reply, done) => {
        if (request.url !== '/stuck') done(); // /stuck: done() is never called
      });
      app.get('/ok', { websocket: true }, (conn) => void conn.on('message', (m) => void conn.send(m).catch(() => undefined)));
      app.get('/stuck', { websocket: true }, () => undefined);
      await app.listen({ port: 0, host: '127.0.0.1' });
      return { port: (app.server.address() as AddressInfo).port, close: () => app.close() };
    },
  ],
];

describe.each(APPS)('%s: an upgrade the framework never finishes handling', (_name, start) => {
  let started: Started;
  beforeAll(async () => {
    started = await start();
  });
  afterAll(() => started.close());

  test('is answered 408 after handshakeTimeout, and its socket closed', async () => {
    // (Before: no answer at all, and the socket open until the client gave up.)
    const { response } = await exchange(started.port, upgradeRequest(started.port, { path: '/stuck' }));
    expect(response?.status).toBe(408);
    expect(response?.headers['sec-websocket-accept']).toBeUndefined();
  });

  test('an upgrade that completes is not cut by that deadline', async () => {
    const conn = await connect(`ws://127.0.0.1:${started.port}/ok`);
    await new Promise((r) => setTimeout(r, handshakeTimeout * 2));
    await conn.send('still open');
    expect(await conn.recv()).toBe('still open');
    await conn.close();
    expect(conn.closeStatus).toBe(1000);
  });
});
