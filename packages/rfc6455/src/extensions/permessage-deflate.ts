/**
 * permessage-deflate (RFC 7692): the zlib engine behind the `MessageExtension` seam, plus the
 * negotiation functions re-exported from `deflate-negotiation.ts`.
 *
 * Memory: zlib contexts are created on first use. With no_context_takeover in a direction the
 * context of that direction is released after each message, so an idle connection holds none.
 * With context takeover a deflater costs about 2^(windowBits+2) + 2^(memLevel+9) bytes
 * (256 KiB at 15/8) and an inflater about 2^windowBits + 7 KiB, for as long as the connection lives.
 */
import { constants, createDeflateRaw, createInflateRaw, type DeflateRaw, type InflateRaw } from 'node:zlib';
import { MessageTooBigError, ProtocolError, WebSocketError } from '../errors.js';
import type { MessageExtension } from './extension.js';
import { PERMESSAGE_DEFLATE, type DeflateParams } from './deflate-negotiation.js';
import { zlibLimiter, setZlibConcurrency } from './zlib-limiter.js';

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

/** Options of the {@link PerMessageDeflate} engine (the negotiated parameters are separate). */
export interface PerMessageDeflateEngineOptions {
  /** Largest inflated size of one incoming message, in bytes; counted while inflating. */
  maxMessageSize: number;
  /** zlib level, 0..9 or -1 (zlib default, 6). Default -1. */
  level?: number;
  /** zlib memLevel, 1..9. Default 8. */
  memLevel?: number;
  /** Messages below this many bytes should be sent uncompressed (see `shouldCompress`). Default 1024. */
  threshold?: number;
  /** When given, sets the process-wide zlib concurrency (see `setZlibConcurrency`). */
  concurrencyLimit?: number;
}

/** Completion callback of a compression or decompression job. */
export type Callback = (err: Error | null, result?: Buffer) => void;

interface Job {
  readonly kind: 'compress' | 'decompress';
  readonly data: Buffer;
  readonly fin: boolean;
  readonly cb: Callback;
}

/** Thrown to callbacks of jobs that were pending when `dispose()` was called, or made after it. */
export class ExtensionDisposedError extends WebSocketError {
  constructor() {
    super('WS_EXTENSION_DISPOSED', 'permessage-deflate context was disposed');
  }
}

/**
 * One connection's permessage-deflate contexts. Jobs (compress and decompress alike) run one at a
 * time per connection, in call order, each holding a slot of the process-wide zlib limiter, so
 * callbacks come exactly once, asynchronously, in call order.
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

  constructor(params: DeflateParams, side: 'server' | 'client', options: PerMessageDeflateEngineOptions) {
    if (!(options.maxMessageSize > 0)) throw new RangeError('maxMessageSize must be positive');
    this.params = { ...params };
    this.side = side;
    this.threshold = options.threshold ?? 1024;
    this.#maxMessageSize = options.maxMessageSize;
    this.#level = options.level ?? constants.Z_DEFAULT_COMPRESSION;
    this.#memLevel = options.memLevel ?? 8;
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

  compress(data: Buffer, fin: boolean, cb: Callback): void {
    this.#enqueue({ kind: 'compress', data, fin, cb });
  }

  decompress(data: Buffer, fin: boolean, cb: Callback): void {
    this.#enqueue({ kind: 'decompress', data, fin, cb });
  }

  /** Frees both zlib contexts; pending callbacks get `ExtensionDisposedError`. Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#closeDeflate();
    this.#closeInflate();
    if (this.#cancelWait !== null) this.#cancelWait();
    this.#cancelWait = null;
    if (this.#running) {
      this.#running = false;
      zlibLimiter.release();
    }
    const pending = this.#queue.splice(0);
    this.#chunks = [];
    for (const job of pending) process.nextTick(job.cb, new ExtensionDisposedError());
  }

  #enqueue(job: Job): void {
    if (this.#disposed) {
      process.nextTick(job.cb, new ExtensionDisposedError());
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
    if (err !== null) process.nextTick(job.cb, err);
    else process.nextTick(job.cb, null, result);
    this.#next();
  }

  #collect(): Buffer {
    const out = this.#chunks.length === 1 ? (this.#chunks[0] as Buffer) : Buffer.concat(this.#chunks, this.#length);
    this.#chunks = [];
    this.#length = 0;
    return out;
  }

  #runCompress(job: Job): void {
    let deflate = this.#deflate;
    if (deflate === null) {
      deflate = createDeflateRaw({
        level: this.#level,
        memLevel: this.#memLevel,
        // zlib has no 8-bit window for raw deflate (it uses 9). A 9-bit window's largest match
        // distance is 512 - MIN_LOOKAHEAD (262) = 250 bytes, so the output fits a 256-byte window
        // and honours a negotiated 8 (RFC 7692 §7.1.2.1).
        windowBits: Math.max(9, this.#outBits),
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
    }
    const d = deflate;
    if (job.data.length > 0) d.write(job.data);
    d.flush(constants.Z_SYNC_FLUSH, () => {
      if (this.#deflate !== d) return; // closed by an error or dispose
      let out = this.#collect();
      if (job.fin) {
        // RFC 7692 §7.2.1: remove the 0x00 0x00 0xff 0xff tail of the final sync flush. zlib emits
        // nothing for a flush with no new input; an empty final piece then becomes a lone empty
        // stored block header (RFC 7692 §7.2.3.6) so the message still ends on a complete block.
        if (out.length >= 4 && out.subarray(out.length - 4).equals(TAIL)) out = out.subarray(0, out.length - 4);
        else if (out.length === 0) out = EMPTY_MESSAGE;
        // RFC 7692 §7.1.1: without context takeover the next message starts from a fresh context;
        // we release it now rather than reset, so an idle connection holds no deflater.
        if (this.#outReset) this.#closeDeflate();
      }
      this.#finish(job, null, out);
    });
  }

  #runDecompress(job: Job): void {
    let inflate = this.#inflate;
    if (inflate === null) {
      inflate = createInflateRaw({ windowBits: this.#inBits });
      const inf = inflate;
      inf.on('data', (chunk: Buffer) => {
        if (this.#inflate !== inf) return;
        this.#inflatedTotal += chunk.length;
        this.#inflated += chunk.length;
        if (this.#inflated > this.#maxMessageSize) {
          // Stop zlib at once: closing the handle ends processing of the remaining input.
          this.#closeInflate();
          const head = this.#queue[0];
          if (head !== undefined) {
            this.#finish(
              head,
              new MessageTooBigError(`inflated message exceeds ${this.#maxMessageSize} bytes`, this.#maxMessageSize),
            );
          }
          return;
        }
        this.#chunks.push(chunk);
        this.#length += chunk.length;
      });
      inf.on('error', (err: Error) => {
        if (this.#inflate !== inf) return;
        this.#inflate = null;
        this.#inflated = 0;
        const head = this.#queue[0];
        if (head !== undefined && head.kind === 'decompress') {
          this.#finish(head, new ProtocolError(`permessage-deflate: invalid compressed data (${err.message})`, 1007, 'WS_INFLATE_FAILED'));
        }
      });
      this.#inflate = inflate;
    }
    const inf = inflate;
    if (job.data.length > 0) inf.write(job.data);
    // RFC 7692 §7.2.2: append the tail before inflating the end of a message.
    if (job.fin) inf.write(TAIL);
    inf.flush(constants.Z_SYNC_FLUSH, () => {
      if (this.#inflate !== inf) return; // stopped by the size limit, an error or dispose
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
