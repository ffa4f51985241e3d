/**
 * Incremental RFC 6455 frame parser, sans I/O.
 *
 * `push(chunk)` takes bytes in pieces of any size (one byte at a time works) and calls the sink
 * synchronously: `onData` with pieces of data-message payloads as soon as they arrive (views of the
 * pushed chunks, not copies), `onControl` with whole control frames, `onError` once, after which
 * all further input is discarded. One loop over integer states; no promise or closure per frame.
 *
 * Frame-level rules live here (RFC 6455 §5): RSV bits, opcodes, control-frame size and
 * fragmentation, masking direction, length encoding, continuation sequencing, size and fragment
 * limits. Message-level rules (UTF-8, decompression, close codes) are the protocol's.
 */
import { Opcode } from './constants.js';
import { mask } from './mask.js';
import { MessageTooBigError, ProtocolError } from '../errors.js';

/** Receives what a frame parser finds, synchronously; {@link Protocol} is one. */
export interface FrameSink {
  /**
   * A piece of a data message. `opcode` is the message's (1 text, 2 binary), `compressed` is the
   * RSV1 bit of its first frame. `first` marks the message's first piece, `last` its final one.
   * A message arrives as one or more pieces; an empty message as one empty piece. A frame of up to
   * `GATHER_MAX` bytes (64 KiB, exported by `rfc6455/codec`) is always one piece, gathered when it
   * spans pushed chunks; a larger one may come in several, as its bytes arrive (unless it is a
   * whole uncompressed message and the parser's `gatherLarge` option is on: see there).
   */
  onData(opcode: number, compressed: boolean, payload: Buffer, first: boolean, last: boolean): void;
  /**
   * Optional: the bytes of an uncompressed text frame that arrives across pushed chunks, shown as
   * they arrive (unmasked, in order, each once), so that the sink can check UTF-8 without waiting
   * for the rest of the frame (RFC 6455 §8.1) and fail the stream (`discard()`). Frames of up to
   * `GATHER_MAX` bytes (whole messages and fragments alike) and, with `gatherLarge`, whole
   * messages larger than that (shown while they are held too) are shown; a frame that lies whole
   * in what is buffered is not, nor are larger fragments (they come to `onData` in pieces as their
   * bytes arrive). `first`: these are the first bytes of the message; `final`: its last ones;
   * `done`: the frame's last ones, and the frame's payload comes to `onData` next, as usual.
   * `bytes` is valid only during the call.
   */
  onText?: ((bytes: Buffer, first: boolean, final: boolean, done: boolean) => void) | undefined;
  /** A whole control frame (close, ping or pong), payload unmasked. */
  onControl(opcode: number, payload: Buffer): void;
  /**
   * The stream broke a rule (`ProtocolError`, whose message names the rule) or a limit
   * (`MessageTooBigError`); `error.closeCode` is the close code to fail the connection with (1002
   * or 1009). Called once; the parser discards everything after it.
   */
  onError(error: ProtocolError | MessageTooBigError): void;
}

export interface FrameParserOptions {
  /** `server` requires masked frames (RFC 6455 §5.1); `client` rejects them. */
  side: 'server' | 'client';
  /** Largest payload of one frame; beyond it the stream fails with 1009. Default: no limit. */
  maxFrameSize?: number | undefined;
  /** Largest payload of one message (sum of its frames, as sent on the wire); 1009 beyond. Default: no limit. */
  maxMessageSize?: number | undefined;
  /** Most frames in one message; 1009 beyond. Default: no limit. */
  maxFragments?: number | undefined;
  /** True when an extension (permessage-deflate) gave RSV1 a meaning. */
  allowRsv1?: boolean | undefined;
  /**
   * True when pushed chunks belong to the parser, so masked payloads are unmasked in place (what
   * the connection does with socket chunks). False (the default) copies before unmasking, so the
   * caller's buffers are never modified.
   */
  ownsInput?: boolean | undefined;
  /**
   * Hand over an uncompressed single-frame binary message larger than `GATHER_MAX` as one piece
   * too (default false; also the writable property `gatherLarge`). Its bytes stay buffered until a
   * quarter of the frame has arrived (`GATHER_RATIO`); then a buffer of the frame's size is
   * allocated and the bytes are copied into place as they arrive. What a peer can make the parser
   * hold is then at most 4 times what it sent, and never more than `maxFrameSize`. A sink that
   * joins pieces into one buffer (the connection does, unless a message is streamed) saves that
   * copy. Off, such frames come in pieces as their bytes arrive, held for no longer than that.
   * Text messages are gathered the same way only for a sink with `onText`, which sees their bytes
   * as they arrive (to check UTF-8 without waiting for the rest, RFC 6455 §8.1); for any other
   * sink they come in pieces, so that a sink validating piece by piece fails at the first bad byte.
   */
  gatherLarge?: boolean | undefined;
}

const HEADER = 0;
const LENGTH_16 = 1;
const LENGTH_64 = 2;
const MASK_KEY = 3;
const PAYLOAD = 4;
const FAILED = 5;

// A parser's booleans and message opcode, as bits of its `flags` (one small integer, not six
// fields). The loop state stays a field of its own: it changes three times a frame, and a
// read-modify-write of `flags` each time cost about 5% on runs of small frames (measured).
/** Set by the sink to stop the loop (the public `paused`). */
const PAUSED = 0x1;
/** The current frame has FIN set. */
const FIN = 0x2;
/** The current frame is masked. */
const MASKED = 0x4;
/** The current data message's first frame had RSV1 set. */
const COMPRESSED = 0x8;
/** A piece of the current data message went to the sink. */
const PIECE_SENT = 0x10;
/** Bits 5-6: the opcode of the data message in progress (1 or 2), 0 between messages. */
const MESSAGE = 0x60;
const MESSAGE_SHIFT = 5;
/** Nothing of the current frame's payload has been taken yet. */
const FRESH = 0x80;
/** The MESSAGE bits of a text message. */
const TEXT_MESSAGE = Opcode.Text << MESSAGE_SHIFT;
/**
 * The loop is reading a chunk that is valid only during the current pushTransient() call: every
 * payload it hands over is copied out (see `unmask`), and what is left buffered is copied at the end.
 */
const TRANSIENT = 0x100;
/** `gatherLarge` is on. */
const GATHER_LARGE = 0x200;
/**
 * The flags (of GATHER_LARGE, FIN, PIECE_SENT, COMPRESSED and MESSAGE) of a frame gatherLarge
 * gathers: gatherLarge on, the first and final frame of an uncompressed binary message.
 */
const GATHER_LARGE_WHOLE_BINARY = GATHER_LARGE | FIN | (Opcode.Binary << MESSAGE_SHIFT);
/** The same for a text message (gathered for a sink with `onText` only). */
const GATHER_LARGE_WHOLE_TEXT = GATHER_LARGE | FIN | TEXT_MESSAGE;
/** The bits those two are read from. */
const GATHER_LARGE_BITS = GATHER_LARGE | FIN | PIECE_SENT | COMPRESSED | MESSAGE;

const EMPTY = Buffer.alloc(0);
/** The chunk list of every parser with nothing buffered; never pushed to. */
const NO_CHUNKS: Buffer[] = [];

/**
 * A data frame of at most this many bytes that has not all arrived is gathered into one buffer of
 * its size (allocated when its header has arrived, so a peer can make a connection hold this much
 * with a few bytes: the size of one socket read) and handed over whole, instead of in pieces the
 * sink would then have to join. Larger frames still come in pieces, as their bytes arrive.
 */
export const GATHER_MAX = 65536;
/**
 * With `gatherLarge`, a larger frame is gathered whole once at least 1/GATHER_RATIO of it has
 * arrived: the parser then holds at most GATHER_RATIO times what the peer sent.
 */
export const GATHER_RATIO = 4;
/**
 * Frames of up to SLAB_SIZE / 4 bytes are gathered into slices of a shared 64 KiB slab (a fresh
 * buffer of their own cost more than copying 16 KiB, measured); a kept message keeps its slab,
 * at most 64 KiB, as a message that is a view of a socket read keeps that read.
 */
const SLAB_SIZE = 65536;
let slab: Buffer | undefined;
/** Where held bytes of a large text message are unmasked for the sink's `onText`. */
const SCRATCH_SIZE = 65536;
let scratch: Buffer | undefined;
let slabUsed = SLAB_SIZE;

function gatherBuffer(size: number): Buffer {
  if (size > SLAB_SIZE >>> 2) return Buffer.allocUnsafe(size);
  if (slabUsed + size > SLAB_SIZE) {
    slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
    slabUsed = 0;
  }
  const out = slab!.subarray(slabUsed, slabUsed + size);
  // Slices start 8-byte aligned (the word-wide unmasking loop wants matching alignment).
  slabUsed = (slabUsed + size + 7) & ~7;
  return out;
}

/** One shared 4-byte view of a masking key: parsers keep the key as an integer (no Buffer each). */
const keyScratch = new Uint8Array(4);
function keyBytes(word: number): Uint8Array {
  keyScratch[0] = word >>> 24;
  keyScratch[1] = (word >>> 16) & 0xff;
  keyScratch[2] = (word >>> 8) & 0xff;
  keyScratch[3] = word & 0xff;
  return keyScratch;
}

/**
 * Unmasks buf[start, end) in place, for payloads of at most 125 bytes: a plain loop over the
 * bytes, with no view to create (measured: 57 ns for 64 bytes, against 184 ns for a view plus
 * the general `mask`).
 */
function unmaskShort(buf: Buffer, start: number, end: number, k0: number, k1: number, k2: number, k3: number): void {
  const end4 = start + ((end - start) & ~3);
  let i = start;
  for (; i < end4; i += 4) {
    buf[i] = buf[i]! ^ k0;
    buf[i + 1] = buf[i + 1]! ^ k1;
    buf[i + 2] = buf[i + 2]! ^ k2;
    buf[i + 3] = buf[i + 3]! ^ k3;
  }
  if (i < end) buf[i] = buf[i]! ^ k0;
  if (i + 1 < end) buf[i + 1] = buf[i + 1]! ^ k1;
  if (i + 2 < end) buf[i + 2] = buf[i + 2]! ^ k2;
}

/** Writes src[start, start + size) unmasked into dst[0, size), for payloads of at most 125 bytes. */
function copyUnmasked(src: Buffer, start: number, size: number, dst: Buffer, k0: number, k1: number, k2: number, k3: number): void {
  const size4 = size & ~3;
  let i = 0;
  for (; i < size4; i += 4) {
    dst[i] = src[start + i]! ^ k0;
    dst[i + 1] = src[start + i + 1]! ^ k1;
    dst[i + 2] = src[start + i + 2]! ^ k2;
    dst[i + 3] = src[start + i + 3]! ^ k3;
  }
  if (i < size) dst[i] = src[start + i]! ^ k0;
  if (i + 1 < size) dst[i + 1] = src[start + i + 1]! ^ k1;
  if (i + 2 < size) dst[i + 2] = src[start + i + 2]! ^ k2;
}

/**
 * A parser's side and limits. They are the same for every connection of a server, so parsers share
 * one frozen object (one field each instead of six). @internal
 */
interface ParserConfig {
  readonly serverSide: boolean;
  readonly maxFrameSize: number;
  readonly maxMessageSize: number;
  readonly maxFragments: number;
  readonly allowRsv1: boolean;
  readonly ownsInput: boolean;
  /** Largest payload the whole-frame fast path takes: 125 or a smaller limit, -1 for none. */
  readonly fastLimit: number;
}

/** The last ParserConfig made: the next parser almost always has the same values. */
let lastConfig: ParserConfig | undefined;

function configFor(serverSide: boolean, maxFrameSize: number, maxMessageSize: number, maxFragments: number, allowRsv1: boolean, ownsInput: boolean): ParserConfig {
  const c = lastConfig;
  if (
    c !== undefined &&
    c.serverSide === serverSide &&
    Object.is(c.maxFrameSize, maxFrameSize) &&
    Object.is(c.maxMessageSize, maxMessageSize) &&
    Object.is(c.maxFragments, maxFragments) &&
    c.allowRsv1 === allowRsv1 &&
    c.ownsInput === ownsInput
  ) {
    return c;
  }
  const fastLimit = Math.min(125, maxFrameSize, maxMessageSize, maxFragments < 1 ? -1 : 125);
  return (lastConfig = Object.freeze({ serverSide, maxFrameSize, maxMessageSize, maxFragments, allowRsv1, ownsInput, fastLimit }));
}

export class FrameParser {
  /**
   * Set by the sink (from a callback) to stop the loop; `resume()` continues it. (A bit of
   * `flags`, through an accessor on the prototype.)
   */
  declare paused: boolean;
  /** See {@link FrameParserOptions.gatherLarge}; a change applies from the next frame on. */
  declare gatherLarge: boolean;

  private readonly sink: FrameSink;
  /** Side and limits, shared by every parser with the same values (one field, not six). */
  private readonly config: ParserConfig;

  /** NO_CHUNKS (shared, never written) while nothing is buffered. */
  private chunks: Buffer[] = NO_CHUNKS;
  /** Offset of the first unread byte in chunks[0]. */
  private offset = 0;
  private buffered = 0;
  private state = HEADER;
  /** The booleans and the message opcode, as bits (see the constants above). */
  private flags = 0;

  // Current frame (FIN and MASK are bits of `flags`)
  private opcode = 0;
  /** The frame's masking key as a signed 32-bit integer (bytes in wire order, big-endian). */
  private maskKeyWord = 0;
  private remaining = 0;
  /**
   * How many payload bytes came before the next one taken, mod 4. While a large text message is
   * held (nothing of it taken yet), how many of its bytes the sink has seen (onText) instead.
   */
  private maskOffset = 0;
  /** The buffer a frame that spans chunks is gathered into (its first length - remaining bytes are in). */
  private gathering: Buffer | undefined = undefined;

  // Current data message (its opcode, RSV1 and whether a piece was sent are bits of `flags`)
  private messageLength = 0;
  private fragments = 0;

  static {
    Object.defineProperty(FrameParser.prototype, 'paused', {
      get(this: FrameParser) {
        return (this.flags & PAUSED) !== 0;
      },
      set(this: FrameParser, on: boolean) {
        this.flags = on ? this.flags | PAUSED : this.flags & ~PAUSED;
      },
    });
    Object.defineProperty(FrameParser.prototype, 'gatherLarge', {
      get(this: FrameParser) {
        return (this.flags & GATHER_LARGE) !== 0;
      },
      // Read when a frame's payload starts: a change applies from the next frame on.
      set(this: FrameParser, on: boolean) {
        this.flags = on ? this.flags | GATHER_LARGE : this.flags & ~GATHER_LARGE;
      },
    });
  }

  constructor(options: FrameParserOptions, sink: FrameSink) {
    this.sink = sink;
    this.config = configFor(
      options.side === 'server',
      options.maxFrameSize ?? Number.MAX_SAFE_INTEGER,
      options.maxMessageSize ?? Number.MAX_SAFE_INTEGER,
      options.maxFragments ?? Number.MAX_SAFE_INTEGER,
      options.allowRsv1 ?? false,
      options.ownsInput ?? false,
    );
    if (options.gatherLarge === true) this.flags = GATHER_LARGE;
  }

  /** Bytes received but not parsed yet (while paused, or the start of an incomplete frame). */
  get bufferedAmount(): number {
    return this.buffered;
  }

  /** True when the parser stopped after an error and discards input. */
  get failed(): boolean {
    return this.state === FAILED;
  }

  /**
   * True between frames and messages with nothing buffered, not paused, not failed: the parser is
   * then in the same state as a new one with the same options.
   */
  get atRest(): boolean {
    return this.buffered === 0 && this.state === HEADER && (this.flags & (PAUSED | MESSAGE)) === 0;
  }

  /** True while a fragmented data message has started and not ended. */
  get inMessage(): boolean {
    return (this.flags & MESSAGE) !== 0;
  }

  /** Parses `chunk` (after any bytes kept from earlier pushes). */
  push(chunk: Buffer): void {
    if (this.state === FAILED || chunk.length === 0) return;
    // Between frames and messages, not paused, nothing buffered: the fast path.
    if (this.buffered === 0 && this.state === HEADER && (this.flags & (PAUSED | MESSAGE)) === 0) {
      const taken = this.wholeFrames(chunk, chunk.length, false);
      if (taken === chunk.length || this.failed) return;
      if (taken > 0) chunk = chunk.subarray(taken);
    }
    this.append(chunk);
    if ((this.flags & PAUSED) === 0) this.loop();
    this.dropEmptyList();
  }

  private append(chunk: Buffer): void {
    if (this.chunks === NO_CHUNKS) this.chunks = [chunk];
    else this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** Drops an emptied chunk list: an idle connection keeps no chunk slots. */
  private dropEmptyList(): void {
    if (this.buffered === 0 && !this.failed) this.chunks = NO_CHUNKS;
  }

  /**
   * The fast path for the common case: unfragmented text and binary frames with a 7-bit length,
   * RSV bits clear, masked as this side requires, each lying whole in `chunk`. They are taken
   * straight from it, with no chunk list and no byte-at-a-time header reads. It stops at the first
   * frame that is anything else (a control frame, a fragment, a longer or incomplete frame, a
   * broken rule or a limit) and returns where: the general loop parses, checks and reports the
   * rest. Only called between messages with nothing buffered.
   */
  private wholeFrames(chunk: Buffer, length: number, transient: boolean): number {
    const config = this.config;
    const maskBit = config.serverSide ? 0x80 : 0;
    const headerLength = config.serverSide ? 6 : 2;
    const limit = config.fastLimit;
    const ownsInput = config.ownsInput;
    let at = 0;
    while (length - at >= headerLength) {
      const b0 = chunk[at]!;
      const b1 = chunk[at + 1]!;
      // 0x81 / 0x82: FIN, RSV1-3 clear, opcode text / binary.
      if ((b0 !== 0x81 && b0 !== 0x82) || (b1 & 0x80) !== maskBit) break;
      const size = b1 & 0x7f;
      if (size > limit) break;
      const start = at + headerLength;
      const end = start + size;
      if (end > length) break;
      let payload: Buffer;
      if (size === 0) {
        payload = EMPTY;
      } else if (transient) {
        payload = Buffer.allocUnsafe(size);
        if (maskBit === 0) chunk.copy(payload, 0, start, end);
        else copyUnmasked(chunk, start, size, payload, chunk[at + 2]!, chunk[at + 3]!, chunk[at + 4]!, chunk[at + 5]!);
      } else if (maskBit === 0) {
        payload = chunk.subarray(start, end);
      } else if (ownsInput) {
        unmaskShort(chunk, start, end, chunk[at + 2]!, chunk[at + 3]!, chunk[at + 4]!, chunk[at + 5]!);
        payload = chunk.subarray(start, end);
      } else {
        payload = Buffer.allocUnsafe(size);
        copyUnmasked(chunk, start, size, payload, chunk[at + 2]!, chunk[at + 3]!, chunk[at + 4]!, chunk[at + 5]!);
      }
      at = end;
      this.sink.onData(b0 & 0x0f, false, payload, true, true);
      // The sink may have failed the stream or paused it; the rest waits for the general path.
      if ((this.flags & PAUSED) !== 0 || this.state !== HEADER) break;
    }
    return at;
  }

  /**
   * Parses `buf[0, end)` where `buf` is valid only during this call (a read buffer shared by
   * every connection, refilled by the next read): nothing given to the sink or kept afterwards
   * refers to it. Whole small frames are taken from it directly, their payloads copied out; the
   * rest is parsed in place too, each payload copied out once as it is handed over or gathered
   * (unmasked on the way: one pass over the bytes where an owned copy of the read would take two),
   * and only what is still buffered at the end (an incomplete header, or input while paused) is
   * copied and kept.
   */
  pushTransient(buf: Buffer, end: number): void {
    if (this.state === FAILED || end === 0) return;
    let taken = 0;
    if (this.buffered === 0 && this.state === HEADER && (this.flags & (PAUSED | MESSAGE)) === 0) {
      taken = this.wholeFrames(buf, end, true);
      if (taken === end || this.failed) return;
    }
    const view = taken === 0 && end === buf.length ? buf : buf.subarray(taken, end);
    this.append(view);
    try {
      if ((this.flags & PAUSED) === 0) {
        this.flags |= TRANSIENT;
        this.loop();
      }
    } finally {
      this.flags &= ~TRANSIENT;
      this.keep(view);
    }
  }

  /** After a pushTransient(): replaces what is left of `view` in the chunk list with a copy. */
  private keep(view: Buffer): void {
    if (this.buffered === 0) {
      this.dropEmptyList();
      return;
    }
    const chunks = this.chunks;
    const last = chunks.length - 1;
    // The view is the last chunk, unless the loop consumed it (then nothing of it is left).
    if (last < 0 || chunks[last] !== view) return;
    const from = last === 0 ? this.offset : 0;
    const copy = Buffer.allocUnsafe(view.length - from);
    view.copy(copy, 0, from);
    chunks[last] = copy;
    if (last === 0) this.offset = 0;
  }

  /** Continues parsing after the sink set `paused`. */
  resume(): void {
    if ((this.flags & PAUSED) === 0) return;
    this.flags &= ~PAUSED;
    if (!this.failed) this.loop();
  }

  /** Stops parsing for good and drops buffered input (after a close, or on the caller's error). */
  discard(): void {
    this.state = FAILED;
    this.gathering = undefined;
    this.chunks = NO_CHUNKS;
    this.buffered = 0;
    this.offset = 0;
  }

  private loop(): void {
    while ((this.flags & PAUSED) === 0) {
      switch (this.state) {
        case HEADER:
          if (this.buffered < 2) return;
          this.readHeader();
          break;
        case LENGTH_16:
          if (this.buffered < 2) return;
          this.readLength16();
          break;
        case LENGTH_64:
          if (this.buffered < 8) return;
          this.readLength64();
          break;
        case MASK_KEY:
          if (this.buffered < 4) return;
          // Signed (no `>>> 0`): a key with the top bit set stays a small integer, where an
          // unsigned one would be a heap number, and V8 would then box the field in every parser.
          this.maskKeyWord = (this.readByte() << 24) | (this.readByte() << 16) | (this.readByte() << 8) | this.readByte();
          this.startPayload();
          break;
        case PAYLOAD:
          if (!this.readPayload()) return;
          break;
        default:
          return;
      }
    }
  }

  private readByte(): number {
    const chunk = this.chunks[0]!;
    const b = chunk[this.offset++]!;
    this.buffered--;
    if (this.offset === chunk.length) {
      this.chunks.shift();
      this.offset = 0;
    }
    return b;
  }

  /** Takes up to `n` bytes from the first chunk as a view. */
  private takeView(n: number): Buffer {
    const chunk = this.chunks[0]!;
    const available = chunk.length - this.offset;
    let view: Buffer;
    if (n >= available) {
      view = this.offset === 0 ? chunk : chunk.subarray(this.offset);
      this.chunks.shift();
      this.offset = 0;
    } else {
      view = chunk.subarray(this.offset, this.offset + n);
      this.offset += n;
    }
    this.buffered -= view.length;
    return view;
  }

  /** Takes exactly `n` buffered bytes, copying only when they span chunks. */
  private take(n: number): Buffer {
    const chunk = this.chunks[0]!;
    if (chunk.length - this.offset >= n) return this.takeView(n);
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const part = this.takeView(n - filled);
      out.set(part, filled);
      filled += part.length;
    }
    return out;
  }

  private fail(error: ProtocolError | MessageTooBigError): void {
    this.discard();
    this.sink.onError(error);
  }

  private readHeader(): void {
    const b0 = this.readByte();
    const b1 = this.readByte();
    const fin = (b0 & 0x80) !== 0;
    const rsv1 = (b0 & 0x40) !== 0;
    const opcode = b0 & 0x0f;
    const masked = (b1 & 0x80) !== 0;
    const length7 = b1 & 0x7f;
    const inMessage = (this.flags & MESSAGE) !== 0;
    this.opcode = opcode;
    this.flags = (this.flags & ~(FIN | MASKED)) | (fin ? FIN : 0) | (masked ? MASKED : 0);

    // RFC 6455 §5.2: RSV2/RSV3 must be 0 unless an extension defines them (none we support does).
    if ((b0 & 0x30) !== 0) return this.fail(new ProtocolError('RSV2 and RSV3 must be clear'));

    if (opcode >= Opcode.Close) {
      // RFC 6455 §5.5: control frames.
      if (opcode > Opcode.Pong) return this.fail(new ProtocolError(`reserved opcode 0x${opcode.toString(16)}`));
      if (!fin) return this.fail(new ProtocolError('fragmented control frame'));
      if (length7 > 125) return this.fail(new ProtocolError('control frame payload over 125 bytes'));
      // RFC 7692 §6.1: RSV1 is only meaningful on data frames.
      if (rsv1) return this.fail(new ProtocolError('RSV1 set on a control frame'));
    } else if (opcode === Opcode.Continuation) {
      // RFC 6455 §5.4: a continuation must follow a started message.
      if (!inMessage) return this.fail(new ProtocolError('continuation frame without a message to continue'));
      // RFC 7692 §6.1: RSV1 only on the first frame of a message.
      if (rsv1) return this.fail(new ProtocolError('RSV1 set on a continuation frame'));
    } else if (opcode === Opcode.Text || opcode === Opcode.Binary) {
      // RFC 6455 §5.4: fragments of one message may not be interleaved with another message.
      if (inMessage) return this.fail(new ProtocolError('new data frame inside a fragmented message'));
      if (rsv1 && !this.config.allowRsv1) return this.fail(new ProtocolError('RSV1 set without a negotiated extension'));
      this.flags = (this.flags & ~(MESSAGE | COMPRESSED | PIECE_SENT)) | (opcode << MESSAGE_SHIFT) | (rsv1 ? COMPRESSED : 0);
    } else {
      return this.fail(new ProtocolError(`reserved opcode 0x${opcode.toString(16)}`));
    }

    // RFC 6455 §5.1: a server closes on an unmasked frame; a client closes on a masked one.
    const serverSide = this.config.serverSide;
    if (masked !== serverSide) {
      return this.fail(new ProtocolError(serverSide ? 'client frame is not masked' : 'server frame is masked'));
    }

    if (length7 === 126) this.state = LENGTH_16;
    else if (length7 === 127) this.state = LENGTH_64;
    else this.setLength(length7);
  }

  private readLength16(): void {
    const length = (this.readByte() << 8) | this.readByte();
    // RFC 6455 §5.2: the minimal number of bytes MUST be used to encode the length.
    if (length < 126) return this.fail(new ProtocolError('payload length not minimally encoded'));
    this.setLength(length);
  }

  private readLength64(): void {
    const hi = (this.readByte() * 0x1000000) + ((this.readByte() << 16) | (this.readByte() << 8) | this.readByte());
    const lo = (this.readByte() * 0x1000000) + ((this.readByte() << 16) | (this.readByte() << 8) | this.readByte());
    // RFC 6455 §5.2: the most significant bit of a 64-bit length MUST be 0.
    if (hi >= 0x80000000) return this.fail(new ProtocolError('64-bit payload length with the top bit set'));
    if (hi === 0 && lo < 65536) return this.fail(new ProtocolError('payload length not minimally encoded'));
    // Under 2^31 the length is made a small integer (`| 0`): the products above are doubles, and a
    // double stored in `remaining` would make V8 box that field in every parser made afterwards.
    if (hi === 0 && lo < 0x80000000) return this.setLength(lo | 0);
    // Lengths over 2^53 are far over any limit; keep the arithmetic exact below that.
    this.setLength(hi >= 0x200000 ? Number.MAX_SAFE_INTEGER : hi * 0x100000000 + lo);
  }

  private setLength(length: number): void {
    if (this.opcode < Opcode.Close) {
      const { maxFrameSize, maxMessageSize, maxFragments } = this.config;
      if (length > maxFrameSize) {
        return this.fail(new MessageTooBigError(`frame of ${length} bytes exceeds maxFrameSize ${maxFrameSize}`, maxFrameSize));
      }
      // Checked before it is stored: a length over the limit (up to 2^53) would make the field a
      // heap number, and V8 would then give that field a boxed double in every later parser.
      const messageLength = this.messageLength + length;
      if (messageLength > maxMessageSize) {
        return this.fail(new MessageTooBigError(`message exceeds maxMessageSize ${maxMessageSize}`, maxMessageSize));
      }
      this.messageLength = messageLength;
      if (++this.fragments > maxFragments) {
        return this.fail(new MessageTooBigError(`message has more than ${maxFragments} fragments`, maxFragments));
      }
    }
    this.remaining = length;
    if ((this.flags & MASKED) !== 0) this.state = MASK_KEY;
    else this.startPayload();
  }

  private startPayload(): void {
    this.maskOffset = 0;
    this.flags |= FRESH;
    this.state = PAYLOAD;
  }

  private unmask(piece: Buffer): Buffer {
    if (piece.length === 0) return piece;
    const masked = (this.flags & MASKED) !== 0;
    if ((this.flags & TRANSIENT) !== 0) {
      // The bytes may be in a transient read: copy them out, unmasking on the way.
      const copy = gatherBuffer(piece.length);
      if (masked) mask(piece, keyBytes(this.maskKeyWord), copy, 0, this.maskOffset);
      else copy.set(piece);
      piece = copy;
    } else if (!masked) {
      return piece;
    } else if (this.config.ownsInput) {
      mask(piece, keyBytes(this.maskKeyWord), piece, 0, this.maskOffset);
    } else {
      const copy = Buffer.allocUnsafe(piece.length);
      mask(piece, keyBytes(this.maskKeyWord), copy, 0, this.maskOffset);
      piece = copy;
    }
    this.maskOffset = (this.maskOffset + piece.length) & 3;
    return piece;
  }

  /** Returns false when it must wait for more bytes. */
  private readPayload(): boolean {
    if (this.opcode >= Opcode.Close) {
      if (this.buffered < this.remaining) return false;
      const payload = this.remaining === 0 ? EMPTY : this.unmask(this.take(this.remaining));
      this.state = HEADER;
      this.sink.onControl(this.opcode, payload);
      return true;
    }
    if (this.remaining === 0) {
      this.state = HEADER;
      // An empty frame: only the message's first or last piece needs telling.
      if ((this.flags & FIN) !== 0 || (this.flags & PIECE_SENT) === 0) this.emit(EMPTY);
      return true;
    }
    if (this.buffered === 0) return false;
    let gathering = this.gathering;
    // Bytes of a large text message the sink saw while it was held.
    let shown = 0;
    if (gathering === undefined) {
      const flags = this.flags;
      const remaining = this.remaining;
      // A frame that is not whole in the first buffered chunk is gathered into one buffer when it
      // is small, or when it is a whole uncompressed binary message (or text message, for a sink
      // that checks it as it lands) and gatherLarge is on (its bytes are then held until
      // 1/GATHER_RATIO of it has arrived, FRESH kept meanwhile).
      if (
        (flags & FRESH) !== 0 &&
        this.chunks[0]!.length - this.offset < remaining &&
        (remaining <= GATHER_MAX ||
          (flags & GATHER_LARGE_BITS) === GATHER_LARGE_WHOLE_BINARY ||
          ((flags & GATHER_LARGE_BITS) === GATHER_LARGE_WHOLE_TEXT && this.sink.onText !== undefined))
      ) {
        if (remaining > GATHER_MAX && this.buffered * GATHER_RATIO < remaining) {
          // Held; the sink sees a text message's bytes all the same.
          if ((flags & MESSAGE) === TEXT_MESSAGE) this.showHeld();
          return false;
        }
        this.flags = flags & ~FRESH;
        shown = this.maskOffset;
        this.maskOffset = 0;
        gathering = this.gathering = gatherBuffer(remaining);
      } else {
        // (A text message held and shown to onText, then not gathered after all because
        // gatherLarge was switched off: its pieces go to onData as any others do.)
        if ((flags & FRESH) !== 0) this.maskOffset = 0;
        this.flags = flags & ~FRESH;
        const piece = this.unmask(this.takeView(remaining));
        this.remaining -= piece.length;
        if (this.remaining === 0) this.state = HEADER;
        this.emit(piece);
        return true;
      }
    }
    // Copy (and unmask) what has arrived into place: one pass over the bytes.
    const masked = (this.flags & MASKED) !== 0;
    const from = gathering.length - this.remaining;
    while (this.buffered > 0 && this.remaining > 0) {
      const part = this.takeView(this.remaining);
      const at = gathering.length - this.remaining;
      if (masked) {
        mask(part, keyBytes(this.maskKeyWord), gathering, at, this.maskOffset);
        this.maskOffset = (this.maskOffset + part.length) & 3;
      } else {
        gathering.set(part, at);
      }
      this.remaining -= part.length;
    }
    // An uncompressed text frame gathered across reads (a large single-frame message, or a frame
    // of up to GATHER_MAX bytes, whole message or fragment): a sink with onText sees what just
    // arrived, less what it saw while the frame was held, and may fail the stream, so that a bad
    // byte fails it without waiting for the rest of the frame (RFC 6455 §8.1). A frame that lay
    // whole in what was buffered is not shown: it comes to onData at once.
    if ((this.flags & (MESSAGE | COMPRESSED)) === TEXT_MESSAGE && this.sink.onText !== undefined) {
      const start = from > shown ? from : shown;
      const remaining = this.remaining;
      if (start > 0 || remaining > 0) {
        const flags = this.flags;
        this.sink.onText(
          gathering.subarray(start, gathering.length - remaining),
          start === 0 && (flags & PIECE_SENT) === 0,
          remaining === 0 && (flags & FIN) !== 0,
          remaining === 0,
        );
        if (this.state === FAILED) return false;
      }
    }
    if (this.remaining > 0) return false;
    this.gathering = undefined;
    this.state = HEADER;
    this.emit(gathering);
    return true;
  }

  /**
   * Hands the sink the bytes of a large text message that arrived while it is held (buffered
   * until a quarter is in), unmasked in a scratch copy: the buffered bytes stay as they came.
   */
  private showHeld(): void {
    const fresh = this.buffered - this.maskOffset;
    if (fresh <= 0) return;
    // The bytes not shown yet are the last `fresh` buffered: find where they start, from the end.
    const chunks = this.chunks;
    let i = chunks.length - 1;
    let at = chunks[i]!.length - fresh;
    while (at < 0) at += chunks[--i]!.length;
    const masked = (this.flags & MASKED) !== 0;
    let position = this.maskOffset;
    for (; i < chunks.length; i++, at = 0) {
      const chunk = chunks[i]!;
      while (at < chunk.length) {
        const n = Math.min(chunk.length - at, SCRATCH_SIZE);
        let view: Buffer;
        if (masked) {
          // Copied first, then unmasked in the copy (mask() may unmask bytes of the shared read
          // buffer where they lie, and these must stay masked until they are gathered).
          view = (scratch ??= Buffer.allocUnsafe(SCRATCH_SIZE)).subarray(0, n);
          chunk.copy(view, 0, at, at + n);
          mask(view, keyBytes(this.maskKeyWord), view, 0, position & 3);
        } else {
          view = chunk.subarray(at, at + n);
        }
        this.sink.onText!(view, position === 0, false, false);
        if (this.state === FAILED) return;
        position += n;
        at += n;
      }
    }
    this.maskOffset = position;
  }

  private emit(piece: Buffer): void {
    const flags = this.flags;
    const last = (flags & FIN) !== 0 && this.remaining === 0;
    const first = (flags & PIECE_SENT) === 0;
    const opcode = (flags & MESSAGE) >> MESSAGE_SHIFT;
    const compressed = (flags & COMPRESSED) !== 0;
    // Written before the sink is called: it may set `paused` (another bit of flags).
    this.flags = last ? (flags & ~MESSAGE) | PIECE_SENT : flags | PIECE_SENT;
    if (last) {
      this.messageLength = 0;
      this.fragments = 0;
    }
    this.sink.onData(opcode, compressed, piece, first, last);
  }
}
