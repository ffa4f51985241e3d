/**
 * Type tests for the three adapters (checked by `npm run typecheck`, never executed): the
 * connection, the request and the route params a handler receives are typed.
 */
import { expectTypeOf } from 'expect-type';
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyTypeProvider } from 'fastify';
import express, { type Request } from 'express';
import Koa from 'koa';
import type { IncomingMessage } from 'node:http';
import { serviceMapper, type WebSocketConnection } from 'rfc6455';
import { wsPlugin, type RouteParams } from '@rfc6455/fastify';
import { websocket as expressWebSocket, type Locals, type PathParams } from '@rfc6455/express';
import { websocket as koaWebSocket, type AcceptWebSocket, type KoaState } from '@rfc6455/koa';

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
// The context's params are `req.params` (validated, perhaps coerced, by the route's schema), typed
// as Fastify types them: a `Params` generic that is not all strings…
fastify.get<{ Params: { id: number } }>('/n/:id', { websocket: true, schema: { params: { type: 'object', properties: { id: { type: 'integer' } } } } }, (_conn, req, ctx) => {
  expectTypeOf(ctx.params).toEqualTypeOf<{ id: number }>();
  expectTypeOf(ctx.params).toEqualTypeOf(req.params);
});
// …a type provider's params schema…
interface ParamsProvider extends FastifyTypeProvider {
  validator: this['schema'] extends { numericId: true } ? { id: number } : unknown;
}
fastify.withTypeProvider<ParamsProvider>().get('/p/:id', { websocket: true, schema: { params: { numericId: true } } }, (_conn, req, ctx) => {
  expectTypeOf(req.params).toEqualTypeOf<{ id: number }>();
  expectTypeOf(ctx.params).toEqualTypeOf<{ id: number }>();
});
fastify.route<{ Params: { id: number } }>({
  method: 'GET',
  url: '/r/:id',
  websocket: true,
  handler: async () => 'plain',
  wsHandler: (_conn, _req, ctx) => {
    expectTypeOf(ctx.params).toEqualTypeOf<{ id: number }>();
  },
});
// …a params schema the default provider leaves untyped: unknown, as req.params (it may be coerced)…
fastify.get('/u/:id', { websocket: true, schema: { params: { type: 'object', properties: { id: { type: 'integer' } } } } }, (_conn, req, ctx) => {
  expectTypeOf(req.params).toBeUnknown();
  expectTypeOf(ctx.params).toBeUnknown();
});
// …and without a generic or a schema, the router's strings.
fastify.get('/s/:id', { websocket: true }, (_conn, _req, ctx) => {
  expectTypeOf(ctx.params).toEqualTypeOf<Record<string, string>>();
});
expectTypeOf<RouteParams<{ Params: { room: string } }>>().toEqualTypeOf<{ room: string }>();
expectTypeOf<RouteParams<{ Params: { id: number } }>>().toEqualTypeOf<{ id: number }>();
fastify.get('/plain', { websocket: true }, (conn, req) => {
  expectTypeOf(req).toMatchTypeOf<FastifyRequest>();
  expectTypeOf(conn.send).toBeFunction();
});
// A route's `handler` is its WebSocket handler when it has no `wsHandler`, and is typed as one…
fastify.route<{ Params: { id: string } }>({
  method: 'GET',
  url: '/only/:id',
  websocket: true,
  handler: (conn, req, ctx) => {
    expectTypeOf(conn).toEqualTypeOf<WebSocketConnection>();
    expectTypeOf(req.params).toEqualTypeOf<{ id: string }>();
    expectTypeOf(ctx.params).toEqualTypeOf<{ id: string }>();
  },
});
fastify.get('/in-options', {
  websocket: true,
  handler: (conn, req) => {
    expectTypeOf(conn).toEqualTypeOf<WebSocketConnection>();
    expectTypeOf(req).toMatchTypeOf<FastifyRequest>();
  },
});
// …and serves plain HTTP beside a `wsHandler`.
fastify.route({
  method: 'GET',
  url: '/beside',
  websocket: true,
  handler: async (request, reply) => {
    expectTypeOf(request).toMatchTypeOf<FastifyRequest>();
    return reply.send('plain');
  },
  wsHandler: (conn) => {
    expectTypeOf(conn).toEqualTypeOf<WebSocketConnection>();
  },
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
// A group that may take no part in the match is left out of params by the core: an optional key.
expectTypeOf<PathParams<'/chat(?:/(?<room>\\w+))?'>>().toEqualTypeOf<{ room?: string }>();
expectTypeOf<PathParams<'/a/(?<id>\\d+)(?:/(?<sub>\\w+))?'>>().toEqualTypeOf<{ id: string; sub?: string }>();
expectTypeOf<PathParams<'/a/(?<x>\\d+)*/b'>>().toEqualTypeOf<{ x?: string }>();
expectTypeOf<PathParams<'/a/(?<x>\\d+)|/b/(?<y>\\d+)'>>().toEqualTypeOf<{ x?: string; y?: string }>();
expectTypeOf<PathParams<'/(?<kind>rooms|users)/(?<id>\\d+)'>>().toEqualTypeOf<{ kind: string; id: string }>();
expectTypeOf<PathParams<'/(?:a|(?<x>b))/(?<y>[|)]+)(?:c)?'>>().toEqualTypeOf<{ x?: string; y: string }>();
expectTypeOf<PathParams<'/a\\((?<x>\\d+)\\)?'>>().toEqualTypeOf<{ x: string }>();
expectTypeOf<PathParams<'/(?<x>a(?<y>b)?c){0,2}'>>().toEqualTypeOf<{ x?: string; y?: string }>();
expectTypeOf<PathParams<'/(?<x>a(?<y>b)?c)+'>>().toEqualTypeOf<{ x: string; y?: string }>();
// A lookbehind is no group.
expectTypeOf<PathParams<'/a(?<=a)/(?<id>\\d+)'>>().toEqualTypeOf<{ id: string }>();
ws.route('/chat(?:/(?<room>\\w+))?', (_conn, _req, { params }) => {
  expectTypeOf(params.room).toEqualTypeOf<string | undefined>();
});
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
// An app with a context type of its own has ctx.ws too.
const typedKoa = new Koa<{ user: string }, { requestId: string }>();
typedKoa.use(async (ctx) => {
  expectTypeOf(ctx.requestId).toEqualTypeOf<string>();
  expectTypeOf(ctx.ws).toEqualTypeOf<AcceptWebSocket | undefined>();
});

// ---- What the adapters hand a handler at run time (test/adapters/handler-shapes.test.ts) ----------
// Fastify: a route handler's `this` is the instance, its state what beforeAccept gave (unknown:
// the plugin's hook is untyped); a mapper's handlers get the raw request, the FastifyRequest as state.
fastify.get('/shape/:id', { websocket: true }, function (conn, req, ctx) {
  expectTypeOf(this).toMatchTypeOf<FastifyInstance>();
  expectTypeOf(conn).toEqualTypeOf<WebSocketConnection>();
  expectTypeOf(req).toMatchTypeOf<FastifyRequest>();
  expectTypeOf(ctx).toEqualTypeOf<Omit<import('rfc6455').HandlerContext<unknown>, 'params'> & { params: Record<string, string> }>();
});
void Fastify().register(wsPlugin, {
  mapper: serviceMapper<FastifyRequest>([{ path: '/m', handler: (_conn, req, ctx) => {
    expectTypeOf(req).toEqualTypeOf<IncomingMessage>();
    expectTypeOf(ctx.state.raw).toEqualTypeOf<FastifyRequest['raw']>();
  } }]),
});
// Express: route() handlers and the mapper option's get `res.locals` as state; the mapper option
// takes a mapper typed so (fixed bug: only a ServiceMapper<unknown> type-checked there).
expressWebSocket({
  mapper: serviceMapper<Locals>([{ path: '/m', handler: (_conn, req, ctx) => {
    expectTypeOf(req).toEqualTypeOf<IncomingMessage>();
    expectTypeOf(ctx.state).toEqualTypeOf<Locals>();
  } }]),
});
expressWebSocket({ mapper: serviceMapper([{ path: '/m', handler: () => undefined }]) });
expressWebSocket().route('/shape', (_conn, req, ctx) => {
  expectTypeOf(req).toEqualTypeOf<Request>();
  expectTypeOf(ctx.state).toEqualTypeOf<Locals>();
  expectTypeOf(ctx.protocol).toEqualTypeOf<string>();
  expectTypeOf(ctx.params).toMatchTypeOf<Record<string, string>>();
});
// Koa: ctx.ws(handler) and the mapper's handlers get ctx.req and ctx.state.
koaWebSocket({ mapper: serviceMapper<KoaState>([{ path: '/m', handler: (_conn, req, ctx) => {
  expectTypeOf(req).toEqualTypeOf<IncomingMessage>();
  expectTypeOf(ctx.state).toEqualTypeOf<KoaState>();
} }]) });
koa.use(async (ctx) => {
  await ctx.ws?.((_conn, req, context) => {
    expectTypeOf(req).toEqualTypeOf<IncomingMessage>();
    expectTypeOf(context).toEqualTypeOf<import('rfc6455').HandlerContext<KoaState, Record<string, string>>>();
  });
});
