/**
 * Checks of the numeric (and a few other) options of every entry point, made where the options
 * are given (serve(), handleUpgrade(), connect(), the WebSocket classes, the adapters): a wrong
 * value is a TypeError or RangeError there, not a silent misbehaviour later (a NaN limit compares
 * false, so it disabled the limit; Infinity and 2^31 ms or more made setTimeout fire after 1 ms;
 * a bad maxMessageSize or window size failed every handshake with 500).
 */
import { isIP } from 'node:net';
import type { ConnectOptions } from './client.js';
import type { ConnectionOptions } from './connection.js';
import type { PerMessageDeflateOptions } from './extensions/deflate-negotiation.js';
import { isToken } from './handshake/http.js';
import type { UpgradeOptions } from './upgrade.js';

type Bound = 'positive' | 'nonNegative';

/** A set option that is not a number: a TypeError naming what it is. */
function numberType(where: string, name: string, value: unknown): value is number {
  if (value === undefined) return false;
  if (typeof value !== 'number') throw new TypeError(`${where}: ${name} must be a number, not ${shown(value)}`);
  return true;
}

/** A wrong option value as a message shows it: a string quoted, anything else by its type. */
function shown(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : typeof value;
}

function checkNumber(where: string, name: string, value: unknown, bound: Bound): void {
  if (!numberType(where, name, value)) return;
  if (bound === 'positive' ? !(value > 0) : !(value >= 0)) {
    throw new RangeError(`${where}: ${name} must be ${bound === 'positive' ? 'more than 0' : '0 or more'} (Infinity for no limit), not ${value}`);
  }
}

/** A set option that must be a boolean: `'false'` (an environment variable) is truthy, and was taken as on. */
function checkBoolean(where: string, name: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'boolean') {
    throw new TypeError(`${where}: ${name} must be true or false, not ${shown(value)}`);
  }
}

function checkInteger(where: string, name: string, value: unknown, min: number, max: number): void {
  if (!numberType(where, name, value)) return;
  if (!Number.isInteger(value) || value < min || value > max) throw new RangeError(`${where}: ${name} must be an integer from ${min} to ${max}, not ${value}`);
}

/**
 * Options of `ws` that have another name or no equivalent here, with what to do instead. Given to
 * us they were silently ignored (fixed bug): `verifyClient` let every client in, `maxPayload` left
 * the limit at 64 MiB, `rejectUnauthorized: false` at the top level of a client's options still
 * checked the certificate. A TypeError that names the replacement instead.
 */
const WS_CONNECTION_OPTIONS: Record<string, string> = {
  maxPayload: 'use maxMessageSize (and maxFrameSize, maxFragments)',
  skipUTF8Validation: "text is always checked (1007 on invalid UTF-8); textMessages: 'buffer' hands it over undecoded",
  autoPong: 'pings are always answered',
};
const WS_SERVER_OPTIONS: Record<string, string> = {
  verifyClient: 'use beforeAccept (a refusal with any status, state for the handler) and origins',
  handleProtocols: 'use protocols (a list, or a function of the offered list returning one of them)',
  noServer: "call handleUpgrade() from your server's 'upgrade' event",
  server: "call handleUpgrade() from that server's 'upgrade' event",
  clientTracking: 'serve() tracks its connections in server.connections; give handleUpgrade() a Set as connections',
};
const TLS_OPTION = 'TLS options go in tls: { ... }';
const WS_CLIENT_OPTIONS: Record<string, string> = {
  maxRedirects: 'use followRedirects: <number of redirects>',
  ca: TLS_OPTION, cert: TLS_OPTION, key: TLS_OPTION, pfx: TLS_OPTION, passphrase: TLS_OPTION,
  rejectUnauthorized: TLS_OPTION, servername: TLS_OPTION, checkServerIdentity: TLS_OPTION,
};
const WS_DEFLATE_OPTIONS: Record<string, string> = {
  zlibDeflateOptions: 'use perMessageDeflate.level and perMessageDeflate.memLevel',
  zlibInflateOptions: 'inflation takes no zlib options here',
};

function checkNotWs(where: string, options: object, names: Record<string, string>, prefix = ''): void {
  for (const name in names) {
    if ((options as Record<string, unknown>)[name] !== undefined) {
      throw new TypeError(`${where}: ${prefix}${name} is an option of ws, not of rfc6455 (it would do nothing): ${names[name]}`);
    }
  }
}

/** Connection options shared by every entry point. */
export function checkConnectionOptions(where: string, options: ConnectionOptions): void {
  checkNotWs(where, options, WS_CONNECTION_OPTIONS);
  checkNumber(where, 'maxMessageSize', options.maxMessageSize, 'positive');
  checkNumber(where, 'maxFrameSize', options.maxFrameSize, 'positive');
  checkNumber(where, 'maxFragments', options.maxFragments, 'positive');
  checkNumber(where, 'closeTimeout', options.closeTimeout, 'nonNegative');
  checkNumber(where, 'idleTimeout', options.idleTimeout, 'nonNegative');
  checkNumber(where, 'keepaliveInterval', options.keepaliveInterval, 'nonNegative');
  checkNumber(where, 'readHighWaterMark', options.readHighWaterMark, 'nonNegative');
  checkNumber(where, 'writeHighWaterMark', options.writeHighWaterMark, 'nonNegative');
  checkNumber(where, 'maxBufferedAmount', options.maxBufferedAmount, 'nonNegative');
  checkNumber(where, 'compressThreshold', options.compressThreshold, 'nonNegative');
  const text = options.textMessages;
  if (text !== undefined && text !== 'string' && text !== 'buffer') throw new TypeError(`${where}: textMessages must be 'string' or 'buffer', not ${String(text)}`);
  checkBoolean(where, 'directReads', options.directReads);
}

/** `perMessageDeflate` when it is an object of options. */
export function checkDeflateOptions(where: string, deflate: boolean | PerMessageDeflateOptions | undefined): void {
  if (deflate === undefined || typeof deflate === 'boolean') return;
  if (typeof deflate !== 'object' || deflate === null) throw new TypeError(`${where}: perMessageDeflate must be a boolean or an object of options`);
  const name = (key: string): string => `perMessageDeflate.${key}`;
  checkNotWs(where, deflate, WS_DEFLATE_OPTIONS, 'perMessageDeflate.');
  checkBoolean(where, name('serverNoContextTakeover'), deflate.serverNoContextTakeover);
  checkBoolean(where, name('clientNoContextTakeover'), deflate.clientNoContextTakeover);
  checkInteger(where, name('serverMaxWindowBits'), deflate.serverMaxWindowBits, 8, 15);
  checkInteger(where, name('clientMaxWindowBits'), deflate.clientMaxWindowBits, 8, 15);
  checkInteger(where, name('level'), deflate.level, -1, 9);
  checkInteger(where, name('memLevel'), deflate.memLevel, 1, 9);
  checkInteger(where, name('concurrencyLimit'), deflate.concurrencyLimit, 1, Number.MAX_SAFE_INTEGER);
  checkNumber(where, name('threshold'), deflate.threshold, 'nonNegative');
  checkNumber(where, name('syncLimit'), deflate.syncLimit, 'nonNegative');
}

const checked = new WeakSet<object>();

/**
 * Checks the numeric options (limits, timeouts, permessage-deflate parameters), `origins` and
 * `protocols` (an array of strings or a function) and the boolean switches of
 * `handleUpgrade()` options as `serve()` and `handleUpgrade()` do, throwing at once for a
 * wrong one rather than failing every upgrade later. Framework adapters call it when they are
 * set up; call it where your own code builds options for `handleUpgrade()`. An object that passed
 * is not checked again (handleUpgrade() checks the options object of every request).
 * @param where the entry point to name in the error message, e.g. `'websocket()'`.
 * @throws TypeError for a value of the wrong type, RangeError for one out of range (see
 * docs/limits-and-security.md).
 */
export function checkUpgradeOptions(
  where: string,
  options: Pick<UpgradeOptions, keyof ConnectionOptions | 'handshakeTimeout' | 'perMessageDeflate' | 'origins' | 'protocols' | 'hybi00'>,
): void {
  if (checked.has(options)) return;
  checkNotWs(where, options, WS_SERVER_OPTIONS);
  checkHandshakeOptions(where, options);
  checkChoices(where, 'origins', options.origins, 'origin');
  // (false: none, as a protocols() function may answer.)
  if (options.protocols !== false) checkChoices(where, 'protocols', options.protocols, 'subprotocol');
  checkBoolean(where, 'hybi00', options.hybi00);
  checked.add(options);
}

/**
 * `origins` and `protocols`: a list of strings, or a function. Fixed bug: a string was taken as
 * the list, and its `includes()` matched any part of it, so `origins: 'https://app.example.com'`
 * let `https://app.example.co` (and `https://a`) in, and `protocols: 'chat.v2'` chose a client's
 * `v2`; a Set failed every upgrade with 500.
 */
function checkChoices(where: string, name: string, value: unknown, item: string): void {
  if (value === undefined || typeof value === 'function') return;
  if (!Array.isArray(value) || !value.every((entry) => typeof entry === 'string')) {
    const what = typeof value === 'string' ? `a string (${JSON.stringify(value)}: write [${JSON.stringify(value)}])` : value === null ? 'null' : Array.isArray(value) ? 'an array with a value that is not a string' : typeof value === 'object' ? `a ${value.constructor?.name ?? 'object'} (use an array)` : typeof value;
    throw new TypeError(`${where}: ${name} must be an array of ${item} strings or a function, not ${what}`);
  }
}

/** The connection options, handshakeTimeout and perMessageDeflate, every time. */
function checkHandshakeOptions(where: string, options: Pick<UpgradeOptions, keyof ConnectionOptions | 'handshakeTimeout' | 'perMessageDeflate'>): void {
  checkConnectionOptions(where, options);
  checkNumber(where, 'handshakeTimeout', options.handshakeTimeout, 'positive');
  checkDeflateOptions(where, options.perMessageDeflate);
}

/**
 * `connections` given to an entry point that tracks its connections in a set of its own (serve():
 * `server.connections`; the adapters'): a TypeError that says where they are. (Fixed bug: the
 * entry point's own set replaced the one given, silently, so a Set of the caller's stayed empty.
 * Both cannot be filled: a connection is in one set, which its shutdown and idle timers use.)
 * @param where the entry point, for the message.
 * @param connections the option as given.
 * @param own where that entry point's connections are, for the message.
 * @throws TypeError when `connections` is given.
 */
export function checkOwnConnections(where: string, connections: unknown, own: string): void {
  if (connections === undefined) return;
  throw new TypeError(`${where}: connections is not taken here: its connections are in ${own} (a Set of yours is for handleUpgrade(), attachHttp2() and connect())`);
}

/** serve()'s own limits, and where it listens. */
export function checkServeOptions(options: { maxConnections?: number; maxConnectionsPerIp?: number; path?: string; port?: number; host?: string; http2?: boolean; tuneAllocator?: boolean; connections?: unknown }): void {
  checkOwnConnections('serve()', options.connections, 'server.connections');
  // ws's `path` is the URL path to accept: `{ port: 8080, path: '/ws' }` made a Unix domain socket
  // at /ws and left the port unused (fixed bug).
  if (options.path !== undefined && (options.port !== undefined || options.host !== undefined)) {
    throw new TypeError(
      `serve(): path is a Unix domain socket to listen on instead of port and host, not both (ws's path option, the URL path to accept, is serviceMapper([{ path, handler }]) here)`,
    );
  }
  checkNumber('serve()', 'maxConnections', options.maxConnections, 'nonNegative');
  checkNumber('serve()', 'maxConnectionsPerIp', options.maxConnectionsPerIp, 'nonNegative');
  checkBoolean('serve()', 'http2', options.http2);
  checkBoolean('serve()', 'tuneAllocator', options.tuneAllocator);
}

/**
 * Request headers the handshake writes itself, with what to do instead. Given in `headers` they
 * were silently replaced (over HTTP/1.1), sent in place of the handshake's (a Sec-WebSocket-Version
 * over HTTP/2), sent twice (hybi-00), or sent so that the server's answer to them failed the
 * handshake (a Sec-WebSocket-Protocol or -Extensions of the caller's: WS_BAD_PROTOCOL, or
 * WS_BAD_EXTENSION_RESPONSE). Fixed bug; now a TypeError. (`Upgrade`, `Connection` and `Host` may
 * be given: the first two are the handshake's, a `Host` replaces the URL's.)
 */
const HANDSHAKE_HEADERS: Record<string, string> = {
  'sec-websocket-key': 'the handshake makes a fresh key',
  'sec-websocket-key1': 'the hybi-00 handshake makes a fresh key',
  'sec-websocket-key2': 'the hybi-00 handshake makes a fresh key',
  'sec-websocket-version': 'the handshake sends 13',
  'sec-websocket-accept': 'it is a response header',
  'sec-websocket-protocol': 'use the protocols option',
  'sec-websocket-extensions': 'use the perMessageDeflate option',
};
/**
 * A header value as Node's HTTP/1.1 client and nghttp2 accept it: tab, visible ASCII, space and
 * obs-text (RFC 9110 §5.5); no CR, LF, NUL or other control character.
 */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * `headers` and `origin` of a client, checked before anything connects, whatever the transport.
 * Fixed bug: only Node's HTTP/1.1 client refused a CR, LF or NUL; over HTTP/2 a connection was
 * made first, then such a header was dropped, failed the stream (NGHTTP2_PROTOCOL_ERROR), or, in a
 * name, left the handshake waiting for handshakeTimeout; a name such as `:path` replaced the
 * request's own pseudo-header.
 */
function checkRequestHeaders(where: string, headers: unknown, origin: unknown): void {
  if (origin !== undefined && (typeof origin !== 'string' || !FIELD_VALUE.test(origin))) {
    throw new TypeError(`${where}: origin must be a string that a header can carry, not ${shown(origin)}`);
  }
  if (headers === undefined) return;
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) throw new TypeError(`${where}: headers must be an object of header names and values`);
  for (const [name, value] of Object.entries(headers)) {
    // RFC 9110 §5.1: a field name is a token.
    if (!isToken(name)) throw new TypeError(`${where}: invalid header name ${JSON.stringify(name)}`);
    if (value === undefined) continue;
    const instead = HANDSHAKE_HEADERS[name.toLowerCase()];
    if (instead !== undefined) throw new TypeError(`${where}: the ${name} header is the handshake's own (${instead})`);
    for (const item of Array.isArray(value) ? (value as unknown[]) : [value]) {
      if (!FIELD_VALUE.test(String(item))) throw new TypeError(`${where}: invalid character in the value of header ${name}`);
    }
  }
}

/**
 * A client's extra request `headers`, checked as `connect()` checks its own: each name a token,
 * no CR, LF, NUL or other control character in a value, and none of the handshake's own headers
 * (Sec-WebSocket-Key, -Version, -Accept, -Protocol, -Extensions: the handshake writes them from its
 * options). For code that sends a handshake of its own, such as an adapter's in-memory client.
 * @param where the entry point to name in the error message, e.g. `'injectWS()'`.
 * @param headers the headers object as given (undefined: nothing to check).
 * @throws TypeError for a header that cannot be sent or that the handshake writes itself.
 */
export function checkClientHeaders(where: string, headers: unknown): void {
  checkRequestHeaders(where, headers, undefined);
}

/**
 * connect()'s own options, checked where they are given: `where` names that call in the messages
 * (`new WebSocket()` and `new WebSocketStream()` check them too; they said `connect():`).
 */
export function checkClientOptions(options: Pick<ConnectOptions, Exclude<keyof ConnectOptions, 'protocols' | 'signal'>>, where = 'connect()'): void {
  // Not remembered: a client's options object may be changed between two connect() calls.
  checkHandshakeOptions(where, options);
  checkNotWs(where, options, WS_CLIENT_OPTIONS);
  checkRequestHeaders(where, options.headers, options.origin);
  checkBoolean(where, 'serializeHandshakes', options.serializeHandshakes);
  // As Node's HTTP/1.1 client checks it, for every transport: hybi-00 reads the response head with
  // a parser of its own, where -1 or 1.5 failed every handshake (WS_RESPONSE_TOO_LARGE) and NaN or
  // '16384' lifted the limit (fixed bug). From 1: Node's HTTP/1.1 client takes 0 for its own
  // default, where HTTP/2 and hybi-00 failed every handshake with it (fixed bug).
  checkInteger(where, 'maxHeaderSize', options.maxHeaderSize, 1, Number.MAX_SAFE_INTEGER);
  const follow = options.followRedirects;
  if (follow !== undefined && typeof follow !== 'boolean') checkInteger(where, 'followRedirects', follow, 0, Number.MAX_SAFE_INTEGER);
  // (Fixed bug: `variant: 'hybi-00'` spoke RFC 6455, and `http2: 'false'` HTTP/2.)
  const variant = options.variant;
  if (variant !== undefined && variant !== 'rfc6455' && variant !== 'hybi00') throw new TypeError(`${where}: variant must be 'rfc6455' or 'hybi00', not ${String(variant)}`);
  // The socket options: Node checks family and lookup only when it looks a host name up, so with
  // an IP address in the URL `family: 5`, `family: '4'` or a `lookup` that is no function was
  // ignored, and the same options failed for a host name (fixed bug). Checked here for every URL.
  const family = options.family as unknown;
  if (family !== undefined) {
    if (typeof family !== 'number') throw new TypeError(`${where}: family must be 4 or 6 (0 for either), not ${shown(family)}`);
    if (family !== 0 && family !== 4 && family !== 6) throw new RangeError(`${where}: family must be 4 or 6 (0 for either), not ${family}`);
  }
  if (options.lookup !== undefined && typeof options.lookup !== 'function') throw new TypeError(`${where}: lookup must be a function (dns.lookup's signature), not ${typeof options.lookup}`);
  const local = options.localAddress as unknown;
  if (local !== undefined && (typeof local !== 'string' || isIP(local) === 0)) throw new TypeError(`${where}: localAddress must be an IP address, not ${shown(local)}`);
  const http2 = options.http2 as unknown;
  if (http2 !== undefined && typeof http2 !== 'boolean' && (typeof http2 !== 'object' || http2 === null)) {
    throw new TypeError(`${where}: http2 must be true, false or a ClientHttp2Session, not ${http2 === null ? 'null' : shown(http2)}`);
  }
}
