/**
 * What each adapter really hands a WebSocket handler (the connection, the request, `this`, the
 * context's keys, params and state), recorded from real apps with real `ws` clients, against what
 * their public types declare (the compile-time half: test/adapters/adapter-types.typecheck.ts):
 * Fastify's `{ websocket: true }` route handler (`this` the Fastify instance, the FastifyRequest,
 * `req.params` in the context, the hook's state) and its mapper's handlers (the raw request, the
 * FastifyRequest as state); Express's `route()` handlers and its `mapper` option's (the Express
 * request, `res.locals` as state, a group that took no part left out); Koa's `ctx.ws(handler)` and
 * its mapper's handlers (`ctx.req`, `ctx.state`, the router's params).
 */
import Router from '@koa/router';
import express from 'express';
import Fastify from 'fastify';
import Koa from 'koa';
import { once } from 'node:events';
import { createServer, IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket as WsClient } from 'ws';
import { serviceMapper, WebSocketConnection } from 'rfc6455';
import { wsPlugin } from '@rfc6455/fastify';
import { websocket as expressWebSocket, type Locals } from '@rfc6455/express';
import { websocket as koaWebSocket, type KoaState } from '@rfc6455/koa';

/** What a handler received, reduced to what its declared type says about it. */
interface Shape {
  conn: boolean;
  /** The request's own fields that tell which kind it is. */
  req: { incoming: boolean; fastify: boolean; express: boolean };
  /** `this` has Fastify's instance methods. */
  thisIsFastify: boolean;
  contextKeys: string[];
  params: unknown;
  state: unknown;
  /** The state is the FastifyRequest whose raw request the handler got (a Fastify mapper's). */
  stateIsFastifyRequest: boolean;
}

function shapeOf(self: unknown, conn: unknown, req: unknown, ctx: { params: unknown; state: unknown; protocol: string }): Shape {
  const r = req as Record<string, unknown>;
  const state = ctx.state as Record<string, unknown> | undefined;
  return {
    conn: conn instanceof WebSocketConnection,
    req: { incoming: req instanceof IncomingMessage, fastify: r['raw'] instanceof IncomingMessage && typeof r['log'] === 'object', express: typeof r['app'] === 'function' && r['res'] !== undefined },
    thisIsFastify: typeof (self as { decorate?: unknown } | undefined)?.decorate === 'function',
    contextKeys: Object.keys(ctx).sort(),
    params: { ...(ctx.params as object) },
    state: state !== null && typeof state === 'object' && 'raw' in state ? 'FastifyRequest' : state,
    stateIsFastifyRequest: state !== null && typeof state === 'object' && state['raw'] === req,
  };
}

/** Collects shapes by name; `next(name)` resolves with the shape once that handler ran. */
class Probe {
  private readonly seen = new Map<string, Shape>();
  private readonly waiting = new Map<string, (shape: Shape) => void>();
  record(name: string, shape: Shape): void {
    this.seen.set(name, shape);
    this.waiting.get(name)?.(shape);
  }
  next(name: string): Promise<Shape> {
    const known = this.seen.get(name);
    return known ? Promise.resolve(known) : new Promise((resolve) => this.waiting.set(name, resolve));
  }
}

const clients: WsClient[] = [];
const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const client of clients.splice(0)) client.terminate();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function open(url: string): Promise<void> {
  const client = new WsClient(url);
  clients.push(client);
  await once(client, 'open');
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

test('Fastify: a websocket route handler gets `this` the instance, the FastifyRequest and req.params; a mapper handler the raw request and the FastifyRequest as state', async () => {
  const probe = new Probe();
  const app = Fastify();
  cleanups.push(() => app.close());
  await app.register(wsPlugin, {
    beforeAccept: (_req, { path }) => (path === '/hooked/1' ? { state: { user: 'ann' } } : undefined),
    mapper: serviceMapper([{ path: '/m/(?<id>\\d+)', handler: (conn, req, ctx) => probe.record('mapper', shapeOf(undefined, conn, req, ctx)) }]),
  });
  app.get('/r/:id', { websocket: true }, function (conn, req, ctx) {
    probe.record('route', shapeOf(this, conn, req, ctx));
  });
  app.get('/hooked/:id', { websocket: true }, function (conn, req, ctx) {
    probe.record('hooked', shapeOf(this, conn, req, ctx));
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const base = `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  await Promise.all([open(`${base}/r/7`), open(`${base}/hooked/1`), open(`${base}/m/9`)]);

  expect(await probe.next('route')).toEqual({
    conn: true,
    req: { incoming: false, fastify: true, express: false },
    thisIsFastify: true,
    contextKeys: ['params', 'protocol', 'state'],
    params: { id: '7' },
    state: undefined,
    stateIsFastifyRequest: false,
  });
  expect(await probe.next('hooked')).toMatchObject({ req: { fastify: true }, params: { id: '1' }, state: { user: 'ann' } });
  expect(await probe.next('mapper')).toEqual({
    conn: true,
    req: { incoming: true, fastify: false, express: false },
    thisIsFastify: false,
    contextKeys: ['params', 'protocol', 'state'],
    params: { id: '9' },
    state: 'FastifyRequest',
    stateIsFastifyRequest: true,
  });
});

test('Express: route() handlers and the mapper option\'s get the Express request and res.locals as state; a group that took no part is left out of params', async () => {
  const probe = new Probe();
  const app = express();
  const ws = expressWebSocket({
    mapper: serviceMapper<Locals>([{ path: '/m', handler: (conn, req, ctx) => probe.record('mapper', shapeOf(undefined, conn, req, ctx)) }]),
  });
  ws.route('/chat(?:/(?<room>\\w+))?', (conn, req, ctx) => probe.record(`route:${ctx.params.room ?? '-'}`, shapeOf(undefined, conn, req, ctx)));
  app.use((_req, res, next) => {
    res.locals['user'] = 'ann';
    next();
  });
  app.use(ws.middleware);
  const server = createServer(app);
  const detach = ws.attach(server, app);
  cleanups.push(detach, () => ws.close());
  const base = await listen(server);
  await Promise.all([open(`${base}/chat/lobby`), open(`${base}/chat`), open(`${base}/m`)]);

  const expressShape = { conn: true, req: { incoming: true, fastify: false, express: true }, thisIsFastify: false, contextKeys: ['params', 'protocol', 'state'], state: { user: 'ann' }, stateIsFastifyRequest: false };
  expect(await probe.next('route:lobby')).toEqual({ ...expressShape, params: { room: 'lobby' } });
  expect(await probe.next('route:-')).toEqual({ ...expressShape, params: {} });
  expect(await probe.next('mapper')).toEqual({ ...expressShape, params: {} });
});

test('Koa: ctx.ws(handler) and the mapper\'s handlers get ctx.req and ctx.state; ctx.ws(handler) the router\'s params too', async () => {
  const probe = new Probe();
  const app = new Koa();
  const ws = koaWebSocket({
    mapper: serviceMapper<KoaState>([{ path: '/m/(?<id>\\d+)', handler: (conn, req, ctx) => probe.record('mapper', shapeOf(undefined, conn, req, ctx)) }]),
    claim: () => true,
  });
  app.use(async (ctx, next) => {
    ctx.state['user'] = 'ann';
    await next();
  });
  app.use(ws);
  const router = new Router();
  router.get('/rooms/:room', async (ctx) => {
    if (ctx.ws) await ctx.ws((conn, req, context) => probe.record('inline', shapeOf(undefined, conn, req, context)));
  });
  app.use(router.routes());
  const server = createServer(app.callback());
  cleanups.push(ws.attach(server, app), () => ws.close());
  const base = await listen(server);
  await Promise.all([open(`${base}/rooms/lobby`), open(`${base}/m/3`)]);

  const koaShape = { conn: true, req: { incoming: true, fastify: false, express: false }, thisIsFastify: false, contextKeys: ['params', 'protocol', 'state'], state: { user: 'ann' }, stateIsFastifyRequest: false };
  expect(await probe.next('inline')).toEqual({ ...koaShape, params: { room: 'lobby' } });
  expect(await probe.next('mapper')).toEqual({ ...koaShape, params: { id: '3' } });
});
