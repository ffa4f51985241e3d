/**
 * The fuzzer's permessage-deflate payload codec (RFC 7692 §7.2), nothing from the library under
 * test:
 *
 * - `MessageDeflater` compresses what the fuzzer sends with Node's zlib (raw DEFLATE, level 6,
 *   memLevel 8, as Autobahn's Python zlib does), ends each message with a sync flush and removes
 *   the `00 00 ff ff` tail. Context takeover is done with a preset dictionary: every message is a
 *   one-shot compression whose dictionary is the last 2^windowBits bytes sent before it, which is
 *   exactly the history the peer's inflater holds; without takeover the dictionary is empty.
 * - `StrictInflater` is a DEFLATE decoder (RFC 1951) written for the fuzzer. zlib's inflate only
 *   enforces the window across calls (a back reference into the output of the same call may go
 *   further back than the window), so it cannot tell whether the peer kept to the negotiated
 *   `*_max_window_bits`; this decoder checks every distance against the negotiated window and
 *   against the history the peer may use (none at the start of a message without context
 *   takeover). It also requires each message to end as §7.2.1 says (an empty stored block, whose
 *   LEN/NLEN are the tail the receiver appends), or with a final block (§7.2.3.3).
 */
import { constants, deflateRawSync } from 'node:zlib';

/** The tail a sender removes and a receiver appends (RFC 7692 §7.2.1, §7.2.2). */
export const DEFLATE_TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

/**
 * Compressor for one direction. zlib has no raw DEFLATE with an 8-bit window (Node asks zlib for
 * 9 instead); 9 is used for a negotiated 8, which RFC 7692 allows since zlib never emits a
 * distance above 2^9 - 262 = 250 bytes, inside a 256-byte window (§7.1.2.1: a smaller or equal
 * window is always allowed). The dictionary is still cut to 2^8 bytes.
 */
export class MessageDeflater {
  private history: Buffer = Buffer.alloc(0);

  constructor(
    private readonly windowBits: number,
    private readonly noContextTakeover: boolean,
  ) {}

  /** The compressed payload of one message (tail removed). */
  compress(data: Buffer): Buffer {
    const options: Parameters<typeof deflateRawSync>[1] = {
      windowBits: Math.max(9, this.windowBits),
      level: 6,
      memLevel: 8,
      finishFlush: constants.Z_SYNC_FLUSH,
    };
    if (this.history.length > 0) options.dictionary = this.history;
    const out = deflateRawSync(data, options);
    if (out.length < 4 || !out.subarray(out.length - 4).equals(DEFLATE_TAIL)) throw new Error('zlib output does not end with a sync flush');
    if (!this.noContextTakeover) {
      const keep = 1 << this.windowBits;
      this.history = data.length >= keep ? Buffer.from(data.subarray(data.length - keep)) : Buffer.concat([this.history, data]).subarray(-keep);
    }
    return out.subarray(0, out.length - 4);
  }
}

// ---- Decoding (RFC 1951 §3.2) -------------------------------------------------------------------

const LENGTH_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LENGTH_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE = [
  1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385,
  24577,
];
const DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
/** Order of the code length code lengths in a dynamic block header. */
const CODE_LENGTH_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

class DeflateDataError extends Error {}
const bad = (reason: string): never => {
  throw new DeflateDataError(reason);
};

/**
 * A canonical Huffman code as a lookup table indexed by the next `bits` input bits (LSB first):
 * each entry is `symbol << 4 | code length`, 0 where no code matches.
 */
interface Huffman {
  table: Uint32Array;
  bits: number;
}

/**
 * Builds the decoding table for `lengths`; null for a set with no code at all. As zlib does, an
 * over-subscribed set is refused, and so is an incomplete one unless it is a single 1-bit code.
 */
function buildHuffman(lengths: ArrayLike<number>, what: string): Huffman | null {
  const count = new Array<number>(16).fill(0);
  let maxLen = 0;
  for (let i = 0; i < lengths.length; i++) {
    const len = lengths[i]!;
    count[len]!++;
    if (len > maxLen) maxLen = len;
  }
  if (maxLen === 0) return null;
  let left = 1;
  for (let len = 1; len <= 15; len++) {
    left = left * 2 - count[len]!;
    if (left < 0) bad(`over-subscribed ${what} code`);
  }
  if (left > 0 && !(maxLen === 1 && what !== 'code length')) bad(`incomplete ${what} code`);
  // The first code of each length (RFC 1951 §3.2.2), lengths of 0 counting for nothing.
  const next = new Array<number>(16).fill(0);
  for (let len = 2, code = 0; len <= 15; len++) {
    code = (code + count[len - 1]!) << 1;
    next[len] = code;
  }
  const size = 1 << maxLen;
  const table = new Uint32Array(size);
  for (let symbol = 0; symbol < lengths.length; symbol++) {
    const len = lengths[symbol]!;
    if (len === 0) continue;
    const code = next[len]!++;
    let reversed = 0;
    for (let i = 0; i < len; i++) reversed |= ((code >> i) & 1) << (len - 1 - i);
    for (let at = reversed; at < size; at += 1 << len) table[at] = (symbol << 4) | len;
  }
  return { table, bits: maxLen };
}

const FIXED_LITERALS = buildHuffman(
  Array.from({ length: 288 }, (_, i) => (i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8)),
  'literal/length',
)!;
const FIXED_DISTANCES = buildHuffman(new Array<number>(32).fill(5), 'distance')!;

/** A decoding failure, with what went wrong. */
export type InflateResult = { data: Buffer } | { error: string };

/**
 * Decoder for one direction: `inflate()` takes each compressed message's payload (tail not yet
 * appended) and returns its data, or what is wrong with it.
 */
export class StrictInflater {
  /** The last bytes of earlier messages the peer may refer to (with context takeover). */
  private history: Buffer = Buffer.alloc(0);
  /** The decoder failed once: every later message is refused (the fuzzer drops the connection anyway). */
  private broken = false;
  /** Messages that ended with a final block instead of an empty stored block. */
  finalBlockEndings = 0;

  constructor(
    readonly windowBits: number,
    readonly noContextTakeover: boolean,
    private readonly maxOutput: number,
  ) {}

  inflate(payload: Buffer): InflateResult {
    if (this.broken) return { error: 'an earlier message could not be decoded' };
    try {
      const data = this.decode(Buffer.concat([payload, DEFLATE_TAIL]));
      if (!this.noContextTakeover) {
        const keep = 1 << this.windowBits;
        this.history = data.length >= keep ? Buffer.from(data.subarray(data.length - keep)) : Buffer.concat([this.history, data]).subarray(-keep);
      }
      return { data };
    } catch (error) {
      if (!(error instanceof DeflateDataError)) throw error;
      this.broken = true;
      return { error: error.message };
    }
  }

  private decode(input: Buffer): Buffer {
    const windowSize = 1 << this.windowBits;
    const start = this.noContextTakeover ? 0 : this.history.length;
    let out = Buffer.allocUnsafe(Math.max(1024, start + input.length * 4));
    if (start > 0) this.history.copy(out, 0);
    let outPos = start;
    let pos = 0;
    let bitBuf = 0;
    let bitCnt = 0;

    const ensure = (more: number): void => {
      if (outPos + more <= out.length) return;
      if (outPos - start + more > this.maxOutput) bad('inflated message larger than the fuzzer accepts');
      let size = out.length * 2;
      while (size < outPos + more) size *= 2;
      const bigger = Buffer.allocUnsafe(size);
      out.copy(bigger, 0, 0, outPos);
      out = bigger;
    };
    const need = (n: number): void => {
      while (bitCnt < n) {
        if (pos >= input.length) bad('the compressed data ends inside a DEFLATE block');
        bitBuf |= input[pos++]! << bitCnt;
        bitCnt += 8;
      }
    };
    const bits = (n: number): number => {
      need(n);
      const value = bitBuf & ((1 << n) - 1);
      bitBuf >>>= n;
      bitCnt -= n;
      return value;
    };
    const symbol = (code: Huffman): number => {
      // Load up to `code.bits` bits; near the end of the input a shorter code may still match.
      while (bitCnt < code.bits && pos < input.length) {
        bitBuf |= input[pos++]! << bitCnt;
        bitCnt += 8;
      }
      const entry = code.table[bitBuf & ((1 << code.bits) - 1)]!;
      const len = entry & 15;
      if (len === 0) bad('invalid Huffman code');
      if (len > bitCnt) bad('the compressed data ends inside a DEFLATE block');
      bitBuf >>>= len;
      bitCnt -= len;
      return entry >>> 4;
    };

    for (;;) {
      const final = bits(1) === 1;
      const type = bits(2);
      let storedEnd = false;
      if (type === 0) {
        // Stored block: skip to a byte boundary, give back whole bytes read ahead, read LEN/NLEN.
        bitBuf >>>= bitCnt & 7;
        bitCnt -= bitCnt & 7;
        pos -= bitCnt >> 3;
        bitBuf = 0;
        bitCnt = 0;
        if (pos + 4 > input.length) bad('the compressed data ends inside a DEFLATE block');
        const len = input.readUInt16LE(pos);
        if ((len ^ 0xffff) !== input.readUInt16LE(pos + 2)) bad('stored block LEN and NLEN do not match');
        pos += 4;
        if (pos + len > input.length) bad('the compressed data ends inside a DEFLATE block');
        ensure(len);
        input.copy(out, outPos, pos, pos + len);
        outPos += len;
        pos += len;
        storedEnd = len === 0;
      } else if (type === 3) {
        bad('DEFLATE block type 3 (reserved)');
      } else {
        let literals = FIXED_LITERALS;
        let distances: Huffman | null = FIXED_DISTANCES;
        if (type === 2) [literals, distances] = readDynamicCodes(bits, symbol);
        for (;;) {
          const sym = symbol(literals);
          if (sym < 256) {
            ensure(1);
            out[outPos++] = sym;
            continue;
          }
          if (sym === 256) break;
          if (sym > 285) bad(`invalid literal/length symbol ${sym}`);
          const length = LENGTH_BASE[sym - 257]! + bits(LENGTH_EXTRA[sym - 257]!);
          if (distances === null) bad('a length code in a block without distance codes');
          const dsym = symbol(distances!);
          if (dsym > 29) bad(`invalid distance symbol ${dsym}`);
          const distance = DIST_BASE[dsym]! + bits(DIST_EXTRA[dsym]!);
          // RFC 7692 §7.1.2: the peer's LZ77 window is at most 2^max_window_bits bytes.
          if (distance > windowSize) bad(`a back reference of ${distance} bytes, beyond the negotiated window of ${windowSize} bytes`);
          // RFC 7692 §7.2.2 / §8.1.1: only what the peer may still refer to (nothing from earlier
          // messages without context takeover).
          if (distance > outPos) {
            bad(
              outPos >= start
                ? `a back reference of ${distance} bytes to before the ${outPos - start} bytes of this message${start > 0 ? ' and its history' : ' (no context takeover)'}`
                : 'a back reference before the start of the data',
            );
          }
          ensure(length);
          if (distance >= length) {
            out.copyWithin(outPos, outPos - distance, outPos - distance + length);
            outPos += length;
          } else {
            for (let i = 0; i < length; i++, outPos++) out[outPos] = out[outPos - distance]!;
          }
        }
      }
      if (final) {
        // RFC 7692 §7.2.3.3: a message may end with a final block; after it only the tail we
        // appended may follow (and the padding bits of the last byte).
        const rest = input.length - pos + (bitCnt >> 3);
        if (rest !== DEFLATE_TAIL.length) bad('data after the final DEFLATE block');
        this.finalBlockEndings++;
        break;
      }
      // RFC 7692 §7.2.1: the message ends with an empty stored block, whose LEN/NLEN are the tail.
      if (storedEnd && pos === input.length) break;
      if (pos === input.length && bitCnt < 3) bad('the compressed message does not end with an empty stored block (sync flush)');
    }
    if (outPos - start > this.maxOutput) bad('inflated message larger than the fuzzer accepts');
    return Buffer.from(out.subarray(start, outPos));
  }
}

/** Reads the code definitions of a dynamic block (RFC 1951 §3.2.7). */
function readDynamicCodes(bits: (n: number) => number, symbol: (code: Huffman) => number): [Huffman, Huffman | null] {
  const hlit = bits(5) + 257;
  const hdist = bits(5) + 1;
  const hclen = bits(4) + 4;
  if (hlit > 286) bad(`too many literal/length codes (${hlit})`);
  if (hdist > 30) bad(`too many distance codes (${hdist})`);
  const codeLengths = new Array<number>(19).fill(0);
  for (let i = 0; i < hclen; i++) codeLengths[CODE_LENGTH_ORDER[i]!] = bits(3);
  const lengthCode = buildHuffman(codeLengths, 'code length');
  if (lengthCode === null) bad('no code length codes');
  const lengths = new Array<number>(hlit + hdist).fill(0);
  for (let i = 0; i < hlit + hdist; ) {
    const sym = symbol(lengthCode!);
    if (sym < 16) {
      lengths[i++] = sym;
      continue;
    }
    let repeat: number;
    let value = 0;
    if (sym === 16) {
      if (i === 0) bad('a repeated code length with no previous length');
      value = lengths[i - 1]!;
      repeat = 3 + bits(2);
    } else if (sym === 17) {
      repeat = 3 + bits(3);
    } else {
      repeat = 11 + bits(7);
    }
    if (i + repeat > hlit + hdist) bad('code lengths repeat past the end');
    while (repeat-- > 0) lengths[i++] = value;
  }
  if (lengths[256] === 0) bad('no end-of-block code');
  const literals = buildHuffman(lengths.slice(0, hlit), 'literal/length')!;
  const distances = buildHuffman(lengths.slice(hlit), 'distance');
  return [literals, distances];
}
