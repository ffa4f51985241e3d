/**
 * Hand-made frames for tests, written independently of the library's writer so that the two check
 * each other: `frame()` builds the bytes of one frame (any bits, any length encoding), `hex()`
 * reads a fixture like `'81 05 48 65 6c 6c 6f'`, and `decodeFrames()` splits bytes into frames.
 */

export interface FrameSpec {
  opcode: number;
  payload?: Uint8Array | string;
  fin?: boolean;
  rsv1?: boolean;
  rsv2?: boolean;
  rsv3?: boolean;
  /** A 4-byte key, or true for a fixed test key; false/undefined sends unmasked. */
  mask?: Uint8Array | boolean;
  /** Force a length encoding (7, 16 or 64 bits) even where a shorter one would do. */
  lengthBits?: 7 | 16 | 64;
  /** Override the length written in the header (for lying headers). */
  declaredLength?: number | bigint;
}

export const TEST_KEY = Uint8Array.of(0x37, 0xfa, 0x21, 0x3d);

/** Bytes of a hex fixture; whitespace is ignored. */
export function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

export function toBytes(payload: Uint8Array | string | undefined): Buffer {
  if (payload === undefined) return Buffer.alloc(0);
  return typeof payload === 'string' ? Buffer.from(payload, 'utf8') : Buffer.from(payload);
}

/** The bytes of one frame as the spec describes (RFC 6455 §5.2), built byte by byte. */
export function frame(spec: FrameSpec): Buffer {
  const payload = toBytes(spec.payload);
  const key = spec.mask === true ? TEST_KEY : spec.mask || undefined;
  const length = spec.declaredLength ?? payload.length;
  const bits = spec.lengthBits ?? (length < 126 ? 7 : length < 65536 ? 16 : 64);
  const head: number[] = [];
  head.push((spec.fin === false ? 0 : 0x80) | (spec.rsv1 ? 0x40 : 0) | (spec.rsv2 ? 0x20 : 0) | (spec.rsv3 ? 0x10 : 0) | spec.opcode);
  const maskBit = key ? 0x80 : 0;
  if (bits === 7) {
    head.push(maskBit | Number(length));
  } else if (bits === 16) {
    head.push(maskBit | 126, Number(length) >> 8, Number(length) & 0xff);
  } else {
    head.push(maskBit | 127);
    const big = BigInt(length);
    for (let i = 7; i >= 0; i--) head.push(Number((big >> BigInt(8 * i)) & 0xffn));
  }
  if (key) head.push(...key);
  const body = Buffer.from(payload);
  if (key) for (let i = 0; i < body.length; i++) body[i] = body[i]! ^ key[i % 4]!;
  return Buffer.concat([Buffer.from(head), body]);
}

/** A close payload: 2-byte code then the reason bytes. */
export function closePayload(code: number, reason: Uint8Array | string = ''): Buffer {
  const r = toBytes(reason);
  const out = Buffer.alloc(2 + r.length);
  out.writeUInt16BE(code, 0);
  r.copy(out, 2);
  return out;
}

export interface DecodedFrame {
  fin: boolean;
  rsv: number;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

/** Decodes the frame starting at `at`, or undefined when it is not complete yet. */
export function decodeFrame(bytes: Buffer, at = 0): { frame: DecodedFrame; next: number } | undefined {
  if (bytes.length - at < 2) return undefined;
  const b0 = bytes[at]!;
  const b1 = bytes[at + 1]!;
  let p = at + 2;
  let length = b1 & 0x7f;
  if (length === 126) {
    if (bytes.length < p + 2) return undefined;
    length = bytes.readUInt16BE(p);
    p += 2;
  } else if (length === 127) {
    if (bytes.length < p + 8) return undefined;
    length = Number(bytes.readBigUInt64BE(p));
    p += 8;
  }
  const masked = (b1 & 0x80) !== 0;
  let key: Buffer | undefined;
  if (masked) {
    if (bytes.length < p + 4) return undefined;
    key = bytes.subarray(p, p + 4);
    p += 4;
  }
  if (bytes.length < p + length) return undefined;
  const payload = Buffer.from(bytes.subarray(p, p + length));
  if (key) for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ key[i % 4]!;
  return { frame: { fin: (b0 & 0x80) !== 0, rsv: (b0 >> 4) & 7, opcode: b0 & 0x0f, masked, payload }, next: p + length };
}

/** Splits every complete frame off `bytes`; returns them and how many bytes they used. */
export function decodeFrames(bytes: Buffer): { frames: DecodedFrame[]; used: number } {
  const frames: DecodedFrame[] = [];
  let at = 0;
  for (;;) {
    const one = decodeFrame(bytes, at);
    if (!one) break;
    frames.push(one.frame);
    at = one.next;
  }
  return { frames, used: at };
}
