/**
 * The server's answers the same on every entry point: one table of failure kinds × entry points,
 * each probed with a real client that sees the exact answer (raw `net`/`tls` bytes for HTTP/1.1,
 * Node's `http2` client for an extended CONNECT). For each cell: the status (`:status` over
 * HTTP/2), the documented headers and body, whether the server closed the connection (or ended
 * the stream), and what `onError` received (nothing for an ordinary refusal).
 *
 * Entry points: serve() over HTTP/1.1, over TLS and over HTTP/2 (RFC 8441); handleUpgrade() on a
 * Node http.Server; attachHttp2() on an h2c http2 server; a hybi-00 client of serve(); and the
 * Express, Koa and Fastify adapters over their framework's HTTP server.
 */
import type { IncomingMessage } from 'node:http';
import { connect as h2connect, type ClientHttp2Session, type OutgoingHttpHeaders } from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { serviceMapper, type BeforeAcceptResult } from 'rfc6455';
import { parseResponse } from '../../packages/rfc6455/test/helpers/raw-client.js';
import { TLS } from '../http2/helpers.js';
import { ENTRY_POINTS, isHttp2, type EntryPoint, type Transport } from './entry-points.js';

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

/** What came back for one request, whatever the transport. */
interface Answer {
  status: number;
  /** Lower-cased names; repeated headers joined with ', '. */
  headers: Record<string, string>;
  body: string;
  /** The server closed the connection (HTTP/1.1) or ended the stream (HTTP/2) on its own. */
  closed: boolean;
}

/** One request, described once, sent the way each transport sends it. */
interface Probe {
  path?: string;
  /** Header overrides (undefined removes a default one). */
  headers?: Record<string, string | undefined>;
  method?: string;
  /** Bytes after the head (the hybi-00 key3). */
  after?: Buffer;
}

function h1Head(port: number, probe: Probe, transport: Transport): Buffer {
  const base: Record<string, string | undefined> =
    transport === 'hybi00'
      ? { Host: `127.0.0.1:${port}`, Upgrade: 'WebSocket', Connection: 'Upgrade', 'Sec-WebSocket-Key1': '4 @1  46546xW%0l 1 5', 'Sec-WebSocket-Key2': '12998 5 Y3 1  .P00' }
      : { Host: `127.0.0.1:${port}`, Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': KEY, 'Sec-WebSocket-Version': '13' };
  const fields = { ...base, ...probe.headers };
  const lines = [`${probe.method ?? 'GET'} ${probe.path ?? '/ok'} HTTP/1.1`];
  for (const [name, value] of Object.entries(fields)) if (value !== undefined) lines.push(`${name}: ${value}`);
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  return transport === 'hybi00' ? Buffer.concat([head, probe.after ?? Buffer.from('^n:ds[4U', 'latin1')]) : head;
}

/** Sends an HTTP/1.1 request on a new (TLS) connection; resolves once the server closed it, or after `waitMs`. */
function h1Request(port: number, bytes: Buffer, secure: boolean, waitMs = 2000, onOpen?: (socket: Socket) => void): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket: Socket = secure ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false }) : netConnect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let closed = false;
    const timer = setTimeout(() => socket.destroy(), waitMs);
    socket.once(secure ? 'secureConnect' : 'connect', () => {
      socket.write(bytes);
      onOpen?.(socket);
    });
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => (closed = true));
    socket.on('error', () => (closed = true));
    socket.on('close', () => {
      clearTimeout(timer);
      const bytesIn = Buffer.concat(chunks);
      if (bytesIn.length === 0) return resolve({ status: 0, headers: {}, body: '', closed });
      const response = parseResponse(bytesIn);
      if (!response) return reject(new Error(`no HTTP response: ${JSON.stringify(bytesIn.toString('latin1'))}`));
      resolve({ status: response.status, headers: response.headers, body: response.body.toString('latin1'), closed });
    });
  });
}

/** Sends an extended CONNECT on a new session; resolves once the stream closed, or after `waitMs`. */
function h2Request(origin: string, probe: Probe, waitMs = 2000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const session: ClientHttp2Session = h2connect(origin, { ca: TLS.cert, rejectUnauthorized: false });
    session.on('error', () => undefined);
    session.once('remoteSettings', () => {
      const headers: OutgoingHttpHeaders = { ':method': 'CONNECT', ':protocol': 'websocket', ':path': probe.path ?? '/ok', ':scheme': origin.startsWith('https') ? 'https' : 'http', ':authority': new URL(origin).host, 'sec-websocket-version': '13' };
      for (const [name, value] of Object.entries(probe.headers ?? {})) {
        const lower = name.toLowerCase();
        if (lower === 'upgrade' || lower === 'connection' || lower === 'host' || lower === 'sec-websocket-key') continue;
        if (value === undefined) delete headers[lower];
        else headers[lower] = value;
      }
      const stream = session.request(headers, { endStream: false });
      const chunks: Buffer[] = [];
      let answer: Record<string, string> | undefined;
      let status = 0;
      let closed = false;
      const timer = setTimeout(() => stream.close(), waitMs);
      stream.on('error', () => undefined);
      stream.once('response', (h) => {
        status = Number(h[':status']);
        answer = {};
        for (const [k, v] of Object.entries(h)) if (!k.startsWith(':')) answer[k] = Array.isArray(v) ? v.join(', ') : String(v);
      });
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.once('end', () => {
        closed = true;
        if (!stream.closed) stream.close();
      });
      stream.once('close', () => {
        clearTimeout(timer);
        if (stream.rstCode !== 0 && stream.rstCode !== 8) closed = true;
        session.destroy();
        resolve({ status, headers: answer ?? {}, body: Buffer.concat(chunks).toString('latin1'), closed });
      });
    });
    session.once('close', () => reject(new Error('session closed before its SETTINGS')));
  });
}

/** A server under test, started with the options of one cell. */
interface Running {
  request(probe: Probe, waitMs?: number, onOpen?: (socket: Socket) => void): Promise<Answer>;
  /** The entry point's own shutdown (serve's close(), an adapter's close()). */
  shutdown(): Promise<void>;
  close(): Promise<void>;
}

interface Options {
  beforeAccept?: (req: IncomingMessage) => BeforeAcceptResult<unknown> | Promise<BeforeAcceptResult<unknown>>;
  origins?: string[];
  handshakeTimeout?: number;
  maxConnections?: number;
  maxConnectionsPerIp?: number;
}

const mapper = serviceMapper([
  { path: '/ok', handler: (conn) => void conn.close() },
  { path: '/proto', protocols: { chat: (conn) => void conn.close() } },
]);

/** Starts `entry` with the options of one cell, and its client for the entry's transport. */
async function start(entry: EntryPoint, options: Options, onError: (error: unknown) => void): Promise<Running> {
  const { port, origin, shutdown, close } = await entry.start({ target: mapper, options, onError });
  const transport = entry.transport;
  return {
    request: (probe, waitMs, onOpen) => (h2(entry) ? h2Request(origin, probe, waitMs) : h1Request(port, h1Head(port, probe, transport), transport === 'tls', waitMs, onOpen)),
    shutdown: shutdown ?? close,
    close,
  };
}

const h2 = (e: EntryPoint): boolean => isHttp2(e.transport);

/** Runs one cell: starts the entry point with `options`, sends `probe`, and closes the server. */
async function cell(entry: EntryPoint, options: Options, probe: Probe): Promise<{ answer: Answer; errors: unknown[] }> {
  const errors: unknown[] = [];
  const running = await start(entry, options, (error) => errors.push(error));
  try {
    const answer = await running.request(probe);
    return { answer, errors };
  } finally {
    await running.close();
  }
}

describe.each(ENTRY_POINTS.map((e) => [e.name, e] as const))('%s', (_name, entry) => {
  // ---- the hook's answers ----------------------------------------------------------------------

  test('beforeAccept refusing with 401, a header and a body: that response, closed, nothing reported', async () => {
    const { answer, errors } = await cell(entry, { beforeAccept: () => ({ reject: { status: 401, headers: { 'WWW-Authenticate': 'Bearer' }, body: 'no' } }) }, {});
    expect(answer).toMatchObject({ status: 401, body: 'no', closed: true });
    expect(answer.headers['www-authenticate']).toBe('Bearer');
    expect(answer.headers.upgrade).toBeUndefined();
    expect(errors).toEqual([]);
  });

  test('beforeAccept refusing with a 3xx redirect: its status and Location', async () => {
    const { answer, errors } = await cell(entry, { beforeAccept: async () => ({ reject: { status: 307, headers: { Location: '/elsewhere' } } }) }, {});
    expect(answer).toMatchObject({ status: 307, body: '', closed: true });
    expect(answer.headers.location).toBe('/elsewhere');
    expect(errors).toEqual([]);
  });

  test('beforeAccept refusing with headers of HTTP/1.1 framing (Connection, Keep-Alive, Transfer-Encoding): the refusal still goes out, nothing reported', async () => {
    const { answer, errors } = await cell(
      entry,
      { beforeAccept: () => ({ reject: { status: 403, headers: { Connection: 'close', 'Keep-Alive': 'timeout=5', 'Transfer-Encoding': 'chunked', 'X-Why': 'banned' }, body: 'banned' } }) },
      {},
    );
    expect(answer).toMatchObject({ status: 403, body: 'banned', closed: true });
    expect(answer.headers['x-why']).toBe('banned');
    expect(answer.headers['transfer-encoding']).toBeUndefined();
    expect(answer.headers['keep-alive']).toBeUndefined();
    if (!h2(entry)) expect(answer.headers.connection).toBe('close');
    expect(errors).toEqual([]);
  });

  test('beforeAccept refusing with two Set-Cookie lines: both go out', async () => {
    const { answer, errors } = await cell(entry, { beforeAccept: () => ({ reject: { status: 401, headers: { 'Set-Cookie': ['a=1', 'b=2'] } } }) }, {});
    expect(answer).toMatchObject({ status: 401, closed: true });
    expect(answer.headers['set-cookie']).toBe('a=1, b=2');
    expect(errors).toEqual([]);
  });

  test('beforeAccept refusing with a header value that holds CR LF: 500, a TypeError to onError, nothing of the value sent', async () => {
    const { answer, errors } = await cell(entry, { beforeAccept: () => ({ reject: { status: 401, headers: { 'X-Bad': 'a\r\nInjected: yes' } } }) }, {});
    expect(answer).toMatchObject({ status: 500, closed: true });
    expect(answer.headers.injected).toBeUndefined();
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(TypeError);
  });

  test('beforeAccept throwing: 500, the error to onError', async () => {
    const thrown = new Error('hook failed');
    const { answer, errors } = await cell(entry, { beforeAccept: () => { throw thrown; } }, {});
    expect(answer).toMatchObject({ status: 500, closed: true });
    expect(answer.body).not.toContain('hook failed');
    expect(errors).toEqual([thrown]);
  });

  test('beforeAccept returning a handshake header: 500, a TypeError to onError', async () => {
    const { answer, errors } = await cell(entry, { beforeAccept: () => ({ headers: { 'Sec-WebSocket-Protocol': 'chat' } }) }, {});
    expect(answer).toMatchObject({ status: 500, closed: true });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(TypeError);
  });

  test('beforeAccept refusing with status 200: 500, a RangeError to onError', async () => {
    const { answer, errors } = await cell(entry, { beforeAccept: () => ({ reject: { status: 200 } }) }, {});
    expect(answer).toMatchObject({ status: 500, closed: true });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(RangeError);
  });

  // ---- the core's refusals ----------------------------------------------------------------------

  test('an origin that origins does not allow: 403, nothing reported', async () => {
    const { answer, errors } = await cell(entry, { origins: ['https://good.example'] }, { headers: { Origin: 'https://evil.example' } });
    expect(answer).toMatchObject({ status: 403, closed: true });
    expect(errors).toEqual([]);
  });

  test('a route that requires a subprotocol, none offered: 400, nothing reported', async () => {
    const { answer, errors } = await cell(entry, {}, { path: '/proto' });
    expect(answer).toMatchObject({ status: 400, closed: true });
    expect(answer.headers.upgrade).toBeUndefined();
    expect(errors).toEqual([]);
  });

  test('a path no route serves: 404, nothing reported', async () => {
    const { answer, errors } = await cell(entry, {}, { path: '/nowhere' });
    expect(answer.status).toBe(404);
    // (An adapter lets its framework answer: the connection's keep-alive is the framework's.)
    if (!entry.framework) expect(answer.closed).toBe(true);
    expect(errors).toEqual([]);
  });

  if (entry.transport !== 'hybi00') {
    test('Sec-WebSocket-Version: 8: 426 (HTTP/2: 400) with Sec-WebSocket-Version: 13', async () => {
      const { answer, errors } = await cell(entry, {}, { headers: { 'Sec-WebSocket-Version': '8' } });
      expect(answer).toMatchObject({ status: h2(entry) ? 400 : 426, closed: true });
      expect(answer.headers['sec-websocket-version']).toBe('13');
      expect(answer.headers.upgrade).toBeUndefined();
      expect(errors).toEqual([]);
    });
  }

  if (!h2(entry) && entry.transport !== 'hybi00') {
    // (HTTP/2 has no Sec-WebSocket-Key, no Upgrade or Connection; hybi-00 has other keys.)
    test.each([
      ['a key of 15 bytes', { 'Sec-WebSocket-Key': Buffer.alloc(15, 1).toString('base64') }],
      ['a key that is not base64', { 'Sec-WebSocket-Key': '!!!!!!!!!!!!!!!!!!!!!!==' }],
      ['no key', { 'Sec-WebSocket-Key': undefined }],
    ])('%s: 400, nothing reported', async (_what, headers) => {
      const { answer, errors } = await cell(entry, {}, { headers });
      expect(answer).toMatchObject({ status: 400, closed: true });
      expect(errors).toEqual([]);
    });
  }

  if (!h2(entry) && entry.transport !== 'hybi00') {
    test('no Sec-WebSocket-Version: 426 with Sec-WebSocket-Version: 13', async () => {
      const { answer, errors } = await cell(entry, {}, { headers: { 'Sec-WebSocket-Version': undefined } });
      expect(answer).toMatchObject({ status: 426, closed: true });
      expect(answer.headers['sec-websocket-version']).toBe('13');
      expect(errors).toEqual([]);
    });
  }

  if (h2(entry)) {
    test('no sec-websocket-version: 400 with sec-websocket-version: 13', async () => {
      const { answer, errors } = await cell(entry, {}, { headers: { 'Sec-WebSocket-Version': undefined } });
      expect(answer).toMatchObject({ status: 400, closed: true });
      expect(answer.headers['sec-websocket-version']).toBe('13');
      expect(errors).toEqual([]);
    });
  }

  // An upgrade that is not a GET: the core answers 400; an adapter hands it back to its framework
  // as the plain request it also is (docs/adapters/express.md). HTTP/2 has only CONNECT.
  if (!h2(entry) && !entry.framework) {
    test('a POST with Upgrade: websocket: 400, nothing reported', async () => {
      const { answer, errors } = await cell(entry, {}, { method: 'POST', headers: { 'Content-Length': '0' } });
      expect(answer).toMatchObject({ status: 400, closed: true });
      expect(answer.headers.upgrade).toBeUndefined();
      expect(errors).toEqual([]);
    });
  }

  // Without the Upgrade token in Connection it is a plain request: serve() answers it 426 (its
  // default onRequest); on the other entry points it is the application's or framework's request.
  if (entry.limits && entry.transport !== 'h2' && entry.transport !== 'hybi00') {
    test('Upgrade: websocket without the upgrade token in Connection: the plain request\'s 426, Upgrade and Sec-WebSocket-Version: 13', async () => {
      const { answer, errors } = await cell(entry, {}, { headers: { Connection: 'close' } });
      expect(answer).toMatchObject({ status: 426, closed: true });
      expect(answer.headers.upgrade).toBe('websocket');
      expect(answer.headers['sec-websocket-version']).toBe('13');
      expect(errors).toEqual([]);
    });
  }

  // ---- limits and timing ------------------------------------------------------------------------

  // (No such test for handleUpgrade() and attachHttp2(): they have no shutdown of their own.)
  if (entry.pendingHookOnShutdown !== undefined) test('shutdown while beforeAccept is pending: 503 at once (serve() over HTTP/2: the stream reset)', async () => {
    const errors: unknown[] = [];
    let entered!: () => void;
    const inHook = new Promise<void>((r) => (entered = r));
    const running = await start(entry, { beforeAccept: () => { entered(); return new Promise(() => undefined); } }, (e) => errors.push(e));
    try {
      const answer = running.request({}, 5000);
      await inHook;
      void running.shutdown();
      expect(await answer).toMatchObject({ status: entry.pendingHookOnShutdown === '503' ? 503 : 0, closed: true });
      expect(errors).toEqual([]);
    } finally {
      await running.close();
    }
  });

  test('handshakeTimeout while beforeAccept is pending: the connection closed (HTTP/2: 408)', async () => {
    const { answer, errors } = await cell(entry, { handshakeTimeout: 200, beforeAccept: () => new Promise(() => undefined) }, {});
    expect(answer.closed).toBe(true);
    if (h2(entry)) expect(answer.status).toBe(408);
    else expect(answer.status).toBe(0);
    expect(errors).toEqual([]);
  });

  if (entry.limits) {
    test('maxConnections full: 503 with Retry-After: 1', async () => {
      const { answer, errors } = await cell(entry, { maxConnections: 0 }, {});
      expect(answer).toMatchObject({ status: 503, closed: true });
      expect(answer.headers['retry-after']).toBe('1');
      expect(errors).toEqual([]);
    });

    test('maxConnectionsPerIp full: 429 with Retry-After: 1', async () => {
      const { answer, errors } = await cell(entry, { maxConnectionsPerIp: 0 }, {});
      expect(answer).toMatchObject({ status: 429, closed: true });
      expect(answer.headers['retry-after']).toBe('1');
      expect(errors).toEqual([]);
    });
  }
});
