/**
 * Every failure the library reports is one of these classes, each with a stable `code`.
 *
 * ```
 * WebSocketError                       code: string
 * ├── ProtocolError                    closeCode 1002 (or 1003/1007/1008 as set)
 * │   └── InvalidUtf8Error             closeCode 1007
 * ├── MessageTooBigError               closeCode 1009
 * ├── HandshakeError                   status: HTTP status to answer / that was received
 * ├── ConnectionClosedError            the connection is closed; closeCode/closeReason as recorded
 * ├── TimeoutError                     the keepalive timer ran out (a handshake's: HandshakeError)
 * ├── UnsupportedError                 the feature is not available on this connection (e.g. hybi-00 binary)
 * └── BackpressureError                an outgoing buffer limit was reached
 * ```
 *
 * Nothing is thrown across the I/O boundary: errors raised while reading become a close frame with
 * the error's `closeCode` and are reported through the connection's `error` event and `closeStatus`.
 */

/** Base class of every error the library reports; `code` identifies the failure. */
export class WebSocketError extends Error {
  /** Stable machine-readable identifier, e.g. `WS_PROTOCOL_ERROR`. */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
  /** The class name, e.g. `ProtocolError`. */
  override get name(): string {
    return this.constructor.name;
  }
}

/** The peer broke RFC 6455 framing rules. The connection is failed with `closeCode`. */
export class ProtocolError extends WebSocketError {
  /** Close code the connection is failed with: 1002 unless the constructor was given another. */
  readonly closeCode: number;
  constructor(message: string, closeCode = 1002, code = 'WS_PROTOCOL_ERROR') {
    super(code, message);
    this.closeCode = closeCode;
  }
}

/** A text message or close reason was not valid UTF-8 (RFC 6455 §8.1): close code 1007. */
export class InvalidUtf8Error extends ProtocolError {
  constructor(message = 'invalid UTF-8 in text payload') {
    super(message, 1007, 'WS_INVALID_UTF8');
  }
}

/** A frame or message exceeded a configured size or count limit: close code 1009. */
export class MessageTooBigError extends WebSocketError {
  /** Always 1009 (message too big). */
  readonly closeCode = 1009;
  /** The limit that was exceeded: bytes for a size limit, a count for `maxFragments`. */
  readonly limit: number;
  constructor(message: string, limit: number) {
    super('WS_MESSAGE_TOO_BIG', message);
    this.limit = limit;
  }
}

/**
 * The opening handshake failed. On the server, `status` is the HTTP status we answer with
 * (400, 403, 404, 426, 431...). On the client, `status` is what the server answered (0 when no
 * valid response arrived) and `headers`/`body` carry its response.
 */
export class HandshakeError extends WebSocketError {
  /** Server: the HTTP status answered. Client: the status received (101 when the 101 failed checks, 200 when an HTTP/2 200 did), 0 when none. */
  readonly status: number;
  /** Server: extra headers of the error response (e.g. Sec-WebSocket-Version with 426). Client: the response headers. */
  readonly headers: Record<string, string | string[] | undefined>;
  /** Client: the response's status line, e.g. `HTTP/1.1 403 Forbidden`; undefined when none was received. */
  readonly statusLine: string | undefined;
  /** Client: the response body of a non-101 answer (at most its first 64 KiB); undefined otherwise. */
  body: Buffer | undefined;
  constructor(
    message: string,
    status: number,
    init: {
      code?: string | undefined;
      headers?: Record<string, string | string[] | undefined> | undefined;
      statusLine?: string | undefined;
      body?: Buffer | undefined;
      cause?: unknown;
    } = {},
  ) {
    super(init.code ?? 'WS_HANDSHAKE_FAILED', message, { cause: init.cause });
    this.status = status;
    this.headers = init.headers ?? {};
    this.statusLine = init.statusLine;
    this.body = init.body;
  }
}

/** An operation was attempted on a connection that is closing or closed. */
export class ConnectionClosedError extends WebSocketError {
  /** The connection's close code as recorded (1006 when it ended without a close frame). */
  readonly closeCode: number;
  /** The connection's close reason as recorded ('' if none). */
  readonly closeReason: string;
  /** `options.cause`: what ended the connection (a socket error, a timeout), when known. */
  constructor(closeCode: number, closeReason: string, message = 'the WebSocket connection is closed', options?: { cause?: unknown }) {
    super('WS_CLOSED', message, options);
    this.closeCode = closeCode;
    this.closeReason = closeReason;
  }
}

/**
 * A peer left a keepalive ping unanswered (`WS_KEEPALIVE_TIMEOUT`, in `conn.error` once the
 * connection is aborted). A handshake that times out is a {@link HandshakeError}
 * (`WS_HANDSHAKE_TIMEOUT`); a close timeout aborts (1006) and an idle timeout closes (1001) without
 * an error. Not what `recv({ signal: AbortSignal.timeout(ms) })` rejects with: that is the
 * signal's reason, a `DOMException` whose `name` is `'TimeoutError'`.
 */
export class TimeoutError extends WebSocketError {
  constructor(message: string, code = 'WS_TIMEOUT') {
    super(code, message);
  }
}

/** The connection's protocol variant or negotiated options do not allow the operation. */
export class UnsupportedError extends WebSocketError {
  constructor(message: string, code = 'WS_UNSUPPORTED') {
    super(code, message);
  }
}

/**
 * The peer does not read what we send: the outgoing buffer went over `maxBufferedAmount`. Code
 * `WS_SEND_BUFFER_FULL`; the connection records close code 1008 and is aborted.
 */
export class BackpressureError extends WebSocketError {
  /** Always 1008 (policy violation). */
  readonly closeCode = 1008;
  constructor(message: string) {
    super('WS_SEND_BUFFER_FULL', message);
  }
}
