/**
 * An idle connection keeps no protocol engine: a new connection makes its engine on first use, and
 * one whose engine has gone unused (no read, no send) for about 2 s while at rest drops it (the
 * shared wheel does, on a tick); a server that only pushes keeps it between pushes. These tests check the engine comes and goes only when that loses nothing: permessage-deflate
 * context carries over, and a fragmented message (with a UTF-8 character split between its
 * fragments) spanning an idle pause keeps its engine. A footprint guard lists the own fields of
 * an event-style connection.
 */
import { connect, serve, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { RawClient } from '../helpers/raw-client.js';
import { until } from '../helpers/wait.js';

/** The private field under test. */
interface Internals {
  engine: object | undefined;
}
const engineOf = (conn: WebSocketConnection): object | undefined => (conn as unknown as Internals).engine;


const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('protocol engine of an idle connection', () => {
  let server: WebSocketServer;
  const conns: WebSocketConnection[] = [];

  beforeAll(async () => {
    server = await serve({ perMessageDeflate: true }, (conn) => {
      conns.push(conn);
      conn.on('message', (m) => conn.send(m));
    });
  });
  afterAll(() => server.close());

  test('a new connection has none until it is used; reading its state does not make one', async () => {
    const client = await connect(`ws://127.0.0.1:${server.port}/`, { perMessageDeflate: false });
    await until(() => conns.length === 1, 'the handler');
    const conn = conns[0]!;
    expect(engineOf(conn)).toBeUndefined();
    expect(conn.readyState).toBe('open');
    expect(conn.closeStatus).toBeUndefined();
    expect(conn.closeReason).toBeUndefined();
    expect(engineOf(conn)).toBeUndefined();
    client.send('ping?');
    expect(await client.recv()).toBe('ping?');
    expect(engineOf(conn)).toBeDefined();
    await client.close();
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1000);
  });

  test('footprint: a connection read through events holds 8 own fields (no engine yet); the usual values are on the prototype', async () => {
    const client = await connect(`ws://127.0.0.1:${server.port}/`, { perMessageDeflate: false });
    await until(() => conns.length === 2, 'the handler');
    const conn = conns[1]!;
    expect(Reflect.ownKeys(conn).map(String).sort()).toEqual(
      ['_events', '_eventsCount', 'flags', 'headers', 'lastActivity', 'limits', 'stream', 'url'],
    );
    expect(conn.protocol).toBe('');
    expect(conn.extensions).toBe('');
    await client.close();
    await conn.whenClosed;
  });

  test('dropped after an idle pause and made again by a send or a frame; deflate contexts carry over', async () => {
    const client = await connect(`ws://127.0.0.1:${server.port}/`, { perMessageDeflate: true });
    await until(() => conns.length === 3, 'the handler');
    const conn = conns[2]!;
    expect(conn.extensions).toMatch(/permessage-deflate/);
    // The same long text each time: with context takeover the later copies compress to a
    // back-reference into the window, which only the kept inflate state can expand.
    const text = 'the quick brown fox jumps over the lazy dog '.repeat(40);
    for (let i = 0; i < 3; i++) {
      client.send(text + i);
      expect(await client.recv()).toBe(text + i);
    }
    expect(engineOf(conn)).toBeDefined();
    await until(() => engineOf(conn) === undefined, 'the engine to be dropped');
    // A send makes it again too (a server that only pushes), and the compressor's context carries over.
    await conn.send(text + 'pushed');
    expect(engineOf(conn)).toBeDefined();
    expect(await client.recv()).toBe(text + 'pushed');
    for (let i = 3; i < 6; i++) {
      client.send(text + i);
      expect(await client.recv()).toBe(text + i);
    }
    expect(engineOf(conn)).toBeDefined();
    expect(conn.readyState).toBe('open');
    await client.close();
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1000);
  });

  test('a server that pushes without reading keeps its engine between pushes, and drops it after', async () => {
    const client = await connect(`ws://127.0.0.1:${server.port}/`, { perMessageDeflate: false });
    await until(() => conns.length === 4, 'the handler');
    const conn = conns[3]!;
    await conn.send('push 0');
    const engine = engineOf(conn);
    expect(engine).toBeDefined();
    // 3 s of pushes 300 ms apart, with nothing received: longer than the drop delay (about 2 s).
    for (let i = 1; i <= 10; i++) {
      await sleep(300);
      await conn.send(`push ${i}`);
      expect(engineOf(conn)).toBe(engine);
    }
    for (let i = 0; i <= 10; i++) expect(await client.recv()).toBe(`push ${i}`);
    await until(() => engineOf(conn) === undefined, 'the engine to be dropped once the pushes stop');
    await client.close();
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1000);
  });

  test('a fragmented message that spans an idle pause keeps its engine', async () => {
    const raw = await RawClient.connect(server.port);
    await until(() => conns.length === 5, 'the handler');
    const conn = conns[4]!;
    const bytes = Buffer.from('caf\u00e9 au lait', 'utf8');
    // Split inside the two bytes of 'é': the UTF-8 check must carry its state across the pause.
    const cut = bytes.indexOf(0xc3) + 1;
    raw.send({ opcode: 1, fin: false, payload: bytes.subarray(0, cut) });
    await until(() => engineOf(conn) !== undefined, 'the first fragment to arrive');
    const engine = engineOf(conn);
    await sleep(3000); // longer than the idle drop (about 2 s) plus a wheel tick
    expect(engineOf(conn)).toBe(engine);
    raw.send({ opcode: 0, fin: true, payload: bytes.subarray(cut) });
    const echo = await raw.readFrame();
    expect(echo?.opcode).toBe(1);
    expect(echo?.payload.toString('utf8')).toBe('caf\u00e9 au lait');
    raw.destroy();
  });

  test('a message received with recvStream() does not keep the engine once it has ended (it was kept until the next message)', async () => {
    const before = conns.length;
    const raw = await RawClient.connect(server.port);
    await until(() => conns.length === before + 1, 'the handler');
    const conn = conns[before]!;
    const streamed = conn.recvStream();
    raw.send({ opcode: 2, fin: false, payload: Buffer.alloc(100, 1) });
    raw.send({ opcode: 0, fin: true, payload: Buffer.alloc(50, 2) });
    const stream = await streamed;
    if (typeof stream === 'symbol') throw new Error('EOF');
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks)).toEqual(Buffer.concat([Buffer.alloc(100, 1), Buffer.alloc(50, 2)]));
    // Nothing is under way: dropped after about 2 s, as after a message received whole.
    await until(() => engineOf(conn) === undefined, 'the engine to be dropped', 4000);
    raw.send({ opcode: 1, payload: 'after' });
    expect((await raw.readFrame())?.payload.toString()).toBe('after');
    raw.destroy();
  });
});
