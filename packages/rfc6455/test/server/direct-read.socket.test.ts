/**
 * Direct reads (src/direct-read.ts): over plain TCP a connection reads into one buffer shared by
 * every connection. These tests hold it to the stream path's results: every kind of frame, cut
 * at every sort of read boundary, arrives intact, and messages kept by the application are never
 * overwritten by later reads (the shared buffer is refilled by every read); pausing stops
 * reading and loses nothing; TLS, `directReads: false` and the environment switch keep the
 * stream path.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Socket } from 'node:net';
import { connect, EOF, serve, type Message, type WebSocketConnection, type WebSocketServer } from '../../src/index.js';
import { closePayload, frame } from '../helpers/frames.js';
import { RawClient } from '../helpers/raw-client.js';
import { delay, until } from '../helpers/wait.js';

const FIXTURES = resolve(__dirname, '../../../../test/fixtures/tls');
const TLS = { key: readFileSync(resolve(FIXTURES, 'key.pem')), cert: readFileSync(resolve(FIXTURES, 'cert.pem')) };

/** True when Node's onread fields are set on the socket (what readDirect installs). */
function readsDirectly(socket: unknown): boolean {
  const record = socket as Record<symbol, unknown>;
  return Object.getOwnPropertySymbols(socket).some((s) => s.description === 'kBufferCb' && typeof record[s] === 'function');
}

/** A deterministic byte pattern, different for every message. */
function pattern(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
}

describe('direct reads over TCP', () => {
  let server: WebSocketServer;
  let conns: WebSocketConnection[] = [];
  const received: Array<{ data: Message; binary: boolean }> = [];
  const pongs: Buffer[] = [];

  beforeAll(async () => {
    server = await serve({ port: 0 }, (conn) => {
      conns.push(conn);
      conn.on('message', (data, binary) => received.push({ data, binary }));
      conn.on('pong', (p) => pongs.push(p));
    });
  });
  afterAll(() => server.close());
  beforeEach(() => {
    conns = [];
    received.length = 0;
    pongs.length = 0;
  });

  test('serve() switches a TCP connection to direct reads at the first data it receives, not before', async () => {
    const raw = await RawClient.connect(server.port);
    await until(() => conns.length === 1, 'the connection');
    // Only the handshake so far: an idle connection keeps reading through the stream.
    await delay(20);
    expect(readsDirectly(conns[0]!.transport.stream)).toBe(false);
    raw.send({ opcode: 2, payload: pattern(10, 1) });
    raw.send({ opcode: 2, payload: pattern(20, 2) });
    await until(() => received.length === 2, 'the messages');
    expect(readsDirectly(conns[0]!.transport.stream)).toBe(true);
    expect(Buffer.compare(received[0]!.data as Buffer, pattern(10, 1))).toBe(0);
    expect(Buffer.compare(received[1]!.data as Buffer, pattern(20, 2))).toBe(0);
    raw.destroy();
  });

  test('every frame kind, cut at every read boundary, arrives whole; kept messages are not overwritten by later reads', async () => {
    const raw = await RawClient.connect(server.port);
    await until(() => conns.length === 1, 'the connection');
    const expected: Array<{ data: Message; binary: boolean }> = [];
    const wire: Buffer[] = [];
    let seed = 0;
    // Small binary and text frames (the fast path), 16-bit and 64-bit lengths, empty messages,
    // fragmented messages with a ping between fragments.
    for (const size of [0, 1, 3, 4, 5, 64, 125, 126, 200, 4000, 65535, 65536, 70000]) {
      const bytes = pattern(size, ++seed);
      wire.push(frame({ opcode: 2, payload: bytes, mask: true }));
      expected.push({ data: bytes, binary: true });
      const text = 'é'.repeat(size >> 1) + 'x'.repeat(size & 1);
      wire.push(frame({ opcode: 1, payload: text, mask: true }));
      expected.push({ data: text, binary: false });
    }
    const parts = [pattern(10, 90), pattern(300, 91), pattern(7, 92)];
    wire.push(frame({ opcode: 2, fin: false, payload: parts[0], mask: true }));
    wire.push(frame({ opcode: 9, payload: 'between', mask: true }));
    wire.push(frame({ opcode: 0, fin: false, payload: parts[1], mask: true }));
    wire.push(frame({ opcode: 0, payload: parts[2], mask: true }));
    expected.push({ data: Buffer.concat(parts), binary: true });
    // Many small frames in one write: one read holds dozens of them.
    for (let i = 0; i < 200; i++) {
      const bytes = pattern(1 + (i % 120), 200 + i);
      wire.push(frame({ opcode: 2, payload: bytes, mask: true }));
      expected.push({ data: bytes, binary: true });
    }
    const all = Buffer.concat(wire);
    // Cut the stream at irregular places (1 byte, header edges, mid-payload, big pieces), each
    // written separately with a pause so that most pieces are separate reads on the server.
    let at = 0;
    let step = 0;
    const sizes = [1, 2, 5, 6, 7, 130, 1, 9000, 3, 70001, 64, 2];
    while (at < all.length) {
      const n = Math.min(all.length - at, sizes[step++ % sizes.length]!);
      raw.write(all.subarray(at, at + n));
      at += n;
      if (step % 3 === 0) await delay(1);
    }
    await until(() => received.length === expected.length, 'every message');
    // Then more traffic through the same shared buffer, before comparing what was kept.
    for (let i = 0; i < 50; i++) raw.send({ opcode: 2, payload: pattern(100, 999) });
    await until(() => received.length === expected.length + 50, 'the later messages');
    const firsts = received.slice(0, expected.length);
    expect(firsts.map((m) => m.binary)).toEqual(expected.map((m) => m.binary));
    for (let i = 0; i < expected.length; i++) {
      const got = firsts[i]!.data;
      const want = expected[i]!.data;
      if (typeof want === 'string') expect(got).toBe(want);
      else expect(Buffer.compare(got as Buffer, want)).toBe(0);
    }
    const reply = await raw.readFrame();
    expect(reply).toMatchObject({ opcode: 10 });
    expect(reply!.payload.toString()).toBe('between');
    raw.send({ opcode: 8, payload: closePayload(1000) });
    const close = await raw.readClose();
    expect(close?.code).toBe(1000);
    expect(conns[0]!.closeStatus).toBe(1000);
  });

  test('a pong and a ping payload kept by the application are not overwritten', async () => {
    const raw = await RawClient.connect(server.port);
    await until(() => conns.length === 1, 'the connection');
    raw.write(Buffer.concat([frame({ opcode: 10, payload: 'pong-one', mask: true }), frame({ opcode: 2, payload: pattern(60, 1), mask: true })]));
    await until(() => pongs.length === 1 && received.length === 1, 'the pong');
    for (let i = 0; i < 20; i++) raw.send({ opcode: 10, payload: 'zzzzzzzz' });
    await until(() => pongs.length === 21, 'the later pongs');
    expect(pongs[0]!.toString()).toBe('pong-one');
    raw.destroy();
  });

  test('a consumer that does not read pauses the socket (reading stops) and nothing is lost', async () => {
    const HWM = 128 * 1024;
    let conn: WebSocketConnection | undefined;
    const slow = await serve({ port: 0, readHighWaterMark: HWM }, (c) => {
      conn = c; // recv() only, called later
    });
    try {
      const raw = await RawClient.connect(slow.port);
      await until(() => conn !== undefined, 'the connection');
      const COUNT = 300;
      for (let i = 0; i < COUNT; i++) raw.send({ opcode: 2, payload: pattern(8192, i) });
      const socket = conn!.transport.stream as Socket & { _handle: { reading: boolean } };
      await until(() => socket.isPaused() && !socket._handle.reading, 'the server to stop reading');
      expect(readsDirectly(socket)).toBe(true);
      for (let i = 0; i < COUNT; i++) {
        const m = await conn!.recv();
        expect(Buffer.compare(m as Buffer, pattern(8192, i))).toBe(0);
      }
      raw.send({ opcode: 8, payload: closePayload(1000) });
      expect(await conn!.recv()).toBe(EOF);
      raw.destroy();
    } finally {
      await slow.close();
    }
  });

  test('the client reads directly too', async () => {
    const client = await connect(`ws://127.0.0.1:${server.port}/`);
    await until(() => conns.length === 1, 'the connection');
    conns[0]!.send('hello from the server');
    expect(await client.recv()).toBe('hello from the server');
    expect(readsDirectly(client.transport.stream)).toBe(true);
    conns[0]!.send(pattern(100, 5));
    expect(Buffer.compare((await client.recv()) as Buffer, pattern(100, 5))).toBe(0);
    await client.close();
  });
});

describe('where direct reads do not apply', () => {
  test('directReads: false and TLS keep the stream path, with the same results', async () => {
    for (const options of [{ directReads: false }, { tls: TLS }]) {
      let conn: WebSocketConnection | undefined;
      const got: Message[] = [];
      const server = await serve({ port: 0, ...options }, (c) => {
        conn = c;
        c.on('message', (m) => got.push(m));
      });
      try {
        const client = await connect(server.url, { tls: { rejectUnauthorized: false } } as never);
        await until(() => conn !== undefined, 'the connection');
        await client.send('one');
        await client.send(pattern(70000, 3));
        await until(() => got.length === 2, 'the messages');
        expect(readsDirectly(conn!.transport.stream)).toBe(false);
        expect(got[0]).toBe('one');
        expect(Buffer.compare(got[1] as Buffer, pattern(70000, 3))).toBe(0);
        // Large ASCII text goes to the socket as a string (its native write): over TLS too.
        const text = 'ascii text '.repeat(9000);
        const echoed = new Promise<Message>((resolve) => client.once('message', resolve));
        await conn!.send(text);
        expect(await echoed).toBe(text);
        await client.close();
      } finally {
        await server.close();
      }
    }
  });
});
