/**
 * Fuzzing the permessage-deflate path (RFC 7692): compress → decompress round trips for random
 * messages and fragmentations, and random or corrupted bytes into the inflater, which must answer
 * (an error or bytes within the size cap) and never throw or hang.
 */
import fc from 'fast-check';
import { PerMessageDeflate, type DeflateParams } from 'rfc6455';
import { runs } from './runs.js';

const params: DeflateParams = { serverNoContextTakeover: false, clientNoContextTakeover: false, serverMaxWindowBits: 15, clientMaxWindowBits: 15 };

/** Runs a compress/decompress call, whether it works at once (result or throw) or through the callback. */
function call(fn: (cb: (err: Error | null, result?: Buffer) => void) => unknown): Promise<{ err: Error | null; result: Buffer | undefined }> {
  return new Promise((resolve) => {
    let now: unknown;
    try {
      now = fn((err, result) => resolve({ err, result }));
    } catch (err) {
      resolve({ err: err as Error, result: undefined });
      return;
    }
    if (Buffer.isBuffer(now)) resolve({ err: null, result: now });
  });
}

// Both ways a piece can be worked: inline (default syncLimit) and as thread-pool jobs (syncLimit 0).
describe.each([
  ['inline', undefined],
  ['thread pool', 0],
])('permessage-deflate under random input (%s)', (_mode, syncLimit) => {
  test('round trip: random messages in random fragments come back identical, context kept across messages', async () => {
    const client = new PerMessageDeflate(params, 'client', { maxMessageSize: 1 << 20, syncLimit });
    const server = new PerMessageDeflate(params, 'server', { maxMessageSize: 1 << 20, syncLimit });
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.oneof(fc.uint8Array({ maxLength: 3000 }), fc.string({ maxLength: 2000 }).map((s) => new Uint8Array(Buffer.from(s.repeat(3))))), { minLength: 1, maxLength: 3 }),
          async (pieces) => {
            const compressed: Buffer[] = [];
            for (let i = 0; i < pieces.length; i++) {
              const r = await call((cb) => client.compress(Buffer.from(pieces[i]!), i === pieces.length - 1, cb));
              if (r.err) return false;
              compressed.push(r.result ?? Buffer.alloc(0));
            }
            const out: Buffer[] = [];
            for (let i = 0; i < compressed.length; i++) {
              const r = await call((cb) => server.decompress(compressed[i]!, i === compressed.length - 1, cb));
              if (r.err) return false;
              out.push(r.result ?? Buffer.alloc(0));
            }
            return Buffer.concat(out).equals(Buffer.concat(pieces.map((p) => Buffer.from(p))));
          },
        ),
        { numRuns: runs(100) },
      );
    } finally {
      client.dispose();
      server.dispose();
    }
  });

  test('random or corrupted compressed bytes: an error or output within maxMessageSize, never a throw', async () => {
    const sender = new PerMessageDeflate(params, 'client', { maxMessageSize: 1 << 20, syncLimit });
    const valid = (await call((cb) => sender.compress(Buffer.from('hello hello hello '.repeat(200)), true, cb))).result!;
    sender.dispose();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a)),
          fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })).map(([at, v]) => {
            const b = Buffer.from(valid);
            b[at % b.length] = v;
            return b;
          }),
        ),
        async (input) => {
          const inflater = new PerMessageDeflate(params, 'server', { maxMessageSize: 1024, syncLimit });
          try {
            const r = await call((cb) => inflater.decompress(input, true, cb));
            return r.err !== null || (r.result?.length ?? 0) <= 1024;
          } finally {
            inflater.dispose();
          }
        },
      ),
      { numRuns: runs(200) },
    );
  });

  test('a decompression bomb (10 MiB of zeros in ~10 KiB) is stopped at maxMessageSize', async () => {
    const sender = new PerMessageDeflate(params, 'client', { maxMessageSize: 1 << 30, syncLimit });
    const bomb = (await call((cb) => sender.compress(Buffer.alloc(10 * 1024 * 1024), true, cb))).result!;
    sender.dispose();
    expect(bomb.length).toBeLessThan(64 * 1024);
    const inflater = new PerMessageDeflate(params, 'server', { maxMessageSize: 64 * 1024, syncLimit });
    const r = await call((cb) => inflater.decompress(bomb, true, cb));
    inflater.dispose();
    expect(r.err).not.toBeNull();
    expect((r.err as { closeCode?: number }).closeCode).toBe(1009);
  });
});
