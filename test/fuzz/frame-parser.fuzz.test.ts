/**
 * Fuzzing the receive path: random bytes and mutated valid streams pushed in random chunks into
 * the FrameParser and the sans-I/O Protocol. Nothing may throw; the parser reports at most one
 * error, with a close code of 1002 or 1009; the protocol answers with one close frame whose code
 * may be sent; valid streams give the same messages however they are chunked.
 */
import fc from 'fast-check';
import { Protocol, isValidCloseCode, type ProtocolHandler } from 'rfc6455';
import { FrameParser } from '../../packages/rfc6455/src/codec/frame-parser.js';
import { decodeFrames, frame } from '../../packages/rfc6455/test/helpers/frames.js';
import { recordingParser, pushSplit } from '../../packages/rfc6455/test/helpers/parser-sink.js';
import { runs } from './runs.js';

const bytes = fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a));
const cuts = fc.array(fc.nat({ max: 700 }), { maxLength: 8 });

/** A stream of valid client frames with some bytes mutated. */
const mutatedStream = fc
  .tuple(
    fc.array(
      fc.record({
        opcode: fc.constantFrom(0, 1, 2, 8, 9, 10, 3, 11),
        fin: fc.boolean(),
        payload: fc.uint8Array({ maxLength: 200 }),
        rsv1: fc.nat({ max: 9 }).map((n) => n === 0),
      }),
      { maxLength: 6 },
    ),
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
  )
  .map(([specs, mutations]) => {
    const stream = Buffer.concat(specs.map((s) => frame({ ...s, mask: true })));
    for (const [at, value] of mutations) if (stream.length > 0) stream[at % stream.length] = value;
    return stream;
  });

describe('FrameParser under random input', () => {
  test.each(['server', 'client'] as const)('%s side: random bytes in random chunks never throw; at most one error, 1002 or 1009', (side) => {
    fc.assert(
      fc.property(fc.oneof(bytes, mutatedStream), cuts, (input, cutPoints) => {
        const rec = recordingParser({ side, maxMessageSize: 1000, maxFrameSize: 500, maxFragments: 4 });
        pushSplit(rec.parser, input, cutPoints);
        rec.parser.push(Buffer.from([0x81, 0x85])); // more input after any error is discarded
        if (rec.errors.length > 1) return false;
        const code = rec.errors[0] && (rec.errors[0] as { closeCode?: number }).closeCode;
        return rec.errors.length === 0 || code === 1002 || code === 1009;
      }),
      { numRuns: runs(300) },
    );
  });

  test('valid frame streams give the same pieces whether pushed whole or cut anywhere', () => {
    const message = fc.record({ binary: fc.boolean(), payload: fc.uint8Array({ maxLength: 300 }), fragments: fc.integer({ min: 1, max: 4 }) });
    fc.assert(
      fc.property(fc.array(message, { maxLength: 6 }), cuts, (messages, cutPoints) => {
        const parts: Buffer[] = [];
        for (const m of messages) {
          const p = Buffer.from(m.payload);
          const step = Math.ceil(p.length / m.fragments) || 1;
          const pieces: Buffer[] = [];
          for (let at = 0; at < p.length; at += step) pieces.push(p.subarray(at, at + step));
          if (pieces.length === 0) pieces.push(Buffer.alloc(0));
          // Binary only: UTF-8 is the protocol's business, not the parser's.
          pieces.forEach((piece, k) => parts.push(frame({ opcode: k === 0 ? 2 : 0, fin: k === pieces.length - 1, payload: piece, mask: true })));
        }
        const stream = Buffer.concat(parts);
        const whole = recordingParser({ side: 'server' });
        whole.parser.push(Buffer.from(stream));
        const split = recordingParser({ side: 'server' });
        pushSplit(split.parser, Buffer.from(stream), cutPoints);
        return (
          whole.errors.length === 0 &&
          split.errors.length === 0 &&
          whole.messages.length === messages.length &&
          split.messages.length === messages.length &&
          split.messages.every((m, i) => m.data.equals(Buffer.from(messages[i]!.payload)) && m.data.equals(whole.messages[i]!.data))
        );
      }),
      { numRuns: runs(300) },
    );
  });

  test('a parser never holds more than one incomplete frame header plus what was pushed', () => {
    fc.assert(
      fc.property(bytes, (input) => {
        const parser = new FrameParser({ side: 'server', maxMessageSize: 100 }, { onData() {}, onControl() {}, onError() {} });
        parser.push(input);
        return parser.bufferedAmount <= input.length;
      }),
      { numRuns: runs(300) },
    );
  });
});

describe('Protocol under random input', () => {
  test.each(['server', 'client'] as const)('%s side: never throws; any close it writes carries a code that may be sent', (side) => {
    fc.assert(
      fc.property(fc.oneof(bytes, mutatedStream), cuts, (input, cutPoints) => {
        const written: Buffer[] = [];
        let fails = 0;
        const handler: ProtocolHandler = {
          onWrite: (d) => written.push(Buffer.from(d)),
          onWritev: (h, p) => written.push(Buffer.concat([h, p])),
          onMessage: () => undefined,
          onPiece: () => undefined,
          onPing: () => undefined,
          onPong: () => undefined,
          onCloseFrame: () => undefined,
          onFail: () => fails++,
          onEnd: () => undefined,
        };
        const proto = new Protocol({ side, maxMessageSize: 1000, maxFragments: 4 }, handler);
        let at = 0;
        for (const cut of [...cutPoints].sort((a, b) => a - b)) {
          if (cut <= at || cut >= input.length) continue;
          proto.receiveData(Buffer.from(input.subarray(at, cut)));
          at = cut;
        }
        proto.receiveData(Buffer.from(input.subarray(at)));
        proto.receiveEof();
        const frames = decodeFrames(Buffer.concat(written)).frames;
        const closes = frames.filter((f) => f.opcode === 8);
        if (closes.length > 1 || fails > 1) return false;
        const close = closes[0];
        if (close && close.payload.length >= 2 && !isValidCloseCode(close.payload.readUInt16BE(0))) return false;
        // Our frames are masked exactly when we are the client (RFC 6455 §5.1).
        return frames.every((f) => f.masked === (side === 'client'));
      }),
      { numRuns: runs(300) },
    );
  });
});
