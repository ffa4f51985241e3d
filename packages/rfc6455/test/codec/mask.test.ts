/**
 * Masking (RFC 6455 §5.3) against a byte-by-byte reference, over every alignment of source and
 * destination and every starting mask offset, so both the word path and the byte paths are hit.
 */
import fc from 'fast-check';
import { mask, randomMaskKey, setMaskEngine, sharedReadBuffer, unmaskInPlace } from '../../src/codec/mask.js';

function reference(src: Uint8Array, key: Uint8Array, maskOffset: number): Buffer {
  const out = Buffer.alloc(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! ^ key[(maskOffset + i) & 3]!;
  return out;
}

const KEY = Uint8Array.of(0xa1, 0x02, 0xf3, 0x44);

describe('mask', () => {
  test('matches the reference for every src/dst alignment and mask offset (word path included)', () => {
    const backing = new Uint8Array(300);
    for (let i = 0; i < backing.length; i++) backing[i] = (i * 13 + 5) & 0xff;
    for (const length of [0, 1, 3, 4, 31, 32, 33, 64, 100, 131]) {
      for (let srcOff = 0; srcOff < 4; srcOff++) {
        for (let dstOff = 0; dstOff < 4; dstOff++) {
          for (let maskOffset = 0; maskOffset < 4; maskOffset++) {
            const src = new Uint8Array(backing.buffer, srcOff, length);
            const before = Buffer.from(src);
            const dstBacking = new Uint8Array(length + 8);
            mask(src, KEY, dstBacking, dstOff, maskOffset);
            expect(Buffer.from(dstBacking.subarray(dstOff, dstOff + length))).toEqual(reference(before, KEY, maskOffset));
            // The source is never touched when it is not the destination.
            expect(Buffer.from(src).equals(before)).toBe(true);
            // Nothing written outside [dstOff, dstOff + length).
            expect(dstBacking.subarray(0, dstOff).every((b) => b === 0)).toBe(true);
            expect(dstBacking.subarray(dstOff + length).every((b) => b === 0)).toBe(true);
          }
        }
      }
    }
  });

  test('unmaskInPlace on an unaligned view with a mask offset equals the reference, twice is identity', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 3 }), (data, lead, maskOffset) => {
        const backing = Buffer.alloc(lead + data.length);
        backing.set(data, lead);
        const view = backing.subarray(lead);
        unmaskInPlace(view, KEY, maskOffset);
        expect(Buffer.from(view)).toEqual(reference(data, KEY, maskOffset));
        unmaskInPlace(view, KEY, maskOffset);
        expect(Buffer.from(view)).toEqual(Buffer.from(data));
      }),
      { numRuns: 200 },
    );
  });

  test('masking a payload in pieces with running offsets equals masking it whole', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.array(fc.nat(300), { maxLength: 6 }), (data, rawCuts) => {
        const cuts = [...new Set(rawCuts.map((c) => c % data.length))].sort((a, b) => a - b);
        const out = Buffer.alloc(data.length);
        let at = 0;
        for (const cut of [...cuts, data.length]) {
          if (cut <= at) continue;
          mask(data.subarray(at, cut), KEY, out, at, at & 3);
          at = cut;
        }
        expect(out).toEqual(reference(data, KEY, 0));
      }),
      { numRuns: 200 },
    );
  });

  test('randomMaskKey returns 4 bytes that differ from call to call', () => {
    const keys = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      const key = randomMaskKey();
      expect(key.length).toBe(4);
      keys.add(key.toString('hex'));
    }
    // 3000 draws from 2^32 collide with probability ~0.1%; allow a couple.
    expect(keys.size).toBeGreaterThan(2990);
  });
});

describe.each(['simd', 'js'] as const)('mask with the %s engine', (engine) => {
  let inUse: string;
  beforeAll(() => {
    inUse = setMaskEngine(engine);
  });
  afterAll(() => {
    setMaskEngine('simd');
  });

  test('the engine asked for is the one in use (Node 20 has WebAssembly SIMD)', () => {
    expect(inUse).toBe(engine);
  });

  test('large payloads around the SIMD threshold and block size match the reference', () => {
    for (const length of [511, 512, 513, 528, 560, 575, 576, 1000, 4099, 65535, 65536, 65537, 65536 * 2 + 21, 300_001]) {
      const backing = new Uint8Array(length + 16);
      for (let i = 0; i < backing.length; i++) backing[i] = (i * 31 + 7) & 0xff;
      for (const [srcOff, dstOff, maskOffset] of [
        [0, 0, 0],
        [1, 3, 2],
        [3, 0, 1],
        [2, 2, 3],
      ] as const) {
        const src = new Uint8Array(backing.buffer, srcOff, length);
        const before = Buffer.from(src);
        const dstBacking = new Uint8Array(length + 8);
        mask(src, KEY, dstBacking, dstOff, maskOffset);
        expect(Buffer.from(dstBacking.subarray(dstOff, dstOff + length)).equals(reference(before, KEY, maskOffset))).toBe(true);
        expect(Buffer.from(src).equals(before)).toBe(true);
        expect(dstBacking.subarray(0, dstOff).every((b) => b === 0)).toBe(true);
        expect(dstBacking.subarray(dstOff + length).every((b) => b === 0)).toBe(true);
        // In place, on an unaligned view, then back.
        unmaskInPlace(src, KEY, maskOffset);
        expect(Buffer.from(src).equals(reference(before, KEY, maskOffset))).toBe(true);
        unmaskInPlace(src, KEY, maskOffset);
        expect(Buffer.from(src).equals(before)).toBe(true);
      }
    }
  });

  test('pieces of a large payload masked with running offsets equal the whole', () => {
    fc.assert(
      fc.property(fc.integer({ min: 512, max: 140_000 }), fc.array(fc.nat(140_000), { maxLength: 5 }), (length, rawCuts) => {
        const data = new Uint8Array(length);
        for (let i = 0; i < length; i++) data[i] = (i * 7 + (i >>> 8)) & 0xff;
        const cuts = [...new Set(rawCuts.map((c) => c % length))].sort((a, b) => a - b);
        const out = Buffer.alloc(length);
        let at = 0;
        for (const cut of [...cuts, length]) {
          mask(data.subarray(at, cut), KEY, out, at, at & 3);
          at = cut;
        }
        expect(out.equals(reference(data, KEY, 0))).toBe(true);
      }),
      { numRuns: 40 },
    );
  });

  test('sources in the shared read buffer: unmasked where they lie and copied once, nothing around them touched', () => {
    const read = sharedReadBuffer();
    expect(read.length).toBe(65536);
    // The same buffer every time (direct reads hand it to every socket).
    expect(sharedReadBuffer()).toBe(read);
    const fill = (): void => {
      for (let i = 0; i < read.length; i++) read[i] = (i * 29 + 3) & 0xff;
    };
    for (const length of [1, 63, 64, 65, 511, 512, 513, 575, 576, 4099, 16384, 40000, 65536]) {
      for (const [srcOff, dstOff, maskOffset] of [
        [0, 0, 0],
        [1, 3, 2],
        [61, 0, 1],
        [65536 - length, 2, 3],
      ] as const) {
        const start = Math.min(srcOff, 65536 - length);
        fill();
        const whole = Buffer.from(read);
        const src = read.subarray(start, start + length);
        const dstBacking = new Uint8Array(length + 8);
        mask(src, KEY, dstBacking, dstOff, maskOffset);
        const expected = reference(whole.subarray(start, start + length), KEY, maskOffset);
        expect(Buffer.from(dstBacking.subarray(dstOff, dstOff + length)).equals(expected)).toBe(true);
        expect(dstBacking.subarray(0, dstOff).every((b) => b === 0)).toBe(true);
        expect(dstBacking.subarray(dstOff + length).every((b) => b === 0)).toBe(true);
        // The bytes before and after the source (the next frame's, in a real read) are untouched.
        expect(read.subarray(0, start).equals(whole.subarray(0, start))).toBe(true);
        expect(read.subarray(start + length).equals(whole.subarray(start + length))).toBe(true);
        // In place: the source itself becomes the unmasked bytes.
        fill();
        unmaskInPlace(read.subarray(start, start + length), KEY, maskOffset);
        expect(read.subarray(start, start + length).equals(expected)).toBe(true);
        expect(read.subarray(start + length).equals(whole.subarray(start + length))).toBe(true);
      }
    }
  });
});

test('RFC6455_NO_WASM=1 in the environment turns the WebAssembly engine off (docs/performance.md), and masking stays right', () => {
  const saved = process.env.RFC6455_NO_WASM;
  try {
    process.env.RFC6455_NO_WASM = '1';
    expect(setMaskEngine('simd')).toBe('js');
    const payload = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7) & 0xff);
    const out = new Uint8Array(1000);
    mask(payload, Uint8Array.of(1, 2, 3, 4), out, 0);
    expect(out.every((b, i) => b === (payload[i]! ^ [1, 2, 3, 4][i & 3]!))).toBe(true);
    process.env.RFC6455_NO_WASM = '0';
    expect(setMaskEngine('simd')).toBe('simd');
  } finally {
    if (saved === undefined) delete process.env.RFC6455_NO_WASM;
    else process.env.RFC6455_NO_WASM = saved;
    setMaskEngine('simd');
  }
});

describe.each(['simd', 'js'] as const)('mask into another region with the %s engine', (engine) => {
  beforeAll(() => setMaskEngine(engine));
  afterAll(() => setMaskEngine('simd'));

  test('a destination in the same ArrayBuffer as the source (as two pooled Buffers are) gets the masked bytes, the source is left alone, and no byte around the destination is written', () => {
    const key = Uint8Array.of(0x11, 0x22, 0x44, 0x88);
    for (const length of [1, 3, 4, 7, 8, 16, 31, 32, 64, 100, 513, 1024]) {
      for (const [srcAt, dstAt] of [[0, 2048], [4, 2052], [1, 2049], [3, 2048], [2048, 8]] as const) {
        for (const maskOffset of [0, 1, 3]) {
          const memory = new Uint8Array(4096).fill(0xee);
          const src = new Uint8Array(memory.buffer, srcAt, length);
          for (let i = 0; i < length; i++) src[i] = (i * 13 + 5) & 0xff;
          const before = Uint8Array.from(src);
          const expected = before.map((b, i) => b ^ key[(maskOffset + i) & 3]!);
          const dst = new Uint8Array(memory.buffer, dstAt - 4, length + 8);
          mask(src, key, dst, 4, maskOffset);
          const label = `${length} ${srcAt}->${dstAt} +${maskOffset}`;
          expect([label, Buffer.from(src).equals(before)]).toEqual([label, true]);
          expect([label, Buffer.from(dst.subarray(4, 4 + length)).equals(expected)]).toEqual([label, true]);
          expect([label, dst.subarray(0, 4).every((b) => b === 0xee), dst.subarray(4 + length).every((b) => b === 0xee)]).toEqual([label, true, true]);
        }
      }
    }
  });
});
