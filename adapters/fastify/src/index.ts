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
 * `{ websocket: true }` route's handler then hands the socket to the core's `handleUpgrade`, which
 * answers 101 (or 400/403…); once it accepts, the reply is sent as a 101 that is never written
 * (onSend hooks run: @fastify/cookie's cookies) and its headers go on the core's 101. A refused
 * upgrade's reply is hijacked. `app.close()` closes open connections with 1001 first.
 *
 * HTTP/2 (Fastify `http2: true`): the plugin turns on SETTINGS_ENABLE_CONNECT_PROTOCOL and listens
 * for the compatibility API's `connect` event. An extended CONNECT (`:protocol websocket`, RFC 8441)
 * takes the same road, routed as a GET so that it matches the `{ websocket: true }` route: hooks
 * that reply refuse it with their status, and the route's handler hands the request to the core's
 * `handleConnect` (200 on the stream, with the headers of the reply, sent as over HTTP/1.1 into a
 * response written nowhere; the reply is hijacked then). A CONNECT that reaches any other route
 * (or the not-found handler) gets 404 from an `onRequest` hook, since a 2xx would open the tunnel.
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
import { ServerResponse, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { constants as h2, type Http2ServerRequest, type Http2ServerResponse, type Http2Session } from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { injectWS, type InjectWebSocketOptions } from './inject.js';
import {
  checkOwnConnections,
  checkUpgradeOptions,
  CloseCode,
  Defaults,
  listenForUpgrades,
  upgradesUnderWay,
  completeUpgradeResponse,
  endRefusedResponse,
  connectDeadline,
  handleConnect,
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
 * params, query, headers) as `req` and the route's params (`req.params`, typed as it is: see
 * {@link RouteParams}) in the context.
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
  context: Omit<HandlerContext<unknown>, 'params'> & { params: RouteParams<RouteGeneric, SchemaCompiler, TypeProvider> },
) => void | Promise<void>;

/**
 * The type of a WebSocket route's `params` in the handler's context, which are the FastifyRequest's
 * (`req.params`, after the route's schema validated them): the route's `Params` generic, or what
 * the type provider makes of its params schema, as Fastify types `req.params`. Without either, a
 * record of strings, what the router gives; with a params schema that the default type provider
 * does not type, `unknown`, as `req.params` is then (the validation may coerce: `{ type: 'integer' }`
 * makes `42` of `'42'`). (Fixed bug: the context's params were a record of strings whatever the
 * generic or the type provider said, so `{ Params: { id: number } }` or a zod/TypeBox schema gave
 * `string` for what was a number at run time.)
 */
export type RouteParams<
  RouteGeneric extends RouteGenericInterface,
  SchemaCompiler extends FastifySchema = FastifySchema,
  TypeProvider extends FastifyTypeProvider = FastifyTypeProviderDefault,
> = RequestParams<RouteGeneric, SchemaCompiler, TypeProvider> extends infer Params
  ? unknown extends Params
    ? unknown extends SchemaCompiler['params']
      ? Record<string, string>
      : unknown
    : Params
  : never;
/** `req.params` as Fastify types it for these generics. */
type RequestParams<RouteGeneric extends RouteGenericInterface, SchemaCompiler extends FastifySchema, TypeProvider extends FastifyTypeProvider> = FastifyRequest<
  RouteGeneric,
  RawServerDefault,
  RawRequestDefaultExpression,
  SchemaCompiler,
  TypeProvider
>['params'];

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
    // `app.get(path, { websocket: true, handler })`: the handler in the options is the WebSocket
    // handler too, and is called as one (fixed bug: it was typed as an HTTP handler, `(request,
    // reply)`, and got the connection and the request).
    <RouteGeneric extends RouteGenericInterface = RouteGenericInterface, ContextConfig = ContextConfigDefault, const SchemaCompiler extends FastifySchema = FastifySchema>(
      path: string,
      opts: RouteShorthandOptions<RawServer, RawRequest, RawReply, RouteGeneric, ContextConfig, SchemaCompiler, TypeProvider, Logger> & {
        websocket: true;
        handler: FastifyWebSocketHandler<RawServer, RawRequest, RouteGeneric, ContextConfig, SchemaCompiler, TypeProvider, Logger>;
      },
    ): FastifyInstance<RawServer, RawRequest, RawReply, Logger, TypeProvider>;
  }
  interface FastifyInstance<RawServer, RawRequest, RawReply, Logger, TypeProvider> {
    /** Open WebSocket connections (see @rfc6455/fastify). */
    readonly websocketConnections: ReadonlySet<WebSocketConnection>;
    /** Opens an in-memory WebSocket to `path` (real HTTP/1.1 handshake, no port): see `injectWS`. */
    injectWS(path?: string, options?: InjectWebSocketOptions): Promise<WebSocketConnection>;
    /**
     * A `{ websocket: true }` route without `wsHandler`: its `handler` is the WebSocket handler
     * (plain HTTP gets 426), and is typed as one (fixed bug: it was typed as an HTTP handler,
     * `(request, reply)`, and got the connection and the request).
     */
    route<RouteGeneric extends RouteGenericInterface = RouteGenericInterface, ContextConfig = ContextConfigDefault, const SchemaCompiler extends FastifySchema = FastifySchema>(
      opts: Omit<RouteOptions<RawServer, RawRequest, RawReply, RouteGeneric, ContextConfig, SchemaCompiler, TypeProvider, Logger>, 'handler' | 'wsHandler'> & {
        websocket: true;
        handler: FastifyWebSocketHandler<RawServer, RawRequest, RouteGeneric, ContextConfig, SchemaCompiler, TypeProvider, Logger>;
        wsHandler?: undefined;
      },
    ): FastifyInstance<RawServer, RawRequest, RawReply, Logger, TypeProvider>;
  }
}

/** Options of the plugin: the core's upgrade and connection options, plus an optional mapper. */
export interface FastifyWebSocketOptions extends UpgradeOptions<unknown> {
  /** A core service mapper, served behind Fastify's hooks by a catch-all `GET /*` route. */
  mapper?: ServiceMapper<FastifyRequest> | ServiceMapper<unknown> | undefined;
}

/** An HTTP/1.1 upgrade (the raw socket) or an HTTP/2 extended CONNECT (the compat request's stream). */
type PendingUpgrade =
  | { kind: 'upgrade'; socket: Duplex; head: Buffer; res: ServerResponse; request?: FastifyRequest }
  | { kind: 'connect'; request?: FastifyRequest };

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

/** Marks, in a route's config, the routes that serve WebSockets (the ws routes and the mapper's). */
const WS_ROUTE = Symbol('rfc6455.fastify.route');

/** A CONNECT routed anywhere but a WebSocket route: a 2xx there would open the tunnel, so 404. */
function refuseConnect(reply: FastifyReply): void {
  void reply.code(404).type('text/plain; charset=utf-8').send('No WebSocket route at this path.\n');
}

/** The compatibility server's settings API, when `app.server` is an HTTP/2 server. */
interface Http2Settings {
  updateSettings(settings: { enableConnectProtocol: boolean }): void;
}
function isHttp2Server(server: unknown): server is Http2Settings {
  return typeof (server as Partial<Http2Settings>).updateSettings === 'function';
}

/**
 * The servers the plugin is registered on. Fastify's routing is one router for the whole app, so
 * two registrations on one server (in sibling plugins, which do not see each other's decorators)
 * would both route every upgrade to a WebSocket route through it: the route's handler ran twice on
 * one socket, and an upgrade no route serves got no answer at all (each registration left it to
 * the other `upgrade` listener, the other registration).
 */
const registered = new WeakSet<object>();

const plugin: FastifyPluginCallback<FastifyWebSocketOptions> = (app, options, done) => {
  // Registered twice on one instance, in an encapsulated child of an instance that has it, or in two
  // sibling plugins of one app: say so through Fastify's own error path; a throw from `decorate`
  // here would be uncaught.
  if (app.hasDecorator('websocketConnections') || registered.has(app.server)) {
    done(new Error('@rfc6455/fastify is already registered on this app (on this instance, a parent or another plugin): register it once, at the top'));
    return;
  }
  // Its connections are its own set (app.websocketConnections): a `connections` given is refused,
  // through Fastify's error path, not replaced.
  try {
    checkOwnConnections('@rfc6455/fastify', (options as { connections?: unknown }).connections, 'app.websocketConnections');
  } catch (error) {
    done(error as Error);
    return;
  }
  const connections = new Set<WebSocketConnection>();
  const mapper = options.mapper as ServiceMapper<unknown> | undefined;
  let closing = false;
  // Upgrades still under way (Fastify's hooks, beforeAccept, onSend hooks): app.close() answers
  // them 503 at once, as serve()'s close() does.
  const underWay = upgradesUnderWay();
  /** The same over HTTP/2: extended CONNECTs still in Fastify's hooks or in handleConnect. */
  const underWayConnects = new Set<Http2ServerResponse>();
  /**
   * The HTTP/2 sessions that carried an extended CONNECT of ours. With `forceCloseConnections:
   * true`, Fastify closes sessions with `session.close()` (GOAWAY), which waits for the peer; a
   * peer that no longer reads kept app.close() waiting for http2SessionTimeout (72 s) although its
   * WebSocket had been cut at closeTimeout (fixed bug). As serve()'s close() does, what is still
   * open a moment after the WebSockets are closed is destroyed.
   */
  const connectSessions = new Map<Http2Session, string>();
  /** The server's open sockets by peer address (the sessions give only a proxy of theirs, which may not be destroyed). */
  const rawSockets = new Map<string, Socket>();
  const onSocket = (socket: Socket): void => {
    const peer = peerOf(socket);
    rawSockets.set(peer, socket);
    socket.once('close', () => {
      if (rawSockets.get(peer) === socket) rawSockets.delete(peer);
    });
  };
  const peerOf = (socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): string => `${socket.remoteAddress ?? ''}|${socket.remotePort ?? ''}`;
  let sessionGrace: NodeJS.Timeout | undefined;

  /**
   * The request logger of each connection, for its handler's errors: the core reports those with
   * `req` undefined (fixed bug: reading the pending upgrade of that undefined `req` threw, so a
   * handler's rejection became an unhandled rejection, and a synchronous throw got a 500 written
   * after the 101 and the close frame). The logger, not the request, so the request is not kept.
   */
  const loggers = new WeakMap<WebSocketConnection, FastifyBaseLogger>();

  // One options object for every upgrade: without a before-accept hook the handshake stays synchronous.
  const upgradeOptions: UpgradeOptions<unknown> = {
    ...options,
    onError(error, conn, req) {
      if (options.onError) options.onError(error, conn, req);
      else ((conn && loggers.get(conn)) ?? (req as UpgradeRequest | undefined)?.[PENDING]?.request?.log ?? app.log).error({ err: error }, conn ? 'WebSocket handler failed' : 'WebSocket upgrade failed');
    },
    // An upgrade whose before-accept hook was still running when the shutdown began is closed at
    // once (1001), as the shutdown closed the others.
    shuttingDown: () => closing,
    connections,
  };
  // A limit or timeout out of range fails the registration, not every upgrade.
  try {
    checkUpgradeOptions('@rfc6455/fastify', upgradeOptions);
  } catch (error) {
    done(error as Error);
    return;
  }
  registered.add(app.server);

  /** Mapper handlers get the FastifyRequest as state unless a before-accept hook gave one. */
  const withRequest =
    (h: ConnectionHandler<unknown>): ConnectionHandler<unknown> =>
    (conn, req, ctx) => {
      const request = (req as UpgradeRequest)[PENDING]?.request;
      if (request) loggers.set(conn, request.log);
      return h(conn, req, ctx.state === undefined ? { ...ctx, state: request } : ctx);
    };
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
    if (closing) {
      // app.close() began while the hooks ran (fixed bug: the upgrade got its 101 after the preClose
      // hook had closed the others, stayed open, and app.close() waited for it to end). Over
      // HTTP/1.1 the preClose hook has answered it 503 already.
      if (!reply.sent) void reply.code(503).type('text/plain; charset=utf-8').send('server is shutting down\n');
      return;
    }
    pending.request = request;
    if (pending.kind === 'connect') {
      const raw = request.raw as unknown as Http2ServerRequest;
      (raw as { method: string }).method = 'CONNECT'; // it was routed as a GET; the core checks the real request
      // The stream's own response is the core's to write (the 200). Once the core accepts, the reply
      // is sent as a 101 into a response written nowhere, so that its onSend hooks run as over
      // HTTP/1.1 (@fastify/cookie serializes reply.setCookie() there), and its headers go on the 200;
      // the reply is hijacked then, or at once if the core refuses. (Fixed bug: the reply was
      // hijacked first, so no onSend hook ran and @fastify/cookie's cookies never reached an HTTP/2
      // client.)
      const stream = reply.raw;
      const headers = (): Promise<OutgoingHttpHeaders> => {
        const sink = new ServerResponse(raw as unknown as IncomingMessage);
        // What the hooks set on the stream's response itself (reply.raw.setHeader(): @fastify/helmet
        // sets its headers so) goes with the reply's, as over HTTP/1.1, where reply.getHeaders()
        // reads them off reply.raw. (Fixed bug: the sink started empty, so none of them reached the
        // 200, though a refusal written on the stream carried them.)
        for (const [name, value] of Object.entries((stream as unknown as Http2ServerResponse).getHeaders())) {
          if (value !== undefined) sink.setHeader(name, value);
        }
        (reply as { raw: unknown }).raw = sink;
        return completeUpgradeResponse(sink, () => reply.code(101).send())
          .then(() => reply.getHeaders() as OutgoingHttpHeaders)
          .finally(() => {
            (reply as { raw: unknown }).raw = stream;
            reply.hijack();
          });
      };
      void handleConnect(raw, target, upgradeOptions, headers).then((conn) => {
        underWayConnects.delete(stream as unknown as Http2ServerResponse);
        if (conn === undefined && !reply.sent) reply.hijack();
      });
      return;
    }
    pending.res.detachSocket(pending.socket as Socket);
    // Once the core accepts, the reply is sent as a 101 that is never written (its onSend hooks run:
    // @fastify/cookie serializes its cookies there; onResponse hooks see it finish), and its headers
    // go on the core's 101. A refusal the core wrote (400, 403, beforeAccept's) sends the reply with
    // its status, written nowhere, so that onResponse hooks and Fastify's "request completed" log
    // see it (fixed: the reply was hijacked unsent and logged nothing); an upgrade that ended
    // without an answer (the client left) leaves it unsent: hijacked then.
    const headers = (): Promise<OutgoingHttpHeaders> =>
      completeUpgradeResponse(pending.res, () => reply.code(101).send()).then(() => reply.getHeaders() as OutgoingHttpHeaders);
    void handleUpgrade(request.raw, pending.socket, pending.head, target, upgradeOptions, headers).then(async (conn) => {
      underWay.settled(pending.socket);
      if (conn !== undefined || reply.sent) return;
      if (!(await endRefusedResponse(pending.res, pending.socket, (status) => reply.code(status).send())) && !reply.sent) reply.hijack();
    });
  };

  /** The prefix the mapper's catch-all route is declared under (`app.prefix`: '' at the root). */
  const catchAllPrefix = app.prefix;
  const mapperClaims = (path: string): boolean => {
    return mapper !== undefined && mapper.claims(path);
  };
  /**
   * Whether the route the router found for `path`, with `rest` as its wildcard, is the mapper's
   * catch-all (`<prefix>/*`) rather than an app route ending in a wildcard (`/files/*`): the part of
   * the path before `rest` is then the prefix. Compared as the router matched: decoded, without
   * its slashes (`ignoreDuplicateSlashes`, `ignoreTrailingSlash` merge or drop some), in either case
   * when the router ignores case (`caseSensitive: false`; `rest` keeps the request's case; fixed
   * bug: case was ignored under a case-sensitive router too, so an app route `/WS/*` was taken for
   * the catch-all under the prefix `/ws`), before a `;` too
   * (`useSemicolonDelimiter`). (Fixed bug: compared as written, `/WS/other`, `/ws/other/`,
   * `//ws//other` or `/ws/a%2Fb` under the prefix `/ws` were taken for an app route's, so those
   * upgrades, which the mapper does not serve, were not left to another `upgrade` listener.)
   */
  const config = app.initialConfig as { routerOptions?: { caseSensitive?: boolean }; caseSensitive?: boolean };
  const ignoresCase = (config.routerOptions?.caseSensitive ?? config.caseSensitive) === false;
  const isCatchAll = (path: string, rest: string): boolean => {
    const bare = (text: string): string => text.replace(/\/+/g, '');
    const expected = bare(`${catchAllPrefix}/${rest}`);
    const semicolon = path.indexOf(';');
    return [path, semicolon < 0 ? path : path.slice(0, semicolon)].some((candidate) => {
      const seen = bare(decodeURIComponent(candidate));
      return seen === expected || (ignoresCase && seen.toLowerCase() === expected.toLowerCase());
    });
  };
  /**
   * The GET route Fastify would route `req` to, with the constraints its built-in strategies derive
   * from the request: the Host (or :authority), and Accept-Version when that finds nothing (it is
   * derived only while a versioned route exists, and then unversioned routes no longer match). Fixed
   * bug: without them a route constrained by host or version never matched here, and its upgrades
   * went to the other `upgrade` listener. Custom constraint strategies are not derived.
   */
  const findGet = (req: IncomingMessage, path: string): ReturnType<FastifyInstance['findRoute']> => {
    const host = req.headers.host ?? (req.headers as Record<string, string | undefined>)[':authority'];
    const constraints: Record<string, string> = host === undefined ? {} : { host };
    const found = app.findRoute({ method: 'GET', url: path, constraints });
    const version = req.headers['accept-version'];
    if (found || typeof version !== 'string') return found;
    return app.findRoute({ method: 'GET', url: path, constraints: { ...constraints, version } });
  };
  /** Synchronously: does a route of this app serve the upgrade's path? */
  const claims = (req: IncomingMessage): boolean => {
    const path = requestPath(req.url);
    if (mapperClaims(path)) return true;
    try {
      const found = findGet(req, path);
      if (!found) return false;
      // The mapper's catch-all matches everything (under the prefix of the plugin it was registered
      // in); it does not claim paths the mapper does not serve. (Fixed bug: under a prefix it was
      // taken for a route of the app, so every upgrade under the prefix was claimed, and one meant
      // for another `upgrade` listener got this app's 404 as well.)
      const keys = Object.keys(found.params ?? {});
      return !(mapper && keys.length === 1 && keys[0] === '*' && isCatchAll(path, (found.params as Record<string, string>)['*']!));
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
    route.config = { ...route.config, [WS_ROUTE]: true } as typeof route.config;
    const wsHandler = (route.wsHandler ?? route.handler) as unknown as AnyHandler;
    const httpHandler = (route.wsHandler ? route.handler : upgradeRequired) as unknown as AnyHandler;
    route.handler = function (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
      const pending = (request.raw as UpgradeRequest)[PENDING];
      if (!pending) return httpHandler.call(this, request, reply);
      const instance = this;
      accept(request, reply, pending, (conn, _raw, ctx) => {
        loggers.set(conn, request.log);
        return wsHandler.call(instance, conn, request, { ...ctx, params: request.params }) as void | Promise<void>;
      });
      return undefined;
    } as typeof route.handler;
  });

  if (mapper) {
    app.route({
      method: 'GET',
      url: CATCH_ALL,
      config: { [WS_ROUTE]: true },
      handler(request, reply) {
        const pending = (request.raw as UpgradeRequest)[PENDING];
        if (pending?.kind === 'connect' && !mapperClaims(requestPath(request.raw.url))) return refuseConnect(reply);
        if (!pending || !routed || !mapperClaims(requestPath(request.raw.url))) return reply.callNotFound();
        accept(request, reply, pending, routed);
        return undefined;
      },
    });
  }

  const route = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', noop);
    const res = upgradeResponse(req, socket, options.handshakeTimeout);
    if (closing) {
      res.writeHead(503, { 'Content-Type': 'text/plain; charset=utf-8' }).end('server is shutting down\n');
      return;
    }
    (req as UpgradeRequest)[PENDING] = { kind: 'upgrade', socket, head, res };
    underWay.add(socket, res);
    try {
      app.routing(req, res);
    } catch (error) {
      app.log.error({ err: error }, 'WebSocket upgrade routing failed');
      socket.destroy();
    }
  };
  // Ours when a route claims it, once the responses to requests pipelined before it are written;
  // alone on the server, also an upgrade no route serves (the app's 404) and one to another
  // protocol (served as the plain request it is).
  const stopUpgrades = listenForUpgrades(app.server, claims, route, options.handshakeTimeout);

  /**
   * HTTP/2 extended CONNECT (RFC 8441) through the compatibility API. Anything else keeps Node's
   * behaviour when no other 'connect' listener exists: 405, or a closed socket for HTTP/1.1.
   */
  const onConnect = (req: IncomingMessage | Http2ServerRequest, resOrSocket: Http2ServerResponse | Duplex): void => {
    const alone = app.server.listenerCount('connect') === 1;
    if (req.httpVersionMajor !== 2) {
      if (alone) (resOrSocket as Duplex).destroy();
      return;
    }
    const h2req = req as Http2ServerRequest;
    const res = resOrSocket as Http2ServerResponse;
    if (h2req.headers[':protocol'] !== 'websocket') {
      if (alone) {
        res.statusCode = 405;
        res.end();
      }
      return;
    }
    if (!claims(req as IncomingMessage) && !alone) return; // someone else's
    if (closing) {
      res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' }).end('server is shutting down\n');
      return;
    }
    const session = h2req.stream.session;
    if (session && !connectSessions.has(session)) {
      // (Its peer, kept now: a closed session no longer gives its socket, and ends it by waiting
      // for the peer to read what is still buffered.)
      connectSessions.set(session, peerOf(session.socket));
      session.once('close', () => connectSessions.delete(session));
    }
    (h2req as unknown as UpgradeRequest)[PENDING] = { kind: 'connect' };
    // Fastify's hooks have handshakeTimeout (then 408), which handleConnect's part shares, as over
    // HTTP/1.1; app.close() answers the CONNECT 503 at once while either runs.
    connectDeadline(h2req, res, options.handshakeTimeout);
    underWayConnects.add(res);
    res.once('close', () => underWayConnects.delete(res));
    (h2req as { method: string }).method = 'GET'; // Fastify routes by method: the CONNECT is for the route's GET
    try {
      app.routing(h2req as unknown as IncomingMessage, res as unknown as ServerResponse);
    } catch (error) {
      app.log.error({ err: error }, 'WebSocket CONNECT routing failed');
      if (!h2req.stream.destroyed) h2req.stream.close(h2.NGHTTP2_INTERNAL_ERROR);
    }
  };
  const server: unknown = app.server;
  if (isHttp2Server(server)) {
    // RFC 8441 §3: advertise extended CONNECT, since this plugin now accepts it.
    server.updateSettings({ enableConnectProtocol: true });
    app.server.on('connect', onConnect);
    app.server.on('connection', onSocket);
    app.server.on('secureConnection', onSocket);
    app.addHook('onRequest', (request, reply, next) => {
      const pending = (request.raw as UpgradeRequest)[PENDING];
      if (pending?.kind === 'connect' && (request.routeOptions.config as { [WS_ROUTE]?: boolean })[WS_ROUTE] !== true) return refuseConnect(reply);
      next();
    });
  }

  app.addHook('preClose', async () => {
    closing = true;
    underWay.refuse();
    for (const res of underWayConnects) {
      if (!res.headersSent && !res.stream.destroyed) res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' }).end('server is shutting down\n');
    }
    underWayConnects.clear();
    await Promise.all([...connections].map((conn) => conn.close(CloseCode.GoingAway, 'server shutting down').catch(noop)));
    // Fastify closes the sessions (GOAWAY) once the preClose hooks are done; those whose peer has
    // not closed its side a moment later are destroyed (forceCloseConnections: true only: without
    // it Fastify leaves the sessions open, as documented).
    if (connectSessions.size > 0 && (app.initialConfig as { forceCloseConnections?: unknown }).forceCloseConnections === true) {
      sessionGrace = setTimeout(() => {
        for (const [session, peer] of connectSessions) {
          session.destroy();
          rawSockets.get(peer)?.destroy();
        }
      }, Math.min(1000, options.closeTimeout ?? Defaults.closeTimeout));
      sessionGrace.unref();
    }
  });
  app.addHook('onClose', async () => {
    clearTimeout(sessionGrace);
    app.server.removeListener('connection', onSocket);
    app.server.removeListener('secureConnection', onSocket);
    registered.delete(app.server);
    stopUpgrades();
    app.server.removeListener('connect', onConnect);
  });
  done();
};

export { injectWS, type InjectWebSocketOptions } from './inject.js';

/** The plugin: `app.register(wsPlugin, options)`. */
export const wsPlugin = fp(plugin, { fastify: '5.x', name: '@rfc6455/fastify' });
export default wsPlugin;
