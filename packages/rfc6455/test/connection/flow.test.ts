/**
 * Backpressure and timers over real sockets: a slow consumer keeps the server's buffered input
 * bounded while a raw producer writes as fast as it can (measured through the producer's
 * `writableLength` and the server connection's queue, never timing); idle timeout sends 1001.
 */
import { serve, EOF, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
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
