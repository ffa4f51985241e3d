/**
 * Interop both ways with WebSocket-Node (the `websocket` package, 1.0.x): its client against our
 * serve(), our connect() against its server (on a Node `http` server), over real sockets.
 *
 * WebSocket-Node has no extensions (lib/WebSocketClient.js and WebSocketRequest.js: "TODO:
 * Implement extensions"), so nothing is negotiated and our client's permessage-deflate offer is
 * ignored. It fragments what it sends above `fragmentationThreshold` (16 KiB by default) unless
 * `fragmentOutgoingMessages` is false, and with `assembleFragments: false` hands every frame to a
 * `frame` listener, which lets us look at the fragments we send. It answers every close frame with
 * 1000 and no reason, whatever code it received (WebSocketConnection.js, processFrame, case 0x08).
 */
import { once } from 'node:events';
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  client as WsNodeClient,
  server as WsNodeServer,
  type connection as WsNodeConnection,
  type frame as WsNodeFrame,
  type IClientConfig,
  type IConfig,
  type IServerConfig,
  type Message as WsNodeMessage,
} from 'websocket';
import { connect, EOF, type ConnectOptions, type Message, type WebSocketConnection } from 'rfc6455';
import { SIZES, UTF8_REASON, bytesOf, closedStatus, echoServer, Inbox, textOfBytes, type Accepted, type EchoServer } from './peer-helpers.js';

const BIG = 8 * 1024 * 1024;
/** WebSocket-Node refuses frames over 64 KiB (server) or 1 MiB (client) by default: raise both. */
const LIMITS = { maxReceivedFrameSize: BIG, maxReceivedMessageSize: BIG };

/** The fragmentation settings WebSocket-Node is run with, on its client and on its server. */
const FRAGMENTATION: Array<[string, IConfig]> = [
  ['unfragmented (fragmentOutgoingMessages false)', { fragmentOutgoingMessages: false }],
  ['fragmented at its default 16 KiB threshold', { fragmentOutgoingMessages: true }],
  ['fragmented at 1000 bytes', { fragmentOutgoingMessages: true, fragmentationThreshold: 1000 }],
];

interface Closed {
  code: number;
  description: string;
}

/** One WebSocket-Node connection and what it received. */
interface Peer {
  connection: WsNodeConnection;
  messages: Inbox<WsNodeMessage>;
  closed: Promise<Closed>;
}

function track(connection: WsNodeConnection): Peer {
  const messages = new Inbox<WsNodeMessage>();
  connection.on('message', messages.push);
  connection.on('error', () => undefined);
  const closed = new Promise<Closed>((resolve) => connection.once('close', (code, description) => resolve({ code, description })));
  return { connection, messages, closed };
}

function utf8(message: WsNodeMessage): string {
  if (message.type !== 'utf8') throw new Error(`expected text, got ${message.type}`);
  return message.utf8Data;
}
function binary(message: WsNodeMessage): Buffer {
  if (message.type !== 'binary') throw new Error(`expected binary, got ${message.type}`);
  return message.binaryData;
}

describe('WebSocket-Node client → our server', () => {
  let echo: EchoServer;
  const peers = new Set<Peer>();
  beforeAll(async () => {
    echo = await echoServer({ protocols: ['chat.v2', 'chat.v1'] });
  });
  afterAll(() => echo.close());
  afterEach(async () => {
    for (const p of peers) {
      if (p.connection.connected) p.connection.close();
      await p.closed;
    }
    peers.clear();
  });

  async function open(target: EchoServer, config: IClientConfig = {}, protocols?: string[]): Promise<Peer & { side: Accepted }> {
    const client = new WsNodeClient({ ...LIMITS, ...config });
    const connected = new Promise<WsNodeConnection>((resolve, reject) => {
      client.once('connect', resolve);
      client.once('connectFailed', reject);
    });
    client.connect(target.server.url, protocols);
    const peer = track(await connected);
    peers.add(peer);
    return { ...peer, side: await target.accepted.next() };
  }

  test('nothing is negotiated: WebSocket-Node offers no extension', async () => {
    const peer = await open(echo);
    expect(peer.side.conn.headers['sec-websocket-extensions']).toBeUndefined();
    expect(peer.side.conn.extensions).toBe('');
    expect(peer.connection.protocol).toBeUndefined();
  });

  describe.each(FRAGMENTATION)('WebSocket-Node %s', (_name, config) => {
    test.each([...SIZES])('text (1- to 4-byte UTF-8) and binary of %i bytes arrive intact and echo back', async (size) => {
      const peer = await open(echo, config);
      const text = textOfBytes(size);
      const bytes = bytesOf(size, size);
      peer.connection.sendUTF(text);
      peer.connection.sendBytes(bytes);
      const [t, b] = await peer.messages.take(2);
      expect(utf8(t!) === text).toBe(true);
      expect(binary(b!).equals(bytes)).toBe(true);
      const [gotText, gotBytes] = peer.side.received;
      expect(gotText!.binary).toBe(false);
      expect(gotText!.data === text).toBe(true);
      expect(gotBytes!.binary).toBe(true);
      expect((gotBytes!.data as Buffer).equals(bytes)).toBe(true);
    });
  });

  test('1000 pipelined messages each way arrive in order', async () => {
    const peer = await open(echo, { fragmentationThreshold: 8 });
    for (let i = 0; i < 1000; i++) {
      if (i % 4 === 0) peer.connection.sendBytes(bytesOf(i % 50, i));
      else peer.connection.sendUTF(`message ${i} ✓`); // fragmented above 8 bytes
    }
    const echoed = await peer.messages.take(1000);
    echoed.forEach((m, i) => {
      if (i % 4 === 0) expect(binary(m).equals(bytesOf(i % 50, i))).toBe(true);
      else expect(utf8(m)).toBe(`message ${i} ✓`);
    });
    for (let i = 0; i < 1000; i++) void peer.side.conn.send(`from us ${i} 😀`);
    expect((await peer.messages.take(1000)).map(utf8)).toEqual(Array.from({ length: 1000 }, (_, i) => `from us ${i} 😀`));
  });

  test('a message we fragment (sendStream) is reassembled by WebSocket-Node', async () => {
    const peer = await open(echo);
    const text = textOfBytes(20_003);
    await peer.side.conn.sendStream([text], { binary: false, fragmentSize: 7 }); // splits characters
    expect(utf8(await peer.messages.next()) === text).toBe(true);
    const bytes = bytesOf(3 * 1024 * 1024, 1);
    await peer.side.conn.sendStream([bytes.subarray(0, 12345), bytes.subarray(12345)]);
    expect(binary(await peer.messages.next()).equals(bytes)).toBe(true);
  });

  test('with assembleFragments false, WebSocket-Node sees our fragments frame by frame', async () => {
    const peer = await open(echo, { assembleFragments: false });
    const frames: WsNodeFrame[] = [];
    const done = new Promise<void>((resolve) =>
      peer.connection.on('frame', (f) => {
        frames.push(f);
        if (f.fin) resolve();
      }),
    );
    const text = 'héllo wörld ✓ 😀';
    await peer.side.conn.sendStream([text.slice(0, 3), text.slice(3)], { binary: false, fragmentSize: 4 });
    await done;
    const utf8Bytes = Buffer.from(text);
    expect(frames).toHaveLength(Math.ceil(utf8Bytes.length / 4));
    expect(frames.map((f) => f.opcode)).toEqual([1, ...Array<number>(frames.length - 1).fill(0)]);
    expect(frames.map((f) => f.fin)).toEqual([...Array<boolean>(frames.length - 1).fill(false), true]);
    expect(frames.every((f) => f.binaryPayload.length <= 4 && f.binaryPayload.length > 0)).toBe(true);
    expect(Buffer.concat(frames.map((f) => f.binaryPayload)).equals(utf8Bytes)).toBe(true);
  });

  test('WebSocket-Node pings with a payload: our side sees it, its pong event has the payload', async () => {
    const peer = await open(echo);
    const seen = once(peer.side.conn, 'ping') as Promise<[Buffer]>;
    const pong = once(peer.connection, 'pong') as Promise<[Buffer]>;
    peer.connection.ping(Buffer.from('ws-node ping ✓'));
    expect((await seen)[0].toString()).toBe('ws-node ping ✓');
    expect((await pong)[0].toString()).toBe('ws-node ping ✓');
  });

  test('we ping with a payload: WebSocket-Node sees it, and our ping() resolves on its pong', async () => {
    const peer = await open(echo);
    const seen = new Promise<Buffer>((resolve) => peer.connection.on('ping', (_cancel, data) => resolve(data)));
    expect(typeof (await peer.side.conn.ping('rfc6455 ping 😀'))).toBe('number');
    expect((await seen).toString()).toBe('rfc6455 ping 😀');
  });

  test('WebSocket-Node closes with a code and a UTF-8 reason: our side records them', async () => {
    const peer = await open(echo);
    peer.connection.close(4001, UTF8_REASON);
    expect(await closedStatus(peer.side.conn)).toEqual({ code: 4001, reason: UTF8_REASON });
    expect(await peer.closed).toEqual({ code: 4001, description: UTF8_REASON });
  });

  test('we close with a code and a UTF-8 reason: WebSocket-Node reports them', async () => {
    const peer = await open(echo);
    await peer.side.conn.close(4002, UTF8_REASON);
    expect(await peer.closed).toEqual({ code: 4002, description: UTF8_REASON });
    // WebSocket-Node answers every close with 1000 and no reason; we record the frame we received.
    expect(await closedStatus(peer.side.conn)).toEqual({ code: 1000, reason: '' });
  });

  test.each([
    ['in one frame', { fragmentOutgoingMessages: false }],
    ['in 100-byte fragments', { fragmentOutgoingMessages: true, fragmentationThreshold: 100 }],
  ] as Array<[string, IClientConfig]>)('a message over our maxMessageSize %s: we close with 1009, WebSocket-Node reports 1009', async (_name, config) => {
    const limited = await echoServer({ maxMessageSize: 1000 });
    try {
      const peer = await open(limited, config);
      peer.connection.sendUTF('é'.repeat(500)); // 1000 bytes: at the limit
      expect(utf8(await peer.messages.next())).toBe('é'.repeat(500));
      peer.connection.sendBytes(Buffer.alloc(1001));
      expect((await peer.closed).code).toBe(1009);
      expect((await closedStatus(peer.side.conn)).code).toBe(1009);
      expect(peer.side.received).toHaveLength(1);
    } finally {
      await limited.close();
    }
  });

  test('a message in more fragments than our maxFragments: we close with 1009, WebSocket-Node reports 1009', async () => {
    const limited = await echoServer({ maxFragments: 50 });
    try {
      const peer = await open(limited, { fragmentationThreshold: 10 });
      peer.connection.sendBytes(bytesOf(500)); // 50 fragments
      expect(binary(await peer.messages.next()).equals(bytesOf(500))).toBe(true);
      peer.connection.sendBytes(bytesOf(501)); // 51 fragments
      expect((await peer.closed).code).toBe(1009);
      expect((await closedStatus(peer.side.conn)).code).toBe(1009);
    } finally {
      await limited.close();
    }
  });

  test('a frame over WebSocket-Node’s maxReceivedFrameSize: it drops with 1009 and our side records 1009', async () => {
    const peer = await open(echo, { maxReceivedFrameSize: 1000 });
    await peer.side.conn.send(Buffer.alloc(1000, 1));
    expect(binary(await peer.messages.next())).toEqual(Buffer.alloc(1000, 1));
    void peer.side.conn.send(Buffer.alloc(1001, 2));
    expect((await peer.closed).code).toBe(1009);
    expect((await closedStatus(peer.side.conn)).code).toBe(1009);
  });

  test('subprotocol: our server picks one WebSocket-Node offers; both sides agree', async () => {
    const peer = await open(echo, {}, ['other', 'chat.v1']);
    expect(peer.connection.protocol).toBe('chat.v1');
    expect(peer.side.conn.protocol).toBe('chat.v1');
  });
});

/** A WebSocket-Node server on a Node http server: echoes, and hands each connection to the test. */
interface WsNodeFixture {
  url: string;
  accepted: Inbox<Peer & { received: WsNodeMessage[] }>;
  close(): Promise<void>;
}

async function wsNodeServer(config: Omit<IServerConfig, 'httpServer'> = {}, echoMessages = true): Promise<WsNodeFixture> {
  const http: HttpServer = createServer();
  const wsServer = new WsNodeServer({ httpServer: http, autoAcceptConnections: false, ...LIMITS, ...config });
  const accepted = new Inbox<Peer & { received: WsNodeMessage[] }>();
  wsServer.on('request', (request) => {
    const protocol = request.requestedProtocols.includes('chat.v1') ? 'chat.v1' : null;
    const connection = request.accept(protocol);
    const received: WsNodeMessage[] = [];
    const peer = { ...track(connection), received };
    connection.on('message', (m) => {
      received.push(m);
      if (!echoMessages) return;
      if (m.type === 'utf8') connection.sendUTF(m.utf8Data);
      else connection.sendBytes(m.binaryData);
    });
    accepted.push(peer);
  });
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  const url = `ws://127.0.0.1:${(http.address() as AddressInfo).port}/`;
  return {
    url,
    accepted,
    close: async () => {
      wsServer.shutDown();
      await new Promise((resolve) => http.close(resolve));
    },
  };
}

describe('our client → WebSocket-Node server', () => {
  const conns = new Set<WebSocketConnection>();
  afterEach(async () => {
    for (const c of conns) {
      if (!c.closed) await c.close().catch(() => undefined);
    }
    conns.clear();
  });

  async function open(fixture: WsNodeFixture, options: ConnectOptions = {}): Promise<{ conn: WebSocketConnection; peer: Peer & { received: WsNodeMessage[] } }> {
    const conn = await connect(fixture.url, options);
    conns.add(conn);
    return { conn, peer: await fixture.accepted.next() };
  }

  async function recv(conn: WebSocketConnection): Promise<Message> {
    const m = await conn.recv();
    if (m === EOF) throw new Error('connection closed');
    return m;
  }

  describe.each(FRAGMENTATION)('WebSocket-Node server %s', (_name, config) => {
    let fixture: WsNodeFixture;
    beforeAll(async () => {
      fixture = await wsNodeServer(config);
    });
    afterAll(() => fixture.close());

    test('our permessage-deflate offer is ignored: nothing negotiated', async () => {
      const { conn } = await open(fixture);
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
      expect(utf8(peer.received[0]!) === text).toBe(true);
      expect(binary(peer.received[1]!).equals(bytes)).toBe(true);
    });
  });

  describe('default WebSocket-Node server', () => {
    let fixture: WsNodeFixture;
    beforeAll(async () => {
      fixture = await wsNodeServer();
    });
    afterAll(() => fixture.close());

    test('1000 pipelined messages each way arrive in order', async () => {
      const { conn, peer } = await open(fixture);
      for (let i = 0; i < 1000; i++) void conn.send(i % 5 === 0 ? bytesOf(i % 40, i) : `msg ${i} ✓`);
      for (let i = 0; i < 1000; i++) {
        const m = await recv(conn);
        if (i % 5 === 0) expect(Buffer.isBuffer(m) && m.equals(bytesOf(i % 40, i))).toBe(true);
        else expect(m).toBe(`msg ${i} ✓`);
      }
      for (let i = 0; i < 1000; i++) peer.connection.sendUTF(`from ws-node ${i} 😀`);
      const got: Message[] = [];
      for (let i = 0; i < 1000; i++) got.push(await recv(conn));
      expect(got).toEqual(Array.from({ length: 1000 }, (_, i) => `from ws-node ${i} 😀`));
    });

    test('a message we fragment (sendStream) is reassembled by WebSocket-Node', async () => {
      const { conn, peer } = await open(fixture);
      const text = textOfBytes(20_003);
      await conn.sendStream([text], { binary: false, fragmentSize: 5 });
      expect(await recv(conn)).toBe(text);
      expect(utf8(peer.received[0]!) === text).toBe(true);
      const bytes = bytesOf(2 * 1024 * 1024 + 1, 4);
      await conn.sendStream([bytes]);
      expect((await recv(conn) as Buffer).equals(bytes)).toBe(true);
    });

    test('our ping resolves on its pong; its ping with a payload reaches us and its pong event fires', async () => {
      const { conn, peer } = await open(fixture);
      const seenByPeer = new Promise<Buffer>((resolve) => peer.connection.on('ping', (_cancel, data) => resolve(data)));
      expect(typeof (await conn.ping('from rfc6455 ✓'))).toBe('number');
      expect((await seenByPeer).toString()).toBe('from rfc6455 ✓');
      const seen = once(conn, 'ping') as Promise<[Buffer]>;
      const pong = once(peer.connection, 'pong') as Promise<[Buffer]>;
      peer.connection.ping(Buffer.from('from ws-node 😀'));
      expect((await seen)[0].toString()).toBe('from ws-node 😀');
      expect((await pong)[0].toString()).toBe('from ws-node 😀');
    });

    test('we close with a code and a UTF-8 reason: WebSocket-Node reports them', async () => {
      const { conn, peer } = await open(fixture);
      await conn.close(4001, UTF8_REASON);
      expect(await peer.closed).toEqual({ code: 4001, description: UTF8_REASON });
      // Its reply is always 1000 without a reason.
      expect([conn.closeStatus, conn.closeReason]).toEqual([1000, '']);
    });

    test('WebSocket-Node closes with a code and a UTF-8 reason: we record them', async () => {
      const { conn, peer } = await open(fixture);
      peer.connection.close(4002, UTF8_REASON);
      expect(await conn.recv()).toBe(EOF);
      expect(await closedStatus(conn)).toEqual({ code: 4002, reason: UTF8_REASON });
      expect(await peer.closed).toEqual({ code: 4002, description: UTF8_REASON });
    });

    test('a message over our maxMessageSize: we close with 1009, WebSocket-Node reports 1009', async () => {
      const { conn, peer } = await open(fixture, { maxMessageSize: 1000 });
      peer.connection.sendBytes(Buffer.alloc(1000, 7));
      expect(await recv(conn)).toEqual(Buffer.alloc(1000, 7));
      peer.connection.sendBytes(Buffer.alloc(1001, 7));
      expect((await peer.closed).code).toBe(1009);
      expect((await closedStatus(conn)).code).toBe(1009);
    });

    test('subprotocol: WebSocket-Node accepts one we offer; both sides agree', async () => {
      const { conn, peer } = await open(fixture, { protocols: ['other', 'chat.v1'] });
      expect(conn.protocol).toBe('chat.v1');
      expect(peer.connection.protocol).toBe('chat.v1');
    });
  });

  test.each([
    ['over our maxMessageSize', { maxMessageSize: 1000 }],
    ['in more fragments than our maxFragments', { maxFragments: 10 }],
  ] as Array<[string, ConnectOptions]>)('a message WebSocket-Node fragments, %s: we close with 1009, it reports 1009', async (_name, limits) => {
    const fixture = await wsNodeServer({ fragmentationThreshold: 100 });
    try {
      const { conn, peer } = await open(fixture, limits);
      peer.connection.sendUTF('x'.repeat(1000)); // 10 fragments, 1000 bytes: accepted
      expect(await recv(conn)).toBe('x'.repeat(1000));
      peer.connection.sendUTF('x'.repeat(1001)); // 11 fragments
      expect((await peer.closed).code).toBe(1009);
      expect((await closedStatus(conn)).code).toBe(1009);
    } finally {
      await fixture.close();
    }
  });

  test('a message over WebSocket-Node’s maxReceivedMessageSize: it drops with 1009 and we record 1009', async () => {
    const fixture = await wsNodeServer({ maxReceivedFrameSize: 100, maxReceivedMessageSize: 1000 });
    try {
      const { conn, peer } = await open(fixture);
      await conn.sendStream([bytesOf(1000)], { fragmentSize: 100 });
      expect(await recv(conn)).toEqual(bytesOf(1000));
      await conn.sendStream([bytesOf(1001)], { fragmentSize: 100 });
      expect((await closedStatus(conn)).code).toBe(1009);
      expect((await peer.closed).code).toBe(1009);
    } finally {
      await fixture.close();
    }
  });

  test('with assembleFragments false, WebSocket-Node sees our fragments frame by frame', async () => {
    const fixture = await wsNodeServer({ assembleFragments: false }, false);
    try {
      const { conn, peer } = await open(fixture);
      const frames: WsNodeFrame[] = [];
      const done = new Promise<void>((resolve) =>
        peer.connection.on('frame', (f) => {
          frames.push(f);
          if (f.fin) resolve();
        }),
      );
      const bytes = bytesOf(1000, 3);
      await conn.sendStream([bytes.subarray(0, 10), bytes.subarray(10)], { fragmentSize: 300 });
      await done;
      expect(frames.map((f) => [f.opcode, f.fin, f.binaryPayload.length])).toEqual([
        [2, false, 10],
        [0, false, 300],
        [0, false, 300],
        [0, false, 300],
        [0, true, 90],
      ]);
      expect(Buffer.concat(frames.map((f) => f.binaryPayload)).equals(bytes)).toBe(true);
    } finally {
      await fixture.close();
    }
  });
});
