/**
 * @rfc6455/koa: WebSockets for Koa, accepted by middleware after the middleware before it ran.
 *
 *   const ws = websocket(mapper);          // or websocket({ mapper, ...options }) or websocket()
 *   app.use(auth);                         // may set ctx.status = 401 to refuse the upgrade
 *   app.use(ws);                           // accepts upgrades the mapper routes, here
 *   router.get('/live', async (ctx) => {   // or accept inline, downstream
 *     if (ctx.ws) { const conn = await ctx.ws(); … }
 *   });
 *   ws.attach(app.listen(8080), app);      // hooks server 'upgrade'
 *
 * The `upgrade` listener runs the request through `app.callback()` with a ServerResponse written
 * to the raw socket, keeping the real `head` bytes aside; Koa's middleware runs as for any request.
 * `ctx.ws()` (defined on upgrade requests only) accepts through the core's `handleUpgrade`; if no
 * middleware accepts, whatever Koa responds (401 with its headers and body, 404…) is written to
 * the socket as an HTTP response. Upgrades the mapper does not claim are left to other `upgrade`
 * listeners when there are any (see `claim`). The headers on Koa's response go on the 101: when the
 * middleware accepts, once the chain has returned (koa-session's cookie); inline, as they are when
 * `ctx.ws()` is called.
 */
import type Koa from 'koa';
import type { Context, Middleware, Next } from 'koa';
import type { IncomingMessage, OutgoingHttpHeaders, Server, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { format } from 'node:util';
import {
  checkOwnConnections,
  checkUpgradeOptions,
  CloseCode,
  listenForUpgrades,
  upgradesUnderWay,
  completeUpgradeResponse,
  endRefusedResponse,
  handleUpgrade,
  requestPath,
  upgradeResponse,
  isServiceMapper,
  serviceMapper,
  type ConnectionHandler,
  type ServiceMapper,
  type UpgradeOptions,
  type WebSocketConnection,
} from 'rfc6455';
import { encodeClosePayload } from 'rfc6455/codec';

/** `ctx.state`, which handlers receive as `state`. */
export type KoaState = Koa.DefaultState;

/** A WebSocket handler: the core's signature; `state` is `ctx.state`. */
export type KoaWebSocketHandler<Params extends Record<string, string> = Record<string, string>> = ConnectionHandler<KoaState, Params>;

/**
 * Accepts the upgrade of this request. With a handler, the connection is handed to it; without
 * one, the middleware's mapper routes it if it serves the path; otherwise the connection is only
 * returned, to be used inline. Resolves to the connection, or undefined if the upgrade was refused (the HTTP
 * error, e.g. 400 for a bad handshake, has been written).
 */
export type AcceptWebSocket = (handler?: KoaWebSocketHandler) => Promise<WebSocketConnection | undefined>;

// On ExtendableContext, which every context type has (fixed bug: on DefaultContext, which an app's
// own context type, `new Koa<State, AppContext>()`, replaces, so `ctx.ws` did not type-check there).
declare module 'koa' {
  interface ExtendableContext {
    /** Defined on WebSocket upgrade requests (see @rfc6455/koa): accepts the upgrade. */
    ws?: AcceptWebSocket | undefined;
  }
}

/** Options of {@link websocket}: the core's upgrade and connection options, plus routing. */
export interface KoaWebSocketOptions extends UpgradeOptions<KoaState> {
  /** Routes upgrades by path and subprotocol; claimed paths are accepted where the middleware sits. */
  mapper?: ServiceMapper<KoaState> | ServiceMapper<unknown> | undefined;
  /**
   * Whether this app takes an upgrade request. Unclaimed upgrades are left to other `upgrade`
   * listeners when there are any. Default: the paths the mapper serves; every path without a mapper.
   */
  claim?: ((req: IncomingMessage) => boolean) | undefined;
}

/** The Koa middleware that accepts upgrades where it sits, with `attach` and `close`. */
export interface KoaWebSocketMiddleware extends Middleware {
  /** Hooks `server`'s `upgrade` event and runs upgrades through `app.callback()`. Returns a detach function. */
  attach(server: Server | HttpsServer, app: Koa): () => void;
  /** Open connections. */
  readonly connections: ReadonlySet<WebSocketConnection>;
  /**
   * Closes every open connection (default 1001 going away) and resolves once all are closed. A
   * code or reason a close frame cannot carry rejects with a `RangeError` and does nothing.
   */
  close(code?: number, reason?: string): Promise<void>;
}

interface PendingUpgrade {
  socket: Duplex;
  head: Buffer;
  res: ServerResponse;
  accepted: Promise<WebSocketConnection | undefined> | undefined;
  ctx: Context | undefined;
  /** Settles once Koa's middleware chain for the request has returned (koa-session has committed). */
  chain: Promise<unknown>;
}

const PENDING = Symbol('rfc6455.koa.upgrade');
type UpgradeRequest = IncomingMessage & { [PENDING]?: PendingUpgrade };

function noop(): void {}

/** Creates the middleware (with `attach` and `close`). Takes a mapper or options. */
export function websocket(mapperOrOptions: ServiceMapper<KoaState> | ServiceMapper<unknown> | KoaWebSocketOptions = {}): KoaWebSocketMiddleware {
  const options: KoaWebSocketOptions = isServiceMapper(mapperOrOptions) ? { mapper: mapperOrOptions } : mapperOrOptions;
  const mapper = options.mapper as ServiceMapper<KoaState> | undefined;
  const connections = new Set<WebSocketConnection>();
  let closing = false;
  // Upgrades still under way (the middleware before the accept, beforeAccept, the chain's end):
  // close() answers them 503 at once, as serve()'s close() does.
  const underWay = upgradesUnderWay();

  const mapperClaims = (path: string): boolean => {
    return mapper !== undefined && mapper.claims(path);
  };
  const claim = options.claim ?? ((req: IncomingMessage) => !mapper || mapperClaims(requestPath(req.url)));

  /**
   * The app of each connection, for its handler's errors: the core reports those with `req`
   * undefined (so that a connection does not keep its request). The app, not the context, so the
   * request is not kept. `attached` is the last app `attach` was given, for anything else.
   */
  const apps = new WeakMap<WebSocketConnection, Koa>();
  let attached: Koa | undefined;
  /** The errors the upgrade sockets emitted (recorded before Koa's own listener hears them). */
  const socketErrors = new WeakSet<object>();

  /** Handlers get `ctx.state` as state unless a before-accept hook gave one. */
  const stateOf = (req: IncomingMessage): KoaState | undefined => (req as UpgradeRequest)[PENDING]?.ctx?.state as KoaState | undefined;
  const withState =
    (h: ConnectionHandler<KoaState>): ConnectionHandler<KoaState> =>
    (conn, req, c) => {
      const app = (req as UpgradeRequest)[PENDING]?.ctx?.app;
      if (app) apps.set(conn, app);
      return h(conn, req, c.state === undefined ? { ...c, state: stateOf(req) as KoaState } : c);
    };
  /**
   * A handler given to `ctx.ws(handler)` gets the router's params in its context (`ctx.params`, set
   * by @koa/router for `/rooms/:room`), as Fastify's route handlers get the route's. (Fixed bug: it
   * got `{}`, the core's params for a handler that is no service mapper.) The params object is
   * taken now, not the context, so the connection does not keep the request.
   */
  const withRouterParams = (h: KoaWebSocketHandler, ctx: Context): KoaWebSocketHandler => {
    const params = (ctx as { params?: unknown }).params;
    if (params === null || typeof params !== 'object') return h;
    return (conn, req, c) => h(conn, req, { ...c, params: { ...(params as Record<string, string>), ...c.params } });
  };
  /** What `ctx.ws()` accepts with when no handler is given and the mapper does not serve the path. */
  const inline = withState(noop);
  const routed: ServiceMapper<KoaState> | undefined =
    mapper &&
    serviceMapper<KoaState>(
      mapper.routes.map((route) => ({
        path: route.path,
        handler: route.handler && withState(route.handler),
        protocols: Object.fromEntries(Object.entries(route.protocols ?? {}).map(([name, h]) => [name, withState(h)])),
      })),
    );

  // Its connections are its own set (the middleware's .connections): a `connections` given is
  // refused, not replaced.
  checkOwnConnections('websocket()', (options as { connections?: unknown }).connections, 'the middleware\'s connections');
  // One options object for every upgrade: without a before-accept hook the handshake stays synchronous.
  const upgradeOptions: UpgradeOptions<KoaState> = {
    ...options,
    // Without onError, errors go where Koa sends its own: the app's 'error' event, with the
    // upgrade's context for a hook's error (answered 500), so that Koa's `app.onerror` logs them
    // (unless `app.silent`) and `app.on('error')` gets them. (Fixed bug: they were dropped.) A
    // handler's error goes to the connection's 'error' listeners instead when it has some, as the
    // core does without onError. A throw from here is caught by the core.
    onError: options.onError ?? ((error, conn, req) => {
      if (conn && !req && conn.listenerCount('error') > 0) {
        conn.emit('error', error instanceof Error ? error : new Error(String(error)));
        return;
      }
      const ctx = req && (req as UpgradeRequest)[PENDING]?.ctx;
      const app = ctx?.app ?? (conn && apps.get(conn)) ?? attached;
      // As Koa's ctx.onerror does: a non-error thrown is wrapped (app.onerror refuses it).
      const err = Object.prototype.toString.call(error) === '[object Error]' || error instanceof Error ? (error as Error) : new Error(format('non-error thrown: %j', error));
      // (No app cannot happen: upgrades only come through attach. The core would print it.)
      if (!app) throw err;
      if (app.listenerCount('error') > 0) app.emit('error', err, ctx);
      else app.onerror(err);
    }),
    // An upgrade whose before-accept hook was still running when the shutdown began is closed at
    // once (1001), as the shutdown closed the others.
    shuttingDown: () => closing,
    connections,
  };
  // A limit or timeout out of range throws here, not at every upgrade.
  checkUpgradeOptions('websocket()', upgradeOptions);

  /**
   * The headers Koa's middleware set on the response, for the 101: once the whole chain has
   * returned when accepting from this middleware (what middleware before it set after
   * `await next()`: koa-session's cookie), or as they are when `ctx.ws()` is called inline (the
   * chain waits for it there). A chain that answered instead (an error thrown after the accept:
   * Koa wrote its error response) fails the upgrade with 500.
   */
  const headersOf = (ctx: Context, pending: PendingUpgrade, afterChain: boolean) => (): OutgoingHttpHeaders | Promise<OutgoingHttpHeaders> => {
    // Koa's response is then ended as a 101 written nowhere, as the Express adapter ends Express's,
    // so that what waits for it to finish (an access log: koa-logger, on-finished) sees the upgrade
    // answered 101 (fixed: it never finished, and an accepted upgrade was never logged).
    const read = (): Promise<OutgoingHttpHeaders> => {
      if (ctx.res.writableEnded) throw new Error(`Koa answered ${ctx.res.statusCode} after the upgrade was accepted`);
      return completeUpgradeResponse(ctx.res).then(() => ctx.res.getHeaders());
    };
    return afterChain ? pending.chain.then(read) : read();
  };

  const accept = (ctx: Context, pending: PendingUpgrade, handler: KoaWebSocketHandler | undefined, afterChain = false): Promise<WebSocketConnection | undefined> => {
    if (pending.accepted) return pending.accepted;
    // Koa must not answer this request any more: the core writes the 101 (or an error) itself.
    ctx.respond = false;
    if (closing) {
      // close() began while the middleware before this ran (fixed bug: the upgrade got its 101
      // after close() had closed the others, and stayed open). close() has answered it 503
      // already, unless Koa had begun a response.
      if (!pending.res.headersSent) pending.res.writeHead(503, { 'Content-Type': 'text/plain; charset=utf-8' }).end('server is shutting down\n');
      pending.accepted = Promise.resolve(undefined);
      return pending.accepted;
    }
    pending.res.detachSocket(pending.socket as Socket);
    // From here the socket is the core's: its errors are the connection's, reported by the core's
    // rules (the connection's 'error' event; nothing for a reset after the peer's close frame).
    // Koa's on-finished still listens to the socket for the request's end and hands a socket error
    // to ctx.onerror, which emitted it on the app, and app.onerror logged it. (Fixed bug: a browser
    // leaving a page, whose 1001 is followed by a TCP reset, had Koa log "write ECONNRESET" for
    // each connection, and any reset reached app.on('error') as well as the connection's listener;
    // Express, Fastify and serve() report neither.) The chain's own errors still go to Koa.
    const onerror = ctx.onerror;
    ctx.onerror = function (this: Context, error: Error | null) {
      if (error !== null && typeof error === 'object' && socketErrors.has(error)) return;
      onerror.call(this, error as Error);
    };
    const target = handler ? withState(withRouterParams(handler, ctx)) : routed && mapperClaims(ctx.path) ? routed : inline;
    pending.accepted = handleUpgrade(ctx.req, pending.socket, pending.head, target, upgradeOptions, headersOf(ctx, pending, afterChain));
    // A refusal the core wrote (400, 403, beforeAccept's) ends Koa's response with its status,
    // written nowhere: an access log listening for its end (koa-logger, on-finished) sees it.
    void pending.accepted.then((conn) => {
      underWay.settled(pending.socket);
      if (conn === undefined) void endRefusedResponse(pending.res, pending.socket);
    });
    return pending.accepted;
  };

  const middleware = (async (ctx: Context, next: Next): Promise<void> => {
    const pending = (ctx.req as UpgradeRequest)[PENDING];
    if (!pending) return next();
    pending.ctx = ctx;
    ctx.ws = (handler) => accept(ctx, pending, handler);
    if (mapperClaims(ctx.path)) {
      // Not awaited: the 101 waits for the middleware before this one to return (their headers).
      void accept(ctx, pending, undefined, true);
      return;
    }
    try {
      await next();
    } catch (error) {
      // Middleware downstream that accepted inline (`await ctx.ws()`) and then threw: its connection
      // is a handler failure, closed with 1011 as a throwing handler's is (it was left open, with
      // nobody reading it); Koa still reports the error ('error' event).
      if (pending.accepted) {
        void pending.accepted.then((conn) => conn?.close(CloseCode.InternalError, '').catch(noop), noop);
      }
      throw error;
    }
  }) as KoaWebSocketMiddleware;

  Object.defineProperty(middleware, 'connections', { value: connections, enumerable: true });
  middleware.attach = (server, app) => {
    attached = app;
    let callback: ReturnType<Koa['callback']> | undefined;
    const run = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
      // (Before Koa's listener, which the request's context adds: see accept.)
      socket.on('error', (error: unknown) => {
        if (error !== null && typeof error === 'object') socketErrors.add(error);
      });
      const res = upgradeResponse(req, socket, options.handshakeTimeout);
      if (closing) {
        res.writeHead(503, { 'Content-Type': 'text/plain; charset=utf-8' }).end('server is shutting down\n');
        return;
      }
      let chainDone!: () => void;
      const chain = new Promise<void>((resolve) => (chainDone = resolve));
      (req as UpgradeRequest)[PENDING] = { socket, head, res, accepted: undefined, ctx: undefined, chain };
      underWay.add(socket, res);
      callback ??= app.callback();
      // Koa catches the chain's errors itself (ctx.onerror): this settles either way.
      void callback(req, res).then(chainDone, chainDone);
    };
    // Beside other middlewares on the server (one per router), the first that claims a request
    // takes it, and the first of them answers one none claims (listenForUpgrades).
    return listenForUpgrades(server, claim, run, options.handshakeTimeout);
  };
  middleware.close = async (code = CloseCode.GoingAway, reason = 'server shutting down') => {
    // Checked before anything is stopped, as conn.close() checks them (fixed bug: each close()
    // rejected, unheard: close(1005) refused new upgrades and left every connection open).
    encodeClosePayload(code ?? undefined, reason);
    closing = true;
    underWay.refuse();
    await Promise.all([...connections].map((conn) => conn.close(code, reason).catch(noop)));
  };
  return middleware;
}
