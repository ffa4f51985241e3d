/**
 * Close frame payloads (RFC 6455 §5.5.1, §7.4): an optional 2-byte status code and a UTF-8 reason.
 */
import { isUtf8 } from 'node:buffer';
import { CloseCode, isValidCloseCode, MAX_CLOSE_REASON_BYTES } from './constants.js';
import { InvalidUtf8Error, ProtocolError } from '../errors.js';

export interface ClosePayload {
  /** The status code, or 1005 (no status) when the payload was empty. */
  code: number;
  reason: string;
}

/** Parses a received close payload. Throws `ProtocolError` (1002) or `InvalidUtf8Error` (1007). */
export function parseClosePayload(payload: Uint8Array): ClosePayload {
  if (payload.length === 0) return { code: CloseCode.NoStatus, reason: '' };
  // RFC 6455 §5.5.1: if there is a body, its first two bytes are the status code.
  if (payload.length === 1) throw new ProtocolError('close frame with a 1-byte payload');
  const code = (payload[0]! << 8) | payload[1]!;
  // RFC 6455 §7.4.1/§7.4.2: 1005, 1006 and 1015 MUST NOT be sent; unassigned codes are invalid.
  if (!isValidCloseCode(code)) throw new ProtocolError(`invalid close code ${code}`);
  const reasonBytes = payload.subarray(2);
  // RFC 6455 §5.5.1: the reason is UTF-8 (§8.1 applies).
  if (!isUtf8(reasonBytes)) throw new InvalidUtf8Error('invalid UTF-8 in close reason');
  return { code, reason: Buffer.from(reasonBytes.buffer, reasonBytes.byteOffset, reasonBytes.length).toString('utf8') };
}

/**
 * Checks a close code and reason as {@link encodeClosePayload} does, without building the payload
 * (a close() validates its arguments before any state changes, and encodes them once, when the
 * frame is written). Returns the reason's length in UTF-8 bytes. Throws as encodeClosePayload does.
 */
export function checkClosePayload(code: number | undefined, reason: string = ''): number {
  // Of the wrong kind, a TypeError that says so (fixed bug: close('1000') was refused with
  // "close code 1000 may not be sent", and a reason that was no string with Node's error about
  // Buffer.byteLength's argument).
  if (typeof reason !== 'string') throw new TypeError(`close reason must be a string, not ${kindOf(reason)}`);
  if (code === undefined) {
    if (reason !== '') throw new RangeError('a close reason needs a close code');
    return 0;
  }
  if (typeof code !== 'number') throw new TypeError(`close code must be a number, not ${kindOf(code)}`);
  if (!isValidCloseCode(code)) throw new RangeError(`close code ${code} may not be sent`);
  const length = Buffer.byteLength(reason);
  if (length > MAX_CLOSE_REASON_BYTES) {
    throw new RangeError(`close reason is ${length} bytes; at most ${MAX_CLOSE_REASON_BYTES} fit`);
  }
  return length;
}

/**
 * Builds a close payload. `code` undefined gives an empty payload. Throws `TypeError` for a code or
 * reason of the wrong kind, `RangeError` for a code that may not be sent or a reason longer than
 * 123 bytes (the payload must fit a control frame).
 */
export function encodeClosePayload(code: number | undefined, reason = ''): Buffer {
  const length = checkClosePayload(code, reason);
  if (code === undefined) return Buffer.alloc(0);
  const payload = Buffer.allocUnsafe(2 + length);
  payload.writeUInt16BE(code, 0);
  payload.write(reason, 2, 'utf8');
  return payload;
}

/** What a value of the wrong kind is, for an error message: `the string "1000"`, `an object`. */
function kindOf(value: unknown): string {
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (value === null) return 'null';
  const type = typeof value;
  return `${/^[aeiou]/.test(type) ? 'an' : 'a'} ${type}`;
}
