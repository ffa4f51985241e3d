/**
 * Small HTTP/1.1 helpers shared by the handshakes: header token lists and response bytes.
 */
import { STATUS_CODES, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';

/** Header values that may be written: no CR, LF or NUL (response splitting). */
const SAFE_VALUE = /^[^\r\n\0]*$/;
/** RFC 9110 §5.1 field-name = token. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** `scheme://authority` at the start of an absolute-form request target. */
const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/;

/**
 * An absolute-form request target a WebSocket server takes (RFC 6455 §4.2.1: "an absolute
 * HTTP/HTTPS URI containing the /resource name/"; `ws:` and `wss:` too, which name the same
 * resource): the scheme, a non-empty authority of RFC 3986 characters without userinfo (RFC 9110
 * §4.2.4: a recipient treats it as an error), then nothing or the path and query.
 */
const WEBSOCKET_ABSOLUTE_FORM = /^(?:https?|wss?):\/\/(?:%[0-9A-Fa-f]{2}|[0-9A-Za-z._~!$&'()*+,;=:[\]-])+(?:[/?#]|$)/i;

/**
 * True when `url` is a request target a WebSocket handshake may carry (RFC 6455 §4.2.1 item 1): an
 * origin-form path (`/chat?x=1`, RFC 9112 §3.2.1) or an absolute-form `http:`, `https:`, `ws:` or
 * `wss:` URI with a host (`http://example.com/chat`, §3.2.2). The asterisk-form (`*`, OPTIONS
 * only), the authority-form (CONNECT only), an `http:` URI without a host (RFC 9110 §4.2.1: invalid)
 * and any other scheme are not, nor is one with userinfo (`http://user@host/`): Node's parser lets
 * `*` and every `scheme://` through.
 */
export function isWebSocketTarget(url: string): boolean {
  return url.charCodeAt(0) === 0x2f /* / */ || WEBSOCKET_ABSOLUTE_FORM.test(url);
}

/**
 * RFC 9110 §7.2: `Host = uri-host [ ":" port ]` (RFC 3986): a reg-name or IPv4 address (unreserved
 * characters, sub-delims, percent escapes) or an IP-literal in brackets, then digits after a colon.
 */
const HOST = /^(?:\[[0-9A-Za-z._~!$&'()*+,;=:%-]+\]|(?:%[0-9A-Fa-f]{2}|[0-9A-Za-z._~!$&'()*+,;=-])+)(?::[0-9]*)?$/;

/**
 * True when `value` is a valid Host field value (RFC 9110 §7.2). RFC 9112 §3.2 has a server answer
 * 400 to a Host with an invalid value (`a b`, `a/b`, `user@host`, `a:b`); Node's parser checks only
 * that the characters may appear in a header.
 */
export function isValidHost(value: string): boolean {
  return HOST.test(value);
}

/**
 * The path of a request target, without the query or a fragment. An absolute-form target
 * (`GET http://host/chat HTTP/1.1`) gives its path: RFC 6455 §4.2.1 has servers take "an absolute
 * HTTP/HTTPS URI containing the /resource name/" (and RFC 9112 §3.2.2 every HTTP/1.1 server), as
 * Racket's service mapper does (fixed bug: such a request got 404 from the service mapper).
 * A `#fragment`, which no request target may carry (RFC 6455 §3, RFC 9112 §3.2) but Node's parser
 * lets through, is not part of the path either, as in Racket's mapper and in the routers of
 * Express, Koa and Fastify (fixed bug: `/chat#x` got 404 from the mapper, and from the Koa adapter
 * after its middleware had claimed the path).
 */
export function targetPath(url: string): string {
  let path = url;
  if (path.charCodeAt(0) !== 0x2f /* / */) {
    const scheme = ABSOLUTE_FORM.exec(path);
    if (scheme) path = `/${path.slice(scheme[0].length).replace(/^\//, '')}`;
  }
  const query = path.indexOf('?');
  const fragment = path.indexOf('#');
  const end = query < 0 ? fragment : fragment < 0 ? query : Math.min(query, fragment);
  return end < 0 ? path : path.slice(0, end);
}

/** The value of a header as one string (repeated headers joined with ', '), or undefined. */
export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** Comma-separated tokens of a header, trimmed and lower-cased (RFC 9110 §5.6.1). */
export function tokenList(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  const joined = Array.isArray(value) ? value.join(',') : value;
  const tokens: string[] = [];
  for (const part of joined.split(',')) {
    const token = part.trim().toLowerCase();
    if (token !== '') tokens.push(token);
  }
  return tokens;
}

/**
 * True when the comma-separated header value contains `token` (lower-case), case-insensitively.
 * A value exactly as long as the token is compared whole, without splitting.
 */
export function hasHeaderToken(value: string | string[] | undefined, token: string): boolean {
  if (typeof value === 'string' && value.length === token.length) return value.toLowerCase() === token;
  return tokenList(value).includes(token);
}

/** True when `value` is an RFC 9110 token (as subprotocol names must be, RFC 6455 §4.1). */
export function isToken(value: string): boolean {
  return TOKEN.test(value);
}

/** HTTP headers as `[name, value]` pairs, in order (a name may repeat). */
export type HeaderList = Array<[string, string]>;

/** Normalizes user headers (object or list) into a checked list. Throws TypeError on unsafe input. */
export function headerList(headers: OutgoingHttpHeaders | HeaderList | undefined): HeaderList {
  const list: HeaderList = [];
  if (!headers) return list;
  const entries: Array<[string, unknown]> = Array.isArray(headers) ? headers : Object.entries(headers);
  for (const [name, value] of entries) {
    if (value === undefined) continue;
    if (!TOKEN.test(name)) throw new TypeError(`invalid header name ${JSON.stringify(name)}`);
    for (const v of Array.isArray(value) ? value : [value]) {
      const text = String(v);
      if (!SAFE_VALUE.test(text)) throw new TypeError(`invalid value for header ${name}`);
      list.push([name, text]);
    }
  }
  return list;
}

/** `Name: value\r\n` for each header, in order. */
export function headerLines(headers: HeaderList): string {
  let lines = '';
  // An indexed loop: for-of with destructuring makes an iterator and its results on every call
  // (every 101 response calls this, usually with no header at all).
  for (let i = 0; i < headers.length; i++) {
    const header = headers[i]!;
    lines += header[0] + ': ' + header[1] + '\r\n';
  }
  return lines;
}

/** Serializes an HTTP/1.1 response head (and body) into bytes to write to a raw socket. */
export function formatResponse(status: number, headers: HeaderList, body?: string | Buffer, reasonPhrase?: string): Buffer {
  const head = `HTTP/1.1 ${status} ${reasonPhrase ?? STATUS_CODES[status] ?? 'Unknown'}\r\n${headerLines(headers)}\r\n`;
  if (body === undefined || body.length === 0) return Buffer.from(head, 'latin1');
  return Buffer.concat([Buffer.from(head, 'latin1'), typeof body === 'string' ? Buffer.from(body) : body]);
}

/**
 * Headers of a given error response (a `beforeAccept` refusal's) that the response's own framing
 * replaces: it is closed after its body (`Connection: close`) and that body has a Content-Length.
 * A `Transfer-Encoding` next to it made a response that contradicted itself (RFC 9112 §6.1), whose
 * unchunked body a client read as chunks or refused outright (Node's parser: "Content-Length can't
 * be present with Transfer-Encoding"); over HTTP/2 these connection-specific headers made the
 * refusal a 500 instead (fixed bug: both answered alike now, the headers left out).
 */
const ERROR_FRAMING = new Set(['content-length', 'connection', 'transfer-encoding', 'keep-alive', 'proxy-connection', 'te', 'trailer']);

/**
 * A complete error response: plain-text body, Content-Length, `Connection: close`, plus the given
 * headers (which may override Content-Type; those of the framing, Transfer-Encoding, Connection,
 * Keep-Alive…, are left out).
 */
export function formatErrorResponse(status: number, message: string | Buffer, headers: HeaderList = []): Buffer {
  const body = typeof message === 'string' ? Buffer.from(message.endsWith('\n') || message === '' ? message : message + '\n') : message;
  const list: HeaderList = [['Connection', 'close']];
  if (!headers.some(([n]) => n.toLowerCase() === 'content-type')) list.push(['Content-Type', 'text/plain; charset=utf-8']);
  list.push(['Content-Length', String(body.length)]);
  for (const h of headers) if (!ERROR_FRAMING.has(h[0].toLowerCase())) list.push(h);
  return formatResponse(status, list, body);
}

/** More than one Host header line in `raw` (name, value, name, value, ...: Node's `rawHeaders`); RFC 9112 §3.2 makes that a 400. */
export function repeatsHost(raw: readonly string[]): boolean {
  let seen = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host') {
      if (seen) return true;
      seen = true;
    }
  }
  return false;
}
