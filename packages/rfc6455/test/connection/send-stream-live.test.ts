/**
 * sendStream() of a live source (an async generator, a Node stream: a token feed, a log tail):
 * each chunk goes out as a fragment as soon as the source gives it, and the message ends with an
 * empty final fragment once the source ends. (Fixed bug: each chunk's last fragment was held until
 * the next chunk came, so a peer reading the message as it arrives saw every chunk one step late,
 * and the last one before a pause only when the pause ended.) A synchronous source (an array)
 * has an end known without waiting: its last fragment carries FIN, with no empty frame after it.
 */
import type { Readable } from 'node:stream';
import { constants, inflateRawSync } from 'node:zlib';
import { connect, EOF, serve, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import type { DecodedFrame } from '../helpers/frames.js';
import { RawClient } from '../helpers/raw-client.js';

let server: WebSocketServer;
const serverConns: WebSocketConnection[] = [];
let accepted: ((conn: WebSocketConnection) => void) | undefined;

beforeAll(async () => {
  server = await serve({ port: 0, host: '127.0.0.1', closeTimeout: 1000 }, (conn) => {
    serverConns.push(conn);
    accepted?.(conn);
  });
});
afterEach(() => {
  for (const conn of serverConns.splice(0)) conn.terminate();
});
afterAll(() => server.close());

function nextServerConn(): Promise<WebSocketConnection> {
  return new Promise((resolve) => (accepted = resolve));
}

/**
 * Resolves once `has()` is true; rejects when a ping the sender writes now (behind everything it
 * has written) is answered before it is: the peer had not been sent what `has()` looks for.
 */
async function peerHas(sender: WebSocketConnection, has: () => boolean, what: string): Promise<void> {
  if (has()) return;
  await sender.ping();
  if (!has()) throw new Error(`the peer had not received ${what} when the pong to a ping sent after it came back`);
}

/** Reads the next message with recvStream(), appending its chunks to `into.text` as they arrive. */
async function readLive(conn: WebSocketConnection, into: { text: string; ended: boolean }): Promise<void> {
  const stream = (await conn.recvStream()) as Readable | EOF;
  if (stream === EOF) throw new Error('no message');
  stream.setEncoding('utf8');
  for await (const chunk of stream) into.text += chunk as string;
  into.ended = true;
}

describe('a peer reading with recvStream() gets each chunk before the source gives the next', () => {
  test.each([
    ['the client sends, no compression', 'client', false],
    ['the client sends, permessage-deflate', 'client', true],
    ['the server sends, no compression', 'server', false],
    ['the server sends, permessage-deflate', 'server', true],
  ] as const)('%s', async (_name, side, deflate) => {
    const serverSide = nextServerConn();
    const client = await connect(server.url, { perMessageDeflate: deflate });
    const peerOfClient = await serverSide;
    expect(client.extensions.includes('permessage-deflate')).toBe(deflate);
    const [sender, receiver] = side === 'client' ? [client, peerOfClient] : [peerOfClient, client];
    const got = { text: '', ended: false };
    const reading = readLive(receiver, got);
    const asked: string[] = [];
    async function* tokens(): AsyncGenerator<string> {
      yield 'first ';
      // The sender asks for the next chunk: the peer already has this one (before: it was held).
      await peerHas(sender, () => got.text === 'first ', "'first '");
      asked.push('second');
      yield 'second ';
      await peerHas(sender, () => got.text === 'first second ', "'second '");
      asked.push('third');
      yield 'thïrd';
      await peerHas(sender, () => got.text === 'first second thïrd', "'thïrd'");
      // Still open: the source has not ended, so neither has the message.
      expect(got.ended).toBe(false);
    }
    await sender.sendStream(tokens(), { binary: false });
    await reading;
    expect(got).toEqual({ text: 'first second thïrd', ended: true });
    expect(asked).toEqual(['second', 'third']);
    // The connection carries on: the message was finished, and the next one is whole.
    await sender.send('next');
    expect(await receiver.recv()).toBe('next');
    await client.close();
    expect(client.closeStatus).toBe(1000);
  });
});

describe('frames on the wire (a raw socket reader)', () => {
  async function rawPair(headers: string[] = []): Promise<{ raw: RawClient; conn: WebSocketConnection }> {
    const serverSide = nextServerConn();
    const raw = await RawClient.connect(server.port, { headers });
    return { raw, conn: await serverSide };
  }

  async function readFrames(raw: RawClient, n: number): Promise<DecodedFrame[]> {
    const frames: DecodedFrame[] = [];
    for (let i = 0; i < n; i++) frames.push((await raw.readFrame())!);
    return frames;
  }

  /** Frames up to and including the first that `last` accepts. */
  async function readUntil(raw: RawClient, last: (frame: DecodedFrame) => boolean): Promise<DecodedFrame[]> {
    const frames: DecodedFrame[] = [];
    for (;;) {
      const frame = (await raw.readFrame())!;
      frames.push(frame);
      if (last(frame)) return frames;
    }
  }

  const isPong = (frame: DecodedFrame): boolean => frame.opcode === 10;

  const layout = (frames: DecodedFrame[]): Array<[number, boolean, string]> => frames.map((f) => [f.opcode, f.fin, f.payload.toString()]);

  test('a live source: each chunk goes out at once in fragments of at most fragmentSize, then an empty final fragment', async () => {
    const { raw, conn } = await rawPair();
    let release!: () => void;
    const paused = new Promise<void>((resolve) => (release = resolve));
    let asked!: () => void;
    const waiting = new Promise<void>((resolve) => (asked = resolve));
    async function* source(): AsyncGenerator<string | Buffer> {
      yield 'abc';
      asked();
      await paused;
      yield Buffer.from('d');
      yield '';
    }
    const streamed = conn.sendStream(source(), { binary: false, fragmentSize: 2 });
    // The source was asked for its next chunk and waits: both fragments of the first chunk are out
    // (before: 'c' was held), ahead of the answer to a ping sent now, which goes between fragments.
    await waiting;
    raw.send({ opcode: 9, payload: 'between' });
    expect(layout(await readUntil(raw, isPong))).toEqual([
      [1, false, 'ab'],
      [0, false, 'c'],
      [10, true, 'between'],
    ]);
    release();
    await streamed;
    // (An empty chunk sends nothing.)
    expect(layout(await readFrames(raw, 2))).toEqual([
      [0, false, 'd'],
      [0, true, ''],
    ]);
    raw.destroy();
  });

  test('an async source of one chunk: a first fragment and an empty final one; of none: one empty message', async () => {
    const { raw, conn } = await rawPair();
    await conn.sendStream((async function* () {
      yield Buffer.from('only');
    })());
    await conn.sendStream((async function* () {})());
    await conn.send('end');
    expect(layout(await readUntil(raw, (frame) => frame.opcode === 1))).toEqual([
      [2, false, 'only'],
      [0, true, ''],
      [2, true, ''],
      [1, true, 'end'],
    ]);
    raw.destroy();
  });

  test('a synchronous source (an array): its end is known without waiting, so its last fragment carries FIN', async () => {
    const { raw, conn } = await rawPair();
    await conn.sendStream(['abc', 'd'], { binary: false, fragmentSize: 2 });
    await conn.sendStream([Buffer.from('x')]);
    await conn.sendStream([]);
    expect(layout(await readFrames(raw, 5))).toEqual([
      [1, false, 'ab'],
      [0, false, 'c'],
      [0, true, 'd'],
      [2, true, 'x'],
      [2, true, ''],
    ]);
    raw.destroy();
  });

  test('a string or bytes given whole: one chunk, cut at fragmentSize, its last fragment carries FIN', async () => {
    const { raw, conn } = await rawPair();
    // (Before: the string was iterated a character at a time, a fragment per character; bytes
    // were iterated as numbers, and refused with a TypeError.)
    await conn.sendStream('héllo', { binary: false, fragmentSize: 4 });
    await conn.sendStream(Buffer.from('xyz'));
    await conn.sendStream(new Uint8Array([0x61, 0x62]).buffer);
    await conn.sendStream('', { binary: false });
    expect(layout(await readFrames(raw, 5))).toEqual([
      [1, false, 'hél'],
      [0, true, 'lo'],
      [2, true, 'xyz'],
      [2, true, 'ab'],
      [1, true, ''],
    ]);
    raw.destroy();
  });

  test('permessage-deflate: one compressed stream, RSV1 on the first fragment only, each fragment decodable as it comes, the empty final one ends the message', async () => {
    const { raw, conn } = await rawPair(['Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover']);
    expect(conn.extensions).toMatch(/^permessage-deflate/);
    let release!: () => void;
    const paused = new Promise<void>((resolve) => (release = resolve));
    const text = 'stream me, stream me, stream me';
    let asked!: () => void;
    const waiting = new Promise<void>((resolve) => (asked = resolve));
    async function* source(): AsyncGenerator<string> {
      yield text;
      asked();
      await paused;
      yield ' and more';
    }
    const streamed = conn.sendStream(source(), { binary: false });
    // The first chunk is out while the source waits (ahead of the answer to a ping sent now), and
    // inflates to the whole chunk (a sync flush).
    await waiting;
    raw.send({ opcode: 9, payload: 'between' });
    const [first, pong] = await readUntil(raw, isPong);
    expect(pong?.opcode).toBe(10);
    expect([first!.opcode, first!.fin, first!.rsv]).toEqual([1, false, 4]);
    expect(inflateRawSync(first!.payload, { finishFlush: constants.Z_SYNC_FLUSH }).toString()).toBe(text);
    release();
    await streamed;
    const rest = await readFrames(raw, 2);
    expect(rest.map((f) => [f.opcode, f.fin, f.rsv])).toEqual([
      [0, false, 0],
      [0, true, 0],
    ]);
    // RFC 7692 §7.2.2: the message's payloads joined, with 0x00 0x00 0xff 0xff appended.
    const TAIL = Buffer.from([0, 0, 0xff, 0xff]);
    const message = Buffer.concat([first!.payload, ...rest.map((f) => f.payload), TAIL]);
    expect(inflateRawSync(message, { finishFlush: constants.Z_SYNC_FLUSH }).toString()).toBe(`${text} and more`);
    // The deflate stream stays whole for the next message (decoded by one inflater, as a peer
    // that takes the context over decodes it: an empty final payload would have cut a block).
    const again = text.repeat(100); // (over compressThreshold)
    await conn.send(again);
    const [next] = await readFrames(raw, 1);
    expect([next!.opcode, next!.fin, next!.rsv]).toEqual([1, true, 4]);
    const both = Buffer.concat([message, next!.payload, TAIL]);
    expect(inflateRawSync(both, { finishFlush: constants.Z_SYNC_FLUSH }).toString()).toBe(`${text} and more${again}`);
    raw.destroy();
  });
});

describe('a live source that fails', () => {
  test('after its first chunk (which went out at once): the promise rejects and the connection closes with 1011', async () => {
    const serverSide = nextServerConn();
    const client = await connect(server.url, { perMessageDeflate: false });
    const peer = await serverSide;
    const got = { text: '', ended: false };
    const reading = readLive(peer, got);
    reading.catch(() => undefined);
    async function* source(): AsyncGenerator<string> {
      yield 'only part';
      await peerHas(client, () => got.text === 'only part', "'only part'");
      throw new Error('late');
    }
    await expect(client.sendStream(source(), { binary: false })).rejects.toThrow('late');
    await client.whenClosed;
    expect(client.closeStatus).toBe(1011);
    await peer.whenClosed;
    expect(peer.closeStatus).toBe(1011);
    expect(got.ended).toBe(false);
  });
});
