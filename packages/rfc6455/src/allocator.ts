/**
 * `tuneAllocator()`: an opt-in, process-wide tuning of glibc's malloc for servers that move large
 * messages (16 KiB and up).
 *
 * Why: every socket read in Node lands in a freshly malloc'd buffer, and every large message needs
 * a fresh buffer of its own. V8 frees those buffers in batches when it collects garbage, and glibc
 * then gives the top of its heap back to the kernel as soon as more than 128 KiB is free there
 * (its default trim threshold). The next allocations take the memory back page by page, each page
 * a page fault with the kernel zero-filling it. On virtual machines a page fault is expensive:
 * measured here (bench/README.md), an echo server of 1 MiB messages spends most of its time in
 * them, and the figure swings by 4-10x from one process to the next with the timing of the GCs.
 *
 * What: glibc raises its trim threshold to twice the size of the largest mmap'd block freed (up to
 * 32 MiB) and serves blocks below that size from its heap. `tuneAllocator()` makes it see one such
 * free: it has OpenSSL allocate and release one 16 MiB block synchronously (a scrypt derivation
 * with N = 2^14, r = 8, whose working memory is one malloc of 16 MiB; the result is discarded).
 * No JavaScript garbage is left behind. From then on up to 32 MiB of free heap is kept for reuse
 * instead of being returned, and allocations up to 16 MiB come from it.
 *
 * Cost: the process may keep up to 32 MiB more resident after a burst (per malloc arena), and the
 * call itself takes one scrypt run over 16 MiB (tens of milliseconds; about 0.09 s on a VM where
 * page faults are slow). It changes nothing on other C libraries (musl, macOS, Windows): it
 * returns `applied: false` there.
 * The same effect without code, in the environment of the process:
 * `GLIBC_TUNABLES=glibc.malloc.trim_threshold=33554432:glibc.malloc.mmap_threshold=16777216`
 * (both: setting one fixes the other at its default).
 */
import { scrypt, scryptSync } from 'node:crypto';

/** What {@link tuneAllocator} did. */
export interface AllocatorTuning {
  /** True when the tuning was applied by this call (false when skipped or already applied). */
  applied: boolean;
  /** Why it was skipped, when it was. */
  reason?: string;
}

/** One tuning per process, even with several copies of the library loaded. */
const TUNED = Symbol.for('rfc6455.tuneAllocator');
const processWide = globalThis as { [TUNED]?: boolean };

let glibc: string | undefined | null = null;

/** glibc's version, or undefined on another C library (the report is built once: it is slow). */
function glibcVersion(): string | undefined {
  if (glibc === null) glibc = readGlibcVersion();
  return glibc;
}

function readGlibcVersion(): string | undefined {
  try {
    const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
    return report?.header?.glibcVersionRuntime;
  } catch {
    return undefined;
  }
}

/**
 * Raises glibc malloc's trim and mmap thresholds for this process (see the module comment): fewer
 * page faults for servers that receive or send messages of 16 KiB and more. Opt-in, once per
 * process; `serve()` does the same in the background at its first bulk traffic (a read or
 * message of 16 KiB or more). Returns what it did.
 */
export function tuneAllocator(): AllocatorTuning {
  const skipped = cannotTune();
  if (skipped !== undefined) return skipped;
  try {
    // 128 * r * N = 16 MiB of scrypt working memory, malloc'd and freed inside this call (above
    // glibc's mmap threshold, so mmap'd: its free is what raises the thresholds).
    scryptSync('', '', 1, SCRYPT_PARAMS);
  } catch (error) {
    return { applied: false, reason: `scrypt unavailable: ${(error as Error).message}` };
  }
  processWide[TUNED] = true;
  return { applied: true };
}

const SCRYPT_PARAMS = { N: 16384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };

/** Why tuning does not apply here (already done, not glibc), or undefined when it does. */
function cannotTune(): AllocatorTuning | undefined {
  if (processWide[TUNED]) return { applied: false, reason: 'already applied in this process' };
  if (process.platform !== 'linux') return { applied: false, reason: `not Linux (${process.platform})` };
  if (glibcVersion() === undefined) return { applied: false, reason: 'not glibc' };
  return undefined;
}

/**
 * Messages or reads of this many bytes are bulk traffic: from here on the allocator tuning pays
 * (measured: 16 KiB echo about +25 %, 1 MiB 5x and more; below, no difference).
 */
export const BULK_BYTES = 16384;

/**
 * serve()'s tuning, deferred to the first bulk traffic: `armed` while serve() asked for it and it
 * has not been done. A server that only ever holds idle connections and small messages never pays
 * its memory cost (measured: +0.45 KiB resident per idle connection at 10,000 connections when
 * tuned before they arrive). Connections test `armed` (one load) where bytes come and go.
 */
export const deferredTuning = { armed: false };

/** Notes a message or read of `bytes` bytes: the first of BULK_BYTES or more applies the deferred tuning. */
export function noteTraffic(bytes: number): void {
  if (deferredTuning.armed && bytes >= BULK_BYTES) void bulkTrafficSeen();
}

/** serve({ tuneAllocator }) (the default): tune at the first bulk traffic, in the background. */
export function armAllocatorTuning(): void {
  if (cannotTune() === undefined) deferredTuning.armed = true;
}

/**
 * Bulk traffic was seen: disarms, and runs the tuning on libuv's thread pool (asynchronous scrypt:
 * the event loop is not blocked for its tens of milliseconds; glibc's thresholds are process-wide,
 * whichever thread frees the block). Resolves with what was done, for tests.
 */
export function bulkTrafficSeen(): Promise<AllocatorTuning> {
  deferredTuning.armed = false;
  const skipped = cannotTune();
  if (skipped !== undefined) return Promise.resolve(skipped);
  // Marked at once: a second bulk connection or an explicit tuneAllocator() meanwhile does not run it again.
  processWide[TUNED] = true;
  return new Promise((resolve) => {
    scrypt('', '', 1, SCRYPT_PARAMS, (error) => {
      if (error) processWide[TUNED] = false;
      resolve(error ? { applied: false, reason: `scrypt unavailable: ${error.message}` } : { applied: true });
    });
  });
}
