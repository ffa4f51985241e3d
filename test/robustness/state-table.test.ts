/**
 * The connection's state machine against RFC 6455, as a table: state × incoming frame × side.
 *
 * Each cell opens a connection (our server against a raw client writing exact bytes, or our
 * client against a raw server), brings it to a state, writes one frame, then a sentinel ping "S"
 * and a close frame (1000), and records what came back until the TCP connection ended: the
 * frames we answered with, what reached the application, the close code reported, and which end
 * closed TCP first. Every cell is compared with what the RFC (quoted per row below) and
 * docs/connection.md say; the mismatches are listed all at once.
 *
 * Then the cells the table cannot reach with one frame: a pong held back while our writes are
 * backed up (RFC 6455 §5.5.3), which must still answer its ping around a close frame (§5.5.2);
 * a paused connection and a full queue; the TCP FIN and reset; a close waiting behind compression
 * (RFC 7692); and HTTP/2 (RFC 8441).
 */
import { createHash, randomBytes } from 'node:crypto';
import type { ClientHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { connect, serve, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { closePayload, frame, type DecodedFrame, type FrameSpec } from '../../packages/rfc6455/test/helpers/frames.js';
import { FrameReader, RawClient } from '../../packages/rfc6455/test/helpers/raw-client.js';
import { rawServer, requestKey, type RawServer } from '../../packages/rfc6455/test/helpers/raw-server.js';
import { closeSession, openSession, TLS } from '../http2/helpers.js';

/** What an incoming frame is, for the expectations. */
type Kind = 'data' | 'cont' | 'ping' | 'pong' | 'close' | 'bad';

interface Stimulus {
  spec: FrameSpec;
  kind: Kind;
  /** For `bad`: the code we fail with. For `close`: the code received (1005 for none). */
  code?: number;
  /** Sent with the mask bit the receiving side does not expect (RFC 6455 §5.1). */
  wrongMask?: boolean;
}

// The incoming frames (columns of the table), with the rule each one tests.
const STIMULI: Record<string, Stimulus> = {
  // §5.6: "Data frames (e.g., non-control frames) are identified by opcodes where the most
  // significant bit of the opcode is 0." Delivered whole.
  text: { spec: { opcode: 1, payload: 'T' }, kind: 'data' },
  binary: { spec: { opcode: 2, payload: 'B' }, kind: 'data' },
  // §5.4: "A fragmented message consists of a single frame with the FIN bit clear and an opcode
  // other than 0, followed by zero or more frames with the FIN bit clear and the opcode set to 0".
  // A continuation with no message under way breaks that: §7.1.7 fails the connection (1002).
  continuation: { spec: { opcode: 0, payload: 'C' }, kind: 'cont' },
  // §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in response,
  // unless it already received a Close frame." §5.5.3: "A Pong frame sent in response to a Ping
  // frame must have identical 'Application data' as found in the message body of the Ping frame."
  pingEmpty: { spec: { opcode: 9 }, kind: 'ping' },
  ping125: { spec: { opcode: 9, payload: 'p'.repeat(125) }, kind: 'ping' },
  // §5.5.3: "A Pong frame MAY be sent unsolicited. ... A response to an unsolicited Pong frame
  // is not expected."
  pongUnsolicited: { spec: { opcode: 10, payload: 'u' }, kind: 'pong' },
  // §5.5.1: "If an endpoint receives a Close frame and did not previously send a Close frame,
  // the endpoint MUST send a Close frame in response. (When sending a Close frame in response,
  // the endpoint typically echos the status code it received.)"
  close4001: { spec: { opcode: 8, payload: closePayload(4001, 'bye') }, kind: 'close', code: 4001 },
  // §7.1.5: "If this Close control frame contains no status code, _The WebSocket Connection
  // Close Code_ is considered to be 1005."
  closeNoCode: { spec: { opcode: 8 }, kind: 'close', code: 1005 },
  // §5.5.1: "If there is a body, the first two bytes of the body MUST be a 2-byte unsigned
  // integer ... representing a status code": one byte is not a valid close frame (1002).
  close1Byte: { spec: { opcode: 8, payload: Buffer.of(3) }, kind: 'bad', code: 1002 },
  // §7.4.1: 1005 "is a reserved value and MUST NOT be set as a status code in a Close control
  // frame by an endpoint" (Autobahn 7.9.x: fail with 1002).
  closeInvalidCode: { spec: { opcode: 8, payload: closePayload(1005) }, kind: 'bad', code: 1002 },
  // §5.5.1: "the data [after the code] ... is not guaranteed to be human readable" but "MUST
  // [be] UTF-8-encoded"; §8.1: "When an endpoint is to interpret a byte stream as UTF-8 but
  // finds that the byte stream is not, in fact, a valid UTF-8 stream, that endpoint MUST _Fail
  // the WebSocket Connection_" (1007).
  closeBadUtf8: { spec: { opcode: 8, payload: Buffer.concat([closePayload(1000), Buffer.of(0xff)]) }, kind: 'bad', code: 1007 },
  // §5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail the WebSocket
  // Connection_." (%x3-7 and %xB-F are reserved.)
  opcode3: { spec: { opcode: 3 }, kind: 'bad', code: 1002 },
  opcodeB: { spec: { opcode: 0xb }, kind: 'bad', code: 1002 },
  // §5.2: "If a nonzero value is received and none of the negotiated extensions defines the
  // meaning of such a nonzero value, the receiving endpoint MUST _Fail the WebSocket Connection_."
  rsv2: { spec: { opcode: 1, payload: 'R', rsv2: true }, kind: 'bad', code: 1002 },
  // §5.5: "All control frames MUST have a payload length of 125 bytes or less and MUST NOT be
  // fragmented."
  pingFragmented: { spec: { opcode: 9, fin: false }, kind: 'bad', code: 1002 },
  ping126: { spec: { opcode: 9, payload: 'x'.repeat(126) }, kind: 'bad', code: 1002 },
  // §5.1: "The server MUST close the connection upon receiving a frame that is not masked." and
  // "A client MUST close a connection if it detects a masked frame."
  wrongMask: { spec: { opcode: 1, payload: 'M' }, kind: 'bad', code: 1002, wrongMask: true },
};

/** The states (rows), brought about by the same steps on either side. */
type State = 'open' | 'midFragment' | 'sending' | 'closeSent' | 'closeBehindStream' | 'failed';
const STATES: State[] = ['open', 'midFragment', 'sending', 'closeSent', 'closeBehindStream', 'failed'];

/** The raw peer of a cell, whichever side it plays. */
interface Peer {
  /** Writes one frame, masked as that peer must (or the other way round with `wrongMask`). */
  send(spec: FrameSpec, wrongMask?: boolean): void;
  readFrame(): Promise<DecodedFrame | undefined>;
  /** Ends the peer's side of TCP (FIN). */
  end(): void;
  /** True once our side ended TCP before the peer did. */
  readonly oursEndedFirst: boolean;
  destroy(): void;
}

/** A source that gives one chunk, then waits for good: a sendStream() left under way. */
async function* stalled(): AsyncGenerator<Buffer> {
  yield Buffer.from('s1');
  await new Promise(() => undefined);
}

async function reach(state: State, conn: WebSocketConnection, peer: Peer): Promise<void> {
  switch (state) {
    case 'open':
      return;
    case 'midFragment':
      // §5.4: "control frames ... MAY be injected in the middle of a fragmented message."
      peer.send({ opcode: 1, payload: 'a', fin: false });
      return;
    case 'sending':
      conn.sendStream(stalled()).catch(() => undefined);
      expect((await peer.readFrame())?.fin).toBe(false);
      return;
    case 'closeSent':
      void conn.close(4000, 'ours');
      expect((await peer.readFrame())?.opcode).toBe(8);
      return;
    case 'closeBehindStream':
      // close() waits behind the stream: our close frame is not out (readyState `closing`).
      conn.sendStream(stalled()).catch(() => undefined);
      expect((await peer.readFrame())?.fin).toBe(false);
      void conn.close(4000, 'ours');
      return;
    case 'failed':
      // §8.1: invalid UTF-8 in a text message fails the connection with 1007.
      peer.send({ opcode: 1, payload: Buffer.of(0xff) });
      expect((await peer.readFrame())?.payload.readUInt16BE(0)).toBe(1007);
      return;
  }
}

function show(f: DecodedFrame): string {
  if (f.opcode === 8) return f.payload.length >= 2 ? `close ${f.payload.readUInt16BE(0)}` : 'close';
  const name = ({ 1: 'text', 2: 'binary', 9: 'ping', 10: 'pong' } as Record<number, string>)[f.opcode] ?? `op${f.opcode}`;
  return `${name}${f.fin ? '' : '~'} ${f.payload.length > 4 ? `${f.payload.length}B` : JSON.stringify(f.payload.toString())}`;
}

interface Outcome {
  /** What we wrote after the stimulus, in order. */
  out: string[];
  /** What reached the application. */
  events: string[];
  closeStatus: number | undefined;
  /** Our side ended TCP first. */
  oursFirst: boolean;
}

/** What RFC 6455 and docs/connection.md want in a cell. */
function expected(side: 'server' | 'client', state: State, name: string): Outcome {
  const s = STIMULI[name]!;
  const out: string[] = [];
  const events: string[] = [];
  if (state === 'failed') {
    // §7.1.7: "an endpoint that has been instructed to _Fail the WebSocket Connection_ MUST NOT
    // attempt to process further data (including a responding Close frame) from the remote
    // endpoint." Nothing is answered or delivered; the code stays ours. It closes TCP at once
    // (§7.1.7: "the endpoint MUST _Close the WebSocket Connection_"), the client too.
    return { out, events: ['error WS_INVALID_UTF8'], closeStatus: 1007, oursFirst: true };
  }
  const ourCloseSent = state === 'closeSent';
  // A continuation inside a message, a new data frame inside one (§5.4: "the fragments of one
  // message MUST NOT be interleaved between the fragments of another message").
  const kind: Kind | 'fail' =
    s.kind === 'cont' ? (state === 'midFragment' ? 'data' : 'fail') : s.kind === 'data' && state === 'midFragment' ? 'fail' : s.kind;
  const failCode = s.kind === 'bad' ? s.code! : 1002;
  if (kind === 'fail' || kind === 'bad') {
    // §7.1.7: "the endpoint SHOULD send a Close frame with an appropriate status code" ... once:
    // §5.5.1 "after sending a Close frame, the endpoint MUST NOT send any more data frames", and
    // a second close frame has nothing to say. The failure's code is reported (docs: closeStatus
    // "the code we failed the connection with"), an `error` event too.
    if (!ourCloseSent) out.push(`close ${failCode}`);
    events.push(`error ${failCode === 1007 ? 'WS_INVALID_UTF8' : 'WS_PROTOCOL_ERROR'}`);
    // TCP is closed at once (§7.1.7: "the endpoint MUST _Close the WebSocket Connection_"), by
    // the client too: it processes nothing more, so it waits for nothing.
    return { out, events, closeStatus: failCode, oursFirst: true };
  }
  if (kind === 'close') {
    // §5.5.1: answered with a close frame echoing the code, unless ours was sent already. Nothing
    // after it is processed: "the endpoint MUST NOT send any more data frames" applies to the
    // peer, and our sentinel pong is not written ("unless it already received a Close frame").
    if (!ourCloseSent) out.push(s.code === 1005 ? 'close' : `close ${s.code}`);
    // §7.1.1: "the server MUST close the underlying TCP connection immediately"... after the
    // closing handshake; "the client SHOULD wait for the server to close the connection".
    return { out, events, closeStatus: s.code, oursFirst: side === 'server' };
  }
  if (kind === 'data') {
    // §5.5.1: "It is possible that an endpoint will receive data after sending a Close frame":
    // delivered (docs: after close() the socket is read on, to the peer's close frame).
    events.push(state === 'midFragment' ? 'message text "aC"' : s.spec.opcode === 1 ? 'message text "T"' : 'message binary "B"');
  } else if (kind === 'ping') {
    // §5.5.2, also after our close frame: only the peer's close frame ends the duty.
    out.push(`pong ${name === 'pingEmpty' ? '""' : '125B'}`);
    events.push(`ping ${name === 'pingEmpty' ? 0 : 125}`);
  } else {
    // §5.5.3: an unsolicited pong is not answered; it is reported (`pong` event).
    events.push('pong 1');
  }
  // The sentinel ping, then the peer's close 1000: echoed unless ours went first. (Behind a
  // stream, our close frame had not gone out: the echo comes between fragments, §5.4, and the
  // reported code is the peer's, docs: "the code and reason of the close frame received").
  out.push('pong "S"');
  events.push('ping 1');
  if (!ourCloseSent) out.push('close 1000');
  return { out, events, closeStatus: 1000, oursFirst: side === 'server' };
}

function record(conn: WebSocketConnection): string[] {
  const events: string[] = [];
  conn.on('message', (data, binary) => events.push(`message ${binary ? 'binary' : 'text'} ${JSON.stringify(String(data))}`));
  conn.on('ping', (p) => events.push(`ping ${p.length}`));
  conn.on('pong', (p) => events.push(`pong ${p.length}`));
  conn.on('error', (e) => events.push(`error ${(e as { code?: string }).code}`));
  return events;
}

/** Runs one cell: the stimulus, a sentinel ping, the peer's close 1000; then reads to the end. */
async function runCell(conn: WebSocketConnection, peer: Peer, state: State, name: string, endOnClose: boolean): Promise<Outcome> {
  const events = record(conn);
  await reach(state, conn, peer);
  // (What reaching the state reported is not part of the cell, but for the failure itself.)
  events.length = 0;
  if (state === 'failed') events.push('error WS_INVALID_UTF8');
  const s = STIMULI[name]!;
  peer.send(s.spec, s.wrongMask);
  peer.send({ opcode: 9, payload: 'S' });
  peer.send({ opcode: 8, payload: closePayload(1000) });
  // The raw server ends TCP once both close frames crossed (as a server must, §7.1.1): after our
  // client's answer to its close, or, when the client's came first, once the client has read
  // everything (its pong to the sentinel) or at once if the stimulus was a close frame. It does
  // not end after a close frame that fails the connection: the client ends TCP then.
  if (endOnClose && state === 'closeSent' && s.kind === 'close') peer.end();
  const out: string[] = [];
  for (;;) {
    const f = await peer.readFrame();
    if (f === undefined) break;
    const shown = show(f);
    out.push(shown);
    if (endOnClose && (shown === 'close 1000' || (state === 'closeSent' && shown === 'pong "S"') || (s.kind === 'close' && shown.startsWith('close')))) peer.end();
  }
  await conn.whenClosed;
  peer.destroy();
  return { out, events, closeStatus: conn.closeStatus, oursFirst: peer.oursEndedFirst };
}

function rawClientPeer(raw: RawClient): Peer {
  return {
    send: (spec, wrongMask) => raw.write(frame({ ...spec, mask: wrongMask !== true })),
    readFrame: () => raw.readFrame(),
    end: () => raw.end(),
    get oursEndedFirst() {
      return raw.serverEndedFirst;
    },
    destroy: () => raw.destroy(),
  };
}

/** A raw server's end of one accepted connection (after its 101). */
class RawServerPeer implements Peer {
  private readonly frames: FrameReader;

  constructor(private readonly socket: Socket) {
    this.frames = new FrameReader(socket);
  }

  get oursEndedFirst(): boolean {
    return this.frames.peerEndedFirst;
  }

  send(spec: FrameSpec, wrongMask?: boolean): void {
    this.socket.write(frame({ ...spec, mask: wrongMask === true }));
  }

  async readFrame(): Promise<DecodedFrame | undefined> {
    const one = await this.frames.readFrame();
    // §5.1: "a client MUST mask all frames that it sends to the server".
    if (one) expect(one.masked).toBe(true);
    return one;
  }

  end(): void {
    this.frames.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** A raw server that accepts every upgrade (no extension) and hands over its end. */
async function acceptingRawServer(onPeer: (peer: RawServerPeer) => void): Promise<RawServer> {
  return rawServer((head, socket) => {
    const accept = createHash('sha1').update(`${requestKey(head)}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.removeAllListeners('data');
    onPeer(new RawServerPeer(socket));
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  });
}

function mismatch(cell: string, got: Outcome, want: Outcome): string | undefined {
  const a = JSON.stringify(got);
  const b = JSON.stringify(want);
  return a === b ? undefined : `${cell}\n   got  ${a}\n   want ${b}`;
}

describe('state × incoming frame, HTTP/1.1', () => {
  let server: WebSocketServer;
  let nextConn: (conn: WebSocketConnection) => void = () => undefined;

  beforeAll(async () => {
    server = await serve({ host: '127.0.0.1', port: 0, closeTimeout: 2000 }, (conn) => {
      conn.on('error', () => undefined);
      nextConn(conn);
    });
  });
  afterAll(() => server.close());

  test('our server: every cell as RFC 6455 says', async () => {
    const bad: string[] = [];
    for (const state of STATES) {
      for (const name of Object.keys(STIMULI)) {
        const accepted = new Promise<WebSocketConnection>((resolve) => (nextConn = resolve));
        const raw = await RawClient.connect(server.port);
        const got = await runCell(await accepted, rawClientPeer(raw), state, name, false);
        const problem = mismatch(`server ${state} × ${name}`, got, expected('server', state, name));
        if (problem !== undefined) bad.push(problem);
      }
    }
    expect(bad).toEqual([]);
  });

  test('our client: every cell as RFC 6455 says', async () => {
    let nextPeer: (peer: RawServerPeer) => void = () => undefined;
    const raw = await acceptingRawServer((peer) => nextPeer(peer));
    try {
      const bad: string[] = [];
      for (const state of STATES) {
        for (const name of Object.keys(STIMULI)) {
          const accepted = new Promise<RawServerPeer>((resolve) => (nextPeer = resolve));
          const conn = await connect(raw.url, { closeTimeout: 2000 });
          conn.on('error', () => undefined);
          const got = await runCell(conn, await accepted, state, name, true);
          const problem = mismatch(`client ${state} × ${name}`, got, expected('client', state, name));
          if (problem !== undefined) bad.push(problem);
        }
      }
      expect(bad).toEqual([]);
    } finally {
      await raw.close();
    }
  });
});

/** Frames until `stop` says so or TCP ends, shown. */
async function readUntil(read: () => Promise<DecodedFrame | undefined>, stop: (shown: string) => boolean): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    const f = await read();
    if (f === undefined) return out;
    const shown = show(f);
    out.push(shown);
    if (stop(shown)) return out;
  }
}

/** Every frame up to the server's end of TCP, its close frame 4000 answered (echoed) on the way. */
function untilServerEnd(raw: RawClient): Promise<string[]> {
  return readUntil(
    () => raw.readFrame(),
    (shown) => {
      if (shown === 'close 4000') raw.send({ opcode: 8, payload: closePayload(4000) });
      return false;
    },
  );
}

const masked = (spec: FrameSpec): Buffer => frame({ mask: true, ...spec });

describe('a pong held while our writes are backed up (RFC 6455 §5.5.3) still answers its ping (§5.5.2)', () => {
  // §5.5.3: "If an endpoint receives a Ping frame and has not yet sent Pong frame(s) in response
  // to previous Ping frame(s), the endpoint MAY elect to send a Pong frame for only the most
  // recently processed Ping frame." We keep the latest payload while the socket holds more than
  // writeHighWaterMark (docs/security.md) and answer on `drain`: that pong must still go out,
  // ahead of our close frame when the ping came before it (the peer reads nothing after our close
  // frame once its own was sent), after it when the ping came after it.
  // Each case: the peer's "go" makes the server send 64 KiB at once (the socket is corked while
  // the read is processed, so its buffer holds them: over the 1 KiB writeHighWaterMark), then a
  // ping "P" arrives in the same read, then what the case adds.
  const cases: Array<[string, Buffer[], string[]]> = [
    // The handler closes at "go" (our close frame is written before the ping is read): the pong
    // follows our close frame. (Fixed bug: dropped on `drain`, as our close frame had been sent.)
    ['a ping read after our close frame', [masked({ opcode: 1, payload: 'go close' }), masked({ opcode: 9, payload: 'P' })], ['binary 65536B', 'close 4000', 'pong "P"']],
    // The peer closes right behind its ping: the pong goes ahead of the echo. (Fixed bug: dropped,
    // the peer's close frame having come by the time of `drain`.)
    [
      'a ping followed by the peer’s close frame',
      [masked({ opcode: 1, payload: 'go' }), masked({ opcode: 9, payload: 'P' }), masked({ opcode: 8, payload: closePayload(4001) })],
      ['binary 65536B', 'pong "P"', 'close 4001'],
    ],
    // The handler closes at a later message: the pong goes ahead of our close frame. (Fixed bug:
    // dropped on `drain`.)
    [
      'a ping followed by our close()',
      [masked({ opcode: 1, payload: 'go' }), masked({ opcode: 9, payload: 'P' }), masked({ opcode: 1, payload: 'close' })],
      ['binary 65536B', 'pong "P"', 'close 4000'],
    ],
  ];

  let server: WebSocketServer;
  let nextConn: (conn: WebSocketConnection) => void = () => undefined;
  beforeAll(async () => {
    server = await serve({ host: '127.0.0.1', port: 0, writeHighWaterMark: 1024 }, (conn) => {
      conn.on('error', () => undefined);
      conn.on('message', (m) => {
        if (String(m).startsWith('go')) void conn.send(Buffer.alloc(64 * 1024));
        if (String(m).endsWith('close')) void conn.close(4000);
      });
      nextConn(conn);
    });
  });
  afterAll(() => server.close());

  test.each(cases)('our server, HTTP/1.1: %s', async (_name, bytes, want) => {
    const accepted = new Promise<WebSocketConnection>((resolve) => (nextConn = resolve));
    const raw = await RawClient.connect(server.port);
    const conn = await accepted;
    raw.write(Buffer.concat(bytes));
    // Everything up to the server's end of TCP (after our answer to its close frame, if it sent one).
    const out = await untilServerEnd(raw);
    await conn.whenClosed;
    raw.destroy();
    expect(out).toEqual(want);
  });

  test('our client: a ping followed by the server’s close frame', async () => {
    let nextPeer: (peer: RawServerPeer) => void = () => undefined;
    const rs = await acceptingRawServer((peer) => nextPeer(peer));
    try {
      const accepted = new Promise<RawServerPeer>((resolve) => (nextPeer = resolve));
      const conn = await connect(rs.url, { writeHighWaterMark: 1024 });
      conn.on('error', () => undefined);
      const peer = await accepted;
      conn.on('message', () => void conn.send(Buffer.alloc(64 * 1024)));
      peer.send({ opcode: 1, payload: 'go' });
      peer.send({ opcode: 9, payload: 'P' });
      peer.send({ opcode: 8, payload: closePayload(4001) });
      const out = await readUntil(() => peer.readFrame(), (shown) => shown.startsWith('close'));
      peer.end();
      await conn.whenClosed;
      expect(out).toEqual(['binary 65536B', 'pong "P"', 'close 4001']);
      expect(conn.closeStatus).toBe(4001);
    } finally {
      await rs.close();
    }
  });
});

describe('states the one-frame table does not reach (our server)', () => {
  let server: WebSocketServer;
  let nextConn: (conn: WebSocketConnection) => void = () => undefined;
  beforeAll(async () => {
    server = await serve({ host: '127.0.0.1', port: 0, readHighWaterMark: 1024, perMessageDeflate: true, closeTimeout: 2000 }, (conn) => {
      conn.on('error', () => undefined);
      nextConn(conn);
    });
  });
  afterAll(() => server.close());

  async function open(deflate = false): Promise<{ conn: WebSocketConnection; raw: RawClient; events: string[] }> {
    const accepted = new Promise<WebSocketConnection>((resolve) => (nextConn = resolve));
    const raw = await RawClient.connect(server.port, deflate ? { headers: ['Sec-WebSocket-Extensions: permessage-deflate'] } : {});
    const conn = await accepted;
    const events = record(conn);
    conn.on('close', (code) => events.push(`close ${code}`));
    return { conn, raw, events };
  }

  // Paused (pause(), or the queue past readHighWaterMark): what the peer sends waits unread (docs:
  // TCP backpressure), so a ping is answered once reading goes on; close() reads on at once
  // (docs: "close() on a paused connection still reads the peer's close frame"), and the ping
  // that waited is answered after our close frame (§5.5.2: the peer's close frame has not come).
  test.each(['pause()', 'a full queue'])('paused by %s: close() answers the ping that waited, then the handshake completes', async (how) => {
    const { conn, raw, events } = await open();
    if (how === 'pause()') {
      conn.on('message', () => undefined);
      conn.pause();
    }
    // Four 600-byte messages fill a 1 KiB queue; the ping behind them waits.
    const fill = how === 'pause()' ? [] : Array.from({ length: 4 }, () => masked({ opcode: 2, payload: Buffer.alloc(600) }));
    raw.write(Buffer.concat([...fill, masked({ opcode: 9, payload: 'P' })]));
    await new Promise((resolve) => setImmediate(resolve));
    expect(events).not.toContain('ping 1');
    void conn.close(4000);
    const first = await readUntil(() => raw.readFrame(), (shown) => shown === 'pong "P"');
    raw.send({ opcode: 8, payload: closePayload(4000) });
    const rest = await readUntil(() => raw.readFrame(), () => false);
    await conn.whenClosed;
    expect([...first, ...rest]).toEqual(['close 4000', 'pong "P"']);
    expect(conn.closeStatus).toBe(4000);
    expect(raw.serverEndedFirst).toBe(true);
    raw.destroy();
  });

  // The TCP FIN or reset without a close frame: §7.1.5 "If _The WebSocket Connection is Closed_
  // and no Close control frame was received by the endpoint ..., _The WebSocket Connection Close
  // Code_ is considered to be 1006." A reset is reported as an error (docs), a FIN is not; a
  // message under way fails its stream with that code (docs: recvStream()).
  test.each([
    ['open', 'FIN'],
    ['open', 'reset'],
    ['in the middle of a message', 'FIN'],
    ['in the middle of a message', 'reset'],
    ['after our close frame', 'FIN'],
    ['after our close frame', 'reset'],
  ])('%s, the peer’s TCP %s: 1006', async (state, how) => {
    const { conn, raw, events } = await open();
    const stream = conn.recvStream();
    if (state === 'in the middle of a message') {
      raw.send({ opcode: 2, payload: 'a', fin: false });
      const s = await stream;
      if (typeof s !== 'object') throw new Error('no stream');
      s.on('error', (e) => events.push(`stream error ${(e as { closeCode?: number }).closeCode}`)).resume();
    }
    if (state === 'after our close frame') {
      void conn.close(4000);
      expect(show((await raw.readFrame())!)).toBe('close 4000');
    }
    if (how === 'FIN') raw.end();
    else raw.socket.resetAndDestroy();
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1006);
    const wanted = [...(how === 'reset' ? ['error ECONNRESET'] : []), 'close 1006', ...(state === 'in the middle of a message' ? ['stream error 1006'] : [])];
    expect(events).toEqual(wanted);
    raw.destroy();
  });

  // close() behind a message being compressed in the thread pool (RFC 7692): our close frame is
  // not out. §5.5.2: a ping is answered at once (control frames go between, §5.5); §5.5.1: "An
  // endpoint MAY delay sending a Close frame until its current message is sent": the peer's close
  // frame is answered after the queued message (docs), echoing its code; a failure (§7.1.7) sends
  // its close frame at once and drops the queued message (its send() rejects).
  test.each([
    ['a ping', masked({ opcode: 9, payload: 'P' }), ['pong "P"', 'binary* 1MiB', 'close 4000'], 'ok', 4000],
    ['the peer’s close frame', masked({ opcode: 8, payload: closePayload(4001) }), ['binary* 1MiB', 'close 4001'], 'ok', 4001],
    ['a reserved opcode', masked({ opcode: 3 }), ['close 1002'], 'ConnectionClosedError', 1002],
  ] as Array<[string, Buffer, string[], string, number]>)('close() behind compression, then %s', async (_name, bytes, want, sendResult, code) => {
    const { conn, raw } = await open(true);
    const sent = conn.send(randomBytes(1024 * 1024)).then(
      () => 'ok',
      (e: Error) => e.name,
    );
    void conn.close(4000);
    expect(conn.readyState).toBe('closing');
    raw.write(bytes);
    const out = await untilServerEnd(raw);
    await conn.whenClosed;
    expect(out.map((s) => (s.startsWith('binary') ? 'binary* 1MiB' : s))).toEqual(want);
    expect(await sent).toBe(sendResult);
    expect(conn.closeStatus).toBe(code);
    raw.destroy();
  });
});

describe('HTTP/2 (RFC 8441), spot-checked', () => {
  // The same rules over a stream: a ping after our close frame is answered (§5.5.2), a held pong
  // goes ahead of the echo of the peer's close (§5.5.2, §5.5.3), a close frame is echoed
  // (§5.5.1), a reserved opcode fails with 1002 (§5.2); our END_STREAM ends each (RFC 8441 §5:
  // END_STREAM stands for the TCP FIN).
  test('closing handshake cells over a stream', async () => {
    let nextConn: (conn: WebSocketConnection) => void = () => undefined;
    const server = await serve({ host: '127.0.0.1', port: 0, http2: true, tls: TLS, writeHighWaterMark: 1024, closeTimeout: 2000 }, (conn) => {
      conn.on('error', () => undefined);
      conn.on('message', () => void conn.send(Buffer.alloc(64 * 1024)));
      nextConn(conn);
    });
    const session = await openSession(`https://127.0.0.1:${server.port}`);
    try {
      const cells: Array<[string, (conn: WebSocketConnection, stream: ClientHttp2Stream, peer: FrameReader) => Promise<void>, string[], number]> = [
        [
          'ping after our close frame',
          async (conn, stream, peer) => {
            void conn.close(4000);
            expect(show((await peer.readFrame())!)).toBe('close 4000');
            stream.write(masked({ opcode: 9, payload: 'P' }));
            stream.write(masked({ opcode: 8, payload: closePayload(4000) }));
          },
          ['pong "P"'],
          4000,
        ],
        [
          'held pong, then the peer’s close',
          async (_conn, stream) => {
            stream.write(Buffer.concat([masked({ opcode: 1, payload: 'go' }), masked({ opcode: 9, payload: 'P' }), masked({ opcode: 8, payload: closePayload(4001) })]));
          },
          ['binary 65536B', 'pong "P"', 'close 4001'],
          4001,
        ],
        ['reserved opcode', async (_conn, stream) => void stream.write(masked({ opcode: 0xb })), ['close 1002'], 1002],
      ];
      for (const [name, act, want, code] of cells) {
        const accepted = new Promise<WebSocketConnection>((resolve) => (nextConn = resolve));
        const stream = session.request(
          { ':method': 'CONNECT', ':protocol': 'websocket', ':scheme': 'https', ':path': '/', ':authority': `127.0.0.1:${server.port}`, 'sec-websocket-version': '13' },
          { endStream: false },
        );
        stream.on('error', () => undefined);
        const peer = new FrameReader(stream);
        const conn = await accepted;
        await act(conn, stream, peer);
        const out = await readUntil(() => peer.readFrame(), () => false);
        stream.end();
        await conn.whenClosed;
        expect([name, out, conn.closeStatus]).toEqual([name, want, code]);
        stream.close();
      }
    } finally {
      await closeSession(session);
      await server.close();
    }
  });
});
