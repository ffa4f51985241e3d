/**
 * Helpers for the permessage-deflate tests over real sockets: an echo server that hands out its
 * connections, the negotiated extension of a connection, wire byte counters, and a process-wide
 * census of open zlib streams (from async_hooks, so nothing is mocked).
 */
import { createHook } from 'node:async_hooks';
import type { Socket } from 'node:net';
import { serve, type PerMessageDeflate, type ServeOptions, type WebSocketConnection, type WebSocketServer } from 'rfc6455';

/** The negotiated permessage-deflate engine of a connection (a private field, read for tests). */
export function extensionOf(conn: WebSocketConnection): PerMessageDeflate | undefined {
  return (conn as unknown as { extension: PerMessageDeflate | undefined }).extension;
}

/** Bytes read so far by the connection's TCP socket. */
export function bytesRead(conn: WebSocketConnection): number {
  return (conn.transport.stream as Socket).bytesRead;
}

export interface EchoServer {
  server: WebSocketServer;
  url: string;
  /** Server-side connections, in accept order. */
  conns: WebSocketConnection[];
  /** Resolves with the n-th (0-based) server-side connection once accepted. */
  nth(n: number): Promise<WebSocketConnection>;
  /** Messages each connection received, by accept order. */
  received: Array<Array<string | Buffer>>;
}

/** serve() on 127.0.0.1:0 echoing every message back as it came (text stays text). */
export async function echoServer(options: Omit<ServeOptions, 'port' | 'host'> = {}): Promise<EchoServer> {
  const conns: WebSocketConnection[] = [];
  const received: Array<Array<string | Buffer>> = [];
  const waiting = new Map<number, Array<(c: WebSocketConnection) => void>>();
  const server = await serve({ ...options, port: 0, host: '127.0.0.1' }, async (conn) => {
    const index = conns.length;
    conns.push(conn);
    const mine: Array<string | Buffer> = [];
    received.push(mine);
    for (const resolve of waiting.get(index) ?? []) resolve(conn);
    waiting.delete(index);
    for await (const message of conn) {
      mine.push(message);
      await conn.send(message).catch(() => undefined);
    }
  });
  return {
    server,
    url: server.url,
    conns,
    received,
    nth: (n) =>
      conns[n] !== undefined
        ? Promise.resolve(conns[n])
        : new Promise((resolve) => waiting.set(n, [...(waiting.get(n) ?? []), resolve])),
  };
}

/** Compressible text: words from a small vocabulary, deterministic per seed. */
export function compressibleText(size: number, seed = 7): string {
  const words = ['alpha', 'beta', 'gamma', 'delta', 'websocket', 'deflate', 'frame', 'window', 'context', 'takeover'];
  let x = seed;
  let out = '';
  while (out.length < size) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    out += words[x % words.length] + (x % 7 === 0 ? '\n' : ' ');
  }
  return out.slice(0, size);
}

/** Compressible binary (within any window, even 256 bytes): a 100-byte period shifted every 4 KiB. */
export function compressibleBytes(size: number, seed = 3): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = ((i % 100) * seed + (i >> 12)) & 0xff;
  return b;
}

interface ZlibOwner {
  _handle: unknown;
}

const zlibHandles: Array<WeakRef<object>> = [];
let hookEnabled = false;

/** Starts recording every zlib stream the process creates (idempotent). */
export function trackZlib(): void {
  if (hookEnabled) return;
  hookEnabled = true;
  createHook({
    init(_id, type, _trigger, resource) {
      if (type === 'ZLIB') zlibHandles.push(new WeakRef(resource as object));
    },
  }).enable();
}

/**
 * zlib streams created since `trackZlib()` that are still open (their native handle not closed).
 * Node's zlib sets `stream._handle = null` on close; the handle points at its stream by a symbol.
 */
export function openZlibStreams(): number {
  let open = 0;
  for (const ref of zlibHandles) {
    const handle = ref.deref() as Record<symbol, unknown> | undefined;
    if (handle === undefined) continue;
    for (const key of Object.getOwnPropertySymbols(handle)) {
      const owner = handle[key] as ZlibOwner | undefined;
      if (owner !== null && typeof owner === 'object' && '_handle' in owner && owner._handle !== null) open++;
    }
  }
  return open;
}

/** Waits until `check()` is true (polling each 10 ms), failing after `ms`. */
export async function until(check: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
