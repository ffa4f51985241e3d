/**
 * encodeFrame/writeHeader against hex fixtures (RFC 6455 §5.7) and the hand-made decoder: each
 * length form, FIN/RSV1, masking with a given key, large payloads left uncopied.
 */
import { COPY_THRESHOLD, encodeFrame, encodeUnmaskedCopy, headerSize, unmaskedHeader, writeHeader } from '../../src/codec/frame-writer.js';
import { decodeFrames, hex } from '../helpers/frames.js';
import { isControlOpcode } from '../../src/codec/constants.js';

describe('encodeFrame', () => {
  test('writes the RFC 6455 §5.7 unmasked and masked "Hello" frames', () => {
    expect(Buffer.concat(encodeFrame(1, Buffer.from('Hello')))).toEqual(hex('81 05 48 65 6c 6c 6f'));
    expect(Buffer.concat(encodeFrame(1, Buffer.from('Hello'), { mask: true, maskKey: Uint8Array.of(0x37, 0xfa, 0x21, 0x3d) }))).toEqual(
      hex('81 85 37 fa 21 3d 7f 9f 4d 51 58'),
    );
  });

  test('writes a non-final fragment and RSV1', () => {
    expect(Buffer.concat(encodeFrame(1, Buffer.from('Hel'), { fin: false }))).toEqual(hex('01 03 48 65 6c'));
    expect(Buffer.concat(encodeFrame(2, Buffer.alloc(0), { rsv1: true }))[0]).toBe(0xc2);
  });

  test.each([
    [0, '82 00'],
    [125, '82 7d'],
    [126, '82 7e 00 7e'],
    [65535, '82 7e ff ff'],
    [65536, '82 7f 00 00 00 00 00 01 00 00'],
  ])('uses the minimal length form for %i bytes', (n, header) => {
    const bytes = Buffer.concat(encodeFrame(2, Buffer.alloc(n, 0xab)));
    expect(bytes.subarray(0, hex(header).length)).toEqual(hex(header));
    expect(bytes.length).toBe(hex(header).length + n);
    expect(headerSize(n, false)).toBe(hex(header).length);
    expect(headerSize(n, true)).toBe(hex(header).length + 4);
    const { frames } = decodeFrames(bytes);
    expect(frames).toHaveLength(1);
    expect(frames[0]!.payload.equals(Buffer.alloc(n, 0xab))).toBe(true);
  });

  test('masks into its own buffer and never modifies the caller payload', () => {
    const payload = Buffer.alloc(70000, 0x11);
    const copy = Buffer.from(payload);
    const parts = encodeFrame(2, payload, { mask: true });
    expect(payload.equals(copy)).toBe(true);
    const { frames } = decodeFrames(Buffer.concat(parts));
    expect(frames[0]!.masked).toBe(true);
    expect(frames[0]!.payload.equals(payload)).toBe(true);
  });

  test('masks every length around the inline/word/SIMD switches correctly, with given and random keys', () => {
    const key = Uint8Array.of(0x9c, 0x01, 0xee, 0x42);
    for (const length of [0, 1, 2, 3, 4, 5, 6, 7, 63, 64, 65, 125, 126, 255, 256, 257, 511, 512, 513, 4097]) {
      const payload = Buffer.alloc(length);
      for (let i = 0; i < length; i++) payload[i] = (i * 37 + 11) & 0xff;
      const copy = Buffer.from(payload);
      const [frame] = encodeFrame(2, payload, { mask: true, maskKey: key });
      const at = headerSize(length, true);
      expect(frame!.length).toBe(at + length);
      expect(Buffer.from(frame!.subarray(at - 4, at))).toEqual(Buffer.from(key));
      for (let i = 0; i < length; i++) expect(frame![at + i]).toBe(copy[i]! ^ key[i & 3]!);
      expect(payload.equals(copy)).toBe(true);
      const { frames } = decodeFrames(Buffer.concat(encodeFrame(2, payload, { mask: true })));
      expect(frames[0]!.masked).toBe(true);
      expect(frames[0]!.payload.equals(copy)).toBe(true);
    }
  });

  test('shared headers of unmasked frames stay right across sizes, opcodes and cache collisions', () => {
    // 65536 + 64k and 1 MiB + 64k land in the same slot of the 64-bit-length cache.
    const lengths = [0, 1, 125, 126, 127, 382, 638, 1000, 16384, 65535, 65536, 65600, 65664, 1 << 20, (1 << 20) + 64];
    for (let round = 0; round < 2; round++) {
      for (const length of lengths) {
        for (const [opcode, fin, rsv1] of [
          [2, true, false],
          [1, true, false],
          [0, false, false],
          [1, false, true],
        ] as const) {
          const payload = Buffer.alloc(length, 0x5a);
          const [header] = encodeFrame(opcode, payload, { fin, rsv1 });
          const { frames } = decodeFrames(Buffer.concat(encodeFrame(opcode, payload, { fin, rsv1 })));
          expect(frames[0]!.opcode).toBe(opcode);
          expect(frames[0]!.fin).toBe(fin);
          expect(frames[0]!.rsv).toBe(rsv1 ? 4 : 0);
          expect(frames[0]!.payload.length).toBe(length);
          expect(header!.length).toBe(headerSize(length, false));
        }
      }
    }
  });

  test('a header handed out earlier is never rewritten when its cache slot is reused', () => {
    const [first] = encodeFrame(2, Buffer.alloc(65536));
    const bytes = Buffer.from(first!);
    for (const length of [65600, 65664, 65728]) encodeFrame(2, Buffer.alloc(length));
    const [medium] = encodeFrame(2, Buffer.alloc(1000));
    const mediumBytes = Buffer.from(medium!);
    for (let length = 1000 + 256; length < 1000 + 256 * 8; length += 256) encodeFrame(2, Buffer.alloc(length));
    expect(first).toEqual(bytes);
    expect(bytes).toEqual(hex('82 7f 00 00 00 00 00 01 00 00'));
    expect(medium).toEqual(mediumBytes);
    expect(mediumBytes).toEqual(hex('82 7e 03 e8'));
  });

  test('lengths of 4 GiB and more share cache slots with smaller ones and still get their own header', () => {
    // Same low 32 bits, so the same slot of the 64-bit-length cache: the full length decides.
    const small = Buffer.from(unmaskedHeader(2, 65536, true, false));
    const huge = Buffer.from(unmaskedHeader(2, 2 ** 32 + 65536, true, false));
    const again = unmaskedHeader(2, 65536, true, false);
    const top = unmaskedHeader(1, 2 ** 53 - 1, false, true);
    expect(small).toEqual(hex('82 7f 00 00 00 00 00 01 00 00'));
    expect(huge).toEqual(hex('82 7f 00 00 00 01 00 01 00 00'));
    expect(again).toEqual(small);
    expect(top).toEqual(hex('41 7f 00 1f ff ff ff ff ff ff'));
    // A first byte that differs is another header too.
    expect(unmaskedHeader(2, 65536, false, false)[0]).toBe(0x02);
  });

  test('refuses frames every peer fails: reserved or out-of-range opcodes, long or fragmented control frames, short mask keys', () => {
    const refuse = (opcode: number, payload: Buffer, options: Parameters<typeof encodeFrame>[2], message: RegExp): void => {
      expect(() => encodeFrame(opcode, payload, options)).toThrow(RangeError);
      expect(() => encodeFrame(opcode, payload, options)).toThrow(message);
    };
    for (const opcode of [3, 7, 0xb, 0xf]) refuse(opcode, Buffer.alloc(1), {}, new RegExp(`opcode 0x${opcode.toString(16)} is reserved \\(RFC 6455 §5\\.2\\)`));
    // 16 would have been written as FIN|RSV3|continuation, 0x81 as a text frame.
    for (const opcode of [16, 0x81, -1, 1.5]) refuse(opcode, Buffer.alloc(1), {}, /is not a 4-bit opcode \(RFC 6455 §5\.2\)/);
    for (const opcode of [8, 9, 10]) {
      for (const mask of [false, true]) {
        refuse(opcode, Buffer.alloc(126), { mask }, /control frame payload is 126 bytes; at most 125 are allowed \(RFC 6455 §5\.5\)/);
        refuse(opcode, Buffer.alloc(1), { fin: false, mask }, /must not be fragmented.*\(RFC 6455 §5\.5\)/);
      }
      expect(decodeFrames(Buffer.concat(encodeFrame(opcode, Buffer.alloc(125)))).frames[0]!.payload.length).toBe(125);
    }
    // A short key would have left bytes of uninitialized memory in the frame as the rest of the key.
    for (const length of [8, 300, 1000]) refuse(1, Buffer.alloc(length, 0x61), { mask: true, maskKey: Uint8Array.of(1, 2) }, /maskKey has 2 bytes; a masking key has 4/);
  });

  test('isControlOpcode is true for the integers 8-15 alone, as encodeFrame takes opcodes (it tested bit 3: 0x18, -8, 8.5 were control opcodes)', () => {
    const control = [8, 9, 10, 0xb, 0xf];
    const not = [0, 1, 2, 3, 7, 0x10, 0x18, 0x88, -8, -1, 8.5, 9.99, NaN, Infinity, -Infinity];
    expect([...control, ...not].filter(isControlOpcode)).toEqual(control);
  });

  test('leaves a large unmasked payload as a second buffer (no copy)', () => {
    const payload = Buffer.alloc(COPY_THRESHOLD + 1);
    const parts = encodeFrame(2, payload);
    expect(parts).toHaveLength(2);
    expect(parts[1]).toBe(payload);
  });

  test('writeHeader writes the 64-bit length exactly up to 2^53 - 1, every byte of it, after any offset and before the mask key', () => {
    const key = Uint8Array.of(0xa1, 0xb2, 0xc3, 0xd4);
    for (const length of [65536, 2 ** 32 - 1, 2 ** 32, 2 ** 40, 2 ** 40 + 2 ** 33 + 0x1234567, 2 ** 48 + 2 ** 41, 2 ** 53 - 1]) {
      const expected = Buffer.alloc(10);
      expected[0] = 0x82;
      expected[1] = 0xff;
      expected.writeBigUInt64BE(BigInt(length), 2);
      const target = Buffer.alloc(3 + 14);
      expect(writeHeader(target, 3, 2, length, true, false, key)).toBe(3 + 14);
      expect(target.subarray(3)).toEqual(Buffer.concat([expected, key]));
      expect(headerSize(length, true)).toBe(14);
      // The unmasked headers (shared ones) agree.
      expected[1] = 0x7f;
      expect(unmaskedHeader(2, length, true, false)).toEqual(expected);
    }
  });

  test('encodeUnmaskedCopy (the connection\'s small frames) is header and payload in one buffer, for every length form up to COPY_THRESHOLD, a 1-byte payload too', () => {
    for (const length of [0, 1, 2, 3, 125, 126, 127, COPY_THRESHOLD]) {
      for (const fill of [0x00, 0x5a, 0xff]) {
        const payload = Buffer.alloc(length, fill);
        const frame = encodeUnmaskedCopy(1, payload, false, true);
        expect(frame).toEqual(Buffer.concat(encodeFrame(1, payload, { fin: false, rsv1: true })));
      }
    }
  });
});
