/**
 * `serve()`: the standalone WebSocket server (the analog of Racket's `ws-serve` / `ws-serve*`).
 * An http(s).Server whose `upgrade` events go to `handleUpgrade`; plain HTTP requests get 426.
 * Over HTTP/1.1 a lean front (http1-front.ts) reads each request head first: clean upgrade
 * requests skip Node's HTTP parser and go straight to the `upgrade` event; everything else is
 * handed to Node's parser with the bytes already read.
 */
import { resolve as resolvePath } from 'node:path';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer, type ServerOptions as HttpsServerOptions } from 'node:https';
import { createSecureServer, type Http2SecureServer, type Http2Session } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { checkClosePayload } from './codec/close.js';
import { CloseCode, Defaults } from './codec/constants.js';
import type { WebSocketConnection } from './connection.js';
import { broadcast, type BroadcastOptions, type PreparedMessage, type SendData } from './prepared.js';
import { armAllocatorTuning } from './allocator.js';
import { checkServeOptions, checkUpgradeOptions } from './check-options.js';
import { timerDelay } from './idle-wheel.js';
import { attachHttp2 } from './http2.js';
import { Http1Front } from './http1-front.js';
import { afterEarlierResponses, ignoreUpgrade, responseBeingWritten, isWebSocketUpgrade, rejectUpgrade, upgradeNow, whenUpgraded, type UpgradeOptions, type UpgradeTarget, type BeforeAcceptResult, type HookReturning, type HookState } from './upgrade.js';

/** Options of {@link serve}: where to listen, plus every upgrade and connection option. */
export interface ServeOptions<State = unknown> extends UpgradeOptions<State> {
  /** TCP port; 0 (the default) picks a free one (see `server.port`). */
  port?: number | undefined;
  /** Address to bind. Default '127.0.0.1'; use '0.0.0.0' or '::' for every interface. */
  host?: string | undefined;
  /**
   * Listen on this Unix domain socket (or Windows named pipe) instead of TCP: given with `port` or
   * `host` it is a TypeError (`ws`'s `path` option, the URL path to accept, is a service mapper
   * here). Behind a proxy on the same machine (nginx, HAProxy), or for local IPC. The
   * socket file must not exist yet; Node removes it when the server closes. `server.url` is then
   * `ws+unix://<path>:/` (the path percent-encoded), which `connect()` accepts. Connections have no remote address there, so
   * `maxConnectionsPerIp` counts them all as one.
   */
  path?: string | undefined;
  /** TLS options (key, cert, ...) to serve wss:. */
  tls?: HttpsServerOptions | undefined;
  /**
   * Largest request head, in bytes; larger ones get 431. Default 16384. With `http2: true` it is
   * also the HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE: a CONNECT whose header list is larger (each
   * field's name and value plus 32 bytes, RFC 9113 §6.5.2) has its stream reset (ENHANCE_YOUR_CALM).
   */
  maxHeaderSize?: number | undefined;
  /**
   * Most concurrent WebSocket connections; beyond it upgrades get 503. Upgrades still under way (a
   * `beforeAccept` hook that has not settled) count. Default unlimited.
   */
  maxConnections?: number | undefined;
  /**
   * Most concurrent WebSocket connections from one remote address; beyond it upgrades get 429 with
   * `Retry-After`. Default unlimited. Behind a proxy every client shares the proxy's address: use
   * a `beforeAccept` hook that reads your proxy's header instead.
   */
  maxConnectionsPerIp?: number | undefined;
  /**
   * Serve HTTP/2 as well (needs `tls`): one TLS server answering HTTP/1.1 upgrades and RFC 8441
   * extended CONNECTs alike, advertising SETTINGS_ENABLE_CONNECT_PROTOCOL. Without `tls` serve()
   * throws a TypeError (no h2c), and options known to say `http2: true` without it do not type-check.
   */
  http2?: boolean | undefined;
  /** Answers plain HTTP requests. Default: 426 Upgrade Required. */
  onRequest?: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  /**
   * Apply {@link tuneAllocator} once messages (or socket reads) of 16 KiB or more first flow
   * (default true): on Linux with glibc, far fewer page faults with large messages (up to 5-10x
   * the throughput at 1 MiB on a VM), at the cost of up to 32 MiB more memory kept resident after
   * bursts. It runs in the background (libuv's thread pool) at the first such message, so a
   * server that only holds idle connections and small messages never pays for it. Process-wide,
   * once; a no-op elsewhere. docs/performance.md has the details.
   */
  tuneAllocator?: boolean | undefined;
}

/**
 * A running server, as {@link serve} resolves it. `S` is the type of its `httpServer`: what
 * serve()'s options make it when they say (an https.Server with `tls`, an Http2SecureServer with
 * `http2: true` as well, an http.Server with neither), else either.
 */
export interface WebSocketServer<S extends HttpServer | Http2SecureServer = HttpServer | Http2SecureServer> {
  /**
   * The underlying server, the one listening: an http.Server, an https.Server with `tls` (e.g.
   * `setSecureContext()` to rotate certificates), or with `http2: true` the
   * Http2SecureServer. Over HTTP/1.1 its connection listener is serve()'s front: clean WebSocket
   * upgrade requests are parsed there and still arrive as this server's `upgrade` events (with a
   * real IncomingMessage); anything else is parsed by Node as usual (`request`, `clientError`,
   * keep-alive). `RFC6455_NO_FRONT=1` in the environment leaves every request to Node's parser.
   */
  readonly httpServer: S;
  /** The port listened on (the one picked when `port` was 0); 0 on a Unix socket. */
  readonly port: number;
  /** The Unix socket listened on, when `path` was given. */
  readonly path?: string;
  /** The host given in the options (default '127.0.0.1'). */
  readonly host: string;
  /** ws://host:port/ (or wss:; an IPv6 host in brackets, its zone written `%25`, RFC 6874); `ws+unix://<path>:/` on a Unix socket, each segment of the path percent-encoded. */
  readonly url: string;
  /** Open connections. */
  readonly connections: ReadonlySet<WebSocketConnection>;
  /**
   * Sends one message to every open connection, encoded (and, where it can be, compressed) once:
   * `broadcast(server.connections, data, options)`. Returns to how many connections it went.
   */
  broadcast(data: SendData | PreparedMessage, options?: BroadcastOptions): number;
  /**
   * Graceful shutdown: stops accepting, closes every connection with `code` (default 1001 going
   * away), waits for their closing handshakes (each bounded by closeTimeout), then resolves. An
   * upgrade still waiting for its `beforeAccept` hook is answered 503 at once (over HTTP/2 its
   * stream is reset with the session), whatever the hook decides later.
   * A code or reason a close frame cannot carry (as `conn.close()` refuses them) rejects with a
   * `RangeError` and does nothing.
   */
  close(code?: number, reason?: string): Promise<void>;
}

/**
 * The `server.url` of a server listening on a TCP `address`: an IPv6 address in brackets, its zone
 * (`fe80::1%eth0`, a link-local address) written `%25eth0` as RFC 6874 writes it (fixed bug: the
 * bare `%` made a URL no URI parser takes). (No WHATWG URL takes a zone, so neither does
 * `connect()`: a zone names an interface of this host only.)
 */
export function listeningUrl(scheme: string, address: Pick<AddressInfo, 'address' | 'family' | 'port'>): string {
  if (address.family !== 'IPv6') return `${scheme}://${address.address}:${address.port}/`;
  const zone = address.address.indexOf('%');
  const host = zone < 0 ? address.address : `${address.address.slice(0, zone)}%25${encodeURIComponent(address.address.slice(zone + 1))}`;
  return `${scheme}://[${host}]:${address.port}/`;
}

/** Answers a plain HTTP request: this endpoint only speaks WebSocket (RFC 6455 §4.2.2, RFC 9110 §15.5.22). */
function upgradeRequired(_req: IncomingMessage, res: ServerResponse): void {
  const body = 'This endpoint speaks WebSocket only.\n';
  res.writeHead(426, {
    Upgrade: 'websocket',
    // Setting Connection makes Node keep the socket alive; keep `close` when the client asked for
    // it (RFC 9110 §9.6), else a `Connection: close` request was left hanging open.
    Connection: res.shouldKeepAlive ? 'Upgrade' : 'Upgrade, close',
    'Sec-WebSocket-Version': '13',
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

/** Starts a wss: server over HTTP/1.1 and HTTP/2: its `httpServer` is an Http2SecureServer. */
export function serve<State = undefined, Result = BeforeAcceptResult<State>>(options: ServeOptions<State> & HookReturning<Result> & { tls: HttpsServerOptions; http2: true }, target: UpgradeTarget<NoInfer<HookState<State, Result>>>): Promise<WebSocketServer<Http2SecureServer>>;
/** Starts a wss: server: its `httpServer` is an https.Server. */
export function serve<State = undefined, Result = BeforeAcceptResult<State>>(options: ServeOptions<State> & HookReturning<Result> & { tls: HttpsServerOptions; http2?: false | undefined }, target: UpgradeTarget<NoInfer<HookState<State, Result>>>): Promise<WebSocketServer<HttpsServer>>;
/** Starts a ws: server: its `httpServer` is an http.Server. */
export function serve<State = undefined, Result = BeforeAcceptResult<State>>(options: ServeOptions<State> & HookReturning<Result> & { tls?: undefined; http2?: false | undefined }, target: UpgradeTarget<NoInfer<HookState<State, Result>>>): Promise<WebSocketServer<HttpServer>>;
/**
 * Starts a WebSocket server. `target` is a handler `(conn, req, context) => …` or a service mapper.
 * Resolves once listening. (Options whose type says whether they hold `tls` and `http2: true`
 * give a server whose `httpServer` has the type it has: see {@link WebSocketServer}. Options that
 * say `http2: true` but not `tls` are a type error, as serve() throws for them.) `State`, the
 * handler's `context.state`, comes from the `beforeAccept` hook: without one it is `undefined`,
 * and `State | undefined` when the hook may accept without a state ({@link HookState}).
 */
export function serve<State = undefined, Options extends ServeOptions<State> = ServeOptions<State>, Result = BeforeAcceptResult<State>>(
  options: Options & ServeOptions<State> & HookReturning<Result> & (Options extends { http2: true } ? { tls: HttpsServerOptions } : unknown),
  target: UpgradeTarget<NoInfer<HookState<State, Result>>>,
): Promise<WebSocketServer>;
export async function serve<State = undefined>(options: ServeOptions<State>, target: UpgradeTarget<NoInfer<State>>): Promise<WebSocketServer> {
  checkUpgradeOptions('serve()', options);
  checkServeOptions(options);
  if (options.tuneAllocator !== false) armAllocatorTuning();
  // As setTimeout and Node's server timeouts take it: Infinity (or 2^31 ms and more) is about 24.8
  // days, not the 1 ms setTimeout makes of it (and Node's RangeError for requestTimeout).
  const handshakeTimeout = timerDelay(options.handshakeTimeout ?? Defaults.handshakeTimeout);
  const httpOptions = {
    maxHeaderSize: options.maxHeaderSize ?? Defaults.maxHeaderSize,
    // Slow request heads (slowloris) are cut at the handshake timeout.
    headersTimeout: handshakeTimeout,
    requestTimeout: handshakeTimeout,
    connectionsCheckingInterval: Math.min(1000, handshakeTimeout),
    noDelay: true,
  };
  if (options.http2 && !options.tls) throw new TypeError('serve({ http2: true }) needs tls (browsers speak HTTP/2 over TLS only)');
  // A TLS handshake not done within handshakeTimeout (Node's default: 120 s) is cut too, unless
  // the tls options set their own.
  const tlsOptions = options.tls && { handshakeTimeout, ...options.tls };
  const httpServer: HttpServer = options.http2
    ? (createSecureServer({
        ...tlsOptions,
        ...httpOptions,
        allowHTTP1: true,
        // maxHeaderSize bounds an HTTP/2 request's header list too (SETTINGS_MAX_HEADER_LIST_SIZE,
        // RFC 9113 §6.5.2): Node's HTTP/2 server ignores maxHeaderSize, which limits its HTTP/1.1
        // heads alone. Fixed bug: over HTTP/2 a CONNECT was taken up to Node's own default of
        // 64 KiB (a 20 KB :path reached the handler, where HTTP/1.1 got 431 past 16 KiB).
        settings: { enableConnectProtocol: true, maxHeaderListSize: httpOptions.maxHeaderSize },
      }) as unknown as HttpServer)
    : tlsOptions
      ? createHttpsServer({ ...tlsOptions, ...httpOptions })
      : createHttpServer(httpOptions);
  if (options.http2) {
    // Node's HTTP/2 server ignores these options and parses HTTP/1.1 (allowHTTP1) heads with its
    // own 60 s headersTimeout, checked every 30 s: a slow head was cut a minute late. Fixed bug.
    // Its maxHeaderSize too: HTTP/1.1 heads got Node's default limit (16 KiB), not the option's
    // (fixed bug: with maxHeaderSize 4096, a 5 KB head was upgraded).
    Object.assign(httpServer, {
      maxHeaderSize: httpOptions.maxHeaderSize,
      headersTimeout: httpOptions.headersTimeout,
      requestTimeout: httpOptions.requestTimeout,
      connectionsCheckingInterval: httpOptions.connectionsCheckingInterval,
    });
  }
  const sessions = new Set<Http2Session>();
  const tlsSockets = new Set<Socket>();
  const connections = new Set<WebSocketConnection>();
  let closing = false;
  const upgradeOptions: UpgradeOptions<State> = {
    ...options,
    connections,
    // An upgrade that was still waiting when close() began (a before-accept hook, a hybi-00 key3)
    // is closed at once, as close() closes the others.
    shuttingDown: () => closing,
  };
  // Upgrades let through that have no connection yet (a before-accept hook or a hybi-00 key3 to
  // wait for), counted against maxConnections (fixed bug: with an async hook every upgrade of a
  // burst saw the same count, and all of them got in, however many maxConnections allowed).
  let upgrading = 0;
  // HTTP/1.1 upgrades waiting for a before-accept hook (or a hybi-00 key3): close() answers them
  // 503 at once, as it resets an HTTP/2 CONNECT still waiting (its session is destroyed). (Fixed
  // bug: close() waited for the hook, up to handshakeTimeout, then had the socket destroyed with no
  // answer, or, for a hook that settled meanwhile, accepted it and waited for its closing handshake.)
  // An upgrade leaves it as its 101 is written (fixed bug: it stayed until its promise settled, a
  // few microtasks later, and a close() called meanwhile, by the handler or onConnection of that
  // very connection, wrote `HTTP/1.1 503` after its 101, which the client read as a broken frame
  // and failed with 1002 instead of closing with 1001).
  const waiting = new Set<Duplex>();
  const waitFor = (socket: Duplex, result: Promise<unknown>): void => {
    waiting.add(socket);
    const untrack = (): void => void waiting.delete(socket);
    whenUpgraded(socket, untrack);
    void result.then(untrack);
  };
  const full = (): boolean => options.maxConnections !== undefined && connections.size + upgrading >= options.maxConnections;
  // An upgrade ends at handshakeTimeout at the latest (answered 408, or its socket destroyed), and
  // so does its count, whether or not its hook ever settles (fixed bug: over HTTP/2 a hook that
  // never settled kept its slot, and every later CONNECT got 503). Over HTTP/2, where `result` is
  // the hook's own, the count also ends when the CONNECT's `stream` closes (the client cancelled
  // it), as over HTTP/1.1 the upgrade's promise settles when its socket closes (fixed bug: the
  // slot was held until the hook settled, or handshakeTimeout, for a client long gone).
  const counted = (result: unknown, stream?: Duplex): void => {
    if (options.maxConnections === undefined) return;
    upgrading++;
    let counting = true;
    const release = (): void => {
      if (!counting) return;
      counting = false;
      upgrading--;
      clearTimeout(timer);
      stream?.removeListener('close', release);
    };
    const timer = setTimeout(release, handshakeTimeout);
    timer.unref();
    void Promise.resolve(result).then(release, release);
    if (stream?.destroyed === true) release();
    else stream?.once('close', release);
  };
  // Connections per remote address (only kept when maxConnectionsPerIp is set).
  const perIp = options.maxConnectionsPerIp !== undefined ? new Map<string, number>() : undefined;
  const release = (ip: string): void => {
    const n = perIp!.get(ip) ?? 0;
    if (n <= 1) perIp!.delete(ip);
    else perIp!.set(ip, n - 1);
  };
  /** Reserves a slot for `ip`; false when it already has maxConnectionsPerIp connections. */
  const reserve = (ip: string): boolean => {
    const n = perIp!.get(ip) ?? 0;
    if (n >= options.maxConnectionsPerIp!) return false;
    perIp!.set(ip, n + 1);
    return true;
  };
  // When each connection came (performance.now()), while its first request is read: its upgrade
  // has what is left of handshakeTimeout after its request head, as one deadline for both. (Fixed
  // bug: the head had handshakeTimeout, then beforeAccept or a hybi-00 key3 another, up to twice
  // it in all.) A connection that served a plain request first (keep-alive) is forgotten: Node's
  // parser read the head of its upgrade within its own headersTimeout, the upgrade has a whole
  // handshakeTimeout from then on. The front tells it for the upgrades it reads (upgradeSince,
  // during its 'upgrade' event) and stamps those it hands to Node's parser; without the front a
  // listener stamps each connection. (A table entry per connection cost 0.1 KiB per idle
  // connection after a burst of 10,000, from its hash table's growth: measured.)
  const arrived = new WeakMap<Duplex, number>();
  const arrivedAt = (socket: Duplex): number | undefined => {
    const since = front?.upgradeSince;
    if (since !== undefined) return since;
    const at = arrived.get(socket);
    if (at !== undefined) arrived.delete(socket);
    return at;
  };
  httpServer.on('request', (req: IncomingMessage) => arrived.delete(req.socket));
  httpServer.on('request', options.onRequest ?? upgradeRequired);
  // Upgrades pipelined behind plain requests wait for their responses (keep-alive; the front's
  // upgrades are alone on their connection and never wait).
  httpServer.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    afterEarlierResponses(socket, () => upgrade(req, socket, head), handshakeTimeout);
  });
  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    // An upgrade to another protocol (h2c…) is also a plain request, which onRequest serves, its
    // body intact (a server alone on WebSocket answers it 400 below, as any failed handshake).
    if (options.onRequest && !isWebSocketUpgrade(req)) {
      ignoreUpgrade(httpServer, req, socket, head);
      return;
    }
    if (closing) {
      rejectUpgrade(socket, 503, 'server is shutting down');
      return;
    }
    if (full()) {
      rejectUpgrade(socket, 503, 'too many connections', [['Retry-After', '1']]);
      return;
    }
    if (!perIp) {
      // Synchronous without a before-accept hook: no promise per handshake (and it never rejects).
      const result = upgradeNow(req, socket, head, target, upgradeOptions, undefined, arrivedAt(socket));
      if (result instanceof Promise) {
        counted(result);
        waitFor(socket, result);
      }
      return;
    }
    const ip = req.socket.remoteAddress ?? '';
    if (!reserve(ip)) {
      rejectUpgrade(socket, 429, 'too many connections from this address', [['Retry-After', '1']]);
      return;
    }
    const result = upgradeNow(req, socket, head, target, upgradeOptions, undefined, arrivedAt(socket));
    const settle = (conn: WebSocketConnection | undefined): void => {
      if (conn) void conn.whenClosed.then(() => release(ip));
      else release(ip);
    };
    if (result instanceof Promise) {
      counted(result);
      waitFor(socket, result);
      void result.then(settle);
    } else {
      settle(result);
    }
  };
  if (options.http2) {
    const h2server = httpServer as unknown as Http2SecureServer;
    attachHttp2<State>(h2server, target, {
      ...upgradeOptions,
      // HTTP/2 CONNECTs never reach the 'upgrade' listener above: refuse them with the same 503s
      // (shutdown, maxConnections). Fixed bug: maxConnections was not enforced over HTTP/2.
      beforeAccept(req, info) {
        if (closing) return { reject: { status: 503, body: 'server is shutting down' } };
        if (full()) {
          return { reject: { status: 503, headers: { 'retry-after': '1' }, body: 'too many connections' } };
        }
        if (perIp && (perIp.get(req.socket?.remoteAddress ?? '') ?? 0) >= options.maxConnectionsPerIp!) {
          return { reject: { status: 429, headers: { 'retry-after': '1' }, body: 'too many connections from this address' } };
        }
        const result = upgradeOptions.beforeAccept?.(req, info);
        if (typeof (result as PromiseLike<unknown> | undefined)?.then === 'function') counted(result, (req as IncomingMessage & { stream?: Duplex }).stream);
        return result;
      },
      onConnection(conn) {
        if (perIp) {
          const ip = conn.remoteAddress ?? '';
          // Counted from here (the check ran in beforeAccept); an overshoot from a concurrent async hook is not counted twice.
          if (reserve(ip)) void conn.whenClosed.then(() => release(ip));
        }
        upgradeOptions.onConnection?.(conn);
      },
    });
    h2server.on('session', (session: Http2Session) => {
      sessions.add(session);
      session.on('error', () => undefined);
      // A session that opens no stream within handshakeTimeout is cut, as a socket that sends no
      // request is over HTTP/1.1. (Fixed bug: Node's HTTP/2 server has no such timeout, and an
      // HTTP/2 peer that only connected held its TLS connection and session for good.)
      const silent = setTimeout(() => session.destroy(), handshakeTimeout);
      silent.unref();
      session.once('stream', () => clearTimeout(silent));
      session.once('close', () => {
        clearTimeout(silent);
        sessions.delete(session);
      });
    });
    // Every TLS connection of the HTTP/2 server (HTTP/1.1 ones included, with allowHTTP1), so that
    // close() can end those a peer keeps open: a destroyed session only ends its socket's side and
    // waits for the peer's, and Node's server calls back only once every socket is gone.
    h2server.on('secureConnection', (socket: Socket) => {
      tlsSockets.add(socket);
      socket.once('close', () => tlsSockets.delete(socket));
    });
  }
  // A client that sends garbage before any request gets 400 from Node; never crash on it.
  httpServer.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    // A failed TLS handshake (e.g. its timeout: a peer that never sent a ClientHello) has no
    // channel to answer on; a 408 written there stayed queued and the socket open for good.
    if (!socket.writable || error.code?.startsWith('ERR_TLS_') || error.code?.startsWith('ERR_SSL_')) return socket.destroy();
    // A response to an earlier request on this connection (keep-alive) is being written: an error
    // response now would go out inside its body. As Node does without a clientError listener, the
    // socket is only destroyed then. (Fixed bug: garbage pipelined behind a request whose answer
    // was streaming got `HTTP/1.1 400 …` written into that answer's body.)
    if (responseBeingWritten(socket)?.headersSent === true) return socket.destroy();
    const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    rejectUpgrade(socket, status, status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request');
  });

  // The lean HTTP/1.1 front: clean upgrade requests skip Node's HTTP parser; everything else still
  // goes to it (RFC6455_NO_FRONT=1 turns the front off).
  let front: Http1Front | undefined;
  if (!options.http2 && process.env.RFC6455_NO_FRONT !== '1') {
    front = new Http1Front(httpServer, options.tls ? 'secureConnection' : 'connection', {
      maxHeaderSize: httpOptions.maxHeaderSize,
      handshakeTimeout,
      onFallBack: (socket, since) => arrived.set(socket, since),
    });
    if (!front.install()) front = undefined;
  }
  if (front === undefined) httpServer.on(options.tls ? 'secureConnection' : 'connection', (socket: Socket) => arrived.set(socket, performance.now()));

  // TCP connections of a TLS server whose TLS handshake is not done yet, so that close() can end
  // them: Node's server waits for every socket, and such a one is in no list Node's
  // closeAllConnections() or the front closes (fixed bug: a peer that connected and sent no
  // ClientHello, or part of one, held close() until handshakeTimeout, for good with Infinity).
  // (After the front, which replaces the server's one secureConnection listener.)
  const handshaking = new Set<Socket>();
  if (tlsOptions) {
    httpServer.on('connection', (raw: Socket) => {
      handshaking.add(raw);
      raw.once('close', () => handshaking.delete(raw));
    });
    httpServer.on('secureConnection', (socket: Socket) => {
      handshaking.delete((socket as Socket & { _parent?: Socket })._parent ?? socket);
    });
  }

  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    const failed = (error: Error): void => {
      front?.close();
      reject(error);
    };
    httpServer.once('error', failed);
    const listening = (): void => {
      httpServer.removeListener('error', failed);
      resolve();
    };
    // The options form, where Node checks the port: given as `listen(port, host)`, a port that is
    // a string of no number (`port: process.env.PORT` set to a name) was taken for a Unix domain
    // socket of that name in the working directory, and `server.port` and `server.url` said
    // undefined (fixed bug). A throw of Node's check rejects, as a failure to listen does.
    try {
      if (options.path !== undefined) httpServer.listen({ path: options.path }, listening);
      else httpServer.listen({ port: options.port ?? 0, host }, listening);
    } catch (error) {
      failed(error as Error);
    }
  });
  const scheme = options.tls || options.http2 ? 'wss' : 'ws';
  let url: string;
  let port = 0;
  if (options.path !== undefined) {
    // Each segment percent-encoded, as connect() decodes the socket path (up to the first ':'):
    // a path with '%', '#', '?', ':' or a space gave a URL connect() could not use. Fixed bug.
    url = `${scheme}+unix://${resolvePath(options.path).split('/').map(encodeURIComponent).join('/')}:/`;
  } else {
    const address = httpServer.address() as AddressInfo;
    port = address.port;
    url = listeningUrl(scheme, address);
  }
  let closed: Promise<void> | undefined;
  return {
    httpServer,
    port,
    host,
    ...(options.path !== undefined ? { path: options.path } : {}),
    url,
    connections,
    broadcast: (data, broadcastOptions) => broadcast(connections, data, broadcastOptions),
    close(code = CloseCode.GoingAway, reason = 'server shutting down') {
      // Checked before anything is stopped, as conn.close() checks them (fixed bug: each
      // connection's close() rejected, unheard, so close(1005) or a reason over 123 bytes stopped
      // the listener, left every connection open, and never resolved while one stayed open).
      // On every call, as conn.close() checks them in every state (fixed bug: a second call with
      // a code that may not be sent resolved with the first call's shutdown).
      try {
        checkClosePayload(code ?? undefined, reason);
      } catch (error) {
        return Promise.reject(error);
      }
      closed ??= (async () => {
        closing = true;
        for (const socket of waiting) rejectUpgrade(socket, 503, 'server is shutting down');
        const stopped = new Promise<void>((resolve) => httpServer.close(() => resolve()));
        if (typeof httpServer.closeIdleConnections === 'function') httpServer.closeIdleConnections();
        await Promise.all([...connections].map((conn) => conn.close(code, reason).catch(() => undefined)));
        // HTTP/2: GOAWAY once the WebSockets are closed.
        for (const session of sessions) session.close();
        if (typeof httpServer.closeAllConnections === 'function') httpServer.closeAllConnections();
        // Sockets whose request head was still being read by the front, and those still in their
        // TLS handshake.
        front?.close();
        for (const raw of handshaking) raw.destroy();
        for (const session of sessions) session.destroy();
        if (tlsSockets.size > 0) {
          // (Fixed bug: an HTTP/2 peer that did not close its side after the GOAWAY, or a TLS
          // connection left idle, kept close() from ever resolving.) A moment for peers to close
          // their side, then what is still open is destroyed.
          const grace = Math.min(1000, options.closeTimeout ?? Defaults.closeTimeout);
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([stopped, new Promise<void>((resolve) => (timer = setTimeout(resolve, grace)))]);
          clearTimeout(timer);
          for (const socket of tlsSockets) socket.destroy();
        }
        await stopped;
      })();
      return closed;
    },
  };
}
