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
} from 'websocket';
import type { ConnectOptions } from 'rfc6455';
import { UTF8_REASON, bytesOf, closedStatus, echoServer, echoServerForBlock, Inbox, type EchoServer } from './peer-helpers.js';
import { asBinary, echoSizeTests, ourClientConnector, ourClientSizeTests, ourClientTests, overOurMaxMessageSize, peerClientTests, recv } from './peer-suite.js';
import type { PeerClient, PeerClose, PeerEnd, PeerMessage, PeerServer } from './peer-suite.js';

const BIG = 8 * 1024 * 1024;
/** WebSocket-Node refuses frames over 64 KiB (server) or 1 MiB (client) by default: raise both. */
const LIMITS = { maxReceivedFrameSize: BIG, maxReceivedMessageSize: BIG };

/** The fragmentation settings WebSocket-Node is run with, on its client and on its server. */
const FRAGMENTATION: Array<[string, IConfig]> = [
  ['unfragmented (fragmentOutgoingMessages false)', { fragmentOutgoingMessages: false }],
  ['fragmented at its default 16 KiB threshold', { fragmentOutgoingMessages: true }],
  ['fragmented at 1000 bytes', { fragmentOutgoingMessages: true, fragmentationThreshold: 1000 }],
];

/** WebSocket-Node answers every close with 1000 and no reason, whatever it received (see above). */
function closeReply(): PeerClose {
  return { code: 1000, reason: '' };
}

/** One WebSocket-Node connection, as the shared tests see it (peer-suite.ts), and the connection itself. */
interface Peer extends PeerEnd {
  connection: WsNodeConnection;
}

function track(connection: WsNodeConnection): Peer {
  const messages = new Inbox<PeerMessage>();
  connection.on('message', (m) => messages.push(m.type === 'utf8' ? m.utf8Data : m.binaryData));
  connection.on('error', () => undefined);
  const closed = new Promise<PeerClose>((resolve) => connection.once('close', (code, reason) => resolve({ code, reason })));
  return {
    connection,
    messages,
    closed,
    sendText: (text) => connection.sendUTF(text),
    sendBinary: (bytes) => connection.sendBytes(bytes),
    nextPing: async () => {
      const [, data] = (await once(connection, 'ping')) as [unknown, Buffer];
      return data.toString();
    },
    ping: async (payload) => {
      const pong = once(connection, 'pong') as Promise<[Buffer]>;
      connection.ping(Buffer.from(payload));
      return (await pong)[0].toString();
    },
    close: (code, reason) => connection.close(code, reason),
    protocol: () => connection.protocol,
  };
}

describe('WebSocket-Node client → our server', () => {
  const echo = echoServerForBlock({ protocols: ['chat.v2', 'chat.v1'] });
  const peers = new Set<Peer>();
  afterEach(async () => {
    for (const p of peers) {
      if (p.connection.connected) p.connection.close();
      await p.closed;
    }
    peers.clear();
  });

  async function open(target: EchoServer, config: IClientConfig = {}, protocols?: string[]): Promise<Peer & PeerClient> {
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
    const peer = await open(echo());
    expect(peer.side.conn.headers['sec-websocket-extensions']).toBeUndefined();
    expect(peer.side.conn.extensions).toBe('');
    expect(peer.connection.protocol).toBeUndefined();
  });

  describe.each(FRAGMENTATION)('WebSocket-Node %s', (_name, config) => {
    echoSizeTests(() => open(echo(), config));
  });

  peerClientTests({
    name: 'WebSocket-Node',
    // It fragments what it sends above 8 bytes, so the pipelined messages come in fragments (no
    // other shared test has it send a message).
    open: (protocols) => open(echo(), { fragmentationThreshold: 8 }, protocols),
    closeReply,
  });

  test('with assembleFragments false, WebSocket-Node sees our fragments frame by frame', async () => {
    const peer = await open(echo(), { assembleFragments: false });
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

  test('WebSocket-Node closes with a code and a UTF-8 reason: our side records them', async () => {
    const peer = await open(echo());
    peer.connection.close(4001, UTF8_REASON);
    expect(await closedStatus(peer.side.conn)).toEqual({ code: 4001, reason: UTF8_REASON });
    expect(await peer.closed).toEqual({ code: 4001, reason: UTF8_REASON });
  });

  test.each([
    ['in one frame', { fragmentOutgoingMessages: false }],
    ['in 100-byte fragments', { fragmentOutgoingMessages: true, fragmentationThreshold: 100 }],
  ] as Array<[string, IClientConfig]>)('a message over our maxMessageSize %s: we close with 1009, WebSocket-Node reports 1009', async (_name, config) => {
    await overOurMaxMessageSize((limited) => open(limited, config));
  });

  test('a message in more fragments than our maxFragments: we close with 1009, WebSocket-Node reports 1009', async () => {
    const limited = await echoServer({ maxFragments: 50 });
    try {
      const peer = await open(limited, { fragmentationThreshold: 10 });
      peer.connection.sendBytes(bytesOf(500)); // 50 fragments
      expect(asBinary(await peer.messages.next()).equals(bytesOf(500))).toBe(true);
      peer.connection.sendBytes(bytesOf(501)); // 51 fragments
      expect((await peer.closed).code).toBe(1009);
      expect((await closedStatus(peer.side.conn)).code).toBe(1009);
    } finally {
      await limited.close();
    }
  });

  test('a frame over WebSocket-Node’s maxReceivedFrameSize: it drops with 1009 and our side records 1009', async () => {
    const peer = await open(echo(), { maxReceivedFrameSize: 1000 });
    await peer.side.conn.send(Buffer.alloc(1000, 1));
    expect(asBinary(await peer.messages.next())).toEqual(Buffer.alloc(1000, 1));
    void peer.side.conn.send(Buffer.alloc(1001, 2));
    expect((await peer.closed).code).toBe(1009);
    expect((await closedStatus(peer.side.conn)).code).toBe(1009);
  });
});

/** A WebSocket-Node server on a Node http server: echoes, and hands each connection to the test. */
async function wsNodeServer(config: Omit<IServerConfig, 'httpServer'> = {}, echoMessages = true): Promise<PeerServer<Peer>> {
  const http: HttpServer = createServer();
  const wsServer = new WsNodeServer({ httpServer: http, autoAcceptConnections: false, ...LIMITS, ...config });
  const accepted = new Inbox<Peer>();
  wsServer.on('request', (request) => {
    const protocol = request.requestedProtocols.includes('chat.v1') ? 'chat.v1' : null;
    const connection = request.accept(protocol);
    const peer = track(connection);
    if (echoMessages) {
      connection.on('message', (m) => {
        if (m.type === 'utf8') connection.sendUTF(m.utf8Data);
        else connection.sendBytes(m.binaryData);
      });
    }
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
  const open = ourClientConnector();

  describe.each(FRAGMENTATION)('WebSocket-Node server %s', (_name, config) => {
    let fixture: PeerServer<Peer>;
    beforeAll(async () => {
      fixture = await wsNodeServer(config);
    });
    afterAll(() => fixture.close());

    test('our permessage-deflate offer is ignored: nothing negotiated', async () => {
      const { conn } = await open(fixture);
      expect(conn.extensions).toBe('');
      expect(conn.headers['sec-websocket-extensions']).toBeUndefined();
    });

    ourClientSizeTests(() => open(fixture));
  });

  describe('default WebSocket-Node server', () => {
    let fixture: PeerServer<Peer>;
    beforeAll(async () => {
      fixture = await wsNodeServer();
    });
    afterAll(() => fixture.close());

    ourClientTests({ name: 'WebSocket-Node', open: (options) => open(fixture, options), closeReply });
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
