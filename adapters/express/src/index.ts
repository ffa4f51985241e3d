/**
 * @rfc6455/express: WebSocket routes for Express, behind the app's own middleware chain.
 *
 *   const ws = websocket({ origins: ['https://example.com'] });
 *   ws.route('/chat/(?<room>\\w+)', (conn, req, { params }) => { … });
 *   app.use(session(), auth, ws.middleware);       // where in the chain the upgrade is accepted
 *   const server = app.listen(8080);
 *   ws.attach(server, app);                         // hooks server 'upgrade'
 *
 * How an upgrade request travels: the `upgrade` listener checks, synchronously, whether a
 * WebSocket route claims the path. If none does and another `upgrade` listener exists (a dev
 * server, a proxy), the socket is left untouched for it. Otherwise the request goes through
 * `app(req, res)` with a ServerResponse written to the raw socket, so every middleware (cookies,
 * session, auth) runs before the 101. A middleware that answers (`res.status(401).send()`) or an
 * error passed to `next(err)` becomes that HTTP response; when the chain reaches `ws.middleware`,
 * the core's `handleUpgrade` routes by path and subprotocol and answers 101 (or 404/400). Once it
 * accepts, Express's response is ended without being written (on-headers listeners and `res.end`
 * wrappers run: express-session's cookie and save) and its headers go on the 101. No protocol
 * logic lives here, nothing in Express is patched and no URL is rewritten.
 */
import type { Express, Request, Response, NextFunction } from 'express';
import type { IncomingMessage, OutgoingHttpHeaders, Server, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
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
  serviceMapper,
  type ConnectionHandler,
  type HandlerContext,
  type Route,
  type ServiceMapper,
  type UpgradeOptions,
  type WebSocketConnection,
} from 'rfc6455';
import { encodeClosePayload } from 'rfc6455/codec';

/** What `res.locals` holds; handlers receive it as `state`. */
export type Locals = Record<string, unknown>;

/**
 * Names of the named groups of a regular-expression source, e.g. '/a/(?<id>\\d+)' → 'id'
 * (a lookbehind, `(?<=…)` or `(?<!…)`, is no group).
 */
export type GroupNames<S extends string> = S extends `${string}(?<${infer Tail}`
  ? Tail extends `=${string}` | `!${string}`
    ? GroupNames<Tail>
    : Tail extends `${infer Name}>${infer Rest}`
      ? Name | GroupNames<Rest>
      : never
  : never;

/** A group being read by {@link OptionalGroups}: its name (never for other groups), the names of the groups in it, whether it has an alternation. */
interface Frame {
  own: string;
  inner: string;
  alt: boolean;
}
type Push<Stack extends Frame[], Own extends string> = [{ own: Own; inner: never; alt: false }, ...Stack];
/** Closes the innermost group: its names go to the group around it; `Missing` gets those that may miss. */
type Pop<Stack extends Frame[], Rest extends string, Missing extends string> = Stack extends [infer F extends Frame, infer P extends Frame, ...infer More extends Frame[]]
  ? OptionalGroups<
      Rest,
      [{ own: P['own']; inner: P['inner'] | F['own'] | F['inner']; alt: P['alt'] }, ...More],
      | Missing
      | (F['alt'] extends true ? F['inner'] : never)
      | (Rest extends `?${string}` | `*${string}` | `{0${string}` ? F['own'] | F['inner'] : never)
    >
  : OptionalGroups<Rest, Stack, Missing>;
/** Skips a character class (`[…]`, where parentheses and `|` are plain characters). */
type SkipClass<S extends string> = S extends `\\${string}${infer Rest}` ? SkipClass<Rest> : S extends `]${infer Rest}` ? Rest : S extends `${string}${infer Rest}` ? SkipClass<Rest> : '';
/** The characters {@link OptionalGroups} reads; it skips the text between them in one step. */
type Special = '(' | ')' | '|' | '[' | '\\';
/** `S` from its first `C` on, when no other special character comes before it. */
type FromFirst<S extends string, C extends string> = S extends `${infer Before}${C}${infer Rest}` ? (Before extends `${string}${Special}${string}` ? never : `${C}${Rest}`) : never;
/** `S` from its first special character on; never when it has none. */
type ToSpecial<S extends string> = FromFirst<S, '('> | FromFirst<S, ')'> | FromFirst<S, '|'> | FromFirst<S, '['> | FromFirst<S, '\\'>;
/**
 * The named groups of a regular-expression source that may take no part in a match (the core then
 * leaves them out of `params`): a group in an alternative (`a|(?<x>b)`), or in a group, or itself a
 * group, that may match nothing (`)?`, `)*`, `){0,…}`). Read from special character to special
 * character.
 */
type OptionalGroups<S extends string, Stack extends Frame[] = [{ own: never; inner: never; alt: false }], Missing extends string = never> = Read<ToSpecial<S>, Stack, Missing>;
type Read<S extends string, Stack extends Frame[], Missing extends string> =
  [S] extends [never] ? Missing | (Stack extends [infer F extends Frame, ...Frame[]] ? (F['alt'] extends true ? F['inner'] : never) : never)
  : S extends `\\${string}${infer Rest}` ? OptionalGroups<Rest, Stack, Missing>
  : S extends `[${infer Rest}` ? OptionalGroups<SkipClass<Rest>, Stack, Missing>
  : S extends `(?<=${infer Rest}` | `(?<!${infer Rest}` ? OptionalGroups<Rest, Push<Stack, never>, Missing>
  : S extends `(?<${infer Name}>${infer Rest}` ? OptionalGroups<Rest, Push<Stack, Name>, Missing>
  : S extends `(${infer Rest}` ? OptionalGroups<Rest, Push<Stack, never>, Missing>
  : S extends `)${infer Rest}` ? Pop<Stack, Rest, Missing>
  : S extends `|${infer Rest}`
    ? OptionalGroups<Rest, Stack extends [infer F extends Frame, ...infer More extends Frame[]] ? [{ own: F['own']; inner: F['inner']; alt: true }, ...More] : Stack, Missing>
  : Missing;

/**
 * Route parameters of a path: the named groups of a string pattern, else any string keys. A group
 * that may take no part in a match (in an alternative, `a|(?<x>b)`, or in a group, or itself a
 * group, that may match nothing: `)?`, `)*`, `){0,…}`) is an optional key, as the core leaves
 * such a group out of `params` (fixed bug: `'/chat(?:/(?<room>\\w+))?'`
 * typed `room` as a string, which `/chat` left undefined).
 */
export type PathParams<P extends string | RegExp> = P extends string
  ? string extends P
    ? Record<string, string>
    : Flatten<{ [K in Exclude<GroupNames<P>, OptionalGroups<P>>]: string } & { [K in OptionalGroups<P>]?: string }>
  : Record<string, string>;
/** One object type of an intersection (optional keys stay optional). */
type Flatten<T> = { [K in keyof T]: T[K] };

/** A WebSocket handler for Express: the core's signature, with Express's `req` and `res.locals` as state. */
export type ExpressWebSocketHandler<Params = Record<string, string>> = (
  conn: WebSocketConnection,
  req: Request,
  context: HandlerContext<Locals, Params & Record<string, string>>,
) => void | Promise<void>;

/** A route's handlers: one for clients offering no subprotocol, and/or one per subprotocol name. */
export interface ExpressRouteHandlers<Params = Record<string, string>> {
  /** Handler for clients that request no subprotocol. */
  handler?: ExpressWebSocketHandler<Params> | undefined;
  /** Handlers by subprotocol name. */
  protocols?: Readonly<Record<string, ExpressWebSocketHandler<Params>>> | undefined;
}

/** Options of {@link websocket}: the core's upgrade and connection options, plus an optional mapper. */
export interface ExpressWebSocketOptions extends UpgradeOptions<Locals> {
  /**
   * A core service mapper served after the routes added with `route()`. Its handlers get
   * `res.locals` as `state` (unless `beforeAccept` gave one), as route handlers do: a mapper built
   * as `serviceMapper<Locals>(…)` is taken (fixed bug: only a `ServiceMapper<unknown>` type-checked).
   */
  mapper?: ServiceMapper<Locals> | ServiceMapper<unknown> | undefined;
}

/** The WebSocket side of an Express app, as {@link websocket} returns it. */
export interface ExpressWebSocket {
  /**
   * Adds a route. `path` is the core's pattern: a RegExp or a string read as a regular expression
   * matching the whole path (no query); named groups become `params`. First match wins.
   */
  route<P extends string | RegExp>(path: P, handlers: ExpressWebSocketHandler<PathParams<P>> | ExpressRouteHandlers<PathParams<P>>): this;
  /**
   * Express middleware that accepts the upgrade where it sits in the chain (after auth). Plain
   * HTTP requests and upgrades for paths no route claims pass through with `next()`.
   */
  readonly middleware: (req: Request, res: Response, next: NextFunction) => void;
  /** Hooks `server`'s `upgrade` event and runs claimed upgrades through `app`. Returns a detach function. */
  attach(server: Server | HttpsServer, app: Express): () => void;
  /** True when a route serves `path` (the test the upgrade listener applies). */
  claims(path: string): boolean;
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
  accepted: boolean;
}

const PENDING = Symbol('rfc6455.express.upgrade');
type UpgradeRequest = IncomingMessage & { [PENDING]?: PendingUpgrade };

function noop(): void {}

/** Creates the WebSocket side of an Express app. */
export function websocket(options: ExpressWebSocketOptions = {}): ExpressWebSocket {
  const routes: Route<unknown>[] = [];
  let compiled: ServiceMapper<unknown> | undefined;
  const connections = new Set<WebSocketConnection>();
  let closing = false;
  // Upgrades still under way (the middleware before ws.middleware, beforeAccept, the session's
  // save): close() answers them 503 at once, as serve()'s close() does.
  const underWay = upgradesUnderWay();

  /** Handlers get `res.locals` as state unless a before-accept hook gave one (Express sets `req.res`). */
  const withLocals =
    (h: ConnectionHandler<unknown>): ConnectionHandler<unknown> =>
    (conn, req, ctx) =>
      h(conn, req, ctx.state === undefined ? { ...ctx, state: (req as Request).res?.locals } : ctx);
  const mapper = (): ServiceMapper<unknown> =>
    (compiled ??= serviceMapper(
      [...routes, ...((options.mapper?.routes ?? []) as readonly Route<unknown>[])].map((route) => ({
        path: route.path,
        handler: route.handler && withLocals(route.handler),
        protocols: Object.fromEntries(Object.entries(route.protocols ?? {}).map(([name, h]) => [name, withLocals(h)])),
      })),
    ));
  const claims = (path: string): boolean => {
    if (routes.length === 0 && !options.mapper) return false;
    return mapper().claims(path);
  };
  // Express's `req` is the IncomingMessage the core hands the handler (Express only swaps its prototype).
  const wrap =
    (h: ExpressWebSocketHandler<Record<string, string>>) =>
    (conn: WebSocketConnection, req: IncomingMessage, ctx: HandlerContext<unknown>): void | Promise<void> =>
      h(conn, req as Request, ctx as HandlerContext<Locals>);

  // Its connections are its own set (ws.connections): a `connections` given is refused, not replaced.
  checkOwnConnections('websocket()', (options as { connections?: unknown }).connections, 'ws.connections');
  // One options object for every upgrade: without a before-accept hook the handshake stays synchronous.
  const upgradeOptions: UpgradeOptions<unknown> = {
    ...options,
    // An upgrade whose before-accept hook was still running when the shutdown began is closed at
    // once (1001), as the shutdown closed the others.
    shuttingDown: () => closing,
    connections,
  };
  // A limit or timeout out of range throws here, not at every upgrade.
  checkUpgradeOptions('websocket()', upgradeOptions);

  const ws: ExpressWebSocket = {
    route(path, handlers) {
      const h = typeof handlers === 'function' ? { handler: handlers } : handlers;
      const protocols: Record<string, ReturnType<typeof wrap>> = {};
      for (const [name, fn] of Object.entries(h.protocols ?? {})) {
        protocols[name] = wrap(fn as ExpressWebSocketHandler<Record<string, string>>);
      }
      routes.push({
        path,
        handler: h.handler ? wrap(h.handler as ExpressWebSocketHandler<Record<string, string>>) : undefined,
        protocols,
      });
      compiled = undefined;
      // Check the route now: a bad pattern (or a route with no handler) throws here, not at the
      // first upgrade, and is not kept (fixed bug: it stayed in the list, so every later route()
      // and claims() threw too, and each upgrade crashed the 'upgrade' listener).
      try {
        mapper();
      } catch (error) {
        routes.pop();
        compiled = undefined;
        throw error;
      }
      return this;
    },
    middleware(req, res, next) {
      const pending = (req as UpgradeRequest)[PENDING];
      if (!pending || pending.accepted || !claims(requestPath(req.originalUrl ?? req.url))) return next();
      pending.accepted = true;
      if (closing) {
        // close() began while the middleware before this one ran (fixed bug: the upgrade got its
        // 101 after close() had closed the others, and stayed open). close() has answered it 503
        // already, unless a middleware had begun a response.
        if (!res.headersSent) res.writeHead(503, { 'Content-Type': 'text/plain; charset=utf-8' }).end('server is shutting down\n');
        return;
      }
      // Mounted under a prefix (`app.use('/api', router)`), Express has cut it off `req.url`: the core
      // routes by the full path, as `claims` did (fixed bug: every upgrade there got 404).
      req.url = req.originalUrl ?? req.url;
      // The 101 (or a 404/400) is written by the core straight to the socket.
      res.detachSocket(pending.socket as Socket);
      // Once the core accepts, Express's response is ended without being written (its on-headers
      // listeners and end wrappers run: express-session sets its cookie and saves the session), and
      // the headers the middleware set on it go on the 101.
      const headers = (): Promise<OutgoingHttpHeaders> => completeUpgradeResponse(pending.res).then(() => pending.res.getHeaders());
      // A refusal the core wrote (400, 403, beforeAccept's) ends Express's response with its status,
      // written nowhere: morgan and other on-finished listeners see it. (Fixed: they saw the
      // response end only with its socket, morgan logging the status as `-`.)
      void handleUpgrade(req, pending.socket, pending.head, mapper(), upgradeOptions, headers).then((conn) => {
        underWay.settled(pending.socket);
        if (conn === undefined) void endRefusedResponse(pending.res, pending.socket);
      });
    },
    attach(server, app) {
      const run = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
        socket.on('error', noop);
        const res = upgradeResponse(req, socket, options.handshakeTimeout);
        if (closing) {
          res.writeHead(503, { 'Content-Type': 'text/plain; charset=utf-8' }).end('server is shutting down\n');
          return;
        }
        (req as UpgradeRequest)[PENDING] = { socket, head, res, accepted: false };
        underWay.add(socket, res);
        app(req, res);
      };
      // Beside other instances on the server (one per router module), the first that claims a
      // request takes it, and the first of them answers one none claims (listenForUpgrades).
      return listenForUpgrades(server, (req) => claims(requestPath(req.url)), run, options.handshakeTimeout);
    },
    claims,
    connections,
    async close(code = CloseCode.GoingAway, reason = 'server shutting down') {
      // Checked before anything is stopped, as conn.close() checks them (fixed bug: each close()
      // rejected, unheard: close(1005) refused new upgrades and left every connection open).
      encodeClosePayload(code ?? undefined, reason);
      closing = true;
      underWay.refuse();
      await Promise.all([...connections].map((conn) => conn.close(code, reason).catch(noop)));
    },
  };
  return ws;
}
