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
import type { DeflateRaw, InflateRaw } from 'node:zlib';

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
 * output bytes were produced and zlib still has output or input pending; feeding the rest of the
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
    handle.writeSync(flush, input, inOff, inLen, SCRATCH, 0, SCRATCH.length);
    // On an error the binding calls the stream's onerror synchronously, which destroys it; the
    // write state is not updated then.
    if (stream.destroyed) throw stream.errored ?? new Error('zlib failed');
    const availOut = state[0]!;
    const availIn = state[1]!;
    const have = SCRATCH.length - availOut;
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
