/**
 * Properties of FrameParser (fast-check, bounded runs): any split of a valid byte stream yields
 * the same messages and control frames; random bytes never throw out of the parser, never make it
 * hold more than one frame header plus one control payload, and never deliver more than the limits.
 */
import fc from 'fast-check';
import { FrameParser } from '../../src/codec/frame-parser.js';
import { frame } from '../helpers/frames.js';
import { recordingParser } from '../helpers/parser-sink.js';

interface Msg {
  opcode: 1 | 2;
  fragments: Uint8Array[];
  /** Index after which a ping is inserted (if within range). */
  pingAfter: number;
}

const message: fc.Arbitrary<Msg> = fc.record({
  opcode: fc.constantFrom<1 | 2>(1, 2),
  fragments: fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 4 }),
  pingAfter: fc.nat(4),
});

function encodeStream(messages: Msg[], masked: boolean): Buffer {
  const out: Buffer[] = [];
  messages.forEach((m, index) => {
    m.fragments.forEach((payload, i) => {
      // Text payloads are bytes here: the parser does not validate UTF-8 (the protocol does).
      out.push(frame({ opcode: i === 0 ? m.opcode : 0, payload, fin: i === m.fragments.length - 1, mask: masked }));
      if (i === m.pingAfter) out.push(frame({ opcode: 9, payload: `p${index}`, mask: masked }));
    });
  });
  return Buffer.concat(out);
}

function expected(messages: Msg[]): { messages: Array<[number, string]>; pings: string[] } {
  const pings: string[] = [];
  messages.forEach((m, index) => m.fragments.forEach((_f, i) => i === m.pingAfter && pings.push(`p${index}`)));
  return { messages: messages.map((m) => [m.opcode, Buffer.concat(m.fragments).toString('hex')]), pings };
}

describe('FrameParser properties', () => {
  test('any split of a valid masked stream yields the same messages and pings (server side)', () => {
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 20 }), fc.boolean(), (messages, rawCuts, owns) => {
        const bytes = encodeStream(messages, true);
        const cuts = [...new Set(rawCuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        const rec = recordingParser({ side: 'server', ownsInput: owns });
        let at = 0;
        for (const cut of [...cuts, bytes.length]) {
          if (cut < at) continue;
          // Copy each chunk so an in-place unmask cannot affect the next run's input.
          rec.parser.push(Buffer.from(bytes.subarray(at, cut)));
          at = cut;
        }
        expect(rec.errors).toEqual([]);
        const want = expected(messages);
        expect(rec.messages.map((m) => [m.opcode, m.data.toString('hex')])).toEqual(want.messages);
        expect(rec.controls.map((c) => c.payload.toString())).toEqual(want.pings);
        expect(rec.parser.bufferedAmount).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  test('one byte at a time yields the same as all at once (client side, unmasked)', () => {
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 3 }), (messages) => {
        const bytes = encodeStream(messages, false);
        const whole = recordingParser({ side: 'client' });
        whole.parser.push(bytes);
        const bytewise = recordingParser({ side: 'client' });
        for (let i = 0; i < bytes.length; i++) bytewise.parser.push(bytes.subarray(i, i + 1));
        expect(bytewise.messages).toEqual(whole.messages);
        expect(bytewise.controls).toEqual(whole.controls);
        expect(whole.messages).toHaveLength(messages.length);
      }),
      { numRuns: 100 },
    );
  });

  test('random bytes never throw, report at most one error, and stay within the limits', () => {
    const maxMessageSize = 512;
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 30 }), fc.constantFrom<'server' | 'client'>('server', 'client'), (chunks, side) => {
        let errors = 0;
        let messageBytes = 0;
        let maxDelivered = 0;
        const parser = new FrameParser(
          { side, maxMessageSize, maxFrameSize: 256, maxFragments: 8, allowRsv1: true },
          {
            onData(_opcode, _compressed, payload, first, last) {
              if (first) messageBytes = 0;
              messageBytes += payload.length;
              maxDelivered = Math.max(maxDelivered, messageBytes);
              if (last) messageBytes = 0;
            },
            onControl(_opcode, payload) {
              expect(payload.length).toBeLessThanOrEqual(125);
            },
            onError() {
              errors++;
            },
          },
        );
        for (const chunk of chunks) {
          expect(() => parser.push(Buffer.from(chunk))).not.toThrow();
          // At most a 14-byte header plus a 125-byte control payload waits for more input.
          expect(parser.bufferedAmount).toBeLessThanOrEqual(14 + 125);
        }
        expect(errors).toBeLessThanOrEqual(1);
        expect(maxDelivered).toBeLessThanOrEqual(maxMessageSize);
      }),
      { numRuns: 300 },
    );
  });

  test('frames with random header bits never throw and either parse or fail once', () => {
    fc.assert(
      fc.property(
        fc.record({
          opcode: fc.integer({ min: 0, max: 15 }),
          fin: fc.boolean(),
          rsv1: fc.boolean(),
          rsv2: fc.boolean(),
          mask: fc.boolean(),
          payload: fc.uint8Array({ maxLength: 200 }),
          lengthBits: fc.constantFrom<7 | 16 | 64 | undefined>(undefined, 16, 64),
        }),
        (spec) => {
          const bits = spec.lengthBits === 7 ? undefined : spec.lengthBits;
          if (bits === undefined && spec.payload.length > 125 && spec.opcode >= 8) return;
          const bytes = frame({ ...spec, lengthBits: bits });
          const rec = recordingParser({ side: 'server' });
          expect(() => rec.parser.push(bytes)).not.toThrow();
          expect(rec.errors.length + rec.controls.length + rec.pieces.length).toBeGreaterThan(0);
          expect(rec.errors.length).toBeLessThanOrEqual(1);
          if (rec.errors.length === 1) expect(rec.parser.failed).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});
