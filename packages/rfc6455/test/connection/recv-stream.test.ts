/**
 * conn.recvStream() over a real socket: a large single-frame message comes out of the stream as
 * its bytes arrive, not once it is whole (the frame parser gathers large whole messages for
 * recv() and 'message', and must not for a streamed one), and the message after it, read with
 * recv(), arrives whole and intact, also when the streamed message's last piece paused reading.
 */
import { EventEmitter, once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { connect, serve, EOF, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { frame } from '../helpers/frames.js';
import { RawClient } from '../helpers/raw-client.js';

let server: WebSocketServer;
const events = new EventEmitter();

beforeAll(async () => {
  server = await serve({ perMessageDeflate: false }, async (conn) => {
    const stream = await conn.recvStream();
    if (stream === EOF) return;
    let total = 0;
    const chunks: Buffer[] = [];
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      total += chunk.length;
      events.emit('chunk', total);
    }
    events.emit('streamed', Buffer.concat(chunks));
    const next = await conn.recv();
    events.emit('next', next);
  });
});
afterAll(() => Promise.all([server.close(), dropping.close()]));

/** A server whose handler destroys its stream after the first piece, then reads the next message. */
let dropping: WebSocketServer;
beforeAll(async () => {
  dropping = await serve({ perMessageDeflate: false }, async (conn) => {
    const stream = await conn.recvStream();
    if (stream === EOF) return;
    await once(stream as NodeJS.ReadableStream, 'data');
    (stream as NodeJS.ReadableStream & { destroy(): void }).destroy();
    events.emit('dropped');
    events.emit('after-drop', await conn.recv());
  });
});

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 29 + seed + (i >> 10)) & 0xff;
  return b;
}

/** Resolves with the event's first argument, or rejects after `ms` (a clear failure, not a hang). */
function within<T>(name: string, ms: number): Promise<T> {
  return Promise.race([
    once(events, name).then(([value]) => value as T),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no '${name}' within ${ms} ms`)), ms).unref()),
  ]);
}

test('a 1 MiB single-frame message read with recvStream() flows out as it arrives; the next message, read with recv(), is whole', async () => {
  const raw = await RawClient.connect(server.port);
  const payload = pattern(1 << 20, 1);
  const bytes = frame({ opcode: 2, payload, mask: Uint8Array.of(0x12, 0xf4, 0x56, 0x9a) });
  // The header and a tenth of the payload (under the quarter at which a whole message would be
  // gathered): the stream must already have given out bytes.
  const firstChunk = within<number>('chunk', 5000);
  raw.write(bytes.subarray(0, 100_000));
  expect(await firstChunk).toBeGreaterThan(0);
  // All but the last 20,000 bytes, and once the stream has given those out, the last 20,000 in
  // one write: a last piece over the stream's high-water mark, which pauses reading, and reading
  // must resume once the stream has been read (else the next message never comes).
  const allButLast = payload.length - 20_000;
  const upTo = new Promise<void>((resolve) => {
    const check = (total: number): void => {
      if (total < allButLast) return;
      events.off('chunk', check);
      resolve();
    };
    events.on('chunk', check);
  });
  raw.write(bytes.subarray(100_000, bytes.length - 20_000));
  await upTo;
  const streamed = within<Buffer>('streamed', 10000);
  raw.write(bytes.subarray(bytes.length - 20_000));
  expect((await streamed).equals(payload)).toBe(true);

  const second = pattern(300_000, 2);
  const next = within<Buffer>('next', 10000);
  const secondBytes = frame({ opcode: 2, payload: second, mask: true });
  raw.write(secondBytes.subarray(0, 20_000));
  raw.write(secondBytes.subarray(20_000));
  const got = await next;
  expect(Buffer.isBuffer(got)).toBe(true);
  expect(got.equals(second)).toBe(true);
  raw.destroy();
});

test('a stream destroyed mid-message: the rest of that message is dropped and the next one arrives', async () => {
  const raw = await RawClient.connect(dropping.port);
  const payload = pattern(1 << 20, 3);
  const bytes = frame({ opcode: 2, payload, mask: true });
  const dropped = within<void>('dropped', 5000);
  raw.write(bytes.subarray(0, 100_000));
  await dropped;
  const next = within<Buffer>('after-drop', 10000);
  // The rest in large writes (pieces over the stream's high-water mark), then a short message.
  raw.write(bytes.subarray(100_000));
  raw.send({ opcode: 2, payload: Buffer.from('next') });
  expect((await next).toString()).toBe('next');
  raw.destroy();
});

test('recvStream() called while a fragmented message is arriving streams that message, not the one after it', async () => {
  let accepted!: (conn: WebSocketConnection) => void;
  const connection = new Promise<WebSocketConnection>((resolve) => (accepted = resolve));
  const midway = await serve({ perMessageDeflate: false }, (conn) => accepted(conn));
  try {
    const raw = await RawClient.connect(midway.port);
    const conn = await connection;
    raw.send({ opcode: 1, fin: false, payload: 'first, ' });
    // A ping after the first fragment: once its pong is back, the server has parsed that fragment.
    raw.send({ opcode: 9, payload: 'p' });
    expect((await raw.readFrame())?.opcode).toBe(0xa);
    const streamed = conn.recvStream();
    raw.send({ opcode: 0, fin: true, payload: 'in two fragments' });
    raw.send({ opcode: 1, payload: 'second' });
    const stream = await streamed;
    expect(stream).not.toBe(EOF);
    const chunks: Buffer[] = [];
    for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
    expect(Buffer.concat(chunks).toString()).toBe('first, in two fragments');
    // The next message is not streamed (one recvStream(), one streamed message), and comes next.
    expect(await conn.recv()).toBe('second');
    raw.destroy();
  } finally {
    await midway.close();
  }
});

test('close() while the unread stream of a message is still arriving: the rest is handed over, the peer\'s close frame is read, and the close is clean', async () => {
  const body = randomBytes(4 * 1024 * 1024);
  const sender = await serve({ perMessageDeflate: false }, (conn) => {
    conn.send(body).catch(() => undefined);
  });
  try {
    // closeTimeout short, so that a stall shows as 1006 at once.
    const client = await connect(sender.url, { perMessageDeflate: false, closeTimeout: 1000, maxMessageSize: 8 * 1024 * 1024 });
    const stream = await client.recvStream();
    expect(stream).not.toBe(EOF);
    // Before, each read after the close filled the unread stream and paused the socket again: the
    // server's answer was never read, and the close was aborted at closeTimeout (1006).
    await client.close(1000, 'bye');
    expect(client.closeStatus).toBe(1000);
    const chunks: Buffer[] = [];
    for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
    expect(Buffer.concat(chunks).equals(body)).toBe(true);
  } finally {
    await sender.close();
  }
});
