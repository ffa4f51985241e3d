/**
 * Backpressure and timers over real sockets: a slow consumer keeps the server's buffered input
 * bounded while a raw producer writes as fast as it can (measured through the producer's
 * `writableLength` and the server connection's queue, never timing); idle timeout sends 1001.
 */
import { randomBytes } from 'node:crypto';
import { connect, serve, EOF, WebSocket, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { frame } from '../helpers/frames.js';
import { RawClient } from '../helpers/raw-client.js';
import { until } from '../helpers/wait.js';

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
