/**
 * A transport that fails (a TCP reset) while read bytes wait for a reader that is behind: the
 * close waits for them to be parsed as the reader reads on. A reader that stops reading is not
 * waited for past closeTimeout: the rest is dropped and the connection closes (1006), so it
 * leaves server.connections and 'close' is emitted.
 */
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import { serve, type ServeOptions, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { frame } from '../helpers/frames.js';
import { RawClient } from '../helpers/raw-client.js';

const message = (i: number): string => String(i).padStart(400, '-');

/**
 * Serves, connects a raw client that sends `frames` and waits until the server has read all of
 * it, then resets the TCP connection and waits for the server's socket to close.
 */
async function resetWhileBehind(
  options: Partial<ServeOptions>,
  setup: (conn: WebSocketConnection) => void,
  batches: Buffer[][],
  run: (conn: WebSocketConnection, server: WebSocketServer, errors: string[]) => Promise<void>,
): Promise<void> {
  let accepted!: (conn: WebSocketConnection) => void;
  const connP = new Promise<WebSocketConnection>((resolve) => (accepted = resolve));
  const errors: string[] = [];
  const sockets: Socket[] = [];
  const server = await serve({ host: '127.0.0.1', port: 0, perMessageDeflate: false, ...options }, (conn) => {
    conn.on('error', (error: NodeJS.ErrnoException) => errors.push(error.code ?? error.message));
    setup(conn);
    accepted(conn);
  });
  server.httpServer.on('connection', (socket: Socket) => sockets.push(socket));
  try {
    const raw = await RawClient.connect(server.port);
    const conn = await connP;
    const socket = sockets[0]!;
    for (const batch of batches) {
      const bytes = Buffer.concat(batch);
      const before = socket.bytesRead;
      raw.write(bytes);
      for (let turns = 0; socket.bytesRead < before + bytes.length; turns++) {
        if (turns > 10_000) throw new Error(`the server read ${socket.bytesRead - before} of ${bytes.length} bytes`);
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    const gone = new Promise((resolve) => socket.once('close', resolve));
    raw.socket.resetAndDestroy();
    await gone;
    await run(conn, server, errors);
  } finally {
    await server.close();
  }
}

const messages = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => frame({ opcode: 1, mask: true, payload: message(i) }));
const goingAway = frame({ opcode: 8, mask: true, payload: Buffer.from([0x03, 0xe9]) });

describe('a reset while read bytes wait for a reader that never reads on', () => {
  test('a server that does not read what clients send, its queue full: the connection closes within closeTimeout (1006, the reset reported) and leaves server.connections', async () => {
    await resetWhileBehind({ closeTimeout: 200, readHighWaterMark: 2000 }, () => undefined, [[...messages(40), goingAway]], async (conn, server, errors) => {
      // (Before: `closing` for good; whenClosed never resolved, the connection stayed in server.connections.)
      expect(conn.readyState).toBe('closing');
      await conn.whenClosed;
      expect(conn.closeStatus).toBe(1006);
      expect(server.connections.has(conn)).toBe(false);
      // The rest (the peer's 1001 among it) was dropped unread: the reset is reported.
      expect((conn.error as NodeJS.ErrnoException | undefined)?.code).toBe('ECONNRESET');
      expect(errors).toEqual(['ECONNRESET']);
    });
  });

  test('a reader that reads on after the reset, within closeTimeout: every message, then the peer\'s 1001', async () => {
    const got: string[] = [];
    await resetWhileBehind({ closeTimeout: 1000, readHighWaterMark: 2000 }, () => undefined, [[...messages(40), goingAway]], async (conn, _server, errors) => {
      expect(conn.readyState).toBe('closing');
      for (;;) {
        const m = await conn.recv();
        if (typeof m === 'symbol') break;
        got.push(String(m));
      }
      await conn.whenClosed;
      expect(got).toEqual(Array.from({ length: 40 }, (_, i) => message(i)));
      expect([conn.closeStatus, conn.error, errors]).toEqual([1001, undefined, []]);
    });
  });
});

describe('a reset while the stream holds bytes it read ahead, reading paused', () => {
  // The first read fills the queue (reading pauses, the parser holds the rest of that read); the
  // socket's stream still reads the next batch into its own buffer. A reset then: that buffer is
  // received after the held bytes, not dropped.
  test.each([
    ['through the stream', false],
    ['direct reads wanted', true],
  ])('%s: every message of both reads, then the peer\'s 1001; nothing reported', async (_name, directReads) => {
    const got: string[] = [];
    const batches = [messages(100), [...messages(120).slice(100), goingAway]];
    await resetWhileBehind({ closeTimeout: 1000, readHighWaterMark: 2000, directReads }, () => undefined, batches, async (conn, _server, errors) => {
      for (;;) {
        const m = await conn.recv();
        if (typeof m === 'symbol') break;
        got.push(String(m));
      }
      await conn.whenClosed;
      // (Before: the 100 messages of the first read, then EOF, 1006 and ECONNRESET reported.)
      expect(got).toEqual(Array.from({ length: 120 }, (_, i) => message(i)));
      expect([conn.closeStatus, conn.error, errors]).toEqual([1001, undefined, []]);
    });
  });

  test('pause()d, before the first read: all of it waits in the stream, none in the parser: every message, then the peer\'s 1001; the reset not reported', async () => {
    const got: string[] = [];
    const batches = [[...messages(40), goingAway]];
    await resetWhileBehind({ closeTimeout: 1000 }, (conn) => conn.pause(), batches, async (conn, _server, errors) => {
      // (Before: all of it was dropped, 1006, and ECONNRESET reported although the peer's 1001 was in it.)
      conn.on('message', (m) => got.push(String(m)));
      conn.resume();
      await conn.whenClosed;
      expect(got).toEqual(Array.from({ length: 40 }, (_, i) => message(i)));
      expect([conn.closeStatus, conn.error, errors]).toEqual([1001, undefined, []]);
    });
  });
});

describe('permessage-deflate from ws: a reset while frames wait for inflation and for the reader', () => {
  // ws sends compressed messages and 1001, and resets once the server has read all of it.
  test.each([
    ['the queue full', 2000],
    ['pause()d', 1024 * 1024],
  ])('%s: every message, inflated as the reader reads on, then the peer\'s 1001; nothing reported', async (_name, hwm) => {
    let accepted!: (conn: WebSocketConnection) => void;
    const connP = new Promise<WebSocketConnection>((resolve) => (accepted = resolve));
    const sockets: Socket[] = [];
    const errors: string[] = [];
    const server = await serve({ host: '127.0.0.1', port: 0, perMessageDeflate: true, readHighWaterMark: hwm, closeTimeout: 1000 }, (conn) => {
      conn.on('error', (e: NodeJS.ErrnoException) => errors.push(e.code ?? e.message));
      if (hwm > 2000) conn.pause();
      accepted(conn);
    });
    server.httpServer.on('connection', (s: Socket) => sockets.push(s));
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${server.port}`, { perMessageDeflate: true });
      await new Promise((r) => ws.once('open', r));
      ws.on('error', () => undefined);
      const conn = await connP;
      const raw = (ws as unknown as { _socket: Socket })._socket;
      let last!: Promise<void>;
      for (let i = 0; i < 200; i++) last = new Promise((r) => ws.send(String(i).padStart(3000, String.fromCharCode(97 + (i % 26))), () => r()));
      await last;
      const sent = raw.bytesWritten;
      ws.close(1001);
      while (raw.bytesWritten === sent) await new Promise((r) => setImmediate(r));
      await new Promise<void>((r) => { const check = (): void => { if (raw.writableLength === 0 && sockets[0]!.bytesRead >= raw.bytesWritten) r(); else setImmediate(check); }; check(); });
      const gone = new Promise((r) => sockets[0]!.once('close', r));
      raw.resetAndDestroy();
      await gone;
      const state = conn.readyState;
      if (hwm > 2000) conn.resume();
      const got: string[] = [];
      if (hwm > 2000) conn.on('message', (m) => got.push(String(m)));
      for (;;) {
        if (hwm > 2000) break;
        const m = await conn.recv();
        if (typeof m === 'symbol') break;
        got.push(String(m));
      }
      await conn.whenClosed;
      expect([state, got.length, conn.closeStatus, errors]).toEqual(['closing', 200, 1001, []]);
    } finally {
      await server.close();
    }
  });
});
