/**
 * Message behaviour over real sockets: fail-fast UTF-8 (the 1007 arrives while the message is
 * still unfinished), pings answered between fragments, message size limits, payload sizes
 * 0..16 MiB round-tripping through serve() and connect().
 */
import { EventEmitter, on, once } from 'node:events';
import { runInNewContext } from 'node:vm';
import { PassThrough } from 'node:stream';
import { connect, ConnectionClosedError, EOF, serve, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { closePayload, frame } from '../helpers/frames.js';
import { RawClient } from '../helpers/raw-client.js';
import { until } from '../helpers/wait.js';

let server: WebSocketServer;
const serverConns: WebSocketConnection[] = [];

beforeAll(async () => {
  server = await serve({ perMessageDeflate: false, maxMessageSize: 20 * 1024 * 1024 }, async (conn) => {
    serverConns.push(conn);
    for await (const message of conn) await conn.send(message).catch(() => undefined);
  });
});
afterAll(() => server.close());


/**
 * Both ends closed with 1011, the peer (the first server connection) without an error of its own:
 * we gave up the message being sent; the peer saw nothing wrong in what it received.
 */
async function bothClosedWith1011(client: WebSocketConnection): Promise<void> {
  await client.whenClosed;
  expect(client.closeStatus).toBe(1011);
  const peer = serverConns[0]!;
  await peer.whenClosed;
  expect(peer.closeStatus).toBe(1011);
  expect(peer.error).toBeUndefined();
}
describe('fail-fast UTF-8', () => {
  test('server closes with 1007 after the first fragment with bad bytes, before the message ends', async () => {
    const raw = await RawClient.connect(server.port);
    // A valid prefix, then 0xF8 (never valid), in a frame with FIN clear: the message is unfinished.
    raw.send({ opcode: 1, payload: Buffer.concat([Buffer.from('κόσμε'), Buffer.of(0xf8, 0x88, 0x80)]), fin: false });
    const close = await raw.readClose();
    expect(close?.code).toBe(1007);
    // The socket stayed open on our side and we never sent the rest; the server ended TCP.
    await raw.closed;
    expect(raw.serverEndedFirst).toBe(true);
  });

  test('server closes with 1007 when a character split across fragments turns out invalid', async () => {
    const raw = await RawClient.connect(server.port);
    raw.send({ opcode: 1, payload: Buffer.of(0xf0, 0x90), fin: false });
    raw.send({ opcode: 0, payload: Buffer.of(0x41), fin: false });
    expect((await raw.readClose())?.code).toBe(1007);
    raw.destroy();
  });

  test('a valid character split across fragments is delivered whole', async () => {
    const raw = await RawClient.connect(server.port);
    const euro = Buffer.from('€');
    raw.send({ opcode: 1, payload: euro.subarray(0, 1), fin: false });
    raw.send({ opcode: 0, payload: euro.subarray(1, 2), fin: false });
    raw.send({ opcode: 0, payload: euro.subarray(2) });
    const echo = await raw.readFrame();
    expect(echo?.payload.toString()).toBe('€');
    raw.send({ opcode: 8, payload: closePayload(1000) });
    await raw.readClose();
    raw.destroy();
  });
});

describe('control frames between fragments', () => {
  test('server answers a ping sent between two fragments before the message is complete', async () => {
    const raw = await RawClient.connect(server.port);
    raw.send({ opcode: 1, payload: 'frag-1 ', fin: false });
    raw.send({ opcode: 9, payload: 'are you there' });
    const pong = await raw.readFrame();
    expect(pong?.opcode).toBe(10);
    expect(pong?.payload.toString()).toBe('are you there');
    raw.send({ opcode: 0, payload: 'frag-2' });
    const echo = await raw.readFrame();
    expect([echo?.opcode, echo?.payload.toString()]).toEqual([1, 'frag-1 frag-2']);
    raw.send({ opcode: 8, payload: closePayload(1000) });
    expect((await raw.readClose())?.code).toBe(1000);
    raw.destroy();
  });

  test('server answers a ping even while the handler is not reading messages', async () => {
    const idle = await serve({ perMessageDeflate: false }, () => undefined);
    try {
      const raw = await RawClient.connect(idle.port);
      raw.send({ opcode: 2, payload: Buffer.alloc(1000) });
      raw.send({ opcode: 9, payload: 'still answered' });
      const pong = await raw.readFrame();
      expect([pong?.opcode, pong?.payload.toString()]).toEqual([10, 'still answered']);
      raw.destroy();
    } finally {
      await idle.close();
    }
  });
});

describe('ping() and a peer that answers only the latest of its pings (RFC 6455 §5.5.3)', () => {
  test('one pong for two pings settles both, nothing stays pending, and a later ping resolves on its own pong', async () => {
    let accepted!: (conn: WebSocketConnection) => void;
    const serverConn = new Promise<WebSocketConnection>((resolve) => (accepted = resolve));
    const quiet = await serve({ perMessageDeflate: false }, (conn) => accepted(conn));
    try {
      const raw = await RawClient.connect(quiet.port);
      const conn = await serverConn;
      const pending = (): number => (conn as unknown as { pings: unknown[] | undefined }).pings?.length ?? 0;
      // A text frame sent after a pong is read after it: once it is here, the pong was handled
      // (and the ping promises it settled have run their callbacks).
      const handled = async (): Promise<void> => {
        const message = conn.recv();
        raw.send({ opcode: 1, payload: 'after the pong', mask: true });
        expect(await message).toBe('after the pong');
        await Promise.resolve();
      };
      let settled = 0;
      const rounds = 50;
      for (let round = 0; round < rounds; round++) {
        void conn.ping().then(() => settled++, () => undefined);
        void conn.ping().then(() => settled++, () => undefined);
        // The peer reads both pings, then answers the most recent one only, as §5.5.3 allows.
        expect((await raw.readFrame())?.opcode).toBe(9);
        expect((await raw.readFrame())?.opcode).toBe(9);
        raw.send({ opcode: 10, mask: true });
        await handled();
      }
      // (Before: one ping of each pair stayed pending: 50 here, one more per such pong, for the
      // connection's lifetime.)
      expect(pending()).toBe(0);
      expect(settled).toBe(2 * rounds);
      // A lone ping now resolves on its own pong (before: on the next pong but one).
      let own = false;
      void conn.ping().then(() => (own = true), () => undefined);
      expect((await raw.readFrame())?.opcode).toBe(9);
      raw.send({ opcode: 10, mask: true });
      await handled();
      expect(own).toBe(true);
      expect(pending()).toBe(0);
      raw.destroy();
    } finally {
      await quiet.close();
    }
  });
});

describe('size limits over sockets', () => {
  test('server receives fragmented text over maxMessageSize → 1009', async () => {
    const small = await serve({ perMessageDeflate: false, maxMessageSize: 1000 }, async (conn) => {
      for await (const m of conn) void m;
    });
    try {
      const raw = await RawClient.connect(small.port);
      raw.send({ opcode: 1, payload: 'a'.repeat(600), fin: false });
      raw.send({ opcode: 0, payload: 'a'.repeat(600), fin: false });
      expect((await raw.readClose())?.code).toBe(1009);
      raw.destroy();
    } finally {
      await small.close();
    }
  });

  test('client receives a message over its maxMessageSize → it closes with 1009', async () => {
    const client = await connect(server.url, { perMessageDeflate: false, maxMessageSize: 100 });
    const closed = new Promise<number>((resolve) => client.on('close', (code) => resolve(code)));
    await client.send(Buffer.alloc(101)); // the server echoes it back
    expect(await closed).toBe(1009);
    expect(client.closeStatus).toBe(1009);
  });
});

describe('payload sizes round-trip', () => {
  let client: WebSocketConnection;
  beforeAll(async () => {
    client = await connect(server.url, { perMessageDeflate: false, maxMessageSize: 20 * 1024 * 1024 });
  });
  afterAll(() => client.close());

  test.each([0, 125, 126, 65535, 65536])('binary and text of %i bytes', async (n) => {
    const bytes = Buffer.alloc(n);
    for (let i = 0; i < n; i++) bytes[i] = (i * 7) & 0xff;
    await client.send(bytes);
    const echoed = await client.recv();
    expect(Buffer.isBuffer(echoed)).toBe(true);
    expect((echoed as Buffer).equals(bytes)).toBe(true);
    const text = 'é'.repeat(Math.floor(n / 2)) + 'x'.repeat(n % 2);
    await client.send(text);
    expect(await client.recv()).toBe(text);
  });

  test.each([70_000, 300_000, 2 * 1024 * 1024])('large text of about %i bytes, ASCII and not: gathered across reads, echoed exactly', async (n) => {
    const ascii = '{"id":12345,"name":"abcdefghij"},'.repeat(Math.ceil(n / 33)).slice(0, n);
    const mixed = 'é日😀x'.repeat(Math.ceil(n / 10));
    for (const text of [ascii, mixed]) {
      await client.send(text);
      expect(await client.recv()).toBe(text);
    }
  });

  test('send(bytes, { binary: false }): UTF-8 bytes go as a text message; other bytes are refused with a TypeError, the connection unharmed', async () => {
    await client.send(Buffer.from('héllo as bytes', 'utf8'), { binary: false });
    expect(await client.recv()).toBe('héllo as bytes');
    await client.send(new Uint8Array(Buffer.from('x'.repeat(70_000))), { binary: false });
    expect(await client.recv()).toBe('x'.repeat(70_000));
    await expect(client.send(Buffer.from([0x61, 0xff, 0x62]), { binary: false })).rejects.toThrow(TypeError);
    await expect(client.send(Buffer.from([0xe2, 0x82]), { binary: false })).rejects.toThrow('not valid UTF-8');
    await client.send('still open');
    expect(await client.recv()).toBe('still open');
  });

  test("ws's send(data, callback) rejects with a TypeError and sends nothing (it sent, and the callback was never called); so do options that are no object", async () => {
    let called = false;
    const callback = (): void => void (called = true);
    await expect(Reflect.apply(client.send, client, ['with a callback', callback])).rejects.toThrow(/callback: await the promise/);
    await expect(Reflect.apply(client.send, client, ['with true', true])).rejects.toThrow(TypeError);
    expect(called).toBe(false);
    // Nothing of them went out: the next message received is the next one sent.
    await client.send('next', undefined);
    expect(await client.recv()).toBe('next');
  });

  test('every kind of bytes: views with offsets, other typed arrays, a DataView, a SharedArrayBuffer (also in the type), empty ones', async () => {
    const base = Buffer.from('0123456789');
    const shared = new SharedArrayBuffer(4);
    new Uint8Array(shared).set([9, 8, 7, 6]);
    const cases: Array<[Parameters<WebSocketConnection['send']>[0], number[]]> = [
      [new Uint8Array(base.buffer, base.byteOffset + 2, 3), [0x32, 0x33, 0x34]],
      [new DataView(new Uint8Array([1, 2, 3, 4]).buffer, 1, 2), [2, 3]],
      [new Uint16Array([0x0201]), [1, 2]],
      [shared, [9, 8, 7, 6]],
      [new Uint8Array(shared, 1, 2), [8, 7]],
      [new ArrayBuffer(0), []],
      [new Uint8Array(0), []],
    ];
    for (const [data, bytes] of cases) {
      await client.send(data);
      expect([...((await client.recv()) as Buffer)]).toEqual(bytes);
    }
  });

  test('bytes from another realm (a vm context): an ArrayBuffer and a view are sent as binary', async () => {
    const buffer = runInNewContext('new Uint8Array([1, 2, 3]).buffer') as ArrayBuffer;
    // (A cross-realm ArrayBuffer is no `instanceof ArrayBuffer`: send() refused it with a TypeError.)
    expect(buffer instanceof ArrayBuffer).toBe(false);
    await client.send(buffer);
    expect([...((await client.recv()) as Buffer)]).toEqual([1, 2, 3]);
    await client.send(runInNewContext('new DataView(new Uint8Array([4, 5, 6]).buffer, 1)') as DataView);
    expect([...((await client.recv()) as Buffer)]).toEqual([5, 6]);
  });

  test('16 MiB binary', async () => {
    const big = Buffer.alloc(16 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big[i] = (i >> 12) & 0xff;
    await client.send(big);
    const echoed = (await client.recv()) as Buffer;
    expect(echoed.length).toBe(big.length);
    expect(echoed.equals(big)).toBe(true);
  });
});

describe('a connection is an EventEmitter', () => {
  test('instanceof, events.once/on helpers, listener bookkeeping and max listeners behave as on any emitter', async () => {
    const client = await connect(server.url);
    expect(client).toBeInstanceOf(EventEmitter);
    expect(client.getMaxListeners()).toBe(EventEmitter.defaultMaxListeners);
    client.setMaxListeners(3);
    expect(client.getMaxListeners()).toBe(3);

    const seen: string[] = [];
    const first = (m: unknown): void => void seen.push(`first ${String(m)}`);
    const second = (m: unknown): void => void seen.push(`second ${String(m)}`);
    client.on('message', first);
    client.once('message', second);
    expect(client.listenerCount('message')).toBe(2);
    expect(client.eventNames()).toEqual(['message']);
    // events.on() iterates what the emitter emits, beside the listeners.
    const iterator = on(client, 'message');
    for (const text of ['a', 'b', 'c']) {
      await client.send(text);
      expect(String((await iterator.next()).value[0])).toBe(text);
    }
    await iterator.return!();
    client.off('message', first);
    expect(client.listenerCount('message')).toBe(0);
    expect(seen).toEqual(['first a', 'second a', 'first b', 'first c']);

    const closed = once(client, 'close');
    await client.close(1000, 'done');
    expect(await closed).toEqual([1000, 'done']);
  });

  test('a connection read with recv() has no listener table; the first listener, added any way, makes one', async () => {
    const client = await connect(server.url);
    // Footprint guard: nothing listens yet, so there is no table (and emit() is a no-op).
    expect(Object.prototype.hasOwnProperty.call(client, '_events')).toBe(false);
    expect(client.emit('drain')).toBe(false);
    expect(client.listenerCount('message')).toBe(0);
    await client.send('r');
    expect(await client.recv()).toBe('r');

    const order: string[] = [];
    client.prependOnceListener('message', () => void order.push('prepended once'));
    client.prependListener('message', () => void order.push('prepended'));
    const echoed = once(client, 'message');
    await client.send('e');
    await echoed;
    expect(order).toEqual(['prepended', 'prepended once']);
    expect(client.listenerCount('message')).toBe(1);
    await client.close();
  });

  test('the listener table inherits no names: Object.prototype member names are ordinary events', async () => {
    const client = await connect(server.url);
    client.on('message', () => {});
    const emitter = client as unknown as { on(type: string, f: (x: unknown) => void): void; emit(type: string, x: unknown): boolean; listenerCount(type: string): number };
    for (const name of ['toString', 'constructor', 'hasOwnProperty', '__proto__', 'valueOf']) {
      expect(emitter.listenerCount(name)).toBe(0);
      expect(emitter.emit(name, 1)).toBe(false);
    }
    const got: unknown[] = [];
    emitter.on('hasOwnProperty', (x) => got.push(x));
    emitter.on('__proto__', (x) => got.push(x));
    expect(emitter.emit('hasOwnProperty', 'a')).toBe(true);
    expect(emitter.emit('__proto__', 'b')).toBe(true);
    expect(got).toEqual(['a', 'b']);
    expect(client.eventNames()).toEqual(['message', 'hasOwnProperty', '__proto__']);
    await client.close();
  });
});

describe('a message listener added after messages arrived', () => {
  let greeter: WebSocketServer;
  beforeAll(async () => {
    // Greets at once: the greetings go out with the 101 and reach the client with the handshake
    // response, before connect() has resolved and before anyone can listen.
    greeter = await serve({ perMessageDeflate: false }, (conn) => {
      void conn.send('hello').catch(() => undefined);
      void conn.send(Buffer.of(1, 2, 3)).catch(() => undefined);
      void conn.send('third').catch(() => undefined);
      conn.on('message', (m) => void conn.send(m).catch(() => undefined));
    });
  });
  afterAll(() => greeter.close());

  test('client: what came with the handshake response goes to the first listener, in order, kinds kept, before later messages', async () => {
    for (const textMessages of ['string', 'buffer'] as const) {
      const client = await connect(greeter.url, { textMessages });
      const seen: Array<[string, boolean]> = [];
      const done = new Promise<void>((resolve) => {
        client.on('message', (data, binary) => {
          seen.push([Buffer.isBuffer(data) ? (binary ? data.toString('hex') : data.toString()) : data, binary]);
          if (seen.length === 4) resolve();
        });
      });
      await client.send('later');
      await done;
      expect(seen).toEqual([
        ['hello', false],
        ['010203', true],
        ['third', false],
        ['later', false],
      ]);
      await client.close();
    }
  });

  test('messages queued while nobody listened go to a listener added later, before the next message; recv() gets none of them', async () => {
    const client = await connect(server.url);
    await client.send('one');
    await client.send('two');
    // Both echoes are queued (nobody reads): wait until the second one is in.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const seen: unknown[] = [];
    client.on('message', (m) => void seen.push(m));
    await client.send('three');
    await once(client, 'message');
    expect(seen).toEqual(['one', 'two', 'three']);
    await client.close();
    expect(await client.recv()).toBe(EOF);
  });
});

describe("textMessages: 'buffer' (text handed over as its UTF-8 bytes, as ws does)", () => {
  let bytesServer: WebSocketServer;
  const seen: Array<{ data: unknown; binary: boolean }> = [];
  beforeAll(async () => {
    bytesServer = await serve({ textMessages: 'buffer' }, (conn) => {
      conn.on('message', (data, binary) => {
        seen.push({ data, binary });
        // Passed on as it came: text stays text, without a string in between.
        void conn.send(data, { binary }).catch(() => undefined);
      });
    });
  });
  afterAll(() => bytesServer.close());

  test.each([
    ['without compression (a large text gathered by the parser)', false],
    ['with permessage-deflate (large texts inflated)', true],
  ])('%s: whole, large and fragmented text arrive as checked Buffers, binary as binary; echoed as they came', async (_name, perMessageDeflate) => {
    seen.length = 0;
    const client = await connect(bytesServer.url, { perMessageDeflate });
    expect(client.extensions !== '').toBe(perMessageDeflate);
    const large = 'é日😀 json {"a":1} '.repeat(20_000);
    for (const text of ['héllo', '', large]) {
      await client.send(text);
      expect(await client.recv()).toBe(text);
    }
    await client.sendStream(['frag', 'mént', 'ed'].map((part) => Buffer.from(part)), { binary: false });
    expect(await client.recv()).toBe('fragménted');
    await client.send(Buffer.from([1, 2, 3]));
    expect(await client.recv()).toEqual(Buffer.from([1, 2, 3]));
    await client.close();
    expect(seen.map((m) => [Buffer.isBuffer(m.data), m.binary])).toEqual([
      [true, false],
      [true, false],
      [true, false],
      [true, false],
      [true, true],
    ]);
    expect((seen[0]!.data as Buffer).toString('utf8')).toBe('héllo');
    expect((seen[2]!.data as Buffer).equals(Buffer.from(large))).toBe(true);
    expect((seen[3]!.data as Buffer).toString('utf8')).toBe('fragménted');
  });

  test('invalid UTF-8 still fails with 1007, whole or before a large frame is in', async () => {
    const raw = await RawClient.connect(bytesServer.port);
    raw.send({ opcode: 1, payload: Buffer.of(0x61, 0xc0, 0x80) });
    expect((await raw.readClose())?.code).toBe(1007);
    raw.destroy();
    const big = Buffer.alloc(400_000, 0x62);
    big[150_000] = 0xff;
    const raw2 = await RawClient.connect(bytesServer.port);
    const bytes = frame({ opcode: 1, payload: big, mask: true });
    raw2.write(bytes.subarray(0, 160_000));
    expect((await raw2.readClose())?.code).toBe(1007);
    raw2.destroy();
  });

  test('a client with it receives text as Buffers', async () => {
    const client = await connect(server.url, { textMessages: 'buffer', perMessageDeflate: false });
    await client.send('from the client');
    const echoed = await client.recv();
    expect(Buffer.isBuffer(echoed)).toBe(true);
    expect((echoed as Buffer).toString()).toBe('from the client');
    await client.close();
  });
});

describe('sendStream() whose source fails', () => {
  /** A source that gives `parts`, then throws. */
  async function* failing(parts: string[], error: unknown): AsyncGenerator<Buffer> {
    for (const part of parts) yield Buffer.from(part);
    throw error;
  }

  test.each([
    ['throws', new Error('source failed')],
    ['gives something that is not data', 'not data'],
  ])('after fragments went out (it %s): it rejects, the connection closes with 1011 at once, and the send queued behind it rejects; the peer sees no protocol error', async (_name, failure) => {
    serverConns.length = 0;
    const client = await connect(server.url, { perMessageDeflate: false });
    const source =
      failure instanceof Error
        ? failing(['part 1', 'part 2'], failure)
        : (async function* () {
            yield Buffer.from('part 1');
            yield Buffer.from('part 2');
            yield 42 as unknown as Buffer;
          })();
    const streamed = client.sendStream(source, { binary: false, fragmentSize: 4 });
    const queued = client.send('queued behind the stream');
    await expect(streamed).rejects.toThrow(failure instanceof Error ? 'source failed' : TypeError);
    await expect(queued).rejects.toThrow('closed');
    // (Before: the queued send wrote a new message into the open one; the peer closed with 1002.)
    await bothClosedWith1011(client);
  });

  test('before any fragment went out: nothing was sent, and the connection carries on', async () => {
    const client = await connect(server.url, { perMessageDeflate: false });
    // An async source that fails before its first chunk.
    await expect(client.sendStream(failing([], new Error('early')), { binary: false })).rejects.toThrow('early');
    // A synchronous one after its first chunk: its last fragment waits until the next chunk is
    // known (taken at once, without waiting), so nothing of it went out. (An async source's chunk
    // goes out as it comes: its failure after that is the 1011 above.)
    const sync = function* (): Generator<Buffer> {
      yield Buffer.from('only part');
      throw new Error('early');
    };
    await expect(client.sendStream(sync(), { binary: false })).rejects.toThrow('early');
    await client.send('still fine');
    expect(await client.recv()).toBe('still fine');
    await client.close();
    expect(client.closeStatus).toBe(1000);
  });
});

describe('sendStream() whose source waits when the connection closes', () => {
  test('it rejects with ConnectionClosedError at once, the send queued behind it too, and a stream source is destroyed', async () => {
    serverConns.length = 0;
    const client = await connect(server.url, { perMessageDeflate: false });
    const source = new PassThrough();
    // Two chunks (each goes out as it comes), then nothing: a feed that waits.
    source.write(Buffer.from('part 1'));
    source.write(Buffer.from('part 2'));
    const streamed = client.sendStream(source, { fragmentSize: 4 });
    const queued = client.send('queued behind the stream');
    await until(() => serverConns.length === 1, 'the server connection');
    // (Before: the promises never settled, and the source was held for ever.)
    serverConns[0]!.terminate();
    await expect(streamed).rejects.toBeInstanceOf(ConnectionClosedError);
    await expect(queued).rejects.toBeInstanceOf(ConnectionClosedError);
    expect(source.destroyed).toBe(true);
    expect(client.closeStatus).toBe(1006);
  });
});

describe('sends behind a sendStream()', () => {
  test('a send() made while a sendStream() runs goes out in call order: before the sendStream() calls and the close() made after it', async () => {
    const received: unknown[] = [];
    const recorder = await serve({ port: 0, host: '127.0.0.1' }, (conn) => void conn.on('message', (m) => received.push(m)));
    try {
      const client = await connect(recorder.url);
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      async function* slow(): AsyncGenerator<string> {
        yield 'a1';
        await gate;
        yield 'a2';
      }
      const sends = [client.sendStream(slow(), { binary: false }), client.send('B'), client.sendStream(['C'], { binary: false }), client.send('D')];
      const closed = client.close();
      release();
      const results = await Promise.allSettled(sends);
      // (Before: 'B' waited behind the stream of 'C', then behind the close frame: rejected, lost.)
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
      await closed;
      expect(client.closeStatus).toBe(1000);
      expect(received).toEqual(['a1a2', 'B', 'C', 'D']);
    } finally {
      await recorder.close();
    }
  });
});

describe('sendStream() of text', () => {
  test('a string cut between the halves of a surrogate pair keeps its characters (each half went out as U+FFFD)', async () => {
    const client = await connect(server.url, { perMessageDeflate: false });
    const text = 'a😀b🎉c';
    // Cut at every UTF-16 index, as `text.slice()` cuts: the pairs are cut too.
    await client.sendStream([...text.split('')], { binary: false, fragmentSize: 2 });
    expect(await client.recv()).toBe(text);
    await client.sendStream(['x\ud83d', '\ude00', Buffer.from('y')], { binary: false });
    expect(await client.recv()).toBe('x😀y');
    // A high surrogate that no low one follows is U+FFFD, as send() makes it.
    await client.sendStream(['z\ud83d', Buffer.from('!'), 'end\ud83d']);
    expect((await client.recv() as Buffer).toString()).toBe('z\ufffd!end\ufffd');
    await client.close();
    expect(client.closeStatus).toBe(1000);
  });

  test('bytes that are not UTF-8 fail the source with a TypeError, as send() refuses them, instead of a 1007 from the peer', async () => {
    serverConns.length = 0;
    const client = await connect(server.url, { perMessageDeflate: false });
    // Before any fragment went out (the chunk is checked before it goes out): nothing is sent.
    await expect(client.sendStream([Buffer.from([0x61, 0xff])], { binary: false })).rejects.toThrow(TypeError);
    // A character cut at the end of the text (an array's end is known before its last fragment goes out).
    await expect(client.sendStream([Buffer.from([0x61, 0xe2, 0x82])], { binary: false })).rejects.toThrow(TypeError);
    // A character cut between chunks is fine.
    await client.sendStream([Buffer.from([0x61, 0xe2]), Buffer.from([0x82, 0xac])], { binary: false });
    expect(await client.recv()).toBe('a€');
    // After fragments went out: the message cannot be finished, 1011 (the peer saw valid text only).
    const streamed = client.sendStream([Buffer.from('part 1'), Buffer.from('part 2'), Buffer.from([0xed, 0xa0, 0x80])], { binary: false, fragmentSize: 4 });
    await expect(streamed).rejects.toThrow(TypeError);
    // (Before: the bytes went out, and the peer failed the connection with 1007.)
    await bothClosedWith1011(client);
  });

  test.each([0, -1, NaN])('fragmentSize %p rejects with a RangeError and sends nothing', async (fragmentSize) => {
    const client = await connect(server.url, { perMessageDeflate: false });
    // (Before: 0 and -1 sent empty fragments without end, NaN an empty message.)
    await expect(client.sendStream([Buffer.from('data')], { fragmentSize })).rejects.toThrow(RangeError);
    await client.send('next');
    expect(await client.recv()).toBe('next');
    await client.close();
  });
});
