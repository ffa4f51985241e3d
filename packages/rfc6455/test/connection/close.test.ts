/**
 * Close rules over real sockets: a raw TCP client writes hand-made close frames to serve() and
 * reads what the server answers (RFC 6455 §5.5.1, §7.1, §7.4).
 */
import type { Socket } from 'node:net';
import { rawServer, switching, type RawServer } from '../helpers/raw-server.js';
import { serve, connect, socketTransport, ConnectionClosedError, EOF, WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { closePayload, frame } from '../helpers/frames.js';
import { RawClient } from '../helpers/raw-client.js';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const FIXTURES = resolve(__dirname, '../../../../test/fixtures/tls');
const TLS = { key: readFileSync(resolve(FIXTURES, 'key.pem')), cert: readFileSync(resolve(FIXTURES, 'cert.pem')) };

let server: WebSocketServer;
let serverConns: WebSocketConnection[] = [];

beforeAll(async () => {
  server = await serve({ perMessageDeflate: false, closeTimeout: 300 }, (conn) => {
    serverConns.push(conn);
    conn.on('message', (data) => void conn.send(data).catch(() => undefined));
  });
});
afterAll(() => server.close());
afterEach(() => {
  // (Aborted, in case a test failed with a connection still open: server.close() would wait for it.)
  for (const conn of serverConns) conn.terminate();
  serverConns = [];
});

/**
 * A peer whose keepalive pings the server, and a server application that pings too, until the
 * connection goes: every frame they exchange is read at once.
 */
async function pingBothWaysUntilGone(raw: RawClient, conn: WebSocketConnection): Promise<void> {
  for (;;) {
    raw.send({ opcode: 9, payload: 'p' });
    void conn.ping('q').catch(() => undefined);
    const frame = await raw.readFrame();
    if (frame === undefined) return;
    expect(frame.opcode === 9 || frame.opcode === 10).toBe(true);
    if (frame.opcode === 9) await raw.readFrame();
  }
}

/**
 * A hand-made WebSocket server for the client's close tests: answers the handshake, calls
 * `onUpgrade`, then `onBytes` with everything received after the request head so far, at each
 * chunk (our client sends nothing before the 101). It never ends TCP by itself.
 */
function rawWsServer(on: { onUpgrade?: (socket: Socket) => void; onBytes?: (socket: Socket, bytes: Buffer) => void }): Promise<RawServer> {
  return rawServer((head, socket) => {
    socket.write(switching(head));
    on.onUpgrade?.(socket);
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      on.onBytes?.(socket, buffered);
    });
  });
}

async function lastServerConn(): Promise<WebSocketConnection> {
  for (let i = 0; i < 100 && serverConns.length === 0; i++) await new Promise((r) => setImmediate(r));
  return serverConns[serverConns.length - 1]!;
}

describe('server receives an invalid close frame', () => {
  test.each([0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])('close code %i → 1002, then the server closes TCP', async (code) => {
    const raw = await RawClient.connect(server.port);
    raw.send({ opcode: 8, payload: closePayload(code) });
    const close = await raw.readClose();
    expect(close?.code).toBe(1002);
    await raw.closed;
    expect(raw.serverEndedFirst).toBe(true);
  });

  test('a 1-byte close payload → 1002', async () => {
    const raw = await RawClient.connect(server.port);
    raw.send({ opcode: 8, payload: Buffer.of(0x03) });
    expect((await raw.readClose())?.code).toBe(1002);
    raw.destroy();
  });

  test('a close reason that is not UTF-8 → 1007', async () => {
    const raw = await RawClient.connect(server.port);
    raw.send({ opcode: 8, payload: closePayload(1000, Buffer.of(0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80, 0x65)) });
    expect((await raw.readClose())?.code).toBe(1007);
    const conn = await lastServerConn();
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1007);
    raw.destroy();
  });
});

describe('server receives a valid close frame', () => {
  test.each([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999])('code %i is echoed and recorded', async (code) => {
    const raw = await RawClient.connect(server.port);
    const conn = await lastServerConn();
    raw.send({ opcode: 8, payload: closePayload(code, 'reason ✓') });
    const close = await raw.readClose();
    expect(close?.code).toBe(code);
    await raw.closed;
    // RFC 6455 §7.1.1: after the closing handshake the server closes TCP first.
    expect(raw.serverEndedFirst).toBe(true);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(code);
    expect(conn.closeReason).toBe('reason ✓');
  });

  test('an empty close is answered with an empty close; 1005 recorded locally, never sent', async () => {
    const raw = await RawClient.connect(server.port);
    const conn = await lastServerConn();
    raw.send({ opcode: 8 });
    const close = await raw.readClose();
    expect(close?.code).toBeUndefined();
    expect(close?.reason.length).toBe(0);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1005);
  });
});

describe('closeStatus and closeReason on both sides', () => {
  test('client starts the close: both sides record the code and reason', async () => {
    const client = await connect(server.url, { perMessageDeflate: false });
    const conn = await lastServerConn();
    await client.close(4000, 'client says bye');
    await conn.whenClosed;
    expect([client.closeStatus, client.closeReason]).toEqual([4000, 'client says bye']);
    expect([conn.closeStatus, conn.closeReason]).toEqual([4000, 'client says bye']);
    expect(await client.recv()).toBe(EOF);
  });

  test('server starts the close: both sides record it (Racket recorded it only on the peer side)', async () => {
    const client = await connect(server.url, { perMessageDeflate: false });
    const conn = await lastServerConn();
    const clientClosed = new Promise<[number, string]>((resolve) => client.on('close', (code, reason) => resolve([code, reason])));
    await conn.close(4002, 'server says bye');
    expect([conn.closeStatus, conn.closeReason]).toEqual([4002, 'server says bye']);
    expect(await clientClosed).toEqual([4002, 'server says bye']);
    expect([client.closeStatus, client.closeReason]).toEqual([4002, 'server says bye']);
  });

  test('both sides close at once: each records the other side’s code, nobody hangs', async () => {
    const client = await connect(server.url, { perMessageDeflate: false });
    const conn = await lastServerConn();
    await Promise.all([client.close(4010, 'from client'), conn.close(4020, 'from server')]);
    expect(client.closeStatus).toBe(4020);
    expect(conn.closeStatus).toBe(4010);
  });

  test('a TCP drop without a close frame is 1006 locally', async () => {
    const raw = await RawClient.connect(server.port);
    const conn = await lastServerConn();
    raw.destroy();
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1006);
  });

  test('a peer that ends its side without a close frame: what it sent is answered first, then the server ends its side, 1006', async () => {
    const raw = await RawClient.connect(server.port);
    const conn = await lastServerConn();
    raw.send({ opcode: 1, payload: Buffer.from('one') });
    raw.send({ opcode: 1, payload: Buffer.from('two') });
    raw.end();
    // The echoes of both messages arrive, then the server's FIN (no close frame: 1006 has none).
    expect((await raw.readFrame())?.payload.toString()).toBe('one');
    expect((await raw.readFrame())?.payload.toString()).toBe('two');
    expect(await raw.readFrame()).toBeUndefined();
    await raw.closed;
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1006);
    expect(conn.readyState).toBe('closed');
  });

  test('terminate() resets TCP (the peer gets no FIN and no frame) and closes the protocol at once: 1006, a send() made right after rejects', async () => {
    const raw = await RawClient.connect(server.port);
    const conn = await lastServerConn();
    const peerSaw = new Promise<string>((resolve) => {
      raw.socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
      raw.socket.once('end', () => resolve('FIN'));
    });
    conn.terminate();
    expect([conn.readyState, conn.closeStatus]).toEqual(['closing', 1006]);
    const sent = conn.send('too late');
    await expect(sent).rejects.toBeInstanceOf(ConnectionClosedError);
    await expect(sent).rejects.toMatchObject({ closeCode: 1006 });
    expect(await peerSaw).toBe('ECONNRESET');
    expect(await raw.readFrame()).toBeUndefined();
    await conn.whenClosed;
    expect([conn.closeStatus, conn.closeReason]).toEqual([1006, '']);
  });

  test('close() rejects codes that may not be sent (1005, 1006, 1015) without closing', async () => {
    const client = await connect(server.url, { perMessageDeflate: false });
    for (const code of [1005, 1006, 1015]) await expect(client.close(code)).rejects.toThrow(RangeError);
    expect(client.readyState).toBe('open');
    await client.close();
  });

  test('a peer that stops reading while we send: 1008 and "outgoing buffer overflow" recorded, one WS_SEND_BUFFER_FULL, aborted', async () => {
    const client = await connect(server.url, { perMessageDeflate: false, maxBufferedAmount: 256 * 1024 });
    const conn = await lastServerConn();
    conn.pause();
    const errors: unknown[] = [];
    client.on('error', (error) => errors.push(error));
    const closed = new Promise<[number, string]>((resolve) => client.on('close', (code, reason) => resolve([code, reason])));
    const chunk = Buffer.alloc(64 * 1024);
    for (let i = 0; i < 10_000 && errors.length === 0 && !client.closed; i++) {
      client.send(chunk).catch(() => undefined);
      await new Promise((r) => setImmediate(r));
    }
    expect(await closed).toEqual([1008, 'outgoing buffer overflow']);
    expect([client.closeStatus, client.closeReason]).toEqual([1008, 'outgoing buffer overflow']);
    expect(errors.map((e) => (e as { code?: string }).code)).toEqual(['WS_SEND_BUFFER_FULL']);
  });

  test('close() checks its code and reason in every state: once closed too, a code or reason that may not be sent rejects', async () => {
    const client = await connect(server.url, { perMessageDeflate: false });
    await client.close();
    expect(client.readyState).toBe('closed');
    await expect(client.close(1005)).rejects.toThrow(RangeError);
    await expect(client.close(4000, 'x'.repeat(124))).rejects.toThrow(RangeError);
    await expect(client.close(4000, 'fine')).resolves.toBeUndefined();
  });
});

describe('promises outstanding at close', () => {
  test('a compressed send not awaited, still being compressed when the connection goes, is no unhandled rejection; one awaited rejects', async () => {
    const deflating = await serve({ port: 0 }, () => undefined);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const client = await connect(deflating.url);
      expect(client.extensions).toContain('permessage-deflate');
      // 1 MiB goes to zlib in the thread pool: the frame waits in the queue meanwhile.
      void client.send(Buffer.alloc(1 << 20, 7));
      const awaited = client.send(Buffer.alloc(1 << 20, 8));
      client.terminate();
      await expect(awaited).rejects.toThrow(ConnectionClosedError);
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await deflating.close();
    }
    expect(unhandled).toEqual([]);
  });

  test('a ping not awaited when the connection closes first is no unhandled rejection; one awaited rejects with ConnectionClosedError', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const raw = await RawClient.connect(server.port);
      const conn = await lastServerConn();
      // The raw client never answers pings. One ping fired and forgotten (a keepalive), one awaited.
      void conn.ping('fire and forget');
      const awaited = conn.ping('awaited');
      raw.destroy();
      await expect(awaited).rejects.toThrow(ConnectionClosedError);
      await conn.whenClosed;
      // Unhandled rejections are reported after the microtask queue drains.
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
  });

  test('a recv() waiting when TCP drops without a close frame resolves with EOF (1006), and one made after it too', async () => {
    const raw = await RawClient.connect(server.port);
    const conn = await lastServerConn();
    const waiting = conn.recv();
    raw.destroy();
    expect(await waiting).toBe(EOF);
    expect(conn.closeStatus).toBe(1006);
    expect(await conn.recv()).toBe(EOF);
  });

  test('a send() waiting for drain when TCP drops settles at the close', async () => {
    const raw = await RawClient.connect(server.port);
    raw.socket.pause(); // takes nothing: the send waits for 'drain'
    const conn = await lastServerConn();
    let settled = 'pending';
    const sent = conn.send(Buffer.alloc(8 << 20, 7)).then(
      () => (settled = 'resolved'),
      (error: unknown) => (settled = `rejected ${(error as Error).name}`),
    );
    for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
    expect([settled, conn.bufferedAmount > 0]).toEqual(['pending', true]);
    raw.destroy();
    await conn.whenClosed;
    await sent;
    expect(settled).toBe('resolved');
  });

  test('a sendStream() queued behind another whose turn comes after the peer\'s close frame takes nothing from its source and rejects', async () => {
    const raw = await RawClient.connect(server.port);
    const conn = await lastServerConn();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    async function* first(): AsyncGenerator<string> {
      yield 'a';
      await gate;
      yield 'b';
    }
    let pulled = false;
    async function* second(): AsyncGenerator<string> {
      pulled = true;
      yield 'c';
    }
    const one = conn.sendStream(first(), { binary: false });
    const two = conn.sendStream(second(), { binary: false });
    two.catch(() => undefined);
    expect((await raw.readFrame())?.payload.toString()).toBe('a');
    raw.send({ opcode: 8, payload: closePayload(1000) });
    for (let i = 0; i < 100 && conn.closeStatus === undefined; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(conn.closeStatus).toBe(1000);
    release();
    await one.catch(() => undefined);
    await expect(two).rejects.toBeInstanceOf(ConnectionClosedError);
    expect(pulled).toBe(false);
  });
});

describe('close timeout', () => {
  test('server closes, peer never answers: the socket is destroyed after closeTimeout', async () => {
    const raw = await RawClient.connect(server.port);
    const conn = await lastServerConn();
    const closing = conn.close(1000, 'bye');
    const close = await raw.readClose();
    expect(close?.code).toBe(1000);
    // The raw client neither answers nor ends TCP; closeTimeout (300 ms) aborts the socket.
    await closing;
    await raw.closed;
    expect(conn.closeStatus).toBe(1006);
    expect(conn.readyState).toBe('closed');
  });

  /**
   * 140 MiB sent, then close(), to a client that reads a message every 35 ms or so: about five
   * seconds for all of them, more than twice the server's closeTimeout (2 s). The timeout bounds a
   * peer that takes nothing, not a slow one. (What the kernel's buffers hold, about 10 MB here,
   * must reach the peer, and its close frame come back, within one closeTimeout of the last byte
   * leaving the process, which the server cannot see: about 350 ms at this pace, a sixth of the
   * 2 s. With 700 or 800 ms a loaded machine's slower timers took it past.)
   */
  async function slowReaderGetsEverything(tls: boolean): Promise<void> {
    let accepted: (conn: WebSocketConnection) => void;
    const connected = new Promise<WebSocketConnection>((resolve) => (accepted = resolve));
    // Above the default maxBufferedAmount (64 MiB), so that is raised.
    const sender = await serve({ perMessageDeflate: false, closeTimeout: 2000, maxBufferedAmount: 256 << 20, ...(tls ? { tls: TLS } : {}) }, (conn) => accepted(conn));
    try {
      const client = await connect(sender.url, { perMessageDeflate: false, ...(tls ? { tls: { ca: TLS.cert } } : {}) });
      const conn = await connected;
      const megabyte = Buffer.alloc(1 << 20, 7);
      const count = 140;
      for (let i = 0; i < count; i++) void conn.send(megabyte).catch(() => undefined);
      const serverClosing = conn.close(1000, 'done');
      let received = 0;
      client.on('message', (data) => {
        if ((data as Buffer).length === megabyte.length) received++;
        client.pause();
        setTimeout(() => client.resume(), 35);
      });
      await client.whenClosed;
      await serverClosing;
      expect(received).toBe(count);
      expect([client.closeStatus, client.closeReason]).toEqual([1000, 'done']);
      expect(conn.closeStatus).toBe(1000);
    } finally {
      await sender.close();
    }
  }

  test('a slow reader gets everything sent before close(), however long that takes, and the close completes cleanly (it was cut at closeTimeout, 1006)', () => slowReaderGetsEverything(false), 30_000);


  test('what was sent before close() leaves the process just before the close timer comes due: the peer gets another closeTimeout to take the rest and answer (fake clock)', async () => {
    const C = 1000;
    let accepted!: (conn: WebSocketConnection) => void;
    const connected = new Promise<WebSocketConnection>((resolve) => (accepted = resolve));
    const sender = await serve({ perMessageDeflate: false, closeTimeout: C }, (conn) => accepted(conn));
    try {
      const raw = await RawClient.connect(sender.port);
      raw.socket.pause(); // reads nothing for now: what is sent waits in the server's buffers
      const conn = await connected;
      const socket = conn.transport.stream as Socket;
      // Only setTimeout is faked (the close timer): sockets, setImmediate and the event loop are real.
      jest.useFakeTimers({ doNotFake: ['Date', 'hrtime', 'nextTick', 'performance', 'queueMicrotask', 'setImmediate', 'clearImmediate', 'setInterval', 'clearInterval'] });
      const advance = async (ms: number): Promise<void> => {
        jest.advanceTimersByTime(ms);
        for (let i = 0; i < 2; i++) await new Promise((resolve) => setImmediate(resolve));
      };
      const payload = Buffer.alloc(8 << 20, 7);
      void conn.send(payload).catch(() => undefined);
      const closing = conn.close(1000, 'done');
      expect(conn.bufferedAmount).toBeGreaterThan(0);
      await advance(C); // still going out: started again
      expect(socket.destroyed).toBe(false);
      raw.socket.resume(); // the peer takes it all now, late in the second closeTimeout
      const close = await raw.readClose();
      expect(close?.frames[0]?.payload.length).toBe(payload.length);
      expect(close?.code).toBe(1000);
      expect(conn.bufferedAmount).toBe(0);
      await advance(C); // everything has left since the timer last ran: one more closeTimeout
      // (Before: aborted here, though the peer had just taken the last byte.)
      expect(socket.destroyed).toBe(false);
      jest.useRealTimers();
      raw.send({ opcode: 8, payload: closePayload(1000, 'done') });
      await closing;
      expect(conn.closeStatus).toBe(1000);
      expect(raw.serverEndedFirst).toBe(true);
    } finally {
      jest.useRealTimers();
      await sender.close();
    }
  });

  test('a peer that never takes what was sent before close() is aborted once a check sees no progress, after the checks that found some (fake clock; the first check re-arms the timer, and the next one must come)', async () => {
    const C = 1000;
    let accepted!: (conn: WebSocketConnection) => void;
    const connected = new Promise<WebSocketConnection>((resolve) => (accepted = resolve));
    const sender = await serve({ perMessageDeflate: false, closeTimeout: C }, (conn) => accepted(conn));
    try {
      const raw = await RawClient.connect(sender.port);
      raw.socket.pause(); // reads nothing, ever
      const conn = await connected;
      const socket = conn.transport.stream as Socket;
      jest.useFakeTimers({ doNotFake: ['Date', 'hrtime', 'nextTick', 'performance', 'queueMicrotask', 'setImmediate', 'clearImmediate', 'setInterval', 'clearInterval'] });
      const advance = async (ms: number): Promise<void> => {
        jest.advanceTimersByTime(ms);
        for (let i = 0; i < 2; i++) await new Promise((resolve) => setImmediate(resolve));
      };
      void conn.send(Buffer.alloc(8 << 20, 7)).catch(() => undefined);
      const closing = conn.close(1000, 'done');
      expect(conn.bufferedAmount).toBeGreaterThan(0);
      await advance(C); // still going out (the kernel takes what fits): started again
      expect(socket.destroyed).toBe(false);
      // Each further check finds what the kernel took since the last one; once it takes nothing
      // more, the connection is aborted. (A timer that was never re-armed left it open for good.)
      for (let i = 0; i < 20 && !socket.destroyed; i++) await advance(C);
      jest.useRealTimers();
      expect(socket.destroyed).toBe(true);
      await closing;
      expect(conn.closeStatus).toBe(1006);
    } finally {
      jest.useRealTimers();
      for (const conn of sender.connections) conn.terminate();
      await sender.close();
    }
  });

  test('over TLS too: a slow reader gets everything sent before close() and a clean close (it was cut at twice closeTimeout: the TLS handle showed no progress until its whole write was out)', () => slowReaderGetsEverything(true), 30_000);

  test('a peer that takes the last of what was sent before close() shortly before the timer fires gets a whole closeTimeout after it to answer (it was aborted at that check, 1006)', async () => {
    let accepted: (conn: WebSocketConnection) => void;
    const connected = new Promise<WebSocketConnection>((resolve) => (accepted = resolve));
    const sender = await serve({ perMessageDeflate: false, closeTimeout: 1000 }, (conn) => accepted(conn));
    try {
      const raw = await RawClient.connect(sender.port);
      raw.socket.pause();
      // (Counted, not gathered: what comes is the 16 MiB frame, then our close frame.)
      raw.socket.removeAllListeners('data');
      const size = 16 << 20;
      const expected = 10 + size + 8;
      let received = 0;
      let tail = Buffer.alloc(0);
      const all = new Promise<void>((resolve) => {
        raw.socket.on('data', (chunk: Buffer) => {
          received += chunk.length;
          tail = Buffer.concat([tail, chunk]).subarray(-8);
          if (received >= expected) resolve();
        });
        raw.socket.once('close', resolve);
      });
      const conn = await connected;
      void conn.send(Buffer.alloc(size, 7)).catch(() => undefined);
      const serverClosing = conn.close(1000, 'done');
      const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
      // The peer takes some in the first closeTimeout, the rest (and our close frame) shortly
      // before the second check, and answers 600 ms after that: within closeTimeout of taking it.
      await sleep(300);
      const some = new Promise((r) => raw.socket.once('data', r));
      raw.socket.resume();
      await some;
      raw.socket.pause();
      await sleep(1400);
      raw.socket.resume();
      await all;
      expect(received).toBe(expected);
      expect(tail).toEqual(Buffer.from([0x88, 6, 0x03, 0xe8, ...Buffer.from('done')]));
      await sleep(600);
      raw.send({ opcode: 8, payload: closePayload(1000, 'done') });
      await serverClosing;
      expect([conn.closeStatus, conn.closeReason]).toEqual([1000, 'done']);
      await raw.closed;
      expect(raw.serverEndedFirst).toBe(true);
    } finally {
      for (const conn of sender.connections) conn.terminate();
      await sender.close();
    }
  });

  test('a peer that answered our close at once while a long handler held the loop past closeTimeout: its close frame counts (not aborted as 1006)', async () => {
    const raw = await RawClient.connect(server.port);
    const conn = await lastServerConn();
    const closed = new Promise<[number, string]>((resolve) => conn.once('close', (code, reason) => resolve([code, reason])));
    void conn.close(4000, 'bye');
    const close = await raw.readClose();
    expect(close?.code).toBe(4000);
    // The answer goes out at once; then the loop is held past closeTimeout (300 ms), and the
    // close timer comes due before the loop reads it.
    raw.send({ opcode: 8, payload: closePayload(4000, 'bye') });
    const end = Date.now() + 500;
    while (Date.now() < end);
    expect(await closed).toEqual([4000, 'bye']);
    expect(conn.closeStatus).toBe(4000);
    await raw.closed;
  });

  test('a close frame written (behind a sendStream()) after the close timer came due but before its check ran gets a whole closeTimeout (the stale check aborted it, 1006)', async () => {
    const raw = await RawClient.connect(server.port);
    const conn = await lastServerConn();
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    conn.on('message', () => open());
    const streaming = conn.sendStream(
      (async function* () {
        yield 'a';
        await gate;
      })(),
    );
    streaming.catch(() => undefined);
    expect((await raw.readFrame())?.payload.toString()).toBe('a');
    // The close frame waits behind the stream, whose source ends once the server reads 'go'.
    const closing = conn.close(1000, 'bye');
    raw.send({ opcode: 1, payload: 'go' });
    // The loop is held past closeTimeout (300 ms): the close timer comes due before the loop reads
    // 'go', and its check (an immediate) runs after that read, which writes the close frame and
    // gives the peer a new closeTimeout. The check of the old timer must not run then.
    const end = Date.now() + 500;
    while (Date.now() < end);
    const close = await raw.readClose();
    expect(close?.code).toBe(1000);
    raw.send({ opcode: 8, payload: closePayload(1000, 'bye') });
    await closing;
    await streaming;
    expect([conn.closeStatus, conn.closeReason]).toEqual([1000, 'bye']);
    await raw.closed;
    expect(raw.serverEndedFirst).toBe(true);
  });

  test('closeTimeout: Infinity waits for the peer to answer our close (it aborted after 1 ms, 1006)', async () => {
    let accepted: (conn: WebSocketConnection) => void;
    const connected = new Promise<WebSocketConnection>((resolve) => (accepted = resolve));
    const patient = await serve({ perMessageDeflate: false, closeTimeout: Infinity }, (conn) => accepted(conn));
    try {
      const raw = await RawClient.connect(patient.port);
      const conn = await connected;
      const closing = conn.close(4000, 'bye');
      expect((await raw.readClose())?.code).toBe(4000);
      // A peer that takes a moment to answer (more than the 1 ms that setTimeout made of Infinity).
      await new Promise((resolve) => setTimeout(resolve, 30));
      raw.send({ opcode: 8, payload: closePayload(4000, 'bye') });
      await closing;
      expect(conn.closeStatus).toBe(4000);
      expect(conn.closeReason).toBe('bye');
    } finally {
      await patient.close();
    }
  });

  test('close() behind a sendStream() whose source stalls is bounded by closeTimeout (it never resolved: server.close() hung)', async () => {
    const raw = await RawClient.connect(server.port);
    const conn = await lastServerConn();
    // A source that gives two chunks and then nothing, ever (a live feed gone quiet): both go out
    // as fragments as they come (before: the second was held for the fragment after it).
    const streaming = conn.sendStream(
      (async function* () {
        yield 'first';
        yield 'second';
        await new Promise<never>(() => undefined);
      })(),
    );
    streaming.catch(() => undefined);
    const first = await raw.readFrame();
    expect(first?.payload.toString()).toBe('first');
    expect(first?.fin).toBe(false);
    // The second is out too, ahead of the answer to a ping sent now.
    raw.send({ opcode: 9, payload: 'p' });
    const second = await raw.readFrame();
    expect([second?.opcode, second?.fin, second?.payload.toString()]).toEqual([0, false, 'second']);
    expect((await raw.readFrame())?.opcode).toBe(10);
    // The message cannot be finished: no close frame may follow its first fragment, so the
    // connection is aborted at closeTimeout (300 ms), 1006.
    await conn.close(1000, 'bye');
    expect(conn.readyState).toBe('closed');
    expect(conn.closeStatus).toBe(1006);
    await raw.closed;
  }, 10_000);

  test('close() behind a sendStream() whose source stalls is aborted at the first check, one closeTimeout after it (fake clock; the bytes the stream sent before close() counted as progress, so it took two)', async () => {
    const C = 1000;
    let accepted!: (conn: WebSocketConnection) => void;
    const connected = new Promise<WebSocketConnection>((resolve) => (accepted = resolve));
    const sender = await serve({ perMessageDeflate: false, closeTimeout: C }, (conn) => accepted(conn));
    try {
      const raw = await RawClient.connect(sender.port);
      const conn = await connected;
      const streaming = conn.sendStream(
        (async function* () {
          yield 'first';
          await new Promise<never>(() => undefined);
        })(),
      );
      streaming.catch(() => undefined);
      expect((await raw.readFrame())?.payload.toString()).toBe('first');
      // Only setTimeout is faked (the close timer): sockets, setImmediate and the event loop are real.
      jest.useFakeTimers({ doNotFake: ['Date', 'hrtime', 'nextTick', 'performance', 'queueMicrotask', 'setImmediate', 'clearImmediate', 'setInterval', 'clearInterval'] });
      const closing = conn.close(1000, 'bye');
      let settled = false;
      void closing.then(() => (settled = true));
      jest.advanceTimersByTime(C);
      // (The check runs in an immediate after its timer: see peerDeadline.)
      for (let i = 0; i < 3 && !settled; i++) await new Promise((resolve) => setImmediate(resolve));
      // Aborted there, the clock still at one closeTimeout (before: the check saw progress, and
      // the connection was left to a second one).
      expect([settled, conn.readyState, conn.closeStatus]).toEqual([true, 'closed', 1006]);
      jest.useRealTimers();
      await raw.closed;
    } finally {
      jest.useRealTimers();
      // (A failed check would leave the connection to a timer the fake clock took with it.)
      (await connected).terminate();
      await sender.close();
    }
  });

  test('close() behind a stalled sendStream() is bounded by closeTimeout while pings flow both ways (each pong or ping the peer took counted as progress: close() and server.close() never resolved)', async () => {
    const raw = await RawClient.connect(server.port);
    const conn = await lastServerConn();
    const streaming = conn.sendStream(
      (async function* () {
        yield 'first';
        await new Promise<never>(() => undefined);
      })(),
    );
    streaming.catch(() => undefined);
    expect((await raw.readFrame())?.payload.toString()).toBe('first');
    const closing = conn.close(1000, 'bye');
    await pingBothWaysUntilGone(raw, conn);
    await closing;
    expect(conn.readyState).toBe('closed');
    expect(conn.closeStatus).toBe(1006);
    await raw.closed;
  }, 10_000);

  test('a peer that takes what was sent before close(), then never answers our close frame but pings on, is aborted closeTimeout after taking it (each pong we wrote counted as progress: close() never resolved)', async () => {
    const raw = await RawClient.connect(server.port);
    raw.socket.pause();
    const conn = await lastServerConn();
    // A backlog when close() is called: the close timer then counts what the peer takes of it.
    void conn.send(Buffer.alloc(8 << 20, 7)).catch(() => undefined);
    const closing = conn.close(1000, 'bye');
    raw.socket.resume();
    expect((await raw.readClose())?.code).toBe(1000);
    // Everything of ours is taken, our close frame too; the peer pings on and never answers it.
    // Each ping is answered (RFC 6455 §5.5.2: the peer's close frame has not come) until the abort.
    for (;;) {
      raw.send({ opcode: 9, payload: 'p' });
      const frame = await raw.readFrame();
      if (frame === undefined) break;
      expect(frame.opcode).toBe(10);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await closing;
    expect([conn.readyState, conn.closeStatus]).toEqual(['closed', 1006]);
    await raw.closed;
  }, 10_000);

  test('a peer still sending a large message when we close, over a slow link, finishes it and then answers our close: the message arrives and the close is clean (aborted at closeTimeout, 1006, the message lost)', async () => {
    const raw = await RawClient.connect(server.port);
    const conn = await lastServerConn();
    const got: number[] = [];
    conn.on('message', (data) => got.push((data as Buffer).length));
    const bytes = frame({ opcode: 2, payload: Buffer.alloc(1 << 20, 5), mask: true });
    const piece = 16 << 10;
    raw.write(bytes.subarray(0, piece));
    const closing = conn.close(1000, 'bye');
    // 64 pieces 20 ms apart: several closeTimeouts (300 ms) in all, none of them without bytes.
    for (let at = piece; at < bytes.length; at += piece) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      raw.write(bytes.subarray(at, at + piece));
    }
    // Only now does the peer read what we sent: our close frame, which it answers.
    expect((await raw.readClose())?.code).toBe(1000);
    raw.send({ opcode: 8, payload: closePayload(1000) });
    await closing;
    expect([conn.readyState, conn.closeStatus]).toEqual(['closed', 1000]);
    expect(got).toEqual([1 << 20]);
    await raw.closed;
  }, 20_000);

  test('a peer that goes on sending messages after our close and never answers it is aborted once it has sent maxMessageSize since the close, plus closeTimeout', async () => {
    const small = await serve({ perMessageDeflate: false, closeTimeout: 300, maxMessageSize: 16 << 10 }, () => undefined);
    try {
      const raw = await RawClient.connect(small.port);
      const conn = [...small.connections][0]!;
      let got = 0;
      conn.on('message', () => got++);
      const closing = conn.close(1000, 'bye');
      // 1 KiB messages 10 ms apart, never reading: the first 16 KiB of them count as progress.
      let sent = 0;
      while (!raw.socket.destroyed && conn.readyState !== 'closed' && sent < 400) {
        raw.send({ opcode: 2, payload: Buffer.alloc(1024) });
        sent++;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      // Past the first check after the budget ran out, nothing more was waited for.
      expect(sent).toBeLessThan(16 + 3 * 30);
      await closing;
      expect([conn.readyState, conn.closeStatus]).toEqual(['closed', 1006]);
      expect(got).toBeGreaterThan(16);
      raw.destroy();
    } finally {
      await small.close();
    }
  }, 20_000);

  test('close() behind a sendStream() that sends once more after it, then stalls, is bounded by closeTimeout while pings flow both ways (after the check that saw the stream progress, the pings the peer took counted as progress)', async () => {
    const raw = await RawClient.connect(server.port);
    const conn = await lastServerConn();
    let closeCalled!: () => void;
    const called = new Promise<void>((resolve) => (closeCalled = resolve));
    const streaming = conn.sendStream(
      (async function* () {
        yield 'first';
        await called;
        yield 'second';
        await new Promise<never>(() => undefined);
      })(),
    );
    streaming.catch(() => undefined);
    expect((await raw.readFrame())?.payload.toString()).toBe('first');
    const closing = conn.close(1000, 'bye');
    closeCalled();
    expect((await raw.readFrame())?.payload.toString()).toBe('second');
    await pingBothWaysUntilGone(raw, conn);
    await closing;
    expect([conn.readyState, conn.closeStatus]).toEqual(['closed', 1006]);
    await raw.closed;
  }, 10_000);

  test('server closes first, the peer answers late in closeTimeout and never ends TCP: aborted closeTimeout after our close frame, not after its answer (fake clock)', async () => {
    const C = 1000;
    let accepted!: (conn: WebSocketConnection) => void;
    const connected = new Promise<WebSocketConnection>((resolve) => (accepted = resolve));
    const sender = await serve({ perMessageDeflate: false, closeTimeout: C }, (conn) => accepted(conn));
    const net = await import('node:net');
    // Half-open allowed: the server's FIN does not end our side, as a peer that never closes does.
    const peer = net.connect({ port: sender.port, host: '127.0.0.1', allowHalfOpen: true });
    peer.on('error', () => undefined);
    try {
      await new Promise((r) => peer.once('connect', r));
      let received = Buffer.alloc(0);
      peer.on('data', (chunk: Buffer) => (received = Buffer.concat([received, chunk])));
      peer.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      const conn = await connected;
      const socket = conn.transport.stream as Socket;
      jest.useFakeTimers({ doNotFake: ['Date', 'hrtime', 'nextTick', 'performance', 'queueMicrotask', 'setImmediate', 'clearImmediate', 'setInterval', 'clearInterval'] });
      const advance = async (ms: number): Promise<void> => {
        jest.advanceTimersByTime(ms);
        for (let i = 0; i < 2; i++) await new Promise((resolve) => setImmediate(resolve));
      };
      const turns = async (until: () => boolean): Promise<void> => {
        for (let i = 0; i < 1000 && !until(); i++) await new Promise((resolve) => setImmediate(resolve));
      };
      const ours = Buffer.from([0x88, 5, 0x0f, 0xa0, ...Buffer.from('bye')]);
      const closing = conn.close(4000, 'bye');
      await turns(() => received.subarray(-ours.length).equals(ours));
      expect(received.subarray(-ours.length)).toEqual(ours);
      await advance(C * 0.8);
      peer.write(frame({ mask: true, opcode: 8, payload: closePayload(4000, 'bye') }));
      await turns(() => conn.closeStatus !== undefined && socket.writableFinished);
      expect([conn.closeStatus, socket.writableFinished, socket.destroyed]).toEqual([4000, true, false]);
      // Our close frame went out 1.2 closeTimeouts ago: the wait for the peer's FIN is over.
      await advance(C * 0.4);
      jest.useRealTimers();
      expect(socket.destroyed).toBe(true);
      await closing;
      expect([conn.closeStatus, conn.closeReason]).toEqual([4000, 'bye']);
    } finally {
      jest.useRealTimers();
      peer.destroy();
      for (const conn of sender.connections) conn.terminate();
      await sender.close();
    }
  });

  test('client closes, server never ends TCP after its reply: the client gives up after closeTimeout', async () => {
    // A raw server: echoes the close frame, then keeps TCP open.
    const raw = await rawWsServer({
      onBytes: (socket, bytes) => {
        if (bytes.length >= 2 && (bytes[0]! & 0x0f) === 8) socket.write(frame({ opcode: 8, payload: closePayload(1000) }));
      },
    });
    try {
      const client = await connect(`ws://127.0.0.1:${raw.port}/`, { perMessageDeflate: false, closeTimeout: 200 });
      await client.close();
      expect(client.closeStatus).toBe(1000);
      expect(client.readyState).toBe('closed');
    } finally {
      await raw.close();
    }
  });

  test('client closes, the server never answers and only pings on: the client gives up at closeTimeout (pings after our close are not the peer finishing anything)', async () => {
    // A raw server: once the client's close frame comes, pings every 10 ms (unmasked, as a
    // server's frames are) and never answers it; 300 pings at most.
    let pings = 0;
    const raw = await rawWsServer({
      onBytes: (socket, bytes) => {
        if (bytes.length < 2 || (bytes[0]! & 0x0f) !== 8 || pings !== 0) return;
        const timer = setInterval(() => {
          if (socket.destroyed || ++pings >= 300) clearInterval(timer);
          else socket.write(frame({ opcode: 9, payload: 'keepalive' }));
        }, 10);
      },
    });
    try {
      const client = await connect(`ws://127.0.0.1:${raw.port}/`, { perMessageDeflate: false, closeTimeout: 200 });
      let pongs = 0;
      client.on('ping', () => pongs++);
      await client.close();
      expect([client.readyState, client.closeStatus]).toEqual(['closed', 1006]);
      expect(pongs).toBeGreaterThan(0);
      expect(pings).toBeLessThan(300);
    } finally {
      await raw.close();
    }
  });

  test('server closes first, then never ends TCP after the client answers: the client gives up after closeTimeout, with the server’s code', async () => {
    // A raw server: sends a close frame at once, then keeps TCP open whatever comes.
    const raw = await rawWsServer({ onUpgrade: (socket) => socket.write(frame({ opcode: 8, payload: closePayload(4001, 'server first') })) });
    try {
      const client = await connect(`ws://127.0.0.1:${raw.port}/`, { perMessageDeflate: false, closeTimeout: 200 });
      await client.whenClosed;
      expect([client.closeStatus, client.closeReason]).toEqual([4001, 'server first']);
    } finally {
      await raw.close();
    }
  });

  test('the peer closes first, then never ends TCP after our answer: the server gives up after closeTimeout, with the peer’s code', async () => {
    const net = await import('node:net');
    // Half-open allowed: the server's FIN does not end our side, as a peer that never closes does.
    const socket = net.connect({ port: server.port, host: '127.0.0.1', allowHalfOpen: true });
    socket.on('error', () => undefined);
    await new Promise((r) => socket.once('connect', r));
    socket.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    socket.resume();
    const conn = await lastServerConn();
    socket.write(frame({ mask: true, opcode: 8, payload: closePayload(4003, 'half open') }));
    try {
      await conn.whenClosed;
      expect([conn.closeStatus, conn.closeReason]).toEqual([4003, 'half open']);
    } finally {
      socket.destroy();
    }
  });

  test('close() behind a sendStream() whose source waits: closing at once, later sends reject, the stream and the close frame then go out in order', async () => {
    const raw = await RawClient.connect(server.port);
    const conn = await lastServerConn();
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const streaming = conn.sendStream(
      (async function* () {
        yield 'a';
        await gate;
        yield 'b';
      })(),
    );
    streaming.catch(() => undefined);
    const sentBefore = conn.send('before');
    expect((await raw.readFrame())?.payload.toString()).toBe('a');
    const closing = conn.close(4004, 'after the stream');
    expect(conn.readyState).toBe('closing');
    await expect(conn.send('after')).rejects.toBeInstanceOf(ConnectionClosedError);
    await expect(conn.sendStream((async function* () {
      yield 'late';
    })())).rejects.toBeInstanceOf(ConnectionClosedError);
    open();
    const payloads: string[] = [];
    for (let f = await raw.readFrame(); f !== undefined && f.opcode !== 8; f = await raw.readFrame()) payloads.push(f.payload.toString());
    expect(payloads).toContain('b');
    expect(payloads[payloads.length - 1]).toBe('before');
    raw.send({ opcode: 8, payload: closePayload(4004, 'after the stream') });
    await closing;
    await streaming;
    await sentBefore;
    expect([conn.closeStatus, conn.closeReason]).toEqual([4004, 'after the stream']);
  });
});

describe('a peer that closes while our queue is full', () => {
  test('its close frame waits behind the queued messages, unparsed, and is answered once the handler reads them; the connection ends at the peer’s FIN, not at closeTimeout', async () => {
    let accepted: (conn: WebSocketConnection) => void;
    const connected = new Promise<WebSocketConnection>((resolve) => (accepted = resolve));
    // A closeTimeout far past the test's own timeout (30 s): nothing may wait for it.
    const sender = await serve({ perMessageDeflate: false, readHighWaterMark: 1024, closeTimeout: 120_000 }, (conn) => accepted(conn));
    try {
      const raw = await RawClient.connect(Number(new URL(sender.url).port));
      const conn = await connected;
      const closed = new Promise<number>((resolve) => conn.once('close', (code: number) => resolve(code)));
      // Four messages past the queue's high-water mark and the close frame, in one write: what
      // follows the message that filled the queue is held back (backpressure on everything the
      // peer sent after it, as for what is still in the kernel).
      const frames = [0, 1, 2, 3].map((i) => frame({ opcode: 2, payload: Buffer.alloc(1024, i), mask: true }));
      raw.write(Buffer.concat([...frames, frame({ opcode: 8, payload: closePayload(1000, 'bye'), mask: true })]));
      // The handler reads: every message arrives, in order, then the close is answered.
      for (let i = 0; i < 4; i++) expect(await conn.recv()).toEqual(Buffer.alloc(1024, i));
      const reply = await raw.readClose();
      expect(reply?.code).toBe(1000);
      // The peer ends TCP after the closing handshake; the server sees it.
      raw.end();
      expect(await closed).toBe(1000);
    } finally {
      await sender.close();
    }
  });
});

describe('an abort right after the orderly end', () => {
  // Node cannot reset a socket whose shutdown it has asked libuv for and libuv has not done yet:
  // the reset fails (EINVAL), and Node emits an 'error' and never closes the handle. The server
  // ends its side as it answers the client's close; a terminate() (or the close timer) that came
  // then left the connection open for good, and server.close() never resolved.
  const schedules: Array<[string, (fn: () => void) => void]> = [
    ['a microtask', (fn) => queueMicrotask(fn)],
    ['process.nextTick', (fn) => process.nextTick(fn)],
    ['setImmediate', (fn) => setImmediate(fn)],
    ['setTimeout 0', (fn) => setTimeout(fn, 0)],
  ];
  test.each(schedules)('terminate() from %s after the close frame was answered: the connection and server.close() still resolve', async (_name, schedule) => {
    const conns: WebSocketConnection[] = [];
    const local = await serve({ perMessageDeflate: false, closeTimeout: 300 }, (conn) => {
      conns.push(conn);
      conn.on('error', () => undefined);
      // Runs as the message is parsed, before the close frame that came with it in one read.
      conn.on('message', () => schedule(() => conn.terminate()));
    });
    try {
      const raws: RawClient[] = [];
      for (let i = 0; i < 10; i++) {
        const raw = await RawClient.connect(local.port);
        raw.socket.on('error', () => undefined);
        raw.write(Buffer.concat([frame({ opcode: 1, payload: 'last words', mask: true }), frame({ opcode: 8, payload: closePayload(1000), mask: true })]));
        raws.push(raw);
      }
      for (let i = 0; i < 100 && conns.length < 10; i++) await new Promise((r) => setTimeout(r, 10));
      expect(conns).toHaveLength(10);
      const outcome = await Promise.race([
        Promise.all(conns.map((c) => c.whenClosed)).then(() => 'closed'),
        new Promise((r) => setTimeout(r, 3000, 'still open after 3 s')),
      ]);
      expect(outcome).toBe('closed');
      for (const raw of raws) raw.destroy();
    } finally {
      for (const conn of conns) if (!conn.closed) (conn as unknown as { stream: Socket }).stream.destroy();
    }
    const closed = await Promise.race([local.close().then(() => 'resolved'), new Promise((r) => setTimeout(r, 3000, 'pending'))]);
    expect(closed).toBe('resolved');
  });
});

describe('a ping that arrives after our close frame, before the peer\'s (RFC 6455 §5.5.2: a pong unless the peer\'s close came first)', () => {
  test('server: answered with its payload; then the peer\'s close ends the handshake', async () => {
    const raw = await RawClient.connect(server.port);
    const conn = await lastServerConn();
    const closed = conn.close(4001, 'bye');
    const first = await raw.readFrame();
    expect([first?.opcode, first?.payload.readUInt16BE(0)]).toEqual([8, 4001]);
    raw.send({ opcode: 9, payload: 'still there?', mask: true });
    const pong = await raw.readFrame();
    expect([pong?.opcode, pong?.payload.toString()]).toEqual([10, 'still there?']);
    raw.send({ opcode: 8, payload: closePayload(4001), mask: true });
    await closed;
    await raw.closed;
    expect([conn.closeStatus, raw.serverEndedFirst]).toEqual([4001, true]);
  });

  test('server: a ping after the peer\'s close frame is not answered', async () => {
    const raw = await RawClient.connect(server.port);
    const conn = await lastServerConn();
    // The peer's close and a ping behind it in one write: the close is answered, the ping is not.
    raw.write(Buffer.concat([frame({ opcode: 8, payload: closePayload(1000), mask: true }), frame({ opcode: 9, payload: 'late', mask: true })]));
    const { frames } = (await raw.readClose())!;
    await raw.closed;
    expect(frames.map((f) => f.opcode)).toEqual([8]);
    expect(conn.closeStatus).toBe(1000);
  });

  test('client: answered with a masked pong', async () => {
    const { createServer } = await import('node:net');
    const { acceptKey } = await import('rfc6455');
    const { decodeFrames } = await import('../helpers/frames.js');
    let received = Buffer.alloc(0);
    let peer!: Socket;
    const gotPong = new Promise<void>((resolve) => {
      const tcp = createServer((socket) => {
        peer = socket;
        let head = '';
        socket.on('data', (chunk: Buffer) => {
          if (!head.includes('\r\n\r\n')) {
            head += chunk.toString('latin1');
            const key = /sec-websocket-key: *(\S+)/i.exec(head)?.[1] ?? '';
            if (head.includes('\r\n\r\n')) socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`);
            return;
          }
          received = Buffer.concat([received, chunk]);
          const { frames } = decodeFrames(received);
          // Our close frame came: ping; the pong came: done.
          if (frames.length === 1 && frames[0]!.opcode === 8) socket.write(frame({ opcode: 9, payload: 'ping after close' }));
          if (frames.some((f) => f.opcode === 10)) resolve();
        });
      }).listen(0, '127.0.0.1');
      tcp.on('listening', async () => {
        const client = await connect(`ws://127.0.0.1:${(tcp.address() as { port: number }).port}/`);
        void client.close(1000).catch(() => undefined);
        client.on('close', () => tcp.close());
      });
    });
    await gotPong;
    const { frames } = decodeFrames(received);
    expect(frames.map((f) => [f.opcode, f.masked])).toEqual([
      [8, true],
      [10, true],
    ]);
    expect(frames[1]!.payload.toString()).toBe('ping after close');
    peer.end(frame({ opcode: 8, payload: closePayload(1000) }));
  });
});

describe('a connection made on a socket destroyed in the same turn', () => {
  // Its close is run from a microtask (the constructor sees the socket destroyed) and again at the
  // socket's own 'close', which comes later: the connection closes once.
  test("closes once: one 'close' event, 1006, after the socket's own 'close' too", async () => {
    const { createServer, connect: tcpConnect } = await import('node:net');
    const accepted: Socket[] = [];
    const tcp = createServer((socket) => void accepted.push(socket.on('error', () => undefined))).listen(0, '127.0.0.1');
    await new Promise((r) => tcp.once('listening', r));
    try {
      const socket = tcpConnect((tcp.address() as { port: number }).port, '127.0.0.1');
      await new Promise((r) => socket.once('connect', r));
      const socketClosed = new Promise((r) => socket.once('close', r));
      socket.destroy();
      const conn = new WebSocketConnection(socketTransport(socket), { side: 'client' });
      const closes: number[] = [];
      conn.on('close', (code) => void closes.push(code));
      await socketClosed;
      await conn.whenClosed;
      await new Promise((r) => setImmediate(r));
      expect(closes).toEqual([1006]);
    } finally {
      for (const s of accepted) s.destroy();
      tcp.close();
    }
  });
});
