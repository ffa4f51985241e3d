/**
 * A raw RFC 6455 peer for the Autobahn-style conformance cases: it plays the fuzzer's part, as a
 * client (fuzzingclient mode: it connects to the server under test and sends masked frames) or
 * as a server (fuzzingserver mode: it accepts one connection from the client under test and sends
 * unmasked frames). It is written against the RFC alone and shares no code with the library.
 *
 * It sends any frame (opcode, FIN, RSV, payload, masking on purpose wrong), chopped into TCP
 * writes of a given size or pushed out frame by frame ("sync"), and parses strictly what the peer
 * sends back: a masked frame from a server, an unmasked frame from a client, RSV bits, reserved
 * opcodes, non-minimal lengths, fragmented or oversized control frames, continuation errors,
 * invalid UTF-8 in text or in a close reason, and invalid close codes are all recorded as
 * violations, after which the fuzzer drops the TCP connection (Autobahn's `failByDrop`).
 *
 * With permessage-deflate (sections 12 and 13) it makes the case's offers as a client or answers
 * the client's offers as the case's acceptor says as a server, then compresses every message it
 * sends (RSV1 on the first frame, Autobahn's sendMessage) and decodes every compressed message
 * it receives with the negotiated parameters (deflate.ts).
 *
 * The closing bookkeeping follows Autobahn's: who sent the first close frame (`closedByMe`),
 * whether the closing handshake completed and the server closed TCP (`wasClean`), who dropped
 * TCP (`droppedByMe`), and the peer's close code and reason.
 *
 * Over TLS (a `wss:` URL as client, `listenOnce` with a key and certificate as server) everything
 * is the same on top of a `TLSSocket`: "closing TCP" is `end()` (a close_notify alert, then FIN)
 * or `destroy()` (FIN without close_notify, as over TCP), and either way the other side sees
 * `'end'` then `'close'` (Node reports no error for a missing close_notify), so who closed first
 * is told as over TCP. A write goes out as TLS records of its own (one per 16 KiB), which the
 * peer decrypts in the read that brings them, so chops and sync points (a write, then event-loop
 * turns) still reach the peer one by one.
 *
 * Over any other `Duplex` (`FuzzPeer.over`, e.g. an HTTP/2 extended CONNECT stream behind a shim,
 * http2.test.ts) the caller does the opening handshake and calls `opened()`; the bookkeeping is
 * the same, with the transport's `'close'` as "TCP closed" and `destroy()` as dropping it.
 */
import { isUtf8 } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { connect as netConnect, createServer, isIP, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, createServer as createTlsServer, type ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { MessageDeflater, StrictInflater } from './deflate.js';
import {
  answerRequest,
  checkResponse,
  clientRequest,
  EMPTY,
  FrameReader,
  frameHeader,
  maskBytes,
  MAX_INCOMING,
  repeatTo,
  splitHead,
  toBytes,
  type DeflateAcceptor,
  type DeflateOffer,
  type DeflateParams,
  type RxFrame,
} from './wire.js';

/** Close codes a peer may put in a close frame below 3000 (RFC 6455 §7.4.1 and the IANA registry). */
const SENDABLE_CODES = new Set([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013]);

/**
 * Autobahn's fallback timers (kill the connection, start the close, wait for the closing
 * handshake or for the server to drop TCP) are multiplied by this: they only fire when the peer
 * misbehaves, and a loaded CI machine must not make a correct peer look slow. Pure delays between
 * parts of a case (`continueLater`) are not scaled.
 */
export const FALLBACK_SCALE = 3;
const CLOSE_HANDSHAKE_TIMEOUT = 1000 * FALLBACK_SCALE;
const SERVER_DROP_TIMEOUT = 1000 * FALLBACK_SCALE;
const OPEN_HANDSHAKE_TIMEOUT = 5000 * FALLBACK_SCALE;
/** Turns of the event loop (each with a poll for I/O) before an expired fallback timer is judged. */
const JUDGE_TURNS = 3;

export type PeerState = 'connecting' | 'open' | 'closing' | 'closed';

/** What the fuzzer hands to the case running on it. */
export interface PeerEvents {
  open(): void;
  message(data: Buffer, binary: boolean): void;
  pong(data: Buffer): void;
}

/** permessage-deflate as negotiated on a connection, with the fuzzer's two halves of the codec. */
export interface Deflate {
  params: DeflateParams;
  /** Compresses what we send, with our direction's window and takeover. */
  deflater: MessageDeflater;
  /** Decodes what the peer sends, with its direction's window and takeover. */
  inflater: StrictInflater;
}

/** TLS for the fuzzer as a server (`listenOnce`): the key and certificate it presents. */
export interface TlsServerSetup {
  key: Buffer | string;
  cert: Buffer | string;
}

/** What the fuzzer negotiates: offers to make as a client, the acceptor to apply as a server. */
export interface DeflateSetup {
  offers: readonly DeflateOffer[];
  accept: DeflateAcceptor;
}

/** One frame to send; every field may be wrong on purpose. */
export interface FrameSpec {
  opcode: number;
  payload?: Buffer | string;
  fin?: boolean;
  rsv?: number;
  /** A mask key to use; `false` sends unmasked; default: masked (random key) iff we are the client. */
  mask?: Buffer | false;
  /** Repeat `payload` up to this many bytes (Autobahn's `payload_len`). */
  payloadLen?: number;
  /** Write the frame in TCP writes of this many bytes, each pushed out on its own. */
  chopsize?: number;
  /** Push this frame out on its own before anything after it is written. */
  sync?: boolean;
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Random mask keys, taken from a pool (one randomBytes call per 1024 keys, not one per frame). */
let keyPool = Buffer.alloc(0);
let keyAt = 0;
function maskKey(): Buffer {
  if (keyAt + 4 > keyPool.length) {
    keyPool = randomBytes(4096);
    keyAt = 0;
  }
  keyAt += 4;
  return Buffer.from(keyPool.subarray(keyAt - 4, keyAt));
}

export class FuzzPeer {
  readonly isServer: boolean;
  state: PeerState = 'connecting';
  /** The opening handshake completed. */
  connectionWasOpen = false;
  /** We sent the first close frame. */
  closedByMe = false;
  /** We failed the connection (a violation by the peer, or a kill timer). */
  failedByMe = false;
  /** We closed TCP first (else the peer did). */
  droppedByMe = false;
  /** Close frames went both ways and (unless we are the server) the server closed TCP. */
  wasClean = false;
  wasNotCleanReason: string | undefined;
  localCloseCode: number | undefined;
  localCloseReason: Buffer | undefined;
  remoteCloseCode: number | undefined;
  remoteCloseReason: string | undefined;
  /** A close frame came from the peer. */
  closeFrameReceived = false;
  /** The peer closed TCP without ever sending a close frame. */
  peerDroppedWithoutClose = false;
  handshakeError: string | undefined;
  readonly violations: string[] = [];
  readonly rxFrames: RxFrame[] = [];
  readonly txFrameStats = new Map<number, number>();
  /** Ordered notes (`tx:...`, `rx:...`, `timer:...`) for ordering checks and failure reports. */
  readonly timeline: string[] = [];
  /** Messages larger than this are fragmented by sendMessage() (Autobahn's autoFragmentSize). */
  autoFragmentSize = 0;
  /** permessage-deflate, once negotiated (undefined: not offered, or declined). */
  deflate: Deflate | undefined;
  /** Data messages received: sent uncompressed, and compressed (RSV1). */
  readonly rxMessageCounts = { plain: 0, compressed: 0 };
  readonly finished: Promise<void>;

  private readonly socket: Duplex;
  private readonly events: PeerEvents;
  private head: Buffer = EMPTY;
  private clientKey = '';
  private readonly reader: FrameReader;
  private messageBinary = false;
  private messageCompressed = false;
  private messageParts: Buffer[] = [];
  private messageLength = 0;
  private readonly queue: Buffer[] = [];
  private pumping = false;
  /** Run once the pump has written everything queued (see whenWritten). */
  private readonly afterPump: Array<() => void> = [];
  private corked = false;
  /** Data frames are noted in the timeline only up to a point (section 9 sends tens of thousands). */
  private dataFramesNoted = 0;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly watchers = new Set<() => void>();
  private stream: { opcode: number; first: boolean; key: Buffer | undefined; offset: number } | undefined;
  private resolveFinished!: () => void;
  private closeHandshakeTimer: NodeJS.Timeout | undefined;

  private readonly deflateSetup: DeflateSetup | undefined;
  /** Made by `over()`: the opening handshake is not on this transport. */
  private headless = false;

  private constructor(socket: Duplex, isServer: boolean, events: PeerEvents, deflateSetup: DeflateSetup | undefined) {
    this.socket = socket;
    this.isServer = isServer;
    this.events = events;
    this.deflateSetup = deflateSetup;
    this.reader = new FrameReader(isServer);
    this.finished = new Promise((resolve) => (this.resolveFinished = resolve));
    (socket as Partial<Socket>).setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (error) => {
      const code = (error as NodeJS.ErrnoException).code ?? error.message;
      this.note(`tcp:error ${code}`);
      // A connection or TLS handshake that fails before the opening handshake says why in the report.
      if (this.state === 'connecting') this.handshakeError ??= `transport error before the opening handshake: ${code}`;
    });
    socket.on('close', () => this.onSocketClose());
    this.arm(OPEN_HANDSHAKE_TIMEOUT, () => {
      if (this.state !== 'connecting') return;
      this.handshakeError ??= 'the opening handshake did not complete in time';
      this.drop(true);
    });
  }

  /**
   * Fuzzer as client: connects to `url` and performs the opening handshake (with `deflate.offers`).
   * A `wss:` URL connects over TLS with `tls` (e.g. `{ ca }` to trust a test certificate: the
   * certificate is then verified, Node's default); without `tls` the server's certificate is not
   * verified (`rejectUnauthorized: false`), as wstest does not.
   */
  static connect(url: URL, events: PeerEvents, deflate?: DeflateSetup, tls?: TlsConnectionOptions): FuzzPeer {
    const secure = url.protocol === 'wss:';
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = Number(url.port || (secure ? 443 : 80));
    const socket = secure
      ? tlsConnect({ ...(isIP(host) === 0 ? { servername: host } : {}), ...(tls ?? { rejectUnauthorized: false }), host, port })
      : netConnect({ host, port });
    const peer = new FuzzPeer(socket, false, events, deflate);
    // Over TLS the request goes once the TLS handshake is done (the certificate checked).
    socket.once(secure ? 'secureConnect' : 'connect', () => {
      peer.clientKey = randomBytes(16).toString('base64');
      socket.write(clientRequest(url, peer.clientKey, deflate?.offers));
    });
    return peer;
  }

  /** Fuzzer as server: answers the opening handshake of an accepted connection (as `deflate.accept` says). */
  static accept(socket: Socket, events: PeerEvents, deflate?: DeflateSetup): FuzzPeer {
    return new FuzzPeer(socket, true, events, deflate);
  }

  /**
   * Fuzzer as client over a transport whose opening handshake the caller does (no HTTP/1.1 head
   * is sent or parsed, no permessage-deflate): connecting until `opened()` or `openFailed()`.
   */
  static over(transport: Duplex, events: PeerEvents): FuzzPeer {
    const peer = new FuzzPeer(transport, false, events, undefined);
    peer.headless = true;
    return peer;
  }

  /** The caller's opening handshake (`over()`) succeeded: the connection is open. */
  opened(): void {
    if (this.state !== 'connecting') return;
    this.connectionWasOpen = true;
    this.setState('open');
    this.events.open();
  }

  /** The caller's opening handshake (`over()`) failed: drops the transport. */
  openFailed(reason: string): void {
    if (this.state === 'connecting') this.handshakeFailed(reason);
  }

  // ---- Timers and sync points -------------------------------------------------------------------

  /**
   * Runs `fn` after `ms`. A fallback timer (`judge`, the default: it fails the peer when it
   * fires) is judged only after JUDGE_TURNS more turns of the event loop, each with its poll for
   * I/O: when the loop was held past `ms` (a loaded machine, a long collection), Node runs expired
   * timers before reading the sockets, and the reply the timer waits for may be there already, in
   * our side's socket or on its way back through it (both ends are in this process). Seen: three
   * 6.22.x cases over TLS failed "did not respond in closing handshake" beside busy loops. Pure
   * delays (`continueLater`) pass `judge` false. Until `fn` runs, the timer stays in `timers`, so
   * `disarm()` and a socket close still cancel it.
   */
  private arm(ms: number, fn: () => void, judge = true): NodeJS.Timeout {
    const run = (turns: number): void => {
      if (!this.timers.has(timer)) return;
      if (turns > 0) {
        setImmediate(run, turns - 1);
        return;
      }
      this.timers.delete(timer);
      fn();
    };
    const timer = setTimeout(run, ms, judge ? JUDGE_TURNS : 0);
    this.timers.add(timer);
    return timer;
  }

  private disarm(timer: NodeJS.Timeout | undefined): void {
    if (timer === undefined) return;
    clearTimeout(timer);
    this.timers.delete(timer);
  }

  /**
   * Runs `fn` after `ms` if the connection is still there (Autobahn's continueLater), counted from
   * when the pieces queued so far are written, as killAfter: written frame by frame over TLS on a
   * loaded machine, the three frames before case 5.20's 1 s pause took about that long, and the
   * pause was over before the peer had the ping it was for.
   */
  continueLater(ms: number, fn: () => void, tag?: string): void {
    this.whenWritten(() =>
      this.arm(
        ms,
        () => {
          if (this.state === 'closed') return;
          this.note(`timer:continue${tag ? ` ${tag}` : ''}`);
          fn();
        },
        false,
      ),
    );
  }

  /**
   * Fails the connection (drops TCP) after `ms` × FALLBACK_SCALE if it is still there, counted from
   * when the pieces queued so far are written: a case written byte by byte over TLS took 40-130 ms
   * a byte on a loaded 2-core machine (each write waits for its callback and two turns), and the
   * timer ran out before the peer had the first message.
   */
  killAfter(ms: number): void {
    this.whenWritten(() =>
      this.arm(ms * FALLBACK_SCALE, () => {
        if (this.state === 'closed') return;
        this.note('timer:kill');
        this.failConnection('the case timer expired');
      }),
    );
  }

  /** Runs `fn` once the pieces queued so far are written (at once when none are queued). */
  private whenWritten(fn: () => void): void {
    if (this.pumping) this.afterPump.push(fn);
    else fn();
  }

  /** Starts the closing handshake (close frame without code) after `ms` × FALLBACK_SCALE. */
  closeAfter(ms: number): void {
    // (From when what is queued is written, as killAfter.)
    this.whenWritten(() =>
      this.arm(ms * FALLBACK_SCALE, () => {
        if (this.state === 'closed') return;
        this.note('timer:close');
        this.sendClose();
      }),
    );
  }

  /**
   * Sync point: resolves true as soon as `condition()` holds (checked after every frame received
   * and every state change), or false after `ms`.
   */
  until(condition: () => boolean, ms: number): Promise<boolean> {
    if (condition()) return Promise.resolve(true);
    return new Promise((resolve) => {
      // Judged after JUDGE_TURNS turns with their polls, as a fallback timer (see arm()).
      const judge = (turns: number): void => {
        if (!this.watchers.has(check)) return;
        if (turns > 0) {
          setImmediate(judge, turns - 1);
          return;
        }
        this.watchers.delete(check);
        resolve(condition());
      };
      const timer = setTimeout(judge, ms, JUDGE_TURNS);
      const check = (): void => {
        if (!condition()) return;
        clearTimeout(timer);
        this.watchers.delete(check);
        resolve(true);
      };
      this.watchers.add(check);
    });
  }

  private notify(): void {
    for (const watcher of [...this.watchers]) watcher();
  }

  private setState(state: PeerState): void {
    this.state = state;
    this.note(`state:${state}`);
    this.notify();
  }

  note(entry: string): void {
    if (this.timeline.length < 500) this.timeline.push(entry);
  }

  // ---- Sending --------------------------------------------------------------------------------

  private writable(): boolean {
    return this.state !== 'closed' && !this.socket.destroyed;
  }

  /** Writes now (coalesced with the other writes of this tick, as a reactor would), or queues. */
  private sendData(data: Buffer, sync = false, chopsize?: number): void {
    if (chopsize !== undefined && chopsize > 0) {
      for (let i = 0; i < data.length; i += chopsize) this.queue.push(data.subarray(i, i + chopsize));
      void this.pump();
    } else if (sync || this.queue.length > 0) {
      this.queue.push(data);
      void this.pump();
    } else if (this.writable()) {
      if (!this.corked) {
        this.corked = true;
        this.socket.cork();
        process.nextTick(() => {
          this.corked = false;
          this.socket.uncork();
        });
      }
      this.socket.write(data);
    }
  }

  /** Writes queued pieces one by one, each flushed and followed by event-loop turns for the peer. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    while (this.queue.length > 0) {
      const piece = this.queue.shift()!;
      if (!this.writable()) continue;
      await new Promise<void>((resolve) => this.socket.write(piece, () => resolve()));
      // Two turns: the peer (in this process) gets a poll phase to read this piece alone.
      await nextTurn();
      await nextTurn();
    }
    this.pumping = false;
    for (const fn of this.afterPump.splice(0)) fn();
  }

  /** Sends one frame exactly as specified (Autobahn's sendFrame). */
  sendFrame(spec: FrameSpec): void {
    const base = toBytes(spec.payload ?? EMPTY);
    const payload = spec.payloadLen === undefined ? base : repeatTo(base, spec.payloadLen);
    const key = spec.mask === undefined ? (this.isServer ? undefined : maskKey()) : spec.mask === false ? undefined : spec.mask;
    const header = frameHeader(spec.opcode, spec.fin ?? true, spec.rsv ?? 0, payload.length, key);
    const body = key && payload.length > 0 ? maskBytes(payload, key) : payload;
    this.txFrameStats.set(spec.opcode, (this.txFrameStats.get(spec.opcode) ?? 0) + 1);
    if (spec.opcode >= 8 || this.dataFramesNoted++ < 20) this.note(`tx:frame op=${spec.opcode} fin=${spec.fin ?? true}${spec.rsv ? ` rsv=${spec.rsv}` : ''} len=${payload.length}`);
    this.sendData(Buffer.concat([header, body]), spec.sync ?? false, spec.chopsize);
  }

  /**
   * Sends a message, fragmented by `fragmentSize` or autoFragmentSize (Autobahn's sendMessage).
   * With permessage-deflate the whole message is compressed first, its compressed bytes are what
   * is fragmented, and the first frame has RSV1 (RFC 7692 §6.1).
   */
  sendMessage(payload: Buffer | string, binary: boolean, fragmentSize?: number, sync = false): void {
    if (this.state !== 'open') return;
    let data = toBytes(payload);
    const rsv = this.deflate ? 4 : 0;
    if (this.deflate) data = this.deflate.deflater.compress(data);
    const opcode = binary ? 2 : 1;
    const size = fragmentSize ?? (this.autoFragmentSize > 0 ? this.autoFragmentSize : undefined);
    if (size === undefined || data.length <= size) {
      this.sendFrame({ opcode, payload: data, sync, rsv });
      return;
    }
    // As Autobahn does: when the size divides the payload, a last empty FIN frame follows.
    let first = true;
    for (let i = 0, done = false; !done; i += size) {
      let end = i + size;
      if (end > data.length) {
        done = true;
        end = data.length;
      }
      this.sendFrame({ opcode: first ? opcode : 0, payload: data.subarray(i, end), fin: done, sync, rsv: first ? rsv : 0 });
      first = false;
    }
  }

  /** Streaming send: a message whose frames are written in pieces (Autobahn's beginMessage…). */
  beginMessage(binary = false): void {
    if (this.state !== 'open') return;
    this.stream = { opcode: binary ? 2 : 1, first: true, key: undefined, offset: 0 };
  }

  /** Writes the header of a non-final frame of `length` bytes of the streamed message. */
  beginMessageFrame(length: number): void {
    if (this.state !== 'open' || !this.stream) return;
    const key = this.isServer ? undefined : maskKey();
    this.sendData(frameHeader(this.stream.first ? this.stream.opcode : 0, false, 0, length, key));
    this.note(`tx:frame-header len=${length}`);
    this.stream = { ...this.stream, first: false, key, offset: 0 };
  }

  /** Writes part of the current streamed frame's payload. */
  sendMessageFrameData(data: Buffer): void {
    if (this.state !== 'open' || !this.stream) return;
    const { key, offset } = this.stream;
    this.sendData(key ? maskBytes(data, key, offset) : data);
    this.note(`tx:frame-data len=${data.length}`);
    this.stream.offset += data.length;
  }

  /** Ends the streamed message with an empty final continuation frame. */
  endMessage(): void {
    if (this.state !== 'open' || !this.stream) return;
    this.sendFrame({ opcode: 0, fin: true });
    this.stream = undefined;
  }

  /** Sends a close frame (code and reason as given, even invalid) and moves to closing. */
  sendCloseFrame(code?: number, reason?: Buffer, isReply = false): void {
    if (this.state !== 'open') return;
    const payload: Buffer[] = [];
    if (code !== undefined) {
      const bytes = Buffer.alloc(2);
      bytes.writeUInt16BE(code & 0xffff);
      payload.push(bytes);
    }
    if (reason !== undefined) payload.push(reason);
    this.sendFrame({ opcode: 8, payload: Buffer.concat(payload) });
    this.closedByMe = !isReply;
    this.localCloseCode = code;
    this.localCloseReason = reason;
    this.setState('closing');
    if (this.closedByMe) {
      this.closeHandshakeTimer = this.arm(CLOSE_HANDSHAKE_TIMEOUT, () => {
        if (this.state === 'closed') return;
        this.wasClean = false;
        this.wasNotCleanReason = 'peer did not respond (in time) in closing handshake';
        this.drop(true);
      });
    }
  }

  /** Starts the closing handshake (Autobahn's sendClose). */
  sendClose(code?: number, reason?: string): void {
    this.sendCloseFrame(code, reason === undefined ? undefined : Buffer.from(reason, 'utf8'));
  }

  /** Fails the WebSocket connection by dropping TCP (Autobahn with failByDrop). */
  failConnection(reason: string): void {
    if (this.state === 'closed') return;
    this.failedByMe = true;
    this.wasClean = false;
    this.wasNotCleanReason = `I failed the WebSocket connection by dropping the TCP connection (${reason})`;
    this.drop(true);
  }

  /** Closes TCP: at once (`abort`), or after what was written has gone out. */
  drop(abort: boolean): void {
    if (this.state === 'closed') return;
    this.droppedByMe = true;
    this.setState('closed');
    if (abort) this.socket.destroy();
    else this.socket.end(() => this.socket.destroy());
  }

  // ---- Receiving ------------------------------------------------------------------------------

  private violation(reason: string): void {
    this.violations.push(reason);
    this.note(`violation:${reason}`);
    this.failConnection(`protocol violation: ${reason}`);
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    if (this.state === 'connecting' && this.headless) return this.handshakeFailed('data before the opening handshake completed');
    if (this.state === 'connecting') {
      this.head = this.head.length === 0 ? chunk : Buffer.concat([this.head, chunk]);
      const split = splitHead(this.head);
      if (!split) {
        if (this.head.length > 16384) this.handshakeFailed('opening handshake head larger than 16 KiB');
        return;
      }
      this.head = EMPTY;
      let deflate: DeflateParams | undefined;
      if (this.isServer) {
        let answer: ReturnType<typeof answerRequest>;
        try {
          answer = answerRequest(split.head, this.deflateSetup?.accept);
        } catch (error) {
          return this.handshakeFailed(`the case's deflate acceptor failed: ${(error as Error).message}`);
        }
        if ('error' in answer) return this.handshakeFailed(answer.error);
        this.sendData(Buffer.from(answer.response, 'latin1'));
        deflate = answer.deflate;
      } else {
        const checked = checkResponse(split.head, this.clientKey, this.deflateSetup?.offers);
        if ('error' in checked) return this.handshakeFailed(checked.error);
        deflate = checked.deflate;
      }
      if (deflate) this.startDeflate(deflate);
      this.connectionWasOpen = true;
      this.setState('open');
      this.events.open();
      // The case may have closed the connection already (state is re-read: open() may change it).
      if (split.rest.length === 0 || (this.state as PeerState) === 'closed') return;
      chunk = split.rest;
    }
    this.reader.push(chunk);
    while (this.state === 'open' || this.state === 'closing') {
      const read = this.reader.next();
      if (read === undefined) return;
      if ('violation' in read) return this.violation(read.violation);
      this.frameEnd(read.frame, read.payload);
      this.notify();
    }
  }

  /** Sets up both halves of the codec: ours compresses with our direction's parameters. */
  private startDeflate(params: DeflateParams): void {
    const mine = this.isServer
      ? { bits: params.serverMaxWindowBits, reset: params.serverNoContextTakeover }
      : { bits: params.clientMaxWindowBits, reset: params.clientNoContextTakeover };
    const theirs = this.isServer
      ? { bits: params.clientMaxWindowBits, reset: params.clientNoContextTakeover }
      : { bits: params.serverMaxWindowBits, reset: params.serverNoContextTakeover };
    this.deflate = {
      params,
      deflater: new MessageDeflater(mine.bits, mine.reset),
      inflater: new StrictInflater(theirs.bits, theirs.reset, MAX_INCOMING),
    };
    this.reader.deflate = true;
    this.note(`deflate:${JSON.stringify(params)}`);
  }

  private handshakeFailed(reason: string): void {
    this.handshakeError = reason;
    this.note(`handshake:${reason}`);
    if (this.isServer && !this.socket.destroyed) {
      this.droppedByMe = true;
      this.setState('closed');
      this.socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    } else {
      this.drop(true);
    }
  }

  private frameEnd(frame: RxFrame, payload: Buffer): void {
    if (this.rxFrames.length < 1000) this.rxFrames.push(frame);
    if (frame.opcode >= 8 || this.dataFramesNoted++ < 20) this.note(`rx:frame op=${frame.opcode} fin=${frame.fin}${frame.rsv ? ` rsv=${frame.rsv}` : ''} len=${frame.length}`);
    if (frame.opcode === 8) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : undefined;
      const reason = payload.length > 2 ? payload.subarray(2) : undefined;
      this.onCloseFrame(code, reason);
    } else if (frame.opcode === 9) {
      this.note('rx:ping');
      if (this.state === 'open') this.sendFrame({ opcode: 10, payload });
    } else if (frame.opcode === 10) {
      this.note('rx:pong');
      this.events.pong(payload);
    } else {
      if (frame.opcode !== 0) {
        this.messageBinary = frame.opcode === 2;
        this.messageCompressed = (frame.rsv & 4) !== 0;
        this.messageParts = [];
        this.messageLength = 0;
      }
      this.messageParts.push(payload);
      this.messageLength += payload.length;
      if (this.messageLength > MAX_INCOMING) return this.violation('message larger than the fuzzer accepts');
      if (!frame.fin) return;
      let message = this.messageParts.length === 1 ? this.messageParts[0]! : Buffer.concat(this.messageParts, this.messageLength);
      this.messageParts = [];
      if (this.messageCompressed) {
        // RFC 7692 §7.2.2, with the window and takeover the peer's direction agreed to.
        const inflated = this.deflate!.inflater.inflate(message);
        if ('error' in inflated) return this.violation(`compressed message: ${inflated.error}`);
        message = inflated.data;
        this.rxMessageCounts.compressed++;
      } else {
        this.rxMessageCounts.plain++;
      }
      // RFC 6455 §8.1: a text message must be valid UTF-8.
      if (!this.messageBinary && !isUtf8(message)) return this.violation('text message is not valid UTF-8');
      this.note(`rx:message ${this.messageBinary ? 'binary' : 'text'}${this.messageCompressed ? ' compressed' : ''} len=${message.length}`);
      this.events.message(message, this.messageBinary);
    }
  }

  private onCloseFrame(code: number | undefined, reason: Buffer | undefined): void {
    this.remoteCloseCode = undefined;
    this.remoteCloseReason = undefined;
    // RFC 6455 §7.4: codes below 1000, unassigned ones below 3000, and 5000 and above are invalid.
    if (code !== undefined && (code < 1000 || (code < 3000 && !SENDABLE_CODES.has(code)) || code >= 5000)) {
      return this.violation(`invalid close code ${code}`);
    }
    if (reason !== undefined && !isUtf8(reason)) return this.violation('close reason is not valid UTF-8');
    this.remoteCloseCode = code;
    this.remoteCloseReason = reason?.toString('utf8');
    this.closeFrameReceived = true;
    this.note(`rx:close code=${code ?? '-'}`);
    if (this.state === 'closing') {
      // The answer to our close: the handshake is complete. A server closes TCP now; a client
      // waits for the server to do it.
      this.disarm(this.closeHandshakeTimer);
      this.wasClean = true;
      if (this.isServer) this.drop(true);
      else this.awaitServerDrop();
    } else if (this.state === 'open') {
      // The peer starts the closing handshake: answer with 1000 (Autobahn does not echo the code).
      this.wasClean = true;
      this.sendCloseFrame(1000, undefined, true);
      if (this.isServer) this.drop(false);
      else this.awaitServerDrop();
    }
  }

  private awaitServerDrop(): void {
    this.arm(SERVER_DROP_TIMEOUT, () => {
      if (this.state === 'closed') return;
      this.wasClean = false;
      this.wasNotCleanReason = 'server did not drop TCP connection (in time)';
      this.drop(true);
    });
  }

  private onSocketClose(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    if (this.state !== 'closed') {
      this.note('tcp:closed-by-peer');
      this.setState('closed');
    } else {
      this.note(this.droppedByMe ? 'tcp:closed-by-me' : 'tcp:closed');
    }
    if (!this.droppedByMe && !this.closeFrameReceived) this.peerDroppedWithoutClose = true;
    if (!this.wasClean && !this.droppedByMe && this.wasNotCleanReason === undefined) {
      this.wasNotCleanReason = 'peer dropped the TCP connection without previous WebSocket closing handshake';
    }
    this.notify();
    this.resolveFinished();
  }
}

/**
 * Listens on 127.0.0.1, port 0, for exactly one connection, which becomes a server-side FuzzPeer;
 * later connections are refused. `close()` stops listening if nobody came. With `tls` it listens
 * for TLS (`wss:` URL): the connection becomes the peer once its TLS handshake is done.
 */
export async function listenOnce(
  events: PeerEvents,
  deflate?: DeflateSetup,
  tls?: TlsServerSetup,
): Promise<{ url: string; peer: Promise<FuzzPeer>; close(): void }> {
  let resolvePeer!: (peer: FuzzPeer) => void;
  const peer = new Promise<FuzzPeer>((resolve) => (resolvePeer = resolve));
  const onConnection = (socket: Socket): void => {
    if (server.listening) server.close();
    else {
      socket.destroy();
      return;
    }
    resolvePeer(FuzzPeer.accept(socket, events, deflate));
  };
  // A TLS server calls it at 'secureConnection' (with the TLSSocket), a plain one at 'connection'.
  const server: Server = tls
    ? createTlsServer({ key: tls.key, cert: tls.cert, noDelay: true }, onConnection)
    : createServer({ noDelay: true }, onConnection);
  let accepted = false;
  peer.then(() => (accepted = true)).catch(() => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as { port: number };
  return {
    url: `${tls ? 'wss' : 'ws'}://127.0.0.1:${port}`,
    peer,
    close: () => {
      if (!accepted && server.listening) server.close();
    },
  };
}
