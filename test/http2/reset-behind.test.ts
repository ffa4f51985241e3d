/**
 * An HTTP/2 WebSocket's stream reset by its peer (RST_STREAM) while our reader is behind: reading
 * paused by `pause()` (what the peer sent waits in the Http2Stream's own buffer), or the queue for
 * `recv()` full. As over TCP (packages/rfc6455/test/connection/gone-pending.test.ts), nothing the
 * peer sent before the reset is missing: the reader gets every message, then the peer's close
 * frame if it sent one.
 *
 * RST_STREAM(NO_ERROR), what Node's `stream.close()` and `stream.destroy()` send, is the hard
 * case: Node then ends our writable side and keeps the stream, its input unread, until it is read
 * to its end. A write to it meanwhile (a send(), our answer to the peer's close frame) failed with
 * ERR_STREAM_WRITE_AFTER_END, which left the stream errored: Node hands no more 'data' nor 'end'
 * of an errored stream, so every message still waiting was dropped and the connection stayed open.
 */
import { constants as h2, createSecureServer, type ClientHttp2Session, type ClientHttp2Stream, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { connect, serve, type ServeOptions, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { CLIENT_TLS, clientFrame, closeSession, openSession, originOf, TLS } from './helpers.js';
import { frame } from '../../packages/rfc6455/test/helpers/frames.js';
import { until } from '../../packages/rfc6455/test/helpers/wait.js';

const message = (i: number): string => String(i).padStart(400, '-');
const expected = (n: number): string[] => Array.from({ length: n }, (_, i) => message(i));
const GOING_AWAY = Buffer.from([0x03, 0xe9]);

/** `n` masked text frames, and the close frame 1001 when `close`. */
const clientBytes = (n: number, close: boolean): Buffer =>
  Buffer.concat([...Array.from({ length: n }, (_, i) => clientFrame(1, Buffer.from(message(i)))), ...(close ? [clientFrame(8, GOING_AWAY)] : [])]);

/** `resolved` once `promise` resolves, or `late` if it has not within 3 s. */
async function within(promise: Promise<unknown>, late: string): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise.then(() => 'resolved'), new Promise<string>((r) => (timer = setTimeout(r, 3000, late)))]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Reads every message: by `recv()` (the queue fills and empties as it goes), or by a listener
 * after resume(); then waits (3 s at most) for the close. The messages, then `resolved`.
 */
async function readAll(conn: WebSocketConnection, by: 'recv' | 'listener'): Promise<[string[], string]> {
  const got: string[] = [];
  if (by === 'listener') {
    conn.on('message', (m) => got.push(String(m)));
    conn.resume();
  } else {
    conn.resume();
    const reading = (async (): Promise<void> => {
      for (;;) {
        const m = await conn.recv();
        if (typeof m === 'symbol') break;
        got.push(String(m));
      }
    })();
    await within(reading, 'recv() still waiting after 3 s');
  }
  return [got, await within(conn.whenClosed, 'still open after 3 s')];
}

/** How `promise` settled: `resolved`, or the name of its error. */
const outcome = (promise: Promise<unknown>): Promise<string> => promise.then(() => 'resolved', (e: Error) => e.name);

describe('server side: the client resets the stream while the server connection is paused', () => {
  let server: WebSocketServer;
  let session: ClientHttp2Session;
  const conns: WebSocketConnection[] = [];
  const errors: string[] = [];

  async function start(options: Partial<ServeOptions> = {}): Promise<void> {
    // closeTimeout far past the 3 s the tests wait: a connection that closes only at its close
    // timer fails them.
    server = await serve({ host: '127.0.0.1', port: 0, http2: true, tls: TLS, perMessageDeflate: false, closeTimeout: 30_000, ...options }, (conn) => {
      conn.on('error', (e: NodeJS.ErrnoException) => errors.push(e.code ?? e.message));
      conn.pause();
      conns.push(conn);
    });
    session = await openSession(originOf(server.url));
  }

  afterEach(async () => {
    for (const conn of conns.splice(0)) if (!conn.closed) conn.terminate();
    errors.length = 0;
    await closeSession(session);
    await server.close();
  });

  /** Opens a WebSocket, sends `bytes` on it, waits until all of them wait unread at the server, then resets the stream with `code`. */
  async function resetWhileBehind(bytes: Buffer, code: number): Promise<{ conn: WebSocketConnection; stream: ServerHttp2Stream }> {
    const client: ClientHttp2Stream = session.request(
      { ':method': 'CONNECT', ':protocol': 'websocket', ':scheme': 'https', ':path': '/', ':authority': new URL(server.url).host, 'sec-websocket-version': '13' },
      { endStream: false },
    );
    client.on('error', () => undefined);
    client.resume();
    await new Promise((resolve) => client.once('response', resolve));
    await until(() => conns.length === 1, 'the server connection');
    const conn = conns[0]!;
    const stream = conn.transport.stream as ServerHttp2Stream;
    client.write(bytes);
    await until(() => stream.readableLength === bytes.length, 'everything sent to wait unread at the server');
    client.close(code);
    await until(() => stream.closed, "the client's RST_STREAM");
    return { conn, stream };
  }

  test.each([
    ['a listener after resume()', 'listener', 1024 * 1024],
    ['recv(), the queue full on the way (readHighWaterMark 2000)', 'recv', 2000],
  ] as const)('RST_STREAM(NO_ERROR) after 40 messages and 1001, read by %s: every message, then the 1001; nothing reported', async (_name, by, readHighWaterMark) => {
    await start({ readHighWaterMark });
    const { conn } = await resetWhileBehind(clientBytes(40, true), h2.NGHTTP2_NO_ERROR);
    // (Before: our answer to the 1001 was written to the stream Node had ended: the stream errored
    // and stayed open, and the connection with it until its close timer.)
    expect(await readAll(conn, by)).toEqual([expected(40), 'resolved']);
    expect([conn.closeStatus, conn.error, errors]).toEqual([1001, undefined, []]);
  });

  test.each([
    ['with the 1001', true, 1001],
    ['without a close frame', false, 1006],
  ] as const)('RST_STREAM(NO_ERROR) %s, then a send() and a ping(): both reject, and the reader still gets every message', async (_name, close, status) => {
    await start();
    const { conn, stream } = await resetWhileBehind(clientBytes(40, close), h2.NGHTTP2_NO_ERROR);
    const sent = outcome(conn.send('late'));
    const pinged = outcome(conn.ping());
    // (Before: the send was written to the stream Node had ended; the stream errored, Node then
    // dropped what it still held, and no 'end' or 'close' ever came: no message, the connection
    // open for good, and the send resolved.)
    expect(await readAll(conn, 'listener')).toEqual([expected(40), 'resolved']);
    expect([await sent, await pinged]).toEqual(['ConnectionClosedError', 'ConnectionClosedError']);
    expect([conn.closeStatus, conn.error, errors]).toEqual([status, undefined, []]);
    expect(stream.destroyed).toBe(true);
  });

  test('RST_STREAM(CANCEL) after 40 messages and 1001: every message, then the 1001; nothing reported', async () => {
    await start({ readHighWaterMark: 2000 });
    const { conn } = await resetWhileBehind(clientBytes(40, true), h2.NGHTTP2_CANCEL);
    expect(await readAll(conn, 'recv')).toEqual([expected(40), 'resolved']);
    expect([conn.closeStatus, conn.error, errors]).toEqual([1001, undefined, []]);
  });
});

describe('client side: the server resets the stream while our client connection is paused', () => {
  test.each([
    ['NO_ERROR', h2.NGHTTP2_NO_ERROR],
    ['CANCEL', h2.NGHTTP2_CANCEL],
  ])('RST_STREAM(%s) after 40 messages and 1001, a send() meanwhile: every message, then the 1001', async (_name, code) => {
    const h2server = createSecureServer({ ...TLS, settings: { enableConnectProtocol: true } });
    const streams: ServerHttp2Stream[] = [];
    h2server.on('stream', (s) => {
      s.on('error', () => undefined);
      s.respond({ ':status': 200 });
      streams.push(s);
    });
    await new Promise<void>((r) => h2server.listen(0, '127.0.0.1', r));
    const errors: string[] = [];
    const conn = await connect(`wss://127.0.0.1:${(h2server.address() as AddressInfo).port}/`, { http2: true, tls: CLIENT_TLS, perMessageDeflate: false, closeTimeout: 30_000 });
    try {
      conn.on('error', (e: NodeJS.ErrnoException) => errors.push(e.code ?? e.message));
      conn.pause();
      await until(() => streams.length === 1, 'the server stream');
      const bytes = Buffer.concat([...expected(40).map((payload) => frame({ opcode: 1, payload })), frame({ opcode: 8, payload: GOING_AWAY })]);
      streams[0]!.write(bytes);
      const stream = conn.transport.stream;
      await until(() => stream.readableLength === bytes.length, 'everything sent to wait unread at the client');
      streams[0]!.close(code);
      await until(() => (stream as ClientHttp2Stream).closed, "the server's RST_STREAM");
      const sent = outcome(conn.send('late'));
      expect(await readAll(conn, 'listener')).toEqual([expected(40), 'resolved']);
      expect(await sent).toBe('ConnectionClosedError');
      expect([conn.closeStatus, conn.error, errors]).toEqual([1001, undefined, []]);
    } finally {
      if (!conn.closed) conn.terminate();
      h2server.close();
      for (const s of streams) s.session?.destroy();
    }
  });
});
