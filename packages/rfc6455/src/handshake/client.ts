/**
 * The RFC 6455 client handshake (§4.1), pure: the request headers to send, and the checks on the
 * server's response. Nothing here touches a socket.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { HandshakeError } from '../errors.js';
import { parseExtensions, type ExtensionOffer } from '../extensions/header.js';
import { headerValue, isToken, tokenList } from './http.js';
import { acceptKey } from './server.js';

/** A fresh Sec-WebSocket-Key: 16 cryptographically random bytes, base64 (§4.1 item 7). */
export function generateKey(): string {
  return randomBytes(16).toString('base64');
}

/** Input of {@link buildRequestHeaders}. */
export interface ClientRequestInit {
  /** The Sec-WebSocket-Key (see {@link generateKey}); keep it to verify the response. */
  key: string;
  /** Subprotocols to offer, in order of preference; each must be a token, none twice (else TypeError). */
  protocols?: readonly string[] | undefined;
  /** Sec-WebSocket-Extensions offer, if any. */
  extensions?: string | undefined;
  /** Origin header to send, if any. */
  origin?: string | undefined;
}

/**
 * The subprotocols a client offers (RFC 6455 §4.1 item 10): each a token, and all unique; else a
 * TypeError. (Fixed bug: ['chat', 'chat'] was sent as it is; ws refuses it too.)
 */
export function checkOfferedProtocols(protocols: readonly string[]): void {
  for (const p of protocols) if (!isToken(p)) throw new TypeError(`invalid subprotocol ${JSON.stringify(p)}`);
  if (new Set(protocols).size !== protocols.length) throw new TypeError(`a subprotocol is offered more than once: ${protocols.join(', ')}`);
}

/** The handshake headers of a client request (Host is set by the HTTP client). */
export function buildRequestHeaders(init: ClientRequestInit): Record<string, string> {
  const headers: Record<string, string> = {
    Connection: 'Upgrade',
    Upgrade: 'websocket',
    'Sec-WebSocket-Key': init.key,
    'Sec-WebSocket-Version': '13',
  };
  if (init.protocols && init.protocols.length > 0) {
    checkOfferedProtocols(init.protocols);
    headers['Sec-WebSocket-Protocol'] = init.protocols.join(', ');
  }
  if (init.extensions) headers['Sec-WebSocket-Extensions'] = init.extensions;
  if (init.origin) headers.Origin = init.origin;
  return headers;
}

/** What a verified handshake response agreed to. */
export interface VerifiedResponse {
  /** The subprotocol the server chose, '' if none. */
  protocol: string;
  /** The extensions the server accepted, parsed. */
  extensions: ExtensionOffer[];
}

/**
 * Checks a 101 response (RFC 6455 §4.1, "the client MUST validate the server's response").
 * Throws HandshakeError (status 101, headers attached) on the first failed check.
 */
export function verifyResponse(
  statusLine: string,
  headers: IncomingHttpHeaders,
  init: { key: string; protocols?: readonly string[] | undefined; extensionNames?: readonly string[] | undefined },
): VerifiedResponse {
  const fail = (message: string, code: string): never => {
    throw new HandshakeError(message, 101, { code, headers, statusLine });
  };
  // item 2: Upgrade: websocket, that value alone (fail "if the |Upgrade| header field contains a
  // value that is not an ASCII case-insensitive match for the value 'websocket'", as ws and undici
  // do; fixed bug: a list such as `h2c, websocket` was accepted).
  if (headerValue(headers, 'upgrade')?.trim().toLowerCase() !== 'websocket') fail('response lacks Upgrade: websocket (or lists more than it)', 'WS_BAD_UPGRADE');
  // item 3: Connection: Upgrade.
  if (!tokenList(headers.connection).includes('upgrade')) fail('response lacks Connection: Upgrade', 'WS_BAD_CONNECTION');
  // item 4: the accept value.
  if (headerValue(headers, 'sec-websocket-accept')?.trim() !== acceptKey(init.key)) fail('wrong Sec-WebSocket-Accept', 'WS_BAD_ACCEPT');
  return verifyNegotiation(statusLine, headers, init);
}

/**
 * The checks every WebSocket handshake response needs, HTTP/1.1 101 or HTTP/2 200 (RFC 8441 §5):
 * the subprotocol and the extensions must be ones we offered.
 */
export function verifyNegotiation(
  statusLine: string,
  headers: IncomingHttpHeaders,
  init: { protocols?: readonly string[] | undefined; extensionNames?: readonly string[] | undefined },
): VerifiedResponse {
  const fail = (message: string, code: string): never => {
    throw new HandshakeError(message, 101, { code, headers, statusLine });
  };
  // item 6: a subprotocol must be one we offered.
  let protocol = '';
  const chosen = headers['sec-websocket-protocol'];
  if (chosen !== undefined) {
    const value = Array.isArray(chosen) ? chosen.join(',') : chosen;
    protocol = value.trim();
    if (!init.protocols?.includes(protocol)) fail(`server chose subprotocol ${JSON.stringify(protocol)}, which was not offered`, 'WS_BAD_PROTOCOL');
  }
  // item 5: every extension must be one we offered.
  let extensions: ExtensionOffer[] = [];
  const accepted = headers['sec-websocket-extensions'];
  try {
    extensions = parseExtensions(accepted);
  } catch (error) {
    throw new HandshakeError('malformed Sec-WebSocket-Extensions in response', 101, { code: 'WS_BAD_EXTENSION_RESPONSE', headers, statusLine, cause: error });
  }
  // RFC 6455 §9.1: the header is `1#extension`, at least one. A header present with none (empty,
  // blank, or commas alone) fails, as in Chromium and ws (fixed bug: it was taken as no extension).
  if (accepted !== undefined && extensions.length === 0) fail('empty Sec-WebSocket-Extensions in response', 'WS_BAD_EXTENSION_RESPONSE');
  const seen = new Set<string>();
  for (const ext of extensions) {
    if (!init.extensionNames?.includes(ext.name)) fail(`server accepted extension ${ext.name}, which was not offered`, 'WS_BAD_EXTENSION_RESPONSE');
    if (seen.has(ext.name)) fail(`server accepted extension ${ext.name} twice`, 'WS_BAD_EXTENSION_RESPONSE');
    seen.add(ext.name);
  }
  return { protocol, extensions };
}
