/**
 * The opening handshake of hybi-00 (draft-hixie-thewebsocketprotocol-76, identical to
 * draft-ietf-hybi-thewebsocketprotocol-00): pure functions, no sockets.
 *
 * Server: `isHybi00Request(headers)` selects the variant, `acceptHybi00(...)` validates the request
 * and builds the `101 WebSocket Protocol Handshake` response with its 16-byte MD5 answer,
 * `serializeHybi00Response(...)` gives the bytes to write.
 * Client: `buildHybi00Request(...)` makes Key1/Key2/key3 as the draft describes,
 * `encodeHybi00Request(...)` gives the bytes to write, `verifyHybi00Response(...)` checks the answer.
 *
 * @see https://datatracker.ietf.org/doc/html/draft-hixie-thewebsocketprotocol-76
 */

import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { HandshakeError } from '../errors.js';
import { isValidHost, repeatsHost } from './http.js';

/** Request or response headers as Node gives them: lower-case names, duplicates joined. */
export type Hybi00Headers = Readonly<Record<string, string | string[] | undefined>>;

/** A header to write, name as sent on the wire. */
export type Hybi00HeaderLine = [name: string, value: string];

/** The largest key number and the largest quotient: 2^32 - 1 (draft-76 §5.2 step 4). */
const MAX_KEY_NUMBER = 0xffffffff;

/** key3 and the answer sizes (draft-76 §4.1 step 21, §5.2 step 8). */
export const HYBI00_KEY3_LENGTH = 8;
export const HYBI00_ANSWER_LENGTH = 16;

export const HYBI00_STATUS_LINE = 'HTTP/1.1 101 WebSocket Protocol Handshake';

function badKey(reason: string): HandshakeError {
  return new HandshakeError(`bad hybi-00 key: ${reason}`, 400, { code: 'WS_BAD_HYBI00_KEY' });
}

function badRequest(reason: string, code = 'WS_BAD_HYBI00_REQUEST'): HandshakeError {
  return new HandshakeError(reason, 400, { code });
}

/**
 * The number a Sec-WebSocket-Key1/Key2 value stands for: its digits read as one base-ten integer,
 * divided by its count of U+0020 spaces.
 * @throws HandshakeError 400 `WS_BAD_HYBI00_KEY` when the key has no spaces, no digits, a number
 *   over 2^32-1, or a number that is not a multiple of the spaces (never a division by zero).
 */
export function keyNumber(key: string): number {
  let digits = '';
  let sawDigit = false;
  let spaces = 0;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c >= 0x30 && c <= 0x39) {
      sawDigit = true;
      // Leading zeros add nothing; skipping them keeps `digits` short for the size check.
      if (digits !== '' || c !== 0x30) digits += key[i];
    } else if (c === 0x20) {
      spaces++;
    }
  }
  if (!sawDigit) throw badKey('no digits');
  // draft-76 §5.2 step 4: a key number over 4,294,967,295 is a symptom of an attack.
  if (digits.length > 10) throw badKey('number over 2^32-1');
  const number = digits === '' ? 0 : Number(digits);
  if (number > MAX_KEY_NUMBER) throw badKey('number over 2^32-1');
  // draft-76 §5.2 step 5: no spaces is a symptom of a cross-protocol attack.
  if (spaces === 0) throw badKey('no spaces');
  // draft-76 §5.2 step 6: the number must be an integral multiple of the spaces.
  if (number % spaces !== 0) throw badKey('number not a multiple of the spaces');
  return number / spaces;
}

/** MD5 over the two 32-bit big-endian parts and the 8 key3 bytes (draft-76 §5.2 steps 7-8). */
function answer(part1: number, part2: number, key3: Uint8Array): Buffer {
  if (key3.length !== HYBI00_KEY3_LENGTH) {
    throw badRequest(`key3 must be ${HYBI00_KEY3_LENGTH} bytes, got ${key3.length}`, 'WS_BAD_HYBI00_KEY');
  }
  const challenge = Buffer.allocUnsafe(16);
  challenge.writeUInt32BE(part1, 0);
  challenge.writeUInt32BE(part2, 4);
  challenge.set(key3, 8);
  return createHash('md5').update(challenge).digest();
}

/**
 * The 16-byte answer to a hybi-00 challenge (draft-76 §5.2 step 8).
 * @throws HandshakeError 400 `WS_BAD_HYBI00_KEY` for a bad key or a key3 that is not 8 bytes.
 */
export function hybi00Challenge(key1: string, key2: string, key3: Uint8Array): Buffer {
  return answer(keyNumber(key1), keyNumber(key2), key3);
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

function hasToken(value: string | string[] | undefined, token: string): boolean {
  const v = single(value);
  if (v === undefined) return false;
  return v.split(',').some((t) => t.trim().toLowerCase() === token);
}

/**
 * True when the request asks for hybi-00: it has Sec-WebSocket-Key1 and Sec-WebSocket-Key2 and the
 * `Upgrade: WebSocket` / `Connection: Upgrade` tokens (case-insensitive; draft-76 §5.1).
 * `headers` has lower-case names, as `IncomingMessage.headers`.
 */
export function isHybi00Request(headers: Hybi00Headers): boolean {
  return (
    typeof headers['sec-websocket-key1'] === 'string' &&
    typeof headers['sec-websocket-key2'] === 'string' &&
    hasToken(headers.upgrade, 'websocket') &&
    hasToken(headers.connection, 'upgrade')
  );
}

export interface Hybi00AcceptInput {
  /** The request method; must be `GET`. */
  readonly method: string | undefined;
  /** The request target: the resource name with its query, e.g. `/chat?room=1`. */
  readonly url: string | undefined;
  /** Lower-case header names, as `IncomingMessage.headers`. */
  readonly headers: Hybi00Headers;
  /** The header lines as received (`IncomingMessage.rawHeaders`); when given, two Host lines are refused. */
  readonly rawHeaders?: readonly string[];
  /** True when the transport is TLS: the location is then `wss://`. */
  readonly secure: boolean;
  /** The 8 bytes that follow the request head. */
  readonly key3: Uint8Array;
  /** The subprotocol chosen by the server, echoed in Sec-WebSocket-Protocol. */
  readonly protocol?: string | undefined;
}

export interface Hybi00Response {
  readonly statusLine: string;
  /** Headers in the order they are written; callers may append (e.g. a before-101 hook). */
  readonly headers: Hybi00HeaderLine[];
  /** The 16-byte MD5 answer, written right after the head. */
  readonly body: Buffer;
  /** The Sec-WebSocket-Location sent, e.g. `ws://example.com/chat?x=1`. */
  readonly location: string;
}

/** Host without the port that is the default for the scheme (draft-76 §5.2: Sec-WebSocket-Location). */
function hostForLocation(host: string, secure: boolean): string {
  const defaultPort = secure ? ':443' : ':80';
  return host.endsWith(defaultPort) ? host.slice(0, -defaultPort.length) : host;
}

/**
 * Validate a hybi-00 request and build the server's response (draft-76 §5.2).
 * @throws HandshakeError with status 400 (not GET, no Upgrade/Connection tokens, missing or bad
 *   Host, a request target that is not a path, a missing or bad key, key3 not 8 bytes).
 */
export function acceptHybi00(input: Hybi00AcceptInput): Hybi00Response {
  const { headers } = input;
  if (input.method !== 'GET') throw badRequest('the method must be GET');
  if (!hasToken(headers.upgrade, 'websocket')) throw badRequest('missing Upgrade: WebSocket');
  if (!hasToken(headers.connection, 'upgrade')) throw badRequest('missing Connection: Upgrade');
  const host = single(headers.host);
  // draft-76 §5.2: the location is built from Host; without it there is nothing to send. RFC 9112
  // §3.2: an invalid Host is a 400 (fixed bug: only white space, `/?#@\` and a lone port were
  // refused, so `Host: a"b<c>` or `x:1:2` got a 101 and went into Sec-WebSocket-Location).
  if (host === undefined || !isValidHost(host)) {
    throw badRequest('missing or bad Host');
  }
  // RFC 9112 §3.2: more than one Host line is a 400 (and which one would the location name?).
  if (input.rawHeaders !== undefined && repeatsHost(input.rawHeaders)) throw badRequest('more than one Host header');
  const url = input.url;
  if (url === undefined || !url.startsWith('/') || /[\s]/.test(url)) {
    throw badRequest('the request target must be a path');
  }
  const key1 = single(headers['sec-websocket-key1']);
  const key2 = single(headers['sec-websocket-key2']);
  if (key1 === undefined) throw badKey('missing Sec-WebSocket-Key1');
  if (key2 === undefined) throw badKey('missing Sec-WebSocket-Key2');
  const body = hybi00Challenge(key1, key2, input.key3);

  const location = `${input.secure ? 'wss' : 'ws'}://${hostForLocation(host, input.secure)}${url}`;
  const lines: Hybi00HeaderLine[] = [
    ['Upgrade', 'WebSocket'],
    ['Connection', 'Upgrade'],
  ];
  const origin = single(headers.origin);
  // The origin is echoed when the client sent one (non-browser clients may not).
  if (origin !== undefined) lines.push(['Sec-WebSocket-Origin', origin]);
  lines.push(['Sec-WebSocket-Location', location]);
  if (input.protocol !== undefined) lines.push(['Sec-WebSocket-Protocol', input.protocol]);
  return { statusLine: HYBI00_STATUS_LINE, headers: lines, body, location };
}

function serializeHead(firstLine: string, headers: readonly Hybi00HeaderLine[]): string {
  let head = firstLine + '\r\n';
  for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
  return head + '\r\n';
}

/**
 * The bytes to write for a response: status line, headers, blank line, then the 16-byte answer.
 * Header text is written as latin1, the way Node decodes incoming header bytes, so an echoed value
 * goes back byte for byte.
 */
export function serializeHybi00Response(response: Pick<Hybi00Response, 'statusLine' | 'headers' | 'body'>): Buffer {
  const head = Buffer.from(serializeHead(response.statusLine, response.headers), 'latin1');
  return Buffer.concat([head, response.body], head.length + response.body.length);
}

// ---------------------------------------------------------------------------------------------
// Client

export interface Hybi00RequestInput {
  /** The Host header value: host, plus `:port` when it is not the default. */
  readonly host: string;
  /** The resource name with its query, starting with `/`. */
  readonly path: string;
  readonly origin?: string | undefined;
  /** Sent as one Sec-WebSocket-Protocol value, joined with `, `. */
  readonly protocols?: readonly string[] | undefined;
}

export interface Hybi00Request {
  readonly path: string;
  readonly headers: Hybi00HeaderLine[];
  readonly key1: string;
  readonly key2: string;
  /** The 8 random bytes sent after the head. */
  readonly key3: Buffer;
  /** The 16-byte answer the server must send. */
  readonly expected: Buffer;
}

/** U+0021-U+002F and U+003A-U+007E: the non-digit characters inserted into keys (draft-76 §4.1). */
function randomNonDigit(): string {
  // 15 characters in the first range, 69 in the second.
  const i = randomInt(0, 15 + 69);
  return String.fromCharCode(i < 15 ? 0x21 + i : 0x3a + (i - 15));
}

function insertAt(s: string, at: number, c: string): string {
  return s.slice(0, at) + c + s.slice(at);
}

/** One key and its number as draft-76 §4.1 steps 17-20 describe. */
function generateKey(): { key: string; number: number } {
  const spaces = randomInt(1, 13);
  const max = Math.floor(MAX_KEY_NUMBER / spaces);
  const number = randomInt(0, max + 1);
  let key = String(number * spaces);
  const extra = randomInt(1, 13);
  for (let i = 0; i < extra; i++) key = insertAt(key, randomInt(0, key.length + 1), randomNonDigit());
  // Spaces go anywhere but the start or end, so that header parsing never trims them away.
  for (let i = 0; i < spaces; i++) key = insertAt(key, randomInt(1, key.length), ' ');
  return { key, number };
}

function checkHeaderText(what: string, value: string): void {
  // Visible ASCII only: no CR/LF/space, which would break or smuggle the request line/headers.
  if (value === '' || !/^[\x21-\x7e]+$/.test(value)) throw new TypeError(`invalid ${what}: ${JSON.stringify(value)}`);
}

/**
 * A hybi-00 client request (draft-76 §4.1): headers with freshly generated Key1/Key2, the key3
 * bytes, and the answer the server must send back.
 * @throws TypeError for a host, path, origin or protocol that cannot be written in a header.
 */
export function buildHybi00Request(input: Hybi00RequestInput): Hybi00Request {
  checkHeaderText('host', input.host);
  checkHeaderText('path', input.path);
  if (!input.path.startsWith('/')) throw new TypeError(`invalid path: ${JSON.stringify(input.path)}`);
  const headers: Hybi00HeaderLine[] = [
    ['Upgrade', 'WebSocket'],
    ['Connection', 'Upgrade'],
    ['Host', input.host],
  ];
  if (input.origin !== undefined) {
    checkHeaderText('origin', input.origin);
    headers.push(['Origin', input.origin]);
  }
  if (input.protocols !== undefined && input.protocols.length > 0) {
    for (const p of input.protocols) checkHeaderText('protocol', p);
    headers.push(['Sec-WebSocket-Protocol', input.protocols.join(', ')]);
  }
  const k1 = generateKey();
  const k2 = generateKey();
  headers.push(['Sec-WebSocket-Key1', k1.key], ['Sec-WebSocket-Key2', k2.key]);
  const key3 = randomBytes(HYBI00_KEY3_LENGTH);
  return { path: input.path, headers, key1: k1.key, key2: k2.key, key3, expected: answer(k1.number, k2.number, key3) };
}

/** The bytes to write for a client request: request line, headers, blank line, then key3. */
export function encodeHybi00Request(request: Pick<Hybi00Request, 'path' | 'headers' | 'key3'>): Buffer {
  const head = Buffer.from(serializeHead(`GET ${request.path} HTTP/1.1`, request.headers), 'latin1');
  return Buffer.concat([head, request.key3], head.length + request.key3.length);
}

export interface Hybi00VerifyOptions {
  /** The Origin sent: Sec-WebSocket-Origin must match it (ASCII case-insensitive, draft-76 §4.1). */
  readonly origin?: string | undefined;
  /** The URL connected to: Sec-WebSocket-Location must equal it. */
  readonly location?: string | undefined;
  /** The protocols offered: a Sec-WebSocket-Protocol in the answer must be one of them. */
  readonly protocols?: readonly string[] | undefined;
}

/**
 * Check a server's answer to a hybi-00 request (draft-76 §4.1 steps 28-41), with the codes the
 * RFC 6455 client gives for the same failures: `WS_BAD_STATUS_LINE` (status 0) for a response that
 * is not HTTP, `WS_UNEXPECTED_RESPONSE` for a status other than 101, `WS_BAD_UPGRADE` and
 * `WS_BAD_CONNECTION` for a 101 without `Upgrade: WebSocket` or `Connection: Upgrade`.
 * @returns the subprotocol the server chose, if any.
 * @throws HandshakeError whose `status` is the status received (0 when the status line is not
 *   HTTP), with the response's status line and headers attached, and `body16` as its `body` when
 *   the status was not 101 (a refusal's body), as over RFC 6455.
 */
export function verifyHybi00Response(
  statusLine: string,
  headers: Hybi00Headers,
  body16: Uint8Array,
  expected: Uint8Array,
  options: Hybi00VerifyOptions = {},
): { protocol: string | undefined } {
  const fail = (message: string, status: number, code: string): HandshakeError =>
    new HandshakeError(message, status, {
      code,
      statusLine,
      headers: { ...headers },
      // A refusal's body, as over RFC 6455; none for a 101 that failed a check or a response that
      // is not HTTP (fixed bug: those carried the 16 bytes after the head, or an empty body).
      body: status !== 0 && status !== 101 ? Buffer.from(body16) : undefined,
    });
  const m = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(statusLine);
  if (m === null) throw fail('the response is not HTTP/1.1', 0, 'WS_BAD_STATUS_LINE');
  const status = Number(m[1]);
  // draft-76 §4.1 step 29: any code other than 101 fails the connection: a refusal, with the code
  // and message the RFC 6455 client gives it (fixed bug: WS_UNEXPECTED_STATUS, a code no other
  // path gave, and the message "expected status 101, got 403").
  if (status !== 101) throw fail(`server answered ${status} ${statusLine.slice(m[0].length)}`.trimEnd(), status, 'WS_UNEXPECTED_RESPONSE');
  if (!hasToken(headers.upgrade, 'websocket')) throw fail('missing Upgrade: WebSocket', status, 'WS_BAD_UPGRADE');
  // (WS_BAD_CONNECTION, as over RFC 6455: it was WS_BAD_UPGRADE.)
  if (!hasToken(headers.connection, 'upgrade')) throw fail('missing Connection: Upgrade', status, 'WS_BAD_CONNECTION');
  const origin = single(headers['sec-websocket-origin']);
  if (options.origin !== undefined && origin?.toLowerCase() !== options.origin.toLowerCase()) {
    throw fail('Sec-WebSocket-Origin does not match the Origin sent', status, 'WS_BAD_HYBI00_ORIGIN');
  }
  const location = single(headers['sec-websocket-location']);
  if (options.location !== undefined && location !== options.location) {
    throw fail('Sec-WebSocket-Location does not match the URL', status, 'WS_BAD_HYBI00_LOCATION');
  }
  const protocol = single(headers['sec-websocket-protocol']);
  if (protocol !== undefined && !(options.protocols ?? []).includes(protocol)) {
    throw fail(`the server chose a protocol that was not offered: ${protocol}`, status, 'WS_BAD_PROTOCOL');
  }
  // draft-76 §4.1 step 41: the 16 bytes must equal the expected answer.
  if (
    body16.length !== HYBI00_ANSWER_LENGTH ||
    expected.length !== HYBI00_ANSWER_LENGTH ||
    !timingSafeEqual(body16, expected)
  ) {
    throw fail('the server answered the hybi-00 challenge wrongly', status, 'WS_BAD_HYBI00_ANSWER');
  }
  return { protocol };
}
