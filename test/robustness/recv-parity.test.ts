/**
 * Receiving behaves the same through every receiving API: one table of hostile or odd peer input
 * × receiving APIs, each row written as exact frames by a raw peer (so the fragmentation, the
 * control frames between fragments and what comes with or after the close frame are the peer's),
 * and for each cell: the messages delivered (type, bytes, order), the close code and reason
 * reported, the error surfaced, and the close code that went back on the wire.
 *
 * APIs: a connection's `message` event, `recv()`, `for await`, `recvStream()` and
 * `createWebSocketStream(conn, { objectMode: true })`, on the client (connect() to a raw
 * HTTP/1.1 server) and on the server (serve() to a raw client over HTTP/1.1, and over HTTP/2 to
 * Node's http2 client with an extended CONNECT); and on the client the `WebSocket` class (each
 * `binaryType`) and `WebSocketStream`. The documented differences are the expectations: a failure
 * of ours (1002, 1007, 1009) is 1006 with an `error` event for `WebSocket` and a rejected `closed`
 * for `WebSocketStream` (docs/client.md), and the Duplex errors after any close but a clean one
 * (docs/connection.md).
 */
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import {
  connect,
  createWebSocketStream,
  EOF,
  serve,
  WebSocket,
  WebSocketStream,
  type Message,
  type WebSocketConnection,
  type WebSocketServer,
} from 'rfc6455';
import { closePayload, decodeFrames, frame } from '../../packages/rfc6455/test/helpers/frames.js';
import { RawClient } from '../../packages/rfc6455/test/helpers/raw-client.js';
import { rawServer, requestKey, type RawServer } from '../../packages/rfc6455/test/helpers/raw-server.js';
import { openSession, TLS } from '../http2/helpers.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** One row: what the peer writes, and what every API must report. */
interface Row {
  name: string;
  frames(mask: boolean): Buffer;
  /**
   * After the frames: keep the connection (answer our close frame), end it (FIN / END_STREAM), or
   * reset it once our pong to a ping sent after the frames says everything before was parsed.
   */
  end: 'hold' | 'end' | 'reset';
  /** maxMessageSize of the receiver. */
  max?: number;
  /** Messages, as `t:<text>` or `b:<hex>`. */
  messages: string[];
  code: number;
  reason?: string;
  /** The close code we sent back (undefined: none). */
  sent?: number;
  /** The class of the error we failed the connection with (a failure of ours). */
  failure?: string;
}

const text = (payload: string | Buffer, mask: boolean, fin = true, opcode = 1): Buffer => frame({ opcode, payload, fin, mask });
const closeFrame = (payload: Buffer, mask: boolean): Buffer => frame({ opcode: 8, payload, mask });
const emoji = Buffer.from('a😀b€', 'utf8');

const rows: Row[] = [
  {
    name: 'empty text and empty binary',
    frames: (m) => Buffer.concat([text('', m), text('', m, true, 2), closeFrame(closePayload(1000, 'bye'), m)]),
    end: 'hold',
    messages: ['t:', 'b:'],
    code: 1000,
    reason: 'bye',
    sent: 1000,
  },
  {
    name: 'text cut inside a 4-byte character, a ping and a pong between the fragments',
    frames: (m) =>
      Buffer.concat([
        text(emoji.subarray(0, 2), m, false),
        frame({ opcode: 9, payload: 'p', mask: m }),
        text(emoji.subarray(2, 4), m, false, 0),
        frame({ opcode: 10, payload: 'q', mask: m }),
        text(emoji.subarray(4), m, true, 0),
        closeFrame(closePayload(1000), m),
      ]),
    end: 'hold',
    messages: ['t:a😀b€'],
    code: 1000,
    sent: 1000,
  },
  {
    name: 'a message of exactly maxMessageSize',
    frames: (m) => Buffer.concat([text('x'.repeat(10), m), closeFrame(closePayload(1000), m)]),
    end: 'hold',
    max: 10,
    messages: ['t:xxxxxxxxxx'],
    code: 1000,
    sent: 1000,
  },
  {
    name: 'maxMessageSize + 1, fragmented',
    frames: (m) => Buffer.concat([text('hi', m), text('x'.repeat(5), m, false), text('x'.repeat(6), m, true, 0)]),
    end: 'hold',
    max: 10,
    messages: ['t:hi'],
    code: 1009,
    sent: 1009,
    failure: 'MessageTooBigError',
  },
  {
    name: 'invalid UTF-8 in an early fragment',
    frames: (m) => Buffer.concat([text('ok', m), text(Buffer.from([0x61, 0xc0]), m, false), text('b', m, true, 0)]),
    end: 'hold',
    messages: ['t:ok'],
    code: 1007,
    sent: 1007,
    failure: 'InvalidUtf8Error',
  },
  {
    name: 'close without payload',
    frames: (m) => Buffer.concat([text('m', m), closeFrame(Buffer.alloc(0), m)]),
    end: 'hold',
    messages: ['t:m'],
    code: 1005,
    sent: 1005,
  },
  {
    name: 'close with a 1-byte payload',
    frames: (m) => Buffer.concat([text('m', m), closeFrame(Buffer.from([3]), m)]),
    end: 'hold',
    messages: ['t:m'],
    code: 1002,
    sent: 1002,
    failure: 'ProtocolError',
  },
  {
    name: 'close with a reason that is not UTF-8',
    frames: (m) => Buffer.concat([text('m', m), closeFrame(Buffer.concat([closePayload(1000), Buffer.from([0xff])]), m)]),
    end: 'hold',
    messages: ['t:m'],
    code: 1007,
    sent: 1007,
    failure: 'InvalidUtf8Error',
  },
  ...[1004, 1005, 1006, 1015, 2999, 5000].map(
    (code): Row => ({
      name: `close with reserved code ${code}`,
      frames: (m) => Buffer.concat([text('m', m), closeFrame(closePayload(code), m)]),
      end: 'hold',
      messages: ['t:m'],
      code: 1002,
      sent: 1002,
      failure: 'ProtocolError',
    }),
  ),
  {
    name: 'close 4000 with a UTF-8 reason',
    frames: (m) => Buffer.concat([text('m', m), closeFrame(closePayload(4000, 'réason'), m)]),
    end: 'hold',
    messages: ['t:m'],
    code: 4000,
    reason: 'réason',
    sent: 4000,
  },
  {
    name: 'the close frame between the fragments of a message',
    // (Nothing before it: recvStream() waits when the first fragment comes, and gets its stream.)
    frames: (m) => Buffer.concat([text('ab', m, false), closeFrame(closePayload(1000), m)]),
    end: 'hold',
    messages: [],
    code: 1000,
    sent: 1000,
  },
  {
    name: 'the transport ends in the middle of a message',
    frames: (m) => Buffer.concat([text('m', m), text('ab', m, false)]),
    end: 'end',
    messages: ['t:m'],
    code: 1006,
  },
  {
    name: 'the transport ends in the middle of a frame',
    frames: (m) => Buffer.concat([text('m', m), text('abcdef', m).subarray(0, 4)]),
    end: 'end',
    messages: ['t:m'],
    code: 1006,
  },
  {
    name: 'messages with the close frame, then a reset',
    frames: (m) => Buffer.concat([text('1', m), text('2', m, true, 2), text('3', m), closeFrame(closePayload(1001), m)]),
    end: 'reset',
    messages: ['t:1', 'b:32', 't:3'],
    code: 1001,
    sent: 1001,
  },
  {
    name: 'messages after the close frame are ignored',
    frames: (m) => Buffer.concat([text('m', m), closeFrame(closePayload(1000), m), text('after', m)]),
    end: 'hold',
    messages: ['t:m'],
    code: 1000,
    sent: 1000,
  },
];

/** What one API reported for one row. */
interface Seen {
  messages: string[];
  code: number | undefined;
  reason?: string;
  /** conn.error's class (or the cause's, for the classes). */
  failure?: string;
  /** How the stream-like APIs ended: 'end', or the error's class and close code. */
  ended?: string;
  /** WebSocket only. */
  wasClean?: boolean;
  errorEvent?: boolean;
}

const show = (data: Message | ArrayBuffer | Uint8Array, binary: boolean): string =>
  binary ? `b:${Buffer.from(data as Uint8Array).toString('hex')}` : `t:${typeof data === 'string' ? data : Buffer.from(data as Uint8Array).toString()}`;
const className = (error: unknown): string | undefined => (error === undefined ? undefined : (error as Error).constructor.name);
const endedWith = (error: unknown): string => `${className(error)} ${(error as { closeCode?: number }).closeCode}`;

function connSeen(conn: WebSocketConnection, messages: string[], extra: Partial<Seen> = {}): Seen {
  return { messages, code: conn.closeStatus, reason: conn.closeReason, failure: conn.error instanceof Error && 'closeCode' in conn.error ? className(conn.error) : undefined, ...extra };
}

/** The connection's receiving APIs, the same on both sides. */
const connectionApis: Record<string, (conn: WebSocketConnection) => Promise<Seen>> = {
  'message event': async (conn) => {
    const messages: string[] = [];
    conn.on('error', () => undefined);
    conn.on('message', (data, binary) => messages.push(show(data, binary)));
    await conn.whenClosed;
    return connSeen(conn, messages);
  },
  'recv()': async (conn) => {
    const messages: string[] = [];
    conn.on('error', () => undefined);
    for (let m = await conn.recv(); m !== EOF; m = await conn.recv()) messages.push(show(m, typeof m !== 'string'));
    await conn.whenClosed;
    return connSeen(conn, messages);
  },
  'for await': async (conn) => {
    const messages: string[] = [];
    conn.on('error', () => undefined);
    for await (const m of conn) messages.push(show(m, typeof m !== 'string'));
    await conn.whenClosed;
    return connSeen(conn, messages);
  },
  'recvStream()': async (conn) => {
    // Bytes only: a text message is compared as its UTF-8.
    const messages: string[] = [];
    conn.on('error', () => undefined);
    let ended = 'end';
    for (let r = await conn.recvStream(); r !== EOF; r = await conn.recvStream()) {
      const parts: Buffer[] = [];
      try {
        for await (const chunk of r as Readable) parts.push(chunk as Buffer);
        messages.push(`b:${Buffer.concat(parts).toString('hex')}`);
      } catch (error) {
        ended = endedWith(error);
      }
    }
    await conn.whenClosed;
    return connSeen(conn, messages, { ended });
  },
  'createWebSocketStream (objectMode)': async (conn) => {
    const messages: string[] = [];
    conn.on('error', () => undefined);
    const duplex = createWebSocketStream(conn, { objectMode: true });
    let ended = 'end';
    try {
      for await (const m of duplex) messages.push(show(m as Message, typeof m !== 'string'));
    } catch (error) {
      ended = endedWith(error);
    }
    await conn.whenClosed;
    return connSeen(conn, messages, { ended });
  },
};

const clientApis: Record<string, (url: string, max: number) => Promise<Seen>> = {
  ...Object.fromEntries(Object.entries(connectionApis).map(([name, run]) => [`connect() ${name}`, async (url: string, max: number) => run(await connect(url, { maxMessageSize: max }))])),
  ...Object.fromEntries(
    (['nodebuffer', 'arraybuffer', 'blob'] as const).map((binaryType) => [
      `WebSocket (${binaryType})`,
      (url: string, max: number) =>
        new Promise<Seen>((resolve) => {
          const ws = new WebSocket(url, [], { maxMessageSize: max });
          ws.binaryType = binaryType;
          const messages: Array<Promise<string>> = [];
          let failure: string | undefined;
          let errorEvent = false;
          ws.onmessage = (event) => {
            const data: unknown = event.data;
            if (typeof data === 'string') messages.push(Promise.resolve(show(data, false)));
            else if (binaryType === 'blob') messages.push((data as Blob).arrayBuffer().then((bytes) => show(new Uint8Array(bytes), true)));
            else {
              expect(binaryType === 'arraybuffer' ? data instanceof ArrayBuffer : Buffer.isBuffer(data)).toBe(true);
              messages.push(Promise.resolve(show(new Uint8Array(data as ArrayBuffer), true)));
            }
          };
          ws.onerror = (event) => {
            errorEvent = true;
            failure = className((event as unknown as { error: unknown }).error);
          };
          ws.onclose = (event) => void Promise.all(messages).then((all) => resolve({ messages: all, code: event.code, reason: event.reason, failure, wasClean: event.wasClean, errorEvent }));
        }),
    ]),
  ),
  WebSocketStream: async (url, max) => {
    const wss = new WebSocketStream(url, { maxMessageSize: max });
    const { readable } = await wss.opened;
    const messages: string[] = [];
    let ended = 'end';
    try {
      for await (const m of readable as unknown as AsyncIterable<string | Uint8Array>) messages.push(show(m, typeof m !== 'string'));
    } catch (error) {
      ended = endedWith(error);
    }
    try {
      const { closeCode, reason } = await wss.closed;
      return { messages, code: closeCode, reason, ended };
    } catch (error) {
      return { messages, code: (error as { closeCode: number }).closeCode, failure: className((error as { cause?: unknown }).cause), ended };
    }
  },
};

const CLEAN = (code: number): boolean => code === 1000 || code === 1001 || code === 1005 || (code >= 3000 && code <= 4999);

/** What `api` must have reported for `row` (the documented differences between the APIs). */
function expected(api: string, row: Row): Seen {
  const messages = api.includes('recvStream') ? row.messages.map((m) => (m.startsWith('t:') ? `b:${Buffer.from(m.slice(2)).toString('hex')}` : m)) : row.messages;
  const reason = row.reason ?? (row.failure ? expect.any(String) : '');
  if (api.startsWith('WebSocket (')) {
    // A failure of ours is 1006, unclean, after an `error` event (WHATWG; docs/client.md).
    if (row.failure) return { messages, code: 1006, reason: '', failure: row.failure, wasClean: false, errorEvent: true };
    return { messages, code: row.code, reason: row.reason ?? '', failure: undefined, wasClean: row.code !== 1006, errorEvent: false };
  }
  if (api === 'WebSocketStream') {
    if (row.failure || row.code === 1006) return { messages, code: 1006, failure: row.failure, ended: 'WebSocketStreamError 1006' };
    return { messages, code: row.code, reason: row.reason ?? '', ended: 'end' };
  }
  const seen: Seen = { messages, code: row.code, reason, failure: row.failure };
  if (api.includes('createWebSocketStream')) seen.ended = CLEAN(row.code) ? 'end' : row.failure ? `${row.failure} ${row.code}` : `ConnectionClosedError ${row.code}`;
  // recvStream(): a message cut by the end of the connection errors its stream (docs/connection.md).
  if (api.includes('recvStream')) seen.ended = row.name.startsWith('the close frame between') ? 'ConnectionClosedError 1000' : 'end';
  return seen;
}

/** Reads the close frame (or pong) of the side under test off a peer's bytes. */
function watch(onClose: (code: number | undefined) => void, onPong: () => void): (chunk: Buffer) => void {
  let bytes = Buffer.alloc(0);
  let done = 0;
  return (chunk) => {
    bytes = Buffer.concat([bytes, chunk]);
    const { frames } = decodeFrames(bytes);
    for (const f of frames.slice(done)) {
      if (f.opcode === 8) onClose(f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005);
      if (f.opcode === 10 && f.payload.toString() === 'sync') onPong();
    }
    done = frames.length;
  };
}

/** The frames of a row, and the ping whose pong tells the peer to reset. */
const written = (row: Row, mask: boolean): Buffer => Buffer.concat([row.frames(mask), row.end === 'reset' ? frame({ opcode: 9, payload: 'sync', mask }) : Buffer.alloc(0)]);

describe('client side: connect(), WebSocket and WebSocketStream against a raw HTTP/1.1 server', () => {
  let server: RawServer;
  let row: Row;
  let sent: number | undefined;
  beforeAll(async () => {
    server = await rawServer((head, socket: Socket) => {
      const accept = createHash('sha1').update(requestKey(head) + GUID).digest('base64');
      const current = row;
      socket.on(
        'data',
        watch(
          (code) => {
            sent ??= code;
            socket.end();
          },
          () => socket.resetAndDestroy(),
        ),
      );
      // The frames come with the 101, in one write.
      socket.write(Buffer.concat([Buffer.from(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`), written(current, false)]));
      if (current.end === 'end') socket.end();
    });
  });
  afterAll(() => server.close());

  describe.each(rows)('$name', (r) => {
    test.each(Object.keys(clientApis))('%s', async (api) => {
      row = r;
      sent = undefined;
      const seen = await clientApis[api]!(server.url, r.max ?? 1 << 20);
      expect(seen).toEqual(expected(api, r));
      // What went back on the wire: our close frame (once the peer's socket has it).
      if (r.sent !== undefined && r.end !== 'reset') while (sent === undefined) await new Promise<void>((resolve) => setImmediate(resolve));
      if (r.end !== 'reset') expect(sent).toBe(r.sent);
    });
  });
});

describe.each([
  ['HTTP/1.1', false],
  ['HTTP/2', true],
] as const)('server side: serve() over %s', (_name, h2) => {
  let handler: (conn: WebSocketConnection) => void;
  let small: WebSocketServer;
  let big: WebSocketServer;
  beforeAll(async () => {
    const start = (maxMessageSize: number): Promise<WebSocketServer> =>
      serve({ host: '127.0.0.1', port: 0, maxMessageSize, idleTimeout: 0, ...(h2 ? { tls: TLS, http2: true as const } : {}) }, (conn) => handler(conn));
    [small, big] = await Promise.all([start(10), start(1 << 20)]);
  });
  afterAll(() => Promise.all([small.close(), big.close()]));

  /** Writes the row as a client peer; resolves with the close code the server sent (once the exchange is over). */
  async function peer(port: number, row: Row): Promise<() => number | undefined> {
    let sent: number | undefined;
    const bytes = written(row, true);
    if (!h2) {
      const client = await RawClient.connect(port);
      client.socket.on(
        'data',
        watch(
          (code) => {
            sent ??= code;
            client.end();
          },
          () => client.socket.resetAndDestroy(),
        ),
      );
      client.write(bytes);
      if (row.end === 'end') client.end();
      return () => sent;
    }
    const session = await openSession(`https://127.0.0.1:${port}`);
    const stream = session.request({ ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/', ':scheme': 'https', ':authority': `127.0.0.1:${port}`, 'sec-websocket-version': '13' }, { endStream: false });
    stream.on('error', () => undefined);
    stream.on(
      'data',
      watch(
        (code) => {
          sent ??= code;
          if (!stream.writableEnded) stream.end();
        },
        () => stream.close(0x2 /* INTERNAL_ERROR */),
      ),
    );
    stream.once('close', () => session.close());
    await new Promise((resolve) => stream.once('response', resolve));
    stream.write(bytes);
    if (row.end === 'end') stream.end();
    return () => sent;
  }

  describe.each(rows)('$name', (r) => {
    test.each(Object.keys(connectionApis))('%s', async (api) => {
      const result = new Promise<Seen>((resolve, reject) => (handler = (conn) => void connectionApis[api]!(conn).then(resolve, reject)));
      const sent = await peer((r.max ? small : big).port, r);
      const seen = await result;
      expect(seen).toEqual(expected(api, r));
      if (r.end !== 'reset') {
        if (r.sent !== undefined) while (sent() === undefined) await new Promise((resolve) => setImmediate(resolve));
        expect(sent()).toBe(r.sent);
      }
    });
  });
});

describe('recvStream() handed out by the read that also ends the connection', () => {
  // The message's first fragment and the end of the connection in one read: the stream resolved by
  // recvStream() errors once the code that awaited it could listen (fixed bug: its 'error' was
  // emitted on Node's next tick, before that code ran, with no listener: an uncaught exception).
  const cases: Array<[string, (mask: boolean) => Buffer, number]> = [
    ['the peer\'s close frame', (m) => Buffer.concat([text('ab', m, false), closeFrame(closePayload(1000), m)]), 1000],
    ['a protocol error', (m) => Buffer.concat([text('ab', m, false), frame({ opcode: 3, mask: m })]), 1002],
    ['invalid UTF-8', (m) => Buffer.concat([text('ab', m, false), text(Buffer.from([0xff]), m, true, 0)]), 1007],
  ];
  test.each(cases)('%s (client side)', async (_name, bytes, code) => {
    const server = await rawServer((head, socket) => {
      const accept = createHash('sha1').update(requestKey(head) + GUID).digest('base64');
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      socket.on('data', () => socket.end());
      // Written once the client waits in recvStream(): one read brings the fragment and the end.
      setImmediate(() => socket.write(bytes(false)));
    });
    try {
      const conn = await connect(server.url);
      conn.on('error', () => undefined);
      const stream = await conn.recvStream();
      expect(stream).toBeInstanceOf(Readable);
      const chunks: Buffer[] = [];
      const error = await (async () => {
        try {
          for await (const chunk of stream as Readable) chunks.push(chunk as Buffer);
        } catch (e) {
          return e as { name: string; closeCode: number };
        }
        return undefined;
      })();
      expect(Buffer.concat(chunks).toString()).toBe('ab');
      expect(error).toMatchObject({ name: 'ConnectionClosedError', closeCode: code });
      expect(await conn.recvStream()).toBe(EOF);
      await conn.whenClosed;
      expect(conn.closeStatus).toBe(code);
    } finally {
      await server.close();
    }
  });

  // (Reading through the socket's stream, the read is parsed in its 'data' event, where the
  // stream's 'error' would come before the awaiting code ran; a direct read is parsed where it
  // would not, so that one alone never showed the bug.)
  test.each([true, false])('the peer\'s close frame (server side, directReads: %s)', async (directReads) => {
    let accepted!: (conn: WebSocketConnection) => void;
    const opened = new Promise<WebSocketConnection>((resolve) => (accepted = resolve));
    const server = await serve({ host: '127.0.0.1', port: 0, directReads }, (conn) => accepted(conn));
    try {
      const client = await RawClient.connect(server.port);
      const conn = await opened;
      const stream = conn.recvStream();
      client.write(Buffer.concat([text('ab', true, false), closeFrame(closePayload(4000, 'done'), true)]));
      const readable = (await stream) as Readable;
      await expect((async () => {
        for await (const chunk of readable) void chunk;
      })()).rejects.toMatchObject({ name: 'ConnectionClosedError', closeCode: 4000, closeReason: 'done' });
      expect((await client.readClose())?.code).toBe(4000);
      client.end();
      await conn.whenClosed;
    } finally {
      await server.close();
    }
  });
});
