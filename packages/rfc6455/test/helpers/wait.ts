/** Waiting in tests over real sockets: a pause, and polling for a condition with a deadline. */

export const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves once `condition()` holds (polled every `pollMs`); fails naming `what` after `maxMs`. */
export async function until(condition: () => boolean, what: string, maxMs = 20_000, pollMs = 2): Promise<void> {
  const end = Date.now() + maxMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await delay(pollMs);
  }
}

/**
 * Resolves with `read()` once it has stayed the same for `quietMs` (a sender that has stalled:
 * its kernel buffers are full and its sends wait), or after `maxMs` whatever it is then.
 */
export async function stalled(read: () => number, quietMs = 200, maxMs = 20_000): Promise<number> {
  const end = Date.now() + maxMs;
  let last = read();
  for (;;) {
    await delay(quietMs);
    const now = read();
    if (now === last || Date.now() > end) return now;
    last = now;
  }
}
