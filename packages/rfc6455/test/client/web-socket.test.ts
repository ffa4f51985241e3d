/**
 * The browser-API `WebSocket` over real sockets, for what a browser comparison cannot show
 * (test/browser/web-socket-parity.test.ts compares the rest with Chromium): binary types, the
 * `on…` attributes, messages after close() started, the Node options, the error's cause.
 */
import { Blob } from 'node:buffer';
import { mkdtempSync, openAsBlob, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runInNewContext } from 'node:vm';
import { acceptKey, CloseEvent, connect, Defaults, ErrorEvent, HandshakeError, ProtocolError, serve, serviceMapper, WebSocket, WebSocketConnection, WebSocketStream, type WebSocketServer } from 'rfc6455';
import { closePayload, frame } from '../helpers/frames.js';
import { rawServer, requestKey } from '../helpers/raw-server.js';
import { delay } from '../helpers/wait.js';

const FIXTURES = resolve(__dirname, '../../../../test/fixtures/tls');

let server: WebSocketServer;
const seenHeaders: Array<Record<string, unknown>> = [];
/** What the /record route received on each connection: messages, then the close code it saw. */
const recorded: Array<Promise<unknown[]>> = [];

beforeAll(async () => {
  server = await serve(
    { port: 0 },
    serviceMapper([
      {
        path: '/echo',
        handler: (conn) => {
          seenHeaders.push(conn.headers);
          conn.on('message', (data, binary) => void conn.send(data, { binary }).catch(() => undefined));
        },
      },
      {
        path: '/record',
        handler: (conn) => {
          const got: unknown[] = [];
          conn.on('message', (data, binary) => void got.push(binary ? [...(data as Buffer)] : data));
          recorded.push(new Promise((resolve) => conn.on('close', () => resolve([...got, conn.closeStatus, conn.closeReason]))));
        },
      },
      { path: '/bytes', handler: (conn) => void conn.send(Buffer.of(1, 2, 3)).catch(() => undefined) },
      { path: '/proto', protocols: { b: () => undefined, null: () => undefined } },
    ]),
  );
});
afterAll(() => server.close());

/** Resolves with the next event of that type. */
function next<E extends Event>(ws: WebSocket, type: string): Promise<E> {
  return new Promise((resolve) => ws.addEventListener(type, (event) => resolve(event as E), { once: true }));
}

describe('binaryType', () => {
  test.each([
    ['blob', (data: unknown) => data instanceof Blob],
    ['arraybuffer', (data: unknown) => data instanceof ArrayBuffer],
    ['nodebuffer', (data: unknown) => Buffer.isBuffer(data)],
  ] as const)('%s: binary messages arrive as that type, with their bytes', async (type, isType) => {
    const ws = new WebSocket(`${server.url}bytes`);
    expect(ws.binaryType).toBe('blob');
    ws.binaryType = type;
    const event = await next<MessageEvent>(ws, 'message');
    expect(isType(event.data)).toBe(true);
    const bytes = event.data instanceof Blob ? Buffer.from(await event.data.arrayBuffer()) : Buffer.from(event.data as ArrayBuffer);
    expect([...bytes]).toEqual([1, 2, 3]);
    expect(event.origin).toBe(new URL(server.url).origin);
    ws.close();
    await next(ws, 'close');
  });

  test('arraybuffer: the ArrayBuffer holds the message\'s bytes and no more, even where they start the socket read they came in', async () => {
    // The frame's header in one write, its payload and another frame in the next: the payload
    // can then start the buffer the socket read into.
    const raw = await rawServer((head, socket) => {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(requestKey(head))}\r\n\r\n`);
      const binary = frame({ opcode: 2, payload: Buffer.from('abc') });
      socket.write(binary.subarray(0, 2));
      setTimeout(() => socket.write(Buffer.concat([binary.subarray(2), frame({ opcode: 1, payload: 'next' })])), 50);
      socket.on('data', () => socket.end());
    });
    const ws = new WebSocket(raw.url);
    ws.binaryType = 'arraybuffer';
    try {
      const event = await next<MessageEvent>(ws, 'message');
      expect(event.data).toBeInstanceOf(ArrayBuffer);
      expect(Buffer.from(event.data as ArrayBuffer).toString()).toBe('abc');
    } finally {
      ws.close();
      await next(ws, 'close');
      await raw.close();
    }
  });

  test('an unknown binaryType is ignored, as for any enumeration attribute', () => {
    const ws = new WebSocket(`${server.url}echo`);
    ws.binaryType = 'arraybuffer';
    (ws as { binaryType: string }).binaryType = 'text';
    expect(ws.binaryType).toBe('arraybuffer');
    // Each of the three can be set back.
    for (const type of ['blob', 'nodebuffer', 'arraybuffer', 'blob'] as const) {
      ws.binaryType = type;
      expect(ws.binaryType).toBe(type);
    }
    ws.close();
  });
});

describe('send()', () => {
  test('an ArrayBuffer from another realm (a vm context) goes as binary (it went as the text "[object ArrayBuffer]")', async () => {
    const ws = new WebSocket(`${server.url}echo`);
    ws.binaryType = 'nodebuffer';
    await next(ws, 'open');
    const foreign = runInNewContext('new Uint8Array([7, 8, 9]).buffer') as ArrayBuffer;
    expect(foreign instanceof ArrayBuffer).toBe(false);
    ws.send(foreign);
    const event = await next<MessageEvent>(ws, 'message');
    expect(Buffer.isBuffer(event.data)).toBe(true);
    expect([...(event.data as Buffer)]).toEqual([7, 8, 9]);
    ws.close();
    await next(ws, 'close');
  });

  test('a Blob, and what was sent after it, sent just before close() go out before the close frame (they were dropped)', async () => {
    recorded.length = 0;
    const ws = new WebSocket(`${server.url}record`);
    await next(ws, 'open');
    ws.send('first');
    ws.send(new Blob(['blob']));
    ws.send('after the blob');
    ws.close(4000, 'done');
    // A second close() does nothing (the first one's code goes, after the Blob).
    ws.close(4001, 'again');
    // Once close() is called, nothing more is sent: counted in bufferedAmount.
    ws.send('after close()');
    expect(ws.bufferedAmount).toBeGreaterThanOrEqual(Buffer.byteLength('after close()'));
    const close = await next<CloseEvent>(ws, 'close');
    expect([close.code, close.reason, close.wasClean]).toEqual([4000, 'done', true]);
    // Nor does one once closed: the WebSocket stays CLOSED.
    ws.close(4002);
    expect(ws.readyState).toBe(WebSocket.CLOSED);
    expect(await recorded[0]).toEqual(['first', [...Buffer.from('blob')], 'after the blob', 4000, 'done']);
  });

  test('Blobs one after another, and what follows them, go out in order', async () => {
    const ws = new WebSocket(`${server.url}record`);
    await next(ws, 'open');
    ws.send(new Blob(['1']));
    ws.send(new Blob([Buffer.alloc(100_000, 2)]));
    ws.send('3');
    ws.close(4000);
    await next(ws, 'close');
    const got = (await recorded.at(-1)) as unknown[];
    expect(got.map((m) => (Array.isArray(m) ? `${m.length} bytes` : m))).toEqual(['1 bytes', '100000 bytes', '3', 4000, '']);
  });

  test('a Blob that cannot be read fails the WebSocket, as in Chromium: an error event with the cause, then close 1006 (it closed cleanly, with the server\'s 1011 and no error event); the server is told 1011', async () => {
    // A file Blob whose file changed after it was made cannot be read (NotReadableError).
    const path = join(mkdtempSync(join(tmpdir(), 'ws-blob-')), 'data');
    writeFileSync(path, 'hello');
    const blob = await openAsBlob(path);
    writeFileSync(path, 'hello again, longer');
    const ws = new WebSocket(`${server.url}record`);
    await next(ws, 'open');
    const events: unknown[] = [];
    ws.onerror = (event) => void events.push(['error', ((event as ErrorEvent).error as { name?: string } | undefined)?.name]);
    ws.send('before');
    ws.send(blob);
    ws.send('after');
    const close = await next<CloseEvent>(ws, 'close');
    events.push(['close', close.code, close.wasClean, ws.readyState]);
    expect(events).toEqual([
      ['error', 'NotReadableError'],
      ['close', 1006, false, WebSocket.CLOSED],
    ]);
    expect(await recorded.at(-1)).toEqual(['before', 1011, 'a Blob could not be read']);
  });

  test('without its argument throws a TypeError, connecting or open, as in browsers and undici (it sent the text "undefined"); so does the constructor without a URL', async () => {
    expect(() => Reflect.construct(WebSocket, [])).toThrow(TypeError);
    recorded.length = 0;
    const ws = new WebSocket(`${server.url}record`);
    expect(() => Reflect.apply(ws.send, ws, [])).toThrow(TypeError);
    await next(ws, 'open');
    expect(() => Reflect.apply(ws.send, ws, [])).toThrow(TypeError);
    ws.send(undefined as unknown as string); // given, it is a string, as WebIDL converts it
    ws.close(1000);
    await next(ws, 'close');
    expect(await recorded[0]).toEqual(['undefined', 1000, '']);
  });

  test('a detached ArrayBuffer, or a view over one, is an empty binary message, as WebIDL copies it (it threw a TypeError); a Symbol is a TypeError (it went as the text "Symbol(s)")', async () => {
    recorded.length = 0;
    const ws = new WebSocket(`${server.url}record`);
    await next(ws, 'open');
    const buffer = new Uint8Array([1, 2, 3, 4]).buffer;
    const view = new Uint8Array(buffer, 1, 2);
    const dataView = new DataView(buffer, 1);
    structuredClone(buffer, { transfer: [buffer] });
    expect(buffer.byteLength).toBe(0);
    ws.send(buffer);
    ws.send(view);
    ws.send(dataView);
    expect(() => ws.send(Symbol('s') as unknown as string)).toThrow(TypeError);
    ws.send('last');
    ws.close(1000);
    await next(ws, 'close');
    expect(await recorded[0]).toEqual([[], [], [], 'last', 1000, '']);
  });
});

describe('on… attributes', () => {
  test('the first one set listens; another replaces it in place; null removes it; `this` is the WebSocket', async () => {
    const ws = new WebSocket(`${server.url}echo`);
    const calls: string[] = [];
    ws.addEventListener('message', () => void calls.push('listener before'));
    ws.onmessage = () => void calls.push('first handler');
    ws.addEventListener('message', () => void calls.push('listener after'));
    let self: unknown;
    ws.onmessage = function (event) {
      self = this;
      calls.push(`second handler ${String(event.data)}`);
    };
    expect(typeof ws.onmessage).toBe('function');
    await next(ws, 'open');
    ws.send('a');
    await next(ws, 'message');
    expect(calls).toEqual(['listener before', 'second handler a', 'listener after']);
    expect(self).toBe(ws);
    ws.onmessage = null;
    expect(ws.onmessage).toBeNull();
    calls.length = 0;
    ws.send('b');
    await next(ws, 'message');
    expect(calls).toEqual(['listener before', 'listener after']);
    // A value that is not a function is taken as null ([LegacyTreatNonObjectAsNull]): removed.
    ws.onmessage = () => void calls.push('handler');
    (ws as unknown as { onmessage: unknown }).onmessage = 'not a function';
    expect(ws.onmessage).toBe(null);
    // The event types follow the event names (checked by the typecheck): no casts.
    const closed = new Promise<number>((resolve) => ws.addEventListener('close', (event) => resolve(event.code)));
    ws.close(3001);
    expect(await closed).toBe(3001);
  });
});

describe('closing', () => {
  test('messages that arrive after close() was called are not delivered (the standard); the close completes', async () => {
    // A server that, on the client's close frame, sends a message and only then its close frame.
    const raw = await rawServer((head, socket) => {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(requestKey(head))}\r\n\r\n`);
      socket.write(frame({ opcode: 1, payload: 'before' }));
      socket.on('data', (chunk: Buffer) => {
        if ((chunk[0]! & 0x0f) !== 8) return;
        socket.write(frame({ opcode: 1, payload: 'after close()' }));
        socket.end(frame({ opcode: 8, payload: closePayload(1000, 'done') }));
      });
    });
    try {
      const ws = new WebSocket(raw.url);
      const messages: unknown[] = [];
      ws.onmessage = (event) => {
        messages.push(event.data);
        ws.close(1000);
      };
      const close = await next<CloseEvent>(ws, 'close');
      expect(messages).toEqual(['before']);
      expect([close.code, close.reason, close.wasClean]).toEqual([1000, 'done', true]);
      expect(close).toBeInstanceOf(CloseEvent);
    } finally {
      await raw.close();
    }
  });

  test('close() with no code: no status (1005) without a reason or with an empty one; 1000 with one', async () => {
    recorded.length = 0;
    const calls: Array<(ws: WebSocket) => void> = [(ws) => ws.close(), (ws) => ws.close(undefined, ''), (ws) => ws.close(undefined, 'bye')];
    const sockets = calls.map(() => new WebSocket(`${server.url}record`));
    await Promise.all(sockets.map((ws) => next(ws, 'open')));
    // One at a time, so that recorded is in this order.
    const seen = [];
    for (const [i, ws] of sockets.entries()) {
      calls[i]!(ws);
      const close = await next<CloseEvent>(ws, 'close');
      seen.push([close.code, close.reason, await recorded[i]]);
    }
    expect(seen).toEqual([
      [1005, '', [1005, '']],
      [1005, '', [1005, '']],
      [1000, 'bye', [1000, 'bye']],
    ]);
  });

  test('close() while connecting abandons the attempt: the server never gets the WebSocket (error, then close 1006)', async () => {
    let accepted = 0;
    const counting = await serve({ port: 0 }, () => void accepted++);
    try {
      const ws = new WebSocket(counting.url);
      ws.close();
      expect(ws.readyState).toBe(WebSocket.CLOSING);
      const events: string[] = [];
      ws.onerror = () => void events.push('error');
      const close = await next<CloseEvent>(ws, 'close');
      events.push(`close ${close.code} ${close.wasClean}`);
      expect(events).toEqual(['error', 'close 1006 false']);
      // A WebSocket to the same server, made after: had the first one's handshake gone on, the
      // server would have had it before this one.
      const after = new WebSocket(counting.url);
      await next(after, 'open');
      after.close();
      await next(after, 'close');
      expect(accepted).toBe(1);
    } finally {
      await counting.close();
    }
  });

  test('the server starting the closing handshake makes readyState CLOSING until the connection is closed', async () => {
    // A server that sends its close frame and then waits before ending TCP.
    const raw = await rawServer((head, socket) => {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(requestKey(head))}\r\n\r\n`);
      setTimeout(() => socket.write(frame({ opcode: 8, payload: closePayload(4002, 'later') })), 50);
      socket.on('data', (chunk: Buffer) => {
        if ((chunk[0]! & 0x0f) === 8) setTimeout(() => socket.end(), 100);
      });
    });
    try {
      const ws = new WebSocket(raw.url);
      await next(ws, 'open');
      // Every state seen, from open until the close event (the server waits 100 ms between its
      // close frame and the end of TCP).
      const states = new Set<number>([ws.readyState]);
      // Sent once CLOSING (the server's close frame came): never sent, counted in bufferedAmount.
      let buffered: number | undefined;
      const poll = setInterval(() => {
        states.add(ws.readyState);
        if (ws.readyState === WebSocket.CLOSING && buffered === undefined) {
          ws.send('abc');
          buffered = ws.bufferedAmount;
        }
      }, 2);
      const close = await next<CloseEvent>(ws, 'close');
      clearInterval(poll);
      states.add(ws.readyState);
      expect([...states]).toEqual([WebSocket.OPEN, WebSocket.CLOSING, WebSocket.CLOSED]);
      expect([buffered, ws.bufferedAmount]).toEqual([3, 3]);
      expect([close.code, close.reason, close.wasClean]).toEqual([4002, 'later', true]);
    } finally {
      await raw.close();
    }
  });

  test('a refused handshake: the error event carries the HandshakeError (status, body), then close 1006', async () => {
    const ws = new WebSocket(`${server.url}nowhere`);
    const events: string[] = [];
    ws.onopen = () => void events.push('open');
    const [error, close] = await Promise.all([next<ErrorEvent>(ws, 'error'), next<CloseEvent>(ws, 'close')]);
    expect(events).toEqual([]);
    expect(error).toBeInstanceOf(ErrorEvent);
    expect(error.error).toBeInstanceOf(HandshakeError);
    expect((error.error as HandshakeError).status).toBe(404);
    expect(error.message).toBe((error.error as Error).message);
    expect([close.code, close.wasClean, ws.readyState]).toEqual([1006, false, WebSocket.CLOSED]);
  });

  test('a server that breaks the protocol: the error event carries the ProtocolError, then close 1006', async () => {
    const bad = await rawServer((head, socket) => {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(requestKey(head))}\r\n\r\n`);
      // A masked frame from a server (RFC 6455 §5.1: the client must fail the connection).
      socket.write(frame({ opcode: 0x1, payload: Buffer.from('masked'), mask: true }));
    });
    try {
      const ws = new WebSocket(bad.url);
      const [error, close] = await Promise.all([next<ErrorEvent>(ws, 'error'), next<CloseEvent>(ws, 'close')]);
      expect(error.error).toBeInstanceOf(ProtocolError);
      expect(error.message).toBe((error.error as Error).message);
      expect([close.code, close.wasClean]).toEqual([1006, false]);
    } finally {
      await bad.close();
    }
  });

  test('bufferedAmount counts application bytes until they are written, then none', async () => {
    const ws = new WebSocket(`${server.url}echo`, { perMessageDeflate: false });
    await next(ws, 'open');
    const big = Buffer.alloc(8 * 1024 * 1024, 0x61);
    ws.send(big);
    ws.send('é');
    // Written at the end of this task at the earliest: all of it is still buffered.
    expect(ws.bufferedAmount).toBe(big.length + 2);
    let echoed = 0;
    ws.binaryType = 'nodebuffer';
    await new Promise<void>((resolve) => {
      ws.onmessage = () => {
        if (++echoed === 2) resolve();
      };
    });
    expect(ws.bufferedAmount).toBe(0);
    ws.close();
    await next(ws, 'close');
  });

  test('bufferedAmount counts a Blob being read, and what waits behind it, from send() on', async () => {
    const ws = new WebSocket(`${server.url}echo`, { perMessageDeflate: false });
    await next(ws, 'open');
    ws.send(new Blob([Buffer.alloc(1000)]));
    ws.send('abc');
    ws.send(new Uint8Array(7));
    expect(ws.bufferedAmount).toBe(1010);
    let echoed = 0;
    await new Promise<void>((resolve) => {
      ws.onmessage = () => {
        if (++echoed === 3) resolve();
      };
    });
    expect(ws.bufferedAmount).toBe(0);
    ws.close();
    await next(ws, 'close');
  });

  test('bufferedAmount does not count what went out before it was last read, nor the close frame (it counted them until read while the buffer was empty)', async () => {
    const ws = new WebSocket(`${server.url}echo`, { perMessageDeflate: false });
    ws.binaryType = 'nodebuffer';
    await next(ws, 'open');
    // Each message is written and echoed before the next step; bufferedAmount is not read meanwhile.
    ws.send('the first message, long written when the next is sent');
    await next(ws, 'message');
    ws.send('second');
    expect(ws.bufferedAmount).toBe(Buffer.byteLength('second'));
    await next(ws, 'message');
    ws.close(1000, 'bye');
    expect(ws.bufferedAmount).toBe(0);
    ws.send('abc');
    expect(ws.bufferedAmount).toBe(3);
    await next(ws, 'close');
    expect(ws.bufferedAmount).toBe(3);
  });
});

describe('events', () => {
  test('CloseEvent and ErrorEvent made without an init have the standard\'s defaults: code 0, reason \'\', wasClean false, message \'\'', () => {
    const close = new CloseEvent('close');
    expect([close.type, close.code, close.reason, close.wasClean]).toEqual(['close', 0, '', false]);
    const error = new ErrorEvent('error');
    expect([error.type, error.message, error.error]).toEqual(['error', '', undefined]);
    const given = new CloseEvent('close', { code: 4000, reason: 'r', wasClean: true });
    expect([given.code, given.reason, given.wasClean]).toEqual([4000, 'r', true]);
  });

  test('messages that arrive in one read each get a task of their own, as the standard has it: the microtasks of one run before the next, and close comes last', async () => {
    // A server that greets with three messages and its close frame, all in one write.
    const raw = await rawServer((head, socket) => {
      socket.write(
        Buffer.concat([
          Buffer.from(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(requestKey(head))}\r\n\r\n`),
          ...['a', 'b', 'c'].map((payload) => frame({ opcode: 1, payload })),
          frame({ opcode: 8, payload: closePayload(1000, 'that is all') }),
        ]),
      );
      socket.on('data', () => socket.end());
    });
    try {
      const ws = new WebSocket(raw.url);
      const trace: string[] = [];
      ws.onmessage = (event) => {
        trace.push(String(event.data));
        // Two levels deep, as an async function that awaits something would queue them.
        void Promise.resolve().then(() => Promise.resolve().then(() => trace.push(`microtasks of ${String(event.data)}`)));
      };
      // The usual way to await messages one at a time: each is taken (it missed b and c).
      const reader = (async () => {
        await next(ws, 'open');
        const read: unknown[] = [];
        for (let i = 0; i < 3; i++) read.push((await next<MessageEvent>(ws, 'message')).data);
        return read;
      })();
      const close = await next<CloseEvent>(ws, 'close');
      trace.push(`close ${close.code}`);
      expect(trace).toEqual(['a', 'microtasks of a', 'b', 'microtasks of b', 'c', 'microtasks of c', 'close 1000']);
      expect(await Promise.race([reader, 'the reader missed messages'])).toEqual(['a', 'b', 'c']);
      // close() between two of them (here in a microtask): those waiting are not delivered, and
      // close still comes.
      const closing = new WebSocket(raw.url);
      const delivered: unknown[] = [];
      closing.onmessage = (event) => {
        delivered.push(event.data);
        queueMicrotask(() => closing.close(3000));
      };
      await next(closing, 'close');
      expect(delivered).toEqual(['a']);
    } finally {
      await raw.close();
    }
  });
});

describe('Node additions', () => {
  test('a quiet WebSocket or WebSocketStream is not closed by an idle timeout unless one is asked for, as in browsers (they took connect()\'s 300 s default and closed with 1001), idleTimeout: undefined included', async () => {
    // connect()'s default shortened for the test, so that its idle close, the control, comes soon.
    const defaults = Defaults as { idleTimeout: number };
    const saved = defaults.idleTimeout;
    const quiet = await serve({ port: 0, idleTimeout: 0 }, () => undefined);
    defaults.idleTimeout = 300;
    try {
      const control = await connect(quiet.url);
      const ws = new WebSocket(quiet.url);
      const wss = new WebSocketStream(quiet.url);
      let streamClosed = false;
      void wss.closed.then(() => (streamClosed = true), () => (streamClosed = true));
      await Promise.all([next(ws, 'open'), wss.opened]);
      // `idleTimeout: undefined` (an unset setting passed on) asks for none either (fixed bug: it
      // was spread over the constructor's 0, and connect() took its own default).
      const unset = new WebSocket(quiet.url, { idleTimeout: undefined });
      const unsetStream = new WebSocketStream(quiet.url, { idleTimeout: undefined });
      let unsetStreamClosed = false;
      void unsetStream.closed.then(() => (unsetStreamClosed = true), () => (unsetStreamClosed = true));
      await Promise.all([next(unset, 'open'), unsetStream.opened]);
      const asked = new WebSocket(quiet.url, { idleTimeout: 300 });
      const askedClosed = next<CloseEvent>(asked, 'close');
      await control.whenClosed;
      expect(control.closeStatus).toBe(1001);
      expect((await askedClosed).code).toBe(1001);
      await delay(600); // two more ticks of the shared idle timer
      expect(ws.readyState).toBe(WebSocket.OPEN);
      expect(streamClosed).toBe(false);
      expect(unset.readyState).toBe(WebSocket.OPEN);
      expect(unsetStreamClosed).toBe(false);
      ws.close();
      wss.close();
      unset.close();
      unsetStream.close();
      await Promise.all([next(ws, 'close'), wss.closed, next(unset, 'close'), unsetStream.closed]);
    } finally {
      defaults.idleTimeout = saved;
      await quiet.close();
    }
  });

  test('connect() options as the second or third argument: headers and protocols reach the server; connection is the WebSocketConnection', async () => {
    seenHeaders.length = 0;
    const a = new WebSocket(`${server.url}echo`, { headers: { 'x-token': 'one' } });
    const b = new WebSocket(new URL(`${server.url}echo`), [], { headers: { 'x-token': 'two' } });
    expect(a.connection).toBeUndefined();
    await Promise.all([next(a, 'open'), next(b, 'open')]);
    expect(seenHeaders.map((h) => h['x-token']).sort()).toEqual(['one', 'two']);
    expect(a.connection).toBeInstanceOf(WebSocketConnection);
    expect(typeof (await a.connection!.ping())).toBe('number');
    a.close();
    b.close();
    await Promise.all([next(a, 'close'), next(b, 'close')]);
  });

  test('protocols: any iterable of names, or one value taken as a string (null is "null"), as WebIDL converts them', async () => {
    const fromSet = new WebSocket(`${server.url}proto`, new Set(['a', 'b']));
    const fromNull = new WebSocket(`${server.url}proto`, null as unknown as string);
    await Promise.all([next(fromSet, 'open'), next(fromNull, 'open')]);
    expect([fromSet.protocol, fromNull.protocol]).toEqual(['b', 'null']);
    fromSet.close();
    fromNull.close();
    await Promise.all([next(fromSet, 'close'), next(fromNull, 'close')]);
  });

  test('over TLS and HTTP/2 (RFC 8441), and as hybi-00, through the options: the same events', async () => {
    const tls = { key: readFileSync(resolve(FIXTURES, 'key.pem')), cert: readFileSync(resolve(FIXTURES, 'cert.pem')) };
    const secure = await serve({ port: 0, tls, http2: true }, (conn) => {
      conn.on('message', (data) => void conn.send(`${conn.requestLine.split(' ')[2] ?? ''} ${String(data)}`).catch(() => undefined));
    });
    try {
      const viaHttp2 = new WebSocket(secure.url, { http2: true, tls: { ca: tls.cert } });
      const viaHttp1 = new WebSocket(secure.url, { tls: { ca: tls.cert } });
      const draft = new WebSocket(`${server.url}echo`, { variant: 'hybi00' });
      const replies = await Promise.all(
        [viaHttp2, viaHttp1, draft].map(async (ws) => {
          await next(ws, 'open');
          ws.send('hi');
          const reply = (await next<MessageEvent>(ws, 'message')).data;
          ws.close();
          const close = await next<CloseEvent>(ws, 'close');
          return [reply, close.wasClean];
        }),
      );
      expect(replies).toEqual([
        ['HTTP/2.0 hi', true],
        ['HTTP/1.1 hi', true],
        ['hi', true],
      ]);
      expect(viaHttp2.connection!.transport.stream.constructor.name).toBe('ClientHttp2Stream');
    } finally {
      await secure.close();
    }
  });

  test('http: and https: URLs are taken as ws: and wss:', () => {
    const ws = new WebSocket(`http://127.0.0.1:${server.port}/echo?q=1`);
    expect(ws.url).toBe(`ws://127.0.0.1:${server.port}/echo?q=1`);
    ws.close();
    const secure = new WebSocket('https://127.0.0.1:1/');
    expect(secure.url).toBe('wss://127.0.0.1:1/');
    secure.close();
    expect(Object.prototype.toString.call(ws)).toBe('[object WebSocket]');
  });

  test('the constants cannot be changed', () => {
    expect(() => {
      (WebSocket as unknown as { OPEN: number }).OPEN = 5;
    }).toThrow(TypeError);
    expect(WebSocket.OPEN).toBe(1);
    // WebIDL's constants: enumerable, read-only, not configurable, on the class and its prototype.
    const constant = { writable: false, enumerable: true, configurable: false };
    for (const [name, value] of [['CONNECTING', 0], ['OPEN', 1], ['CLOSING', 2], ['CLOSED', 3]] as const) {
      expect(Object.getOwnPropertyDescriptor(WebSocket, name)).toEqual({ ...constant, value });
      expect(Object.getOwnPropertyDescriptor(WebSocket.prototype, name)).toEqual({ ...constant, value });
    }
  });
});

describe('subprotocols offered and none chosen', () => {
  test('fail the WebSocket and the WebSocketStream with WS_BAD_PROTOCOL, over HTTP/1.1 and HTTP/2, as the Fetch standard, Chromium, undici and ws do (they opened with protocol ""); connect() still opens, as RFC 6455 allows', async () => {
    const tls = { key: readFileSync(resolve(FIXTURES, 'key.pem')), cert: readFileSync(resolve(FIXTURES, 'cert.pem')) };
    // A server that answers no subprotocol to any offer, and records the connections it made.
    const made: WebSocketConnection[] = [];
    const plain = await serve({ port: 0 }, (conn) => void made.push(conn));
    const secure = await serve({ port: 0, tls, http2: true }, (conn) => void made.push(conn));
    try {
      for (const [url, options, status] of [
        [plain.url, {}, 101],
        [secure.url, { http2: true, tls: { ca: tls.cert } }, 200],
      ] as const) {
        const ws = new WebSocket(url, ['chat'], options);
        const trace: string[] = [];
        ws.onopen = () => {
          trace.push('open');
          ws.close();
        };
        let cause: HandshakeError | undefined;
        ws.onerror = (event) => (cause = (event as ErrorEvent).error as HandshakeError);
        const close = await next<CloseEvent>(ws, 'close');
        expect(trace).toEqual([]);
        expect(cause).toBeInstanceOf(HandshakeError);
        expect([cause?.code, cause?.status, ws.protocol, ws.readyState]).toEqual(['WS_BAD_PROTOCOL', status, '', WebSocket.CLOSED]);
        expect([close.code, close.wasClean]).toEqual([1006, false]);

        const wss = new WebSocketStream(url, { ...options, protocols: ['chat'] });
        const opened = await wss.opened.then(
          () => void wss.close(),
          (reason: { cause?: unknown }) => reason.cause,
        );
        const closed = await wss.closed.then(
          () => undefined,
          (reason: { closeCode?: number }) => reason.closeCode,
        );
        expect([(opened as HandshakeError | undefined)?.code, (opened as HandshakeError | undefined)?.status, closed]).toEqual(['WS_BAD_PROTOCOL', status, 1006]);
      }
      // The servers saw the four connections dropped.
      await Promise.all(made.map((conn) => conn.whenClosed));
      expect(made.map((conn) => conn.closeStatus)).toEqual([1006, 1006, 1006, 1006]);

      const conn = await connect(plain.url, { protocols: ['chat'] });
      expect(conn.protocol).toBe('');
      await conn.close();
      expect(conn.closeStatus).toBe(1000);
    } finally {
      await Promise.all([plain.close(), secure.close()]);
    }
  });
});

describe('constructor', () => {
  test('converts the URL before the subprotocols, as WebIDL converts arguments in order (then checks the URL)', () => {
    const order: string[] = [];
    const url = { toString: () => (order.push('url'), 'ftp://127.0.0.1/') };
    const protocol = { toString: () => (order.push('protocol'), 'a') };
    expect(() => new WebSocket(url as never, [protocol] as never)).toThrow(expect.objectContaining({ name: 'SyntaxError' }));
    expect(order).toEqual(['url', 'protocol']);
  });

  test('an option out of range throws from the constructor, as a bad URL does, for the WebSocket and the WebSocketStream (no connection is tried)', () => {
    for (const make of [(o: object) => new WebSocket(server.url, o), (o: object) => new WebSocketStream(server.url, o)]) {
      expect(() => make({ family: 5 })).toThrow(RangeError);
      expect(() => make({ variant: 'hybi-00' })).toThrow(TypeError);
    }
  });
});
