/**
 * `connect()`: the WebSocket client (the analog of Racket's `ws-connect`) for ws: and wss: URLs.
 * The HTTP exchange is Node's own http(s) client; the handshake checks and the connection are ours.
 */
import { request as httpRequest, type Agent, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction, Socket } from 'node:net';
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { Defaults } from './codec/constants.js';
import { checkClientOptions } from './check-options.js';
import { peerDeadline } from './idle-wheel.js';
import { WebSocketConnection, type ConnectionOptions } from './connection.js';
import { HandshakeError } from './errors.js';
import { acceptDeflateResponse, buildDeflateOffer, deflateEngineOptions, PerMessageDeflate, PERMESSAGE_DEFLATE, type PerMessageDeflateOptions } from './extensions/permessage-deflate.js';
import { buildRequestHeaders, checkOfferedProtocols, generateKey, verifyResponse } from './handshake/client.js';
import { socketTransport } from './transport.js';
import { openHttp2 } from './http2.js';
import { hostKey, takeTurn } from './connecting.js';
import { openHybi00 } from './hybi00-upgrade.js';
import { abortedHandshake, factoryFailed, bareHostname, redirectLocation, percentDecode, refusalBody, sniOption, socketOptions, unixTarget, watchStatusLine } from './client-target.js';
import type { ClientHttp2Session } from 'node:http2';

/** Options of {@link connect}: the handshake, plus every connection option. */
export interface ConnectOptions extends ConnectionOptions {
  /** Subprotocols to offer, in order of preference. */
  protocols?: string | readonly string[] | undefined;
  /** Extra request headers (Authorization, Cookie, ...). */
  headers?: OutgoingHttpHeaders | undefined;
  /** Origin header to send (browsers always send one; Node clients need not). */
  origin?: string | undefined;
  /** Offer permessage-deflate (true, or options). Default true. */
  perMessageDeflate?: boolean | PerMessageDeflateOptions | undefined;
  /** TLS options for wss: (ca, cert, key, rejectUnauthorized, servername, ...). */
  tls?: TlsConnectionOptions | undefined;
  /** ms for the TCP/TLS connect and the handshake. Default 10000. More than 0; Infinity for no timeout. */
  handshakeTimeout?: number | undefined;
  /** Follow 3xx redirects: false (the default) or the most redirects to follow (true = 5). */
  followRedirects?: boolean | number | undefined;
  /** Largest response head accepted. Default 16384. */
  maxHeaderSize?: number | undefined;
  /** Aborts the handshake. */
  signal?: AbortSignal | undefined;
  /**
   * Open the WebSocket over HTTP/2 extended CONNECT (RFC 8441) when the server advertises it,
   * falling back to HTTP/1.1 otherwise. Pass a ClientHttp2Session to share one session between
   * several WebSockets. Default false.
   */
  http2?: boolean | ClientHttp2Session | undefined;
  /** Speak RFC 6455 (the default) or the draft hybi-00 (Racket's `#:protocol 'hybi00`). */
  variant?: 'rfc6455' | 'hybi00' | undefined;
  /**
   * The `http.Agent` (or `https.Agent`) that makes the handshake's connection, e.g. a proxy
   * agent that tunnels through an HTTP proxy with CONNECT. Default: a fresh socket of our own
   * (`agent: false`). HTTP/1.1 only (not hybi-00 or HTTP/2).
   */
  agent?: Agent | undefined;
  /**
   * Connect over this Unix domain socket (or Windows named pipe) instead of TCP; the URL still gives
   * the request path (and `Host`). The same as a `ws+unix:` (or `wss+unix:`) URL,
   * `ws+unix:///path/to/socket:/request/path`, the form `ws` uses and `server.url` gives for
   * `serve({ path })`.
   */
  socketPath?: string | undefined;
  /** Local interface address to connect from (TCP). */
  localAddress?: string | undefined;
  /** Address family for the host name lookup: 4 or 6 (default, or 0: either). */
  family?: 0 | 4 | 6 | undefined;
  /** Host name lookup function instead of `dns.lookup` (same signature). */
  lookup?: LookupFunction | undefined;
  /**
   * One connection at a time in the CONNECTING state to a host (RFC 6455 §4.1, the client's
   * requirement 2), as browsers do it: a connect() to a host name and port (or Unix socket) to
   * which another connect() is still connecting waits until that one is open or has failed, in
   * order, its wait counted in `handshakeTimeout` and given up by `signal`. `false` connects at
   * once, whatever else is connecting (load generators, tests of a server's concurrency). Default
   * true.
   */
  serializeHandshakes?: boolean | undefined;
}

/** Opens a WebSocket connection. Rejects with HandshakeError (status, headers, body attached). */
export async function connect(url: string | URL, options: ConnectOptions = {}): Promise<WebSocketConnection> {
  checkClientOptions(options);
  // Before anything connects, over HTTP/1.1, HTTP/2 and hybi-00: tokens, none twice. (Fixed bug:
  // hybi-00 took any visible ASCII, so `['a,b']` was sent as a list of two and the server's choice
  // of `a` failed the handshake with WS_BAD_PROTOCOL, and `['a', 'a']` was sent as `a, a`.)
  checkOfferedProtocols(typeof options.protocols === 'string' ? [options.protocols] : (options.protocols ?? []));
  let target = new URL(url);
  // RFC 6455 §3: fragment identifiers MUST NOT be used on WebSocket URIs ('#' that is data is
  // written %23). A SyntaxError, as the WebSocket constructor and ws give (fixed bug: the fragment
  // was silently dropped). (href keeps an empty fragment's '#', which hash does not show.)
  if (target.href.includes('#')) throw new SyntaxError(`a WebSocket URL may not have a fragment: ${target.href}`);
  const unix = unixTarget(target);
  if (unix !== undefined) {
    target = unix.target;
    options = { ...options, socketPath: unix.socketPath };
  }
  // A URL no connection is made for fails at once, over every path: it neither waits for a host's
  // turn nor connects (fixed bug: with `http2: true` it waited for the turn, then made an HTTP/2
  // connection before the TypeError, and with `variant: 'hybi00'` it waited, then sent an ftp:
  // URL a hybi-00 handshake and failed with WS_HANDSHAKE_TIMEOUT).
  if (!isSecure(target) && target.protocol !== 'ws:' && target.protocol !== 'http:') throw unsupportedScheme(target);
  options = withCredentials(target, options);
  const timeout = options.handshakeTimeout ?? Defaults.handshakeTimeout;
  // What is left at `now` of a handshakeTimeout that began at `from`.
  const leftOf = (from: number): number => Math.max(0, timeout - (performance.now() - from));
  const started = performance.now();
  // RFC 6455 §4.1, the client's requirement 2: one connection in CONNECTING to a host; this one
  // waits its turn (see connecting.ts), the wait counted in the handshakeTimeout begun at `from`.
  const turn = (to: URL, opts: ConnectOptions, from: number): Promise<() => void> =>
    opts.serializeHandshakes === false ? Promise.resolve(() => undefined) : takeTurn(hostKey(to, opts.socketPath), leftOf(from), timeout, opts.signal);
  // The turn held, if any: given back once the connection is open or has failed, whatever throws.
  let release: (() => void) | undefined;
  try {
    if (options.variant === 'hybi00') {
      release = await turn(target, options, started);
      return await openHybi00(target, { ...options, handshakeTimeout: leftOf(started) }, release, timeout);
    }
    // An HTTP/1.1 fallback from HTTP/2 has what is left of the one handshakeTimeout (fixed bug: it
    // got a fresh one, so a server slow to show it spoke no HTTP/2 gave connect() up to twice it).
    // A session of our own is a new connection, and the turn is held through a fallback; a
    // stream on the caller's session is not, and the fallback's connection takes a turn.
    const maxRedirects = options.followRedirects === true ? 5 : options.followRedirects || 0;
    const origin = target;
    for (let redirects = 0; ; redirects++) {
      // (A redirect is a new handshake, with a handshakeTimeout of its own, as in ws; its
      // connection, to the host it names, takes a turn once the 3xx gave the last one back.)
      const from = redirects === 0 ? started : performance.now();
      const follow = redirects < maxRedirects;
      let outcome: WebSocketConnection | Redirect | undefined;
      // Each hop over HTTP/2 first when asked, as the first (fixed bug: over HTTP/2 a 3xx was
      // never followed, whatever followRedirects said: connect() failed with it).
      if (options.http2) {
        const session = typeof options.http2 === 'object' ? options.http2 : undefined;
        if (session === undefined) release ??= await turn(target, options, from);
        try {
          outcome = await openHttp2(target, { ...options, session }, from, release, follow);
        } catch (error) {
          const location = follow && error instanceof HandshakeError ? redirectLocation(error.status, error.headers) : undefined;
          if (location === undefined) throw error;
          outcome = { location, error: error as HandshakeError };
        }
      }
      if (outcome === undefined) {
        release ??= await turn(target, options, from);
        outcome = await attempt(target, options, follow, leftOf(from), release);
      }
      release?.();
      release = undefined;
      if (outcome instanceof WebSocketConnection) return outcome;
      if (!follow) throw outcome.error;
      const next = redirectTarget(outcome, target);
      options = withCredentials(next, redirectedOptions(origin, next, options));
      // A session passed in is a connection to its own origin: a redirect elsewhere opens one of
      // its own, as `http2: true` does.
      if (typeof options.http2 === 'object' && !sameOrigin(next, target)) options = { ...options, http2: true };
      target = next;
    }
  } finally {
    release?.();
  }
}

/**
 * Credentials in the URL (`wss://user:pass@host/`) are sent as Basic authentication, as `ws` and
 * curl do, unless the caller gave an `Authorization` header of their own. They are percent-decoded
 * as the URL standard does it (a `%` that begins no escape stays) and sent as UTF-8 (RFC 7617).
 * @internal
 */
export function withCredentials(target: URL, options: ConnectOptions): ConnectOptions {
  if (target.username === '' && target.password === '') return options;
  const headers = options.headers ?? {};
  if (Object.keys(headers).some((name) => name.toLowerCase() === 'authorization')) return options;
  // Decoded as the URL standard decodes: a '%' that does not begin an escape is kept (fixed bug:
  // decodeURIComponent threw 'URI malformed' for a password such as '50%off', and nothing connected).
  const credentials = Buffer.concat([percentDecode(target.username), Buffer.of(0x3a), percentDecode(target.password)]);
  return { ...options, headers: { ...headers, authorization: `Basic ${credentials.toString('base64')}` } };
}

const isSecure = (url: URL): boolean => url.protocol === 'wss:' || url.protocol === 'https:';
const unsupportedScheme = (url: URL): TypeError => new TypeError(`unsupported URL scheme ${url.protocol} (use ws: or wss:)`);

/**
 * The options for a redirect from `origin` (the URL first asked for) to `next`. As curl and `ws`
 * do, credentials do not follow a redirect to another host or from wss: to ws:: the
 * `Authorization` and `Cookie` headers (and a `Host` header of the caller's, for another host) are
 * dropped, and a Unix socket is left for the new host's TCP address.
 * @internal
 */
export function redirectedOptions(origin: URL, next: URL, options: ConnectOptions): ConnectOptions {
  const sameHost = next.host === origin.host;
  if (sameHost && (isSecure(next) || !isSecure(origin))) return options;
  const dropped = sameHost ? ['authorization', 'cookie'] : ['authorization', 'cookie', 'host'];
  const headers: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    if (!dropped.includes(name.toLowerCase())) headers[name] = value;
  }
  return { ...options, headers, ...(sameHost ? {} : { socketPath: undefined }) };
}

/** Whether two WebSocket URLs name one origin (ws: as http:, wss: as https:). */
const sameOrigin = (a: URL, b: URL): boolean => isSecure(a) === isSecure(b) && a.host === b.host;

interface Redirect {
  location: string;
  error: HandshakeError;
}

/**
 * Where a followed redirect goes: its `Location` resolved against the URL that answered, `http:`
 * and `https:` mapped to `ws:` and `wss:`. A Location that is no URL, has a fragment (RFC 6455 §3:
 * not on a WebSocket URI) or another scheme (`ws+unix:` included: a server does not choose a local
 * socket) fails the handshake with code `WS_BAD_REDIRECT` and the 3xx's status and headers (fixed
 * bug: a TypeError from `new URL()` or from the scheme check, and a fragment silently dropped).
 */
function redirectTarget(redirect: Redirect, from: URL): URL {
  const { location, error } = redirect;
  const bad = (why: string, cause?: unknown): HandshakeError =>
    new HandshakeError(`redirect to ${JSON.stringify(location)}: ${why}`, error.status, { code: 'WS_BAD_REDIRECT', headers: error.headers, statusLine: error.statusLine, cause });
  let next: URL;
  try {
    next = new URL(location, from);
  } catch (cause) {
    throw bad('not a valid URL', cause);
  }
  if (next.protocol === 'http:') next.protocol = 'ws:';
  else if (next.protocol === 'https:') next.protocol = 'wss:';
  if (next.protocol !== 'ws:' && next.protocol !== 'wss:') throw bad(`unsupported scheme ${next.protocol}`);
  if (next.href.includes('#')) throw bad('a WebSocket URL may not have a fragment');
  return next;
}

/** Node's HTTP parser's errors for a response's status line (its protocol, version, status code). */
const STATUS_LINE_ERRORS = new Set(['HPE_INVALID_CONSTANT', 'HPE_INVALID_VERSION', 'HPE_INVALID_STATUS']);

/**
 * One handshake. A 3xx with a Location resolves with it: at once when `follow` (its body is of no
 * use), else once its body is read, as for any refusal. `left`: ms left of handshakeTimeout, when
 * less than all of it is. `answered` is called when a response that is no upgrade comes: the
 * connection has failed (its body may still be read), and the host's turn goes to the next.
 */
function attempt(target: URL, options: ConnectOptions, follow: boolean, left?: number, answered?: () => void): Promise<WebSocketConnection | Redirect> {
  const secure = isSecure(target);
  if (!secure && target.protocol !== 'ws:' && target.protocol !== 'http:') return Promise.reject(unsupportedScheme(target));
  // Given up already: nothing is looked up or connected, as over HTTP/2 and hybi-00 (fixed bug:
  // Node's HTTP client looked the name up and connected before it heard the abort).
  if (options.signal?.aborted) return Promise.reject(abortedHandshake(options.signal));
  const key = generateKey();
  const protocols = typeof options.protocols === 'string' ? [options.protocols] : [...(options.protocols ?? [])];
  const deflate = options.perMessageDeflate === false ? undefined : typeof options.perMessageDeflate === 'object' ? options.perMessageDeflate : {};
  const handshakeHeaders = buildRequestHeaders({
    key,
    protocols,
    extensions: deflate ? buildDeflateOffer(deflate) : undefined,
    origin: options.origin,
  });
  // A header whose value is undefined is not sent, as over HTTP/2 and hybi-00 (fixed bug: Node's
  // HTTP/1.1 client threw ERR_HTTP_INVALID_HEADER_VALUE for it: an optional header written
  // `{ Authorization: token ? ... : undefined }` failed over HTTP/1.1 only, an HTTP/2 fallback too).
  const headers: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(options.headers ?? {})) if (value !== undefined) headers[name] = value;
  Object.assign(headers, handshakeHeaders);
  const timeout = options.handshakeTimeout ?? Defaults.handshakeTimeout;
  const statusLineOf = (res: IncomingMessage): string => `HTTP/${res.httpVersion} ${res.statusCode ?? 0} ${res.statusMessage ?? ''}`.trimEnd();
  // An IPv6 literal without its brackets: what to connect to, and (an address) no SNI servername,
  // so that the certificate is checked against the address.
  const hostname = bareHostname(target);

  return new Promise((resolve, reject) => {
    let settled = false;
    let request: ClientRequest;
    try {
      request = (secure ? httpsRequest : httpRequest)({
        protocol: secure ? 'https:' : 'http:',
        hostname,
        port: target.port || (secure ? 443 : 80),
        path: `${target.pathname || '/'}${target.search}`,
        method: 'GET',
        headers,
        agent: options.agent ?? false,
        ...socketOptions(options),
        maxHeaderSize: options.maxHeaderSize ?? Defaults.maxHeaderSize,
        signal: options.signal,
        ...(secure ? { ...sniOption(hostname), ...options.tls } : {}),
      }) as ClientRequest;
    } catch (error) {
      // The caller's `agent` makes the connection as Node's request is made: what its
      // createConnection throws is the connection's failure (factoryFailed).
      if (options.agent === undefined) throw error;
      factoryFailed(error);
    }
    // A refusal being read when time runs out (a body that never ends) is reported as the refusal.
    let refused: (() => void) | undefined;
    let refusal: IncomingMessage | undefined;
    const timer = peerDeadline(() => (refused ? refused() : fail(new HandshakeError(`handshake timed out after ${timeout} ms`, 0, { code: 'WS_HANDSHAKE_TIMEOUT' }))), left ?? timeout);
    const fail = (error: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.destroy();
      reject(error);
    };
    request.on('error', (error: NodeJS.ErrnoException) => {
      if (error instanceof HandshakeError) return fail(error);
      // A refusal whose body cannot be parsed (an invalid chunk) is the refusal, with the body that
      // came, as one whose connection ends early (fixed bug: WS_CONNECT_FAILED, status 0, and the
      // status, headers and body that had come were lost).
      if (refused) {
        // (What the parser had taken of the body before the error waits in the response's buffer,
        // its 'data' events not emitted yet: read() hands it to them now.)
        while (refusal?.read() != null);
        return refused();
      }
      // (A status line Node's parser refuses, `ICY 101` or `HTTP/2 101`, is a bad status line, as
      // one it takes but is not HTTP: it was WS_CONNECT_FAILED. Any other parse error of the head,
      // a header line that is not one, two Content-Lengths, is WS_BAD_RESPONSE: the server
      // answered, and not with HTTP; it was WS_CONNECT_FAILED too.)
      const code = error.code === 'HPE_HEADER_OVERFLOW' ? 'WS_RESPONSE_TOO_LARGE' : STATUS_LINE_ERRORS.has(error.code ?? '') ? 'WS_BAD_STATUS_LINE' : error.code?.startsWith('HPE_') ? 'WS_BAD_RESPONSE' : 'WS_CONNECT_FAILED';
      const what = code === 'WS_RESPONSE_TOO_LARGE' ? 'response head too large' : code === 'WS_BAD_STATUS_LINE' ? 'not an HTTP response' : code === 'WS_BAD_RESPONSE' ? 'invalid HTTP response' : 'connection failed';
      fail(new HandshakeError(`${what}: ${error.message}`, 0, { code, cause: error }));
    });
    // A response that is not HTTP (`RTSP/1.0 101`, which Node takes for HTTP/1.0) fails, as in
    // Chromium (ERR_INVALID_HTTP_RESPONSE), whatever its status (fixed bug: it was accepted).
    let notHttp: () => string | undefined = () => undefined;
    request.on('socket', (socket: Socket) => {
      notHttp = watchStatusLine(socket);
    });
    const notHttpError = (res: IncomingMessage): HandshakeError | undefined => {
      const line = notHttp();
      return line === undefined ? undefined : new HandshakeError(`not an HTTP response: ${JSON.stringify(line)}`, 0, { code: 'WS_BAD_STATUS_LINE', headers: res.headers, statusLine: line });
    };
    request.on('response', (res: IncomingMessage) => {
      answered?.();
      res.on('error', () => undefined);
      const invalid = notHttpError(res);
      if (invalid) return fail(invalid);
      // Not a 101: a typed error carrying the response (3xx may be followed by the caller).
      const status = res.statusCode ?? 0;
      const error = new HandshakeError(`server answered ${status} ${res.statusMessage ?? ''}`.trimEnd(), status, {
        code: 'WS_UNEXPECTED_RESPONSE',
        headers: res.headers,
        statusLine: statusLineOf(res),
      });
      if (status === 101) {
        // A 101 that Node did not take for an upgrade (no `Connection: upgrade`, or no Upgrade
        // header) is a handshake that failed its checks (RFC 6455 §4.1 items 2, 3), not a refusal:
        // the code of the check it fails (fixed bug: WS_UNEXPECTED_RESPONSE, "server answered 101").
        try {
          verifyResponse(statusLineOf(res), res.headers, { key, protocols, extensionNames: deflate ? [PERMESSAGE_DEFLATE] : [] });
        } catch (failed) {
          return fail(failed as Error);
        }
        return fail(new HandshakeError('the 101 response was not an upgrade', 101, { code: 'WS_BAD_CONNECTION', headers: res.headers, statusLine: statusLineOf(res) }));
      }
      const location = redirectLocation(status, res.headers);
      if (follow && location) {
        // Followed without reading its body, as ws does (fixed bug: the next request waited for
        // the body's end, up to handshakeTimeout for a redirect whose body did not end).
        settled = true;
        clearTimeout(timer);
        // (A response without a body is done with: its socket may go back to the caller's agent.)
        if (res.complete) res.resume();
        else request.destroy();
        resolve({ location, error });
        return;
      }
      // Settles with the body read so far: at its end, once MAX_ERROR_BODY bytes are in (the rest
      // is not read), or when the handshake times out.
      const finish = (): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        error.body = received();
        if (!res.complete) request.destroy();
        if (location) resolve({ location, error });
        else reject(error);
      };
      refused = finish;
      refusal = res;
      const received = refusalBody(res, finish);
    });
    request.on('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => {
      if (settled) {
        socket.destroy();
        return;
      }
      try {
        const invalid = notHttpError(res);
        if (invalid) throw invalid;
        const statusLine = statusLineOf(res);
        const verified = verifyResponse(statusLine, res.headers, {
          key,
          protocols,
          extensionNames: deflate ? [PERMESSAGE_DEFLATE] : [],
        });
        let extension: PerMessageDeflate | undefined;
        const offer = verified.extensions[0];
        const maxMessageSize = options.maxMessageSize ?? Defaults.maxMessageSize;
        if (offer && deflate) {
          const params = acceptDeflateResponse(offer, deflate);
          extension = new PerMessageDeflate(params, 'client', deflateEngineOptions(deflate, maxMessageSize));
        }
        settled = true;
        clearTimeout(timer);
        socket.setNoDelay(true);
        socket.setTimeout(0);
        const conn = new WebSocketConnection(
          socketTransport(socket),
          {
            side: 'client',
            protocol: verified.protocol,
            extensions: typeof res.headers['sec-websocket-extensions'] === 'string' ? res.headers['sec-websocket-extensions'] : '',
            extension,
            requestLine: statusLine,
            url: `${target.pathname || '/'}${target.search}`,
            headers: res.headers,
          },
          { ...options, compressThreshold: options.compressThreshold ?? extension?.threshold },
          head,
        );
        resolve(conn);
      } catch (error) {
        socket.destroy();
        fail(error as Error);
      }
    });
    request.end();
  });
}
