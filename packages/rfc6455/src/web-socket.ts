/**
 * `WebSocket`: the browser's WebSocket API (the WHATWG WebSockets Standard,
 * https://websockets.spec.whatwg.org/#the-websocket-interface) as a client over `connect()`, for
 * code written against the browser API and for libraries that take a WebSocket constructor
 * (graphql-ws's `webSocketImpl`, reconnecting clients...). It is an `EventTarget` with `open`,
 * `message` (`MessageEvent`), `error` and `close` (`CloseEvent`) events and the `on…` attributes.
 *
 * Additions to the standard, all optional: a third constructor argument (or an object in place of
 * the protocols) with every `connect()` option (headers, TLS, proxies, limits...), `binaryType`
 * `'nodebuffer'` (a Buffer, no copy), `error` events that are `ErrorEvent`s carrying the cause, and
 * `connection`, the underlying {@link WebSocketConnection} once open (ping(), sendStream()...).
 */
import { isArrayBuffer } from 'node:util/types';
import { Blob } from 'node:buffer';
import { connect, type ConnectOptions } from './client.js';
import { checkClientOptions } from './check-options.js';
import { CloseCode } from './codec/constants.js';
import type { Message, WebSocketConnection } from './connection.js';
import { HandshakeError, UnsupportedError, WebSocketError } from './errors.js';
import { isToken } from './handshake/http.js';

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/** How binary messages are handed over: `blob` (the standard's default), `arraybuffer`, or (Node) `nodebuffer`. */
export type BinaryType = 'blob' | 'arraybuffer' | 'nodebuffer';

/** What {@link WebSocket.send} takes: text, or bytes. */
export type WebSocketData = string | Blob | ArrayBuffer | ArrayBufferView;

/** The optional options of {@link WebSocket} (not in the standard): `connect()`'s, and the protocols. */
export interface WebSocketInit extends Omit<ConnectOptions, 'protocols' | 'signal' | 'textMessages'> {
  /** Subprotocols to offer (as the constructor's second argument). */
  protocols?: string | readonly string[] | undefined;
}

/** The fields every Event takes (bubbles, cancelable, composed). */
type EventInit = NonNullable<ConstructorParameters<typeof Event>[1]>;

/** Fields of a {@link CloseEvent}. */
export interface CloseEventInit extends EventInit {
  /** The close code (default 0). */
  code?: number | undefined;
  /** The close reason (default ''). */
  reason?: string | undefined;
  /** Whether the closing handshake completed (default false). */
  wasClean?: boolean | undefined;
}

/** The `close` event: the close code and reason, and whether the closing handshake completed. */
export class CloseEvent extends Event {
  /** The close code: the server's (1005 if its close frame had none), or 1006 when there was no closing handshake. */
  readonly code: number;
  /** The close reason ('' if none). */
  readonly reason: string;
  /** True when the closing handshake completed. */
  readonly wasClean: boolean;
  constructor(type: string, init: CloseEventInit = {}) {
    super(type, init);
    this.code = init.code ?? 0;
    this.reason = init.reason ?? '';
    this.wasClean = init.wasClean ?? false;
  }
}

/** Fields of an {@link ErrorEvent}. */
export interface ErrorEventInit extends EventInit {
  /** What went wrong, in words (default ''). */
  message?: string | undefined;
  /** The cause. */
  error?: unknown;
}

/** The `error` event, with what went wrong (browsers give a plain Event; this is one too). */
export class ErrorEvent extends Event {
  /** What went wrong, in words: the cause's message. */
  readonly message: string;
  /** The cause: a HandshakeError (with status, headers, body), a ProtocolError..., or the socket's error. */
  readonly error: unknown;
  constructor(type: string, init: ErrorEventInit = {}) {
    super(type, init);
    this.message = init.message ?? '';
    this.error = init.error;
  }
}

/** The `message` event (Node's global `MessageEvent`): `data` is a string, or the bytes as `binaryType` says. */
export interface MessageEvent<T = unknown> extends Event {
  /** The message: a string for text; for binary, a Blob, an ArrayBuffer or a Buffer as `binaryType` says. */
  readonly data: T;
  /** The origin of the WebSocket's URL, e.g. `ws://127.0.0.1:8080`. */
  readonly origin: string;
  /** Always ''. */
  readonly lastEventId: string;
}

const MessageEventClass = (globalThis as unknown as { MessageEvent: new (type: string, init: { data: unknown; origin: string }) => MessageEvent }).MessageEvent;

/** An `on…` attribute's value: a function called with the event (`this` the WebSocket), or null. */
export type WebSocketEventHandler<E extends Event> = ((this: WebSocket, event: E) => unknown) | null;
interface HandlerSlot {
  value: (this: WebSocket, event: Event) => unknown;
  readonly listener: (event: Event) => void;
}

/** Bytes (and Blobs still being read) that wait behind a Blob for their turn. */
interface Queued {
  data: string | Buffer | Blob;
  readonly size: number;
}

const noop = (): void => undefined;

/** WebIDL's `[Clamp] unsigned short`. */
function clampToUint16(value: unknown): number {
  const n = Number(value);
  if (Number.isNaN(n)) return 0;
  const clamped = Math.min(Math.max(n, 0), 65535);
  // Round half to even, as [Clamp] does.
  const floor = Math.floor(clamped);
  const fraction = clamped - floor;
  return fraction > 0.5 || (fraction === 0.5 && floor % 2 === 1) ? floor + 1 : floor;
}

/**
 * WebIDL's conversion of a value to a string (DOMString, USVString): as String(), but a Symbol is
 * a TypeError (String() gave 'Symbol(…)', taken as a URL or a subprotocol: a SyntaxError). @internal
 */
export function idlString(value: unknown): string {
  if (typeof value === 'symbol') throw new TypeError('a Symbol cannot be converted to a string');
  return String(value);
}

/**
 * WebIDL's conversion to a USVString (a close reason): {@link idlString}, with each lone surrogate
 * replaced by U+FFFD, as Chromium and undici convert it (fixed bug: a WebSocketStreamError kept
 * the lone surrogate in its `reason`, which the close frame carried as U+FFFD). @internal
 */
export function usvString(value: unknown): string {
  return (idlString(value) as string & { toWellFormed(): string }).toWellFormed();
}

/**
 * The URL steps of the constructor: ws/wss (http/https mapped to them), no fragment. `url` is
 * converted with {@link idlString} first. @internal
 */
export function parseTarget(url: unknown): URL {
  const text = idlString(url);
  let target: URL;
  try {
    target = new URL(text);
  } catch {
    throw new DOMException(`'${text}' is not a valid URL`, 'SyntaxError');
  }
  if (target.protocol === 'http:') target.protocol = 'ws:';
  else if (target.protocol === 'https:') target.protocol = 'wss:';
  // ws+unix: and wss+unix: (a Unix socket, as connect() takes them) are a Node addition.
  if (!/^wss?(\+unix)?:$/.test(target.protocol)) {
    throw new DOMException(`the URL's scheme must be ws or wss, not '${target.protocol.slice(0, -1)}'`, 'SyntaxError');
  }
  // An empty fragment ('#') counts too: the serialization keeps its '#'.
  if (target.href.includes('#')) throw new DOMException('the URL may not have a fragment', 'SyntaxError');
  return target;
}

/**
 * WebIDL's conversion of the WebSocket constructor's `(DOMString or sequence<DOMString>)`: a list
 * from anything iterable, else one string (null is 'null', as in a browser); a Symbol is a
 * TypeError. @internal
 */
export function protocolStrings(protocols: unknown): string[] {
  if (protocols === undefined) return [];
  const iterable = typeof protocols === 'object' && protocols !== null && Symbol.iterator in protocols;
  return iterable ? Array.from(protocols as Iterable<unknown>, idlString) : [idlString(protocols)];
}

/**
 * The Fetch standard's check of the response (establish a WebSocket connection: "If protocols is
 * not the empty list and extracting header list values given `Sec-WebSocket-Protocol` and
 * response's header list results in null, failure, or the empty byte sequence, then fail the
 * WebSocket connection"), which Chromium, undici and `ws` make and RFC 6455 alone does not (so
 * `connect()` opens). When subprotocols were offered and the server chose none, the connection is
 * dropped and the HandshakeError (WS_BAD_PROTOCOL) returned; otherwise undefined. @internal
 */
export function refusedForNoProtocol(conn: WebSocketConnection, offered: readonly string[]): HandshakeError | undefined {
  if (offered.length === 0 || conn.protocol !== '') return undefined;
  conn.terminate();
  const statusLine = conn.requestLine || undefined;
  const status = Number(/^\S+ (\d{3})/.exec(statusLine ?? '')?.[1] ?? 101);
  return new HandshakeError(`the server chose none of the subprotocols offered (${offered.join(', ')})`, status, {
    code: 'WS_BAD_PROTOCOL',
    headers: conn.headers,
    statusLine,
  });
}

/** The subprotocols of the constructor, checked (SyntaxError: not a token, or twice). @internal */
export function checkProtocols(list: readonly string[]): void {
  const seen = new Set<string>();
  for (const protocol of list) {
    // RFC 6455 §4.1: each a token; the standard: none twice (compared ignoring ASCII case).
    if (!isToken(protocol)) throw new DOMException(`'${protocol}' is not a valid subprotocol name`, 'SyntaxError');
    const key = protocol.toLowerCase();
    if (seen.has(key)) throw new DOMException(`the subprotocol '${protocol}' is given more than once`, 'SyntaxError');
    seen.add(key);
  }
}

/**
 * The standard's checks of an application's close code and reason (WebSocket.close() and
 * WebSocketStream.close()): the code 1000 or 3000-4999, else an InvalidAccessError; the reason at
 * most 123 bytes of UTF-8, else a SyntaxError. @internal
 */
export function checkClose(code: number | null, reason: string): void {
  if (code !== null && code !== CloseCode.Normal && (code < 3000 || code > 4999)) {
    throw new DOMException(`close code ${code} is neither 1000 nor in 3000-4999`, 'InvalidAccessError');
  }
  if (Buffer.byteLength(reason) > 123) throw new DOMException('the close reason is longer than 123 bytes of UTF-8', 'SyntaxError');
}

/**
 * A copy of the bytes of an ArrayBuffer (of any realm, or a SharedArrayBuffer) or a view, as the
 * standard sends them: none for a detached buffer (WebIDL's "get a copy of the bytes" gives the
 * empty byte sequence, and browsers send an empty message; fixed bug: a TypeError was thrown, as
 * a view cannot be made over a detached buffer). @internal
 */
export function copyBytes(data: ArrayBufferLike | ArrayBufferView): Buffer {
  // (A detached buffer's byteLength is 0; a DataView's own byteLength throws then.)
  if ((ArrayBuffer.isView(data) ? data.buffer : data).byteLength === 0) return Buffer.alloc(0);
  return Buffer.from(ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data));
}

/** An ArrayBuffer holding exactly `bytes`: theirs when they fill it, else a copy. */
function toArrayBuffer(bytes: Buffer): ArrayBuffer {
  const buffer = bytes.buffer as ArrayBuffer;
  if (bytes.byteOffset === 0 && bytes.byteLength === buffer.byteLength) return buffer;
  return buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}

/**
 * A WebSocket client with the browser's API. Connecting starts at construction; `send()` before
 * `open` throws, as in a browser.
 */
export class WebSocket extends EventTarget {
  /** readyState 0: connecting. */
  declare static readonly CONNECTING: 0;
  /** readyState 1: open. */
  declare static readonly OPEN: 1;
  /** readyState 2: closing. */
  declare static readonly CLOSING: 2;
  /** readyState 3: closed. */
  declare static readonly CLOSED: 3;
  /** readyState 0: connecting. */
  declare readonly CONNECTING: 0;
  /** readyState 1: open. */
  declare readonly OPEN: 1;
  /** readyState 2: closing. */
  declare readonly CLOSING: 2;
  /** readyState 3: closed. */
  declare readonly CLOSED: 3;

  static {
    const constants = { CONNECTING, OPEN, CLOSING, CLOSED };
    for (const [name, value] of Object.entries(constants)) {
      const descriptor = { value, enumerable: true, writable: false, configurable: false };
      Object.defineProperty(WebSocket, name, descriptor);
      Object.defineProperty(WebSocket.prototype, name, descriptor);
    }
  }

  readonly #url: string;
  readonly #origin: string;
  #readyState: number = CONNECTING;
  #binaryType: BinaryType = 'blob';
  #conn: WebSocketConnection | undefined;
  readonly #abort = new AbortController();
  readonly #handlers = new Map<string, HandlerSlot>();
  /** Sends waiting behind a Blob being read, in order, and their byte count. */
  #queue: Queued[] | undefined;
  #queuedBytes = 0;
  /** Bytes given to send() once closing: never sent, still counted (the standard says so). */
  #unsent = 0;
  /** Bytes given to the connection since its write buffer was last seen empty. */
  #handedOver = 0;
  /** The close frame of a close() made while a Blob was being read: it goes after the sends before it. */
  #closeAfterQueue: [code: number | null, reason: string] | undefined;
  /** A message event was dispatched in this task: the next waits for the next task (an immediate). */
  #turn = false;
  /** Messages that came in the same task as the one dispatched, waiting for the next. */
  readonly #held: Array<[data: Message, binary: boolean]> = [];
  /** The connection is paused by us (the messages after #held wait in it). */
  #pausedByUs = false;
  /** The connection closed while messages waited for their task: `close` comes after them. */
  #closeHeld = false;
  #error: unknown;
  /** A Blob given to send() could not be read: the connection is failed (error, then close 1006). */
  #blobFailed = false;

  /**
   * @param url ws: or wss: (http: and https: are taken as them); no fragment.
   * @param protocols subprotocols to offer; or (Node) the options, protocols included.
   * @param init (Node) every `connect()` option: headers, origin, tls, agent, perMessageDeflate, limits...
   */
  constructor(url: string | URL, protocols?: string | Iterable<string> | WebSocketInit, init?: WebSocketInit) {
    super();
    // WebIDL: the url is required (a TypeError, not the SyntaxError of the URL 'undefined').
    if (arguments.length === 0) throw new TypeError('the WebSocket constructor needs a URL: 1 argument required, but only 0 present');
    let options = init ?? {};
    let offered: unknown = protocols;
    if (protocols !== null && typeof protocols === 'object' && !(Symbol.iterator in protocols)) {
      options = protocols as WebSocketInit;
      offered = options.protocols;
    }
    // WebIDL converts the arguments (a TypeError) before the URL and the subprotocols are checked
    // (a SyntaxError).
    const href = idlString(url);
    const list = protocolStrings(offered);
    const target = parseTarget(href);
    checkProtocols(list);
    // A limit or timeout out of range is a TypeError or RangeError here, as a bad URL is.
    checkClientOptions(options, 'new WebSocket()');
    this.#url = target.href;
    this.#origin = target.origin;
    // No idle timeout unless asked for: a browser never closes a quiet WebSocket (connect()'s
    // default, 300 s as Racket's ws-idle-timeout, closed it with 1001 after five quiet minutes).
    // `idleTimeout: undefined` is not asking either (fixed bug: spread over the 0, it gave
    // connect() no idle timeout, so its 300 s default).
    connect(target, { ...options, idleTimeout: options.idleTimeout ?? 0, protocols: list, signal: this.#abort.signal, textMessages: 'string' }).then(
      (conn) => {
        // Offered subprotocols and none chosen: a failure here, as in browsers (connect() opens).
        const refused = this.#readyState === CONNECTING ? refusedForNoProtocol(conn, list) : undefined;
        if (refused) this.#failed(refused);
        else this.#opened(conn);
      },
      (error: unknown) => this.#failed(error),
    );
  }

  /** The URL, as resolved (ws: or wss:). */
  get url(): string {
    return this.#url;
  }
  /** CONNECTING (0), OPEN (1), CLOSING (2) or CLOSED (3). */
  get readyState(): number {
    // The closing handshake also starts when the server's close frame arrives; the messages that
    // came before it and still wait for their task are seen OPEN (the standard queues the change).
    if (this.#readyState === OPEN && !this.#turn && this.#conn!.readyState !== 'open') return CLOSING;
    return this.#readyState;
  }
  /** The subprotocol the server chose ('' if none, or until open). */
  get protocol(): string {
    return this.#conn?.protocol ?? '';
  }
  /** The extensions in use, as the server's Sec-WebSocket-Extensions header gave them ('' if none). */
  get extensions(): string {
    return this.#conn?.extensions ?? '';
  }
  /**
   * Bytes of application data given to send() and not yet handed to the network (framing not
   * counted): those waiting behind a Blob, those still in the connection's write buffer, and, once
   * closing, everything sent since (never sent; the standard has it grow).
   */
  get bufferedAmount(): number {
    const writing = this.#conn?.bufferedAmount ?? 0;
    // The write buffer holds frames (headers, control frames, compressed payloads): count at most
    // the application bytes given to it since it was last seen empty.
    if (writing === 0) this.#handedOver = 0;
    return this.#unsent + this.#queuedBytes + Math.min(this.#handedOver, writing);
  }
  /** How binary messages arrive: `'blob'` (default), `'arraybuffer'`, or (Node) `'nodebuffer'`. Other values are ignored. */
  get binaryType(): BinaryType {
    return this.#binaryType;
  }
  /** Sets how binary messages arrive from now on. */
  set binaryType(type: BinaryType) {
    if (type === 'blob' || type === 'arraybuffer' || type === 'nodebuffer') this.#binaryType = type;
  }
  /** (Node) The underlying connection once open (ping(), sendStream(), closeStatus...); undefined before. */
  get connection(): WebSocketConnection | undefined {
    return this.#conn;
  }

  /** Called with the `open` event. */
  get onopen(): WebSocketEventHandler<Event> {
    return this.#handler('open');
  }
  /** Sets the `open` handler (null removes it). */
  set onopen(handler: WebSocketEventHandler<Event>) {
    this.#setHandler('open', handler);
  }
  /** Called with each `message` event. */
  get onmessage(): WebSocketEventHandler<MessageEvent> {
    return this.#handler('message');
  }
  /** Sets the `message` handler (null removes it). */
  set onmessage(handler: WebSocketEventHandler<MessageEvent>) {
    this.#setHandler('message', handler);
  }
  /** Called with the `error` event (the connection failed; `close` follows). */
  get onerror(): WebSocketEventHandler<ErrorEvent> {
    return this.#handler('error');
  }
  /** Sets the `error` handler (null removes it). */
  set onerror(handler: WebSocketEventHandler<ErrorEvent>) {
    this.#setHandler('error', handler);
  }
  /** Called with the `close` event. */
  get onclose(): WebSocketEventHandler<CloseEvent> {
    return this.#handler('close');
  }
  /** Sets the `close` handler (null removes it). */
  set onclose(handler: WebSocketEventHandler<CloseEvent>) {
    this.#setHandler('close', handler);
  }

  /**
   * Sends a text message (a string) or a binary one (Blob, ArrayBuffer, typed array, DataView;
   * the bytes are copied now). Throws a TypeError without an argument, an InvalidStateError while
   * connecting, and UnsupportedError `WS_HYBI00_TEXT_ONLY` for binary data over hybi-00 (text
   * only; the connection stays open); once closing, the data is dropped and counted in bufferedAmount.
   */
  send(data: WebSocketData): void {
    // WebIDL: the data is required (fixed bug: send() sent the text 'undefined', where browsers
    // and undici throw a TypeError).
    if (arguments.length === 0) throw new TypeError('send() needs the data: 1 argument required, but only 0 present');
    // WebIDL converts the argument before the method's steps run: anything that is not bytes or a
    // Blob is made a string first, so a Symbol is a TypeError (and an object's toString() is
    // called) while connecting too, as in browsers and undici. (Fixed bug: the InvalidStateError
    // came first.)
    // (isArrayBuffer: an ArrayBuffer of any realm; `instanceof` missed one from a vm context or
    // a test runner's, and sent it as the text '[object ArrayBuffer]'.)
    const bytes = typeof data !== 'string' && (data instanceof Blob || isArrayBuffer(data) || ArrayBuffer.isView(data));
    const text = typeof data === 'string' ? data : bytes ? undefined : idlString(data);
    if (this.#readyState === CONNECTING) throw new DOMException('the WebSocket is still connecting', 'InvalidStateError');
    // (Fixed bug: over hybi-00 binary data was dropped without a word, the send() promise of the
    // connection rejected and ignored; conn.send() and WebSocketStream's writer reject with this.)
    if (bytes && this.#conn?.variant === 'hybi00') throw new UnsupportedError('hybi-00 connections carry text only', 'WS_HYBI00_TEXT_ONLY');
    let item: string | Buffer | Blob;
    // (WebIDL's USVString conversion: a Symbol is a TypeError; it was sent as 'Symbol(…)'.)
    if (text !== undefined) item = text;
    else if (data instanceof Blob) item = data;
    else item = copyBytes(data as ArrayBuffer | ArrayBufferView);
    const size = typeof item === 'string' ? Buffer.byteLength(item) : item instanceof Blob ? item.size : item.length;
    // Once closing (ours or the server's close frame), nothing more is sent.
    if (this.#readyState !== OPEN || this.#conn!.readyState !== 'open') {
      this.#unsent += size;
      return;
    }
    const conn = this.#conn!;
    if (this.#queue === undefined && !(item instanceof Blob)) {
      this.#write(conn, item, size);
      return;
    }
    // A Blob is read first; what is sent after it waits for it, so that messages keep their order.
    const entry: Queued = { data: item, size };
    (this.#queue ??= []).push(entry);
    this.#queuedBytes += size;
    if (item instanceof Blob) {
      item.arrayBuffer().then(
        (bytes) => {
          entry.data = Buffer.from(bytes);
          this.#flushQueue();
        },
        (error: unknown) => {
          // Chromium fails the WebSocket (an error event, then close 1006, not clean); the server
          // is told 1011. (Fixed bug: the close was clean, with the server's 1011 and no error
          // event, so the application never learnt that its message was not sent.)
          this.#error ??= error;
          this.#blobFailed = true;
          conn.close(CloseCode.InternalError, 'a Blob could not be read').catch(noop);
        },
      );
    }
  }

  /**
   * Starts the closing handshake: `code` 1000 or 3000-4999 (else an InvalidAccessError), `reason`
   * at most 123 bytes of UTF-8 (else a SyntaxError). Without a code, the close frame has no status
   * code (the server sees 1005) unless there is a reason ('' is none), which goes with 1000. What
   * was sent before goes out first. While connecting, the attempt is abandoned (error, then close 1006).
   */
  close(code?: number, reason?: string): void {
    const status = code === undefined ? undefined : clampToUint16(code);
    const text = reason === undefined ? '' : usvString(reason);
    checkClose(status ?? null, text);
    if (this.#readyState === CLOSING || this.#readyState === CLOSED) return;
    this.#readyState = CLOSING;
    if (this.#conn === undefined) {
      this.#abort.abort();
      return;
    }
    // The standard: no code and no reason (or an empty one), no status in the close frame.
    const frameCode = status ?? (text === '' ? null : CloseCode.Normal);
    // What was sent before close() goes out before the close frame, Blobs still being read too
    // (they were dropped, with everything sent after them).
    if (this.#queue !== undefined) this.#closeAfterQueue = [frameCode, text];
    else this.#sendClose(this.#conn, frameCode, text);
  }

  /** `[object WebSocket]`. */
  get [Symbol.toStringTag](): string {
    return 'WebSocket';
  }

  #opened(conn: WebSocketConnection): void {
    if (this.#readyState !== CONNECTING) {
      // close() came while the handshake was finishing.
      conn.terminate();
      this.#closeEvents(CloseCode.Abnormal, '', false, true);
      return;
    }
    this.#conn = conn;
    this.#readyState = OPEN;
    conn.on('message', (data, binary) => this.#message(data, binary));
    conn.on('close', () => this.#closed(conn));
    // Messages that came with the handshake response reach the listener above after this event;
    // a connection already closed is reported after them.
    this.dispatchEvent(new Event('open'));
    if (conn.closed) queueMicrotask(() => this.#closed(conn));
  }

  #failed(error: unknown): void {
    this.#error = error;
    this.#closeEvents(CloseCode.Abnormal, '', false, true);
  }

  /**
   * The standard has each message event fired in a task of its own, so the microtasks its
   * listeners queue (an awaiting reader taking the next message) run before the next one: a
   * message that comes in the same task as the last dispatched waits for an immediate, and the
   * connection, paused, keeps the rest (it was dispatched at once: a reader awaiting one message
   * at a time missed all but the first of those that came in one read).
   */
  #message(data: Message, binary: boolean): void {
    if (this.#readyState !== OPEN) return;
    if (this.#turn) {
      this.#held.push([data, binary]);
      this.#pausedByUs = true;
      this.#conn!.pause();
      return;
    }
    this.#deliver(data, binary);
  }

  /** The next task: the message held, else those the paused connection kept, else the close held. */
  readonly #nextTurn = (): void => {
    this.#turn = false;
    // (Those not delivered, once close() was called, take no task.)
    while (this.#held.length > 0) {
      const [data, binary] = this.#held.shift()!;
      this.#deliver(data, binary);
      if (this.#turn) return;
    }
    if (this.#pausedByUs) {
      this.#pausedByUs = false;
      // Hands over the next message it kept, if any (and pauses again at the one after).
      this.#conn!.resume();
      if (this.#turn) return;
    }
    if (this.#closeHeld) {
      this.#closeHeld = false;
      this.#closed(this.#conn!);
    }
  };

  #deliver(data: Message, binary: boolean): void {
    // The standard: once closing has started, received messages are not delivered.
    if (this.#readyState !== OPEN) return;
    this.#turn = true;
    setImmediate(this.#nextTurn);
    let value: unknown = data;
    if (binary) {
      const bytes = data as Buffer;
      value = this.#binaryType === 'arraybuffer' ? toArrayBuffer(bytes) : this.#binaryType === 'blob' ? new Blob([bytes]) : bytes;
    }
    this.dispatchEvent(new MessageEventClass('message', { data: value, origin: this.#origin }));
  }

  #closed(conn: WebSocketConnection): void {
    if (this.#readyState === CLOSED) return;
    // After the messages still waiting for their task, in a task of its own.
    if (this.#turn) {
      this.#closeHeld = true;
      return;
    }
    // A connection we failed (the peer broke the protocol, a limit, a timeout) reports 1006 and an
    // error, as a browser does; one that ended without a closing handshake (the peer dropped it)
    // reports 1006 without an error, as Chromium does.
    const failed = conn.error instanceof WebSocketError || this.#blobFailed;
    if (failed || conn.closeStatus === CloseCode.Abnormal) this.#closeEvents(CloseCode.Abnormal, '', false, failed);
    else this.#closeEvents(conn.closeStatus ?? CloseCode.NoStatus, conn.closeReason ?? '', true, false);
  }

  /** CLOSED, then `error` (when failed) and `close`. */
  #closeEvents(code: number, reason: string, wasClean: boolean, failed: boolean): void {
    this.#readyState = CLOSED;
    this.#queue = undefined;
    if (failed) {
      const error = this.#error ?? this.#conn?.error;
      const message = error instanceof Error ? error.message : 'the WebSocket connection failed';
      this.dispatchEvent(new ErrorEvent('error', { message, error }));
    }
    this.dispatchEvent(new CloseEvent('close', { code, reason, wasClean }));
  }

  #write(conn: WebSocketConnection, data: string | Buffer, size: number): void {
    this.#sawWritten(conn);
    this.#handedOver += size;
    conn.send(data, { binary: typeof data !== 'string' }).catch(noop);
  }

  /** Sends the queued items that are ready, in order, up to the first Blob still being read. */
  #flushQueue(): void {
    const queue = this.#queue;
    if (queue === undefined) return;
    const conn = this.#conn!;
    while (queue.length > 0 && !(queue[0]!.data instanceof Blob)) {
      const entry = queue.shift()!;
      this.#queuedBytes -= entry.size;
      // Sent before our close() (those after it were never queued), unless the server closed.
      if (conn.readyState === 'open') this.#write(conn, entry.data as string | Buffer, entry.size);
      else this.#unsent += entry.size;
    }
    if (queue.length > 0) return;
    this.#queue = undefined;
    const close = this.#closeAfterQueue;
    this.#closeAfterQueue = undefined;
    if (close !== undefined) this.#sendClose(conn, close[0], close[1]);
  }

  #sendClose(conn: WebSocketConnection, code: number | null, reason: string): void {
    this.#sawWritten(conn);
    conn.close(code, reason).catch(noop);
  }

  /**
   * Before we write to the connection: if its write buffer is empty, what was handed over before
   * is written, and the close frame or message now written is all the buffer holds (fixed bug:
   * unless bufferedAmount had been read while the buffer was empty, the close frame written by
   * close() long after the last message went out was counted as application bytes, 11 after
   * close(1000, 'bye')).
   */
  #sawWritten(conn: WebSocketConnection): void {
    if (conn.bufferedAmount === 0) this.#handedOver = 0;
  }

  #handler<E extends Event>(type: string): WebSocketEventHandler<E> {
    return (this.#handlers.get(type)?.value ?? null) as WebSocketEventHandler<E>;
  }

  /**
   * The `on…` attributes (HTML's event handlers): the first one set is added as a listener, where
   * the listeners then are; setting another replaces it in that place; null removes it.
   */
  #setHandler<E extends Event>(type: string, handler: WebSocketEventHandler<E>): void {
    const slot = this.#handlers.get(type);
    if (typeof handler !== 'function') {
      if (slot !== undefined) {
        this.removeEventListener(type, slot.listener);
        this.#handlers.delete(type);
      }
      return;
    }
    if (slot !== undefined) {
      slot.value = handler as HandlerSlot['value'];
      return;
    }
    const entry: HandlerSlot = {
      value: handler as HandlerSlot['value'],
      listener: (event: Event) => void entry.value.call(this, event),
    };
    this.#handlers.set(type, entry);
    this.addEventListener(type, entry.listener);
  }
}

/** The events of a {@link WebSocket}, by type. */
export interface WebSocketEventMap {
  /** The connection is open. */
  open: Event;
  /** A message arrived. */
  message: MessageEvent;
  /** The connection failed (`close` follows). */
  error: ErrorEvent;
  /** The connection is closed. */
  close: CloseEvent;
}

type AnyListener = Parameters<EventTarget['addEventListener']>[1];
type AddOptions = Parameters<EventTarget['addEventListener']>[2];
type RemoveOptions = Parameters<EventTarget['removeEventListener']>[2];

// Typed listeners for the WebSocket's own events (the methods are EventTarget's).
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface WebSocket {
  /** Adds a listener; for `open`, `message`, `error` and `close` it gets that event's type. */
  addEventListener<K extends keyof WebSocketEventMap>(type: K, listener: (this: WebSocket, event: WebSocketEventMap[K]) => unknown, options?: AddOptions): void;
  /** Adds a listener. */
  addEventListener(type: string, listener: AnyListener, options?: AddOptions): void;
  /** Removes a listener added with addEventListener. */
  removeEventListener<K extends keyof WebSocketEventMap>(type: K, listener: (this: WebSocket, event: WebSocketEventMap[K]) => unknown, options?: RemoveOptions): void;
  /** Removes a listener. */
  removeEventListener(type: string, listener: AnyListener, options?: RemoveOptions): void;
}
