/**
 * The interop tests that every peer library passes the same way, written once against a small
 * adapter per peer ({@link PeerEnd}: how it sends text and binary, what it received, how it pings
 * and which pong it reports, how it closes and which close it reports). Two directions:
 *
 * - the peer's client → our serve() (an echo server): {@link peerClientTests} registers the shared
 *   tests; {@link echoSizeTests} and {@link pipelineTest} stand alone for blocks that run them with
 *   their own settings (WebSocket-Node's fragmentation, undici's permessage-deflate);
 * - our connect() → the peer's server, which echoes: {@link ourClientTests}, and
 *   {@link ourClientSizeTests} on its own.
 *
 * Each test file keeps the tests only its peer has, those whose checks differ for its peer, and the
 * comments on its peer's quirks; the one quirk a shared test needs (the close frame the peer answers
 * ours with) is its adapter's `closeReply`, commented there.
 */
import { once } from 'node:events';
import { connect, EOF, type ConnectOptions, type Message, type WebSocketConnection } from 'rfc6455';
import { SIZES, UTF8_REASON, bytesOf, bytesRead, bytesWritten, closedStatus, echoServer, randomishBytes, textOfBytes, type Accepted, type EchoServer, type Inbox } from './peer-helpers.js';

/** A message as the peer received it: text as a string, binary as a Buffer. */
export type PeerMessage = string | Buffer;

/** A close code and reason, as the peer reports them or as a close frame carries them. */
export interface PeerClose {
  code: number;
  reason: string;
}

/** The peer library's end of one connection, seen through what every peer lets a test do. */
export interface PeerEnd {
  /** The messages it received, in order. */
  readonly messages: Inbox<PeerMessage>;
  sendText(text: string): void;
  sendBinary(bytes: Buffer): void;
  /** Resolves with the payload of the next ping it receives (ask before the ping is sent). */
  nextPing(): Promise<string>;
  /** Pings with `payload`; resolves with the payload of the pong it then reports. */
  ping(payload: string): Promise<string>;
  /** Starts its closing handshake. */
  close(code: number, reason: string): void;
  /** The close it reports once the connection is closed. */
  readonly closed: Promise<PeerClose>;
  /** The subprotocol it agreed on. */
  protocol(): string | null | undefined;
}

export function asText(m: PeerMessage): string {
  if (typeof m !== 'string') throw new Error(`expected text, got ${m.length} bytes of binary`);
  return m;
}
export function asBinary(m: PeerMessage): Buffer {
  if (typeof m === 'string') throw new Error(`expected binary, got text of ${m.length} chars`);
  return m;
}

// ---- The peer's client → our server ------------------------------------------------------------

/** A peer's client connected to one of our echo servers, and our side of the connection. */
export interface PeerClient extends PeerEnd {
  side: Accepted;
}

export interface PeerClientAdapter {
  /** The peer library, as test names call it. */
  name: string;
  /**
   * Opens the peer's client to the block's echo server (one that speaks chat.v2 and chat.v1),
   * offering `protocols` if given; resolves once our side has accepted the connection.
   */
  open(protocols?: string[]): Promise<PeerClient>;
}

export interface PeerClientSuite extends PeerClientAdapter {
  /** The close frame the peer answers a close frame of ours with. */
  closeReply(code: number, reason: string): PeerClose;
}

/**
 * The peer sends text (1- to 4-byte UTF-8) and binary of `size` bytes: both come back intact, and
 * our side received them with their types. Checks the last two messages our side received, so that
 * a test may round-trip several sizes on one connection.
 */
export async function echoRoundTrip(peer: PeerClient, size: number): Promise<void> {
  const text = textOfBytes(size);
  const bytes = bytesOf(size, size);
  peer.sendText(text);
  peer.sendBinary(bytes);
  const [echoedText, echoedBytes] = await peer.messages.take(2);
  expect(typeof echoedText).toBe('string');
  expect(echoedText === text).toBe(true);
  expect(asBinary(echoedBytes!).equals(bytes)).toBe(true);
  const [gotText, gotBytes] = peer.side.received.slice(-2);
  expect(gotText!.binary).toBe(false);
  expect(gotText!.data === text).toBe(true);
  expect(gotBytes!.binary).toBe(true);
  expect(Buffer.isBuffer(gotBytes!.data) && gotBytes!.data.equals(bytes)).toBe(true);
}

/** {@link echoRoundTrip} at every one of {@link SIZES}, each on a new connection `open` makes. */
export function echoSizeTests(open: () => Promise<PeerClient>): void {
  test.each([...SIZES])('text (1- to 4-byte UTF-8) and binary of %i bytes arrive intact and echo back', async (size) => {
    await echoRoundTrip(await open(), size);
  });
}

/** 1000 messages from the peer without waiting, echoed in order; then 1000 from our side. */
export function pipelineTest(open: () => Promise<PeerClient>): void {
  test('1000 pipelined messages each way arrive in order', async () => {
    const peer = await open();
    // Every third is binary, of 0 to 199 bytes: both sides of the 7-bit length's edge (125).
    for (let i = 0; i < 1000; i++) {
      if (i % 3 === 0) peer.sendBinary(bytesOf(i % 200, i));
      else peer.sendText(`message ${i} ✓`);
    }
    const echoed = await peer.messages.take(1000);
    echoed.forEach((m, i) => {
      if (i % 3 === 0) expect(asBinary(m).equals(bytesOf(i % 200, i))).toBe(true);
      else expect(m).toBe(`message ${i} ✓`);
    });
    expect(peer.side.received.map((r) => r.binary)).toEqual(echoed.map((m) => typeof m !== 'string'));

    // Our side sends 1000 without waiting; the peer gets them in order.
    for (let i = 0; i < 1000; i++) void peer.side.conn.send(`from us ${i} 😀`);
    expect(await peer.messages.take(1000)).toEqual(Array.from({ length: 1000 }, (_, i) => `from us ${i} 😀`));
  });
}

/** Our ping with a payload: the peer sees it, and our ping() resolves on its pong. */
export function wePingTest(p: PeerClientAdapter): void {
  test(`we ping with a payload: ${p.name} sees it, and our ping() resolves on its pong`, async () => {
    const peer = await p.open();
    const seen = peer.nextPing();
    expect(typeof (await peer.side.conn.ping('rfc6455 ping 😀'))).toBe('number');
    expect(await seen).toBe('rfc6455 ping 😀');
  });
}

/**
 * The peer sends a message of exactly our maxMessageSize (1000 bytes), then one over it, to an echo
 * server of its own that `open` connects to: we close with 1009, the peer reports 1009, and only the
 * first message reached our side.
 */
export async function overOurMaxMessageSize(open: (target: EchoServer) => Promise<PeerClient>): Promise<void> {
  const limited = await echoServer({ maxMessageSize: 1000 });
  try {
    const peer = await open(limited);
    peer.sendText('é'.repeat(500)); // 1000 bytes: at the limit
    expect(await peer.messages.next()).toBe('é'.repeat(500));
    peer.sendBinary(Buffer.alloc(1001));
    expect((await peer.closed).code).toBe(1009);
    expect((await closedStatus(peer.side.conn)).code).toBe(1009);
    expect(peer.side.received).toHaveLength(1);
  } finally {
    await limited.close();
  }
}

/**
 * We send `n` messages and close at once, without waiting: the peer reports every one, in order,
 * before it reports the close.
 */
export async function ourMessagesBeforeClose(peer: PeerClient & { readonly messagesBeforeClose: number }, n: number): Promise<void> {
  for (let i = 0; i < n; i++) void peer.side.conn.send(`from us ${i}`);
  await peer.side.conn.close(1000, 'done');
  await peer.closed;
  expect(peer.messagesBeforeClose).toBe(n);
  expect(await peer.messages.take(n)).toEqual(Array.from({ length: n }, (_, i) => `from us ${i}`));
}

/** The peer sends text that is not UTF-8 (`sendBadUtf8`): we fail with 1007, it reports 1007, and our side took no message. */
export async function notUtf8FromPeer(peer: PeerClient, sendBadUtf8: () => void): Promise<void> {
  sendBadUtf8();
  expect((await closedStatus(peer.side.conn)).code).toBe(1007);
  expect((await peer.closed).code).toBe(1007);
  expect(peer.side.received).toHaveLength(0);
}

/** The tests every peer's client passes the same way against our echo server. */
/**
 * The chunks from an async generator, as a live feed gives them: sendStream() sends each as it
 * comes and cannot know the last one is the last, so the message ends with an empty final fragment.
 */
async function* live<T>(chunks: T[]): AsyncGenerator<T> {
  for (const chunk of chunks) yield await Promise.resolve(chunk);
}

export function peerClientTests(p: PeerClientSuite): void {
  pipelineTest(() => p.open());

  test(`a message we fragment (sendStream) is reassembled by ${p.name}`, async () => {
    const peer = await p.open();
    const text = textOfBytes(20_003);
    await peer.side.conn.sendStream([text], { binary: false, fragmentSize: 7 }); // splits characters
    expect(asText(await peer.messages.next()) === text).toBe(true);
    const bytes = bytesOf(3 * 1024 * 1024, 1);
    await peer.side.conn.sendStream([bytes.subarray(0, 12345), bytes.subarray(12345)], { fragmentSize: 65536 });
    expect(asBinary(await peer.messages.next()).equals(bytes)).toBe(true);
    // A live source: chunks as they come (a surrogate pair cut between two), an empty final fragment.
    await peer.side.conn.sendStream(live([text.slice(0, 4004), text.slice(4004)]), { binary: false, fragmentSize: 1000 });
    expect(asText(await peer.messages.next()) === text).toBe(true);
    await peer.side.conn.sendStream(live([bytes.subarray(0, 10)]));
    expect(asBinary(await peer.messages.next()).equals(bytes.subarray(0, 10))).toBe(true);
  });

  test(`${p.name} pings with a payload: our side sees it, its pong event has the payload`, async () => {
    const peer = await p.open();
    const seen = once(peer.side.conn, 'ping') as Promise<[Buffer]>;
    const pong = peer.ping('peer ping ✓');
    expect((await seen)[0].toString()).toBe('peer ping ✓');
    expect(await pong).toBe('peer ping ✓');
  });

  wePingTest(p);

  test(`we close with a code and a UTF-8 reason: ${p.name} reports them`, async () => {
    const peer = await p.open();
    await peer.side.conn.close(4002, UTF8_REASON);
    expect(await peer.closed).toEqual({ code: 4002, reason: UTF8_REASON });
    // Our side records the close frame the peer answered with.
    expect(await closedStatus(peer.side.conn)).toEqual(p.closeReply(4002, UTF8_REASON));
  });

  test(`subprotocol: our server picks one ${p.name} offers; both sides agree`, async () => {
    const peer = await p.open(['other', 'chat.v1']);
    expect(peer.protocol()).toBe('chat.v1');
    expect(peer.side.conn.protocol).toBe('chat.v1');
  });
}

// ---- Our client → the peer's server ------------------------------------------------------------

/** A peer's echo server: its URL, and its end of each connection it accepts, in order. */
export interface PeerServer<P extends PeerEnd = PeerEnd> {
  url: string;
  accepted: Inbox<P>;
  close(): Promise<void>;
}

/** Our client connected to a peer's server, and the server's end of the connection. */
export interface OurClient<P extends PeerEnd = PeerEnd> {
  conn: WebSocketConnection;
  peer: P;
}

/**
 * connect() to a peer's server, for the enclosing `describe` block: every connection it opens is
 * closed after each test. Call it in the block's body; the function it returns is for the tests.
 */
export function ourClientConnector(): <P extends PeerEnd>(server: PeerServer<P>, options?: ConnectOptions) => Promise<OurClient<P>> {
  const conns = new Set<WebSocketConnection>();
  afterEach(async () => {
    for (const c of conns) if (!c.closed) await c.close().catch(() => undefined);
    conns.clear();
  });
  return async (server, options = {}) => {
    const conn = await connect(server.url, options);
    conns.add(conn);
    return { conn, peer: await server.accepted.next() };
  };
}

/** The next message on `conn`; throws if the connection ended instead. */
export async function recv(conn: WebSocketConnection): Promise<Message> {
  const m = await conn.recv();
  if (m === EOF) throw new Error('connection closed');
  return m;
}

export interface PeerServerSuite {
  /** The peer library, as test names call it. */
  name: string;
  /**
   * connect()s our client to the peer's echo server, with `options` (the server agrees to chat.v1
   * when offered it); the peer is the server's end of that connection.
   */
  open(options?: ConnectOptions): Promise<OurClient>;
  /** The close frame the peer answers a close frame of ours with. */
  closeReply(code: number, reason: string): PeerClose;
}

/** We send text (1- to 4-byte UTF-8) and binary of every one of {@link SIZES}: echoed intact, received intact. */
export function ourClientSizeTests(open: () => Promise<OurClient>): void {
  test.each([...SIZES])('text (1- to 4-byte UTF-8) and binary of %i bytes arrive intact and echo back', async (size) => {
    const { conn, peer } = await open();
    const text = textOfBytes(size);
    const bytes = bytesOf(size, size);
    void conn.send(text);
    void conn.send(bytes);
    const echoedText = await recv(conn);
    expect(typeof echoedText === 'string' && echoedText === text).toBe(true);
    const echoedBytes = await recv(conn);
    expect(Buffer.isBuffer(echoedBytes) && echoedBytes.equals(bytes)).toBe(true);
    const [gotText, gotBytes] = await peer.messages.take(2);
    expect(asText(gotText!) === text).toBe(true);
    expect(asBinary(gotBytes!).equals(bytes)).toBe(true);
  });
}

/** The tests our client passes the same way against every peer's echo server. */
export function ourClientTests(p: PeerServerSuite): void {
  test('1000 pipelined messages each way arrive in order', async () => {
    const { conn, peer } = await p.open();
    for (let i = 0; i < 1000; i++) void conn.send(i % 5 === 0 ? bytesOf(i % 40, i) : `msg ${i} ✓`);
    for (let i = 0; i < 1000; i++) {
      const m = await recv(conn);
      if (i % 5 === 0) expect(Buffer.isBuffer(m) && m.equals(bytesOf(i % 40, i))).toBe(true);
      else expect(m).toBe(`msg ${i} ✓`);
    }
    for (let i = 0; i < 1000; i++) peer.sendText(`from ${p.name} ${i} 😀`);
    const got: Message[] = [];
    for (let i = 0; i < 1000; i++) got.push(await recv(conn));
    expect(got).toEqual(Array.from({ length: 1000 }, (_, i) => `from ${p.name} ${i} 😀`));
  });

  test(`a message we fragment (sendStream) is reassembled by ${p.name}`, async () => {
    const { conn, peer } = await p.open();
    const text = textOfBytes(20_003);
    await conn.sendStream([text], { binary: false, fragmentSize: 5 });
    expect(await recv(conn)).toBe(text);
    expect(asText(await peer.messages.next()) === text).toBe(true);
    const bytes = bytesOf(2 * 1024 * 1024 + 1, 4);
    await conn.sendStream([bytes]);
    expect(((await recv(conn)) as Buffer).equals(bytes)).toBe(true);
    // A live source: chunks as they come (a surrogate pair cut between two), an empty final fragment.
    await conn.sendStream(live([text.slice(0, 4004), text.slice(4004)]), { binary: false, fragmentSize: 1000 });
    expect(await recv(conn)).toBe(text);
    await conn.sendStream(live([bytes.subarray(0, 10)]));
    expect(((await recv(conn)) as Buffer).equals(bytes.subarray(0, 10))).toBe(true);
  });

  test('pings both ways with payloads: each side sees the ping, the pinging side its pong', async () => {
    const { conn, peer } = await p.open();
    const seenByPeer = peer.nextPing();
    expect(typeof (await conn.ping('from rfc6455 ✓'))).toBe('number');
    expect(await seenByPeer).toBe('from rfc6455 ✓');
    const seen = once(conn, 'ping') as Promise<[Buffer]>;
    const pong = peer.ping(`from ${p.name} 😀`);
    expect((await seen)[0].toString()).toBe(`from ${p.name} 😀`);
    expect(await pong).toBe(`from ${p.name} 😀`);
  });

  test(`we close with a code and a UTF-8 reason: ${p.name} reports them`, async () => {
    const { conn, peer } = await p.open();
    await conn.close(4001, UTF8_REASON);
    expect(await peer.closed).toEqual({ code: 4001, reason: UTF8_REASON });
    // We record the close frame it answered with.
    expect({ code: conn.closeStatus, reason: conn.closeReason }).toEqual(p.closeReply(4001, UTF8_REASON));
  });

  test(`${p.name} closes with a code and a UTF-8 reason: both ends record them`, async () => {
    const { conn, peer } = await p.open();
    peer.close(4002, UTF8_REASON);
    expect(await conn.recv()).toBe(EOF);
    expect(await closedStatus(conn)).toEqual({ code: 4002, reason: UTF8_REASON });
    expect(await peer.closed).toEqual({ code: 4002, reason: UTF8_REASON });
  });

  test(`a message over our maxMessageSize: we close with 1009, ${p.name} reports 1009`, async () => {
    const { conn, peer } = await p.open({ maxMessageSize: 1000 });
    peer.sendBinary(Buffer.alloc(1000, 7));
    expect(await recv(conn)).toEqual(Buffer.alloc(1000, 7));
    peer.sendText('x'.repeat(1001));
    expect((await peer.closed).code).toBe(1009);
    expect((await closedStatus(conn)).code).toBe(1009);
  });

  test(`subprotocol: ${p.name} picks one we offer; both sides agree`, async () => {
    const { conn, peer } = await p.open({ protocols: ['other', 'chat.v1'] });
    expect(conn.protocol).toBe('chat.v1');
    expect(peer.protocol()).toBe('chat.v1');
  });
}

/** A compressible message: about 200 KB of repeated JSON-ish text with 4-byte characters. */
export const REPETITIVE = '{"name":"grüße 😀","values":[1,2,3,4,5]},'.repeat(5000);

/**
 * Repetitive and random data both ways on a connection with permessage-deflate, each message
 * echoed by whichever side is the server: all intact. What compresses is much smaller on the wire
 * in both directions (so both sides compressed it); what does not still round-trips. Each message
 * goes twice, so that a second copy can refer back to the first where the context is kept.
 */
export async function compressedEcho(conn: WebSocketConnection, peer: PeerEnd, peerIsServer: boolean): Promise<void> {
  /** The next message our side receives (from an echo server's side: seen as its listener sees it). */
  const ourNext = (): Promise<Message> => (peerIsServer ? recv(conn) : (once(conn, 'message') as Promise<[Message]>).then(([m]) => m));
  const same = (a: Message | PeerMessage, b: string | Buffer): boolean => (typeof b === 'string' ? a === b : Buffer.isBuffer(a) && a.equals(b));
  const random = randomishBytes(100_000, 7);
  for (const data of [REPETITIVE, random, REPETITIVE, random]) {
    const written = bytesWritten(conn);
    const read = bytesRead(conn);
    // Ours to the peer (and its echo when it is the server; ours reaches it when we are).
    await conn.send(data);
    expect(same(await peer.messages.next(), data)).toBe(true);
    if (peerIsServer) expect(same(await ourNext(), data)).toBe(true);
    // The peer's to us.
    const got = ourNext();
    if (typeof data === 'string') peer.sendText(data);
    else peer.sendBinary(data);
    expect(same(await got, data)).toBe(true);
    if (!peerIsServer) expect(same(await peer.messages.next(), data)).toBe(true);
    if (data === REPETITIVE) {
      // Two copies each way, uncompressed 400 KB and more.
      expect(bytesWritten(conn) - written).toBeLessThan(REPETITIVE.length / 5);
      expect(bytesRead(conn) - read).toBeLessThan(REPETITIVE.length / 5);
    }
  }
}
