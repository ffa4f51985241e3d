/**
 * The service mapper (the analog of Racket's `ws-service-mapper`): routes an upgrade request by
 * URL path and by requested subprotocol, declaratively. `match` is a pure function of the path and
 * the offered subprotocols, so it can be tested without sockets.
 *
 * - A route's `path` is a RegExp, or a string read as a regular expression that must match the
 *   whole path (as Racket's `regexp-match-exact?`). The query string (and a fragment) is not
 *   part of the path.
 * - The first route whose path matches wins; there is no fall-through to later routes.
 * - Subprotocols are tried in the client's order; the first one the route has a handler for is
 *   chosen. Names are compared exactly: RFC 6455 §4.1 makes them case-sensitive tokens (Racket
 *   lower-cases them; we do not, so "Chat" and "chat" are different protocols).
 * - `handler` serves clients that request no subprotocol. A client that offers subprotocols none
 *   of which the route has gets 400 (no fallback to `handler`, as in Racket); a route without
 *   `handler` answers 400 to a client that offers none.
 * - Named groups of the path RegExp are handed to the handler as `params`.
 */
import type { IncomingMessage } from 'node:http';
import type { WebSocketConnection } from './connection.js';
import type { HookState } from './upgrade.js';

/** What a handler receives beside the connection and the upgrade request. */
export interface HandlerContext<State = unknown, Params extends Record<string, string> = Record<string, string>> {
  /** Named groups of the route's path pattern. */
  params: Params;
  /**
   * What the before-accept hook returned as `state` (undefined without a hook, or when it gave
   * none). serve(), handleUpgrade(), handleConnect(), attachHttp2() and handleHybi00Upgrade() infer
   * `State` from the hook alone: without one it is `undefined`, so a handler or mapper that needs a
   * state is refused there; with one that may accept without a state it is `State | undefined`
   * (see {@link HookState}).
   */
  state: State;
  /** The chosen subprotocol, '' if none. */
  protocol: string;
}

/**
 * Serves one accepted connection. A returned promise that rejects, or a throw, is a handler failure:
 * the connection closes with 1011 and `onError` is called (without it, see `UpgradeOptions.onError`).
 */
export type ConnectionHandler<State = unknown, Params extends Record<string, string> = Record<string, string>> = (
  conn: WebSocketConnection,
  req: IncomingMessage,
  context: HandlerContext<State, Params>,
) => void | Promise<void>;

/** One route of a {@link serviceMapper}: a path pattern and its handlers. */
export interface Route<State = unknown> {
  /** RegExp, or a string taken as a regular expression that must match the whole path. */
  path: RegExp | string;
  /** Handler for clients that request no subprotocol. */
  handler?: ConnectionHandler<State> | undefined;
  /** Handlers by subprotocol name (several names may share one handler). */
  protocols?: Readonly<Record<string, ConnectionHandler<State>>> | undefined;
}

/** The outcome of {@link ServiceMapper.match}: a handler, or the HTTP status to refuse with. */
export type MatchResult<State = unknown> =
  | {
      /** A route and handler were found. */
      ok: true;
      /** The matching route. */
      route: Route<State>;
      /** The handler for the chosen subprotocol (or the route's `handler` when none was offered). */
      handler: ConnectionHandler<State>;
      /** The chosen subprotocol, '' if none. */
      protocol: string;
      /** Named groups of the route's path pattern. */
      params: Record<string, string>;
    }
  | {
      /** No route, or no acceptable subprotocol. */
      ok: false;
      /** 404: no route matches the path; 400: the subprotocols do not fit the route. */
      status: 404 | 400;
      /** Why, for the error response. */
      reason: string
    };

const MAPPER = Symbol.for('rfc6455.ServiceMapper');

/** Routes upgrades by path and subprotocol; build one with {@link serviceMapper}. */
export interface ServiceMapper<State = unknown> {
  /** Brand checked by {@link isServiceMapper}. @internal */
  readonly [MAPPER]: true;
  /** The routes, as given to `serviceMapper`. */
  readonly routes: readonly Route<State>[];
  /** Routes `path` (no query) for the offered subprotocols (client order). Pure. */
  match(path: string, offeredProtocols: readonly string[]): MatchResult<State>;
  /** True when a route's path pattern matches `path` (what adapters test before taking an upgrade). */
  claims(path: string): boolean;
}

function compile(path: RegExp | string): RegExp {
  if (typeof path === 'string') {
    // Compiled alone first: a string with an unbalanced `)`, such as '/a)|(/b', is no regular
    // expression, but wrapped it compiles to `^(?:/a)|(/b)$`, anchored on one side only, which
    // took '/a' for any path starting with it (fixed bug). Alone it throws its SyntaxError.
    new RegExp(path);
    return new RegExp(`^(?:${path})$`);
  }
  // A RegExp must match the whole path too; drop flags that make `exec` stateful.
  const flags = path.flags.replace(/[gy]/g, '');
  return new RegExp(`^(?:${path.source})$`, flags);
}

/** Builds a service mapper from routes (checked once, here). */
export function serviceMapper<State = unknown>(routes: readonly Route<State>[]): ServiceMapper<State> {
  const compiled = routes.map((route) => {
    if (!route.handler && (!route.protocols || Object.keys(route.protocols).length === 0)) {
      throw new TypeError(`route ${String(route.path)} has neither a handler nor protocols`);
    }
    return { route, pattern: compile(route.path), protocols: new Map(Object.entries(route.protocols ?? {})) };
  });
  return {
    [MAPPER]: true,
    routes,
    match(path, offered) {
      for (const { route, pattern, protocols } of compiled) {
        const m = pattern.exec(path);
        if (!m) continue;
        // Own properties whatever the group's name (an assignment to `params.__proto__` set nothing).
        const params: Record<string, string> = m.groups
          ? Object.fromEntries(Object.entries(m.groups).filter((entry): entry is [string, string] => entry[1] !== undefined))
          : {};
        if (offered.length === 0) {
          if (route.handler) return { ok: true, route, handler: route.handler, protocol: '', params };
          return { ok: false, status: 400, reason: `a subprotocol is required: one of ${[...protocols.keys()].join(', ')}` };
        }
        for (const name of offered) {
          const handler = protocols.get(name);
          if (handler) return { ok: true, route, handler, protocol: name, params };
        }
        const supported = [...protocols.keys()];
        return {
          ok: false,
          status: 400,
          reason:
            supported.length > 0
              ? `unsupported subprotocol: offered ${offered.join(', ')}; supported: ${supported.join(', ')}`
              : `this endpoint takes no subprotocol (offered ${offered.join(', ')})`,
        };
      }
      return { ok: false, status: 404, reason: `no WebSocket service at ${path}` };
    },
    claims(path) {
      return compiled.some(({ pattern }) => pattern.test(path));
    },
  };
}

/**
 * True when `value` was built by {@link serviceMapper} (rather than being a plain handler). A
 * handler-or-mapper of a state type narrows to the mapper of that state type.
 */
export function isServiceMapper<State>(value: ConnectionHandler<State> | ServiceMapper<State>): value is ServiceMapper<State>;
/**
 * True when `value` was built by {@link serviceMapper}. Anything else narrows to a mapper whose
 * state type is unknown, so that its routes' handlers can be called (they were typed as taking
 * `never`, which no context is).
 */
export function isServiceMapper(value: unknown): value is ServiceMapper<unknown>;
export function isServiceMapper(value: unknown): value is ServiceMapper<unknown> {
  return typeof value === 'object' && value !== null && (value as { [MAPPER]?: true })[MAPPER] === true;
}
