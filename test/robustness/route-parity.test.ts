/**
 * Routing and request facts the same on every server entry point: one service mapper (named and
 * positional groups, subprotocol routing, a catch-all) behind serve() over HTTP/1.1, TLS and
 * HTTP/2, a hybi-00 client of serve(), handleUpgrade() on an http.Server, attachHttp2() on an h2c
 * server ('stream' style and beside a 'request' listener), and the Express, Koa and Fastify
 * adapters (Fastify over HTTP/2 too). Each request target is sent as raw bytes (HTTP/1.1) or as
 * `:path` of a hand-made extended CONNECT (Node's http2 client), and each cell compares the route
 * that took it (or the refusal), `params`, `conn.path`, `conn.url`, `conn.requestLine`, then the
 * connection's `headers`, addresses, transport and what the handler's `req` holds.
 *
 * Documented differences kept as such: `requestLine` over HTTP/2 is `CONNECT <:path> HTTP/2.0`;
 * an absolute-form target exists over HTTP/1.1 only (hybi-00 answers it 400, docs/hybi00.md);
 * `*` is 400 over HTTP/1.1 and reset by nghttp2 over HTTP/2 (docs/http2.md); Fastify's router
 * answers a path it cannot decode (`%zz`) with its own 400 (docs/adapters/fastify.md).
 */
import type { IncomingMessage } from 'node:http';
import { connect as h2connect, constants as h2constants, type ClientHttp2Session, type OutgoingHttpHeaders } from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { serve, serviceMapper, type HandlerContext, type WebSocketConnection } from 'rfc6455';
import { TLS } from '../http2/helpers.js';
import { attachHttp2Entry, EXPRESS, FASTIFY, FASTIFY_HTTP2, HANDLE_UPGRADE, isHttp2, KOA, SERVE, SERVE_HTTP2, SERVE_TLS, toHybi00Client, type EntryPoint, type Transport } from './entry-points.js';

const h2 = isHttp2;

/** What the handler saw of one accepted request. */
interface Seen {
  route: string;
  params: Record<string, string>;
  path: string;
  url: string;
  requestLine: string;
  headers: Record<string, unknown>;
  conn: WebSocketConnection;
  req: IncomingMessage;
  protocol: string;
}

/** The answer to one request: the status (`:status` over HTTP/2; 0: none, the stream reset) and what the handler saw. */
interface Answer {
  status: number;
  seen?: Seen;
  /** The RST_STREAM code of a stream reset without an answer (HTTP/2). */
  rstCode?: number;
}

interface Probe {
  target: string;
  /** Extra request headers, in order (repeats allowed). */
  headers?: [string, string][];
}

// Each request carries an id; the handler hands what it saw to the request's waiter.
const waiters = new Map<string, (seen: Seen) => void>();
let sequence = 0;

function recorder(route: string) {
  return (conn: WebSocketConnection, req: IncomingMessage, context: HandlerContext<unknown>): void => {
    conn.on('error', () => undefined);
    waiters.get(String(conn.headers['x-probe']))?.({
      route,
      params: { ...context.params },
      path: conn.path,
      url: conn.url,
      requestLine: conn.requestLine,
      headers: { ...conn.headers },
      conn,
      req,
      protocol: context.protocol,
    });
  };
}

const mapper = serviceMapper([
  { path: '/rooms/(?<room>[^/]*)', handler: recorder('rooms') },
  { path: '/pos/([^/]*)', handler: recorder('pos') },
  { path: '/proto', protocols: { chat: recorder('proto chat') }, handler: recorder('proto') },
  { path: '/test', handler: recorder('test') },
  { path: '/Case', handler: recorder('Case') },
  { path: '.*', handler: recorder('catch-all') },
]);

function h1Request(port: number, probe: Probe, transport: Transport): Promise<Answer> {
  const id = String(++sequence);
  const seen = new Promise<Seen>((resolve) => waiters.set(id, resolve));
  const fields: [string, string][] =
    transport === 'hybi00'
      ? [['Host', `127.0.0.1:${port}`], ['Upgrade', 'WebSocket'], ['Connection', 'Upgrade'], ['Sec-WebSocket-Key1', '4 @1  46546xW%0l 1 5'], ['Sec-WebSocket-Key2', '12998 5 Y3 1  .P00']]
      : [['Host', `127.0.0.1:${port}`], ['Upgrade', 'websocket'], ['Connection', 'Upgrade'], ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='], ['Sec-WebSocket-Version', '13']];
  fields.push(['X-Probe', id], ...(probe.headers ?? []));
  const head = Buffer.from(`GET ${probe.target} HTTP/1.1\r\n${fields.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`, 'utf8');
  const bytes = transport === 'hybi00' ? Buffer.concat([head, Buffer.from('^n:ds[4U', 'latin1')]) : head;
  return new Promise((resolve, reject) => {
    const socket: Socket = transport === 'tls' ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false }) : netConnect(port, '127.0.0.1');
    let received = Buffer.alloc(0);
    let answered = false;
    socket.once(transport === 'tls' ? 'secureConnect' : 'connect', () => socket.write(bytes));
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      if (answered) return;
      received = Buffer.concat([received, chunk]);
      if (received.indexOf('\r\n\r\n') < 0) return;
      answered = true;
      const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(received.toString('latin1'))?.[1]);
      if (status !== 101) {
        waiters.delete(id);
        socket.destroy();
        resolve({ status });
        return;
      }
      void seen.then((s) => {
        waiters.delete(id);
        socket.destroy();
        resolve({ status, seen: s });
      });
    });
    socket.on('close', () => {
      if (!answered) reject(new Error(`no answer to ${probe.target}`));
    });
  });
}

function h2Request(origin: string, probe: Probe): Promise<Answer> {
  const id = String(++sequence);
  const seen = new Promise<Seen>((resolve) => waiters.set(id, resolve));
  return new Promise((resolve, reject) => {
    const session: ClientHttp2Session = h2connect(origin, { ca: TLS.cert, rejectUnauthorized: false });
    session.on('error', () => undefined);
    session.once('remoteSettings', () => {
      const headers: OutgoingHttpHeaders = {
        ':method': 'CONNECT',
        ':protocol': 'websocket',
        ':path': probe.target,
        ':scheme': origin.startsWith('https') ? 'https' : 'http',
        ':authority': new URL(origin).host,
        'sec-websocket-version': '13',
        'x-probe': id,
      };
      for (const [name, value] of probe.headers ?? []) {
        const key = name.toLowerCase();
        const before = headers[key];
        headers[key] = before === undefined ? value : [...(Array.isArray(before) ? before : [String(before)]), value];
      }
      const stream = session.request(headers, { endStream: false });
      stream.on('error', () => undefined);
      let status = 0;
      stream.once('response', (h) => {
        status = Number(h[':status']);
        if (status !== 200) {
          waiters.delete(id);
          session.destroy();
          resolve({ status });
          return;
        }
        void seen.then((s) => {
          waiters.delete(id);
          session.destroy();
          resolve({ status, seen: s });
        });
      });
      stream.once('close', () => {
        if (status !== 0) return;
        waiters.delete(id);
        const rstCode = stream.rstCode;
        session.destroy();
        resolve({ status: 0, rstCode });
      });
    });
    session.once('close', () => reject(new Error('session closed before its SETTINGS')));
  });
}

interface Running {
  request(probe: Probe): Promise<Answer>;
  close(): Promise<void>;
}

/** Starts `entry` with the mapper, and its client for the entry's transport. */
async function start(entry: EntryPoint): Promise<Running> {
  const { port, origin, close } = await entry.start({ target: mapper });
  return { request: (probe) => (h2(entry.transport) ? h2Request(origin, probe) : h1Request(port, probe, entry.transport)), close };
}

const entryPoints: EntryPoint[] = [
  SERVE,
  SERVE_TLS,
  SERVE_HTTP2,
  toHybi00Client(SERVE),
  HANDLE_UPGRADE,
  // (Without settings: attachHttp2() turns enableConnectProtocol on itself.)
  attachHttp2Entry("attachHttp2() on a 'stream'-style h2c server", { serverOptions: {} }),
  attachHttp2Entry("attachHttp2() on an h2c server with a 'request' listener", { serverOptions: {}, requestListener: (_req, res) => res.end('page') }),
  EXPRESS,
  KOA,
  FASTIFY,
  FASTIFY_HTTP2,
];

/** A request target, and the route, params and path every entry point agrees on (refused: the status). */
type Row = [what: string, target: string, route: string | number, params: Record<string, string>, path: string];

const LONG = `/${'x'.repeat(6000)}`;
const rows: Row[] = [
  ['a plain path, named group', '/rooms/abc', 'rooms', { room: 'abc' }, '/rooms/abc'],
  ['a query string', '/rooms/abc?x=1&y=%zz', 'rooms', { room: 'abc' }, '/rooms/abc'],
  ['%2F in a parameter: not decoded, not a separator', '/rooms/a%2Fb', 'rooms', { room: 'a%2Fb' }, '/rooms/a%2Fb'],
  ['%20 in a parameter: not decoded', '/rooms/a%20b', 'rooms', { room: 'a%20b' }, '/rooms/a%20b'],
  ['%65 for e: not decoded, so not /test', '/t%65st', 'catch-all', {}, '/t%65st'],
  ['percent-encoded UTF-8: not decoded', '/rooms/%C3%A9', 'rooms', { room: '%C3%A9' }, '/rooms/%C3%A9'],
  ['a positional group: no params', '/pos/7', 'pos', {}, '/pos/7'],
  ['a double slash', '//test', 'catch-all', {}, '//test'],
  ['a dot-dot segment: not resolved', '/a/../test', 'catch-all', {}, '/a/../test'],
  ['a dot segment: not resolved', '/./test', 'catch-all', {}, '/./test'],
  ['a trailing slash', '/test/', 'catch-all', {}, '/test/'],
  ['upper case: paths are case-sensitive', '/TEST', 'catch-all', {}, '/TEST'],
  ['lower case of a mixed-case route', '/case', 'catch-all', {}, '/case'],
  ['a fragment (no client may send one)', '/test#x', 'test', {}, '/test'],
  ['a path of 6000 bytes', LONG, 'catch-all', {}, LONG],
  // Node's HTTP/1.1 parser answers a raw byte from 0x80 up 400; over HTTP/2 the core does (it was routed).
  ['raw UTF-8 in the path (not a URI)', '/rooms/é', 400, {}, ''],
];

afterEach(() => waiters.clear());

describe.each(entryPoints.map((e) => [e.name, e] as const))('%s', (_name, entry) => {
  let running: Running;
  beforeAll(async () => {
    running = await start(entry);
  });
  afterAll(() => running.close());

  const accepted = h2(entry.transport) ? 200 : 101;

  test.each(rows)('%s: %s', async (_what, target, route, params, path) => {
    const answer = await running.request({ target });
    if (typeof route === 'number') {
      expect(answer).toEqual({ status: route });
      return;
    }
    // Fastify's router refuses a path it cannot decode as it refuses plain requests (FST_ERR_BAD_URL).
    expect(answer.status).toBe(accepted);
    expect(answer.seen).toMatchObject({ route, params, path, url: target });
    expect(answer.seen!.requestLine).toBe(h2(entry.transport) ? `CONNECT ${target} HTTP/2.0` : `GET ${target} HTTP/1.1`);
  });

  test('invalid percent-encoding in the path: taken as it is (Fastify: its router\'s 400)', async () => {
    const answer = await running.request({ target: '/rooms/%zz' });
    if (entry.api === 'fastify') expect(answer).toEqual({ status: 400 });
    else expect(answer.seen).toMatchObject({ route: 'rooms', params: { room: '%zz' }, path: '/rooms/%zz' });
  });

  test('subprotocol routing: the offered one, or the route\'s handler without', async () => {
    const chat = await running.request({ target: '/proto', headers: [['Sec-WebSocket-Protocol', 'x, chat']] });
    expect(chat.seen).toMatchObject({ route: 'proto chat', protocol: 'chat' });
    expect(chat.seen!.conn.protocol).toBe('chat');
    const none = await running.request({ target: '/proto' });
    expect(none.seen).toMatchObject({ route: 'proto', protocol: '' });
    expect(await running.request({ target: '/proto', headers: [['Sec-WebSocket-Protocol', 'other']] })).toEqual({ status: 400 });
  });

  if (!h2(entry.transport)) {
    test('an absolute-form target: routed by its path (hybi-00: 400)', async () => {
      const answer = await running.request({ target: 'http://example.com/test?q=1' });
      if (entry.transport === 'hybi00') expect(answer).toEqual({ status: 400 });
      else expect(answer.seen).toMatchObject({ route: 'test', path: '/test', url: 'http://example.com/test?q=1', requestLine: 'GET http://example.com/test?q=1 HTTP/1.1' });
    });
  }

  test("`*`: refused (HTTP/2: nghttp2 resets the stream)", async () => {
    const answer = await running.request({ target: '*' });
    if (h2(entry.transport)) expect(answer).toEqual({ status: 0, rstCode: h2constants.NGHTTP2_PROTOCOL_ERROR });
    else expect(answer).toEqual({ status: 400 });
  });

  test('the connection\'s headers: lower-case names, repeats joined as Node joins them, cookies with "; ", no pseudo-headers', async () => {
    const answer = await running.request({
      target: '/rooms/h?q',
      headers: [['X-Dup', 'a'], ['X-Dup', 'b'], ['Cookie', 'a=1'], ['Cookie', 'b=2'], ['Set-Cookie', 's=1'], ['Set-Cookie', 's=2'], ['X-Mixed-Case', 'v']],
    });
    const headers = answer.seen!.headers;
    expect(headers).toMatchObject({ 'x-dup': 'a, b', cookie: 'a=1; b=2', 'set-cookie': ['s=1', 's=2'], 'x-mixed-case': 'v', host: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    // (Fixed bug: over HTTP/2 through Node's compatibility API, serve()'s and Fastify's included,
    // conn.headers held `:method`, `:path`, `:authority`, `:scheme` and `:protocol` too.)
    expect(Object.keys(headers).filter((name) => name.startsWith(':'))).toEqual([]);
    for (const name of Object.keys(headers)) expect(name).toBe(name.toLowerCase());
  });

  test("the handler's req, the connection's addresses and transport", async () => {
    const { seen } = await running.request({ target: '/test?z=1' });
    const { conn, req } = seen!;
    expect(req.url).toBe('/test?z=1');
    expect([req.method, req.httpVersion]).toEqual(h2(entry.transport) ? ['CONNECT', '2.0'] : ['GET', '1.1']);
    expect(req.headers.host).toBe(seen!.headers.host);
    expect(Array.isArray(req.rawHeaders)).toBe(true);
    if (h2(entry.transport)) {
      // As Node's Http2ServerRequest has them, on a 'stream'-style server too (fixed bug: there
      // alone they were undefined, and so was req.rawHeaders).
      expect(req.headers[':authority']).toBe(req.headers.host);
      expect(req.headers[':path']).toBe('/test?z=1');
      expect(req.rawHeaders.slice(0, 2)).toEqual([':method', 'CONNECT']);
    } else {
      expect(req.headers[':authority']).toBeUndefined();
    }
    expect(conn.transport.kind).toBe(h2(entry.transport) ? 'http2' : entry.transport === 'tls' ? 'tls' : 'tcp');
    expect(conn.transport.secure).toBe(entry.transport === 'tls' || entry.transport === 'h2');
    expect(conn.variant).toBe(entry.transport === 'hybi00' ? 'hybi00' : 'rfc6455');
    expect([conn.remoteAddress, conn.localAddress]).toEqual(['127.0.0.1', '127.0.0.1']);
    expect(conn.remotePort).toEqual(expect.any(Number));
    expect(conn.localPort).toBe(Number(/:(\d+)$/.exec(String(req.headers.host))![1]));
    expect(conn.protocol).toBe('');
  });
});

describe('serve({ http2: true }): maxHeaderSize bounds both protocols on its port', () => {
  let server: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    server = await serve({ tls: TLS, http2: true, maxHeaderSize: 4096 }, mapper);
  });
  afterAll(() => server.close());

  test('over HTTP/2 a CONNECT past it is reset (ENHANCE_YOUR_CALM), and the session goes on', async () => {
    const origin = `https://127.0.0.1:${server.port}`;
    // (Fixed bug: Node's HTTP/2 server ignores maxHeaderSize, and a CONNECT of any size was routed.)
    expect(await h2Request(origin, { target: `/${'x'.repeat(5000)}` })).toEqual({ status: 0, rstCode: h2constants.NGHTTP2_ENHANCE_YOUR_CALM });
    expect(await h2Request(origin, { target: '/test', headers: [['X-Big', 'y'.repeat(5000)]] })).toEqual({ status: 0, rstCode: h2constants.NGHTTP2_ENHANCE_YOUR_CALM });
    expect((await h2Request(origin, { target: `/${'x'.repeat(3000)}` })).status).toBe(200);
  });

  test('over HTTP/1.1 on the same port a head past it gets 431, not Node\'s default limit of 16 KiB', async () => {
    // (Fixed bug: Node's HTTP/2 server parsed its HTTP/1.1 heads with its default limit.)
    expect((await h1Request(server.port, { target: `/${'x'.repeat(5000)}` }, 'tls')).status).toBe(431);
    expect((await h1Request(server.port, { target: `/${'x'.repeat(3000)}` }, 'tls')).status).toBe(101);
  });
});
