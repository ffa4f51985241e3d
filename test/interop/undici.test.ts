/**
 * Interop with undici 7 (the WHATWG WebSocket client Node 22 ships as the global `WebSocket`, and
 * its experimental `WebSocketStream`) as a client of our serve(), over real sockets.
 *
 * What undici lets us observe: messages, `extensions`, `protocol`, the close event (code, reason,
 * wasClean); pings it receives and pongs it gets only through its diagnostics channels
 * (`undici:websocket:ping` / `:pong`); it sends pings with the exported `ping(ws, buffer)`.
 * It always offers `permessage-deflate; client_max_window_bits`, inflates what we compress, and
 * never compresses nor fragments what it sends (lib/web/websocket/sender.js, frame.js).
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { Agent, WebSocket as UndiciWebSocket, WebSocketStream, ping as undiciPing } from 'undici';
import { quietUndiciStreamWarning } from '../../packages/rfc6455/test/helpers/undici.js';
import type { PerMessageDeflateOptions, ServeOptions } from 'rfc6455';
import {
  SIZES,
  UTF8_REASON,
  bytesOf,
  bytesWritten,
  closedStatus,
  echoServer,
  Inbox,
  randomishBytes,
  textOfBytes,
  type Accepted,
  type EchoServer,
} from './peer-helpers.js';
import { asBinary, echoRoundTrip, echoSizeTests, pipelineTest, wePingTest, type PeerClient, type PeerClose, type PeerMessage } from './peer-suite.js';

interface CloseInfo extends PeerClose {
  wasClean: boolean;
}
/** An undici WebSocket, as the shared tests see it (peer-suite.ts), and the WebSocket itself. */
interface Peer extends PeerClient {
  ws: UndiciWebSocket;
  closed: Promise<CloseInfo>;
}

/** The next payload published on an undici diagnostics channel for `ws`. */
function nextOnChannel(name: 'undici:websocket:ping' | 'undici:websocket:pong', ws: UndiciWebSocket): Promise<Buffer> {
  return new Promise((resolve) => {
    const listener = (message: unknown): void => {
      const m = message as { payload: Buffer; websocket: unknown };
      if (m.websocket !== ws) return;
      unsubscribe(name, listener);
      resolve(m.payload);
    };
    subscribe(name, listener);
  });
}

const open = new Set<UndiciWebSocket>();

/** Opens an undici WebSocket to `echo` and waits for `open` and for our side's connection. */
async function connectUndici(echo: EchoServer, init?: ConstructorParameters<typeof UndiciWebSocket>[1]): Promise<Peer> {
  const ws = new UndiciWebSocket(echo.server.url, init);
  open.add(ws);
  ws.binaryType = 'arraybuffer';
  const messages = new Inbox<PeerMessage>();
  ws.addEventListener('message', (event) => {
    const data = event.data as string | ArrayBuffer;
    messages.push(typeof data === 'string' ? data : Buffer.from(data));
  });
  const closed = new Promise<CloseInfo>((resolve) =>
    ws.addEventListener('close', (e) => {
      open.delete(ws);
      resolve({ code: e.code, reason: e.reason, wasClean: e.wasClean });
    }),
  );
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve());
    ws.addEventListener('error', () => reject(new Error('undici WebSocket failed to open')));
  });
  return {
    ws,
    messages,
    closed,
    side: await echo.accepted.next(),
    sendText: (text) => ws.send(text),
    sendBinary: (bytes) => ws.send(new Uint8Array(bytes)),
    nextPing: async () => (await nextOnChannel('undici:websocket:ping', ws)).toString(),
    ping: async (payload) => {
      const pong = nextOnChannel('undici:websocket:pong', ws);
      undiciPing(ws, Buffer.from(payload));
      return (await pong).toString();
    },
    close: (code, reason) => ws.close(code, reason),
    protocol: () => ws.protocol,
  };
}

afterEach(async () => {
  const closing = [...open].map((ws) => new Promise((r) => ws.addEventListener('close', r)));
  for (const ws of open) ws.close();
  await Promise.all(closing);
});

describe.each([
  ['on (default)', undefined, 'permessage-deflate'],
  ['off', false, ''],
] as const)('undici WebSocket → our server, permessage-deflate %s', (_name, perMessageDeflate, extensions) => {
  let echo: EchoServer;
  beforeAll(async () => {
    echo = await echoServer(perMessageDeflate === undefined ? {} : { perMessageDeflate });
  });
  afterAll(() => echo.close());

  test('both sides report the negotiated extensions', async () => {
    const peer = await connectUndici(echo);
    expect(peer.ws.extensions).toBe(extensions);
    expect(peer.side.conn.extensions).toBe(extensions);
  });

  echoSizeTests(() => connectUndici(echo));

  pipelineTest(() => connectUndici(echo));

  test('a message we fragment (sendStream, UTF-8 characters split across fragments) arrives whole', async () => {
    const peer = await connectUndici(echo);
    const text = textOfBytes(10_007);
    // 7-byte fragments cut through 2-, 3- and 4-byte characters.
    await peer.side.conn.sendStream([Buffer.from(text)], { binary: false, fragmentSize: 7 });
    expect(await peer.messages.next()).toBe(text);
    const big = bytesOf(1024 * 1024 + 5, 3);
    await peer.side.conn.sendStream([big.subarray(0, 100_000), big.subarray(100_000)], { fragmentSize: 16_384 });
    expect(asBinary(await peer.messages.next()).equals(big)).toBe(true);
  });

  test('compression on the wire: a compressible 1 MiB message costs ' + (extensions ? 'far less' : 'at least its size'), async () => {
    const peer = await connectUndici(echo);
    const text = textOfBytes(1024 * 1024);
    const before = bytesWritten(peer.side.conn);
    await peer.side.conn.send(text);
    expect(await peer.messages.next()).toBe(text);
    const cost = bytesWritten(peer.side.conn) - before;
    if (extensions) expect(cost).toBeLessThan(text.length / 10);
    else expect(cost).toBeGreaterThanOrEqual(1024 * 1024);
  });
});

describe('undici WebSocket → our server with permessage-deflate parameters', () => {
  // undici offers `permessage-deflate; client_max_window_bits`; what our server answers, and what
  // that must mean on the wire for what we compress (undici never compresses).
  // `crossMessage`: a 1500-byte random message sent twice costs little the second time (context
  // kept and a window above 1500 bytes). `inMessage`: a block of 2000 random bytes repeated within
  // one message costs little the second time (window above 2000 bytes).
  const cases: Array<[string, PerMessageDeflateOptions, string, { crossMessage: boolean; inMessage: boolean }]> = [
    ['serverNoContextTakeover', { serverNoContextTakeover: true }, 'permessage-deflate; server_no_context_takeover', { crossMessage: false, inMessage: true }],
    ['serverMaxWindowBits 10', { serverMaxWindowBits: 10 }, 'permessage-deflate; server_max_window_bits=10', { crossMessage: false, inMessage: false }],
    ['serverMaxWindowBits 8', { serverMaxWindowBits: 8 }, 'permessage-deflate; server_max_window_bits=8', { crossMessage: false, inMessage: false }],
    ['serverMaxWindowBits 12', { serverMaxWindowBits: 12 }, 'permessage-deflate; server_max_window_bits=12', { crossMessage: true, inMessage: true }],
    ['clientMaxWindowBits 10', { clientMaxWindowBits: 10 }, 'permessage-deflate; client_max_window_bits=10', { crossMessage: true, inMessage: true }],
    ['clientNoContextTakeover', { clientNoContextTakeover: true }, 'permessage-deflate; client_no_context_takeover', { crossMessage: true, inMessage: true }],
    // Every message compressed, the empty one too (sent as the single byte 0x00, RFC 7692 §7.2.3.6).
    ['threshold 0', { threshold: 0 }, 'permessage-deflate', { crossMessage: true, inMessage: true }],
    [
      'every parameter',
      { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 9, clientMaxWindowBits: 9 },
      'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=9',
      { crossMessage: false, inMessage: false },
    ],
  ];

  test.each(cases)('%s: negotiated as answered, applied on the wire, and messages survive', async (_name, options, expected, wire) => {
    const echo = await echoServer({ perMessageDeflate: options } satisfies ServeOptions);
    try {
      const peer = await connectUndici(echo);
      expect(peer.ws.extensions).toBe(expected);
      expect(peer.side.conn.extensions).toBe(expected);

      const cost = async (data: Buffer): Promise<number> => {
        const before = bytesWritten(peer.side.conn);
        await peer.side.conn.send(data);
        expect(asBinary(await peer.messages.next()).equals(data)).toBe(true);
        return bytesWritten(peer.side.conn) - before;
      };
      const block = randomishBytes(1500, 7);
      const first = await cost(block);
      expect(first).toBeGreaterThan(1400); // random bytes do not compress
      const second = await cost(block);
      if (wire.crossMessage) expect(second).toBeLessThan(500);
      else expect(second).toBeGreaterThan(1400);
      const twice = randomishBytes(2000, 9);
      const repeated = await cost(Buffer.concat([twice, twice]));
      if (wire.inMessage) expect(repeated).toBeLessThan(2600);
      else expect(repeated).toBeGreaterThan(3600);

      // An empty message: a 2-byte header, plus the byte 0x00 when it is compressed.
      const empty = Buffer.alloc(0);
      expect(await cost(empty)).toBe(options.threshold === 0 ? 3 : 2);

      // Sizes and a fragmented compressed message, both ways.
      for (const size of [0, 125, 65536, 1024 * 1024 + 3]) await echoRoundTrip(peer, size);
      const text = textOfBytes(300_001);
      await peer.side.conn.sendStream([text.slice(0, 1000), text.slice(1000)], { binary: false, fragmentSize: 4096 });
      expect(await peer.messages.next()).toBe(text);
    } finally {
      await echo.close();
    }
  });
});

describe('undici WebSocket ↔ our server: ping, close, limits, subprotocols', () => {
  let echo: EchoServer;
  beforeAll(async () => {
    echo = await echoServer({ protocols: ['chat.v2', 'chat.v1'] });
  });
  afterAll(() => echo.close());

  test('undici pings with a payload: our side sees the ping, undici gets the pong with the same payload', async () => {
    const peer = await connectUndici(echo);
    const pong = nextOnChannel('undici:websocket:pong', peer.ws);
    const ping = new Promise<Buffer>((resolve) => peer.side.conn.once('ping', resolve));
    undiciPing(peer.ws, Buffer.from('undici ping ✓'));
    expect((await ping).toString()).toBe('undici ping ✓');
    expect((await pong).toString()).toBe('undici ping ✓');
  });

  wePingTest({ name: 'undici', open: () => connectUndici(echo) });

  test('undici closes with a code and a UTF-8 reason: both ends record them, cleanly', async () => {
    const peer = await connectUndici(echo);
    peer.ws.close(4001, UTF8_REASON);
    expect(await peer.closed).toEqual({ code: 4001, reason: UTF8_REASON, wasClean: true });
    expect(await closedStatus(peer.side.conn)).toEqual({ code: 4001, reason: UTF8_REASON });
  });

  test('undici closes without a code: both ends see 1005', async () => {
    const peer = await connectUndici(echo);
    peer.ws.close();
    expect(await peer.closed).toEqual({ code: 1005, reason: '', wasClean: true });
    expect((await closedStatus(peer.side.conn)).code).toBe(1005);
  });

  test('we close with a code and a UTF-8 reason: undici reports them, cleanly', async () => {
    const peer = await connectUndici(echo);
    await peer.side.conn.close(4002, UTF8_REASON);
    expect(await peer.closed).toEqual({ code: 4002, reason: UTF8_REASON, wasClean: true });
    // undici echoes the code but not the reason (lib/web/websocket/receiver.js, parseControlFrame),
    // and our side records the close frame it received.
    expect(await closedStatus(peer.side.conn)).toEqual({ code: 4002, reason: '' });
  });

  test('a message over our maxMessageSize: we close with 1009 and undici reports 1009', async () => {
    const limited = await echoServer({ maxMessageSize: 1000 });
    try {
      const peer = await connectUndici(limited);
      peer.ws.send('x'.repeat(1000)); // at the limit: accepted
      expect(await peer.messages.next()).toBe('x'.repeat(1000));
      peer.ws.send(new Uint8Array(1001));
      const closed = await peer.closed;
      expect(closed.code).toBe(1009);
      expect(closed.wasClean).toBe(true);
      expect((await closedStatus(peer.side.conn)).code).toBe(1009);
      expect(peer.side.received).toHaveLength(1);
    } finally {
      await limited.close();
    }
  });

  test('a message over undici’s maxPayloadSize: undici fails with 1009 and our side records 1009', async () => {
    const agent = new Agent({ webSocket: { maxPayloadSize: 1000 } });
    try {
      const peer = await connectUndici(echo, { dispatcher: agent });
      await peer.side.conn.send(Buffer.alloc(1000, 1));
      expect(asBinary(await peer.messages.next())).toEqual(Buffer.alloc(1000, 1));
      void peer.side.conn.send(Buffer.alloc(1001, 2));
      // undici sends its close frame and destroys the socket without waiting for ours.
      expect((await peer.closed).code).toBe(1006);
      expect((await closedStatus(peer.side.conn)).code).toBe(1009);
    } finally {
      await agent.close();
    }
  });

  test('subprotocol: our server picks the one undici offers that it speaks; both sides agree', async () => {
    const peer = await connectUndici(echo, ['other', 'chat.v1']);
    expect(peer.ws.protocol).toBe('chat.v1');
    expect(peer.side.conn.protocol).toBe('chat.v1');
    expect(peer.side.conn.headers['sec-websocket-protocol']).toBe('other, chat.v1');
  });

  test('subprotocol: none in common, our server answers none, and undici refuses the connection', async () => {
    const ws = new UndiciWebSocket(echo.server.url, ['nope']);
    const events: string[] = [];
    ws.addEventListener('open', () => events.push('open'));
    ws.addEventListener('error', () => events.push('error'));
    const closed = new Promise<number>((resolve) => ws.addEventListener('close', (e) => resolve(e.code)));
    expect(await closed).toBe(1006);
    expect(events).toEqual(['error']);
    // Our side accepted (a 101 without Sec-WebSocket-Protocol, as RFC 6455 §4.2.2 has it).
    const side = await echo.accepted.next();
    expect(side.conn.protocol).toBe('');
    // undici limitation: after failing an HTTP/1.1 handshake it never closes the TCP connection
    // (lib/web/websocket/connection.js: failHandshake destroys the socket only for HTTP/2, and
    // failWebsocketConnection only once established), so our side would wait until idleTimeout.
    side.conn.terminate();
    expect((await closedStatus(side.conn)).code).toBe(1006);
  });
});

describe('undici WebSocketStream → our server', () => {
  let echo: EchoServer;
  let restoreWarning: () => void = () => undefined;
  beforeAll(async () => {
    restoreWarning = quietUndiciStreamWarning();
    echo = await echoServer({ protocols: ['chat.v1'] });
  });
  afterAll(async () => {
    restoreWarning();
    await echo.close();
  });

  interface StreamPeer {
    wss: WebSocketStream;
    writer: WritableStreamDefaultWriter<string | Uint8Array>;
    reader: ReadableStreamDefaultReader<string | Uint8Array>;
    extensions: string;
    protocol: string;
    side: Accepted;
  }
  const streams = new Set<WebSocketStream>();
  afterEach(async () => {
    for (const wss of streams) {
      wss.close();
      await wss.closed.catch(() => undefined);
    }
    streams.clear();
  });

  async function openStream(protocols?: string[]): Promise<StreamPeer> {
    const wss = new WebSocketStream(echo.server.url, protocols ? { protocols } : undefined);
    streams.add(wss);
    const info = await wss.opened;
    // undici bug: `opened` resolves with `extensions` as the Map its handshake parsed (typed and
    // specified as a string; lib/web/websocket/stream/websocketstream.js #onConnectionEstablished:
    // `const extensions = parsedExtensions ?? ''`). Read the names out of either.
    const ext: unknown = info.extensions;
    const extensions = ext instanceof Map ? [...(ext as Map<string, unknown>).keys()].join(', ') : String(ext);
    return {
      wss,
      writer: (info.writable as WritableStream<string | Uint8Array>).getWriter(),
      reader: (info.readable as ReadableStream<string | Uint8Array>).getReader(),
      extensions,
      protocol: info.protocol,
      side: await echo.accepted.next(),
    };
  }

  async function read(peer: StreamPeer): Promise<string | Uint8Array> {
    const r = await peer.reader.read();
    if (r.done) throw new Error('stream ended');
    return r.value;
  }

  test('opened reports permessage-deflate and the subprotocol, as our side does', async () => {
    const peer = await openStream(['chat.v1']);
    expect(peer.extensions).toBe('permessage-deflate');
    expect(peer.protocol).toBe('chat.v1');
    expect(peer.side.conn.protocol).toBe('chat.v1');
    expect(peer.side.conn.extensions).toBe('permessage-deflate');
  });

  test('text and binary of every size arrive intact both ways (what we compress is inflated)', async () => {
    const peer = await openStream();
    for (const size of SIZES) {
      const text = textOfBytes(size);
      const bytes = bytesOf(size, 5);
      await peer.writer.write(text);
      await peer.writer.write(new Uint8Array(bytes));
      const echoedText = await read(peer);
      expect(typeof echoedText === 'string' && echoedText === text).toBe(true);
      const echoedBytes = await read(peer);
      expect(echoedBytes instanceof Uint8Array && Buffer.from(echoedBytes).equals(bytes)).toBe(true);
      const [gotText, gotBytes] = peer.side.received.slice(-2);
      expect(gotText).toEqual({ data: text, binary: false });
      expect(gotBytes!.binary).toBe(true);
      expect(Buffer.from(gotBytes!.data as Buffer).equals(bytes)).toBe(true);
    }
  });

  test('1000 pipelined messages, and one we fragment, arrive in order', async () => {
    const peer = await openStream();
    const writes: Array<Promise<void>> = [];
    for (let i = 0; i < 1000; i++) writes.push(peer.writer.write(`n${i}`));
    await Promise.all(writes);
    const got: Array<string | Uint8Array> = [];
    for (let i = 0; i < 1000; i++) got.push(await read(peer));
    expect(got).toEqual(Array.from({ length: 1000 }, (_, i) => `n${i}`));
    const text = textOfBytes(5003);
    await peer.side.conn.sendStream([text], { binary: false, fragmentSize: 3 });
    expect(await read(peer)).toBe(text);
  });

  test('our ping resolves on the pong WebSocketStream sends', async () => {
    const peer = await openStream();
    expect(typeof (await peer.side.conn.ping('are you there'))).toBe('number');
  });

  test('WebSocketStream closes with a code and a UTF-8 reason: both ends record them', async () => {
    const peer = await openStream();
    peer.wss.close({ closeCode: 4003, reason: UTF8_REASON });
    expect(await peer.wss.closed).toEqual({ closeCode: 4003, reason: UTF8_REASON });
    expect(await closedStatus(peer.side.conn)).toEqual({ code: 4003, reason: UTF8_REASON });
  });

  test('we close with a code and a UTF-8 reason: closed resolves with them and the readable ends', async () => {
    const peer = await openStream();
    await peer.side.conn.close(4004, UTF8_REASON);
    expect(await peer.wss.closed).toEqual({ closeCode: 4004, reason: UTF8_REASON });
    expect((await peer.reader.read()).done).toBe(true);
  });

  test('a message over our maxMessageSize: closed resolves with 1009', async () => {
    const limited = await echoServer({ maxMessageSize: 10 });
    try {
      const wss = new WebSocketStream(limited.server.url);
      streams.add(wss);
      const { writable } = await wss.opened;
      const side = await limited.accepted.next();
      await (writable as WritableStream<string>).getWriter().write('eleven byte');
      expect((await wss.closed).closeCode).toBe(1009);
      expect((await closedStatus(side.conn)).code).toBe(1009);
    } finally {
      await limited.close();
    }
  });
});
