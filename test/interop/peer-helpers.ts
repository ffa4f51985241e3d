/**
 * Shared pieces of the interop tests against independent peer libraries (undici, WebSocket-Node,
 * websocket-driver): payloads of exact byte sizes, a queue to await events in order, and an echo
 * server made with our serve() that hands each accepted connection to the test.
 */
import { Socket } from 'node:net';
import { serve, type Message, type ServeOptions, type WebSocketConnection, type WebSocketServer } from 'rfc6455';

/** Message sizes every peer is tested with, in bytes: the frame length encodings' edges and large messages. */
export const SIZES = [0, 1, 125, 126, 65535, 65536, 1024 * 1024 + 3, 4 * 1024 * 1024] as const;

/** 1 + 2 + 3 + 4 bytes of UTF-8: ASCII, Latin-1, BMP and a 4-byte (astral) character. */
const UNIT = 'aé€😀';
const UNIT_BYTES = 10;

/** A string whose UTF-8 encoding is exactly `n` bytes, made of 1- to 4-byte characters. */
export function textOfBytes(n: number): string {
  return UNIT.repeat(Math.floor(n / UNIT_BYTES)) + 'x'.repeat(n % UNIT_BYTES);
}

/** `n` bytes that are not one repeated byte (every byte value, shifting every 256 bytes). */
export function bytesOf(n: number, seed = 0): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i + seed + (i >>> 8) * 7) & 0xff;
  return b;
}

/** Bytes that do not compress (a xorshift stream): for measuring compression on the wire. */
export function randomishBytes(n: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed | 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** A FIFO of values arriving from callbacks, awaited one at a time in order. */
export class Inbox<T> {
  private readonly items: T[] = [];
  private readonly waiters: Array<(item: T) => void> = [];

  readonly push = (item: T): void => {
    const w = this.waiters.shift();
    if (w) w(item);
    else this.items.push(item);
  };

  next(): Promise<T> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve(item);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** The next `n` values, in order. */
  async take(n: number): Promise<T[]> {
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(await this.next());
    return out;
  }
}

/** One connection accepted by {@link echoServer}, and what it received. */
export interface Accepted {
  conn: WebSocketConnection;
  /** Messages received, with their type, in order (echoed back as they come). */
  received: Array<{ data: Message; binary: boolean }>;
  /** Pings received by our side. */
  pings: Buffer[];
}

export interface EchoServer {
  server: WebSocketServer;
  /** The next connection the server accepts. */
  accepted: Inbox<Accepted>;
  close(): Promise<void>;
}

/**
 * serve() on 127.0.0.1 port 0 with an echo handler: every message goes back with its type (from a
 * `message` listener, so in order), and is kept in `received` for the test to inspect.
 */
export async function echoServer(options: ServeOptions = {}): Promise<EchoServer> {
  const accepted = new Inbox<Accepted>();
  const server = await serve({ port: 0, host: '127.0.0.1', ...options }, (conn) => {
    const side: Accepted = { conn, received: [], pings: [] };
    conn.on('ping', (payload) => side.pings.push(payload));
    conn.on('message', (data, binary) => {
      side.received.push({ data, binary });
      // Rejects once the connection is closing (e.g. after a 1009): nothing to echo then.
      conn.send(data, { binary }).catch(() => undefined);
    });
    accepted.push(side);
  });
  return { server, accepted, close: () => server.close() };
}

/**
 * An {@link echoServer} for the enclosing `describe` block: started before its tests, closed after
 * them. Call it in the block's body; the getter it returns is for the tests.
 */
export function echoServerForBlock(options: ServeOptions = {}): () => EchoServer {
  let echo: EchoServer | undefined;
  beforeAll(async () => {
    echo = await echoServer(options);
  });
  afterAll(() => echo?.close());
  return () => {
    if (!echo) throw new Error('the echo server is only there while the block runs');
    return echo;
  };
}

/** Bytes our side of `conn` has written to its TCP socket so far. */
export function bytesWritten(conn: WebSocketConnection): number {
  const stream = conn.transport.stream;
  if (!(stream instanceof Socket)) throw new Error('not a TCP transport');
  return stream.bytesWritten;
}

/** Bytes our side of `conn` has read from its TCP socket so far. */
export function bytesRead(conn: WebSocketConnection): number {
  const stream = conn.transport.stream;
  if (!(stream instanceof Socket)) throw new Error('not a TCP transport');
  return stream.bytesRead;
}

/** Resolves once `conn` is closed and its transport gone. */
export async function closedStatus(conn: WebSocketConnection): Promise<{ code: number | undefined; reason: string | undefined }> {
  await conn.whenClosed;
  return { code: conn.closeStatus, reason: conn.closeReason };
}

/** A close reason with 2-, 3- and 4-byte UTF-8 characters (well under the 123-byte limit). */
export const UTF8_REASON = 'bye ✓ grüße 😀';
