/**
 * The hybi-00 server handshake over real sockets, driven by a raw TCP client: the 8 key3 bytes
 * arriving with the request head (Node's `head`), in a later packet, or split across both; a
 * client that never sends them; bad keys; and `serve({ hybi00: false })`.
 *
 * Ordering, not timing, is what these tests check: a test listens to the server's own `upgrade`
 * event to know that the server has read the head (and how many key3 bytes came with it), checks
 * that nothing has been answered yet, and only then writes the rest.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { connect as netConnect, type Socket } from 'node:net';
import { serve, type ServeOptions, type WebSocketConnection, type WebSocketServer } from '../../src/index.js';
import { encodeHybi00Text, HYBI00_CLOSE } from '../../src/codec/hybi00.js';
import { parseResponse } from '../helpers/raw-client.js';
import { until } from '../helpers/wait.js';

// draft-hixie-thewebsocketprotocol-76 §1.3 worked example.
const KEY1 = '18x 6]8vM;54 *(5:  {   U1]8  z [  8';
const KEY2 = '1_ tx7X d  <  nw  334J702) 7]o}` 0';
const KEY3 = Buffer.from('Tm[K T2u', 'latin1');
const ANSWER = Buffer.from('fQJ,fN/4F4!~K~MH', 'latin1');

function hybi00Head(port: number, init: { path?: string; key1?: string; key2?: string; extra?: string[] } = {}): Buffer {
  return Buffer.from(
    [
      `GET ${init.path ?? '/demo?x=1'} HTTP/1.1`,
      `Host: 127.0.0.1:${port}`,
      'Upgrade: WebSocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key1: ${init.key1 ?? KEY1}`,
      `Sec-WebSocket-Key2: ${init.key2 ?? KEY2}`,
      'Origin: http://example.com',
      ...(init.extra ?? []),
      '',
      '',
    ].join('\r\n'),
    'latin1',
  );
}

/** A raw TCP peer that records every byte it receives and whether the server closed. */
class Peer {
  received = Buffer.alloc(0);
  closed = false;
  private waiters: Array<() => void> = [];
  private constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static open(port: number): Promise<Peer> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ port, host: '127.0.0.1' }, () => resolve(new Peer(socket)));
      socket.once('error', reject);
    });
  }

  /** Resolves once `test(received)` holds, or rejects if the connection closes first. */
  async until(test: (bytes: Buffer) => boolean, what: string): Promise<Buffer> {
    for (;;) {
      if (test(this.received)) return this.received;
      if (this.closed) throw new Error(`closed before ${what}; got ${JSON.stringify(this.received.toString('latin1'))}`);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** Resolves once the server has closed the connection. */
  async untilClosed(): Promise<void> {
    while (!this.closed) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  /** The response head and the 16 answer bytes, once they have all arrived. */
  async handshake(): Promise<{ status: number; statusLine: string; headers: Record<string, string>; answer: Buffer; rest: Buffer }> {
    const bytes = await this.until((b) => {
      const end = b.indexOf('\r\n\r\n');
      return end >= 0 && b.length >= end + 4 + 16;
    }, 'the handshake answer');
    const parsed = parseResponse(bytes)!;
    return { ...parsed, answer: parsed.body.subarray(0, 16), rest: parsed.body.subarray(16) };
  }

  write(bytes: Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(bytes, (e) => (e ? reject(e) : resolve())));
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

interface Fixture {
  server: WebSocketServer;
  /** Each upgrade event the server received: the length of the `head` Node handed over. */
  upgrades: number[];
  /** Resolves on the next upgrade event (after the server's own listener ran). */
  nextUpgrade(): Promise<number>;
  /** Messages received by the echo handler. */
  messages: string[];
  conns: WebSocketConnection[];
}

const servers: WebSocketServer[] = [];
const peers: Peer[] = [];
afterEach(async () => {
  for (const p of peers.splice(0)) p.destroy();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(options: ServeOptions = {}): Promise<Fixture> {
  const messages: string[] = [];
  const conns: WebSocketConnection[] = [];
  const server = await serve(options, async (conn) => {
    conns.push(conn);
    for await (const m of conn) {
      messages.push(String(m));
      await conn.send(`echo: ${String(m)}`).catch(() => undefined);
    }
  });
  servers.push(server);
  const upgrades: number[] = [];
  let waiting: Array<(n: number) => void> = [];
  server.httpServer.on('upgrade', (_req: IncomingMessage, _socket: unknown, head: Buffer) => {
    upgrades.push(head.length);
    const w = waiting;
    waiting = [];
    for (const resolve of w) resolve(head.length);
  });
  return {
    server,
    upgrades,
    messages,
    conns,
    nextUpgrade: () => new Promise((resolve) => waiting.push(resolve)),
  };
}

async function open(port: number): Promise<Peer> {
  const peer = await Peer.open(port);
  peers.push(peer);
  return peer;
}

/** Lets the event loop run (so that anything the server would write has been written). */
function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 50));
}

describe('server reads key3', () => {
  test('server answers when key3 arrives in the same packet as the headers (Node passes it as head)', async () => {
    const f = await start();
    const peer = await open(f.server.port);
    const upgraded = f.nextUpgrade();
    await peer.write(Buffer.concat([hybi00Head(f.server.port), KEY3]));
    expect(await upgraded).toBe(8);
    const res = await peer.handshake();
    expect(res.statusLine).toBe('HTTP/1.1 101 WebSocket Protocol Handshake');
    expect(res.headers.upgrade).toBe('WebSocket');
    expect(res.headers.connection).toBe('Upgrade');
    expect(res.headers['sec-websocket-origin']).toBe('http://example.com');
    expect(res.headers['sec-websocket-location']).toBe(`ws://127.0.0.1:${f.server.port}/demo?x=1`);
    expect(res.answer).toEqual(ANSWER);
  });

  test('server waits for key3 that arrives in a later packet, and only then answers', async () => {
    const f = await start();
    const peer = await open(f.server.port);
    const upgraded = f.nextUpgrade();
    await peer.write(hybi00Head(f.server.port));
    expect(await upgraded).toBe(0);
    await settle();
    expect(peer.received.length).toBe(0);
    expect(peer.closed).toBe(false);
    await peer.write(KEY3);
    const res = await peer.handshake();
    expect(res.status).toBe(101);
    expect(res.answer).toEqual(ANSWER);
  });

  test('server joins key3 split across the head packet and a later one', async () => {
    const f = await start();
    const peer = await open(f.server.port);
    const upgraded = f.nextUpgrade();
    await peer.write(Buffer.concat([hybi00Head(f.server.port), KEY3.subarray(0, 3)]));
    expect(await upgraded).toBe(3);
    await settle();
    expect(peer.received.length).toBe(0);
    await peer.write(KEY3.subarray(3, 5));
    await settle();
    expect(peer.received.length).toBe(0);
    await peer.write(KEY3.subarray(5));
    const res = await peer.handshake();
    expect(res.status).toBe(101);
    expect(res.answer).toEqual(ANSWER);
  });

  test('server delivers a frame sent in the same packet as the head and key3', async () => {
    const f = await start();
    const peer = await open(f.server.port);
    await peer.write(Buffer.concat([hybi00Head(f.server.port), KEY3, encodeHybi00Text('early bird ✓')]));
    const res = await peer.handshake();
    expect(res.answer).toEqual(ANSWER);
    const echo = encodeHybi00Text('echo: early bird ✓');
    await peer.until((b) => b.includes(echo), 'the echo');
    expect(f.messages).toEqual(['early bird ✓']);
  });

  test('server delivers a frame that follows a late key3 in the same packet', async () => {
    const f = await start();
    const peer = await open(f.server.port);
    const upgraded = f.nextUpgrade();
    await peer.write(Buffer.concat([hybi00Head(f.server.port), KEY3.subarray(0, 7)]));
    expect(await upgraded).toBe(7);
    await peer.write(Buffer.concat([KEY3.subarray(7), encodeHybi00Text('after key3')]));
    await peer.until((b) => b.includes(encodeHybi00Text('echo: after key3')), 'the echo');
    expect(f.messages).toEqual(['after key3']);
    // The client closes: the server answers 0xFF 0x00 and the connection reports 1005.
    await peer.write(HYBI00_CLOSE);
    await peer.until((b) => b.subarray(-2).equals(HYBI00_CLOSE), 'the closing frame');
    await peer.untilClosed();
    await f.conns[0]!.whenClosed;
    expect(f.conns[0]!.closeStatus).toBe(1005);
  });

  test('server closes a connection that never sends key3 at the handshake timeout, answering nothing', async () => {
    const f = await start({ handshakeTimeout: 200 });
    const peer = await open(f.server.port);
    const upgraded = f.nextUpgrade();
    await peer.write(Buffer.concat([hybi00Head(f.server.port), KEY3.subarray(0, 4)]));
    expect(await upgraded).toBe(4);
    await peer.untilClosed();
    expect(peer.received.length).toBe(0);
    expect(f.conns).toHaveLength(0);
  });

  test('server lets go at once of a client that ends (FIN) before all of key3 came, freeing its maxConnectionsPerIp slot (it held both until handshakeTimeout)', async () => {
    const f = await start({ handshakeTimeout: 20_000, maxConnectionsPerIp: 1 });
    const peer = await open(f.server.port);
    const upgraded = new Promise<Duplex>((resolve) => f.server.httpServer.once('upgrade', (_req: IncomingMessage, socket: Duplex) => resolve(socket)));
    await peer.write(Buffer.concat([hybi00Head(f.server.port), KEY3.subarray(0, 4)]));
    const serverSide = await upgraded;
    const ended = new Promise<void>((resolve) => serverSide.once('end', resolve));
    peer.socket.end();
    await ended;
    // The server's own 'end' listener ran first; what it does settles within the next turns.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(serverSide.destroyed).toBe(true);
    await peer.untilClosed();
    expect(peer.received.length).toBe(0);
    // The slot is free: the same address connects again.
    const next = await open(f.server.port);
    await next.write(Buffer.concat([hybi00Head(f.server.port), KEY3]));
    const answer = await next.handshake();
    expect([answer.status, answer.answer]).toEqual([101, ANSWER]);
  });
});

describe('textMessages', () => {
  test("'buffer': a hybi-00 connection hands text over as its checked UTF-8 bytes too, and sends them back as text", async () => {
    const got: Array<[boolean, boolean, string]> = [];
    const server = await serve({ textMessages: 'buffer' }, async (conn) => {
      for await (const m of conn) {
        got.push([Buffer.isBuffer(m), typeof m === 'string', Buffer.from(m as Buffer).toString('utf8')]);
        conn.send(m as Buffer, { binary: false });
      }
    });
    servers.push(server);
    const peer = await open(server.port);
    await peer.write(Buffer.concat([hybi00Head(server.port), KEY3, encodeHybi00Text('ascii'), encodeHybi00Text('naïve ✓ 😀')]));
    await peer.handshake();
    await peer.until((b) => b.includes(encodeHybi00Text('naïve ✓ 😀')), 'the second echo');
    expect(got).toEqual([
      [true, false, 'ascii'],
      [true, false, 'naïve ✓ 😀'],
    ]);
    // Invalid UTF-8 still fails the connection (the draft has no status: reported as 1007).
    await peer.write(Buffer.from([0x00, 0x61, 0xc3, 0x28, 0xff]));
    await peer.untilClosed();
  });
});

describe('backpressure', () => {
  test('a flood of empty text frames (2 bytes each) to a handler that does not read pauses the socket at readHighWaterMark; nothing is lost', async () => {
    let conn: WebSocketConnection | undefined;
    const server = await serve({ readHighWaterMark: 64 * 1024 }, (c) => {
      conn = c; // never reads, no message listener
    });
    servers.push(server);
    const peer = await open(server.port);
    await peer.write(Buffer.concat([hybi00Head(server.port), KEY3]));
    await peer.handshake();
    await until(() => conn !== undefined, 'the handler');
    const internals = conn as unknown as { inbox: { items: unknown[]; head: number } | undefined; readPaused: boolean };
    const queued = (): number => (internals.inbox === undefined ? 0 : internals.inbox.items.length - internals.inbox.head);
    const COUNT = 200_000;
    const flood = Buffer.alloc(COUNT * 2);
    for (let i = 1; i < flood.length; i += 2) flood[i] = 0xff;
    peer.socket.write(flood);
    peer.socket.write(encodeHybi00Text('last'));
    // Either the server pauses its socket, or it has queued every message (an empty message
    // counted 0 bytes against readHighWaterMark: 200,000 of them, and as many more as sent).
    await until(() => internals.readPaused || queued() > COUNT, 'a pause or the whole flood');
    expect(internals.readPaused).toBe(true);
    expect(queued()).toBeLessThan(COUNT);
    // Read: every message arrives, in order, and reading resumes.
    let empty = 0;
    for (;;) {
      const m = await conn!.recv();
      if (m !== '') {
        expect(m).toBe('last');
        break;
      }
      empty++;
    }
    expect(empty).toBe(COUNT);
  });
});

describe('server rejects', () => {
  test.each([
    ['Key1 without spaces', { key1: '155712099' }],
    ['Key2 whose number is not a multiple of its spaces', { key2: '1 2 3' }],
    ['Key1 whose number is over 32 bits', { key1: '42949672960 ' }],
    ['Key2 without digits', { key2: 'a b c' }],
  ])('server answers 400 to %s', async (_name, keys) => {
    const f = await start();
    const peer = await open(f.server.port);
    await peer.write(Buffer.concat([hybi00Head(f.server.port, keys), KEY3]));
    await peer.untilClosed();
    const res = parseResponse(peer.received);
    expect(res?.status).toBe(400);
    expect(f.conns).toHaveLength(0);
  });

  test('server with hybi00: false refuses a hybi-00 request with 426 and Sec-WebSocket-Version: 13 (read as RFC 6455 without a version)', async () => {
    const f = await start({ hybi00: false });
    const peer = await open(f.server.port);
    await peer.write(Buffer.concat([hybi00Head(f.server.port), KEY3]));
    await peer.untilClosed();
    const res = parseResponse(peer.received);
    expect(res?.status).toBe(426);
    expect(res?.headers['sec-websocket-version']).toBe('13');
    expect(peer.received.includes(ANSWER)).toBe(false);
    expect(f.conns).toHaveLength(0);
  });
});
