/**
 * Sending behaves the same through every sending API. One table of data kinds × sending APIs,
 * each message read back by an independent peer: on the client side a raw TCP server that parses
 * the frames itself (opcode, FIN, RSV1, the mask bit, the unmasked and inflated payload), with and
 * without permessage-deflate; on the server side `ws`'s client (its opcode as `isBinary`, and the
 * bytes). Then the errors: data that is neither a string nor bytes is a TypeError from every
 * connection (hybi-00 too, and behind a sendStream()), as a rejected promise and never a throw,
 * and the connection lives on; options that are not an object reject the same from send() and
 * sendStream(); after a close (ours, the peer's, an abort) each API fails or skips as documented
 * (docs/connection.md, docs/client.md); and the browser-API WebSocket converts its argument
 * before it checks its state, as WebIDL (and undici) do.
 */
import { createHash } from 'node:crypto';
import { createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { constants, inflateRawSync } from 'node:zlib';
import { broadcast, connect, createWebSocketStream, prepareMessage, serve, WebSocket, WebSocketStream, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { WebSocket as WsClient, WebSocketServer as WsServer } from 'ws';

/** One frame as the peer saw it. */
interface Frame {
  opcode: number;
  fin: boolean;
  rsv1: boolean;
  masked: boolean;
  /** Unmasked and, with RSV1, inflated. */
  payload: Buffer;
}

/** A raw WebSocket server: answers the handshake (permessage-deflate without context takeover when offered and wanted) and records every frame. */
class RawServer {
  frames: Frame[] = [];
  private waiters: Array<() => void> = [];
  private sockets = new Set<Socket>();
  private server: NetServer;
  constructor(private deflate: boolean) {
    this.server = createServer((socket) => this.accept(socket));
  }
  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `ws://127.0.0.1:${(this.server.address() as AddressInfo).port}/`;
  }
  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
  /** Resolves with the frames once `count` data frames (not control frames) arrived, and clears them. */
  async take(count: number): Promise<Frame[]> {
    const data = (): Frame[] => this.frames.filter((f) => f.opcode < 8);
    while (data().length < count) await new Promise<void>((resolve) => this.waiters.push(resolve));
    const got = data();
    this.frames = [];
    return got;
  }
  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    let open = false;
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!open) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        buf = buf.subarray(end + 4);
        open = true;
        const key = /sec-websocket-key: *(\S+)/i.exec(head)![1];
        const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
        const ext = this.deflate && /permessage-deflate/i.test(head) ? 'Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover\r\n' : '';
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n${ext}\r\n`);
      }
      for (;;) {
        if (buf.length < 2) return;
        const b0 = buf.readUInt8(0);
        const b1 = buf.readUInt8(1);
        let length = b1 & 0x7f;
        let at = 2;
        if (length === 126) {
          if (buf.length < 4) return;
          length = buf.readUInt16BE(2);
          at = 4;
        } else if (length === 127) {
          if (buf.length < 10) return;
          length = Number(buf.readBigUInt64BE(2));
          at = 10;
        }
        const masked = (b1 & 0x80) !== 0;
        const key = masked ? buf.subarray(at, at + 4) : undefined;
        if (masked) at += 4;
        if (buf.length < at + length) return;
        let payload = Buffer.from(buf.subarray(at, at + length));
        if (key) for (let i = 0; i < payload.length; i++) payload.writeUInt8(payload.readUInt8(i) ^ key.readUInt8(i & 3), i);
        const rsv1 = (b0 & 0x40) !== 0;
        if (rsv1) payload = inflateRawSync(payload, { finishFlush: constants.Z_SYNC_FLUSH });
        this.frames.push({ opcode: b0 & 0x0f, fin: (b0 & 0x80) !== 0, rsv1, masked, payload });
        buf = buf.subarray(at + length);
        const w = this.waiters;
        this.waiters = [];
        for (const f of w) f();
      }
    });
  }
}

const N = 1500; // over compressThreshold (1024): compressed when permessage-deflate is on

/** Data of every kind send() takes, and what a peer must receive for it. */
interface Kind {
  name: string;
  make(): string | ArrayBufferLike | ArrayBufferView;
  opcode: 1 | 2;
  bytes: Buffer;
}

function unpooled(text: string): Buffer {
  const b = Buffer.allocUnsafeSlow(Buffer.byteLength(text));
  b.write(text);
  return b;
}

const float = new Float64Array(N / 8).map((_, i) => i + 0.5);
const kinds: Kind[] = [
  { name: 'string', make: () => 'é'.repeat(N / 2), opcode: 1, bytes: Buffer.from('é'.repeat(N / 2)) },
  { name: 'string with a lone surrogate', make: () => `a\ud800${'x'.repeat(N)}`, opcode: 1, bytes: Buffer.concat([Buffer.from('a\uFFFD'), Buffer.alloc(N, 'x')]) },
  { name: 'empty string', make: () => '', opcode: 1, bytes: Buffer.alloc(0) },
  { name: 'Buffer', make: () => Buffer.alloc(N, 7), opcode: 2, bytes: Buffer.alloc(N, 7) },
  { name: 'Uint8Array view at an offset', make: () => new Uint8Array(unpooled(`ab${'c'.repeat(N)}de`).buffer, 2, N), opcode: 2, bytes: Buffer.alloc(N, 'c') },
  { name: 'ArrayBuffer', make: () => new Uint8Array(N).fill(9).buffer, opcode: 2, bytes: Buffer.alloc(N, 9) },
  {
    name: 'SharedArrayBuffer',
    make: () => {
      const s = new SharedArrayBuffer(N);
      new Uint8Array(s).fill(5);
      return s;
    },
    opcode: 2,
    bytes: Buffer.alloc(N, 5),
  },
  { name: 'DataView', make: () => new DataView(unpooled(`x${'d'.repeat(N)}y`).buffer, 1, N), opcode: 2, bytes: Buffer.alloc(N, 'd') },
  { name: 'Float64Array', make: () => float.slice(), opcode: 2, bytes: Buffer.from(float.buffer) },
  { name: 'empty Buffer', make: () => Buffer.alloc(0), opcode: 2, bytes: Buffer.alloc(0) },
];

type Data = ReturnType<Kind['make']>;

/** A sending API of a connection: sends one message of `data`, resolves once it was handed over. */
interface Api {
  name: string;
  /** Compresses every message, the threshold unused (sendStream(): the size is unknown, docs/compression.md). */
  everyCompressed?: true;
  /** Takes this kind (the browser APIs take no SharedArrayBuffer: WebIDL's BufferSource excludes it). */
  takes?(kind: Kind): boolean;
  open(url: string, deflate: boolean): Promise<{ send(data: Data, text: boolean): Promise<unknown>; close(): void }>;
}

const connApi = (name: string, send: (conn: WebSocketConnection, data: Data, text: boolean) => Promise<unknown>): Api => ({
  name,
  async open(url, deflate) {
    const conn = await connect(url, { perMessageDeflate: deflate });
    return { send: (data, text) => send(conn, data, text), close: () => conn.terminate() };
  },
});

const clientApis: Api[] = [
  connApi('conn.send()', (c, d) => c.send(d as never)),
  connApi('conn.send(prepareMessage())', (c, d) => c.send(prepareMessage(d as never))),
  connApi('broadcast()', async (c, d) => expect(broadcast([c], d as never)).toBe(1)),
  { ...connApi('conn.sendStream()', (c, d, text) => c.sendStream(d as never, { binary: !text })), everyCompressed: true },
  {
    name: 'createWebSocketStream({ objectMode }).write()',
    async open(url, deflate) {
      const conn = await connect(url, { perMessageDeflate: deflate });
      const duplex = createWebSocketStream(conn, { objectMode: true });
      duplex.on('error', () => undefined);
      return { send: (data) => new Promise<void>((resolve, reject) => duplex.write(data, (e) => (e ? reject(e) : resolve()))), close: () => conn.terminate() };
    },
  },
  {
    name: 'WebSocket.send()',
    takes: (kind) => kind.name !== 'SharedArrayBuffer',
    async open(url, deflate) {
      const ws = new WebSocket(url, { perMessageDeflate: deflate });
      await new Promise((resolve) => ws.addEventListener('open', resolve));
      return { send: async (data) => ws.send(data as never), close: () => ws.connection?.terminate() };
    },
  },
  {
    name: "WebSocketStream's writer",
    takes: (kind) => kind.name !== 'SharedArrayBuffer',
    async open(url, deflate) {
      const wss = new WebSocketStream(url, { perMessageDeflate: deflate });
      const writer = (await wss.opened).writable.getWriter();
      return { send: (data) => writer.write(data as never), close: () => wss.close() };
    },
  },
];

describe.each([false, true])('what a client sends, read by a raw server (permessage-deflate %s)', (deflate) => {
  let raw: RawServer;
  let url: string;
  beforeAll(async () => {
    raw = new RawServer(deflate);
    url = await raw.listen();
  });
  afterAll(() => raw.close());

  test.each(clientApis.map((api) => [api.name, api] as const))('%s: every kind of data, masked, the opcode and bytes of conn.send()', async (_name, api) => {
    const peer = await api.open(url, deflate);
    try {
      for (const kind of kinds) {
        if (api.takes && !api.takes(kind)) continue;
        await peer.send(kind.make(), kind.opcode === 1);
        const [frame, ...more] = (await raw.take(1)) as [Frame, ...Frame[]];
        expect({ kind: kind.name, more: more.length, opcode: frame.opcode, fin: frame.fin, masked: frame.masked, rsv1: frame.rsv1 }).toEqual({
          kind: kind.name,
          more: 0,
          opcode: kind.opcode,
          fin: true,
          masked: true,
          rsv1: deflate && (api.everyCompressed === true || kind.bytes.length >= 1024),
        });
        expect(frame.payload.equals(kind.bytes)).toBe(true);
      }
    } finally {
      peer.close();
    }
  });

  test('{ compress: false } is uncompressed through send(), a prepared message and broadcast()', async () => {
    const conn = await connect(url, { perMessageDeflate: deflate });
    const text = 'z'.repeat(N);
    await conn.send(text, { compress: false });
    await conn.send(prepareMessage(text), { compress: false });
    broadcast([conn], text, { compress: false });
    await conn.sendStream([text], { binary: false, compress: false });
    const frames = await raw.take(4);
    expect(frames.map((f) => [f.opcode, f.rsv1, f.masked, f.payload.toString()])).toEqual(Array(4).fill([1, false, true, text]));
    conn.terminate();
  });
});

describe('what a server sends, read by ws', () => {
  let server: WebSocketServer;
  let send: (conn: WebSocketConnection) => Promise<void>;
  beforeAll(async () => {
    server = await serve({ idleTimeout: 0 }, async (conn) => {
      await send(conn);
      await conn.close();
    });
  });
  afterAll(() => server.close());

  const serverApis: Array<[string, (conn: WebSocketConnection, data: Data, text: boolean) => Promise<unknown> | unknown]> = [
    ['conn.send()', (c, d) => c.send(d as never)],
    ['conn.send(prepareMessage())', (c, d) => c.send(prepareMessage(d as never))],
    ['broadcast()', (c, d) => expect(broadcast([c], d as never)).toBe(1)],
    ['server.broadcast()', (_c, d) => expect(server.broadcast(d as never)).toBe(1)],
    ['conn.sendStream()', (c, d, text) => c.sendStream(d as never, { binary: !text })],
    ['createWebSocketStream({ objectMode }).write()', (c, d) => new Promise<void>((resolve, reject) => createWebSocketStream(c, { objectMode: true }).write(d, (e) => (e ? reject(e) : resolve())))],
  ];

  test.each(serverApis)('%s: every kind of data, as conn.send() sends it', async (_name, api) => {
    send = async (conn) => {
      for (const kind of kinds) await api(conn, kind.make(), kind.opcode === 1);
    };
    for (const perMessageDeflate of [false, true]) {
      const ws = new WsClient(`ws://127.0.0.1:${server.port}/`, { perMessageDeflate });
      const got: Array<[boolean, Buffer]> = [];
      ws.on('message', (data: Buffer, isBinary: boolean) => got.push([isBinary, data]));
      await new Promise((resolve) => ws.on('close', resolve));
      expect(got.map(([isBinary, data]) => [isBinary, data.toString('hex')])).toEqual(kinds.map((k) => [k.opcode === 2, k.bytes.toString('hex')]));
    }
  });
});

describe('data that is neither a string nor bytes', () => {
  let server: WebSocketServer;
  const got: string[] = [];
  beforeAll(async () => {
    server = await serve({ idleTimeout: 0 }, (conn) => {
      conn.on('message', (data) => got.push(String(data)));
    });
  });
  afterAll(() => server.close());

  const detached = (): ArrayBuffer => {
    const buffer = new ArrayBuffer(4);
    structuredClone(buffer, { transfer: [buffer] });
    return buffer;
  };
  const bad: Array<[string, () => unknown]> = [
    ['a number', () => 42],
    ['an object', () => ({ a: 1 })],
    ['null', () => null],
    ['undefined', () => undefined],
    ['a detached ArrayBuffer', detached],
    [
      'a view over a detached ArrayBuffer',
      () => {
        const view = new Uint8Array(4);
        structuredClone(view.buffer, { transfer: [view.buffer] });
        return view;
      },
    ],
  ];

  test.each(['rfc6455', 'hybi00'])('over %s: send() rejects with a TypeError at once (also behind a sendStream()), and the connection lives on', async (variant) => {
    got.length = 0;
    const conn = await connect(`ws://127.0.0.1:${server.port}/`, variant === 'hybi00' ? { variant: 'hybi00' } : {});
    for (const behindStream of variant === 'hybi00' ? [false] : [false, true]) {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      async function* source(): AsyncGenerator<string> {
        yield 'stream ';
        await gate;
        yield 'end';
      }
      const stream = behindStream ? conn.sendStream(source(), { binary: false }) : undefined;
      for (const [name, make] of bad) {
        for (const options of [undefined, { binary: false }, { binary: true }]) {
          let result: Promise<void> | undefined;
          expect(() => (result = conn.send(make() as never, options))).not.toThrow();
          // Rejects before anything queued ahead of it has gone out (not when its turn comes).
          const outcome = await Promise.race([result!.then(() => 'sent', (e: Error) => e), Promise.resolve().then(() => new Promise((resolve) => setImmediate(() => resolve('pending'))))]);
          // (By name: V8's TypeError for a detached buffer is of another realm than Jest's.)
          expect([name, options, behindStream, (outcome as Error).name]).toEqual([name, options, behindStream, 'TypeError']);
        }
      }
      release();
      await stream;
      await conn.send(`still open ${behindStream}`);
    }
    await conn.close();
    await new Promise((resolve) => setImmediate(resolve));
    expect(got).toEqual(variant === 'hybi00' ? ['still open false'] : ['still open false', 'stream end', 'still open true']);
  });

  test('sendStream() takes options as send() does: null as none, a callback or a number rejected unsent', async () => {
    got.length = 0;
    const conn = await connect(`ws://127.0.0.1:${server.port}/`);
    for (const options of [null, () => undefined, 5]) {
      let sendResult: Promise<void> | undefined;
      let streamResult: Promise<void> | undefined;
      expect(() => (sendResult = conn.send('s', options as never))).not.toThrow();
      expect(() => (streamResult = conn.sendStream(['t'], options as never))).not.toThrow();
      const [a, b] = await Promise.allSettled([sendResult!, streamResult!]);
      expect([options, b.status, (b as PromiseRejectedResult).reason?.constructor]).toEqual([options, a.status, (a as PromiseRejectedResult).reason?.constructor]);
    }
    await conn.close();
    await new Promise((resolve) => setImmediate(resolve));
    // null is no options: a text message and a binary one (sendStream's default).
    expect(got).toEqual(['s', 't']);
  });
});

describe('sending after the end', () => {
  let peer: WsServer;
  let url: string;
  beforeAll(async () => {
    peer = new WsServer({ port: 0, host: '127.0.0.1' });
    await new Promise((resolve) => peer.on('listening', resolve));
    url = `ws://127.0.0.1:${(peer.address() as AddressInfo).port}/`;
    peer.on('connection', (s) => s.on('message', (data) => String(data) === 'close me' && s.close(4000, 'bye')));
  });
  afterAll(() => new Promise<void>((resolve) => peer.close(() => resolve())));

  const ends: Array<[string, (conn: WebSocketConnection) => Promise<unknown>]> = [
    ['our close()', async (c) => void c.close()],
    ["the peer's close frame", async (c) => (await c.send('close me'), await new Promise((resolve) => c.once('close', resolve)))],
    ['terminate()', async (c) => c.terminate()],
  ];

  test.each(ends)('after %s: every send rejects with ConnectionClosedError, broadcast() skips it', async (_name, end) => {
    const conn = await connect(url);
    await end(conn);
    const outcomes = await Promise.allSettled([conn.send('x'), conn.send(Buffer.from('x')), conn.send(prepareMessage('p')), conn.sendStream(['s'])]);
    expect(outcomes.map((o) => o.status === 'rejected' && (o.reason as { code?: string }).code)).toEqual(Array(4).fill('WS_CLOSED'));
    expect(broadcast([conn], 'b')).toBe(0);
  });
});

describe('the browser API converts its argument before it checks its state (WebIDL)', () => {
  let peer: WsServer;
  beforeAll(async () => {
    peer = new WsServer({ port: 0, host: '127.0.0.1' });
    await new Promise((resolve) => peer.on('listening', resolve));
  });
  afterAll(() => new Promise<void>((resolve) => peer.close(() => resolve())));

  test('while connecting: a Symbol is a TypeError, an object is converted (its toString() called), then InvalidStateError', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${(peer.address() as AddressInfo).port}/`);
    expect(() => ws.send(Symbol('s') as never)).toThrow(TypeError);
    let converted = false;
    const object = {
      toString() {
        converted = true;
        return 'o';
      },
    };
    expect(() => ws.send(object as never)).toThrow(expect.objectContaining({ name: 'InvalidStateError' }));
    expect(converted).toBe(true);
    expect(() => ws.send(new Uint8Array(1))).toThrow(expect.objectContaining({ name: 'InvalidStateError' }));
    ws.close();
    await new Promise((resolve) => ws.addEventListener('close', resolve));
  });
});
