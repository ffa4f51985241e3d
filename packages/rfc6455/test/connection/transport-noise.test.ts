/**
 * Transport errors after the connection's end is settled are no failure the application should
 * see, and transport errors before it are. A peer that resets once it has read our close frame
 * (a browser, a proxy) after we failed the connection: the failure was reported once, the reset
 * is not reported again. A reset in the middle of a message still is (conn.error, 'error', 1006).
 */
import type { Socket } from 'node:net';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ConnectionClosedError, createWebSocketStream, serve, type WebSocketConnection } from 'rfc6455';
import { frame } from '../helpers/frames.js';
import { RawClient } from '../helpers/raw-client.js';

interface Seen {
  conn: WebSocketConnection;
  errors: string[];
  socketErrors: string[];
}

async function withServer(options: { maxMessageSize?: number }, run: (port: number, seen: Promise<Seen>) => Promise<void>): Promise<void> {
  let accepted!: (seen: Seen) => void;
  const seen = new Promise<Seen>((resolve) => (accepted = resolve));
  const socketErrors: string[] = [];
  const server = await serve({ host: '127.0.0.1', port: 0, perMessageDeflate: false, ...options }, (conn) => {
    const errors: string[] = [];
    conn.on('error', (error: NodeJS.ErrnoException) => errors.push(error.code ?? error.message));
    accepted({ conn, errors, socketErrors });
  });
  server.httpServer.on('connection', (socket: Socket) => socket.on('error', (error: NodeJS.ErrnoException) => socketErrors.push(error.code ?? error.message)));
  try {
    await run(server.port, seen);
  } finally {
    await server.close();
  }
}

describe('a peer that resets once it read the close frame of our failure', () => {
  test.each([
    ['a frame with RSV2 set', 'WS_PROTOCOL_ERROR', 1002, {}, { opcode: 1, rsv2: true, payload: Buffer.from('x') }],
    ['a message over maxMessageSize', 'WS_MESSAGE_TOO_BIG', 1009, { maxMessageSize: 10 }, { opcode: 1, payload: Buffer.alloc(100, 97) }],
  ])('%s: the failure is reported once (conn.error, one error event), not the reset that follows it', async (_name, code, status, options, bad) => {
    await withServer(options, async (port, accepted) => {
      const raw = await RawClient.connect(port);
      const { conn, errors, socketErrors } = await accepted;
      raw.send(bad);
      expect((await raw.readClose())?.code).toBe(status);
      raw.socket.resetAndDestroy();
      await conn.whenClosed;
      expect(conn.closeStatus).toBe(status);
      expect((conn.error as NodeJS.ErrnoException | undefined)?.code).toBe(code);
      // The reset reached the socket (before: a second 'error' event, ECONNRESET).
      await raw.closed;
      expect(socketErrors.length > 0 && socketErrors.every((c) => c === 'ECONNRESET' || c === 'EPIPE')).toBe(true);
      expect(errors).toEqual([code]);
    });
  });
});

describe('a reset before the end is settled is still a failure', () => {
  test('a reset in the middle of a fragmented message: conn.error and an error event ECONNRESET, 1006', async () => {
    await withServer({}, async (port, accepted) => {
      const raw = await RawClient.connect(port);
      const { conn, errors } = await accepted;
      const got: unknown[] = [];
      conn.on('message', (m) => got.push(m));
      raw.send({ opcode: 1, fin: false, payload: Buffer.from('part') });
      raw.send({ opcode: 9, payload: Buffer.from('p') });
      // Once the fragment and the ping were read (the pong answers), the reset cannot come with them.
      expect((await raw.readFrame())?.opcode).toBe(0xa);
      raw.socket.resetAndDestroy();
      await conn.whenClosed;
      expect(conn.closeStatus).toBe(1006);
      expect((conn.error as NodeJS.ErrnoException | undefined)?.code).toBe('ECONNRESET');
      expect(errors).toEqual(['ECONNRESET']);
      expect(got).toEqual([]);
    });
  });

  test('a reset after our close frame, before the peer answered it: 1006 and ECONNRESET reported', async () => {
    await withServer({}, async (port, accepted) => {
      const raw = await RawClient.connect(port);
      const { conn, errors } = await accepted;
      conn.close(1000).catch(() => undefined);
      expect((await raw.readClose())?.code).toBe(1000);
      raw.socket.resetAndDestroy();
      await conn.whenClosed;
      expect(conn.closeStatus).toBe(1006);
      expect(errors).toEqual(['ECONNRESET']);
    });
  });
});

describe('a reset while received bytes wait for a reader that is behind', () => {
  // A browser leaving a page sends its last messages and 1001 and resets without waiting. When the
  // server's reader (here a createWebSocketStream pipeline into a sink that waits) is behind, the
  // rest of the socket read waits unparsed: the reset comes before the close frame is parsed.
  const N = 100;
  const message = (i: number): string => String(i).padStart(400, '-');

  async function scenario(withClose: boolean, after: 'read' | 'terminate' | 'server.close()'): Promise<{ conn: WebSocketConnection; errors: string[]; piped: string[]; outcome: unknown; during: unknown[] }> {
    const during: unknown[] = [];
    let accepted!: (conn: WebSocketConnection) => void;
    const connP = new Promise<WebSocketConnection>((resolve) => (accepted = resolve));
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const piped: string[] = [];
    const errors: string[] = [];
    let done!: Promise<unknown>;
    const sockets: Socket[] = [];
    const server = await serve({ host: '127.0.0.1', port: 0, perMessageDeflate: false }, (conn) => {
      conn.on('error', (error: NodeJS.ErrnoException) => errors.push(error.code ?? error.message));
      const sink = new Writable({
        objectMode: true,
        highWaterMark: 1,
        write(chunk: unknown, _encoding, callback) {
          piped.push(String(chunk));
          void gate.then(() => callback());
        },
      });
      done = pipeline(createWebSocketStream(conn, { objectMode: true, readableHighWaterMark: 2 }), sink).then(
        () => 'resolved',
        (error: unknown) => error,
      );
      accepted(conn);
    });
    server.httpServer.on('connection', (socket: Socket) => sockets.push(socket));
    try {
      const raw = await RawClient.connect(server.port);
      const conn = await connP;
      const socket = sockets[0]!;
      const bytes = Buffer.concat([
        ...Array.from({ length: N }, (_, i) => frame({ opcode: 1, mask: true, payload: message(i) })),
        ...(withClose ? [frame({ opcode: 8, mask: true, payload: Buffer.from([0x03, 0xe9]) })] : []),
      ]);
      const before = socket.bytesRead;
      raw.write(bytes);
      // Until the server has read all of it (the reader took 2 or 3 messages; the rest waits).
      while (socket.bytesRead < before + bytes.length) await new Promise((resolve) => setImmediate(resolve));
      expect(piped.length).toBeLessThan(10);
      const gone = new Promise((resolve) => socket.once('close', resolve));
      raw.socket.resetAndDestroy();
      await gone;
      // The transport is gone: the connection is closing, sends and pings reject (the rest of
      // what was read waits for the reader).
      during.push(conn.readyState, await conn.send('late').then(() => 'sent', (error: ConnectionClosedError) => error.closeCode));
      during.push(await conn.ping().then(() => 'pong', (error: ConnectionClosedError) => error.closeCode));
      if (after === 'terminate') conn.terminate();
      // close() reads what waits without waiting for the reader, to the peer's close frame.
      if (after === 'server.close()') await server.close();
      release();
      const outcome = await done;
      await conn.whenClosed;
      return { conn, errors, piped, outcome, during };
    } finally {
      release();
      await server.close();
    }
  }

  test('messages and 1001, then the reset: every message is read, the close is 1001, the pipeline resolves, nothing is reported', async () => {
    const { conn, errors, piped, outcome, during } = await scenario(true, 'read');
    expect(during).toEqual(['closing', 1006, 1006]);
    // (Before: 1006, conn.error and an error event ECONNRESET, the pipeline rejected after 3 messages.)
    expect(piped).toEqual(Array.from({ length: N }, (_, i) => message(i)));
    expect(outcome).toBe('resolved');
    expect([conn.closeStatus, conn.error, errors]).toEqual([1001, undefined, []]);
  });

  test('messages without a close frame, then the reset: every whole message is read, then 1006 with ECONNRESET reported once', async () => {
    const { conn, errors, piped, outcome } = await scenario(false, 'read');
    expect(piped).toEqual(Array.from({ length: N }, (_, i) => message(i)));
    expect(outcome).toBeInstanceOf(ConnectionClosedError);
    expect((outcome as ConnectionClosedError).closeCode).toBe(1006);
    expect(conn.closeStatus).toBe(1006);
    expect((conn.error as NodeJS.ErrnoException | undefined)?.code).toBe('ECONNRESET');
    expect(errors).toEqual(['ECONNRESET']);
  });

  test('server.close() while the rest waits: it resolves with the reader still behind; the close is 1001, nothing reported', async () => {
    const { conn, errors, outcome } = await scenario(true, 'server.close()');
    expect([conn.closeStatus, conn.error, errors]).toEqual([1001, undefined, []]);
    expect(outcome).toBe('resolved');
  });

  test('terminate() while the rest waits: the connection closes at once (1006), the rest is dropped', async () => {
    const { conn, errors, piped, outcome } = await scenario(true, 'terminate');
    expect(piped.length).toBeLessThan(10);
    expect(conn.closeStatus).toBe(1006);
    expect((outcome as ConnectionClosedError).closeCode).toBe(1006);
    expect(errors).toEqual([]);
  });
});
