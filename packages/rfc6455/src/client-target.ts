/**
 * Where a client connection goes: the socket options of `connect()` (a Unix socket, the local
 * address, family and lookup) and `ws+unix:` URLs, shared by the RFC 6455 and hybi-00 clients;
 * and the error of a handshake its `signal` gave up, shared with the HTTP/2 client.
 */
import { isIP, type LookupFunction } from 'node:net';
import type { Readable } from 'node:stream';
import type { IncomingHttpHeaders } from 'node:http';
import { HandshakeError } from './errors.js';

/** The most of a refusal's body a client keeps (`HandshakeError.body`), over HTTP/1.1 and HTTP/2. */
export const MAX_ERROR_BODY = 64 * 1024;

/**
 * Reads a refusal's body (an HTTP/1.1 response or an HTTP/2 stream): calls `done` at its end, or
 * once MAX_ERROR_BODY bytes are in (the rest is not read). Returns what came so far, at most
 * MAX_ERROR_BODY bytes (also for a handshake that times out first).
 */
export function refusalBody(body: Readable, done: () => void): () => Buffer {
  const chunks: Buffer[] = [];
  let size = 0;
  body.on('data', (chunk: Buffer) => {
    if (size < MAX_ERROR_BODY) chunks.push(chunk.subarray(0, MAX_ERROR_BODY - size));
    size += chunk.length;
    if (size >= MAX_ERROR_BODY) done();
  });
  body.on('end', done);
  return () => Buffer.concat(chunks);
}

const isHex = (byte: number | undefined): boolean => byte !== undefined && ((byte >= 0x30 && byte <= 0x39) || ((byte | 0x20) >= 0x61 && (byte | 0x20) <= 0x66));

/**
 * The URL standard's percent-decode: the UTF-8 bytes of `text`, each `%` and two hex digits
 * replaced by the byte they name; any other `%` is kept as it is (never an error).
 */
export function percentDecode(text: string): Buffer {
  const input = Buffer.from(text, 'utf8');
  const output = Buffer.alloc(input.length);
  let length = 0;
  for (let i = 0; i < input.length; i++) {
    const byte = input[i]!;
    if (byte === 0x25 && isHex(input[i + 1]) && isHex(input[i + 2])) {
      output[length++] = Number.parseInt(input.toString('latin1', i + 1, i + 3), 16);
      i += 2;
    } else {
      output[length++] = byte;
    }
  }
  return output.subarray(0, length);
}

/** The host name of a URL as sockets take it: an IPv6 literal without its brackets. */
export function bareHostname(url: URL): string {
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
}

/**
 * The TLS `servername` (SNI) for a host of a `wss:` URL (without an IPv6 literal's brackets), as
 * RFC 6066 §3 has it: none for an IP address ("literal IPv4 and IPv6 addresses are not
 * permitted"), and a DNS name "without a trailing dot" (`example.com.` is sent as `example.com`,
 * as curl, Go, .NET and rustls send it; fixed bug: the dot was sent). The `Host` header keeps the
 * URL's host as it is. A `servername` in the caller's `tls` options still wins.
 */
export function sniOption(hostname: string): { servername?: string } {
  if (isIP(hostname) !== 0) return {};
  return { servername: hostname.endsWith('.') ? hostname.slice(0, -1) : hostname };
}

/** The options of `connect()` that choose how its socket is made. */
export interface SocketChoice {
  socketPath?: string;
  localAddress?: string;
  family?: 0 | 4 | 6;
  lookup?: LookupFunction;
}

/** Those options of `options` that are set (for `http.request`, `net.connect`, `tls.connect`). */
export function socketOptions(options: SocketChoice): SocketChoice {
  const out: SocketChoice = {};
  if (options.socketPath !== undefined) out.socketPath = options.socketPath;
  if (options.localAddress !== undefined) out.localAddress = options.localAddress;
  if (options.family !== undefined) out.family = options.family;
  if (options.lookup !== undefined) out.lookup = failingLookup(options.lookup);
  return out;
}

/**
 * `lookup`, with what it throws (before calling back) called back as its error, on the next tick,
 * as Node reports a lookup's failure: the connection fails with `WS_CONNECT_FAILED`, the error as
 * its `cause`, over HTTP/1.1, HTTP/2 and hybi-00, as for a lookup that calls back with an error.
 * (Fixed bug: Node's connect calls the lookup synchronously and lets what it throws through, so
 * connect() rejected with that raw error.)
 */
function failingLookup(lookup: LookupFunction): LookupFunction {
  return ((hostname: string, options: unknown, callback: (...args: unknown[]) => void) => {
    let called = false;
    const answer = (...args: unknown[]): void => {
      called = true;
      callback(...args);
    };
    try {
      (lookup as (hostname: string, options: unknown, callback: (...args: unknown[]) => void) => void)(hostname, options, answer);
    } catch (error) {
      // (Thrown once the lookup had called back: from what the callback ran, not the lookup's.)
      if (called) throw error;
      process.nextTick(callback, error);
    }
  }) as LookupFunction;
}

/**
 * A `ws+unix:` / `wss+unix:` URL (`ws+unix:///path/to/socket:/request/path?query`): the socket's
 * path, and the ws:/wss: URL of the request (host `localhost`). Undefined for any other scheme.
 */
export function unixTarget(url: URL): { target: URL; socketPath: string } | undefined {
  if (url.protocol !== 'ws+unix:' && url.protocol !== 'wss+unix:') return undefined;
  // Split at the first ':' before decoding: only the socket's path is percent-decoded (a ':' in it
  // written %3A); the request path is sent as the URL has it (fixed bug: it was decoded too, so
  // %23 cut it short and lost the query, %3F began a query, %2F became a '/', %25 a bare '%').
  const full = url.pathname;
  const colon = full.indexOf(':');
  // (Decoded as the URL standard decodes: a '%' that begins no escape stays; decodeURIComponent
  // threw 'URI malformed' for /tmp/50%off.sock.)
  const socketPath = percentDecode(colon < 0 ? full : full.slice(0, colon)).toString('utf8');
  if (socketPath === '') throw new TypeError(`no socket path in ${url.href} (use ws+unix:///path/to/socket:/request/path)`);
  const path = colon < 0 ? '/' : full.slice(colon + 1) || '/';
  const target = new URL(`${url.protocol === 'wss+unix:' ? 'wss' : 'ws'}://localhost${path.startsWith('/') ? path : `/${path}`}${url.search}`);
  return { target, socketPath };
}

/**
 * Where a response asks to be followed: the Location of a 3xx, when it has one that is not empty
 * (the same test over HTTP/1.1 and HTTP/2, and for a 3xx that a handshake failed with). @internal
 */
export function redirectLocation(status: number, headers: IncomingHttpHeaders): string | undefined {
  if (status < 300 || status >= 400) return undefined;
  const location = headers.location;
  return typeof location === 'string' && location !== '' ? location : undefined;
}

/**
 * A connection that failed with `error` (a socket error, or what a connection factory threw):
 * `WS_CONNECT_FAILED`, status 0, `error` as the cause. @internal
 */
export function connectFailed(error: unknown): HandshakeError {
  const message = (error as { message?: unknown } | null)?.message;
  return new HandshakeError(`connection failed: ${String(message ?? error)}`, 0, { code: 'WS_CONNECT_FAILED', cause: error });
}

/**
 * What a connection factory of the caller's threw (an `agent`'s or HTTP/2 `sessionOptions`'
 * `createConnection`), thrown again as the connection's failure ({@link connectFailed}), as when
 * the factory reports it as an error (fixed bug: connect() rejected with the raw error). A
 * TypeError or RangeError stays itself: an option Node refused (an http.Agent for wss:, TLS
 * options it cannot take), as without a factory. (By name: Node's errors are of its own realm's
 * classes, not always of the caller's.) @internal
 */
export function factoryFailed(error: unknown): never {
  const name = (error as { name?: unknown } | null)?.name;
  if (name === 'TypeError' || name === 'RangeError') throw error;
  throw connectFailed(error);
}

/**
 * The error of a handshake given up by its `signal`, as Node's HTTP client makes the RFC 6455 one
 * fail: `WS_CONNECT_FAILED`, caused by an `AbortError` (code `ABORT_ERR`) whose cause is the
 * signal's reason. Used by the hybi-00 and HTTP/2 clients, which make their connections themselves.
 */
export function abortedHandshake(signal: AbortSignal): HandshakeError {
  const abort = Object.assign(new Error('The operation was aborted', { cause: signal.reason }), { name: 'AbortError', code: 'ABORT_ERR' });
  return connectFailed(abort);
}

/**
 * Watches the response status lines coming on `socket` (read before Node's HTTP parser reads
 * them: Node takes `RTSP/1.0 101` and `ICE/1.0 101` for `HTTP/1.0 101` and tells which by
 * nothing). Interim 1xx responses other than 101 are skipped to the next status line; the
 * watch ends at the first line whose protocol is not `HTTP/`, or at the final response's.
 * Returns that line, if it is not HTTP, else undefined (read it once the response is in).
 */
export function watchStatusLine(socket: Readable): () => string | undefined {
  let line = '';
  let inStatus = true;
  let notHttp: string | undefined;
  const onData = (chunk: Buffer): void => {
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i]!;
      if (byte !== 0x0a) {
        // (Only the start of a line is needed: a long one is Node's parser's to refuse.)
        if (byte !== 0x0d && line.length < 256) line += String.fromCharCode(byte);
        continue;
      }
      const ended = line;
      line = '';
      if (inStatus) {
        if (ended === '') continue; // blank lines before a status line, as Node's parser skips
        if (!ended.startsWith('HTTP/')) notHttp = ended;
        // A final response (or a non-HTTP one): nothing after its status line is ours to read.
        if (notHttp !== undefined || !/^\S+ 1(?!01)\d\d(?: |$)/.test(ended)) return void socket.off('data', onData);
        inStatus = false;
      } else if (ended === '') {
        inStatus = true; // the end of an interim response's head: another status line follows
      }
    }
  };
  socket.prependListener('data', onData);
  return () => notHttp;
}
