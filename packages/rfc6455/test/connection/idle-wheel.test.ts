/**
 * The shared idle/keepalive timer (idle-wheel.ts) judges peers only by what they did: not by how
 * long the wheel stood still before a connection was made, nor by time the event loop was held
 * (a long synchronous handler) while what a peer sent waited unread in the kernel.
 */
import { connect, serve, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { wheel } from '../../src/idle-wheel.js';
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
    try {
      wheel.add(thrower);
      wheel.add(next);
      // One tick, run here (synchronously, so the wheel's own timer cannot come between).
      expect(() => (wheel as unknown as { tickAll(): void }).tickAll()).toThrow('listener failed');
      expect(ticked).toEqual(['thrower', 'next']);
    } finally {
      wheel.delete(thrower);
      wheel.delete(next);
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
