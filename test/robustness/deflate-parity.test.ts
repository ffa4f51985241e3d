/**
 * permessage-deflate (RFC 7692) negotiated the same on every entry point and client path: one table
 * of exact `Sec-WebSocket-Extensions` offers × server options × entry points, each sent by a raw
 * client that reads the exact answer (raw `net`/`tls` bytes for HTTP/1.1, Node's `http2` client for
 * an extended CONNECT), and for every accepted cell a 20 KiB compressible message sent twice each
 * way, compressed by the raw client with zlib under the negotiated parameters (RSV1 set), and the
 * server's echoes read from the wire: RSV1 set on each, inflated with the context the negotiated
 * takeover allows. Then our own client paths (connect() over HTTP/1.1 and HTTP/2, the WebSocket
 * class) against every entry point: the same response, and compression both ways.
 *
 * Entry points as in server-parity.test.ts: serve() over HTTP/1.1, TLS and HTTP/2; handleUpgrade()
 * on a Node http.Server; attachHttp2() on an h2c server; the Express, Koa and Fastify adapters
 * (Fastify over HTTP/2 too). hybi-00 never negotiates an extension.
 */
import { createHash } from 'node:crypto';
import type { Server } from 'node:http';
import { connect as h2connect, createServer as createH2Server, type ClientHttp2Session, type OutgoingHttpHeaders, type ServerHttp2Session } from 'node:http2';
import { connect as netConnect, createServer as createNetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { constants as zc, createDeflateRaw, deflateRawSync, inflateRawSync, type DeflateRaw } from 'node:zlib';
import { connect, serviceMapper, WebSocket, type PerMessageDeflateOptions, type WebSocketConnection, type ConnectionHandler } from 'rfc6455';
import { decodeFrame, frame, type DecodedFrame } from '../../packages/rfc6455/test/helpers/frames.js';
import { parseResponse } from '../../packages/rfc6455/test/helpers/raw-client.js';
import { TLS } from '../http2/helpers.js';
import { compressibleText, extensionOf } from '../deflate/helpers.js';
import { ATTACH_HTTP2, EXPRESS, FASTIFY, FASTIFY_HTTP2, HANDLE_UPGRADE, koaEntry, SERVE, SERVE_HTTP2, SERVE_TLS, toHttp1Client } from './entry-points.js';
import { listen } from './helpers.js';

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const MESSAGE = compressibleText(20 * 1024);

type Transport = 'h1' | 'tls' | 'h2' | 'h2c';

/** An opened WebSocket byte stream after a raw handshake, or the refusal. */
interface Opened {
  status: number;
  /** Lower-cased names; repeated headers joined with ', '. */
  headers: Record<string, string>;
  /** The WebSocket bytes after the head (status 101/200), else undefined. */
  stream: Duplex | undefined;
  /** Bytes that came with the head. */
  rest: Buffer;
  done(): void;
}

function h1Open(port: number, secure: boolean, extensions: string | string[] | undefined, hybi00 = false): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const socket = secure ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false }) : netConnect(port, '127.0.0.1');
    const lines = hybi00
      ? ['GET /echo HTTP/1.1', `Host: 127.0.0.1:${port}`, 'Upgrade: WebSocket', 'Connection: Upgrade', 'Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5', 'Sec-WebSocket-Key2: 12998 5 Y3 1  .P00']
      : ['GET /echo HTTP/1.1', `Host: 127.0.0.1:${port}`, 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Key: ${KEY}`, 'Sec-WebSocket-Version: 13'];
    for (const value of extensions === undefined ? [] : [extensions].flat()) lines.push(`Sec-WebSocket-Extensions: ${value}`);
    let head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
    if (hybi00) head = Buffer.concat([head, Buffer.from('^n:ds[4U', 'latin1')]);
    let buffered = Buffer.alloc(0);
    socket.once(secure ? 'secureConnect' : 'connect', () => socket.write(head));
    socket.on('error', reject);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.pause();
      const response = parseResponse(buffered.subarray(0, end + 4));
      if (!response) return reject(new Error('no HTTP response'));
      const ok = response.status === 101;
      resolve({ status: response.status, headers: response.headers, stream: ok ? socket : undefined, rest: buffered.subarray(end + 4), done: () => socket.destroy() });
    };
    socket.on('data', onData);
  });
}

function h2Open(origin: string, extensions: string | string[] | undefined): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const session: ClientHttp2Session = h2connect(origin, { ca: TLS.cert, rejectUnauthorized: false });
    session.on('error', reject);
    session.once('remoteSettings', () => {
      const headers: OutgoingHttpHeaders = { ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/echo', ':scheme': origin.startsWith('https') ? 'https' : 'http', ':authority': new URL(origin).host, 'sec-websocket-version': '13' };
      if (extensions !== undefined) headers['sec-websocket-extensions'] = extensions;
      const stream = session.request(headers, { endStream: false });
      stream.on('error', () => undefined);
      stream.once('response', (h) => {
        const plain: Record<string, string> = {};
        for (const [k, v] of Object.entries(h)) if (!k.startsWith(':')) plain[k] = Array.isArray(v) ? v.join(', ') : String(v);
        const status = Number(h[':status']);
        resolve({ status, headers: plain, stream: status === 200 ? stream : undefined, rest: Buffer.alloc(0), done: () => session.destroy() });
      });
    });
  });
}

/** The parameters of a response element, parsed loosely (the test's own reading, not the library's). */
function paramsOf(response: string): Map<string, string | true> {
  const params = new Map<string, string | true>();
  for (const part of response.split(';').slice(1)) {
    const [name, value] = part.trim().split('=');
    params.set(name!, value === undefined ? true : value);
  }
  return params;
}

/** Reads whole WebSocket messages (unfragmented frames here) off a stream. */
class FrameReader {
  #buffer: Buffer;
  #waiting: ((f: DecodedFrame) => void) | undefined;
  readonly #frames: DecodedFrame[] = [];
  constructor(stream: Duplex, rest: Buffer) {
    this.#buffer = rest;
    stream.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      this.#drain();
    });
    stream.resume();
    this.#drain();
  }
  #drain(): void {
    for (;;) {
      const one = decodeFrame(this.#buffer);
      if (!one) return;
      this.#buffer = this.#buffer.subarray(one.next);
      const waiting = this.#waiting;
      this.#waiting = undefined;
      if (waiting) waiting(one.frame);
      else this.#frames.push(one.frame);
    }
  }
  next(): Promise<DecodedFrame> {
    const f = this.#frames.shift();
    if (f) return Promise.resolve(f);
    return new Promise((resolve) => (this.#waiting = resolve));
  }
}

/** One sync-flushed piece of a kept deflate context (RFC 7692 §7.2.1), its 00 00 ff ff removed. */
function deflatePiece(deflater: DeflateRaw, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    const onData = (c: Buffer): void => void out.push(c);
    deflater.on('data', onData);
    deflater.write(data);
    deflater.flush(zc.Z_SYNC_FLUSH, () => {
      deflater.off('data', onData);
      const all = Buffer.concat(out);
      if (!all.subarray(-4).equals(Buffer.from([0, 0, 0xff, 0xff]))) reject(new Error('no sync flush tail'));
      resolve(all.subarray(0, -4));
    });
  });
}

/**
 * Sends MESSAGE twice compressed as the negotiated response allows (client_max_window_bits,
 * client_no_context_takeover) and reads the two echoes: each with RSV1, inflated (with the
 * server's context kept unless server_no_context_takeover) back to MESSAGE.
 */
async function roundTripRaw(opened: Opened, response: string): Promise<{ sizes: number[] }> {
  const params = paramsOf(response);
  const clientBits = typeof params.get('client_max_window_bits') === 'string' ? Number(params.get('client_max_window_bits')) : 15;
  const clientReset = params.has('client_no_context_takeover');
  const serverReset = params.has('server_no_context_takeover');
  // Inflated with the negotiated window: a match farther back than it fails ("too far back").
  const serverBits = typeof params.get('server_max_window_bits') === 'string' ? Number(params.get('server_max_window_bits')) : 15;
  const inflate = (data: Buffer): Buffer => inflateRawSync(data, { finishFlush: zc.Z_SYNC_FLUSH, windowBits: serverBits });
  const stream = opened.stream!;
  const reader = new FrameReader(stream, opened.rest);
  // zlib has no raw window of 8 for deflate: 9's matches (at most 250 bytes back) fit 256 bytes.
  const windowBits = Math.max(9, clientBits);
  let deflater = createDeflateRaw({ windowBits });
  const received: Buffer[] = [];
  const sizes: number[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      if (clientReset && i > 0) {
        deflater.close();
        deflater = createDeflateRaw({ windowBits });
      }
      const payload = clientReset ? deflateRawSync(MESSAGE, { windowBits, finishFlush: zc.Z_SYNC_FLUSH }).subarray(0, -4) : await deflatePiece(deflater, Buffer.from(MESSAGE));
      stream.write(frame({ opcode: 1, rsv1: true, payload, mask: true }));
      const echo = await reader.next();
      expect({ opcode: echo.opcode, rsv: echo.rsv, fin: echo.fin }).toEqual({ opcode: 1, rsv: 4, fin: true });
      sizes.push(echo.payload.length);
      if (serverReset) received.length = 0;
      const before = received.length === 0 ? 0 : inflate(Buffer.concat(received)).length;
      received.push(echo.payload, Buffer.from([0, 0, 0xff, 0xff]));
      const text = inflate(Buffer.concat(received)).subarray(before).toString('utf8');
      expect(text).toBe(MESSAGE);
    }
  } finally {
    deflater.close();
  }
  return { sizes };
}

// ---- entry points -------------------------------------------------------------------------------

interface Running {
  open(extensions: string | string[] | undefined, hybi00?: boolean): Promise<Opened>;
  /** ws:, wss: (HTTP/1.1) or https:, http: (HTTP/2) URL of the echo route. */
  url: string;
  transport: Transport;
  close(): Promise<void>;
}

/** The server side of the last connection: its extensions and negotiated parameters. */
let serverSide: { extensions: string; params: object | undefined } | undefined;

const lastServerSide = (): typeof serverSide => serverSide;

const echo: ConnectionHandler = async (conn) => {
  const ext = extensionOf(conn);
  serverSide = { extensions: conn.extensions, params: ext && { ...ext.params } };
  for await (const message of conn) await conn.send(message).catch(() => undefined);
};

const mapper = serviceMapper([{ path: '/echo', handler: echo }]);

function running(port: number, transport: Transport, close: () => Promise<void>): Running {
  const scheme = transport === 'h1' ? 'ws' : transport === 'tls' ? 'wss' : transport === 'h2' ? 'https' : 'http';
  return {
    open: (ext, hybi00) => (transport === 'h2' || transport === 'h2c' ? h2Open(`${transport === 'h2' ? 'https' : 'http'}://127.0.0.1:${port}`, ext) : h1Open(port, transport === 'tls', ext, hybi00)),
    url: `${scheme}://127.0.0.1:${port}/echo`,
    transport,
    close,
  };
}

/** The entry points, each started with perMessageDeflate, `echo` (`mapper` for the adapters). */
const entryPoints = [
  SERVE,
  SERVE_TLS,
  SERVE_HTTP2,
  HANDLE_UPGRADE,
  ATTACH_HTTP2,
  EXPRESS,
  koaEntry('Koa', true),
  FASTIFY,
  FASTIFY_HTTP2,
  // The HTTP/2 servers take HTTP/1.1 over the same TLS port too (allowHTTP1): the same answers there.
  toHttp1Client(SERVE_HTTP2),
  toHttp1Client(FASTIFY_HTTP2),
].map((entry) => ({
  name: entry.name,
  transport: entry.transport as Transport,
  async start(perMessageDeflate: PerMessageDeflateOptions | boolean): Promise<Running> {
    const started = await entry.start({ target: echo, mapper, options: { perMessageDeflate } });
    return running(started.port, started.transport as Transport, started.close);
  },
}));

// ---- the table ----------------------------------------------------------------------------------

const SMALL: PerMessageDeflateOptions = { serverNoContextTakeover: true, clientMaxWindowBits: 10 };

/** [what, offer, answer with the defaults, answer with SMALL]; null: no extension. */
const OFFERS: Array<[string, string | undefined, string | null, string | null]> = [
  ['no offer', undefined, null, null],
  ['permessage-deflate', 'permessage-deflate', 'permessage-deflate', null],
  ['client_max_window_bits without a value', 'permessage-deflate; client_max_window_bits', 'permessage-deflate', 'permessage-deflate; server_no_context_takeover; client_max_window_bits=10'],
  ['client_max_window_bits=9', 'permessage-deflate; client_max_window_bits=9', 'permessage-deflate; client_max_window_bits=9', 'permessage-deflate; server_no_context_takeover; client_max_window_bits=9'],
  ['client_max_window_bits=8', 'permessage-deflate; client_max_window_bits=8', 'permessage-deflate; client_max_window_bits=8', 'permessage-deflate; server_no_context_takeover; client_max_window_bits=8'],
  ['server_max_window_bits=8', 'permessage-deflate; server_max_window_bits=8', 'permessage-deflate; server_max_window_bits=8', null],
  [
    'server_max_window_bits=8 and client_max_window_bits',
    'permessage-deflate; server_max_window_bits=8; client_max_window_bits',
    'permessage-deflate; server_max_window_bits=8',
    'permessage-deflate; server_no_context_takeover; server_max_window_bits=8; client_max_window_bits=10',
  ],
  ['server_no_context_takeover', 'permessage-deflate; server_no_context_takeover', 'permessage-deflate; server_no_context_takeover', null],
  [
    'client_no_context_takeover, client_max_window_bits',
    'permessage-deflate; client_no_context_takeover; client_max_window_bits',
    'permessage-deflate; client_no_context_takeover',
    'permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10',
  ],
  [
    'two offers, the first unacceptable (server_max_window_bits=7)',
    'permessage-deflate; server_max_window_bits=7; client_max_window_bits, permessage-deflate; client_max_window_bits=12',
    'permessage-deflate; client_max_window_bits=12',
    'permessage-deflate; server_no_context_takeover; client_max_window_bits=10',
  ],
  ['two offers, the first with a repeated parameter', 'permessage-deflate; client_max_window_bits; client_max_window_bits, permessage-deflate', 'permessage-deflate', null],
  ['a repeated parameter', 'permessage-deflate; server_no_context_takeover; client_max_window_bits; server_no_context_takeover', null, null],
  ['an unknown parameter', 'permessage-deflate; client_max_window_bits; foo=1', null, null],
  ['a value on server_no_context_takeover', 'permessage-deflate; client_max_window_bits; server_no_context_takeover=1', null, null],
  ['a quoted value', 'permessage-deflate; client_max_window_bits="10"', 'permessage-deflate; client_max_window_bits=10', 'permessage-deflate; server_no_context_takeover; client_max_window_bits=10'],
  ['upper case names', 'Permessage-Deflate; Client_Max_Window_Bits=11', 'permessage-deflate; client_max_window_bits=11', 'permessage-deflate; server_no_context_takeover; client_max_window_bits=10'],
  ['x-webkit-deflate-frame (ignored)', 'x-webkit-deflate-frame', null, null],
  ['x-webkit-deflate-frame, then permessage-deflate', 'x-webkit-deflate-frame, permessage-deflate; client_max_window_bits', 'permessage-deflate', 'permessage-deflate; server_no_context_takeover; client_max_window_bits=10'],
];

const CONFIGS: Array<[string, boolean | PerMessageDeflateOptions, 2 | 3 | 4]> = [
  ['defaults', true, 2],
  ['{ serverNoContextTakeover: true, clientMaxWindowBits: 10 }', SMALL, 3],
  ['false', false, 4],
];

describe.each(entryPoints.map((e) => [e.name, e] as const))('%s', (_name, entry) => {
  describe.each(CONFIGS)('perMessageDeflate: %s', (_config, options, column) => {
    let server: Running;
    beforeAll(async () => {
      server = await entry.start(options);
    });
    afterAll(() => server.close());

    const h2 = entry.transport === 'h2' || entry.transport === 'h2c';

    test.each(OFFERS.map((row) => [row[0], row[1], column === 4 ? null : row[column]] as const))('offer: %s', async (_what, offer, expected) => {
      serverSide = undefined;
      const opened = await server.open(offer);
      try {
        expect(opened.status).toBe(entry.transport === 'h2' || entry.transport === 'h2c' ? 200 : 101);
        expect(opened.headers['sec-websocket-extensions'] ?? null).toBe(expected);
        if (expected !== null) await roundTripRaw(opened, expected);
        // The server's connection agreed to what it answered.
        const side = lastServerSide();
        expect(side?.extensions).toBe(expected ?? '');
        const p = expected === null ? undefined : paramsOf(expected);
        expect(side?.params).toEqual(
          p && {
            serverNoContextTakeover: p.has('server_no_context_takeover'),
            clientNoContextTakeover: p.has('client_no_context_takeover'),
            serverMaxWindowBits: Number(p.get('server_max_window_bits') ?? 15),
            clientMaxWindowBits: Number(p.get('client_max_window_bits') ?? 15),
          },
        );
      } finally {
        opened.done();
      }
    });

    test('two Sec-WebSocket-Extensions lines (fields): one list, the first acceptable offer wins', async () => {
      const opened = await server.open(['permessage-deflate; server_max_window_bits=7; client_max_window_bits', 'permessage-deflate; client_max_window_bits=11']);
      try {
        const expected = options === false ? null : options === true ? 'permessage-deflate; client_max_window_bits=11' : 'permessage-deflate; server_no_context_takeover; client_max_window_bits=10';
        expect(opened.headers['sec-websocket-extensions'] ?? null).toBe(expected);
        if (expected !== null) await roundTripRaw(opened, expected);
      } finally {
        opened.done();
      }
    });

    test.each(['', ' ', ', ,'])('an empty list (%j): no extension', async (value) => {
      const opened = await server.open(value);
      opened.done();
      expect(opened.status).toBe(h2 ? 200 : 101);
      expect(opened.headers['sec-websocket-extensions']).toBeUndefined();
    });

    test.each(['permessage-deflate; client_max_window_bits=', 'permessage-deflate; x="a b"', 'permessage-deflate;; client_max_window_bits', 'permessage-deflate client_max_window_bits'])('a malformed header (%j): 400 (perMessageDeflate: false: ignored)', async (value) => {
      const opened = await server.open(value);
      opened.done();
      expect(opened.status).toBe(options === false ? (h2 ? 200 : 101) : 400);
    });

    if (!h2) {
      test('permessage-deflate offered by a hybi-00 client: no extension', async () => {
        const opened = await server.open('permessage-deflate', true);
        opened.done();
        expect(opened.status).toBe(101);
        expect(opened.headers['sec-websocket-extensions']).toBeUndefined();
      });
    }

    // Our own client paths: the same answer, and compression both ways, twice.
    const clients: Array<[string, PerMessageDeflateOptions | false, string | null]> = [
      ['default offer', {}, options === false ? null : options === true ? 'permessage-deflate' : 'permessage-deflate; server_no_context_takeover; client_max_window_bits=10'],
      ['{ serverMaxWindowBits: 9, clientNoContextTakeover: true }', { serverMaxWindowBits: 9, clientNoContextTakeover: true }, options === false ? null : options === true ? 'permessage-deflate; client_no_context_takeover; server_max_window_bits=9' : 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=10'],
      ['perMessageDeflate: false', false, null],
    ];
    test.each(clients)(`connect() over ${h2 ? 'HTTP/2' : 'HTTP/1.1'}, %s`, async (_what, clientOptions, expected) => {
      const conn: WebSocketConnection = await connect(server.url.replace(/^http/, 'ws'), { perMessageDeflate: clientOptions, http2: h2, tls: { ca: TLS.cert, rejectUnauthorized: false } } as never);
      try {
        expect(conn.extensions === '' ? null : conn.extensions).toBe(expected);
        for (let i = 0; i < 2; i++) {
          await conn.send(MESSAGE);
          expect(await conn.recv()).toBe(MESSAGE);
        }
        const ext = extensionOf(conn);
        if (expected === null) expect(ext).toBeUndefined();
        else expect(ext!.inflatedBytes).toBe(2 * MESSAGE.length);
      } finally {
        conn.terminate();
      }
    });

    if (!h2) {
      test("connect({ variant: 'hybi00' }) with perMessageDeflate: no extension, messages round-trip", async () => {
        const conn = await connect(server.url, { variant: 'hybi00', perMessageDeflate: { serverNoContextTakeover: true }, tls: { ca: TLS.cert, rejectUnauthorized: false } } as never);
        try {
          expect(conn.extensions).toBe('');
          expect(extensionOf(conn)).toBeUndefined();
          await conn.send(MESSAGE);
          expect(await conn.recv()).toBe(MESSAGE);
        } finally {
          conn.terminate();
        }
      });
    }

    {
      test('the WebSocket class: extensions as the server answered, compressed both ways', async () => {
        const ws = new WebSocket(server.url.replace(/^http/, 'ws'), { http2: h2, tls: { ca: TLS.cert, rejectUnauthorized: false } } as never);
        try {
          await new Promise((resolve, reject) => {
            ws.onopen = resolve;
            ws.onerror = reject;
          });
          expect(ws.extensions).toBe(options === false ? '' : options === true ? 'permessage-deflate' : 'permessage-deflate; server_no_context_takeover; client_max_window_bits=10');
          for (let i = 0; i < 2; i++) {
            const got = new Promise<unknown>((resolve) => (ws.onmessage = (e) => resolve(e.data)));
            ws.send(MESSAGE);
            expect(await got).toBe(MESSAGE);
          }
        } finally {
          ws.close();
        }
      });
    }
  });
});

// ---- client paths against a server's exact answer ------------------------------------------------

/** A server that answers every handshake with the given Sec-WebSocket-Extensions lines (fields). */
interface Answering {
  /** ws: URL (HTTP/1.1, a 101 written by hand) */
  h1: string;
  /** ws: URL of an h2c server (a 200 to the extended CONNECT) */
  h2: string;
  /** What the HTTP/1.1 client sent after its request head (its close frame, if any), per connection. */
  after: Buffer[];
  close(): Promise<void>;
}

async function answering(lines: string[]): Promise<Answering> {
  const after: Buffer[] = [];
  const sockets = new Set<Socket>();
  const h1 = createNetServer((socket) => {
    sockets.add(socket);
    let buffered = Buffer.alloc(0);
    let index = -1;
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      if (index >= 0) {
        after[index] = Buffer.concat([after[index]!, chunk]);
        return;
      }
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      const key = /sec-websocket-key: *(\S+)/i.exec(buffered.toString('latin1'))![1]!;
      const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64') as string;
      index = after.push(buffered.subarray(end + 4)) - 1;
      socket.write(['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${accept}`, ...lines.map((l) => `Sec-WebSocket-Extensions: ${l}`), '', ''].join('\r\n'));
    });
  });
  const h2 = createH2Server({ settings: { enableConnectProtocol: true } });
  const sessions = new Set<ServerHttp2Session>();
  h2.on('session', (s) => sessions.add(s));
  h2.on('stream', (stream) => {
    stream.on('error', () => undefined);
    stream.respond({ ':status': 200, ...(lines.length > 0 ? { 'sec-websocket-extensions': lines.length === 1 ? lines[0] : lines } : {}) });
  });
  const h1Port = await listen(h1 as unknown as Server);
  const h2Port = await listen(h2);
  return {
    h1: `ws://127.0.0.1:${h1Port}/`,
    h2: `ws://127.0.0.1:${h2Port}/`,
    after,
    close: async () => {
      for (const s of sockets) s.destroy();
      for (const s of sessions) s.destroy();
      await Promise.all([new Promise((r) => h1.close(r)), new Promise((r) => h2.close(r))]);
    },
  };
}

/** What a client path made of an answer: the agreed parameters, or the error's code. */
type Outcome = { extensions: string; params: object | undefined } | { code: string | undefined };

async function outcome(open: Promise<WebSocketConnection>): Promise<Outcome> {
  try {
    const conn = await open;
    conn.terminate();
    return { extensions: conn.extensions, params: extensionOf(conn)?.params && { ...extensionOf(conn)!.params } };
  } catch (error) {
    return { code: (error as { code?: string }).code };
  }
}

const DEFAULT_PARAMS = { serverNoContextTakeover: false, clientNoContextTakeover: false, serverMaxWindowBits: 15, clientMaxWindowBits: 15 };
const BAD = { code: 'WS_BAD_EXTENSION_RESPONSE' };

/** [what, response lines, client options, outcome]. */
const RESPONSES: Array<[string, string[], PerMessageDeflateOptions | false, Outcome]> = [
  ['no extension', [], {}, { extensions: '', params: undefined }],
  ['permessage-deflate', ['permessage-deflate'], {}, { extensions: 'permessage-deflate', params: DEFAULT_PARAMS }],
  ['every parameter', ['permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=8'], {}, { extensions: 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=8', params: { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 9, clientMaxWindowBits: 8 } }],
  ['upper case, quoted value', ['Permessage-Deflate; Client_Max_Window_Bits="10"'], {}, { extensions: 'Permessage-Deflate; Client_Max_Window_Bits="10"', params: { ...DEFAULT_PARAMS, clientMaxWindowBits: 10 } }],
  ['client_max_window_bits without a value', ['permessage-deflate; client_max_window_bits'], {}, BAD],
  ['client_max_window_bits above the offer', ['permessage-deflate; client_max_window_bits=11'], { clientMaxWindowBits: 10 }, BAD],
  ['server_max_window_bits above the request', ['permessage-deflate; server_max_window_bits=11'], { serverMaxWindowBits: 10 }, BAD],
  ['server_max_window_bits requested, not answered', ['permessage-deflate'], { serverMaxWindowBits: 10 }, BAD],
  ['server_no_context_takeover requested, not granted', ['permessage-deflate'], { serverNoContextTakeover: true }, BAD],
  ['server_max_window_bits=16', ['permessage-deflate; server_max_window_bits=16'], {}, BAD],
  ['a repeated parameter', ['permessage-deflate; server_no_context_takeover; server_no_context_takeover'], {}, BAD],
  ['an unknown parameter', ['permessage-deflate; foo'], {}, BAD],
  ['a value on client_no_context_takeover', ['permessage-deflate; client_no_context_takeover=1'], {}, BAD],
  ['an extension not offered', ['x-webkit-deflate-frame'], {}, BAD],
  ['permessage-deflate, not offered', ['permessage-deflate'], false, BAD],
  ['permessage-deflate twice in one line', ['permessage-deflate, permessage-deflate'], {}, BAD],
  ['permessage-deflate in two lines', ['permessage-deflate', 'permessage-deflate'], {}, BAD],
  ['an empty list', [', ,'], {}, BAD],
  ['a malformed header', ['permessage-deflate; client_max_window_bits='], {}, BAD],
];

describe('client paths: the same outcome for the same answer', () => {
  test.each(RESPONSES)('%s', async (_what, lines, perMessageDeflate, expected) => {
    const server = await answering(lines);
    try {
      const h1 = await outcome(connect(server.h1, { perMessageDeflate }));
      const h2 = await outcome(connect(server.h2, { perMessageDeflate, http2: true }));
      const ws = await new Promise<Outcome>((resolve) => {
        const socket = new WebSocket(server.h1, { perMessageDeflate } as never);
        socket.onopen = () => {
          resolve({ extensions: socket.extensions, params: undefined });
          socket.close();
        };
        socket.onerror = () => resolve({ code: 'error' });
      });
      expect(h1).toEqual(expected);
      expect(h2).toEqual(expected);
      expect(ws).toEqual('code' in expected ? { code: 'error' } : { extensions: (expected as { extensions: string }).extensions, params: undefined });
    } finally {
      await server.close();
    }
  });
});
