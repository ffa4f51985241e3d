/**
 * The RFC 6455 protocol state machine, sans I/O.
 *
 * Bytes in: `receiveData(chunk)` and `receiveEof()`. Out: synchronous calls to the handler —
 * `write`/`writev` with bytes the caller MUST write to the transport in order, `message`/`piece`,
 * `ping`/`pong`, `closeReceived`, `failed`, and `end` when the caller MUST end the transport
 * (the server closes TCP first after the closing handshake, RFC 6455 §7.1.1). Sends: `sendText`,
 * `sendBinary`, `sendFragment`, `ping`, `pong`, `close`.
 *
 * Errors from the peer never throw out of here: they become a close frame with the right code
 * (1002, 1007, 1009, 1011) followed by `failed` and `end`, after which input is discarded.
 */
import { isUtf8 } from 'node:buffer';
import { CloseCode, Opcode } from './codec/constants.js';
import { checkClosePayload, encodeClosePayload, parseClosePayload } from './codec/close.js';
import { FrameParser, type FrameSink } from './codec/frame-parser.js';
import { COPY_THRESHOLD, encodeMasked, encodeUnmaskedCopy, headerSize, unmaskedHeader, writeHeader } from './codec/frame-writer.js';
import { unmaskInPlace, writeRandomMaskKey } from './codec/mask.js';
import { decodeUtf8, decodeValidUtf8, encodeUtf8, Utf8Validator, type RawWriters } from './codec/utf8.js';
import {
  ConnectionClosedError,
  InvalidUtf8Error,
  ProtocolError,
  WebSocketError,
} from './errors.js';
import type { InflatedSlice, MessageExtension } from './extensions/extension.js';
import type { PreparedMessage, SharedPayload } from './prepared.js';

/** Which end of a connection: the server, or the client (which masks its frames). */
export type Side = 'server' | 'client';

/** `open` → `closing` (we sent a close frame) → `closed` (both sent, failed, or transport gone). */
export type ProtocolState = 'open' | 'closing' | 'closed';

/**
 * Receives the output of a protocol engine (`Protocol` or `Hybi00Protocol`), synchronously. The
 * caller must write the bytes of `onWrite`/`onWritev` to the transport in order, and end it on `onEnd`.
 */
export interface ProtocolHandler {
  /** Bytes to write to the transport, in order. */
  onWrite(data: Buffer): void;
  /** Two buffers to write back to back (a header and an uncopied payload). */
  onWritev(header: Buffer, payload: Buffer): void;
  /**
   * Optional: a header, then an ASCII string as its bytes (its own UTF-8 and Latin-1), handed to
   * the transport as a string: the transport's native write copies it out once, with no Buffer
   * made for it. Without it, large text is encoded into a Buffer first.
   */
  onWritevAscii?: ((header: Buffer, text: string) => void) | undefined;
  /** A whole received message: a string for text, a Buffer for binary. */
  onMessage(data: string | Buffer, binary: boolean): void;
  /** A piece of a message received in streaming mode (see `streamNextMessage`). */
  onPiece(data: Buffer, binary: boolean, first: boolean, last: boolean): void;
  /** A ping arrived. Nothing is answered automatically: reply with the engine's `pong(payload)`. */
  onPing(payload: Buffer): void;
  /** A pong arrived. */
  onPong(payload: Buffer): void;
  /** The peer's close frame arrived (1005 when it had no code). A reply was already written. */
  onCloseFrame(code: number, reason: string): void;
  /** The peer broke the protocol; a close frame with `error.closeCode` was written. */
  onFail(error: WebSocketError): void;
  /** End the transport now (orderly: TCP FIN or HTTP/2 END_STREAM). */
  onEnd(): void;
  /**
   * Optional: our close frame was just written (through `onWrite`). It may have waited behind
   * sends being compressed, so the time the peer has to answer it starts now.
   */
  onCloseWritten?: (() => void) | undefined;
  /**
   * Optional: gives up the pong the caller holds back (it answers pings only once its writes are
   * no longer backed up, RFC 6455 §5.5.3), if any: our close frame is about to be written, and
   * that pong is written just before it.
   */
  takeHeldPong?: (() => Buffer | undefined) | undefined;
  /**
   * Optional: `true` when the engine stops parsing until a received frame's inflation job (in the
   * thread pool) is done, or while it holds a message back (`holdMessages`), `false` once it
   * parses again, or has failed (then also when it did not wait). What arrives meanwhile waits in
   * the engine: the caller should not read the transport until then (backpressure on the peer).
   */
  onInflating?: ((waiting: boolean) => void) | undefined;
  /**
   * Optional: true while the reader of the message being streamed (`onPiece`) holds as much as it
   * wants. A compressed frame of that message is then inflated no further, and the next frame not
   * parsed, until the engine's `resumeStreaming()` is called (`onInflating` tells when the engine
   * waits so).
   */
  streamFull?: (() => boolean) | undefined;
}

/** Options of a {@link Protocol}. Limits omitted here are unlimited (connections pass their defaults). */
export interface ProtocolOptions {
  /** Our end: a `client` masks what it sends and rejects masked frames; a `server` the reverse. */
  side: Side;
  /** Largest message, in bytes as received on the wire (before decompression); 1009 beyond. */
  maxMessageSize?: number | undefined;
  /** Largest frame payload, in bytes; 1009 beyond. */
  maxFrameSize?: number | undefined;
  /** Most frames in one message; 1009 beyond. */
  maxFragments?: number | undefined;
  /** The negotiated per-message extension (permessage-deflate), if any. */
  extension?: MessageExtension | undefined;
  /** Messages smaller than this are sent uncompressed even when compression was negotiated. */
  compressThreshold?: number | undefined;
  /** Whether the protocol may unmask received chunks in place (they belong to it). */
  ownsInput?: boolean | undefined;
  /** Hand text messages to `onMessage` as their (checked) UTF-8 bytes instead of a string. */
  textAsBuffer?: boolean | undefined;
}

/** Called once a queued frame was written (or dropped, with the error). */
export type SendCallback = (error?: Error) => void;

/**
 * What a connection drives: the RFC 6455 `Protocol`, or `Hybi00Protocol` for the draft. Both are
 * sans I/O and report through a ProtocolHandler.
 */
export interface ProtocolEngine {
  /** `open`, `closing` (our close frame is sent or queued) or `closed`. */
  readonly state: ProtocolState;
  /** True once our close frame was written. */
  readonly closeSent: boolean;
  /** The close code once known (received, 1005 for none, our failure's, or 1006); undefined before. */
  readonly closeCode: number | undefined;
  /** The close reason that goes with `closeCode` ('' if none). */
  readonly closeReason: string;
  /** Set to true to receive the next message in pieces (`onPiece`) instead of whole (`onMessage`). */
  streamNextMessage: boolean;
  /**
   * Optional: the reader of the streamed message wants more. What `streamFull` held (inflating a
   * compressed frame, parsing the next frame) continues on a later turn of the event loop.
   */
  resumeStreaming?: (() => void) | undefined;
  /**
   * Optional: the caller's queue of received messages is full. The next message that starts is
   * held back, unparsed past its first frame and uninflated, until `resumeHeld()` (`onInflating`
   * tells when the engine waits so): the rest of the socket read that filled the queue is not
   * queued behind it, nor inflated.
   */
  holdMessages?: (() => void) | undefined;
  /** Optional: the caller's queue has room again: the message held back is received, and parsing continues. */
  resumeHeld?: (() => void) | undefined;
  /**
   * True when the engine holds nothing a new one (same options, same handler) would not: open,
   * between messages in both directions, nothing buffered or queued. The owner may then drop it
   * and make a new one when traffic comes back.
   */
  readonly atRest: boolean;
  /** Feeds bytes read from the transport. */
  receiveData(chunk: Buffer): void;
  /** The transport ended or broke; without a close frame received the close code becomes 1006. */
  receiveEof(): void;
  /**
   * Sends a text message: a string, or its UTF-8 bytes (which the caller has checked). Returns true
   * if written at once, else `callback` reports when it is.
   */
  sendText(text: string | Buffer, compress?: boolean, callback?: SendCallback): boolean;
  /** Sends a binary message. Returns true if written at once, else `callback` reports when it is. */
  sendBinary(data: Buffer, compress?: boolean, callback?: SendCallback): boolean;
  /**
   * Sends a prepared message ({@link PreparedMessage}: encoded once for many connections). Returns
   * true if written at once, else `callback` reports when it is.
   */
  sendPrepared(message: PreparedMessage, compress?: boolean, callback?: SendCallback): boolean;
  /** Sends one fragment of a message (`fin` ends it). Returns true if written at once, else `callback` reports. */
  sendFragment(opcode: number, data: Buffer, fin: boolean, compress?: boolean, callback?: SendCallback): boolean;
  /** Sends a ping (payload at most 125 bytes). */
  ping(payload?: Buffer): void;
  /** Sends a pong (payload at most 125 bytes); does nothing once the peer's close frame came or the engine is closed. */
  pong(payload?: Buffer): void;
  /** Starts the closing handshake (`code` null: no status code); returns false if it had already started or the engine is closed. */
  close(code?: number | null, reason?: string): boolean;
}

interface QueuedFrame {
  opcode: number;
  data: Buffer;
  fin: boolean;
  /** Compress this piece (the message's first piece decided it). */
  compress: boolean;
  /** Set RSV1 (first frame of a compressed message). */
  rsv1: boolean;
  callback: SendCallback | undefined;
  /** A prepared message's payload compressed once for every connection with our setting (then `compress` is false). */
  shared: SharedPayload | undefined;
}

const EMPTY = Buffer.alloc(0);
/**
 * A compressed frame of a message read as a stream is inflated this many bytes at a time (zlib's
 * inline output buffer), as its reader takes them.
 */
const SLICE = 32 * 1024;
/** Inflating for a reader that takes everything yields to the event loop after this many bytes. */
const SLICE_TURN = 256 * 1024;
/**
 * Pieces of a fragmented message below this size are copied into a shared block instead of being
 * kept one Buffer each, so what a message in tiny fragments holds is proportional to its bytes,
 * not to its fragment count (a Buffer object costs about 100 bytes of heap).
 */
const SMALL_PIECE = 4096;
/** The largest block small pieces are gathered in: the first holds SMALL_PIECE bytes, each next one twice the message so far, up to this. */
const MAX_BLOCK = 64 * 1024;
/** Shared empty lists (never pushed to): a connection allocates its lists only when used. */
const NO_PARTS: Buffer[] = [];
const NO_FRAMES: QueuedFrame[] = [];

/** A protocol's settings that are the same for every connection of a server (shared, frozen). */
interface ProtocolConfig {
  readonly side: Side;
  /** Clients mask what they send (RFC 6455 §5.3). */
  readonly masking: boolean;
  readonly compressThreshold: number;
  readonly textAsBuffer: boolean;
}

// A protocol's state and booleans, as bits of its `flags` (one small integer, not eight fields).
/** Bits 0-1: the state, an index into STATE_NAMES. */
const STATE = 0x3;
const OPEN = 0;
const CLOSING = 1;
const CLOSED = 2;
const STATE_NAMES: readonly ProtocolState[] = ['open', 'closing', 'closed'];
/** Our close frame was written. */
const CLOSE_SENT = 0x4;
/** The peer's close frame was received. */
const CLOSE_RECEIVED = 0x8;
/** The public `streamNextMessage`. */
const STREAM_NEXT = 0x10;
/** The caller's queue is full: the next message is held back (holdMessages). */
const HOLD = 0x800;
/** The message being received goes out in pieces. */
const STREAMING = 0x20;
/** A compression job is running for the first queued frame. */
const COMPRESSING = 0x40;
/** The fragmented message being sent is compressed. */
const SENDING_COMPRESSED = 0x80;
/** Bits 8-9: the opcode (1 or 2) of the fragmented message being sent, 0 when none. */
const SENDING = 0x300;
const SENDING_SHIFT = 8;
/** The outgoing queue (in RareFields) is not empty: sends wait behind it. */
const QUEUED = 0x400;

/**
 * The fields of a protocol that most connections never use, or use only once closing: one side
 * object, made on first use.
 */
class RareFields {
  /** The close code once known (received, 1005 for none, our failure's, or 1006); undefined before. */
  closeCode: number | undefined = undefined;
  closeReason = '';
  /** A close() waiting for the queued frames to be written. */
  pendingClose: { code: number | undefined; reason: string } | undefined = undefined;
  /** NO_PARTS (shared, never written) unless a fragmented message is being joined. */
  parts: Buffer[] = NO_PARTS;
  partsLength = 0;
  /** Where small pieces are gathered (SMALL_PIECE); its first `blockUsed` bytes are not in `parts` yet. */
  block: Buffer | undefined = undefined;
  blockUsed = 0;
  /** Checks the UTF-8 of a fragmented text message across its pieces (and of a gathered one). */
  validator: Utf8Validator | undefined = undefined;
  /** The parser's next piece is a text frame it gathered, checked as its bytes arrived (onText). */
  textChecked = false;
  /** Frames waiting behind a compression job, in order (the protocol's QUEUED bit says it is not empty). */
  queue: QueuedFrame[] = NO_FRAMES;
  /** The payload bytes of `queue` (as given, before compression). */
  queuedBytes = 0;
  /** The opcode of the streamed message whose compressed frame is being inflated in slices; 0 when none. */
  sliceOpcode = 0;
  /** The next slice is the message's first piece. */
  sliceFirst = false;
  /** The frame being sliced is the message's last. */
  sliceLast = false;
  /** Parsing (and slicing) waits for the reader (`resumeStreaming`) or for the next turn. */
  sliceHeld = false;
  /** The next turn's slicing is scheduled. */
  sliceTimer: NodeJS.Immediate | undefined = undefined;
  /** The first frame of a message held back while the caller's queue is full (holdMessages). */
  held: { opcode: number; compressed: boolean; payload: Buffer; last: boolean } | undefined = undefined;
}

function addPart(rare: RareFields, data: Buffer): void {
  if (rare.parts === NO_PARTS) rare.parts = [data];
  else rare.parts.push(data);
}

/** Moves the bytes gathered in the block into `parts`; later small pieces go to a new block. */
function flushBlock(rare: RareFields): void {
  addPart(rare, rare.block!.subarray(0, rare.blockUsed));
  rare.block = undefined;
  rare.blockUsed = 0;
}

/** The last ProtocolConfig made: the next connection almost always has the same values. */
let lastConfig: ProtocolConfig | undefined;

/** What a failed inflation closes with: its own error when it has a close code, else 1007. */
function inflateFailure(error: unknown): WebSocketError {
  return error instanceof WebSocketError ? error : new ProtocolError('invalid compressed data', 1007, 'WS_BAD_DEFLATE');
}

function continueSlices(protocol: Protocol): void {
  protocol.continueSlices();
}

function configFor(side: Side, compressThreshold: number, textAsBuffer: boolean): ProtocolConfig {
  const c = lastConfig;
  if (c !== undefined && c.side === side && Object.is(c.compressThreshold, compressThreshold) && c.textAsBuffer === textAsBuffer) return c;
  return (lastConfig = Object.freeze({ side, masking: side === 'client', compressThreshold, textAsBuffer }));
}

/**
 * The RFC 6455 protocol state machine, sans I/O: feed it bytes with `receiveData`, and it reports
 * messages and bytes to write through its {@link ProtocolHandler}.
 */
export class Protocol implements FrameSink, ProtocolEngine {
  /** Our end of the connection. (Read from the shared config, through an accessor on the prototype.) */
  declare readonly side: Side;
  /**
   * Set to receive the next message that starts as pieces (`handler.piece`) instead of whole. (A
   * bit of `flags`, through an accessor on the prototype.)
   */
  declare streamNextMessage: boolean;

  private readonly handler: ProtocolHandler;
  private readonly parser: FrameParser;
  private readonly extension: MessageExtension | undefined;
  /** Side, masking and compression threshold, shared by every protocol with the same values. */
  private readonly config: ProtocolConfig;

  /** The state (bits 0-1) and every boolean of the protocol, as bits (see the constants above). */
  private flags = OPEN;
  /**
   * Close code and reason, the outgoing queue, the pieces of a fragmented message: made on first
   * use, so an open connection that sends and receives whole messages has none.
   */
  private rare: RareFields | undefined = undefined;

  static {
    Object.defineProperty(Protocol.prototype, 'side', {
      get(this: Protocol) {
        return this.config.side;
      },
    });
    Object.defineProperty(Protocol.prototype, 'streamNextMessage', {
      get(this: Protocol) {
        return (this.flags & STREAM_NEXT) !== 0;
      },
      set(this: Protocol, on: boolean) {
        this.flags = on ? this.flags | STREAM_NEXT : this.flags & ~STREAM_NEXT;
        // A streamed message comes in pieces as its bytes arrive; others are gathered whole.
        this.parser.gatherLarge = !on;
      },
    });
  }

  constructor(options: ProtocolOptions, handler: ProtocolHandler) {
    this.handler = handler;
    this.extension = options.extension;
    this.config = configFor(options.side, options.compressThreshold ?? 1024, options.textAsBuffer === true);
    this.parser = new FrameParser(
      {
        side: options.side,
        maxFrameSize: options.maxFrameSize,
        maxMessageSize: options.maxMessageSize,
        maxFragments: options.maxFragments,
        allowRsv1: options.extension !== undefined,
        ownsInput: options.ownsInput,
        // Messages are joined into one buffer anyway (unless streamed): a large single-frame one
        // is better gathered by the parser, as its bytes arrive, than joined from pieces (text is
        // checked as it arrives, onText: 1007 without waiting for the rest).
        gatherLarge: true,
      },
      this,
    );
  }

  /** `open`, `closing` (our close frame is sent or queued) or `closed`. */
  get state(): ProtocolState {
    return STATE_NAMES[this.flags & STATE]!;
  }
  /** True once our close frame was written. */
  get closeSent(): boolean {
    return (this.flags & CLOSE_SENT) !== 0;
  }
  /** True once the peer's close frame was received. */
  get closeReceived(): boolean {
    return (this.flags & CLOSE_RECEIVED) !== 0;
  }
  /** The code of the close frame received (1005 if it had none), or of our failure; undefined while open. */
  get closeCode(): number | undefined {
    return this.rare?.closeCode;
  }
  /** The close reason received, or our failure's message ('' if none). */
  get closeReason(): string {
    return this.rare === undefined ? '' : this.rare.closeReason;
  }
  /**
   * True when this protocol holds nothing a new one would not (see {@link ProtocolEngine.atRest}):
   * open, no bit of state set, no fragmented message or close under way, nothing queued, and the
   * parser at rest. Kept fields of `rare` that a new protocol would make again (a UTF-8 validator
   * kept for reuse) do not count.
   */
  get atRest(): boolean {
    const rare = this.rare;
    return (
      this.flags === OPEN &&
      this.parser.atRest &&
      (rare === undefined || (rare.closeCode === undefined && rare.pendingClose === undefined && rare.parts === NO_PARTS && rare.blockUsed === 0 && rare.queue === NO_FRAMES))
    );
  }

  /** Bytes received and not parsed yet. */
  get bufferedIncoming(): number {
    return this.parser.bufferedAmount;
  }

  /**
   * Payload bytes of the messages given to send and not written yet: those waiting behind a
   * compression job, the one being compressed included (counted as given, before compression).
   */
  get queuedBytes(): number {
    return this.rare === undefined ? 0 : this.rare.queuedBytes;
  }

  // ---- Receiving ------------------------------------------------------------------------------

  /** Feeds bytes from the transport. */
  receiveData(chunk: Buffer): void {
    this.parser.push(chunk);
  }

  /**
   * Feeds `buf[0, end)`, which is valid only during this call (a read buffer that the next read
   * overwrites): nothing reported or kept refers to it afterwards.
   */
  receiveTransient(buf: Buffer, end: number): void {
    this.parser.pushTransient(buf, end);
  }


  /**
   * The transport ended or broke. If no close frame was received the close code is 1006
   * (RFC 6455 §7.1.5); reported locally only.
   */
  receiveEof(): void {
    this.parser.discard();
    if ((this.flags & STATE) === CLOSED) return;
    this.setState(CLOSED);
    const rare = this.rareFields();
    if (rare.closeCode === undefined) {
      rare.closeCode = CloseCode.Abnormal;
      rare.closeReason = '';
    }
    this.dropQueue();
  }

  /** FrameSink: called by the frame parser. @internal */
  onData(opcode: number, compressed: boolean, payload: Buffer, first: boolean, last: boolean): void {
    if ((this.flags & (CLOSE_RECEIVED | HOLD)) !== 0) {
      if ((this.flags & CLOSE_RECEIVED) !== 0) return;
      if (first) {
        // Held back, uninflated, while the caller's queue is full (fixed bug: the rest of the
        // socket read that filled it was received and queued: 64 KiB of small compressed frames
        // made 33 MB of messages behind a 1 MiB readHighWaterMark, and of 3-byte frames 21,845
        // Buffers; measured).
        this.rareFields().held = { opcode, compressed, payload, last };
        this.waitParsing();
        return;
      }
    }
    if (!compressed) {
      this.receivePiece(opcode, payload, first, last);
      return;
    }
    // A message read as a stream is inflated as its reader takes it (fixed bug: each frame was
    // inflated whole, and a 32 MiB message sent as 32 KiB of zeros was held while nobody read).
    if ((this.flags & (first ? STREAM_NEXT : STREAMING)) !== 0 && this.extension!.inflateSlice !== undefined) {
      const rare = this.rareFields();
      rare.sliceOpcode = opcode;
      rare.sliceFirst = first;
      rare.sliceLast = last;
      if (this.slices(payload)) return;
      rare.sliceOpcode = 0;
    }
    let inflated: unknown;
    try {
      inflated = this.extension!.decompress(payload, last, (error, result) => {
        this.inflated(opcode, first, last, error, result);
        // Unless the next frame waits for an inflation job too, the transport may be read again.
        if (!this.parser.paused || this.parser.failed) this.handler.onInflating?.(false);
      });
    } catch (error) {
      this.fail(inflateFailure(error));
      return;
    }
    // Inflated at once (small frames): no pause, no callback. (Only a Buffer counts: an extension
    // written for the callback alone may return anything, e.g. what setImmediate returned.)
    if (Buffer.isBuffer(inflated)) {
      this.receivePiece(opcode, inflated, first, last);
      return;
    }
    // (Fixed bug: the transport was read on meanwhile, and everything the peer sent while a large
    // message inflated was held here, without limit: 300 MiB behind one 60 MiB message.)
    this.waitParsing();
  }

  /**
   * Parsing waits (for an inflation job, a streamed message's reader, or room in the caller's
   * queue): the caller stops reading the transport (onInflating).
   */
  private waitParsing(): void {
    this.parser.paused = true;
    this.handler.onInflating?.(true);
  }

  /** Parsing goes on after such a wait; the caller may read again unless the next frame waits too. */
  private parseOn(): void {
    if (!this.parser.failed) this.parser.resume();
    if (!this.parser.paused || this.parser.failed) this.handler.onInflating?.(false);
  }

  /** A frame's inflation job is done: its piece is received and parsing continues. */
  private inflated(opcode: number, first: boolean, last: boolean, error: Error | null, result: Buffer | undefined): void {
    if ((this.flags & (STATE | CLOSE_RECEIVED)) === (CLOSED | CLOSE_RECEIVED)) return;
    if (error) {
      this.fail(inflateFailure(error));
      return;
    }
    this.receivePiece(opcode, result ?? EMPTY, first, last);
    if (!this.parser.failed) this.parser.resume();
  }

  /**
   * Inflates the frame being sliced (`payload` on the first call, undefined to continue) while its
   * reader wants more, at most SLICE_TURN bytes per turn of the event loop; parsing waits until the
   * frame is done, and, in the middle of a message, until the reader wants more. Returns false,
   * having done nothing, when the extension cannot inflate the frame this way.
   */
  private slices(payload: Buffer | undefined): boolean {
    const rare = this.rare!;
    const opcode = rare.sliceOpcode;
    let turn = 0;
    for (;;) {
      let slice: InflatedSlice | undefined;
      try {
        slice = this.extension!.inflateSlice!(payload, rare.sliceLast, SLICE);
      } catch (error) {
        rare.sliceOpcode = 0;
        this.fail(inflateFailure(error));
        this.releaseSlices();
        return true;
      }
      if (slice === undefined) return false;
      payload = undefined;
      const first = rare.sliceFirst;
      rare.sliceFirst = false;
      if (slice.done) rare.sliceOpcode = 0;
      this.receivePiece(opcode, slice.data, first, slice.done && rare.sliceLast);
      if ((this.flags & STATE) === CLOSED) {
        rare.sliceOpcode = 0;
        this.releaseSlices();
        return true;
      }
      const full = this.handler.streamFull?.() === true;
      if (slice.done) {
        if (full && !rare.sliceLast) this.holdSlices();
        else this.releaseSlices();
        return true;
      }
      turn += slice.data.length;
      if (full) {
        this.holdSlices();
        return true;
      }
      if (turn >= SLICE_TURN) {
        this.holdSlices();
        rare.sliceTimer = setImmediate(continueSlices, this);
        return true;
      }
    }
  }

  /** Parsing waits for the slicing (or for the reader). */
  private holdSlices(): void {
    this.rare!.sliceHeld = true;
    if (!this.parser.paused) this.waitParsing();
  }

  /** Parsing continues after the slicing, if it waited for it. */
  private releaseSlices(): void {
    const rare = this.rare!;
    if (!rare.sliceHeld) return;
    rare.sliceHeld = false;
    this.parseOn();
  }

  /** See ProtocolEngine.holdMessages. */
  holdMessages(): void {
    this.flags |= HOLD;
  }

  /** See ProtocolEngine.resumeHeld. */
  resumeHeld(): void {
    this.flags &= ~HOLD;
    const rare = this.rare;
    const held = rare?.held;
    if (held === undefined) return;
    rare!.held = undefined;
    if ((this.flags & STATE) === CLOSED || this.parser.failed) return;
    // As the parser would hand it over now: onData pauses the parser again if it waits.
    this.parser.paused = false;
    this.onData(held.opcode, held.compressed, held.payload, true, held.last);
    if (this.parser.paused && !this.parser.failed) return;
    // (resume() continues a paused parser only.)
    this.parser.paused = true;
    this.parseOn();
  }

  /** The reader of the streamed message wants more: held slicing or parsing continues on a later turn. */
  resumeStreaming(): void {
    const rare = this.rare;
    if (rare === undefined || !rare.sliceHeld || rare.sliceTimer !== undefined) return;
    rare.sliceTimer = setImmediate(continueSlices, this);
  }

  /** See `resumeStreaming`. @internal */
  continueSlices(): void {
    const rare = this.rare!;
    rare.sliceTimer = undefined;
    if ((this.flags & STATE) === CLOSED || !rare.sliceHeld) return;
    // (Still full: a read that took less than the high-water mark. The next read comes back here.)
    if (this.handler.streamFull?.() === true) return;
    if (rare.sliceOpcode !== 0) this.slices(undefined);
    else this.releaseSlices();
  }

  private receivePiece(opcode: number, data: Buffer, first: boolean, last: boolean): void {
    const text = opcode === Opcode.Text;
    // The parser showed this piece's bytes as they arrived (onText): their UTF-8 is checked.
    let checked = false;
    if (text) {
      const rare = this.rare;
      if (rare !== undefined && rare.textChecked) {
        rare.textChecked = false;
        checked = true;
      }
    }
    if (first) {
      // The message streams if streamNextMessage was set; that request is used up.
      const flags = this.flags;
      if ((flags & STREAM_NEXT) !== 0) {
        this.flags = (flags & ~STREAM_NEXT) | STREAMING;
        this.parser.gatherLarge = true;
      } else {
        this.flags = flags & ~STREAMING;
      }
      // (A checked first piece reset the validator at its first bytes, onText.)
      if (text && !last && !checked) (this.rareFields().validator ??= new Utf8Validator()).reset();
    }
    const streaming = (this.flags & STREAMING) !== 0;
    // The last piece ends the streamed message: nothing is under way after it (atRest), as after
    // a message received whole. (Fixed bug: the bit stayed set until the next message began, and
    // a connection whose latest message was streamed kept its engine, never dropped when idle.)
    if (streaming && last) this.flags &= ~STREAMING;
    if (first && last && text) {
      if (checked) {
        if (streaming) this.handler.onPiece(data, false, true, true);
        else this.handler.onMessage(this.config.textAsBuffer ? data : decodeValidUtf8(data), false);
        return;
      }
      if (!streaming) {
        // A whole text message: validated and decoded in one pass (RFC 6455 §8.1: invalid UTF-8 fails).
        const decoded = this.config.textAsBuffer ? (isUtf8(data) ? data : undefined) : decodeUtf8(data);
        if (decoded === undefined) {
          this.fail(new InvalidUtf8Error());
          return;
        }
        this.handler.onMessage(decoded, false);
        return;
      }
    }
    // RFC 6455 §8.1: fail at the first invalid byte, not at the end of the message.
    if (text && !checked && !(first && last ? isUtf8(data) : this.rare!.validator!.feed(data, last))) {
      this.fail(new InvalidUtf8Error());
      return;
    }
    if (streaming) {
      this.handler.onPiece(data, !text, first, last);
      return;
    }
    if (first && last) {
      this.handler.onMessage(data, true);
      return;
    }
    const rare = this.rareFields();
    const n = data.length;
    if (n >= SMALL_PIECE) {
      if (rare.blockUsed > 0) flushBlock(rare);
      addPart(rare, data);
    } else if (n > 0) {
      let block = rare.block;
      if (block === undefined || rare.blockUsed + n > block.length) {
        if (block !== undefined) flushBlock(rare);
        block = rare.block = Buffer.allocUnsafe(Math.min(MAX_BLOCK, Math.max(SMALL_PIECE, 2 * rare.partsLength)));
      }
      data.copy(block, rare.blockUsed);
      rare.blockUsed += n;
    }
    rare.partsLength += n;
    if (!last) return;
    let whole: Buffer;
    if (rare.blockUsed === 0) {
      // (A lone part is never a block's: a block goes to `parts` only when a piece follows it.)
      whole = rare.parts.length === 1 ? rare.parts[0]! : Buffer.concat(rare.parts, rare.partsLength);
    } else {
      // Copied out of the block even when it is the only part (Buffer.concat always copies): the
      // message holds no more memory than its bytes.
      flushBlock(rare);
      whole = Buffer.concat(rare.parts, rare.partsLength);
    }
    rare.parts = NO_PARTS;
    rare.partsLength = 0;
    this.handler.onMessage(text && !this.config.textAsBuffer ? decodeValidUtf8(whole) : whole, !text);
  }

  /**
   * FrameSink: the bytes of a text frame the parser gathers across reads, as they arrive: their
   * UTF-8 is checked as they come, so a bad byte fails the connection (1007) without waiting for
   * the rest of the frame. `done`: the frame's piece comes next, already checked.
   * @internal
   */
  onText(bytes: Buffer, first: boolean, final: boolean, done: boolean): void {
    if ((this.flags & CLOSE_RECEIVED) !== 0) return;
    const rare = this.rareFields();
    const validator = (rare.validator ??= new Utf8Validator());
    if (first) validator.reset();
    if (!validator.feed(bytes, final)) {
      this.fail(new InvalidUtf8Error());
      return;
    }
    rare.textChecked = done;
  }

  /** FrameSink: called by the frame parser. @internal */
  onControl(opcode: number, payload: Buffer): void {
    if ((this.flags & CLOSE_RECEIVED) !== 0) return;
    if (opcode === Opcode.Ping) {
      this.handler.onPing(payload);
    } else if (opcode === Opcode.Pong) {
      this.handler.onPong(payload);
    } else {
      this.receiveClose(payload);
    }
  }

  private receiveClose(payload: Buffer): void {
    let code: number;
    let reason: string;
    try {
      ({ code, reason } = parseClosePayload(payload));
    } catch (error) {
      this.fail(error as WebSocketError);
      return;
    }
    this.flags |= CLOSE_RECEIVED;
    const rare = this.rareFields();
    rare.closeCode = code;
    rare.closeReason = reason;
    this.parser.discard();
    if ((this.flags & CLOSE_SENT) === 0) {
      // RFC 6455 §5.5.1: reply with a close frame, echoing the status code received. The reason
      // is echoed too (as ws does), so the side that started the close records the same code and
      // reason as its peer (Racket recorded them only on the side that received the close first).
      const replyCode = code === CloseCode.NoStatus ? undefined : code;
      const replyReason = code === CloseCode.NoStatus ? '' : reason;
      if ((this.flags & QUEUED) !== 0) {
        // Sends accepted before the close arrived still wait for compression: they go out first,
        // in order, and the reply after them (pump), as the peer reads on until our close comes
        // (fixed bug: they were dropped, and a reply sent from a `message` listener to a client
        // that closed right after its message never arrived). Later sends reject (`closing`).
        rare.pendingClose = { code: replyCode, reason: replyReason };
        this.setState(CLOSING);
        this.handler.onCloseFrame(code, reason);
        return;
      }
      this.writeClose(replyCode, replyReason);
    }
    this.setState(CLOSED);
    this.dropQueue();
    this.handler.onCloseFrame(code, reason);
    // RFC 6455 §7.1.1: the server closes the TCP connection first.
    if (this.config.side === 'server') this.handler.onEnd();
  }

  /** Fails the connection: close frame with the error's code, then the transport ends (§7.1.7). */
  fail(error: WebSocketError): void {
    if ((this.flags & STATE) === CLOSED) return;
    this.parser.discard();
    const code = 'closeCode' in error && typeof error.closeCode === 'number' ? error.closeCode : CloseCode.InternalError;
    if ((this.flags & CLOSE_SENT) === 0) {
      // 1011 leaks no details; protocol errors name the rule, which is no secret.
      const reason = code === CloseCode.InternalError ? '' : error.message.slice(0, 123);
      this.writeClose(code, Buffer.byteLength(reason) <= 123 ? reason : '');
    }
    const rare = this.rareFields();
    rare.closeCode = code;
    rare.closeReason = error.message;
    this.setState(CLOSED);
    this.dropQueue();
    // The transport ends even when an `error` listener throws (fixed bug: the exception skipped
    // onEnd, and a server never closed TCP nor armed its close timer: a peer that did not close
    // its side held the connection for good, in server.connections, with no close event).
    try {
      this.handler.onFail(error);
    } finally {
      this.handler.onEnd();
      // If parsing waited (for an inflation job, a held message, a streamed message's reader), it
      // waits for nothing now, and the caller reads on, to the peer's answer. Told here, not only
      // by the code that called this once it returns: an `error` listener that throws skips that
      // (fixed bug: a message inflated in the thread pool that failed, 1007, left reading paused
      // for good; the peer's close frame and FIN were never read, and the connection ended only
      // at closeTimeout). (Told even if it did not wait: a held message received by resumeHeld()
      // has cleared the parser's pause already.)
      this.handler.onInflating?.(false);
    }
  }

  /** FrameSink: called by the frame parser. @internal */
  onError(error: WebSocketError): void {
    this.fail(error);
  }

  // ---- Sending --------------------------------------------------------------------------------

  /**
   * Sends a whole text message. Returns true when it was written synchronously; otherwise
   * (waiting behind compression) `callback` is called once it was written or dropped.
   */
  sendText(text: string | Buffer, compress = true, callback?: SendCallback): boolean {
    this.assertCanSend();
    // Bytes the caller vouches are UTF-8 (the connection checked them) go out as they are.
    if (typeof text !== 'string') return this.sendData(Opcode.Text, text, compress, callback);
    // (The string's own path checked nothing, and wrote a new message into an open fragmented one.)
    this.assertNotFragmenting();
    // The threshold is in bytes, as for bytes and prepared messages: a string's UTF-8 is at least
    // its length and at most three times it, so it is measured only in between (fixed bug: 600
    // 'é', 1200 bytes, went uncompressed under the default 1024, the same text as bytes did not).
    const threshold = this.config.compressThreshold;
    const n = text.length;
    const size = n < threshold && n * 3 >= threshold && compress && this.extension !== undefined ? Buffer.byteLength(text, 'utf8') : n;
    if ((this.flags & QUEUED) === 0 && !this.wantsCompression(compress, size)) {
      this.writeTextFrame(text);
      return true;
    }
    return this.sendData(Opcode.Text, encodeUtf8(text, Buffer.byteLength(text, 'utf8')), compress, callback);
  }

  /** Sends a whole binary message (the payload is not modified or retained after writing). */
  sendBinary(data: Buffer, compress = true, callback?: SendCallback): boolean {
    this.assertCanSend();
    return this.sendData(Opcode.Binary, data, compress, callback);
  }

  private sendData(opcode: number, data: Buffer, compress: boolean, callback: SendCallback | undefined): boolean {
    this.assertNotFragmenting();
    const deflate = this.wantsCompression(compress, data.length);
    if ((this.flags & QUEUED) === 0 && !deflate) {
      this.writeFrame(opcode, data, true, false);
      return true;
    }
    this.enqueue({ opcode, data, fin: true, compress: deflate, rsv1: deflate, callback, shared: undefined });
    return false;
  }

  /**
   * Sends a prepared message: its frame as built once (unmasked, uncompressed), or its payload
   * compressed once for every connection whose extension compresses each message from a fresh
   * context with the same setting; otherwise as `sendText`/`sendBinary` would send its bytes.
   */
  sendPrepared(message: PreparedMessage, compress = true, callback?: SendCallback): boolean {
    this.assertCanSend();
    this.assertNotFragmenting();
    const data = message.data;
    const opcode = message.binary ? Opcode.Binary : Opcode.Text;
    if (this.wantsCompression(compress, data.length)) {
      const extension = this.extension!;
      const key = extension.standaloneKey;
      if (key === undefined) return this.sendData(opcode, data, true, callback);
      const shared = message.compressedFor(extension, key);
      if ((this.flags & QUEUED) === 0 && shared.wire !== undefined) {
        if (this.config.masking) this.writeFrame(opcode, shared.wire.payload, true, true);
        else shared.wire.writeTo(this.handler);
        return true;
      }
      this.enqueue({ opcode, data, fin: true, compress: false, rsv1: true, callback, shared });
      return false;
    }
    if ((this.flags & QUEUED) !== 0) return this.sendData(opcode, data, false, callback);
    if (this.config.masking) this.writeFrame(opcode, data, true, false);
    else message.writePlain(this.handler);
    return true;
  }

  /**
   * Sends one fragment of a message (RFC 6455 §5.4). The first call gives the message's opcode
   * (1 or 2); later calls' opcode is ignored (continuations are written); `fin` ends the message.
   * Data messages may not be sent while a fragmented one is open.
   */
  sendFragment(opcode: number, data: Buffer, fin: boolean, compress = true, callback?: SendCallback): boolean {
    this.assertCanSend();
    const flags = this.flags;
    const sendingOpcode = (flags & SENDING) >> SENDING_SHIFT;
    let frameOpcode = Opcode.Continuation as number;
    let deflate = (flags & SENDING_COMPRESSED) !== 0;
    let rsv1 = false;
    if (sendingOpcode === 0) {
      if (opcode !== Opcode.Text && opcode !== Opcode.Binary) throw new TypeError('a message starts with opcode 1 or 2');
      frameOpcode = opcode;
      // The whole message is compressed or not; its size is unknown, so the threshold is not used.
      deflate = this.extension !== undefined && compress;
      rsv1 = deflate;
    }
    // Until `fin`, the message's opcode and whether it is compressed are kept.
    const rest = flags & ~(SENDING | SENDING_COMPRESSED);
    this.flags = fin ? rest : rest | ((sendingOpcode || opcode) << SENDING_SHIFT) | (deflate ? SENDING_COMPRESSED : 0);
    if ((this.flags & QUEUED) === 0 && !deflate) {
      this.writeFrame(frameOpcode, data, fin, false);
      return true;
    }
    this.enqueue({ opcode: frameOpcode, data, fin, compress: deflate, rsv1, callback, shared: undefined });
    return false;
  }

  /** Sends a ping (payload at most 125 bytes). Control frames may go between fragments. */
  ping(payload: Buffer = EMPTY): void {
    this.assertCanSend();
    if (payload.length > 125) throw new RangeError('ping payload over 125 bytes');
    this.writeFrame(Opcode.Ping, payload, true, false);
  }

  /** Sends a pong (automatic replies to pings are the connection's job, through this). */
  pong(payload: Buffer = EMPTY): void {
    // RFC 6455 §5.5.2: a ping is answered unless the peer's close frame came first, so also after
    // our own close frame, while we wait for the peer's (§5.5.1 forbids data frames then, not
    // control frames). (Fixed bug: nothing was answered once our close frame was sent.) Once the
    // connection is closed (a failure included: nothing more is read then) there is no pong.
    if ((this.flags & CLOSE_RECEIVED) !== 0 || (this.flags & STATE) === CLOSED) return;
    if (payload.length > 125) throw new RangeError('pong payload over 125 bytes');
    this.writeFrame(Opcode.Pong, payload, true, false);
  }

  /**
   * Starts the closing handshake (RFC 6455 §7.1.2) after every message already queued. `code`
   * null sends an empty close payload (default 1000). Throws RangeError for a code that may not
   * be sent. Returns false if a close frame was already sent or the connection is closed.
   */
  close(status: number | null = CloseCode.Normal, reason = ''): boolean {
    const code = status ?? undefined;
    checkClosePayload(code, reason); // validates before any state changes (encoded once, when written)
    if ((this.flags & CLOSE_SENT) !== 0 || this.rare?.pendingClose || (this.flags & STATE) === CLOSED) return false;
    if ((this.flags & QUEUED) !== 0) {
      this.rare!.pendingClose = { code, reason };
      this.setState(CLOSING);
      return true;
    }
    this.writeClose(code, reason);
    this.setState(CLOSING);
    return true;
  }

  private writeClose(code: number | undefined, reason: string): void {
    // RFC 6455 §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
    // response, unless it already received a Close frame." A pong the caller held back while its
    // writes were backed up answers a ping received before any close frame: it goes out ahead of
    // our close frame, after which the peer reads nothing (fixed bug: it was dropped when the
    // peer's close frame came behind its ping, and written after our own close frame otherwise).
    const held = this.handler.takeHeldPong?.();
    if (held !== undefined) this.writeFrame(Opcode.Pong, held, true, false);
    this.flags |= CLOSE_SENT;
    this.writeFrame(Opcode.Close, encodeClosePayload(code, reason), true, false);
    this.handler.onCloseWritten?.();
  }

  private rareFields(): RareFields {
    return (this.rare ??= new RareFields());
  }

  private setState(state: number): void {
    this.flags = (this.flags & ~STATE) | state;
  }

  private assertCanSend(): void {
    // A pending close needs no check of its own: close() sets it with the state `closing`.
    if ((this.flags & (STATE | CLOSE_SENT)) !== 0) {
      throw new ConnectionClosedError(this.closeCode ?? CloseCode.Abnormal, this.closeReason);
    }
  }

  /** A whole message may not be sent while a fragmented one is (RFC 6455 §5.4: no interleaving). */
  private assertNotFragmenting(): void {
    if ((this.flags & SENDING) !== 0) throw new ProtocolError('a fragmented message is being sent', 1011, 'WS_SEND_IN_PROGRESS');
  }

  private wantsCompression(compress: boolean, length: number): boolean {
    return compress && this.extension !== undefined && length >= this.config.compressThreshold;
  }

  private enqueue(frame: QueuedFrame): void {
    const rare = this.rareFields();
    if (rare.queue === NO_FRAMES) rare.queue = [frame];
    else rare.queue.push(frame);
    rare.queuedBytes += frame.data.length;
    this.flags |= QUEUED;
    if ((this.flags & COMPRESSING) === 0) this.pump();
  }

  /** Writes queued frames in order, waiting for each compression job. */
  private pump(): void {
    const rare = this.rare!;
    while (rare.queue.length > 0) {
      // A callback below may have sent, and that send may have started a compression job.
      if ((this.flags & COMPRESSING) !== 0) return;
      const frame = rare.queue[0]!;
      let data = frame.data;
      const shared = frame.shared;
      if (shared !== undefined) {
        if (shared.wire === undefined && shared.error === undefined) {
          // Being compressed for every connection that shares it: this one waits its turn.
          this.flags |= COMPRESSING;
          shared.whenSettled(() => {
            this.flags &= ~COMPRESSING;
            if (rare.queue[0] === frame) this.pump();
          });
          return;
        }
        if (shared.error !== undefined) {
          this.compressionFailed(rare, frame, shared.error);
          return;
        }
        data = shared.wire!.payload;
      } else if (frame.compress) {
        let compressed: unknown;
        try {
          compressed = this.extension!.compress(frame.data, frame.fin, (error, result) => {
            this.flags &= ~COMPRESSING;
            if (rare.queue[0] !== frame) return; // dropped while compressing
            if (error) {
              this.compressionFailed(rare, frame, error);
              return;
            }
            this.sendQueued(rare, frame, result ?? EMPTY);
            this.pump();
          });
        } catch (error) {
          this.compressionFailed(rare, frame, error as Error);
          return;
        }
        if (!Buffer.isBuffer(compressed)) {
          this.flags |= COMPRESSING;
          return;
        }
        // Compressed at once (small messages): written now, in order.
        data = compressed;
      }
      this.sendQueued(rare, frame, data);
    }
    rare.queue = NO_FRAMES;
    this.flags &= ~QUEUED;
    if (rare.pendingClose && (this.flags & STATE) !== CLOSED) {
      const { code, reason } = rare.pendingClose;
      rare.pendingClose = undefined;
      this.writeClose(code, reason);
      if ((this.flags & CLOSE_RECEIVED) !== 0) {
        // The reply to the peer's close, written after what was queued before it (receiveClose).
        this.setState(CLOSED);
        if (this.config.side === 'server') this.handler.onEnd();
      }
    }
  }

  /** Takes the first queued frame off the queue and writes it with `data`, its payload (compressed or not). */
  private sendQueued(rare: RareFields, frame: QueuedFrame, data: Buffer): void {
    this.shiftQueue(rare);
    // Its sender is told even when the write crossed maxBufferedAmount and an `error` listener
    // threw (fixed bug: the frame, already off the queue, was neither reported written nor dropped,
    // and its send() or sendStream() never settled).
    try {
      this.writeFrame(frame.opcode, data, frame.fin, frame.rsv1);
    } finally {
      frame.callback?.();
    }
  }

  /** The first queued frame could not be compressed: its sender is told, and the connection fails (1011). */
  private compressionFailed(rare: RareFields, frame: QueuedFrame, error: Error): void {
    this.shiftQueue(rare);
    frame.callback?.(error);
    this.fail(new ProtocolError('compression failed', CloseCode.InternalError, 'WS_DEFLATE_FAILED'));
  }

  /**
   * Takes the first queued frame off. QUEUED is cleared as soon as the queue is empty: a frame's
   * callback may send, and that send is written at once, as nothing waits before it.
   */
  private shiftQueue(rare: RareFields): void {
    rare.queuedBytes -= rare.queue.shift()!.data.length;
    if (rare.queue.length === 0) this.flags &= ~QUEUED;
  }

  /** Fails every queued send (the error is built only when there is one to tell). */
  private dropQueue(): void {
    const rare = this.rare;
    if (rare === undefined) return;
    rare.pendingClose = undefined;
    if (rare.queue.length === 0) return;
    const queue = rare.queue;
    rare.queue = NO_FRAMES;
    rare.queuedBytes = 0;
    this.flags &= ~QUEUED;
    const error = new ConnectionClosedError(rare.closeCode ?? CloseCode.Abnormal, rare.closeReason);
    for (const frame of queue) frame.callback?.(error);
  }


  /** Frames a text message straight from the string: no intermediate Buffer for small ones. */
  private writeTextFrame(text: string): void {
    // A string whose UTF-8 length is its length is ASCII (every other char takes 2-4 bytes), and
    // ASCII is its own Latin-1: the Latin-1 writer is the cheaper one (measured: 107 vs 195 ns for
    // a 64-char frame against a JavaScript ASCII scan first).
    const length = Buffer.byteLength(text, 'utf8');
    if (length > COPY_THRESHOLD) {
      // Header and payload go out in one writev. Unmasked ASCII goes as the string itself (the
      // socket's native write copies it out, as `ws` lets it do): making a Buffer of it first cost
      // 2.7 against 0.8 µs per 16 KiB send in a send() loop to 1000 connections.
      if (length === text.length && !this.config.masking && this.handler.onWritevAscii !== undefined) {
        this.handler.onWritevAscii(unmaskedHeader(Opcode.Text, length, true, false), text);
        return;
      }
      this.writeFrame(Opcode.Text, encodeUtf8(text, length), true, false);
      return;
    }
    const masking = this.config.masking;
    const frame = Buffer.allocUnsafe(headerSize(length, masking) + length);
    let at = writeHeader(frame, 0, Opcode.Text, length, true, false, undefined);
    if (masking) {
      frame[1] = frame[1]! | 0x80;
      writeRandomMaskKey(frame, at);
      at += 4;
    }
    if (length === text.length) (frame as RawWriters).latin1Write(text, at, length);
    else (frame as RawWriters).utf8Write(text, at, length);
    if (masking && length > 0) unmaskInPlace(frame.subarray(at), frame.subarray(at - 4, at));
    this.handler.onWrite(frame);
  }

  private writeFrame(opcode: number, data: Buffer, fin: boolean, rsv1: boolean): void {
    const length = data.length;
    if (!this.config.masking) {
      if (length > COPY_THRESHOLD) this.handler.onWritev(unmaskedHeader(opcode, length, fin, rsv1), data);
      else this.handler.onWrite(encodeUnmaskedCopy(opcode, data, fin, rsv1));
      return;
    }
    // RFC 6455 §5.3: a fresh unpredictable key per frame; the payload is masked into our own copy.
    this.handler.onWrite(encodeMasked(opcode, data, fin, rsv1));
  }
}

