/**
 * Prepared messages and `broadcast`: one message sent to many connections is encoded once (a
 * string's UTF-8, the frame header, the frame itself for small payloads) and, for connections that
 * compress every message from a fresh context (permessage-deflate without context takeover in the
 * server's direction), compressed once per zlib setting instead of once per connection.
 */
import { isAnyArrayBuffer } from 'node:util/types';
import { isUtf8 } from 'node:buffer';
import { COPY_THRESHOLD, encodeUnmaskedCopy, unmaskedHeader } from './codec/frame-writer.js';
import { Opcode } from './codec/constants.js';
import { encodeUtf8 } from './codec/utf8.js';
import type { WebSocketConnection } from './connection.js';
import type { MessageExtension } from './extensions/extension.js';
import type { ProtocolHandler } from './protocol.js';

/** Options of {@link prepareMessage}. */
export interface PrepareOptions {
  /**
   * Send as a binary message. Default: binary for bytes, text for a string. `binary: false` with
   * bytes sends them as text, once checked to be UTF-8 (a TypeError otherwise).
   */
  binary?: boolean | undefined;
}

/** Options of {@link broadcast}: how the message is prepared, and whether it may be compressed. */
export interface BroadcastOptions extends PrepareOptions {
  /**
   * Compress where permessage-deflate was negotiated and the message is at or above its threshold.
   * Default true.
   */
  compress?: boolean | undefined;
}

/**
 * What goes on the wire for a payload, unmasked, as the protocol writes it (one buffer up to
 * COPY_THRESHOLD, else a header and the payload), made once for every connection. @internal
 */
export class Wire {
  #frame: Buffer | undefined;

  constructor(
    readonly opcode: number,
    readonly payload: Buffer,
    readonly rsv1: boolean,
  ) {}

  writeTo(handler: ProtocolHandler): void {
    const payload = this.payload;
    if (payload.length <= COPY_THRESHOLD) handler.onWrite((this.#frame ??= encodeUnmaskedCopy(this.opcode, payload, true, this.rsv1)));
    else handler.onWritev(unmaskedHeader(this.opcode, payload.length, true, this.rsv1), payload);
  }
}

/**
 * Rethrows the exceptions `error` listeners threw while a loop over connections went on: one as
 * it was thrown, several as an AggregateError holding them in order. @internal
 */
export function throwCollected(errors: readonly unknown[], during: string): never {
  if (errors.length === 1) throw errors[0];
  throw new AggregateError(errors, `${errors.length} 'error' listeners threw during ${during}`);
}

/**
 * A message's compressed payload under one zlib setting, made once for every connection that has
 * that setting; connections whose turn comes before it is ready wait for it. @internal
 */
export class SharedPayload {
  /** The compressed message, once ready. */
  wire: Wire | undefined;
  /** Why it could not be compressed, if it could not. */
  error: Error | undefined;
  #waiters: Array<() => void> | undefined;

  constructor(readonly opcode: number) {}

  /** Calls `waiter` once the payload is ready or failed. */
  whenSettled(waiter: () => void): void {
    (this.#waiters ??= []).push(waiter);
  }

  settle(error: Error | null, result: Buffer | undefined): void {
    if (this.wire !== undefined || this.error !== undefined) return;
    if (error !== null) this.error = error;
    else this.wire = new Wire(this.opcode, result!, true);
    const waiters = this.#waiters;
    this.#waiters = undefined;
    if (waiters === undefined) return;
    // Every waiting connection gets its turn, even after one whose write threw (an `error`
    // listener throwing at maxBufferedAmount); the exception is rethrown after them (fixed bug:
    // the loop stopped there, and the connections after it never sent the message, nor anything
    // queued behind it).
    let thrown: unknown[] | undefined;
    for (const waiter of waiters) {
      try {
        waiter();
      } catch (error) {
        (thrown ??= []).push(error);
      }
    }
    if (thrown !== undefined) throwCollected(thrown, 'a shared compression');
  }
}

/**
 * A message encoded once, to be sent to many connections: pass it to `conn.send()` or
 * {@link broadcast} as often as you like. Text is encoded to UTF-8 here, once; each connection
 * then gets the same bytes (and, unmasked, the same frame). Where a connection compresses what it
 * sends message by message from a fresh context (permessage-deflate with
 * `server_no_context_takeover`; `perMessageDeflate: { serverNoContextTakeover: true }` makes a
 * server ask for it), the compressed payload is made once per zlib setting and shared too.
 *
 * The payload is not copied: do not modify a Buffer you prepared while the message is in use.
 */
export class PreparedMessage {
  /** True for a binary message, false for text. */
  readonly binary: boolean;
  /** The payload as it goes out uncompressed: the message's bytes (UTF-8 for text). Do not modify it. */
  readonly data: Buffer;
  /** The string a text message was prepared from (hybi-00 connections send it as a string). @internal */
  readonly text: string | undefined;
  #plain: Wire | undefined;
  #compressed: Map<string, SharedPayload> | undefined;

  /** @internal Use {@link prepareMessage}. */
  constructor(binary: boolean, data: Buffer, text: string | undefined) {
    this.binary = binary;
    this.data = data;
    this.text = text;
  }

  /**
   * How many compressed forms of the message were made so far: one per distinct zlib setting
   * among the connections that compressed it from a fresh context (0 if none did). Connections
   * with context takeover compress on their own and are not counted.
   */
  get compressions(): number {
    return this.#compressed?.size ?? 0;
  }

  /** Writes the uncompressed, unmasked frame (the same Buffers for every connection). @internal */
  writePlain(handler: ProtocolHandler): void {
    (this.#plain ??= new Wire(this.binary ? Opcode.Binary : Opcode.Text, this.data, false)).writeTo(handler);
  }

  /**
   * The message compressed as `extension` would compress it from a fresh context, made on the
   * first call for its setting (`standaloneKey`) and shared by later ones. @internal
   */
  compressedFor(extension: MessageExtension, key: string): SharedPayload {
    const table = (this.#compressed ??= new Map());
    const known = table.get(key);
    if (known !== undefined) return known;
    const entry = new SharedPayload(this.binary ? Opcode.Binary : Opcode.Text);
    table.set(key, entry);
    try {
      const result = extension.compressStandalone!(this.data, (error, out) => entry.settle(error, out));
      if (Buffer.isBuffer(result)) entry.settle(null, result);
    } catch (error) {
      entry.settle(error instanceof Error ? error : new Error(String(error)), undefined);
    }
    return entry;
  }
}

/**
 * What `send()`, `prepareMessage()` and `broadcast()` take: a string (text) or bytes (a
 * SharedArrayBuffer too, which they always took: the type left it out).
 */
export type SendData = string | Buffer | Uint8Array | ArrayBuffer | SharedArrayBuffer | ArrayBufferView;

/** Bytes as a Buffer over the same memory (no copy, an ArrayBuffer included). @internal */
export function toBuffer(data: Exclude<SendData, string>): Buffer {
  if (Buffer.isBuffer(data)) return data;
  // Any realm's ArrayBuffer (or SharedArrayBuffer): `instanceof` misses one from a vm context.
  if (isAnyArrayBuffer(data)) return Buffer.from(data);
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('send() takes a string, Buffer, Uint8Array, ArrayBuffer or ArrayBufferView');
}

/**
 * Prepares a message for sending to many connections ({@link PreparedMessage}): a string is text
 * (or, with `binary: true`, its UTF-8 bytes as a binary message), bytes are binary (or, with
 * `binary: false`, text, once checked to be UTF-8).
 */
export function prepareMessage(data: SendData, options?: PrepareOptions): PreparedMessage {
  if (typeof data === 'string') {
    const bytes = encodeUtf8(data, Buffer.byteLength(data, 'utf8'));
    return options?.binary === true ? new PreparedMessage(true, bytes, undefined) : new PreparedMessage(false, bytes, data);
  }
  const bytes = toBuffer(data);
  if (options?.binary !== false) return new PreparedMessage(true, bytes, undefined);
  if (!isUtf8(bytes)) throw new TypeError('prepareMessage(bytes, { binary: false }): the bytes are not valid UTF-8');
  return new PreparedMessage(false, bytes, undefined);
}

/**
 * Sends one message to every connection in `connections` (a server's `connections`, or any set
 * you keep: a room, a topic's subscribers) and returns to how many it went. The message is
 * prepared once ({@link prepareMessage}; pass a {@link PreparedMessage} to reuse one) and handed
 * to each connection in order with what it sends otherwise, as `send()` would, without a promise
 * per connection. Connections that are closing or closed are skipped, as are hybi-00 connections
 * for a binary message (hybi-00 carries text only). It does not wait for slow readers: each
 * connection's `maxBufferedAmount` still applies. An `error` listener that throws (its connection
 * crossed that cap) does not stop the loop: the exception is thrown once every connection was
 * offered the message (several in an AggregateError).
 */
export function broadcast(
  connections: Iterable<WebSocketConnection>,
  data: SendData | PreparedMessage,
  options?: BroadcastOptions,
): number {
  const message = data instanceof PreparedMessage ? data : prepareMessage(data, options);
  const compress = options?.compress ?? true;
  let sent = 0;
  let thrown: unknown[] | undefined;
  for (const conn of connections) {
    // An exception thrown by a connection's `error` listener (it crossed maxBufferedAmount, and
    // was aborted) does not stop the loop: every other connection is offered the message, then
    // the exception is rethrown, as emit() would have thrown it (fixed bug: it was swallowed, and
    // the connection counted as skipped).
    try {
      if (conn.offer(message, compress)) sent++;
    } catch (error) {
      (thrown ??= []).push(error);
    }
  }
  if (thrown !== undefined) throwCollected(thrown, 'broadcast()');
  return sent;
}
