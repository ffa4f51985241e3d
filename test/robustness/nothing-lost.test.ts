/**
 * Nothing lost: every message sent before a clean close arrives, in order, whichever side closes,
 * with or without compression; `close()` waits for queued sends. A fast-check property drives a
 * raw client that writes its frames cut at random points of the TCP stream, with random message
 * sizes and fragmentation and a random side and moment for the close.
 */
import fc from 'fast-check';
import { broadcast, connect, EOF, type Message, type WebSocketConnection } from 'rfc6455';
import { closePayload, decodeFrames, frame } from '../../packages/rfc6455/test/helpers/frames.js';
import { RawClient } from '../../packages/rfc6455/test/helpers/raw-client.js';
import { resolve } from 'node:path';
import { spawnNode } from '../examples/helpers.js';
import { closeAll, eventually, startServer } from './helpers.js';

afterAll(closeAll);

const RUNS = Math.min(Number(process.env.FUZZ_RUNS) || 25, 5000);

function payloadFor(i: number, size: number, binary: boolean): Buffer {
  if (binary) {
    const b = Buffer.alloc(size);
    for (let k = 0; k < size; k++) b[k] = (i * 31 + k * 7) & 0xff;
    return b;
  }
  // Multi-byte UTF-8 so that fragment and TCP cuts land inside characters.
  const pattern = `m${i}:aé€😀`;
  let text = '';
  while (Buffer.byteLength(text) < size) text += pattern;
  return Buffer.from(text);
}

describe('a process that exits right after send()', () => {
  test.each([
    ['awaiting each send', 'await'],
    ['not awaiting them (process.exit() in the same synchronous code)', 'sync'],
  ])('%s: the server gets every message', async (_name, mode) => {
    const got: Message[] = [];
    const server = await startServer({}, (conn) => void conn.on('message', (m) => got.push(m)));
    const child = spawnNode([resolve(__dirname, 'children/send-then-exit.ts'), server.url, mode]);
    expect(await child.exited).toBe(0);
    for (let i = 0; i < 200 && got.length < 4; i++) await new Promise((r) => setTimeout(r, 10));
    expect(got.slice(0, 3)).toEqual(['message 0', 'message 1', 'message 2']);
    expect(got).toHaveLength(4);
    expect((got[3] as string).endsWith('last words')).toBe(true);
  }, 30_000);
});

describe('both directions, with our own client', () => {
  test.each([false, true])('server sends 300 messages then close() without awaiting them (deflate %s): all arrive in order, then 1000', async (deflate) => {
    const server = await startServer({ perMessageDeflate: deflate }, async (conn) => {
      for (let i = 0; i < 300; i++) void conn.send(i % 10 === 0 ? 'x'.repeat(20_000 + i) : `msg ${i}`).catch(() => undefined);
      await conn.close(1000, 'done');
    });
    const client = await connect(server.url, { perMessageDeflate: deflate });
    const got: Message[] = [];
    for await (const m of client) got.push(m);
    expect(got).toHaveLength(300);
    expect(got.every((m, i) => m === (i % 10 === 0 ? 'x'.repeat(20_000 + i) : `msg ${i}`))).toBe(true);
    expect(client.closeStatus).toBe(1000);
    expect(client.closeReason).toBe('done');
    if (deflate) expect(client.extensions).toContain('permessage-deflate');
  });

  test.each([false, true])('client sends 300 messages then close() (deflate %s): the server receives all in order', async (deflate) => {
    let resolveGot!: (m: Message[]) => void;
    const received = new Promise<Message[]>((r) => (resolveGot = r));
    const server = await startServer({ perMessageDeflate: deflate }, async (conn) => {
      const got: Message[] = [];
      for await (const m of conn) got.push(m);
      resolveGot(got);
    });
    const client = await connect(server.url, { perMessageDeflate: deflate });
    for (let i = 0; i < 300; i++) void client.send(i % 7 === 0 ? Buffer.alloc(30_000, i) : `c${i}`).catch(() => undefined);
    await client.close();
    const got = await received;
    expect(got).toHaveLength(300);
    expect(got.every((m, i) => (i % 7 === 0 ? Buffer.isBuffer(m) && m.equals(Buffer.alloc(30_000, i)) : m === `c${i}`))).toBe(true);
  });

  test('sendStream then close(): the streamed message and the ones queued behind it arrive before the close', async () => {
    const server = await startServer({ perMessageDeflate: false }, async (conn) => {
      void conn.sendStream((async function* () {
        for (let i = 0; i < 20; i++) yield Buffer.alloc(10_000, i);
      })());
      void conn.send('after the stream');
      await conn.close();
    });
    const client = await connect(server.url);
    const first = await client.recv();
    expect(Buffer.isBuffer(first) && first.length).toBe(200_000);
    expect(await client.recv()).toBe('after the stream');
    expect(await client.recv()).toBe(EOF);
    expect(client.closeStatus).toBe(1000);
  });

  test('close() while a sendStream() runs: what is sent after the close() call is refused, not sent before the close frame', async () => {
    let took = 0;
    const results: string[] = [];
    const server = await startServer({ perMessageDeflate: false }, async (conn) => {
      const streamed = conn.sendStream((async function* () {
        for (let i = 0; i < 20; i++) yield Buffer.alloc(10_000, i);
      })());
      const closed = conn.close(4000, 'done');
      const late = conn.sendStream((async function* () {
        took++;
        yield Buffer.from('streamed after close()');
      })());
      const later = conn.send('sent after close()');
      for (const p of [streamed, late, later, closed]) results.push(await p.then(() => 'ok', (e: Error) => e.name));
    });
    const client = await connect(server.url);
    const first = await client.recv();
    expect(Buffer.isBuffer(first) && first.length).toBe(200_000);
    // (Before: the close frame waited for the later sendStream() and the send() queued behind it,
    // and both went out.)
    expect(await client.recv()).toBe(EOF);
    expect(client.closeStatus).toBe(4000);
    await client.whenClosed;
    expect(await eventually(() => results.length === 4)).toBe(true);
    expect(results).toEqual(['ok', 'ConnectionClosedError', 'ConnectionClosedError', 'ok']);
    expect(took).toBe(0);
  });

  test('close() while a sendStream() runs: the connection is closing at once (readyState, broadcast() skips it); a stream called before the close() still goes', async () => {
    const seen: unknown[] = [];
    const results: string[] = [];
    const server = await startServer({ perMessageDeflate: false }, async (conn) => {
      const first = conn.sendStream((async function* () {
        for (let i = 0; i < 20; i++) yield Buffer.alloc(10_000, i);
      })());
      const second = conn.sendStream([Buffer.from('second stream')]);
      const closed = conn.close(4000, 'done');
      seen.push(conn.readyState, broadcast([conn], 'broadcast after close()'));
      for (const p of [first, second, closed]) results.push(await p.then(() => 'ok', (e: Error) => e.name));
    });
    const client = await connect(server.url);
    const first = await client.recv();
    expect(Buffer.isBuffer(first) && first.length).toBe(200_000);
    expect(await client.recv()).toEqual(Buffer.from('second stream'));
    // (Before: readyState was 'open' until the streams were done, and broadcast() counted the
    // connection, though its message was then dropped.)
    expect(await client.recv()).toBe(EOF);
    expect(client.closeStatus).toBe(4000);
    expect(seen).toEqual(['closing', 0]);
    await client.whenClosed;
    expect(await eventually(() => results.length === 3)).toBe(true);
    expect(results).toEqual(['ok', 'ok', 'ok']);
  });
});

interface Spec {
  binary: boolean;
  size: number;
  fragments: number;
}

describe('property: random sizes, fragmentation, TCP cuts and close', () => {
  test('every message sent before the close is received and echoed, in order, before the close frame', async () => {
    let serverReceived: Message[] = [];
    let closeOnCount = -1;
    const conns: WebSocketConnection[] = [];
    const server = await startServer({ perMessageDeflate: false, closeTimeout: 2000 }, (conn) => {
      conns.push(conn);
      let n = 0;
      conn.on('message', (m) => {
        serverReceived.push(m);
        void conn.send(m).catch(() => undefined);
        // The server starts the close right after the message that the case picked.
        if (++n === closeOnCount) void conn.close(1000, 'server done');
      });
    });

    const specArb: fc.Arbitrary<Spec> = fc.record({
      binary: fc.boolean(),
      size: fc.oneof(fc.integer({ min: 0, max: 130 }), fc.integer({ min: 0, max: 70_000 })),
      fragments: fc.integer({ min: 1, max: 4 }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(specArb, { minLength: 1, maxLength: 10 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 }),
        fc.boolean(),
        async (specs, cutFractions, serverCloses) => {
          serverReceived = [];
          closeOnCount = serverCloses ? specs.length : -1;
          const payloads = specs.map((s, i) => payloadFor(i, s.size, s.binary));
          const frames: Buffer[] = [];
          specs.forEach((s, i) => {
            const p = payloads[i]!;
            const step = Math.ceil(p.length / s.fragments) || 1;
            const pieces: Buffer[] = [];
            for (let at = 0; at < p.length; at += step) pieces.push(p.subarray(at, at + step));
            if (pieces.length === 0) pieces.push(Buffer.alloc(0));
            pieces.forEach((piece, k) =>
              frames.push(frame({ opcode: k === 0 ? (s.binary ? 2 : 1) : 0, fin: k === pieces.length - 1, payload: piece, mask: true })),
            );
          });
          if (!serverCloses) frames.push(frame({ opcode: 8, payload: closePayload(1000, 'client done'), mask: true }));
          const stream = Buffer.concat(frames);
          const cuts = [...new Set(cutFractions.map((f) => Math.floor(f * stream.length)))].filter((c) => c > 0 && c < stream.length).sort((a, b) => a - b);

          const raw = await RawClient.connect(server.port);
          let at = 0;
          for (const cut of [...cuts, stream.length]) {
            raw.write(stream.subarray(at, cut));
            at = cut;
            await new Promise((r) => setImmediate(r));
          }
          // Read everything until the server closes TCP, answering its close if it started one.
          const received: Array<{ opcode: number; fin: boolean; payload: Buffer }> = [];
          for (;;) {
            const f = await raw.readFrame();
            if (!f) break;
            received.push(f);
            if (f.opcode === 8 && serverCloses) raw.send({ opcode: 8, payload: f.payload.subarray(0, 2) });
          }
          await raw.closed;
          // Reassemble the echoes.
          const echoes: Buffer[] = [];
          let parts: Buffer[] = [];
          for (const f of received.slice(0, -1)) {
            parts.push(f.payload);
            if (f.fin) {
              echoes.push(Buffer.concat(parts));
              parts = [];
            }
          }
          const last = received.at(-1);
          const ok =
            serverReceived.length === specs.length &&
            serverReceived.every((m, i) => (specs[i]!.binary ? Buffer.isBuffer(m) && m.equals(payloads[i]!) : m === payloads[i]!.toString())) &&
            echoes.length === specs.length &&
            echoes.every((e, i) => e.equals(payloads[i]!)) &&
            last?.opcode === 8 &&
            last.payload.readUInt16BE(0) === 1000 &&
            raw.serverEndedFirst;
          return ok;
        },
      ),
      { numRuns: RUNS },
    );
    expect(conns.length).toBeGreaterThanOrEqual(RUNS);
  }, 120_000);
});
