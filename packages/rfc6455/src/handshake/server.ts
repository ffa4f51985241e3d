/**
 * The RFC 6455 server handshake (§4.2), pure: request facts in, a verdict out. The caller writes
 * the response; nothing here touches a socket.
 */
import * as crypto from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { GUID } from '../codec/constants.js';
import { HandshakeError } from '../errors.js';
import { hasHeaderToken, headerLines, headerValue, isToken, isValidHost, isWebSocketTarget, repeatsHost, type HeaderList } from './http.js';

/** The parts of an upgrade request the handshake looks at (Node's IncomingMessage has them). */
export interface UpgradeRequest {
  /** Request method; must be `GET`. */
  method?: string | undefined;
  /** HTTP major version; 1.1 or later is required. Default 1. */
  httpVersionMajor?: number | undefined;
  /** HTTP minor version. Default 1. */
  httpVersionMinor?: number | undefined;
  /**
   * The request target (path and query). When present, `validateRequest` refuses one that is
   * neither a path nor an absolute `http:`, `https:`, `ws:` or `wss:` URI (`*`, `ftp://x/`) with 400.
   */
  url?: string | undefined;
  /** Request headers, names lower-case (as Node gives them). */
  headers: IncomingHttpHeaders;
  /**
   * The header lines as received, name and value alternating (Node's `rawHeaders`). Optional: when
   * present, a request with more than one Host line is refused (RFC 9112 §3.2), which `headers`
   * cannot show (Node keeps the first Host).
   */
  rawHeaders?: readonly string[] | undefined;
}

/** What a valid RFC 6455 opening handshake offered. */
export interface ValidatedRequest {
  /** The client's Sec-WebSocket-Key, trimmed (pass it to `acceptKey`). */
  key: string;
  /** Subprotocols the client offered, in its order (case preserved: tokens are case-sensitive). */
  protocols: string[];
  /** Raw Sec-WebSocket-Extensions value, if any. */
  extensions: string | undefined;
}

/** Sec-WebSocket-Accept for a key (RFC 6455 §4.2.2 step 5.4). */
export function acceptKey(key: string): string {
  return oneShotHash !== undefined ? oneShotHash('sha1', key + GUID, 'base64') : crypto.createHash('sha1').update(key + GUID).digest('base64');
}

/** crypto.hash (Node 20.12+, 21.7+): one call, no Hash object; createHash where it is missing. */
const oneShotHash = (crypto as { hash?: (algorithm: string, data: string, encoding: 'base64') => string }).hash;

/** The start of every RFC 6455 101 response, up to the Sec-WebSocket-Accept value. */
const SWITCHING_PROTOCOLS = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ';

/**
 * The whole 101 response head (RFC 6455 §4.2.2 step 5) as a latin1 string: the accept value for
 * `key`, the chosen subprotocol and extensions when not empty, then `extra` headers.
 */
export function switchingProtocols(key: string, protocol: string, extensions: string, extra: HeaderList): string {
  let head = SWITCHING_PROTOCOLS + acceptKey(key) + '\r\n';
  if (protocol !== '') head += 'Sec-WebSocket-Protocol: ' + protocol + '\r\n';
  if (extensions !== '') head += 'Sec-WebSocket-Extensions: ' + extensions + '\r\n';
  return head + headerLines(extra) + '\r\n';
}

/** A base64 string that decodes to exactly 16 bytes (RFC 6455 §4.1 step 7). */
const KEY_PATTERN = /^[A-Za-z0-9+/]{22}==$/;

function reject(message: string, status = 400, code = 'WS_BAD_REQUEST', headers?: Record<string, string>): never {
  throw new HandshakeError(message, status, { code, headers });
}

/**
 * Parses Sec-WebSocket-Protocol (RFC 6455 §4.1 step 10, §11.3.4): comma-separated tokens, in the
 * client's order. Throws HandshakeError 400 on an empty element list or a non-token.
 */
export function parseProtocols(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  const joined = Array.isArray(value) ? value.join(',') : value;
  const protocols: string[] = [];
  for (const part of joined.split(',')) {
    const name = part.trim();
    if (name === '') continue;
    if (!isToken(name)) reject(`invalid subprotocol ${JSON.stringify(name)}`, 400, 'WS_BAD_PROTOCOL_HEADER');
    if (!protocols.includes(name)) protocols.push(name);
  }
  if (protocols.length === 0) reject('empty Sec-WebSocket-Protocol', 400, 'WS_BAD_PROTOCOL_HEADER');
  return protocols;
}

/**
 * True when the request asks for a WebSocket at all (Upgrade: websocket). Requests that do not are
 * plain HTTP and are answered 426 by `serve()`.
 */
export function isWebSocketUpgrade(headers: IncomingHttpHeaders): boolean {
  return hasHeaderToken(headers.upgrade, 'websocket');
}

/**
 * Checks an opening handshake (RFC 6455 §4.2.1). Throws HandshakeError with the status to answer:
 * 400 for a malformed request, 426 (with Sec-WebSocket-Version: 13) for another version.
 */
export function validateRequest(req: UpgradeRequest): ValidatedRequest {
  const headers = req.headers;
  // §4.2.1 item 1: an HTTP/1.1 or higher GET request.
  if (req.method !== 'GET') reject(`method ${req.method ?? '?'} is not GET`, 400, 'WS_BAD_METHOD');
  const major = req.httpVersionMajor ?? 1;
  const minor = req.httpVersionMinor ?? 1;
  if (major < 1 || (major === 1 && minor < 1)) reject('HTTP/1.1 or later is required', 400, 'WS_BAD_HTTP_VERSION');
  // ... whose Request-URI is a /resource name/ or an absolute HTTP/HTTPS URI naming one. Node's
  // parser lets `GET * HTTP/1.1` and any `scheme://...` through (fixed bug: a plain handler
  // accepted them, `conn.url === '*'`, where §4.2.1 requires a 400 and hybi-00 answered one). An
  // empty target (from code that rewrote `req.url`, never from the wire) is left as it was.
  const url = req.url;
  if (url !== undefined && url !== '' && !isWebSocketTarget(url)) reject(`request target ${JSON.stringify(url.slice(0, 64))} is not a path or an absolute http(s) URI`, 400, 'WS_BAD_TARGET');
  // No body (Content-Length other than 0, or Transfer-Encoding): a GET's content has no meaning and
  // is a request-smuggling shape (RFC 9110 §9.3.1), and Node hands it over as the start of the
  // WebSocket stream. Fixed bug: it got a 101, then its bytes were read as frames (a close 1002),
  // while a proxy in front saw a request body and then a tunnel.
  const length = headers['content-length'];
  if ((length !== undefined && length.trim() !== '0') || headers['transfer-encoding'] !== undefined) {
    reject('an upgrade request has no body (Content-Length or Transfer-Encoding)', 400, 'WS_REQUEST_BODY');
  }
  // item 2: a Host header, and only one (RFC 9112 §3.2: 400 for more than one Host line).
  if (!headers.host) reject('missing Host header', 400, 'WS_MISSING_HOST');
  if (req.rawHeaders !== undefined && repeatsHost(req.rawHeaders)) reject('more than one Host header', 400, 'WS_DUPLICATE_HOST');
  // RFC 9112 §3.2: a Host with an invalid value is a 400 too (fixed bug: `Host: a b`, `a/b` or
  // `user@host` got a 101, and reached the handler as req.headers.host).
  const host = headers.host;
  if (!isValidHost(host)) reject(`invalid Host header ${JSON.stringify(host.slice(0, 64))}`, 400, 'WS_BAD_HOST');
  // item 3: Upgrade containing "websocket" (case-insensitive).
  if (!isWebSocketUpgrade(headers)) reject('Upgrade header must include websocket', 400, 'WS_BAD_UPGRADE');
  // item 4: Connection containing "Upgrade" (case-insensitive).
  if (!hasHeaderToken(headers.connection, 'upgrade')) reject('Connection header must include Upgrade', 400, 'WS_BAD_CONNECTION');
  // item 6 / §4.4: a version we do not speak gets 426 and the versions we do.
  const version = headerValue(headers, 'sec-websocket-version');
  if (version?.trim() !== '13') {
    reject(version === undefined ? 'missing Sec-WebSocket-Version' : `unsupported Sec-WebSocket-Version ${version}`, 426, 'WS_BAD_VERSION', {
      'Sec-WebSocket-Version': '13',
    });
  }
  // item 5: a key that base64-decodes to 16 bytes.
  const key = headers['sec-websocket-key'];
  if (typeof key !== 'string' || !KEY_PATTERN.test(key.trim())) reject('invalid Sec-WebSocket-Key', 400, 'WS_BAD_KEY');
  const protocols = parseProtocols(headers['sec-websocket-protocol']);
  return { key: key.trim(), protocols, extensions: headerValue(headers, 'sec-websocket-extensions') };
}
