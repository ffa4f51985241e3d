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
