/**
 * Protocol constants of RFC 6455 and the predicates that enforce them.
 * @see https://www.rfc-editor.org/rfc/rfc6455
 */

/** Appended to Sec-WebSocket-Key before hashing (RFC 6455 §1.3). */
export const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Frame opcodes (RFC 6455 §5.2). */
export const Opcode = {
  /** 0x0: a later frame of a fragmented message. */
  Continuation: 0x0,
  /** 0x1: a text message (UTF-8). */
  Text: 0x1,
  /** 0x2: a binary message. */
  Binary: 0x2,
  /** 0x8: close (control frame). */
  Close: 0x8,
  /** 0x9: ping (control frame). */
  Ping: 0x9,
  /** 0xA: pong (control frame). */
  Pong: 0xa,
} as const;
/** One of the {@link Opcode} values. */
export type Opcode = (typeof Opcode)[keyof typeof Opcode];

/** Close status codes (RFC 6455 §7.4.1, plus 1012-1014 from the IANA registry). */
export const CloseCode = {
  /** 1000: normal closure. */
  Normal: 1000,
  /** 1001: the endpoint is going away (server shutdown, page navigation, idle timeout). */
  GoingAway: 1001,
  /** 1002: the peer broke the protocol. */
  ProtocolError: 1002,
  /** 1003: a data type the endpoint cannot accept. */
  UnsupportedData: 1003,
  /** 1005: reported locally when a close frame had no status; never sent. */
  NoStatus: 1005,
  /** 1006: reported locally when the connection ended without a close frame; never sent. */
  Abnormal: 1006,
  /** 1007: message data inconsistent with its type (e.g. invalid UTF-8 in text). */
  InvalidPayload: 1007,
  /** 1008: a policy was violated (e.g. the outgoing buffer limit). */
  PolicyViolation: 1008,
  /** 1009: a message or frame exceeded a size or fragment limit. */
  MessageTooBig: 1009,
  /** 1010: (client) the server did not negotiate an extension the client requires. */
  MandatoryExtension: 1010,
  /** 1011: an unexpected condition on the server (e.g. a handler threw). */
  InternalError: 1011,
  /** 1012: the service is restarting (IANA registry). */
  ServiceRestart: 1012,
  /** 1013: try again later (IANA registry). */
  TryAgainLater: 1013,
  /** 1014: a gateway or proxy got an invalid response from upstream (IANA registry). */
  BadGateway: 1014,
} as const;

/** Control frames carry at most 125 bytes of payload (RFC 6455 §5.5). */
export const MAX_CONTROL_PAYLOAD = 125;

/** A close reason fits in a control frame after the 2-byte code (RFC 6455 §5.5.1). */
export const MAX_CLOSE_REASON_BYTES = 123;

/** Default limits; every one is an option of the connection. */
export const Defaults = {
  /** Largest incoming message, in bytes: 64 MiB. */
  maxMessageSize: 64 * 1024 * 1024,
  /** Largest incoming frame, in bytes: 64 MiB (connections default `maxFrameSize` to `maxMessageSize`). */
  maxFrameSize: 64 * 1024 * 1024,
  /**
   * Most fragments in one incoming message: 2^20, enough for a message of the default largest
   * size in 64-byte fragments. (What a message holds while it arrives is about its bytes whatever
   * its fragment count: small fragments are gathered into blocks.)
   */
  maxFragments: 1024 * 1024,
  /** Largest HTTP request or response head, in bytes: 16 KiB. */
  maxHeaderSize: 16 * 1024,
  /** ms for the opening handshake: 10 s. */
  handshakeTimeout: 10_000,
  /** ms to wait for the closing handshake to finish before aborting: 5 s. */
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

/**
 * True for the control opcodes, the integers 0x8-0xF (RFC 6455 §5.5; 0xB-0xF are reserved ones);
 * false for 0x0-0x7 and for anything that is not a 4-bit opcode (fixed bug: it tested bit 3
 * alone, so 0x18, -8 and 8.5 were control opcodes).
 */
export function isControlOpcode(opcode: number): boolean {
  return Number.isInteger(opcode) && opcode >= 0x8 && opcode <= 0xf;
}

/**
 * True when `code` may appear in a close frame on the wire (RFC 6455 §7.4).
 * 1000-1003, 1007-1014 and 3000-4999; 1004-1006 and 1015 are reserved, 1016-2999 are
 * unassigned, 0-999 and 5000+ are not used. Integers only (fixed bug: `close(3000.7)` passed,
 * and 3000 was sent; the `WebSocket` class rounds as the standard says before it checks).
 */
export function isValidCloseCode(code: number): boolean {
  return (
    Number.isInteger(code) &&
    ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999))
  );
}
