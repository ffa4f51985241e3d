/**
 * A FrameParser with a recording sink: whole messages are reassembled from pieces, control frames
 * and the (single) error are kept, so tests assert on what the parser reported.
 */
import { FrameParser, type FrameParserOptions } from '../../src/codec/frame-parser.js';
import type { WebSocketError } from '../../src/errors.js';

export interface Recorded {
  messages: Array<{ opcode: number; compressed: boolean; data: Buffer }>;
  controls: Array<{ opcode: number; payload: Buffer }>;
  errors: WebSocketError[];
  /** Every piece, in order, as reported. */
  pieces: Array<{ opcode: number; first: boolean; last: boolean; length: number }>;
  parser: FrameParser;
}

export function recordingParser(options: FrameParserOptions): Recorded {
  const rec: Omit<Recorded, 'parser'> = { messages: [], controls: [], errors: [], pieces: [] };
  let parts: Buffer[] = [];
  const parser = new FrameParser(options, {
    onData(opcode, compressed, payload, first, last) {
      rec.pieces.push({ opcode, first, last, length: payload.length });
      if (first) parts = [];
      // Copy: views of pushed chunks stay valid, but tests may reuse their buffers.
      parts.push(Buffer.from(payload));
      if (last) rec.messages.push({ opcode, compressed, data: Buffer.concat(parts) });
    },
    onControl(opcode, payload) {
      rec.controls.push({ opcode, payload: Buffer.from(payload) });
    },
    onError(error) {
      rec.errors.push(error);
    },
  });
  return Object.assign(rec, { parser });
}

/** A parser whose sink keeps every data piece as given (views, not copies) and throws on an error. */
export function viewsParser(options: FrameParserOptions): { parser: FrameParser; views: Buffer[] } {
  const views: Buffer[] = [];
  const parser = new FrameParser(options, {
    onData: (_opcode, _compressed, payload) => views.push(payload),
    onControl: () => undefined,
    onError: (error) => {
      throw error;
    },
  });
  return { parser, views };
}

/** Pushes `bytes` cut at the given offsets (sorted, within range). */
export function pushSplit(parser: FrameParser, bytes: Buffer, cuts: readonly number[]): void {
  let at = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    if (cut <= at || cut >= bytes.length) continue;
    parser.push(bytes.subarray(at, cut));
    at = cut;
  }
  parser.push(bytes.subarray(at));
}
