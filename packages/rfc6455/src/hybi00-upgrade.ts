/**
 * The hybi-00 (draft-76) side of the upgrade seam, server and client. The handshake maths and
 * framing are in handshake/hybi00.ts and codec/hybi00.ts; negotiation (service mapper, Origin,
 * before-accept hook) is the one RFC 6455 uses; the connection is the same WebSocketConnection.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, TLSSocket } from 'node:tls';
import { Defaults } from './codec/constants.js';
import { peerDeadline } from './idle-wheel.js';
import { WebSocketConnection } from './connection.js';
import type { ConnectOptions } from './client.js';
import { abortedHandshake, connectFailed, bareHostname, MAX_ERROR_BODY, sniOption, socketOptions } from './client-target.js';
import { HandshakeError } from './errors.js';
import { hostKey, takeTurn } from './connecting.js';
import {
  acceptHybi00,
  buildHybi00Request,
  encodeHybi00Request,
  HYBI00_ANSWER_LENGTH,
  HYBI00_KEY3_LENGTH,
  serializeHybi00Response,
  verifyHybi00Response,
} from './handshake/hybi00.js';
import { headerList } from './handshake/http.js';
import { socketTransport } from './transport.js';
import { failUpgrade, handshakeTimeLeft, negotiateAnswer, refusedForShutdown, startConnection, upgraded, type ResponseHeaderSource, type UpgradeOptions, type UpgradeTarget, type BeforeAcceptResult, type HookReturning, type HookState } from './upgrade.js';

/**
 * Reads until `test(buffered)` returns a length, with the handshake timeout (`timeout`, what is
 * left of it; `total`, the whole of it, for the error's message). Resolves with the bytes read so
 * far (the caller splits them). The socket is paused again afterwards. A timeout's error has
 * status `timeoutStatus`: 408 on the server (nothing is answered then), 0 on the client (no
 * status was received, as over RFC 6455).
 */
function readUntil(socket: Duplex, initial: Buffer, need: (buffered: Buffer) => boolean, timeout: number, limit: number, total = timeout, timeoutStatus = 408): Promise<Buffer> {
  if (need(initial)) return Promise.resolve(initial);
  return new Promise((resolve, reject) => {
    let buffered = initial;
    let settled = false;
    const cleanup = (): void => {
      settled = true;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
      socket.removeListener('end', onClose);
      socket.removeListener('error', onError);
      socket.pause();
    };
    // Once the loop has polled again (see peerDeadline): bytes that came in time while the event
    // loop was held past the deadline are read first, as over RFC 6455 (fixed bug: a 101 and its
    // answer waiting unread failed the handshake with WS_HANDSHAKE_TIMEOUT).
    const timer = peerDeadline(() => {
      if (settled) return;
      cleanup();
      reject(new HandshakeError(`handshake timed out after ${total} ms`, timeoutStatus, { code: 'WS_HANDSHAKE_TIMEOUT' }));
    }, timeout);
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      if (need(buffered)) {
        cleanup();
        resolve(buffered);
      } else if (buffered.length > limit) {
        cleanup();
        reject(new HandshakeError('handshake too large', 431, { code: 'WS_HEAD_TOO_LARGE' }));
      }
    };
    const onClose = (): void => {
      cleanup();
      reject(new HandshakeError('connection closed during the handshake', 0, { code: 'WS_CONNECT_FAILED' }));
    };
    // The error that ends the socket is the reason (fixed bug: a TLS 1.3 server's alert refusing
    // our client certificate, which comes once our side of the handshake is done, or a reset,
    // was reported as "connection closed during the handshake", without it).
    const onError = (error: Error): void => {
      cleanup();
      reject(connectFailed(error));
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    // The peer's end (FIN) before what is needed: it can never come. An HTTP server's socket
    // allows half-open, so no 'close' follows (fixed bug: a client gone while the server waited
    // for key3 held its socket, and its maxConnections/maxConnectionsPerIp slot, until
    // handshakeTimeout).
    socket.on('end', onClose);
    socket.on('error', onError);
    socket.resume();
  });
}

/**
 * Serves a hybi-00 upgrade request (`responseHeaders` as handleUpgrade's; `started`, the
 * performance.now() the upgrade began at, for what is left of handshakeTimeout). Never rejects.
 */
export function handleHybi00Upgrade<State = undefined, Result = BeforeAcceptResult<State>>(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  target: UpgradeTarget<NoInfer<HookState<State, Result>>>,
  options: UpgradeOptions<State> & HookReturning<Result>,
  responseHeaders?: ResponseHeaderSource,
  started?: number,
): Promise<WebSocketConnection | undefined>;
export async function handleHybi00Upgrade<State>(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  target: UpgradeTarget<State>,
  options: UpgradeOptions<State>,
  responseHeaders?: ResponseHeaderSource,
  started?: number,
): Promise<WebSocketConnection | undefined> {
  const noop = (): void => {};
  socket.on('error', noop);
  // handshakeTimeout bounds the whole upgrade, key3 and the before-accept hook, as it does for
  // RFC 6455 (fixed bug: a hook that never settled held the socket, and serve()'s close(), for
  // good); `started` (performance.now()) when the upgrade began before its head was read (what
  // is left of handshakeTimeout then: see handleUpgrade).
  const timeout = handshakeTimeLeft(options, started);
  const deadline = setTimeout(() => socket.destroy(), timeout);
  deadline.unref?.();
  try {
    // draft-76 §5.2: the 8 key3 bytes follow the head, in the same packet (Node's `head`), in a
    // later one, or split across both.
    const bytes = await readUntil(socket, head, (b) => b.length >= HYBI00_KEY3_LENGTH, timeout, 1 << 20, options.handshakeTimeout ?? Defaults.handshakeTimeout);
    const key3 = bytes.subarray(0, HYBI00_KEY3_LENGTH);
    const rest = bytes.subarray(HYBI00_KEY3_LENGTH);
    const secure = socket instanceof TLSSocket || (req.socket as Socket | undefined) instanceof TLSSocket;
    // Validate keys and build the answer first: a bad request is 400 before any hook runs.
    const response = acceptHybi00({ method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders, secure, key3 });
    const requested = req.headers['sec-websocket-protocol'];
    // draft-76 has one protocol string, but our client (and old browsers) join several offers with
    // commas; read it as a list so that one of them can be chosen (the whole value never matched).
    const protocols = typeof requested === 'string' ? requested.split(',').map((p) => p.trim()).filter((p) => p !== '') : [];
    const negotiated = await negotiateAnswer(req, socket, { url: req.url ?? '/', protocols, extensions: undefined, secure, allowExtensions: false }, target, options, responseHeaders);
    if (negotiated === undefined || socket.destroyed || !socket.writable || refusedForShutdown(socket, options)) return undefined;
    if (negotiated.protocol !== '') response.headers.push(['Sec-WebSocket-Protocol', negotiated.protocol]);
    for (const h of negotiated.headers) response.headers.push(h);
    upgraded(socket);
    socket.write(serializeHybi00Response(response));
    (socket as Socket).setNoDelay?.(true);
    socket.removeListener('error', noop);
    return startConnection(socketTransport(socket as Socket), req, negotiated, options, rest, 'hybi00');
  } catch (error) {
    // No key3 in time (408) or the socket gone (0): nothing to answer.
    if (error instanceof HandshakeError && (error.status === 408 || error.status === 0)) socket.destroy();
    else failUpgrade(req, socket, error, options);
    return undefined;
  } finally {
    clearTimeout(deadline);
  }
}

/**
 * Parses a response head (status line and headers, lower-case names as Node's). A line that begins
 * with SP or HTAB continues the field before it (obs-fold), read as a space, as RFC 9112 §5.2 has a
 * user agent do, as over RFC 6455 (fixed bug: the continuation was dropped, so
 * `WWW-Authenticate:` folded before `Bearer` read as empty).
 */
function parseHead(text: string): { statusLine: string; headers: IncomingHttpHeaders } {
  const lines = text.split('\r\n');
  const headers: Record<string, string> = {};
  let last: string | undefined;
  for (const line of lines.slice(1)) {
    if ((line.charCodeAt(0) === 0x20 || line.charCodeAt(0) === 0x09) && last !== undefined) {
      const more = line.trim();
      if (more !== '') headers[last] = headers[last] === '' ? more : `${headers[last]} ${more}`;
      continue;
    }
    last = undefined;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    last = name;
  }
  return { statusLine: lines[0] ?? '', headers };
}

/**
 * A hybi-00 client connection (draft-76 §4.1), behind the same connection API. It waits for its
 * host's turn as `connect()`'s do (RFC 6455 §4.1, one connection in CONNECTING to a host; the
 * wait counts in `handshakeTimeout`), unless `serializeHandshakes: false` (fixed bug: called
 * directly, it connected at once beside another connection to the host still connecting).
 */
export async function connectHybi00(url: URL, options: ConnectOptions): Promise<WebSocketConnection> {
  if (options.serializeHandshakes === false) return openHybi00(url, options);
  const started = performance.now();
  const timeout = options.handshakeTimeout ?? Defaults.handshakeTimeout;
  const release = await takeTurn(hostKey(url, options.socketPath), timeout, timeout, options.signal);
  try {
    return await openHybi00(url, { ...options, handshakeTimeout: Math.max(0, timeout - (performance.now() - started)) }, release, timeout);
  } finally {
    release();
  }
}

/**
 * {@link connectHybi00} without taking a turn (`connect()` takes its own). `answered` is called
 * when a response head that is no 101 has come: the connection has failed (its body may still be
 * read), and the host's turn goes to the next, as over HTTP/1.1. `total`: the whole
 * handshakeTimeout, which a timeout's error names, when `options.handshakeTimeout` is what is left
 * of it (after a wait for the host's turn).
 * @internal
 */
export async function openHybi00(url: URL, options: ConnectOptions, answered?: () => void, total?: number): Promise<WebSocketConnection> {
  const secure = url.protocol === 'wss:' || url.protocol === 'https:';
  const port = Number(url.port || (secure ? 443 : 80));
  const hostname = bareHostname(url);
  const protocols = typeof options.protocols === 'string' ? [options.protocols] : [...(options.protocols ?? [])];
  const path = `${url.pathname || '/'}${url.search}`;
  let extra = headerList(options.headers);
  // A Host of the caller's replaces the URL's, as over RFC 6455, and the server builds the
  // location from it (fixed bug: both were sent, and a server answered 400 to the two Hosts).
  const ownHost = extra.find(([name]) => name.toLowerCase() === 'host')?.[1];
  // Upgrade and Connection are the handshake's, as over RFC 6455 (fixed bug: a caller's were sent
  // too, after the handshake's, and a server saw `Upgrade: WebSocket` and the caller's twice).
  const handshakes = ['host', 'upgrade', 'connection'];
  extra = extra.filter(([name]) => !handshakes.includes(name.toLowerCase()));
  const host = ownHost ?? url.host;
  const request = buildHybi00Request({ host, path, origin: options.origin, protocols });
  const timeout = options.handshakeTimeout ?? Defaults.handshakeTimeout;
  const named = total ?? timeout;
  // One handshakeTimeout for the TCP/TLS connect and the answer together, as over RFC 6455 (fixed
  // bug: each had a whole one, so a slow connect followed by a slow answer took up to twice it).
  const started = performance.now();
  const left = (): number => Math.max(0, timeout - (performance.now() - started));
  // Where to connect: a Unix socket, or host and port (with the local address, family and lookup given).
  const { socketPath, ...tcp } = socketOptions(options);
  const where = socketPath !== undefined ? { path: socketPath } : { host: hostname, port, ...tcp };
  const signal = options.signal;
  if (signal?.aborted) throw abortedHandshake(signal);
  const socket: Socket = secure
    ? tlsConnect({ ...where, ...sniOption(hostname), ...options.tls })
    : netConnect(where);
  socket.on('error', () => undefined);
  // The signal gives up the handshake (the socket goes, which fails what waits on it), not the connection.
  let aborted = false;
  const onAbort = (): void => {
    aborted = true;
    socket.destroy(abortedHandshake(signal!));
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = peerDeadline(() => reject(new HandshakeError(`handshake timed out after ${named} ms`, 0, { code: 'WS_HANDSHAKE_TIMEOUT' })), left());
      socket.once(secure ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(connectFailed(error));
      });
    });
    socket.write(encodeHybi00Request({ path: request.path, headers: [...request.headers, ...extra], key3: request.key3 }));
    const limit = options.maxHeaderSize ?? Defaults.maxHeaderSize;
    let seen: Buffer = Buffer.alloc(0);
    // What follows the head: the 16-byte answer after a 101; after anything else, a refusal's body
    // (its Content-Length, else up to the connection's end), at most MAX_ERROR_BODY bytes, as over
    // RFC 6455. (Fixed bugs: a refusal's body was cut at 16 bytes, and a refusal with a shorter
    // body on a connection the server kept open waited for handshakeTimeout, reported as a timeout.)
    const upgrades = (head: string): boolean => /^HTTP\/1\.[01] 101(?: |\r|$)/.test(head);
    const following = (head: string): number => {
      if (upgrades(head)) return HYBI00_ANSWER_LENGTH;
      const length = /\r\ncontent-length[ \t]*:[ \t]*(\d+)[ \t]*(?:\r|$)/i.exec(head);
      return length ? Math.min(Number(length[1]), MAX_ERROR_BODY) : MAX_ERROR_BODY;
    };
    // A head larger than maxHeaderSize ends the reading too, and fails below.
    const tooLarge = (b: Buffer, end: number): boolean => (end < 0 ? b.length : end) > limit;
    const bytes = await readUntil(
      socket,
      Buffer.alloc(0),
      (b) => {
        seen = b;
        const end = b.indexOf('\r\n\r\n');
        // A refusal's head: reading its body does not hold up the next connection to the host
        // (fixed bug: it held the host's turn until the body's end, or up to handshakeTimeout).
        if (end >= 0 && !upgrades(b.toString('latin1', 0, end))) answered?.();
        return tooLarge(b, end) || (end >= 0 && b.length >= end + 4 + following(b.toString('latin1', 0, end)));
      },
      left(),
      Infinity,
      named,
      // Status 0, as over RFC 6455 and at the connect above (fixed bug: a server that never
      // answered gave status 408, a status it never sent).
      0,
    ).catch((error: unknown) => {
      // A refusal (e.g. 401 'who are you?') may end the connection before the end of its body (or
      // before the 16 bytes a 101 is followed by): verify what came, so the error carries the real
      // status instead of 0; so too a refusal whose body is still coming when time runs out.
      const end = seen.indexOf('\r\n\r\n');
      if (!(error instanceof HandshakeError) || end < 0) throw error;
      if (error.code === 'WS_CONNECT_FAILED' || (error.code === 'WS_HANDSHAKE_TIMEOUT' && !upgrades(seen.toString('latin1', 0, end)))) return seen;
      throw error;
    });
    const end = bytes.indexOf('\r\n\r\n');
    // Status 0 and WS_RESPONSE_TOO_LARGE, as over RFC 6455: the status is the one received, and no
    // status was (fixed bug: 431 WS_HEAD_TOO_LARGE, a status the server never sent).
    if (tooLarge(bytes, end)) throw new HandshakeError(`response head too large: over ${limit} bytes`, 0, { code: 'WS_RESPONSE_TOO_LARGE' });
    const { statusLine, headers } = parseHead(bytes.subarray(0, end).toString('latin1'));
    const body = bytes.subarray(end + 4, end + 4 + following(bytes.toString('latin1', 0, end)));
    // draft-76 §4.1: the URL connected to, its port left out when it is the scheme's default.
    const defaultPort = secure ? ':443' : ':80';
    const location = `${secure ? 'wss' : 'ws'}://${host.endsWith(defaultPort) ? host.slice(0, -defaultPort.length) : host}${path}`;
    const { protocol } = verifyHybi00Response(statusLine, headers, body, request.expected, { origin: options.origin, location, protocols });
    socket.setNoDelay(true);
    return new WebSocketConnection(
      socketTransport(socket),
      { side: 'client', variant: 'hybi00', protocol: protocol ?? '', requestLine: statusLine, url: path, headers },
      options,
      bytes.subarray(end + 4 + HYBI00_ANSWER_LENGTH),
    );
  } catch (error) {
    socket.destroy();
    throw aborted ? abortedHandshake(signal!) : error;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
