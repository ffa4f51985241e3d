/**
 * Protocol constants of RFC 6455 and the predicates that enforce them.
 * @see https://www.rfc-editor.org/rfc/rfc6455
 */

/** Appended to Sec-WebSocket-Key before hashing (RFC 6455 §1.3). */
export const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Frame opcodes (RFC 6455 §5.2). */
export const Opcode = {
  Continuation: 0x0,
  Text: 0x1,
  Binary: 0x2,
  Close: 0x8,
  Ping: 0x9,
  Pong: 0xa,
} as const;
export type Opcode = (typeof Opcode)[keyof typeof Opcode];

/** Close status codes (RFC 6455 §7.4.1, plus 1012-1014 from the IANA registry). */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  UnsupportedData: 1003,
  NoStatus: 1005,
  Abnormal: 1006,
  InvalidPayload: 1007,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  MandatoryExtension: 1010,
  InternalError: 1011,
  ServiceRestart: 1012,
  TryAgainLater: 1013,
  BadGateway: 1014,
} as const;

/** Control frames carry at most 125 bytes of payload (RFC 6455 §5.5). */
export const MAX_CONTROL_PAYLOAD = 125;

/** A close reason fits in a control frame after the 2-byte code (RFC 6455 §5.5.1). */
export const MAX_CLOSE_REASON_BYTES = 123;

/** Default limits; every one is an option of the connection. */
export const Defaults = {
  maxMessageSize: 64 * 1024 * 1024,
  maxFrameSize: 64 * 1024 * 1024,
  maxFragments: 65536,
  maxHeaderSize: 16 * 1024,
  handshakeTimeout: 10_000,
  closeTimeout: 5_000,
  /** 300 s, as Racket's `ws-idle-timeout`. 0 disables it. */
  idleTimeout: 300_000,
  /** Incoming bytes held for a consumer that is not reading before the socket is paused. */
  readHighWaterMark: 1024 * 1024,
  /** Outgoing bytes buffered before `send()` waits for `drain` (the promise resolves later). */
  writeHighWaterMark: 1024 * 1024,
  /** Fragment size when a message is sent from a stream (Racket's rfc6455-stream-buffer-size). */
  streamFragmentSize: 65536,
} as const;

/** True for opcodes 0x8-0xF (RFC 6455 §5.5). */
export function isControlOpcode(opcode: number): boolean {
  return (opcode & 0x8) !== 0;
}

/**
 * True when `code` may appear in a close frame on the wire (RFC 6455 §7.4).
 * 1000-1003, 1007-1014 and 3000-4999; 1004-1006 and 1015 are reserved, 1016-2999 are
 * unassigned, 0-999 and 5000+ are not used.
 */
export function isValidCloseCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1003) ||
    (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999)
  );
}
