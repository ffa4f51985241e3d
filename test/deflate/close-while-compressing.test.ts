/**
 * The peer's close frame arriving while replies are still being compressed (permessage-deflate,
 * a large message goes to the thread pool). Sends accepted before the close was received go out,
 * in order, compressed ones when their compression ends, and only then our close reply (RFC 6455
 * §5.5.1: the peer reads on until our close arrives); sends made after it reject.
 *
 * Before, the close was answered at once and the queued replies were dropped ("the connection is
 * closing"): a client that sent one large message and closed right after never got its echo,
 * with our client, `ws` and Python `websockets` alike (with perMessageDeflate off it did).
 */
import { spawn } from 'node:child_process';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import WebSocket, { WebSocketServer as WsServer } from 'ws';
import { ConnectionClosedError, connect, EOF, serve, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { zlibLimiter } from '../../packages/rfc6455/src/extensions/zlib-limiter.js';
import { closePayload, frame } from '../../packages/rfc6455/test/helpers/frames.js';
import { RawClient } from '../../packages/rfc6455/test/helpers/raw-client.js';
import { CLIENT_TLS, TLS } from '../http2/helpers.js';
import { until } from './helpers.js';

/** Over the default syncLimit: compressed in the thread pool. */
const BIG = 3_000_000;

interface ServerSide {
  /** What each send() settled as, in call order: 'sent', or the error's name. */
  outcomes: string[];
  /** The outcome of a send made once the peer's close was received (recv() gave EOF). */
  late: Promise<string>;
  conn: WebSocketConnection;
}

let server: WebSocketServer;
let h2: WebSocketServer;
const sides: Array<(side: ServerSide) => void> = [];
/** Replies to each message: what the listener sends (in this order) for a message of n bytes. */
let replies: (n: number) => string[] = (n) => ['x'.repeat(n)];

beforeAll(async () => {
  const handler = (conn: WebSocketConnection): void => {
    conn.on('error', () => undefined);
    const outcomes: string[] = [];
    const settle = (p: Promise<void>, i: number): void => {
      p.then(
        () => (outcomes[i] = 'sent'),
        (e: Error) => (outcomes[i] = e.name),
      );
    };
    conn.on('message', (m) => {
      for (const reply of replies(m.length)) settle(conn.send(reply), outcomes.push('pending') - 1);
    });
    // recv() gives EOF as the close frame is received (a listener takes the messages).
    const late = conn.recv().then((eof) => {
      expect(eof).toBe(EOF);
      return conn.send('late').then(
        () => 'sent',
        (e: Error) => e.name,
      );
    });
    sides.shift()?.({ outcomes, late, conn });
  };
  server = await serve({ port: 0, host: '127.0.0.1' }, handler);
  h2 = await serve({ port: 0, host: '127.0.0.1', http2: true, tls: TLS }, handler);
});
afterAll(() => Promise.all([server.close(), h2.close()]));
afterEach(() => {
  replies = (n) => ['x'.repeat(n)];
});

function serverSide(): Promise<ServerSide> {
  return new Promise((resolve) => sides.push(resolve));
}

test('our client: the echo of a message sent right before close(1000) arrives, then a clean close', async () => {
  const side = serverSide();
  const client = await connect(server.url);
  const got: number[] = [];
  client.on('message', (m) => got.push(m.length));
  await client.send('x'.repeat(BIG));
  await client.close(1000, 'done');
  const { outcomes, late, conn } = await side;
  expect(got).toEqual([BIG]);
  expect(client.closeStatus).toBe(1000);
  expect(client.closeReason).toBe('done');
  await conn.whenClosed;
  expect(conn.closeStatus).toBe(1000);
  expect(outcomes).toEqual(['sent']);
  expect(await late).toBe(ConnectionClosedError.name);
});

test('our client: several replies (compressed and not) come in order before the close', async () => {
  replies = (n) => ['a'.repeat(n), 'b', 'c'.repeat(n + 1), 'd'.repeat(2000), 'e'];
  const side = serverSide();
  const client = await connect(server.url);
  const got: string[] = [];
  client.on('message', (m) => got.push(`${(m as string)[0]}${m.length}`));
  await client.send('x'.repeat(BIG));
  await client.close(1000);
  expect(got).toEqual([`a${BIG}`, 'b1', `c${BIG + 1}`, 'd2000', 'e1']);
  expect(client.closeStatus).toBe(1000);
  const { outcomes } = await side;
  expect(outcomes).toEqual(['sent', 'sent', 'sent', 'sent', 'sent']);
});

test('our client over HTTP/2 (RFC 8441): the echo arrives, then a clean close (END_STREAM after our close reply)', async () => {
  const side = serverSide();
  const client = await connect(h2.url, { http2: true, tls: CLIENT_TLS });
  const got: number[] = [];
  client.on('message', (m) => got.push(m.length));
  await client.send('x'.repeat(BIG));
  await client.close(1000, 'done');
  expect(got).toEqual([BIG]);
  expect(client.closeStatus).toBe(1000);
  const { outcomes, late, conn } = await side;
  await conn.whenClosed;
  expect(conn.closeStatus).toBe(1000);
  expect(outcomes).toEqual(['sent']);
  expect(await late).toBe(ConnectionClosedError.name);
});

test('ws client: the echo arrives before the close reply', async () => {
  const side = serverSide();
  const ws = new WebSocket(server.url);
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const got: number[] = [];
  ws.on('message', (m: Buffer) => got.push(m.length));
  ws.send('x'.repeat(BIG));
  ws.close(1000, 'done');
  const [code, reason] = await new Promise<[number, string]>((resolve) => ws.once('close', (c: number, r: Buffer) => resolve([c, r.toString()])));
  expect(got).toEqual([BIG]);
  expect([code, reason]).toEqual([1000, 'done']);
  const { outcomes, late } = await side;
  expect(outcomes).toEqual(['sent']);
  expect(await late).toBe(ConnectionClosedError.name);
});

test('python websockets client: the echo arrives before the close reply', async () => {
  const side = serverSide();
  const child = spawn('/usr/bin/python3', [join(__dirname, '../interop/py/close-after-send.py'), server.url, 'deflate', String(BIG)]);
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const status = await new Promise<number | null>((resolve) => child.once('close', resolve));
  expect(err).toBe('');
  expect(status).toBe(0);
  expect(JSON.parse(out)).toEqual({ received: [BIG], code: 1000, reason: 'done' });
  const { outcomes } = await side;
  expect(outcomes).toEqual(['sent']);
});

/** The text 'go', then a close frame (1000 'done'), masked, in one write: the close is parsed right after the listener ran. */
function goThenClose(): Buffer {
  return Buffer.concat([frame({ opcode: 1, payload: 'go', mask: true }), frame({ opcode: 8, payload: closePayload(1000, 'done'), mask: true })]);
}

describe('a raw peer (permessage-deflate) closing while our sends wait for a zlib slot', () => {
  let raw: WebSocketServer;
  let onConn: (conn: WebSocketConnection) => void = () => undefined;
  beforeAll(async () => {
    raw = await serve({ port: 0, host: '127.0.0.1', closeTimeout: 100 }, (conn) => {
      conn.on('error', () => undefined);
      onConn(conn);
    });
  });
  afterAll(() => raw.close());
  const deflate = { headers: ['Sec-WebSocket-Extensions: permessage-deflate'] };

  test('a sendStream() in progress is cut: what it handed over goes out, then the close reply; it and the sends behind it reject', async () => {
    const releases: Array<() => void> = [];
    let result: Promise<string[]> = Promise.resolve([]);
    let conn: WebSocketConnection | undefined;
    onConn = (c) => {
      conn = c;
      c.on('message', () => {
        // The zlib slots are held until the peer's close is in: the reply and the stream's first
        // fragment are then still waiting for compression.
        while (zlibLimiter.active < zlibLimiter.limit) zlibLimiter.acquire(() => releases.push(() => zlibLimiter.release()));
        const settle = (p: Promise<unknown>): Promise<string> => p.then(() => 'sent', (e: Error) => e.name);
        const first = settle(c.send('x'.repeat(BIG)));
        async function* source(): AsyncGenerator<Buffer> {
          yield Buffer.alloc(200_000, 1);
          await new Promise(() => undefined); // a live feed: never ends by itself
        }
        const stream = settle(c.sendStream(source()));
        const after = settle(c.send('after'));
        result = Promise.all([first, stream, after]);
      });
    };
    try {
      const client = await RawClient.connect(raw.port, deflate);
      client.send({ opcode: 1, payload: 'go' });
      // The reply and the stream's first fragment (64 KiB) wait for compression, the send behind the stream for it.
      await until(() => conn !== undefined && conn.bufferedAmount === BIG + 65536 + 'after'.length, 5000, 'the first fragment queued');
      const eof = conn!.recv(); // EOF once the close frame is received
      client.send({ opcode: 8, payload: closePayload(1000, 'done') });
      expect(await eof).toBe(EOF);
      for (const release of releases.splice(0)) release();
      const close = await client.readClose();
      expect(close).toBeDefined();
      // The reply, then the fragment the stream handed over before the close arrived: a message
      // left unfinished (a close frame may come between fragments, RFC 6455 §5.4).
      expect(close!.frames.map((f) => [f.opcode, f.fin, f.rsv])).toEqual([
        [1, true, 4],
        [2, false, 4],
        [8, true, 0],
      ]);
      expect([close!.code, close!.reason.toString()]).toEqual([1000, 'done']);
      expect(await client.readFrame()).toBeUndefined();
      expect(client.serverEndedFirst).toBe(true);
      expect(await result).toEqual(['sent', ConnectionClosedError.name, ConnectionClosedError.name]);
    } finally {
      for (const release of releases) release();
    }
  });

  test('a compression that never ends does not hold the close reply past closeTimeout (aborted, no zlib slot kept)', async () => {
    const releases: Array<() => void> = [];
    let reply: Promise<string> = Promise.resolve('');
    let conn: WebSocketConnection | undefined;
    onConn = (c) => {
      conn = c;
      c.on('message', () => {
        // Every zlib slot of the process is taken: the reply's compression never starts.
        while (zlibLimiter.active < zlibLimiter.limit) zlibLimiter.acquire(() => releases.push(() => zlibLimiter.release()));
        reply = c.send('x'.repeat(BIG)).then(() => 'sent', (e: Error) => e.name);
      });
    };
    try {
      const client = await RawClient.connect(raw.port, deflate);
      client.write(goThenClose());
      expect(await client.readClose()).toBeUndefined(); // aborted: no close frame
      await conn!.whenClosed;
      expect(conn!.closeStatus).toBe(1000); // the code of the close frame received
      expect(await reply).toBe(ConnectionClosedError.name);
    } finally {
      for (const release of releases) release();
    }
    expect(zlibLimiter.active).toBe(0);
    expect(zlibLimiter.pending).toBe(0);
  });
});

test('our client replying from a message listener to a ws server that closes right after its message', async () => {
  const wss = new WsServer({ port: 0, host: '127.0.0.1', perMessageDeflate: true });
  await new Promise((resolve) => wss.once('listening', resolve));
  const got: number[] = [];
  const serverClosed = new Promise<[number, string]>((resolve) => {
    wss.on('connection', (ws) => {
      ws.on('message', (m: Buffer) => got.push(m.length));
      ws.on('close', (code: number, reason: Buffer) => resolve([code, reason.toString()]));
      ws.send('y'.repeat(BIG));
      ws.close(1000, 'bye');
    });
  });
  try {
    const client = await connect(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
    const replies: Array<Promise<string>> = [];
    client.on('message', (m) => replies.push(client.send(m).then(() => 'sent', (e: Error) => e.name)));
    expect(await serverClosed).toEqual([1000, 'bye']);
    expect(got).toEqual([BIG]);
    await client.whenClosed;
    expect(client.closeStatus).toBe(1000);
    expect(await Promise.all(replies)).toEqual(['sent']);
  } finally {
    await new Promise((resolve) => wss.close(resolve));
  }
});

/**
 * closeTimeout against a close frame that waited behind compression, on a fake clock (only
 * setTimeout is faked: sockets, setImmediate and the event loop are real). The peer gets a whole
 * closeTimeout from when our close frame is written, and from when the last byte of what waited
 * before it left, to answer; a peer that does not answer is still aborted. (Before, the timer ran
 * from the close frame received, and a reply written just before it came due was aborted at once,
 * its peer cut off, 1006, however promptly it answered.)
 */
describe('closeTimeout and a close reply that waited for compression (fake clock)', () => {
  const C = 1000;
  let slow: WebSocketServer;
  let onConn: (conn: WebSocketConnection) => void = () => undefined;
  const releases: Array<() => void> = [];
  beforeAll(async () => {
    slow = await serve({ port: 0, host: '127.0.0.1', closeTimeout: C }, (conn) => {
      conn.on('error', () => undefined);
      onConn(conn);
    });
  });
  afterAll(() => slow.close());
  afterEach(() => {
    jest.useRealTimers();
    for (const release of releases.splice(0)) release();
  });

  /** A connection whose reply to 'go' waits for a zlib slot until `releases` run; its peer has sent 'go' and a close frame. */
  async function closedWhileCompressing(): Promise<{ conn: WebSocketConnection; client: RawClient; socket: Socket }> {
    let conn!: WebSocketConnection;
    const accepted = new Promise<void>((resolve) => {
      onConn = (c) => {
        conn = c;
        c.on('message', () => {
          while (zlibLimiter.active < zlibLimiter.limit) zlibLimiter.acquire(() => releases.push(() => zlibLimiter.release()));
          c.send('x'.repeat(BIG)).catch(() => undefined);
        });
        resolve();
      };
    });
    const client = await RawClient.connect(slow.port, { headers: ['Sec-WebSocket-Extensions: permessage-deflate'] });
    await accepted;
    jest.useFakeTimers({ doNotFake: ['Date', 'hrtime', 'nextTick', 'performance', 'queueMicrotask', 'setImmediate', 'clearImmediate', 'setInterval', 'clearInterval'] });
    client.write(goThenClose());
    expect(await conn.recv()).toBe(EOF); // the close frame is in; its reply waits
    return { conn, client, socket: conn.transport.stream as Socket };
  }

  /** Moves the fake clock, then lets the timers' setImmediate run. */
  async function advance(ms: number): Promise<void> {
    jest.advanceTimersByTime(ms);
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
  }

  test('a reply written within the first closeTimeout gets a whole closeTimeout from then', async () => {
    const { conn, client, socket } = await closedWhileCompressing();
    await advance(C / 2);
    for (const release of releases.splice(0)) release();
    const close = await client.readClose();
    expect(close?.code).toBe(1000);
    await advance(C / 2); // a closeTimeout since the close frame was received
    expect(socket.destroyed).toBe(false);
    await advance(C); // a closeTimeout since the reply was written, and no answer
    expect(socket.destroyed).toBe(true);
    jest.useRealTimers();
    await conn.whenClosed;
  });

  test('a reply written late in a later closeTimeout gets another one; a peer that answers then closes cleanly', async () => {
    const { conn, client, socket } = await closedWhileCompressing();
    await advance(C); // the timer runs out with the reply still waiting: started again
    expect(socket.destroyed).toBe(false);
    await advance(C - 10);
    for (const release of releases.splice(0)) release();
    const close = await client.readClose();
    expect(close?.code).toBe(1000);
    await advance(10); // two closeTimeouts since the close frame was received, 10 ms since the reply
    expect(socket.destroyed).toBe(false);
    jest.useRealTimers();
    client.end(); // the peer answers: TCP closes cleanly
    await conn.whenClosed;
    await client.closed;
    expect(client.serverEndedFirst).toBe(true);
  });
});
