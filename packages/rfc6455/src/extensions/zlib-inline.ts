/**
 * Running a zlib stream's context synchronously, on the calling thread, without closing it.
 *
 * Node's public zlib API offers either streams, whose every job goes through the libuv thread
 * pool (a hand-off and a wake-up, several tens of µs, whatever the size), or one-shot `*Sync`
 * functions, which build a fresh context per call and so cannot keep a compression window from one
 * message to the next (context takeover, RFC 7692 §7.1.1). This module drives the context of an
 * existing stream the way Node's own `zlib.*Sync` functions do (the binding's `writeSync` with the
 * stream's `_writeState`), so one context can take jobs both inline and through the thread pool.
 *
 * Those two members are not documented. `inlineCapable` checks that they are there and have the
 * expected shape; when they are not (another Node, another runtime) callers use the stream as
 * usual. Callers must never run a context inline while a thread-pool job on it is unfinished:
 * the binding aborts the process on a second write in progress.
 */
import { types } from 'node:util';
import { constants as zlibConstants, createInflateRaw, deflateRawSync, type DeflateRaw, type InflateRaw } from 'node:zlib';

interface ZlibBinding {
  writeSync(flush: number, input: Buffer, inOff: number, inLen: number, out: Buffer, outOff: number, outLen: number): void;
}

interface StreamInternals {
  _handle?: ZlibBinding | null;
  _writeState?: Uint32Array;
  _writableState?: { writing?: boolean };
}

/**
 * True when `stream`'s context can be run inline: Node's binding is there and open, and the stream
 * has no write of its own buffered or in progress (a second check of the callers' own rule).
 */
export function inlineCapable(stream: DeflateRaw | InflateRaw): boolean {
  const s = stream as unknown as StreamInternals;
  const handle = s._handle;
  return (
    !stream.destroyed &&
    stream.writableLength === 0 &&
    s._writableState?.writing !== true &&
    handle !== null &&
    handle !== undefined &&
    typeof handle.writeSync === 'function' &&
    // (Not instanceof: the array comes from Node's own realm, which may not be the caller's.)
    types.isUint32Array(s._writeState) &&
    s._writeState.length >= 2
  );
}

/** Output is produced into this buffer and copied out at its exact length. */
const SCRATCH = Buffer.allocUnsafe(32 * 1024);

/** Result of {@link runInline}. */
export interface InlineRun {
  /** Bytes of input zlib took. */
  consumed: number;
  /** Bytes of output appended to `out`. */
  produced: number;
  /**
   * zlib finished with this input: all of it was taken and the flush completed, or the stream
   * ended (a BFINAL block) with input left over (`consumed < input.length`).
   */
  done: boolean;
}

/**
 * Feeds `input` to the stream's context with `flush`, appending the output to `out` (copies of
 * exact length, never views of a shared buffer). Stops early, with `done` false, once `budget`
 * output bytes were produced (never more) and zlib still has output or input pending; feeding the rest of the
 * input later (inline or through the stream) continues where it stopped. Throws zlib's error
 * (the stream is then destroyed, as Node does on an error).
 *
 * Only for a context that {@link inlineCapable} accepted and on which no thread-pool job is
 * unfinished.
 */
export function runInline(stream: DeflateRaw | InflateRaw, input: Buffer, flush: number, out: Buffer[], budget: number): InlineRun {
  const s = stream as unknown as Required<StreamInternals>;
  const handle = s._handle!;
  const state = s._writeState;
  let inOff = 0;
  let inLen = input.length;
  let produced = 0;
  for (;;) {
    // No more output than the budget allows (at least a byte, so that zlib always has room).
    const outLen = Math.max(1, Math.min(SCRATCH.length, budget - produced));
    handle.writeSync(flush, input, inOff, inLen, SCRATCH, 0, outLen);
    // On an error the binding calls the stream's onerror synchronously, which destroys it; the
    // write state is not updated then.
    if (stream.destroyed) throw stream.errored ?? new Error('zlib failed');
    const availOut = state[0]!;
    const availIn = state[1]!;
    const have = outLen - availOut;
    if (have > 0) {
      const piece = Buffer.allocUnsafe(have);
      SCRATCH.copy(piece, 0, 0, have);
      out.push(piece);
      produced += have;
    }
    inOff += inLen - availIn;
    inLen = availIn;
    // Room left in the output: zlib did everything it could with this input.
    if (availOut !== 0) return { consumed: inOff, produced, done: true };
    if (produced >= budget) return { consumed: inOff, produced, done: false };
  }
}

/** The output-buffer fields of Node's zlib streams, used by both of its write paths. */
interface OutputInternals {
  _outBuffer?: unknown;
  _outOffset?: unknown;
  _chunkSize?: unknown;
  _processChunk?: (chunk: Buffer, flushFlag: number) => unknown;
}

/** zlib's smallest output chunk (`zlib.constants.Z_MIN_CHUNK`). */
export const MIN_CHUNK = 64;

/** undefined: not probed yet. */
let sizable: boolean | undefined;

/**
 * True when a zlib stream's output buffer can be chosen per job with {@link sizeOutput}: Node's
 * streams produce into `_outBuffer` from `_outOffset`, `_chunkSize` bytes at a time (a stream
 * gets one such buffer when it is made, and a new one each time it fills). Probed once: an
 * inflater made with the smallest chunk is given a larger buffer, and a synchronous write through
 * the same code as the thread-pool path must produce into it. Anywhere else (another Node,
 * another runtime) streams keep Node's default chunk.
 */
export function outputSizable(): boolean {
  if (sizable !== undefined) return sizable;
  sizable = false;
  try {
    const text = Buffer.from('output into the buffer given, '.repeat(40));
    const compressed = deflateRawSync(text, { finishFlush: zlibConstants.Z_SYNC_FLUSH });
    const probe = createInflateRaw({ chunkSize: MIN_CHUNK });
    const s = probe as unknown as OutputInternals;
    if (Buffer.isBuffer(s._outBuffer) && s._outOffset === 0 && s._chunkSize === MIN_CHUNK && typeof s._processChunk === 'function') {
      sizeOutput(probe, 4096);
      const given = s._outBuffer as Buffer;
      const out = s._processChunk.call(probe, compressed, zlibConstants.Z_SYNC_FLUSH);
      sizable = Buffer.isBuffer(out) && out.buffer === given.buffer && out.equals(text);
    }
    probe.close();
  } catch {
    sizable = false;
  }
  return sizable;
}

/**
 * Gives the stream's next write (a thread-pool job) an output buffer of `size` bytes: a job that
 * fits in it takes one trip to the thread pool and comes out in one piece, where Node's default
 * 16 KiB chunk takes a trip (and a piece) per 16 KiB. Only where {@link outputSizable}.
 */
export function sizeOutput(stream: DeflateRaw | InflateRaw, size: number): void {
  const s = stream as unknown as OutputInternals;
  s._chunkSize = size;
  s._outBuffer = Buffer.allocUnsafe(size);
  s._outOffset = 0;
}

/**
 * Makes the stream's next output buffers (allocated as each one fills) no larger than `size`
 * bytes; the one being filled stays as it is. For a 'data' listener that needs zlib to stop near a
 * limit. Only where {@link outputSizable}.
 */
export function capOutput(stream: DeflateRaw | InflateRaw, size: number): void {
  const s = stream as unknown as OutputInternals;
  if ((s._chunkSize as number) > size) s._chunkSize = Math.max(MIN_CHUNK, size);
}
