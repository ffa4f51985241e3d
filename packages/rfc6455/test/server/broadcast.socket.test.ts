/**
 * broadcast() and prepared messages over real sockets: every connection gets exactly the message,
 * in order with what else it is sent; connections that compress each message from a fresh context
 * share one compression per zlib setting, and the bytes on the wire are what each connection would
 * have sent on its own; everything else (context takeover, clients, which mask, hybi-00) takes the
 * per-connection path.
 */
import { once } from 'node:events';
import WebSocket from 'ws';
import {
  broadcast,
  connect,
  EOF,
  prepareMessage,
  PreparedMessage,
  serve,
  type Message,
  type ServeOptions,
  type WebSocketConnection,
  type WebSocketServer,
} from '../../src/index.js';
import { PerMessageDeflate } from '../../src/extensions/permessage-deflate.js';
import { RawClient } from '../helpers/raw-client.js';
import { delay, until } from '../helpers/wait.js';

/** Compressible text of `size` bytes, different for every seed. */
function json(size: number, seed: number): string {
  let s = '[';
  for (let i = 0; s.length < size; i++) s += JSON.stringify({ id: i + seed, name: `user${(i * 7 + seed) % 13}`, on: i % 3 === 0 }) + ',';
  return s.slice(0, size);
}

/** A `ws` client that records every message (as text or bytes). */
class WsPeer {
  readonly messages: Array<{ data: string | Buffer; binary: boolean }> = [];
  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, binary: boolean) => this.messages.push({ data: binary ? Buffer.from(data) : data.toString('utf8'), binary }));
  }
  static async open(url: string, options: WebSocket.ClientOptions = {}): Promise<WsPeer> {
    const peer = new WsPeer(new WebSocket(url, options));
    await once(peer.ws, 'open');
    return peer;
  }
}

describe('broadcast() and prepared messages', () => {
  let server: WebSocketServer;
  let conns: WebSocketConnection[];
  const peers: WsPeer[] = [];

  async function start(options: ServeOptions = {}): Promise<void> {
    conns = [];
    server = await serve({ port: 0, ...options }, (conn) => {
      conns.push(conn);
    });
  }
  async function open(n: number, options: WebSocket.ClientOptions = {}): Promise<WsPeer[]> {
    const before = conns.length;
    const opened = await Promise.all(Array.from({ length: n }, () => WsPeer.open(server.url, options)));
    peers.push(...opened);
    await until(() => conns.length === before + n, 'the server to see the connections');
    return opened;
  }
  afterEach(async () => {
    for (const p of peers.splice(0)) p.ws.terminate();
    await server?.close();
  });

  test('every connection gets the message, text or binary, small or large; the count is returned', async () => {
    await start();
    const clients = await open(5);
    const big = json(100_000, 1);
    const bytes = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 13) & 0xff));
    expect(server.broadcast('héllo ✓')).toBe(5);
    expect(broadcast(conns, big)).toBe(5);
    expect(server.broadcast(bytes)).toBe(5);
    expect(server.broadcast(Uint8Array.of(1, 2, 3))).toBe(5);
    expect(server.broadcast('as bytes', { binary: true })).toBe(5);
    expect(server.broadcast(Buffer.from('bytes as text'), { binary: false })).toBe(5);
    await until(() => clients.every((c) => c.messages.length === 6), 'six messages each');
    for (const c of clients) {
      expect(c.messages).toEqual([
        { data: 'héllo ✓', binary: false },
        { data: big, binary: false },
        { data: bytes, binary: true },
        { data: Buffer.from([1, 2, 3]), binary: true },
        { data: Buffer.from('as bytes'), binary: true },
        { data: 'bytes as text', binary: false },
      ]);
    }
  });

  test('a prepared message is reusable, goes through send() too, and refuses bytes that are not UTF-8 as text', async () => {
    await start();
    const clients = await open(3);
    const message = prepareMessage('prepared once');
    expect(message).toBeInstanceOf(PreparedMessage);
    expect(message.binary).toBe(false);
    expect(message.data.equals(Buffer.from('prepared once'))).toBe(true);
    expect(broadcast(conns, message)).toBe(3);
    expect(broadcast(conns.slice(1), message)).toBe(2);
    await conns[0]!.send(message);
    await until(() => clients.every((c) => c.messages.length === 2), 'two messages each');
    for (const c of clients) expect(c.messages.map((m) => m.data)).toEqual(['prepared once', 'prepared once']);
    expect(() => prepareMessage(Buffer.from([0xff, 0xfe]), { binary: false })).toThrow(TypeError);
    expect(() => prepareMessage(42 as unknown as string)).toThrow(TypeError);
    expect(message.compressions).toBe(0);
  });

  test('messages broadcast by one piece of synchronous code are held and leave together after it; a close made with them still follows them', async () => {
    await start();
    const clients = await open(3);
    const frameBytes = 2 + 'burst 0'.length;
    for (let i = 0; i < 10; i++) expect(server.broadcast(`burst ${i}`)).toBe(3);
    // Held: nothing has gone to the sockets yet (a plain send would have been written at once).
    for (const conn of conns) expect(conn.bufferedAmount).toBe(10 * frameBytes);
    await Promise.resolve();
    for (const conn of conns) expect(conn.bufferedAmount).toBe(0);
    // Held messages, then a close right after them: every message arrives before the close frame.
    server.broadcast('last');
    const closed = clients.map((c) => once(c.ws, 'close'));
    void conns[0]!.close(1000, 'bye');
    const [code] = (await closed[0]) as [number];
    expect(code).toBe(1000);
    const expected = [...Array.from({ length: 10 }, (_, i) => `burst ${i}`), 'last'];
    expect(clients[0]!.messages.map((m) => m.data)).toEqual(expected);
    await until(() => clients.every((c) => c.messages.length === 11), 'every message');
    for (const c of clients) expect(c.messages.map((m) => m.data)).toEqual(expected);
  });

  test('a random mix of broadcasts and single sends, compressed and not, arrives complete and in order everywhere', async () => {
    await start({ perMessageDeflate: { serverNoContextTakeover: true } });
    const clients = [
      ...(await open(3, { perMessageDeflate: false })),
      ...(await open(3, { perMessageDeflate: true })),
      ...(await open(3, { perMessageDeflate: { serverMaxWindowBits: 9 } })),
    ];
    // Which client is which server connection: each gets its index as a first message.
    conns.forEach((conn, i) => void conn.send(`#${i}`));
    await until(() => clients.every((c) => c.messages.length === 1), 'the indexes');
    const byConn = conns.map((_, i) => clients.find((c) => c.messages[0]!.data === `#${i}`)!);
    const expected = conns.map(() => [] as Array<string | Buffer>);
    let x = 12345;
    const rand = (n: number): number => ((x = (Math.imul(x, 1103515245) + 12345) & 0x7fffffff), (x >>> 8) % n);
    const sizes = [0, 10, 900, 1024, 3000, 40_000, 120_000];
    for (let i = 0; i < 300; i++) {
      const size = sizes[rand(sizes.length)]!;
      const text = rand(2) === 0;
      const body = json(size, i).slice(0, size);
      const data: string | Buffer = text ? body : Buffer.from(body);
      if (rand(3) === 0) {
        const k = rand(conns.length);
        void conns[k]!.send(data, { compress: rand(4) !== 0 });
        expected[k]!.push(data);
      } else {
        const targets = conns.filter(() => rand(4) !== 0);
        expect(broadcast(targets, data, { compress: rand(4) !== 0 })).toBe(targets.length);
        for (const t of targets) expected[conns.indexOf(t)]!.push(data);
      }
      if (rand(10) === 0) await delay(rand(3));
    }
    await until(() => byConn.every((c, k) => c.messages.length === expected[k]!.length + 1), 'every message', 30_000);
    // Compared with equals() (a deep toEqual of this many large Buffers takes tens of seconds).
    byConn.forEach((c, k) => {
      const got = c.messages.slice(1).map((m) => m.data);
      const want = expected[k]!;
      const firstDifference = got.findIndex((m, j) => {
        const e = want[j]!;
        return Buffer.isBuffer(e) ? !(Buffer.isBuffer(m) && m.equals(e)) : m !== e;
      });
      expect({ connection: k, count: got.length, firstDifference }).toEqual({ connection: k, count: want.length, firstDifference: -1 });
    });
    // Every connection had a real share of the mix (with this seed, about 340 frames waited for a
    // shared compression and 430 uncompressed ones were queued behind one, counted once by hand).
    expect(expected.every((e) => e.length > 100)).toBe(true);
  });

  test('closing and closed connections are skipped and not counted', async () => {
    await start();
    const clients = await open(4);
    await conns[0]!.close();
    void conns[1]!.close(); // closing: our close frame is out
    expect(server.broadcast('after')).toBe(2);
    await until(() => clients[2]!.messages.length === 1 && clients[3]!.messages.length === 1, 'the open ones');
    await delay(50);
    expect(clients[0]!.messages).toEqual([]);
    expect(clients[1]!.messages).toEqual([]);
  });

  test('in order with what else each connection is sent, also behind a queued compression and a sendStream()', async () => {
    // Context takeover (the default): each connection compresses for itself, in its own queue.
    await start({ perMessageDeflate: {} });
    const clients = await open(3, { perMessageDeflate: true });
    const big = json(200_000, 2); // past syncLimit: compressed in the thread pool
    void conns[0]!.send(big); // queued behind its compression
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const streamed = conns[1]!.sendStream(
      (async function* () {
        yield 'part one, ';
        await gate;
        yield 'part two';
      })(),
      { binary: false },
    );
    expect(server.broadcast('second')).toBe(3);
    void conns[0]!.send('third');
    void conns[1]!.send('third');
    void conns[2]!.send('third');
    release();
    await streamed;
    await until(() => clients.every((c) => c.messages.length >= 2) && clients[0]!.messages.length === 3, 'every message');
    expect(clients[0]!.messages.map((m) => m.data)).toEqual([big, 'second', 'third']);
    expect(clients[1]!.messages.map((m) => m.data)).toEqual(['part one, part two', 'second', 'third']);
    expect(clients[2]!.messages.map((m) => m.data)).toEqual(['second', 'third']);
  });

  test('behind a sendStream() that waits for its source, what piles up counts against maxBufferedAmount: one abort (1008), then skipped', async () => {
    await start({ perMessageDeflate: false, maxBufferedAmount: 64 * 1024 });
    await open(1);
    const conn = conns[0]!;
    const errors: Error[] = [];
    conn.on('error', (error) => errors.push(error));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const streamed = conn.sendStream(
      (async function* () {
        yield 'part one, ';
        await gate; // a live feed with nothing new yet
        yield 'part two';
      })(),
      { binary: false },
    );
    streamed.catch(() => undefined);
    const message = prepareMessage(Buffer.alloc(10 * 1024, 1));
    let sent = 0;
    for (let i = 0; i < 6; i++) sent += broadcast([conn], message);
    expect(sent).toBe(6);
    // Waiting behind the stream, they are buffered: counted as given.
    expect(conn.bufferedAmount).toBeGreaterThanOrEqual(60 * 1024);
    expect(errors).toEqual([]);
    // The next one passes the cap. (Before: nothing was counted, and 200 MB piled up against a 1 MiB cap.)
    for (let i = 0; i < 1000; i++) sent += broadcast([conn], message);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1008);
    // One error, not one per message broadcast before the transport closed; those were refused.
    expect(errors.map((e) => (e as { code?: string }).code)).toEqual(['WS_SEND_BUFFER_FULL']);
    expect(sent).toBe(7);
    release();
    await expect(streamed).rejects.toThrow();
  });

  test('a reader over maxBufferedAmount whose error listener throws is still aborted (1008) once, and skipped after', async () => {
    await start({ perMessageDeflate: false, maxBufferedAmount: 64 * 1024 });
    await open(1);
    const conn = conns[0]!;
    const errors: string[] = [];
    conn.on('error', (error) => {
      errors.push((error as { code?: string }).code ?? error.message);
      throw new Error('a listener that throws');
    });
    const message = prepareMessage(Buffer.alloc(10 * 1024, 1));
    const counts: Array<number | string> = [];
    // One synchronous burst: the socket holds it until the code is done, so the cap is crossed here.
    for (let i = 0; i < 100; i++) {
      try {
        counts.push(broadcast([conn], message));
      } catch (error) {
        counts.push((error as Error).message);
      }
    }
    // The 7th message crossed the cap; the listener's exception did not stop the abort (before: no
    // abort, an error per later message, and the socket kept every message: 1 MB against 64 KiB),
    // and broadcast() threw it, as emit() would.
    expect(errors).toEqual(['WS_SEND_BUFFER_FULL']);
    expect(counts.slice(0, 7)).toEqual([1, 1, 1, 1, 1, 1, 'a listener that throws']);
    expect(counts.slice(7).every((n) => n === 0)).toBe(true);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1008);
  });

  test("an 'error' listener that throws stops no broadcast: every other connection gets the message, then broadcast() throws", async () => {
    await start({ perMessageDeflate: false, maxBufferedAmount: 64 * 1024 });
    const clients = await open(4);
    const thrown = [new Error('listener of 1 threw'), new Error('listener of 3 threw')];
    const codes: string[] = [];
    for (const [index, thrownError] of [[1, thrown[0]!], [3, thrown[1]!]] as const) {
      conns[index]!.on('error', (error) => {
        codes.push(`${index}: ${(error as { code?: string }).code}`);
        throw thrownError;
      });
    }
    // Connections 1 and 3 hold 60 KiB (held until this code is done): the message crosses their cap.
    void conns[1]!.send(Buffer.alloc(60 * 1024)).catch(() => undefined);
    void conns[3]!.send(Buffer.alloc(60 * 1024)).catch(() => undefined);
    const message = prepareMessage(Buffer.alloc(10 * 1024, 7));
    // Before: both exceptions were swallowed (broadcast() returned 2, as if they had been skipped).
    let caught: unknown;
    try {
      broadcast(conns, message);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(AggregateError);
    expect((caught as AggregateError).errors).toEqual(thrown);
    expect(codes).toEqual(['1: WS_SEND_BUFFER_FULL', '3: WS_SEND_BUFFER_FULL']);
    await Promise.all([conns[1]!.whenClosed, conns[3]!.whenClosed]);
    expect([conns[1]!.closeStatus, conns[3]!.closeStatus]).toEqual([1008, 1008]);
    await until(() => clients[0]!.messages.length === 1 && clients[2]!.messages.length === 1, 'the message on 0 and 2');
    expect(clients[0]!.messages[0]!.data).toEqual(message.data);
    expect(clients[2]!.messages[0]!.data).toEqual(message.data);
    // One exception alone is rethrown as it was thrown.
    const single = new Error('alone');
    conns[0]!.on('error', () => {
      throw single;
    });
    void conns[0]!.send(Buffer.alloc(60 * 1024)).catch(() => undefined);
    expect(() => broadcast(conns, message)).toThrow(single);
    await until(() => clients[2]!.messages.length === 2, 'the second message on 2');
  });

  test('server_no_context_takeover: one compression per zlib setting, shared by every connection that has it', async () => {
    await start({ perMessageDeflate: { serverNoContextTakeover: true } });
    const plain = await open(2, { perMessageDeflate: false });
    const deflated = await open(3, { perMessageDeflate: true });
    const small = await open(2, { perMessageDeflate: { serverMaxWindowBits: 10 } });
    // A deflate connection still compressing a large message of its own: a shared payload that is
    // ready at once still waits behind it.
    const own = json(400_000, 7);
    void conns[2]!.send(own);
    const ready = prepareMessage(json(3_000, 8));
    expect(broadcast(conns, ready)).toBe(7);
    await until(() => deflated.some((c) => c.messages.length === 2), 'both messages on that connection');
    const busy = deflated.find((c) => c.messages.length === 2)!;
    expect(busy.messages.map((m) => m.data)).toEqual([own, ready.data.toString()]);
    for (const c of [...plain, ...deflated, ...small]) c.messages.length = 0;
    for (const size of [5_000, 300_000]) {
      // 5 KB is compressed at once; 300 KB in the thread pool, the connections waiting for it.
      const text = json(size, size);
      const message = prepareMessage(text);
      // Observe (not replace) the engines: how many times the message is really compressed.
      const proto = PerMessageDeflate.prototype;
      const original = proto.compressStandalone;
      let compressed = 0;
      proto.compressStandalone = function (this: PerMessageDeflate, ...args: Parameters<typeof original>) {
        compressed++;
        return original.apply(this, args);
      };
      try {
        expect(broadcast(conns, message)).toBe(7);
      } finally {
        proto.compressStandalone = original;
      }
      // conns[2..4] are the deflate connections (opened after the two plain ones): one of them is
      // sent another message at once, which must come after the shared compression.
      const after = `after ${size}`;
      void conns[3]!.send(after);
      expect(message.compressions).toBe(2); // window 15 and window 10
      expect(compressed).toBe(2); // once for each, not once per connection (5)
      await until(() => [...plain, ...deflated, ...small].every((c) => c.messages.some((m) => m.data === text)), 'the message everywhere');
      await until(() => deflated.some((c) => c.messages.at(-1)?.data === after), 'the send after it');
      const target = deflated.find((c) => c.messages.at(-1)?.data === after)!;
      expect(target.messages.slice(-2).map((m) => m.data)).toEqual([text, after]);
    }
  });

  test('on the wire: RSV1 and the same payload a connection compresses for itself', async () => {
    await start({ perMessageDeflate: { serverNoContextTakeover: true } });
    const raw = await RawClient.connect(server.port, { headers: ['Sec-WebSocket-Extensions: permessage-deflate'] });
    expect(raw.response.headers['sec-websocket-extensions']).toMatch(/server_no_context_takeover/);
    await until(() => conns.length === 1, 'the connection');
    const text = json(20_000, 3);
    expect(server.broadcast(text)).toBe(1);
    const shared = await raw.readFrame();
    void conns[0]!.send(text); // compressed by the connection itself
    const own = await raw.readFrame();
    expect(shared!.rsv).toBe(4);
    expect(shared!.opcode).toBe(1);
    expect(shared!.payload.length).toBeLessThan(text.length / 3);
    expect(shared!.payload.equals(own!.payload)).toBe(true);
    // Below the threshold (1024 by default): not compressed.
    server.broadcast('tiny');
    const tiny = await raw.readFrame();
    expect(tiny!.rsv).toBe(0);
    expect(tiny!.payload.toString()).toBe('tiny');
    // compress: false
    server.broadcast(text, { compress: false });
    const uncompressed = await raw.readFrame();
    expect(uncompressed!.rsv).toBe(0);
    expect(uncompressed!.payload.toString()).toBe(text);
    raw.destroy();
  });

  test('context takeover: no shared compression, each connection compresses on its own and gets the message', async () => {
    await start({ perMessageDeflate: {} });
    const clients = await open(3, { perMessageDeflate: true });
    const text = json(8_000, 4);
    const message = prepareMessage(text);
    expect(broadcast(conns, message)).toBe(3);
    expect(broadcast(conns, message)).toBe(3);
    await until(() => clients.every((c) => c.messages.length === 2), 'two messages each');
    for (const c of clients) expect(c.messages.map((m) => m.data)).toEqual([text, text]);
    expect(message.compressions).toBe(0);
  });

  test('hybi-00 connections get text (from a string or from bytes) and are skipped for binary', async () => {
    await start();
    const [modern] = await open(1);
    const old = await connect(server.url, { variant: 'hybi00', origin: 'http://example.com' });
    await until(() => conns.length === 2, 'both connections');
    expect(conns.map((c) => c.variant).sort()).toEqual(['hybi00', 'rfc6455']);
    const got: Message[] = [];
    old.on('message', (m) => got.push(m));
    expect(server.broadcast('to both: ✓')).toBe(2);
    expect(server.broadcast(Buffer.from('binary'))).toBe(1);
    expect(server.broadcast(prepareMessage(Buffer.from('text from bytes ✓'), { binary: false }))).toBe(2);
    await until(() => got.length === 2 && modern!.messages.length === 3, 'the messages');
    expect(got).toEqual(['to both: ✓', 'text from bytes ✓']);
    expect(modern!.messages.map((m) => m.data)).toEqual(['to both: ✓', Buffer.from('binary'), 'text from bytes ✓']);
    await old.close();
  });

  test('client connections (which mask every frame) take it too, compressed or not', async () => {
    await start({ perMessageDeflate: {} });
    const received: Message[] = [];
    const echoServerConns: WebSocketConnection[] = [];
    const receiver = await serve({ port: 0, perMessageDeflate: { clientNoContextTakeover: true } }, async (conn) => {
      echoServerConns.push(conn);
      for (;;) {
        const m = await conn.recv();
        if (m === EOF) break;
        received.push(m);
      }
    });
    try {
      const clients = await Promise.all([connect(receiver.url), connect(receiver.url, { perMessageDeflate: {} }), connect(receiver.url, { perMessageDeflate: {} })]);
      const text = json(50_000, 5);
      const message = prepareMessage(text);
      expect(broadcast(clients, message)).toBe(3);
      expect(broadcast(clients, Buffer.from('bin'))).toBe(3);
      // The two deflate clients compress from a fresh context (client_no_context_takeover): once, shared.
      expect(message.compressions).toBe(1);
      await until(() => received.length === 6, 'six messages at the receiver');
      expect(received.filter((m) => m === text)).toHaveLength(3);
      expect(received.filter((m) => Buffer.isBuffer(m) && m.toString() === 'bin')).toHaveLength(3);
      await Promise.all(clients.map((c) => c.close()));
    } finally {
      await receiver.close();
    }
  });

  test('the shared compression uses the connections\' settings (level 1 here): the bytes a connection would send itself', async () => {
    await start({ perMessageDeflate: { serverNoContextTakeover: true, level: 1 } });
    const raw = await RawClient.connect(server.port, { headers: ['Sec-WebSocket-Extensions: permessage-deflate'] });
    const peer = (await open(1, { perMessageDeflate: true }))[0]!;
    const text = json(40_000, 6);
    const message = prepareMessage(text);
    // What level 1 makes of it from a fresh context, computed apart.
    const reference = new PerMessageDeflate(
      { serverNoContextTakeover: true, clientNoContextTakeover: false, serverMaxWindowBits: 15, clientMaxWindowBits: 15 },
      'server',
      { maxMessageSize: 1 << 20, level: 1 },
    );
    const level6 = new PerMessageDeflate(
      { serverNoContextTakeover: true, clientNoContextTakeover: false, serverMaxWindowBits: 15, clientMaxWindowBits: 15 },
      'server',
      { maxMessageSize: 1 << 20 },
    );
    const standalone = (engine: PerMessageDeflate): Promise<Buffer> =>
      new Promise<Buffer>((resolve, reject) => {
        const now = engine.compressStandalone(message.data, (e, r) => (e ? reject(e) : resolve(r!)));
        if (now) resolve(now);
      });
    const [expected, other] = await Promise.all([standalone(reference), standalone(level6)]);
    reference.dispose();
    level6.dispose();
    expect(other.equals(expected)).toBe(false); // the level shows in the output
    expect(broadcast(conns, message)).toBe(2);
    expect(message.compressions).toBe(1);
    const frame = await raw.readFrame();
    expect(frame!.rsv).toBe(4);
    expect(frame!.payload.equals(expected)).toBe(true);
    await until(() => peer.messages.length === 1, 'the message');
    expect(peer.messages[0]!.data).toBe(text);
    raw.destroy();
  });
});
