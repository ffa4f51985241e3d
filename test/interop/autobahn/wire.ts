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
 * No extension is ever negotiated by the fuzzer, so every RSV bit is a violation.
 */
export class FrameReader {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private frame: Partial | undefined;
  /** Inside a fragmented data message (a non-FIN data frame was read). */
  private inMessage = false;

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
    // RFC 6455 §5.2: RSV bits need a negotiated extension; none is.
    if (rsv !== 0) return violation(`RSV = ${rsv} and no extension negotiated`);
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

/** The client's opening request for `url` with `key`; no extension or subprotocol is offered. */
export function clientRequest(url: URL, key: string): string {
  return (
    `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: rfc6455-autobahn-fuzzer\r\n\r\n`
  );
}

/** What is wrong with the server's response to our request with `key`, or undefined. */
export function checkResponse({ start, headers }: Head, key: string): string | undefined {
  if (!/^HTTP\/1\.1 101\b/.test(start)) return `expected 101, got "${start}"`;
  if (headers.get('upgrade')?.toLowerCase() !== 'websocket') return 'Upgrade is not websocket';
  if (!hasToken(headers.get('connection'), 'upgrade')) return 'Connection has no upgrade token';
  if (headers.get('sec-websocket-accept') !== acceptFor(key)) return 'wrong Sec-WebSocket-Accept';
  if (headers.has('sec-websocket-extensions')) return 'server chose an extension that was not offered';
  if (headers.has('sec-websocket-protocol')) return 'server chose a subprotocol that was not offered';
  return undefined;
}

/**
 * Checks a client's opening request: the 101 response to send, or what is wrong. Extensions and
 * subprotocols the client offers are declined (none is negotiated).
 */
export function answerRequest({ start, headers }: Head): { response: string } | { error: string } {
  const [method, , version, extra] = start.split(' ');
  if (method !== 'GET' || version !== 'HTTP/1.1' || extra !== undefined) return { error: `bad request line "${start}"` };
  if (!headers.has('host')) return { error: 'no Host header' };
  if (headers.get('upgrade')?.toLowerCase() !== 'websocket') return { error: 'Upgrade is not websocket' };
  if (!hasToken(headers.get('connection'), 'upgrade')) return { error: 'Connection has no upgrade token' };
  if (headers.get('sec-websocket-version') !== '13') return { error: 'Sec-WebSocket-Version is not 13' };
  const key = headers.get('sec-websocket-key') ?? '';
  const decoded = Buffer.from(key, 'base64');
  if (decoded.length !== 16 || decoded.toString('base64') !== key) return { error: 'Sec-WebSocket-Key is not 16 bytes in base64' };
  return {
    response:
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n` +
      'Server: rfc6455-autobahn-fuzzer\r\n\r\n',
  };
}
