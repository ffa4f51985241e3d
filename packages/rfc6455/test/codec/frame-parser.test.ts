/**
 * FrameParser against hex wire fixtures (RFC 6455 §5.7 examples and hand-made frames): each length
 * form, masking direction, RSV bits, opcodes, control-frame rules, continuation sequencing, length
 * encoding rules, limits, and never mutating the caller's buffers.
 */
import { FrameParser, GATHER_MAX, GATHER_RATIO } from '../../src/codec/frame-parser.js';
import { MessageTooBigError, ProtocolError } from '../../src/errors.js';
import { closePayload, frame, hex } from '../helpers/frames.js';
import { pushSplit, recordingParser, viewsParser } from '../helpers/parser-sink.js';

function expectProtocolError(rec: ReturnType<typeof recordingParser>, pattern: RegExp): void {
  expect(rec.errors).toHaveLength(1);
  expect(rec.errors[0]).toBeInstanceOf(ProtocolError);
  expect((rec.errors[0] as ProtocolError).closeCode).toBe(1002);
  expect(rec.errors[0]!.message).toMatch(pattern);
  expect(rec.parser.failed).toBe(true);
}

describe('RFC 6455 §5.7 fixtures', () => {
  test('client receives a single-frame unmasked text message', () => {
    const rec = recordingParser({ side: 'client' });
    rec.parser.push(hex('81 05 48 65 6c 6c 6f'));
    expect(rec.messages).toEqual([{ opcode: 1, compressed: false, data: Buffer.from('Hello') }]);
    expect(rec.errors).toEqual([]);
  });

  test('server receives a single-frame masked text message', () => {
    const rec = recordingParser({ side: 'server' });
    rec.parser.push(hex('81 85 37 fa 21 3d 7f 9f 4d 51 58'));
    expect(rec.messages.map((m) => m.data.toString())).toEqual(['Hello']);
  });

  test('client receives a fragmented unmasked text message', () => {
    const rec = recordingParser({ side: 'client' });
    rec.parser.push(hex('01 03 48 65 6c'));
    expect(rec.messages).toEqual([]);
    expect(rec.parser.inMessage).toBe(true);
    rec.parser.push(hex('80 02 6c 6f'));
    expect(rec.messages.map((m) => m.data.toString())).toEqual(['Hello']);
    expect(rec.parser.inMessage).toBe(false);
  });

  test('client receives an unmasked ping and server receives a masked pong', () => {
    const client = recordingParser({ side: 'client' });
    client.parser.push(hex('89 05 48 65 6c 6c 6f'));
    expect(client.controls).toEqual([{ opcode: 9, payload: Buffer.from('Hello') }]);
    const server = recordingParser({ side: 'server' });
    server.parser.push(hex('8a 85 37 fa 21 3d 7f 9f 4d 51 58'));
    expect(server.controls).toEqual([{ opcode: 10, payload: Buffer.from('Hello') }]);
  });

  test('client receives 256 bytes with a 16-bit length and 65536 bytes with a 64-bit length', () => {
    const rec = recordingParser({ side: 'client' });
    rec.parser.push(Buffer.concat([hex('82 7e 01 00'), Buffer.alloc(256, 7)]));
    rec.parser.push(Buffer.concat([hex('82 7f 00 00 00 00 00 01 00 00'), Buffer.alloc(65536, 9)]));
    expect(rec.messages.map((m) => [m.opcode, m.data.length, m.data[0]])).toEqual([
      [2, 256, 7],
      [2, 65536, 9],
    ]);
  });
});

describe('length forms', () => {
  test.each([0, 1, 125, 126, 127, 65535, 65536, 70000])('server receives a masked %i-byte binary frame fed one byte at a time', (n) => {
    const payload = Buffer.alloc(n);
    for (let i = 0; i < n; i++) payload[i] = (i * 31 + 7) & 0xff;
    const bytes = frame({ opcode: 2, payload, mask: true });
    expect(bytes.length).toBe(n + 4 + (n < 126 ? 2 : n < 65536 ? 4 : 10));
    const rec = recordingParser({ side: 'server' });
    if (n <= 1000) {
      for (let i = 0; i < bytes.length; i++) rec.parser.push(bytes.subarray(i, i + 1));
    } else {
      pushSplit(rec.parser, bytes, [1, 3, 9, 13, 14, 1001, 4097]);
    }
    expect(rec.errors).toEqual([]);
    expect(rec.messages).toHaveLength(1);
    expect(rec.messages[0]!.data.equals(payload)).toBe(true);
    expect(rec.parser.bufferedAmount).toBe(0);
  });

  test('client receives an empty text message as one empty first-and-last piece', () => {
    const rec = recordingParser({ side: 'client' });
    rec.parser.push(hex('81 00'));
    expect(rec.pieces).toEqual([{ opcode: 1, first: true, last: true, length: 0 }]);
  });

  test('client rejects a 16-bit length under 126 (non-minimal encoding)', () => {
    const rec = recordingParser({ side: 'client' });
    rec.parser.push(hex('82 7e 00 7d'));
    expectProtocolError(rec, /minimal/);
  });

  test('client rejects a 64-bit length under 65536 (non-minimal encoding)', () => {
    const rec = recordingParser({ side: 'client' });
    rec.parser.push(hex('82 7f 00 00 00 00 00 00 ff ff'));
    expectProtocolError(rec, /minimal/);
  });

  test('client rejects a 64-bit length with the most significant bit set', () => {
    const rec = recordingParser({ side: 'client' });
    rec.parser.push(hex('82 7f 80 00 00 00 00 00 00 00'));
    expectProtocolError(rec, /top bit/);
  });

  test('client fails a frame over maxFrameSize from its header, before any payload arrives', () => {
    const rec = recordingParser({ side: 'client', maxFrameSize: 1000 });
    rec.parser.push(hex('82 7e 03 e9')); // 1001 bytes declared
    expect(rec.errors[0]).toBeInstanceOf(MessageTooBigError);
    expect((rec.errors[0] as MessageTooBigError).closeCode).toBe(1009);
  });

  test('client fails a huge 64-bit length (2^62) with 1009 without allocating', () => {
    const rec = recordingParser({ side: 'client', maxFrameSize: 64 * 1024 * 1024 });
    rec.parser.push(hex('82 7f 40 00 00 00 00 00 00 00'));
    expect(rec.errors[0]).toBeInstanceOf(MessageTooBigError);
    expect(rec.parser.bufferedAmount).toBe(0);
  });

  test.each([
    ['00 01 00 00 00 00 00 05', 2 ** 48 + 5],
    ['00 00 01 00 00 00 00 00', 2 ** 40],
    ['00 00 00 00 80 00 00 00', 2 ** 31],
    ['00 00 00 01 00 00 00 05', 2 ** 32 + 5],
    ['00 1f ff ff 00 00 00 00', 0x1fffff * 2 ** 32],
    ['00 1f ff ff ff ff ff ff', Number.MAX_SAFE_INTEGER],
    ['00 20 00 00 00 00 00 00', Number.MAX_SAFE_INTEGER],
    ['7f ff ff ff 00 00 00 00', Number.MAX_SAFE_INTEGER],
    ['7f ff ff ff ff ff ff ff', Number.MAX_SAFE_INTEGER],
    ['7f 80 00 00 00 00 00 00', Number.MAX_SAFE_INTEGER],
  ])('a 64-bit length %s is read exactly (the size its 1009 reports; 2^53 and over read as MAX_SAFE_INTEGER)', (bytes, size) => {
    const rec = recordingParser({ side: 'client', maxFrameSize: 1000 });
    rec.parser.push(hex(`82 7f ${bytes}`));
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]).toBeInstanceOf(MessageTooBigError);
    expect(rec.errors[0]!.message).toBe(`frame of ${size} bytes exceeds maxFrameSize 1000`);
  });

  test('server fails fragmented text over maxMessageSize with 1009 at the fragment that crosses it', () => {
    const rec = recordingParser({ side: 'server', maxMessageSize: 10 });
    rec.parser.push(frame({ opcode: 1, payload: 'abcdef', fin: false, mask: true }));
    expect(rec.errors).toEqual([]);
    rec.parser.push(frame({ opcode: 0, payload: 'ghijk', fin: false, mask: true }).subarray(0, 2));
    expect(rec.errors[0]).toBeInstanceOf(MessageTooBigError);
  });

  test('server fails a message with more than maxFragments frames with 1009', () => {
    const rec = recordingParser({ side: 'server', maxFragments: 3 });
    rec.parser.push(frame({ opcode: 1, payload: 'a', fin: false, mask: true }));
    rec.parser.push(frame({ opcode: 0, payload: 'b', fin: false, mask: true }));
    rec.parser.push(frame({ opcode: 0, payload: 'c', fin: false, mask: true }));
    expect(rec.errors).toEqual([]);
    rec.parser.push(frame({ opcode: 0, payload: 'd', fin: true, mask: true }));
    expect(rec.errors[0]).toBeInstanceOf(MessageTooBigError);
  });

  test('control frames do not count toward the message size limit', () => {
    const rec = recordingParser({ side: 'server', maxMessageSize: 4 });
    rec.parser.push(frame({ opcode: 1, payload: 'ab', fin: false, mask: true }));
    rec.parser.push(frame({ opcode: 9, payload: 'pingpingping', mask: true }));
    rec.parser.push(frame({ opcode: 0, payload: 'cd', mask: true }));
    expect(rec.errors).toEqual([]);
    expect(rec.messages.map((m) => m.data.toString())).toEqual(['abcd']);
  });

  test('a close frame is no data frame either: limits smaller than its payload do not apply to it', () => {
    const rec = recordingParser({ side: 'server', maxFrameSize: 4, maxMessageSize: 4, maxFragments: 1 });
    rec.parser.push(frame({ opcode: 8, payload: closePayload(1000, 'long goodbye'), mask: true }));
    expect(rec.errors).toEqual([]);
    expect(rec.controls.map((c) => [c.opcode, c.payload.length])).toEqual([[8, 14]]);
  });

  test('a frame of exactly maxFrameSize bytes is accepted', () => {
    const rec = recordingParser({ side: 'client', maxFrameSize: 1000 });
    rec.parser.push(Buffer.concat([hex('82 7e 03 e8'), Buffer.alloc(1000, 3)]));
    expect(rec.errors).toEqual([]);
    expect(rec.messages.map((m) => m.data.length)).toEqual([1000]);
  });
});

describe('masking direction (RFC 6455 §5.1)', () => {
  test('server rejects an unmasked client frame', () => {
    const rec = recordingParser({ side: 'server' });
    rec.parser.push(hex('81 05 48 65 6c 6c 6f'));
    expectProtocolError(rec, /not masked/);
    expect(rec.messages).toEqual([]);
  });

  test('client rejects a masked server frame', () => {
    const rec = recordingParser({ side: 'client' });
    rec.parser.push(hex('81 85 37 fa 21 3d 7f 9f 4d 51 58'));
    expectProtocolError(rec, /masked/);
  });

  test('server rejects an unmasked control frame too', () => {
    const rec = recordingParser({ side: 'server' });
    rec.parser.push(hex('89 00'));
    expectProtocolError(rec, /not masked/);
  });
});

describe('RSV bits and opcodes (RFC 6455 §5.2)', () => {
  test.each([
    ['RSV1 without an extension', { rsv1: true }, /RSV1/],
    ['RSV2', { rsv2: true }, /RSV2/],
    ['RSV3', { rsv3: true }, /RSV3/],
  ])('server rejects %s', (_name, bits, pattern) => {
    const rec = recordingParser({ side: 'server' });
    rec.parser.push(frame({ opcode: 1, payload: 'x', mask: true, ...bits }));
    expectProtocolError(rec, pattern);
  });

  test('server with a negotiated extension reports RSV1 on the first frame as compressed', () => {
    const rec = recordingParser({ side: 'server', allowRsv1: true });
    rec.parser.push(frame({ opcode: 2, payload: 'xy', mask: true, rsv1: true, fin: false }));
    rec.parser.push(frame({ opcode: 0, payload: 'z', mask: true }));
    expect(rec.messages).toEqual([{ opcode: 2, compressed: true, data: Buffer.from('xyz') }]);
  });

  test('server with an extension still rejects RSV1 on a continuation and on a control frame', () => {
    const a = recordingParser({ side: 'server', allowRsv1: true });
    a.parser.push(frame({ opcode: 2, payload: 'xy', mask: true, fin: false }));
    a.parser.push(frame({ opcode: 0, payload: 'z', mask: true, rsv1: true }));
    expectProtocolError(a, /continuation/);
    const b = recordingParser({ side: 'server', allowRsv1: true });
    b.parser.push(frame({ opcode: 9, mask: true, rsv1: true }));
    expectProtocolError(b, /control/);
  });

  test.each([3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf])('server rejects reserved opcode %i', (opcode) => {
    const rec = recordingParser({ side: 'server' });
    rec.parser.push(frame({ opcode, payload: '', mask: true }));
    expectProtocolError(rec, /reserved opcode/);
  });
});

describe('control frames (RFC 6455 §5.5)', () => {
  test('server rejects a ping with a 126-byte payload (16-bit length form)', () => {
    const rec = recordingParser({ side: 'server' });
    rec.parser.push(frame({ opcode: 9, payload: Buffer.alloc(126), mask: true }));
    expectProtocolError(rec, /125/);
  });

  test('server accepts a ping with exactly 125 bytes', () => {
    const rec = recordingParser({ side: 'server' });
    rec.parser.push(frame({ opcode: 9, payload: Buffer.alloc(125, 1), mask: true }));
    expect(rec.controls[0]!.payload.length).toBe(125);
  });

  test('a ping of one byte and an empty one, each alone in its read or byte by byte, keep their payloads', () => {
    for (const side of ['server', 'client'] as const) {
      const mask = side === 'server';
      const bytes = [frame({ opcode: 9, payload: 'x', mask }), frame({ opcode: 9, mask })];
      for (const cuts of [[], Array.from({ length: bytes[0]!.length + bytes[1]!.length }, (_, i) => i)]) {
        const rec = recordingParser({ side });
        if (cuts.length === 0) for (const b of bytes) rec.parser.push(b);
        else pushSplit(rec.parser, Buffer.concat(bytes), cuts);
        expect(rec.errors).toEqual([]);
        expect(rec.controls.map((c) => [c.opcode, c.payload.toString()])).toEqual([[9, 'x'], [9, '']]);
      }
    }
  });

  test('server rejects a fragmented (FIN clear) ping and close', () => {
    for (const opcode of [8, 9, 10]) {
      const rec = recordingParser({ side: 'server' });
      rec.parser.push(frame({ opcode, fin: false, mask: true }));
      expectProtocolError(rec, /fragmented control/);
    }
  });

  test('server receives control frames between the fragments of a message, in order', () => {
    const rec = recordingParser({ side: 'server' });
    rec.parser.push(
      Buffer.concat([
        frame({ opcode: 1, payload: 'He', fin: false, mask: true }),
        frame({ opcode: 9, payload: 'p1', mask: true }),
        frame({ opcode: 0, payload: 'll', fin: false, mask: true }),
        frame({ opcode: 10, payload: 'p2', mask: true }),
        frame({ opcode: 0, payload: 'o', mask: true }),
        frame({ opcode: 8, payload: closePayload(1000), mask: true }),
      ]),
    );
    expect(rec.messages.map((m) => m.data.toString())).toEqual(['Hello']);
    expect(rec.controls.map((c) => [c.opcode, c.payload.toString('hex')])).toEqual([
      [9, Buffer.from('p1').toString('hex')],
      [10, Buffer.from('p2').toString('hex')],
      [8, '03e8'],
    ]);
  });
});

describe('continuation sequencing (RFC 6455 §5.4)', () => {
  test('server rejects a continuation frame without a message to continue', () => {
    const rec = recordingParser({ side: 'server' });
    rec.parser.push(frame({ opcode: 0, payload: 'x', mask: true }));
    expectProtocolError(rec, /continuation/);
  });

  test('server rejects a new text frame inside a fragmented message', () => {
    const rec = recordingParser({ side: 'server' });
    rec.parser.push(frame({ opcode: 1, payload: 'a', fin: false, mask: true }));
    rec.parser.push(frame({ opcode: 1, payload: 'b', mask: true }));
    expectProtocolError(rec, /inside a fragmented/);
  });

  test('server rejects a new binary frame inside a fragmented text message', () => {
    const rec = recordingParser({ side: 'server' });
    rec.parser.push(frame({ opcode: 1, payload: 'a', fin: false, mask: true }));
    rec.parser.push(frame({ opcode: 2, payload: 'b', fin: false, mask: true }));
    expectProtocolError(rec, /inside a fragmented/);
  });

  test('empty frames of a fragmented message: the first and the last are told, one in between is not', () => {
    const rec = recordingParser({ side: 'server' });
    rec.parser.push(
      Buffer.concat([
        frame({ opcode: 1, fin: false, mask: true }),
        frame({ opcode: 0, payload: 'ab', fin: false, mask: true }),
        frame({ opcode: 0, fin: false, mask: true }),
        frame({ opcode: 0, mask: true }),
      ]),
    );
    expect(rec.pieces).toEqual([
      { opcode: 1, first: true, last: false, length: 0 },
      { opcode: 1, first: false, last: false, length: 2 },
      { opcode: 1, first: false, last: true, length: 0 },
    ]);
    expect(rec.messages.map((m) => m.data.toString())).toEqual(['ab']);
  });

  test('after an error, later input yields no event and no second error', () => {
    const rec = recordingParser({ side: 'server' });
    rec.parser.push(frame({ opcode: 0, payload: 'x', mask: true }));
    rec.parser.push(frame({ opcode: 1, payload: 'valid', mask: true }));
    rec.parser.push(frame({ opcode: 9, mask: true }));
    expect(rec.errors).toHaveLength(1);
    expect(rec.messages).toEqual([]);
    expect(rec.controls).toEqual([]);
    expect(rec.parser.bufferedAmount).toBe(0);
  });
});

describe('buffer ownership', () => {
  test('server with ownsInput false never modifies the pushed chunks', () => {
    const payload = Buffer.alloc(1000);
    for (let i = 0; i < payload.length; i++) payload[i] = i & 0xff;
    const bytes = frame({ opcode: 2, payload, mask: Uint8Array.of(1, 2, 3, 4) });
    const original = Buffer.from(bytes);
    const rec = recordingParser({ side: 'server' });
    pushSplit(rec.parser, bytes, [3, 7, 8, 333, 334, 700]);
    expect(bytes.equals(original)).toBe(true);
    expect(rec.messages[0]!.data.equals(payload)).toBe(true);
  });

  test('server with ownsInput true unmasks in place and still decodes correctly across chunks', () => {
    const payload = Buffer.alloc(777, 0x5a);
    const bytes = frame({ opcode: 2, payload, mask: Uint8Array.of(9, 8, 7, 6) });
    const rec = recordingParser({ side: 'server', ownsInput: true });
    pushSplit(rec.parser, Buffer.from(bytes), [5, 6, 100, 101, 102, 500]);
    expect(rec.messages[0]!.data.equals(payload)).toBe(true);
  });

  test('client receives unmasked payload pieces as views of the pushed chunk (no copy)', () => {
    const bytes = Buffer.concat([hex('82 7e 04 00'), Buffer.alloc(1024, 3)]);
    const { parser, views } = viewsParser({ side: 'client' });
    parser.push(bytes);
    expect(views).toHaveLength(1);
    expect(views[0]!.buffer).toBe(bytes.buffer);
  });
});

describe('whole small frames in one chunk (the fast path) agree with the general loop', () => {
  const key = Uint8Array.of(0x11, 0x22, 0x33, 0x44);
  const texts = ['', 'a', 'ab', 'abc', 'abcd', 'hello, world', 'x'.repeat(125)];

  test.each([true, false])('server, ownsInput %s: several whole frames then a partial one, every payload length 0..125', (ownsInput) => {
    const rec = recordingParser({ side: 'server', ownsInput });
    const frames = texts.map((t, i) => frame({ opcode: i % 2 ? 2 : 1, payload: t, mask: key }));
    const whole = Buffer.concat(frames);
    const copy = Buffer.from(whole);
    // The last frame is cut: its first 3 bytes come with the whole ones, the rest later.
    const cut = whole.length - frames[frames.length - 1]!.length + 3;
    rec.parser.push(whole.subarray(0, cut));
    expect(rec.messages).toHaveLength(texts.length - 1);
    rec.parser.push(whole.subarray(cut));
    expect(rec.messages.map((m) => [m.opcode, m.data.toString()])).toEqual(texts.map((t, i) => [i % 2 ? 2 : 1, t]));
    expect(rec.pieces.every((p) => p.first && p.last)).toBe(true);
    if (!ownsInput) expect(whole.equals(copy)).toBe(true);
    expect(rec.parser.bufferedAmount).toBe(0);
  });

  test('client: unmasked whole frames arrive as views of the chunk', () => {
    const views: Buffer[] = [];
    const parser = new FrameParser({ side: 'client' }, { onData: (_o, _c, p) => views.push(p), onControl: () => {}, onError: (e) => { throw e; } });
    const chunk = Buffer.concat([frame({ opcode: 2, payload: 'one' }), frame({ opcode: 2, payload: 'two' })]);
    parser.push(chunk);
    expect(views.map((v) => v.toString())).toEqual(['one', 'two']);
    expect(views.every((v) => v.buffer === chunk.buffer)).toBe(true);
  });

  test('a small frame over maxFrameSize or maxMessageSize still fails with 1009', () => {
    for (const limit of [{ maxFrameSize: 10 }, { maxMessageSize: 10 }]) {
      const rec = recordingParser({ side: 'server', ...limit });
      rec.parser.push(Buffer.concat([frame({ opcode: 1, payload: 'short', mask: key }), frame({ opcode: 1, payload: 'eleven char', mask: key })]));
      expect(rec.messages.map((m) => m.data.toString())).toEqual(['short']);
      expect(rec.errors).toHaveLength(1);
      expect(rec.errors[0]).toBeInstanceOf(MessageTooBigError);
      expect((rec.errors[0] as MessageTooBigError).closeCode).toBe(1009);
    }
  });

  test('a rule broken after whole frames in the same chunk is reported after them (unmasked frame to a server)', () => {
    const rec = recordingParser({ side: 'server' });
    rec.parser.push(Buffer.concat([frame({ opcode: 1, payload: 'ok', mask: key }), frame({ opcode: 1, payload: 'bad' }), frame({ opcode: 1, payload: 'never', mask: key })]));
    expect(rec.messages.map((m) => m.data.toString())).toEqual(['ok']);
    expectProtocolError(rec, /not masked/);
  });

  test('a sink that pauses after the first frame holds the rest until resume()', () => {
    const got: string[] = [];
    const parser: FrameParser = new FrameParser({ side: 'server' }, {
      onData: (_o, _c, p) => {
        got.push(p.toString());
        parser.paused = true;
      },
      onControl: () => {},
      onError: (e) => { throw e; },
    });
    parser.push(Buffer.concat(['a', 'b', 'c'].map((t) => frame({ opcode: 1, payload: t, mask: key }))));
    expect(got).toEqual(['a']);
    expect(parser.bufferedAmount).toBe(2 * 7);
    parser.resume();
    expect(got).toEqual(['a', 'b']);
    parser.resume();
    expect(got).toEqual(['a', 'b', 'c']);
  });

  test.each([
    ['push', 'server'],
    ['push', 'client'],
    ['pushTransient', 'server'],
    ['pushTransient', 'client'],
  ] as const)('%s, %s: the fast path is taken only between frames and messages, never in a payload, a fragmented message, paused or failed', (how, side) => {
    // A zero key leaves masked payload bytes as they are, so a payload can hold a whole frame's bytes.
    const zero = side === 'server' ? Uint8Array.of(0, 0, 0, 0) : undefined;
    const inner = frame({ opcode: 1, payload: 'abc', mask: zero });
    const feed = (rec: ReturnType<typeof recordingParser>, bytes: Buffer): void => {
      if (how === 'push') {
        rec.parser.push(Buffer.from(bytes));
      } else {
        const read = Buffer.alloc(bytes.length + 7, 0xee);
        bytes.copy(read);
        rec.parser.pushTransient(read, bytes.length);
        read.fill(0xee);
      }
    };
    // The rest of a frame's payload, after a read that ended with its header: payload, not frames.
    const outer = frame({ opcode: 2, payload: inner, mask: zero });
    const payloadRest = recordingParser({ side });
    feed(payloadRest, outer.subarray(0, outer.length - inner.length));
    feed(payloadRest, inner);
    expect(payloadRest.messages.map((m) => [m.opcode, m.data.toString('hex')])).toEqual([[2, inner.toString('hex')]]);
    expect(payloadRest.errors).toEqual([]);
    // The same for a ping's payload (a control frame: no message is open).
    const ping = frame({ opcode: 9, payload: inner, mask: zero });
    const pingRest = recordingParser({ side });
    feed(pingRest, ping.subarray(0, ping.length - inner.length));
    feed(pingRest, inner);
    expect(pingRest.controls.map((c) => [c.opcode, c.payload.toString('hex')])).toEqual([[9, inner.toString('hex')]]);
    expect(pingRest.messages).toEqual([]);
    expect(pingRest.errors).toEqual([]);
    // A header cut after its first byte: the next read starts inside it, and its bytes are no frame
    // of their own (after the cut they read 0x81, then a masked length of 0, on the server side).
    const oneByte = frame({ opcode: 1, payload: 'a', mask: side === 'server' ? Uint8Array.of(0x80, 0, 0, 0) : undefined });
    const cutHeader = recordingParser({ side });
    feed(cutHeader, oneByte.subarray(0, 1));
    feed(cutHeader, Buffer.concat([oneByte.subarray(1), inner]));
    expect(cutHeader.messages.map((m) => m.data.toString())).toEqual(['a', 'abc']);
    expect(cutHeader.errors).toEqual([]);
    // After the first fragment of a message, a whole text frame is a new message inside it: 1002.
    const fragmented = recordingParser({ side });
    feed(fragmented, frame({ opcode: 1, fin: false, payload: 'part', mask: zero }));
    feed(fragmented, inner);
    expect(fragmented.messages).toEqual([]);
    expectProtocolError(fragmented, /inside a fragmented message/);
    // Paused with nothing buffered: a whole frame waits for resume().
    const paused = recordingParser({ side });
    paused.parser.paused = true;
    feed(paused, inner);
    expect(paused.messages).toEqual([]);
    expect(paused.parser.bufferedAmount).toBe(inner.length);
    paused.parser.resume();
    expect(paused.messages.map((m) => m.data.toString())).toEqual(['abc']);
    // Failed: later whole frames are neither reported nor kept.
    const failed = recordingParser({ side });
    feed(failed, frame({ opcode: 0, payload: 'x', mask: zero }));
    expect(failed.errors).toHaveLength(1);
    feed(failed, inner);
    expect(failed.messages).toEqual([]);
    expect(failed.errors).toHaveLength(1);
    expect(failed.parser.bufferedAmount).toBe(0);
  });

  test.each(['push', 'pushTransient'] as const)('a sink that fails the stream from a whole frame stops the parser (nothing after it is reported or kept), %s', (how) => {
    const got: string[] = [];
    const parser: FrameParser = new FrameParser({ side: 'server' }, {
      onData: (_o, _c, p) => {
        got.push(p.toString());
        parser.discard();
      },
      onControl: () => {},
      onError: () => {},
    });
    const bytes = Buffer.concat(['a', 'b'].map((t) => frame({ opcode: 1, payload: t, mask: key })));
    if (how === 'push') parser.push(bytes);
    else parser.pushTransient(bytes, bytes.length);
    expect(got).toEqual(['a']);
    expect(parser.failed).toBe(true);
    expect(parser.bufferedAmount).toBe(0);
  });
});

describe('frames that span chunks are gathered into one piece (up to GATHER_MAX)', () => {
  const pattern = (n: number, seed: number): Buffer => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
    return b;
  };

  test('a masked 16 KiB frame cut at odd places arrives as one first-and-last piece, unmasked right, input untouched', () => {
    const payload = pattern(16384, 1);
    for (const ownsInput of [false, true]) {
      const bytes = frame({ opcode: 2, payload, mask: Uint8Array.of(0xf1, 2, 3, 0x84) });
      const original = Buffer.from(bytes);
      const rec = recordingParser({ side: 'server', ownsInput });
      pushSplit(rec.parser, bytes, [1, 5, 9, 10, 4097, 4098, 9999, 16000]);
      expect(rec.pieces).toEqual([{ opcode: 2, first: true, last: true, length: 16384 }]);
      expect(rec.messages[0]!.data.equals(payload)).toBe(true);
      if (!ownsInput) expect(bytes.equals(original)).toBe(true);
      expect(rec.parser.atRest).toBe(true);
    }
  });

  test('byte-at-a-time input of a masked 300-byte frame is one piece', () => {
    const bytes = frame({ opcode: 1, payload: Buffer.alloc(300, 0x61), mask: Uint8Array.of(1, 2, 3, 4) });
    const rec = recordingParser({ side: 'server' });
    pushSplit(rec.parser, bytes, Array.from({ length: bytes.length }, (_, i) => i));
    expect(rec.pieces).toEqual([{ opcode: 1, first: true, last: true, length: 300 }]);
    expect(rec.messages[0]!.data.equals(Buffer.alloc(300, 0x61))).toBe(true);
  });

  test('while a frame is being gathered the parser is not at rest; discard() drops it', () => {
    const bytes = frame({ opcode: 2, payload: pattern(5000, 3), mask: Uint8Array.of(5, 6, 7, 8) });
    const rec = recordingParser({ side: 'server' });
    rec.parser.push(bytes.subarray(0, 2000));
    expect(rec.pieces).toEqual([]);
    expect(rec.parser.atRest).toBe(false);
    rec.parser.discard();
    rec.parser.push(bytes.subarray(2000));
    expect(rec.pieces).toEqual([]);
    expect(rec.parser.failed).toBe(true);
  });

  test('each spanning frame of a fragmented message is one piece; control frames between them come in order', () => {
    const a = pattern(3000, 4);
    const b = pattern(5000, 5);
    const key = Uint8Array.of(9, 9, 1, 0x80);
    const bytes = Buffer.concat([
      frame({ opcode: 2, fin: false, payload: a, mask: key }),
      frame({ opcode: 9, payload: Buffer.from('hi'), mask: key }),
      frame({ opcode: 0, payload: b, mask: key }),
    ]);
    const rec = recordingParser({ side: 'server' });
    pushSplit(rec.parser, bytes, [100, 2000, 3005, 3010, 4000, 7000]);
    expect(rec.pieces).toEqual([
      { opcode: 2, first: true, last: false, length: 3000 },
      { opcode: 2, first: false, last: true, length: 5000 },
    ]);
    expect(rec.controls.map((c) => c.payload.toString())).toEqual(['hi']);
    expect(rec.messages[0]!.data.equals(Buffer.concat([a, b]))).toBe(true);
  });

  test('a frame of exactly GATHER_MAX bytes cut in three is still one piece', () => {
    const payload = pattern(GATHER_MAX, 9);
    const rec = recordingParser({ side: 'client' });
    pushSplit(rec.parser, frame({ opcode: 2, payload }), [20000, 40000]);
    expect(rec.pieces).toEqual([{ opcode: 2, first: true, last: true, length: GATHER_MAX }]);
    expect(rec.messages[0]!.data.equals(payload)).toBe(true);
  });

  test('a frame over GATHER_MAX still comes in pieces as its bytes arrive', () => {
    const payload = pattern(GATHER_MAX + 1, 6);
    const bytes = frame({ opcode: 2, payload });
    const rec = recordingParser({ side: 'client' });
    pushSplit(rec.parser, bytes, [20000, 40000]);
    expect(rec.pieces.length).toBe(3);
    expect(rec.pieces[0]).toEqual({ opcode: 2, first: true, last: false, length: 20000 - 10 });
    expect(rec.messages[0]!.data.equals(payload)).toBe(true);
  });

  test('a small frame already buffered across chunks while paused is still one piece', () => {
    const payload = pattern(3000, 8);
    const bytes = Buffer.concat([frame({ opcode: 2, payload: 'x' }), frame({ opcode: 2, payload })]);
    const parser = new FrameParser({ side: 'client' }, {
      onData: (_o, _c, p, first, last) => {
        pieces.push({ length: p.length, first, last });
        parser.paused = true;
      },
      onControl: () => undefined,
      onError: (e) => {
        throw e;
      },
    });
    const pieces: Array<{ length: number; first: boolean; last: boolean }> = [];
    // The first frame pauses the parser; the second one's bytes then arrive in two chunks.
    parser.push(bytes.subarray(0, 1000));
    parser.push(bytes.subarray(1000));
    parser.resume();
    expect(pieces).toEqual([
      { length: 1, first: true, last: true },
      { length: 3000, first: true, last: true },
    ]);
  });

  test('gathered frames do not share bytes: a message kept while later ones are gathered stays intact', () => {
    const kept: Buffer[] = [];
    const parser = new FrameParser({ side: 'client' }, {
      onData: (_o, _c, p) => kept.push(p),
      onControl: () => undefined,
      onError: (e) => {
        throw e;
      },
    });
    const payloads = Array.from({ length: 40 }, (_, i) => pattern(1000 + i * 397, i));
    for (const payload of payloads) pushSplit(parser, frame({ opcode: 2, payload }), [7]);
    expect(kept).toHaveLength(payloads.length);
    kept.forEach((k, i) => expect(k.equals(payloads[i]!)).toBe(true));
  });
});

describe('per-parser footprint (bits and shared settings behave as the fields they replace)', () => {
  const key = Uint8Array.of(0xf2, 0x34, 0x56, 0x78); // top bit set: the key is kept as a signed integer

  test('a parser holds at most 14 own fields; side and limits are not copied into each', () => {
    const a = new FrameParser({ side: 'server', maxMessageSize: 1000, ownsInput: true }, { onData() {}, onControl() {}, onError() {} });
    expect(Reflect.ownKeys(a).length).toBeLessThanOrEqual(14);
    expect(Object.prototype.hasOwnProperty.call(a, 'paused')).toBe(false);
  });

  test('paused reads and writes through its accessor, and pausing leaves the frame state alone', () => {
    const rec = recordingParser({ side: 'server' });
    expect(rec.parser.paused).toBe(false);
    rec.parser.push(frame({ opcode: 2, payload: Buffer.alloc(10, 1), fin: false, mask: key }));
    rec.parser.paused = true;
    expect(rec.parser.paused).toBe(true);
    expect(rec.parser.inMessage).toBe(true);
    rec.parser.push(frame({ opcode: 0, payload: Buffer.alloc(5, 2), mask: key }));
    expect(rec.messages).toEqual([]);
    rec.parser.resume();
    expect(rec.parser.paused).toBe(false);
    expect(rec.messages.map((m) => [m.opcode, m.data.length])).toEqual([[2, 15]]);
    expect(rec.parser.inMessage).toBe(false);
  });

  test('parsers with different limits made one after the other each keep their own', () => {
    const small = recordingParser({ side: 'server', maxMessageSize: 4 });
    const large = recordingParser({ side: 'server', maxMessageSize: 100 });
    const again = recordingParser({ side: 'server', maxMessageSize: 4 });
    const bytes = frame({ opcode: 2, payload: Buffer.alloc(10), mask: key });
    for (const rec of [small, large, again]) rec.parser.push(Buffer.from(bytes));
    expect(small.errors.map((e) => e.constructor)).toEqual([MessageTooBigError]);
    expect(large.messages).toHaveLength(1);
    expect(again.errors.map((e) => e.constructor)).toEqual([MessageTooBigError]);
  });

  test('a masked 64-bit-length frame, split byte by byte, unmasks with a top-bit key', () => {
    const payload = Buffer.alloc(70000);
    for (let i = 0; i < payload.length; i++) payload[i] = i & 0xff;
    const bytes = frame({ opcode: 2, payload, mask: key });
    const rec = recordingParser({ side: 'server' });
    pushSplit(rec.parser, bytes, Array.from({ length: 20 }, (_, i) => i + 1));
    expect(rec.errors).toEqual([]);
    expect(rec.messages).toHaveLength(1);
    expect(rec.messages[0]!.data.equals(payload)).toBe(true);
  });
});

describe('gatherLarge: whole uncompressed binary messages over GATHER_MAX are gathered too, once a quarter has arrived (text too, for a sink with onText)', () => {
  const pattern = (n: number, seed: number): Buffer => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = (i * 13 + seed + (i >> 9)) & 0xff;
    return b;
  };
  const SIZE = 300_000;
  const threshold = Math.ceil(SIZE / GATHER_RATIO);

  test.each([
    ['server', true],
    ['server', false],
    ['client', true],
    ['client', false],
  ] as const)('%s side (ownsInput %s): held, then gathered, then handed over as one piece; input untouched without ownsInput', (side, ownsInput) => {
    const payload = pattern(SIZE, 1);
    const bytes = frame({ opcode: 2, payload, mask: side === 'server' ? Uint8Array.of(0x81, 7, 0xfe, 3) : undefined });
    const original = Buffer.from(bytes);
    const header = bytes.length - SIZE;
    const rec = recordingParser({ side, ownsInput, gatherLarge: true });
    expect(rec.parser.gatherLarge).toBe(true);
    // Under a quarter of the frame: every byte is still buffered (nothing allocated for the frame).
    rec.parser.push(bytes.subarray(0, header + 1000));
    rec.parser.push(bytes.subarray(header + 1000, header + threshold - 1));
    expect(rec.pieces).toEqual([]);
    expect(rec.parser.bufferedAmount).toBe(threshold - 1);
    // A quarter: the bytes move into the frame's own buffer.
    rec.parser.push(bytes.subarray(header + threshold - 1, header + threshold));
    expect(rec.parser.bufferedAmount).toBe(0);
    expect(rec.pieces).toEqual([]);
    expect(rec.parser.atRest).toBe(false);
    pushSplit(rec.parser, bytes.subarray(header + threshold), [1, 4097, 65536, 100_001, 150_000]);
    expect(rec.pieces).toEqual([{ opcode: 2, first: true, last: true, length: SIZE }]);
    expect(rec.messages[0]!.data.equals(payload)).toBe(true);
    expect(rec.parser.atRest).toBe(true);
    if (!ownsInput) expect(bytes.equals(original)).toBe(true);
  });

  test('a header that announces a huge frame makes the parser hold only what was sent', () => {
    const rec = recordingParser({ side: 'client', gatherLarge: true });
    const head = frame({ opcode: 2, payload: Buffer.alloc(0), declaredLength: 64 * 1024 * 1024 });
    rec.parser.push(head);
    for (let i = 0; i < 10; i++) rec.parser.push(Buffer.alloc(100_000, i));
    expect(rec.parser.bufferedAmount).toBe(1_000_000);
    expect(rec.pieces).toEqual([]);
    expect(rec.errors).toEqual([]);
  });

  test('a frame whole in one chunk is handed over as a view of it, as before', () => {
    const payload = pattern(SIZE, 2);
    const bytes = frame({ opcode: 2, payload });
    const { parser, views: got } = viewsParser({ side: 'client', gatherLarge: true });
    parser.push(bytes);
    expect(got).toHaveLength(1);
    expect(got[0]!.buffer).toBe(bytes.buffer);
    expect(got[0]!.equals(payload)).toBe(true);
  });

  test('not gathered, pieces as the bytes arrive: text, compressed frames, fragments, and with gatherLarge off or switched off', () => {
    const payload = pattern(SIZE, 3);
    const cuts = [50_000, 120_000, 200_000];
    const firstPieceAt = (rec: ReturnType<typeof recordingParser>, bytes: Buffer): number => {
      // How many bytes had been pushed when the first piece came.
      let at = 0;
      for (const cut of [...cuts, bytes.length]) {
        rec.parser.push(bytes.subarray(at, cut));
        at = cut;
        if (rec.pieces.length > 0) return at;
      }
      return -1;
    };
    const cases: Array<[string, Buffer, Parameters<typeof recordingParser>[0], ((r: ReturnType<typeof recordingParser>) => void)?]> = [
      ['compressed', frame({ opcode: 2, rsv1: true, payload }), { side: 'client', allowRsv1: true, gatherLarge: true }],
      [
        'fragmented, large first frame',
        Buffer.concat([frame({ opcode: 2, fin: false, payload: payload.subarray(0, 250_000) }), frame({ opcode: 0, payload: payload.subarray(250_000) })]),
        { side: 'client', gatherLarge: true },
      ],
      [
        'fragmented, large last frame',
        Buffer.concat([frame({ opcode: 2, fin: false, payload: payload.subarray(0, 10) }), frame({ opcode: 0, payload: payload.subarray(10) })]),
        { side: 'client', gatherLarge: true },
      ],
      ['text', frame({ opcode: 1, payload }), { side: 'client', gatherLarge: true }],
      ['off by default', frame({ opcode: 2, payload }), { side: 'client' }],
      ['switched off', frame({ opcode: 2, payload }), { side: 'client', gatherLarge: true }, (r) => (r.parser.gatherLarge = false)],
    ];
    for (const [name, bytes, options, before] of cases) {
      const rec = recordingParser(options);
      before?.(rec);
      expect([name, firstPieceAt(rec, bytes)]).toEqual([name, cuts[0]]);
      for (let at = cuts[0]!, i = 1; i <= cuts.length; i++) {
        const end = i < cuts.length ? cuts[i]! : bytes.length;
        rec.parser.push(bytes.subarray(at, end));
        at = end;
      }
      expect([name, rec.pieces.length > 2]).toEqual([name, true]);
      expect([name, rec.messages[0]!.compressed, rec.messages[0]!.data.equals(payload)]).toEqual([name, name === 'compressed', true]);
    }
  });

  describe('text, for a sink with onText', () => {
    /** A parser whose sink records onText calls (bytes copied) and pieces; `failAt` makes onText fail the stream there. */
    const textParser = (side: 'server' | 'client', failAt = -1) => {
      const shown: Array<{ bytes: Buffer; first: boolean; final: boolean; buffered: number }> = [];
      const pieces: Buffer[] = [];
      let seen = 0;
      const parser: FrameParser = new FrameParser({ side, ownsInput: true, gatherLarge: true }, {
        onData: (_o, _c, p) => pieces.push(Buffer.from(p)),
        onControl: () => undefined,
        onError: (e) => {
          throw e;
        },
        onText: (bytes, first, final) => {
          shown.push({ bytes: Buffer.from(bytes), first, final, buffered: parser.bufferedAmount });
          if (failAt >= seen && failAt < seen + bytes.length) parser.discard();
          seen += bytes.length;
        },
      });
      return { parser, shown, pieces };
    };

    test.each(['server', 'client'] as const)('%s side: shown every byte as it arrives (while held too), then handed over whole', (side) => {
      const payload = pattern(SIZE, 5);
      const bytes = frame({ opcode: 1, payload, mask: side === 'server' ? Uint8Array.of(0xff, 0x80, 0x01, 0x7e) : undefined });
      const header = bytes.length - SIZE;
      const t = textParser(side);
      // Held (under a quarter): the bytes are shown as they come, and stay buffered.
      t.parser.push(bytes.subarray(0, header + 1001));
      t.parser.push(bytes.subarray(header + 1001, header + 30_003));
      expect(t.shown.map((c) => [c.bytes.length, c.first, c.final, c.buffered])).toEqual([
        [1001, true, false, 1001],
        [29_002, false, false, 30_003],
      ]);
      expect(t.pieces).toEqual([]);
      // Gathered from a quarter on: only what was not shown yet is shown.
      pushSplit(t.parser, bytes.subarray(header + 30_003), [threshold, threshold + 7, 200_000]);
      expect(t.pieces).toHaveLength(1);
      expect(t.pieces[0]!.equals(payload)).toBe(true);
      expect(Buffer.concat(t.shown.map((c) => c.bytes)).equals(payload)).toBe(true);
      expect(t.shown.filter((c) => c.first)).toHaveLength(1);
      expect(t.shown.map((c) => c.final)).toEqual([...t.shown.slice(1).map(() => false), true]);
      expect(t.parser.atRest).toBe(true);
    });

    test.each([
      ['while it is held', 20_000],
      ['once it is being gathered', 250_000],
    ])('a sink that fails the stream %s stops the parser: nothing handed over, the rest discarded', (_when, failAt) => {
      const payload = pattern(SIZE, 6);
      const bytes = Buffer.concat([frame({ opcode: 1, payload, mask: true }), frame({ opcode: 2, payload: 'after', mask: true })]);
      const t = textParser('server', failAt);
      pushSplit(t.parser, bytes, [10_000, 40_000, 100_000, 240_000, 260_000]);
      expect(t.parser.failed).toBe(true);
      expect(t.pieces).toEqual([]);
      const seen = t.shown.reduce((n, c) => n + c.bytes.length, 0);
      expect(seen).toBeGreaterThan(failAt);
      expect(seen).toBeLessThan(SIZE);
    });

    test('a small text frame gathered across reads: its last bytes are shown too, a failure on them hands nothing over, and one gathered whole while paused is not shown', () => {
      const bytes = frame({ opcode: 1, payload: 'abcdef' });
      const header = bytes.length - 6;
      const t = textParser('client');
      t.parser.push(bytes.subarray(0, header + 1));
      t.parser.push(bytes.subarray(header + 1));
      expect(t.shown.map((c) => [c.bytes.toString(), c.first, c.final])).toEqual([
        ['a', true, false],
        ['bcdef', false, true],
      ]);
      expect(t.pieces.map((p) => p.toString())).toEqual(['abcdef']);
      const failing = textParser('client', 5);
      failing.parser.push(bytes.subarray(0, header + 1));
      failing.parser.push(bytes.subarray(header + 1));
      expect(failing.parser.failed).toBe(true);
      expect(failing.pieces).toEqual([]);
      const paused = textParser('client');
      paused.parser.paused = true;
      paused.parser.push(bytes.subarray(0, header + 1));
      paused.parser.push(bytes.subarray(header + 1));
      paused.parser.resume();
      expect(paused.shown).toEqual([]);
      expect(paused.pieces.map((p) => p.toString())).toEqual(['abcdef']);
    });

    test('gatherLarge switched off while a text message is held: the message comes in pieces after all, every byte in them', () => {
      const payload = pattern(SIZE, 7);
      const bytes = frame({ opcode: 1, payload, mask: true });
      const t = textParser('server');
      t.parser.push(bytes.subarray(0, 40_000));
      expect(t.shown.length).toBeGreaterThan(0);
      t.parser.gatherLarge = false;
      pushSplit(t.parser, bytes.subarray(40_000), [100_000, 200_000]);
      expect(t.pieces.length).toBeGreaterThan(1);
      expect(Buffer.concat(t.pieces).equals(payload)).toBe(true);
      // And the next large text message is gathered again, shown from its first byte.
      t.parser.gatherLarge = true;
      const next = pattern(SIZE, 8);
      const before = t.shown.length;
      pushSplit(t.parser, frame({ opcode: 1, payload: next, mask: true }), [5000, 90_000]);
      expect(t.pieces.at(-1)!.equals(next)).toBe(true);
      expect(Buffer.concat(t.shown.slice(before).map((c) => c.bytes)).equals(next)).toBe(true);
      expect(t.shown[before]!.first).toBe(true);
    });

    /** The onText calls of a parser fed `stream` in the reads `cuts` makes: [bytes, first, final, done], and the pieces. */
    const showing = (side: 'server' | 'client', stream: Buffer, cuts: number[]) => {
      const calls: Array<[string, boolean, boolean, boolean]> = [];
      const pieces: Array<[number, string, boolean, boolean]> = [];
      const parser = new FrameParser({ side, ownsInput: true, gatherLarge: true, allowRsv1: true }, {
        onData: (opcode, _c, payload, first, last) => pieces.push([opcode, payload.toString('latin1'), first, last]),
        onControl: () => undefined,
        onError: (e) => {
          throw e;
        },
        onText: (bytes, first, final, done) => calls.push([bytes.toString('latin1'), first, final, done]),
      });
      pushSplit(parser, stream, cuts);
      return { calls, pieces };
    };

    test.each(['server', 'client'] as const)('%s side: a small text frame that spans reads is shown as its bytes arrive; so is a fragment, with first and final marking the message, done the frame', (side) => {
      const mask = side === 'server' ? Uint8Array.of(9, 8, 7, 6) : undefined;
      const single = frame({ opcode: 1, payload: 'abcdefghij', mask });
      const f1 = frame({ opcode: 1, fin: false, payload: 'KLMNO', mask });
      const f2 = frame({ opcode: 0, fin: false, payload: 'pq', mask });
      const f3 = frame({ opcode: 0, payload: 'RSTUV', mask });
      const stream = Buffer.concat([single, f1, f2, f3]);
      const header = single.length - 10;
      const o1 = single.length;
      const o3 = o1 + f1.length + f2.length;
      // Cut inside the single frame's payload (after 3 and 7 bytes), inside the first fragment's
      // (after 2), and inside the last one's (after 4); the second fragment lies whole in a read.
      const { calls, pieces } = showing(side, stream, [header + 3, header + 7, o1 + header + 2, o3 + header + 4]);
      expect(calls).toEqual([
        ['abc', true, false, false],
        ['defg', false, false, false],
        ['hij', false, true, true],
        ['KL', true, false, false],
        ['MNO', false, false, true],
        ['RSTU', false, false, false],
        ['V', false, true, true],
      ]);
      expect(pieces).toEqual([
        [1, 'abcdefghij', true, true],
        [1, 'KLMNO', true, false],
        [1, 'pq', false, false],
        [1, 'RSTUV', false, true],
      ]);
    });

    test('not shown: text frames that lie whole in a read, compressed text, binary, fragments over GATHER_MAX', () => {
      const big = pattern(SIZE, 9);
      const parts = [
        frame({ opcode: 1, payload: pattern(GATHER_MAX, 1) }),
        frame({ opcode: 1, rsv1: true, payload: 'compressed, as far as the parser knows' }),
        frame({ opcode: 2, payload: 'binary' }),
        frame({ opcode: 1, fin: false, payload: big }),
        frame({ opcode: 0, payload: 'end' }),
      ];
      const stream = Buffer.concat(parts);
      // Cut at each frame's end, and within the compressed text, the binary and the large fragment.
      const ends = parts.map((_, i) => parts.slice(0, i + 1).reduce((n, f) => n + f.length, 0));
      const { calls, pieces } = showing('client', stream, [...ends, ends[0]! + 5, ends[1]! + 4, ends[2]! + 100, ends[2]! + 70_000, ends[2]! + 200_000]);
      expect(calls).toEqual([]);
      expect(pieces.length).toBeGreaterThan(5);
      // And the same compressed and binary frames cut in their payload are handed over as usual.
      expect(pieces.slice(0, 3).map((p) => [p[0], p[1].length])).toEqual([[1, GATHER_MAX], [1, 38], [2, 6]]);
    });
  });

  test('switched on again, it applies from the next frame', () => {
    const payload = pattern(SIZE, 4);
    const bytes = Buffer.concat([frame({ opcode: 2, payload }), frame({ opcode: 2, payload })]);
    const rec = recordingParser({ side: 'client' });
    rec.parser.push(bytes.subarray(0, 100_000));
    rec.parser.gatherLarge = true;
    pushSplit(rec.parser, bytes.subarray(100_000), [100_000, 300_000, 400_000]);
    expect(rec.messages.map((m) => m.data.equals(payload))).toEqual([true, true]);
    // The first message came in pieces; the second in one.
    expect(rec.pieces.filter((p) => p.first && p.last)).toEqual([{ opcode: 2, first: true, last: true, length: SIZE }]);
    expect(rec.pieces.length).toBeGreaterThan(2);
  });
});
