/**
 * permessage-deflate (RFC 7692): the zlib engine behind the `MessageExtension` seam, plus the
 * negotiation functions re-exported from `deflate-negotiation.ts`.
 *
 * Memory: zlib contexts are created on first use. With no_context_takeover in a direction the
 * context of that direction is released after each message, so an idle connection holds none.
 * With context takeover a deflater costs about 2^(windowBits+2) + 2^(memLevel+9) bytes
 * (256 KiB at 15/8) and an inflater about 2^windowBits + 7 KiB, for as long as the connection lives.
 */
import { constants, createDeflateRaw, createInflateRaw, deflateRaw, deflateRawSync, type DeflateRaw, type InflateRaw } from 'node:zlib';
import { MessageTooBigError, ProtocolError, WebSocketError } from '../errors.js';
import type { InflatedSlice, MessageExtension } from './extension.js';
import { PERMESSAGE_DEFLATE, type DeflateParams, type PerMessageDeflateOptions } from './deflate-negotiation.js';
import { zlibLimiter, setZlibConcurrency } from './zlib-limiter.js';
import { capOutput, inlineCapable, MIN_CHUNK, outputSizable, runInline, sizeOutput } from './zlib-inline.js';

export {
  acceptDeflateOffers,
  acceptDeflateResponse,
  buildDeflateOffer,
  PERMESSAGE_DEFLATE,
  type DeflateParams,
  type PerMessageDeflateOptions,
} from './deflate-negotiation.js';
export { setZlibConcurrency, zlibLimiter } from './zlib-limiter.js';

/** The empty stored block's LEN/NLEN that ends a sync flush (RFC 7692 §7.2.1). */
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);
/** An empty stored block header alone: the payload of an empty compressed message (RFC 7692 §7.2.3.6). */
const EMPTY_MESSAGE = Buffer.from([0x00]);
/** Default `syncLimit`. */
export const DEFAULT_SYNC_LIMIT = 32 * 1024;
/**
 * Inflating inline stops after this much output of one call and the rest goes to the thread pool,
 * so that a small frame that inflates to a lot (a bomb, or just very compressible data) does not
 * hold the event loop for more than about a millisecond.
 */
export const INLINE_INFLATE_MAX = 256 * 1024;

/**
 * Output buffer of a thread-pool job, where it can be chosen (`outputSizable`): room for what its
 * input usually gives (twice the input when inflating, as much when compressing), between
 * Node's default chunk (16 KiB) and 1 MiB, so that most jobs take one trip to the thread pool
 * (a 1 MiB message inflated in 16 KiB pieces took 64, about 45 µs each; measured). Between jobs a
 * stream keeps the smallest chunk: the inline path does not use it, and an idle connection's
 * contexts then hold 64 bytes each instead of 16 KiB.
 */
function jobOutputSize(inputLength: number, factor: number, limit: number): number {
  const size = Math.min(Math.max(inputLength * factor, 16 * 1024), 1024 * 1024);
  return Math.max(MIN_CHUNK, Math.min(size, limit));
}

/** A piece of output this much smaller than the buffer it lies in is copied out (see #collect). */
const SPARSE_OUTPUT = 2;

/** Options of the {@link PerMessageDeflate} engine (the negotiated parameters are separate). */
export interface PerMessageDeflateEngineOptions {
  /** Largest inflated size of one incoming message, in bytes; counted while inflating. */
  maxMessageSize: number;
  /** zlib level, 0..9 or -1 (zlib default, 6). Default -1. */
  level?: number | undefined;
  /** zlib memLevel, 1..9. Default 8. */
  memLevel?: number | undefined;
  /**
   * Messages below this many bytes should be sent uncompressed (see `shouldCompress`). Default 1024.
   * A connection's `compressThreshold`, when given, decides instead.
   */
  threshold?: number | undefined;
  /** When given, sets the process-wide zlib concurrency (see `setZlibConcurrency`). */
  concurrencyLimit?: number | undefined;
  /**
   * Pieces of up to this many bytes (the data to compress; the compressed data to inflate) are
   * worked at once on the calling thread, without the thread-pool round trip; larger ones go to
   * the thread pool. 0 sends every job to the thread pool. Default 32 KiB.
   */
  syncLimit?: number | undefined;
}

/**
 * The engine's options from the user's `perMessageDeflate` options (the same on every handshake,
 * server or client, HTTP/1.1 or HTTP/2), with the connection's `maxMessageSize`.
 */
export function deflateEngineOptions(options: PerMessageDeflateOptions, maxMessageSize: number): PerMessageDeflateEngineOptions {
  return {
    maxMessageSize,
    level: options.level,
    memLevel: options.memLevel,
    threshold: options.threshold,
    concurrencyLimit: options.concurrencyLimit,
    syncLimit: options.syncLimit,
  };
}

/** Completion callback of a compression or decompression job. */
export type Callback = (err: Error | null, result?: Buffer) => void;

interface Job {
  readonly kind: 'compress' | 'decompress';
  readonly data: Buffer;
  readonly fin: boolean;
  readonly cb: Callback;
  /** Output already produced inline for this job (an inflation continued in the thread pool). */
  readonly prefix?: Buffer[];
  /** The tail of a final piece is already part of `data` (or was already inflated). */
  readonly tailDone?: boolean;
}

/** Thrown to callbacks of jobs that were pending when `dispose()` was called, or made after it. */
export class ExtensionDisposedError extends WebSocketError {
  constructor() {
    super('WS_EXTENSION_DISPOSED', 'permessage-deflate context was disposed');
  }
}

/**
 * Calls a job's callback (on a later tick, with the job's direction counted as no longer waiting,
 * so that it may work inline again). Set by PerMessageDeflate's static block (private fields).
 */
let deliver: (engine: PerMessageDeflate, job: Job, err: Error | null, result: Buffer | undefined) => void;

/**
 * One connection's permessage-deflate contexts.
 *
 * `compress` and `decompress` work a piece at once, on the calling thread, when it is small
 * (`syncLimit`) and nothing of the same direction is waiting: the result is returned and the
 * callback is not called. Otherwise they return undefined and the piece becomes a thread-pool job.
 * Jobs (both directions) run one at a time per connection, in call order, each holding a slot of
 * the process-wide zlib limiter; their callbacks come exactly once, asynchronously. Within a
 * direction, results come in call order, whichever way each piece was worked.
 */
export class PerMessageDeflate implements MessageExtension {
  readonly name = PERMESSAGE_DEFLATE;
  /** The negotiated parameters (a copy). */
  readonly params: Readonly<DeflateParams>;
  /** Our end: decides which window and takeover parameters apply to what we send and receive. */
  readonly side: 'server' | 'client';
  /** Messages below this many bytes should be sent uncompressed. Default 1024. */
  readonly threshold: number;

  readonly #maxMessageSize: number;
  readonly #level: number;
  readonly #memLevel: number;
  readonly #syncLimit: number;
  /** Window bits and takeover of what we send and what we receive. */
  readonly #outBits: number;
  readonly #outReset: boolean;
  readonly #inBits: number;
  readonly #inReset: boolean;

  #deflate: DeflateRaw | null = null;
  #inflate: InflateRaw | null = null;
  readonly #queue: Job[] = [];
  /** The head job holds a limiter slot while true. */
  #running = false;
  #cancelWait: (() => boolean) | null = null;
  #chunks: Buffer[] = [];
  #length = 0;
  /** Inflated bytes of the incoming message so far. */
  #inflated = 0;
  /** Every byte zlib produced while inflating, over the connection's life (see `inflatedBytes`). */
  #inflatedTotal = 0;
  #disposed = false;
  /** Jobs of each direction whose callback has not been called yet. */
  #pendingCompress = 0;
  #pendingDecompress = 0;
  /** What `inflateSlice` has still to feed of the frame it works on. */
  #slice: { rest: Buffer; isTail: boolean } | undefined = undefined;

  constructor(params: DeflateParams, side: 'server' | 'client', options: PerMessageDeflateEngineOptions) {
    if (!(options.maxMessageSize > 0)) throw new RangeError('maxMessageSize must be positive');
    this.params = { ...params };
    this.side = side;
    this.threshold = options.threshold ?? 1024;
    this.#maxMessageSize = options.maxMessageSize;
    this.#level = options.level ?? constants.Z_DEFAULT_COMPRESSION;
    this.#memLevel = options.memLevel ?? 8;
    const syncLimit = options.syncLimit ?? DEFAULT_SYNC_LIMIT;
    if (!(syncLimit >= 0)) throw new RangeError('syncLimit must be a number of bytes, 0 or more');
    this.#syncLimit = syncLimit;
    if (options.concurrencyLimit !== undefined) setZlibConcurrency(options.concurrencyLimit);
    const server = side === 'server';
    this.#outBits = server ? params.serverMaxWindowBits : params.clientMaxWindowBits;
    this.#outReset = server ? params.serverNoContextTakeover : params.clientNoContextTakeover;
    this.#inBits = server ? params.clientMaxWindowBits : params.serverMaxWindowBits;
    this.#inReset = server ? params.clientNoContextTakeover : params.serverNoContextTakeover;
  }

  /** True when a message of `byteLength` bytes is worth compressing (at or above `threshold`). */
  shouldCompress(byteLength: number): boolean {
    return byteLength >= this.threshold;
  }

  /** True while a zlib context is allocated in the direction (for tests and memory accounting). */
  get holdsContexts(): {
    /** A compressor is allocated. */
    deflate: boolean;
    /** A decompressor is allocated. */
    inflate: boolean
  } {
    return { deflate: this.#deflate !== null, inflate: this.#inflate !== null };
  }

  /**
   * Bytes zlib has produced while inflating, over this connection's life, counting output that was
   * discarded because it crossed `maxMessageSize`: what decompression really cost (for tests,
   * metrics and bomb accounting).
   */
  get inflatedBytes(): number {
    return this.#inflatedTotal;
  }

  /**
   * Compresses the next piece of an outgoing message (`fin`: its last piece, whose result has the
   * 0x00 0x00 0xff 0xff tail removed, RFC 7692 §7.2.1). Returns the result when the piece was
   * compressed at once (the callback is then not called; a failure is thrown); otherwise
   * undefined, and the callback comes later.
   */
  compress(data: Buffer, fin: boolean, cb: Callback): Buffer | undefined {
    if (this.#pendingCompress === 0 && data.length <= this.#syncLimit && !this.#disposed) {
      const deflate = this.#deflate ?? this.#openDeflate();
      if (inlineCapable(deflate)) return this.#compressInline(deflate, data, fin);
    }
    this.#pendingCompress++;
    this.#enqueue({ kind: 'compress', data, fin, cb });
    return undefined;
  }

  /**
   * Inflates the payload of one frame of a compressed message (`fin`: its last frame; the tail is
   * appended first, RFC 7692 §7.2.2). Returns the result when the frame was inflated at once (the
   * callback is then not called; a failure is thrown: MessageTooBigError past `maxMessageSize`,
   * ProtocolError 1007 for bad data); otherwise undefined, and the callback comes later.
   */
  decompress(data: Buffer, fin: boolean, cb: Callback): Buffer | undefined {
    if (this.#pendingDecompress === 0 && data.length <= this.#syncLimit && !this.#disposed) {
      const inflate = this.#inflate ?? this.#openInflate();
      if (inlineCapable(inflate)) return this.#decompressInline(inflate, data, fin, cb);
    }
    this.#pendingDecompress++;
    this.#enqueue({ kind: 'decompress', data, fin, cb });
    return undefined;
  }

  /**
   * With no context takeover in our direction, every message is compressed from a fresh context:
   * the same message then compresses to the same bytes on every connection with the same window,
   * level and memLevel, which this key names (undefined with context takeover).
   */
  get standaloneKey(): string | undefined {
    return this.#outReset ? `${Math.max(9, this.#outBits)}/${this.#level}/${this.#memLevel}` : undefined;
  }

  /**
   * Compresses a whole message from a fresh context of its own, as `compress(data, true)` does
   * without context takeover, but outside this connection's queue and contexts: for a prepared
   * message shared by many connections. Up to `syncLimit` bytes at once (the result is returned);
   * larger ones in the thread pool, holding a slot of the zlib limiter (the callback comes later).
   */
  compressStandalone(data: Buffer, cb: Callback): Buffer | undefined {
    const options = { level: this.#level, memLevel: this.#memLevel, windowBits: Math.max(9, this.#outBits), finishFlush: constants.Z_SYNC_FLUSH };
    if (data.length <= this.#syncLimit) return messageEnd(deflateRawSync(data, options));
    zlibLimiter.acquire(() => {
      deflateRaw(data, options, (err, out) => {
        zlibLimiter.release();
        if (err) cb(err);
        else cb(null, messageEnd(out));
      });
    });
    return undefined;
  }

  #compressInline(d: DeflateRaw, data: Buffer, fin: boolean): Buffer {
    const pieces: Buffer[] = [];
    try {
      runInline(d, data, constants.Z_SYNC_FLUSH, pieces, Infinity);
    } catch (err) {
      this.#closeDeflate();
      throw err;
    }
    return this.#compressed(join(pieces), fin);
  }

  /** The end of a compression job, inline or not: the tail removed, the context released if so agreed. */
  #compressed(out: Buffer, fin: boolean): Buffer {
    if (!fin) return out;
    out = messageEnd(out);
    // RFC 7692 §7.1.1: without context takeover the next message starts from a fresh context;
    // we release it now rather than reset, so an idle connection holds no deflater.
    if (this.#outReset) this.#closeDeflate();
    return out;
  }

  #decompressInline(inf: InflateRaw, data: Buffer, fin: boolean, cb: Callback): Buffer | undefined {
    const pieces: Buffer[] = [];
    // Beyond the inline budget, the rest goes to the pool.
    const run = this.#inflateInline(inf, data, false, fin, INLINE_INFLATE_MAX, pieces);
    if (run.rest !== undefined) {
      // More output than one inline run may make: zlib continues in the thread pool.
      this.#pendingDecompress++;
      this.#enqueue({ kind: 'decompress', data: run.rest, fin, cb, prefix: pieces, tailDone: run.restIsTail });
      return undefined;
    }
    return join(pieces);
  }

  /**
   * Inflates a frame of a message read as a stream a slice at a time, on the calling thread, so
   * that no more is inflated than its reader has taken: at most `budget` bytes of output per call.
   * The first call gives the frame's payload (`fin`: the message's last frame); while the result's
   * `done` is false, the next call, with `data` undefined, continues where this one stopped (no
   * other frame may be given meanwhile). Failures are thrown, as by the inline `decompress`.
   * Returns undefined, having done nothing, when the frame cannot be inflated this way (a
   * thread-pool job is unfinished, or this runtime's zlib cannot be run inline): it then goes to
   * `decompress`.
   */
  inflateSlice(data: Buffer | undefined, fin: boolean, budget: number): InflatedSlice | undefined {
    let input: Buffer;
    let isTail = false;
    if (data !== undefined) {
      if (this.#pendingDecompress !== 0 || this.#disposed) return undefined;
      const inf = this.#inflate ?? this.#openInflate();
      if (!inlineCapable(inf)) return undefined;
      input = data;
    } else {
      if (this.#slice === undefined) throw new Error('inflateSlice: no frame to continue');
      if (this.#inflate === null) throw new ExtensionDisposedError();
      input = this.#slice.rest;
      isTail = this.#slice.isTail;
    }
    this.#slice = undefined;
    const pieces: Buffer[] = [];
    const run = this.#inflateInline(this.#inflate!, input, isTail, fin, budget, pieces);
    if (run.rest !== undefined) this.#slice = { rest: run.rest, isTail: run.restIsTail };
    return { data: join(pieces), done: run.rest === undefined };
  }

  /**
   * Feeds `input` to the inflater on the calling thread, then, for a message's last frame, the
   * tail (RFC 7692 §7.2.2; `isTail`: `input` is what remains of the tail): at most `budget` bytes
   * of output, appended to `pieces`. What zlib did not take when the budget ran out is `rest`.
   * Counts the output against `maxMessageSize` (throws MessageTooBigError past it, ProtocolError
   * 1007 for bad data) and, once the message is done, starts the next one.
   */
  #inflateInline(inf: InflateRaw, input: Buffer, isTail: boolean, fin: boolean, budget: number, pieces: Buffer[]): { rest: Buffer | undefined; restIsTail: boolean } {
    // Output beyond the message limit fails.
    const limit = Math.min(this.#maxMessageSize - this.#inflated + 1, budget);
    let produced = 0;
    let ended = false;
    let rest: Buffer | undefined;
    let restIsTail = false;
    try {
      if (!isTail) {
        const run = runInline(inf, input, constants.Z_SYNC_FLUSH, pieces, limit);
        produced = run.produced;
        if (!run.done) rest = input.subarray(run.consumed);
        else if (run.consumed < input.length) ended = true; // a BFINAL block before the end of the input (RFC 7692 §7.2.3.3)
        else if (fin) (input = TAIL), (isTail = true);
      }
      if (isTail) {
        // The tail, then what it flushes out.
        const tail = runInline(inf, input, constants.Z_SYNC_FLUSH, pieces, limit - produced);
        produced += tail.produced;
        if (!tail.done) (rest = input.subarray(tail.consumed)), (restIsTail = true);
        else if (tail.consumed < input.length) ended = true;
      }
    } catch (err) {
      this.#closeInflate();
      throw invalidData(err as Error);
    }
    this.#inflatedTotal += produced;
    this.#inflated += produced;
    if (this.#inflated > this.#maxMessageSize) {
      this.#closeInflate();
      throw this.#tooBig();
    }
    if (rest === undefined && fin) {
      this.#inflated = 0;
      // A message that ended with BFINAL finished the context; without takeover it is not kept.
      if (this.#inReset || ended) this.#closeInflate();
    }
    return { rest, restIsTail };
  }

  /** Frees both zlib contexts; pending callbacks get `ExtensionDisposedError`. Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#closeDeflate();
    this.#closeInflate();
    this.#slice = undefined;
    if (this.#cancelWait !== null) this.#cancelWait();
    this.#cancelWait = null;
    if (this.#running) {
      this.#running = false;
      zlibLimiter.release();
    }
    const pending = this.#queue.splice(0);
    this.#chunks = [];
    for (const job of pending) process.nextTick(deliver, this, job, new ExtensionDisposedError(), undefined);
  }

  #enqueue(job: Job): void {
    if (this.#disposed) {
      process.nextTick(deliver, this, job, new ExtensionDisposedError(), undefined);
      return;
    }
    this.#queue.push(job);
    if (this.#queue.length === 1) this.#next();
  }

  /** Waits for a limiter slot for the head job, then runs it. */
  #next(): void {
    const job = this.#queue[0];
    if (job === undefined || this.#disposed) return;
    this.#cancelWait = zlibLimiter.acquire(() => {
      this.#cancelWait = null;
      this.#running = true;
      try {
        if (job.kind === 'compress') this.#runCompress(job);
        else this.#runDecompress(job);
      } catch (err) {
        this.#finish(job, err instanceof Error ? err : new Error(String(err)));
      }
    });
  }

  /** Completes the head job once; stale completions (after an error or dispose) are ignored. */
  #finish(job: Job, err: Error | null, result?: Buffer): void {
    if (this.#queue[0] !== job || !this.#running) return;
    this.#queue.shift();
    this.#running = false;
    this.#chunks = [];
    this.#length = 0;
    zlibLimiter.release();
    process.nextTick(deliver, this, job, err, result);
    this.#next();
  }

  static {
    deliver = (engine, job, err, result) => {
      if (job.kind === 'compress') engine.#pendingCompress--;
      else engine.#pendingDecompress--;
      if (err !== null) job.cb(err);
      else job.cb(null, result);
    };
  }

  #collect(): Buffer {
    let out = join(this.#chunks);
    // One piece in a job's output buffer that it mostly left empty: copied out, so that a kept
    // message does not keep the whole buffer.
    if (out.length * SPARSE_OUTPUT < out.buffer.byteLength && out.buffer.byteLength > 16 * 1024) out = Buffer.from(out);
    this.#chunks = [];
    this.#length = 0;
    return out;
  }

  #openDeflate(): DeflateRaw {
    const deflate = createDeflateRaw({
      level: this.#level,
      memLevel: this.#memLevel,
      // zlib has no 8-bit window for raw deflate (it uses 9). A 9-bit window's largest match
      // distance is 512 - MIN_LOOKAHEAD (262) = 250 bytes, so the output fits a 256-byte window
      // and honours a negotiated 8 (RFC 7692 §7.1.2.1).
      windowBits: Math.max(9, this.#outBits),
      // Each job sizes its own output (jobOutputSize); Node's default chunk where it cannot.
      ...(outputSizable() ? { chunkSize: MIN_CHUNK } : {}),
    });
    const d = deflate;
    d.on('data', (chunk: Buffer) => {
      if (this.#deflate !== d) return;
      this.#chunks.push(chunk);
      this.#length += chunk.length;
    });
    d.on('error', (err: Error) => {
      if (this.#deflate === d) this.#deflate = null;
      const head = this.#queue[0];
      if (head !== undefined && head.kind === 'compress') this.#finish(head, err);
    });
    this.#deflate = deflate;
    return deflate;
  }

  #runCompress(job: Job): void {
    const d = this.#deflate ?? this.#openDeflate();
    const sized = outputSizable();
    if (sized) sizeOutput(d, jobOutputSize(job.data.length, 1, Infinity));
    if (job.data.length > 0) d.write(job.data);
    d.flush(constants.Z_SYNC_FLUSH, () => {
      if (this.#deflate !== d) return; // closed by an error or dispose
      if (sized) sizeOutput(d, MIN_CHUNK);
      this.#finish(job, null, this.#compressed(this.#collect(), job.fin));
    });
  }

  #openInflate(): InflateRaw {
    const sized = outputSizable();
    const inf = createInflateRaw({ windowBits: this.#inBits, ...(sized ? { chunkSize: MIN_CHUNK } : {}) });
    inf.on('data', (chunk: Buffer) => {
      if (this.#inflate !== inf) return;
      this.#inflatedTotal += chunk.length;
      this.#inflated += chunk.length;
      if (this.#inflated > this.#maxMessageSize) {
        // Stop zlib at once: closing the handle ends processing of the remaining input.
        this.#closeInflate();
        const head = this.#queue[0];
        if (head !== undefined) {
          this.#finish(head, this.#tooBig());
        }
        return;
      }
      // The next output buffers end at the limit, so that zlib stops within a byte of it.
      if (sized) capOutput(inf, this.#maxMessageSize - this.#inflated + 1);
      this.#chunks.push(chunk);
      this.#length += chunk.length;
    });
    inf.on('error', (err: Error) => {
      if (this.#inflate !== inf) return;
      this.#inflate = null;
      this.#inflated = 0;
      const head = this.#queue[0];
      if (head !== undefined && head.kind === 'decompress') {
        this.#finish(head, invalidData(err));
      }
    });
    this.#inflate = inf;
    return inf;
  }

  #runDecompress(job: Job): void {
    const inf = this.#inflate ?? this.#openInflate();
    if (job.prefix !== undefined) {
      // Continuing an inflation begun inline: its output so far comes first.
      for (const piece of job.prefix) {
        this.#chunks.push(piece);
        this.#length += piece.length;
      }
    }
    const sized = outputSizable();
    // (No more than one byte past the message limit: the 'data' listener stops zlib there.)
    if (sized) sizeOutput(inf, jobOutputSize(job.data.length, 2, this.#maxMessageSize - this.#inflated + 1));
    if (job.data.length > 0) inf.write(job.data);
    // RFC 7692 §7.2.2: append the tail before inflating the end of a message.
    if (job.fin && job.tailDone !== true) inf.write(TAIL);
    inf.flush(constants.Z_SYNC_FLUSH, () => {
      if (this.#inflate !== inf) return; // stopped by the size limit, an error or dispose
      if (sized) sizeOutput(inf, MIN_CHUNK);
      const out = this.#collect();
      if (job.fin) {
        this.#inflated = 0;
        // A peer may end its DEFLATE stream with BFINAL (RFC 7692 §7.2.3.3); then the context is
        // finished and the next message needs a new one, as it does without context takeover.
        if (this.#inReset || inf.readableEnded || inf.writableEnded) this.#closeInflate();
      }
      this.#finish(job, null, out);
    });
  }

  /** The error of a message whose inflated size passed `maxMessageSize` (1009). */
  #tooBig(): MessageTooBigError {
    return new MessageTooBigError(`inflated message exceeds ${this.#maxMessageSize} bytes`, this.#maxMessageSize);
  }

  #closeDeflate(): void {
    const d = this.#deflate;
    this.#deflate = null;
    if (d !== null) d.close();
  }

  #closeInflate(): void {
    const inf = this.#inflate;
    this.#inflate = null;
    this.#inflated = 0;
    if (inf !== null) inf.close();
  }
}

/**
 * The last compressed piece of a message as it is sent (RFC 7692 §7.2.1): the 0x00 0x00 0xff 0xff
 * tail of the final sync flush removed. zlib emits nothing for a flush with no new input; an empty
 * final piece then becomes a lone empty stored block header (RFC 7692 §7.2.3.6) so the message
 * still ends on a complete block.
 */
function messageEnd(out: Buffer): Buffer {
  const n = out.length;
  if (n >= 4 && out[n - 4] === 0 && out[n - 3] === 0 && out[n - 2] === 0xff && out[n - 1] === 0xff) return out.subarray(0, n - 4);
  return n === 0 ? EMPTY_MESSAGE : out;
}

/** The pieces as one buffer (the piece itself when there is one). */
function join(pieces: Buffer[]): Buffer {
  if (pieces.length === 1) return pieces[0]!;
  if (pieces.length === 0) return Buffer.alloc(0);
  return Buffer.concat(pieces);
}

/** The error of compressed data zlib refused (1007). */
function invalidData(err: Error): ProtocolError {
  return new ProtocolError(`permessage-deflate: invalid compressed data (${err.message})`, 1007, 'WS_INFLATE_FAILED');
}
