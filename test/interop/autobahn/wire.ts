/**
 * The fuzzer's own wire format code, written from RFC 6455 alone (nothing from the library under
 * test): frame headers, masking, a strict incremental frame reader, and both halves of the
 * opening handshake.
 */
import { createHash } from 'node:crypto';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
export const EMPTY = Buffer.alloc(0);
/** The reader refuses frames larger than this (all cases stay far below). */
export const MAX_INCOMING = 64 * 1024 * 1024;

export const toBytes = (data: Buffer | string): Buffer => (typeof data === 'string' ? Buffer.from(data, 'utf8') : data);

/** XOR `data` with the 4-byte `key`, starting at key position `offset`, into a new buffer. */
export function maskBytes(data: Buffer, key: Buffer, offset = 0): Buffer {
  const out = Buffer.allocUnsafe(data.length);
  const k = [key[offset & 3]!, key[(offset + 1) & 3]!, key[(offset + 2) & 3]!, key[(offset + 3) & 3]!] as const;
  const n = data.length;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    out[i] = data[i]! ^ k[0];
    out[i + 1] = data[i + 1]! ^ k[1];
    out[i + 2] = data[i + 2]! ^ k[2];
    out[i + 3] = data[i + 3]! ^ k[3];
  }
  for (; i < n; i++) out[i] = data[i]! ^ k[i & 3]!;
  return out;
}

/** `pattern` repeated to exactly `length` bytes (Autobahn's `payload_len`). */
export function repeatTo(pattern: Buffer, length: number): Buffer {
  if (pattern.length === 0) throw new Error('cannot repeat an empty payload');
  return Buffer.alloc(length, pattern);
}

/** A frame header exactly as given, with the shortest length encoding (RFC 6455 §5.2). */
export function frameHeader(opcode: number, fin: boolean, rsv: number, length: number, key: Buffer | undefined): Buffer {
  const ext = length <= 125 ? 0 : length <= 0xffff ? 2 : 8;
  const header = Buffer.alloc(2 + ext + (key ? 4 : 0));
  header[0] = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f);
  header[1] = (key ? 0x80 : 0) | (ext === 0 ? length : ext === 2 ? 126 : 127);
  if (ext === 2) header.writeUInt16BE(length, 2);
  if (ext === 8) header.writeBigUInt64BE(BigInt(length), 2);
  if (key) key.copy(header, 2 + ext);
  return header;
}

/** A frame as received (its payload is handed over separately). */
export interface RxFrame {
  opcode: number;
  fin: boolean;
  rsv: number;
  masked: boolean;
  length: number;
}

export type ReadResult = { frame: RxFrame; payload: Buffer } | { violation: string };

interface Partial extends RxFrame {
  key: Buffer | undefined;
  parts: Buffer[];
  got: number;
}

/**
 * Strict incremental frame reader for one direction: `push()` bytes, then call `next()` until it
 * returns undefined (more input needed). A violation is final: the caller drops the connection.
 * Every RSV bit is a violation, except RSV1 on the first frame of a data message once
 * permessage-deflate was negotiated (`deflate`).
 */
export class FrameReader {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private frame: Partial | undefined;
  /** Inside a fragmented data message (a non-FIN data frame was read). */
  private inMessage = false;

  /** permessage-deflate was negotiated: RSV1 marks a compressed message (RFC 7692 §6). */
  deflate = false;

  /** `fromClient`: frames must be masked (we are the server); else they must not be. */
  constructor(private readonly fromClient: boolean) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  next(): ReadResult | undefined {
    if (this.frame === undefined) {
      const started = this.readHeader();
      if (started === undefined || 'violation' in started) return started;
      this.frame = started;
    }
    const frame = this.frame;
    const need = frame.length - frame.got;
    if (need > 0) {
      if (this.buffered === 0) return undefined;
      for (const part of this.take(Math.min(need, this.buffered))) {
        frame.parts.push(part);
        frame.got += part.length;
      }
      if (frame.got < frame.length) return undefined;
    }
    this.frame = undefined;
    const raw = frame.parts.length === 1 ? frame.parts[0]! : Buffer.concat(frame.parts, frame.length);
    const payload = frame.key && raw.length > 0 ? maskBytes(raw, frame.key) : raw;
    return { frame: { opcode: frame.opcode, fin: frame.fin, rsv: frame.rsv, masked: frame.masked, length: frame.length }, payload };
  }

  private readHeader(): Partial | { violation: string } | undefined {
    if (this.buffered < 2) return undefined;
    const b0 = this.byteAt(0);
    const b1 = this.byteAt(1);
    const fin = (b0 & 0x80) !== 0;
    const rsv = (b0 >> 4) & 7;
    const opcode = b0 & 0x0f;
    const masked = (b1 & 0x80) !== 0;
    const len1 = b1 & 0x7f;
    const violation = (reason: string): { violation: string } => ({ violation: reason });
    // RFC 6455 §5.2: RSV bits need a negotiated extension. RFC 7692 §6: permessage-deflate uses
    // RSV1, on the first frame of a message only (§6.1), never on a control frame (§6).
    if ((rsv & 3) !== 0 || (rsv !== 0 && !this.deflate)) return violation(`RSV = ${rsv} and no extension negotiated that defines it`);
    if (rsv !== 0 && opcode >= 8) return violation('RSV1 on a control frame');
    if (rsv !== 0 && opcode === 0) return violation('RSV1 on a continuation frame');
    // RFC 6455 §5.1 and §5.3: a client masks every frame, a server none.
    if (this.fromClient && !masked) return violation('unmasked client-to-server frame');
    if (!this.fromClient && masked) return violation('masked server-to-client frame');
    if (opcode >= 8) {
      // RFC 6455 §5.5: control frames are unfragmented, at most 125 bytes, and only 8, 9, 10 exist.
      if (!fin) return violation('fragmented control frame');
      if (len1 > 125) return violation('control frame with payload length > 125 octets');
      if (opcode > 10) return violation(`control frame using reserved opcode ${opcode}`);
      // RFC 6455 §5.5.1: a close body starts with a 2-byte code.
      if (opcode === 8 && len1 === 1) return violation('close frame with payload length 1');
    } else {
      // RFC 6455 §5.2 and §5.4: reserved opcodes, continuation without a message, a new message inside one.
      if (opcode > 2) return violation(`data frame using reserved opcode ${opcode}`);
      if (!this.inMessage && opcode === 0) return violation('continuation frame outside a fragmented message');
      if (this.inMessage && opcode !== 0) return violation('new data frame inside a fragmented message');
    }
    const headerLength = 2 + (len1 === 126 ? 2 : len1 === 127 ? 8 : 0) + (masked ? 4 : 0);
    if (this.buffered < headerLength) return undefined;
    const header = Buffer.concat(this.take(headerLength));
    let length = len1;
    let at = 2;
    if (len1 === 126) {
      length = header.readUInt16BE(2);
      // RFC 6455 §5.2: "the minimal number of bytes MUST be used to encode the length".
      if (length < 126) return violation('non-minimal 16-bit length');
      at = 4;
    } else if (len1 === 127) {
      const big = header.readBigUInt64BE(2);
      if (big >> 63n !== 0n) return violation('64-bit length with the most significant bit set');
      if (big < 65536n) return violation('non-minimal 64-bit length');
      if (big > BigInt(MAX_INCOMING)) return violation('frame larger than the fuzzer accepts');
      length = Number(big);
      at = 10;
    }
    if (opcode < 8) this.inMessage = !fin;
    return { opcode, fin, rsv, masked, length, key: masked ? header.subarray(at, at + 4) : undefined, parts: [], got: 0 };
  }

  private byteAt(i: number): number {
    for (const chunk of this.chunks) {
      if (i < chunk.length) return chunk[i]!;
      i -= chunk.length;
    }
    throw new Error('byteAt past the buffered input');
  }

  /** Takes `n` buffered bytes as a list of views. */
  private take(n: number): Buffer[] {
    const out: Buffer[] = [];
    while (n > 0) {
      const chunk = this.chunks[0]!;
      if (chunk.length <= n) {
        out.push(chunk);
        this.chunks.shift();
        n -= chunk.length;
        this.buffered -= chunk.length;
      } else {
        out.push(chunk.subarray(0, n));
        this.chunks[0] = chunk.subarray(n);
        this.buffered -= n;
        n = 0;
      }
    }
    return out;
  }
}

// ---- Opening handshake (RFC 6455 §4) --------------------------------------------------------------

interface Head {
  start: string;
  headers: Map<string, string>;
}

/** Splits a buffer at the end of an HTTP head: the parsed head and the bytes after it, or undefined. */
export function splitHead(data: Buffer): { head: Head; rest: Buffer } | undefined {
  const end = data.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const lines = data.subarray(0, end).toString('latin1').split('\r\n');
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const before = headers.get(name);
    headers.set(name, before === undefined ? value : `${before}, ${value}`);
  }
  return { head: { start: lines[0] ?? '', headers }, rest: data.subarray(end + 4) };
}

const hasToken = (value: string | undefined, token: string): boolean =>
  value !== undefined && value.split(',').some((t) => t.trim().toLowerCase() === token);

const acceptFor = (key: string): string => createHash('sha1').update(key + GUID).digest('base64');

/**
 * The client's opening request for `url` with `key`; no subprotocol is offered, and extensions
 * only when `offers` are given (one header, Autobahn's order of parameters).
 */
export function clientRequest(url: URL, key: string, offers: readonly DeflateOffer[] = []): string {
  const extensions = offers.length > 0 ? `Sec-WebSocket-Extensions: ${offers.map(formatDeflateOffer).join(', ')}\r\n` : '';
  return (
    `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extensions}User-Agent: rfc6455-autobahn-fuzzer\r\n\r\n`
  );
}

/**
 * Checks the server's response to our request with `key` and `offers`: what is wrong, or the
 * permessage-deflate parameters agreed (undefined when the server declined every offer).
 */
export function checkResponse({ start, headers }: Head, key: string, offers: readonly DeflateOffer[] = []): { error: string } | { deflate: DeflateParams | undefined } {
  const error = (reason: string): { error: string } => ({ error: reason });
  if (!/^HTTP\/1\.1 101\b/.test(start)) return error(`expected 101, got "${start}"`);
  if (headers.get('upgrade')?.toLowerCase() !== 'websocket') return error('Upgrade is not websocket');
  if (!hasToken(headers.get('connection'), 'upgrade')) return error('Connection has no upgrade token');
  if (headers.get('sec-websocket-accept') !== acceptFor(key)) return error('wrong Sec-WebSocket-Accept');
  if (headers.has('sec-websocket-protocol')) return error('server chose a subprotocol that was not offered');
  const extensions = headers.get('sec-websocket-extensions');
  if (extensions === undefined) return { deflate: undefined };
  if (offers.length === 0) return error('server chose an extension that was not offered');
  const agreed = deflateFromResponse(extensions, offers);
  return typeof agreed === 'string' ? error(`Sec-WebSocket-Extensions "${extensions}": ${agreed}`) : { deflate: agreed };
}

/**
 * Checks a client's opening request: the 101 response to send, or what is wrong. Subprotocols
 * are declined; extensions too, unless `acceptDeflate` is given: then the client's
 * permessage-deflate offers must be valid, and the one it picks is answered.
 */
export function answerRequest(
  { start, headers }: Head,
  acceptDeflate?: DeflateAcceptor,
): { response: string; deflate: DeflateParams | undefined } | { error: string } {
  const [method, , version, extra] = start.split(' ');
  if (method !== 'GET' || version !== 'HTTP/1.1' || extra !== undefined) return { error: `bad request line "${start}"` };
  if (!headers.has('host')) return { error: 'no Host header' };
  if (headers.get('upgrade')?.toLowerCase() !== 'websocket') return { error: 'Upgrade is not websocket' };
  if (!hasToken(headers.get('connection'), 'upgrade')) return { error: 'Connection has no upgrade token' };
  if (headers.get('sec-websocket-version') !== '13') return { error: 'Sec-WebSocket-Version is not 13' };
  const key = headers.get('sec-websocket-key') ?? '';
  const decoded = Buffer.from(key, 'base64');
  if (decoded.length !== 16 || decoded.toString('base64') !== key) return { error: 'Sec-WebSocket-Key is not 16 bytes in base64' };
  let deflate: { response: string; params: DeflateParams } | undefined;
  const offered = headers.get('sec-websocket-extensions');
  if (acceptDeflate && offered !== undefined) {
    const offers = deflateOffersIn(offered);
    if (typeof offers === 'string') return { error: `Sec-WebSocket-Extensions "${offered}": ${offers}` };
    deflate = answerDeflate(offers, acceptDeflate);
  }
  return {
    response:
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n` +
      (deflate ? `Sec-WebSocket-Extensions: ${deflate.response}\r\n` : '') +
      'Server: rfc6455-autobahn-fuzzer\r\n\r\n',
    deflate: deflate?.params,
  };
}

// ---- permessage-deflate negotiation (RFC 7692 §5, §7.1) ------------------------------------------

const PERMESSAGE_DEFLATE = 'permessage-deflate';

/** One permessage-deflate offer, by its parameters (RFC 7692 §7.1). */
export interface DeflateOffer {
  /** The client will (or asks to be allowed to) reset its compressor after each message. */
  clientNoContextTakeover: boolean;
  /** `true`: offered without a value (the server may limit the client's window); undefined: absent. */
  clientMaxWindowBits?: number | true;
  /** The client asks the server to reset its compressor after each message. */
  serverNoContextTakeover: boolean;
  /** The largest server window the client accepts; undefined: absent. */
  serverMaxWindowBits?: number;
}

/** What both sides apply once the handshake is done (window bits are 15 unless negotiated). */
export interface DeflateParams {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  serverMaxWindowBits: number;
  clientMaxWindowBits: number;
}

/** What the fuzzer as server asks of the client when it accepts `offer`. */
export interface DeflateAnswer {
  offer: DeflateOffer;
  clientNoContextTakeover: boolean;
  clientMaxWindowBits?: number;
}

/** The fuzzer as server: picks the offer to accept (and what to ask of the client), or declines all. */
export type DeflateAcceptor = (offers: readonly DeflateOffer[]) => DeflateAnswer | undefined;

/** An offer as Autobahn writes it: client parameters first, then what is asked of the server. */
export function formatDeflateOffer(offer: DeflateOffer): string {
  const params = [PERMESSAGE_DEFLATE];
  if (offer.clientNoContextTakeover) params.push('client_no_context_takeover');
  if (offer.clientMaxWindowBits !== undefined) params.push(offer.clientMaxWindowBits === true ? 'client_max_window_bits' : `client_max_window_bits=${offer.clientMaxWindowBits}`);
  if (offer.serverNoContextTakeover) params.push('server_no_context_takeover');
  if (offer.serverMaxWindowBits !== undefined) params.push(`server_max_window_bits=${offer.serverMaxWindowBits}`);
  return params.join('; ');
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 7692 §7.1.2: "a decimal integer value without leading zeroes between 8 to 15". */
const WINDOW_BITS = /^(?:[89]|1[0-5])$/;

type ExtensionElement = { name: string; params: Array<[string, string | true]> };

/**
 * Parses a `Sec-WebSocket-Extensions` value (RFC 6455 §9.1: a comma-separated list of
 * `token *( ";" token [ "=" (token | quoted-string) ] )`), or says what is wrong with it.
 */
function parseExtensions(value: string): ExtensionElement[] | string {
  const elements: ExtensionElement[] = [];
  for (const item of value.split(',')) {
    const [name = '', ...rawParams] = item.split(';').map((part) => part.trim());
    if (!TOKEN.test(name)) return `"${name}" is not an extension token`;
    const params: Array<[string, string | true]> = [];
    for (const raw of rawParams) {
      const eq = raw.indexOf('=');
      const key = (eq < 0 ? raw : raw.slice(0, eq)).trim();
      if (!TOKEN.test(key)) return `"${key}" is not a parameter token`;
      if (eq < 0) {
        params.push([key.toLowerCase(), true]);
        continue;
      }
      let val = raw.slice(eq + 1).trim();
      if (val.length >= 2 && val.startsWith('"') && val.endsWith('"')) val = val.slice(1, -1);
      // RFC 6455 §9.1: a quoted value must be a token once unquoted.
      if (!TOKEN.test(val)) return `the value of ${key} is not a token`;
      params.push([key.toLowerCase(), val]);
    }
    elements.push({ name: name.toLowerCase(), params });
  }
  return elements;
}

type DeflateParamsSeen = {
  server_no_context_takeover?: true;
  client_no_context_takeover?: true;
  server_max_window_bits?: number;
  client_max_window_bits?: number | true;
};

/** The parameters of one permessage-deflate element, or what is wrong (RFC 7692 §7.1). */
function readDeflateParams(element: ExtensionElement, isOffer: boolean): DeflateParamsSeen | string {
  const seen: DeflateParamsSeen = {};
  for (const [name, value] of element.params) {
    if (Object.hasOwn(seen, name)) return `parameter ${name} appears twice`;
    if (name === 'server_no_context_takeover' || name === 'client_no_context_takeover') {
      if (value !== true) return `parameter ${name} has a value`;
      seen[name] = true;
    } else if (name === 'server_max_window_bits' || name === 'client_max_window_bits') {
      // RFC 7692 §7.1.2.2: only client_max_window_bits in an offer may come without a value.
      if (value === true) {
        if (name === 'server_max_window_bits' || !isOffer) return `parameter ${name} has no value`;
        seen[name] = true;
      } else if (!WINDOW_BITS.test(value)) {
        return `parameter ${name} has the invalid value "${value}"`;
      } else {
        seen[name] = Number(value);
      }
    } else {
      return `unknown parameter ${name}`;
    }
  }
  return seen;
}

/** The client's permessage-deflate offers (other extensions are ignored), or what is wrong. */
export function deflateOffersIn(value: string): DeflateOffer[] | string {
  const elements = parseExtensions(value);
  if (typeof elements === 'string') return elements;
  const offers: DeflateOffer[] = [];
  for (const element of elements) {
    if (element.name !== PERMESSAGE_DEFLATE) continue;
    const p = readDeflateParams(element, true);
    // A server may decline an invalid offer; the client under test should never make one.
    if (typeof p === 'string') return `invalid permessage-deflate offer: ${p}`;
    offers.push({
      clientNoContextTakeover: p.client_no_context_takeover === true,
      ...(p.client_max_window_bits !== undefined ? { clientMaxWindowBits: p.client_max_window_bits } : {}),
      serverNoContextTakeover: p.server_no_context_takeover === true,
      ...(p.server_max_window_bits !== undefined ? { serverMaxWindowBits: p.server_max_window_bits } : {}),
    });
  }
  return offers;
}

/**
 * The fuzzer as server: the response element and the agreed parameters for the offer the acceptor
 * picks (RFC 7692 §7.1: what the client asked of the server is granted as asked; the server's
 * requests are the acceptor's), or undefined to decline. An answer the RFC does not allow (a
 * client window without the client's client_max_window_bits, or above its value) is a bug in the case.
 */
function answerDeflate(offers: readonly DeflateOffer[], accept: DeflateAcceptor): { response: string; params: DeflateParams } | undefined {
  const answer = accept(offers);
  if (!answer) return undefined;
  const { offer } = answer;
  if (answer.clientMaxWindowBits !== undefined) {
    if (offer.clientMaxWindowBits === undefined) throw new Error('client_max_window_bits answered to an offer without it');
    if (offer.clientMaxWindowBits !== true && answer.clientMaxWindowBits > offer.clientMaxWindowBits) throw new Error('client_max_window_bits answered above the offer');
  }
  const params = [PERMESSAGE_DEFLATE];
  if (offer.serverNoContextTakeover) params.push('server_no_context_takeover');
  if (offer.serverMaxWindowBits !== undefined) params.push(`server_max_window_bits=${offer.serverMaxWindowBits}`);
  if (answer.clientNoContextTakeover) params.push('client_no_context_takeover');
  if (answer.clientMaxWindowBits !== undefined) params.push(`client_max_window_bits=${answer.clientMaxWindowBits}`);
  return {
    response: params.join('; '),
    params: {
      serverNoContextTakeover: offer.serverNoContextTakeover,
      clientNoContextTakeover: answer.clientNoContextTakeover,
      serverMaxWindowBits: offer.serverMaxWindowBits ?? 15,
      clientMaxWindowBits: answer.clientMaxWindowBits ?? 15,
    },
  };
}

/**
 * The fuzzer as client: the parameters agreed by the server's response to `offers`, or what is
 * wrong with it. It must be one valid permessage-deflate element that answers one of the offers
 * (RFC 7692 §7.1): server_no_context_takeover and server_max_window_bits (at most the requested
 * value) present when that offer asked for them, client_max_window_bits only when the offer had
 * it (and not above its value); client_no_context_takeover and an unrequested
 * server_max_window_bits are always allowed.
 */
function deflateFromResponse(value: string, offers: readonly DeflateOffer[]): DeflateParams | string {
  const elements = parseExtensions(value);
  if (typeof elements === 'string') return elements;
  if (elements.length !== 1) return `${elements.length} extensions accepted, one was offered`;
  const element = elements[0]!;
  if (element.name !== PERMESSAGE_DEFLATE) return `extension ${element.name} was not offered`;
  const p = readDeflateParams(element, false);
  if (typeof p === 'string') return p;
  const serverBits = p.server_max_window_bits as number | undefined;
  const clientBits = p.client_max_window_bits as number | undefined;
  const answers = (offer: DeflateOffer): boolean =>
    (!offer.serverNoContextTakeover || p.server_no_context_takeover === true) &&
    (offer.serverMaxWindowBits === undefined || (serverBits !== undefined && serverBits <= offer.serverMaxWindowBits)) &&
    (clientBits === undefined || (offer.clientMaxWindowBits !== undefined && (offer.clientMaxWindowBits === true || clientBits <= offer.clientMaxWindowBits)));
  if (!offers.some(answers)) return 'the response answers none of the offers';
  return {
    serverNoContextTakeover: p.server_no_context_takeover === true,
    clientNoContextTakeover: p.client_no_context_takeover === true,
    serverMaxWindowBits: serverBits ?? 15,
    clientMaxWindowBits: clientBits ?? 15,
  };
}
