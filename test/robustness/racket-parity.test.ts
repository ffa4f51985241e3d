/**
 * Parity with the Racket package this library ports (tonyg/racket-rfc6455, v2.1.0): one row per
 * item of its API inventory that has observable behaviour, checked against the analog that
 * docs/racket.md names for it. Where we deliberately differ (docs/racket.md says so, with the
 * reason), the row checks our documented behaviour and names Racket's. Peers are real: our client,
 * `ws`'s client, and raw TCP sockets for what no conforming peer sends.
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { acceptKey, connect, EOF, handleUpgrade, serve, serviceMapper, WebSocketConnection, type Message, type WebSocketServer } from 'rfc6455';
import { encodeFrame, FrameParser } from 'rfc6455/codec';
import { WebSocket as WsClient } from 'ws';
import { closeAll, exchange, hybi00Head, openRaw, selfSignedCert, startServer, type Recorder } from './helpers.js';

afterEach(closeAll);

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const wsHead = (path = '/', extra = ''): string =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;

/** A frame as a client sends it: masked (with a zero key, so the payload reads as is). */
const clientFrame = (b0: number, payload: Buffer | string = Buffer.alloc(0)): Buffer => {
  const data = Buffer.from(payload);
  return Buffer.concat([Buffer.from([b0, 0x80 | data.length, 0, 0, 0, 0]), data]);
};

interface Frame {
  fin: boolean;
  opcode: number;
  payload: Buffer;
}

/** The frames a server wrote after its 101 head (unmasked, as a server writes them). */
function framesOf(data: Buffer): Frame[] {
  let at = data.indexOf('\r\n\r\n') + 4;
  const frames: Frame[] = [];
  while (data.length - at >= 2) {
    const b0 = data[at]!;
    let length = data[at + 1]! & 0x7f;
    let header = 2;
    if (length === 126) [length, header] = [data.readUInt16BE(at + 2), 4];
    else if (length === 127) [length, header] = [Number(data.readBigUInt64BE(at + 2)), 10];
    if (data.length - at < header + length) break;
    frames.push({ fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, payload: data.subarray(at + header, at + header + length) });
    at += header + length;
  }
  return frames;
}

/** A raw client past the RFC 6455 handshake, and the server's connection for it. */
async function rawClient(options: Parameters<typeof startServer>[0] = {}): Promise<{ raw: Recorder; conn: WebSocketConnection; server: WebSocketServer }> {
  let resolveConn!: (conn: WebSocketConnection) => void;
  const accepted = new Promise<WebSocketConnection>((resolve) => (resolveConn = resolve));
  const server = await startServer({ perMessageDeflate: false, ...options }, (conn) => resolveConn(conn));
  const raw = await openRaw(server.port);
  raw.socket.write(wsHead());
  await raw.until((d) => d.includes('\r\n\r\n'));
  return { raw, conn: await accepted, server };
}

/** Waits until the server has closed the raw socket; returns the close frame's code and reason. */
async function closeFrameOf(raw: Recorder): Promise<{ code: number | undefined; reason: string; frames: Frame[] }> {
  await raw.closed;
  const frames = framesOf(raw.data());
  const close = frames.find((f) => f.opcode === 8);
  return { code: close && close.payload.length >= 2 ? close.payload.readUInt16BE(0) : undefined, reason: close ? close.payload.subarray(2).toString() : '', frames };
}

/** A server whose handler hands its connection out. */
async function serverWithConn(options: Parameters<typeof startServer>[0] = {}): Promise<{ server: WebSocketServer; next: () => Promise<WebSocketConnection> }> {
  const waiting: Array<(conn: WebSocketConnection) => void> = [];
  const ready: WebSocketConnection[] = [];
  const server = await startServer(options, (conn) => {
    const w = waiting.shift();
    if (w) w(conn);
    else ready.push(conn);
  });
  return { server, next: () => (ready.length > 0 ? Promise.resolve(ready.shift()!) : new Promise((resolve) => waiting.push(resolve))) };
}

type Row = [item: string, check: () => Promise<void>];

const server: Row[] = [
  ['ws-serve #:port: serve({ port }) listens there and calls the handler per connection', async () => {
    let calls = 0;
    const s = await startServer({}, async (conn) => {
      calls++;
      await conn.send('Hello world!');
    });
    const ws = new WsClient(s.url);
    const message = await new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))));
    ws.close();
    expect(message).toBe('Hello world!');
    expect(calls).toBe(1);
    expect(s.port).toBeGreaterThan(0);
  }],
  ['ws-serve #:listen-ip (Racket default: every interface): host, default 127.0.0.1', async () => {
    const s = await serve({ port: 0 }, () => undefined);
    try {
      expect(s.host).toBe('127.0.0.1');
      expect((s.httpServer.address() as AddressInfo).address).toBe('127.0.0.1');
    } finally {
      await s.close();
    }
  }],
  ['ws-serve #:confirmation-channel: await serve() resolves once listening, rejects if it cannot', async () => {
    const s = await startServer({}, () => undefined);
    await expect(serve({ port: s.port }, () => undefined)).rejects.toMatchObject({ code: 'EADDRINUSE' });
  }],
  ['ws-serve #:initial-connection-timeout: handshakeTimeout cuts a request head that never ends', async () => {
    let calls = 0;
    const s = await startServer({ handshakeTimeout: 200 }, () => void calls++);
    const raw = await openRaw(s.port);
    raw.socket.write('GET / HTTP/1.1\r\nHost: x\r\n');
    await raw.closed;
    expect(raw.response()?.status ?? 408).toBe(408);
    expect(calls).toBe(0);
  }],
  ['ws-serve #:conn-headers: beforeAccept adds reply headers and hands its state to the handler', async () => {
    const states: unknown[] = [];
    const s = await startServer({ beforeAccept: () => ({ headers: { 'X-Extra': 'yes' }, state: { user: 'tony' } }) }, (_conn, _req, { state }) => void states.push(state));
    const c = await connect(s.url);
    expect(c.headers['x-extra']).toBe('yes');
    await c.close();
    expect(states).toEqual([{ user: 'tony' }]);
  }],
  ['ws-serve handler state without a hook ((void) in Racket): undefined', async () => {
    const states: unknown[] = ['unset'];
    const s = await startServer({}, (_conn, _req, { state }) => void (states[0] = state));
    const c = await connect(s.url);
    await c.close();
    expect(states).toEqual([undefined]);
  }],
  ['#:conn-headers rejecting ((next-dispatcher): 400): beforeAccept reject with any status', async () => {
    const s = await startServer({ beforeAccept: () => ({ reject: { status: 403 } }) }, () => undefined);
    await expect(connect(s.url)).rejects.toThrow(/403/);
  }],
  ['stop thunk of ws-serve: server.close() closes each connection with 1001', async () => {
    const s = await serve({ port: 0 }, () => undefined);
    const c = await connect(s.url);
    await s.close();
    await c.whenClosed;
    expect(c.closeStatus).toBe(1001);
  }],
  ['#:tcp@ / SSL listener: the tls option serves wss:', async () => {
    const tls = selfSignedCert();
    const secure: boolean[] = [];
    const s = await startServer({ tls }, async (conn) => {
      secure.push(conn.transport.secure);
      await conn.send('over tls');
    });
    expect(s.url.startsWith('wss://')).toBe(true);
    const c = await connect(s.url, { tls: { ca: tls.cert } });
    expect(await c.recv()).toBe('over tls');
    await c.close();
    expect(secure).toEqual([true]);
  }],
  ['make-general-websockets-dispatcher: handleUpgrade serves RFC 6455 and hybi-00 on a plain http server', async () => {
    const http: HttpServer = createHttpServer();
    http.on('upgrade', (req, socket, head) => handleUpgrade(req, socket, head, async (conn) => conn.send(`hello ${conn.variant}`)));
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    try {
      const url = `ws://127.0.0.1:${(http.address() as AddressInfo).port}/`;
      for (const variant of ['rfc6455', 'hybi00'] as const) {
        const c = await connect(url, { variant });
        expect(await c.recv()).toBe(`hello ${variant}`);
        await c.close();
      }
    } finally {
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    }
  }],
  ['version selection: a non-WebSocket GET gets 426 with Sec-WebSocket-Version: 13 (Racket: 400)', async () => {
    const s = await startServer({}, () => undefined);
    const { response } = await exchange(s.port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(response?.status).toBe(426);
    expect(response?.headers['sec-websocket-version']).toBe('13');
  }],
  ['version selection: Sec-WebSocket-Version 8 gets 426 naming 13 (Racket: 400)', async () => {
    const s = await startServer({}, () => undefined);
    const { response } = await exchange(s.port, wsHead().replace('Version: 13', 'Version: 8'));
    expect(response?.status).toBe(426);
    expect(response?.headers['sec-websocket-version']).toBe('13');
  }],
  ['version selection: Upgrade and Connection are token lists, case-insensitive, as in Racket', async () => {
    const s = await startServer({}, () => undefined);
    for (const [upgrade, connection] of [['foo, WebSocket', 'keep-alive, Upgrade'], ['WEBSOCKET', 'UPGRADE']]) {
      const raw = await openRaw(s.port);
      raw.socket.write(wsHead().replace('Upgrade: websocket', `Upgrade: ${upgrade}`).replace('Connection: Upgrade', `Connection: ${connection}`));
      await raw.until((d) => d.includes('\r\n\r\n'));
      expect(raw.response()?.status).toBe(101);
      expect(raw.response()?.headers['sec-websocket-accept']).toBe('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
      raw.socket.destroy();
    }
  }],
  ['hybi-00 server handshake: 101 WebSocket Protocol Handshake, Location with the query and no default port, Origin echoed', async () => {
    const s = await startServer({}, () => undefined);
    const raw = await openRaw(s.port);
    raw.socket.write(hybi00Head(s.port, '/test?foo=bar').replace(/Host: .*\r\n/, 'Host: example.com:80\r\n'));
    raw.socket.write('^n:ds[4U');
    await raw.until((d) => d.includes('\r\n\r\n') && d.length >= d.indexOf('\r\n\r\n') + 4 + 16);
    const head = raw.data().toString('latin1');
    expect(head.startsWith('HTTP/1.1 101 WebSocket Protocol Handshake\r\n')).toBe(true);
    expect(raw.response()?.headers['sec-websocket-location']).toBe('ws://example.com/test?foo=bar');
    expect(raw.response()?.headers['sec-websocket-origin']).toBe('http://example.com');
    expect(raw.data().subarray(head.indexOf('\r\n\r\n') + 4).toString('latin1')).toBe('8jKS\'y:G*Co,Wxa-');
  }],
];

const mapper: Row[] = [
  ['ws-service-mapper: whole-path regexps, query ignored, first matching clause wins, #f clause is handler', async () => {
    const h = (name: string) => async (conn: WebSocketConnection) => conn.send(`${name}:${conn.protocol}`);
    const s = await startServer({}, serviceMapper([
      { path: '/test', protocols: { subprotocol: h('sub'), other: h('other') }, handler: h('none') },
      { path: '/test', handler: h('second clause') },
      { path: /^\/rooms\/(?<room>[a-z]+)$/, handler: async (conn, _req, { params }) => conn.send(`room:${params.room}`) },
    ]));
    const base = s.url.slice(0, -1);
    const got = async (path: string, protocols?: string[]): Promise<Message | EOF> => {
      const c = await connect(base + path, { protocols });
      const m = await c.recv();
      await c.close();
      return m;
    };
    expect(await got('/test?foo=bar')).toBe('none:');
    expect(await got('/test', ['subprotocol'])).toBe('sub:subprotocol');
    // The client's order decides, as in Racket.
    expect(await got('/test', ['x', 'other', 'subprotocol'])).toBe('other:other');
    expect(await got('/rooms/abc')).toBe('room:abc');
  }],
  ['ws-service-mapper refusals: unmatched subprotocol 400 (no fallback to #f), unmatched path 404 (Racket: 400), names case-sensitive (Racket lower-cases)', async () => {
    const s = await startServer({}, serviceMapper([{ path: '/test', protocols: { subprotocol: () => undefined }, handler: () => undefined }, { path: '/only', handler: () => undefined }]));
    const base = s.url.slice(0, -1);
    await expect(connect(`${base}/test`, { protocols: 'x' })).rejects.toThrow(/400/);
    await expect(connect(`${base}/only`, { protocols: 'x' })).rejects.toThrow(/400/);
    await expect(connect(`${base}/test`, { protocols: 'SUBPROTOCOL' })).rejects.toThrow(/400/);
    await expect(connect(`${base}/testing`)).rejects.toThrow(/404/);
  }],
];

const client: Row[] = [
  ['ws-connect #:headers: headers reach the server; no Origin unless asked (as in Racket)', async () => {
    const seen: Array<[string | undefined, string | undefined]> = [];
    const s = await startServer({}, (conn) => void seen.push([conn.headers['x-token'] as string | undefined, conn.headers.origin]));
    const c = await connect(s.url, { headers: { 'X-Token': 'abc' } });
    await c.close();
    expect(seen).toEqual([['abc', undefined]]);
  }],
  ['ws-connect #:headers with Sec-WebSocket-Protocol (Racket\'s only way to ask for one): the protocols option; the header is a TypeError', async () => {
    const s = await startServer({ protocols: ['chat'] }, () => undefined);
    await expect(connect(s.url, { headers: { 'Sec-WebSocket-Protocol': 'chat' } })).rejects.toThrow(/protocols option/);
    const c = await connect(s.url, { protocols: 'chat' });
    expect(c.protocol).toBe('chat');
    await c.close();
  }],
  ['ws-connect #:protocol: variant \'hybi00\'; any other value is refused', async () => {
    const s = await startServer({}, () => undefined);
    const c = await connect(s.url, { variant: 'hybi00' });
    expect(c.variant).toBe('hybi00');
    await c.close();
    await expect(connect(s.url, { variant: 'hixie75' as 'hybi00' })).rejects.toThrow(TypeError);
  }],
  ['ws-connect URL: ws: and wss: (http: and https: too, as WHATWG); other schemes refused (Racket: plain TCP)', async () => {
    const s = await startServer({}, () => undefined);
    const c = await connect(s.url.replace('ws:', 'http:'));
    await c.close();
    await expect(connect(s.url.replace('ws:', 'ftp:'))).rejects.toThrow(TypeError);
  }],
];

const connection: Row[] = [
  ['ws-conn-supports-fragmentation? / -payload-type? / -signals-status-on-close?: true for RFC 6455, false (text only) for hybi-00', async () => {
    const s = await startServer({}, () => undefined);
    for (const [variant, yes] of [['rfc6455', true], ['hybi00', false]] as const) {
      const c = await connect(s.url, { variant });
      expect([c.supportsFragmentation, c.supportsPayloadType('text'), c.supportsPayloadType('binary'), c.signalsStatusOnClose]).toEqual([yes, true, yes, yes]);
      await c.close();
    }
  }],
  ['ws-conn?: instanceof WebSocketConnection', async () => {
    const s = await startServer({}, () => undefined);
    const c = await connect(s.url);
    expect(c).toBeInstanceOf(WebSocketConnection);
    await c.close();
  }],
  ['open-ws-conn? and ws-conn-closed? after ws-close!: readyState leaves open at the call; closed once the transport is gone', async () => {
    const s = await startServer({}, () => undefined);
    const c = await connect(s.url);
    expect(c.readyState).toBe('open');
    const closing = c.close();
    // Racket sets its closed flag as ws-close! starts: readyState !== 'open' is that flag.
    expect(c.readyState).not.toBe('open');
    expect(c.closed).toBe(false);
    await closing;
    expect(c.closed).toBe(true);
  }],
  ['ws-conn-closed? after the peer closed: once recv() gives EOF, readyState is no longer open', async () => {
    const { server: s, next } = await serverWithConn();
    const c = await connect(s.url);
    const sc = await next();
    void sc.close(4000, 'bye');
    expect(await c.recv()).toBe(EOF);
    expect(c.readyState).not.toBe('open');
    await c.whenClosed;
    expect(c.closed).toBe(true);
  }],
  ['ws-conn-close-status / -reason: both sides record the code and reason (Racket: only the side the close came to)', async () => {
    const { server: s, next } = await serverWithConn();
    const c = await connect(s.url);
    const sc = await next();
    await c.close(4000, 'bye');
    await sc.whenClosed;
    expect([c.closeStatus, c.closeReason, sc.closeStatus, sc.closeReason]).toEqual([4000, 'bye', 4000, 'bye']);
  }],
  ['ws-conn-close-status of a close frame without a code: 1005 and \'\' (Racket: #f and #f); undefined while open', async () => {
    const { raw, conn } = await rawClient();
    expect([conn.closeStatus, conn.closeReason]).toEqual([undefined, undefined]);
    raw.socket.write(clientFrame(0x88));
    await conn.whenClosed;
    expect([conn.closeStatus, conn.closeReason]).toEqual([1005, '']);
  }],
  ['ws-conn-line: server, the request line; client, the status line', async () => {
    const { server: s, next } = await serverWithConn();
    const c = await connect(`${s.url}x?y=1`);
    const sc = await next();
    expect(sc.requestLine).toBe('GET /x?y=1 HTTP/1.1');
    expect(c.requestLine).toBe('HTTP/1.1 101 Switching Protocols');
    await c.close();
  }],
  ['ws-conn-headers: server, the request headers; client, the response headers', async () => {
    const { server: s, next } = await serverWithConn();
    const c = await connect(s.url, { headers: { 'X-Mine': '1' } });
    const sc = await next();
    expect(sc.headers['x-mine']).toBe('1');
    expect(sc.headers['sec-websocket-key']).toEqual(expect.any(String));
    expect(c.headers['sec-websocket-accept']).toEqual(expect.any(String));
    expect(c.headers['sec-websocket-key']).toBeUndefined();
    await c.close();
  }],
  ['ws-conn-path: conn.url with the query, conn.path without; ws-conn-host+port: conn.headers.host', async () => {
    const { server: s, next } = await serverWithConn();
    const c = await connect(`${s.url}x?y=1`);
    const sc = await next();
    expect([sc.url, sc.path, sc.headers.host]).toEqual(['/x?y=1', '/x', `127.0.0.1:${s.port}`]);
    await c.close();
  }],
  ['ws-conn-peer-addresses: localAddress/localPort/remoteAddress/remotePort, mirrored on both sides, over TLS too', async () => {
    const tls = selfSignedCert();
    for (const options of [{}, { tls }]) {
      const { server: s, next } = await serverWithConn(options);
      const c = await connect(s.url, { tls: { ca: tls.cert } });
      const sc = await next();
      expect([sc.localAddress, sc.localPort, sc.remoteAddress, sc.remotePort]).toEqual([c.remoteAddress, c.remotePort, c.localAddress, c.localPort]);
      expect(sc.localPort).toBe(s.port);
      expect(typeof c.localPort).toBe('number');
      await c.close();
    }
  }],
];

const sending: Row[] = [
  ['ws-send! string (\'text) and bytes (#:payload-type \'binary): send(string) is text, send(Buffer) binary', async () => {
    const { raw, conn } = await rawClient();
    await conn.send('text');
    await conn.send(Buffer.from([1, 2]));
    const frames = framesOf(await raw.until((d) => framesOf(d).length >= 2));
    expect(frames.map((f) => [f.fin, f.opcode, f.payload.toString('hex')])).toEqual([[true, 1, '74657874'], [true, 2, '0102']]);
  }],
  ['ws-send! string as \'binary (UTF-8 encoded) and bytes as \'text: binary: true / false; bytes that are not UTF-8 rejected (Racket: sent)', async () => {
    const { raw, conn } = await rawClient();
    await conn.send('é', { binary: true });
    await conn.send(Buffer.from('é'), { binary: false });
    await expect(conn.send(Buffer.from([0xff]), { binary: false })).rejects.toThrow(TypeError);
    const frames = framesOf(await raw.until((d) => framesOf(d).length >= 2));
    expect(frames.map((f) => [f.opcode, f.payload.toString('hex')])).toEqual([[2, 'c3a9'], [1, 'c3a9']]);
  }],
  ['ws-send! input-port: sendStream, fragments of rfc6455-stream-buffer-size (65536), binary unless binary: false (Racket: \'text)', async () => {
    const { raw, conn } = await rawClient();
    await conn.sendStream(Readable.from([Buffer.alloc(100_000, 7)]));
    await conn.sendStream(Readable.from([Buffer.from('ab')]), { binary: false });
    const frames = framesOf(await raw.until((d) => framesOf(d).filter((f) => f.fin).length >= 2));
    const shape = frames.map((f) => [f.fin, f.opcode, f.payload.length]);
    // An async source ends its message with an empty final fragment once it ends, as Racket's
    // input-port streaming does.
    expect(shape).toEqual([[false, 2, 65536], [false, 0, 34464], [true, 0, 0], [false, 1, 2], [true, 0, 0]]);
  }],
  ['ws-send! fragmentSize: the option stands for the rfc6455-stream-buffer-size parameter', async () => {
    const { raw, conn } = await rawClient();
    await conn.sendStream([Buffer.alloc(10, 1)], { fragmentSize: 4 });
    const frames = framesOf(await raw.until((d) => framesOf(d).some((f) => f.fin)));
    expect(frames.map((f) => [f.fin, f.opcode, f.payload.length])).toEqual([[false, 2, 4], [false, 0, 4], [true, 0, 2]]);
  }],
  ['ws-send! input-port already at EOF: one empty message (Racket: a lone FIN continuation, a bug)', async () => {
    const { raw, conn } = await rawClient();
    await conn.sendStream(Readable.from([]), { binary: false });
    const frames = framesOf(await raw.until((d) => framesOf(d).length >= 1));
    expect(frames.map((f) => [f.fin, f.opcode, f.payload.length])).toEqual([[true, 1, 0]]);
  }],
  ['ws-send! #:final-fragment? #f then \'continuation: sendStream of an async generator; the peer reassembles', async () => {
    const { server: s, next } = await serverWithConn();
    const c = await connect(s.url);
    const sc = await next();
    await sc.sendStream((async function* () {
      yield 'a';
      yield 'b';
    })(), { binary: false });
    expect(await c.recv()).toBe('ab');
    await c.close();
  }],
  ['ws-send! after the close (Racket: silently nothing): rejects with ConnectionClosedError', async () => {
    const s = await startServer({}, () => undefined);
    const c = await connect(s.url);
    await c.close();
    await expect(c.send('late')).rejects.toMatchObject({ name: 'ConnectionClosedError' });
  }],
  ['hybi-00 ws-send!: binary and fragments refused, as in Racket', async () => {
    const s = await startServer({}, () => undefined);
    const c = await connect(s.url, { variant: 'hybi00' });
    await expect(c.send(Buffer.from('x'))).rejects.toMatchObject({ code: 'WS_HYBI00_TEXT_ONLY' });
    await expect(c.sendStream(['a', 'b'], { binary: false })).rejects.toMatchObject({ code: 'WS_HYBI00_NO_FRAGMENTS' });
    await c.close();
  }],
  ['hybi00-framing-mode \'old: 00 <utf-8> FF on the wire', async () => {
    const s = await startServer({}, (conn) => conn.send('é'));
    const raw = await openRaw(s.port);
    raw.socket.write(hybi00Head(s.port));
    raw.socket.write('^n:ds[4U');
    const data = await raw.until((d) => d.includes(Buffer.from([0xff])) && d.indexOf('\r\n\r\n') > 0 && d.length >= d.indexOf('\r\n\r\n') + 4 + 16 + 4);
    expect(data.subarray(data.indexOf('\r\n\r\n') + 4 + 16).toString('hex')).toBe('00c3a9ff');
  }],
];

const receiving: Row[] = [
  ['ws-recv \'auto: text gives a string, binary a Buffer; EOF after the close, every time', async () => {
    const s = await startServer({}, async (conn) => {
      await conn.send('t');
      await conn.send(Buffer.from([9]));
      await conn.close();
    });
    const c = await connect(s.url);
    expect(await c.recv()).toBe('t');
    expect(await c.recv()).toEqual(Buffer.from([9]));
    expect(await c.recv()).toBe(EOF);
    expect(await c.recv()).toBe(EOF);
  }],
  ['ws-recv #:payload-type \'binary: textMessages: \'buffer\' hands text over as its bytes', async () => {
    const s = await startServer({}, (conn) => conn.send('é'));
    const c = await connect(s.url, { textMessages: 'buffer' });
    expect(await c.recv()).toEqual(Buffer.from('é'));
    await c.close();
  }],
  ['ws-recv-evt: several pending receives served in order (FIFO)', async () => {
    const s = await startServer({}, async (conn) => {
      await conn.send('a');
      await conn.send('b');
      await conn.close();
    });
    const c = await connect(s.url);
    expect(await Promise.all([c.recv(), c.recv(), c.recv()])).toEqual(['a', 'b', EOF]);
  }],
  ['(sync/timeout t (ws-recv-evt c)): recv({ signal }) gives up with TimeoutError and takes no message', async () => {
    const { server: s, next } = await serverWithConn();
    const c = await connect(s.url);
    const sc = await next();
    await expect(c.recv({ signal: AbortSignal.timeout(20) })).rejects.toMatchObject({ name: 'TimeoutError' });
    await sc.send('kept');
    expect(await c.recv()).toBe('kept');
    await c.close();
  }],
  ['sync on the conn (prop:evt): for await and message events', async () => {
    const s = await startServer({}, async (conn) => {
      await conn.send('1');
      await conn.send('2');
      await conn.close();
    });
    const c = await connect(s.url);
    const got: Message[] = [];
    for await (const m of c) got.push(m);
    expect(got).toEqual(['1', '2']);
  }],
  ['ws-recv-stream: recvStream() is a Readable of the next message, EOF at the end of the connection; hybi-00 refuses it (as in Racket)', async () => {
    const s = await startServer({}, async (conn) => {
      if (conn.variant === 'hybi00') return;
      await conn.sendStream(['ab', 'cd'], { binary: false });
      await conn.close();
    });
    const c = await connect(s.url);
    const stream = await c.recvStream();
    if (stream === EOF) throw new Error('EOF');
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('abcd');
    expect(await c.recvStream()).toBe(EOF);
    const h = await connect(s.url, { variant: 'hybi00' });
    await expect(h.recvStream()).rejects.toMatchObject({ name: 'UnsupportedError' });
    await h.close();
  }],
];

const closing: Row[] = [
  ['ws-close! defaults (#:status 1000 #:reason ""): close() sends 1000 and \'\'', async () => {
    const { raw, conn } = await rawClient();
    const closed = conn.close();
    await raw.until((d) => framesOf(d).some((f) => f.opcode === 8));
    raw.socket.write(clientFrame(0x88, Buffer.from([3, 232])));
    await closed;
    const { code, reason } = await closeFrameOf(raw);
    expect([code, reason]).toEqual([1000, '']);
  }],
  ['ping during the ws-close! wait: answered, as in Racket (RFC 6455 §5.5.2), then the close completes', async () => {
    const { raw, conn } = await rawClient();
    const closed = conn.close(1000, 'bye');
    await raw.until((d) => framesOf(d).some((f) => f.opcode === 8));
    raw.socket.write(clientFrame(0x89, 'pp'));
    raw.socket.write(clientFrame(0x88, Buffer.from([3, 232])));
    await closed;
    const { frames } = await closeFrameOf(raw);
    expect(frames.map((f) => f.opcode)).toEqual([8, 10]);
    expect(frames[1]!.payload.toString()).toBe('pp');
  }],
  ['ws-close! when already closed does nothing: close() again resolves', async () => {
    const s = await startServer({}, () => undefined);
    const c = await connect(s.url);
    await c.close();
    await expect(c.close()).resolves.toBeUndefined();
    expect(c.closeStatus).toBe(1000);
  }],
  ['ws-close! blocks until the peer\'s close: close() resolves with the transport closed', async () => {
    const s = await startServer({}, () => undefined);
    const c = await connect(s.url);
    await c.close(4001, 'done');
    expect(c.closed).toBe(true);
  }],
  ['hybi-00 ws-close! ignores status and reason: close(4000, \'x\') resolves, 1005 on both sides', async () => {
    const { server: s, next } = await serverWithConn();
    const c = await connect(s.url, { variant: 'hybi00' });
    const sc = await next();
    await c.close(4000, 'x');
    await sc.whenClosed;
    expect([c.closeStatus, sc.closeStatus]).toEqual([1005, 1005]);
  }],
  ['peer close: answered at once echoing code and reason (Racket: an empty close frame), then EOF', async () => {
    const { raw, conn } = await rawClient();
    const received = conn.recv();
    raw.socket.write(clientFrame(0x88, Buffer.concat([Buffer.from([0x0f, 0xa0]), Buffer.from('bye')])));
    expect(await received).toBe(EOF);
    expect(await closeFrameOf(raw)).toMatchObject({ code: 4000, reason: 'bye' });
  }],
  ['ws-idle-timeout: idleTimeout counts received frames only (sending does not reset it); closes with 1001', async () => {
    const { server: s, next } = await serverWithConn({ idleTimeout: 300 });
    const c = await connect(s.url);
    const sc = await next();
    let sent = 0;
    while (sc.readyState === 'open') {
      await sc.send('tick').catch(() => undefined);
      sent++;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    await c.whenClosed;
    expect(sent).toBeGreaterThan(1);
    expect([c.closeStatus, c.closeReason]).toEqual([1001, 'idle timeout']);
  }],
  ['ws-idle-timeout on a client connection: connect({ idleTimeout })', async () => {
    const s = await startServer({}, () => undefined);
    const c = await connect(s.url, { idleTimeout: 150 });
    await c.whenClosed;
    expect([c.closeStatus, c.closeReason]).toEqual([1001, 'idle timeout']);
  }],
  ['handler returning without ws-close! (Racket: open but dead): the connection stays open and answers', async () => {
    const s = await startServer({}, () => undefined);
    const c = await connect(s.url);
    await expect(c.ping()).resolves.toEqual(expect.any(Number));
    expect(c.readyState).toBe('open');
    await c.close();
  }],
];

const framing: Row[] = [
  ['ping: answered with a pong of the same payload, also inside a fragmented message (as in Racket)', async () => {
    const { raw, conn } = await rawClient();
    const message = conn.recv();
    raw.socket.write(Buffer.concat([clientFrame(0x01, 'a'), clientFrame(0x89, 'pp'), clientFrame(0x80, 'b')]));
    expect(await message).toBe('ab');
    const frames = framesOf(await raw.until((d) => framesOf(d).length >= 1));
    expect(frames.map((f) => [f.opcode, f.payload.toString()])).toEqual([[10, 'pp']]);
  }],
  ['unknown opcode: closed with 1002, recv() gives EOF (as in Racket)', async () => {
    const { raw, conn } = await rawClient();
    const received = conn.recv();
    raw.socket.write(clientFrame(0x83, 'a'));
    expect(await received).toBe(EOF);
    expect((await closeFrameOf(raw)).code).toBe(1002);
  }],
  ['unmasked client frame: 1002 (Racket accepts it)', async () => {
    const { raw } = await rawClient();
    raw.socket.write(Buffer.from([0x81, 0x01, 0x61]));
    expect((await closeFrameOf(raw)).code).toBe(1002);
  }],
  ['invalid UTF-8 text: 1007 and EOF (Racket: ws-recv raises, the connection stays open)', async () => {
    const { raw, conn } = await rawClient();
    const received = conn.recv();
    raw.socket.write(clientFrame(0x81, Buffer.from([0xff])));
    expect(await received).toBe(EOF);
    expect((await closeFrameOf(raw)).code).toBe(1007);
  }],
  ['a continuation with no message, a new message inside a fragmented one: 1002 (Racket: raises, appends)', async () => {
    for (const bytes of [clientFrame(0x80, 'a'), Buffer.concat([clientFrame(0x01, 'a'), clientFrame(0x81, 'b')])]) {
      const { raw } = await rawClient();
      raw.socket.write(bytes);
      expect((await closeFrameOf(raw)).code).toBe(1002);
    }
  }],
  ['key-digest: acceptKey (RFC 6455 §1.3)', async () => {
    expect(acceptKey(KEY)).toBe('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  }],
  ['write-frame / read-frame: encodeFrame and FrameParser (RFC 6455 §5.7)', async () => {
    const wire = Buffer.concat(encodeFrame(1, Buffer.from('Hello'), { mask: true, maskKey: Buffer.from([0x37, 0xfa, 0x21, 0x3d]) }));
    expect(wire.toString('hex')).toBe('818537fa213d7f9f4d5158');
    const got: Array<[number, string]> = [];
    const parser = new FrameParser({ side: 'server' }, {
      onData: (opcode, _c, payload) => void got.push([opcode, payload.toString()]),
      onControl: () => undefined,
      onError: (error) => {
        throw error;
      },
    });
    parser.push(wire);
    expect(got).toEqual([[1, 'Hello']]);
    expect(Buffer.concat(encodeFrame(1, Buffer.from('Hello'))).toString('hex')).toBe('810548656c6c6f');
  }],
];

describe('Racket rfc6455 parity', () => {
  describe('server (ws-serve, ws-serve*, dispatchers)', () => test.each(server)('%s', async (_item, check) => check()));
  describe('service mapper (ws-service-mapper)', () => test.each(mapper)('%s', async (_item, check) => check()));
  describe('client (ws-connect)', () => test.each(client)('%s', async (_item, check) => check()));
  describe('connection accessors', () => test.each(connection)('%s', async (_item, check) => check()));
  describe('sending (ws-send!)', () => test.each(sending)('%s', async (_item, check) => check()));
  describe('receiving (ws-recv, ws-recv-evt, ws-recv-stream)', () => test.each(receiving)('%s', async (_item, check) => check()));
  describe('closing (ws-close!, idle timeout)', () => test.each(closing)('%s', async (_item, check) => check()));
  describe('framing and the codec', () => test.each(framing)('%s', async (_item, check) => check()));
});
