/**
 * `conn.pause()` / `conn.resume()` (flow control for `message` listeners, as in `ws`) and
 * `createWebSocketStream(conn)` (a connection as a Duplex), over real sockets.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { acceptKey, connect, createWebSocketStream, serve, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { frame } from '../helpers/frames.js';
import { rawServer, requestKey } from '../helpers/raw-server.js';
import { until } from '../helpers/wait.js';

let server: WebSocketServer;
/** What the server's pusher route managed to hand to its socket, per connection. */
const pushed: number[] = [];
const serverConns: WebSocketConnection[] = [];

beforeAll(async () => {
  server = await serve({ perMessageDeflate: false }, (conn) => {
    serverConns.push(conn);
    if (conn.path === '/push') {
      // Sends 400 messages of 64 KiB as fast as the client takes them.
      const index = pushed.push(0) - 1;
      void (async () => {
        for (let i = 0; i < 400; i++) {
          await conn.send(Buffer.alloc(65536, i & 0xff)).catch(() => undefined);
          pushed[index] = i + 1;
        }
        await conn.close(1000, 'all sent').catch(() => undefined);
      })();
      return;
    }
    if (conn.path === '/burst') {
      // 20 KB in 20 messages and the close frame, written together: one read for the client.
      for (let i = 0; i < 20; i++) void conn.send(Buffer.alloc(1000, i)).catch(() => undefined);
      void conn.close(1000, 'burst sent').catch(() => undefined);
      return;
    }
    // Echo, through a Duplex of our own on the server side too (object mode: text stays text).
    const duplex = createWebSocketStream(conn, { objectMode: true });
    duplex.on('error', () => undefined);
    duplex.pipe(duplex);
  });
});
afterAll(() => server.close());

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until the latest pusher has sent nothing more for 100 ms (at most 5 s); returns its count. */
async function whenPusherStalls(): Promise<number> {
  let last = -1;
  for (let i = 0; i < 50 && pushed.at(-1) !== last; i++) {
    last = pushed.at(-1)!;
    await sleep(100);
  }
  return last;
}

describe('pause() and resume()', () => {
  test('a paused connection stops reading: the sender is held back; resume() delivers every message, in order', async () => {
    const client = await connect(`${server.url}push`, { perMessageDeflate: false });
    const firsts: number[] = [];
    client.on('message', (data) => void firsts.push((data as Buffer)[0]!));
    client.pause();
    expect(client.isPaused).toBe(true);
    // 400 x 64 KiB = 25 MiB: the socket buffers on both sides hold far less, so the server's
    // sends stall, and nothing reached the listener.
    expect(await whenPusherStalls()).toBeLessThan(400);
    expect(firsts).toEqual([]);
    const closed = once(client, 'close');
    client.resume();
    expect(client.isPaused).toBe(false);
    await closed;
    expect(firsts).toEqual(Array.from({ length: 400 }, (_, i) => i & 0xff));
  });

  test('pause() from inside a listener holds the rest of the same read; recv() still takes waiting messages', async () => {
    const client = await connect(server.url, { perMessageDeflate: false });
    const seen: string[] = [];
    client.on('message', (data) => {
      seen.push(String(data));
      client.pause();
    });
    // Three messages echoed back in one write (held and written together).
    void client.send('a');
    void client.send('b');
    void client.send('c');
    // Waited for, not timed: a slow or stalled machine delays the echo past any fixed pause.
    await until(() => seen.length > 0, 'the first echo');
    // Nothing more comes while paused, however long we wait.
    await sleep(100);
    expect(seen).toEqual(['a']);
    expect(await client.recv()).toBe('b');
    client.resume(); // delivers 'c', whose listener pauses again
    expect(seen).toEqual(['a', 'c']);
    client.resume();
    await client.send('d');
    // (A fixed 50 ms pause here failed whenever the echo took longer, as when a loaded machine
    // holds the process: an 80 ms stall of the loop right after this send failed it every time.)
    await until(() => seen.length > 2, 'the echo of d');
    expect(seen).toEqual(['a', 'c', 'd']);
    // Paused again (by the listener): close() still reads the server's close frame.
    expect(client.isPaused).toBe(true);
    await client.close();
    expect(client.closeStatus).toBe(1000);
  });
});

describe('createWebSocketStream', () => {
  test('8 MiB piped through a client stream and the echo server come back byte for byte; end() closes with 1000', async () => {
    const client = await connect(server.url, { perMessageDeflate: false });
    const stream = createWebSocketStream(client);
    const data = randomBytes(8 * 1024 * 1024);
    const chunks = Array.from({ length: 128 }, (_, i) => data.subarray(i * 65536, (i + 1) * 65536));
    const received: Buffer[] = [];
    let total = 0;
    const reading = new Promise<void>((resolve) => {
      stream.on('data', (chunk: Buffer) => {
        received.push(chunk);
        total += chunk.length;
        if (total === data.length) resolve();
      });
    });
    await pipeline(Readable.from(chunks), new Writable({ write: (chunk, _e, cb) => void stream.write(chunk, cb) }));
    await reading;
    expect(createHash('sha256').update(Buffer.concat(received)).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
    // Each write was one message: the echo sends each back as one chunk.
    expect(received.map((c) => c.length)).toEqual(chunks.map((c) => c.length));
    stream.end();
    await once(stream, 'close');
    expect(client.closeStatus).toBe(1000);
  });

  test('a reader that falls behind pauses the connection (the server is held back), and gets all 25 MiB once it reads', async () => {
    const client = await connect(`${server.url}push`, { perMessageDeflate: false });
    const stream = createWebSocketStream(client, { readableHighWaterMark: 4 });
    expect(await whenPusherStalls()).toBeLessThan(400);
    expect(client.isPaused).toBe(true);
    // The first message went over the high-water mark: it alone was pushed; the rest wait.
    expect(stream.readableLength).toBe(65536);
    let count = 0;
    let bytes = 0;
    stream.on('data', (chunk: Buffer) => {
      count++;
      bytes += chunk.length;
    });
    await once(stream, 'end');
    expect([count, bytes]).toEqual([400, 400 * 65536]);
    expect([client.closeStatus, client.closeReason]).toEqual([1000, 'all sent']);
  });

  test.each([
    ['bytes', {}],
    ['objectMode', { objectMode: true, highWaterMark: 1 }],
  ])('%s: messages that came with the close frame while the reader was behind are read before the end', async (_name, options) => {
    const client = await connect(`${server.url}burst`, { perMessageDeflate: false });
    const stream = createWebSocketStream(client, options);
    stream.on('error', () => undefined);
    // The reader falls behind (it reads nothing yet): the rest of the burst, the server's close
    // frame with it, waits unparsed. end() closes the connection meanwhile: the server's answer
    // is read, and the messages before it are received into the connection's queue.
    await new Promise<void>((resolve) => client.on('message', () => stream.readableLength >= stream.readableHighWaterMark && resolve()));
    expect(client.readyState).toBe('open');
    stream.end();
    await client.whenClosed;
    expect([client.closeStatus, client.closeReason]).toEqual([1000, 'burst sent']);
    const got: Buffer[] = [];
    for await (const chunk of stream) got.push(chunk as Buffer);
    // (Before: the stream ended after the first 16 KiB (bytes) or the first message (objectMode),
    // without error.)
    const all = Buffer.concat(got);
    expect(all.length).toBe(20 * 1000);
    expect(all.equals(Buffer.concat(Array.from({ length: 20 }, (_, i) => Buffer.alloc(1000, i))))).toBe(true);
  });

  test('objectMode: text is read as strings and strings are written as text', async () => {
    const client = await connect(server.url);
    const stream = createWebSocketStream(client, { objectMode: true });
    stream.write('héllo');
    stream.write(Buffer.from([1, 2]));
    const got: unknown[] = [];
    for await (const chunk of stream) {
      got.push(chunk);
      if (got.length === 2) break; // destroys the stream (with an AbortError): a clean close
    }
    expect(got).toEqual(['héllo', Buffer.from([1, 2])]);
    await client.whenClosed;
    expect(client.closeStatus).toBe(1000);
  });

  test('a connection that fails destroys the stream with its error; destroy(error) aborts the connection', async () => {
    const client = await connect(server.url, { maxMessageSize: 1000 });
    const stream = createWebSocketStream(client);
    stream.write(Buffer.alloc(2000));
    const [error] = (await once(stream, 'error').catch((e: unknown) => [e])) as [Error];
    expect((error as { closeCode?: number }).closeCode).toBe(1009);

    const other = await connect(server.url);
    const second = createWebSocketStream(other);
    second.on('error', () => undefined);
    second.destroy(new Error('gone'));
    await other.whenClosed;
    expect(other.closeStatus).toBe(1006);
  });
});

describe('createWebSocketStream, a reader that falls behind a burst', () => {
  test.each([
    ['objectMode, highWaterMark 16 messages', { objectMode: true, highWaterMark: 16 }],
    ['bytes, highWaterMark 2 KiB', { readableHighWaterMark: 2048 }],
  ])('%s: a read of many small messages fills the readable to its mark and no further; the rest of the read waits unparsed until it reads', async (_name, options) => {
    // 1500 small text messages and a ping, in one write.
    const count = 1500;
    const burst = Buffer.concat([...Array.from({ length: count }, (_, i) => frame({ opcode: 1, payload: String(i) })), frame({ opcode: 9, payload: 'after' })]);
    let peerSocket: import('node:net').Socket | undefined;
    const peer = await rawServer((head, socket) => {
      peerSocket = socket;
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(requestKey(head))}\r\n\r\n`);
    });
    try {
      const client = await connect(peer.url, { perMessageDeflate: false });
      const stream = createWebSocketStream(client, options);
      stream.on('error', () => undefined);
      let received = 0;
      let pinged = false;
      const ping = new Promise<void>((resolve) => client.on('ping', () => resolve()));
      void ping.then(() => (pinged = true));
      // Once the one read of the burst has been handled: how far parsing went.
      const afterRead = new Promise<{ received: number; pinged: boolean }>((resolve) => {
        client.on('message', () => {
          if (++received === 1) setImmediate(() => resolve({ received, pinged }));
        });
      });
      peerSocket!.write(burst);
      const seen = await afterRead;
      // The readable holds its mark (one chunk over it at most)...
      expect(stream.readableLength).toBeLessThanOrEqual(stream.readableHighWaterMark + 4);
      expect(stream.readableLength).toBeGreaterThanOrEqual(stream.readableHighWaterMark);
      // ... and nothing more was received: the rest of the read, the ping after the messages
      // included, waits unparsed (fixed bug: it went on into the connection's own queue behind
      // the readable, up to readHighWaterMark (1 MiB) more, and the ping was answered).
      expect(seen.received).toBeLessThan(count);
      expect(seen.pinged).toBe(false);
      // (A byte stream's read() joins what is buffered: compared as one string.)
      const expected = Array.from({ length: count }, (_, i) => String(i)).join('');
      let got = '';
      for await (const chunk of stream) {
        got += String(chunk);
        if (got.length >= expected.length) break;
      }
      expect(got).toBe(expected);
      await ping;
      client.terminate();
    } finally {
      await peer.close();
    }
  });
});

/** A raw server that answers the handshake and then writes `count` text frames ('0', '1'...) in one write. */
async function burstServer(count: number): Promise<Awaited<ReturnType<typeof rawServer>>> {
  const burst = Buffer.concat(Array.from({ length: count }, (_, i) => frame({ opcode: 1, payload: String(i) })));
  return rawServer((head, socket) => {
    const accept = acceptKey(requestKey(head));
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    // After the response: the client has its listener by then, and the burst is one read.
    setTimeout(() => socket.write(burst), 20);
  });
}

describe('pause() and resume(), the queue past readHighWaterMark', () => {
  test('a listener that pauses and resumes soon after gets every message of a burst in order (those held back came before the one being delivered)', async () => {
    // 3000 small messages in one write; 1 KiB holds about 25 of them, so each pause from the
    // listener fills the queue, and the rest of the read is held back in the engine.
    const count = 3000;
    const peer = await burstServer(count);
    try {
      const client = await connect(peer.url, { perMessageDeflate: false, readHighWaterMark: 1024 });
      const got: number[] = [];
      const all = new Promise<void>((resolve) => {
        client.on('message', (data) => {
          got.push(Number(data));
          if (got.length === count) resolve();
          else if (got.length % 50 === 1) {
            client.pause();
            setImmediate(() => client.resume());
          }
        });
      });
      await all;
      // (Fixed bug: resuming delivered the messages held back before the one being handed over,
      // e.g. ... 167, 169, ..., 222, 168, 170 ...)
      expect(got).toEqual(Array.from({ length: count }, (_, i) => i));
      client.terminate();
    } finally {
      await peer.close();
    }
  });
});

describe('pause() and resume() under load', () => {
  test('random pauses and resumes, from timers and from inside the listener, lose and reorder nothing', async () => {
    // A server that sends 300 messages of random kinds and sizes (up to 300 KiB, so some span many
    // reads and some arrive several to a read), a few of them fragmented through sendStream().
    const sizes = Array.from({ length: 300 }, (_, i) => ((i * 7919) % 13 === 0 ? 150_000 + ((i * 104729) % 150_000) : (i * 2654435761) % 3000));
    const payload = (i: number): Buffer => {
      const b = Buffer.alloc(sizes[i]!);
      b.fill(i & 0xff);
      if (b.length >= 4) b.writeUInt32BE(i, 0);
      return b;
    };
    const sender = await serve({ perMessageDeflate: false }, (conn) => {
      void (async () => {
        for (let i = 0; i < sizes.length; i++) {
          if (i % 29 === 5) await conn.sendStream([payload(i).subarray(0, sizes[i]! >> 1), payload(i).subarray(sizes[i]! >> 1)]);
          else if (i % 3 === 0) await conn.send(payload(i).toString('latin1'), { binary: false }).catch(() => undefined);
          else void conn.send(payload(i)).catch(() => undefined);
        }
        await conn.close(1000, 'done').catch(() => undefined);
      })();
    });
    try {
      const client = await connect(sender.url, { perMessageDeflate: false, textMessages: 'buffer' });
      const got: Array<{ bytes: Buffer; binary: boolean }> = [];
      let toggles = 0;
      let whilePaused = 0;
      client.on('message', (data, binary) => {
        if (client.isPaused) whilePaused++;
        got.push({ bytes: data as Buffer, binary });
        // Every 7th message pauses from inside the listener; a timer resumes it soon after.
        if (got.length % 7 === 0) {
          client.pause();
          toggles++;
          setTimeout(() => client.resume(), got.length % 2);
        }
      });
      // And a timer that pauses and resumes on its own, out of step with the listener.
      const timer = setInterval(() => {
        if (client.isPaused) client.resume();
        else client.pause();
        toggles++;
      }, 3);
      await once(client, 'close');
      clearInterval(timer);
      expect(toggles).toBeGreaterThanOrEqual(42); // 300 / 7 from the listener alone
      expect(got.length).toBe(sizes.length);
      expect(whilePaused).toBe(0);
      got.forEach(({ bytes, binary }, i) => {
        const sentAsText = i % 3 === 0 && i % 29 !== 5;
        expect(binary).toBe(!sentAsText);
        // Text went out as the payload's Latin-1 string, and arrives as that string's UTF-8 bytes.
        if (sentAsText) expect(bytes.toString('utf8') === payload(i).toString('latin1')).toBe(true);
        else expect(bytes.equals(payload(i))).toBe(true);
      });
    } finally {
      await sender.close();
    }
  }, 60_000);
});
