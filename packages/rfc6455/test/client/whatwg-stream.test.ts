/**
 * `WebSocketStream` (the WHATWG streams-based client) over real sockets. The closing cases are
 * those the web-platform-tests check (websockets/stream/tentative), run on ours and on undici's
 * implementation side by side against the same server; backpressure (which undici's does not
 * have yet), failures and the Node additions are ours alone.
 */
import { HandshakeError, ProtocolError, serve, serviceMapper, WebSocketStream, WebSocketStreamError, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { WebSocketError as UndiciWebSocketError, WebSocketStream as UndiciWebSocketStream } from 'undici';
import { closePayload, frame } from '../helpers/frames.js';
import { rawServer, requestKey } from '../helpers/raw-server.js';
import { quietUndiciStreamWarning } from '../helpers/undici.js';
import { stalled } from '../helpers/wait.js';
import { acceptKey } from 'rfc6455';
import { runInNewContext } from 'node:vm';
import { getEventListeners } from 'node:events';

let server: WebSocketServer;
/** The close code and reason each /echo connection ended with, in order. */
const closes: Array<{ code: number | undefined; reason: string | undefined }> = [];
/** /flood: how many messages the server has sent so far. */
let flooded = 0;
/** /sink: the server's side, paused, and what it has received. */
let sink: { conn: WebSocketConnection; received: number } | undefined;

const FLOOD_COUNT = 512;
const FLOOD_SIZE = 64 * 1024;

beforeAll(async () => {
  server = await serve(
    { port: 0, perMessageDeflate: false },
    serviceMapper([
      {
        path: '/echo',
        handler: (conn) => {
          conn.on('message', (data, binary) => void conn.send(data, { binary }).catch(() => undefined));
          conn.on('close', () => closes.push({ code: conn.closeStatus, reason: conn.closeReason }));
        },
      },
      { path: '/proto', protocols: { 'chat.v2': () => undefined } },
      { path: '/bye', handler: (conn) => void conn.close(4001, 'bye').catch(() => undefined) },
      {
        path: '/drop',
        handler: (conn) => {
          conn.on('message', () => conn.terminate());
        },
      },
      {
        path: '/flood',
        handler: async (conn) => {
          flooded = 0;
          for (let i = 0; i < FLOOD_COUNT && !conn.closed; i++) {
            const message = Buffer.alloc(FLOOD_SIZE, i & 0xff);
            message.writeUInt32BE(i, 0);
            await conn.send(message).catch(() => undefined);
            flooded++;
          }
        },
      },
      {
        path: '/sink',
        handler: (conn) => {
          const state = { conn, received: 0 };
          sink = state;
          conn.pause();
          conn.on('message', () => void state.received++);
        },
      },
    ]),
  );
});
afterAll(() => server.close());

/** Waits until `test()` holds (polls every 10 ms, at most 5 s). */
async function until(test: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !test(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(test()).toBe(true);
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

// ---- The closing cases of the web-platform-tests, on ours and on undici's -------------------

type Impl = {
  name: string;
  make(url: string): { opened: Promise<{ readable: ReadableStream; writable: WritableStream }>; closed: Promise<{ closeCode?: number; reason?: string }>; close(info?: unknown): void };
  error(message: string, init: { closeCode?: number; reason?: string }): unknown;
};

const IMPLS: Impl[] = [
  { name: 'ours', make: (url) => new WebSocketStream(url), error: (message, init) => new WebSocketStreamError(message, init) },
  {
    name: "undici's",
    make: (url) => new UndiciWebSocketStream(url) as unknown as ReturnType<Impl['make']>,
    // (undici types the init with both members required; the class takes either.)
    error: (message, init) => new UndiciWebSocketError(message, init as { closeCode: number; reason: string }),
  },
];

let restoreWarning: () => void = () => undefined;
beforeAll(() => {
  restoreWarning = quietUndiciStreamWarning();
});
afterAll(() => restoreWarning());

describe.each(IMPLS)('closing, as the web-platform-tests check it: $name', (impl) => {
  const echo = (): string => `${server.url}echo`;

  test.each([
    [{ closeCode: 3456, reason: 'pizza' }, 3456, 'pizza'],
    [undefined, 1005, ''],
    [{}, 1005, ''],
    [{ reason: '' }, 1005, ''],
    [{ reason: 'non-empty' }, 1000, 'non-empty'],
    // WebIDL: a function is an object, its members read.
    [Object.assign(() => undefined, { closeCode: 4321, reason: 'f' }), 4321, 'f'],
  ])('close(%j): the server sees code %d, and closed resolves with it', async (info, code, reason) => {
    const wss = impl.make(echo());
    await wss.opened;
    const before = closes.length;
    wss.close(info);
    expect(await wss.closed).toEqual({ closeCode: code, reason });
    await until(() => closes.length > before);
    expect(closes[before]).toEqual({ code, reason });
  });

  test('close(true) is a TypeError; an overlong reason a SyntaxError; a code not 1000 or 3000-4999 an InvalidAccessError', async () => {
    const wss = impl.make(echo());
    await wss.opened;
    expect(() => wss.close(true)).toThrow(TypeError);
    expect(() => wss.close({ reason: '.'.repeat(124) })).toThrow(expect.objectContaining({ name: 'SyntaxError' }));
    // (WebIDL's unsigned short: NaN and infinities are 0, -1 is 65535, 65536 is 0: all invalid.)
    for (const closeCode of [999, 1001, 2999, 5000, Number.NaN, Infinity, -1, 65536]) {
      expect(() => wss.close({ closeCode })).toThrow(expect.objectContaining({ name: 'InvalidAccessError' }));
    }
    // None of that closed anything.
    wss.close({ closeCode: 1000 });
    expect(await wss.closed).toEqual({ closeCode: 1000, reason: '' });
  });

  test('close() during the handshake rejects opened and closed with a WebSocketError', async () => {
    const wss = impl.make(echo());
    wss.close();
    for (const error of [await rejection(wss.opened), await rejection(wss.closed)]) {
      expect(error).toBeInstanceOf(DOMException);
      expect((error as DOMException).name).toBe('WebSocketError');
    }
  });

  test('closing the writable closes cleanly (1005)', async () => {
    const wss = impl.make(echo());
    const { writable } = await wss.opened;
    void writable.getWriter().close();
    expect(await wss.closed).toEqual({ closeCode: 1005, reason: '' });
  });

  const ends: Array<[string, (info: { readable: ReadableStream; writable: WritableStream }, reason?: unknown) => Promise<void>]> = [
    ['aborting the writable', (info, reason) => info.writable.abort(reason)],
  ];
  // undici bug (7.30): once the readable was cancelled, its socket's close handler closes the
  // readable's controller again and throws (lib/web/websocket/stream/websocketstream.js
  // #onSocketClose: "Invalid state: Controller is already closed"), out of a socket event.
  if (impl.name === 'ours') ends.push(['cancelling the readable', (info, reason) => info.readable.cancel(reason)]);
  test.each(ends)('%s closes cleanly; with a WebSocketError its code and reason are sent; other reasons are ignored', async (_, end) => {
    for (const [reason, code, text] of [
      [undefined, 1005, ''],
      [{ code: 3456, reason: 'set' }, 1005, ''],
      [impl.error('x', { closeCode: 4000, reason: 'aborted' }), 4000, 'aborted'],
    ] as const) {
      const wss = impl.make(echo());
      const info = await wss.opened;
      const before = closes.length;
      void end(info, reason).catch(() => undefined);
      expect(await wss.closed).toEqual({ closeCode: code, reason: text });
      await until(() => closes.length > before);
      expect(closes[before]).toEqual({ code, reason: text });
    }
  });

  test('the server closing: the readable ends, closed resolves with its code and reason, writing is an InvalidStateError', async () => {
    const wss = impl.make(`${server.url}bye`);
    const { readable, writable } = await wss.opened;
    expect(await readable.getReader().read()).toEqual({ value: undefined, done: true });
    expect(await wss.closed).toEqual({ closeCode: 4001, reason: 'bye' });
    const error = await rejection(writable.getWriter().write('late'));
    expect((error as DOMException).name).toBe('InvalidStateError');
  });
});

// ---- Ours: the rest ---------------------------------------------------------------------------

describe('closing', () => {
  test("close()'s closeCode is truncated, and one outside 0-65535 is an InvalidAccessError, as in Chromium (65536 + 4000 closed with 4000 and -62536 with 3000); close(null) is close()", async () => {
    const wss = new WebSocketStream(`${server.url}echo`);
    await wss.opened;
    for (const closeCode of [65536 + 4000, 65536 + 4000.9, -62536, -65536 + 1000]) {
      expect(() => wss.close({ closeCode })).toThrow(expect.objectContaining({ name: 'InvalidAccessError' }));
      expect(() => new WebSocketStreamError('', { closeCode })).toThrow(expect.objectContaining({ name: 'InvalidAccessError' }));
    }
    expect(new WebSocketStreamError('', { closeCode: 4000.9 }).closeCode).toBe(4000);
    expect(new WebSocketStreamError('', null as never).closeCode).toBe(null);
    wss.close(null);
    expect(await wss.closed).toEqual({ closeCode: 1005, reason: '' });
  });
});

describe('opening', () => {
  test('opened gives the streams, the chosen subprotocol and the extensions; url is the resolved URL', async () => {
    const wss = new WebSocketStream(`${server.url.replace('ws:', 'http:')}proto`, { protocols: ['chat.v1', 'chat.v2'] });
    expect(wss.url).toBe(`${server.url}proto`);
    expect(Object.prototype.toString.call(wss)).toBe('[object WebSocketStream]');
    const info = await wss.opened;
    expect(info.protocol).toBe('chat.v2');
    expect(info.extensions).toBe('');
    expect(info.readable).toBeInstanceOf(ReadableStream);
    expect(info.writable).toBeInstanceOf(WritableStream);
    expect(wss.connection?.protocol).toBe('chat.v2');
    wss.close();
    await wss.closed;
  });

  test('messages that arrive once close() was called are not delivered: the readable ends without them', async () => {
    const wss = new WebSocketStream(`${server.url}echo`);
    const { readable, writable } = await wss.opened;
    await writable.getWriter().write('echoed after close()');
    wss.close();
    const read: unknown[] = [];
    for await (const message of readable) read.push(message);
    expect(read).toEqual([]);
    expect(await wss.closed).toEqual({ closeCode: 1005, reason: '' });
  });

  test('the options may be any object, a function included, as WebIDL reads a dictionary from it (a number is a TypeError)', async () => {
    const wss = new WebSocketStream(`${server.url}echo`, Object.assign(() => undefined, { protocols: [] as string[] }) as never);
    await wss.opened;
    wss.close();
    expect(await wss.closed).toEqual({ closeCode: 1005, reason: '' });
    expect(() => new WebSocketStream(`${server.url}echo`, 1 as never)).toThrow(TypeError);
  });

  test('the Node options go to connect(): permessage-deflate offered by default, and declined when told', async () => {
    const deflating = await serve({ port: 0 }, (conn) => void conn.close().catch(() => undefined));
    try {
      const offered = new WebSocketStream(deflating.url);
      expect((await offered.opened).extensions).toBe('permessage-deflate');
      const plain = new WebSocketStream(deflating.url, { perMessageDeflate: false, headers: { 'x-test': '1' } });
      expect((await plain.opened).extensions).toBe('');
      await Promise.all([offered.closed, plain.closed]);
    } finally {
      await deflating.close();
    }
  });

  test.each([
    ['not a URL', 'no url', undefined],
    ['another scheme', 'ftp://example.com/', undefined],
    ['a fragment', 'ws://example.com/#x', undefined],
    ['a subprotocol that is not a token', 'ws://example.com/', ['a b']],
    ['a subprotocol twice (in any case)', 'ws://example.com/', ['chat', 'CHAT']],
  ])('%s: a SyntaxError at construction', (_, url, protocols) => {
    expect(() => new WebSocketStream(url, { protocols })).toThrow(expect.objectContaining({ name: 'SyntaxError' }));
  });

  test('a refused handshake rejects opened with a WebSocketError without a code, closed with one of 1006; the cause of both is the HandshakeError', async () => {
    const wss = new WebSocketStream(`${server.url}nowhere`);
    const opened = (await rejection(wss.opened)) as WebSocketStreamError & { cause?: unknown };
    const closed = (await rejection(wss.closed)) as WebSocketStreamError & { cause?: unknown };
    expect(opened).toBeInstanceOf(WebSocketStreamError);
    expect(closed).toBeInstanceOf(WebSocketStreamError);
    expect([opened.closeCode, closed.closeCode]).toEqual([null, 1006]);
    expect(opened.cause).toBeInstanceOf(HandshakeError);
    expect((opened.cause as HandshakeError).status).toBe(404);
    expect(closed.cause).toBe(opened.cause);
  });

  test('an aborted signal: opened and closed reject with its reason, and nothing connects', async () => {
    const probe = await rawServer(() => undefined);
    try {
      const reason = new Error('never mind');
      const wss = new WebSocketStream(probe.url, { signal: AbortSignal.abort(reason) });
      expect(await rejection(wss.opened)).toBe(reason);
      expect(await rejection(wss.closed)).toBe(reason);
      // A later one does connect (the probe sees its request), so the first one would have been seen.
      const later = new WebSocketStream(probe.url, { handshakeTimeout: 200 });
      await rejection(later.closed);
      expect(probe.requests).toHaveLength(1);
    } finally {
      await probe.close();
    }
  });

  test('a signal aborted during the handshake rejects both with its reason; aborted after opening, it does nothing', async () => {
    const stalling = await rawServer(() => undefined);
    try {
      const controller = new AbortController();
      const wss = new WebSocketStream(stalling.url, { signal: controller.signal });
      await until(() => stalling.requests.length === 1);
      controller.abort('stop');
      expect(await rejection(wss.opened)).toBe('stop');
      expect(await rejection(wss.closed)).toBe('stop');
    } finally {
      await stalling.close();
    }
    const controller = new AbortController();
    const open = new WebSocketStream(`${server.url}echo`, { signal: controller.signal });
    const { readable, writable } = await open.opened;
    controller.abort();
    const writer = writable.getWriter();
    await writer.write('still here');
    expect((await readable.getReader().read()).value).toBe('still here');
    open.close();
    expect(await open.closed).toEqual({ closeCode: 1005, reason: '' });
  });

  test('a signal shared by many streams is let go by each once its handshake is over (opened or refused)', async () => {
    // An application-wide signal: each stream's abort listener used to stay on it for good, holding
    // the stream and its connection (and past 10, Node warns of a leak).
    const controller = new AbortController();
    for (let i = 0; i < 3; i++) {
      const wss = new WebSocketStream(`${server.url}echo`, { signal: controller.signal });
      await wss.opened;
      wss.close();
      await wss.closed;
    }
    const refused = new WebSocketStream(`${server.url}nowhere`, { signal: controller.signal });
    await rejection(refused.closed);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  test('a failure nobody awaits is not an unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const refused = await rawServer((_, socket) => socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n'));
      try {
        const ignored = new WebSocketStream(refused.url);
        void ignored;
        // A second one, awaited: by the time it has failed, so has the first (same server, earlier).
        await rejection(new WebSocketStream(refused.url).closed);
        await until(() => refused.requests.length === 2);
        await new Promise((r) => setImmediate(r));
      } finally {
        await refused.close();
      }
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
  });
});

describe('messages', () => {
  test('text arrives as strings, binary as plain Uint8Arrays (not Buffers); every kind of chunk is sent', async () => {
    const wss = new WebSocketStream(`${server.url}echo`);
    const { readable, writable } = await wss.opened;
    const writer = writable.getWriter();
    const reader = readable.getReader();
    const sent: unknown[] = ['text ✓', new Uint8Array([1, 2, 3]), Uint16Array.of(0x0102).buffer, new DataView(Uint8Array.of(9, 8, 7).buffer, 1, 2), 42];
    for (const chunk of sent) await writer.write(chunk as string);
    const got: Array<string | Uint8Array> = [];
    for (let i = 0; i < sent.length; i++) got.push((await reader.read()).value!);
    expect(got[0]).toBe('text ✓');
    for (const bytes of got.slice(1, 4)) expect(Object.getPrototypeOf(bytes)).toBe(Uint8Array.prototype);
    expect([...(got[1] as Uint8Array)]).toEqual([1, 2, 3]);
    expect([...(got[2] as Uint8Array)]).toEqual([...new Uint8Array(Uint16Array.of(0x0102).buffer)]);
    expect([...(got[3] as Uint8Array)]).toEqual([8, 7]);
    // Anything else is sent as its string, as WebIDL converts it.
    expect(got[4]).toBe('42');
    await expect(writer.write(Symbol('no') as unknown as string)).rejects.toThrow(TypeError);
    wss.close();
    await wss.closed.catch(() => undefined);
  });

  test('an ArrayBuffer from another realm (a vm context) is sent as bytes', async () => {
    const wss = new WebSocketStream(`${server.url}echo`);
    const { readable, writable } = await wss.opened;
    const foreign = runInNewContext('new Uint8Array([5, 6, 7]).buffer') as ArrayBuffer;
    expect(foreign instanceof ArrayBuffer).toBe(false);
    await writable.getWriter().write(foreign);
    expect([...((await readable.getReader().read()).value as Uint8Array)]).toEqual([5, 6, 7]);
    wss.close();
    await wss.closed;
  });

  test('the bytes are copied when written: changing the buffer afterwards does not change what is sent', async () => {
    const wss = new WebSocketStream(`${server.url}echo`);
    const { readable, writable } = await wss.opened;
    const writer = writable.getWriter();
    const bytes = new Uint8Array(4 * 1024 * 1024).fill(1);
    const written = writer.write(bytes);
    await written;
    bytes.fill(2);
    const echoed = (await readable.getReader().read()).value as Uint8Array;
    expect(echoed.length).toBe(bytes.length);
    expect(echoed.every((b) => b === 1)).toBe(true);
    wss.close();
    await wss.closed;
  });

  test('a connection dropped without a closing handshake: closed rejects with a WebSocketError (1006), the streams error with it', async () => {
    const wss = new WebSocketStream(`${server.url}drop`);
    const { readable, writable } = await wss.opened;
    const reader = readable.getReader();
    const writer = writable.getWriter();
    await writer.write('go');
    const error = await rejection(wss.closed);
    expect(error).toBeInstanceOf(WebSocketStreamError);
    expect(error).toBeInstanceOf(DOMException);
    expect((error as WebSocketStreamError).closeCode).toBe(1006);
    expect(await rejection(reader.read())).toBe(error);
    expect(await rejection(writer.write('more'))).toBe(error);
  });

  test('a peer that breaks the protocol: closed rejects (1006) with the ProtocolError as its cause', async () => {
    const bad = await rawServer((head, socket) => {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(requestKey(head))}\r\n\r\n`);
      // A masked frame from a server (RFC 6455 §5.1: the client must fail the connection).
      socket.write(frame({ opcode: 0x1, payload: Buffer.from('masked'), mask: true }));
    });
    try {
      const wss = new WebSocketStream(bad.url);
      const error = (await rejection(wss.closed)) as WebSocketStreamError & { cause?: unknown };
      expect(error.closeCode).toBe(1006);
      expect(error.cause).toBeInstanceOf(ProtocolError);
    } finally {
      await bad.close();
    }
  });

  test("writer.close() resolves once the closing handshake is over (after the server's close frame)", async () => {
    let answered = false;
    const slow = await rawServer((head, socket) => {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(requestKey(head))}\r\n\r\n`);
      socket.on('data', () => {
        // The client's close frame: answer it a little later, then close TCP.
        setTimeout(() => {
          answered = true;
          socket.end(frame({ opcode: 0x8, payload: closePayload(1000) }));
        }, 100);
      });
    });
    try {
      const wss = new WebSocketStream(slow.url);
      const { writable } = await wss.opened;
      await writable.getWriter().close();
      expect(answered).toBe(true);
      expect(await wss.closed).toEqual({ closeCode: 1000, reason: '' });
    } finally {
      await slow.close();
    }
  });
});

describe('backpressure, over TCP', () => {
  test('receiving: an unread readable stops the server (its awaited sends stall), and every message then arrives in order', async () => {
    const readHighWaterMark = 256 * 1024;
    const wss = new WebSocketStream(`${server.url}flood`, { readHighWaterMark });
    const { readable } = await wss.opened;
    const stallPoint = await stalled(() => flooded);
    // 32 MiB offered; what was sent fits in the socket buffers and the unread queue.
    expect(stallPoint).toBeLessThan(FLOOD_COUNT);
    let next = 0;
    for await (const message of readable) {
      const bytes = message as Uint8Array;
      expect(bytes.length).toBe(FLOOD_SIZE);
      expect(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).readUInt32BE(0)).toBe(next);
      if (++next === FLOOD_COUNT) break;
    }
    expect(next).toBe(FLOOD_COUNT);
    await wss.closed;
  });

  test('receiving: a read of many small messages fills the readable to its mark and no further; the rest of the read waits unparsed until the reader pulls', async () => {
    // 150 small messages and a ping, in one write: about 108 messages fill 4 KiB.
    const count = 150;
    const burst = Buffer.concat([...Array.from({ length: count }, (_, i) => frame({ opcode: 1, payload: String(i) })), frame({ opcode: 9, payload: 'after' })]);
    let peerSocket: import('node:net').Socket | undefined;
    const peer = await rawServer((head, socket) => {
      peerSocket = socket;
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(requestKey(head))}\r\n\r\n`);
    });
    try {
      const readHighWaterMark = 4096;
      const wss = new WebSocketStream(peer.url, { readHighWaterMark, perMessageDeflate: false });
      const { readable } = await wss.opened;
      const conn = wss.connection!;
      // Every message the readable got (the connection hands each to every listener).
      let enqueued = 0;
      let pinged = false;
      const ping = new Promise<void>((resolve) => conn.on('ping', () => resolve()));
      void ping.then(() => (pinged = true));
      // Once the one read of the burst has been handled: how far parsing went.
      const afterRead = new Promise<{ enqueued: number; pinged: boolean }>((resolve) => {
        conn.on('message', () => {
          if (++enqueued === 1) setImmediate(() => resolve({ enqueued, pinged }));
        });
      });
      peerSocket!.write(burst);
      const seen = await afterRead;
      // A message counts its UTF-16 bytes and 32: at most 38 here.
      expect(seen.enqueued).toBeGreaterThan(readHighWaterMark / 38 - 1);
      expect(seen.enqueued).toBeLessThan(count);
      expect(seen.enqueued * 34).toBeLessThanOrEqual(readHighWaterMark + 38);
      // The ping after the messages was not parsed: the messages before it were not received
      // either, into the connection's own queue behind the readable (fixed bug: they were, up
      // to readHighWaterMark more, and the ping after them answered).
      expect(seen.pinged).toBe(false);
      const got: string[] = [];
      const reader = readable.getReader();
      while (got.length < count) got.push((await reader.read()).value as string);
      expect(got).toEqual(Array.from({ length: count }, (_, i) => String(i)));
      await ping;
      // (The raw peer would not answer a close frame.)
      conn.terminate();
      await wss.closed.catch(() => undefined);
    } finally {
      await peer.close();
    }
  });

  test('sending: writes stall while the server does not read, and resume (all delivered) once it does', async () => {
    const wss = new WebSocketStream(`${server.url}sink`, { writeHighWaterMark: 64 * 1024, perMessageDeflate: false });
    const { writable } = await wss.opened;
    const writer = writable.getWriter();
    const chunk = new Uint8Array(64 * 1024);
    const total = 1024;
    let written = 0;
    const writing = (async () => {
      for (let i = 0; i < total; i++) {
        await writer.write(chunk);
        written++;
      }
    })();
    const stallPoint = await stalled(() => written);
    expect(stallPoint).toBeLessThan(total);
    await until(() => sink !== undefined);
    sink!.conn.resume();
    await writing;
    await until(() => sink!.received === total);
    wss.close();
    await wss.closed;
  });

  test('pipeTo() echoes through the server with both sides flow-controlled', async () => {
    const wss = new WebSocketStream(`${server.url}echo`);
    const { readable, writable } = await wss.opened;
    const count = 200;
    const source = new ReadableStream<string>({
      start(controller) {
        for (let i = 0; i < count; i++) controller.enqueue(`message ${i}`);
        controller.close();
      },
    });
    const piped = source.pipeTo(writable, { preventClose: true });
    const got: string[] = [];
    for await (const message of readable) {
      got.push(message as string);
      if (got.length === count) break;
    }
    await piped;
    expect(got).toEqual(Array.from({ length: count }, (_, i) => `message ${i}`));
    await wss.closed;
  });
});

describe('WebSocketStreamError', () => {
  test("is the standard's WebSocketError: a DOMException named WebSocketError, with a checked close code and reason", () => {
    const error = new WebSocketStreamError('done', { closeCode: 4000, reason: 'bye' });
    expect(error).toBeInstanceOf(DOMException);
    expect(error.name).toBe('WebSocketError');
    expect(error.message).toBe('done');
    expect([error.closeCode, error.reason]).toEqual([4000, 'bye']);
    expect(Object.prototype.toString.call(error)).toBe('[object WebSocketError]');
    // A reason without a code means 1000; neither, no code.
    expect(new WebSocketStreamError('', { reason: 'r' }).closeCode).toBe(1000);
    expect(new WebSocketStreamError().closeCode).toBeNull();
    expect(() => new WebSocketStreamError('', { closeCode: 1001 })).toThrow(expect.objectContaining({ name: 'InvalidAccessError' }));
    expect(() => new WebSocketStreamError('', { reason: 'é'.repeat(62) })).toThrow(expect.objectContaining({ name: 'SyntaxError' }));
  });
});
