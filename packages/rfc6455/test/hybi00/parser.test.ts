import fc from 'fast-check';
import { InvalidUtf8Error, MessageTooBigError } from '../../src/errors.js';
import { HYBI00_CLOSE, Hybi00Parser, encodeHybi00Text, type Hybi00ParseError } from '../../src/codec/hybi00.js';

type Event = { type: 'message'; text: string } | { type: 'close' } | { type: 'error'; error: Hybi00ParseError };

function parserWithLog(maxMessageSize?: number): { parser: Hybi00Parser; events: Event[] } {
  const events: Event[] = [];
  const parser = new Hybi00Parser(
    {
      onMessage: (text) => events.push({ type: 'message', text }),
      onClose: () => events.push({ type: 'close' }),
      onError: (error) => events.push({ type: 'error', error }),
    },
    maxMessageSize === undefined ? {} : { maxMessageSize },
  );
  return { parser, events };
}

function parse(chunks: readonly Uint8Array[], maxMessageSize?: number): Event[] {
  const { parser, events } = parserWithLog(maxMessageSize);
  for (const c of chunks) parser.push(c);
  return events;
}

function bytes(...parts: (number | string | readonly number[] | Buffer)[]): Buffer {
  return Buffer.concat(
    parts.map((p) =>
      typeof p === 'number' ? Buffer.from([p]) : typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p),
    ),
  );
}

/** Every byte as its own chunk. */
function oneByOne(b: Buffer): Buffer[] {
  return [...b].map((x) => Buffer.from([x]));
}

/** A draft-76 §5.3 length: 7-bit groups, most significant first, continuation bit on all but the last. */
function lengthBytes(n: number): number[] {
  const groups = [n & 0x7f];
  for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128)) groups.unshift((v & 0x7f) | 0x80);
  return groups;
}

const messages = (events: Event[]): string[] => events.flatMap((e) => (e.type === 'message' ? [e.text] : []));

describe('hybi-00 parser', () => {
  test('receives a text frame, an empty frame and several frames in one chunk', () => {
    expect(parse([bytes(0x00, 'hello', 0xff, 0x00, 0xff, 0x00, 'héllo €𝄞', 0xff)])).toEqual([
      { type: 'message', text: 'hello' },
      { type: 'message', text: '' },
      { type: 'message', text: 'héllo €𝄞' },
    ]);
  });

  test('receives multi-byte UTF-8 split into one-byte chunks', () => {
    expect(parse(oneByOne(bytes(0x00, 'a€𝄞b', 0xff)))).toEqual([{ type: 'message', text: 'a€𝄞b' }]);
  });

  test('receives and checks frames longer than the short-frame ASCII path, whole or split', () => {
    const long = 'é€'.repeat(300) + 'a'.repeat(200);
    const frame = bytes(0x00, long, 0xff);
    expect(messages(parse([frame]))).toEqual([long]);
    expect(messages(parse([frame.subarray(0, 301), frame.subarray(301)]))).toEqual([long]);
    const bad = bytes(0x00, 'a'.repeat(500), [0xc3, 0x28], 0xff);
    expect(parse([bad]).map((e) => e.type === 'error' && e.error.code)).toEqual(['WS_INVALID_UTF8']);
  });

  test('accepts Uint8Array chunks that are not Buffers', () => {
    const b = bytes(0x00, 'xy', 0xff);
    expect(messages(parse([new Uint8Array(b.buffer, b.byteOffset, b.length)]))).toEqual(['xy']);
  });

  test('receives the closing frame 0xFF 0x00 and discards everything after it', () => {
    const events = parse([bytes(0x00, 'a', 0xff, 0xff, 0x00, 0x00, 'b', 0xff), bytes(0x00, 'c', 0xff)]);
    expect(events).toEqual([{ type: 'message', text: 'a' }, { type: 'close' }]);
  });

  test('closing frame split across chunks', () => {
    const { parser, events } = parserWithLog();
    parser.push(bytes(0xff));
    expect(events).toEqual([]);
    expect(parser.midFrame).toBe(true);
    parser.push(bytes(0x00));
    expect(events).toEqual([{ type: 'close' }]);
    expect(parser.done).toBe(true);
    expect(parser.midFrame).toBe(false);
  });

  test('0xFF with a zero length written in two groups is also the closing frame (draft-76 §5.3)', () => {
    expect(parse([bytes(0xff, 0x80, 0x00)])).toEqual([{ type: 'close' }]);
  });

  test('skips length-prefixed frames, including 0xFF with a non-zero length', () => {
    const payload128 = Buffer.alloc(128, 0x00); // zero bytes would look like text frames if not skipped
    const stream = bytes(0x80, 0x03, 'abc', 0x00, 'x', 0xff, 0x81, 0x81, 0x00, payload128, 0xff, 0x02, 0x00, 0xff, 0x00, 'y', 0xff, 0x90, 0x00);
    expect(messages(parse([stream]))).toEqual(['x', 'y']);
    expect(parse(oneByOne(stream))).toEqual(parse([stream]));
  });

  test('reads a low type byte other than 0x00 to 0xFF and discards the data', () => {
    expect(parse([bytes(0x01, 'ignored', 0xff, 0x7f, 0xc3, 0xff, 0x00, 'kept', 0xff)])).toEqual([
      { type: 'message', text: 'kept' },
    ]);
  });

  test.each([
    ['a lone continuation byte', [0x80]],
    ['an overlong encoding', [0xc0, 0xaf]],
    ['a surrogate', [0xed, 0xa0, 0x80]],
    ['a truncated sequence', [0xe2, 0x82]],
    ['a code point over U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
  ])('fails on %s with InvalidUtf8Error and discards later input', (_what, bad) => {
    for (const chunks of [[bytes(0x00, 'ok', bad, 0xff, 0x00, 'z', 0xff)], oneByOne(bytes(0x00, 'ok', bad, 0xff, 0x00, 'z', 0xff))]) {
      const events = parse(chunks);
      expect(events).toHaveLength(1);
      const e = events[0];
      expect(e?.type).toBe('error');
      if (e?.type === 'error') {
        expect(e.error).toBeInstanceOf(InvalidUtf8Error);
        expect(e.error.closeCode).toBe(1007);
      }
    }
  });

  test('a short frame whose only non-ASCII byte is its first is checked too', () => {
    for (const bad of [bytes(0x00, 0x80, 'a', 0xff), bytes(0x00, 0xc3, 0xff)]) {
      expect(parse([bad]).map((e) => e.type === 'error' && e.error.code)).toEqual(['WS_INVALID_UTF8']);
    }
  });

  test('invalid UTF-8 in a discarded low-type frame is not an error', () => {
    expect(parse([bytes(0x05, [0xc0, 0xaf], 0xff, 0x00, 'a', 0xff)])).toEqual([{ type: 'message', text: 'a' }]);
  });

  test('a text frame of exactly maxMessageSize bytes is delivered', () => {
    expect(messages(parse([bytes(0x00, 'abcd', 0xff)], 4))).toEqual(['abcd']);
  });

  test('a text frame over maxMessageSize fails before its end arrives', () => {
    const { parser, events } = parserWithLog(4);
    parser.push(bytes(0x00, 'abc'));
    expect(events).toEqual([]);
    parser.push(bytes('de'));
    expect(events).toHaveLength(1);
    const e = events[0];
    expect(e?.type === 'error' && e.error).toBeInstanceOf(MessageTooBigError);
    if (e?.type === 'error') expect((e.error as MessageTooBigError).limit).toBe(4);
    parser.push(bytes(0xff, 0x00, 'ok', 0xff));
    expect(events).toHaveLength(1);
    expect(parser.done).toBe(true);
  });

  test('the limit also applies to skipped and discarded frames, and a huge length never overflows', () => {
    const tooLongSkip = parse([bytes(0x80, lengthBytes(5), 'abcde')], 4);
    expect(tooLongSkip.map((e) => e.type)).toEqual(['error']);
    const endless = parse([bytes(0x80, new Array<number>(100).fill(0xff))], 1 << 20);
    expect(endless).toHaveLength(1);
    expect(endless[0]?.type === 'error' && endless[0].error).toBeInstanceOf(MessageTooBigError);
    const discard = parse([bytes(0x01, 'abcde', 0xff)], 4);
    expect(discard.map((e) => e.type)).toEqual(['error']);
  });

  test('skipped and discarded frames of exactly maxMessageSize bytes are no error, whole or split', () => {
    const stream = bytes(0x80, lengthBytes(4), 'abcd', 0x81, lengthBytes(4), [0, 0, 0, 0], 0x01, 'abcd', 0xff, 0x00, 'ok', 0xff);
    expect(parse([stream], 4)).toEqual([{ type: 'message', text: 'ok' }]);
    expect(parse(oneByOne(stream), 4)).toEqual([{ type: 'message', text: 'ok' }]);
  });

  test('midFrame tells whether the input stops inside a frame', () => {
    const { parser } = parserWithLog();
    expect(parser.midFrame).toBe(false);
    parser.push(bytes(0x00, 'partial'));
    expect(parser.midFrame).toBe(true);
    parser.push(bytes(0xff));
    expect(parser.midFrame).toBe(false);
    parser.push(bytes(0x80, 0x02, 'a'));
    expect(parser.midFrame).toBe(true);
  });

  test('encodeHybi00Text frames text and HYBI00_CLOSE is FF 00', () => {
    expect(encodeHybi00Text('hé')).toEqual(Buffer.from([0x00, 0x68, 0xc3, 0xa9, 0xff]));
    expect(encodeHybi00Text('')).toEqual(Buffer.from([0x00, 0xff]));
    expect(HYBI00_CLOSE).toEqual(Buffer.from([0xff, 0x00]));
  });
});

// A frame in a generated stream, with the events it must produce.
type Frame = { bytes: Buffer; text?: string };

const textFrame = fc.string({ unit: 'binary', maxLength: 40 }).map((s): Frame => ({ bytes: encodeHybi00Text(s), text: s }));
const skippedFrame = fc
  .tuple(fc.integer({ min: 0x80, max: 0xff }), fc.uint8Array({ maxLength: 300 }))
  .filter(([type, payload]) => !(type === 0xff && payload.length === 0))
  .map(([type, payload]): Frame => ({ bytes: bytes(type, lengthBytes(payload.length), Buffer.from(payload)) }));
const discardedFrame = fc
  .tuple(fc.integer({ min: 0x01, max: 0x7f }), fc.uint8Array({ maxLength: 40 }))
  .map(([type, payload]): Frame => ({ bytes: bytes(type, Buffer.from(payload.filter((b) => b !== 0xff)), 0xff), text: undefined }));
const frames = fc.array(fc.oneof(textFrame, skippedFrame, discardedFrame), { maxLength: 12 });

/** Split `b` at the given cut points (any positions, duplicates give empty chunks). */
function split(b: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(b.subarray(prev, p));
    prev = p;
  }
  out.push(b.subarray(prev));
  return out;
}

describe('hybi-00 parser properties', () => {
  test('any split of a valid stream gives the frames’ messages, then the close', () => {
    fc.assert(
      fc.property(frames, fc.array(fc.nat(), { maxLength: 20 }), fc.boolean(), (fs, cuts, withClose) => {
        const stream = Buffer.concat([...fs.map((f) => f.bytes), withClose ? HYBI00_CLOSE : Buffer.alloc(0)]);
        const expected: Event[] = fs.flatMap((f) => (f.text === undefined ? [] : [{ type: 'message' as const, text: f.text }]));
        if (withClose) expected.push({ type: 'close' });
        expect(parse(split(stream, cuts))).toEqual(expected);
      }),
      { numRuns: 500 },
    );
  });

  test('with onText, any split of any input gives the same events, text frames as their UTF-8 bytes', () => {
    /** Events with onText present: each message's bytes recorded (copied), then decoded for the comparison. */
    const parseBytes = (chunks: readonly Uint8Array[], max: number): Event[] => {
      const events: Event[] = [];
      const parser = new Hybi00Parser(
        {
          onMessage: () => {
            throw new Error('onMessage called although onText is present');
          },
          onText: (b) => {
            expect(Buffer.isBuffer(b)).toBe(true);
            events.push({ type: 'message', text: Buffer.from(b).toString('utf8') });
          },
          onClose: () => events.push({ type: 'close' }),
          onError: (error) => events.push({ type: 'error', error }),
        },
        { maxMessageSize: max },
      );
      for (const c of chunks) parser.push(c);
      return events;
    };
    fc.assert(
      fc.property(
        fc.oneof(frames.map((fs) => Buffer.concat(fs.map((f) => f.bytes))), fc.uint8Array({ maxLength: 200 }).map((g) => Buffer.from(g))),
        fc.array(fc.nat(), { maxLength: 20 }),
        fc.integer({ min: 1, max: 300 }),
        (stream, cuts, max) => {
          expect(parseBytes(split(stream, cuts), max)).toEqual(parse([stream], max));
        },
      ),
      { numRuns: 500 },
    );
  });

  test('one-byte chunks give the same events as one chunk, even for random garbage', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 1, max: 64 }), (garbage, max) => {
        const b = Buffer.from(garbage);
        expect(parse(oneByOne(b), max)).toEqual(parse([b], max));
      }),
      { numRuns: 500 },
    );
  });
});
