/**
 * FrameParser.pushTransient: input in a buffer that is only valid during the call (the read
 * buffer that direct reads share between every connection). Whatever the parser reports or keeps
 * must not refer to it: these tests refill that buffer with garbage after every call and hold on
 * to every payload they were given, uncopied, until the end. The result must be what push() of
 * owned copies gives, however the stream is cut, whatever the frame sizes (7-, 16- and 64-bit
 * lengths, frames gathered across reads and frames delivered in pieces), and when the sink pauses
 * the parser for a while (as the protocol does while a compressed frame is inflated).
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { FrameParser, GATHER_MAX, GATHER_RATIO, type FrameParserOptions } from '../../src/codec/frame-parser.js';
import { sharedReadBuffer } from '../../src/codec/mask.js';
import { frame } from '../helpers/frames.js';

interface Report {
  /** Every data piece, as given (not copied). */
  pieces: Array<{ opcode: number; compressed: boolean; first: boolean; last: boolean; payload: Buffer }>;
  controls: Array<{ opcode: number; payload: Buffer }>;
  errors: number[];
  /** With an onText sink: per text frame it was shown, the bytes it was shown (copied), joined. */
  texts: Buffer[];
}

/**
 * A parser whose sink keeps what it is given. With `pauseEvery` > 0 it pauses the parser at every
 * that-many-th piece; `wake()` resumes it (the test calls it between reads).
 */
function keepingParser(options: FrameParserOptions, pauseEvery = 0, withText = false): { parser: FrameParser; report: Report; wake(): boolean } {
  const report: Report = { pieces: [], controls: [], errors: [], texts: [] };
  let count = 0;
  let asleep = false;
  // onText's contract, checked as it goes: `first` exactly on a message's first bytes, `final`
  // exactly on its last, and after `done` the next piece is the frame's payload, as shown.
  let shown: Buffer[] = [];
  let inMessage = false;
  let checked: { bytes: Buffer; final: boolean } | undefined;
  const onText = (bytes: Buffer, first: boolean, final: boolean, done: boolean): void => {
    expect(checked).toBeUndefined();
    expect(first).toBe(!inMessage && shown.length === 0);
    if (final) expect(done).toBe(true);
    shown.push(Buffer.from(bytes));
    if (done) {
      checked = { bytes: Buffer.concat(shown), final };
      report.texts.push(checked.bytes);
      shown = [];
    }
  };
  const onPiece = (opcode: number, payload: Buffer, last: boolean): void => {
    if (checked !== undefined) {
      expect([opcode, last, payload.equals(checked.bytes)]).toEqual([1, checked.final, true]);
      checked = undefined;
    } else {
      expect(shown).toEqual([]);
    }
    inMessage = !last;
  };
  const parser: FrameParser = new FrameParser(options, {
    ...(withText ? { onText } : {}),
    onData(opcode, compressed, payload, first, last) {
      if (withText) onPiece(opcode, payload, last);
      report.pieces.push({ opcode, compressed, first, last, payload });
      if (pauseEvery > 0 && ++count % pauseEvery === 0) {
        parser.paused = true;
        asleep = true;
      }
    },
    onControl(opcode, payload) {
      report.controls.push({ opcode, payload });
    },
    onError(error) {
      report.errors.push((error as { closeCode?: number }).closeCode ?? -1);
    },
  });
  return {
    parser,
    report,
    /** Resumes a paused parser; false when it was not paused. */
    wake() {
      if (!asleep) return false;
      asleep = false;
      parser.resume();
      return true;
    },
  };
}

/**
 * The same stream through pushTransient: cut at `cuts` (and into reads no longer than the read
 * buffer), each read copied into one reused buffer that is wiped after the call. `shared` is that
 * buffer: by default a plain one as long as the stream; the connection's is `sharedReadBuffer()`.
 */
function feedTransient(stream: Buffer, cuts: readonly number[], options: FrameParserOptions, pauseEvery: number, shared: Buffer = Buffer.alloc(stream.length + 16), withText = false): Report {
  const { parser, report, wake } = keepingParser(options, pauseEvery, withText);
  const ends = [...new Set(cuts.map((c) => c % (stream.length + 1)))].filter((c) => c > 0 && c < stream.length).sort((a, b) => a - b);
  ends.push(stream.length);
  let at = 0;
  for (const cut of ends) {
    while (at < cut) {
      const end = Math.min(cut, at + shared.length);
      stream.copy(shared, 0, at, end);
      parser.pushTransient(shared, end - at);
      shared.fill(0xee);
      at = end;
      wake();
    }
  }
  // Pauses after the last read are released too, one after the other, with nothing more to read.
  for (let i = 0; i < 100000 && wake(); i++);
  return report;
}

/** The reference: owned copies through push(), in one piece, never paused. */
function feedOwned(stream: Buffer, options: FrameParserOptions): Report {
  const { parser, report } = keepingParser(options);
  parser.push(Buffer.from(stream));
  return report;
}

/** Messages (opcode, joined payload) and controls, from the pieces as they were given. */
function summary(report: Report): string {
  const out: string[] = [];
  let parts: Buffer[] = [];
  for (const p of report.pieces) {
    if (p.first) parts = [];
    parts.push(p.payload);
    if (p.last) out.push(`m${p.opcode}${p.compressed ? 'z' : ''}:${digest(Buffer.concat(parts))}`);
  }
  for (const c of report.controls) out.push(`c${c.opcode}:${digest(c.payload)}`);
  out.push(`e:${report.errors.join(',')}`);
  return out.join('|');
}

/** Length and a hash of the bytes: short enough to read in a failure. */
function digest(bytes: Buffer): string {
  return `${bytes.length}/${createHash('sha1').update(bytes).digest('hex').slice(0, 12)}`;
}

/** Payload bytes of a given length: a pattern, so that large frames cost nothing to generate. */
function bytesOf(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return b;
}

/**
 * Frame sizes around every boundary the parser has: 7-bit, 16-bit, the slab, GATHER_MAX, 64-bit,
 * and (less often) the point where gatherLarge gathers a frame that spans several 64 KiB reads.
 */
const size = fc.oneof(
  { arbitrary: fc.integer({ min: 0, max: 130 }), weight: 4 },
  { arbitrary: fc.integer({ min: 126, max: 5000 }), weight: 4 },
  { arbitrary: fc.constantFrom(16383, 16384, 16385, GATHER_MAX - 1, GATHER_MAX, GATHER_MAX + 1), weight: 4 },
  { arbitrary: fc.integer({ min: 20000, max: 100000 }), weight: 4 },
  { arbitrary: fc.constantFrom(GATHER_MAX * GATHER_RATIO - 1, GATHER_MAX * GATHER_RATIO + 1, 300_000), weight: 1 },
);

/** Per message: its piece count, opcode and whether it was compressed. */
function shape(report: Report): Array<{ pieces: number; opcode: number; compressed: boolean }> {
  const out: Array<{ pieces: number; opcode: number; compressed: boolean }> = [];
  let n = 0;
  for (const p of report.pieces) {
    if (p.first) n = 0;
    n++;
    if (p.last) out.push({ pieces: n, opcode: p.opcode, compressed: p.compressed });
  }
  return out;
}

const spec: fc.Arbitrary<Spec> = fc.record({
  kind: fc.constantFrom('data', 'data', 'data', 'ping', 'fragmented'),
  binary: fc.boolean(),
  size,
  parts: fc.integer({ min: 2, max: 3 }),
  seed: fc.nat(255),
  rsv1: fc.nat(5).map((n) => n === 0),
});

interface Spec {
  kind: string;
  binary: boolean;
  size: number;
  parts: number;
  seed: number;
  rsv1: boolean;
}

function streamOf(specs: readonly Spec[], masked: boolean, allowRsv1: boolean): Buffer {
  const out: Buffer[] = [];
  for (const s of specs) {
    const opcode = s.binary ? 2 : 1;
    const rsv1 = allowRsv1 && s.rsv1;
    if (s.kind === 'ping') {
      out.push(frame({ opcode: 9, payload: bytesOf(Math.min(s.size, 125), s.seed), mask: masked }));
    } else if (s.kind === 'fragmented') {
      const payload = bytesOf(s.size, s.seed);
      const step = Math.ceil(payload.length / s.parts) || 1;
      const pieces: Buffer[] = [];
      for (let at = 0; at < payload.length; at += step) pieces.push(payload.subarray(at, at + step));
      if (pieces.length === 0) pieces.push(Buffer.alloc(0));
      pieces.forEach((piece, k) => {
        out.push(frame({ opcode: k === 0 ? opcode : 0, rsv1: k === 0 && rsv1, fin: k === pieces.length - 1, payload: piece, mask: masked }));
        // A control frame between fragments (allowed, RFC 6455 §5.4).
        if (k === 0 && pieces.length > 1) out.push(frame({ opcode: 10, payload: 'between', mask: masked }));
      });
    } else {
      out.push(frame({ opcode, rsv1, payload: bytesOf(s.size, s.seed), mask: masked }));
    }
  }
  return Buffer.concat(out);
}

const cuts = fc.array(fc.nat(), { maxLength: 12 });

describe('FrameParser.pushTransient', () => {
  test.each([
    ['server', true],
    ['server', false],
    ['client', true],
    ['client', false],
  ] as const)('%s side (ownsInput %s): the same as push() of owned copies, with the read buffer wiped after every call', (side, ownsInput) => {
    fc.assert(
      fc.property(fc.array(spec, { maxLength: 6 }), cuts, fc.constantFrom(0, 0, 1, 2, 3), fc.boolean(), fc.boolean(), (specs, cutPoints, pauseEvery, allowRsv1, gatherLarge) => {
        const options: FrameParserOptions = { side, ownsInput, allowRsv1, gatherLarge };
        const stream = streamOf(specs, side === 'server', allowRsv1);
        const owned = feedOwned(stream, options);
        const transient = feedTransient(stream, cutPoints, options, pauseEvery);
        expect(summary(transient)).toBe(summary(owned));
        if (gatherLarge) {
          // Whole in one chunk, every frame is one piece: an uncompressed single-frame binary
          // message is then one piece through pushTransient too, however it was cut.
          const got = shape(transient);
          shape(owned).forEach((m, i) => {
            if (m.pieces === 1 && !m.compressed && m.opcode === 2) expect([i, got[i]!.pieces]).toEqual([i, 1]);
          });
        }
      }),
      { numRuns: 150 },
    );
  });

  test.each([true, false])('server side (ownsInput %s), reads in the shared read buffer direct reads use (payloads unmasked where they lie)', (ownsInput) => {
    const shared = sharedReadBuffer();
    fc.assert(
      fc.property(fc.array(spec, { maxLength: 6 }), cuts, fc.constantFrom(0, 0, 1, 2), fc.boolean(), (specs, cutPoints, pauseEvery, gatherLarge) => {
        const options: FrameParserOptions = { side: 'server', ownsInput, allowRsv1: true, gatherLarge };
        const stream = streamOf(specs, true, true);
        expect(summary(feedTransient(stream, cutPoints, options, pauseEvery, shared))).toBe(summary(feedOwned(stream, options)));
      }),
      { numRuns: 150 },
    );
  });

  test.each([
    ['server', 'a plain buffer'],
    ['server', 'the shared read buffer'],
    ['client', 'a plain buffer'],
  ] as const)('%s side, reads in %s, sink with onText: large text messages are gathered whole too, and onText is shown each byte of a text frame that spans reads once, in order, unmasked', (side, where) => {
    const shared = where === 'a plain buffer' ? undefined : sharedReadBuffer();
    fc.assert(
      fc.property(fc.array(spec, { maxLength: 6 }), cuts, fc.constantFrom(0, 0, 1, 2), (specs, cutPoints, pauseEvery) => {
        const options: FrameParserOptions = { side, ownsInput: true, allowRsv1: true, gatherLarge: true };
        const stream = streamOf(specs, side === 'server', true);
        const owned = feedOwned(stream, options);
        const transient = feedTransient(stream, cutPoints, options, pauseEvery, shared ?? Buffer.alloc(stream.length + 16), true);
        expect(summary(transient)).toBe(summary(owned));
        // Every uncompressed single-frame message is one piece, text (gathered for onText) as
        // well as binary, however the reads cut it.
        const got = shape(transient);
        shape(owned).forEach((m, i) => {
          if (m.pieces === 1 && !m.compressed) expect([i, got[i]!.pieces]).toEqual([i, 1]);
        });
        // What onText was shown: the payloads of text frames that did not lie whole in what was
        // buffered (each checked against its piece as it came, in keepingParser), in order.
        const textPieces = transient.pieces.filter((p) => p.opcode === 1 && !p.compressed).map((p) => digest(p.payload));
        const texts = transient.texts.map(digest);
        let k = 0;
        for (const text of texts) {
          while (k < textPieces.length && textPieces[k] !== text) k++;
          expect(k).toBeLessThan(textPieces.length);
          k++;
        }
        // With reads of at most 64 KiB and no pauses, every large single-frame text message spans
        // what was buffered at each push: shown. (A paused parser may find one whole when it
        // resumes, and hands it over without showing it, as any frame that lies whole.)
        if (shared !== undefined && pauseEvery === 0) {
          const large = transient.pieces.filter((p) => p.first && p.last && p.opcode === 1 && !p.compressed && p.payload.length > GATHER_MAX);
          for (const p of large) expect(texts).toContain(digest(p.payload));
        }
      }),
      { numRuns: 150 },
    );
  });

  test('a read that holds many small frames and the start of a large one', () => {
    const frames = [...Array.from({ length: 40 }, (_, i) => frame({ opcode: 2, payload: bytesOf(i + 1, i), mask: true })), frame({ opcode: 2, payload: bytesOf(40000, 9), mask: true })];
    const stream = Buffer.concat(frames);
    const options: FrameParserOptions = { side: 'server', ownsInput: true };
    for (const cut of [1, 100, 1000, stream.length - 30000, stream.length - 1]) {
      expect(summary(feedTransient(stream, [cut], options, 0))).toBe(summary(feedOwned(stream, options)));
    }
  });

  test('limits and protocol errors are the same as through push(): 1009 for a frame over maxFrameSize, 1002 for an unmasked client frame', () => {
    const big = frame({ opcode: 2, payload: bytesOf(3000, 1), mask: true });
    const unmasked = frame({ opcode: 2, payload: bytesOf(300, 2) });
    for (const [stream, code] of [
      [Buffer.concat([frame({ opcode: 2, payload: 'ok', mask: true }), big]), 1009],
      [Buffer.concat([frame({ opcode: 1, payload: 'ok', mask: true }), unmasked]), 1002],
    ] as const) {
      const options: FrameParserOptions = { side: 'server', ownsInput: true, maxFrameSize: 2000 };
      for (const cut of [0, 3, 9, 20]) {
        const got = feedTransient(stream, cut === 0 ? [] : [cut], options, 0);
        expect(got.errors).toEqual([code]);
        expect(summary(got)).toBe(summary(feedOwned(stream, options)));
      }
    }
  });
});
