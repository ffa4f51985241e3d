/**
 * The requirements of RFC 8441 (WebSockets over HTTP/2), and the RFC 9113 rules it leans on, for
 * our server (attachHttp2 on Node's h2c server, both styles) and our client (connect() with
 * `http2: true` and with a caller's session), checked frame by frame against a hand-written HTTP/2
 * peer (./raw-h2.ts) or Node's own http2 client.
 *
 * Requirements, by section:
 * - RFC 8441 §3: SETTINGS_ENABLE_CONNECT_PROTOCOL's value MUST be 0 or 1; a client MAY use extended
 *   CONNECT upon receipt of 1 (so not before); a sender MUST NOT send 0 after 1. A server
 *   advertises it only where it takes the CONNECTs (docs/http2.md).
 * - RFC 8441 §4: with `:protocol`, `:scheme` and `:path` MUST be included; the server MUST NOT
 *   tunnel to the `:authority` host. (A request without them is reset by nghttp2: hostile.test.ts.)
 * - RFC 8441 §5: `:protocol` MUST be `websocket`; the scheme MUST be `https` for wss and `http` for
 *   ws; Connection and Upgrade MUST NOT be sent; no Sec-WebSocket-Key/Accept processing;
 *   Sec-WebSocket-Version etc. as in RFC 6455; orderly closure is END_STREAM, an abort is
 *   RST_STREAM(CANCEL). docs/http2.md: a CONNECT without `:protocol websocket` is refused 405.
 * - RFC 9113 §8.5: a CONNECT's stream carries DATA only once connected.
 * - RFC 9113 §8.1: a server that has sent its END_STREAM MAY send RST_STREAM(NO_ERROR) to ask the
 *   client to stop sending without error: ours does once the close frames are exchanged, unless
 *   the client has ended its side, so a client that never ends it (Firefox) is not waited for.
 *
 * Checked elsewhere: refusals and their statuses (hostile.test.ts, refusal-status.test.ts), a
 * peer that stops reading (maxBufferedAmount, hostile.test.ts), resets mid-message
 * (hostile.test.ts, reset-behind.test.ts), the setting on a caller's session before its SETTINGS
 * came (parity.test.ts).
 */
import { createServer as h2Server, connect as h2connect, type Http2Server, type ServerHttp2Stream } from 'node:http2';
import { createServer as netServer, type Server } from 'node:net';
import { attachHttp2, connect, type WebSocketConnection } from 'rfc6455';
import { clientFrame, closeSession, exchange } from './helpers.js';
import { data, ErrorCode, errorCodeOf, Flag, frame, FrameType, headers, isStatus200, RawPeer, Setting, settings, settingsOf, type Frame } from './raw-h2.js';
import { until } from '../../packages/rfc6455/test/helpers/wait.js';

const CONNECT: Array<[string, string]> = [
  [':method', 'CONNECT'],
  [':protocol', 'websocket'],
  [':scheme', 'http'],
  [':path', '/chat'],
  [':authority', 'localhost'],
  ['sec-websocket-version', '13'],
];
/** A close frame with code 1000, as a server sends it (unmasked). */
const SERVER_CLOSE = Buffer.from([0x88, 2, 3, 232]);

const isSettings = (f: Frame): boolean => f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) === 0;
const isReset = (f: Frame): boolean => f.type === FrameType.RST_STREAM;
const endsStream = (f: Frame): boolean => (f.type === FrameType.DATA || f.type === FrameType.HEADERS) && (f.flags & Flag.END_STREAM) !== 0;

async function listen<T extends Http2Server | Server>(server: T): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
}

describe('server: attachHttp2 on a cleartext HTTP/2 server', () => {
  let server: Http2Server;
  let port: number;
  const conns: WebSocketConnection[] = [];
  const peers: RawPeer[] = [];

  beforeEach(async () => {
    conns.length = 0;
    server = h2Server();
    // A 'stream'-style handler as docs/http2.md writes it: CONNECT streams are left to the attachment.
    server.on('stream', (stream: ServerHttp2Stream, h) => {
      if (h[':method'] === 'CONNECT') return;
      stream.respond({ ':status': 200 });
      stream.end('page');
    });
    port = await listen(server);
  });

  afterEach(async () => {
    for (const peer of peers.splice(0)) peer.destroy();
    for (const conn of conns) conn.terminate();
    await new Promise((resolve) => server.close(resolve));
  });

  function attach(closeTimeout = 2000): ReturnType<typeof attachHttp2> {
    return attachHttp2(
      server,
      (conn) => {
        conn.on('error', () => undefined);
        conns.push(conn);
      },
      { perMessageDeflate: false, closeTimeout },
    );
  }

  async function peer(): Promise<RawPeer> {
    const p = await RawPeer.client(port);
    peers.push(p);
    return p;
  }

  /** Opens a WebSocket on stream 1 of `p` (its CONNECT answered 200); resolves with the server's connection. */
  async function opened(p: RawPeer): Promise<WebSocketConnection> {
    p.send(headers(1, CONNECT));
    expect(isStatus200(await p.next((f) => f.stream === 1 && f.type === FrameType.HEADERS))).toBe(true);
    await until(() => conns.length === 1, 'the connection');
    return conns[0]!;
  }

  /** Waits for the RST_STREAM on stream 1; with the DATA payload and the END_STREAM flags sent on it before. */
  async function untilReset(p: RawPeer): Promise<{ reset: Frame; payload: Buffer; ends: number }> {
    const reset = await p.next((f) => f.stream === 1 && isReset(f), 'RST_STREAM');
    const before = p.on(1).slice(0, p.on(1).indexOf(reset));
    const payload = Buffer.concat(before.filter((f) => f.type === FrameType.DATA).map((f) => f.payload));
    return { reset, payload, ends: before.filter(endsStream).length };
  }

  test('§3: the setting is 1 where CONNECTs are taken, absent where not, and never turned to 0 on a session that saw 1', async () => {
    const bare = await peer();
    expect(settingsOf(await bare.next(isSettings)).has(Setting.ENABLE_CONNECT_PROTOCOL)).toBe(false);

    const attachment = attach();
    const p = await peer();
    expect(settingsOf(await p.next(isSettings)).get(Setting.ENABLE_CONNECT_PROTOCOL)).toBe(1);
    attachment.detach();
    // The session that saw 1 keeps it (a PING round trip shows nothing else came before it).
    p.send(Buffer.from([0, 0, 8, FrameType.PING, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]));
    await p.next((f) => f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0, 'the PING ACK');
    expect(p.frames.filter(isSettings)).toHaveLength(1);
    // New sessions are not told 1 any more.
    const after = await peer();
    expect(settingsOf(await after.next(isSettings)).get(Setting.ENABLE_CONNECT_PROTOCOL) ?? 0).toBe(0);
  });

  test("docs/http2.md: a CONNECT without :protocol websocket is refused 405 on a 'stream'-style server (it was never answered)", async () => {
    attach();
    const session = h2connect(`http://127.0.0.1:${port}`);
    session.on('error', () => undefined);
    try {
      const other = await exchange(session, { ':method': 'CONNECT', ':protocol': 'foo', ':scheme': 'http', ':path': '/chat', ':authority': 'localhost' });
      expect(other.status).toBe(405);
      const plain = await exchange(session, { ':method': 'CONNECT', ':authority': 'example.com:443' });
      expect(plain.status).toBe(405);
      // RFC 8441 §4: no tunnel to the :authority, and no connection either.
      expect(conns).toHaveLength(0);
      // The WebSockets still work on that server.
      const conn = await connect(`ws://127.0.0.1:${port}/chat`, { http2: session, perMessageDeflate: false });
      await conn.close();
    } finally {
      await closeSession(session);
    }
  }, 5000);

  test('RFC 9110 §9.3.6 / RFC 9113 §8.1.1: a CONNECT with a Content-Length is refused 400, not accepted into a tunnel nghttp2 resets at its first frame', async () => {
    attach();
    const session = h2connect(`http://127.0.0.1:${port}`);
    session.on('error', () => undefined);
    try {
      for (const length of ['5', '0']) {
        const out = await exchange(session, { ':method': 'CONNECT', ':protocol': 'websocket', ':scheme': 'http', ':path': '/chat', ':authority': 'localhost', 'sec-websocket-version': '13', 'content-length': length });
        expect([length, out.status, String(out.body)]).toEqual([length, 400, 'an extended CONNECT has no content (Content-Length)\n']);
      }
      expect(conns).toHaveLength(0);
      // Our client leaves a caller's Content-Length off its CONNECT (RFC 9110 §8.6), and the
      // WebSocket carries its frames.
      const conn = await connect(`ws://127.0.0.1:${port}/chat`, { http2: session, perMessageDeflate: false, headers: { 'Content-Length': '0' } });
      await until(() => conns.length === 1, 'the connection');
      await conn.send('hello');
      expect(await conns[0]!.recv()).toBe('hello');
      await conn.close();
    } finally {
      await closeSession(session);
    }
  }, 5000);

  test('§5: the client closing first: our close frame goes with END_STREAM, and no RST_STREAM but NO_ERROR follows (the client ends its side once it has ours)', async () => {
    attach();
    const p = await peer();
    const conn = await opened(p);
    p.send(data(1, clientFrame(8, Buffer.from([3, 232]))));
    await until(() => p.on(1).some(endsStream), "the server's END_STREAM");
    // Its close frame, then END_STREAM (in one DATA frame or two).
    expect(Buffer.concat(p.on(1).filter((f) => f.type === FrameType.DATA).map((f) => f.payload))).toEqual(SERVER_CLOSE);
    p.send(data(1, Buffer.alloc(0), true));
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1000);
    // A PING round trip: anything the server sent on the stream has come.
    p.send(Buffer.from([0, 0, 8, FrameType.PING, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]));
    await p.next((f) => f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0, 'the PING ACK');
    // The server did not wait for that END_STREAM (see the next test): RST_STREAM(NO_ERROR) went
    // right behind its own (RFC 9113 §8.1), never CANCEL.
    expect(p.on(1).filter(isReset).map(errorCodeOf)).toEqual([ErrorCode.NO_ERROR]);
  });

  // Firefox (ESR 153) never ends its side of the stream after the close handshake: no END_STREAM,
  // no RST_STREAM. With closeTimeout 60 s, a server that waited for the client's END_STREAM would
  // reset the stream with CANCEL only after this test's 10 s limit.
  test.each([
    ['the client closes first', false],
    ['the server closes first', true],
  ])('RFC 9113 §8.1: %s and never ends its side: close frame, END_STREAM, then RST_STREAM(NO_ERROR) at once, and a clean close', async (_name, serverFirst) => {
    attach(60_000);
    const p = await peer();
    const conn = await opened(p);
    const closed = new Promise<[number, string]>((resolve) => conn.once('close', (code, reason) => resolve([code, reason])));
    const reason = Buffer.from('bye');
    if (serverFirst) {
      void conn.close(4000, 'bye');
      await p.next((f) => f.stream === 1 && f.type === FrameType.DATA && f.payload.length > 0, 'the close frame');
      // Echoed, as a browser does, and the stream left open.
      p.send(data(1, clientFrame(8, Buffer.concat([Buffer.from([0x0f, 0xa0]), reason]))));
    } else {
      p.send(data(1, clientFrame(8, Buffer.concat([Buffer.from([0x0f, 0xa0]), reason]))));
    }
    const { reset, payload, ends } = await untilReset(p);
    expect(errorCodeOf(reset)).toBe(ErrorCode.NO_ERROR);
    // Before it: our close frame (4000 'bye'), then END_STREAM (in one DATA frame or two).
    expect(payload).toEqual(Buffer.from([0x88, 5, 0x0f, 0xa0, ...reason]));
    expect(ends).toBe(1);
    expect(p.on(1).filter(isReset)).toEqual([reset]);
    // The server's 'close' and whenClosed: the close frames' code and reason, no error.
    expect(await closed).toEqual([4000, 'bye']);
    await conn.whenClosed;
    expect([conn.closeStatus, conn.closeReason, conn.error]).toEqual([4000, 'bye', undefined]);
    expect((conn.transport.stream as ServerHttp2Stream).rstCode).toBe(ErrorCode.NO_ERROR);
  }, 10_000);

  test('a failure of ours (text that is not UTF-8: 1007) to a client that never answers nor ends its side: close frame, END_STREAM, then RST_STREAM(NO_ERROR) at once (its input is not read any more, RFC 6455 §7.1.7)', async () => {
    attach(60_000);
    const p = await peer();
    const conn = await opened(p);
    p.send(data(1, clientFrame(1, Buffer.from([0xc3, 0x28]))));
    const { reset, payload, ends } = await untilReset(p);
    expect(errorCodeOf(reset)).toBe(ErrorCode.NO_ERROR);
    expect(payload.subarray(0, 4)).toEqual(Buffer.from([0x88, payload[1]!, 0x03, 0xef])); // a close frame, 1007
    expect(payload).toHaveLength(2 + payload[1]!);
    expect(ends).toBe(1);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1007);
    expect((conn.transport.stream as ServerHttp2Stream).rstCode).toBe(ErrorCode.NO_ERROR);
  }, 10_000);

  test('a client whose flow-control window is shut gets no RST_STREAM(NO_ERROR) while our close frame waits for it: CANCEL at closeTimeout, the close frame and END_STREAM never sent', async () => {
    attach(300);
    const p = await RawPeer.client(port, { settings: [[Setting.INITIAL_WINDOW_SIZE, 0]] });
    peers.push(p);
    const conn = await opened(p);
    p.send(data(1, clientFrame(8, Buffer.from([3, 232]))));
    const reset = await p.next((f) => f.stream === 1 && isReset(f), 'RST_STREAM');
    expect(errorCodeOf(reset)).toBe(ErrorCode.CANCEL);
    expect(p.on(1).filter((f) => f.type === FrameType.DATA)).toEqual([]);
    await conn.whenClosed;
  }, 10_000);

  // Transport.endClosed when our END_STREAM went out before the close frames were exchanged (the
  // application ended the transport itself after its close()): 'finish' has come already, and the
  // RST_STREAM(NO_ERROR) must not wait for another.
  test("RFC 9113 §8.1: our END_STREAM sent and taken before the client's answer (transport.end() after close()): RST_STREAM(NO_ERROR) at the answer, not CANCEL at closeTimeout", async () => {
    attach(2000);
    const p = await peer();
    const conn = await opened(p);
    void conn.close(1000);
    expect((await p.next((f) => f.stream === 1 && f.type === FrameType.DATA, 'the close frame')).payload).toEqual(SERVER_CLOSE);
    conn.transport.end();
    await p.next((f) => f.stream === 1 && endsStream(f), 'END_STREAM');
    const stream = conn.transport.stream as ServerHttp2Stream;
    await until(() => stream.writableFinished, "our END_STREAM taken ('finish')");
    // The answer, the client's side left open.
    p.send(data(1, clientFrame(8, Buffer.from([3, 232]))));
    const reset = await p.next((f) => f.stream === 1 && isReset(f), 'RST_STREAM');
    expect(errorCodeOf(reset)).toBe(ErrorCode.NO_ERROR);
    await conn.whenClosed;
    expect([conn.closeStatus, conn.error]).toEqual([1000, undefined]);
  }, 10_000);

  test('§5: the server closing first: END_STREAM once the client answered, no RST_STREAM; terminate() is RST_STREAM(CANCEL)', async () => {
    attach();
    const p = await peer();
    p.send(headers(1, CONNECT), headers(3, CONNECT));
    await p.next((f) => f.stream === 1 && f.type === FrameType.HEADERS);
    await p.next((f) => f.stream === 3 && f.type === FrameType.HEADERS);
    await until(() => conns.length === 2, 'the connections');
    const [first, second] = [...conns].sort((a, b) => (a.transport.stream as ServerHttp2Stream).id! - (b.transport.stream as ServerHttp2Stream).id!);
    void first!.close(1000);
    expect((await p.next((f) => f.stream === 1 && f.type === FrameType.DATA, 'the close frame')).payload).toEqual(SERVER_CLOSE);
    p.send(data(1, clientFrame(8, Buffer.from([3, 232])), true));
    await p.next((f) => f.stream === 1 && endsStream(f), 'END_STREAM');
    await first!.whenClosed;
    expect(first!.closeStatus).toBe(1000);

    second!.terminate();
    const reset = await p.next((f) => f.stream === 3 && isReset(f), 'RST_STREAM');
    expect(errorCodeOf(reset)).toBe(ErrorCode.CANCEL);
    expect(p.on(1).filter(isReset)).toEqual([]);
  });
});

describe('client: connect() over HTTP/2 against a hand-written server', () => {
  let server: Server;
  let port: number;
  let peer: RawPeer | undefined;
  /** What the server sends first: its SETTINGS. */
  let initial: Buffer;
  /** Whether the server answers nothing by itself (no SETTINGS ACK, no PING ACK). */
  let manual = false;

  beforeEach(async () => {
    peer = undefined;
    manual = false;
    server = netServer((socket) => {
      const p = new RawPeer(socket, manual, 24);
      peer = p;
      p.send(initial);
      // Every CONNECT is answered 200.
      const answer = (): void =>
        void p.next((f) => f.type === FrameType.HEADERS).then(
          (f) => {
            p.send(headers(f.stream, [[':status', '200']]));
            answer();
          },
          () => undefined,
        );
      answer();
    });
    port = await listen(server);
  });

  afterEach(async () => {
    peer?.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  test('§3: no :protocol is sent before the SETTINGS that allow it, nor Sec-WebSocket-Key or Upgrade after them', async () => {
    initial = Buffer.alloc(0);
    manual = true;
    const opening = connect(`ws://127.0.0.1:${port}/chat?x=1`, { http2: true, perMessageDeflate: false, closeTimeout: 2000 });
    await until(() => peer !== undefined && peer.frames.some((f) => f.type === FrameType.SETTINGS), "the client's preface");
    const ping = await peer!.next((f) => f.type === FrameType.PING, 'the PING the client waits behind');
    // Nothing asks for a stream while the server has not said SETTINGS_ENABLE_CONNECT_PROTOCOL = 1.
    expect(peer!.frames.filter((f) => f.type === FrameType.HEADERS)).toEqual([]);
    // The server's preface (its SETTINGS), then the ACKs of the client's SETTINGS and PING.
    peer!.send(
      settings([[Setting.ENABLE_CONNECT_PROTOCOL, 1]]),
      frame(FrameType.SETTINGS, Flag.ACK, 0),
      frame(FrameType.PING, Flag.ACK, 0, ping.payload),
    );
    peer!.manual = false;
    const conn = await opening;
    const request = peer!.frames.find((f) => f.type === FrameType.HEADERS)!;
    // Literal names are readable in the HPACK block even when values are Huffman-coded.
    expect(request.payload.includes(Buffer.from('sec-websocket-key'))).toBe(false);
    expect(request.payload.includes(Buffer.from('upgrade'))).toBe(false);
    expect(request.flags & Flag.END_STREAM).toBe(0);

    // §5: closing first, the client ends its side once the server's close frame and END_STREAM came.
    const closing = conn.close(1000);
    await peer!.next((f) => f.stream === request.stream && f.type === FrameType.DATA, 'the close frame');
    peer!.send(data(request.stream, SERVER_CLOSE, true));
    await closing;
    await peer!.next((f) => f.stream === request.stream && endsStream(f), "the client's END_STREAM");
    expect(conn.closeStatus).toBe(1000);
    expect(peer!.on(request.stream).filter(isReset)).toEqual([]);
  });

  // A client that fails the connection (RFC 6455 §7.1.7) ends its side with its close frame
  // (Transport.end: END_STREAM) and waits for the server's end: no RST_STREAM of its own, not even
  // NO_ERROR (Transport.endClosed, the server's way, would add one).
  test("§5 / RFC 6455 §7.1.7: our failure (text that is not UTF-8: 1007) with the server's side open: close frame and END_STREAM at once, no RST_STREAM, and the close at the server's END_STREAM", async () => {
    initial = settings([[Setting.ENABLE_CONNECT_PROTOCOL, 1]]);
    const conn = await connect(`ws://127.0.0.1:${port}/`, { http2: true, perMessageDeflate: false, closeTimeout: 2000 });
    conn.on('error', () => undefined);
    const stream = peer!.frames.find((f) => f.type === FrameType.HEADERS)!.stream;
    peer!.send(data(stream, Buffer.from([0x81, 2, 0xc3, 0x28])));
    // END_STREAM, or (not ended with the close frame) END_STREAM and RST_STREAM(CANCEL) at closeTimeout.
    await peer!.next((f) => f.stream === stream && endsStream(f), "the client's END_STREAM");
    // A PING round trip: a RST_STREAM sent right behind the END_STREAM has come by its ACK.
    peer!.send(frame(FrameType.PING, 0, 0, Buffer.from([1, 2, 3, 4, 5, 6, 7, 8])));
    await peer!.next((f) => f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0, 'the PING ACK');
    expect(peer!.on(stream).filter(isReset)).toEqual([]);
    const sent = Buffer.concat(peer!.on(stream).filter((f) => f.type === FrameType.DATA).map((f) => f.payload));
    expect(sent.subarray(0, 2)).toEqual(Buffer.from([0x88, 0x80 | (sent[1]! & 0x7f)])); // a masked close frame
    expect(sent.readUInt16BE(6) ^ sent.readUInt16BE(2)).toBe(1007);
    peer!.send(data(stream, Buffer.alloc(0), true));
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1007);
    expect(peer!.on(stream).filter(isReset)).toEqual([]);
  }, 10_000);

  test('§5: on a caller session, the server closing first gets the close frame, then END_STREAM once the server ended its side, and no RST_STREAM', async () => {
    initial = settings([[Setting.ENABLE_CONNECT_PROTOCOL, 1]]);
    const session = h2connect(`http://127.0.0.1:${port}`);
    session.on('error', () => undefined);
    try {
      const conn = await connect(`ws://127.0.0.1:${port}/`, { http2: session, perMessageDeflate: false, closeTimeout: 2000 });
      const stream = peer!.frames.find((f) => f.type === FrameType.HEADERS)!.stream;
      peer!.send(data(stream, SERVER_CLOSE));
      const reply = await peer!.next((f) => f.stream === stream && f.type === FrameType.DATA, 'the close frame');
      expect(reply.payload[0]).toBe(0x88);
      peer!.send(data(stream, Buffer.alloc(0), true));
      await peer!.next((f) => f.stream === stream && endsStream(f), "the client's END_STREAM");
      await conn.whenClosed;
      expect(conn.closeStatus).toBe(1000);
      expect(peer!.on(stream).filter(isReset)).toEqual([]);
    } finally {
      session.destroy();
    }
  });
});
