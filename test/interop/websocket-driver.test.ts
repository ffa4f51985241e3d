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
import { UTF8_REASON, bytesOf, closedStatus, echoServerForBlock, Inbox, type EchoServer } from './peer-helpers.js';
import { echoSizeTests, ourClientConnector, ourClientSizeTests, ourClientTests, overOurMaxMessageSize, peerClientTests, recv } from './peer-suite.js';
import type { PeerClient, PeerClose, PeerEnd, PeerMessage, PeerServer } from './peer-suite.js';

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

/** websocket-driver echoes the code and the reason of a close frame it receives. */
function closeReply(code: number, reason: string): PeerClose {
  return { code, reason };
}

/** A driver, as the shared tests see it (peer-suite.ts), and the driver itself. */
interface Peer extends PeerEnd {
  driver: Driver;
}

function track(driver: Driver): Peer {
  const messages = new Inbox<PeerMessage>();
  const pings = new Inbox<string>();
  const pongs = new Inbox<string>();
  driver.on('message', (e) => messages.push(e.data));
  driver.on('ping', (e) => pings.push(e.data));
  driver.on('pong', (e) => pongs.push(e.data));
  driver.on('error', () => undefined);
  const closed = new Promise<PeerClose>((resolve) => driver.on('close', (e) => resolve({ code: e.code, reason: e.reason })));
  return {
    driver,
    messages,
    closed,
    sendText: (text) => driver.text(text),
    sendBinary: (bytes) => driver.binary(bytes),
    nextPing: () => pings.next(),
    // Both must come: its callback, called on the matching pong, and its pong event.
    ping: async (payload) => {
      await new Promise<void>((resolve) => driver.ping(payload, resolve));
      return pongs.next();
    },
    close: (code, reason) => driver.close(reason, code),
    protocol: () => driver.protocol,
  };
}

describe('websocket-driver client → our server', () => {
  const echo = echoServerForBlock({ protocols: ['chat.v2', 'chat.v1'] });
  const sockets = new Set<Socket>();
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
  async function open(target: EchoServer, options: DriverOptions = {}): Promise<Peer & PeerClient & { tcpEnded: Promise<unknown> }> {
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
    const peer = await open(echo());
    expect(peer.driver.version).toBe('hybi-13');
    expect(peer.driver.statusCode).toBe(101);
    expect(peer.side.conn.headers['sec-websocket-extensions']).toBeUndefined();
    expect(peer.driver.headers?.['sec-websocket-extensions']).toBeUndefined();
    expect(peer.side.conn.extensions).toBe('');
  });

  echoSizeTests(() => open(echo()));

  peerClientTests({ name: 'websocket-driver', open: (protocols) => open(echo(), { protocols }), closeReply });

  test('websocket-driver closes with a code and a UTF-8 reason: both ends record them', async () => {
    const peer = await open(echo());
    peer.driver.close(UTF8_REASON, 4001);
    // The driver reports the close frame we answered with: our echo of its code and reason.
    expect(await peer.closed).toEqual({ code: 4001, reason: UTF8_REASON });
    expect(await closedStatus(peer.side.conn)).toEqual({ code: 4001, reason: UTF8_REASON });
    await peer.tcpEnded; // and our server closed the TCP connection (RFC 6455 §7.1.1)
  });

  test('a message over our maxMessageSize: we close with 1009, websocket-driver reports 1009', async () => {
    await overOurMaxMessageSize((limited) => open(limited));
  });

  test('a message over websocket-driver’s maxLength: it fails with 1009 and our side records 1009', async () => {
    const peer = await open(echo(), { maxLength: 1000 });
    await peer.side.conn.send(Buffer.alloc(1000, 1));
    expect(await peer.messages.next()).toEqual(Buffer.alloc(1000, 1));
    void peer.side.conn.send(Buffer.alloc(1001, 2));
    expect((await peer.closed).code).toBe(1009);
    expect((await closedStatus(peer.side.conn)).code).toBe(1009);
  });
});

/** websocket-driver's server driver behind a Node http server's `upgrade` event, echoing. */
async function driverServer(options: DriverOptions = {}): Promise<PeerServer<Peer>> {
  const http: HttpServer = createServer();
  const sockets = new Set<Duplex>();
  const accepted = new Inbox<Peer>();
  http.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (!websocketDriver.isWebSocket(request)) return socket.destroy();
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const driver = websocketDriver.http(request, options);
    const peer = track(driver);
    driver.on('message', (e) => {
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
  let fixture: PeerServer<Peer>;
  beforeAll(async () => {
    fixture = await driverServer({ protocols: ['chat.v1'] });
  });
  afterAll(() => fixture.close());
  const open = ourClientConnector();

  test('RFC 6455 (hybi-13); our permessage-deflate offer is declined by omission', async () => {
    const { conn, peer } = await open(fixture);
    expect(peer.driver.version).toBe('hybi-13');
    expect(conn.extensions).toBe('');
    expect(conn.headers['sec-websocket-extensions']).toBeUndefined();
  });

  ourClientSizeTests(() => open(fixture));

  ourClientTests({ name: 'websocket-driver', open: (options) => open(fixture, options), closeReply });

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
});
