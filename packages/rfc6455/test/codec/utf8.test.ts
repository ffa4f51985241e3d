/**
 * Utf8Validator against Node's own decoder (TextDecoder fatal) for random byte strings split at
 * every position, and fail-fast: the feed holding the first bad byte reports false.
 */
import fc from 'fast-check';
import { decodeUtf8, decodeValidUtf8, encodeUtf8, isValidUtf8, Utf8Validator } from '../../src/codec/utf8.js';

const decoder = new TextDecoder('utf-8', { fatal: true });
function nodeValid(bytes: Uint8Array): boolean {
  try {
    decoder.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** Index of the first byte at which a prefix can no longer be completed into valid UTF-8. */
function firstBadIndex(bytes: Uint8Array): number {
  // A prefix p is viable when p + some continuation is valid: try the 0-3 byte completions.
  const completions = [[], [0x80], [0x80, 0x80], [0x80, 0x80, 0x80]];
  const viable = (n: number): boolean => {
    const prefix = bytes.subarray(0, n);
    for (let lead = 0x80; lead <= 0xbf; lead += 0x3f) {
      for (const c of completions) {
        const tail = c.map(() => lead);
        if (nodeValid(Uint8Array.from([...prefix, ...tail]))) return true;
      }
    }
    // Second-byte ranges: E0 A0, ED 80, F0 90, F4 80 need specific continuations.
    for (const c of [[0xa0, 0x80], [0x90, 0x80, 0x80], [0x80, 0x80], [0x8f, 0x80, 0x80], [0xa0], [0x90, 0x80], [0x80], [0x8f, 0x80]]) {
      if (nodeValid(Uint8Array.from([...prefix, ...c]))) return true;
    }
    return false;
  };
  for (let n = 1; n <= bytes.length; n++) if (!viable(n)) return n - 1;
  return -1;
}

/** Bytes biased towards UTF-8 edge cases. */
const utf8ish = fc.array(
  fc.oneof(
    fc.integer({ min: 0, max: 255 }),
    fc.constantFrom(0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0x80, 0xbf, 0x9f, 0xa0, 0x8f, 0x90),
  ),
  { maxLength: 24 },
).map((a) => Uint8Array.from(a));

const validText = fc.string({ unit: 'grapheme', maxLength: 30 }).map((s) => new Uint8Array(Buffer.from(s, 'utf8')));

describe('Utf8Validator', () => {
  test('agrees with Node decoder on random bytes cut at every position into two feeds', () => {
    fc.assert(
      fc.property(fc.oneof(utf8ish, validText), (bytes) => {
        const expected = nodeValid(bytes);
        for (let cut = 0; cut <= bytes.length; cut++) {
          const v = new Utf8Validator();
          const ok = v.feed(bytes.subarray(0, cut), false) && v.feed(bytes.subarray(cut), true);
          expect(ok).toBe(expected);
        }
      }),
      { numRuns: 300 },
    );
  });

  test('agrees with Node decoder when fed one byte at a time', () => {
    fc.assert(
      fc.property(fc.oneof(utf8ish, validText), (bytes) => {
        const v = new Utf8Validator();
        let ok = true;
        for (let i = 0; i < bytes.length && ok; i++) ok = v.feed(bytes.subarray(i, i + 1), false);
        if (ok) ok = v.feed(new Uint8Array(0), true);
        expect(ok).toBe(nodeValid(bytes));
      }),
      { numRuns: 300 },
    );
  });

  test('fails fast: byte by byte, false comes exactly at the first non-viable byte', () => {
    fc.assert(
      fc.property(utf8ish, (bytes) => {
        const bad = firstBadIndex(bytes);
        const v = new Utf8Validator();
        let failedAt = -1;
        for (let i = 0; i < bytes.length; i++) {
          if (!v.feed(bytes.subarray(i, i + 1), false)) {
            failedAt = i;
            break;
          }
        }
        expect(failedAt).toBe(bad);
      }),
      { numRuns: 300 },
    );
  });

  test('every lead with every second byte (and edge third bytes), cut after each byte: false exactly when no completion is valid', () => {
    const cont = (n: number): number[] => new Array<number>(n).fill(0x80);
    // A prefix of two or more bytes is viable when continuation bytes can complete it.
    const viable = (prefix: number[]): boolean => [0, 1, 2, 3].some((k) => nodeValid(Uint8Array.from([...prefix, ...cont(k)])));
    const mismatches: string[] = [];
    for (let lead = 0xc0; lead <= 0xff; lead++) {
      const leadOk = viable([lead, 0x80]) || viable([lead, 0x90]) || viable([lead, 0xa0]);
      for (let b1 = 0; b1 <= 0xff; b1++) {
        for (const b2 of [undefined, 0x7f, 0x80, 0xbf, 0xc0]) {
          const prefix = b2 === undefined ? [lead, b1] : [lead, b1, b2];
          if (b2 !== undefined && !viable([lead, b1])) continue;
          const expected = leadOk && viable(prefix);
          const whole = new Utf8Validator().feed(Uint8Array.from(prefix), false);
          const v = new Utf8Validator();
          const split = prefix.every((b) => v.feed(Uint8Array.of(b), false));
          if (whole !== expected || split !== expected) mismatches.push(prefix.map((b) => b.toString(16)).join(' '));
        }
      }
    }
    expect(mismatches).toEqual([]);
  });

  test.each([
    ['overlong 2-byte', [0xc0, 0xaf]],
    ['overlong 3-byte', [0xe0, 0x80]],
    ['surrogate', [0xed, 0xa0]],
    ['over U+10FFFF', [0xf4, 0x90]],
    ['F5 lead', [0xf5]],
    ['lone continuation', [0x80]],
  ])('rejects %s at the feed that holds it, before the text ends', (_name, bad) => {
    const v = new Utf8Validator();
    expect(v.feed(Buffer.from('valid prefix '), false)).toBe(true);
    expect(v.feed(Uint8Array.from(bad), false)).toBe(false);
  });

  test('a character cut at the end of the final feed is invalid, and reset() forgets it', () => {
    const v = new Utf8Validator();
    expect(v.feed(Uint8Array.of(0xe2, 0x82), false)).toBe(true);
    expect(v.complete).toBe(false);
    v.reset();
    expect(v.complete).toBe(true);
    expect(v.feed(Buffer.from('ok'), true)).toBe(true);
    const w = new Utf8Validator();
    expect(w.feed(Uint8Array.of(0xe2, 0x82), true)).toBe(false);
  });
});

describe('isValidUtf8', () => {
  test('true for valid UTF-8 and false for anything else, the same as a strict decoder', () => {
    expect(isValidUtf8(Buffer.from('a€𝄞'))).toBe(true);
    expect(isValidUtf8(new Uint8Array(0))).toBe(true);
    expect(isValidUtf8(Uint8Array.of(0x61, 0xed, 0xa0, 0x80))).toBe(false);
    fc.assert(
      fc.property(fc.oneof(utf8ish, validText), (bytes) => {
        expect(isValidUtf8(bytes)).toBe(nodeValid(bytes));
      }),
      { numRuns: 300 },
    );
  });
});

describe('decodeUtf8 / decodeValidUtf8 (whole texts: ASCII through Latin-1, the rest through the strict decoder)', () => {
  const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  const expected = (bytes: Uint8Array): string | undefined => {
    try {
      return strict.decode(bytes);
    } catch {
      return undefined;
    }
  };

  test('the same as a strict decoder for any bytes: the string, or undefined when invalid', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 200 }).map((t) => new Uint8Array(Buffer.from(t, 'utf8')))), (bytes) => {
        const buffer = Buffer.from(bytes);
        const want = expected(buffer);
        expect(decodeUtf8(buffer)).toBe(want);
        if (want !== undefined) expect(decodeValidUtf8(buffer)).toBe(want);
      }),
      { numRuns: 2000 },
    );
  });

  test('large texts (the UTF-16 path from 2 KB): the same as a strict decoder, valid or with a bad sequence anywhere', () => {
    const unit = fc.oneof(fc.constantFrom('a', 'json{}', 'é', 'ß', '日本', '😀', '\uFEFF', '\u0800', '\uFFFD', '\u{10FFFF}'), fc.string({ unit: 'binary', maxLength: 3 }));
    const bad = fc.constantFrom([0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x80]);
    fc.assert(
      fc.property(fc.array(unit, { minLength: 1, maxLength: 12 }), fc.integer({ min: 2048, max: 40_000 }), fc.option(fc.tuple(bad, fc.nat()), { freq: 2 }), (units, size, corrupt) => {
        // At least `size` bytes of the units repeated (whole characters), then maybe a bad sequence.
        const text = units.join('') || 'a';
        let buffer = Buffer.from(text.repeat(Math.ceil(size / Buffer.byteLength(text))), 'utf8');
        if (corrupt) {
          const [bytes, at] = corrupt;
          buffer = Buffer.concat([buffer.subarray(0, at % buffer.length), Buffer.from(bytes), buffer.subarray(at % buffer.length)]);
        }
        const want = expected(buffer);
        expect(decodeUtf8(buffer)).toBe(want);
        if (want !== undefined) expect(decodeValidUtf8(buffer)).toBe(want);
      }),
      { numRuns: 300 },
    );
  });

  test('ASCII of every size (Latin-1 path), a BOM kept, and a view into a larger buffer', () => {
    for (const n of [0, 1, 63, 64, 4096, 70_000, 1_100_000]) {
      const text = 'abcdefghijklmnopqrstuvwxyz{}":,0123456789'.repeat(Math.ceil(n / 40)).slice(0, n);
      expect(decodeUtf8(Buffer.from(text, 'latin1'))).toBe(text);
    }
    expect(decodeUtf8(Buffer.from('\uFEFFbom', 'utf8'))).toBe('\uFEFFbom');
    const big = Buffer.from('xxhéllo wörld yy', 'utf8');
    expect(decodeUtf8(big.subarray(2, big.length - 3))).toBe('héllo wörld');
    expect(decodeUtf8(Buffer.from('plain ascii yy').subarray(0, 11))).toBe('plain ascii');
    expect(decodeUtf8(Buffer.from([0x61, 0x80]))).toBeUndefined();
    // The same over 2 KB, where text that is not ASCII goes through UTF-16.
    const longText = 'ab\uFEFFhéllo 日本 😀 '.repeat(300);
    const long = Buffer.from(longText, 'utf8');
    expect(decodeUtf8(long.subarray(2, long.length - 1))).toBe(longText.slice(2, -1));
    expect(decodeUtf8(Buffer.concat([long, Buffer.from([0xc3])]))).toBeUndefined();
  });
});

describe('encodeUtf8', () => {
  test("the same bytes as Buffer.from(text, 'utf8') for any string, ASCII or not, short or over 2048 characters, lone surrogates included", () => {
    const unit = fc.oneof(fc.constantFrom('a', 'ascii only', 'é', '日本', '😀', '\ud800', '\udfff', '\uFEFF'), fc.string({ unit: 'binary', maxLength: 4 }), fc.string({ unit: 'grapheme', maxLength: 2 }));
    fc.assert(
      fc.property(fc.array(unit, { minLength: 1, maxLength: 8 }), fc.integer({ min: 1, max: 3000 }), (units, times) => {
        const text = units.join('').repeat(times);
        const want = Buffer.from(text, 'utf8');
        expect(encodeUtf8(text, want.length).equals(want)).toBe(true);
      }),
      { numRuns: 300 },
    );
    const lone = 'é'.repeat(3000) + '\ud800';
    expect(encodeUtf8(lone, Buffer.byteLength(lone)).equals(Buffer.from(lone))).toBe(true);
  });
});
