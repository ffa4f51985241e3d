/**
 * Interop both ways with websocket-driver (faye's sans-I/O driver, 0.8.x) in RFC 6455 mode
 * ("hybi-13"): its client driver over a raw `net` socket against our serve(), and our connect()
 * against its server driver attached to a Node `http` server's `upgrade` event. Real sockets.
 *
 * websocket-driver negotiates no extension unless one is added with `addExtension` (none is
 * installed here), never fragments what it sends (lib/websocket/driver/hybi.js `frame()` sets
 * `final`), reassembles what it receives, echoes the code and reason of a close frame it receives,
 * and reports pings and pongs as events (`ping(message, callback)` calls back on the matching pong).
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect, EOF, type ConnectOptions, type Message, type WebSocketConnection } from 'rfc6455';
import { SIZES, UTF8_REASON, bytesOf, closedStatus, echoServer, Inbox, textOfBytes, type Accepted, type EchoServer } from './peer-helpers.js';

/** The part of websocket-driver's API used here (it ships no types). */
interface Driver {
  readonly io: Duplex;
  readonly version: string;
  readonly protocol?: string | null;
  readonly headers?: Record<string, string>;
  readonly statusCode?: number;
  on(event: 'open', listener: () => void): unknown;
  on(event: 'message', listener: (event: { data: string | Buffer }) => void): unknown;
  on(event: 'close', listener: (event: { code: number; reason: string }) => void): unknown;
  on(event: 'ping' | 'pong', listener: (event: { data: string }) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  start(): boolean;
  text(message: string): boolean;
  binary(message: Buffer): boolean;
  ping(message?: string, callback?: () => void): boolean;
  close(reason?: string, code?: number): boolean;
}
interface DriverOptions {
  maxLength?: number;
  protocols?: string[];
}
interface DriverModule {
  client(url: string, options?: DriverOptions): Driver;
  http(request: IncomingMessage, options?: DriverOptions): Driver;
  isWebSocket(request: IncomingMessage): boolean;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const websocketDriver = require('websocket-driver') as DriverModule;

interface Closed {
  code: number;
  reason: string;
}
/** A driver and what it reported. */
interface Peer {
  driver: Driver;
  messages: Inbox<string | Buffer>;
  pings: Inbox<string>;
  pongs: Inbox<string>;
  closed: Promise<Closed>;
}

function track(driver: Driver): Peer {
  const messages = new Inbox<string | Buffer>();
  const pings = new Inbox<string>();
  const pongs = new Inbox<string>();
  driver.on('message', (e) => messages.push(e.data));
  driver.on('ping', (e) => pings.push(e.data));
  driver.on('pong', (e) => pongs.push(e.data));
  driver.on('error', () => undefined);
  const closed = new Promise<Closed>((resolve) => driver.on('close', (e) => resolve({ code: e.code, reason: e.reason })));
  return { driver, messages, pings, pongs, closed };
}

function asText(m: string | Buffer): string {
  if (typeof m !== 'string') throw new Error('expected text, got binary');
  return m;
}
function asBinary(m: string | Buffer): Buffer {
  if (typeof m === 'string') throw new Error('expected binary, got text');
  return m;
}

describe('websocket-driver client → our server', () => {
  let echo: EchoServer;
  const sockets = new Set<Socket>();
  beforeAll(async () => {
    echo = await echoServer({ protocols: ['chat.v2', 'chat.v1'] });
  });
  afterAll(() => echo.close());
  afterEach(async () => {
    await Promise.all(
      [...sockets].map(async (s) => {
        if (!s.destroyed) s.destroy();
        if (!s.closed) await once(s, 'close');
      }),
    );
    sockets.clear();
  });

  /** Opens a websocket-driver client over a raw TCP socket to `target`. */
  async function open(target: EchoServer, options: DriverOptions = {}): Promise<Peer & { side: Accepted; tcpEnded: Promise<unknown> }> {
    const driver = websocketDriver.client(target.server.url, options);
    const tcp = netConnect(target.server.port, '127.0.0.1');
    sockets.add(tcp);
    tcp.on('error', () => undefined);
    // Only the server ends the TCP connection here: the client driver never does.
    const tcpEnded = once(tcp, 'end');
    tcp.pipe(driver.io).pipe(tcp);
    tcp.on('connect', () => driver.start());
    const peer = track(driver);
    await new Promise<void>((resolve) => driver.on('open', resolve));
    return { ...peer, side: await target.accepted.next(), tcpEnded };
  }

  test('RFC 6455 (hybi-13) and no extension: websocket-driver offers none', async () => {
    const peer = await open(echo);
    expect(peer.driver.version).toBe('hybi-13');
    expect(peer.driver.statusCode).toBe(101);
    expect(peer.side.conn.headers['sec-websocket-extensions']).toBeUndefined();
    expect(peer.driver.headers?.['sec-websocket-extensions']).toBeUndefined();
    expect(peer.side.conn.extensions).toBe('');
  });

  test.each([...SIZES])('text (1- to 4-byte UTF-8) and binary of %i bytes arrive intact and echo back', async (size) => {
    const peer = await open(echo);
    const text = textOfBytes(size);
    const bytes = bytesOf(size, size);
    peer.driver.text(text);
    peer.driver.binary(bytes);
    const [t, b] = await peer.messages.take(2);
    expect(asText(t!) === text).toBe(true);
    expect(asBinary(b!).equals(bytes)).toBe(true);
    const [gotText, gotBytes] = peer.side.received;
    expect(gotText!.binary).toBe(false);
    expect(gotText!.data === text).toBe(true);
    expect(gotBytes!.binary).toBe(true);
    expect((gotBytes!.data as Buffer).equals(bytes)).toBe(true);
  });

  test('1000 pipelined messages each way arrive in order', async () => {
    const peer = await open(echo);
    for (let i = 0; i < 1000; i++) {
      if (i % 3 === 0) peer.driver.binary(bytesOf(i % 70, i));
      else peer.driver.text(`message ${i} ✓`);
    }
    const echoed = await peer.messages.take(1000);
    echoed.forEach((m, i) => {
      if (i % 3 === 0) expect(asBinary(m).equals(bytesOf(i % 70, i))).toBe(true);
      else expect(m).toBe(`message ${i} ✓`);
    });
    for (let i = 0; i < 1000; i++) void peer.side.conn.send(`from us ${i} 😀`);
    expect(await peer.messages.take(1000)).toEqual(Array.from({ length: 1000 }, (_, i) => `from us ${i} 😀`));
  });

  test('a message we fragment (sendStream) is reassembled by websocket-driver', async () => {
    const peer = await open(echo);
    const text = textOfBytes(20_003);
    await peer.side.conn.sendStream([text], { binary: false, fragmentSize: 7 }); // splits characters
    expect(asText(await peer.messages.next()) === text).toBe(true);
    const bytes = bytesOf(3 * 1024 * 1024, 2);
    await peer.side.conn.sendStream([bytes.subarray(0, 999), bytes.subarray(999)], { fragmentSize: 65536 });
    expect(asBinary(await peer.messages.next()).equals(bytes)).toBe(true);
  });

  test('websocket-driver pings with a payload: our side sees it, its callback and pong event fire', async () => {
    const peer = await open(echo);
    const seen = once(peer.side.conn, 'ping') as Promise<[Buffer]>;
    const answered = new Promise<void>((resolve) => peer.driver.ping('driver ping ✓', resolve));
    expect((await seen)[0].toString()).toBe('driver ping ✓');
    await answered;
    expect(await peer.pongs.next()).toBe('driver ping ✓');
  });

  test('we ping with a payload: websocket-driver sees it, and our ping() resolves on its pong', async () => {
    const peer = await open(echo);
    expect(typeof (await peer.side.conn.ping('rfc6455 ping 😀'))).toBe('number');
    expect(await peer.pings.next()).toBe('rfc6455 ping 😀');
  });

  test('websocket-driver closes with a code and a UTF-8 reason: both ends record them', async () => {
    const peer = await open(echo);
    peer.driver.close(UTF8_REASON, 4001);
    // The driver reports the close frame we answered with: our echo of its code and reason.
    expect(await peer.closed).toEqual({ code: 4001, reason: UTF8_REASON });
    expect(await closedStatus(peer.side.conn)).toEqual({ code: 4001, reason: UTF8_REASON });
    await peer.tcpEnded; // and our server closed the TCP connection (RFC 6455 §7.1.1)
  });

  test('we close with a code and a UTF-8 reason: websocket-driver reports them and echoes them', async () => {
    const peer = await open(echo);
    await peer.side.conn.close(4002, UTF8_REASON);
    expect(await peer.closed).toEqual({ code: 4002, reason: UTF8_REASON });
    expect(await closedStatus(peer.side.conn)).toEqual({ code: 4002, reason: UTF8_REASON });
  });

  test('a message over our maxMessageSize: we close with 1009, websocket-driver reports 1009', async () => {
    const limited = await echoServer({ maxMessageSize: 1000 });
    try {
      const peer = await open(limited);
      peer.driver.text('€'.repeat(333) + 'x'); // 1000 bytes: at the limit
      expect(await peer.messages.next()).toBe('€'.repeat(333) + 'x');
      peer.driver.binary(Buffer.alloc(1001));
      expect((await peer.closed).code).toBe(1009);
      expect((await closedStatus(peer.side.conn)).code).toBe(1009);
      expect(peer.side.received).toHaveLength(1);
    } finally {
      await limited.close();
    }
  });

  test('a message over websocket-driver’s maxLength: it fails with 1009 and our side records 1009', async () => {
    const peer = await open(echo, { maxLength: 1000 });
    await peer.side.conn.send(Buffer.alloc(1000, 1));
    expect(await peer.messages.next()).toEqual(Buffer.alloc(1000, 1));
    void peer.side.conn.send(Buffer.alloc(1001, 2));
    expect((await peer.closed).code).toBe(1009);
    expect((await closedStatus(peer.side.conn)).code).toBe(1009);
  });

  test('subprotocol: our server picks one websocket-driver offers; both sides agree', async () => {
    const peer = await open(echo, { protocols: ['other', 'chat.v1'] });
    expect(peer.driver.protocol).toBe('chat.v1');
    expect(peer.side.conn.protocol).toBe('chat.v1');
  });
});

/** websocket-driver's server driver behind a Node http server's `upgrade` event, echoing. */
interface DriverFixture {
  url: string;
  accepted: Inbox<Peer & { received: Array<string | Buffer> }>;
  close(): Promise<void>;
}

async function driverServer(options: DriverOptions = {}): Promise<DriverFixture> {
  const http: HttpServer = createServer();
  const sockets = new Set<Duplex>();
  const accepted = new Inbox<Peer & { received: Array<string | Buffer> }>();
  http.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (!websocketDriver.isWebSocket(request)) return socket.destroy();
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const driver = websocketDriver.http(request, options);
    const peer = { ...track(driver), received: [] as Array<string | Buffer> };
    driver.on('message', (e) => {
      peer.received.push(e.data);
      if (typeof e.data === 'string') driver.text(e.data);
      else driver.binary(e.data);
    });
    // The server closes the TCP connection once the closing handshake is done (RFC 6455 §7.1.1).
    driver.on('close', () => socket.end());
    driver.io.write(head);
    socket.pipe(driver.io).pipe(socket);
    driver.start();
    accepted.push(peer);
  });
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  return {
    url: `ws://127.0.0.1:${(http.address() as AddressInfo).port}/`,
    accepted,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => http.close(resolve));
    },
  };
}

describe('our client → websocket-driver server', () => {
  let fixture: DriverFixture;
  const conns = new Set<WebSocketConnection>();
  beforeAll(async () => {
    fixture = await driverServer({ protocols: ['chat.v1'] });
  });
  afterAll(() => fixture.close());
  afterEach(async () => {
    for (const c of conns) if (!c.closed) await c.close().catch(() => undefined);
    conns.clear();
  });

  async function open(target: DriverFixture, options: ConnectOptions = {}): Promise<{ conn: WebSocketConnection; peer: Peer & { received: Array<string | Buffer> } }> {
    const conn = await connect(target.url, options);
    conns.add(conn);
    return { conn, peer: await target.accepted.next() };
  }

  async function recv(conn: WebSocketConnection): Promise<Message> {
    const m = await conn.recv();
    if (m === EOF) throw new Error('connection closed');
    return m;
  }

  test('RFC 6455 (hybi-13); our permessage-deflate offer is declined by omission', async () => {
    const { conn, peer } = await open(fixture);
    expect(peer.driver.version).toBe('hybi-13');
    expect(conn.extensions).toBe('');
    expect(conn.headers['sec-websocket-extensions']).toBeUndefined();
  });

  test.each([...SIZES])('text (1- to 4-byte UTF-8) and binary of %i bytes arrive intact and echo back', async (size) => {
    const { conn, peer } = await open(fixture);
    const text = textOfBytes(size);
    const bytes = bytesOf(size, size);
    void conn.send(text);
    void conn.send(bytes);
    const echoedText = await recv(conn);
    expect(typeof echoedText === 'string' && echoedText === text).toBe(true);
    const echoedBytes = await recv(conn);
    expect(Buffer.isBuffer(echoedBytes) && echoedBytes.equals(bytes)).toBe(true);
    expect(asText(peer.received[0]!) === text).toBe(true);
    expect(asBinary(peer.received[1]!).equals(bytes)).toBe(true);
  });

  test('1000 pipelined messages each way arrive in order', async () => {
    const { conn, peer } = await open(fixture);
    for (let i = 0; i < 1000; i++) void conn.send(i % 5 === 0 ? bytesOf(i % 40, i) : `msg ${i} ✓`);
    for (let i = 0; i < 1000; i++) {
      const m = await recv(conn);
      if (i % 5 === 0) expect(Buffer.isBuffer(m) && m.equals(bytesOf(i % 40, i))).toBe(true);
      else expect(m).toBe(`msg ${i} ✓`);
    }
    for (let i = 0; i < 1000; i++) peer.driver.text(`from driver ${i} 😀`);
    const got: Message[] = [];
    for (let i = 0; i < 1000; i++) got.push(await recv(conn));
    expect(got).toEqual(Array.from({ length: 1000 }, (_, i) => `from driver ${i} 😀`));
  });

  test('a message we fragment (sendStream) is reassembled by websocket-driver', async () => {
    const { conn, peer } = await open(fixture);
    const text = textOfBytes(20_003);
    await conn.sendStream([text], { binary: false, fragmentSize: 5 });
    expect(await recv(conn)).toBe(text);
    expect(asText(peer.received[0]!) === text).toBe(true);
    const bytes = bytesOf(2 * 1024 * 1024 + 1, 4);
    await conn.sendStream([bytes]);
    expect(((await recv(conn)) as Buffer).equals(bytes)).toBe(true);
  });

  test('pings both ways with payloads: each side sees the ping, the pinging side its pong', async () => {
    const { conn, peer } = await open(fixture);
    expect(typeof (await conn.ping('from rfc6455 ✓'))).toBe('number');
    expect(await peer.pings.next()).toBe('from rfc6455 ✓');
    const seen = once(conn, 'ping') as Promise<[Buffer]>;
    const answered = new Promise<void>((resolve) => peer.driver.ping('from driver 😀', resolve));
    expect((await seen)[0].toString()).toBe('from driver 😀');
    await answered;
    expect(await peer.pongs.next()).toBe('from driver 😀');
  });

  test('we close with a code and a UTF-8 reason: both ends record them', async () => {
    const { conn, peer } = await open(fixture);
    await conn.close(4001, UTF8_REASON);
    expect(await peer.closed).toEqual({ code: 4001, reason: UTF8_REASON });
    // websocket-driver echoes the code and the reason.
    expect([conn.closeStatus, conn.closeReason]).toEqual([4001, UTF8_REASON]);
  });

  test('websocket-driver closes with a code and a UTF-8 reason: both ends record them', async () => {
    const { conn, peer } = await open(fixture);
    peer.driver.close(UTF8_REASON, 4002);
    expect(await conn.recv()).toBe(EOF);
    expect(await closedStatus(conn)).toEqual({ code: 4002, reason: UTF8_REASON });
    expect(await peer.closed).toEqual({ code: 4002, reason: UTF8_REASON });
  });

  test('a message over our maxMessageSize: we close with 1009, websocket-driver reports 1009', async () => {
    const { conn, peer } = await open(fixture, { maxMessageSize: 1000 });
    peer.driver.binary(Buffer.alloc(1000, 7));
    expect(await recv(conn)).toEqual(Buffer.alloc(1000, 7));
    peer.driver.text('x'.repeat(1001));
    expect((await peer.closed).code).toBe(1009);
    expect((await closedStatus(conn)).code).toBe(1009);
  });

  test('a message over websocket-driver’s maxLength: it fails with 1009 and we record 1009', async () => {
    const limited = await driverServer({ maxLength: 1000 });
    try {
      const { conn, peer } = await open(limited);
      // Fragmented by us: websocket-driver limits the message, not only each frame.
      await conn.sendStream([bytesOf(1000)], { fragmentSize: 100 });
      expect(await recv(conn)).toEqual(bytesOf(1000));
      await conn.sendStream([bytesOf(1001)], { fragmentSize: 100 });
      expect((await peer.closed).code).toBe(1009);
      expect((await closedStatus(conn)).code).toBe(1009);
    } finally {
      await limited.close();
    }
  });

  test('subprotocol: websocket-driver picks one we offer; both sides agree', async () => {
    const { conn, peer } = await open(fixture, { protocols: ['other', 'chat.v1'] });
    expect(conn.protocol).toBe('chat.v1');
    expect(peer.driver.protocol).toBe('chat.v1');
  });
});
