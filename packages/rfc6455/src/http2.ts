/**
 * WebSockets over HTTP/2 (RFC 8441): the extended CONNECT handshake on a server (`attachHttp2`)
 * and a client (`connectHttp2`). After the handshake the stream carries ordinary RFC 6455 frames,
 * so the connection is the same WebSocketConnection over an HTTP/2-stream Transport.
 *
 * Server side, the negotiation is the one HTTP/1.1 upgrades use (`negotiate`: service mapper,
 * Origin, before-accept hook, permessage-deflate); the answer is `:status 200` (RFC 8441 §5), or
 * the same 4xx a HTTP/1.1 client would get, never 101 and no Sec-WebSocket-Accept.
 */
import {
  connect as http2Connect,
  constants as h2,
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type Http2SecureServer,
  type Http2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Stream,
  type IncomingHttpHeaders as Http2IncomingHeaders,
  type OutgoingHttpHeaders as Http2OutgoingHeaders,
  type SecureClientSessionOptions,
  type ServerHttp2Stream,
} from 'node:http2';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { connect as netConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { Defaults } from './codec/constants.js';
import { giveUpUntaken, peerDeadline, timerDelay } from './idle-wheel.js';
import { checkUpgradeOptions } from './check-options.js';
import { WebSocketConnection } from './connection.js';
import { HandshakeError } from './errors.js';
import { acceptDeflateResponse, buildDeflateOffer, deflateEngineOptions, PerMessageDeflate, PERMESSAGE_DEFLATE } from './extensions/permessage-deflate.js';
import type { ConnectOptions } from './client.js';
import { abortedHandshake, factoryFailed, bareHostname, redirectLocation, refusalBody, sniOption, socketOptions } from './client-target.js';
import { hostKey, takeTurn } from './connecting.js';
import { headerList, headerValue, isValidHost } from './handshake/http.js';
import { parseProtocols } from './handshake/server.js';
import { buildRequestHeaders, verifyNegotiation } from './handshake/client.js';
import type { Transport } from './transport.js';
import { handshakeTimeLeft, hookAnswer, negotiate, reportUpgradeFailure, startConnection, withResponseHeaders, type ResponseHeaderSource, type UpgradeOptions, type UpgradeTarget, type BeforeAcceptResult, type HookReturning, type HookState } from './upgrade.js';

/**
 * A Transport over an HTTP/2 stream: orderly end is END_STREAM (RFC 8441 §5), abort is
 * RST_STREAM(CANCEL); on a server whose closing handshake is complete, END_STREAM then
 * RST_STREAM(NO_ERROR) unless the peer has ended its side (see {@link Transport.endClosed}).
 */
export function http2StreamTransport(stream: Http2Stream): Transport {
  const socket = stream.session?.socket;
  /**
   * Once Node has taken everything we wrote and our END_STREAM ('finish'): a peer that has not
   * ended its side is asked to stop without error (RST_STREAM NO_ERROR, RFC 9113 §8.1). Not by a
   * close(NO_ERROR) at once: Node then waits for 'finish' itself, which does not come while the
   * peer's flow-control window keeps our last bytes back, and the stream, marked closed, takes no
   * CANCEL from abort() any more (close() on a closed stream does nothing): it stayed open past
   * the close timer, for good. And in an immediate: Node hands us the peer's close frame, and runs
   * the next-tick queue ('finish' among it), before its session has taken the END_STREAM flag of
   * the same DATA frame, so a client that sends its close frame and END_STREAM together was not
   * seen to have ended, and got a RST_STREAM it did not need.
   */
  const resetIfPeerOpen = (): void => {
    if (stream.destroyed || stream.closed) return;
    // OPEN (our END_STREAM queued, not sent yet: Node sends what is pending ahead of the
    // RST_STREAM) or HALF_CLOSED_LOCAL: the peer has not ended its side. Otherwise the stream
    // closes with our END_STREAM, and no RST_STREAM is needed.
    const state = stream.state.state;
    if (state === h2.NGHTTP2_STREAM_STATE_OPEN || state === h2.NGHTTP2_STREAM_STATE_HALF_CLOSED_LOCAL) stream.close(h2.NGHTTP2_NO_ERROR);
  };
  const end = (): void => {
    if (!stream.destroyed && !stream.writableEnded) stream.end();
  };
  return {
    stream,
    kind: 'http2',
    secure: stream.session?.encrypted ?? false,
    localAddress: socket?.localAddress,
    localPort: socket?.localPort,
    remoteAddress: socket?.remoteAddress,
    remotePort: socket?.remotePort,
    end,
    endClosed: () => {
      if (stream.destroyed) return;
      end();
      const later = (): void => void setImmediate(resetIfPeerOpen);
      if (stream.writableFinished) later();
      else stream.once('finish', later);
    },
    abort: () => {
      if (stream.destroyed) return;
      // destroy() alone sends RST_STREAM(NO_ERROR), which a peer cannot tell from an orderly end.
      if (!stream.closed) stream.close(h2.NGHTTP2_CANCEL);
      // Node does not destroy a closed stream whose input the peer ended while some of it waits
      // unread (reading paused: pause(), a full queue), nor one a write after the peer's
      // RST_STREAM(NO_ERROR) errored: no 'close' came, and close() on a stream already closed
      // does nothing. Destroyed here (the RST_STREAM queued above still goes out). Fixed bug: such
      // a connection stayed open through terminate() and its close timer, and server.close()
      // never resolved.
      if (!stream.destroyed) stream.destroy();
    },
  };
}

/** A character of a `:path` that no request target has: a byte from 0x80 up (Node hands it over as Latin-1). */
const NOT_ASCII_TARGET = /[\u0080-\uffff]/;

/** Regular (non-pseudo) headers of an HTTP/2 header block, as HTTP/1.1-style lower-case headers. */
function regularHeaders(headers: Http2IncomingHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) if (!name.startsWith(':')) out[name] = value as string | string[];
  if (out.host === undefined && typeof headers[':authority'] === 'string') out.host = headers[':authority'];
  return out;
}

function respondError(stream: ServerHttp2Stream, status: number, message: string | Buffer, headers: Http2OutgoingHeaders = {}, timeout: number = Defaults.handshakeTimeout): void {
  if (stream.destroyed || stream.headersSent) return;
  const body = typeof message === 'string' ? Buffer.from(message.endsWith('\n') || message === '' ? message : message + '\n') : message;
  const out: Http2OutgoingHeaders = { 'content-type': 'text/plain; charset=utf-8' };
  for (const [k, v] of Object.entries(headers)) {
    const key = k.toLowerCase();
    // The connection-specific headers a `beforeAccept` refusal may carry for HTTP/1.1 (Connection,
    // Keep-Alive, Transfer-Encoding…) are left out, as HTTP/1.1 leaves them out of its refusals
    // (fixed bug: Node refused to send them, RFC 9113 §8.2.2, and the refusal became a 500
    // reported to onError, over HTTP/2 only).
    if (!CONNECTION_SPECIFIC.has(key) && key !== 'te' && key !== 'trailer') out[key] = v;
  }
  out[':status'] = status;
  out['content-length'] = body.length;
  stream.respond(out);
  stream.end(body);
  // A body the client does not take (a hook's refusal larger than its flow-control window) is
  // given up after `timeout`, as over HTTP/1.1 (fixed bug: the stream stayed open for good).
  giveUpUntaken(stream, timeout, () => stream.close(h2.NGHTTP2_CANCEL));
}

function lowerHeaders(list: Array<[string, string]>, into: Http2OutgoingHeaders): void {
  for (const [name, value] of list) {
    const key = name.toLowerCase();
    // Connection-specific headers are forbidden in HTTP/2 (RFC 9113 §8.2.2).
    if (key === 'connection' || key === 'upgrade' || key === 'keep-alive' || key === 'transfer-encoding') continue;
    const existing = into[key];
    into[key] = existing === undefined ? value : ([] as string[]).concat(existing as string | string[], value);
  }
}

/**
 * Answers one extended CONNECT stream. `req` is the compatibility request when there is one, else
 * a request-like object built from the header block. `regular` is `regularHeaders(headers)` when
 * the caller already has it (the connection's headers; made here otherwise, once accepted).
 */
async function handleConnectStream<State>(
  stream: ServerHttp2Stream,
  headers: Http2IncomingHeaders,
  req: IncomingMessage,
  target: UpgradeTarget<State>,
  options: UpgradeOptions<State>,
  responseHeaders?: ResponseHeaderSource,
  started?: number,
  regular?: IncomingHttpHeaders,
): Promise<WebSocketConnection | undefined> {
  stream.on('error', () => undefined);
  const timer = setTimeout(() => respondError(stream, 408, 'handshake timeout'), handshakeTimeLeft(options, started));
  timer.unref?.();
  try {
    // RFC 8441 §4: :scheme and :path are present on an extended CONNECT; :authority names the host.
    const path = headers[':path'];
    if (typeof path !== 'string' || !path.startsWith('/') || typeof headers[':scheme'] !== 'string' || typeof headers[':authority'] !== 'string') {
      throw new HandshakeError('extended CONNECT needs :scheme, :path and :authority', 400, { code: 'WS_BAD_REQUEST' });
    }
    // A request target is ASCII (RFC 3986 §2; RFC 9112 §3.2). Node's HTTP/1.1 parser answers a
    // byte from 0x80 up in one 400 before any upgrade listener runs; nghttp2 lets it through in
    // `:path` (it refuses only controls and spaces). Fixed bug: over HTTP/2 alone such a path was
    // routed (`/rooms/é` took `/rooms/(?<room>[^/]+)` with `room` 'é', as Latin-1 characters).
    if (NOT_ASCII_TARGET.test(path)) throw new HandshakeError('the :path is not a request target (a byte outside ASCII)', 400, { code: 'WS_BAD_REQUEST' });
    // The authority is a Host (RFC 9113 §8.3.1: no userinfo), and the handler reads it as one: an
    // invalid one is a 400, as an invalid Host over HTTP/1.1 (fixed bug: nghttp2 checks only its
    // characters, and `user@x`, `x:1:2` or `x:http` reached the handler as req.headers.host).
    if (!isValidHost(headers[':authority'])) throw new HandshakeError('invalid :authority', 400, { code: 'WS_BAD_HOST' });
    // A CONNECT has no content (RFC 9110 §9.3.6): its DATA frames are the tunnel. nghttp2 holds
    // them to a Content-Length (RFC 9113 §8.1.1) and resets the stream (PROTOCOL_ERROR) at the
    // first WebSocket frame past it, `content-length: 0` included. Refused as an HTTP/1.1 upgrade
    // request with a body is (WS_REQUEST_BODY). Fixed bug: it got a 200, and the handler a
    // connection that failed with 1006 and an error at its first frame.
    if (headers['content-length'] !== undefined) {
      throw new HandshakeError('an extended CONNECT has no content (Content-Length)', 400, { code: 'WS_REQUEST_BODY' });
    }
    // RFC 8441 §5: the same version negotiation as RFC 6455 §4.4 (no Upgrade in HTTP/2, so 400).
    const version = headerValue(req.headers, 'sec-websocket-version');
    if (version?.trim() !== '13') {
      throw new HandshakeError('Sec-WebSocket-Version must be 13', 400, { code: 'WS_BAD_VERSION', headers: { 'sec-websocket-version': '13' } });
    }
    const protocols = parseProtocols(req.headers['sec-websocket-protocol']);
    const pending = negotiate(
      req,
      { url: path, protocols, extensions: headerValue(req.headers, 'sec-websocket-extensions'), secure: stream.session?.encrypted ?? false, allowExtensions: true },
      target,
      options,
    );
    // Without an async hook, accept in the same tick (as handleUpgrade does): an `await` here let a
    // burst of CONNECTs on one session all pass an admission check (serve's maxConnections) before
    // any of them was counted as a connection. An async hook's answer is waited for only while the
    // stream is open, as over HTTP/1.1 (hookAnswer): a CONNECT the client cancels ends there.
    // (Fixed bug: it waited for the hook, for good with one that never settled, and held the
    // stream, its request and the 408 timer until handshakeTimeout, and serve()'s maxConnections
    // slot with them.)
    const answer = pending instanceof Promise ? await hookAnswer(req, stream, pending, options) : pending;
    if (answer === undefined) {
      clearTimeout(timer);
      return undefined;
    }
    if ('reject' in answer) {
      clearTimeout(timer);
      const r = answer.reject;
      // Its headers checked as over HTTP/1.1 and as the 200's: a name that is not a token, or a
      // value with CR, LF or NUL, is the hook's TypeError, answered 500 and reported (fixed bug:
      // over HTTP/2 only, Node sent such a value as it was, a malformed field, RFC 9113 §8.2.1).
      const refusalHeaders: Http2OutgoingHeaders = {};
      lowerHeaders(headerList(r.headers), refusalHeaders);
      // The body exactly as given, as over HTTP/1.1 (fixed bug: a string body got a '\n' appended
      // over HTTP/2 only, the one respondError adds to its own messages).
      respondError(stream, r.status, typeof r.body === 'string' ? Buffer.from(r.body) : (r.body ?? ''), refusalHeaders, options.handshakeTimeout);
      return undefined;
    }
    // The framework's headers (an adapter's), once accepted, under the same deadline.
    const accepted = withResponseHeaders(answer, responseHeaders);
    const negotiated = accepted instanceof Promise ? await hookAnswer(req, stream, accepted, options) : accepted;
    clearTimeout(timer);
    if (negotiated === undefined) return undefined;
    // Too late: the client left, or handshakeTimeout answered 408 while a before-accept hook ran.
    // (Fixed bug: a hook that settled after the 408 had the 200 written on the answered stream,
    // which threw ERR_HTTP2_INVALID_STREAM or ERR_HTTP2_HEADERS_SENT into onError, and the
    // permessage-deflate context made for it was never disposed.)
    if (stream.destroyed || stream.closed || stream.headersSent) {
      negotiated.extension?.dispose();
      return undefined;
    }
    const response: Http2OutgoingHeaders = { ':status': 200 };
    if (negotiated.protocol !== '') response['sec-websocket-protocol'] = negotiated.protocol;
    if (negotiated.extensionsHeader !== '') response['sec-websocket-extensions'] = negotiated.extensionsHeader;
    lowerHeaders(negotiated.headers, response);
    stream.respond(response);
    // The connection's headers are the request's regular fields, as on a 'stream'-style server, also
    // when `req` is the compatibility request, whose `headers` has the pseudo-headers too. (Fixed
    // bug: conn.headers held `:method`, `:path`, `:authority`... on serve({ http2: true }), on
    // attachHttp2() beside a 'request' listener and through @rfc6455/fastify, and not on a
    // 'stream'-style server.)
    return startConnection(http2StreamTransport(stream), req, negotiated, options, undefined, 'rfc6455', regular ?? regularHeaders(headers));
  } catch (error) {
    clearTimeout(timer);
    if (error instanceof HandshakeError) respondError(stream, error.status, error.message, error.headers as Http2OutgoingHeaders);
    else {
      reportUpgradeFailure(options.onError, error, req, typeof headers[':path'] === 'string' ? headers[':path'] : undefined, stream.destroyed || stream.closed);
      respondError(stream, 500, 'Internal Server Error');
    }
    return undefined;
  }
}

function isWebSocketConnect(headers: Http2IncomingHeaders): boolean {
  return headers[':method'] === 'CONNECT' && headers[':protocol'] === 'websocket';
}

/**
 * Completes an HTTP/2 extended CONNECT (RFC 8441) that arrived through Node's compatibility API
 * (a `'connect'` event's Http2ServerRequest), for adapters that routed it through their framework
 * first. Answers on `req.stream`: `:status 200` and starts the connection, or refuses with the
 * negotiation's HTTP/2 response (400, 403, the mapper's 404…); a CONNECT that is not
 * `:protocol websocket` gets 405. The request's `:method` must be `CONNECT` again when this is
 * called. The server must advertise SETTINGS_ENABLE_CONNECT_PROTOCOL
 * (`server.updateSettings({ enableConnectProtocol: true })`).
 *
 * Resolves with the connection, or `undefined` when the CONNECT was refused. The compatibility
 * response object is not used: do not write to it. `responseHeaders` gives the framework's response
 * headers for the 200, as handleUpgrade's does for the 101 (the same headers are left out).
 */
export function handleConnect<State = undefined, Result = BeforeAcceptResult<State>>(
  req: Http2ServerRequest,
  target: UpgradeTarget<NoInfer<HookState<State, Result>>>,
  options?: UpgradeOptions<State> & HookReturning<Result>,
  responseHeaders?: ResponseHeaderSource,
): Promise<WebSocketConnection | undefined>;
export function handleConnect<State>(
  req: Http2ServerRequest,
  target: UpgradeTarget<State>,
  options: UpgradeOptions<State> = {},
  responseHeaders?: ResponseHeaderSource,
): Promise<WebSocketConnection | undefined> {
  const stream = req.stream;
  const headers = req.headers as Http2IncomingHeaders;
  if (!isWebSocketConnect(headers)) {
    respondError(stream, 405, 'CONNECT is only for WebSockets here');
    return Promise.resolve(undefined);
  }
  // As on a 'stream'-style server (regularHeaders): a handler reads the authority as Host, as over
  // HTTP/1.1. (Fixed bug: through the compatibility API, serve()'s included, req.headers.host was
  // undefined for every WebSocket over HTTP/2.)
  if (headers.host === undefined && typeof headers[':authority'] === 'string') headers.host = headers[':authority'];
  // What is left of handshakeTimeout after the framework's part (see connectDeadline).
  const deadline = connectDeadlines.get(stream);
  if (deadline !== undefined) {
    clearTimeout(deadline.timer);
    connectDeadlines.delete(stream);
  }
  return handleConnectStream(stream, headers, req as unknown as IncomingMessage, target, options, responseHeaders, deadline?.started);
}

/** Deadlines of extended CONNECTs a framework is handling (see connectDeadline), and when each began. */
const connectDeadlines = new WeakMap<Http2Stream, { timer: NodeJS.Timeout | undefined; started: number }>();

/**
 * Bounds a framework's part of an HTTP/2 extended CONNECT (its hooks or middleware, until
 * {@link handleConnect} takes the request over), as {@link upgradeResponse} does for an HTTP/1.1
 * upgrade: a CONNECT neither answered nor handed to handleConnect within `timeout` ms (default
 * 10000, the default handshakeTimeout; 0 for none) is answered 408 through `res`, its
 * compatibility response (its stream is reset if a response had begun). handleConnect then has what is left of its handshakeTimeout, not a whole
 * one. Adapters call it from their `'connect'` listener, before routing the request. Fixed bug: a
 * Fastify hook that never finished held the CONNECT, and `app.close()`, until the client gave up.
 */
export function connectDeadline(req: Http2ServerRequest, res: Http2ServerResponse, timeout: number = Defaults.handshakeTimeout): void {
  const stream = req.stream;
  let timer: NodeJS.Timeout | undefined;
  if (timeout > 0 && Number.isFinite(timeout)) {
    timer = setTimeout(() => {
      connectDeadlines.delete(stream);
      if (stream.destroyed || stream.closed) return;
      if (stream.headersSent) stream.close(h2.NGHTTP2_CANCEL);
      // Through the framework's response, so that the framework sees it answered.
      else res.writeHead(408, { 'content-type': 'text/plain; charset=utf-8' }).end('Request Timeout\n');
    }, timerDelay(timeout));
    timer.unref();
    stream.once('close', () => {
      clearTimeout(timer);
      connectDeadlines.delete(stream);
    });
  }
  connectDeadlines.set(stream, { timer, started: performance.now() });
}

/** Returned by {@link attachHttp2}. */
export interface Http2Attachment {
  /** Stops answering WebSocket CONNECTs on the server. */
  detach(): void;
}

/**
 * Serves WebSockets over HTTP/2 on a server you created. The server must have been created with
 * `settings: { enableConnectProtocol: true }` (the attachment turns it on otherwise). Works both
 * with `'stream'`-style servers and with compatibility-API servers (a `'request'` listener), where
 * CONNECTs arrive as `'connect'` events (without a `'connect'` listener Node answers them 405).
 * @throws TypeError or RangeError for an option of the wrong type or out of range.
 */
export function attachHttp2<State = undefined, Result = BeforeAcceptResult<State>>(
  server: Http2SecureServer | Http2Server,
  target: UpgradeTarget<NoInfer<HookState<State, Result>>>,
  options?: UpgradeOptions<State> & HookReturning<Result>,
): Http2Attachment;
export function attachHttp2<State>(
  server: Http2SecureServer | Http2Server,
  target: UpgradeTarget<State>,
  options: UpgradeOptions<State> = {},
): Http2Attachment {
  checkUpgradeOptions('attachHttp2()', options);
  // RFC 8441 §3: advertise SETTINGS_ENABLE_CONNECT_PROTOCOL only where we accept it.
  server.updateSettings({ enableConnectProtocol: true });
  const onStream = (stream: ServerHttp2Stream, headers: Http2IncomingHeaders, _flags: number, rawHeaders: readonly string[] | undefined): void => {
    if (headers[':method'] !== 'CONNECT') return;
    if (server.listenerCount('request') > 0) return; // the compatibility layer emits 'connect'
    if (!isWebSocketConnect(headers)) {
      // The CONNECTs are the attachment's (the user's 'stream' handler leaves them alone): one
      // without `:protocol websocket` gets the 405 the compatibility API's path gives (handleConnect).
      // Fixed bug: on a 'stream'-style server nothing answered it, and the stream stayed open until
      // the client gave up. Answered once the other 'stream' listeners have run, so that one of
      // them that answers such a CONNECT at once (a proxy's) still can.
      stream.on('error', () => undefined);
      setImmediate(() => {
        if (!stream.closed) respondError(stream, 405, 'CONNECT is only for WebSockets here');
      });
      return;
    }
    // `headers` and `rawHeaders` as an Http2ServerRequest has them (the compatibility API's,
    // serve()'s): the pseudo-headers too, and the authority as Host. (Fixed bug: on a
    // 'stream'-style server alone, `req.headers[':authority']`, `[':scheme']`... and
    // `req.rawHeaders` were undefined.)
    // (The regular fields are made once: they are the connection's headers too.)
    const regular = regularHeaders(headers);
    const req = {
      method: 'CONNECT',
      url: headers[':path'],
      headers: regular.host === headers.host ? { ...headers } : { ...headers, host: regular.host },
      rawHeaders: rawHeaders ?? [],
      httpVersion: '2.0',
      httpVersionMajor: 2,
      httpVersionMinor: 0,
      socket: stream.session?.socket,
      stream,
    } as unknown as IncomingMessage;
    void handleConnectStream(stream, headers, req, target, options, undefined, undefined, regular);
  };
  const onConnect = (req: Http2ServerRequest | IncomingMessage, res: Http2ServerResponse | unknown): void => {
    if (!(req as Http2ServerRequest).stream) {
      // An HTTP/1.1 CONNECT on an allowHTTP1 server: not ours.
      (res as { destroy?: () => void }).destroy?.();
      return;
    }
    void handleConnect(req as Http2ServerRequest, target, options);
  };
  server.on('stream', onStream);
  server.on('connect', onConnect);
  return {
    detach() {
      server.removeListener('stream', onStream);
      server.removeListener('connect', onConnect);
      server.updateSettings({ enableConnectProtocol: false });
    },
  };
}

/** Options of {@link connectHttp2}: those of `connect()`, plus the HTTP/2 session to use. */
export interface Http2ConnectOptions extends ConnectOptions {
  /** An existing session to open the WebSocket stream on (several WebSockets may share one). */
  session?: ClientHttp2Session | undefined;
  /** Options for a new session (TLS: ca, rejectUnauthorized...). */
  sessionOptions?: SecureClientSessionOptions | undefined;
}

/** HTTP/1.1 headers a request must not carry over HTTP/2 (RFC 9113 §8.2.2). */
const CONNECTION_SPECIFIC = new Set(['connection', 'upgrade', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'http2-settings']);

/** Keeps a session's errors from being thrown (each stream reports its own). */
const ignoreError = (): void => undefined;

/** The TLS alert a server sends when it speaks none of the offered ALPN protocols (no h2). */
const NO_ALPN = 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL';

/**
 * The size of an HTTP/2 response head written as HTTP/1.1 (`HTTP/1.1 200 \r\n`, each field
 * `name: value\r\n`, the blank line), what `maxHeaderSize` bounds over HTTP/1.1.
 */
function http1HeadSize(status: number, headers: IncomingHttpHeaders): number {
  let size = `HTTP/1.1 ${status} \r\n\r\n`.length;
  for (const [name, value] of Object.entries(headers)) {
    for (const one of Array.isArray(value) ? value : [value ?? '']) size += Buffer.byteLength(name) + Buffer.byteLength(String(one)) + 4;
  }
  return size;
}

/** The session a WebSocket was to be opened on is gone (or going: GOAWAY). */
function sessionGone(cause?: unknown): HandshakeError {
  const message = (cause as { message?: unknown } | undefined)?.message;
  const why = typeof message === 'string' ? `: ${message}` : '';
  return new HandshakeError(`the HTTP/2 session cannot open a stream${why}`, 0, { code: 'WS_CONNECT_FAILED', cause });
}

/**
 * Waits for the peer's SETTINGS, which say whether extended CONNECT is allowed (RFC 8441 §3), and
 * resolves with that; resolves `undefined` when the server does not speak HTTP/2 at all (ALPN
 * refused or did not select h2; in cleartext, `cleartextOwn`, a session of our own that failed or
 * ended after it connected and before any SETTINGS came), so the caller can fall back to HTTP/1.1.
 * `timeout`: ms left of the handshakeTimeout; `total`: the whole of it, which a timeout's error names.
 *
 * Node offers no flag for "the peer's SETTINGS arrived": before, `remoteSettings` holds the
 * defaults (enableConnectProtocol false). Fixed bug: this used to test `pendingSettingsAck` (our
 * own SETTINGS' ack) and wait for a 'remoteSettings' event that had already fired on a shared
 * session, so connect({ http2: session }) timed out. Now a true value is taken at once, and
 * otherwise a PING is sent: its ACK comes after the server's SETTINGS (the first frame of its
 * preface, RFC 9113 §3.4), so once it is back `remoteSettings` is the server's.
 */
function remoteSettings(session: ClientHttp2Session, timeout: number, signal: AbortSignal | undefined, cleartextOwn: boolean, total = timeout): Promise<boolean | undefined> {
  if (session.destroyed) return Promise.reject(sessionGone());
  if (session.remoteSettings?.enableConnectProtocol === true) return Promise.resolve(true);
  // One wait per session, however many connect() calls wait on it (each with its own deadline and
  // signal). Fixed bug: each call added its own listeners to the session and its socket and sent
  // its own PING, so more than 10 WebSockets opened at once on a new shared session got
  // MaxListenersExceededWarnings, and those past Node's 10 outstanding PINGs failed with
  // WS_CONNECT_FAILED ("HTTP2 ping cancelled").
  let answer = settingsWaits.get(session);
  if (answer === undefined) {
    const heard = hearSettings(session, cleartextOwn);
    settingsWaits.set(session, heard);
    // Forgotten once settled (a failure included, which callers that gave up no longer hear).
    const forget = (): void => {
      if (settingsWaits.get(session) === heard) settingsWaits.delete(session);
    };
    heard.then(forget, forget);
    answer = heard;
  }
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (settle: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      settle();
    };
    // The message names the whole handshakeTimeout, as the other paths' do (fixed bug: it said
    // only "no HTTP/2 SETTINGS from the server").
    const timer = peerDeadline(() => finish(() => reject(new HandshakeError(`handshake timed out after ${total} ms: no HTTP/2 SETTINGS from the server`, 0, { code: 'WS_HANDSHAKE_TIMEOUT' }))), timeout);
    const onAbort = (): void => finish(() => reject(abortedHandshake(signal!)));
    signal?.addEventListener('abort', onAbort, { once: true });
    answer.then(
      (allowed) => finish(() => resolve(allowed)),
      (error: unknown) => finish(() => reject(error)),
    );
  });
}

/** The waits of {@link hearSettings} under way, by session (see remoteSettings). */
const settingsWaits = new WeakMap<ClientHttp2Session, Promise<boolean | undefined>>();

/**
 * What {@link remoteSettings} waits for, without a deadline: the session's SETTINGS (or its
 * failure, or its end). Settles once, and its listeners are then removed.
 */
function hearSettings(session: ClientHttp2Session, cleartextOwn: boolean): Promise<boolean | undefined> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let socketOff: (() => void) | undefined;
    // Cleartext has no ALPN: a session of our own starts with the HTTP/2 preface (h2c with prior
    // knowledge). A server that ends or breaks the connection once it is made, before it sent any
    // SETTINGS, does not speak HTTP/2 (an HTTP/1.1 server answers `PRI * HTTP/2.0` with a 400,
    // which nghttp2 takes for a protocol error): resolved `undefined`, so that the caller falls
    // back to HTTP/1.1, as it does over TLS without `h2` (fixed bug: `ws:` with `http2: true`
    // failed with WS_CONNECT_FAILED against every HTTP/1.1-only server).
    let connected = false;
    let heard = false;
    const notHttp2 = (): boolean => cleartextOwn && connected && !heard;
    const done = (): boolean => {
      if (settled) return false;
      settled = true;
      session.removeListener('error', onError);
      session.removeListener('remoteSettings', onSettings);
      session.removeListener('connect', probe);
      session.removeListener('close', onClose);
      socketOff?.();
      return true;
    };
    const fail = (error: Error): void => {
      if (done()) reject(error);
    };
    // The session failed or ended: see notHttp2.
    const broken = (error: Error): void => {
      if (!notHttp2()) fail(error);
      else if (done()) resolve(undefined);
    };
    const onError = (error: NodeJS.ErrnoException): void => {
      if (error.code === NO_ALPN) {
        if (done()) resolve(undefined);
        return;
      }
      broken(new HandshakeError(`HTTP/2 session failed: ${error.message}`, 0, { code: 'WS_CONNECT_FAILED', cause: error }));
    };
    // Destroyed without an error (fixed bug: the handshake waited for its timeout).
    const onClose = (): void => broken(sessionGone());
    const onSettings = (settings: { enableConnectProtocol?: boolean }): void => {
      heard = true;
      if (done()) resolve(settings.enableConnectProtocol === true);
    };
    function probe(): void {
      connected = true;
      if (settled || session.destroyed) return;
      // A TLS server that selected no ALPN protocol (or http/1.1) never sends HTTP/2 SETTINGS.
      const alpn = session.alpnProtocol;
      if (session.encrypted && alpn !== 'h2') {
        if (done()) resolve(undefined);
        return;
      }
      session.ping((error) => {
        // A cancelled PING: the session was destroyed without a word (see socketOff).
        if (error) broken(sessionGone(error));
        else if (done()) resolve(session.remoteSettings?.enableConnectProtocol === true);
      });
    }
    session.once('remoteSettings', onSettings);
    session.on('error', onError);
    session.once('close', onClose);
    // The TLS socket's own errors, heard at once: a session its socket's error destroys need not
    // emit 'error' or 'close' (Node waits for nghttp2 to wind down, which it may never report).
    // Fixed bug: a TLS 1.3 server that refused our client certificate (its alert comes after our
    // side of the handshake is done) left connect() waiting for handshakeTimeout, then reporting
    // "no HTTP/2 SETTINGS from the server" instead of the TLS alert.
    try {
      const socket = session.socket;
      // (Node's session.socket is a proxy: each method is bound to the socket while the session has one.)
      const off = socket.removeListener;
      socket.on('error', onError);
      socketOff = () => off('error', onError);
    } catch {
      // No socket bound any more: 'close' tells.
    }
    if (session.connecting) session.once('connect', probe);
    else probe();
  });
}

/**
 * Opens a WebSocket over HTTP/2 extended CONNECT. Resolves with the connection, or with
 * `undefined` when the server does not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL (the caller
 * falls back to HTTP/1.1). A session of its own is a new connection to the host, and waits its
 * turn as `connect()`'s do (`serializeHandshakes`); a stream on `options.session` does not.
 */
export async function connectHttp2(url: URL, options: Http2ConnectOptions): Promise<WebSocketConnection | undefined> {
  const started = performance.now();
  if (options.session !== undefined || options.serializeHandshakes === false) return openHttp2(url, options, started);
  const timeout = options.handshakeTimeout ?? Defaults.handshakeTimeout;
  const release = await takeTurn(hostKey(url, options.socketPath), timeout, timeout, options.signal);
  try {
    return await openHttp2(url, options, started, release);
  } finally {
    release();
  }
}

/**
 * {@link connectHttp2} without taking a turn (`connect()` holds its own through a fallback to
 * HTTP/1.1), with one handshakeTimeout that began at `started` (a turn waited for counts in it).
 * `answered` is called when a response that is no 200 comes: the WebSocket has failed (its body
 * may still be read), and the host's turn goes to the next, as over HTTP/1.1. `follow`: a 3xx
 * with a Location fails at once, its body unread (`connect()` follows it), as over HTTP/1.1.
 * @internal
 */
export async function openHttp2(url: URL, options: Http2ConnectOptions, started: number, answered?: () => void, follow = false): Promise<WebSocketConnection | undefined> {
  const secure = url.protocol === 'wss:' || url.protocol === 'https:';
  const origin = `${secure ? 'https' : 'http'}://${url.host}`;
  const timeout = options.handshakeTimeout ?? Defaults.handshakeTimeout;
  const signal = options.signal;
  // (Fixed bug: the HTTP/2 path ignored `signal`, and the socket options: a ws+unix: URL went to
  // TCP port 443 or 80 of localhost, and `lookup`, `family` and `localAddress` were not used.)
  if (signal?.aborted) throw abortedHandshake(signal);
  const ownSession = options.session === undefined;
  const { socketPath, ...tcp } = socketOptions(options);
  const where = socketPath === undefined ? tcp : { ...tcp, path: socketPath };
  // The SNI name as over HTTP/1.1 (Node's own keeps a trailing dot).
  const sni = secure ? sniOption(bareHostname(url)) : {};
  // The socket of a session of our own, made here as Node's http2.connect() makes it (or by the
  // caller's createConnection), so that it can be destroyed while it is still connecting.
  let ownSocket: Duplex | undefined;
  const given = options.sessionOptions?.createConnection;
  const createConnection = (authority: URL, sessionOptions: SecureClientSessionOptions): Duplex => {
    const host = bareHostname(authority);
    const port = Number(authority.port || (secure ? 443 : 80));
    if (given) {
      try {
        ownSocket = given(authority, sessionOptions);
      } catch (error) {
        givenFailed = { error };
        throw error;
      }
    } else {
      ownSocket = secure ? tlsConnect(port, host, { ...sessionOptions, ALPNProtocols: ['h2'] }) : netConnect({ ...sessionOptions, port, host });
    }
    return ownSocket;
  };
  // What the caller's createConnection threw, if it did: the connection's failure, WS_CONNECT_FAILED
  // with it as the cause, as for an `agent` over HTTP/1.1 (fixed bug: connectHttp2() rejected with
  // the raw error). (Anything else http2.connect() throws, an option Node refuses, stays itself.)
  let givenFailed: { error: unknown } | undefined;
  let session: ClientHttp2Session;
  try {
    session = options.session ?? http2Connect(origin, { ...where, ...sni, ...options.tls, ...options.sessionOptions, createConnection } as SecureClientSessionOptions);
  } catch (error) {
    if (givenFailed === undefined || givenFailed.error !== error) throw error;
    factoryFailed(error);
  }
  // A server that has not answered in time (or a handshake given up by `signal`): a graceful
  // close ends our side and waits for the server's, which a stalled server never sends, so the
  // socket stayed open and kept the process alive (fixed bug). Destroyed instead, the socket too:
  // Node's session.destroy() ends a socket that is still connecting (a slow DNS lookup, a TCP
  // connect that stalls) only once it has connected, so that connection was still made, and the
  // attempt kept the process alive (fixed bug).
  const destroyOwn = (): void => {
    if (ownSession && !session.destroyed) session.destroy();
    ownSocket?.destroy();
  };
  // The graceful close of a session of our own (GOAWAY, then our side of the connection ended)
  // waits for the server to close its side: bounded by closeTimeout, as a WebSocket's close over
  // HTTP/1.1 is, then destroyed. (Fixed bug: once its WebSocket had closed, cleanly or not, a
  // session whose server, or a proxy in between, did not close the connection stayed open for
  // good, and kept the process alive.)
  let closing = false;
  const closeOwn = (): void => {
    if (!ownSession || closing) return;
    closing = true;
    if (!session.closed) session.close();
    const socket = ownSocket;
    if (socket === undefined || socket.destroyed) return;
    const timer = peerDeadline(destroyOwn, options.closeTimeout ?? Defaults.closeTimeout);
    socket.once('close', () => clearTimeout(timer));
  };
  // Once per session: a shared one used to get another listener with every WebSocket opened on it.
  if (!session.listeners('error').includes(ignoreError)) session.on('error', ignoreError);
  // One handshakeTimeout for the whole handshake: the server's SETTINGS, then the CONNECT.
  let allowed: boolean | undefined;
  try {
    allowed = await remoteSettings(session, Math.max(0, timeout - (performance.now() - started)), signal, ownSession && !secure, timeout);
  } catch (error) {
    // (No SETTINGS in time, given up, or the session failed: nothing to close gracefully.)
    destroyOwn();
    throw error;
  }
  if (!allowed) {
    // (A cleartext server that does not speak HTTP/2 broke the session: nothing to close gracefully.)
    if (allowed === undefined && !secure) destroyOwn();
    else closeOwn();
    return undefined;
  }
  const protocols = typeof options.protocols === 'string' ? [options.protocols] : [...(options.protocols ?? [])];
  const deflate = options.perMessageDeflate === false ? undefined : typeof options.perMessageDeflate === 'object' ? options.perMessageDeflate : {};
  const handshake = buildRequestHeaders({ key: '', protocols, extensions: deflate ? buildDeflateOffer(deflate) : undefined, origin: options.origin });
  const headers: Http2OutgoingHeaders = {
    ':method': 'CONNECT',
    ':protocol': 'websocket',
    ':scheme': secure ? 'https' : 'http',
    ':path': `${url.pathname || '/'}${url.search}`,
    ':authority': url.host,
    'sec-websocket-version': '13',
  };
  for (const [name, value] of Object.entries({ ...options.headers })) {
    if (value === undefined) continue;
    const key = name.toLowerCase();
    // The same `headers` serve an HTTP/1.1 fallback. Connection-specific ones are forbidden in
    // HTTP/2 (RFC 9113 §8.2.2; TE only as `trailers`), and Node threw on them: a Connection or
    // Keep-Alive header failed every connect({ http2: true }). A Host header names the authority,
    // which HTTP/2 carries in :authority, and a request must not have two that differ (§8.3.1).
    // Fixed bugs.
    if (CONNECTION_SPECIFIC.has(key) || (key === 'te' && String(value).trim().toLowerCase() !== 'trailers')) continue;
    // A CONNECT has no content (RFC 9110 §9.3.6; a user agent SHOULD NOT send a Content-Length
    // then, §8.6): its DATA frames are the WebSocket, which nghttp2 would reset past that length.
    // Fixed bug: a `content-length` of the caller's went on the CONNECT, and the WebSocket broke at
    // its first frame (our server now answers such a CONNECT 400).
    if (key === 'content-length') continue;
    if (key === 'host') headers[':authority'] = String(value);
    else headers[key] = value as string;
  }
  if (handshake['Sec-WebSocket-Protocol']) headers['sec-websocket-protocol'] = handshake['Sec-WebSocket-Protocol'];
  if (handshake['Sec-WebSocket-Extensions']) headers['sec-websocket-extensions'] = handshake['Sec-WebSocket-Extensions'];
  if (handshake.Origin) headers.origin = handshake.Origin;

  let stream: ClientHttp2Stream;
  try {
    stream = session.request(headers, { endStream: false });
  } catch (error) {
    // A session that sent or received GOAWAY, or was destroyed (fixed bug: connect() rejected
    // with Node's own ERR_HTTP2_GOAWAY_SESSION or ERR_HTTP2_INVALID_SESSION, not a HandshakeError).
    // Anything else (a header value Node refuses) stays the TypeError it is.
    const gone = session.closed || session.destroyed;
    closeOwn();
    throw gone ? sessionGone(error) : error;
  }
  return new Promise<WebSocketConnection>((resolve, reject) => {
    // A refusal being read when time runs out (a body that never ends) is reported as the refusal.
    let refused: (() => void) | undefined;
    const left = Math.max(0, timeout - (performance.now() - started));
    const timer = peerDeadline(() => (refused ? refused() : fail(new HandshakeError(`handshake timed out after ${timeout} ms`, 0, { code: 'WS_HANDSHAKE_TIMEOUT' }), true)), left);
    let settled = false;
    /** `unanswered`: timed out or given up, the server may be stalled (see destroyOwn). */
    const fail = (error: Error, unanswered = false): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (!stream.destroyed) stream.close(h2.NGHTTP2_CANCEL);
      if (unanswered) destroyOwn();
      else closeOwn();
      reject(error);
    };
    // The signal gives up the handshake (the stream is cancelled), not a shared session.
    const onAbort = (): void => fail(abortedHandshake(signal!), true);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    stream.on('error', (error) => fail(new HandshakeError(`HTTP/2 stream failed: ${error.message}`, 0, { code: 'WS_CONNECT_FAILED', cause: error })));
    let refusal: (() => HandshakeError) | undefined;
    // A stream reset with NO_ERROR (what Node's stream.destroy() and close() send) is no 'error':
    // closed before the answer, or before a refusal's end, it used to wait for the timeout.
    stream.once('close', () => fail(refusal?.() ?? new HandshakeError(`the server closed the HTTP/2 stream without answering (code ${stream.rstCode ?? 0})`, 0, { code: 'WS_CONNECT_FAILED' })));
    stream.once('response', (responseHeaders) => {
      const status = Number(responseHeaders[':status']);
      const plain = regularHeaders(responseHeaders);
      // maxHeaderSize bounds the response head as over HTTP/1.1 and hybi-00: status 0 and
      // WS_RESPONSE_TOO_LARGE, whatever the status (fixed bug: over HTTP/2 it was not applied, so a
      // head of any size up to nghttp2's own limit was taken, a refusal's or a 200's).
      const limit = options.maxHeaderSize ?? Defaults.maxHeaderSize;
      const size = http1HeadSize(status, plain);
      if (size > limit) {
        fail(new HandshakeError(`response head too large: ${size} bytes as HTTP/1.1, over ${limit}`, 0, { code: 'WS_RESPONSE_TOO_LARGE' }));
        return;
      }
      if (follow && redirectLocation(status, plain) !== undefined) {
        // A redirect connect() follows: its body is of no use, as over HTTP/1.1 (the stream is cancelled).
        answered?.();
        fail(new HandshakeError(`server answered ${status}`, status, { code: 'WS_UNEXPECTED_RESPONSE', headers: plain, statusLine: `HTTP/2 ${status}` }));
        return;
      }
      if (status !== 200) {
        // The connection has failed at the refusal's head: reading its body does not hold up the
        // next connection to the host (fixed bug: it held the host's turn until the body's end,
        // up to handshakeTimeout for a body that did not end).
        answered?.();
        // As over HTTP/1.1: the first MAX_ERROR_BODY bytes of the body (it was all of it, in memory).
        refused = () => fail(refusal!());
        const received = refusalBody(stream, refused);
        refusal = () => new HandshakeError(`server answered ${status}`, status, { code: 'WS_UNEXPECTED_RESPONSE', headers: plain, statusLine: `HTTP/2 ${status}`, body: received() });
        return;
      }
      try {
        // RFC 8441 §5: no Upgrade/Connection/Accept; the subprotocol and extension checks remain.
        const verified = verifyNegotiation('HTTP/2 200', plain, { protocols, extensionNames: deflate ? [PERMESSAGE_DEFLATE] : [] });
        let extension: PerMessageDeflate | undefined;
        const offer = verified.extensions[0];
        if (offer && deflate) {
          extension = new PerMessageDeflate(
            acceptDeflateResponse(offer, deflate),
            'client',
            deflateEngineOptions(deflate, options.maxMessageSize ?? Defaults.maxMessageSize),
          );
        }
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const conn = new WebSocketConnection(
          http2StreamTransport(stream),
          {
            side: 'client',
            protocol: verified.protocol,
            extensions: typeof plain['sec-websocket-extensions'] === 'string' ? plain['sec-websocket-extensions'] : '',
            extension,
            requestLine: 'HTTP/2 200',
            url: String(headers[':path']),
            headers: plain,
          },
          { ...options, compressThreshold: options.compressThreshold ?? extension?.threshold },
        );
        if (ownSession) conn.whenClosed.then(closeOwn);
        resolve(conn);
      } catch (error) {
        // The checks are those of a 101 and throw with status 101: the status received here is
        // 200, with these headers (fixed bug: a refused subprotocol or extension over HTTP/2
        // reported status 101, and refused deflate parameters no status line or headers).
        const e = error as Error;
        fail(
          e instanceof HandshakeError && e.status === 101
            ? new HandshakeError(e.message, 200, { code: e.code, headers: plain, statusLine: 'HTTP/2 200', cause: e.cause })
            : e,
        );
      }
    });
  });
}
