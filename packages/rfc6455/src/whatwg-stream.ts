/**
 * `WebSocketStream`: the streams-based WebSocket client of the WHATWG proposal (whatwg/websockets
 * PR 48, shipped by Chromium and Deno, experimental in undici): `opened` gives a ReadableStream of
 * messages and a WritableStream that sends them, `closed` settles with the close code and reason.
 *
 * Unlike a `WebSocket`, it has backpressure both ways, here over TCP itself: the readable stream
 * stops reading the socket while more than `readHighWaterMark` bytes (default 1 MiB) wait in it
 * unread, and a write resolves once the message was handed to the socket (after `drain` when more
 * than `writeHighWaterMark` bytes are buffered), so `pipeTo()` is flow-controlled end to end.
 */
import { isAnyArrayBuffer } from 'node:util/types';
import { connect, type ConnectOptions } from './client.js';
import { checkClientOptions } from './check-options.js';
import { CloseCode, Defaults } from './codec/constants.js';
import { BUFFER_OVERHEAD, MESSAGE_OVERHEAD, type Message, type WebSocketConnection } from './connection.js';
import { ConnectionClosedError, WebSocketError as LibraryError } from './errors.js';
import { checkClose, checkProtocols, copyBytes, idlString, parseTarget, refusedForNoProtocol, usvString } from './web-socket.js';

/** What `closed` resolves with, and what `close()` and {@link WebSocketStreamError} take. */
export interface WebSocketCloseInfo {
  /** The close code: 1000 or 3000-4999 when given by the application. */
  closeCode?: number | undefined;
  /** The close reason, at most 123 bytes of UTF-8. Default ''. */
  reason?: string | undefined;
}

/** What `opened` resolves with. */
export interface WebSocketOpenInfo {
  /** The messages received: a string for text, a Uint8Array for binary. */
  readable: ReadableStream<string | Uint8Array>;
  /** Sends each chunk: a string as text, bytes (an ArrayBuffer or a view) as binary. */
  writable: WritableStream<string | ArrayBuffer | ArrayBufferView>;
  /** The extensions the server accepted (Sec-WebSocket-Extensions), '' if none. */
  extensions: string;
  /** The subprotocol the server chose, '' if none. */
  protocol: string;
}

/**
 * Options of {@link WebSocketStream}: the standard's `protocols` and `signal`, and (a Node
 * addition) every `connect()` option: headers, origin, tls, agent, perMessageDeflate, limits...
 */
export interface WebSocketStreamInit extends Omit<ConnectOptions, 'protocols' | 'signal' | 'textMessages'> {
  /** Subprotocols to offer, in order of preference. */
  protocols?: Iterable<string> | undefined;
  /** Aborts the opening handshake (`opened` and `closed` reject with its reason). */
  signal?: AbortSignal | null | undefined;
}

/**
 * The close code as Chromium converts it (`close()` and `new WebSocketError()`): truncated, and
 * then refused by validateClose() as an invalid code (an InvalidAccessError) unless 1000 or
 * 3000-4999, so one outside 0-65535 is refused too; NaN and infinities become 0, refused as well.
 * (Fixed bug: taken modulo 65536, as WebIDL's plain `unsigned short` and undici do, 65536 + 4000
 * closed with 4000 and -62536 with 3000, where Chromium throws; undici throws for -62536 too.)
 */
function closeCodeOf(value: unknown): number {
  const n = Math.trunc(Number(value));
  return Number.isFinite(n) ? n : 0;
}

/** WebIDL's conversion of a WebSocketCloseInfo dictionary (undefined and null are empty). */
function closeInfoOf(value: unknown): { code: number | null; reason: string } {
  if (value === undefined || value === null) return { code: null, reason: '' };
  if (typeof value !== 'object' && typeof value !== 'function') throw new TypeError('the close info must be an object');
  const info = value as WebSocketCloseInfo;
  const code = info.closeCode === undefined ? null : closeCodeOf(info.closeCode);
  const reason = info.reason === undefined ? '' : usvString(info.reason);
  return { code, reason };
}

/**
 * The standard's checks of a close code and reason: the code 1000 or 3000-4999 (else an
 * InvalidAccessError), the reason at most 123 bytes (else a SyntaxError); a reason without a code
 * means 1000.
 */
function validateClose(code: number | null, reason: string): number | null {
  checkClose(code, reason);
  return code === null && reason !== '' ? CloseCode.Normal : code;
}

/**
 * The standard's `WebSocketError` (a DOMException named 'WebSocketError' with a close code and
 * reason), exported under this name because `WebSocketError` is this library's own error base
 * class. `WebSocketStream` rejects `closed` (and errors its streams) with one after a close that
 * was not clean; passed to the writable's `abort()` or the readable's `cancel()`, one closes the
 * connection with its code and reason (any DOMException named 'WebSocketError' does, a browser's
 * or undici's too).
 */
export class WebSocketStreamError extends DOMException {
  readonly #closeCode: number | null;
  readonly #reason: string;

  /** `init.closeCode` and `init.reason` are checked as `close()` checks them. */
  constructor(message = '', init: WebSocketCloseInfo = {}) {
    const unchecked = preset;
    preset = undefined;
    super(idlString(message), unchecked?.cause === undefined ? { name: 'WebSocketError' } : { name: 'WebSocketError', cause: unchecked.cause });
    if (unchecked !== undefined) {
      this.#closeCode = unchecked.code;
      this.#reason = unchecked.reason;
      return;
    }
    const { code, reason } = closeInfoOf(init);
    this.#closeCode = validateClose(code, reason);
    this.#reason = reason;
  }

  /** The close code, null if none. */
  get closeCode(): number | null {
    return this.#closeCode;
  }

  /** The close reason ('' if none). */
  get reason(): string {
    return this.#reason;
  }

  /** `[object WebSocketError]`. */
  get [Symbol.toStringTag](): string {
    return 'WebSocketError';
  }
}

/** What the next WebSocketStreamError is made with, unchecked (the peer's code, or 1006). */
let preset: { code: number | null; reason: string; cause: unknown } | undefined;

/** A WebSocketStreamError with any code, and the error that caused it. */
function closeError(message: string, code: number, reason: string, cause?: unknown): WebSocketStreamError {
  preset = { code, reason, cause };
  return new WebSocketStreamError(message);
}

/** WebIDL's `sequence<USVString>` (absent: empty): anything iterable but a string; else a TypeError. */
function sequenceOfStrings(value: unknown, name: string): string[] {
  if (value === undefined) return [];
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null || !(Symbol.iterator in value)) {
    throw new TypeError(`${name} must be a sequence (an array or another iterable) of strings`);
  }
  return Array.from(value as Iterable<unknown>, idlString);
}

/** Bytes to send: a view, or an ArrayBuffer (or SharedArrayBuffer) of any realm. */
function isBufferSource(chunk: unknown): chunk is ArrayBuffer | ArrayBufferView {
  return ArrayBuffer.isView(chunk) || isAnyArrayBuffer(chunk);
}

/** A WebSocketError of any realm or library: a DOMException so named, with a close code. */
function isStandardWebSocketError(value: unknown): value is { closeCode: number | null; reason: string } {
  return value instanceof DOMException && value.name === 'WebSocketError' && 'closeCode' in value;
}

const noop = (): void => undefined;

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/**
 * A WebSocket client with the streams API of the WHATWG proposal. Connecting starts at
 * construction.
 *
 * ```ts
 * const wss = new WebSocketStream('wss://example.com/chat');
 * const { readable, writable } = await wss.opened;
 * const writer = writable.getWriter();
 * await writer.write('hello');
 * for await (const message of readable) console.log(message);
 * ```
 */
export class WebSocketStream {
  readonly #url: string;
  readonly #opened: Promise<WebSocketOpenInfo>;
  readonly #closed: Promise<WebSocketCloseInfo>;
  #resolveOpened!: (info: WebSocketOpenInfo) => void;
  #rejectOpened!: (error: unknown) => void;
  #resolveClosed!: (info: WebSocketCloseInfo) => void;
  #rejectClosed!: (error: unknown) => void;
  #state = CONNECTING;
  #conn: WebSocketConnection | undefined;
  readonly #abort = new AbortController();
  #readable: ReadableStreamDefaultController<string | Uint8Array> | undefined;
  #writable: WritableStreamDefaultController | undefined;
  /** Unread bytes past which the socket is not read (the connection's readHighWaterMark). */
  readonly #highWaterMark: number;

  /**
   * @param url ws: or wss: (http: and https: are taken as them); no fragment.
   * @param options `protocols`, `signal`, and (Node) every `connect()` option.
   */
  constructor(url: string | URL, options: WebSocketStreamInit | null = {}) {
    // WebIDL converts the arguments (a TypeError) before the URL and the subprotocols are checked
    // (a SyntaxError). (Fixed bug: no URL was a SyntaxError; options that were not an object, and
    // protocols that were a string or null, were taken where Chromium throws a TypeError.)
    if (arguments.length === 0) throw new TypeError('the WebSocketStream constructor needs a URL: 1 argument required, but only 0 present');
    const href = idlString(url);
    if (options !== undefined && options !== null && typeof options !== 'object' && typeof options !== 'function') {
      throw new TypeError('the WebSocketStream options must be an object');
    }
    const init = options ?? {};
    const protocols = sequenceOfStrings(init.protocols, 'protocols');
    const target = parseTarget(href);
    checkProtocols(protocols);
    // A limit or timeout out of range is a TypeError or RangeError here, as a bad URL is.
    checkClientOptions(init, 'new WebSocketStream()');
    this.#url = target.href;
    this.#highWaterMark = init.readHighWaterMark ?? Defaults.readHighWaterMark;
    this.#opened = new Promise<WebSocketOpenInfo>((resolve, reject) => {
      this.#resolveOpened = resolve;
      this.#rejectOpened = reject;
    });
    this.#closed = new Promise<WebSocketCloseInfo>((resolve, reject) => {
      this.#resolveClosed = resolve;
      this.#rejectClosed = reject;
    });
    // An application that awaits only one of them (or neither) must not get an unhandled
    // rejection (which ends a Node process): awaiting them still rejects.
    this.#opened.catch(noop);
    this.#closed.catch(noop);
    const signal = init.signal ?? undefined;
    if (signal?.aborted) {
      this.#state = CLOSED;
      this.#rejectOpened(signal.reason);
      this.#rejectClosed(signal.reason);
      return;
    }
    const onAbort = (): void => this.#giveUp(signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    // The signal only matters while connecting: its listener goes once the handshake is over, or a
    // long-lived signal shared by many streams would hold every one of them (and their connections).
    const settled = (): void => signal?.removeEventListener('abort', onAbort);
    const { protocols: _protocols, signal: _signal, ...rest } = init;
    void _protocols;
    void _signal;
    // No idle timeout unless asked for, as in a browser (connect()'s default is 300 s);
    // `idleTimeout: undefined` is not asking (fixed bug: it gave connect()'s 300 s).
    connect(target, { ...rest, idleTimeout: rest.idleTimeout ?? 0, protocols, signal: this.#abort.signal, textMessages: 'string' }).then(
      (conn) => {
        settled();
        // Offered subprotocols and none chosen: a failure here, as in browsers (connect() opens).
        const refused = this.#state === CONNECTING ? refusedForNoProtocol(conn, protocols) : undefined;
        if (refused) this.#fail(refused);
        else this.#open(conn);
      },
      (error: unknown) => {
        settled();
        this.#fail(error);
      },
    );
  }

  /** The URL, as resolved (ws: or wss:). */
  get url(): string {
    return this.#url;
  }

  /** Resolves once the connection is open, with its streams, protocol and extensions. */
  get opened(): Promise<WebSocketOpenInfo> {
    return this.#opened;
  }

  /**
   * Resolves with the close code and reason after a clean close; rejects with a
   * {@link WebSocketStreamError} (close code 1006 when the connection failed or was dropped)
   * otherwise, or with the signal's reason when the handshake was aborted.
   */
  get closed(): Promise<WebSocketCloseInfo> {
    return this.#closed;
  }

  /** (Node) The underlying connection once open (`ping()`, `closeStatus`...). */
  get connection(): WebSocketConnection | undefined {
    return this.#conn;
  }

  /**
   * Starts the closing handshake: `closeCode` 1000 or 3000-4999 (else an InvalidAccessError),
   * `reason` at most 123 bytes of UTF-8 (else a SyntaxError); a reason without a code closes with
   * 1000, neither sends a close frame without a status code (1005). While connecting, the attempt
   * is abandoned and `opened` and `closed` reject.
   */
  close(closeInfo?: WebSocketCloseInfo | null): void {
    const { code, reason } = closeInfoOf(closeInfo);
    this.#close(validateClose(code, reason), reason);
  }

  /** `[object WebSocketStream]`. */
  get [Symbol.toStringTag](): string {
    return 'WebSocketStream';
  }

  #close(code: number | null, reason: string): Promise<void> {
    if (this.#state === CONNECTING) {
      const message = 'the WebSocket was closed before it opened';
      this.#giveUp(new WebSocketStreamError(message), closeError(message, CloseCode.Abnormal, ''));
      return Promise.resolve();
    }
    const conn = this.#conn;
    if (this.#state !== OPEN || conn === undefined) return conn?.whenClosed ?? Promise.resolve();
    this.#state = CLOSING;
    return conn.close(code, reason).then(noop, noop);
  }

  /** The readable's cancel() and the writable's abort(): a WebSocketError gives code and reason. */
  #closeUsing(reason: unknown): Promise<void> {
    if (isStandardWebSocketError(reason)) {
      try {
        return this.#close(validateClose(reason.closeCode, String(reason.reason)), String(reason.reason));
      } catch {
        // A code or reason close() would refuse: close without them.
      }
    }
    return this.#close(null, '');
  }

  /**
   * Abandons the handshake: with the signal's reason (both promises), or for close() while
   * connecting with a WebSocketError without a code (`opened`) and one with 1006 (`closed`).
   */
  #giveUp(reason: unknown, closedReason: unknown = reason): void {
    if (this.#state !== CONNECTING) return;
    this.#state = CLOSED;
    this.#abort.abort(reason);
    this.#rejectOpened(reason);
    this.#rejectClosed(closedReason);
  }

  /**
   * The handshake failed: `opened` rejects with a WebSocketError without a code (the connection
   * never opened), `closed` with one whose code is 1006; both have what went wrong as their cause.
   */
  #fail(error: unknown): void {
    if (this.#state === CLOSED) return;
    this.#state = CLOSED;
    const message = error instanceof Error ? error.message : 'the WebSocket connection failed';
    preset = { code: null, reason: '', cause: error };
    this.#rejectOpened(new WebSocketStreamError(message));
    this.#rejectClosed(closeError(message, CloseCode.Abnormal, '', error));
  }

  #open(conn: WebSocketConnection): void {
    if (this.#state !== CONNECTING) {
      // Given up while the handshake was finishing.
      conn.terminate();
      return;
    }
    this.#conn = conn;
    this.#state = OPEN;
    const highWaterMark = this.#highWaterMark;
    const readable = new ReadableStream<string | Uint8Array>(
      {
        start: (controller) => {
          this.#readable = controller;
        },
        // Room in the queue again: read the socket again.
        pull: () => conn.resume(),
        cancel: (reason) => this.#closeUsing(reason),
      },
      // Bytes (a string's UTF-16 size), so that TCP holds the peer back once this much is unread,
      // and a fixed cost a message, as the connection's own queue counts (fixed bug: empty
      // messages counted 0, and a flood of them was read and queued without end), a binary one
      // its object too.
      { highWaterMark, size: (chunk) => (typeof chunk === 'string' ? chunk.length * 2 + MESSAGE_OVERHEAD : chunk.byteLength + MESSAGE_OVERHEAD + BUFFER_OVERHEAD) },
    );
    const writable = new WritableStream<string | ArrayBuffer | ArrayBufferView>({
      start: (controller) => {
        this.#writable = controller;
      },
      write: (chunk) => this.#write(conn, chunk),
      // Resolves once the closing handshake is over.
      close: () => this.#close(null, ''),
      abort: (reason) => this.#closeUsing(reason),
    });
    conn.on('message', (data: Message, binary: boolean) => this.#message(conn, data, binary));
    conn.on('close', () => this.#ended(conn));
    this.#resolveOpened({ readable, writable, extensions: conn.extensions, protocol: conn.protocol });
    if (conn.closed) queueMicrotask(() => this.#ended(conn));
  }

  #message(conn: WebSocketConnection, data: Message, binary: boolean): void {
    // Once our closing handshake has started, messages are not delivered (as in a WebSocket).
    const controller = this.#readable;
    if (this.#state !== OPEN || controller === undefined) return;
    const bytes = data as Buffer;
    try {
      controller.enqueue(binary ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : (data as string));
    } catch {
      // The readable was cancelled: the connection is closing.
      return;
    }
    // Full: the rest of the socket read waits in the engine, unparsed, not in the connection's
    // queue (which would hold up to readHighWaterMark more).
    if ((controller.desiredSize ?? 1) <= 0) conn.pauseHolding();
  }

  async #write(conn: WebSocketConnection, chunk: unknown): Promise<void> {
    let data: string | Buffer;
    if (isBufferSource(chunk)) data = copyBytes(chunk);
    else if (typeof chunk === 'symbol') throw new TypeError('a Symbol cannot be sent');
    else data = String(chunk);
    // Once the closing handshake has started, nothing more is sent (and the write still resolves).
    if (this.#state !== OPEN) return;
    try {
      await conn.send(data, { binary: typeof data !== 'string' });
    } catch (error) {
      if (!(error instanceof ConnectionClosedError)) throw error;
    }
  }

  #ended(conn: WebSocketConnection): void {
    if (this.#state === CLOSED) return;
    this.#state = CLOSED;
    // As a WebSocket reports it: a connection we failed (the peer broke the protocol, a limit, a
    // timeout) or one dropped without a closing handshake is not clean, and counts as 1006.
    const failed = conn.error instanceof LibraryError;
    const code = conn.closeStatus ?? CloseCode.NoStatus;
    if (failed || code === CloseCode.Abnormal) {
      const error = closeError(failed ? conn.error!.message : 'the connection was closed without a closing handshake', CloseCode.Abnormal, '', conn.error);
      try {
        this.#readable?.error(error);
      } catch {
        // (already closed or errored)
      }
      this.#writable?.error(error);
      this.#rejectClosed(error);
      return;
    }
    const reason = conn.closeReason ?? '';
    try {
      this.#readable?.close();
    } catch {
      // The readable was cancelled.
    }
    this.#writable?.error(new DOMException('a closed WebSocketStream cannot be written to', 'InvalidStateError'));
    this.#resolveClosed({ closeCode: code, reason });
  }
}
