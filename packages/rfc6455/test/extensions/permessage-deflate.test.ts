import { randomBytes } from 'node:crypto';
import { constants, createDeflateRaw, createInflateRaw, deflateRawSync, inflateRawSync, InflateRaw } from 'node:zlib';
import { MessageTooBigError, ProtocolError } from '../../src/errors.js';
import {
  DEFAULT_SYNC_LIMIT,
  ExtensionDisposedError,
  INLINE_INFLATE_MAX,
  PerMessageDeflate,
  type Callback,
  type DeflateParams,
  setZlibConcurrency,
  zlibLimiter,
} from '../../src/extensions/permessage-deflate.js';
import { DEFAULT_ZLIB_CONCURRENCY, ZlibLimiter } from '../../src/extensions/zlib-limiter.js';
import { inlineCapable, outputSizable, runInline } from '../../src/extensions/zlib-inline.js';
import { WsPerMessageDeflateClass } from './ws-internals.js';

const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);
const BASE: DeflateParams = {
  serverNoContextTakeover: false,
  clientNoContextTakeover: false,
  serverMaxWindowBits: 15,
  clientMaxWindowBits: 15,
};

/**
 * Every behaviour is checked both ways a piece can be worked: inline (on the calling thread, the
 * default for pieces up to syncLimit) and as a thread-pool job (syncLimit 0).
 */
const MODES: Array<[string, number | undefined]> = [
  ['inline (default syncLimit)', undefined],
  ['thread pool (syncLimit 0)', 0],
];
let modeSyncLimit: number | undefined;
/** Results that compress/decompress returned at once (the callback not called). */
let inlineResults = 0;

const engines: PerMessageDeflate[] = [];
function engine(params: Partial<DeflateParams>, side: 'server' | 'client', maxMessageSize = 64 * 1024 * 1024, syncLimit = modeSyncLimit): PerMessageDeflate {
  const e = new PerMessageDeflate({ ...BASE, ...params }, side, { maxMessageSize, syncLimit });
  engines.push(e);
  return e;
}
afterEach(() => {
  for (const e of engines.splice(0)) e.dispose();
});

function run(op: (data: Buffer, fin: boolean, cb: (err: Error | null, result?: Buffer) => void) => Buffer | undefined, data: Buffer, fin: boolean): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let now: Buffer | undefined;
    let called = false;
    try {
      now = op(data, fin, (err, result) => {
        called = true;
        if (now !== undefined) reject(new Error('callback called after an inline result'));
        else if (err === null && result !== undefined) resolve(result);
        else reject(err ?? new Error('no result'));
      });
    } catch (err) {
      reject(err);
      return;
    }
    if (called) reject(new Error('callback called synchronously'));
    else if (now !== undefined) {
      inlineResults++;
      resolve(now);
    }
  });
}
const compress = (e: PerMessageDeflate, data: Buffer, fin = true) => run(e.compress.bind(e), data, fin);
const decompress = (e: PerMessageDeflate, data: Buffer, fin = true) => run(e.decompress.bind(e), data, fin);

/** Text with repeats at distances of 200..300 bytes and beyond, so small windows matter. */
function sample(size: number, seed = 1): Buffer {
  const words = ['alpha', 'beta', 'gamma', 'delta', 'épsilon', 'zêta', '{"id":', '"name":"x"}', '\n'];
  const parts: Buffer[] = [];
  let length = 0;
  let x = seed;
  while (length < size) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const part = Buffer.from((words[x % words.length] ?? '') + String(x % 97));
    parts.push(part);
    length += part.length;
  }
  return Buffer.concat(parts).subarray(0, size);
}

async function roundTrip(sender: PerMessageDeflate, receiver: PerMessageDeflate, msg: Buffer): Promise<Buffer> {
  return decompress(receiver, await compress(sender, msg));
}

/**
 * Runs `fn` while observing (not replacing) the real inflater's output: `seen` gets every chunk an
 * InflateRaw pushes (thread-pool jobs: inline output never passes through its push).
 */
async function watchingZlibPushes<T>(fn: () => Promise<T>, seen: (chunk: Buffer) => void): Promise<T> {
  const proto = InflateRaw.prototype as unknown as { push: (chunk: Buffer | null) => boolean };
  const original = proto.push;
  proto.push = function (this: unknown, chunk: Buffer | null) {
    if (chunk !== null) seen(chunk);
    return original.call(this, chunk);
  };
  try {
    return await fn();
  } finally {
    proto.push = original;
  }
}

/** The bytes zlib pushes during `fn` and the 50 ms after it (so that straggling output shows). */
async function bytesZlibPushed(fn: () => Promise<void>): Promise<number> {
  let produced = 0;
  await watchingZlibPushes(
    async () => {
      await fn();
      await new Promise((resolve) => setTimeout(resolve, 50));
    },
    (chunk) => (produced += chunk.length),
  );
  return produced;
}

describe.each(MODES)('%s', (_mode, limit) => {
  beforeAll(() => {
    modeSyncLimit = limit;
  });
  afterAll(() => {
    modeSyncLimit = undefined;
  });

  test('pieces are worked inline exactly when syncLimit allows', async () => {
    const before = inlineResults;
    const server = engine({}, 'server');
    const client = engine({}, 'client');
    const msg = sample(2000, 1);
    expect(await roundTrip(server, client, msg)).toEqual(msg);
    expect(inlineResults - before).toBe(limit === 0 ? 0 : 2);
  });

  describe('round trips', () => {
    const modes: Array<[string, Partial<DeflateParams>]> = [
      ['context takeover', {}],
      ['server_no_context_takeover', { serverNoContextTakeover: true }],
      ['client_no_context_takeover', { clientNoContextTakeover: true }],
      ['both no_context_takeover', { serverNoContextTakeover: true, clientNoContextTakeover: true }],
    ];
    const windows = [8, 9, 10, 11, 12, 13, 14, 15];

    test.each(modes)('%s: several messages both ways, every window size', async (_label, mode) => {
      for (const bits of windows) {
        const params = { ...mode, serverMaxWindowBits: bits, clientMaxWindowBits: bits };
        const server = engine(params, 'server');
        const client = engine(params, 'client');
        for (let i = 0; i < 4; i++) {
          const text = sample(3000 + i * 500, bits * 10 + i);
          const binary = Buffer.concat([randomBytes(300), text]);
          expect(await roundTrip(server, client, text)).toEqual(text);
          expect(await roundTrip(client, server, binary)).toEqual(binary);
        }
      }
    });

    test('context takeover makes a repeated message smaller; no_context_takeover does not', async () => {
      const msg = sample(4000, 7);
      const keep = engine({}, 'server');
      const first = await compress(keep, msg);
      const second = await compress(keep, msg);
      expect(second.length).toBeLessThan(first.length / 4);
      const reset = engine({ serverNoContextTakeover: true }, 'server');
      const a = await compress(reset, msg);
      const b = await compress(reset, msg);
      expect(b).toEqual(a);
    });

    test('a message compressed in several pieces and decompressed in several frames', async () => {
      const server = engine({}, 'server');
      const client = engine({}, 'client');
      const pieces = [sample(5000, 1), Buffer.alloc(0), sample(1, 2), sample(20000, 3)];
      const frames: Buffer[] = [];
      for (let i = 0; i < pieces.length; i++) frames.push(await compress(server, pieces[i] as Buffer, i === pieces.length - 1));
      // Non-final pieces keep their sync-flush tail; the final one has it removed.
      expect(frames[0]?.subarray(-4)).toEqual(TAIL);
      const out: Buffer[] = [];
      for (let i = 0; i < frames.length; i++) out.push(await decompress(client, frames[i] as Buffer, i === frames.length - 1));
      expect(Buffer.concat(out)).toEqual(Buffer.concat(pieces));
      // And the next message still decodes with the kept context.
      const next = sample(3000, 4);
      expect(await roundTrip(server, client, next)).toEqual(next);
    });

    test('an empty final piece after a non-final one still ends the message on a complete block', async () => {
      const client = engine({}, 'client');
      const server = engine({}, 'server');
      const a = await compress(client, sample(2000, 5), false);
      const b = await compress(client, Buffer.alloc(0), true);
      expect(b).toEqual(Buffer.from([0x00])); // RFC 7692 §7.2.3.6
      expect(Buffer.concat([await decompress(server, a, false), await decompress(server, b, true)])).toEqual(sample(2000, 5));
      const next = sample(100, 6);
      expect(await roundTrip(client, server, next)).toEqual(next);
    });

    test('an empty message compresses to 0x00 and back to empty', async () => {
      const server = engine({}, 'server');
      const client = engine({}, 'client');
      const c = await compress(server, Buffer.alloc(0));
      expect(c.length).toBeLessThanOrEqual(2);
      expect(await decompress(client, c)).toEqual(Buffer.alloc(0));
      expect(await decompress(client, Buffer.from([0x00]))).toEqual(Buffer.alloc(0));
    });

    test('a compressed message split into frames at every byte boundary decodes the same', async () => {
      const server = engine({ serverNoContextTakeover: true }, 'server');
      const msg = sample(600, 9);
      const c = await compress(server, msg);
      for (let cut = 0; cut <= c.length; cut += 7) {
        const client = engine({ serverNoContextTakeover: true }, 'client');
        const parts = [await decompress(client, c.subarray(0, cut), false), await decompress(client, c.subarray(cut), true)];
        expect(Buffer.concat(parts)).toEqual(msg);
      }
    });

    test('RFC 7692 §7.2.3.1 example: "Hello" in one and in two frames', async () => {
      const client = engine({ serverNoContextTakeover: true }, 'client');
      const hello = Buffer.from('f248cdc9c90700', 'hex');
      expect((await decompress(client, hello)).toString()).toBe('Hello');
      expect(Buffer.concat([await decompress(client, hello.subarray(0, 3), false), await decompress(client, hello.subarray(3), true)]).toString()).toBe('Hello');
    });

    test('RFC 7692 §7.2.3.2: context takeover, second "Hello" refers back to the first', async () => {
      const client = engine({}, 'client');
      expect((await decompress(client, Buffer.from('f248cdc9c90700', 'hex'))).toString()).toBe('Hello');
      expect((await decompress(client, Buffer.from('f200110000', 'hex'))).toString()).toBe('Hello');
    });

    test('RFC 7692 §7.2.3.3-§7.2.3.5 examples: a stored block, a BFINAL block and the 0x00 after it (the next message then starts a new stream), two blocks', async () => {
      const client = engine({}, 'client');
      expect((await decompress(client, Buffer.from('000500faff48656c6c6f00', 'hex'))).toString()).toBe('Hello');
      expect((await decompress(client, Buffer.from('f348cdc9c9070000', 'hex'))).toString()).toBe('Hello');
      // The stream ended with BFINAL: the §7.2.3.1 payload, which needs a fresh stream, decodes.
      expect((await decompress(client, Buffer.from('f248cdc9c90700', 'hex'))).toString()).toBe('Hello');
      expect((await decompress(client, Buffer.from('f24805000000ffffcac9c90700', 'hex'))).toString()).toBe('Hello');
    });

    test('a peer message ending with a BFINAL block, then another message', async () => {
      const server = engine({}, 'server');
      const one = sample(1000, 11);
      const two = sample(1000, 12);
      expect(await decompress(server, deflateRawSync(one))).toEqual(one);
      expect(await decompress(server, deflateRawSync(two))).toEqual(two);
    });
  });

  describe('interop at the byte level', () => {
    test.each([8, 9, 12, 15])('our output with window %i inflates with Node raw zlib of that window, tail appended', async (bits) => {
      const client = engine({ clientMaxWindowBits: bits }, 'client');
      const msg = Buffer.concat([sample(10000, bits), randomBytes(250), sample(10000, bits)]);
      const c = await compress(client, msg);
      expect(c.subarray(-4)).not.toEqual(TAIL);
      expect(inflateRawSync(Buffer.concat([c, TAIL]), { windowBits: bits, finishFlush: constants.Z_SYNC_FLUSH })).toEqual(msg);
    });

    test("by default, zlib's own defaults (level 6, memLevel 8): the bytes of Node's raw deflate, tail removed", async () => {
      // 100 kB: long enough that memLevel (the size of zlib's block buffer) changes the output.
      const msg = sample(100_000, 5);
      const expected = deflateRawSync(msg, { finishFlush: constants.Z_SYNC_FLUSH }).subarray(0, -4);
      expect(deflateRawSync(msg, { memLevel: 9, finishFlush: constants.Z_SYNC_FLUSH }).subarray(0, -4)).not.toEqual(expected);
      expect(await compress(engine({}, 'client'), msg)).toEqual(expected);
    });

    test('Node raw zlib sync-flushed output, tail removed, inflates with ours', async () => {
      const server = engine({ clientMaxWindowBits: 10 }, 'server');
      const msg = sample(30000, 3);
      const c = deflateRawSync(msg, { windowBits: 10, finishFlush: constants.Z_SYNC_FLUSH });
      expect(c.subarray(-4)).toEqual(TAIL);
      expect(await decompress(server, c.subarray(0, -4))).toEqual(msg);
    });

    function wsCall(op: 'compress' | 'decompress', pmd: InstanceType<typeof WsPerMessageDeflateClass>, data: Buffer, fin: boolean): Promise<Buffer> {
      return new Promise((resolve, reject) => pmd[op](data, fin, (err, out) => (err === null && out !== undefined ? resolve(out) : reject(err ?? new Error('no result')))));
    }

    test.each<[string, Partial<DeflateParams>, Record<string, number | true>]>([
      ['defaults', {}, {}],
      ['no context takeover, window 10', { serverNoContextTakeover: true, serverMaxWindowBits: 10 }, { server_no_context_takeover: true, server_max_window_bits: 10 }],
    ])('ws decompresses what our server compresses and the reverse (%s)', async (_label, params, wsParams) => {
      const ours = engine(params, 'server');
      const ws = new WsPerMessageDeflateClass({ isServer: false, maxPayload: 0 });
      ws.params = { ...wsParams };
      try {
        for (let i = 0; i < 3; i++) {
          const msg = sample(5000, 20 + i);
          expect(await wsCall('decompress', ws, await compress(ours, msg), true)).toEqual(msg);
          const back = await wsCall('compress', ws, msg, true);
          expect(await decompress(ours, back)).toEqual(msg);
        }
      } finally {
        ws.cleanup();
      }
    });
  });

  describe('limits and safety', () => {
    test('a decompression bomb one byte over the limit fails with MessageTooBigError and stops early', async () => {
      const limit = 1024 * 1024;
      const receiver = engine({}, 'server', limit);
      const exact = deflateRawSync(Buffer.alloc(limit), { finishFlush: constants.Z_SYNC_FLUSH }).subarray(0, -4);
      expect((await decompress(receiver, exact)).length).toBe(limit);

      const bomb = deflateRawSync(Buffer.alloc(limit + 1), { finishFlush: constants.Z_SYNC_FLUSH }).subarray(0, -4);
      await expect(decompress(receiver, bomb)).rejects.toBeInstanceOf(MessageTooBigError);

      // A huge bomb: 200 MiB of zeros in ~200 KiB. Count what zlib produced after the stop.
      const huge = deflateRawSync(Buffer.alloc(200 * 1024 * 1024), { level: 9 });
      const watched = engine({}, 'server', limit);
      const err = await decompress(watched, huge).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MessageTooBigError);
      expect((err as MessageTooBigError).closeCode).toBe(1009);
      expect((err as MessageTooBigError).limit).toBe(limit);
      expect(watched.holdsContexts.inflate).toBe(false);
      // The engine still works for the next message with a fresh context.
      const sender = engine({ serverNoContextTakeover: true }, 'client');
      const msg = sample(1000, 1);
      expect(await decompress(watched, await compress(sender, msg))).toEqual(msg);
    });

    test('the inflated size is counted over all frames of a message and reset between messages', async () => {
      const limit = 10000;
      const receiver = engine({ clientNoContextTakeover: true }, 'server', limit);
      const sender = engine({ clientNoContextTakeover: true }, 'client');
      const a = await compress(sender, Buffer.alloc(6000, 1), false);
      const b = await compress(sender, Buffer.alloc(6000, 2), true);
      expect((await decompress(receiver, a, false)).length).toBe(6000);
      await expect(decompress(receiver, b, true)).rejects.toBeInstanceOf(MessageTooBigError);
      for (let i = 0; i < 3; i++) {
        expect((await roundTrip(sender, receiver, Buffer.alloc(9000, i))).length).toBe(9000);
      }
    });

    test('with context takeover too, the inflated size is counted per message: messages under the limit never add up', async () => {
      const limit = 10000;
      const receiver = engine({}, 'server', limit);
      const sender = engine({}, 'client');
      for (let i = 0; i < 4; i++) {
        expect((await roundTrip(sender, receiver, sample(9000, 40 + i))).length).toBe(9000);
      }
      expect(receiver.holdsContexts.inflate).toBe(true);
    });

    test('zlib stops within a byte of the limit (bytes pushed by InflateRaw counted)', async () => {
      const limit = 256 * 1024;
      // Thread-pool jobs only: inline output never passes through InflateRaw's push.
      const receiver = engine({}, 'server', limit, 0);
      const bomb = deflateRawSync(Buffer.alloc(64 * 1024 * 1024), { level: 9 });
      const produced = await bytesZlibPushed(async () => {
        const err = await decompress(receiver, bomb).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(MessageTooBigError);
      });
      expect(produced).toBeGreaterThan(limit);
      // The job's output buffers end at the limit (Node's own 16 KiB chunks where they cannot be sized).
      expect(produced).toBeLessThanOrEqual(limit + (outputSizable() ? 1 : 16 * 1024));
    });

    test('a later frame of a message also stops within a byte of the limit (its output buffer ends there)', async () => {
      const limit = 256 * 1024;
      // Thread-pool jobs only: inline output never passes through InflateRaw's push.
      const receiver = engine({}, 'server', limit, 0);
      const sender = engine({}, 'client');
      const first = await compress(sender, Buffer.alloc(limit - 100, 1), false);
      const rest = await compress(sender, Buffer.alloc(4 * 1024 * 1024, 2), true);
      expect((await decompress(receiver, first, false)).length).toBe(limit - 100);
      const produced = await bytesZlibPushed(async () => {
        const err = await decompress(receiver, rest, true).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(MessageTooBigError);
      });
      expect(produced).toBeGreaterThan(100);
      expect(produced).toBeLessThanOrEqual(outputSizable() ? 101 : 16 * 1024);
    });

    test('the inflater has the negotiated window: a peer referring back past it fails with 1007', async () => {
      // The peer compresses with a 32 KiB window where 512 bytes were agreed (server_max_window_bits=9).
      const sender = engine({ serverMaxWindowBits: 15 }, 'server');
      const receiver = engine({ serverMaxWindowBits: 9 }, 'client');
      const block = randomBytes(2000);
      expect(await roundTrip(sender, receiver, block)).toEqual(block);
      // The same 2000 bytes again: the sender refers 2000 bytes back, into the previous message.
      const err = await roundTrip(sender, receiver, block).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ProtocolError);
      expect((err as ProtocolError).closeCode).toBe(1007);
    });

    test('corrupt compressed data fails with a 1007 ProtocolError', async () => {
      const receiver = engine({}, 'server');
      const err = await decompress(receiver, Buffer.from([0xff, 0xff, 0xff, 0xff])).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ProtocolError);
      expect((err as ProtocolError).closeCode).toBe(1007);
      expect((err as ProtocolError).code).toBe('WS_INFLATE_FAILED');
    });

    test('no_context_takeover releases contexts after each message; takeover keeps them', async () => {
      const reset = engine({ serverNoContextTakeover: true, clientNoContextTakeover: true }, 'server');
      const peer = engine({ serverNoContextTakeover: true, clientNoContextTakeover: true }, 'client');
      expect(reset.holdsContexts).toEqual({ deflate: false, inflate: false });
      await roundTrip(reset, peer, sample(2000));
      await roundTrip(peer, reset, sample(2000));
      expect(reset.holdsContexts).toEqual({ deflate: false, inflate: false });
      const keep = engine({}, 'server');
      const keepPeer = engine({}, 'client');
      await roundTrip(keep, keepPeer, sample(2000));
      await roundTrip(keepPeer, keep, sample(2000));
      expect(keep.holdsContexts).toEqual({ deflate: true, inflate: true });
      keep.dispose();
      expect(keep.holdsContexts).toEqual({ deflate: false, inflate: false });
    });

    test('thread-pool callbacks come asynchronously, exactly once, in call order across directions', async () => {
      const server = engine({}, 'server', undefined, 0);
      const client = engine({}, 'client');
      const payload = await compress(client, sample(50000, 2));
      const order: string[] = [];
      const done = new Promise<void>((resolve) => {
        server.compress(sample(200000, 1), true, () => order.push('c1'));
        server.decompress(payload, true, () => order.push('d1'));
        server.compress(Buffer.from('x'), true, () => order.push('c2'));
        server.compress(Buffer.alloc(0), false, () => {
          order.push('c3');
          setImmediate(resolve);
        });
      });
      expect(order).toEqual([]);
      await done;
      expect(order).toEqual(['c1', 'd1', 'c2', 'c3']);
    });

    test('dispose fails pending callbacks, is idempotent, and later calls fail', async () => {
      const e = engine({}, 'server', undefined, 0);
      const results: Array<Error | null> = [];
      const all = new Promise<void>((resolve) => {
        let n = 0;
        const cb = (err: Error | null) => {
          results.push(err);
          if (++n === 3) resolve();
        };
        e.compress(sample(100000), true, cb);
        e.decompress(Buffer.from('f248cdc9c90700', 'hex'), true, cb);
        e.compress(sample(10), true, cb);
      });
      e.dispose();
      e.dispose();
      await all;
      expect(results).toHaveLength(3);
      for (const r of results) expect(r).toBeInstanceOf(ExtensionDisposedError);
      await expect(compress(e, Buffer.from('late'))).rejects.toBeInstanceOf(ExtensionDisposedError);
      await expect(decompress(e, Buffer.from([0]))).rejects.toBeInstanceOf(ExtensionDisposedError);
      expect(e.holdsContexts).toEqual({ deflate: false, inflate: false });
      expect(zlibLimiter.active).toBe(0);
      expect(zlibLimiter.pending).toBe(0);
    });

    test('shouldCompress applies the threshold', () => {
      const e = engine({}, 'server');
      expect(e.shouldCompress(1023)).toBe(false);
      expect(e.shouldCompress(1024)).toBe(true);
      const t = new PerMessageDeflate(BASE, 'client', { maxMessageSize: 100, threshold: 0 });
      engines.push(t);
      expect(t.shouldCompress(0)).toBe(true);
    });
  });
});



describe('process-wide zlib concurrency (thread-pool jobs)', () => {
  beforeAll(() => {
    modeSyncLimit = 0;
  });
  afterAll(() => {
    modeSyncLimit = undefined;
  });

  test('ZlibLimiter runs at most `limit` jobs, in order, and can cancel a waiting one', () => {
    const limiter = new ZlibLimiter(2);
    const started: number[] = [];
    limiter.acquire(() => started.push(1));
    limiter.acquire(() => started.push(2));
    limiter.acquire(() => started.push(3));
    const cancel4 = limiter.acquire(() => started.push(4));
    limiter.acquire(() => started.push(5));
    expect(started).toEqual([1, 2]);
    expect(limiter.pending).toBe(3);
    expect(cancel4()).toBe(true);
    limiter.release();
    expect(started).toEqual([1, 2, 3]);
    limiter.release();
    expect(started).toEqual([1, 2, 3, 5]);
    limiter.setLimit(3);
    expect(limiter.active).toBe(2);
    limiter.release();
    limiter.release();
    expect(limiter.active).toBe(0);
    expect(() => limiter.release()).toThrow();
    expect(() => new ZlibLimiter(0)).toThrow(RangeError);
  });

  test('ZlibLimiter: a request made from a starting job waits behind older ones; raising the limit starts waiting ones; a started request cannot be cancelled', () => {
    const limiter = new ZlibLimiter(2);
    const started: string[] = [];
    expect(limiter.acquire(() => started.push('a'))()).toBe(false);
    limiter.acquire(() => started.push('b'));
    limiter.acquire(() => {
      started.push('c');
      // A slot is still free here, but d asked first: e queues behind it (first come first served).
      limiter.acquire(() => started.push('e'));
    });
    const cancelD = limiter.acquire(() => started.push('d'));
    expect(started).toEqual(['a', 'b']);
    limiter.setLimit(4);
    expect(started).toEqual(['a', 'b', 'c', 'd']);
    expect(cancelD()).toBe(false);
    expect(limiter.pending).toBe(1);
    limiter.release();
    expect(started).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(limiter.active).toBe(4);
    for (const bad of [0, -1, 1.5, NaN, Infinity]) expect(() => limiter.setLimit(bad)).toThrow(RangeError);
    expect(limiter.limit).toBe(4);
  });

  test('the process-wide limit defaults to 10 and is set by setZlibConcurrency() and the concurrencyLimit option', () => {
    expect(DEFAULT_ZLIB_CONCURRENCY).toBe(10);
    expect(zlibLimiter.limit).toBe(DEFAULT_ZLIB_CONCURRENCY);
    try {
      setZlibConcurrency(4);
      expect(zlibLimiter.limit).toBe(4);
      new PerMessageDeflate(BASE, 'server', { maxMessageSize: 1024, concurrencyLimit: 7 }).dispose();
      expect(zlibLimiter.limit).toBe(7);
    } finally {
      setZlibConcurrency(DEFAULT_ZLIB_CONCURRENCY);
    }
  });

  test('many engines at once never exceed the global limit and all finish', async () => {
    zlibLimiter.setLimit(3);
    try {
      let peak = 0;
      const jobs: Array<Promise<void>> = [];
      for (let i = 0; i < 30; i++) {
        const s = engine({}, 'server');
        const c = engine({}, 'client');
        const msg = sample(20000, i);
        jobs.push(
          (async () => {
            const z = await compress(s, msg);
            peak = Math.max(peak, zlibLimiter.active);
            expect(await decompress(c, z)).toEqual(msg);
            peak = Math.max(peak, zlibLimiter.active);
          })(),
        );
        peak = Math.max(peak, zlibLimiter.active);
      }
      expect(zlibLimiter.pending).toBeGreaterThan(0);
      await Promise.all(jobs);
      expect(peak).toBeLessThanOrEqual(3);
      expect(zlibLimiter.active).toBe(0);
    } finally {
      zlibLimiter.setLimit(10);
    }
  });
});

describe('inline work and thread-pool jobs together', () => {
  /** Calls op, expecting it to work at once: its result, or what it threw. */
  function now(op: (data: Buffer, fin: boolean, cb: Callback) => Buffer | undefined, data: Buffer, fin = true): Buffer {
    const out = op(data, fin, () => {
      throw new Error('callback called for a piece worked inline');
    });
    if (out === undefined) throw new Error('not worked inline');
    return out;
  }

  /**
   * Compresses `large` then `small` on `e`, expecting neither to work at once (the large piece is
   * over syncLimit; the small one must wait behind it). Resolves with their results in callback order.
   */
  function largeThenSmall(e: PerMessageDeflate, large: Buffer, small: Buffer): Promise<Array<[string, Buffer]>> {
    const results: Array<[string, Buffer]> = [];
    return new Promise((resolve) => {
      expect(e.compress(large, true, (_err, out) => results.push(['large', out!]))).toBeUndefined();
      expect(e.compress(small, true, (_err, out) => (results.push(['small', out!]), resolve(results)))).toBeUndefined();
    });
  }

  test('a frame that inflates past INLINE_INFLATE_MAX continues in the thread pool, and the context carries on', async () => {
    const sender = engine({}, 'client', undefined, 0);
    const receiver = engine({}, 'server');
    const big = Buffer.concat([sample(3000, 1), Buffer.alloc(4 * INLINE_INFLATE_MAX, 7), sample(3000, 2)]);
    const z = await compress(sender, big);
    expect(z.length).toBeLessThan(DEFAULT_SYNC_LIMIT); // small enough to start inline
    const before = inlineResults;
    expect((await decompress(receiver, z)).equals(big)).toBe(true); // (toEqual walks 1 MiB slowly)
    expect(inlineResults).toBe(before); // the result came through the callback
    expect(receiver.inflatedBytes).toBe(big.length);
    // The kept context goes on, inline again: a repeat refers back into the big message.
    const repeat = Buffer.concat([sample(3000, 2), sample(500, 3)]);
    const zr = await compress(sender, repeat);
    expect(now(receiver.decompress.bind(receiver), zr)).toEqual(repeat);
  });

  test('thread-pool jobs produce into an output buffer sized for them: a 1 MiB message inflates in one piece, not 64', async () => {
    // Node 20 and 22 keep a zlib stream's output buffer where outputSizable looks for it.
    expect(outputSizable()).toBe(true);
    const sender = engine({}, 'client', undefined, 0);
    const receiver = engine({}, 'server', undefined, 0);
    // Random letters of a 16-letter alphabet: about 4 bits a byte, so it compresses to about half.
    const message = Buffer.from(randomBytes(1 << 20).map((b) => 97 + (b & 15)));
    const compressed = await compress(sender, message, true);
    expect(compressed.length).toBeGreaterThan(DEFAULT_SYNC_LIMIT);
    const pieces: number[] = [];
    const inflated = await watchingZlibPushes(() => decompress(receiver, compressed, true), (chunk) => pieces.push(chunk.length));
    expect(inflated.equals(message)).toBe(true);
    // (Twice the input is 2 MiB; jobs take at most 1 MiB at a time.)
    expect(pieces.length).toBeLessThanOrEqual(2);
    // And the next message, on the same context, still inflates right.
    const again = Buffer.from(message.toString('latin1').split('').reverse().join(''), 'latin1');
    expect((await decompress(receiver, await compress(sender, again, true), true)).equals(again)).toBe(true);
  });

  test('a job whose output is small for its buffer hands over a copy, not a view that keeps the buffer', async () => {
    const sender = engine({}, 'server', undefined, 0);
    const zeros = Buffer.alloc(300_000);
    const compressed = await compress(sender, zeros, true);
    expect(compressed.length).toBeLessThan(1000);
    expect(compressed.buffer.byteLength).toBeLessThan(16 * 1024);
    expect(inflateRawSync(Buffer.concat([compressed, TAIL]), { finishFlush: constants.Z_SYNC_FLUSH }).equals(zeros)).toBe(true);
  });

  test('a piece waits behind a thread-pool job of its direction; the other direction still works inline', async () => {
    const server = engine({}, 'server');
    const client = engine({}, 'client');
    const large = sample(DEFAULT_SYNC_LIMIT + 1000, 4); // over syncLimit: a thread-pool job
    const small = sample(800, 5);
    // Same direction: the small piece is queued behind the large one, not inline.
    const done = largeThenSmall(server, large, small);
    // The other direction is free: inline at once.
    const fromClient = now(client.compress.bind(client), small);
    expect(now(server.decompress.bind(server), fromClient)).toEqual(small);
    const results = await done;
    expect(results.map(([which]) => which)).toEqual(['large', 'small']);
    // Both inflate in order with the kept context; the next small piece is inline again.
    expect(await decompress(client, results[0]![1])).toEqual(large);
    expect(await decompress(client, results[1]![1])).toEqual(small);
    const again = now(server.compress.bind(server), small);
    expect(now(client.decompress.bind(client), again)).toEqual(small);
  });

  test('inline failures are thrown at once: bad data 1007, too big 1009; the engine then starts afresh', () => {
    const receiver = engine({}, 'server', 100 * 1024);
    let thrown: unknown;
    try {
      now(receiver.decompress.bind(receiver), Buffer.from([0xff, 0xff, 0xff, 0xff]));
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ProtocolError);
    expect((thrown as ProtocolError).closeCode).toBe(1007);
    expect(receiver.holdsContexts.inflate).toBe(false);

    const bomb = deflateRawSync(Buffer.alloc(10 * 1024 * 1024), { level: 9 });
    thrown = undefined;
    try {
      now(receiver.decompress.bind(receiver), bomb);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(MessageTooBigError);
    // Stopped one byte past the limit: zlib is given no more room than that.
    expect(receiver.inflatedBytes).toBe(100 * 1024 + 1);
    expect(receiver.holdsContexts.inflate).toBe(false);

    const sender = engine({}, 'client');
    const msg = sample(5000, 6);
    expect(now(receiver.decompress.bind(receiver), now(sender.compress.bind(sender), msg))).toEqual(msg);
  });

  test('inflateSlice gives no more than its budget per call, output that the appended tail itself produces included', () => {
    // A stored block of 15 bytes whose last 4 are the tail's 0x00 0x00 0xff 0xff, sent without
    // them (RFC 7692 §7.2.2: the receiver appends them): the tail's 4 bytes become output.
    const text = Buffer.from('hello world');
    const payload = Buffer.concat([Buffer.from([0x00, 15, 0, 15 ^ 0xff, 0xff]), text]);
    const receiver = engine({}, 'server');
    const first = receiver.inflateSlice(payload, true, 13)!;
    expect(first.data.length).toBe(13);
    expect(first.done).toBe(false);
    const second = receiver.inflateSlice(undefined, true, 13)!;
    expect(second.done).toBe(true);
    expect(Buffer.concat([first.data, second.data])).toEqual(Buffer.concat([text, TAIL]));
    expect(receiver.inflatedBytes).toBe(15);
  });

  test('inlineCapable accepts a live zlib stream and refuses a closed one', () => {
    const d = createDeflateRaw();
    expect(inlineCapable(d)).toBe(true);
    d.close();
    expect(inlineCapable(d)).toBe(false);
    const out: Buffer[] = [];
    const live = createInflateRaw();
    const run = runInline(live, Buffer.from('f248cdc9c90700', 'hex'), constants.Z_SYNC_FLUSH, out, Infinity);
    expect(run).toEqual({ consumed: 7, produced: 5, done: true });
    expect(Buffer.concat(out).toString()).toBe('Hello');
    live.close();
  });

  test('inlineCapable refuses a stream with a thread-pool write in progress', async () => {
    const d = createDeflateRaw();
    const flushed = new Promise<void>((resolve) => {
      d.write(Buffer.alloc(100_000, 1));
      d.flush(constants.Z_SYNC_FLUSH, () => resolve());
    });
    d.resume();
    expect(inlineCapable(d)).toBe(false);
    await flushed;
    expect(inlineCapable(d)).toBe(true);
    d.close();
  });

  test('a piece waits behind a job of its direction that is still queued for a limiter slot', async () => {
    zlibLimiter.setLimit(1);
    try {
      // Another connection's thread-pool job holds the only slot.
      const other = engine({}, 'server', undefined, 0);
      const busy = new Promise<void>((resolve) => other.compress(sample(200_000, 1), true, () => resolve()));
      const server = engine({}, 'server');
      const client = engine({}, 'client');
      const large = sample(DEFAULT_SYNC_LIMIT + 500, 2);
      const small = sample(300, 3);
      // The context is idle (the large job has not started), but the large piece comes first.
      const both = largeThenSmall(server, large, small);
      // The same for inflating: a large compressed frame queued, then a small one.
      const zLarge = deflateRawSync(randomBytes(DEFAULT_SYNC_LIMIT + 500), { finishFlush: constants.Z_SYNC_FLUSH }).subarray(0, -4);
      const zSmall = deflateRawSync(small, { finishFlush: constants.Z_SYNC_FLUSH }).subarray(0, -4);
      const reset = engine({ clientNoContextTakeover: true }, 'server');
      const inflated: string[] = [];
      const both2 = new Promise<void>((resolve) => {
        expect(reset.decompress(zLarge, true, () => inflated.push('large'))).toBeUndefined();
        expect(reset.decompress(zSmall, true, (_e, r) => (inflated.push(r!.equals(small) ? 'small' : 'wrong'), resolve()))).toBeUndefined();
      });
      const [, results] = await Promise.all([busy, both, both2]);
      expect(results.map(([which]) => which)).toEqual(['large', 'small']);
      expect(inflated).toEqual(['large', 'small']);
      expect(await decompress(client, results[0]![1])).toEqual(large);
      expect(await decompress(client, results[1]![1])).toEqual(small);
    } finally {
      zlibLimiter.setLimit(10);
    }
  });
});

describe.each(MODES)('standalone compression (for prepared messages), %s', (_mode, limit) => {
  beforeAll(() => {
    modeSyncLimit = limit;
  });
  afterAll(() => {
    modeSyncLimit = undefined;
  });

  const standalone = (e: PerMessageDeflate, data: Buffer) => run((d, _fin, cb) => e.compressStandalone(d, cb), data, true);

  test('the same bytes as compress() of a whole message from a fresh context, for every size and window', async () => {
    for (const bits of [9, 10, 15]) {
      for (const size of [0, 1, 200, 5000, 70_000]) {
        const msg = sample(size, size + bits);
        const own = engine({ serverNoContextTakeover: true, serverMaxWindowBits: bits }, 'server');
        const other = engine({ serverNoContextTakeover: true, serverMaxWindowBits: bits }, 'server');
        // The engine's own output after a message already went through it (fresh context each time).
        await compress(own, sample(3000, 99));
        const expected = await compress(own, msg);
        const got = await standalone(other, msg);
        expect(got.equals(expected)).toBe(true);
        // And it inflates back to the message for a receiver with that window.
        const receiver = engine({ serverNoContextTakeover: true, serverMaxWindowBits: bits }, 'client');
        expect((await decompress(receiver, got)).equals(msg)).toBe(true);
        // The connection's own context is not touched.
        expect(other.holdsContexts.deflate).toBe(false);
      }
    }
  });

  test('a key only without context takeover in our direction; it names window, level and memLevel', () => {
    expect(engine({}, 'server').standaloneKey).toBeUndefined();
    expect(engine({ clientNoContextTakeover: true }, 'server').standaloneKey).toBeUndefined();
    expect(engine({ clientNoContextTakeover: true }, 'client').standaloneKey).toBeDefined();
    const a = engine({ serverNoContextTakeover: true }, 'server').standaloneKey;
    expect(a).toBeDefined();
    expect(engine({ serverNoContextTakeover: true }, 'server').standaloneKey).toBe(a);
    expect(engine({ serverNoContextTakeover: true, serverMaxWindowBits: 10 }, 'server').standaloneKey).not.toBe(a);
    expect(engine({ serverNoContextTakeover: true, clientMaxWindowBits: 10 }, 'server').standaloneKey).toBe(a);
    // 8 is sent with a 9-bit window (zlib has no 8 for raw deflate): the same output as 9.
    expect(engine({ serverNoContextTakeover: true, serverMaxWindowBits: 8 }, 'server').standaloneKey).toBe(
      engine({ serverNoContextTakeover: true, serverMaxWindowBits: 9 }, 'server').standaloneKey,
    );
    const leveled = new PerMessageDeflate({ ...BASE, serverNoContextTakeover: true }, 'server', { maxMessageSize: 1 << 20, level: 1 });
    engines.push(leveled);
    expect(leveled.standaloneKey).not.toBe(a);
  });
});
