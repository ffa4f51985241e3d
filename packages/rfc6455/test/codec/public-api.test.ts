/**
 * `rfc6455/codec` as a user building WebSockets over their own transport sees it: only its public
 * exports. The parser's and close-payload errors can be told apart with classes the codec itself
 * exports, and carry the close code to send.
 */
import { FrameParser, InvalidUtf8Error, MessageTooBigError, ProtocolError, WebSocketError, encodeFrame, parseClosePayload } from 'rfc6455/codec';
import { frame, hex } from '../helpers/frames.js';

/** The error a client-side parser reports for `bytes`, with its close code read straight off the sink's argument. */
function failure(bytes: Buffer, options: { maxFrameSize?: number } = {}): { error: WebSocketError; closeCode: number } {
  let found: { error: WebSocketError; closeCode: number } | undefined;
  const parser = new FrameParser({ side: 'client', ...options }, {
    onData() {},
    onControl() {},
    onError(error) {
      // Typed as ProtocolError | MessageTooBigError: closeCode is there without a cast.
      found = { error, closeCode: error.closeCode };
    },
  });
  parser.push(bytes);
  if (found === undefined) throw new Error('no error reported');
  return found;
}

describe('rfc6455/codec public API', () => {
  test('exports the error classes its parser and close-payload reader report, each with the close code to send', () => {
    const rule = failure(frame({ opcode: 3 }));
    expect(rule.error).toBeInstanceOf(ProtocolError);
    expect(rule.error).toBeInstanceOf(WebSocketError);
    expect(rule.closeCode).toBe(1002);
    expect(rule.error.message).toMatch(/reserved opcode 0x3/);

    const limit = failure(Buffer.concat(encodeFrame(2, Buffer.alloc(10))), { maxFrameSize: 9 });
    expect(limit.error).toBeInstanceOf(MessageTooBigError);
    expect(limit.closeCode).toBe(1009);

    expect(() => parseClosePayload(hex('03 e8 ff'))).toThrow(InvalidUtf8Error);
    expect(() => parseClosePayload(hex('03'))).toThrow(ProtocolError);
    let caught: unknown;
    try {
      parseClosePayload(hex('03 ed'));
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ProtocolError);
    expect(caught).toMatchObject({ closeCode: 1002, message: 'invalid close code 1005' });
  });
});
