/**
 * Frame serialization (RFC 6455 §5.2). The header is computed into a small buffer; the payload is
 * either copied after it (small frames, and every masked frame, since the caller's payload is never
 * modified) or left as a second buffer to be written together with the header (large unmasked
 * frames: no copy).
 */
import { MAX_CONTROL_PAYLOAD } from './constants.js';
import { mask, writeRandomMaskKey } from './mask.js';

export interface FrameOptions {
  /** FIN bit; false for all but the last frame of a fragmented message. Default true. */
  fin?: boolean | undefined;
  /** RSV1 bit (set by permessage-deflate on a compressed message's first frame). */
  rsv1?: boolean | undefined;
  /** Mask the payload (clients MUST, servers MUST NOT: RFC 6455 §5.1). */
  mask?: boolean | undefined;
  /** With `mask`: the 4-byte masking key to use instead of a fresh random one (tests). */
  maskKey?: Uint8Array | undefined;
}

/**
 * A connection copies unmasked payloads up to this size into the header's buffer (one small write
 * instead of a writev of two); larger ones go out as a second buffer without a copy.
 */
export const COPY_THRESHOLD = 2048;

/** Masked payloads below this size are masked inline by {@link encodeMasked}. */
const SMALL_MASK = 256;

/** Size of the header for a payload of `length` bytes. */
export function headerSize(length: number, masked: boolean): number {
  return (length < 126 ? 2 : length < 65536 ? 4 : 10) + (masked ? 4 : 0);
}

/**
 * Writes a frame header into `target` at `offset` and returns the offset just past it. When
 * `maskKey` is given the MASK bit is set and the key written.
 */
export function writeHeader(
  target: Uint8Array,
  offset: number,
  opcode: number,
  length: number,
  fin: boolean,
  rsv1: boolean,
  maskKey: Uint8Array | undefined,
): number {
  target[offset++] = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode;
  const maskBit = maskKey ? 0x80 : 0;
  if (length < 126) {
    target[offset++] = maskBit | length;
  } else if (length < 65536) {
    target[offset++] = maskBit | 126;
    target[offset++] = length >>> 8;
    target[offset++] = length & 0xff;
  } else {
    target[offset++] = maskBit | 127;
    const hi = Math.floor(length / 0x100000000);
    const lo = length >>> 0;
    // All 64 bits (fixed bug: the top two bytes were written as 0, so a length of 2^48 or more,
    // up to 2^53 - 1, went out wrong).
    target[offset++] = hi >>> 24;
    target[offset++] = (hi >>> 16) & 0xff;
    target[offset++] = (hi >>> 8) & 0xff;
    target[offset++] = hi & 0xff;
    target[offset++] = lo >>> 24;
    target[offset++] = (lo >>> 16) & 0xff;
    target[offset++] = (lo >>> 8) & 0xff;
    target[offset++] = lo & 0xff;
  }
  if (maskKey) {
    target[offset++] = maskKey[0]!;
    target[offset++] = maskKey[1]!;
    target[offset++] = maskKey[2]!;
    target[offset++] = maskKey[3]!;
  }
  return offset;
}

/**
 * Two-byte headers of unmasked frames under 126 bytes, made once each and shared (there are at
 * most 256 x 126 of them; a connection uses a handful): encoding a small frame allocates nothing.
 */
const shortHeaders: (Buffer[] | undefined)[] = new Array<Buffer[] | undefined>(256);

function shortHeader(b0: number, length: number): Buffer {
  // Two levels of small dense arrays (one flat sparse array would fall back to dictionary elements).
  const row = (shortHeaders[b0] ??= new Array<Buffer>(126));
  return (row[length] ??= Buffer.from([b0, length]));
}

/**
 * Four-byte headers (payloads of 126..65535 bytes) in a small direct-mapped cache: a frame size
 * sent again and again (the usual case) reuses its header; a collision replaces the entry, so the
 * cache never holds more than MEDIUM_SLOTS headers.
 */
const MEDIUM_SLOTS = 256;
const mediumHeaders: (Buffer | undefined)[] = new Array<Buffer | undefined>(MEDIUM_SLOTS);
/** What each slot's header encodes, `b0 << 16 | length` (-1: empty), compared as one number. */
const mediumKeys = new Int32Array(MEDIUM_SLOTS).fill(-1);

function mediumHeader(b0: number, length: number): Buffer {
  const slot = (length ^ (b0 << 3)) & (MEDIUM_SLOTS - 1);
  const key = (b0 << 16) | length;
  if (mediumKeys[slot] === key) return mediumHeaders[slot]!;
  const header = Buffer.allocUnsafeSlow(4);
  header[0] = b0;
  header[1] = 126;
  header[2] = length >>> 8;
  header[3] = length & 0xff;
  mediumHeaders[slot] = header;
  mediumKeys[slot] = key;
  return header;
}

/**
 * Ten-byte headers (payloads of 64 KiB and more) in a small direct-mapped cache as well: large
 * messages of one size (a file chunk size, a video frame size) reuse theirs.
 */
const LARGE_SLOTS = 64;
const largeHeaders: (Buffer | undefined)[] = new Array<Buffer | undefined>(LARGE_SLOTS);
/** What each slot's header encodes: its length (-1: empty) and first byte. */
const largeLengths = new Float64Array(LARGE_SLOTS).fill(-1);
const largeFirst = new Uint8Array(LARGE_SLOTS);

function largeHeader(b0: number, length: number): Buffer {
  // Lengths here are at most 2^53: the low 32 bits and the rest, both exact.
  const lo = length >>> 0;
  const slot = ((lo >>> 16) ^ lo ^ (b0 << 3)) & (LARGE_SLOTS - 1);
  if (largeLengths[slot] === length && largeFirst[slot] === b0) return largeHeaders[slot]!;
  // Its own small allocation, not a slice of Node's shared pool: a kept header must not keep a pool.
  const header = Buffer.allocUnsafeSlow(10);
  header[0] = b0;
  header[1] = 127;
  header.writeUInt32BE((length - lo) / 0x100000000, 2);
  header.writeUInt32BE(lo, 6);
  largeHeaders[slot] = header;
  largeLengths[slot] = length;
  largeFirst[slot] = b0;
  return header;
}

/**
 * The header of an unmasked frame with a payload of `length` bytes, from the caches above: shared
 * between calls (and connections), so read-only. @internal
 */
export function unmaskedHeader(opcode: number, length: number, fin: boolean, rsv1: boolean): Buffer {
  const b0 = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode;
  if (length < 126) return shortHeader(b0, length);
  if (length < 65536) return mediumHeader(b0, length);
  return largeHeader(b0, length);
}

/**
 * An unmasked frame in one new buffer, the payload copied after the header: for payloads up to
 * {@link COPY_THRESHOLD}, where one small write beats a writev of two. @internal
 */
export function encodeUnmaskedCopy(opcode: number, payload: Buffer, fin: boolean, rsv1: boolean): Buffer {
  const length = payload.length;
  const frame = Buffer.allocUnsafe(headerSize(length, false) + length);
  const at = writeHeader(frame, 0, opcode, length, fin, rsv1, undefined);
  if (length > 0) payload.copy(frame, at);
  return frame;
}

/**
 * Serializes one frame. Unmasked: returns the header and the caller's payload itself (no copy),
 * to be written in order (cork/writev); headers may be shared between calls, so treat the
 * returned buffers as read-only. Masked: one buffer, header and masked payload together,
 * since the caller's payload is never modified.
 *
 * Throws `RangeError` for a frame no peer may accept: an opcode that is not one of
 * `Opcode`'s (reserved, or not 0-15: RFC 6455 §5.2), a control frame (close, ping, pong)
 * with more than 125 bytes of payload or without FIN (§5.5), or a `maskKey` of fewer than 4
 * bytes. ({@link writeHeader}, the low-level writer, checks nothing.)
 */
export function encodeFrame(opcode: number, payload: Uint8Array, options?: FrameOptions): Buffer[] {
  const fin = options?.fin ?? true;
  const rsv1 = options?.rsv1 ?? false;
  const length = payload.length;
  // Binary and text frames (the usual ones) need no check beyond these two comparisons.
  if (opcode !== 2 && opcode !== 1) checkFrame(opcode, length, fin);
  if (options?.mask !== true) {
    const body = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, length);
    return [unmaskedHeader(opcode, length, fin, rsv1), body];
  }
  const maskKey = options.maskKey;
  if (maskKey !== undefined && maskKey.length < 4) {
    throw new RangeError(`maskKey has ${maskKey.length} bytes; a masking key has 4 (RFC 6455 §5.3)`);
  }
  return [encodeMasked(opcode, payload, fin, rsv1, maskKey)];
}

/** encodeFrame's checks of frames other than text and binary: see there. */
function checkFrame(opcode: number, length: number, fin: boolean): void {
  // 0-2 data, 8-10 control; 3-7 and 11-15 are reserved (RFC 6455 §5.2), anything else is not an opcode.
  if (!(opcode === 0 || opcode === 1 || opcode === 2 || opcode === 8 || opcode === 9 || opcode === 10)) {
    const reserved = Number.isInteger(opcode) && opcode >= 0 && opcode <= 15;
    throw new RangeError(`opcode ${reserved ? `0x${opcode.toString(16)} is reserved` : `${String(opcode)} is not a 4-bit opcode`} (RFC 6455 §5.2)`);
  }
  if (opcode >= 8) {
    if (length > MAX_CONTROL_PAYLOAD) {
      throw new RangeError(`control frame payload is ${length} bytes; at most ${MAX_CONTROL_PAYLOAD} are allowed (RFC 6455 §5.5)`);
    }
    if (!fin) throw new RangeError('a control frame must not be fragmented: fin must be true (RFC 6455 §5.5)');
  }
}

/**
 * One masked frame in one new buffer: header, key (fresh and random unless `maskKey` is given,
 * RFC 6455 §5.3) and the payload masked into it; the caller's payload is not modified.
 */
export function encodeMasked(opcode: number, payload: Uint8Array, fin: boolean, rsv1: boolean, maskKey?: Uint8Array): Buffer {
  const length = payload.length;
  const frame = Buffer.allocUnsafe(headerSize(length, true) + length);
  let at = writeHeader(frame, 0, opcode, length, fin, rsv1, undefined);
  frame[1] = frame[1]! | 0x80;
  if (maskKey) frame.set(maskKey.subarray(0, 4), at);
  else writeRandomMaskKey(frame, at);
  at += 4;
  if (length >= SMALL_MASK) {
    mask(payload, frame.subarray(at - 4, at), frame, at);
    return frame;
  }
  // Small payloads: the key in registers, four bytes per iteration, no view and no call.
  const k0 = frame[at - 4]!;
  const k1 = frame[at - 3]!;
  const k2 = frame[at - 2]!;
  const k3 = frame[at - 1]!;
  const end4 = length & ~3;
  let i = 0;
  for (; i < end4; i += 4) {
    frame[at + i] = payload[i]! ^ k0;
    frame[at + i + 1] = payload[i + 1]! ^ k1;
    frame[at + i + 2] = payload[i + 2]! ^ k2;
    frame[at + i + 3] = payload[i + 3]! ^ k3;
  }
  if (i < length) frame[at + i] = payload[i]! ^ k0;
  if (i + 1 < length) frame[at + i + 1] = payload[i + 1]! ^ k1;
  if (i + 2 < length) frame[at + i + 2] = payload[i + 2]! ^ k2;
  return frame;
}
