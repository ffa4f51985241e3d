/**
 * Type tests for the three adapters (checked by `npm run typecheck`, never executed): the
 * connection, the request and the route params a handler receives are typed.
 */
import { expectTypeOf } from 'expect-type';
import Fastify, { type FastifyRequest } from 'fastify';
import express, { type Request } from 'express';
import Koa from 'koa';
import type { IncomingMessage } from 'node:http';
import { serviceMapper, type WebSocketConnection } from 'rfc6455';
import { wsPlugin } from '@rfc6455/fastify';
import { websocket as expressWebSocket, type PathParams } from '@rfc6455/express';
import { websocket as koaWebSocket, type AcceptWebSocket } from '@rfc6455/koa';

// ---- Fastify ------------------------------------------------------------------------------------
const fastify = Fastify();
void fastify.register(wsPlugin, { perMessageDeflate: false, mapper: serviceMapper([{ path: '/m', handler: () => undefined }]) });
fastify.get<{ Params: { room: string }; Querystring: { token?: string } }>('/rooms/:room', { websocket: true }, (conn, req, ctx) => {
  expectTypeOf(conn).toEqualTypeOf<WebSocketConnection>();
  expectTypeOf(req.params).toEqualTypeOf<{ room: string }>();
  expectTypeOf(req.query.token).toEqualTypeOf<string | undefined>();
  expectTypeOf(ctx.params.room).toEqualTypeOf<string>();
  expectTypeOf(ctx.protocol).toEqualTypeOf<string>();
  expectTypeOf(req.raw).toMatchTypeOf<IncomingMessage>();
});
fastify.get('/plain', { websocket: true }, (conn, req) => {
  expectTypeOf(req).toMatchTypeOf<FastifyRequest>();
  expectTypeOf(conn.send).toBeFunction();
});
// Ordinary routes keep their own types.
fastify.get('/http', async (request, reply) => {
  expectTypeOf(request).toMatchTypeOf<FastifyRequest>();
  return reply.send('ok');
});
expectTypeOf(fastify.websocketConnections).toEqualTypeOf<ReadonlySet<WebSocketConnection>>();

// ---- Express ------------------------------------------------------------------------------------
const app = express();
const ws = expressWebSocket({ origins: ['https://example.com'] });
ws.route('/rooms/(?<room>\\w+)/(?<user>\\d+)', (conn, req, ctx) => {
  expectTypeOf(conn).toEqualTypeOf<WebSocketConnection>();
  expectTypeOf(req).toEqualTypeOf<Request>();
  expectTypeOf(ctx.params.room).toEqualTypeOf<string>();
  expectTypeOf(ctx.params.user).toEqualTypeOf<string>();
  expectTypeOf(ctx.state).toEqualTypeOf<Record<string, unknown>>();
});
ws.route('/proto', {
  protocols: {
    chat: (conn, _req, ctx) => {
      expectTypeOf(conn).toEqualTypeOf<WebSocketConnection>();
      expectTypeOf(ctx.protocol).toEqualTypeOf<string>();
    },
  },
});
expectTypeOf<PathParams<'/a/(?<id>\\d+)'>>().toEqualTypeOf<{ id: string }>();
expectTypeOf<PathParams<RegExp>>().toEqualTypeOf<Record<string, string>>();
app.use(ws.middleware);
// @ts-expect-error attach needs the app to run the middleware chain
ws.attach(app.listen(0));

// ---- Koa ----------------------------------------------------------------------------------------
const koa = new Koa();
const koaWs = koaWebSocket(serviceMapper([{ path: '/(?<id>\\d+)', handler: (conn, req, ctx) => {
  expectTypeOf(conn).toEqualTypeOf<WebSocketConnection>();
  expectTypeOf(req).toEqualTypeOf<IncomingMessage>();
  expectTypeOf(ctx.params).toEqualTypeOf<Record<string, string>>();
} }]));
koa.use(koaWs);
koa.use(async (ctx) => {
  expectTypeOf(ctx.ws).toEqualTypeOf<AcceptWebSocket | undefined>();
  if (!ctx.ws) return;
  const conn = await ctx.ws((c, _req, context) => {
    expectTypeOf(c).toEqualTypeOf<WebSocketConnection>();
    expectTypeOf(context.state).toEqualTypeOf<Koa.DefaultState>();
  });
  expectTypeOf(conn).toEqualTypeOf<WebSocketConnection | undefined>();
});
koaWs.attach(koa.listen(0), koa);
