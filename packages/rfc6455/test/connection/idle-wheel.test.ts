/**
 * The shared idle/keepalive timer (idle-wheel.ts) judges peers only by what they did: not by how
 * long the wheel stood still before a connection was made, nor by time the event loop was held
 * (a long synchronous handler) while what a peer sent waited unread in the kernel.
 */
import { connect, serve, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { timerDelay, wheel } from '../../src/idle-wheel.js';
import { RawClient } from '../helpers/raw-client.js';
import { delay, until } from '../helpers/wait.js';

/** Resolves after the wheel's next tick has judged every connection (the wheel must be running). */
function wheelTicked(): Promise<void> {
  return new Promise((resolve) => {
    const member = {
      tick: (): void => {
        wheel.delete(member);
        // Members are ticked before the servers' sets: wait for the rest of this tick.
        setImmediate(resolve);
      },
    };
    wheel.add(member);
  });
}

/** Holds the event loop (a long synchronous handler). */
function holdLoop(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end);
}

const wheelStopped = (): boolean => (wheel as unknown as { timer: unknown }).timer === undefined;

let server: WebSocketServer | undefined;
let raws: RawClient[] = [];
afterEach(async () => {
  for (const raw of raws) raw.destroy();
  raws = [];
  await server?.close();
  server = undefined;
});

async function echoServer(options: Parameters<typeof serve>[0], onMessage?: (conn: WebSocketConnection, data: unknown) => void): Promise<{ conns: WebSocketConnection[] }> {
  const conns: WebSocketConnection[] = [];
  server = await serve({ perMessageDeflate: false, ...options }, (conn) => {
    conns.push(conn);
    conn.on('message', (data) => (onMessage ? onMessage(conn, data) : void conn.send(data).catch(() => undefined)));
  });
  return { conns };
}

describe('idle wheel', () => {
  test('a connection made after the wheel stood still for longer than idleTimeout is not closed as idle at its first tick', async () => {
    const { conns } = await echoServer({ idleTimeout: 1000 });
    await until(wheelStopped, 'the wheel to stop');
    // The wheel stands still for longer than idleTimeout (nothing to wait for but time itself).
    await delay(1200);
    const client = await connect(`ws://127.0.0.1:${server!.port}/`, { idleTimeout: 1000 });
    await until(() => conns.length === 1, 'the server connection');
    await wheelTicked();
    await wheelTicked();
    expect(conns[0]!.readyState).toBe('open');
    expect(client.readyState).toBe('open');
    await client.close();
  });

  test('once restarted after standing still, the coarse time does not run ahead of the wall clock at its first tick', async () => {
    await until(wheelStopped, 'the wheel to stop');
    // Stopped for longer than a late tick is capped at (500 ms): that time must not be counted.
    await delay(700);
    const wallBefore = Date.now();
    const coarseBefore = wheel.now;
    let moved = -1;
    let elapsed = -1;
    await new Promise<void>((resolve) => {
      const member = {
        tick: (now: number): void => {
          elapsed = Date.now() - wallBefore;
          moved = now - coarseBefore;
          wheel.delete(member);
          resolve();
        },
      };
      wheel.add(member);
    });
    expect(moved).toBeGreaterThan(0);
    expect(moved).toBeLessThanOrEqual(elapsed);
  });

  test("once a server's last connection is gone, the wheel drops the server's set and stops", async () => {
    const { conns } = await echoServer({ idleTimeout: 1000 });
    const client = await connect(`ws://127.0.0.1:${server!.port}/`);
    await until(() => conns.length === 1, 'the server connection');
    expect(wheelStopped()).toBe(false);
    await client.close();
    await conns[0]!.whenClosed;
    // (It is judged at its next tick: well within 5 s.)
    await until(wheelStopped, 'the wheel to stop', 5000);
    expect((wheel as unknown as { groups: Set<unknown> }).groups.size).toBe(0);
  });

  test('timerDelay: whole ms (rounded up), 0 for none, and at most 2^31 - 1 (Infinity included)', () => {
    expect(timerDelay(0.2)).toBe(1);
    expect(timerDelay(1000)).toBe(1000);
    expect(timerDelay(0)).toBe(0);
    expect(timerDelay(-5)).toBe(0);
    expect(timerDelay(2 ** 31 - 2)).toBe(2 ** 31 - 2);
    expect(timerDelay(2 ** 31 - 1)).toBe(2 ** 31 - 1);
    expect(timerDelay(2 ** 31)).toBe(2 ** 31 - 1);
    expect(timerDelay(Infinity)).toBe(2 ** 31 - 1);
  });

  test('a frame that came while the event loop was held is read before the peer is judged idle', async () => {
    const { conns } = await echoServer({ idleTimeout: 1000 });
    const raw = await RawClient.connect(server!.port);
    raws.push(raw);
    await until(() => conns.length === 1, 'the server connection');
    // Silent for most of the idle timeout, then a frame, which waits unread while the loop is held.
    await delay(700);
    // (Held in the check phase: the loop then runs its timers before it polls for the frame.)
    await new Promise<void>((resolve) =>
      setImmediate(() => {
        raw.send({ opcode: 1, payload: 'late' });
        holdLoop(1200);
        resolve();
      }),
    );
    await wheelTicked();
    expect(conns[0]!.readyState).toBe('open');
    const echo = await raw.readFrame();
    expect(echo?.opcode).toBe(1);
    expect(echo?.payload.toString()).toBe('late');
  });

  test('a peer whose message was read just before a long handler held the loop is not closed as idle after it', async () => {
    const { conns } = await echoServer({ idleTimeout: 800 }, (conn) => {
      holdLoop(1200);
      void conn.send('held').catch(() => undefined);
    });
    const raw = await RawClient.connect(server!.port);
    raws.push(raw);
    raw.send({ opcode: 1, payload: 'hold' });
    const reply = await raw.readFrame();
    expect(reply?.payload.toString()).toBe('held');
    await wheelTicked();
    expect(conns[0]!.readyState).toBe('open');
  });

  test('a keepalive pong that came while the event loop was held counts: the connection is not aborted', async () => {
    const { conns } = await echoServer({ idleTimeout: 0, keepaliveInterval: 600 });
    const raw = await RawClient.connect(server!.port);
    raws.push(raw);
    const ping = await raw.readFrame();
    expect(ping?.opcode).toBe(9);
    raw.send({ opcode: 10, payload: ping!.payload });
    holdLoop(1000);
    await wheelTicked();
    expect(conns[0]!.readyState).toBe('open');
    expect(conns[0]!.error).toBeUndefined();
  });

  test('a member whose tick throws (an error listener that throws) does not keep the others from their tick; the exception is rethrown after them', () => {
    // (Before: the exception left the wheel's loop, so every member after it waited a whole tick.)
    const ticked: string[] = [];
    const thrower = {
      tick: (): void => {
        ticked.push('thrower');
        throw new Error('listener failed');
      },
    };
    const next = { tick: (): void => void ticked.push('next') };
    const second = {
      tick: (): void => {
        ticked.push('second');
        throw new Error('second listener failed');
      },
    };
    try {
      wheel.add(thrower);
      wheel.add(next);
      wheel.add(second);
      // One tick, run here (synchronously, so the wheel's own timer cannot come between). The
      // first exception is the one rethrown.
      expect(() => (wheel as unknown as { tickAll(): void }).tickAll()).toThrow(/^listener failed$/);
      expect(ticked).toEqual(['thrower', 'next', 'second']);
    } finally {
      wheel.delete(thrower);
      wheel.delete(next);
      wheel.delete(second);
    }
  });

  test.each([260, 300, 400])('a keepalive pong that came while the loop was held %i ms (less than the 500 ms a late tick is capped at) counts too (it was judged unread: aborted)', async (hold) => {
    // keepaliveInterval under one tick: the tick after the ping judges the pong.
    const { conns } = await echoServer({ idleTimeout: 0, keepaliveInterval: 100 });
    const raw = await RawClient.connect(server!.port);
    raws.push(raw);
    const ping = await raw.readFrame();
    expect(ping?.opcode).toBe(9);
    raw.send({ opcode: 10, payload: ping!.payload });
    // Held past the next tick (a GC pause, a loaded machine): that tick comes late, the pong unread.
    holdLoop(hold);
    await wheelTicked();
    expect(conns[0]!.error).toBeUndefined();
    expect(conns[0]!.readyState).toBe('open');
  });
});
