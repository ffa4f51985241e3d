/**
 * Closing one connection the same through every closing API (server shutdown is in
 * shutdown-parity.test.ts): `conn.close()` on either side, the `WebSocket` class's `close()`,
 * `WebSocketStream`'s `close()`, its writer's `close()` and its readable's `cancel()`, and
 * `createWebSocketStream()`'s `end()` and `destroy()`.
 *
 * - The checks of the code and reason: the same error in every state (open, closing, closed):
 *   `conn.close()` rejects with a RangeError for what a close frame cannot carry; the WHATWG
 *   classes throw an InvalidAccessError for a code neither 1000 nor 3000-4999 and a SyntaxError
 *   for a reason over 123 bytes, after WebIDL's conversions ([Clamp] for WebSocket, ToUint16 for
 *   WebSocketStream, USVString for the reason).
 * - What each side reports (code, reason, wasClean), every message sent before the close
 *   delivered first, over HTTP/1.1 and HTTP/2, with permessage-deflate compressing them.
 * - A simultaneous close: each side reports the code it received.
 * - TCP (RFC 6455 §7.1.1): the server ends the TCP connection first, with a FIN; our client waits
 *   for it after the closing handshake.
 */
import { createHash, randomBytes } from 'node:crypto';
import { connect as tcpConnect, createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketError as UndiciWebSocketError } from 'undici';
import {
  connect,
  createWebSocketStream,
  serve,
  WebSocket,
  WebSocketStream,
  WebSocketStreamError,
  type CloseEvent,
  type ConnectOptions,
  type WebSocketConnection,
  type WebSocketServer,
} from 'rfc6455';
import { CLIENT_TLS, TLS } from '../http2/helpers.js';

/** 123 bytes of UTF-8 ending in a two-byte character's neighbour, and 124 ending in one. */
const R123 = 'é'.repeat(61) + 'a';
const R124 = 'é'.repeat(62);

let server: WebSocketServer;
let h2server: WebSocketServer;
let nextServerSide: Promise<WebSocketConnection>;
let resolveServerSide: (conn: WebSocketConnection) => void = () => undefined;

function expectServerSide(): void {
  nextServerSide = new Promise((resolve) => (resolveServerSide = resolve));
}

beforeAll(async () => {
  const handler = (conn: WebSocketConnection): void => {
    conn.on('error', () => undefined);
    resolveServerSide(conn);
  };
  server = await serve({ host: '127.0.0.1', port: 0 }, handler);
  h2server = await serve({ host: '127.0.0.1', port: 0, http2: true, tls: TLS }, handler);
});

afterAll(async () => {
  await Promise.all([server.close(), h2server.close()]);
});

/** What a call gave: 'ok', or the error's class and name. */
async function outcome(call: () => unknown): Promise<string> {
  try {
    await call();
    return 'ok';
  } catch (error) {
    return error instanceof DOMException ? `DOMException ${error.name}` : (error as Error).constructor.name;
  }
}

interface Rows {
  /** Arguments a close frame can carry: what the server then reports (code and reason). */
  valid: Array<[label: string, args: unknown[], code: number, reason: string]>;
  /** Arguments refused: the error. */
  invalid: Array<[label: string, args: unknown[], error: string]>;
}

const INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535];

interface ClosingApi {
  name: string;
  rows: Rows;
  /** Opens a connection; `close` calls the API with the row's arguments; `closed` is the client's report. */
  open(): Promise<{ close(args: unknown[]): unknown; closed: Promise<string> }>;
}

const apis: ClosingApi[] = [
  {
    name: 'conn.close() (client)',
    rows: {
      valid: [
        ['no code', [], 1000, ''],
        ['1000', [1000], 1000, ''],
        ['1001', [1001], 1001, ''],
        ['3000', [3000], 3000, ''],
        ['4999', [4999, 'x'], 4999, 'x'],
        ['null: no status', [null], 1005, ''],
        ['reason without code', [undefined, 'bye'], 1000, 'bye'],
        ['123-byte reason', [1000, R123], 1000, R123],
        ['lone surrogate', [3001, 'a\uD800b'], 3001, 'a\uFFFDb'],
      ],
      invalid: [
        ...INVALID_CODES.map((c): [string, unknown[], string] => [String(c), [c], 'RangeError']),
        ['1.5', [1.5], 'RangeError'],
        ['NaN', [NaN], 'RangeError'],
        ["'1000' (a string: the wrong kind)", ['1000'], 'TypeError'],
        ['a reason that is no string', [1000, 42], 'TypeError'],
        ['124-byte reason', [1000, R124], 'RangeError'],
        ['null with a reason', [null, 'bye'], 'RangeError'],
      ],
    },
    async open() {
      const conn = await connect(server.url);
      return { close: (args) => conn.close(...(args as [number])), closed: conn.whenClosed.then(() => `${conn.closeStatus} ${conn.closeReason}`) };
    },
  },
  {
    name: 'conn.close() (server)',
    rows: {
      valid: [
        ['no code', [], 1000, ''],
        ['1001', [1001], 1001, ''],
        ['4999', [4999, 'x'], 4999, 'x'],
        ['null: no status', [null], 1005, ''],
        ['123-byte reason', [1000, R123], 1000, R123],
      ],
      invalid: [
        ...INVALID_CODES.map((c): [string, unknown[], string] => [String(c), [c], 'RangeError']),
        ['1.5', [1.5], 'RangeError'],
        ['124-byte reason', [1000, R124], 'RangeError'],
      ],
    },
    async open() {
      expectServerSide();
      await connect(server.url);
      const serverSide = await nextServerSide;
      return { close: (args) => serverSide.close(...(args as [number])), closed: serverSide.whenClosed.then(() => `${serverSide.closeStatus} ${serverSide.closeReason}`) };
    },
  },
  {
    name: 'WebSocket.close()',
    rows: {
      valid: [
        ['no code: no status', [], 1005, ''],
        ['1000', [1000], 1000, ''],
        ['3000', [3000], 3000, ''],
        ['4999', [4999, 'x'], 4999, 'x'],
        ["'1000' (a number to WebIDL)", ['1000'], 1000, ''],
        ['1000.5 ([Clamp] rounds to even)', [1000.5], 1000, ''],
        ['2999.7 ([Clamp] rounds to 3000)', [2999.7], 3000, ''],
        ['3000.5 ([Clamp] rounds to even)', [3000.5], 3000, ''],
        ['3001.5 ([Clamp] rounds to even: up)', [3001.5], 3002, ''],
        ['reason without code', [undefined, 'bye'], 1000, 'bye'],
        ['123-byte reason', [1000, R123], 1000, R123],
        ['lone surrogate', [3001, 'a\uD800b'], 3001, 'a\uFFFDb'],
      ],
      invalid: [
        ...[1001, ...INVALID_CODES].map((c): [string, unknown[], string] => [String(c), [c], 'DOMException InvalidAccessError']),
        ['1.5 (clamped to 2)', [1.5], 'DOMException InvalidAccessError'],
        ['4999.5 (clamped to 5000)', [4999.5], 'DOMException InvalidAccessError'],
        ['NaN (0)', [NaN], 'DOMException InvalidAccessError'],
        ['null (0)', [null], 'DOMException InvalidAccessError'],
        ['124-byte reason', [1000, R124], 'DOMException SyntaxError'],
      ],
    },
    async open() {
      const ws = new WebSocket(server.url);
      await new Promise((resolve) => (ws.onopen = resolve));
      const closed = new Promise<string>((resolve) => (ws.onclose = (e: CloseEvent) => resolve(`${e.code} ${e.reason}${e.wasClean ? '' : ' unclean'}`)));
      return { close: (args) => ws.close(...(args as [number])), closed };
    },
  },
  {
    name: 'WebSocketStream.close()',
    rows: {
      valid: [
        ['no code: no status', [], 1005, ''],
        ['1000', [1000], 1000, ''],
        ['4999', [4999, 'x'], 4999, 'x'],
        ["'1000'", ['1000'], 1000, ''],
        ['reason without code', [undefined, 'bye'], 1000, 'bye'],
        ['123-byte reason', [1000, R123], 1000, R123],
        ['lone surrogate', [3001, 'a\uD800b'], 3001, 'a\uFFFDb'],
      ],
      invalid: [
        ...[1001, ...INVALID_CODES].map((c): [string, unknown[], string] => [String(c), [c], 'DOMException InvalidAccessError']),
        ['1.5 (truncated to 1)', [1.5], 'DOMException InvalidAccessError'],
        ['NaN (0)', [NaN], 'DOMException InvalidAccessError'],
        ['124-byte reason', [1000, R124], 'DOMException SyntaxError'],
      ],
    },
    async open() {
      const wss = new WebSocketStream(server.url);
      await wss.opened;
      const info = (args: unknown[]): { closeCode?: number; reason?: string } | undefined =>
        args.length === 0 ? undefined : { closeCode: args[0] as number, ...(args[1] === undefined ? {} : { reason: args[1] as string }) };
      return {
        close: (args) => wss.close(info(args)),
        closed: wss.closed.then(
          (i) => `${i.closeCode} ${i.reason}`,
          (e: WebSocketStreamError) => `${e.closeCode} ${e.reason} unclean`,
        ),
      };
    },
  },
];

describe.each(apis.map((api) => [api.name, api] as const))('%s', (_name, api) => {
  test('a code or reason a close frame cannot carry: the same error while open, while closing and once closed', async () => {
    const { close, closed } = await api.open();
    const expected = api.rows.invalid.map(([label, , error]) => `${label}: ${error}`);
    const check = async (): Promise<string[]> => {
      const seen: string[] = [];
      for (const [label, args] of api.rows.invalid) seen.push(`${label}: ${await outcome(() => close(args))}`);
      return seen;
    };
    expect(await check()).toEqual(expected);
    // Still open: a valid close now closes with its code.
    void outcome(() => close([3999]));
    expect(await check()).toEqual(expected);
    expect(await closed).toBe('3999 ');
    expect(await check()).toEqual(expected);
  });

  test.each(api.rows.valid.map((row) => [row[0], row] as const))('%s', async (_label, [, args, code, reason]) => {
    expectServerSide();
    const { close, closed } = await api.open();
    const serverSide = await nextServerSide;
    expect(await outcome(() => close(args))).toBe('ok');
    // The side that did not close reports what the closing side sent; the closing side reports the echo.
    await serverSide.whenClosed;
    expect(await closed).toBe(`${code} ${reason}`);
    expect([serverSide.closeStatus, serverSide.closeReason]).toEqual([code, reason]);
  });
});

test('WebSocketStreamError converts its reason as a USVString, as undici\'s WebSocketError does (a lone surrogate is U+FFFD)', () => {
  const ours = new WebSocketStreamError('x', { closeCode: 1000, reason: 'a\uD800b' });
  const undici = new UndiciWebSocketError('x', { closeCode: 1000, reason: 'a\uD800b' });
  expect(ours.reason).toBe('a\uFFFDb');
  expect(ours.reason).toBe(undici.reason);
  // 123 bytes of UTF-8 with the replacement character (3 bytes) still fit; 124 do not.
  expect(new WebSocketStreamError('', { reason: 'a'.repeat(120) + '\uDC00' }).reason).toHaveLength(121);
  expect(() => new WebSocketStreamError('', { reason: 'a'.repeat(121) + '\uDC00' })).toThrow(expect.objectContaining({ name: 'SyntaxError' }));
});

/** A client-side closing API that delivers what was written before it. */
interface DeliveringApi {
  name: string;
  /** What the server reports (the client reports the server's echo of it). */
  code: number;
  reason: string;
  open(options: ConnectOptions, url: string): Promise<{ send(data: string): unknown; close(): unknown; closed: Promise<string> }>;
}

const delivering: DeliveringApi[] = [
  {
    name: 'conn.close(4000)',
    code: 4000,
    reason: 'r',
    async open(options, url) {
      const conn = await connect(url, options);
      return { send: (d) => conn.send(d), close: () => conn.close(4000, 'r'), closed: conn.whenClosed.then(() => `${conn.closeStatus} ${conn.closeReason}`) };
    },
  },
  {
    name: 'WebSocket.close(4000)',
    code: 4000,
    reason: 'r',
    async open(options, url) {
      const ws = new WebSocket(url, options);
      await new Promise((resolve) => (ws.onopen = resolve));
      const closed = new Promise<string>((resolve) => (ws.onclose = (e: CloseEvent) => resolve(`${e.code} ${e.reason}${e.wasClean ? '' : ' unclean'}`)));
      return { send: (d) => ws.send(d), close: () => ws.close(4000, 'r'), closed };
    },
  },
  {
    name: 'WebSocketStream writer.close()',
    code: 1005,
    reason: '',
    async open(options, url) {
      const wss = new WebSocketStream(url, options);
      const writer = (await wss.opened).writable.getWriter();
      return { send: (d) => void writer.write(d), close: () => void writer.close(), closed: wss.closed.then((i) => `${i.closeCode} ${i.reason}`) };
    },
  },
  {
    name: 'createWebSocketStream end()',
    code: 1000,
    reason: '',
    async open(options, url) {
      const conn = await connect(url, options);
      const duplex = createWebSocketStream(conn, { decodeStrings: false });
      duplex.resume();
      return { send: (d) => duplex.write(d), close: () => duplex.end(), closed: conn.whenClosed.then(() => `${conn.closeStatus} ${conn.closeReason}`) };
    },
  },
];

const transports: Array<[string, () => string, ConnectOptions]> = [
  ['HTTP/1.1', () => server.url, { perMessageDeflate: true }],
  ['HTTP/2', () => h2server.url, { perMessageDeflate: true, http2: true, tls: CLIENT_TLS }],
];

describe.each(transports)('over %s, compressed', (_t, url, options) => {
  test.each(delivering.map((api) => [api.name, api] as const))('%s: every message sent before arrives, then the close; both sides report it', async (_name, api) => {
    expectServerSide();
    const client = await api.open(options, url());
    const serverSide = await nextServerSide;
    const got: number[] = [];
    serverSide.on('message', (m) => got.push(m.length));
    const sizes = [200_000, 200_001, 200_002, 5];
    for (const n of sizes) client.send('x'.repeat(n));
    client.close();
    expect(await client.closed).toBe(`${api.code} ${api.reason}`);
    await serverSide.whenClosed;
    expect(got).toEqual(sizes);
    expect([serverSide.closeStatus, serverSide.closeReason]).toEqual([api.code, api.reason]);
  });
});

describe('a simultaneous close: each side reports the code it received', () => {
  const clients: Array<[string, () => Promise<{ close(): void; closed: Promise<string> }>, number]> = [
    ['conn.close(3002)', async () => {
      const conn = await connect(server.url);
      return { close: () => void conn.close(3002, 'c'), closed: conn.whenClosed.then(() => `${conn.closeStatus} ${conn.closeReason}`) };
    }, 3002],
    ['WebSocket.close(3002)', async () => {
      const ws = new WebSocket(server.url);
      await new Promise((resolve) => (ws.onopen = resolve));
      const closed = new Promise<string>((resolve) => (ws.onclose = (e: CloseEvent) => resolve(`${e.code} ${e.reason}${e.wasClean ? '' : ' unclean'}`)));
      return { close: () => ws.close(3002, 'c'), closed };
    }, 3002],
    ['WebSocketStream readable.cancel(WebSocketError 3002)', async () => {
      const wss = new WebSocketStream(server.url);
      const { readable } = await wss.opened;
      return { close: () => void readable.cancel(new WebSocketStreamError('', { closeCode: 3002, reason: 'c' })), closed: wss.closed.then((i) => `${i.closeCode} ${i.reason}`) };
    }, 3002],
    ['createWebSocketStream destroy() (1000)', async () => {
      const conn = await connect(server.url);
      const duplex = createWebSocketStream(conn);
      return { close: () => void duplex.destroy(), closed: conn.whenClosed.then(() => `${conn.closeStatus} ${conn.closeReason}`) };
    }, 1000],
  ];
  test.each(clients)('%s against the server\'s close(3001)', async (_name, open, code) => {
    expectServerSide();
    const client = await open();
    const serverSide = await nextServerSide;
    void serverSide.close(3001, 's');
    client.close();
    expect(await client.closed).toBe('3001 s');
    await serverSide.whenClosed;
    expect(serverSide.closeStatus).toBe(code);
  });
});

// ---- TCP (RFC 6455 §7.1.1) ----------------------------------------------------------------------

const UPGRADE = 'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

/** A masked frame, as a client sends it. */
function maskedFrame(opcode: number, payload: Buffer): Buffer {
  const mask = randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i]! ^= mask[i % 4]!;
  return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | body.length]), mask, body]);
}

describe('TCP: the server ends the connection first, with a FIN', () => {
  const serverApis: Array<[string, (conn: WebSocketConnection) => void, number | 'none']> = [
    ['conn.close()', (c) => void c.close(), 1000],
    ['conn.close(null)', (c) => void c.close(null), 'none'],
    ['conn.close(4000)', (c) => void c.close(4000, 'r'), 4000],
    ['createWebSocketStream end()', (c) => void createWebSocketStream(c).end(), 1000],
    ['createWebSocketStream destroy()', (c) => void createWebSocketStream(c).destroy(), 1000],
  ];
  test.each(serverApis)('%s: the close frame, our echo, then the server\'s FIN (we had not ended)', async (_name, close, code) => {
    expectServerSide();
    const socket = tcpConnect({ port: Number(new URL(server.url).port), host: '127.0.0.1', allowHalfOpen: true });
    const events: string[] = [];
    let buffer = Buffer.alloc(0);
    let upgraded = false;
    const done = new Promise<void>((resolve) => {
      socket.on('data', (chunk: Buffer) => {
        buffer = Buffer.concat([buffer, chunk]);
        if (!upgraded) {
          const end = buffer.indexOf('\r\n\r\n');
          if (end < 0) return;
          upgraded = true;
          buffer = buffer.subarray(end + 4);
        }
        if (buffer.length >= 2 && buffer.length >= 2 + (buffer[1]! & 0x7f)) {
          const payload = buffer.subarray(2, 2 + (buffer[1]! & 0x7f));
          events.push(`close frame ${payload.length >= 2 ? payload.readUInt16BE(0) : 'none'}`);
          socket.write(maskedFrame(8, payload));
          buffer = Buffer.alloc(0);
        }
      });
      socket.on('end', () => {
        events.push('FIN');
        socket.end();
      });
      socket.on('error', (error: NodeJS.ErrnoException) => events.push(error.code ?? 'error'));
      socket.on('close', () => resolve());
    });
    socket.write(UPGRADE);
    const serverSide = await nextServerSide;
    close(serverSide);
    await done;
    expect(events).toEqual([`close frame ${code}`, 'FIN']);
    await serverSide.whenClosed;
    expect(serverSide.closeStatus).toBe(code === 'none' ? 1005 : code);
  });
});

/** A raw server that answers the upgrade and echoes a close frame, then ends TCP only when told. */
async function rawServer(): Promise<{ tcp: TcpServer; url: string; socket: Promise<Socket>; echoed: Promise<void>; events: string[] }> {
  const events: string[] = [];
  let gotSocket!: (s: Socket) => void;
  let gotEcho!: () => void;
  const socket = new Promise<Socket>((resolve) => (gotSocket = resolve));
  const echoed = new Promise<void>((resolve) => (gotEcho = resolve));
  const tcp = createTcpServer({ allowHalfOpen: true }, (s) => {
    gotSocket(s);
    let buffer = Buffer.alloc(0);
    let upgraded = false;
    s.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (!upgraded) {
        const end = buffer.indexOf('\r\n\r\n');
        if (end < 0) return;
        const key = /sec-websocket-key: *(\S+)/i.exec(buffer.subarray(0, end).toString('latin1'))![1]!;
        const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
        s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
        upgraded = true;
        buffer = buffer.subarray(end + 4);
      }
      if (buffer.length >= 6 && buffer.length >= 6 + (buffer[1]! & 0x7f)) {
        const length = buffer[1]! & 0x7f;
        const mask = buffer.subarray(2, 6);
        const payload = Buffer.from(buffer.subarray(6, 6 + length));
        for (let i = 0; i < length; i++) payload[i]! ^= mask[i % 4]!;
        if ((buffer[0]! & 0x0f) === 8) {
          events.push('close frame');
          s.write(Buffer.concat([Buffer.from([0x88, payload.length]), payload]));
          gotEcho();
        }
        buffer = buffer.subarray(6 + length);
      }
    });
    s.on('end', () => events.push('client FIN'));
    s.on('error', (error: NodeJS.ErrnoException) => events.push(error.code ?? 'error'));
  });
  await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
  return { tcp, url: `ws://127.0.0.1:${(tcp.address() as AddressInfo).port}/`, socket, echoed, events };
}

describe('TCP: our client waits for the server to end the connection after the closing handshake', () => {
  const clientApis: Array<[string, (url: string) => Promise<{ close(): void; conn: () => WebSocketConnection | undefined; closed: Promise<string> }>]> = [
    ['conn.close()', async (url) => {
      const conn = await connect(url);
      return { close: () => void conn.close(), conn: () => conn, closed: conn.whenClosed.then(() => `${conn.closeStatus}`) };
    }],
    ['WebSocket.close(1000)', async (url) => {
      const ws = new WebSocket(url);
      await new Promise((resolve) => (ws.onopen = resolve));
      const closed = new Promise<string>((resolve) => (ws.onclose = (e: CloseEvent) => resolve(`${e.code}${e.wasClean ? '' : ' unclean'}`)));
      return { close: () => ws.close(1000), conn: () => ws.connection, closed };
    }],
    ['WebSocketStream.close()', async (url) => {
      const wss = new WebSocketStream(url);
      await wss.opened;
      return { close: () => wss.close({ closeCode: 1000 }), conn: () => wss.connection, closed: wss.closed.then((i) => `${i.closeCode}`) };
    }],
    ['createWebSocketStream end()', async (url) => {
      const conn = await connect(url);
      const duplex: Duplex = createWebSocketStream(conn);
      duplex.resume();
      return { close: () => void duplex.end(), conn: () => conn, closed: conn.whenClosed.then(() => `${conn.closeStatus}`) };
    }],
  ];
  test.each(clientApis)('%s', async (_name, open) => {
    const raw = await rawServer();
    try {
      const client = await open(raw.url);
      const socket = await raw.socket;
      client.close();
      await raw.echoed;
      // The client has our answer (its closeStatus is set from it) and still keeps TCP open.
      while (client.conn()?.closeStatus === undefined) await new Promise((r) => setImmediate(r));
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
      expect(raw.events).toEqual(['close frame']);
      socket.end();
      expect(await client.closed).toBe('1000');
      await new Promise((resolve) => socket.once('close', resolve));
      expect(raw.events).toEqual(['close frame', 'client FIN']);
    } finally {
      raw.tcp.close();
    }
  });
});
