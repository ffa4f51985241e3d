/**
 * The end of an HTTP/2 WebSocket's stream where Node's HTTP/2 layer keeps it open: a stream whose
 * reading is paused when its peer ends or resets it (Node keeps such a stream, closed with its
 * unread input ended, undestroyed and without 'close' until it is read to its end, and
 * `stream.close()` on a stream already closed does nothing), and a stream whose peer ended its
 * side while our sends were backed up (our END_STREAM waits behind them). terminate(), the close
 * timer and server.close() must still close the connection.
 */
import { constants as h2, type ClientHttp2Session, type ClientHttp2Stream, type ServerHttp2Stream } from 'node:http2';
import { serve, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { clientFrame, closeSession, openSession, originOf, TLS } from './helpers.js';
import { until } from '../../packages/rfc6455/test/helpers/wait.js';

let server: WebSocketServer;
let session: ClientHttp2Session;
const conns: WebSocketConnection[] = [];
/** What the server's handler does with each connection (besides keeping it in `conns`). */
let onConnection: (conn: WebSocketConnection) => void;

beforeEach(async () => {
  conns.length = 0;
  // Nothing is read: what the peer sends waits in the stream.
  onConnection = (conn) => conn.pause();
  server = await serve({ host: '127.0.0.1', port: 0, http2: true, tls: TLS, perMessageDeflate: false, closeTimeout: 200 }, (conn) => {
    conn.on('error', () => undefined);
    onConnection(conn);
    conns.push(conn);
  });
  session = await openSession(originOf(server.url));
});

afterEach(async () => {
  for (const conn of conns) if (!conn.closed) (conn.transport.stream as ServerHttp2Stream).destroy();
  await closeSession(session);
  await server.close();
});

/** Opens a WebSocket stream with Node's client (reading what comes unless `reading` is false). */
async function open(reading = true): Promise<{ conn: WebSocketConnection; client: ClientHttp2Stream; stream: ServerHttp2Stream }> {
  const authority = new URL(server.url).host;
  const client = session.request(
    { ':method': 'CONNECT', ':protocol': 'websocket', ':scheme': 'https', ':path': '/', ':authority': authority, 'sec-websocket-version': '13' },
    { endStream: false },
  );
  client.on('error', () => undefined);
  if (reading) client.resume();
  else client.pause();
  await new Promise((resolve) => client.once('response', resolve));
  await until(() => conns.length === 1, 'the server connection');
  const conn = conns[0]!;
  return { conn, client, stream: conn.transport.stream as ServerHttp2Stream };
}

/** Opens a WebSocket stream, sends one message on it, and waits for it to wait unread at the server. */
async function pausedConnection(): Promise<{ conn: WebSocketConnection; client: ClientHttp2Stream; stream: ServerHttp2Stream }> {
  const { conn, client, stream } = await open();
  client.write(clientFrame(1, Buffer.from('unread')));
  await until(() => stream.readableLength > 0, 'the message to wait unread at the server');
  return { conn, client, stream };
}

/** Whether the server's stream holds its peer's end, unread. */
function inputEnded(stream: ServerHttp2Stream): boolean {
  return (stream as unknown as { _readableState: { ended: boolean } })._readableState.ended;
}

/** 'resolved' once `promise` resolves, or `late` if it has not within 3 s. */
async function within(promise: Promise<unknown>, late: string): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise.then(() => 'resolved'), new Promise<string>((r) => (timer = setTimeout(r, 3000, late)))]);
  } finally {
    clearTimeout(timer);
  }
}

describe('a paused HTTP/2 WebSocket whose peer ended or reset the stream', () => {
  test('terminate() after the peer ended its side (END_STREAM) closes the connection and the stream', async () => {
    const { conn, client, stream } = await pausedConnection();
    client.end();
    await until(() => inputEnded(stream), "the peer's END_STREAM");
    conn.terminate();
    expect(await within(conn.whenClosed, 'still open after 3 s')).toBe('resolved');
    expect(conn.closeStatus).toBe(1006);
    expect(stream.destroyed).toBe(true);
  });

  test('terminate() after the peer reset the stream with NO_ERROR closes the connection and the stream', async () => {
    const { conn, client, stream } = await pausedConnection();
    client.close(h2.NGHTTP2_NO_ERROR);
    await until(() => stream.closed, "the peer's RST_STREAM");
    conn.terminate();
    expect(await within(conn.whenClosed, 'still open after 3 s')).toBe('resolved');
    expect(conn.closeStatus).toBe(1006);
    expect(stream.destroyed).toBe(true);
  });

  test('after the peer reset the stream with NO_ERROR, server.close() resolves (the close timer aborts it)', async () => {
    const { conn, client, stream } = await pausedConnection();
    client.close(h2.NGHTTP2_NO_ERROR);
    await until(() => stream.closed, "the peer's RST_STREAM");
    const closing = server.close();
    expect(await within(closing, 'pending after 3 s')).toBe('resolved');
    expect(conn.closed).toBe(true);
    expect(stream.destroyed).toBe(true);
  });
});

describe('an HTTP/2 peer that ends its side while our sends are backed up', () => {
  test('the connection is aborted at closeTimeout (1006) when the peer takes nothing more, and server.close() resolves', async () => {
    onConnection = (conn) => {
      // More than the peer's flow-control window: the rest waits for a reader that never reads.
      conn.send(Buffer.alloc(1024 * 1024)).catch(() => undefined);
    };
    const { conn, client, stream } = await open(false);
    await until(() => stream.writableLength > 0, 'our send to back up');
    client.end();
    // The peer's END_STREAM: the connection ends its side, behind the send.
    await until(() => conn.readyState === 'closing', "the peer's END_STREAM");
    expect(await within(conn.whenClosed, 'still open after 3 s')).toBe('resolved');
    expect(conn.closeStatus).toBe(1006);
    expect(stream.destroyed).toBe(true);
    expect(await within(server.close(), 'pending after 3 s')).toBe('resolved');
  });
});

describe('close() after the peer reset a paused stream with NO_ERROR', () => {
  test('closes the connection without a write-after-end error (the stream can take no close frame)', async () => {
    const { conn, client, stream } = await pausedConnection();
    const errors: unknown[] = [];
    conn.on('error', (error) => void errors.push((error as { code?: string }).code ?? error));
    client.close(h2.NGHTTP2_NO_ERROR);
    await until(() => stream.closed, "the peer's RST_STREAM");
    expect(await within(conn.close(), 'still open after 3 s')).toBe('resolved');
    await new Promise((r) => setImmediate(r));
    expect(errors).toEqual([]);
    expect(conn.closeStatus).toBe(1006);
  });

  // In the same turn as the reset, before the connection has heard of it (Node ends our writable
  // side, then destroys nothing until the stream is read; our 'aborted' listener destroys it a
  // microtask later): the stream is ended under a connection that is still open. Here close() is
  // called from the stream's 'finish', which Node emits on its next tick.
  test("close() in the reset's own turn (from the stream's 'finish'): 1006 without a write-after-end error", async () => {
    const { conn, client, stream } = await pausedConnection();
    const errors: unknown[] = [];
    conn.on('error', (error) => void errors.push((error as { code?: string }).code ?? error));
    let closing: Promise<string> | undefined;
    let seen: unknown[] = [];
    stream.once('finish', () => {
      seen = [stream.writableEnded, stream.destroyed, conn.readyState];
      closing = conn.close(4000).then(() => 'resolved', (e: Error) => e.name);
    });
    client.close(h2.NGHTTP2_NO_ERROR);
    await until(() => closing !== undefined, "the stream's 'finish'");
    // The case: ended, not destroyed yet, and the connection open.
    expect(seen).toEqual([true, false, 'open']);
    expect(await within(closing!, 'still open after 3 s')).toBe('resolved');
    await new Promise((r) => setImmediate(r));
    expect(errors).toEqual([]);
    expect(conn.closeStatus).toBe(1006);
  });
});
