/**
 * Incremental UTF-8 validation (RFC 3629, as RFC 6455 §8.1 requires for text messages).
 *
 * Feeds of any size are validated as they arrive; an invalid sequence is reported at the feed that
 * contains its first bad byte, also when a character is split across feeds. Whole runs are
 * checked by Node's native `buffer.isUtf8`; only the at most 3 bytes of a character cut by a
 * feed boundary are looked at in JavaScript.
 */
import * as buffer from 'node:buffer';

const isUtf8 = buffer.isUtf8;

/**
 * How many more bytes a sequence that starts with `lead` needs, or -1 when `lead` cannot start a
 * sequence (a continuation byte, C0/C1 overlongs, F5..FF).
 */
function sequenceLength(lead: number): number {
  if (lead < 0x80) return 1;
  if (lead < 0xc2) return -1;
  if (lead < 0xe0) return 2;
  if (lead < 0xf0) return 3;
  if (lead < 0xf5) return 4;
  return -1;
}

/**
 * True when `bytes[0..n)` (n < full length) can still be completed into a valid character: checks
 * the lead, the continuation bytes and the second-byte ranges that exclude overlongs, surrogates
 * and code points over U+10FFFF.
 */
function isViablePrefix(bytes: Uint8Array, n: number): boolean {
  const lead = bytes[0]!;
  if (sequenceLength(lead) < 0) return false;
  if (n < 2) return true;
  const b1 = bytes[1]!;
  if ((b1 & 0xc0) !== 0x80) return false;
  if (lead === 0xe0 && b1 < 0xa0) return false; // overlong
  if (lead === 0xed && b1 > 0x9f) return false; // surrogates
  if (lead === 0xf0 && b1 < 0x90) return false; // overlong
  if (lead === 0xf4 && b1 > 0x8f) return false; // > U+10FFFF
  if (n < 3) return true;
  return (bytes[2]! & 0xc0) === 0x80;
}

export class Utf8Validator {
  /** Bytes of a character cut by the previous feed's end. */
  private readonly pending = new Uint8Array(4);
  private pendingLength = 0;
  private pendingNeed = 0;

  /** True while no character is cut at the end of what was fed. */
  get complete(): boolean {
    return this.pendingLength === 0;
  }

  /** Forgets any state: the next feed starts a new text. */
  reset(): void {
    this.pendingLength = 0;
    this.pendingNeed = 0;
  }

  /**
   * Validates the next bytes of the text. Returns false at the first feed that makes the text
   * invalid. With `final`, a character left incomplete at the end is invalid too.
   */
  feed(chunk: Uint8Array, final: boolean): boolean {
    let start = 0;
    const length = chunk.length;
    if (this.pendingLength > 0) {
      // Complete the character carried over from the previous feed.
      while (this.pendingLength < this.pendingNeed && start < length) {
        this.pending[this.pendingLength++] = chunk[start++]!;
      }
      if (this.pendingLength < this.pendingNeed) {
        if (!isViablePrefix(this.pending, this.pendingLength)) return false;
        return !final;
      }
      if (!isUtf8(this.pending.subarray(0, this.pendingLength))) return false;
      this.pendingLength = 0;
      this.pendingNeed = 0;
    }
    if (start === length) return true;
    // Find where a character cut by the end of this chunk starts (looking back at most 3 bytes).
    let cut = length;
    const stop = Math.max(start, length - 3);
    for (let i = length - 1; i >= stop; i--) {
      const b = chunk[i]!;
      if ((b & 0xc0) === 0x80) continue; // continuation: keep looking for the lead
      if (b >= 0xc0) {
        const need = sequenceLength(b);
        if (need > length - i) cut = i;
      }
      break;
    }
    if (cut > start) {
      const body = start === 0 && cut === length ? chunk : chunk.subarray(start, cut);
      if (!isUtf8(body)) return false;
    }
    if (cut < length) {
      const need = sequenceLength(chunk[cut]!);
      if (need < 0) return false;
      this.pendingNeed = need;
      this.pendingLength = length - cut;
      this.pending.set(chunk.subarray(cut), 0);
      if (!isViablePrefix(this.pending, this.pendingLength)) return false;
      return !final;
    }
    return true;
  }
}

/** Validates a whole text at once. */
export function isValidUtf8(bytes: Uint8Array): boolean {
  return isUtf8(bytes);
}

/** Node's native ASCII check (simdutf; Node 18.15+ and 19.6+), or a stand-in that says no. */
const isAscii: (bytes: Uint8Array) => boolean = (buffer as { isAscii?: (bytes: Uint8Array) => boolean }).isAscii ?? (() => false);

/** Buffer's Latin-1 and UTF-8 readers, which `buf.toString(encoding)` dispatches to (undeclared in @types/node). */
interface RawReaders extends Buffer {
  latin1Slice(start: number, end: number): string;
  utf8Slice(start: number, end: number): string;
}

/** Decodes UTF-8 and throws on any invalid sequence; a leading BOM is kept (it is message text). */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Decodes a whole text, or returns undefined when it is not valid UTF-8 (RFC 3629). ASCII, the
 * usual content of text messages (JSON, mostly), is its own Latin-1, and V8 makes a string from
 * Latin-1 bytes with a copy; its UTF-8 decoder looks at every byte on the way (measured on Node
 * 20: 0.15 against 0.94 ms for 1 MiB, 1.3 against 3.2 µs for 16 KiB, the same at 64 bytes).
 */
export function decodeUtf8(bytes: Buffer): string | undefined {
  if (isAscii(bytes)) return (bytes as RawReaders).latin1Slice(0, bytes.length);
  if (bytes.length >= TRANSCODE_MIN && transcode !== undefined) return isUtf8(bytes) ? viaUtf16(bytes) : undefined;
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/** Decodes a text already known to be valid UTF-8 (the same ways as decodeUtf8). */
export function decodeValidUtf8(bytes: Buffer): string {
  if (isAscii(bytes)) return (bytes as RawReaders).latin1Slice(0, bytes.length);
  if (bytes.length >= TRANSCODE_MIN && transcode !== undefined) return viaUtf16(bytes);
  return (bytes as RawReaders).utf8Slice(0, bytes.length);
}

/**
 * Node's ICU transcoder (absent from a Node built without ICU). Converting valid UTF-8 to UTF-16
 * and making the string from that is several times faster than V8's UTF-8 decoder for text that
 * is not ASCII, from about 2 KB (measured on Node 20: 16 KiB of CJK 63 against 6.7 µs, of
 * accented Latin 95 against 8 µs, mostly ASCII with some accents 24 against 10 µs; 64 bytes 0.3
 * against 0.7 µs, hence the threshold). The string is two bytes per character even where V8 would
 * have made a one-byte string (text that is all Latin-1).
 */
const transcode = (buffer as { transcode?: (source: Uint8Array, from: string, to: string) => Buffer }).transcode;
const TRANSCODE_MIN = 2048;

/** Valid UTF-8 (checked by the caller: the transcoder replaces bad sequences) as a string. */
function viaUtf16(bytes: Buffer): string {
  const utf16 = transcode!(bytes, 'utf8', 'utf16le') as Buffer & { ucs2Slice(start: number, end: number): string };
  return utf16.ucs2Slice(0, utf16.length);
}

/**
 * The UTF-8 bytes of a string, `length` of them (its `Buffer.byteLength`, which the caller has).
 * A string whose UTF-8 length is its length is ASCII (every other character takes 2-4 bytes), and
 * ASCII is its own Latin-1: V8's Latin-1 writer is the faster one (1 MiB: 0.07 against 0.15 ms).
 * Anything else, from 2048 characters on, goes through the ICU transcoder from the string's
 * UTF-16: 2-4 times faster than V8's UTF-8 writer (measured on Node 20, 250,000 characters: CJK
 * 206 against 600-1000 µs, accented Latin 114 against 260-320 µs). A lone surrogate (which the
 * transcoder refuses; the writer makes it U+FFFD) and shorter strings go through the writer.
 */
export function encodeUtf8(text: string, length: number): Buffer {
  if (length === text.length) {
    const bytes = Buffer.allocUnsafe(length);
    (bytes as RawWriters).latin1Write(text, 0, length);
    return bytes;
  }
  if (text.length >= TRANSCODE_MIN && transcode !== undefined) {
    try {
      const bytes = transcode(Buffer.from(text, 'utf16le'), 'utf16le', 'utf8');
      if (bytes.length === length) return bytes;
    } catch {
      // A lone surrogate: the writer below.
    }
  }
  const bytes = Buffer.allocUnsafe(length);
  (bytes as RawWriters).utf8Write(text, 0, length);
  return bytes;
}

/**
 * Buffer's Latin-1 and UTF-8 writers, which `buf.write(string, offset, length, encoding)`
 * dispatches to (undeclared in @types/node; present on every Buffer since Node's early days).
 * Calling them directly skips the encoding switch: 53 vs 76 ns for 64 chars. @internal
 */
export interface RawWriters extends Buffer {
  latin1Write(text: string, offset: number, length: number): number;
  utf8Write(text: string, offset: number, length: number): number;
}
