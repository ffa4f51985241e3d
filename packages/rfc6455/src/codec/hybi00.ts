/**
 * hybi-00 framing (draft-hixie-thewebsocketprotocol-76 §5.3 / §4.2): text frames
 * `0x00 <UTF-8> 0xFF`, the closing frame `0xFF 0x00`, and length-prefixed frames (type byte with
 * the high bit set) that carry no message and are skipped.
 *
 * `Hybi00Parser` is incremental: it takes chunks of any size (down to one byte), keeps views of
 * them (no copy unless a frame spans chunks), and reports through callbacks. A failure is reported
 * once through `onError`, never thrown from `push`; after an error or the closing frame all further
 * input is discarded.
 *
 * @see https://datatracker.ietf.org/doc/html/draft-hixie-thewebsocketprotocol-76#section-5.3
 */

import { isUtf8 } from 'node:buffer';
import { InvalidUtf8Error, MessageTooBigError } from '../errors.js';
import { Defaults } from './constants.js';

/** The closing frame (draft-76 §4.2 / §5.3). Shared: never write into it. */
export const HYBI00_CLOSE: Buffer = Buffer.from([0xff, 0x00]);

/** A text frame: `0x00`, the UTF-8 bytes of `s` (or `s` itself, bytes the caller knows are UTF-8), `0xFF` (draft-76 §4.2). One allocation. */
export function encodeHybi00Text(s: string | Uint8Array): Buffer {
  const length = typeof s === 'string' ? Buffer.byteLength(s, 'utf8') : s.length;
  const frame = Buffer.allocUnsafe(length + 2);
  frame[0] = 0x00;
  if (typeof s === 'string') frame.write(s, 1, length, 'utf8');
  else frame.set(s, 1);
  frame[length + 1] = 0xff;
  return frame;
}

const EMPTY = Buffer.alloc(0);

export type Hybi00ParseError = InvalidUtf8Error | MessageTooBigError;

export interface Hybi00ParserHandlers {
  /** A complete text frame (type 0x00), decoded. */
  onMessage(text: string): void;
  /**
   * Optional: when present, complete text frames come here instead, as their UTF-8 bytes (checked
   * as for `onMessage`: invalid UTF-8 goes to `onError`), not decoded. The bytes may be a view of
   * a pushed chunk.
   */
  onText?: ((bytes: Buffer) => void) | undefined;
  /** The peer's closing frame `0xFF 0x00`. The caller answers with `HYBI00_CLOSE` and closes. */
  onClose(): void;
  /** Invalid UTF-8 (close the connection) or a frame over `maxMessageSize`. Called at most once. */
  onError(error: Hybi00ParseError): void;
}

export interface Hybi00ParserOptions {
  /**
   * The largest frame payload in bytes, for text frames and for skipped frames alike; checked as
   * bytes arrive, so no frame is buffered beyond it. Default `Defaults.maxMessageSize`.
   */
  readonly maxMessageSize?: number | undefined;
}

// Parser states (plain numbers: no const enums under isolated modules).
const FRAME_TYPE = 0;
const TEXT = 1;
const DISCARD_TEXT = 2;
const LENGTH = 3;
const SKIP = 4;
const DONE = 5;

/** Frames up to this size are checked for ASCII in JavaScript before any native call. */
const SMALL_FRAME = 128;

export class Hybi00Parser {
  private readonly handlers: Hybi00ParserHandlers;
  private readonly maxMessageSize: number;
  private state = FRAME_TYPE;
  private frameType = 0;
  /** LENGTH: the length read so far; SKIP: the bytes left to skip. */
  private length = 0;
  /** Views of the current text frame's bytes, and their total size (also counted when discarding). */
  private parts: Buffer[] = [];
  private size = 0;

  constructor(handlers: Hybi00ParserHandlers, options: Hybi00ParserOptions = {}) {
    this.handlers = handlers;
    this.maxMessageSize = options.maxMessageSize ?? Defaults.maxMessageSize;
  }

  /** True once the closing frame or an error was seen: later input is ignored. */
  get done(): boolean {
    return this.state === DONE;
  }

  /** True when the input so far ends inside a frame (at EOF the frame is lost, not delivered). */
  get midFrame(): boolean {
    return this.state !== FRAME_TYPE && this.state !== DONE;
  }

  /**
   * Feed bytes. Calls the handlers synchronously for each complete frame. The parser keeps views of
   * `chunk` until the frame that contains them ends, so the caller must not reuse its memory.
   * Handlers must not throw: the rest of the chunk would be lost.
   */
  push(chunk: Uint8Array): void {
    if (this.state === DONE) return;
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let pos = 0;
    while (pos < buf.length) {
      switch (this.state) {
        case FRAME_TYPE: {
          const type = buf[pos++] as number;
          this.frameType = type;
          this.size = 0;
          if ((type & 0x80) !== 0) {
            // draft-76 §5.3: a high-bit frame type is followed by a length.
            this.state = LENGTH;
            this.length = 0;
          } else {
            // draft-76 §5.3: 0x00 is a text frame; other low types are read to 0xFF and discarded.
            this.state = type === 0x00 ? TEXT : DISCARD_TEXT;
          }
          break;
        }
        case TEXT:
        case DISCARD_TEXT: {
          const end = buf.indexOf(0xff, pos);
          const stop = end === -1 ? buf.length : end;
          const n = stop - pos;
          if (this.size + n > this.maxMessageSize) {
            this.fail(new MessageTooBigError(`hybi-00 frame over ${this.maxMessageSize} bytes`, this.maxMessageSize));
            return;
          }
          if (end !== -1 && this.state === TEXT && this.parts.length === 0) {
            // The whole frame is in this chunk: decode it in place, no view, no copy.
            this.state = FRAME_TYPE;
            if (!this.deliverRange(buf, pos, end)) return;
            pos = end + 1;
            break;
          }
          if (this.state === TEXT && n > 0) this.parts.push(buf.subarray(pos, stop));
          this.size += n;
          if (end === -1) return;
          pos = end + 1;
          if (this.state === DISCARD_TEXT) {
            this.state = FRAME_TYPE;
            break;
          }
          if (!this.deliverText()) return;
          break;
        }
        case LENGTH: {
          const b = buf[pos++] as number;
          // draft-76 §5.3: 7-bit groups, most significant first, while the high bit is set.
          this.length = this.length * 128 + (b & 0x7f);
          if (this.length > this.maxMessageSize) {
            this.fail(new MessageTooBigError(`hybi-00 frame over ${this.maxMessageSize} bytes`, this.maxMessageSize));
            return;
          }
          if ((b & 0x80) !== 0) break;
          if (this.frameType === 0xff && this.length === 0) {
            // draft-76 §5.3: type 0xFF with length 0 is the closing handshake.
            this.state = DONE;
            this.handlers.onClose();
            return;
          }
          this.state = this.length === 0 ? FRAME_TYPE : SKIP;
          break;
        }
        case SKIP: {
          const n = Math.min(this.length, buf.length - pos);
          pos += n;
          this.length -= n;
          if (this.length === 0) this.state = FRAME_TYPE;
          break;
        }
        default:
          return;
      }
    }
  }

  /** Deliver `buf[start..end)` as a text frame; false when it is not UTF-8. */
  private deliverRange(buf: Buffer, start: number, end: number): boolean {
    if (end - start <= SMALL_FRAME && this.handlers.onText === undefined) {
      // Short frames: an ASCII scan in JS is cheaper than the native calls.
      let i = start;
      while (i < end && (buf[i] as number) < 0x80) i++;
      if (i === end) {
        this.handlers.onMessage(buf.toString('latin1', start, end));
        return true;
      }
    }
    const data = buf.subarray(start, end);
    // draft-76 §5.3 step 4 reads the bytes as UTF-8; like RFC 6455 §8.1 we fail on invalid input.
    if (!isUtf8(data)) {
      this.fail(new InvalidUtf8Error());
      return false;
    }
    this.emitText(data);
    return true;
  }

  /** Decode and deliver the finished text frame; false when it failed. */
  private deliverText(): boolean {
    const parts = this.parts;
    this.parts = [];
    this.state = FRAME_TYPE;
    if (parts.length === 0) {
      this.emitText(EMPTY);
      return true;
    }
    const data = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, this.size);
    // draft-76 §5.3 step 4 reads the bytes as UTF-8; like RFC 6455 §8.1 we fail on invalid input.
    if (!isUtf8(data)) {
      this.fail(new InvalidUtf8Error());
      return false;
    }
    this.emitText(data);
    return true;
  }

  /** Hands over a checked text frame: its bytes to `onText` when the handlers have it, else decoded. */
  private emitText(data: Buffer): void {
    const onText = this.handlers.onText;
    if (onText !== undefined) onText(data);
    else this.handlers.onMessage(data.toString('utf8'));
  }

  private fail(error: Hybi00ParseError): void {
    this.state = DONE;
    this.parts = [];
    this.handlers.onError(error);
  }
}
