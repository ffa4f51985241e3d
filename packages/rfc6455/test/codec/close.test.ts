/**
 * Close payloads (RFC 6455 §5.5.1, §7.4): which codes may appear on the wire, 1-byte payloads,
 * UTF-8 reasons, and the encoder's refusals.
 */
import { encodeClosePayload, parseClosePayload } from '../../src/codec/close.js';
import { isValidCloseCode } from '../../src/codec/constants.js';
import { InvalidUtf8Error, ProtocolError } from '../../src/errors.js';
import { closePayload } from '../helpers/frames.js';

const INVALID = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535];
const VALID = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4000, 4999];

describe('close payloads', () => {
  test.each(INVALID)('parse rejects code %i with a 1002 ProtocolError', (code) => {
    expect(() => parseClosePayload(closePayload(code))).toThrow(ProtocolError);
    expect(isValidCloseCode(code)).toBe(false);
    expect(() => encodeClosePayload(code)).toThrow(RangeError);
  });

  test.each([1000.5, 3000.7, 4999.01, NaN, Infinity])('a code that is no integer (%d) may not be sent: RangeError (3000.7 sent 3000)', (code) => {
    expect(isValidCloseCode(code)).toBe(false);
    expect(() => encodeClosePayload(code)).toThrow(RangeError);
  });

  test.each(VALID)('parse accepts code %i and encode round-trips it', (code) => {
    expect(parseClosePayload(encodeClosePayload(code, 'bye ✓'))).toEqual({ code, reason: 'bye ✓' });
  });

  test('an empty payload is 1005 (no status), a 1-byte payload is a protocol error', () => {
    expect(parseClosePayload(Buffer.alloc(0))).toEqual({ code: 1005, reason: '' });
    expect(() => parseClosePayload(Buffer.of(0x03))).toThrow(ProtocolError);
  });

  test('every 1-byte payload is a protocol error, even one whose byte reads as a valid code with a zero low byte (0x0c: 3072)', () => {
    for (let byte = 0; byte < 256; byte++) {
      expect(() => parseClosePayload(Buffer.of(byte))).toThrow(/1-byte payload/);
    }
  });

  test('an invalid UTF-8 reason is a 1007 InvalidUtf8Error', () => {
    let error: unknown;
    try {
      parseClosePayload(closePayload(1000, Buffer.of(0xce, 0xba, 0xff)));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidUtf8Error);
    expect((error as InvalidUtf8Error).closeCode).toBe(1007);
  });

  test('encode refuses a reason over 123 bytes and a reason without a code', () => {
    expect(encodeClosePayload(1000, 'x'.repeat(123)).length).toBe(125);
    expect(() => encodeClosePayload(1000, 'x'.repeat(124))).toThrow(RangeError);
    expect(() => encodeClosePayload(1000, 'é'.repeat(62))).toThrow(RangeError);
    expect(() => encodeClosePayload(undefined, 'why')).toThrow(RangeError);
    expect(encodeClosePayload(undefined).length).toBe(0);
  });

  test('a reason that is no string is a TypeError naming its kind, with a code or without one (not the RangeError for a reason without a code)', () => {
    expect(() => encodeClosePayload(undefined, 42 as never)).toThrow(new TypeError('close reason must be a string, not a number'));
    expect(() => encodeClosePayload(1000, 42 as never)).toThrow(new TypeError('close reason must be a string, not a number'));
    expect(() => encodeClosePayload('1000' as never)).toThrow(new TypeError('close code must be a number, not the string "1000"'));
    expect(() => encodeClosePayload(1000, null as never)).toThrow(new TypeError('close reason must be a string, not null'));
    expect(() => encodeClosePayload(1000, {} as never)).toThrow(new TypeError('close reason must be a string, not an object'));
  });
});
