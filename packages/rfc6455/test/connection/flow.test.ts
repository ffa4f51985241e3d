/**
 * Backpressure and timers over real sockets: a slow consumer keeps the server's buffered input
 * bounded while a raw producer writes as fast as it can (measured through the producer's
 * `writableLength` and the server connection's queue, never timing); idle timeout sends 1001.
 */
import { randomBytes } from 'node:crypto';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { constants as zlibConstants, deflateRawSync } from 'node:zlib';
import { connect, serve, EOF, WebSocket, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { frame } from '../helpers/frames.js';
import { RawClient } from '../helpers/raw-client.js';
import { stalled, until } from '../helpers/wait.js';

/** The server connection's internals the bound is about. */
interface Internals {
  inbox: { bytes: number } | undefined;
  readPaused: boolean;
  proto: { bufferedIncoming: number };
}


describe('slow consumer', () => {
  let server: WebSocketServer;
  let conn: WebSocketConnection | undefined;
  const HWM = 256 * 1024;

  beforeAll(async () => {
    server = await serve({ perMessageDeflate: false, readHighWaterMark: HWM }, (c) => {
      conn = c; // never calls recv() and has no message listener
    });
  });
  afterAll(() => server.close());

  test('server stops reading at readHighWaterMark; TCP pushes back on the producer; nothing is lost', async () => {
    const raw = await RawClient.connect(server.port);
    await until(() => conn !== undefined, 'the handler');
    const FRAME = 64 * 1024;
    const COUNT = 512; // 32 MiB offered, far beyond socket buffers
    const oneFrame = frame({ opcode: 2, payload: Buffer.alloc(FRAME, 0x42), mask: true });
    for (let i = 0; i < COUNT; i++) raw.socket.write(oneFrame);
    const internals = conn as unknown as Internals;

    // The server pauses its socket, and the producer's bytes pile up on its side.
    await until(() => internals.readPaused && raw.socket.writableLength > 8 * 1024 * 1024, 'backpressure');
    const sample = (): number => (internals.inbox?.bytes ?? 0) + internals.proto.bufferedIncoming;
    const peak = sample();
    // Bounded: the high-water mark plus at most the message that crossed it (and a socket chunk).
    expect(peak).toBeLessThanOrEqual(HWM + FRAME + 64 * 1024);
    expect(raw.socket.writableLength).toBeGreaterThan(8 * 1024 * 1024);
    const stalled = raw.socket.writableLength;
    // Giving the event loop more turns does not let the server read more while nobody consumes.
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    expect(sample()).toBeLessThanOrEqual(HWM + FRAME + 64 * 1024);
    expect(raw.socket.writableLength).toBeGreaterThanOrEqual(stalled - 1024 * 1024);

    // Now consume: every message arrives, intact and in order, and reading resumes.
    let received = 0;
    while (received < COUNT) {
      const m = await conn!.recv();
      if (m === EOF) break;
      expect((m as Buffer).length).toBe(FRAME);
      received++;
      expect(internals.inbox?.bytes ?? 0).toBeLessThanOrEqual(HWM + FRAME);
    }
    expect(received).toBe(COUNT);
    raw.destroy();
  });

  test('close() on a connection paused by a full queue still reads the peer\'s close frame: a clean close, not an abort at closeTimeout', async () => {
    let paused: WebSocketConnection | undefined;
    // closeTimeout far above what the closing handshake takes: an abort there would be 1006.
    const quiet = await serve({ perMessageDeflate: false, readHighWaterMark: HWM, closeTimeout: 20000 }, (c) => {
      paused = c; // never reads
    });
    try {
      const raw = await RawClient.connect(quiet.port);
      await until(() => paused !== undefined, 'the handler');
      const FRAME = 64 * 1024;
      const oneFrame = frame({ opcode: 2, payload: Buffer.alloc(FRAME, 0x42), mask: true });
      for (let i = 0; i < 256; i++) raw.socket.write(oneFrame);
      const internals = paused as unknown as Internals;
      await until(() => internals.readPaused && raw.socket.writableLength > 4 * 1024 * 1024, 'backpressure');

      const closed = paused!.close(4000, 'done');
      // The peer answers at once, behind the messages it had already sent.
      const close = await raw.readClose();
      expect(close?.code).toBe(4000);
      raw.send({ opcode: 0x8, payload: close!.frames.at(-1)!.payload });
      await closed;
      expect(paused!.closeStatus).toBe(4000);
      expect(paused!.closeReason).toBe('done');
      // The queue stayed bounded while the backlog was read to reach the close frame, and what
      // was queued before close() is still there to be read.
      expect(internals.inbox!.bytes).toBeLessThanOrEqual(HWM + FRAME);
      const first = await paused!.recv();
      expect((first as Buffer).length).toBe(FRAME);
      raw.destroy();
    } finally {
      await quiet.close();
    }
  });
});

describe('a flood of empty messages', () => {
  test('to a handler that does not read pauses the socket at readHighWaterMark too (each empty message counted 0 bytes); nothing is lost', async () => {
    let conn: WebSocketConnection | undefined;
    const quiet = await serve({ perMessageDeflate: false, readHighWaterMark: 64 * 1024 }, (c) => {
      conn = c; // never reads, no message listener
    });
    try {
      const raw = await RawClient.connect(quiet.port);
      await until(() => conn !== undefined, 'the handler');
      const internals = conn as unknown as { inbox: { items: unknown[]; head: number } | undefined; readPaused: boolean };
      const queued = (): number => (internals.inbox === undefined ? 0 : internals.inbox.items.length - internals.inbox.head);
      const COUNT = 100_000;
      const empty = frame({ opcode: 1, payload: Buffer.alloc(0), mask: true });
      raw.socket.write(Buffer.concat(Array.from({ length: COUNT }, () => empty)));
      raw.socket.write(frame({ opcode: 1, payload: 'last', mask: true }));
      // Either the server pauses its socket, or it has queued every message.
      await until(() => internals.readPaused || queued() > COUNT, 'a pause or the whole flood');
      expect(internals.readPaused).toBe(true);
      expect(queued()).toBeLessThan(COUNT);
      let received = 0;
      for (;;) {
        const m = await conn!.recv();
        if (m !== '') {
          expect(m).toBe('last');
          break;
        }
        received++;
      }
      expect(received).toBe(COUNT);
      raw.destroy();
    } finally {
      await quiet.close();
    }
  });
});

describe('a flood of 1-byte binary messages to a handler that does not read', () => {
  // The heap the queue really takes, not what it counts: each binary message is a Buffer object
  // (about 130 bytes, 220 with an ArrayBuffer of its own), and each counted 33 bytes, so 4 MiB of
  // readHighWaterMark held 16 MB of heap (fixed bug).
  const HWM = 4 * 1024 * 1024;
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const heap = (): number => {
    for (let i = 0; i < 3; i++) gc();
    return getHeapStatistics().used_heap_size;
  };

  test.each([
    ['uncompressed', false],
    ['compressed, no context takeover (each message an ArrayBuffer of its own)', true],
  ])('%s: the queue holds less than twice readHighWaterMark of heap', async (_name, deflate) => {
    let conn: WebSocketConnection | undefined;
    const quiet = await serve({ perMessageDeflate: deflate, readHighWaterMark: HWM }, (c) => {
      conn = c; // never reads, no message listener
    });
    try {
      const raw = await RawClient.connect(quiet.port, deflate ? { headers: ['Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover'] } : {});
      await until(() => conn !== undefined, 'the handler');
      const internals = conn as unknown as { inbox: { items: unknown[]; head: number; bytes: number } | undefined; readPaused: boolean };
      const queued = (): number => (internals.inbox === undefined ? 0 : internals.inbox.items.length - internals.inbox.head);
      const payload = deflate ? deflateRawSync(Buffer.of(1), { finishFlush: zlibConstants.Z_SYNC_FLUSH }).subarray(0, -4) : Buffer.of(1);
      const one = frame({ opcode: 2, payload, rsv1: deflate, mask: true });
      const flood = Buffer.concat(Array.from({ length: 400_000 }, () => one));
      const before = heap();
      raw.socket.write(flood);
      await until(() => internals.readPaused || queued() === 400_000, 'a pause or the whole flood');
      await stalled(queued, 100);
      const held = heap() - before;
      expect(internals.readPaused).toBe(true);
      expect(held).toBeLessThan(2 * HWM);
      // The queue stopped at the message that filled it, not at the end of the socket read.
      expect(internals.inbox!.bytes).toBeLessThanOrEqual(HWM + 1024);
      raw.destroy();
    } finally {
      await quiet.close();
    }
  });
});

describe('compressed messages to a handler that does not read', () => {
  test('the queue stops at readHighWaterMark and one message: what the rest of the socket read inflates to waits, uninflated (it was all queued); nothing is lost', async () => {
    const HWM = 64 * 1024;
    const SIZE = 32 * 1024;
    const COUNT = 1000;
    let conn: WebSocketConnection | undefined;
    const quiet = await serve({ perMessageDeflate: true, readHighWaterMark: HWM }, (c) => {
      conn = c; // never reads, no message listener
    });
    try {
      const raw = await RawClient.connect(quiet.port, { headers: ['Sec-WebSocket-Extensions: permessage-deflate'] });
      await until(() => conn !== undefined, 'the handler');
      const internals = conn as unknown as { inbox: { items: unknown[]; head: number; bytes: number } | undefined; readPaused: boolean };
      const queued = (): number => (internals.inbox === undefined ? 0 : internals.inbox.items.length - internals.inbox.head);
      // Each frame (about 50 bytes) inflates to 32 KiB: a 64 KiB read holds more than COUNT of them.
      const payload = deflateRawSync(Buffer.alloc(SIZE, 7), { finishFlush: zlibConstants.Z_SYNC_FLUSH }).subarray(0, -4);
      const one = frame({ opcode: 2, payload, rsv1: true, mask: true });
      raw.socket.write(Buffer.concat(Array.from({ length: COUNT }, () => one)));
      raw.socket.write(frame({ opcode: 1, payload: 'last', mask: true }));
      await until(() => internals.readPaused || queued() > COUNT, 'a pause or the whole flood');
      await stalled(queued, 100);
      expect(internals.readPaused).toBe(true);
      expect(internals.inbox!.bytes).toBeLessThanOrEqual(HWM + SIZE + 1024);
      let received = 0;
      for (;;) {
        const m = await conn!.recv();
        if (typeof m === 'string') {
          expect(m).toBe('last');
          break;
        }
        expect(Buffer.isBuffer(m) && m.length === SIZE && m[0] === 7 && m[SIZE - 1] === 7).toBe(true);
        received++;
      }
      expect(received).toBe(COUNT);
      raw.destroy();
    } finally {
      await quiet.close();
    }
  });

  test('close() while a compressed message waits for room: the peer\'s close frame is still read (a clean close, not an abort)', async () => {
    const HWM = 16 * 1024;
    let conn: WebSocketConnection | undefined;
    const quiet = await serve({ perMessageDeflate: true, readHighWaterMark: HWM, closeTimeout: 10_000 }, (c) => {
      conn = c;
    });
    try {
      const raw = await RawClient.connect(quiet.port, { headers: ['Sec-WebSocket-Extensions: permessage-deflate'] });
      await until(() => conn !== undefined, 'the handler');
      const internals = conn as unknown as { inbox: { bytes: number } | undefined; readPaused: boolean };
      const payload = deflateRawSync(Buffer.alloc(32 * 1024, 7), { finishFlush: zlibConstants.Z_SYNC_FLUSH }).subarray(0, -4);
      const one = frame({ opcode: 2, payload, rsv1: true, mask: true });
      raw.socket.write(Buffer.concat(Array.from({ length: 10 }, () => one)));
      await until(() => internals.readPaused, 'a pause');
      const closed = new Promise<number>((resolve) => conn!.once('close', (code: number) => resolve(code)));
      void conn!.close(1000, 'bye');
      const fromServer = await raw.readClose();
      expect(fromServer?.code).toBe(1000);
      raw.send({ opcode: 8, payload: Buffer.of(0x03, 0xe8) });
      expect(await closed).toBe(1000);
      raw.destroy();
    } finally {
      await quiet.close();
    }
  });
});

describe('bufferedAmount with permessage-deflate', () => {
  test('counts the messages still waiting to be compressed, as given, until they are written; WebSocket too', async () => {
    const received: number[] = [];
    const server = await serve({}, (c) => void c.on('message', (m) => void received.push(m.length)));
    try {
      const client = await connect(server.url);
      expect(client.extensions).toContain('permessage-deflate');
      // Over the deflater's inline limit: compressed in the background, nothing written yet.
      const data = randomBytes(1024 * 1024);
      const sends = [client.send(data), client.send(data), client.send(data.subarray(0, 100_000))];
      // (Before: 0, as if nothing were buffered.)
      expect(client.bufferedAmount).toBe(2 * data.length + 100_000);
      await Promise.all(sends);
      await until(() => received.length === 3, 'the messages');
      await until(() => client.bufferedAmount === 0, 'an empty buffer');
      await client.close();

      // The standard WebSocket counts application bytes from the connection's count.
      const ws = new WebSocket(server.url);
      await new Promise((resolve) => (ws.onopen = resolve));
      expect(ws.extensions).toContain('permessage-deflate');
      ws.send(data);
      expect(ws.bufferedAmount).toBe(data.length);
      await until(() => received.length === 4, 'the message');
      await until(() => ws.bufferedAmount === 0, 'an empty buffer');
      ws.close();
      await new Promise((resolve) => (ws.onclose = resolve));
    } finally {
      await server.close();
    }
  });
});

describe('idle timeout', () => {
  test('server sends a 1001 close frame to a silent peer, not a silent drop', async () => {
    const server = await serve({ perMessageDeflate: false, idleTimeout: 300, closeTimeout: 300 }, () => undefined);
    try {
      const raw = await RawClient.connect(server.port);
      const close = await raw.readClose();
      expect(close?.code).toBe(1001);
      expect(close?.reason.toString()).toBe('idle timeout');
      await raw.closed;
    } finally {
      await server.close();
    }
  });

  test.each([
    ['closed as idle', { idleTimeout: 400, keepaliveInterval: 0 }],
    ['aborted by the keepalive', { idleTimeout: 0, keepaliveInterval: 200 }],
  ])('a connection paused by a full queue is not %s while its peer keeps sending and answering pings', async (_name, timers) => {
    let serverConn: WebSocketConnection | undefined;
    const server = await serve({ perMessageDeflate: false, readHighWaterMark: 1024, ...timers }, (c) => {
      serverConn = c; // does not read yet
    });
    try {
      const raw = await RawClient.connect(server.port);
      await until(() => serverConn !== undefined, 'the handler');
      for (let i = 0; i < 8; i++) raw.send({ opcode: 1, payload: 'x'.repeat(1000) });
      await until(() => (serverConn as unknown as Internals).readPaused, 'the pause');
      // Pings are answered (the pongs wait unread behind the messages, as everything does).
      let reading = true;
      const answering = (async () => {
        while (reading) {
          const f = await raw.readFrame();
          if (!f) return;
          if (f.opcode === 0x9) raw.send({ opcode: 0xa, payload: f.payload });
        }
      })();
      // 1.6 s of traffic: four idle timeouts, eight keepalive intervals.
      for (let i = 0; i < 16; i++) {
        raw.send({ opcode: 1, payload: `${i}` });
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(serverConn!.closeStatus).toBeUndefined();
      expect(serverConn!.readyState).toBe('open');
      // Once read, every message is there.
      let n = 0;
      while (n < 8 + 16) {
        const m = await serverConn!.recv();
        if (m === EOF) break;
        n++;
      }
      expect(n).toBe(24);
      reading = false;
      raw.destroy();
      await answering;
    } finally {
      await server.close();
    }
  });

  test('traffic keeps the connection alive past the idle timeout', async () => {
    let serverConn: WebSocketConnection | undefined;
    const server = await serve({ perMessageDeflate: false, idleTimeout: 600 }, (c) => {
      serverConn = c;
      c.on('message', () => undefined);
    });
    try {
      const raw = await RawClient.connect(server.port);
      // 12 pings 100 ms apart: 1.2 s of activity, twice the idle timeout.
      for (let i = 0; i < 12; i++) {
        raw.send({ opcode: 9, payload: `${i}` });
        const pong = await raw.readFrame();
        expect([pong?.opcode, pong?.payload.toString()]).toEqual([10, `${i}`]);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(serverConn?.readyState).toBe('open');
      raw.destroy();
    } finally {
      await server.close();
    }
  });
});
