/**
 * Hostile input against serve(), over real sockets: slow and oversized handshakes, malformed
 * requests, frames that break RFC 6455, lengths and fragment counts meant to exhaust memory,
 * ping floods from a peer that never reads, invalid UTF-8 and invalid close codes.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { constants as zlibConstants, deflateRawSync } from 'node:zlib';
import { Protocol, type ProtocolHandler, type WebSocketConnection, type WebSocketError } from 'rfc6455';
import { closePayload, decodeFrames, frame } from '../../packages/rfc6455/test/helpers/frames.js';
import { RawClient, upgradeRequest } from '../../packages/rfc6455/test/helpers/raw-client.js';
import { stalled } from '../../packages/rfc6455/test/helpers/wait.js';
import { zlibLimiter } from '../../packages/rfc6455/src/extensions/zlib-limiter.js';
import { closeAll, eventually, exchange, hybi00Head, openRaw, sleep, startServer } from './helpers.js';

afterEach(closeAll);

/** A server whose connections are recorded; it echoes messages. */
async function echoServer(options: Parameters<typeof startServer>[0] = {}) {
  const conns: WebSocketConnection[] = [];
  const server = await startServer({ perMessageDeflate: false, closeTimeout: 500, ...options }, (conn) => {
    conns.push(conn);
    conn.on('message', (data) => void conn.send(data).catch(() => undefined));
  });
  return { server, conns };
}

describe('server under a slow or oversized handshake', () => {
  test('slowloris: a request head trickled byte by byte is cut at the handshake timeout, never upgraded', async () => {
    const { server } = await echoServer({ handshakeTimeout: 300 });
    const request = Buffer.from(upgradeRequest(server.port));
    const raw = await openRaw(server.port);
    let sent = 0;
    // One byte every 20 ms: the whole head would take seconds; the server must not wait for it.
    while (sent < request.length && !raw.isClosed()) {
      raw.socket.write(request.subarray(sent, sent + 1));
      sent++;
      await sleep(20);
    }
    await raw.closed;
    expect(sent).toBeLessThan(request.length);
    expect(raw.response()?.status).not.toBe(101);
  });

  test('hybi-00: a head whose 8 key3 bytes never come is closed at the handshake timeout without a 101', async () => {
    const { server, conns } = await echoServer({ handshakeTimeout: 300 });
    const raw = await openRaw(server.port);
    raw.socket.write(hybi00Head(server.port));
    await raw.closed;
    expect(raw.data().toString('latin1')).not.toContain(' 101 ');
    expect(conns).toHaveLength(0);
  });

  test('hybi-00: key3 trickled one byte per 100 ms past the timeout is not accepted', async () => {
    const { server, conns } = await echoServer({ handshakeTimeout: 300 });
    const raw = await openRaw(server.port);
    raw.socket.write(hybi00Head(server.port));
    for (let i = 0; i < 8 && !raw.isClosed(); i++) {
      raw.socket.write(Buffer.of(0x41));
      await sleep(100);
    }
    await raw.closed;
    expect(raw.data().toString('latin1')).not.toContain(' 101 ');
    expect(conns).toHaveLength(0);
  });

  test('a request head over maxHeaderSize → 431 and the socket is closed', async () => {
    const { server } = await echoServer({ maxHeaderSize: 4096 });
    const { response } = await exchange(server.port, upgradeRequest(server.port, { headers: [`X-Big: ${'a'.repeat(8000)}`] }));
    expect(response?.status).toBe(431);
  });

  test('a 1 MiB request head is refused with 431 after at most maxHeaderSize bytes are read', async () => {
    const { server } = await echoServer({ maxHeaderSize: 4096 });
    const raw = await openRaw(server.port);
    raw.socket.write(`GET / HTTP/1.1\r\nHost: x\r\nX-Big: `);
    let written = 0;
    // Keep writing header bytes until the server gives up on us (bounded at 1 MiB).
    while (written < 1024 * 1024 && !raw.isClosed()) {
      const ok = raw.socket.write('a'.repeat(16 * 1024));
      written += 16 * 1024;
      if (!ok) await Promise.race([new Promise((r) => raw.socket.once('drain', r)), raw.closed, sleep(200)]);
    }
    await raw.closed;
    expect(raw.response()?.status).toBe(431);
  });

  test.each([
    ['an invalid key (not 16 bytes)', 400, { key: 'c2hvcnQ=' }],
    ['an empty key', 400, { key: '' }],
    ['version 8', 426, { version: '8' }],
    ['version 14', 426, { version: '14' }],
    ['no version', 426, { version: undefined }],
    ['method POST', 400, { method: 'POST' }],
    ['method PUT', 400, { method: 'PUT' }],
    ['HTTP/1.0', 400, { http: '1.0' }],
    ['no Host', 400, { host: undefined }],
    ['no Connection: Upgrade', 426, { connection: 'keep-alive' }],
  ] as const)('%s → %i, never 101', async (_name, status, change) => {
    const { server, conns } = await echoServer();
    const c: { key?: string; version?: string; method?: string; http?: string; host?: string; connection?: string } = {
      key: randomBytes(16).toString('base64'),
      version: '13',
      method: 'GET',
      http: '1.1',
      host: `127.0.0.1:${server.port}`,
      connection: 'Upgrade',
      ...change,
    };
    const lines = [`${c.method} / HTTP/${c.http}`];
    if (c.host !== undefined) lines.push(`Host: ${c.host}`);
    lines.push('Upgrade: websocket', `Connection: ${c.connection}`, `Sec-WebSocket-Key: ${c.key}`);
    if (c.version !== undefined) lines.push(`Sec-WebSocket-Version: ${c.version}`);
    lines.push('Connection: close', '', '');
    const { response } = await exchange(server.port, lines.join('\r\n'));
    expect(response?.status).toBe(status);
    if (status === 426 && c.connection === 'Upgrade') expect(response?.headers['sec-websocket-version']).toBe('13');
    expect(conns).toHaveLength(0);
  });

  test('garbage instead of an HTTP request → 400, and the server keeps serving', async () => {
    const { server } = await echoServer();
    const { response } = await exchange(server.port, Buffer.concat([randomBytes(64), Buffer.from('\r\n\r\n')]));
    expect(response?.status ?? 400).toBe(400);
    const raw = await RawClient.connect(server.port);
    raw.send({ opcode: 1, payload: 'still alive' });
    expect((await raw.readFrame())?.payload.toString()).toBe('still alive');
    raw.destroy();
  });
});

describe('server receives frames that break RFC 6455', () => {
  test('an unmasked client frame → 1002 (RFC 6455 §5.1)', async () => {
    const { server } = await echoServer();
    const raw = await RawClient.connect(server.port);
    raw.send({ opcode: 1, payload: 'hello', mask: false });
    expect((await raw.readClose())?.code).toBe(1002);
    await raw.closed;
  });

  test.each([
    ['2^63 (most significant bit set)', 2n ** 63n, [1002]],
    ['2^64 - 1', 2n ** 64n - 1n, [1002]],
    ['2^63 - 1', 2n ** 63n - 1n, [1009]],
    ['2^53', 2n ** 53n, [1009]],
    ['2^40', 2n ** 40n, [1009]],
  ] as const)('a 64-bit length of %s is refused from the header alone, no payload needed', async (_name, length, codes) => {
    const { server } = await echoServer({ maxMessageSize: 1024 * 1024 });
    const raw = await RawClient.connect(server.port);
    // Only the 14-byte header: the server must decide without waiting for (or allocating) the payload.
    raw.write(frame({ opcode: 2, mask: true, lengthBits: 64, declaredLength: length }));
    const close = await raw.readClose();
    expect(codes).toContain(close?.code);
    await raw.closed;
  });

  test.each([
    ['just over', 1],
    ['far over', 1 << 30],
  ])('a single frame %s maxMessageSize → 1009 before any payload byte is sent', async (_name, extra) => {
    const limit = 64 * 1024;
    const { server, conns } = await echoServer({ maxMessageSize: limit });
    const raw = await RawClient.connect(server.port);
    raw.write(frame({ opcode: 2, mask: true, lengthBits: 64, declaredLength: limit + extra }));
    expect((await raw.readClose())?.code).toBe(1009);
    await raw.closed;
    expect(conns[0]?.closeStatus).toBe(1009);
  });

  test('a fragmented message that crosses maxMessageSize by one byte → 1009 at the crossing fragment', async () => {
    const limit = 64 * 1024;
    const { server } = await echoServer({ maxMessageSize: limit });
    const raw = await RawClient.connect(server.port);
    const piece = Buffer.alloc(16 * 1024, 0x61);
    raw.send({ opcode: 2, payload: piece, fin: false });
    for (let i = 0; i < 3; i++) raw.send({ opcode: 0, payload: piece, fin: false });
    // Exactly at the limit so far; a 1-byte header-only continuation crosses it.
    raw.write(frame({ opcode: 0, mask: true, fin: false, declaredLength: 1 }).subarray(0, 6));
    expect((await raw.readClose())?.code).toBe(1009);
    await raw.closed;
  });

  test('up to a million tiny fragments: the message is refused with 1009 once maxFragments is passed, nothing echoed', async () => {
    const { server, conns } = await echoServer({ maxFragments: 1000 });
    const raw = await RawClient.connect(server.port);
    const one = frame({ opcode: 0, mask: true, fin: false, payload: 'x' });
    const batch = Buffer.concat(Array.from({ length: 10_000 }, () => one));
    raw.send({ opcode: 1, payload: 'x', fin: false });
    let sent = 0;
    while (sent < 1_000_000 && !raw.socket.destroyed) {
      if (!raw.socket.write(batch)) await Promise.race([new Promise((r) => raw.socket.once('drain', r)), raw.closed]);
      sent += 10_000;
      if (conns[0]?.closeStatus !== undefined) break;
    }
    const close = await raw.readClose();
    expect(close?.code).toBe(1009);
    expect(close?.frames.filter((f) => f.opcode !== 8)).toHaveLength(0);
  });

  test('a ping flood from a client that never reads: pongs are coalesced, the outgoing buffer stays bounded, the last ping is answered', async () => {
    const writeHighWaterMark = 16 * 1024;
    const { server, conns } = await echoServer({ writeHighWaterMark });
    const raw = await RawClient.connect(server.port);
    await eventually(() => conns.length === 1);
    const serverConn = conns[0]!;
    raw.socket.pause();
    let maxBuffered = 0;
    const pings = 60_000;
    const payloadOf = (i: number): Buffer => Buffer.from(String(i).padStart(125, '0'));
    // Masked with an all-zero key, so the payload goes as it is (RFC 6455 §5.3 allows any key).
    const pingFrame = (i: number): Buffer => Buffer.concat([Buffer.of(0x89, 0x80 | 125, 0, 0, 0, 0), payloadOf(i)]);
    for (let i = 0; i < pings; i += 1000) {
      const batch = Buffer.concat(Array.from({ length: 1000 }, (_, j) => pingFrame(i + j)));
      if (!raw.socket.write(batch)) await new Promise((r) => raw.socket.once('drain', r));
      maxBuffered = Math.max(maxBuffered, serverConn.bufferedAmount);
    }
    // Let the server read the last pings, sampling its outgoing buffer meanwhile.
    for (let i = 0; i < 20; i++) {
      await sleep(10);
      maxBuffered = Math.max(maxBuffered, serverConn.bufferedAmount);
    }
    // 60,000 pongs would be ~7.6 MB; the server holds at most its high-water mark plus one pong.
    expect(maxBuffered).toBeLessThanOrEqual(writeHighWaterMark + 127);
    expect(serverConn.readyState).toBe('open');
    // Now read: what arrives is pongs only, fewer than the pings, the final one answering the final ping.
    const lastPong = Buffer.concat([Buffer.of(0x8a, 125), payloadOf(pings - 1)]);
    const chunks: Buffer[] = [];
    let tail = Buffer.alloc(0);
    raw.socket.removeAllListeners('data');
    const done = new Promise<void>((resolve) => {
      raw.socket.on('data', (c: Buffer) => {
        chunks.push(c);
        tail = Buffer.concat([tail, c]).subarray(-lastPong.length);
        if (tail.equals(lastPong)) resolve();
      });
      raw.socket.once('close', () => resolve());
    });
    raw.socket.resume();
    await done;
    const { frames, used } = decodeFrames(Buffer.concat([...(raw.response.body.length ? [raw.response.body] : []), ...chunks]));
    expect(frames.every((f) => f.opcode === 10)).toBe(true);
    expect(frames.at(-1)?.payload.toString()).toBe(payloadOf(pings - 1).toString());
    expect(frames.length).toBeLessThan(pings);
    expect(used).toBeGreaterThan(0);
    raw.destroy();
  });
});

describe('compressed frames sent faster than they are inflated', () => {
  test('while a frame waits for the thread pool the socket is not read (what the server holds is bounded), and every message arrives once inflated', async () => {
    const received: Buffer[] = [];
    const conns: WebSocketConnection[] = [];
    const server = await startServer({ perMessageDeflate: true }, (conn) => {
      conns.push(conn);
      conn.on('message', (data) => void received.push(data as Buffer));
    });
    // Every slot of the process-wide zlib limiter taken: inflations in the thread pool wait.
    const slots = zlibLimiter.limit - zlibLimiter.active;
    for (let i = 0; i < slots; i++) zlibLimiter.acquire(() => undefined);
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      for (let i = 0; i < slots; i++) zlibLimiter.release();
    };
    try {
      const raw = await RawClient.connect(server.port, { headers: ['Sec-WebSocket-Extensions: permessage-deflate'] });
      expect(raw.response.headers['sec-websocket-extensions']).toContain('permessage-deflate');
      // 48 KiB of random bytes deflate to stored blocks over syncLimit (32 KiB): thread-pool work.
      const message = randomBytes(48 * 1024);
      const compressed = deflateRawSync(message, { finishFlush: zlibConstants.Z_SYNC_FLUSH }).subarray(0, -4);
      const count = 200;
      const one = frame({ opcode: 2, payload: compressed, mask: true, rsv1: true });
      raw.write(Buffer.concat(Array.from({ length: count }, () => one)));
      await eventually(() => conns.length === 1);
      const serverSocket = conns[0]!.transport.stream as Socket;
      // The server reads until it stops; it must stop long before the ~10 MB sent (it read them all,
      // and held them unparsed, however many more came: 3 GB in 8 s from one peer).
      const read = await stalled(() => serverSocket.bytesRead);
      expect(read).toBeLessThan(1024 * 1024);
      expect(conns[0]!.readyState).toBe('open');
      release();
      expect(await eventually(() => received.length === count, 1000)).toBe(true);
      expect(received.every((m) => m.equals(message))).toBe(true);
      raw.destroy();
    } finally {
      release();
    }
  });
});

describe('server receives invalid UTF-8 in a fragmented text message', () => {
  // Two-, three- and four-byte sequences, so a bad byte lands at a start, a middle and an end.
  const valid = Buffer.from('aé€😀z ĳ✓𝄞', 'utf8');
  const positions = Array.from({ length: valid.length + 1 }, (_, i) => i);

  test.each(positions)('a 0xFF at byte %i → 1007 before the message ends (fail fast, RFC 6455 §8.1)', async (at) => {
    const { server, conns } = await echoServer();
    const raw = await RawClient.connect(server.port);
    const bad = Buffer.concat([valid.subarray(0, at), Buffer.of(0xff), valid.subarray(at)]);
    // Fragments of 3 bytes; send up to the one holding the bad byte and never the final fragment.
    const upto = Math.floor(at / 3) + 1;
    for (let f = 0; f < upto; f++) raw.send({ opcode: f === 0 ? 1 : 0, payload: bad.subarray(f * 3, f * 3 + 3), fin: false });
    expect((await raw.readClose())?.code).toBe(1007);
    await raw.closed;
    expect(conns[0]?.closeStatus).toBe(1007);
  });

  test.each([
    ['an overlong encoding', Buffer.of(0xc0, 0xaf)],
    ['a UTF-16 surrogate', Buffer.of(0xed, 0xa0, 0x80)],
    ['a code point over U+10FFFF', Buffer.of(0xf4, 0x90, 0x80, 0x80)],
    ['a truncated sequence at the end', Buffer.of(0xe2, 0x82)],
  ])('%s split across fragments → 1007', async (_name, bytes) => {
    const { server } = await echoServer();
    const raw = await RawClient.connect(server.port);
    const payload = Buffer.concat([Buffer.from('ok'), bytes]);
    for (let i = 0; i < payload.length; i++) raw.send({ opcode: i === 0 ? 1 : 0, payload: payload.subarray(i, i + 1), fin: i === payload.length - 1 });
    expect((await raw.readClose())?.code).toBe(1007);
    raw.destroy();
  });
});

describe('server receives invalid UTF-8 in a text frame that arrives in pieces (fail fast within the frame)', () => {
  // Autobahn 6.4.3 and 6.4.4: one frame, written in chops with pauses; the bad bytes are in a chop
  // before the last, which is never sent, so only a check of the bytes as they arrive can see them.
  const valid = Buffer.from('κόσμε, aé€😀z', 'utf8');
  test.each([
    ['a code point over U+10FFFF (F4 90 80 80)', Buffer.of(0xf4, 0x90, 0x80, 0x80), 'a single frame'],
    ['a lone 0xF4 followed by ASCII', Buffer.of(0xf4, 0x61), 'a single frame'],
    ['a 0xFF', Buffer.of(0xff), 'the first fragment of a message'],
    ['an overlong encoding (C0 AF)', Buffer.of(0xc0, 0xaf), 'a continuation frame'],
  ])('%s in %s, the frame unfinished → 1007', async (_name, bad, where) => {
    const { server, conns } = await echoServer();
    const raw = await RawClient.connect(server.port);
    const payload = Buffer.concat([valid, bad, valid]);
    const key = Buffer.of(0x11, 0x22, 0x33, 0x44);
    if (where === 'a continuation frame') raw.send({ opcode: 1, payload: valid, fin: false });
    const opcode = where === 'a continuation frame' ? 0 : 1;
    const bytes = frame({ opcode, payload, fin: where === 'a single frame', mask: key });
    const header = bytes.length - payload.length;
    // First chop: the header and the valid bytes; second: the bad bytes and one more; the rest never.
    raw.write(bytes.subarray(0, header + valid.length));
    await sleep(30);
    raw.write(bytes.subarray(header + valid.length, header + valid.length + bad.length + 1));
    expect((await raw.readClose())?.code).toBe(1007);
    await raw.closed;
    expect(conns[0]?.closeStatus).toBe(1007);
  });

  test('the same bytes, valid, in chops: the message arrives whole, checked once', async () => {
    const { server } = await echoServer();
    const raw = await RawClient.connect(server.port);
    const text = 'κόσμε, aé€😀z '.repeat(50);
    const bytes = frame({ opcode: 1, payload: text, mask: true });
    // Chops of 7 bytes: cuts inside the header and inside characters all along.
    for (let at = 0; at < bytes.length; at += 7) {
      raw.write(bytes.subarray(at, at + 7));
      if (at % 140 === 0) await sleep(1);
    }
    const echo = await raw.readFrame();
    expect([echo?.opcode, echo?.payload.toString('utf8')]).toEqual([1, text]);
    raw.destroy();
  });
});

/** Whether a code may appear in a received close frame (RFC 6455 §7.4). */
const validCode = (c: number): boolean => (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);

describe('server receives close frames with invalid codes', () => {
  test('every code 0-65535 through the sans-I/O Protocol: invalid ones fail with 1002, valid ones are echoed', () => {
    for (let code = 0; code <= 0xffff; code++) {
      const written: Buffer[] = [];
      let failed: WebSocketError | undefined;
      const handler: ProtocolHandler = {
        onWrite: (d) => written.push(Buffer.from(d)),
        onWritev: (h, p) => written.push(Buffer.concat([h, p])),
        onMessage: () => undefined,
        onPiece: () => undefined,
        onPing: () => undefined,
        onPong: () => undefined,
        onCloseFrame: () => undefined,
        onFail: (e) => (failed = e),
        onEnd: () => undefined,
      };
      const proto = new Protocol({ side: 'server' }, handler);
      // A masked close frame with an all-zero key (the payload bytes are then sent as they are).
      proto.receiveData(Buffer.of(0x88, 0x82, 0, 0, 0, 0, code >> 8, code & 0xff));
      const reply = written[0]!;
      const replied = reply.readUInt16BE(2);
      if (validCode(code)) {
        if (replied !== code || failed) throw new Error(`valid code ${code} answered ${replied}`);
      } else if (replied !== 1002 || !failed) {
        throw new Error(`invalid code ${code} answered ${replied}`);
      }
    }
    expect(true).toBe(true);
  });

  test('every invalid code around the valid ranges, and a sample elsewhere, over real sockets → 1002', async () => {
    const { server } = await echoServer();
    const codes: number[] = [0, 1, 255, 256, 500, 2000, 2500, 2998, 2999, 5000, 5001, 0x7fff, 0x8000, 0xfffe, 0xffff];
    for (let c = 990; c <= 1030; c++) if (!validCode(c)) codes.push(c);
    for (let c = 5000; c <= 0xffff; c += 4099) codes.push(c);
    codes.splice(0, codes.length, ...new Set(codes));
    const answers = new Map<number, number | undefined>();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < codes.length) {
        const code = codes[next++]!;
        const raw = await RawClient.connect(server.port);
        raw.send({ opcode: 8, payload: closePayload(code) });
        answers.set(code, (await raw.readClose())?.code);
        raw.destroy();
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    const wrong = codes.filter((c) => answers.get(c) !== 1002);
    expect(wrong).toEqual([]);
    expect(answers.size).toBe(codes.length);
  }, 60_000);
});
