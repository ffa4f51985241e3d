/**
 * serve()'s lean HTTP/1.1 front (src/http1-front.ts), over real sockets: clean upgrade requests
 * take the fast path (no Node HTTP parser on the socket); everything else falls back to Node's
 * parser with the bytes already read put back, and must be answered exactly as without the front.
 * The differential tests run each request against serve() with the front and with
 * RFC6455_NO_FRONT=1 (Node's parser only) and compare the answers.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { resolve } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { connect, EOF, serve, type ServeOptions, type WebSocketServer } from '../../src/index.js';
import { parseResponse, upgradeRequest, type RawResponse } from '../helpers/raw-client.js';
import { until } from '../helpers/wait.js';

const FIXTURES = resolve(__dirname, '../../../../test/fixtures/tls');
const TLS = { key: readFileSync(resolve(FIXTURES, 'key.pem')), cert: readFileSync(resolve(FIXTURES, 'cert.pem')) };

const servers: WebSocketServer[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** What the server saw of each upgrade request (in its `upgrade` event). */
interface Seen {
  req: IncomingMessage;
  head: Buffer;
  /** Node's HTTP server leaves a `parser` own property on every socket it parsed; the front does not. */
  nodeParsed: boolean;
}

async function start(options: ServeOptions = {}, front = true): Promise<{ server: WebSocketServer; seen: Seen[] }> {
  const saved = process.env.RFC6455_NO_FRONT;
  if (front) delete process.env.RFC6455_NO_FRONT;
  else process.env.RFC6455_NO_FRONT = '1';
  let server: WebSocketServer;
  try {
    server = await serve(options, async (conn) => {
      for await (const m of conn) await conn.send(m).catch(() => undefined);
    });
  } finally {
    if (saved === undefined) delete process.env.RFC6455_NO_FRONT;
    else process.env.RFC6455_NO_FRONT = saved;
  }
  servers.push(server);
  const seen: Seen[] = [];
  server.httpServer.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    seen.push({ req, head, nodeParsed: Object.prototype.hasOwnProperty.call(socket, 'parser') });
  });
  return { server, seen };
}

/** A raw client: writes bytes, collects what comes back, knows when the server closed. */
class Peer {
  received = Buffer.alloc(0);
  closed = false;
  private waiters: Array<() => void> = [];
  constructor(readonly socket: Socket) {
    sockets.push(socket);
    socket.on('data', (d: Buffer) => {
      this.received = Buffer.concat([this.received, d]);
      this.wake();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }
  static open(port: number, tls = false): Promise<Peer> {
    return new Promise((resolve, reject) => {
      const socket = tls
        ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => resolve(new Peer(socket)))
        : netConnect({ port, host: '127.0.0.1' }, () => resolve(new Peer(socket)));
      socket.once('error', reject);
    });
  }
  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
  write(bytes: string | Buffer): Promise<void> {
    return new Promise((resolve) => this.socket.write(bytes, () => resolve()));
  }
  async until(done: () => boolean, what: string): Promise<void> {
    while (!done()) {
      if (this.closed) throw new Error(`closed before ${what}: ${JSON.stringify(this.received.toString('latin1'))}`);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }
  /** Waits until `count` complete responses (with Content-Length bodies) have arrived. */
  async responses(count: number): Promise<RawResponse[]> {
    let list: RawResponse[] = [];
    await this.until(() => (list = splitResponses(this.received)).length >= count, `${count} responses`);
    return list;
  }
  async untilClosed(): Promise<void> {
    while (!this.closed) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }
}

/** Splits a byte stream into complete HTTP responses (Content-Length framed, or 101). */
function splitResponses(bytes: Buffer): RawResponse[] {
  const out: RawResponse[] = [];
  let rest = bytes;
  for (;;) {
    const r = parseResponse(rest);
    if (!r) return out;
    const length = r.status === 101 ? 0 : Number(r.headers['content-length'] ?? 0);
    if (r.body.length < length) return out;
    out.push({ ...r, body: r.body.subarray(0, length) });
    rest = r.body.subarray(length);
  }
}

/** Sends `request` on a new connection and resolves with the first response and whether the server closed. */
async function exchange(port: number, request: string | Buffer, tls = false): Promise<{ status: number; closed: boolean; response: RawResponse }> {
  const peer = await Peer.open(port, tls);
  await peer.write(request);
  const [response] = await peer.responses(1);
  if (response!.status !== 101) await peer.untilClosed().catch(() => undefined);
  // A 101 stays open; every error answer of these tests ends the connection.
  return { status: response!.status, closed: peer.closed, response: response! };
}

describe('fast path', () => {
  test('a WebSocket client connects and echoes through the fast path', async () => {
    const { server, seen } = await start();
    const conn = await connect(`${server.url}chat?room=1`);
    await conn.send('hello');
    expect(await conn.recv()).toBe('hello');
    await conn.close();
    expect(seen).toHaveLength(1);
    expect(seen[0]!.nodeParsed).toBe(false);
    expect(seen[0]!.req.url).toBe('/chat?room=1');
  });

  test('the request the front builds matches the one Node builds, header for header', async () => {
    const head = (port: number): string =>
      [
        'GET /p/a%20th?q=1&r=%2F HTTP/1.1',
        `Host: 127.0.0.1:${port}`,
        'Upgrade: websocket',
        'Connection: keep-alive, Upgrade',
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
        'Sec-WebSocket-Version: 13',
        'Sec-WebSocket-Protocol: a, b',
        'Sec-WebSocket-Protocol:c',
        'X-Spaces: \t padded value \t ',
        'Cookie: a=1',
        'Cookie: b=2',
        'Set-Cookie: x',
        'Set-Cookie: y',
        'User-Agent: one',
        'User-Agent: two',
        'X-Empty:',
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n');
    const fields = (req: IncomingMessage) => ({
      method: req.method,
      url: req.url,
      httpVersion: req.httpVersion,
      httpVersionMajor: req.httpVersionMajor,
      httpVersionMinor: req.httpVersionMinor,
      headers: { ...req.headers, host: undefined, 'sec-websocket-key': undefined },
      rawHeaders: req.rawHeaders.length,
      complete: req.complete,
      upgrade: (req as IncomingMessage & { upgrade: boolean }).upgrade,
      readableEnded: req.readableEnded,
      hasSocket: req.socket !== undefined,
    });
    const results = [];
    for (const front of [true, false]) {
      const { server, seen } = await start({}, front);
      const r = await exchange(server.port, head(server.port));
      expect(r.status).toBe(101);
      expect(seen).toHaveLength(1);
      expect(seen[0]!.nodeParsed).toBe(!front);
      results.push(fields(seen[0]!.req));
    }
    expect(results[0]).toEqual(results[1]);
    expect(results[0]!.headers['sec-websocket-protocol']).toBe('a, b, c');
    // A second Host line: 400 (RFC 9112 §3.2) whichever parser read the head.
    for (const front of [true, false]) {
      const { server, seen } = await start({}, front);
      const r = await exchange(server.port, head(server.port).replace('Upgrade: websocket', 'host: duplicate.example\r\nUpgrade: websocket'));
      expect([front, r.status]).toEqual([front, 400]);
      expect(seen).toHaveLength(1);
    }
    expect((results[0]!.headers as Record<string, unknown>)['x-spaces']).toBe('padded value');
  });

  test('with every header name once, the headers object matches the one Node builds too (set-cookie listed, names lower-cased, raw spellings kept)', async () => {
    const head = [
      'GET /unique HTTP/1.1',
      'Host: example.com',
      'UPGRADE: websocket',
      'connection: Upgrade',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      'sec-websocket-version: 13',
      'Origin: http://a.example',
      'user-AGENT: odd casing',
      'Set-Cookie: a=1',
      'Cookie: b=2',
      'X-Custom-Header:  value with  spaces ',
      'Content-Type: text/plain',
      'Constructor: c',
      '',
      '',
    ].join('\r\n');
    const results = [];
    for (const front of [true, false]) {
      const { server, seen } = await start({}, front);
      expect((await exchange(server.port, head)).status).toBe(101);
      expect(seen[0]!.nodeParsed).toBe(!front);
      const req = seen[0]!.req;
      results.push({ headers: req.headers, keys: Object.keys(req.headers), rawHeaders: req.rawHeaders, distinct: req.headersDistinct, proto: Object.getPrototypeOf(req.headers) });
    }
    expect(results[0]).toEqual(results[1]);
    expect(results[0]!.headers['set-cookie']).toEqual(['a=1']);
    expect(results[0]!.headers['x-custom-header']).toBe('value with  spaces');
    expect(results[0]!.rawHeaders.filter((_, i) => i % 2 === 0)).toEqual([
      'Host', 'UPGRADE', 'connection', 'Sec-WebSocket-Key', 'sec-websocket-version', 'Origin', 'user-AGENT',
      'Set-Cookie', 'Cookie', 'X-Custom-Header', 'Content-Type', 'Constructor',
    ]);
  });

  test('values the front remembers between requests (Host, Origin, User-Agent) are each request\'s own', async () => {
    const { server, seen } = await start();
    // Same values twice, then values that differ in length, in one character, or as a prefix.
    const variants = [
      ['example.com', 'https://a.example', 'agent/1.0'],
      ['example.com', 'https://a.example', 'agent/1.0'],
      ['example.org', 'https://b.example', 'agent/1.0 extra'],
      ['example.co', 'https://a.exampl', 'agent/1.'],
      ['example.com:80', 'https://a.example', 'agent/1.0'],
    ];
    for (const [host, origin, agent] of variants) {
      const head = [
        'GET / HTTP/1.1',
        `Host: ${host}`,
        `Origin: ${origin}`,
        `User-Agent: ${agent}`,
        'Upgrade: websocket',
        'Connection: Upgrade',
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
        'Sec-WebSocket-Version: 13',
        '',
        '',
      ].join('\r\n');
      expect((await exchange(server.port, head)).status).toBe(101);
    }
    expect(seen.map((s) => [s.req.headers.host, s.req.headers.origin, s.req.headers['user-agent']])).toEqual(variants);
    expect(seen.every((s) => !s.nodeParsed)).toBe(true);
  });

  test('a head split over several packets (inside the CRLFCRLF too) still takes the fast path', async () => {
    const { server, seen } = await start();
    const peer = await Peer.open(server.port);
    const request = upgradeRequest(server.port);
    const cuts = [3, 40, request.length - 3, request.length - 1, request.length];
    let from = 0;
    for (const cut of cuts) {
      await peer.write(request.slice(from, cut));
      from = cut;
      await new Promise((r) => setImmediate(r));
    }
    const [response] = await peer.responses(1);
    expect(response!.status).toBe(101);
    expect(seen[0]!.nodeParsed).toBe(false);
  });

  test('a head trickled byte by byte takes the fast path; a non-GET trickled so goes to Node', async () => {
    const { server, seen } = await start({ onRequest: (req, res) => res.end(`got ${req.method}`) });
    const peer = await Peer.open(server.port);
    peer.socket.setNoDelay(true);
    const request = upgradeRequest(server.port);
    for (let i = 0; i < request.length; i++) await peer.write(request[i]!);
    const [response] = await peer.responses(1);
    expect(response!.status).toBe(101);
    expect(seen[0]!.nodeParsed).toBe(false);
    const other = await Peer.open(server.port);
    other.socket.setNoDelay(true);
    const put = 'PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n';
    for (let i = 0; i < put.length; i++) await other.write(put[i]!);
    const [answer] = await other.responses(1);
    expect(answer!.body.toString()).toBe('got PUT');
  });

  test('frames sent in the same packet as the head reach the connection', async () => {
    const { server, seen } = await start();
    const peer = await Peer.open(server.port);
    // A masked text frame "hi" with a zero mask.
    const frame = Buffer.from([0x81, 0x82, 0, 0, 0, 0, 0x68, 0x69]);
    await peer.write(Buffer.concat([Buffer.from(upgradeRequest(server.port)), frame]));
    await peer.until(() => peer.received.includes(Buffer.from([0x81, 0x02, 0x68, 0x69])), 'the echo');
    expect(seen[0]!.head.length).toBe(frame.length);
    expect(seen[0]!.nodeParsed).toBe(false);
  });

  test('a hybi-00 request with key3 in the same packet is answered through the fast path', async () => {
    const { server, seen } = await start();
    const head = [
      'GET /demo HTTP/1.1',
      'Host: example.com',
      'Connection: Upgrade',
      'Sec-WebSocket-Key2: 12998 5 Y3 1  .P00',
      'Sec-WebSocket-Protocol: sample',
      'Upgrade: WebSocket',
      'Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5',
      'Origin: http://example.com',
      '',
      '',
    ].join('\r\n');
    const peer = await Peer.open(server.port);
    await peer.write(Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from('^n:ds[4U', 'latin1')]));
    // draft-hixie-thewebsocketprotocol-76 §1.2 example answer.
    await peer.until(() => peer.received.includes(Buffer.from('8jKS\'y:G*Co,Wxa-', 'latin1')), 'the hybi-00 answer');
    expect(peer.received.toString('latin1')).toMatch(/^HTTP\/1\.1 101 /);
    expect(seen[0]!.head.length).toBe(8);
    expect(seen[0]!.nodeParsed).toBe(false);
  });

  test('TLS: a wss client connects through the fast path', async () => {
    const { server, seen } = await start({ tls: TLS });
    const conn = await connect(server.url, { tls: { rejectUnauthorized: false } });
    await conn.send('over tls');
    expect(await conn.recv()).toBe('over tls');
    await conn.close();
    expect(seen[0]!.nodeParsed).toBe(false);
  });
});

describe('fallback to Node', () => {
  test('a plain GET gets 426, and onRequest answers it when given', async () => {
    const plain = 'GET /page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
    const { server } = await start();
    const r = await exchange(server.port, plain);
    expect(r.status).toBe(426);
    expect(r.response.headers.upgrade).toBe('websocket');
    const other = await start({
      onRequest(req, res) {
        res.end(`you asked for ${req.url}`);
      },
    });
    const r2 = await exchange(other.server.port, plain);
    expect(r2.status).toBe(200);
    expect(r2.response.body.toString()).toBe('you asked for /page');
  });

  test('keep-alive: two plain requests on one socket, then an upgrade on the same socket', async () => {
    const { server, seen } = await start({ onRequest: (req, res) => res.end(`page ${req.url}`) });
    const peer = await Peer.open(server.port);
    await peer.write('GET /one HTTP/1.1\r\nHost: x\r\n\r\n');
    const first = await peer.responses(1);
    expect(first[0]!.body.toString()).toBe('page /one');
    await peer.write('GET /two HTTP/1.1\r\nHost: x\r\n\r\n');
    const second = await peer.responses(2);
    expect(second[1]!.body.toString()).toBe('page /two');
    expect(peer.closed).toBe(false);
    // Node parses the rest of this connection: its upgrade is served through Node's 'upgrade' event.
    await peer.write(upgradeRequest(server.port, { path: '/three' }));
    const third = await peer.responses(3);
    expect(third[2]!.status).toBe(101);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.nodeParsed).toBe(true);
    expect(seen[0]!.req.url).toBe('/three');
  });

  test('two pipelined plain requests in one packet are both answered', async () => {
    const { server } = await start({ onRequest: (req, res) => res.end(`page ${req.url}`) });
    const peer = await Peer.open(server.port);
    await peer.write('GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n');
    const list = await peer.responses(2);
    expect(list.map((r) => r.body.toString())).toEqual(['page /a', 'page /b']);
  });

  // Node's parser fails on the garbage while the answer to /a is still being written: a 400 then
  // went out inside that answer's body (Node alone, without a clientError listener, only closes).
  test('garbage pipelined behind a request whose answer is streaming: the answer is not corrupted, the socket is closed', async () => {
    const { server } = await start({
      onRequest(_req, res) {
        res.writeHead(200, { 'Content-Length': '10' });
        res.write('12345'); // the rest never comes
      },
    });
    const peer = await Peer.open(server.port);
    await peer.write('GET /a HTTP/1.1\r\nHost: x\r\n\r\n');
    await peer.until(() => peer.received.includes('12345'), 'the first half of the body');
    await peer.write('\x16\x03 garbage\r\n\r\n');
    await peer.untilClosed();
    const response = parseResponse(peer.received);
    expect(response?.status).toBe(200);
    expect(response?.body.toString('latin1')).toBe('12345');
  });

  test('a POST whose body arrives in a later packet reaches onRequest whole', async () => {
    const { server } = await start({
      onRequest(req, res) {
        let body = '';
        req.setEncoding('utf8');
        req.on('data', (d: string) => (body += d));
        req.on('end', () => res.end(`got ${body}`));
      },
    });
    const peer = await Peer.open(server.port);
    await peer.write('POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello');
    await new Promise((r) => setTimeout(r, 20));
    await peer.write(' world');
    const [response] = await peer.responses(1);
    expect(response!.body.toString()).toBe('got hello world');
  });

  test('an upgrade Node parses (declined by the front) is still served', async () => {
    const { server, seen } = await start();
    // Lower-case header names and an extra header of obs-text: the front declines, Node accepts.
    const request = upgradeRequest(server.port, { headers: ['X-Latin: caf\xe9'] });
    const r = await exchange(server.port, Buffer.from(request, 'latin1'));
    expect(r.status).toBe(101);
    expect(seen[0]!.nodeParsed).toBe(true);
    expect(seen[0]!.req.headers['x-latin']).toBe('caf\xe9');
  });

  const key = 'dGhlIHNhbXBsZSBub25jZQ==';
  const upgradeLines = (extra: string[], requestLine = 'GET / HTTP/1.1'): string =>
    [requestLine, 'Host: x', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Key: ${key}`, 'Sec-WebSocket-Version: 13', ...extra, '', ''].join('\r\n');
  const odd: Array<[string, (maxHeaderSize: number) => string, number]> = [
    ['an obs-fold header', () => upgradeLines(['X-Folded: one', ' two']), 400],
    // An upgrade with a body is refused (its bytes were read as frames after a 101).
    ['Transfer-Encoding on the upgrade', () => upgradeLines(['Transfer-Encoding: chunked']) + '0\r\n\r\n', 400],
    ['an HTTP/1.0 upgrade', () => upgradeLines([], 'GET / HTTP/1.0'), 400],
    ['a head over maxHeaderSize', (max) => upgradeLines([`X-Big: ${'a'.repeat(max)}`]), 431],
    ['garbage', () => '\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n', 400],
    ['a bare LF line end', () => upgradeLines([]).replace('Host: x\r\n', 'Host: x\n'), 400],
    ['white space before a colon', () => upgradeLines(['X-Bad : 1']), 400],
    ['a control character in a value', () => upgradeLines(['X-Bad: a\x01b']), 400],
    ['Upgrade without Connection: upgrade', () => upgradeLines([]).replace('Connection: Upgrade', 'Connection: close'), 426],
    ['an absolute-form target', () => upgradeLines([], 'GET http://x/ HTTP/1.1'), 101],
    ['a POST upgrade', () => upgradeLines(['Content-Length: 0'], 'POST / HTTP/1.1'), 400],
    ['a lower-case method', () => upgradeLines([], 'get / HTTP/1.1'), 400],
    ['Content-Length: 3 with a body', () => upgradeLines(['Content-Length: 3']) + 'abc', 400],
    ['a tab in the target', () => upgradeLines([], 'GET /a\tb HTTP/1.1'), 400],
    ['a bare CR in a value', () => upgradeLines(['X-Bad: a\rb']), 400],
    ['two spaces after the method', () => upgradeLines([], 'GET  / HTTP/1.1'), 101],
    ['obs-text in the target', () => upgradeLines([], 'GET /caf\xe9 HTTP/1.1'), 400],
    ['HTTP/1.2', () => upgradeLines([], 'GET / HTTP/1.2'), 400],
    // llhttp refuses a second Content-Length, even an equal one (the front accepted it: 101).
    ['Content-Length: 0 twice', () => upgradeLines(['Content-Length: 0', 'Content-Length: 0']), 400],
    ['content-length: 0 twice, spelled differently', () => upgradeLines(['content-length: 0', 'CONTENT-LENGTH: 0']), 400],
    // A line that is no `name: value` (its name would run to a colon further on, or to the end).
    ['a header line without a colon, last', () => upgradeLines(['NoColon']), 400],
    ['a header line without a colon, then another header', () => upgradeLines(['NoColon', 'X-After: 1']), 400],
  ];
  test.each(odd)('%s gets the same answer as from Node alone', async (_name, request, expected) => {
    const statuses: number[] = [];
    for (const front of [true, false]) {
      const { server } = await start({ maxHeaderSize: 1024 }, front);
      statuses.push((await exchange(server.port, Buffer.from(request(1024), 'latin1'))).status);
    }
    expect(statuses[0]).toBe(statuses[1]);
    expect(statuses[0]).toBe(expected);
  });

  // Node keeps the first maxHeadersCount header lines or so (1000 by default) and drops the
  // rest: a Sec-WebSocket-Key past them is missing, 400. The front kept every line (101).
  test.each([
    ['1100 header lines (the default maxHeadersCount)', 1100, undefined],
    ['60 header lines, maxHeadersCount 20', 60, 20],
  ])('%s, the key last: the same answer as from Node alone', async (_name, lines, maxHeadersCount) => {
    const extra = Array.from({ length: lines - 5 }, (_, i) => `X-${i}: ${i}`);
    const request = ['GET / HTTP/1.1', 'Host: x', 'Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Version: 13', ...extra, `Sec-WebSocket-Key: ${key}`, '', ''].join('\r\n');
    const statuses: number[] = [];
    for (const front of [true, false]) {
      const { server } = await start({ maxHeaderSize: 65536 }, front);
      if (maxHeadersCount !== undefined) (server.httpServer as { maxHeadersCount: number }).maxHeadersCount = maxHeadersCount;
      statuses.push((await exchange(server.port, request)).status);
    }
    expect(statuses).toEqual([400, 400]);
  });

  test('printable ASCII up to `~` and a HTAB in a value take the fast path', async () => {
    const { server, seen } = await start();
    const request = upgradeRequest(server.port, { path: '/~user/!$&()*+,;=@', headers: ['X-Edges: \t ~!\t"#{|}~'] });
    expect((await exchange(server.port, request)).status).toBe(101);
    expect(seen[0]!.nodeParsed).toBe(false);
    expect(seen[0]!.req.url).toBe('/~user/!$&()*+,;=@');
    expect(seen[0]!.req.headers['x-edges']).toBe('~!\t"#{|}~');
  });

  test('maxHeadersCount 0 (no limit, for Node) leaves the fast path its own limit', async () => {
    const { server, seen } = await start();
    (server.httpServer as { maxHeadersCount: number }).maxHeadersCount = 0;
    expect((await exchange(server.port, upgradeRequest(server.port))).status).toBe(101);
    expect(seen[0]!.nodeParsed).toBe(false);
  });

  test.each([
    ['20 header lines, maxHeadersCount 20: the fast path', 20, false],
    ['21 header lines, maxHeadersCount 20: Node\'s', 21, true],
  ])('%s', async (_name, lines, nodeParsed) => {
    const extra = Array.from({ length: lines - 5 }, (_, i) => `X-${i}: ${i}`);
    const { server, seen } = await start();
    (server.httpServer as { maxHeadersCount: number }).maxHeadersCount = 20;
    expect((await exchange(server.port, upgradeLines(extra))).status).toBe(101);
    expect(seen[0]!.nodeParsed).toBe(nodeParsed);
  });

  test('a handshake of 60 header lines still takes the fast path, and Node builds the same headers', async () => {
    const extra = Array.from({ length: 55 }, (_, i) => `X-${i}: ${i}`);
    const { server, seen } = await start();
    expect((await exchange(server.port, upgradeLines(extra))).status).toBe(101);
    expect(seen[0]!.nodeParsed).toBe(false);
    expect(seen[0]!.req.rawHeaders).toHaveLength(2 * 60);
    expect(seen[0]!.req.headers['x-54']).toBe('54');
  });

  // Heads that end without a CRLFCRLF, so the front never saw their end: it waited for the
  // handshake timeout and answered 408 where Node alone answers 400 at once.
  test.each([
    ['an upgrade with LF line ends', upgradeLines([]).replace(/\r\n/g, '\n'), false],
    ['an upgrade whose head ends in CRLF LF', upgradeLines([]).replace(/\r\n\r\n$/, '\r\n\n'), false],
    ['a plain GET with LF line ends', 'GET / HTTP/1.1\nHost: x\n\n', false],
    ['an upgrade with LF line ends, trickled byte by byte', upgradeLines([]).replace(/\r\n/g, '\n'), true],
  ])('%s gets the same answer as from Node alone, before the handshake timeout', async (_name, request, trickle) => {
    const statuses: number[] = [];
    for (const front of [true, false]) {
      const { server } = await start({ handshakeTimeout: 5000 }, front);
      const peer = await Peer.open(server.port);
      peer.socket.setNoDelay(true);
      if (trickle) for (const c of request) await peer.write(c);
      else await peer.write(request);
      const [response] = await peer.responses(1);
      statuses.push(response!.status);
      await peer.untilClosed();
    }
    expect(statuses).toEqual([400, 400]);
  });

  test.each([
    ['a partial head', 'GET / HTTP/1.1\r\nHost: x\r\nUpgr', 'HTTP/1.1 400 Bad Request'],
    ['nothing', '', ''],
    ['a whole plain request', 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', 'HTTP/1.1 426 Upgrade Required'],
  ])('a client that sends %s and ends its side gets the same answer as from Node alone', async (_name, bytes, expected) => {
    const answers: string[] = [];
    for (const front of [true, false]) {
      const { server } = await start({}, front);
      const peer = await Peer.open(server.port);
      peer.socket.end(bytes);
      await peer.untilClosed();
      answers.push(peer.received.toString('latin1').split('\r\n')[0]!);
    }
    expect(answers[0]).toBe(answers[1]);
    expect(answers[0]).toBe(expected);
  });

  /** serve() and the server side of the next connection, with the bytes it has received (before a hand-over). */
  async function openWatched(options: ServeOptions, front = true): Promise<{ server: WebSocketServer; seen: Seen[]; peer: Peer; received: () => number; handed: () => boolean }> {
    const { server, seen } = await start(options, front);
    let serverSocket: Socket | undefined;
    let received = 0;
    server.httpServer.on('connection', (socket: Socket) => {
      serverSocket = socket;
      socket.on('data', (chunk: Buffer) => (received += chunk.length));
    });
    const peer = await Peer.open(server.port);
    peer.socket.setNoDelay(true);
    await until(() => serverSocket !== undefined, 'the connection');
    return { server, seen, peer, received: () => received, handed: () => Object.prototype.hasOwnProperty.call(serverSocket, 'parser') };
  }

  // Heads whose first packets the front looks at one by one (each sent once the one before it
  // has arrived): what the front decides at each packet, not at the end of the head.
  test('a plain request whose first packet is a single byte reaches Node whole (that byte included)', async () => {
    const { peer, received, handed } = await openWatched({ onRequest: (req, res) => res.end(`got ${req.method}`) });
    await peer.write('P');
    await until(() => received() >= 1 && handed(), 'the one-byte packet handed to Node');
    await peer.write('UT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n');
    const [answer] = await peer.responses(1);
    expect(answer!.status).toBe(200);
    expect(answer!.body.toString()).toBe('got PUT');
  });

  test.each([
    // `GET` alone, then a fourth byte that is not a space: not a GET; llhttp refuses the method.
    ['a method that starts with GET, its fourth byte in a later packet', ['GET', 'X / HTTP/1.1\r\n']],
    // A bare LF (here the head's end, `\n\n`) in a later packet of a head the front holds.
    ['a bare LF in a later packet', ['GET / HTTP/1.1\r\n', 'Host: x\n\n']],
  ])('%s goes to Node at once: its 400, not the 408 of a head the front waits for', async (_name, packets) => {
    const statuses: number[] = [];
    for (const front of [true, false]) {
      const { peer, received } = await openWatched({ handshakeTimeout: 20_000 }, front);
      let sent = 0;
      for (const packet of packets) {
        // (Node's parser alone reads the socket itself: nothing to wait for there.)
        if (front) await until(() => received() >= sent, 'the packet before');
        await peer.write(packet);
        sent += packet.length;
      }
      const [response] = await peer.responses(1);
      statuses.push(response!.status);
      await peer.untilClosed();
    }
    expect(statuses).toEqual([400, 400]);
  });

  test.each([
    ['in one packet', 1],
    ['in two packets', 2],
  ])('an unfinished head of exactly maxHeaderSize bytes, %s, is handed to Node at once', async (_name, packets) => {
    const { peer, received, handed } = await openWatched({ maxHeaderSize: 1024 });
    const start = 'GET / HTTP/1.1\r\nHost: x\r\nX-Long: ';
    const head = start + 'a'.repeat(1024 - start.length);
    expect(head.length).toBe(1024);
    if (packets === 1) {
      await peer.write(head);
    } else {
      await peer.write(head.slice(0, 500));
      await until(() => received() === 500, 'the first packet');
      await peer.write(head.slice(500));
    }
    // Node counts the head without line ends, colons and white space: it waits for more.
    await until(() => handed(), 'the hand-over to Node\'s parser', 10_000);
  });

  test.each([
    ['one byte under maxHeaderSize takes the fast path', 1023, false],
    ['of exactly maxHeaderSize goes to Node (which counts less, and upgrades it)', 1024, true],
  ])('an upgrade head %s', async (_name, size, nodeParsed) => {
    const { server, seen } = await start({ maxHeaderSize: 1024 });
    const base = upgradeRequest(server.port, { headers: ['X-Pad: '] });
    const request = base.replace('X-Pad: ', 'X-Pad: ' + 'a'.repeat(size - base.length));
    expect(request.length).toBe(size);
    expect((await exchange(server.port, request)).status).toBe(101);
    expect(seen[0]!.nodeParsed).toBe(nodeParsed);
  });

  test('TLS: a plain GET gets 426 and keep-alive works through the fallback', async () => {
    const { server } = await start({ tls: TLS, onRequest: (req, res) => res.end(`secure ${req.url}`) });
    const peer = await Peer.open(server.port, true);
    await peer.write('GET /a HTTP/1.1\r\nHost: x\r\n\r\n');
    await peer.responses(1);
    await peer.write('GET /b HTTP/1.1\r\nHost: x\r\n\r\n');
    const list = await peer.responses(2);
    expect(list.map((r) => r.body.toString())).toEqual(['secure /a', 'secure /b']);
    const bare = await start({ tls: TLS });
    expect((await exchange(bare.server.port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', true)).status).toBe(426);
  });
});

describe('slow heads and shutdown', () => {
  test('a head that never completes gets 408 and is closed at the handshake timeout', async () => {
    const { server } = await start({ handshakeTimeout: 300 });
    const peer = await Peer.open(server.port);
    await peer.write('GET / HTTP/1.1\r\nHost: x\r\nUpgr');
    await peer.untilClosed();
    expect(parseResponse(peer.received)?.status).toBe(408);
  });

  // Each piece of a head used to be kept as its own Buffer until the head was whole: 100 to 200
  // bytes of heap for each byte trickled (2 to 3 MB per slowloris socket under the default
  // maxHeaderSize, 16 KiB; Node's parser holds about 10 KB). Measured here: 4000 bytes on each of
  // 10 sockets, each byte its own read on the server.
  test('a head trickled byte by byte holds about its size, not an object per byte', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const { server } = await start({ handshakeTimeout: 60_000 });
    let reads = 0;
    let bytes = 0;
    server.httpServer.on('connection', (socket: Socket) =>
      socket.on('data', (chunk: Buffer) => {
        reads++;
        bytes += chunk.length;
      }),
    );
    const begin = 'GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ';
    const peers = await Promise.all(Array.from({ length: 10 }, () => Peer.open(server.port)));
    for (const peer of peers) {
      peer.socket.setNoDelay(true);
      await peer.write(begin);
    }
    await until(() => bytes === 10 * begin.length, 'the starts of the heads');
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    const readsBefore = reads;
    const trickled = 4000;
    for (let i = 0; i < trickled; i++) {
      for (const peer of peers) peer.socket.write('a');
      await new Promise((resolve) => setImmediate(resolve));
    }
    await until(() => bytes === 10 * (begin.length + trickled), 'every byte');
    // Most bytes came as reads of their own (else this would measure nothing).
    expect(reads - readsBefore).toBeGreaterThan((10 * trickled) / 2);
    gc();
    const perSocket = (process.memoryUsage().heapUsed - heapBefore) / 10;
    // 800 KB per socket before; about 30 KB now.
    expect(perSocket).toBeLessThan(100_000);
    expect(peers.every((peer) => !peer.closed)).toBe(true);
  });

  // A request the front handed to Node's parser after holding part of it got a whole
  // headersTimeout (or requestTimeout) more from Node, counted from the hand-over: a head
  // trickled for most of handshakeTimeout, then grown to maxHeaderSize (which Node counts without
  // line ends, colons and white space, so it goes on reading) or completed with a body to come,
  // was cut at up to twice handshakeTimeout. The front's clock (performance.now) and
  // sweep (setInterval) are faked here; Node's own timeouts (10 s) run on real time and never
  // fire in the test.
  describe('one handshakeTimeout for a request handed to Node after the front held part of it', () => {
    const FAKE_ONLY: Parameters<typeof jest.useFakeTimers>[0] = {
      doNotFake: ['Date', 'hrtime', 'nextTick', 'queueMicrotask', 'setImmediate', 'clearImmediate', 'setTimeout', 'clearTimeout'],
    };
    afterEach(() => {
      jest.useRealTimers();
    });
    async function open(options: ServeOptions): Promise<{ peer: Peer; serverSocket: () => Socket; bytes: () => number }> {
      jest.useFakeTimers(FAKE_ONLY);
      const { server } = await start({ handshakeTimeout: 10_000, onRequest: (_req, res) => res.end('ok'), ...options });
      let serverSocket: Socket | undefined;
      let bytes = 0;
      server.httpServer.on('connection', (socket: Socket) => {
        serverSocket = socket;
        // (What Node's parser reads from the socket itself is not seen here.)
        socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
      });
      const peer = await Peer.open(server.port);
      return { peer, serverSocket: () => serverSocket!, bytes: () => bytes };
    }

    test('a head grown to maxHeaderSize late gets 408 at the deadline counted from the connection', async () => {
      const { peer, serverSocket, bytes } = await open({ maxHeaderSize: 1024 });
      const line = 'a:                         b\r\n';
      const first = `GET / HTTP/1.1\r\n${line.repeat(30)}`;
      await peer.write(first);
      await until(() => bytes() >= first.length, 'the first bytes');
      jest.advanceTimersByTime(9000);
      expect(serverSocket().writableEnded).toBe(false);
      // Past maxHeaderSize: Node's parser has the socket (and takes more: it counted 75 bytes).
      await peer.write(line.repeat(7));
      await until(() => Object.prototype.hasOwnProperty.call(serverSocket(), 'parser'), 'the hand-over');
      jest.advanceTimersByTime(500);
      expect(serverSocket().writableEnded).toBe(false);
      jest.advanceTimersByTime(1000);
      expect(serverSocket().writableEnded).toBe(true);
      await peer.untilClosed();
      expect(parseResponse(peer.received)?.status).toBe(408);
    });

    test('a head completed late with a body to come: 408 at the deadline counted from the connection', async () => {
      const { peer, serverSocket, bytes } = await open({
        onRequest(req, res) {
          req.resume();
          req.on('end', () => res.end('ok'));
        },
      });
      const first = 'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n';
      await peer.write(first);
      await until(() => bytes() >= first.length, 'the first bytes');
      jest.advanceTimersByTime(9000);
      // The head is whole (and not a WebSocket upgrade): Node's parser has it, and the body's start.
      await peer.write('\r\nab');
      await until(() => Object.prototype.hasOwnProperty.call(serverSocket(), 'parser'), 'the hand-over');
      jest.advanceTimersByTime(1500);
      expect(serverSocket().writableEnded).toBe(true);
      await peer.untilClosed();
      expect(parseResponse(peer.received)?.status).toBe(408);
    });

    test('a head the front still holds gets 408 once handshakeTimeout has passed since the connection, not a sweep later', async () => {
      const { peer, serverSocket, bytes } = await open({});
      await peer.write('GET / HTTP/1.1\r\nHost: x\r\n');
      await until(() => bytes() > 0, 'the first bytes');
      jest.advanceTimersByTime(9999);
      expect(serverSocket().writableEnded).toBe(false);
      jest.advanceTimersByTime(1);
      expect(serverSocket().writableEnded).toBe(true);
      await peer.untilClosed();
      expect(parseResponse(peer.received)?.status).toBe(408);
    });

    test('a connection silent for most of the deadline, then the start of a non-GET head: 408 at the deadline counted from the connection', async () => {
      const { peer, serverSocket, bytes } = await open({});
      await until(() => serverSocket() !== undefined, 'the connection');
      jest.advanceTimersByTime(9000);
      // Not a GET: handed to Node with its first packet (the front held none of it before).
      await peer.write('POST / HTTP/1.1\r\n');
      await until(() => bytes() > 0 && Object.prototype.hasOwnProperty.call(serverSocket(), 'parser'), 'the hand-over');
      jest.advanceTimersByTime(1500);
      expect(serverSocket().writableEnded).toBe(true);
      await peer.untilClosed();
      expect(parseResponse(peer.received)?.status).toBe(408);
    });

    test('a connection handed to Node whose head Node has read is left to Node: kept alive past the deadline', async () => {
      const { peer, serverSocket, bytes } = await open({});
      await peer.write('POST / HTTP/1.1\r\n');
      await until(() => bytes() > 0 && Object.prototype.hasOwnProperty.call(serverSocket(), 'parser'), 'the hand-over');
      jest.advanceTimersByTime(9000);
      await peer.write('Host: x\r\nContent-Length: 0\r\n\r\n');
      const [response] = await peer.responses(1);
      expect(response!.status).toBe(200);
      jest.advanceTimersByTime(1500);
      expect(serverSocket().writableEnded).toBe(false);
      await peer.write('GET /again HTTP/1.1\r\nHost: x\r\n\r\n');
      expect((await peer.responses(2))[1]!.status).toBe(200);
    });
  });

  test('a connection that sends nothing is closed at the handshake timeout', async () => {
    const { server } = await start({ handshakeTimeout: 300 });
    const peer = await Peer.open(server.port);
    await peer.untilClosed();
    expect(peer.closed).toBe(true);
  });

  test('TLS: a head that never completes is closed at the handshake timeout', async () => {
    const { server } = await start({ tls: TLS, handshakeTimeout: 300 });
    const peer = await Peer.open(server.port, true);
    await peer.write('GET / HTTP/1.1\r\n');
    await peer.untilClosed();
    expect(parseResponse(peer.received)?.status).toBe(408);
  });

  test('close() closes sockets whose head is still being read, and open WebSockets with 1001', async () => {
    const { server } = await start();
    const slow = await Peer.open(server.port);
    await slow.write('GET / HTTP/1.1\r\n');
    const conn = await connect(server.url);
    await server.close();
    await slow.untilClosed();
    expect(await conn.recv()).toBe(EOF);
    expect(conn.closeStatus).toBe(1001);
  });

  // A TCP connection still in its TLS handshake is in no list closeAllConnections() or the front
  // closes: close() waited for handshakeTimeout (here none: for good).
  test.each([
    ['TLS', false, ''],
    ['TLS, part of a ClientHello sent', false, '\x16\x03\x01'],
    ['TLS with http2', true, ''],
    ['TLS with http2, part of a ClientHello sent', true, '\x16\x03\x01'],
  ])('%s: close() closes a connection whose TLS handshake is not done', async (_name, http2, bytes) => {
    const { server } = await start({ tls: TLS, http2, handshakeTimeout: Infinity });
    const raw = await Peer.open(server.port);
    if (bytes) await raw.write(Buffer.from(bytes, 'latin1'));
    const secure = await Peer.open(server.port, true);
    await server.close();
    await raw.untilClosed();
    await secure.untilClosed();
    expect(raw.received.length).toBe(0);
  }, 5000);

  test('a head completed during shutdown gets 503', async () => {
    const { server } = await start({ closeTimeout: 2000 });
    const slow = await Peer.open(server.port);
    const request = upgradeRequest(server.port);
    await slow.write(request.slice(0, 20));
    // An open WebSocket that never answers the close frame keeps close() waiting.
    const ws = await Peer.open(server.port);
    await ws.write(upgradeRequest(server.port));
    await ws.responses(1);
    const closing = server.close();
    await ws.until(() => ws.received.includes(Buffer.from([0x88])), 'the close frame');
    await slow.write(request.slice(20));
    const [response] = await slow.responses(1);
    expect(response!.status).toBe(503);
    await closing;
  });
});
