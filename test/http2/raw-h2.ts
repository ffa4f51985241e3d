/**
 * A frame-level HTTP/2 peer for the RFC 8441 suites: writes exactly the frames a test needs
 * (HEADERS encoded as HPACK literals without Huffman coding, DATA, SETTINGS, RST_STREAM,
 * WINDOW_UPDATE) and records every frame the other side sends, with its type, flags and stream.
 * Header blocks received are not decoded, except for the one fact the tests read from them: a
 * response that begins with the static-table entry `:status 200` (0x88).
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Duplex } from 'node:stream';

/** Frame types (RFC 9113 §6). */
export const FrameType = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8 } as const;
/** Frame flags (RFC 9113 §6). */
export const Flag = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;
/** Error codes (RFC 9113 §7). */
export const ErrorCode = { NO_ERROR: 0, PROTOCOL_ERROR: 1, STREAM_CLOSED: 5, CANCEL: 8 } as const;
/** SETTINGS identifiers (RFC 9113 §6.5.2; RFC 8441 §3). */
export const Setting = { INITIAL_WINDOW_SIZE: 4, ENABLE_CONNECT_PROTOCOL: 8 } as const;

/** The client connection preface (RFC 9113 §3.4). */
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/** One frame as read from the wire. */
export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/** Encodes one frame. */
export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** A SETTINGS frame with the given identifier/value pairs. */
export function settings(pairs: Array<[number, number]> = []): Buffer {
  const payload = Buffer.alloc(pairs.length * 6);
  pairs.forEach(([id, value], i) => {
    payload.writeUInt16BE(id, i * 6);
    payload.writeUInt32BE(value, i * 6 + 2);
  });
  return frame(FrameType.SETTINGS, 0, 0, payload);
}

/** An RST_STREAM frame. */
export function rstStream(stream: number, code: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(code);
  return frame(FrameType.RST_STREAM, 0, stream, payload);
}

/** A WINDOW_UPDATE frame. */
export function windowUpdate(stream: number, increment: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(increment);
  return frame(FrameType.WINDOW_UPDATE, 0, stream, payload);
}

function hpackInteger(value: number, prefixBits: number, firstByte: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByte | value]);
  const out = [firstByte | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return Buffer.from(out);
}

function hpackString(text: string): Buffer {
  const bytes = Buffer.from(text, 'latin1');
  return Buffer.concat([hpackInteger(bytes.length, 7, 0), bytes]);
}

/** An HPACK header block of literals without indexing, names and values as given, in order. */
export function headerBlock(fields: Array<[string, string]>): Buffer {
  return Buffer.concat(fields.map(([name, value]) => Buffer.concat([Buffer.from([0x00]), hpackString(name), hpackString(value)])));
}

/** A HEADERS frame (END_HEADERS set) carrying `fields`. */
export function headers(stream: number, fields: Array<[string, string]>, endStream = false): Buffer {
  return frame(FrameType.HEADERS, Flag.END_HEADERS | (endStream ? Flag.END_STREAM : 0), stream, headerBlock(fields));
}

/** A DATA frame. */
export function data(stream: number, payload: Buffer, endStream = false): Buffer {
  return frame(FrameType.DATA, endStream ? Flag.END_STREAM : 0, stream, payload);
}

/** The SETTINGS identifier/value pairs of a SETTINGS frame. */
export function settingsOf(f: Frame): Map<number, number> {
  const out = new Map<number, number>();
  for (let i = 0; i + 6 <= f.payload.length; i += 6) out.set(f.payload.readUInt16BE(i), f.payload.readUInt32BE(i + 2));
  return out;
}

/** The error code of an RST_STREAM or GOAWAY frame. */
export function errorCodeOf(f: Frame): number {
  return f.type === FrameType.GOAWAY ? f.payload.readUInt32BE(4) : f.payload.readUInt32BE(0);
}

/** Whether a HEADERS frame's block begins with the static entry `:status 200`. */
export function isStatus200(f: Frame): boolean {
  return f.type === FrameType.HEADERS && f.payload[0] === 0x88;
}

/**
 * One side of an HTTP/2 connection, written by hand: `send` writes bytes, `frames` is everything
 * received so far, and `next(pred)` resolves with the first frame (received or yet to come) that
 * matches and was not taken before. SETTINGS (not ACKs) are acknowledged and PINGs answered
 * automatically unless `manual` is set.
 */
export class RawPeer {
  readonly frames: Frame[] = [];
  private buffered = Buffer.alloc(0);
  private taken = new Set<Frame>();
  private waiters: Array<{ pred: (f: Frame) => boolean; resolve: (f: Frame) => void }> = [];
  /** Resolves when the connection has closed. */
  readonly closed: Promise<void>;
  /** Set once the connection has closed. */
  isClosed = false;

  constructor(
    readonly socket: Duplex,
    /** When set, SETTINGS and PINGs are not answered automatically. */
    public manual = false,
    skipPreface = 0,
  ) {
    let skip = skipPreface;
    socket.on('data', (chunk: Buffer) => {
      if (skip > 0) {
        const n = Math.min(skip, chunk.length);
        skip -= n;
        chunk = chunk.subarray(n);
      }
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.parse();
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        resolve();
      }),
    );
  }

  /** Opens a connection (cleartext: prior knowledge; TLS: ALPN h2) and sends the client preface and `initial` SETTINGS. */
  static async client(port: number, options: { tls?: { ca: Buffer }; settings?: Array<[number, number]> } = {}): Promise<RawPeer> {
    const socket: Socket = options.tls
      ? tlsConnect({ host: '127.0.0.1', port, ca: options.tls.ca, servername: 'localhost', ALPNProtocols: ['h2'] })
      : netConnect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once(options.tls ? 'secureConnect' : 'connect', () => resolve());
      socket.once('error', reject);
    });
    const peer = new RawPeer(socket);
    peer.send(PREFACE, settings(options.settings ?? []));
    return peer;
  }

  /** Writes bytes. */
  send(...chunks: Buffer[]): void {
    if (!this.socket.destroyed) this.socket.write(Buffer.concat(chunks));
  }

  /** The first frame not taken yet that matches, now or when it comes. */
  next(pred: (f: Frame) => boolean, what = 'a frame'): Promise<Frame> {
    const found = this.frames.find((f) => !this.taken.has(f) && pred(f));
    if (found) {
      this.taken.add(found);
      return Promise.resolve(found);
    }
    return new Promise((resolve, reject) => {
      const waiter = { pred, resolve };
      this.waiters.push(waiter);
      void this.closed.then(() => {
        if (this.waiters.includes(waiter)) reject(new Error(`connection closed while waiting for ${what}`));
      });
    });
  }

  /** Frames received on one stream. */
  on(stream: number): Frame[] {
    return this.frames.filter((f) => f.stream === stream);
  }

  /** Ends the connection. */
  destroy(): void {
    this.socket.destroy();
  }

  private parse(): void {
    while (this.buffered.length >= 9) {
      const length = this.buffered.readUIntBE(0, 3);
      if (this.buffered.length < 9 + length) return;
      const f: Frame = {
        type: this.buffered[3]!,
        flags: this.buffered[4]!,
        stream: this.buffered.readUInt32BE(5) & 0x7fffffff,
        payload: Buffer.from(this.buffered.subarray(9, 9 + length)),
      };
      this.buffered = this.buffered.subarray(9 + length);
      this.frames.push(f);
      if (!this.manual) {
        if (f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) === 0) this.send(frame(FrameType.SETTINGS, Flag.ACK, 0));
        if (f.type === FrameType.PING && (f.flags & Flag.ACK) === 0) this.send(frame(FrameType.PING, Flag.ACK, 0, f.payload));
      }
      const i = this.waiters.findIndex((w) => w.pred(f));
      if (i >= 0) {
        const [w] = this.waiters.splice(i, 1);
        this.taken.add(f);
        w!.resolve(f);
      }
    }
  }
}
