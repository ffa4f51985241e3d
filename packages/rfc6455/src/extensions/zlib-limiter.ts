/**
 * A process-wide limit on concurrent zlib jobs. zlib work runs on the libuv threadpool shared by
 * the whole process; unbounded parallel jobs fragment memory badly (nodejs/node#8871, ws#1202).
 */

/** Grants up to `limit` concurrent slots, first come first served; waiting requests can be cancelled. */
export class ZlibLimiter {
  #limit: number;
  #active = 0;
  readonly #waiting = new Set<() => void>();

  constructor(limit: number) {
    this.#limit = checkLimit(limit);
  }

  get limit(): number {
    return this.#limit;
  }
  /** Slots in use. */
  get active(): number {
    return this.#active;
  }
  /** Requests waiting for a slot. */
  get pending(): number {
    return this.#waiting.size;
  }

  /** Changes the limit; running jobs finish, waiting ones start as slots allow. */
  setLimit(limit: number): void {
    this.#limit = checkLimit(limit);
    this.#drain();
  }

  /**
   * Calls `start` when a slot is free (synchronously when one is free now). The holder must call
   * `release()` exactly once when done. Returns a function that cancels a request still waiting
   * (it returns false when `start` was already called).
   */
  acquire(start: () => void): () => boolean {
    if (this.#active < this.#limit && this.#waiting.size === 0) {
      this.#active++;
      start();
      return () => false;
    }
    this.#waiting.add(start);
    return () => this.#waiting.delete(start);
  }

  release(): void {
    if (this.#active === 0) throw new Error('ZlibLimiter.release() without a slot');
    this.#active--;
    this.#drain();
  }

  #drain(): void {
    while (this.#active < this.#limit) {
      const next = this.#waiting.values().next();
      if (next.done === true) return;
      this.#waiting.delete(next.value);
      this.#active++;
      next.value();
    }
  }
}

function checkLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`zlib concurrency limit must be a positive integer, got ${limit}`);
  return limit;
}

/** Default number of concurrent zlib jobs in the process. */
export const DEFAULT_ZLIB_CONCURRENCY = 10;

/** The limiter shared by every permessage-deflate context of the process. */
export const zlibLimiter = new ZlibLimiter(DEFAULT_ZLIB_CONCURRENCY);

/** Sets the process-wide zlib concurrency (the last value set wins). */
export function setZlibConcurrency(limit: number): void {
  zlibLimiter.setLimit(limit);
}
