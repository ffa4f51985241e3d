/**
 * @rfc6455/fastify: WebSocket routes for Fastify that go through Fastify's routing and hooks.
 *
 *   await app.register(wsPlugin, { origins: ['https://example.com'] });
 *   app.get('/chat/:room', { websocket: true }, (conn, request, { protocol }) => { … });
 *   // and/or a core service mapper: app.register(wsPlugin, { mapper })
 *
 * How an upgrade request travels: the plugin listens for `upgrade` on `app.server`. If no route
 * (and no mapper route) serves the path and another `upgrade` listener exists, the socket is left
 * untouched for it. Otherwise the request goes to `app.routing(req, res)` with a ServerResponse
 * written to the raw socket, so `onRequest`, `preParsing`, `preValidation` and `preHandler` hooks
 * run as for any request; a hook that replies (401 + WWW-Authenticate) is that HTTP response. A
 * `{ websocket: true }` route's handler then hijacks the reply and the core's `handleUpgrade`
 * answers 101 (or 400/403…). `app.close()` closes open connections with 1001 first.
 *
 * A mapper given in the options is served by one catch-all route, `GET /*`, which every other
 * route outranks; its plain HTTP requests go to the not-found handler. Its handlers receive the
 * raw request, and the FastifyRequest as `state`.
 */
import fp from 'fastify-plugin';
import type {
  ContextConfigDefault,
  FastifyBaseLogger,
  FastifyInstance,
  FastifyPluginCallback,
  FastifyReply,
  FastifyRequest,
  FastifySchema,
  FastifyTypeProvider,
  FastifyTypeProviderDefault,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerBase,
  RawServerDefault,
  RouteGenericInterface,
} from 'fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { injectWS, type InjectWebSocketOptions } from './inject.js';
import {
  CloseCode,
  handleUpgrade,
  requestPath,
  upgradeResponse,
  serviceMapper,
  type ConnectionHandler,
  type HandlerContext,
  type ServiceMapper,
  type UpgradeOptions,
  type UpgradeTarget,
  type WebSocketConnection,
} from 'rfc6455';

/**
 * A WebSocket route handler: the core's signature, with the FastifyRequest (decorators, typed
 * params, query, headers) as `req` and the route's params in the context.
 */
export type FastifyWebSocketHandler<
  RawServer extends RawServerBase = RawServerDefault,
  RawRequest extends RawRequestDefaultExpression<RawServer> = RawRequestDefaultExpression<RawServer>,
  RouteGeneric extends RouteGenericInterface = RouteGenericInterface,
  ContextConfig = ContextConfigDefault,
  SchemaCompiler extends FastifySchema = FastifySchema,
  TypeProvider extends FastifyTypeProvider = FastifyTypeProviderDefault,
  Logger extends FastifyBaseLogger = FastifyBaseLogger,
> = (
  this: FastifyInstance<RawServer, RawRequest, RawReplyDefaultExpression<RawServer>, Logger, TypeProvider>,
  conn: WebSocketConnection,
  req: FastifyRequest<RouteGeneric, RawServer, RawRequest, SchemaCompiler, TypeProvider, ContextConfig, Logger>,
  context: HandlerContext<unknown, RouteParams<RouteGeneric>>,
) => void | Promise<void>;

/** The route's params type (fastify's `Params` generic), as a record of strings by default. */
export type RouteParams<RouteGeneric extends RouteGenericInterface> = RouteGeneric['Params'] extends Record<string, string>
  ? RouteGeneric['Params']
  : Record<string, string>;

declare module 'fastify' {
  interface RouteShorthandOptions<RawServer, RawRequest, RawReply, RouteGeneric, ContextConfig, SchemaCompiler, TypeProvider, Logger> {
    /** Serve WebSocket upgrades on this route (see @rfc6455/fastify). */
    websocket?: boolean;
  }
  interface RouteOptions<RawServer, RawRequest, RawReply, RouteGeneric, ContextConfig, SchemaCompiler, TypeProvider, Logger> {
    /** With `websocket: true`: the WebSocket handler, while `handler` serves plain HTTP. */
    wsHandler?: FastifyWebSocketHandler<RawServer, RawRequest, RouteGeneric, ContextConfig, SchemaCompiler, TypeProvider, Logger>;
  }
  interface RouteShorthandMethod<RawServer, RawRequest, RawReply, TypeProvider, Logger> {
    <RouteGeneric extends RouteGenericInterface = RouteGenericInterface, ContextConfig = ContextConfigDefault, const SchemaCompiler extends FastifySchema = FastifySchema>(
      path: string,
      opts: RouteShorthandOptions<RawServer, RawRequest, RawReply, RouteGeneric, ContextConfig, SchemaCompiler, TypeProvider, Logger> & { websocket: true },
      handler: FastifyWebSocketHandler<RawServer, RawRequest, RouteGeneric, ContextConfig, SchemaCompiler, TypeProvider, Logger>,
    ): FastifyInstance<RawServer, RawRequest, RawReply, Logger, TypeProvider>;
  }
  interface FastifyInstance {
    /** Open WebSocket connections (see @rfc6455/fastify). */
    readonly websocketConnections: ReadonlySet<WebSocketConnection>;
    /** Opens an in-memory WebSocket to `path` (real HTTP/1.1 handshake, no port): see `injectWS`. */
    injectWS(path?: string, options?: InjectWebSocketOptions): Promise<WebSocketConnection>;
  }
}

/** Options of the plugin: the core's upgrade and connection options, plus an optional mapper. */
export interface FastifyWebSocketOptions extends UpgradeOptions<unknown> {
  /** A core service mapper, served behind Fastify's hooks by a catch-all `GET /*` route. */
  mapper?: ServiceMapper<FastifyRequest> | ServiceMapper<unknown>;
}

interface PendingUpgrade {
  socket: Duplex;
  head: Buffer;
  res: ServerResponse;
  request?: FastifyRequest;
}

const PENDING = Symbol('rfc6455.fastify.upgrade');
type UpgradeRequest = IncomingMessage & { [PENDING]?: PendingUpgrade };
type AnyHandler = (this: FastifyInstance, ...args: unknown[]) => unknown;

function noop(): void {}



/** Plain HTTP on a WebSocket-only route: 426 (RFC 9110 §15.5.22). */
function upgradeRequired(_request: FastifyRequest, reply: FastifyReply): void {
  void reply
    .code(426)
    .headers({ Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Version': '13' })
    .type('text/plain; charset=utf-8')
    .send('This endpoint speaks WebSocket only.\n');
}

const CATCH_ALL = '/*';

const plugin: FastifyPluginCallback<FastifyWebSocketOptions> = (app, options, done) => {
  const connections = new Set<WebSocketConnection>();
  const mapper = options.mapper as ServiceMapper<unknown> | undefined;
  let closing = false;

  // One options object for every upgrade: without a before-accept hook the handshake stays synchronous.
  const upgradeOptions: UpgradeOptions<unknown> = {
    ...options,
    onError(error, conn, req) {
      if (options.onError) options.onError(error, conn, req);
      else ((req as UpgradeRequest)[PENDING]?.request?.log ?? app.log).error({ err: error }, 'WebSocket handler failed');
    },
    connections,
  };

  /** Mapper handlers get the FastifyRequest as state unless a before-accept hook gave one. */
  const withRequest =
    (h: ConnectionHandler<unknown>): ConnectionHandler<unknown> =>
    (conn, req, ctx) =>
      h(conn, req, ctx.state === undefined ? { ...ctx, state: (req as UpgradeRequest)[PENDING]?.request } : ctx);
  const routed: ServiceMapper<unknown> | undefined =
    mapper &&
    serviceMapper(
      mapper.routes.map((route) => ({
        path: route.path,
        handler: route.handler && withRequest(route.handler),
        protocols: Object.fromEntries(Object.entries(route.protocols ?? {}).map(([name, h]) => [name, withRequest(h)])),
      })),
    );

  /** Takes the socket back from the reply and hands it to the core. */
  const accept = (request: FastifyRequest, reply: FastifyReply, pending: PendingUpgrade, target: UpgradeTarget<unknown>): void => {
    reply.hijack();
    pending.request = request;
    pending.res.detachSocket(pending.socket as Socket);
    void handleUpgrade(request.raw, pending.socket, pending.head, target, upgradeOptions);
  };

  const mapperClaims = (path: string): boolean => {
    return mapper !== undefined && mapper.claims(path);
  };
  /** Synchronously: does a route of this app serve the upgrade's path? */
  const claims = (req: IncomingMessage): boolean => {
    const path = requestPath(req.url);
    if (mapperClaims(path)) return true;
    try {
      const found = app.findRoute({ method: 'GET', url: path });
      if (!found) return false;
      // The mapper's catch-all matches everything; it does not claim paths the mapper does not serve.
      const keys = Object.keys(found.params ?? {});
      return !(mapper && keys.length === 1 && keys[0] === '*' && `/${(found.params as Record<string, string>)['*']}` === decodeURI(path));
    } catch {
      return true; // a malformed path: let Fastify answer it (400)
    }
  };

  app.decorate('websocketConnections', connections);
  app.decorate('injectWS', function (this: FastifyInstance, path?: string, init?: InjectWebSocketOptions) {
    return injectWS(this, path, init);
  });

  app.addHook('onRoute', (route) => {
    if (!route.websocket) return;
    const wsHandler = (route.wsHandler ?? route.handler) as unknown as AnyHandler;
    const httpHandler = (route.wsHandler ? route.handler : upgradeRequired) as unknown as AnyHandler;
    route.handler = function (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
      const pending = (request.raw as UpgradeRequest)[PENDING];
      if (!pending) return httpHandler.call(this, request, reply);
      const instance = this;
      accept(request, reply, pending, (conn, _raw, ctx) => wsHandler.call(instance, conn, request, { ...ctx, params: request.params }) as void | Promise<void>);
      return undefined;
    } as typeof route.handler;
  });

  if (mapper) {
    app.route({
      method: 'GET',
      url: CATCH_ALL,
      handler(request, reply) {
        const pending = (request.raw as UpgradeRequest)[PENDING];
        if (!pending || !routed || !mapperClaims(requestPath(request.raw.url))) return reply.callNotFound();
        accept(request, reply, pending, routed);
        return undefined;
      },
    });
  }

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (!claims(req) && app.server.listenerCount('upgrade') > 1) return; // someone else's
    socket.on('error', noop);
    const res = upgradeResponse(req, socket);
    if (closing) {
      res.writeHead(503, { 'Content-Type': 'text/plain; charset=utf-8' }).end('server is shutting down\n');
      return;
    }
    (req as UpgradeRequest)[PENDING] = { socket, head, res };
    try {
      app.routing(req, res);
    } catch (error) {
      app.log.error({ err: error }, 'WebSocket upgrade routing failed');
      socket.destroy();
    }
  };
  app.server.on('upgrade', onUpgrade);

  app.addHook('preClose', async () => {
    closing = true;
    await Promise.all([...connections].map((conn) => conn.close(CloseCode.GoingAway, 'server shutting down').catch(noop)));
  });
  app.addHook('onClose', async () => {
    app.server.removeListener('upgrade', onUpgrade);
  });
  done();
};

export { injectWS, type InjectWebSocketOptions } from './inject.js';

/** The plugin: `app.register(wsPlugin, options)`. */
export const wsPlugin = fp(plugin, { fastify: '5.x', name: '@rfc6455/fastify' });
export default wsPlugin;
