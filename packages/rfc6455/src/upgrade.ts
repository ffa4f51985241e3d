/**
 * `handleUpgrade`: the one seam between an HTTP server's `upgrade` event and a WebSocket
 * connection. `serve()` and every framework adapter call it. It validates the handshake, routes
 * through a service mapper (or takes a plain handler), runs the before-accept hook, negotiates
 * extensions, answers 101 (or a real HTTP error, never a 101 followed by a close) and starts the
 * handler on a WebSocketConnection.
 */
import { ServerResponse, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { EventEmitter } from 'node:events';
import { Writable, type Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { inspect } from 'node:util';
import { CloseCode, Defaults } from './codec/constants.js';
import { checkUpgradeOptions } from './check-options.js';
import { giveUpUntaken, timerDelay } from './idle-wheel.js';
import { WebSocketConnection, type ConnectionOptions } from './connection.js';
import { HandshakeError } from './errors.js';
import { parseExtensions } from './extensions/header.js';
import { acceptDeflateOffers, deflateEngineOptions, PerMessageDeflate, type PerMessageDeflateOptions } from './extensions/permessage-deflate.js';
import { formatErrorResponse, headerList, targetPath, tokenList, type HeaderList } from './handshake/http.js';
import { switchingProtocols, validateRequest, type ValidatedRequest } from './handshake/server.js';
import { isServiceMapper, type ConnectionHandler, type ServiceMapper } from './service-mapper.js';
import { socketTransport, type Transport } from './transport.js';
import { isHybi00Request } from './handshake/hybi00.js';
import { handleHybi00Upgrade } from './hybi00-upgrade.js';

/** What the before-accept hook sees. */
export interface UpgradeInfo {
  /** Path without the query. */
  path: string;
  /** Subprotocols the client offered, in its order. */
  protocols: string[];
  /** The subprotocol that will be answered ('' if none); the hook may not change it. */
  protocol: string;
  /** Route parameters (named groups of the mapper's pattern). */
  params: Record<string, string>;
  /** True over TLS. */
  secure: boolean;
}

/** A refusal of the upgrade: answered as this HTTP response (never a 101). */
export interface UpgradeRejection {
  /**
   * HTTP status to answer, e.g. 401, 403: an integer from 300 to 599. Another (a 101, or a 2xx,
   * which over HTTP/2 is the acceptance) fails the hook: the request is answered 500 and the error
   * goes to `onError`.
   */
  status: number;
  /**
   * Extra response headers. Those of the response's framing are the core's and left out
   * (Content-Length, Connection, Transfer-Encoding, Keep-Alive, Proxy-Connection, TE, Trailer;
   * over HTTP/2 Upgrade too); a name that is not a token, or a value with CR, LF or NUL, fails the
   * hook (a TypeError: 500, reported to `onError`).
   */
  headers?: OutgoingHttpHeaders | undefined;
  /** Response body, sent exactly as given. Default empty. */
  body?: string | Buffer | undefined;
}

/** What the before-accept hook may return: extra 101 headers, state for the handler, or a refusal. */
export type BeforeAcceptResult<State> =
  | void
  | undefined
  | {
      /**
       * Extra headers for the 101 response (the HTTP/2 200). Not the handshake's own (`Upgrade`,
       * `Connection`, `Sec-WebSocket-*`): one of those is a TypeError, answered 500.
       */
      headers?: OutgoingHttpHeaders | undefined;
      /** Passed to the handler as `context.state`. */
      state?: State | undefined;
      /** Absent: the upgrade is accepted. */
      reject?: undefined
    }
  | {
      /** Refuse the upgrade with this HTTP response. */
      reject: UpgradeRejection
    };

/**
 * What a `beforeAccept` hook returns, as the entry points (serve(), handleUpgrade(), handleConnect(),
 * attachHttp2(), handleHybi00Upgrade()) infer it: `Result`, a {@link BeforeAcceptResult}, a
 * promise (any thenable) of one, or a union of both. Used with {@link HookState} to type the
 * handler's `context.state`; a return that is none of those is refused here too.
 */
export interface HookReturning<Result> {
  /** The before-accept hook (see {@link UpgradeOptions.beforeAccept}). */
  beforeAccept?:
    | (((req: IncomingMessage, info: UpgradeInfo) => Result) & ((req: IncomingMessage, info: UpgradeInfo) => NoInfer<HookChecked<Result>>))
    | undefined;
}

/**
 * `Result` where it is a {@link BeforeAcceptResult} or a thenable of one, `never` elsewhere
 * (distributive): the check that an intersection with `UpgradeOptions` would skip for the
 * all-optional accepting result (a hook returning a number, or a user instead of `{ state: user }`).
 */
export type HookChecked<Result> = Result extends PromiseLike<infer Settled>
  ? [Settled] extends [BeforeAcceptResult<unknown>] ? Result : never
  : Result extends BeforeAcceptResult<unknown> ? Result : never;

/** True when some return in `Result` accepts the upgrade without a `state` (distributive). */
export type AcceptsWithoutState<Result> = Result extends {
  /** A refusal: no handler runs. */
  reject: object;
}
  ? false
  : Result extends {
        /** The state, which may still be undefined. */
        state: infer Given;
      }
    ? undefined extends Given ? true : false
    : true;

/**
 * The handler's `context.state` for a `beforeAccept` hook whose state is `State` and whose returns
 * are `Result` (or promises of them): `State` when every return that accepts carries a state,
 * `State | undefined` when one may accept without (`undefined`, `{ headers }`, `{ state: maybeUser }`),
 * as the handler gets `undefined` then. A hook typed as the general `BeforeAcceptResult<State>`
 * (options declared `UpgradeOptions<State>` or `ServeOptions<State>`) gives `State`: its author
 * said what it holds.
 */
export type HookState<State, Result> = [BeforeAcceptResult<State>] extends [Awaited<Result>]
  ? State
  : true extends AcceptsWithoutState<Awaited<Result>> ? State | undefined : State;

/** Options of {@link handleUpgrade} (and, through ServeOptions, of `serve()`). */
export interface UpgradeOptions<State = unknown> extends ConnectionOptions {
  /**
   * Runs before the 101 (the analog of Racket's `#:conn-headers`): may add response headers, pass
   * `state` to the handler, or `reject` with any status, headers and body; or a promise of that (any
   * thenable). A throw, or a rejected promise, answers 500.
   */
  beforeAccept?: ((req: IncomingMessage, info: UpgradeInfo) => BeforeAcceptResult<State> | PromiseLike<BeforeAcceptResult<State>>) | undefined;
  /**
   * With a plain handler: the subprotocols this server speaks (the first the client offers is
   * chosen), or a function choosing one of those offered (it is called with an empty list too), or
   * none: `undefined`, or `false` as `ws`'s `handleProtocols` returns. One not offered answers 500.
   * Without it, or with `false`, no subprotocol is answered. A mapper ignores it. A client that
   * offered subprotocols and gets none is still accepted (RFC 6455 allows it, as `ws` does), but a
   * browser fails such a handshake (error, then close 1006) once the handler has started: to refuse
   * it instead, use a service mapper (400) or `beforeAccept`.
   */
  protocols?: readonly string[] | ((offered: readonly string[], req: IncomingMessage) => string | false | undefined) | false | undefined;
  /**
   * Allowed Origin values (exact, e.g. 'https://example.com'), or a predicate. Requests from other
   * origins get 403. Default: any origin (browsers send Origin; check it when cookies authenticate).
   * The predicate decides synchronously: one that returns a promise refuses every upgrade with 500
   * (checks that must wait belong in `beforeAccept`).
   */
  origins?: readonly string[] | ((origin: string | undefined, req: IncomingMessage) => boolean) | undefined;
  /** permessage-deflate: true/options to accept it when offered, false to decline. Default true. */
  perMessageDeflate?: boolean | PerMessageDeflateOptions | undefined;
  /**
   * ms for the upgrade to complete: one deadline for the whole of it, the request head (serve()),
   * the framework's hooks or middleware (the adapters), the before-accept hook and a hybi-00 key3
   * together. Default 10000. More than 0; Infinity (or 2^31 ms and more) for no timeout.
   */
  handshakeTimeout?: number | undefined;
  /**
   * Called with errors thrown by hooks (`conn` undefined; the request is answered 500) and by
   * handlers (the connection closes with 1011; `req` is undefined then, so that a long-lived
   * connection does not keep its upgrade request alive: use `conn.url` and `conn.headers`). It gets
   * the value thrown itself. Default: a handler's error goes to the connection's `error` listeners
   * if it has some; otherwise, and for a hook's error, it is printed on stderr (`console.error`),
   * one line of context then the stack, as Express's default error handler does, and as there not
   * when `NODE_ENV` is `test`. The Koa adapter's default is the app's `'error'` event, Fastify's its
   * logger. An `onError` that throws is printed on stderr too; it never reaches the connection or
   * the process.
   */
  onError?: ((error: unknown, conn: WebSocketConnection | undefined, req: IncomingMessage | undefined) => void) | undefined;
  /** Accept draft hybi-00 (hixie-76) clients too (Sec-WebSocket-Key1/Key2). Default true. */
  hybi00?: boolean | undefined;
  /** Called with every accepted connection (serve() uses it to track them for shutdown). */
  onConnection?: ((conn: WebSocketConnection) => void) | undefined;
  /**
   * True once the server is shutting down: an upgrade that was still waiting when the shutdown
   * began (in a before-accept hook, for the framework's response headers or a hybi-00 key3) and
   * that the shutdown has not answered yet is answered 503 instead of its 101. (Over HTTP/2, a
   * connection accepted from then on is closed at once with 1001, without `onConnection`.)
   * serve() and the adapters set it.
   */
  shuttingDown?: (() => boolean) | undefined;
}

/** Who serves accepted connections: one handler for every path, or a {@link ServiceMapper}. */
export type UpgradeTarget<State = unknown> = ConnectionHandler<State> | ServiceMapper<State>;

/**
 * Response headers that a framework's hooks or middleware set for an upgrade request (a session
 * middleware's Set-Cookie…): a Node header object (`res.getHeaders()`) or `[name, value]` pairs. A
 * repeated header (several Set-Cookie) is an array, or a pair per value, and goes out as one line
 * per value.
 */
export type ResponseHeaders = OutgoingHttpHeaders | HeaderList;

/**
 * What the adapters give {@link handleUpgrade} (and `handleConnect`): a function that returns the
 * framework's response headers, or a promise of them. It is called once the upgrade is accepted
 * (handshake valid, routed, Origin allowed, `beforeAccept` done without refusing), just before the
 * 101 (the HTTP/2 200) is written, and never for a refusal. A throw or rejection answers 500
 * (reported to `onError`); handshakeTimeout bounds the wait.
 */
export type ResponseHeaderSource = () => ResponseHeaders | PromiseLike<ResponseHeaders>;

/**
 * Headers never taken from a framework's response onto a 101 (or an HTTP/2 200): those the core
 * writes itself or that would contradict the handshake (Connection, Upgrade, Sec-WebSocket-*),
 * the other hop-by-hop ones, those that describe or frame a body a 101 does not have
 * (Content-Length, Content-Type, Content-Encoding, Content-Range, Transfer-Encoding, Trailer), and
 * Date (Node adds one to every response it serializes; the core's 101 has none).
 */
const NOT_PASSED = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'upgrade', 'te', 'trailer', 'transfer-encoding',
  'content-length', 'content-type', 'content-encoding', 'content-range', 'date',
]);

/** The handshake's own response headers, which only the core writes: Upgrade, Connection, Sec-WebSocket-* (lower-cased name). */
function isHandshakeHeader(lower: string): boolean {
  return lower === 'upgrade' || lower === 'connection' || lower.startsWith('sec-websocket-');
}

/**
 * The framework headers that may go on a 101 (see NOT_PASSED; HTTP/2 pseudo-headers are left out
 * too), checked as `beforeAccept`'s are: a name that is not a token, or a value with CR, LF or NUL,
 * throws TypeError. @internal
 */
export function passedResponseHeaders(headers: ResponseHeaders): HeaderList {
  const entries: Array<[string, unknown]> = Array.isArray(headers) ? headers : Object.entries(headers);
  const kept: Array<[string, OutgoingHttpHeaders[string]]> = [];
  for (const [name, value] of entries) {
    const lower = name.toLowerCase();
    if (NOT_PASSED.has(lower) || isHandshakeHeader(lower) || lower.startsWith(':')) continue;
    kept.push([name, value as OutgoingHttpHeaders[string]]);
  }
  return headerList(kept as unknown as HeaderList);
}

/**
 * The headers a `beforeAccept` hook may not add to the 101 (or the HTTP/2 200): the handshake's own,
 * which the core writes itself (RFC 6455 §4.2.2: Upgrade, Connection, Sec-WebSocket-Accept, and the
 * subprotocol and extensions it negotiated; §11.3: each Sec-WebSocket-* at most once in a response).
 * A TypeError naming the header, answered 500 and reported to `onError` as any failure of the hook.
 * Fixed bug: they were written after the core's, so that `Sec-WebSocket-Protocol: chat` went out
 * twice (or named a subprotocol the connection did not have), and `Upgrade` twice: clients (ours,
 * `ws`) failed the handshake, with WS_BAD_PROTOCOL or WS_BAD_UPGRADE, after the server had counted
 * an accepted connection.
 */
function checkHookHeaders(headers: HeaderList): void {
  for (const [name] of headers) {
    const lower = name.toLowerCase();
    if (!isHandshakeHeader(lower)) continue;
    const instead =
      lower === 'sec-websocket-protocol' ? ' (choose the subprotocol with the protocols option or a service mapper)' : lower === 'sec-websocket-extensions' ? ' (use the perMessageDeflate option)' : '';
    throw new TypeError(`beforeAccept returned the ${name} header, which is the handshake's own: the 101 writes it${instead}`);
  }
}

/**
 * The framework's headers, then `beforeAccept`'s: a name the hook gives replaces the framework's
 * header of that name (any case), except Set-Cookie, whose lines add up (the hook's come last, so a
 * cookie both set is the hook's for the browser). @internal
 */
export function mergeResponseHeaders(framework: HeaderList, hook: HeaderList): HeaderList {
  if (framework.length === 0) return hook;
  if (hook.length === 0) return framework;
  const replaced = new Set<string>();
  for (const [name] of hook) {
    const lower = name.toLowerCase();
    if (lower !== 'set-cookie') replaced.add(lower);
  }
  return [...framework.filter(([name]) => !replaced.has(name.toLowerCase())), ...hook];
}

/**
 * Adds the framework's headers (the source's) to a negotiated upgrade: at once when the source
 * answers at once, else a promise. A failing source disposes the deflate context and throws. @internal
 */
export function withResponseHeaders<State>(negotiated: Negotiated<State>, source: ResponseHeaderSource | undefined): Negotiated<State> | Promise<Negotiated<State>> {
  if (source === undefined) return negotiated;
  const add = (headers: ResponseHeaders): Negotiated<State> => {
    negotiated.headers = mergeResponseHeaders(passedResponseHeaders(headers), negotiated.headers);
    return negotiated;
  };
  const fail = (error: unknown): never => {
    negotiated.extension?.dispose();
    throw error;
  };
  let got: ResponseHeaders | PromiseLike<ResponseHeaders>;
  try {
    got = source();
    if (!isThenable(got)) return add(got);
  } catch (error) {
    return fail(error);
  }
  return Promise.resolve(got).then(add).catch(fail);
}

/**
 * Writes an HTTP error response on a raw socket and closes it once written. A response the socket
 * cannot take at once (a body larger than its buffers) must be taken by the peer within `timeout`
 * ms (default 10000, the default `handshakeTimeout`), or the socket is destroyed.
 */
export function rejectUpgrade(socket: Duplex, status: number, message: string | Buffer, headers: HeaderList = [], timeout: number = Defaults.handshakeTimeout): void {
  if (socket.destroyed) return;
  refusals.set(socket, status);
  // Node's HTTP server removed its own error listener when it handed the socket over.
  socket.on('error', noop);
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.once('finish', () => socket.destroy());
  socket.end(formatErrorResponse(status, message, headers));
  // (Fixed bug: a client that did not read a refusal larger than the socket's buffers, a hook's
  // `reject.body` of a few hundred KB, held the socket for good, however many such clients came;
  // the adapters' refusals were already bounded by the handshake timeout.)
  giveUpUntaken(socket, timeout, () => socket.destroy());
}

/** The path of a request target, without the query or a fragment (also of an absolute-form target, `http://host/path`). */
export function requestPath(url: string | undefined): string {
  return targetPath(url ?? '/');
}

/** True when an upgrade request asks for WebSocket (`Upgrade: websocket`, any case; hybi-00 too). */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return tokenList(req.headers.upgrade).includes('websocket');
}

/**
 * Serves an upgrade request for another protocol (`Upgrade: h2c` from `curl --http2` or Java's
 * HttpClient, `TLS/1.0`…) as the plain HTTP request it also is: a server may ignore Upgrade (RFC
 * 9110 §7.8), which Node does unless it has an `upgrade` listener. With one, the request comes
 * there with its body unread (in `head` and still on the socket). This hands the request head,
 * without Upgrade, and those bytes back to `server`'s HTTP parser as a connection of its own, so
 * its `request` handler gets the whole request, and the next ones on that connection. Adapters
 * call it when no other `upgrade` listener might want the request (fixed bug: the framework
 * answered it with an empty body, e.g. 400 or `{}` for a JSON POST).
 */
export function ignoreUpgrade(server: EventEmitter, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  let text = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/${req.httpVersion}\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (name === 'upgrade') continue;
    let value = raw[i + 1]!;
    if (name === 'connection') {
      value = value.split(',').map((t) => t.trim()).filter((t) => t !== '' && t.toLowerCase() !== 'upgrade').join(', ');
      if (value === '') continue;
    }
    text += `${raw[i]!}: ${value}\r\n`;
  }
  socket.unshift(Buffer.concat([Buffer.from(`${text}\r\n`, 'latin1'), head]));
  // An https (or HTTP/2 with allowHTTP1) server takes HTTP/1.1 connections on 'secureConnection'.
  server.emit(socket instanceof TLSSocket ? 'secureConnection' : 'connection', socket);
}

/**
 * Runs `proceed` once Node's HTTP server has written every response it still owes on `socket`,
 * for the requests a client pipelined before this upgrade request (keep-alive: `GET /a`, then an
 * upgrade, in one packet). HTTP answers requests in the order they came (RFC 9112 §9.3.2), and the
 * new protocol starts after the 101: only then may the 101 (or a refusal, or the request handed
 * back by {@link ignoreUpgrade}) be written. `proceed` runs at once when nothing is owed (always
 * for a request that was alone, or answered, on its connection). If the socket closes first (an
 * earlier response had `Connection: close`, or the client left), `proceed` never runs and the
 * socket is destroyed; so it is when the earlier responses are not written within `timeout` ms
 * (the handshake timeout, default 10000). Call it from an `upgrade` listener, as `serve()` and the
 * adapters do. Fixed bugs: the adapters' `upgradeResponse()` threw Node's
 * ERR_HTTP_SOCKET_ASSIGNED from the `upgrade` listener and the process died; `serve()` wrote the
 * 101 before the pending responses, which then went out inside the WebSocket stream; a pipelined
 * `Upgrade: h2c` request was never answered.
 */
export function afterEarlierResponses(socket: Duplex, proceed: () => void, timeout: number = Defaults.handshakeTimeout): void {
  const owed = (): ServerResponse | null | undefined => responseBeingWritten(socket);
  let response = owed();
  if (response == null) {
    proceed();
    return;
  }
  // Node's HTTP server removed its own error listener when it emitted the upgrade.
  socket.on('error', noop);
  const done = (): void => {
    clearTimeout(timer);
    socket.removeListener('close', done);
    response?.removeListener('finish', next);
  };
  // (After Node's own 'finish' listener, registered first: it has detached the response and
  // assigned the next one owed, or ended the socket after a `Connection: close` one.)
  const next = (): void => {
    response = owed();
    if (response != null) {
      response.once('finish', next);
      return;
    }
    done();
    if (socket.destroyed || !socket.writable) socket.destroy();
    else proceed();
  };
  const timer = setTimeout(() => {
    done();
    socket.destroy();
  }, timerDelay(timeout));
  timer.unref();
  socket.once('close', done);
  response.once('finish', next);
}

/**
 * The response Node's HTTP server is writing on `socket` (keep-alive: the answer to an earlier
 * request on the connection), if any; its internal `_httpMessage`. @internal
 */
export function responseBeingWritten(socket: Duplex): ServerResponse | null | undefined {
  return (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
}

/** A listener that {@link listenForUpgrades} put on a server. */
type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** The listeners {@link listenForUpgrades} put on each server, with what each claims. */
const upgradeListeners = new WeakMap<EventEmitter, Map<UpgradeListener, (req: IncomingMessage) => boolean>>();

/**
 * Puts an adapter instance's `upgrade` listener on `server`, and returns the function that takes
 * it off. Several instances may share one server (one per router module, or two frameworks): the
 * first one whose `claims` takes an upgrade request runs it (`run`, once the responses to requests
 * pipelined before it are written: {@link afterEarlierResponses}). A request none claims goes to
 * the first instance (its app answers it, e.g. 404) when no other kind of listener is on the
 * server, and is left to that other listener otherwise; an upgrade to another protocol (h2c…) is
 * served as the plain request it is ({@link ignoreUpgrade}) under the same rule, and so is an
 * `Upgrade: websocket` request whose method is not GET, when it is this instance's. (Fixed bug: each
 * instance took the others for foreign listeners, so an upgrade no instance claimed was never
 * answered and its socket stayed open, and one that two claimed ran through both apps.)
 */
export function listenForUpgrades(
  server: EventEmitter,
  claims: (req: IncomingMessage) => boolean,
  run: (req: IncomingMessage, socket: Duplex, head: Buffer) => void,
  handshakeTimeout?: number,
): () => void {
  let group = upgradeListeners.get(server);
  if (group === undefined) upgradeListeners.set(server, (group = new Map()));
  const instances = group;
  const onUpgrade: UpgradeListener = (req, socket, head) => {
    // Alone: no listener on the server but instances, and this one is the first of them.
    const listeners = server.listeners('upgrade');
    const ours = listeners.filter((listener) => instances.has(listener as UpgradeListener));
    const alone = ours[0] === onUpgrade && ours.length === listeners.length;
    if (!isWebSocketUpgrade(req)) {
      // Another protocol: someone else's, or, alone, a plain HTTP request for the app.
      if (alone) afterEarlierResponses(socket, () => ignoreUpgrade(server, req, socket, head), handshakeTimeout);
      return;
    }
    const claimer = ours.find((listener) => instances.get(listener as UpgradeListener)?.(req));
    if (claimer ? claimer !== onUpgrade : !alone) return; // another instance's, or someone else's
    if (req.method !== 'GET') {
      // `Upgrade: websocket` on a POST, PUT, HEAD…: no WebSocket handshake (RFC 6455 §4.1), but an
      // HTTP request for the app, served as the plain request it also is, body included, as the
      // app would serve it without Upgrade. (Fixed bug: the app's route got it with its body
      // unread, so a POST handler ran and answered 200 as if the body were empty.)
      afterEarlierResponses(socket, () => ignoreUpgrade(server, req, socket, head), handshakeTimeout);
      return;
    }
    afterEarlierResponses(socket, () => run(req, socket, head), handshakeTimeout);
  };
  instances.set(onUpgrade, claims);
  server.on('upgrade', onUpgrade);
  return () => {
    instances.delete(onUpgrade);
    server.removeListener('upgrade', onUpgrade);
  };
}

/** Deadlines of upgrade requests a framework is handling (see upgradeResponse). */
const deadlines = new WeakMap<Duplex, NodeJS.Timeout>();
/**
 * When upgradeResponse took each upgrade request (performance.now()): handleUpgrade gives the core
 * what is left of handshakeTimeout, not a fresh one.
 */
const upgradeStarts = new WeakMap<Duplex, number>();
/** The 'drain' listeners that pass a socket's drain on to its upgradeResponse. */
const drains = new WeakMap<Duplex, () => void>();
/** The 'finish' listeners of upgradeResponse's responses (they end the socket; see completeUpgradeResponse). */
const finishers = new WeakMap<ServerResponse, () => void>();
/** The status of the refusal rejectUpgrade wrote on a socket (see endRefusedResponse). */
const refusals = new WeakMap<Duplex, number>();

/**
 * A ServerResponse that writes to the raw socket of an upgrade request, so that a framework's
 * routing and middleware can answer it with an ordinary HTTP response (401, 404, a redirect...).
 * The socket is ended once that response is written. Adapters use it; `handleUpgrade` itself
 * writes straight to the socket.
 *
 * `timeout` (ms; default 10000, the default `handshakeTimeout`; 0 for none) bounds the framework's
 * part: a request that has neither been answered nor handed to `handleUpgrade` by then is answered
 * 408 (its socket destroyed if a response had started). Fixed bug: a middleware or hook that never
 * finished (a lost `next()`, a call that hangs) held the socket open for good, whatever
 * `handshakeTimeout` said; Node's own request timeouts do not apply to upgrade requests.
 */
export function upgradeResponse(req: IncomingMessage, socket: Duplex, timeout: number = Defaults.handshakeTimeout): ServerResponse {
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as Socket);
  upgradeStarts.set(socket, performance.now());
  // Node's HTTP server passes a socket's 'drain' on to its response, but not once it has handed the
  // socket over as an upgrade: do it here, as Node does (fixed bug: a body the framework streamed,
  // Fastify's reply.send(stream) or Koa's ctx.body = stream, stopped at the first chunks the
  // socket could not take at once; the rest never came and the socket stayed open).
  const onDrain = (): void => {
    if (res.writableNeedDrain) res.emit('drain');
  };
  socket.on('drain', onDrain);
  drains.set(socket, onDrain);
  const onFinish = (): void => {
    takeOver(socket);
    res.detachSocket(socket as Socket);
    socket.once('finish', () => socket.destroy());
    socket.end();
  };
  res.once('finish', onFinish);
  finishers.set(res, onFinish);
  if (timeout > 0 && Number.isFinite(timeout)) {
    const timer = setTimeout(() => {
      deadlines.delete(socket);
      if (socket.destroyed) return;
      if (res.headersSent) socket.destroy();
      else res.writeHead(408, { 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close' }).end('Request Timeout\n');
    }, timerDelay(timeout));
    timer.unref?.();
    deadlines.set(socket, timer);
    socket.once('close', () => takeOver(socket));
  }
  return res;
}

/**
 * Ends a framework's response to an upgrade request that is being accepted, without writing
 * anything to the client, so that what its middleware do when a response goes out runs: listeners
 * of the response head (express-session sets its cookie from one, through on-headers), wrappers of
 * `end` (express-session saves the session first), a framework's send hooks (Fastify's `onSend`,
 * where @fastify/cookie writes its cookies). `end` ends the response the framework's way (default
 * `res.end()`); `res.statusCode` is 101 first. The response writes to a sink that drops what Node
 * serializes, and the promise resolves at its 'finish': then `res.getHeaders()` (or the framework's
 * own view of them) holds the headers for the 101. Rejects when `end` throws, or when the response
 * finished with another status (an error handler answered instead). The adapters call it
 * from the {@link ResponseHeaderSource} they give handleUpgrade; the response's socket, if it still
 * has one, is detached first, and a response made by {@link upgradeResponse} no longer ends it.
 */
export function completeUpgradeResponse(res: ServerResponse, end: () => unknown = () => res.end()): Promise<void> {
  return endIntoSink(res, 101, end);
}

/**
 * Ends a framework's response to an upgrade request that the core refused on its socket
 * (handleUpgrade settled without a connection after writing an HTTP error: a 400 for a bad
 * handshake, the 403 of an Origin not allowed, a `beforeAccept` refusal, a 500), with that status
 * and without writing anything more to the client, so that what waits for the response to finish
 * sees the request answered as it was: an access log (morgan) logs the status, a rate limiter that
 * counts failures counts it, Fastify's onResponse hooks run. `end` ends it the framework's way,
 * given the status (default: `res.statusCode` set, then `res.end()`). Does nothing when the core
 * wrote no refusal on `socket` (the client left, or the handshake deadline cut it: the response
 * ends with its socket, as it did) or when the response had finished: then it resolves false.
 * Never throws; resolves true once the response has finished or could not be ended. The adapters
 * call it.
 */
export function endRefusedResponse(res: ServerResponse, socket: Duplex, end: (status: number) => unknown = () => res.end()): Promise<boolean> {
  const status = refusals.get(socket);
  if (status === undefined || res.writableEnded) return Promise.resolve(false);
  return endIntoSink(res, status, () => end(status)).then(
    () => true,
    () => true,
  );
}

/**
 * Ends `res` with `status` into a sink that drops what Node serializes (never the client's
 * socket), resolving at its 'finish'; rejects when `end` throws or when it finished with another
 * status (an error handler answered instead).
 */
function endIntoSink(res: ServerResponse, status: number, end: () => unknown): Promise<void> {
  const onFinish = finishers.get(res);
  if (onFinish !== undefined) {
    res.removeListener('finish', onFinish);
    finishers.delete(res);
  }
  if (res.writableFinished) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const sink = new Writable({
      write(_chunk, _encoding, callback) {
        callback();
      },
    });
    if (!res.writableEnded) {
      // Never the client's socket: what Node serializes goes to the sink.
      if (res.socket !== null) res.detachSocket(res.socket);
      res.assignSocket(sink as unknown as Socket);
    }
    res.once('finish', () => {
      if (res.socket === (sink as unknown)) res.detachSocket(sink as unknown as Socket);
      // An error handler that answered instead (a failing send hook or session store): no 101.
      if (res.statusCode !== status) reject(new Error(`the framework answered ${res.statusCode} while the upgrade was being ${status === 101 ? 'accepted' : 'refused'}`));
      else resolve();
    });
    try {
      if (!res.headersSent) res.statusCode = status;
      end();
    } catch (error) {
      reject(error);
    }
  });
}

/**
 * The upgrade requests an adapter instance is handling, from {@link upgradeResponse} on until the
 * core has accepted or answered them, so that its shutdown can answer those still under way 503
 * at once, as `serve()`'s close() answers an upgrade whose `beforeAccept` is pending. Made by
 * {@link upgradesUnderWay}; the adapters use it.
 */
export interface UpgradesUnderWay {
  /**
   * Tracks the upgrade on `socket`, whose framework response `res` is (the one upgradeResponse
   * made), until its socket closes, `res` finishes (the framework answered it, or
   * completeUpgradeResponse ended it for the 101) or {@link UpgradesUnderWay.settled} is called.
   */
  add(socket: Duplex, res: ServerResponse): void;
  /** The core has accepted or answered the upgrade on `socket` (handleUpgrade's promise settled): no longer tracked. */
  settled(socket: Duplex): void;
  /**
   * Answers every upgrade tracked 503 at once, and stops tracking them: one still in the
   * framework's hooks or middleware through its response (unless the framework has begun
   * answering it), one the core is waiting on (`beforeAccept`, the framework's response headers)
   * on its socket. What the framework or the hook does later finds it answered: the core accepts
   * nothing on it, and the adapters write nothing more.
   */
  refuse(message?: string): void;
}

/**
 * The upgrades that an {@link UpgradesUnderWay} tracks, each with what stops tracking it: the core
 * calls it as it writes the 101 (see upgraded), so that no shutdown answers 503 on a socket that
 * has become a WebSocket, even in the moment before handleUpgrade's promise settles.
 */
const underWayUpgrades = new WeakMap<Duplex, () => void>();

/** The core is writing the 101 on `socket`: no UpgradesUnderWay (nor serve()'s close()) tracks it any more. @internal */
export function upgraded(socket: Duplex): void {
  const untrack = underWayUpgrades.get(socket);
  if (untrack === undefined) return;
  underWayUpgrades.delete(socket);
  untrack();
}

/**
 * Calls `untrack` once the core writes the 101 (or the hybi-00 response) on `socket` (see
 * {@link upgraded}): serve() tracks its upgrades under way with it, as {@link upgradesUnderWay}
 * does for the adapters, so that its close() never answers 503 on a socket that has become a
 * WebSocket in the moment before the upgrade's promise settles. @internal
 */
export function whenUpgraded(socket: Duplex, untrack: () => void): void {
  underWayUpgrades.set(socket, untrack);
}

/** Tracks the upgrades an adapter instance is handling (see {@link UpgradesUnderWay}). */
export function upgradesUnderWay(): UpgradesUnderWay {
  const tracked = new Map<Duplex, { res: ServerResponse; untrack: () => void }>();
  const drop = (socket: Duplex): void => {
    const entry = tracked.get(socket);
    if (entry === undefined) return;
    tracked.delete(socket);
    underWayUpgrades.delete(socket);
    socket.removeListener('close', entry.untrack);
    entry.res.removeListener('finish', entry.untrack);
  };
  return {
    add(socket, res) {
      if (socket.destroyed) return;
      const untrack = (): void => drop(socket);
      tracked.set(socket, { res, untrack });
      underWayUpgrades.set(socket, untrack);
      socket.once('close', untrack);
      res.once('finish', untrack);
    },
    settled: drop,
    refuse(message = 'server is shutting down') {
      const entries = [...tracked];
      for (const [socket] of entries) drop(socket);
      for (const [socket, { res }] of entries) {
        if (socket.destroyed || res.writableEnded) continue;
        if (res.socket === socket) {
          // Still the framework's: answered through its response, as upgradeResponse's deadline
          // answers 408 (unless the framework has begun a response of its own).
          if (!res.headersSent) res.writeHead(503, { 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close' }).end(`${message}\n`);
        } else {
          // The core's (the response detached): its hook or the framework's headers still pending.
          takeOver(socket);
          rejectUpgrade(socket, 503, message);
        }
      }
    },
  };
}

/**
 * The deadline of upgradeResponse ends: the core takes the upgrade over from the framework (in
 * handleUpgrade, the adapters' way in; serve() has no deadlines and skips this), or the framework
 * answered, or the socket closed.
 */
function takeOver(socket: Duplex): void {
  const onDrain = drains.get(socket);
  if (onDrain !== undefined) {
    socket.removeListener('drain', onDrain);
    drains.delete(socket);
  }
  upgradeStarts.delete(socket);
  const timer = deadlines.get(socket);
  if (timer === undefined) return;
  clearTimeout(timer);
  deadlines.delete(socket);
}

/**
 * The ms left of an upgrade's handshakeTimeout (as a timer takes them, see timerDelay; 0 once it
 * has run out) when it began at `started` (performance.now()); the whole of it without `started`.
 * One deadline for the whole upgrade: serve() passes when the connection came (its request head
 * was read within the same handshakeTimeout), handleUpgrade when upgradeResponse took the request
 * (the framework's hooks ran within it). @internal
 */
export function handshakeTimeLeft(options: Pick<UpgradeOptions<unknown>, 'handshakeTimeout'>, started: number | undefined): number {
  const timeout = options.handshakeTimeout ?? Defaults.handshakeTimeout;
  return timerDelay(started === undefined ? timeout : Math.max(0, timeout - (performance.now() - started)));
}

function offeredOrigin(req: IncomingMessage): string | undefined {
  const origin = req.headers.origin ?? req.headers['sec-websocket-origin'];
  return Array.isArray(origin) ? origin[0] : origin;
}

function noop(): void {}

/** A value with a `then` method (what `await` and `Promise.resolve` adopt). */
function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** The outcome of negotiating an opening handshake, whichever transport carries it. */
export interface Negotiated<State> {
  /** The handler to run on the connection. */
  handler: ConnectionHandler<State>;
  /** The chosen subprotocol, '' if none. */
  protocol: string;
  /** Route parameters (named groups of the mapper's pattern); empty for a plain handler. */
  params: Record<string, string>;
  /** What the before-accept hook returned as `state` (undefined without a hook). */
  state: State;
  /** Extra response headers from the before-accept hook. */
  headers: HeaderList;
  /** The permessage-deflate engine when it was accepted; the caller must `dispose()` it if the connection is not started. */
  extension: PerMessageDeflate | undefined;
  /** Sec-WebSocket-Extensions response value, '' if none. */
  extensionsHeader: string;
}

/** What negotiation needs to know of a request, however it arrived (HTTP/1.1 upgrade, HTTP/2 CONNECT). */
export interface NegotiationInput {
  /** The request target (path and query). */
  url: string;
  /** Subprotocols offered, client order. */
  protocols: string[];
  /** Raw Sec-WebSocket-Extensions value. */
  extensions: string | undefined;
  /** True over TLS (passed to the before-accept hook). */
  secure: boolean;
  /** hybi-00 connections take no extensions. */
  allowExtensions: boolean;
}

/**
 * The negotiation shared by every handshake (RFC 6455 over HTTP/1.1, RFC 8441 over HTTP/2,
 * hybi-00): routing or protocol choice, Origin check, the before-accept hook, permessage-deflate.
 * Throws HandshakeError with the status to answer; returns `{ reject }` when the hook refused.
 */
export function negotiate<State>(
  req: IncomingMessage,
  input: NegotiationInput,
  target: UpgradeTarget<State>,
  options: UpgradeOptions<State>,
): Negotiated<State> | {
  /** The before-accept hook refused: answer with this response. */
  reject: UpgradeRejection
} | Promise<Negotiated<State> | {
  /** The before-accept hook refused: answer with this response. */
  reject: UpgradeRejection
}> {
  const path = targetPath(input.url);
  let handler: ConnectionHandler<State>;
  let protocol = '';
  let params: Record<string, string> = {};
  if (isServiceMapper(target)) {
    const mapped = (target as ServiceMapper<State>).match(path, input.protocols);
    if (!mapped.ok) throw new HandshakeError(mapped.reason, mapped.status, { code: mapped.status === 404 ? 'WS_NO_ROUTE' : 'WS_NO_PROTOCOL' });
    handler = mapped.handler;
    protocol = mapped.protocol;
    params = mapped.params;
  } else {
    handler = target as ConnectionHandler<State>;
    const choose = options.protocols;
    // `false` (and null) choose none, as ws's handleProtocols returns (fixed bug: "protocols()
    // chose false", every upgrade that did not get a subprotocol answered 500).
    if (typeof choose === 'function') protocol = choose(input.protocols, req) || '';
    else if (choose) protocol = input.protocols.find((p) => choose.includes(p)) ?? '';
    if (protocol !== '' && !input.protocols.includes(protocol)) throw new Error(`protocols() chose ${protocol}, which the client did not offer`);
  }

  // Origin allow-list (cross-site WebSocket hijacking, RFC 6455 §10.2).
  const origins = options.origins;
  if (origins) {
    const origin = offeredOrigin(req);
    const allowed: unknown = typeof origins === 'function' ? origins(origin, req) : origin !== undefined && origins.includes(origin);
    // A promise is truthy whatever it resolves to: an async predicate would let every origin in.
    // Refuse the upgrade (500, reported to onError) instead.
    if (isThenable(allowed)) {
      (allowed as Promise<unknown>).then(noop, noop);
      throw new TypeError('origins() returned a promise: it must decide synchronously (use beforeAccept for asynchronous checks)');
    }
    if (!allowed) throw new HandshakeError(`origin ${origin ?? '(none)'} is not allowed`, 403, { code: 'WS_ORIGIN_REFUSED' });
  }

  const finish = (result: BeforeAcceptResult<State>): Negotiated<State> | { reject: UpgradeRejection } => {
    if (result && result.reject) {
      // RFC 6455 §4.2.2: a refusal is an HTTP error code (or a 3xx, which a client may follow).
      // A 101 went out as a 101 without the handshake, and a 2xx over HTTP/2 opened the tunnel
      // the hook meant to refuse (fixed bug): such a status is the hook's failure, answered 500.
      const status: unknown = result.reject.status;
      if (!(Number.isInteger(status) && (status as number) >= 300 && (status as number) <= 599)) {
        const Failure = typeof status === 'number' ? RangeError : TypeError;
        throw new Failure(`beforeAccept refused with status ${String(status)}: a refusal needs a status from 300 to 599 (a 101, or a 2xx over HTTP/2, would answer as an acceptance)`);
      }
      return { reject: result.reject };
    }
    const headers = result ? headerList(result.headers) : [];
    checkHookHeaders(headers);
    const state = (result ? result.state : undefined) as State;

    // Extensions: permessage-deflate, when offered and enabled (RFC 7692 §7.1).
    let extension: PerMessageDeflate | undefined;
    let extensionsHeader = '';
    if (input.allowExtensions && input.extensions !== undefined && options.perMessageDeflate !== false) {
      const deflateOptions = typeof options.perMessageDeflate === 'object' ? options.perMessageDeflate : {};
      let accepted: ReturnType<typeof acceptDeflateOffers> = null;
      try {
        accepted = acceptDeflateOffers(parseExtensions(input.extensions), deflateOptions);
      } catch (error) {
        if (!(error instanceof HandshakeError)) throw error;
        throw new HandshakeError('malformed Sec-WebSocket-Extensions', 400, { code: 'WS_BAD_EXTENSIONS_HEADER' });
      }
      if (accepted) {
        extension = new PerMessageDeflate(accepted.params, 'server', deflateEngineOptions(deflateOptions, options.maxMessageSize ?? Defaults.maxMessageSize));
        extensionsHeader = accepted.response;
      }
    }
    return { handler, protocol, params, state, headers, extension, extensionsHeader };
  };
  // Without a hook the whole negotiation is synchronous: no await, no timer, no gap.
  if (!options.beforeAccept) return finish(undefined);
  const hooked = options.beforeAccept(req, { path, protocols: input.protocols, protocol, params, secure: input.secure });
  // Any thenable is waited for, not just a native Promise (fixed bug: a hook returning another
  // library's promise, or one from another realm, was taken as an immediate acceptance, and a
  // refusal it resolved to was ignored).
  return isThenable(hooked) ? Promise.resolve(hooked).then(finish) : finish(hooked);
}

/**
 * Starts the handler on a new server-side connection (shared by every handshake). `headers` are
 * the connection's `headers`: the request's, or over HTTP/2 its regular fields alone (no
 * pseudo-headers), whichever way the CONNECT arrived.
 */
export function startConnection<State>(
  transport: Transport,
  req: IncomingMessage,
  negotiated: Negotiated<State>,
  options: UpgradeOptions<State>,
  head: Buffer | undefined,
  variant: 'rfc6455' | 'hybi00' = 'rfc6455',
  headers: IncomingHttpHeaders = req.headers,
): WebSocketConnection {
  const url = req.url ?? '/';
  const conn = new WebSocketConnection(
    transport,
    {
      side: 'server',
      variant,
      protocol: negotiated.protocol,
      extensions: negotiated.extensionsHeader,
      extension: negotiated.extension,
      requestLine: req.method === 'GET' || req.method === undefined ? undefined : `${req.method} ${url} HTTP/${req.httpVersion ?? '1.1'}`,
      httpVersion: req.httpVersion,
      url,
      headers,
    },
    // The options object itself unless permessage-deflate needs its threshold filled in (no copy per handshake).
    negotiated.extension && options.compressThreshold === undefined ? { ...options, compressThreshold: negotiated.extension.threshold } : options,
    head,
  );
  // (Fixed bug: an upgrade still waiting when the shutdown began stayed open, and the shutdown
  // waited for it to end, forever with a peer that kept it.)
  if (options.shuttingDown?.() === true) conn.close(CloseCode.GoingAway, 'server shutting down').catch(noop);
  else options.onConnection?.(conn);
  runHandler(negotiated.handler, conn, req, { params: negotiated.params, state: negotiated.state, protocol: negotiated.protocol }, options);
  return conn;
}

/**
 * Completes (or refuses) a WebSocket upgrade on `socket`. `head` is what the HTTP parser read past
 * the request head (frames the client sent at once). Resolves with the connection, or undefined
 * when the upgrade was refused (the HTTP error response was written). Never rejects.
 *
 * `responseHeaders` (the adapters pass it) gives the headers a framework's hooks or middleware
 * set on their response for this request, e.g. a session cookie: they go on the 101, before the
 * headers `beforeAccept` returns, which replace a framework header of the same name (Set-Cookie
 * lines add up). Headers that would break or contradict the handshake are left out (Connection,
 * Upgrade, Sec-WebSocket-*, the other hop-by-hop ones, Content-Length, Content-Type and the other
 * body headers, Date). See {@link ResponseHeaderSource} for when it is called.
 * @throws TypeError or RangeError, at once, for an option of the wrong type or out of range (the
 * socket is answered 500); checked once per options object.
 */
export function handleUpgrade<State = undefined, Result = BeforeAcceptResult<State>>(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  target: UpgradeTarget<NoInfer<HookState<State, Result>>>,
  options: UpgradeOptions<State> & HookReturning<Result> = {},
  responseHeaders?: ResponseHeaderSource,
): Promise<WebSocketConnection | undefined> {
  try {
    checkUpgradeOptions('handleUpgrade()', options);
  } catch (error) {
    rejectUpgrade(socket, 500, 'Internal Server Error');
    throw error;
  }
  // One handshakeTimeout for the whole upgrade: the framework's part (from upgradeResponse) and
  // the core's share it.
  const started = upgradeStarts.get(socket);
  takeOver(socket);
  const result = upgradeNow(req, socket, head, target, options, responseHeaders, started);
  return result instanceof Promise ? result : Promise.resolve(result);
}

/**
 * handleUpgrade without a promise where nothing waits: with no before-accept hook (and not
 * hybi-00, whose key3 may still be on its way) the whole upgrade is synchronous and this returns
 * the connection (or undefined) itself; serve() uses it. @internal
 */
export function upgradeNow<State>(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  target: UpgradeTarget<State>,
  options: UpgradeOptions<State>,
  responseHeaders?: ResponseHeaderSource,
  started?: number,
): WebSocketConnection | undefined | Promise<WebSocketConnection | undefined> {
  if (options.hybi00 !== false && isHybi00Request(req.headers) && req.headers['sec-websocket-key'] === undefined) {
    return handleHybi00Upgrade(req, socket, head, target, options, responseHeaders, started);
  }
  if (options.beforeAccept) return upgradeAfterHook(req, socket, head, target, options, responseHeaders, started);
  try {
    const offer = validateRequest(req);
    // Without a hook negotiate() returns at once, and never a refusal.
    const negotiated = withResponseHeaders(negotiate(req, negotiationInput(req, socket, offer), target, options) as Negotiated<State>, responseHeaders);
    if (negotiated instanceof Promise) return upgradeAfterHeaders(req, socket, head, offer, negotiated, options, started);
    return accept(req, socket, head, offer, negotiated, options);
  } catch (error) {
    failUpgrade(req, socket, error, options);
    return undefined;
  }
}

/**
 * The upgrade when only the framework's headers make it wait (a middleware's end hooks: a session
 * being saved): bounded by handshakeTimeout, as a before-accept hook is.
 */
async function upgradeAfterHeaders<State>(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  offer: ValidatedRequest,
  pending: Promise<Negotiated<State>>,
  options: UpgradeOptions<State>,
  started?: number,
): Promise<WebSocketConnection | undefined> {
  const timer = setTimeout(() => socket.destroy(), handshakeTimeLeft(options, started));
  timer.unref?.();
  try {
    const negotiated = await hookAnswer(req, socket, pending, options);
    if (negotiated === undefined) return undefined;
    return accept(req, socket, head, offer, negotiated, options);
  } catch (error) {
    failUpgrade(req, socket, error, options);
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

/** The upgrade when a before-accept hook may make it wait: bounded by handshakeTimeout. */
async function upgradeAfterHook<State>(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  target: UpgradeTarget<State>,
  options: UpgradeOptions<State>,
  responseHeaders?: ResponseHeaderSource,
  started?: number,
): Promise<WebSocketConnection | undefined> {
  const timer = setTimeout(() => socket.destroy(), handshakeTimeLeft(options, started));
  timer.unref?.();
  try {
    const offer = validateRequest(req);
    const accepted = await negotiateAnswer(req, socket, negotiationInput(req, socket, offer), target, options, responseHeaders);
    return accepted === undefined ? undefined : accept(req, socket, head, offer, accepted, options);
  } catch (error) {
    failUpgrade(req, socket, error, options);
    return undefined;
  } finally {
    // (Synchronously after the answer above is written: the deadline never cuts it.)
    clearTimeout(timer);
  }
}

/**
 * The negotiation of an upgrade that may wait (RFC 6455 with a before-accept hook, hybi-00), up
 * to the answer to write: the target's or the hook's, then, once accepted (never for a refusal),
 * the framework's response headers, under the caller's deadline. Undefined when the upgrade ended
 * here: a refusal answered, or the socket gone while something was pending. Throws what a hook or
 * the negotiation threw (the caller's failUpgrade answers it). @internal
 */
export async function negotiateAnswer<State>(
  req: IncomingMessage,
  socket: Duplex,
  input: NegotiationInput,
  target: UpgradeTarget<State>,
  options: UpgradeOptions<State>,
  responseHeaders: ResponseHeaderSource | undefined,
): Promise<Negotiated<State> | undefined> {
  let negotiated = negotiate(req, input, target, options);
  if (negotiated instanceof Promise) {
    const answer = await hookAnswer(req, socket, negotiated, options);
    if (answer === undefined) return undefined;
    negotiated = answer;
  }
  if ('reject' in negotiated) {
    answerRefusal(socket, negotiated.reject, options.handshakeTimeout);
    return undefined;
  }
  const accepted = withResponseHeaders(negotiated, responseHeaders);
  return accepted instanceof Promise ? hookAnswer(req, socket, accepted, options) : accepted;
}

/**
 * What an asynchronous negotiation (a before-accept hook) answers, or undefined once the socket (or
 * the HTTP/2 stream of an extended CONNECT) has closed or ended first (the client left, or
 * handshakeTimeout destroyed it): the upgrade then ends with its socket. (Fixed bug: an upgrade
 * whose hook never settled stayed pending for good and held its maxConnections and
 * maxConnectionsPerIp slots; a hybi-00 one held its socket too, and close() never resolved.)
 * Rejects when the hook fails first; a later failure goes to failUpgrade. @internal
 */
export function hookAnswer<State, Answer extends Negotiated<State> | { reject: UpgradeRejection }>(
  req: IncomingMessage,
  socket: Duplex,
  pending: Promise<Answer>,
  options: UpgradeOptions<State>,
): Promise<Answer | undefined> {
  return new Promise((resolve, reject) => {
    let gave = false;
    const gone = (): void => {
      gave = true;
      resolve(undefined);
    };
    // Errors on the raw socket while it waits must not crash the process.
    socket.on('error', noop);
    // The client ends its side while this waits (it left: a closed tab, a client that gave up;
    // over plain TCP its FIN): it can no longer take part in a WebSocket, and the upgrade ends,
    // its socket destroyed. (Fixed bug: Node's HTTP server allows half-open connections, so such a
    // socket never closed while the hook was pending: it was held, with its maxConnections and
    // maxConnectionsPerIp slots, until the hook settled or handshakeTimeout, for a client long
    // gone; over TLS the socket closed.) An end that came before (during a framework's
    // middleware) is left to the connection, which reads it as the peer gone (1006).
    if (socket.destroyed) gone();
    else {
      socket.once('close', gone);
      socket.once('end', destroyEnded);
    }
    pending.then(
      (answer) => {
        socket.removeListener('error', noop);
        socket.removeListener('close', gone);
        socket.removeListener('end', destroyEnded);
        // Too late: the permessage-deflate context made for it is never used.
        if (gave && 'extension' in answer) answer.extension?.dispose();
        resolve(answer);
      },
      (error: unknown) => {
        socket.removeListener('error', noop);
        socket.removeListener('close', gone);
        socket.removeListener('end', destroyEnded);
        // A hook that fails after the socket went is still reported (to onError), as before.
        if (gave) failUpgrade(req, socket, error, options);
        else reject(error);
      },
    );
  });
}

/** The 'end' listener of {@link hookAnswer}: a client that ended its side while a hook was pending left. */
function destroyEnded(this: Duplex): void {
  this.destroy();
}

function negotiationInput(req: IncomingMessage, socket: Duplex, offer: ValidatedRequest): NegotiationInput {
  const secure = socket instanceof TLSSocket || (req.socket as Socket | undefined) instanceof TLSSocket;
  return { url: req.url ?? '/', protocols: offer.protocols, extensions: offer.extensions, secure, allowExtensions: true };
}

/** Writes the 101 and starts the connection (undefined if the socket closed meanwhile). */
function accept<State>(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  offer: ValidatedRequest,
  negotiated: Negotiated<State>,
  options: UpgradeOptions<State>,
): WebSocketConnection | undefined {
  // (Not writable: answered already, as close() answers 503 an upgrade whose hook is still pending.)
  if (socket.destroyed || !socket.writable || refusedForShutdown(socket, options)) {
    negotiated.extension?.dispose();
    return undefined;
  }
  upgraded(socket);
  // RFC 6455 §4.2.2 step 5: the 101 response.
  socket.write(switchingProtocols(offer.key, negotiated.protocol, negotiated.extensionsHeader, negotiated.headers), 'latin1');
  if (typeof (socket as Socket).setNoDelay === 'function') (socket as Socket).setNoDelay(true);
  return startConnection(socketTransport(socket as Socket), req, negotiated, options, head);
}

/**
 * Answers 503 an upgrade about to be accepted once the shutdown has begun (its hook, or the
 * framework's response headers, settled after it began, before the shutdown's own 503 reached it),
 * and returns true then. (Fixed bug: it got its 101, then a close frame with 1001.) @internal
 */
export function refusedForShutdown(socket: Duplex, options: UpgradeOptions<unknown>): boolean {
  if (options.shuttingDown?.() !== true) return false;
  rejectUpgrade(socket, 503, 'server is shutting down');
  return true;
}

/**
 * Answers the before-accept hook's refusal. Its body is sent exactly as given (a string body used
 * to get a '\n' appended). @internal
 */
export function answerRefusal(socket: Duplex, refusal: UpgradeRejection, timeout?: number): void {
  rejectUpgrade(socket, refusal.status, typeof refusal.body === 'string' ? Buffer.from(refusal.body) : refusal.body ?? '', headerList(refusal.headers), timeout);
}

/** Answers a failed upgrade: the HandshakeError's status, else 500 (reported to onError). @internal */
export function failUpgrade<State>(req: IncomingMessage, socket: Duplex, error: unknown, options: UpgradeOptions<State>): void {
  if (error instanceof HandshakeError) {
    rejectUpgrade(socket, error.status, error.message, headerList(error.headers));
  } else {
    reportUpgradeFailure(options.onError, error, req, req.url, socket.destroyed);
    rejectUpgrade(socket, 500, 'Internal Server Error');
  }
}

/**
 * Reports an application error (a hook's, a handler's) to `onError`, or, without one, on stderr:
 * `context` on one line, then the error's stack, as Express's default error handler logs (and, as
 * it does, nothing under `NODE_ENV=test`). Never throws: an `onError` that throws has its own error
 * reported the default way, after the one it was given (fixed bug: without `onError` a handler's or
 * a hook's error vanished without a trace; an `onError` that threw ended the process).
 */
function reportError(onError: UpgradeOptions['onError'], error: unknown, conn: WebSocketConnection | undefined, req: IncomingMessage | undefined, context: string): void {
  if (!onError) return logError(context, error);
  try {
    onError(error, conn, req);
  } catch (thrown) {
    logError(context, error);
    logError('onError threw while reporting it', thrown);
  }
}

/** A hook's (or a framework's response headers') failure, answered 500 unless the socket had closed. @internal */
export function reportUpgradeFailure(onError: UpgradeOptions['onError'], error: unknown, req: IncomingMessage, url: string | undefined, gone: boolean): void {
  reportError(onError, error, undefined, req, `WebSocket upgrade of ${targetPath(url ?? '/')} failed: ${gone ? 'the socket had closed, no answer' : 'answered 500'}`);
}

/** The default report: stderr, unless NODE_ENV is 'test'. Never throws. */
function logError(context: string, error: unknown): void {
  if (process.env.NODE_ENV === 'test') return;
  try {
    const stack = error instanceof Error && typeof error.stack === 'string' ? error.stack : inspect(error);
    console.error(`rfc6455: ${context}\n${stack}`);
  } catch {
    // A console that cannot write: nothing else to report it to.
  }
}

function runHandler<State>(
  handler: ConnectionHandler<State>,
  conn: WebSocketConnection,
  req: IncomingMessage,
  context: { params: Record<string, string>; state: State; protocol: string },
  options: UpgradeOptions<State>,
): void {
  // Exceptions thrown by the connection's event listeners are handler failures too.
  conn.listenerFailed = failureHandler(options.onError);
  try {
    const result = handler(conn, req, context);
    // The rejection handler must not capture `req`: it lives as long as the handler runs.
    if (result && typeof (result as Promise<void>).then === 'function') (result as Promise<void>).then(noop, (error: unknown) => handlerFailed(error, conn, options.onError));
  } catch (error) {
    handlerFailed(error, conn, options.onError);
  }
}

/** One listener-failure function per onError (none per connection: it would be kept as long as the connection). */
const failureHandlers = new WeakMap<NonNullable<UpgradeOptions['onError']>, (error: unknown, conn: WebSocketConnection) => void>();
const failedWithoutOnError = (error: unknown, conn: WebSocketConnection): void => handlerFailed(error, conn, undefined);
function failureHandler(onError: UpgradeOptions['onError']): (error: unknown, conn: WebSocketConnection) => void {
  if (!onError) return failedWithoutOnError;
  let handler = failureHandlers.get(onError);
  if (!handler) {
    handler = (error, conn) => handlerFailed(error, conn, onError);
    failureHandlers.set(onError, handler);
  }
  return handler;
}

/**
 * A handler's failure closes its connection with 1011 (no details on the wire); the server lives
 * on. The error goes to onError; without one, to the connection's 'error' listeners when it has
 * some, else to stderr (reportError).
 */
function handlerFailed(error: unknown, conn: WebSocketConnection, onError: UpgradeOptions['onError']): void {
  // Only an open connection gets the 1011: one already closing keeps the code of its close frame
  // (close() then only joins the handshake), so the report says which.
  const state = conn.readyState;
  if (state !== 'closed') conn.close(CloseCode.InternalError).catch(noop);
  const context = `WebSocket handler failed on ${conn.path}: ${state === 'open' ? 'connection closed with 1011' : `connection already ${state}`}`;
  if (!onError && conn.listenerCount('error') > 0) {
    try {
      conn.emit('error', error instanceof Error ? error : new Error(String(error)));
    } catch (thrown) {
      logError(context, error);
      logError("an 'error' listener threw while reporting it", thrown);
    }
    return;
  }
  reportError(onError, error, conn, undefined, context);
}
