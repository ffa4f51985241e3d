/**
 * WebSocketConnection: one WebSocket over a Transport. It drives the sans-I/O Protocol (bytes in,
 * events out, bytes to write), and adds what needs I/O: the message queue behind `recv()` and
 * async iteration, events, backpressure both ways, streams, ping round trips, and timers (idle,
 * keepalive, close).
 */
import { isUtf8 } from 'node:buffer';
import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { isAnyArrayBuffer } from 'node:util/types';
import { CloseCode, Defaults, Opcode } from './codec/constants.js';
import { checkClosePayload } from './codec/close.js';
import { targetPath } from './handshake/http.js';
import { BackpressureError, ConnectionClosedError, TimeoutError, UnsupportedError, WebSocketError } from './errors.js';
import type { MessageExtension } from './extensions/extension.js';
import { peerDeadline, wheel, type WheelMember } from './idle-wheel.js';
import { Protocol, type ProtocolEngine, type ProtocolHandler, type Side } from './protocol.js';
import { Hybi00Protocol } from './hybi00-protocol.js';
import { abortSocket, endSocket, socketTransport, SocketTransport, type Transport } from './transport.js';
import type { Socket } from 'node:net';
import { readDirect } from './direct-read.js';
import { noteTraffic } from './allocator.js';
import { PreparedMessage, toBuffer, type SendData } from './prepared.js';
import { Utf8Validator } from './codec/utf8.js';

/** What `recv()` resolves to once the connection is closed (the analog of Racket's `eof`). */
export const EOF: unique symbol = Symbol('rfc6455.EOF');
/** The type of {@link EOF}. */
export type EOF = typeof EOF;

/** A received message: a string for text, a Buffer for binary. */
export type Message = string | Buffer;

export type { SendData };

/** Options of {@link WebSocketConnection.send}. */
export interface SendOptions {
  /** Send as binary even for a string, or as text for bytes (which must then be UTF-8: other bytes reject with a TypeError). */
  binary?: boolean | undefined;
  /** Compress when permessage-deflate was negotiated (default true; small messages never are). */
  compress?: boolean | undefined;
}

/** Options of {@link WebSocketConnection.recv}. */
export interface RecvOptions {
  /**
   * Gives the receive up when aborted (`AbortSignal.timeout(ms)` for a timeout): the promise
   * rejects with the signal's reason and no message is taken.
   */
  signal?: AbortSignal | null | undefined;
}

/** Options of {@link WebSocketConnection.sendStream}. */
export interface SendStreamOptions {
  /**
   * Send a binary message (the default); false sends text, whose bytes are checked as they come:
   * bytes that are not UTF-8 fail the source (a TypeError), as in `send()`.
   */
  binary?: boolean | undefined;
  /** Compress when permessage-deflate was negotiated (default true; the threshold does not apply). */
  compress?: boolean | undefined;
  /** Largest fragment, at least 1; larger chunks are split. Default 65536 (Racket's rfc6455-stream-buffer-size). */
  fragmentSize?: number | undefined;
}

/**
 * Limits and timers of a connection; accepted by `connect()`, `serve()` and `handleUpgrade()`,
 * which throw a TypeError for a value that is not a number and a RangeError for NaN or a value
 * out of range (sizes more than 0, the others 0 or more; Infinity lifts a limit, and a timeout
 * of 2^31 ms or more is none). docs/limits-and-security.md has the table.
 */
export interface ConnectionOptions {
  /** Largest message accepted, in bytes (after decompression); 1009 beyond. Default 64 MiB. */
  maxMessageSize?: number | undefined;
  /** Largest frame accepted; 1009 beyond. Default: maxMessageSize. */
  maxFrameSize?: number | undefined;
  /** Most fragments in one message; 1009 beyond. Default 1048576 (2^20). */
  maxFragments?: number | undefined;
  /**
   * ms to wait for the peer's close frame / TCP close after ours before aborting (0: not at all),
   * started again while the peer still takes what was sent before the close or still sends data
   * (up to maxMessageSize bytes after it): it bounds a stall. Default 5000.
   */
  closeTimeout?: number | undefined;
  /** ms without any frame received before closing with 1001. 0 disables. Default 300000. */
  idleTimeout?: number | undefined;
  /**
   * ms between keepalive pings; a ping unanswered by the next one aborts the connection, unless the
   * peer has sent something since or taken more of a backlog the ping waits behind. 0 (default) disables.
   */
  keepaliveInterval?: number | undefined;
  /** Received bytes queued for a consumer that is not reading before the socket is paused. Default 1 MiB. */
  readHighWaterMark?: number | undefined;
  /** Outgoing bytes buffered before `send()` promises wait for `drain`. Default 1 MiB. */
  writeHighWaterMark?: number | undefined;
  /**
   * Hard cap on outgoing buffered bytes (a peer that does not read). Beyond it the connection is
   * closed with 1008 and aborted. Default 64 MiB; Infinity disables.
   */
  maxBufferedAmount?: number | undefined;
  /**
   * Messages smaller than this are not compressed. Default: `perMessageDeflate.threshold` (1024);
   * when both are given, this one decides.
   */
  compressThreshold?: number | undefined;
  /**
   * Over a plain TCP socket, read into one buffer shared by all connections and parse each read
   * in place, instead of a Buffer per read passed through the socket's Readable stream (what
   * Node's `onread` socket option does; see docs/performance.md), from the first data received
   * after the handshake on. Default true; it falls back to the stream by itself wherever it does
   * not apply. `RFC6455_NO_DIRECT_READ=1` turns it off for the process.
   */
  directReads?: boolean | undefined;
  /**
   * How text messages are handed over: `'string'` (the default), or `'buffer'`: their UTF-8 bytes,
   * checked as for a string (1007 on invalid UTF-8), in a Buffer (`binary` is false in the
   * `message` event), as `ws` does. No string is made, which saves decoding a message that is only
   * passed on (a relay, a broker); `send(bytes, { binary: false })` sends it on without encoding it
   * again. The same on hybi-00 connections.
   */
  textMessages?: 'string' | 'buffer' | undefined;
  /**
   * A set that tracks open connections: the connection adds itself, and removes itself when it
   * closes (serve() and the adapters use one for graceful shutdown). Leave the removing to the
   * connections: the idle and keepalive timers reach them through this set.
   */
  connections?: Set<WebSocketConnection> | undefined;
}

/** Facts about the connection fixed at the handshake. */
export interface ConnectionInfo {
  /** Which end of the connection we are: `server` or `client` (clients mask their frames). */
  side: Side;
  /** `rfc6455`, or `hybi00` for the draft protocol. */
  variant?: 'rfc6455' | 'hybi00' | undefined;
  /** The negotiated subprotocol, '' if none. */
  protocol?: string | undefined;
  /** The negotiated Sec-WebSocket-Extensions value, '' if none. */
  extensions?: string | undefined;
  /** The negotiated per-message extension engine (permessage-deflate), if any. */
  extension?: MessageExtension | undefined;
  /** Server: the request line; client: the response status line. */
  requestLine?: string | undefined;
  /** Server: the request's HTTP version ('1.1', '2.0'), when no requestLine is given. */
  httpVersion?: string | undefined;
  /** The request target (path and query). */
  url?: string | undefined;
  /** Server: request headers; client: response headers. */
  headers?: IncomingHttpHeaders | undefined;
}

/** The events of a {@link WebSocketConnection} and their listener arguments. */
export interface ConnectionEvents {
  /**
   * A whole message. While a `message` listener is attached, messages go to it instead of `recv()`;
   * the first listener also gets, first, the messages queued before it (those that came with the
   * handshake response included).
   */
  message: [data: Message, binary: boolean];
  /** A ping arrived (the pong is sent automatically). */
  ping: [payload: Buffer];
  /** A pong arrived. */
  pong: [payload: Buffer];
  /** The transport's write buffer drained. */
  drain: [];
  /** The transport closed; `code` and `reason` are the final `closeStatus` and `closeReason`. */
  close: [code: number, reason: string];
  /**
   * The connection failed or the transport reported an error (not thrown when nobody listens; see
   * `error`). A transport error once the end is settled is not reported: after the peer's close
   * frame, after our own failure (reported once), after the transport ended or our abort.
   */
  error: [error: Error];
}

interface PendingPing {
  payload: Buffer;
  sentAt: number;
  resolve: (rtt: number) => void;
  reject: (error: Error) => void;
}

const RESOLVED: Promise<void> = Promise.resolve();
/** Messages received while nobody takes them (made at the first one, dropped once emptied). */
class Inbox {
  readonly items: Message[] = [];
  /** Index of the next message to hand out. */
  head = 0;
  /** Their size (strings count 2 bytes a character), plus MESSAGE_OVERHEAD a message (and BUFFER_OVERHEAD a Buffer). */
  bytes = 0;
  /** With `textMessages: 'buffer'`: which queued Buffers are text (a late listener is told). */
  texts: WeakSet<Buffer> | undefined = undefined;
}
const DONE: IteratorResult<Message> = Object.freeze({ value: undefined, done: true }) as IteratorResult<Message>;

/** The connection a stream belongs to: shared listeners find it here (no closures per connection). */
const kConnection = Symbol('rfc6455.connection');
type OwnedStream = Transport['stream'] & { [kConnection]?: WebSocketConnection };

function releaseHead(conn: WebSocketConnection): void {
  conn.releaseHead();
}
function streamOnData(this: OwnedStream, chunk: Buffer): void {
  this[kConnection]!.handleData(chunk);
}
function streamOnRead(this: OwnedStream, nread: number, buffer: Buffer): void {
  this[kConnection]!.handleRead(buffer, nread);
}
function streamOnEnd(this: OwnedStream): void {
  this[kConnection]!.handleEnd();
}
function streamOnAborted(this: OwnedStream): void {
  this[kConnection]!.handleAborted();
}
function streamOnClose(this: OwnedStream): void {
  this[kConnection]!.handleClose();
}
function streamOnError(this: OwnedStream, error: Error): void {
  this[kConnection]!.handleError(error);
}
function streamOnDrain(this: OwnedStream): void {
  this[kConnection]!.handleDrain();
}
const noop = (): void => {};

/**
 * The TypeError of send() and sendStream() for options that are not an object: a callback (as
 * `ws`'s `send(data, cb)` takes) or any other value, named in the message.
 */
function notOptions(call: string, shape: string, options: unknown): TypeError {
  const what = typeof options === 'function' ? 'a callback: await the promise it returns' : `a ${typeof options}`;
  return new TypeError(`${call}: options is an object (${shape}), not ${what}`);
}

/** A rejected promise that never counts as unhandled (callers may ignore send promises). */
function rejected<T>(error: unknown): Promise<T> {
  const p = Promise.reject(error as Error);
  p.catch(noop);
  return p;
}

/**
 * What a queued message counts against readHighWaterMark: its bytes (strings 2 a character) and a
 * fixed cost for its place in the queue, so that a flood of empty or tiny messages also pauses the
 * socket. (Fixed bug: an empty message counted 0 bytes, and a peer sending empty frames, 2 bytes
 * each over hybi-00, 6 over RFC 6455, to a handler that did not read was never paused: 10 million
 * queued messages took 280 MB.) WebSocketStream's readable counts the same. @internal
 */
export const MESSAGE_OVERHEAD = 32;
/**
 * What a binary message (a Buffer) counts against readHighWaterMark on top of MESSAGE_OVERHEAD:
 * its object. A Buffer takes about 130 bytes of heap as a view of a shared block and 220 with an
 * ArrayBuffer of its own (a message inflated under no_context_takeover), where a short string
 * takes its characters and a 16-byte header. (Fixed bug: a Buffer counted 32 bytes, and a peer
 * sending 1-byte binary messages to a handler that did not read made it hold 4.6 MB behind the
 * 1 MiB default, 9 MB when they were compressed; measured.) WebSocketStream's readable counts
 * the same. @internal
 */
export const BUFFER_OVERHEAD = 224;

function messageSize(message: Message): number {
  return typeof message === 'string' ? message.length * 2 + MESSAGE_OVERHEAD : message.length + MESSAGE_OVERHEAD + BUFFER_OVERHEAD;
}

/** EventEmitter's listener table: a function for one listener, an array for several. */
type ListenerTable = Record<string, ((...args: unknown[]) => unknown) | Array<(...args: unknown[]) => unknown> | undefined>;

/** Times are kept relative to this (small integers fit in an object field; a Date.now() does not). */
const TIME_BASE = Date.now();

/**
 * ms since TIME_BASE as a small integer. Math.floor returns a Smi when the value fits (a plain
 * subtraction of two doubles gives a heap number, and then the field holds a boxed double).
 */
function sinceBase(time: number): number {
  return Math.floor(time - TIME_BASE);
}

// The boolean state of WebSocketConnection, as bits of its `flags` (accessor name, bit).
const FLAG_ACCESSORS = [
  ['waiterIsIterator', 1],
  ['readPaused', 2],
  ['receiveEnded', 4],
  ['keepaliveOutstanding', 8],
  ['closedFlag', 16],
] as const;
/** `flags` bit: the client end (else the server). */
const CLIENT = 32;
/** `flags` bit: the draft hybi-00 protocol (else RFC 6455). */
const HYBI00 = 64;
/** `flags` bit: a received chunk is being processed (see `beginChunk`). */
const IN_CHUNK = 0x80;
/** `flags` bit: something was written while it is, and the stream is corked until its end. */
const CORKED = 0x100;
/**
 * `flags` bits 9-11: wheel ticks (250 ms each) since the engine was last used, to read or to send,
 * stopping at 7. A connection whose engine has gone unused that long (about 2 s) and is at rest
 * drops it: a server that pushes without reading keeps its engine between pushes.
 */
const QUIET = 0xe00;
const QUIET_ONE = 0x200;
/**
 * `flags` bit: direct reads are wanted and start at the first chunk the stream delivers. Until a
 * connection receives something it reads through the stream: switching gives the socket's handle
 * a native read listener, which a connection that stays idle never needs (0.08 KiB less per idle
 * connection, measured).
 */
const DIRECT_PENDING = 0x1000;
/**
 * `flags` bit: something was written outside a received chunk, and the stream is corked until
 * the code now running is done (see `holdWrites`).
 */
const HELD = 0x2000;
/** `flags` bit: the application paused delivery (`pause()`): messages wait, the socket is not read. */
const USER_PAUSED = 0x4000;
/** `flags` bit: the protocol waits for a received frame's inflation job; the socket is not read. */
const INFLATING = 0x8000;
/** `flags` bit: the peer ended its side (a transport other than a socket) while INFLATING: handled after. */
const END_PENDING = 0x10000;
/** `flags` bit: the queue filled, and the engine holds back the messages after it (holdMessages). */
const QUEUE_FULL = 0x20000;
/**
 * `flags` bit: close() was called while a sendStream() runs, and the close frame waits for what
 * was sent before it: the connection is `closing` meanwhile, and sends made after the close()
 * reject (see close()).
 */
const CLOSE_WAITING = 0x40000;
/**
 * `flags` bit: the transport closed (a reset) while INFLATING, with received bytes still unparsed
 * (held for a reader that is behind): the close is handled once they are parsed (transportGone).
 */
const GONE_PENDING = 0x80000;
/**
 * `flags` bit: the close timer runs while the peer may still send (our close frame is sent or
 * waits, the peer's has not come): the data bytes received are counted (RareFields.closeData), as
 * what the peer sent before it read our close frame still arriving is progress (see armCloseTimer).
 */
const CLOSE_RECEIVING = 0x100000;

/**
 * Connections whose writes are held until the code now running is done: the messages sent to one
 * connection by one piece of synchronous code (a burst from a timer, a broadcast loop, a
 * publisher's chunk relayed) leave in one system call, as the replies to one received chunk do.
 * They are released by a microtask queued at the first hold, so before the continuation of any
 * `await conn.send()` made meanwhile: awaiting a send still means it was handed to the socket (a
 * `process.exit()` right after it loses nothing), and a loop that awaits each send writes each
 * at once, as before.
 */
let heldConnections: WebSocketConnection[] = [];
let releaseScheduled = false;
/** Whether held writes are flushed at process exit (hooked at the first hold). */
let exitHooked = false;

function releaseHeld(): void {
  releaseScheduled = false;
  const list = heldConnections;
  heldConnections = [];
  for (const conn of list) conn.releaseWrites();
}

/** The fields of a connection that most connections never use (one side object, made on first use). */
class RareFields {
  moreWaiters: Array<{ resolve: (value: never) => void; iterator: boolean }> | undefined = undefined;
  incoming: Readable | undefined = undefined;
  streamWaiters: Array<(stream: Readable | EOF) => void> | undefined = undefined;
  drainPromise: Promise<void> | undefined = undefined;
  drainResolve: (() => void) | undefined = undefined;
  pendingPong: Buffer | undefined = undefined;
  pings: PendingPing[] | undefined = undefined;
  closedPromise: Promise<void> | undefined = undefined;
  resolveClosed: (() => void) | undefined = undefined;
  errorValue: Error | undefined = undefined;
  /** The transport's error while INFLATING, reported (or not) once what was received is parsed (transportGone). */
  goneError: Error | undefined = undefined;
  /** GONE_PENDING: what still waited for the reader when the close timer last looked (unreadHeld), -1 before. */
  goneUnread = -1;
  /** Server: the request line when the method is not GET. */
  requestLine: string | undefined = undefined;
  /** Server: the request's HTTP version. */
  httpVersion = '1.1';
  /** The transport when it is not a plain socket one (HTTP/2), or once `conn.transport` was asked for. */
  transport: Transport | undefined = undefined;
  /** The negotiated per-message extension (permessage-deflate), if any. */
  extension: MessageExtension | undefined = undefined;
  closeTimer: NodeJS.Timeout | undefined = undefined;
  finalCode: number = CloseCode.Abnormal;
  finalReason = '';
  /** The end of the sendStream() chain that later sends wait for. */
  sendTail: Promise<void> | undefined = undefined;
  /** Payload bytes of the messages sent while a sendStream() runs, waiting behind it (counted as given). */
  tailBytes = 0;
  /** The running sendStream()'s wait for its source, given up once the connection has closed. */
  streamCancel: StreamCancel | undefined = undefined;
  /** Client: the bytes that came with the handshake response, until they are parsed (holdHead). */
  pendingHead: Buffer | undefined = undefined;
  /** Bytes a sendStream() has handed to the protocol (its progress, as the close timer sees it). */
  streamedBytes = 0;
  /**
   * What the close timer saw when it last fired (or, for a socket backed up when it was first
   * armed, then): the bytes the peer had taken (bytesTaken; NaN before), and streamedBytes (taken
   * when it was first armed behind a sendStream(); -1 until it is armed).
   */
  closeTaken = NaN;
  closeStreamed = -1;
  /** The close timer's last check (or first arming) found bytes of ours not yet taken by the peer. */
  closeBacklog = false;
  /**
   * CLOSE_RECEIVING: the bytes received since the close timer was first armed less those of the
   * control frames among them (pings and pongs, whole frames), now and when the timer last fired.
   */
  closeData = 0;
  closeDataSeen = 0;
  /**
   * Keepalive: the bytes the peer had taken (bytesTaken) when the unanswered ping was sent behind
   * a backlog, or at the last check since; NaN when the ping went straight out.
   */
  keepaliveTaken = NaN;
}

/** The RareFields reached through accessors of the same name on the connection. */
const RARE_ACCESSORS = [
  'moreWaiters',
  'incoming',
  'streamWaiters',
  'drainPromise',
  'drainResolve',
  'pendingPong',
  'pings',
  'closedPromise',
  'resolveClosed',
  'errorValue',
  'extension',
  'closeTimer',
  'finalCode',
  'finalReason',
  'sendTail',
  'streamCancel',
  'pendingHead',
] as const satisfies readonly (keyof RareFields)[];

/** A connection's timers, limits and protocol options (immutable; shared between connections). */
interface Limits {
  readonly maxMessageSize: number;
  readonly maxFrameSize: number;
  readonly maxFragments: number;
  readonly compressThreshold: number | undefined;
  readonly closeTimeout: number;
  readonly idleTimeout: number;
  readonly keepaliveInterval: number;
  readonly readHighWaterMark: number;
  readonly writeHighWaterMark: number;
  readonly maxBufferedAmount: number;
  /** Text messages are handed over as their bytes (`textMessages: 'buffer'`). */
  readonly textAsBuffer: boolean;
  /** The set of open connections this one belongs to (serve() and the adapters track theirs). */
  readonly registry: Set<WebSocketConnection> | undefined;
  /** Where exceptions thrown by event listeners go (set by the server seam). */
  readonly listenerFailed: ((error: unknown, conn: WebSocketConnection) => void) | undefined;
}

/** The last Limits made: the next connection almost always has the same values. */
let lastLimits: Limits | undefined;

function limitsFor(
  maxMessageSize: number,
  maxFrameSize: number,
  maxFragments: number,
  compressThreshold: number | undefined,
  closeTimeout: number,
  idleTimeout: number,
  keepaliveInterval: number,
  readHighWaterMark: number,
  writeHighWaterMark: number,
  maxBufferedAmount: number,
  textAsBuffer: boolean,
): Limits {
  const l = lastLimits;
  if (
    l !== undefined &&
    Object.is(l.maxMessageSize, maxMessageSize) &&
    Object.is(l.maxFrameSize, maxFrameSize) &&
    Object.is(l.maxFragments, maxFragments) &&
    Object.is(l.compressThreshold, compressThreshold) &&
    Object.is(l.closeTimeout, closeTimeout) &&
    Object.is(l.idleTimeout, idleTimeout) &&
    Object.is(l.keepaliveInterval, keepaliveInterval) &&
    Object.is(l.readHighWaterMark, readHighWaterMark) &&
    Object.is(l.writeHighWaterMark, writeHighWaterMark) &&
    Object.is(l.maxBufferedAmount, maxBufferedAmount) &&
    l.textAsBuffer === textAsBuffer
  ) {
    return l;
  }
  return (lastLimits = Object.freeze({
    maxMessageSize,
    maxFrameSize,
    maxFragments,
    compressThreshold,
    closeTimeout,
    idleTimeout,
    keepaliveInterval,
    readHighWaterMark,
    writeHighWaterMark,
    maxBufferedAmount,
    textAsBuffer,
    registry: undefined,
    listenerFailed: undefined,
  }));
}

/** For each Limits, the last one derived from it with another registry or listenerFailed. */
const derivedLimits = new WeakMap<Limits, Limits>();

/** `base` with `registry` and `listenerFailed` replaced: shared too, as every connection of a server has the same. */
function limitsWith(base: Limits, registry: Limits['registry'], listenerFailed: Limits['listenerFailed']): Limits {
  if (base.registry === registry && base.listenerFailed === listenerFailed) return base;
  const last = derivedLimits.get(base);
  if (last !== undefined && last.registry === registry && last.listenerFailed === listenerFailed) return last;
  const derived = Object.freeze({ ...base, registry, listenerFailed });
  derivedLimits.set(base, derived);
  return derived;
}

/**
 * The base class of WebSocketConnection: EventEmitter's prototype (every EventEmitter method,
 * `instanceof EventEmitter`, EventEmitter's statics) under a constructor that stores nothing.
 * EventEmitter's own constructor stores a listener table, a count, `_maxListeners` and two
 * symbol-keyed flags on each instance; the last three hold what the prototype already holds (a
 * connection takes no EventEmitter options such as `captureRejections`; the process-wide
 * `EventEmitter.captureRejections` applies), and the table is made when the first listener is
 * added (see `LISTENER_ADDERS`): a connection read with `recv()` or `for await` never has one.
 */
const ListenerBase = function ListenerBase(): void {} as unknown as new () => EventEmitter<ConnectionEvents>;
ListenerBase.prototype = EventEmitter.prototype as EventEmitter<ConnectionEvents>;
Object.setPrototypeOf(ListenerBase, EventEmitter);

/**
 * A connection's listener table (EventEmitter's `_events`). Its prototype is an empty object with
 * a null prototype, so it behaves as the `{ __proto__: null }` table EventEmitter makes (no
 * inherited names); but that literal is a dictionary in V8 (about 250 bytes once a listener is
 * added), and a `{}` holds 4 property slots (56 bytes), while objects made by a constructor are
 * sized by V8 to the properties they get: a table with one listener (`message`) is 32 bytes.
 */
const EventTable = function EventTable(): void {} as unknown as new () => object;
EventTable.prototype = Object.create(null) as object;

/**
 * The EventEmitter methods that add a listener (`once` and `prependOnceListener` go through `on`
 * and `prependListener`). The connection's versions first give it its listener table (see
 * EventTable).
 */
const LISTENER_ADDERS = ['on', 'addListener', 'prependListener'] as const;

/**
 * One WebSocket connection, client or server side. Receive with `recv()`, `for await`, `recvStream()`
 * or `message` events; send with `send()`, `sendStream()` and `ping()`; finish with `close()`.
 */
export class WebSocketConnection extends ListenerBase implements ProtocolHandler, WheelMember, AsyncIterable<Message> {
  // protocol, extensions, engine, inbox, waiter, lastKeepalive and rare have their usual value
  // ('', '', then undefined but for lastKeepalive's 0) on the prototype (see the static block): a
  // connection holds one only once it has another.
  /** The negotiated subprotocol, '' if none. */
  declare readonly protocol: string;
  /** The negotiated Sec-WebSocket-Extensions value, '' if none. */
  declare readonly extensions: string;
  /** The request target (path and query), e.g. `/chat?room=1`. */
  readonly url: string;
  /** Server: the upgrade request's headers; client: the handshake response's headers. */
  readonly headers: IncomingHttpHeaders;

  /**
   * The protocol engine, made on first use (see `proto`) and dropped again by the wheel once it
   * has gone unused (no read, no send) for about 2 s while at rest: an idle connection keeps no
   * parser or protocol state. (Prototype default: undefined; own once made.)
   */
  declare private engine: ProtocolEngine | undefined;
  private readonly stream: Transport['stream'];
  /** Timers, limits, registry and listener-failure path, shared by every connection with the same values. */
  private limits: Limits;

  // Receiving
  /** Messages nobody has taken yet; undefined while there are none. (Prototype default: undefined.) */
  declare private inbox: Inbox | undefined;
  /**
   * Pending receivers: a recv() resolver, or (flag set) an async-iterator `next()` resolver. The
   * first is kept in fields (the common case: one loop awaiting); more spill into a list.
   * (Prototype default: undefined; a connection read through `message` events never has one.)
   */
  declare private waiter: ((value: never) => void) | undefined;

  // Lifecycle
  /**
   * Coarse time (ms, since TIME_BASE: a small integer, kept in the object instead of a heap
   * number) of the last data received, for the idle timeout. @internal
   */
  lastActivity = sinceBase(wheel.now);
  /** When the last keepalive ping went out (like lastActivity); set only with a keepalive interval. */
  declare private lastKeepalive: number;
  /** Boolean state, one bit each (see the accessors below). */
  private flags = 0;
  /** Fields most connections never use, in a side object made on first use. */
  declare private rare: RareFields | undefined;

  private rareFields(): RareFields {
    return (this.rare ??= new RareFields());
  }

  // Boolean state as bits of `flags`, through accessors defined below.
  declare private waiterIsIterator: boolean;
  declare private readPaused: boolean;
  declare private receiveEnded: boolean;
  declare private keepaliveOutstanding: boolean;
  declare private closedFlag: boolean;

  // Rare fields live in `rare`; these accessors (defined once, below) read them without creating
  // it, and writing undefined does not create it either.
  declare private moreWaiters: RareFields['moreWaiters'];
  declare private incoming: RareFields['incoming'];
  declare private streamWaiters: RareFields['streamWaiters'];
  declare private drainPromise: RareFields['drainPromise'];
  declare private drainResolve: RareFields['drainResolve'];
  declare private pendingPong: RareFields['pendingPong'];
  declare private pings: RareFields['pings'];
  declare private closedPromise: RareFields['closedPromise'];
  declare private resolveClosed: RareFields['resolveClosed'];
  declare private errorValue: RareFields['errorValue'];
  declare private extension: RareFields['extension'];
  declare private closeTimer: RareFields['closeTimer'];
  declare private finalCode: RareFields['finalCode'];
  declare private finalReason: RareFields['finalReason'];
  declare private sendTail: RareFields['sendTail'];
  declare private streamCancel: RareFields['streamCancel'];
  declare private pendingHead: RareFields['pendingHead'];

  static {
    const defaults = [['protocol', ''], ['extensions', ''], ['engine', undefined], ['inbox', undefined], ['waiter', undefined], ['lastKeepalive', 0], ['rare', undefined]] as const;
    for (const [key, value] of defaults) {
      Object.defineProperty(WebSocketConnection.prototype, key, { value, writable: true, configurable: true });
    }
    for (const name of LISTENER_ADDERS) {
      const add = EventEmitter.prototype[name] as (this: EventEmitter, type: string | symbol, listener: (...args: unknown[]) => void) => EventEmitter;
      Object.defineProperty(WebSocketConnection.prototype, name, {
        configurable: true,
        writable: true,
        value: function (this: EventEmitter & { _events?: object; _eventsCount: number }, type: string | symbol, listener: (...args: unknown[]) => void) {
          if (this._events === undefined) {
            this._events = new EventTable();
            this._eventsCount = 0;
          }
          const result = add.call(this, type, listener);
          // Messages queued before the first listener (those that came with the handshake
          // response, or while nobody listened) go to it, in order, before any later one.
          if (type === 'message' && (this as unknown as WebSocketConnection).inbox !== undefined) {
            queueMicrotask(() => (this as unknown as WebSocketConnection).flushInbox());
          }
          return result;
        },
      });
    }
    for (const [key, bit] of FLAG_ACCESSORS) {
      Object.defineProperty(WebSocketConnection.prototype, key, {
        get(this: WebSocketConnection) {
          return (this.flags & bit) !== 0;
        },
        set(this: WebSocketConnection, on: boolean) {
          this.flags = on ? this.flags | bit : this.flags & ~bit;
        },
      });
    }
    for (const key of RARE_ACCESSORS) {
      Object.defineProperty(WebSocketConnection.prototype, key, {
        get(this: WebSocketConnection) {
          return this.rare?.[key];
        },
        set(this: WebSocketConnection, value: unknown) {
          if (value !== undefined || this.rare) (this.rareFields() as unknown as Record<string, unknown>)[key] = value;
        },
      });
    }
  }

  constructor(transport: Transport, info: ConnectionInfo, options: ConnectionOptions = {}, head?: Buffer) {
    super();
    this.stream = transport.stream;
    // A socket's transport is rebuilt from the socket when asked for; other kinds are kept.
    const overSocket = transport instanceof SocketTransport;
    if (!overSocket) this.rareFields().transport = transport;
    if (info.side === 'client') this.flags |= CLIENT;
    if (info.variant === 'hybi00') this.flags |= HYBI00;
    if (info.protocol) this.protocol = info.protocol;
    if (info.extensions) this.extensions = info.extensions;
    if (info.requestLine !== undefined || (info.httpVersion !== undefined && info.httpVersion !== '1.1')) {
      const rare = this.rareFields();
      rare.requestLine = info.requestLine;
      rare.httpVersion = info.httpVersion ?? '1.1';
    }
    this.url = info.url ?? '/';
    this.headers = info.headers ?? {};
    this.extension = info.extension;
    const maxMessageSize = options.maxMessageSize ?? Defaults.maxMessageSize;
    this.limits = limitsFor(
      maxMessageSize,
      options.maxFrameSize ?? maxMessageSize,
      options.maxFragments ?? Defaults.maxFragments,
      options.compressThreshold,
      options.closeTimeout ?? Defaults.closeTimeout,
      options.idleTimeout ?? Defaults.idleTimeout,
      // hybi-00 has no ping: its keepalive ping threw UnsupportedError out of the shared wheel timer.
      info.variant === 'hybi00' ? 0 : options.keepaliveInterval ?? 0,
      options.readHighWaterMark ?? Defaults.readHighWaterMark,
      options.writeHighWaterMark ?? Defaults.writeHighWaterMark,
      options.maxBufferedAmount ?? 64 * 1024 * 1024,
      options.textMessages === 'buffer',
    );
    if (this.limits.keepaliveInterval > 0) this.lastKeepalive = sinceBase(wheel.now);
    // hybi-00 keeps its engine from the start (it is never at rest; see Hybi00Protocol.atRest).
    if (info.variant === 'hybi00') this.engine = new Hybi00Protocol({ side: info.side, maxMessageSize, textAsBuffer: this.limits.textAsBuffer }, this);
    const stream = this.stream;
    (stream as OwnedStream)[kConnection] = this;
    stream.on('data', streamOnData);
    if (overSocket) {
      // A socket: instead of an 'end' listener of ours (the socket's second, so an array on every
      // connection), let the socket end its side itself when the peer ends (what allowHalfOpen
      // false does); the connection learns of the end at 'close', as after an abort.
      (stream as Socket).allowHalfOpen = false;
    } else {
      stream.on('end', streamOnEnd);
      // An HTTP/2 stream's: its peer reset it (see handleAborted).
      stream.on('aborted', streamOnAborted);
    }
    stream.on('close', streamOnClose);
    stream.on('error', streamOnError);
    stream.on('drain', streamOnDrain);
    const registry = options.connections;
    if (registry !== undefined) {
      registry.add(this);
      this.limits = limitsWith(this.limits, registry, undefined);
    }
    // The wheel reaches a tracked connection through its set (one table entry, not two).
    if (this.limits.idleTimeout > 0 || this.limits.keepaliveInterval > 0) {
      if (registry !== undefined) wheel.addGroup(registry);
      else wheel.add(this);
    }
    const early = head !== undefined && head.length > 0;
    if (early && info.side !== 'client') this.handleData(head);
    // A socket paused during the handshake (hybi-00 key3) would not flow by adding a listener.
    if (stream.isPaused()) stream.resume();
    if ((this.flags & HYBI00) === 0 && options.directReads !== false) this.flags |= DIRECT_PENDING;
    if (early && info.side === 'client') this.holdHead(head);
    if (stream.destroyed) queueMicrotask(() => this.handleClose());
    // A socket the peer had already ended before it was handed over (a client that left while a
    // framework's hooks ran on its upgrade): its 'end' came while the HTTP server's allowHalfOpen
    // was still true, so end our side now as allowHalfOpen false would have; the connection learns
    // of it at 'close'. (Fixed bug: the connection stayed open for good, its handler waiting.)
    else if (overSocket && (stream as Socket).readableEnded) endSocket(stream as Socket);
  }

  // ---- Public state ---------------------------------------------------------------------------

  /** `server` or `client`. */
  get side(): Side {
    return (this.flags & CLIENT) !== 0 ? 'client' : 'server';
  }

  /** The protocol spoken: `rfc6455`, or `hybi00` for the draft (text only, no ping or fragments). */
  get variant(): 'rfc6455' | 'hybi00' {
    return (this.flags & HYBI00) !== 0 ? 'hybi00' : 'rfc6455';
  }

  /** The protocol engine, made now if the connection has none (new, or idle with it dropped). */
  private get proto(): ProtocolEngine {
    this.flags &= ~QUIET;
    return this.engine ?? this.startEngine();
  }

  /** Makes the RFC 6455 engine: a new one is the same as one at rest (see `Protocol.atRest`). */
  private startEngine(): ProtocolEngine {
    const limits = this.limits;
    return (this.engine = new Protocol(
      {
        side: this.side,
        maxMessageSize: limits.maxMessageSize,
        maxFrameSize: limits.maxFrameSize,
        maxFragments: limits.maxFragments,
        extension: this.extension,
        compressThreshold: limits.compressThreshold,
        ownsInput: true,
        textAsBuffer: limits.textAsBuffer,
      },
      this,
    ));
  }

  /** The transport the connection runs over. */
  get transport(): Transport {
    return this.rare?.transport ?? (this.rareFields().transport = socketTransport(this.stream as Socket));
  }

  /**
   * `open`, `closing` (close() called or the peer's close frame received: waiting; or the transport
   * gone while what it read waits for a reader that is behind), or `closed` (transport gone).
   */
  get readyState(): 'open' | 'closing' | 'closed' {
    if (this.closedFlag) return 'closed';
    if ((this.flags & GONE_PENDING) !== 0) return 'closing';
    return (this.engine === undefined || this.engine.state === 'open') && (this.flags & CLOSE_WAITING) === 0 ? 'open' : 'closing';
  }

  /** True once the transport has closed (`readyState` is `closed`). */
  get closed(): boolean {
    return this.closedFlag;
  }

  /**
   * The close code: the code of the close frame received (whichever side started), 1005 if it
   * had none, the code we failed the connection with, or 1006 if the transport ended without a
   * close frame. Undefined while open.
   */
  get closeStatus(): number | undefined {
    return this.closedFlag ? this.finalCode : this.engine?.closeCode;
  }

  /** The close reason that goes with `closeStatus` ('' if none); undefined while `closeStatus` is. */
  get closeReason(): string | undefined {
    const engine = this.engine;
    return this.closedFlag ? this.finalReason : engine === undefined || engine.closeCode === undefined ? undefined : engine.closeReason;
  }

  /** The error that failed the connection, if any. */
  get error(): Error | undefined {
    return this.errorValue;
  }

  /**
   * Server: the request line (`GET /path?q HTTP/1.1`, built when asked); client: the response's
   * status line.
   */
  get requestLine(): string {
    const rare = this.rare;
    return rare?.requestLine ?? `GET ${this.url} HTTP/${rare?.httpVersion ?? '1.1'}`;
  }

  /** Path of the request target, without the query or a fragment (of an absolute-form target too). */
  get path(): string {
    return targetPath(this.url);
  }

  /** The peer's IP address (from the transport), undefined when unknown. */
  get remoteAddress(): string | undefined {
    return this.addresses.remoteAddress;
  }
  /** The peer's port, undefined when unknown. */
  get remotePort(): number | undefined {
    return this.addresses.remotePort;
  }
  /** Local IP address, undefined when unknown. */
  get localAddress(): string | undefined {
    return this.addresses.localAddress;
  }
  /** Local port, undefined when unknown. */
  get localPort(): number | undefined {
    return this.addresses.localPort;
  }

  /** Where the addresses are read: the transport kept in `rare`, else the socket itself (whose fields a socket transport reads). */
  private get addresses(): Partial<Pick<Transport, 'remoteAddress' | 'remotePort' | 'localAddress' | 'localPort'>> {
    return this.rare?.transport ?? (this.stream as Socket);
  }

  /**
   * Bytes handed to the connection and not yet flushed to the transport: those in its write buffer,
   * and the payloads of messages still waiting for permessage-deflate (counted as given), which
   * `ws` counts too (fixed bug: they were not, and a compressed send read 0 at once), or waiting
   * behind a `sendStream()`.
   */
  get bufferedAmount(): number {
    const engine = this.engine;
    return this.stream.writableLength + (engine instanceof Protocol ? engine.queuedBytes : 0) + (this.rare?.tailBytes ?? 0);
  }

  /** RFC 6455 connections fragment; hybi-00 ones cannot (Racket's ws-conn-supports-fragmentation?). */
  get supportsFragmentation(): boolean {
    return (this.flags & HYBI00) === 0;
  }
  /** Whether `type` messages can be sent (hybi-00: text only). */
  supportsPayloadType(type: 'text' | 'binary'): boolean {
    return (this.flags & HYBI00) === 0 || type === 'text';
  }
  /** Whether close frames carry a status (Racket's ws-conn-signals-status-on-close?). */
  get signalsStatusOnClose(): boolean {
    return (this.flags & HYBI00) === 0;
  }

  // ---- Receiving ------------------------------------------------------------------------------

  /**
   * The next whole message (string for text, Buffer for binary), or `EOF` once the connection is
   * closed, cleanly or not: `closeStatus` then tells (1006 for a connection dropped without a
   * closing handshake, 1002, 1011... for a failure). Messages are queued while nobody calls `recv()` unless there is a `message` listener.
   * With `signal`, a receive given up (`AbortSignal.timeout(ms)`, an AbortController) rejects with
   * the signal's reason and takes no message: the next `recv()` gets it (Racket's
   * `(sync/timeout t (ws-recv-evt c))`; a recv() that lost a Promise.race against a timer would
   * still take one).
   */
  recv(options?: RecvOptions): Promise<Message | EOF> {
    const signal = options?.signal ?? undefined;
    if (signal?.aborted === true) return Promise.reject(signal.reason as Error);
    if (this.inbox !== undefined) return Promise.resolve(this.shiftMessage());
    if (this.receiveEnded) return Promise.resolve(EOF);
    if (signal === undefined) return new Promise((resolve) => this.addWaiter(resolve as (value: never) => void, false));
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        if (this.removeWaiter(settle as (value: never) => void)) reject(signal.reason as Error);
      };
      const settle = (value: Message | EOF): void => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.addWaiter(settle as (value: never) => void, false);
    });
  }

  /** Takes a waiting receive out of the line (its signal gave it up); false if it was already served. */
  private removeWaiter(resolve: (value: never) => void): boolean {
    const more = this.moreWaiters;
    if (this.waiter === resolve) {
      const next = more?.shift();
      this.waiter = next?.resolve;
      this.waiterIsIterator = next?.iterator ?? false;
      return true;
    }
    const index = more === undefined ? -1 : more.findIndex((w) => w.resolve === resolve);
    if (index < 0) return false;
    more!.splice(index, 1);
    return true;
  }

  private addWaiter(resolve: (value: never) => void, iterator: boolean): void {
    if (this.waiter === undefined) {
      this.waiter = resolve;
      this.waiterIsIterator = iterator;
    } else {
      (this.moreWaiters ??= []).push({ resolve, iterator });
    }
  }

  /** @internal The async iterator's `next()`. */
  nextResult(): Promise<IteratorResult<Message>> {
    if (this.inbox !== undefined) return Promise.resolve({ value: this.shiftMessage(), done: false });
    if (this.receiveEnded) return Promise.resolve(DONE);
    return new Promise((resolve) => this.addWaiter(resolve as (value: never) => void, true));
  }

  private deliver(message: Message | EOF): boolean {
    const waiter = this.waiter as ((value: unknown) => void) | undefined;
    if (waiter === undefined) return false;
    const iterator = this.waiterIsIterator;
    const next = this.moreWaiters?.shift();
    this.waiter = next?.resolve;
    this.waiterIsIterator = next?.iterator ?? false;
    if (iterator) waiter(message === EOF ? DONE : { value: message, done: false });
    else waiter(message);
    return true;
  }

  /**
   * `for await (const message of conn)`: ends when the connection closes, cleanly or not
   * (`closeStatus` then tells: 1006 for a connection dropped without a closing handshake).
   */
  [Symbol.asyncIterator](): AsyncIterator<Message> {
    return new MessageIterator(this);
  }

  /**
   * The next message as a Readable of its bytes, delivered as they arrive (not buffered whole),
   * or `EOF` once the connection is closed. The stream errors with ConnectionClosedError if the
   * connection ends mid-message. Reading it slowly throttles the peer; destroying it drops the
   * rest of the message (the messages after it arrive as usual). On a hybi-00 connection it always
   * rejects with UnsupportedError (`WS_UNSUPPORTED`), queued messages or not: use `recv()`.
   */
  recvStream(): Promise<Readable | EOF> {
    // hybi-00: always (fixed bug: a message already queued was handed over as a stream, so the
    // same code worked or failed by the timing of the peer's messages).
    if ((this.flags & HYBI00) !== 0) return rejected(new UnsupportedError('streaming receive needs RFC 6455'));
    if (this.inbox !== undefined) {
      const message = this.shiftMessage();
      return Promise.resolve(Readable.from([typeof message === 'string' ? Buffer.from(message) : message]));
    }
    if (this.receiveEnded) return Promise.resolve(EOF);
    this.proto.streamNextMessage = true;
    return new Promise((resolve) => (this.streamWaiters ??= []).push(resolve));
  }

  /** Takes the first queued message, and reads on if the queue is now low enough (see `takeMessage`). */
  private shiftMessage(): Message {
    const message = this.takeMessage();
    this.inboxDrained();
    return message;
  }

  /**
   * Takes the first queued message, without reading on: reading on may receive the next messages
   * at once (those the engine held back, then the rest of the read), so a message handed to a
   * listener is handed over first (see flushInbox).
   */
  private takeMessage(): Message {
    const inbox = this.inbox!;
    const items = inbox.items;
    const message = items[inbox.head]!;
    items[inbox.head++] = undefined as unknown as Message;
    inbox.bytes -= messageSize(message);
    if (inbox.head === items.length) {
      this.inbox = undefined;
    } else if (inbox.head > 1024 && inbox.head * 2 > items.length) {
      items.splice(0, inbox.head);
      inbox.head = 0;
    }
    return message;
  }

  /** The queue shrank: reading resumes once it is at most half readHighWaterMark. */
  private inboxDrained(): void {
    if (this.readPaused && (this.inbox?.bytes ?? 0) <= this.limits.readHighWaterMark / 2) this.resumeReading();
  }

  /**
   * Stops handing messages to `message` listeners and stops reading the socket (TCP backpressure
   * on the peer) until `resume()`, as `ws`'s `pause()` does. What was already read is still
   * parsed: its messages wait, in order (`recv()` still takes them), and pings are answered.
   */
  pause(): void {
    this.flags |= USER_PAUSED;
    this.pauseReading();
  }

  /**
   * `pause()` for a listener whose own queue is full (a WebSocketStream's readable, createWebSocketStream's Duplex): the rest of the socket read being parsed is held back too, from the next message on,
   * as when the connection's own queue fills (holdMessages), instead of being queued here behind
   * it; `resume()` receives it again. (Fixed bug: a read of many small messages filled the
   * readable to its high-water mark, and the rest of the read went on into this queue, up to
   * readHighWaterMark more: twice the unread data the mark allows.) @internal
   */
  pauseHolding(): void {
    this.pause();
    const engine = this.engine;
    if ((this.flags & QUEUE_FULL) !== 0 || engine?.holdMessages === undefined || engine.state !== 'open') return;
    this.flags |= QUEUE_FULL;
    engine.holdMessages();
  }

  /** Hands the messages that waited to the `message` listeners, then reads the socket again. */
  resume(): void {
    if ((this.flags & USER_PAUSED) === 0) return;
    this.flags &= ~USER_PAUSED;
    if (this.inbox !== undefined) this.flushInbox();
    // Unless a listener paused again, or what waits (or a streamed message) still wants it paused.
    if ((this.flags & USER_PAUSED) === 0) this.streamDrained();
  }

  /** Whether `pause()` is in effect. */
  get isPaused(): boolean {
    return (this.flags & USER_PAUSED) !== 0;
  }

  /**
   * Client: the bytes that came with the handshake response (a server that greets at once sends
   * its first messages with the 101, often in the same TCP segment) are parsed once the code that
   * awaited `connect()` has run (an immediate comes after every microtask), so the listeners it
   * added get those messages as they are parsed, in order with whatever else that read holds: a
   * greeting followed by a frame that fails the connection can still be answered, as any later
   * message could. The socket is not read meanwhile, so what arrives later is parsed later.
   */
  private holdHead(head: Buffer): void {
    this.pendingHead = head;
    this.pauseReading();
    setImmediate(releaseHead, this);
  }

  /** Parses the bytes held by holdHead (at the latest when the connection closes). @internal */
  releaseHead(): void {
    const head = this.pendingHead;
    if (head === undefined) return;
    this.pendingHead = undefined;
    // Direct reads start at the first chunk the socket delivers, not at this one: reads made
    // while it waited may be buffered in the stream.
    const direct = this.flags & DIRECT_PENDING;
    this.flags &= ~DIRECT_PENDING;
    this.handleData(head);
    this.flags |= direct;
    // Reading resumes, even if paused, when a close() made meanwhile waits for the peer's answer.
    this.resumeReading(this.engine !== undefined && this.engine.closeSent);
  }

  private pauseReading(): void {
    if (this.readPaused) return;
    this.readPaused = true;
    this.stream.pause();
  }

  /** Reads the socket again, unless the application paused it (`pause()`) and this is not `close()`. */
  private resumeReading(evenIfPaused = false): void {
    if (!this.readPaused || (!evenIfPaused && (this.flags & USER_PAUSED) !== 0) || this.pendingHead !== undefined) return;
    if ((this.flags & QUEUE_FULL) !== 0) {
      // The engine holds back no more messages; one it held is received now, and it then parses
      // on (onInflating), or waits again. Still paused if they filled the queue again.
      this.flags &= ~QUEUE_FULL;
      this.engine?.resumeHeld?.();
      if ((this.flags & QUEUE_FULL) !== 0) return;
    }
    if (!this.readPaused || (this.flags & INFLATING) !== 0) return;
    this.readPaused = false;
    if (!this.closedFlag) this.stream.resume();
  }

  // ---- ProtocolHandler (called by the protocol) ------------------------------------------------

  /**
   * Before a write: corks the stream until the end of the received chunk being processed, or,
   * outside one, until the code now running is done, unless it already is.
   */
  private holdForWrite(): void {
    const flags = this.flags;
    if ((flags & IN_CHUNK) !== 0) {
      if ((flags & CORKED) === 0) this.corkChunk();
    } else if ((flags & HELD) === 0 && !this.closedFlag) {
      this.holdWrites();
    }
  }

  /** @internal */
  onWrite(data: Buffer): void {
    this.holdForWrite();
    this.stream.write(data);
    if (this.stream.writableLength > this.limits.maxBufferedAmount) this.overflow();
  }

  /** @internal */
  onWritev(header: Buffer, payload: Buffer): void {
    this.writeAfterHeader(header, payload);
  }

  /** @internal */
  onWritevAscii(header: Buffer, text: string): void {
    // A socket writes a string natively; another transport's stream may expect Buffers only.
    this.writeAfterHeader(header, this.rare?.transport === undefined ? text : Buffer.from(text, 'latin1'));
  }

  /** A header and its payload (bytes, or an ASCII string), in one write. */
  private writeAfterHeader(header: Buffer, payload: Buffer | string): void {
    const stream = this.stream;
    this.holdForWrite();
    stream.cork();
    stream.write(header);
    stream.write(payload, 'latin1');
    stream.uncork();
    if (stream.writableLength > this.limits.maxBufferedAmount) this.overflow();
  }

  /**
   * Where exceptions thrown by event listeners go; the server seam sets it to its handler-failure
   * path (close 1011, `onError`). Kept in the shared limits (every connection of a server has the
   * same). @internal
   */
  get listenerFailed(): Limits['listenerFailed'] {
    return this.limits.listenerFailed;
  }
  /** @internal */
  set listenerFailed(handler: Limits['listenerFailed']) {
    this.limits = limitsWith(this.limits, this.limits.registry, handler);
  }

  /** @internal */
  onMessage(data: Message, binary: boolean): void {
    // (Read off the rare fields directly: this runs for every message.)
    const streamWaiters = this.rare?.streamWaiters;
    if (streamWaiters !== undefined && streamWaiters.length > 0) {
      // recvStream() was called while this message was arriving (its first fragment was already
      // in): it is the next message, so it goes to that stream, whole, as a queued one would
      // (fixed bug: it was queued, and the stream got the message after it instead).
      const waiter = streamWaiters.shift()!;
      if (streamWaiters.length === 0) this.proto.streamNextMessage = false;
      waiter(Readable.from([typeof data === 'string' ? Buffer.from(data) : data]));
      return;
    }
    const listener = this.messageListener();
    if (listener !== undefined && (this.flags & USER_PAUSED) === 0) {
      if (this.inbox !== undefined) this.flushInbox();
      this.emitMessage(listener, data, binary);
      return;
    }
    if (this.waiter !== undefined && this.deliver(data)) return;
    const inbox = (this.inbox ??= new Inbox());
    // Once our close frame is on its way the socket is read on for the peer's (see closeNow); a
    // full queue then takes nothing more: what the application would not have read is dropped.
    if (inbox.bytes > this.limits.readHighWaterMark && this.proto.state !== 'open') return;
    inbox.items.push(data);
    inbox.bytes += messageSize(data);
    if (!binary && typeof data !== 'string') (inbox.texts ??= new WeakSet()).add(data);
    if (inbox.bytes > this.limits.readHighWaterMark && this.proto.state === 'open') {
      this.pauseReading();
      // The rest of the read being parsed waits too, from the next message on.
      this.flags |= QUEUE_FULL;
      this.proto.holdMessages?.();
    }
  }

  /** The `message` listener, or the list of them, read from the listener table directly. */
  private messageListener(): ListenerTable['message'] {
    return (this as unknown as { _events: ListenerTable | undefined })._events?.message;
  }

  /** Hands the queued messages to the `message` listeners, while there are any and not paused. */
  private flushInbox(): void {
    while (this.inbox !== undefined && (this.flags & USER_PAUSED) === 0) {
      const listener = this.messageListener();
      if (listener === undefined) return;
      const texts = this.inbox.texts;
      const data = this.takeMessage();
      this.emitMessage(listener, data, typeof data !== 'string' && texts?.has(data) !== true);
      // Only now: reading on may receive the messages the engine held back at once, and they
      // come after this one (fixed bug: they were delivered first, the rest of the queue with
      // them, then this one; a listener that paused and resumed got messages out of order).
      this.inboxDrained();
    }
  }

  /** Calls the `message` listener(s); a throwing one is a handler failure (close 1011). */
  private emitMessage(listener: NonNullable<ListenerTable['message']>, data: Message, binary: boolean): void {
    // A throwing 'message' listener used to escape from the socket's 'data' event and crash the
    // process (found by test/robustness/faults.test.ts).
    try {
      // One plain listener (the usual case) is called as emit() would call it, without emit's
      // argument array and its lookup by event name (a megamorphic load shared by every emitter
      // in the process). emit() keeps the rest: several listeners, and captureRejections.
      if (typeof listener === 'function' && !EventEmitter.captureRejections) listener.call(this, data, binary);
      else this.emit('message', data, binary);
    } catch (error) {
      this.onListenerError(error);
    }
  }

  /** @internal */
  onPiece(data: Buffer, _binary: boolean, first: boolean, last: boolean): void {
    if (first) {
      const incoming = new Readable({
        read: () => {
          // (The reader wants more: a compressed frame held for it is inflated on.)
          this.engine?.resumeStreaming?.();
          this.resumeReading();
        },
      });
      // Reading paused by this stream's backpressure resumes when the stream has been read to its
      // end or destroyed: an ended Readable never calls `read` again.
      incoming.once('close', () => {
        this.engine?.resumeStreaming?.();
        this.streamDrained();
      });
      this.incoming = incoming;
      const waiter = this.streamWaiters?.shift();
      if (this.streamWaiters && this.streamWaiters.length > 0) this.proto.streamNextMessage = true;
      waiter?.(incoming);
    }
    const incoming = this.incoming!;
    // A stream the application destroyed takes nothing more: the rest of its message is dropped.
    // Once close() was called, the socket is read on to the peer's close frame (see closeNow): a
    // full stream no longer pauses it (fixed bug: close() with an unread stream whose message was
    // still arriving stalled until closeTimeout, and ended 1006 however promptly the peer answered).
    let full = false;
    try {
      full = data.length > 0 && !incoming.destroyed && !incoming.push(data);
    } catch (error) {
      // A `data` listener of the stream threw (push() emits 'data' at once to a flowing stream):
      // a handler failure, as a throwing `message` listener is (fixed bug: the exception left the
      // frame parser in the middle of the read, whose rest, the peer's close frame included,
      // waited for the peer's next bytes; and, uncaught, it ended a server's process).
      this.onListenerError(error);
    }
    if (full && this.engine?.state === 'open') this.pauseReading();
    if (last) {
      if (!incoming.destroyed) incoming.push(null);
      this.incoming = undefined;
    }
  }

  /**
   * True while the streamed message's reader holds its high-water mark (see
   * ProtocolHandler.streamFull). Once close() was called (its close frame out, or queued behind a
   * compression job) the peer's answer is read, and what comes before it is handed over without
   * waiting, as the socket is read on then (see closeNow). (Fixed bug: a close frame queued behind
   * compression left the stream full when it went out, and the peer's answer was never read.)
   * @internal
   */
  streamFull(): boolean {
    const incoming = this.incoming;
    return incoming !== undefined && !incoming.destroyed && incoming.readableLength >= incoming.readableHighWaterMark && this.engine?.state === 'open';
  }

  /**
   * Resumes reading paused by a streamed message that has now been read (or dropped), unless the
   * inbox or the message streaming now still want it paused.
   */
  private streamDrained(): void {
    if (!this.readPaused) return;
    const inbox = this.inbox;
    if (inbox !== undefined && inbox.bytes > this.limits.readHighWaterMark / 2) return;
    const incoming = this.incoming;
    if (incoming !== undefined && !incoming.destroyed && incoming.readableLength >= incoming.readableHighWaterMark) return;
    this.resumeReading();
  }

  /** @internal */
  onPing(payload: Buffer): void {
    if ((this.flags & CLOSE_RECEIVING) !== 0) this.discountControl(payload);
    // RFC 6455 §5.5.3: a pong may answer only the most recent ping; while the peer does not read
    // our writes, keep just the latest payload instead of queueing a pong per ping.
    if (this.stream.writableLength > this.limits.writeHighWaterMark) {
      this.pendingPong = Buffer.from(payload);
      this.wantDrain();
    } else {
      this.proto.pong(payload);
    }
    if (this.listenerCount('ping') > 0) this.emitEvent('ping', Buffer.from(payload));
  }

  /** @internal */
  onPong(payload: Buffer): void {
    if ((this.flags & CLOSE_RECEIVING) !== 0) this.discountControl(payload);
    this.keepaliveOutstanding = false;
    const pings = this.pings;
    if (pings && pings.length > 0) {
      // A pong answers the latest ping with its payload and every ping before it: RFC 6455 §5.5.3
      // lets a peer answer only the most recent of the pings it has read (this library does so
      // while its writes are backed up). (Fixed bug: it answered the oldest such ping only, so two
      // pings answered by one pong left one pending for good: `pings` grew by one per such pong,
      // and every later ping() resolved with the round trip of an older one, never its own.)
      let index = pings.length - 1;
      while (index >= 0 && !pings[index]!.payload.equals(payload)) index--;
      if (index >= 0) {
        const now = performance.now();
        for (const ping of pings.splice(0, index + 1)) ping.resolve(now - ping.sentAt);
      }
    }
    if (this.listenerCount('pong') > 0) this.emitEvent('pong', Buffer.from(payload));
  }

  /**
   * The protocol waits for a thread-pool inflation job (`waiting`), or parses again: the socket is
   * not read meanwhile, as ws's receiver does not take more while it inflates. Reading then
   * resumes unless something else still holds it (pause(), a full queue, a streamed message).
   * @internal
   */
  onInflating(waiting: boolean): void {
    // (A socket's transport object exists once `conn.transport` was asked for: still a socket.
    // Fixed bug: it was then taken for another kind, the socket was not kept half open, and a FIN
    // while a message inflated closed the connection ahead of it, or, asked for meanwhile, the
    // socket was left half open for good and the peer's end never closed the connection.)
    const transport = this.rare?.transport;
    const socket = transport === undefined || transport instanceof SocketTransport ? (this.stream as Socket) : undefined;
    if (waiting) {
      this.flags |= INFLATING;
      // The peer's end, if it comes meanwhile, waits for the frames it sent before it, which wait
      // here (fixed bug: a message, its close frame and the FIN after them were dropped, 1006, when
      // the FIN came while the message inflated or its stream waited for the reader): a socket
      // does not end its side at its 'end' (see the constructor), and handleEnd waits.
      if (socket !== undefined) socket.allowHalfOpen = true;
      this.pauseReading();
      return;
    }
    if ((this.flags & INFLATING) === 0) return;
    this.flags &= ~INFLATING;
    if ((this.flags & GONE_PENDING) !== 0 || this.rare?.goneError !== undefined) {
      this.transportGone();
      return;
    }
    if (socket !== undefined) {
      socket.allowHalfOpen = false;
      if (socket.readableEnded) endSocket(socket);
    } else if ((this.flags & END_PENDING) !== 0) {
      this.flags &= ~END_PENDING;
      this.handleEnd();
      return;
    }
    // Once close() was called, the peer's answer is read even if paused (see closeNow).
    if (this.engine !== undefined && this.engine.state !== 'open') this.resumeReading(true);
    else this.streamDrained();
  }

  /** @internal */
  onCloseFrame(): void {
    this.endReceiving();
    if ((this.flags & CLIENT) !== 0 || !this.proto.closeSent) {
      // RFC 6455 §7.1.1: the client waits for the server to close TCP, within a timeout. And a
      // reply that waits behind sends still being compressed (see Protocol.receiveClose) is
      // bounded by it as a close() behind them is: a compression that stalls is aborted.
      this.armCloseTimer();
    }
  }

  /**
   * Our close frame was written. When a close timer already runs, the frame waited (behind sends
   * being compressed or a sendStream(), or as the answer to the peer's close): the peer gets a
   * whole closeTimeout from now to answer it (fixed bug: the timer ran on from the close() call or
   * the peer's close frame, and a close frame written just before it came due was aborted at once,
   * 1006, however promptly the peer answered).
   * @internal
   */
  onCloseWritten(): void {
    if (this.closeTimer === undefined) return;
    clearTimeout(this.closeTimer);
    this.closeTimer = undefined;
    const rare = this.rareFields();
    rare.closeTaken = NaN;
    rare.closeStreamed = -1;
    rare.closeBacklog = false;
    this.armCloseTimer();
  }

  /**
   * CLOSE_RECEIVING: a ping or pong received is not data, and the whole frame beginChunk counted
   * is taken back: its 2-byte header, the masking key a client's frames carry (a server's frames
   * to our client carry none: RFC 6455 §5.1), and the payload (at most 125 bytes, so no extended
   * length).
   */
  private discountControl(payload: Buffer): void {
    this.rare!.closeData -= ((this.flags & CLIENT) !== 0 ? 2 : 6) + payload.length;
  }

  /**
   * The pong held back while our writes were backed up (onPing), given up to be written before
   * our close frame (see ProtocolHandler.takeHeldPong).
   * @internal
   */
  takeHeldPong(): Buffer | undefined {
    const payload = this.rare?.pendingPong;
    if (payload !== undefined) this.pendingPong = undefined;
    return payload;
  }

  /** @internal */
  onFail(error: WebSocketError): void {
    this.errorValue = error;
    this.endReceiving();
    this.emitError(error);
  }

  /** @internal */
  onEnd(): void {
    // A server ends its side when its closing handshake is complete or it failed the connection
    // (its close frame sent): it closes first (RFC 6455 §7.1.1) and need not wait for a peer that
    // has nothing more to send, or whose input it MUST NOT process any more (§7.1.7; see
    // Transport.endClosed): over HTTP/2 the stream is reset with NO_ERROR after our END_STREAM.
    // (Fixed bug: Firefox never ends its side of the stream after the close handshake, nor after
    // a failure of ours, and each of its WebSockets over HTTP/2 closed only at closeTimeout,
    // reset with CANCEL.) A client waits for the server's end, bounded by the close timer.
    const transport = this.rare?.transport;
    if (transport?.endClosed !== undefined && (this.flags & CLIENT) === 0) transport.endClosed();
    else this.endTransport();
    this.armCloseTimer();
  }

  // ---- Sending --------------------------------------------------------------------------------

  /**
   * Sends a message: text for a string, binary for bytes (or as `options.binary` says). Resolves
   * when the bytes were handed to the transport, after waiting for `drain` if the outgoing buffer
   * is over `writeHighWaterMark`. Rejects (never unhandled) with ConnectionClosedError after close.
   * A {@link PreparedMessage} goes as it was prepared (`options.binary` does not apply to it).
   * Options that are not an object (a callback, as `ws` takes) reject with a TypeError, unsent.
   */
  send(data: SendData | PreparedMessage, options?: SendOptions): Promise<void> {
    // (Fixed bug: `ws`'s `send(data, callback)` sent the message and never called the callback,
    // so code that went on from it hung without a word.)
    if (options != null && typeof options !== 'object') return rejected(notOptions('send(data, options)', '{ binary, compress }', options));
    // What the data is is checked first, at the call, whatever the connection's variant or state:
    // anything that is neither a string nor bytes rejects with a TypeError. (Fixed bug: over
    // hybi-00 a number, null or an object rejected with UnsupportedError WS_HYBI00_TEXT_ONLY, as
    // binary data; behind a sendStream() null and undefined threw at the call instead of
    // rejecting, and a number was queued and refused only when its turn came.)
    let payload: string | Buffer | PreparedMessage;
    if (typeof data === 'string' || data instanceof PreparedMessage) payload = data;
    else {
      try {
        payload = toBuffer(data);
      } catch (error) {
        return rejected(error);
      }
    }
    if (this.behindStream()) {
      if ((this.flags & CLOSE_WAITING) !== 0) return rejected(this.closingError());
      // Behind a sendStream(): in turn, and what is sent after it waits for it in turn (fixed bug:
      // it was put behind the sendStream() calls made after it, or lost behind a later close()).
      // What waits there counts against maxBufferedAmount, as what waits for compression does
      // (fixed bug: it did not, and a broadcast to a connection whose sendStream() waited for its
      // source held 200 MB of messages against a 1 MiB cap, with bufferedAmount 0).
      const size = payload instanceof PreparedMessage ? payload.data.length : payload.length;
      let sent: Promise<void> | undefined;
      const result = this.behind(size, () => {
        sent = this.sendNow(payload, options);
      }).then(() => sent!);
      result.catch(noop);
      return result;
    }
    return this.sendNow(payload, options);
  }

  /**
   * Runs `run` (which must not throw) in turn behind the sendStream() under way, its `size` bytes
   * counted in bufferedAmount (against maxBufferedAmount) until then; resolves once it has run.
   */
  private behind(size: number, run: () => void): Promise<void> {
    const rare = this.rareFields();
    rare.tailBytes += size;
    const handed = this.sendTail!.then(() => {
      rare.tailBytes -= size;
      run();
    });
    const tail = handed.then(() => {
      if (this.sendTail === tail) this.sendTail = undefined;
    });
    this.sendTail = tail;
    this.checkQueued();
    return handed;
  }

  /**
   * Whether a send now waits behind a sendStream(): one runs, and the connection is not closed
   * (after an abort, a send rejects at once, as it does without a sendStream(); fixed bug: each
   * one made before the transport's 'close' was queued, and emitted another WS_SEND_BUFFER_FULL).
   */
  private behindStream(): boolean {
    return this.sendTail !== undefined && !this.closedFlag && this.engine?.state !== 'closed';
  }

  /** send() with nothing before it in sendTail. */
  private sendNow(data: string | Buffer | PreparedMessage, options: SendOptions | undefined): Promise<void> {
    try {
      if ((this.flags & GONE_PENDING) !== 0) throw this.goneError();
      const compress = options?.compress ?? true;
      let sync: boolean;
      let callbackPromise: Promise<void> | undefined;
      let callback: ((error?: Error) => void) | undefined;
      if (this.extension) {
        callbackPromise = new Promise<void>((resolve, reject) => {
          callback = (error) => (error ? reject(error) : resolve());
        });
        callbackPromise.catch(noop);
      }
      if (data instanceof PreparedMessage) {
        noteTraffic(data.data.length);
        sync = this.proto.sendPrepared(data, compress, callback);
      } else if (typeof data === 'string' && !options?.binary) {
        noteTraffic(data.length);
        sync = this.proto.sendText(data, compress, callback);
      } else {
        // Bytes, or a string sent as binary; bytes with `binary: false` are text.
        const binary = options?.binary !== false;
        if (binary && (this.flags & HYBI00) !== 0) throw new UnsupportedError('hybi-00 connections carry text only', 'WS_HYBI00_TEXT_ONLY');
        const bytes = typeof data === 'string' ? Buffer.from(data) : data;
        noteTraffic(bytes.length);
        if (!binary) {
          // Bytes sent as text go out as they are, once checked: a text message must be UTF-8
          // (RFC 6455 §5.6), and the peer would fail the connection (1007) on anything else.
          if (!isUtf8(bytes)) throw new TypeError('send(bytes, { binary: false }): the bytes are not valid UTF-8');
          sync = this.proto.sendText(bytes, compress, callback);
        } else {
          sync = this.proto.sendBinary(bytes, compress, callback);
        }
      }
      if (!sync) {
        // (This promise, not only the callback's, must be handled: a send() not awaited whose
        // message was still being compressed when the connection closed was an unhandled
        // rejection, which ends a Node process by default.)
        const written = callbackPromise!.then(() => this.drained());
        written.catch(noop);
        this.checkQueued();
        return written;
      }
      return this.drained();
    } catch (error) {
      return rejected(error);
    }
  }

  /**
   * At the first write outside a received chunk: corks the stream until the code now running is
   * done (one microtask for every connection held meanwhile), so that what it sends to this
   * connection leaves in one system call.
   */
  private holdWrites(): void {
    this.flags |= HELD;
    this.stream.cork();
    heldConnections.push(this);
    if (!releaseScheduled) {
      releaseScheduled = true;
      queueMicrotask(releaseHeld);
      if (!exitHooked) {
        // `conn.send(x); process.exit()` with no await between: the microtask never runs, but
        // 'exit' listeners do, and a socket write made there still reaches the kernel.
        exitHooked = true;
        process.on('exit', releaseHeld);
      }
    }
  }

  /** Ends `holdWrites()`: what was written meanwhile goes out. @internal */
  releaseWrites(): void {
    if ((this.flags & HELD) === 0) return;
    this.flags &= ~HELD;
    this.stream.uncork();
  }

  /**
   * {@link broadcast}'s step for this connection: `send(message)` without the promise. Returns
   * false when the connection cannot take it (closing or closed; hybi-00 and a binary message).
   * @internal
   */
  offer(message: PreparedMessage, compress: boolean): boolean {
    if (this.closedFlag || ((this.flags & HYBI00) !== 0 && message.binary)) return false;
    if (this.behindStream()) {
      // (Not after a close() that waits for the stream: skipped, as a closing connection is.)
      if ((this.flags & CLOSE_WAITING) !== 0) return false;
      // Behind a sendStream(): in turn, as send() would, counted against maxBufferedAmount
      // meanwhile, and offered then as it is now. An exception an `error` listener throws then
      // (the connection crossed maxBufferedAmount when its turn came) has no caller left to go to:
      // it is an uncaught exception, as after a compression that finished. (Fixed bug: it went
      // into the promise of a send() nobody held, and vanished.)
      void this.behind(message.data.length, () => {
        try {
          this.offerNow(message, compress);
        } catch (error) {
          process.nextTick(rethrow, error);
        }
      });
      return true;
    }
    return this.offerNow(message, compress);
  }

  /** {@link offer} with nothing queued behind a sendStream(). */
  private offerNow(message: PreparedMessage, compress: boolean): boolean {
    if (this.closedFlag || (this.flags & GONE_PENDING) !== 0) return false;
    try {
      noteTraffic(message.data.length);
      if (!this.proto.sendPrepared(message, compress, undefined)) this.checkQueued();
      return true;
    } catch (error) {
      // A refusal (closing, a fragmented message under way) skips the connection; anything else
      // is an exception thrown by an `error` listener, for broadcast() to rethrow.
      if (error instanceof ConnectionClosedError || (error instanceof WebSocketError && error.code === 'WS_SEND_IN_PROGRESS')) return false;
      throw error;
    }
  }

  /**
   * Sends one message in fragments from a stream or (async) iterable of chunks, without buffering
   * it whole; waits for `drain` between fragments. Other sends wait until it is done. An async
   * source's chunks go out as they come, and an empty final fragment ends the message once the
   * source ends; a synchronous source's (an array's) last fragment ends it, as does that of a
   * string or bytes given whole (one chunk, cut at `fragmentSize`). Rejects with
   * ConnectionClosedError as soon as the connection closes, and then lets the source go (a Node
   * stream is destroyed).
   */
  sendStream(data: AsyncIterable<SendData> | Iterable<SendData> | SendData, options?: SendStreamOptions): Promise<void> {
    // Options as send() takes them: none (undefined or null), or an object; anything else rejects
    // with a TypeError, unsent. (Fixed bug: null threw at the call, where send() takes it as no
    // options, and a callback, as `ws`'s send(data, cb) takes, was ignored without a word.)
    if (options != null && typeof options !== 'object') return rejected(notOptions('sendStream(data, options)', '{ binary, compress, fragmentSize }', options));
    const opts: SendStreamOptions = options ?? {};
    if ((this.flags & HYBI00) !== 0) return rejected(new UnsupportedError('hybi-00 cannot fragment', 'WS_HYBI00_NO_FRAGMENTS'));
    const limit = opts.fragmentSize ?? Defaults.streamFragmentSize;
    // (0 or a negative size sent empty fragments without end; NaN sent an empty message.)
    if (!(limit >= 1)) return rejected(new RangeError(`sendStream(): fragmentSize must be at least 1, not ${limit}`));
    if ((this.flags & CLOSE_WAITING) !== 0 && this.behindStream()) return rejected(this.closingError());
    // A string or bytes given whole is one chunk. (Fixed bug: a string was iterated a character at
    // a time, a fragment per character, and a long one went past the peer's maxFragments, 1009;
    // bytes were iterated as numbers, and refused.)
    const source: AsyncIterable<SendData> | Iterable<SendData> =
      typeof data === 'string' || ArrayBuffer.isView(data) || isAnyArrayBuffer(data) ? [data] : (data as AsyncIterable<SendData> | Iterable<SendData>);
    const run = async (): Promise<void> => {
      // Its turn came after a close() was sent: nothing of the source is taken. (A close() behind
      // this stream, made after it was called, waits for it: CLOSE_WAITING is not checked here.)
      if (this.closedFlag || this.proto.state !== 'open') throw this.closingError();
      if ((this.flags & GONE_PENDING) !== 0) throw this.goneError();
      const opcode = opts.binary === false ? Opcode.Text : Opcode.Binary;
      const compress = opts.compress ?? true;
      // Text is checked as it comes, as send() checks it: bytes that are not UTF-8 fail the source
      // (they went out as they were, and the peer failed the connection with 1007, RFC 6455 §8.1).
      const validator = opcode === Opcode.Text ? new Utf8Validator() : undefined;
      // A high surrogate that ended a string chunk, kept for the low one that starts the next: a
      // string cut at any index (`text.slice()`) keeps its characters (each half was sent as U+FFFD).
      let surrogate = '';
      // The source's end can be known without waiting for it only when it is synchronous (an
      // array, a sync generator): the next chunk is then taken at once, and the last fragment of
      // the last chunk carries FIN, as it always did. An async source (a Node stream, an async
      // generator: a live feed) may wait any time for its next chunk, so each chunk goes out as it
      // arrives and the end is an empty final fragment (fixed bug: each chunk's last fragment was
      // held until the next chunk came, so a peer reading the message as it arrives saw every
      // chunk one step late, and the last chunk before a pause only when the pause ended).
      const live = typeof (source as AsyncIterable<SendData>)[Symbol.asyncIterator] === 'function';
      // (Sync sources) the last fragment so far, which goes out once the next one is known.
      let held: Buffer | undefined;
      // A fragment of the message has gone out (and its last one has not).
      let started = false;
      const flush = async (fin: boolean): Promise<void> => {
        const data = held ?? Buffer.alloc(0);
        held = undefined;
        started = !fin;
        this.rareFields().streamedBytes += data.length + 1;
        await new Promise<void>((resolve, reject) => {
          const sync = this.proto.sendFragment(opcode, data, fin, compress, (e) => (e ? reject(e) : resolve()));
          if (sync) resolve();
          else this.checkQueued();
        });
        await this.drained();
      };
      const put = async (bytes: Buffer): Promise<void> => {
        if (validator !== undefined && !validator.feed(bytes, false)) throw new TypeError('sendStream(…, { binary: false }): the bytes are not valid UTF-8');
        for (let at = 0; at < bytes.length; at += limit) {
          if (held) await flush(false);
          held = bytes.subarray(at, Math.min(bytes.length, at + limit));
        }
        if (live && held) await flush(false);
      };
      // The source is read until the connection closes: a source that waits then (a live feed, a
      // stalled pipe) is given up and destroyed, as pipeline() destroys its source when the
      // destination fails (fixed bug: the promise never settled and the source was never let go).
      const closed = new StreamCancel();
      this.streamCancel = closed;
      try {
        for await (const chunk of untilClosed(source, closed)) {
          if (typeof chunk === 'string') {
            let text = surrogate + chunk;
            surrogate = '';
            const last = text.charCodeAt(text.length - 1);
            if (last >= 0xd800 && last <= 0xdbff) {
              surrogate = text.slice(-1);
              text = text.slice(0, -1);
            }
            await put(Buffer.from(text));
          } else {
            const bytes = toBuffer(chunk);
            if (surrogate !== '') await put(Buffer.from(surrogate));
            surrogate = '';
            await put(bytes);
          }
        }
        // (A lone high surrogate at the end is U+FFFD, as send() makes it.)
        if (surrogate !== '') await put(Buffer.from(surrogate));
        if (validator !== undefined && !validator.complete) throw new TypeError('sendStream(…, { binary: false }): the text ends inside a UTF-8 sequence');
      } catch (error) {
        if (started) this.abandonMessage();
        throw error;
      } finally {
        if (this.streamCancel === closed) this.streamCancel = undefined;
      }
      await flush(true);
    };
    const previous = this.sendTail ?? RESOLVED;
    const mine = previous.then(run);
    const tail = mine.then(noop, noop).then(() => {
      if (this.sendTail === tail) this.sendTail = undefined;
    });
    this.sendTail = tail;
    mine.catch(noop);
    return mine;
  }

  /**
   * A sendStream() whose source failed (threw, or gave something that is not data) after the
   * message's first fragments went out: the message cannot be finished, and no other message may
   * be sent before it is (RFC 6455 §5.4; fixed bug: the next send() wrote a new message into the
   * open one, and the peer failed the connection with 1002). The connection is closed with 1011 at
   * once, ahead of the sends queued behind the stream, which then reject (a close frame may go
   * between fragments). A source that fails before any fragment went out costs nothing.
   */
  private abandonMessage(): void {
    this.closeNow(CloseCode.InternalError, '');
  }

  /**
   * Sends a ping and resolves with the round-trip time in ms when the matching pong arrives.
   * Rejects with ConnectionClosedError if the connection closes first (never an unhandled
   * rejection: `conn.ping()` need not be awaited).
   */
  ping(payload: SendData = Buffer.alloc(0)): Promise<number> {
    if ((this.flags & HYBI00) !== 0) return rejected(new UnsupportedError('hybi-00 has no ping', 'WS_HYBI00_NO_PING'));
    if ((this.flags & GONE_PENDING) !== 0) return rejected(this.goneError());
    try {
      const bytes = typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(toBuffer(payload));
      this.proto.ping(bytes);
      const pong = new Promise<number>((resolve, reject) => {
        (this.pings ??= []).push({ payload: bytes, sentAt: performance.now(), resolve, reject });
      });
      // Never an unhandled rejection when the connection closes first: a keepalive that fires
      // ping() without awaiting it (setInterval) must not end the process, as send() does not
      // (fixed bug). Awaiting it still rejects.
      pong.catch(noop);
      return pong;
    } catch (error) {
      return rejected(error);
    }
  }

  /**
   * Starts (or joins) the closing handshake and resolves once the transport is closed. Messages
   * sent before are delivered first. Default code 1000; `null` sends a close frame without a
   * status code (the peer sees 1005), as a browser's `close()` without arguments does.
   */
  close(code: number | null = CloseCode.Normal, reason = ''): Promise<void> {
    try {
      // Checked whatever the state, as WebSocket.close() checks them (fixed bug: once the
      // connection was closed, a code or reason that may not be sent resolved, where it rejected
      // while open or closing: whether a wrong call was reported depended on the peer's timing).
      if ((this.flags & HYBI00) === 0) checkClosePayload(code ?? undefined, reason);
      if (this.sendTail && !this.closedFlag) {
        // Messages queued behind a sendStream() wait on sendTail, not in the protocol: the close
        // frame used to overtake them and they were lost (test/robustness/nothing-lost.test.ts).
        // Validated above, closed once they are written. (Not through close() again: that waited for
        // the sendStream() and send() calls made after this close() too, and sent them.)
        if ((this.flags & CLOSE_WAITING) !== 0) return this.whenClosed;
        // Closing from now on, as a close() behind sends waiting for compression is: readyState
        // says so, later sends reject and broadcast() skips it (fixed bug: it read `open`, and a
        // broadcast() counted the connection, though the message was then dropped).
        this.flags |= CLOSE_WAITING;
        this.sendTail.then(() => this.closeNow(code, reason)).catch(noop);
        // Bounded by closeTimeout from now, as a close() behind queued sends is. (Fixed bug: behind
        // a sendStream() whose source stalled, close() never resolved, and server.close() hung.)
        this.armCloseTimer();
        return this.whenClosed;
      }
      this.closeNow(code, reason);
    } catch (error) {
      return rejected(error);
    }
    return this.whenClosed;
  }

  /**
   * GONE_PENDING: how much of what was read still waits for the reader (bytes unparsed, queued, in
   * a streamed message's buffer), which changes only as the reader takes some of it.
   */
  private unreadHeld(): number {
    const engine = this.engine;
    return (engine instanceof Protocol ? engine.bufferedIncoming : 0) + (this.inbox?.bytes ?? 0) + (this.incoming?.readableLength ?? 0);
  }

  /** What a send made while the transport is gone and its close waits for what was read (GONE_PENDING) rejects with. */
  private goneError(): ConnectionClosedError {
    return new ConnectionClosedError(CloseCode.Abnormal, '', 'the transport is gone; what it read is still being received');
  }

  /** What a send made once the connection is closing rejects with. */
  private closingError(): ConnectionClosedError {
    return new ConnectionClosedError(this.closeStatus ?? CloseCode.Abnormal, this.closeReason ?? '');
  }

  /** Sends the close frame now (the code and reason already checked, checkClosePayload). */
  private closeNow(code: number | null, reason: string): void {
    if (!this.closedFlag && this.stream.writableEnded && this.proto.state === 'open') {
      // The transport can take no close frame: its writable side was ended under us (an HTTP/2
      // stream the peer reset with NO_ERROR while it was paused; Node ends it and keeps it, until
      // handleAborted destroys it once Node is done). Our
      // own end comes only once the protocol is closed. Aborted (1006), as the frame could not go
      // out. (Fixed bug: the frame was written anyway, and Node's ERR_STREAM_WRITE_AFTER_END was
      // emitted as the connection's error.) The code and reason were checked by close().
      this.abortTransport();
      return;
    }
    if (!this.closedFlag && this.proto.close(code, reason)) {
      this.armCloseTimer();
      // A paused connection still reads the peer's answer to our close frame (what arrives
      // before it waits, as paused, while the queue is under readHighWaterMark). Paused by a full
      // queue too (fixed bug: the close frame the peer sent back was never read, and the
      // connection was aborted at closeTimeout, 1006, however promptly the peer had answered).
      if (this.readPaused) this.resumeReading(true);
      // (And a compressed frame held for a streamed message's reader is inflated on.)
      this.engine?.resumeStreaming?.();
    }
  }

  /** Aborts the transport at once, without a closing handshake (close code 1006). */
  terminate(): void {
    this.abortTransport();
  }

  /** Resolves once the transport has closed. */
  get whenClosed(): Promise<void> {
    if (this.closedFlag) return RESOLVED;
    return (this.closedPromise ??= new Promise<void>((resolve) => (this.resolveClosed = resolve)));
  }

  // ---- Internals ------------------------------------------------------------------------------

  private drained(): Promise<void> {
    if (this.stream.writableLength <= this.limits.writeHighWaterMark) return RESOLVED;
    this.wantDrain();
    return (this.drainPromise ??= new Promise<void>((resolve) => (this.drainResolve = resolve)));
  }

  /**
   * Makes the stream emit `'drain'` once what it buffers has been written. A Writable emits it
   * only after a write that went past its own high-water mark (16 KiB for a socket); ours may be
   * lower, and then nothing would wake a `send()` waiting for it, or send a held pong (fixed bug:
   * with `writeHighWaterMark` under 16 KiB, an awaited `send()` to a client that fell behind
   * never resolved, even after the client had read everything).
   */
  private wantDrain(): void {
    const state = (this.stream as { _writableState?: { needDrain?: boolean } })._writableState;
    if (state !== undefined && state.needDrain === false) state.needDrain = true;
  }

  /** The transport's orderly end (a socket's without a Transport object). */
  private endTransport(): void {
    const transport = this.rare?.transport;
    if (transport !== undefined) transport.end();
    else endSocket(this.stream as Socket);
  }

  /**
   * The transport's abort. Nothing is written after it: the protocol is closed at once (1006,
   * unless a close frame decided the code), so a later send rejects. (Fixed bug: sends made before
   * the transport's 'close' still wrote to it: each one past maxBufferedAmount emitted another
   * WS_SEND_BUFFER_FULL error, and an HTTP/2 stream, ended by its abort, emitted
   * ERR_STREAM_WRITE_AFTER_END as the connection's error.)
   */
  private abortTransport(): void {
    if (!this.closedFlag) this.proto.receiveEof();
    const transport = this.rare?.transport;
    if (transport !== undefined) transport.abort();
    else abortSocket(this.stream as Socket);
    // A transport already gone, whose close waited for the bytes held for the reader: it closes
    // now, and those bytes are dropped (no second 'close' comes from it).
    if ((this.flags & GONE_PENDING) !== 0 || this.rare?.goneError !== undefined) this.transportGone();
  }

  /**
   * After a send that was queued behind compression: what waits there counts against
   * maxBufferedAmount as the write buffer does (fixed bug: it did not, and a handler that ignored
   * its send() promises held 841 MB of messages against a 4 MiB cap before the socket's buffer
   * alone crossed it).
   */
  private checkQueued(): void {
    if (!this.closedFlag && this.bufferedAmount > this.limits.maxBufferedAmount) this.overflow();
  }

  private overflow(): void {
    // The peer does not read what we send; policy: close with 1008 and abort (ConnectionOptions).
    const error = new BackpressureError(`outgoing buffer over maxBufferedAmount ${this.limits.maxBufferedAmount}`);
    this.errorValue = error;
    // Aborted even when an `error` listener throws (fixed bug: the exception skipped the abort, so
    // the cap no longer held: a broadcast() loop, which skips a connection that throws, went on
    // writing to a reader that never read, and emitted WS_SEND_BUFFER_FULL once per message).
    try {
      this.emitError(error);
    } finally {
      this.finalCode = CloseCode.PolicyViolation;
      this.abortTransport();
    }
  }

  private armCloseTimer(): void {
    if (this.closeTimer || this.closedFlag) return;
    const stream = this.stream;
    if (this.rare === undefined || this.rare.closeStreamed === -1) {
      // First armed: a socket backed up now holds what was sent before the close; the first check
      // looks at how much of it the peer has taken since.
      const taken = takenBehindBacklog(stream);
      if (!Number.isNaN(taken)) {
        const rare = this.rareFields();
        rare.closeTaken = taken;
        rare.closeBacklog = true;
      }
      // Behind a sendStream(), its progress counts from now. (Fixed bug: from -1, so the first
      // check always saw progress, and a close() behind a stalled stream was aborted at twice
      // closeTimeout.)
      if (this.sendTail !== undefined) {
        const rare = this.rareFields();
        rare.closeStreamed = rare.streamedBytes;
      }
    }
    if ((this.flags & CLOSE_RECEIVING) === 0 && !this.receiveEnded) {
      // The peer's close frame has not come: what it sent before it read ours may still be
      // arriving, and counts as progress (below). Counted from the first arming on, until
      // receiving ends, in the rare fields (made here: beginChunk adds to them).
      this.rareFields();
      this.flags |= CLOSE_RECEIVING;
    }
    const timer = peerDeadline(() => {
      // A timer replaced or cleared after it came due, while this check waited for its immediate
      // (see peerDeadline): clearTimeout() no longer stops it, so it stops here. (Fixed bug: our
      // close frame, written in that poll behind a sendStream() or a compression, was given a new
      // closeTimeout by onCloseWritten, and this stale check then found nothing left to go out
      // and aborted the connection at once, 1006, however promptly the peer answered.)
      if (this.closeTimer !== timer) return;
      this.closeTimer = undefined;
      if (this.closedFlag) return;
      if ((this.flags & GONE_PENDING) !== 0) {
        // The transport is gone and what it read waits for the reader: a reader that took some of
        // it since the last check is slow, not stuck, and gets another closeTimeout; one that took
        // nothing has the rest dropped, as terminate() does, and the transport's error is reported
        // (before the close), as the peer's close frame, if it sent one, was not read. (Fixed bug:
        // nothing bounded the wait, so a reset while the queue was full, of a server that does not
        // read what its clients send, left the connection `closing` for good, in
        // server.connections, its 'close' never emitted and whenClosed never resolved.)
        const rare = this.rareFields();
        const unread = this.unreadHeld();
        if (unread !== rare.goneUnread) {
          rare.goneUnread = unread;
          this.armCloseTimer();
          return;
        }
        const error = rare.goneError;
        rare.goneError = undefined;
        try {
          if (error !== undefined) {
            if (!this.errorValue) this.errorValue = error;
            this.emitError(error);
          }
        } finally {
          this.abortTransport();
        }
        return;
      }
      // What was sent before the close is still going out, and the peer has taken some of it
      // since the timer last fired (or a sendStream() before the close has sent more): a slow
      // reader, not a dead one. The timeout bounds a stall, not the whole delivery (fixed bug:
      // 40 MiB sent to a peer reading 3 MiB/s, then close(), was cut at closeTimeout with 15.6
      // MiB delivered, 1006). A peer that takes nothing for closeTimeout is aborted. The last of
      // it leaving the process since the last check is progress too: the peer then has a whole
      // closeTimeout from this check to take what the kernel still holds for it and answer (fixed
      // bug: it was aborted here, 1006, however fast it was reading; and the backlog compared was
      // bufferedAmount plus libuv's queue, which counts a write being made twice, so a burst of
      // sends corked into one write looked like a growing backlog).
      // While the close frame waits behind a sendStream(), the bytes the peer took count only when
      // some of ours were waiting for it at the last check (the stream held back by a slow reader):
      // what went out since is otherwise a ping or a pong written meanwhile, and the stream itself
      // counts through streamedBytes (fixed bug: behind a stalled source, pings sent by the
      // application or answered to the peer's keepalive made every check look like progress, and
      // close(), and server.close() with it, never resolved). Once our close frame is written the
      // same holds: nothing of ours was waiting at the last check, so what the peer took since is
      // pongs we answered its pings with after our close frame (fixed bug: a peer that took all we
      // sent, our close frame too, and then only pinged, never answering it, kept the connection
      // `closing` for good). Only sends still being compressed ahead of our close frame count
      // without a backlog: their output reaches the socket as each compression ends.
      // And what the peer sent before it read our close frame, still arriving, is progress too:
      // data bytes received since the last check (the pings and pongs among them do not count, as
      // a peer that only pings is not finishing anything), while those received since the close
      // timer was first armed stay within maxMessageSize (one message of the largest size we
      // take; a peer that goes on sending past that is not finishing what it had under way). A
      // peer that sends nothing for closeTimeout is aborted as before. (Fixed bug: a peer
      // uploading a large message over a slow link when we closed was aborted at closeTimeout,
      // 1006, while its bytes were still arriving, and the message was lost.)
      const rare = this.rareFields();
      let received = false;
      if ((this.flags & CLOSE_RECEIVING) !== 0) {
        const data = rare.closeData;
        received = data > rare.closeDataSeen && data <= this.limits.maxMessageSize;
        rare.closeDataSeen = data;
      }
      const taken = bytesTaken(stream);
      const streamed = rare.streamedBytes;
      const writtenOrBehindStream = (this.flags & CLOSE_WAITING) !== 0 || this.proto.closeSent;
      const progressed =
        (Number.isNaN(rare.closeTaken)
          ? this.bufferedAmount + writeQueueSize(stream) > 0
          : taken > rare.closeTaken && (rare.closeBacklog || !writtenOrBehindStream)) ||
        (this.sendTail !== undefined && streamed !== rare.closeStreamed) ||
        received;
      rare.closeTaken = taken;
      rare.closeStreamed = streamed;
      rare.closeBacklog = stream.writableLength + writeQueueSize(stream) > 0;
      if (progressed) this.armCloseTimer();
      else this.abortTransport();
    }, this.limits.closeTimeout);
    this.closeTimer = timer;
  }

  private endReceiving(): void {
    if (this.receiveEnded) return;
    this.receiveEnded = true;
    this.flags &= ~CLOSE_RECEIVING;
    while (this.deliver(EOF));
    const streamWaiters = this.streamWaiters;
    this.streamWaiters = undefined;
    if (streamWaiters) for (const waiter of streamWaiters) waiter(EOF);
    const incoming = this.incoming;
    if (incoming) {
      this.incoming = undefined;
      const error = new ConnectionClosedError(this.proto.closeCode ?? CloseCode.Abnormal, this.proto.closeReason, 'the connection closed in the middle of a message');
      // A stream nobody listens to yet may have been handed out by this very read (its first
      // fragment and the end came together): the code awaiting recvStream() runs only after
      // Node's next tick, where destroy() emits its 'error', with no listener then, an uncaught
      // exception. Destroyed in an immediate instead, once that code has had its turn. (Fixed bug:
      // `const r = await conn.recvStream(); for await (const chunk of r)` ended the process when
      // the peer's close frame or a frame that failed the connection came in the same read as the
      // message's first fragment.)
      if (incoming.listenerCount('error') > 0) incoming.destroy(error);
      else setImmediate(() => incoming.destroy(error));
    }
  }

  private onListenerError(error: unknown): void {
    if (this.listenerFailed) return this.listenerFailed(error, this);
    // No server seam (a client): close 1011, and keep the error loud if nobody listens for it.
    if (!this.closedFlag) this.close(CloseCode.InternalError).catch(noop);
    const err = error instanceof Error ? error : new Error(String(error));
    if (this.listenerCount('error') > 0) {
      // An `error` listener that throws too: its exception is thrown after the read being parsed,
      // as one nobody listens for is (fixed bug: it left the frame parser in the middle of the
      // read, the rest of which was lost; the next read was parsed from inside a frame, and the
      // connection failed with a bogus 1002 "RSV2 and RSV3 must be clear" blamed on the peer).
      try {
        this.emit('error', err);
      } catch (thrown) {
        queueMicrotask(() => {
          throw thrown;
        });
      }
    } else queueMicrotask(() => {
      throw err;
    });
  }

  /**
   * Emits `ping`, `pong`, `drain` or `close`; a listener that throws is a handler failure, as a
   * throwing `message` listener is (fixed bug: the exception escaped from the socket's event, and a
   * server whose `ping` or `close` listener threw ended its process).
   */
  private emitEvent<K extends 'ping' | 'pong' | 'drain' | 'close'>(event: K, ...args: ConnectionEvents[K]): void {
    try {
      (this.emit as (event: K, ...args: ConnectionEvents[K]) => boolean)(event, ...args);
    } catch (error) {
      this.onListenerError(error);
    }
  }

  private emitError(error: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  /** Wheel tick: idle timeout and keepalive. @internal */
  tick(now: number): void {
    if (this.closedFlag) return;
    // Small-integer times: this runs for every connection on every tick, and until it is optimized
    // each `now - TIME_BASE - x` on a Date.now() value would box a heap number.
    const time = sinceBase(now);
    if (this.readPaused) {
      // Reading is paused (pause(), or a queue the application has not drained): what the peer
      // sends waits unread, so neither its silence nor an unanswered ping can be judged; both
      // count from the time reading resumes (fixed bug: a peer that kept sending was closed as
      // idle, and one that had answered the keepalive ping was aborted).
      this.lastActivity = time;
      if (this.limits.keepaliveInterval > 0) this.lastKeepalive = time;
    }
    const idle = time - this.lastActivity;
    // (The engine is looked at, not used: a connection without one is open.)
    if (this.limits.idleTimeout > 0 && idle >= this.limits.idleTimeout && (this.engine === undefined || this.engine.state === 'open')) {
      // Unlike Racket, which drops the TCP connection, say why: 1001 going away.
      this.close(CloseCode.GoingAway, 'idle timeout').catch(noop);
      return;
    }
    if (this.limits.keepaliveInterval > 0 && time - this.lastKeepalive >= this.limits.keepaliveInterval) {
      if (this.keepaliveOutstanding) {
        // No pong for a whole interval. But a pong waits behind what the peer is sending us, and
        // our ping behind what we sent before it: a peer whose bytes still move, either way, is
        // alive, and gets another interval (fixed bug: one uploading a large message, or reading
        // a large one of ours, was aborted after two intervals, however fast its bytes moved).
        if (this.lastActivity < this.lastKeepalive && !this.keepaliveSendMoved()) {
          this.errorValue = new TimeoutError('no pong within the keepalive interval', 'WS_KEEPALIVE_TIMEOUT');
          this.abortTransport();
          return;
        }
        this.lastKeepalive = time;
      } else {
        this.lastKeepalive = time;
        if (this.proto.state === 'open') {
          this.keepaliveOutstanding = true;
          // Behind a backlog (the socket is not taking all we write at once): note how much the
          // peer has taken, to tell a peer still taking from one that takes nothing.
          const taken = takenBehindBacklog(this.stream);
          if (!Number.isNaN(taken) || this.rare !== undefined) this.rareFields().keepaliveTaken = taken;
          this.proto.ping(Buffer.alloc(0));
        }
      }
    }
    // Unused for a while with nothing under way: drop the engine (made again on the next read or
    // send). A connection that only waits keeps no parser or protocol state.
    const engine = this.engine;
    if (engine !== undefined) {
      if ((this.flags & QUIET) !== QUIET) this.flags += QUIET_ONE;
      else if (engine.atRest) this.engine = undefined;
    }
  }

  /**
   * Keepalive, a ping unanswered: whether the peer has taken more of our bytes since the ping was
   * sent behind a backlog (or since the last check); notes how much it has taken now.
   */
  private keepaliveSendMoved(): boolean {
    const rare = this.rare;
    if (rare === undefined || Number.isNaN(rare.keepaliveTaken)) return false;
    const taken = bytesTaken(this.stream);
    const moved = taken > rare.keepaliveTaken;
    rare.keepaliveTaken = taken;
    return moved;
  }

  /** @internal */
  handleRead(buffer: Buffer, nread: number): void {
    const engine = this.beginChunk(nread);
    try {
      (engine as Protocol).receiveTransient(buffer, nread);
    } finally {
      this.endChunk();
    }
  }

  /** @internal */
  handleData(chunk: Buffer): void {
    const engine = this.beginChunk(chunk.length);
    try {
      engine.receiveData(chunk);
    } finally {
      this.endChunk();
    }
    // Direct reads from the next read on, unless reading was paused meanwhile (then at the first
    // chunk after it resumes): after this chunk's 'data' event the stream reads ahead to fill its
    // buffer, and past the switch those reads would come to us however paused the stream is.
    if ((this.flags & DIRECT_PENDING) !== 0 && !this.readPaused && !this.closedFlag) {
      this.flags &= ~DIRECT_PENDING;
      readDirect(this.stream, streamOnRead);
    }
  }

  /**
   * Starts processing a received chunk of `length` bytes and returns the engine (made if need
   * be). Writes made meanwhile (replies to the messages in it, pongs) are corked and leave at
   * `endChunk` in one system call: one write, or one writev for several. (Corking only from the
   * second write let a lone reply out a little earlier, but cost a second system call, and a TCP
   * segment of its own, for every chunk that got several replies: the 64 B pipelined echo went
   * from 1.09 M to 1.43 M messages/s with the first write corked too, and the 64 B ping-pong
   * stayed within its noise, 5-7 interleaved runs.) One write of flags marks the chunk
   * and clears the engine's unused-ticks counter.
   */
  private beginChunk(length: number): ProtocolEngine {
    this.lastActivity = sinceBase(wheel.now);
    noteTraffic(length);
    if ((this.flags & CLOSE_RECEIVING) !== 0) this.rare!.closeData += length;
    this.flags = (this.flags & ~(CORKED | QUIET)) | IN_CHUNK;
    return this.engine ?? this.startEngine();
  }

  /** Ends a received chunk: the corked writes go out. */
  private endChunk(): void {
    if ((this.flags & CORKED) !== 0) this.stream.uncork();
    this.flags &= ~(IN_CHUNK | CORKED);
  }

  /** At the first write made while a received chunk is processed: corks the stream until its end. */
  private corkChunk(): void {
    this.flags |= CORKED;
    this.stream.cork();
  }

  /** @internal */
  handleEnd(): void {
    // (After the frames that wait for inflation: see onInflating.)
    if ((this.flags & INFLATING) !== 0 && this.engine !== undefined && this.engine.state !== 'closed') {
      this.flags |= END_PENDING;
      return;
    }
    // The peer ended its side. Without a close frame first this is 1006.
    this.proto.receiveEof();
    this.endReceiving();
    this.endTransport();
    // Our end goes out behind what we sent, which a peer that ended its side need not read: a
    // stall is bounded by closeTimeout, as after a close frame (fixed bug: an HTTP/2 peer's
    // END_STREAM while our sends were backed up left the stream half open for good, the
    // protocol closed, so neither close() nor idleTimeout armed a timer, and server.close() hung).
    this.armCloseTimer();
  }

  /**
   * An HTTP/2 stream's 'aborted': the stream was closed (RST_STREAM, sent or received) while our
   * side of it was open. Node ends our side there and then, and destroys the stream, unless the
   * peer's code was NO_ERROR (what Node's own `stream.close()` and `stream.destroy()` send) and
   * its input is not read to its end (reading paused: `pause()`, a full queue): such a stream is
   * kept, ended both ways, until it is read to its end. Destroyed here instead, once Node is done
   * (a stream reset with another code is destroyed by then), so that its 'close' comes at once, as
   * a socket's does at a TCP reset: what it still holds is received then, as the reader reads on,
   * and the connection closes after it (see handleClose); sends meanwhile reject. (Fixed bug: a
   * write to the kept stream, a send() or our answer to the peer's close frame among what it held,
   * failed with ERR_STREAM_WRITE_AFTER_END, and Node hands nothing more of an errored stream: no
   * 'data' and no 'end', so the messages still waiting, and the peer's close frame, were dropped,
   * and the connection stayed open until its close timer, or for good while the protocol was open.)
   * @internal
   */
  handleAborted(): void {
    queueMicrotask(() => {
      if (!this.closedFlag && !this.stream.destroyed) this.stream.destroy();
    });
  }

  /** @internal */
  handleError(error: Error): void {
    // After the peer's close frame the peer sends nothing more and the connection closes with its
    // code: a transport error then (the ECONNRESET of a browser that sends 1001 as it leaves a page
    // and drops the connection without waiting for our answer, an EPIPE on our answer) loses
    // nothing and fails nothing, so it is neither conn.error nor an 'error' event. (Fixed bug: a
    // server logging 'error' printed a reset for about one browser in three that left a page.)
    // Nor once the protocol is closed: our failure (1002, 1009...) was reported when we failed the
    // connection, and a peer that resets on our close frame tells nothing more; the transport had
    // ended (1006) or was aborted by us. (Fixed bug: a second 'error', ECONNRESET, followed the
    // ProtocolError or MessageTooBigError of a peer that reset once it read our close frame.)
    const engine = this.engine;
    if (engine !== undefined && (engine.state === 'closed' || (engine instanceof Protocol && engine.closeReceived))) return;
    // Received bytes wait unparsed for a reader that is behind (INFLATING): they may hold the
    // peer's close frame, after which the reset is no failure (a browser leaving a page while the
    // reader catches up), or whole messages that came before it. Decided once they are parsed.
    // So do bytes the stream read ahead while reading was paused: they are received at its
    // 'close' (see handleClose), which follows its error.
    if (!this.closedFlag && (((this.flags & INFLATING) !== 0 && engine !== undefined) || this.stream.readableLength > 0)) {
      this.rareFields().goneError ??= error;
      return;
    }
    if (!this.errorValue) this.errorValue = error;
    try {
      this.emitError(error);
    } catch (thrown) {
      // An `error` listener threw: a destroyed stream emits its 'error' and its 'close' from one
      // callback, which the exception left, so no 'close' comes (a socket's comes on its own).
      // The connection closes here, as it would have then (fixed bug: an HTTP/2 WebSocket reset
      // by its peer stayed open for good, in server.connections, and server.close() never resolved).
      if (this.stream.destroyed) this.handleClose();
      throw thrown;
    }
  }

  /**
   * The bytes held while the transport went away are parsed (or dropped by an abort): its error is
   * reported now unless the peer's close frame was among them, and the connection closes.
   */
  private transportGone(): void {
    const rare = this.rare;
    const error = rare?.goneError;
    if (rare !== undefined) rare.goneError = undefined;
    const closed = (this.flags & GONE_PENDING) !== 0;
    this.flags &= ~GONE_PENDING;
    if (error !== undefined) {
      try {
        this.handleError(error);
      } catch (thrown) {
        // An `error` listener threw: thrown after the code that parsed the held bytes, as one
        // that throws on a socket's error is thrown out of that event.
        queueMicrotask(() => {
          throw thrown;
        });
      }
    }
    if (closed) this.handleClose();
  }

  /** @internal */
  handleDrain(): void {
    // The pong held while our writes were backed up (onPing) goes out also after our close frame
    // (a ping received after it; one received before went out ahead of it, takeHeldPong): RFC
    // 6455 §5.5.2 answers every ping unless the peer's close frame came first, which `pong()`
    // checks. (Fixed bug: it was dropped once our close frame was sent.)
    if (this.pendingPong) {
      const payload = this.pendingPong;
      this.pendingPong = undefined;
      this.proto.pong(payload);
    }
    if (this.drainResolve && this.stream.writableLength <= this.limits.writeHighWaterMark) {
      const resolve = this.drainResolve;
      this.drainResolve = undefined;
      this.drainPromise = undefined;
      resolve();
    }
    if (this.listenerCount('drain') > 0) this.emitEvent('drain');
  }

  /** @internal */
  handleClose(): void {
    if (this.closedFlag) return;
    if (this.pendingHead !== undefined) this.releaseHead();
    // What the stream read ahead while reading was paused (a socket reads on to its high-water
    // mark; so do TLS sockets and HTTP/2 streams) is received now, after what was read before it:
    // a destroyed stream still hands it to read(), though no longer as 'data' (nor, in some Node
    // versions, as 'data' from read() once its 'close' is emitted: so not through our listener).
    // (Fixed bug: it was dropped, the peer's close frame among it: a reset while the reader was
    // behind lost the messages of the later reads, and closed 1006 with the reset reported.)
    const stream = this.stream;
    if (stream.readableLength > 0 && (this.engine === undefined || this.engine.state !== 'closed')) {
      stream.off('data', streamOnData);
      let chunk: unknown;
      while (!this.closedFlag && (chunk = stream.read()) !== null) {
        if (Buffer.isBuffer(chunk)) this.handleData(chunk);
      }
      if (this.closedFlag) return;
    }
    // The transport is gone (a reset: its end would have waited, see onInflating) while received
    // bytes wait unparsed for a reader that is behind: they are parsed as it reads on, and the
    // connection closes after them (transportGone). (Fixed bug: they were dropped, with the
    // peer's close frame among them: a browser that sent messages and 1001 and reset, as it does
    // leaving a page, to a server whose createWebSocketStream reader was behind, lost all but the
    // first messages, 1006 and ECONNRESET reported, and the pipeline rejected.) Sends meanwhile
    // fail (the transport is destroyed); close() reads the rest at once, and terminate() or a
    // close timeout drops it.
    if ((this.flags & INFLATING) !== 0 && this.engine !== undefined && this.engine.state !== 'closed') {
      this.flags |= GONE_PENDING;
      // A sendStream() under way stops now, as at the close.
      this.streamCancel?.cancel(this.goneError());
      // A reader that stops taking what waits is not waited for past closeTimeout (see armCloseTimer).
      this.rareFields().goneUnread = this.unreadHeld();
      this.armCloseTimer();
      return;
    }
    // The transport's error, held while those bytes waited (see handleError), is reported now,
    // unless the peer's close frame was among them.
    if (this.rare?.goneError !== undefined) {
      this.transportGone();
      if (this.closedFlag) return;
    }
    this.closedFlag = true;
    if (this.closeTimer) clearTimeout(this.closeTimer);
    this.closeTimer = undefined;
    wheel.delete(this);
    this.limits.registry?.delete(this);
    // Made if the connection had none: closed by receiveEof, it turns later sends away.
    const engine = this.proto;
    engine.receiveEof();
    this.endReceiving();
    const code = engine.closeCode ?? CloseCode.Abnormal;
    if (this.finalCode !== CloseCode.PolicyViolation) this.finalCode = code;
    this.finalReason = this.finalCode === CloseCode.PolicyViolation && code === CloseCode.Abnormal ? 'outgoing buffer overflow' : engine.closeReason;
    this.extension?.dispose();
    if (this.pings && this.pings.length > 0) {
      const error = new ConnectionClosedError(this.finalCode, this.finalReason);
      for (const ping of this.pings.splice(0)) ping.reject(error);
    }
    if (this.drainResolve) {
      this.drainResolve();
      this.drainResolve = undefined;
      this.drainPromise = undefined;
    }
    this.streamCancel?.cancel(new ConnectionClosedError(this.finalCode, this.finalReason));
    this.resolveClosed?.();
    this.emitEvent('close', this.finalCode, this.finalReason);
  }
}

/**
 * The close of the connection, as sendStream()'s wait for its source sees it: one waiter at a
 * time, so a long stream does not pile reactions on one promise that only settles at the close
 * (a Promise.race against such a promise per chunk would keep every race until then).
 */
class StreamCancel {
  error: Error | undefined = undefined;
  private waiter: ((error: Error) => void) | undefined = undefined;

  cancel(error: Error): void {
    this.error = error;
    this.waiter?.(error);
    this.waiter = undefined;
  }

  /** `next`, or the close's error if the connection closes first. */
  wait<T>(next: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.error !== undefined) return reject(this.error);
      this.waiter = reject;
      next.then(
        (value) => {
          this.waiter = undefined;
          resolve(value);
        },
        (error: unknown) => {
          this.waiter = undefined;
          reject(error);
        },
      );
    });
  }
}

/**
 * sendStream()'s source, read until the connection closes: a chunk it still waits for then is
 * not waited for, and the source is let go (a Node stream destroyed, an iterator returned), as it
 * is when the loop over it is left early. A source that ends or fails is left as it is.
 */
async function* untilClosed(source: AsyncIterable<SendData> | Iterable<SendData>, closed: StreamCancel): AsyncGenerator<SendData> {
  if (typeof (source as AsyncIterable<SendData>)[Symbol.asyncIterator] !== 'function') {
    yield* source as Iterable<SendData>;
    return;
  }
  const iterator = (source as AsyncIterable<SendData>)[Symbol.asyncIterator]();
  let settled = false;
  try {
    for (;;) {
      // The source's own failure: it is done, and not returned (as `for await` leaves it).
      let next: Promise<IteratorResult<SendData>>;
      try {
        next = Promise.resolve(iterator.next());
      } catch (error) {
        settled = true;
        throw error;
      }
      next.then(undefined, () => void (settled = true));
      const step = await closed.wait(next);
      if (step.done === true) {
        settled = true;
        return;
      }
      yield step.value;
    }
  } finally {
    if (!settled) {
      if (source instanceof Readable) source.destroy();
      try {
        Promise.resolve(iterator.return?.()).catch(noop);
      } catch {
        // (a return() that throws: the source is let go all the same)
      }
    }
  }
}

/** {@link bytesTaken} for a stream holding a backlog (what we write is not all taken at once); NaN otherwise. */
function takenBehindBacklog(stream: { readonly writableLength: number; readonly writableNeedDrain: boolean }): number {
  return writeQueueSize(stream) > 0 || stream.writableNeedDrain ? bytesTaken(stream) : NaN;
}

/** Throws `error` (from process.nextTick: an uncaught exception). */
function rethrow(error: unknown): never {
  throw error;
}

/**
 * How much of what we wrote a stream has handed on, a count that only grows: for a socket, the
 * bytes its handle has given to libuv less those libuv has not written yet (the kernel has taken
 * the rest, as the peer reads); over TLS, those of the TCP handle under the TLS one (encrypted
 * bytes: the TLS handle's own queue holds a write whole until all of it is out); for another
 * stream (an HTTP/2 one), minus what it still holds. (writableLength plus writeQueueSize is no
 * such count: a write being made is in both, so it grows when a corked burst is written.)
 */
function bytesTaken(stream: { readonly writableLength: number }): number {
  type Handle = { bytesWritten?: unknown; writeQueueSize?: unknown; _parent?: Handle | null } | null | undefined;
  let handle = (stream as { _handle?: Handle })._handle;
  if (handle?._parent) handle = handle._parent;
  const written = handle?.bytesWritten;
  const queued = handle?.writeQueueSize;
  return typeof written === 'number' && typeof queued === 'number' ? written - queued : -stream.writableLength;
}

/**
 * Bytes of a socket's writes that libuv has not yet handed to the kernel. A Writable's
 * `writableLength` counts a write whole until all of it is out (one write of 40 MiB reads 40 MiB
 * until its last byte has gone), while libuv's count (Node's `writeQueueSize` on the handle, read
 * live) falls as the peer takes the bytes. 0 where there is no such handle (HTTP/2 streams).
 */
function writeQueueSize(stream: object): number {
  const size = (stream as { _handle?: { writeQueueSize?: unknown } | null })._handle?.writeQueueSize;
  return typeof size === 'number' ? size : 0;
}

/** `for await (const m of conn)`: one small object, no closures. */
class MessageIterator implements AsyncIterator<Message> {
  private readonly conn: WebSocketConnection;
  constructor(conn: WebSocketConnection) {
    this.conn = conn;
  }
  next(): Promise<IteratorResult<Message>> {
    return this.conn.nextResult();
  }
  return(): Promise<IteratorResult<Message>> {
    return Promise.resolve(DONE);
  }
}
