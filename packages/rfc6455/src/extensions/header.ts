/**
 * Parsing and formatting of the `Sec-WebSocket-Extensions` header (RFC 6455 §9.1).
 *
 * ```
 * Sec-WebSocket-Extensions = extension-list
 * extension-list = 1#extension
 * extension = extension-token *( ";" extension-param )
 * extension-param = token [ "=" (token | quoted-string) ]
 * ```
 * A quoted-string value must be a token once unescaped (RFC 6455 §9.1). Extension and parameter
 * names are case-insensitive and returned in lower case; values are returned as written.
 */
import { HandshakeError } from '../errors.js';

/** One extension of an offer or response, with its parameters in header order. */
export interface ExtensionOffer {
  /** Lower-cased extension token, e.g. `permessage-deflate`. */
  name: string;
  /** Lower-cased parameter names; `true` when the parameter has no value. Duplicates are kept. */
  params: Array<[string, string | true]>;
}

/** tchar of RFC 7230 §3.2.6. */
const TCHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** True when `value` is a non-empty RFC 7230 token. */
export function isToken(value: string): boolean {
  return TCHAR.test(value);
}

function isTchar(code: number): boolean {
  return (
    (code >= 0x61 && code <= 0x7a) || // a-z
    (code >= 0x41 && code <= 0x5a) || // A-Z
    (code >= 0x30 && code <= 0x39) || // 0-9
    '!#$%&\'*+-.^_`|~'.includes(String.fromCharCode(code))
  );
}

function fail(header: string, message: string, at: number): never {
  throw new HandshakeError(`invalid Sec-WebSocket-Extensions header: ${message} at offset ${at}`, 400, {
    code: 'WS_BAD_EXTENSIONS_HEADER',
    headers: { 'sec-websocket-extensions': header },
  });
}

/**
 * Parses one or several `Sec-WebSocket-Extensions` header values (several header lines are
 * joined as one comma-separated list, RFC 7230 §3.2.2). Empty list elements are ignored
 * (RFC 7230 §7); an absent or blank header gives `[]`.
 * @throws HandshakeError status 400, code `WS_BAD_EXTENSIONS_HEADER`, on a syntax error.
 */
export function parseExtensions(value: string | string[] | undefined): ExtensionOffer[] {
  if (value === undefined) return [];
  const header = Array.isArray(value) ? value.join(', ') : value;
  const offers: ExtensionOffer[] = [];
  const n = header.length;
  let i = 0;

  const skipWs = (): void => {
    while (i < n && (header.charCodeAt(i) === 0x20 || header.charCodeAt(i) === 0x09)) i++;
  };
  const readToken = (what: string): string => {
    const start = i;
    while (i < n && isTchar(header.charCodeAt(i))) i++;
    if (i === start) fail(header, `expected ${what}`, i);
    return header.slice(start, i);
  };
  const readQuoted = (): string => {
    // quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE (RFC 7230 §3.2.6)
    let out = '';
    const start = i;
    i++; // opening quote
    for (;;) {
      if (i >= n) fail(header, 'unterminated quoted-string', start);
      const c = header.charCodeAt(i);
      if (c === 0x22) {
        i++;
        break;
      }
      if (c === 0x5c) {
        if (i + 1 >= n) fail(header, 'unterminated quoted-pair', i);
        out += header.charAt(i + 1);
        i += 2;
        continue;
      }
      out += header.charAt(i);
      i++;
    }
    // RFC 6455 §9.1: the unescaped value MUST conform to the token ABNF.
    if (!isToken(out)) fail(header, 'quoted parameter value is not a token', start);
    return out;
  };

  for (;;) {
    skipWs();
    if (i >= n) break;
    if (header.charCodeAt(i) === 0x2c) {
      i++; // empty list element (RFC 7230 §7)
      continue;
    }
    const offer: ExtensionOffer = { name: readToken('an extension name').toLowerCase(), params: [] };
    skipWs();
    while (i < n && header.charCodeAt(i) === 0x3b) {
      i++;
      skipWs();
      const param = readToken('a parameter name').toLowerCase();
      skipWs();
      let paramValue: string | true = true;
      if (i < n && header.charCodeAt(i) === 0x3d) {
        i++;
        skipWs();
        paramValue = i < n && header.charCodeAt(i) === 0x22 ? readQuoted() : readToken('a parameter value');
        skipWs();
      }
      offer.params.push([param, paramValue]);
    }
    offers.push(offer);
    if (i >= n) break;
    if (header.charCodeAt(i) !== 0x2c) fail(header, `unexpected character ${JSON.stringify(header.charAt(i))}`, i);
    i++;
  }
  return offers;
}

/**
 * Formats one extension as a header list element, e.g.
 * `permessage-deflate; client_max_window_bits=10`. Values that are not tokens are quoted.
 * @throws TypeError when the name or a parameter name is not a token.
 */
export function formatExtension(offer: ExtensionOffer): string {
  if (!isToken(offer.name)) throw new TypeError(`extension name is not a token: ${offer.name}`);
  let out = offer.name;
  for (const [name, value] of offer.params) {
    if (!isToken(name)) throw new TypeError(`extension parameter name is not a token: ${name}`);
    out += `; ${name}`;
    if (value !== true) out += `=${isToken(value) ? value : `"${value.replace(/["\\]/g, '\\$&')}"`}`;
  }
  return out;
}

/** Formats several extensions as one header value, comma-separated. */
export function formatExtensions(offers: readonly ExtensionOffer[]): string {
  return offers.map(formatExtension).join(', ');
}
