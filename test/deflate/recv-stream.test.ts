/**
 * recvStream() of compressed messages: a message read as a stream is inflated as it is read, not
 * ahead of the reader. A stream that is not read holds about one output slice (its high-water
 * mark), however far the message inflates (a 32 MiB message sent as 32 KiB of zeros,
 * whole in one frame or in many small ones); reading it then yields every byte, and the message
 * after it arrives whole. A text message inflated in slices that split its characters is checked
 * as UTF-8 across them (1007 at a bad byte).
 *
 * Before, each frame was inflated whole into the stream: the 32 MiB were held while nobody read.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { constants, deflateRawSync } from 'node:zlib';
import { connect, EOF, serve, type ConnectOptions, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { frame } from '../../packages/rfc6455/test/helpers/frames.js';
import { RawClient } from '../../packages/rfc6455/test/helpers/raw-client.js';
import { extensionOf } from './helpers.js';

const MESSAGE = 32 * 1024 * 1024;
/**
 * What an unread stream may make the connection inflate: a slice (32 KiB) fills its high-water
 * mark; this allows a turn of slicing (256 KiB). Inflating whole frames ahead of the reader reached
 * the 32 MiB.
 */
const HELD = 256 * 1024;

let server: WebSocketServer;
const accepted: Array<(conn: WebSocketConnection) => void> = [];
const clients: WebSocketConnection[] = [];

beforeAll(async () => {
  server = await serve({ port: 0, host: '127.0.0.1', maxMessageSize: 64 * 1024 * 1024 }, (conn) => {
    accepted.shift()?.(conn);
  });
});
afterEach(() => {
  for (const c of clients.splice(0)) c.terminate();
});
afterAll(() => server.close());

/** A client connected with permessage-deflate, and the server's side of it. */
async function pair(options: ConnectOptions = {}): Promise<{ client: WebSocketConnection; conn: WebSocketConnection }> {
  const serverSide = new Promise<WebSocketConnection>((resolve) => accepted.push(resolve));
  const client = await connect(server.url, options);
  clients.push(client);
  const conn = await serverSide;
  expect(extensionOf(conn)).toBeDefined();
  return { client, conn };
}

/** A raw client that negotiated permessage-deflate (context takeover both ways), and the server's side of it. */
async function rawPair(): Promise<{ raw: RawClient; conn: WebSocketConnection }> {
  const serverSide = new Promise<WebSocketConnection>((resolve) => accepted.push(resolve));
  const raw = await RawClient.connect(Number(new URL(server.url).port), { headers: ['Sec-WebSocket-Extensions: permessage-deflate'] });
  const conn = await serverSide;
  expect(extensionOf(conn)).toBeDefined();
  return { raw, conn };
}

/** `data` compressed on its own and sync-flushed: pieces made this way may follow each other in one DEFLATE stream. */
function flushed(data: Buffer): Buffer {
  return deflateRawSync(data, { finishFlush: constants.Z_SYNC_FLUSH });
}

/** Waits until the server's inflation has stopped moving (unchanged for 4 checks 50 ms apart), and returns how far it got. */
async function settledInflation(conn: WebSocketConnection): Promise<number> {
  let last = -1;
  let still = 0;
  for (let i = 0; i < 200 && still < 4; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const now = extensionOf(conn)!.inflatedBytes;
    still = now === last ? still + 1 : 0;
    last = now;
  }
  return last;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * The unread stream `s` of a MESSAGE-byte message of `fill` bytes: the connection inflates no
 * more than HELD of it while nobody reads; read, it is whole, and 'after' comes next.
 */
async function heldThenWhole(conn: WebSocketConnection, s: Readable, fill: number): Promise<void> {
  const inflated = await settledInflation(conn);
  expect(inflated).toBeGreaterThan(0);
  expect(inflated).toBeLessThanOrEqual(HELD);
  expect(s.readableLength).toBeLessThanOrEqual(HELD);
  const body = await readAll(s);
  expect(body.length).toBe(MESSAGE);
  expect(body.equals(Buffer.alloc(MESSAGE, fill))).toBe(true);
  expect(await conn.recv()).toBe('after');
}

async function stream(conn: WebSocketConnection): Promise<Readable> {
  const s = await conn.recvStream();
  if (s === EOF) throw new Error(`closed: ${conn.closeStatus}`);
  return s;
}

test('a 32 MiB message in one compressed frame, not read yet, is not inflated ahead of its reader; read, it is whole, and the next message follows', async () => {
  const { client, conn } = await pair();
  const incoming = stream(conn);
  await client.send(Buffer.alloc(MESSAGE, 7));
  await client.send('after');
  await heldThenWhole(conn, await incoming, 7);
  expect(conn.readyState).toBe('open');
});

test('a 32 MiB message in 256 small compressed fragments, all arrived at once and not read yet, is not inflated ahead of its reader', async () => {
  const { raw, conn } = await rawPair();
  const incoming = stream(conn);
  const piece = flushed(Buffer.alloc(MESSAGE / 256, 3));
  const frames: Buffer[] = [];
  for (let i = 0; i < 256; i++) {
    const last = i === 255;
    // The last fragment goes without the 00 00 ff ff tail (RFC 7692 §7.2.1).
    const payload = last ? piece.subarray(0, piece.length - 4) : piece;
    frames.push(rawFrame(i === 0 ? 0x2 : 0x0, payload, last, i === 0));
  }
  frames.push(rawFrame(0x1, Buffer.from('after'), true, false));
  // One write: the whole message (about 40 KiB on the wire) reaches the server in one or two reads.
  raw.write(Buffer.concat(frames));
  await heldThenWhole(conn, await incoming, 3);
  raw.destroy();
});

test('a large text message inflated in slices that split its characters streams intact', async () => {
  const { client, conn } = await pair();
  const incoming = stream(conn);
  // 1, 2, 3 and 4-byte characters: slice ends fall inside characters.
  const text = 'aé€😀'.repeat((8 * 1024 * 1024) / 10);
  await client.send(text);
  const body = await readAll(await incoming);
  expect(body.length).toBe(Buffer.byteLength(text));
  expect(body.toString('utf8') === text).toBe(true);
});

test('invalid UTF-8 at the end of a large compressed text message read as a stream closes with 1007', async () => {
  const { raw, conn } = await rawPair();
  const incoming = stream(conn);
  const bytes = Buffer.concat([Buffer.from('é'.repeat(2 * 1024 * 1024)), Buffer.from([0xc3, 0x28])]);
  const payload = flushed(bytes);
  raw.write(rawFrame(0x1, payload.subarray(0, payload.length - 4), true, true));
  const s = await incoming;
  const failed = new Promise<Error>((resolve) => s.once('error', resolve));
  let received = 0;
  s.on('data', (chunk: Buffer) => (received += chunk.length));
  const close = await raw.readClose();
  expect(close?.code).toBe(1007);
  await failed;
  // Everything before the bad byte was handed over (4 MiB of 'é'), nothing after it.
  expect(received).toBeLessThanOrEqual(bytes.length - 2);
  expect(conn.closeStatus).toBe(1007);
  raw.destroy();
});

/** A masked client frame (RSV1 on the first frame of a compressed message). */
function rawFrame(opcode: number, payload: Buffer, fin: boolean, rsv1: boolean): Buffer {
  return frame({ opcode, payload, fin, rsv1, mask: true });
}

test('a stream destroyed before its compressed message is read: the rest is inflated and dropped, and the next message arrives', async () => {
  const { client, conn } = await pair();
  const incoming = stream(conn);
  await client.send(Buffer.alloc(MESSAGE, 5));
  await client.send('after');
  const s = await incoming;
  expect(await settledInflation(conn)).toBeLessThanOrEqual(HELD);
  s.destroy();
  // The context runs on (takeover): the next message inflates right after the dropped one.
  expect(await conn.recv()).toBe('after');
  expect(extensionOf(conn)!.inflatedBytes).toBeGreaterThanOrEqual(MESSAGE);
});

test('close() while a compressed message waits for its reader: the closing handshake completes cleanly', async () => {
  const { client, conn } = await pair();
  const incoming = stream(conn);
  await client.send(Buffer.alloc(MESSAGE, 9));
  const s = await incoming;
  expect(await settledInflation(conn)).toBeLessThanOrEqual(HELD);
  // The client answers our close frame at once; the server reads on to it past the held message.
  await conn.close(1000, 'bye');
  expect(conn.closeStatus).toBe(1000);
  await client.whenClosed;
  expect(client.closeStatus).toBe(1000);
  // What was read before the close is whole: everything the client sent, then the end.
  expect((await readAll(s)).length).toBe(MESSAGE);
});

test('close() while the unread stream of a compressed message is still arriving: the rest is handed over, the peer\'s close frame is read, and the close is clean', async () => {
  // Our client reads the stream (its closeTimeout short, so that a stall shows as 1006 at once).
  const { client, conn } = await pair({ closeTimeout: 1000, maxMessageSize: 64 * 1024 * 1024 });
  const incoming = stream(client);
  // Incompressible: about 4 MiB on the wire, one frame that arrives in many reads.
  const body = randomBytes(4 * 1024 * 1024);
  const sent = conn.send(body);
  const s = await incoming;
  // Before, each read after the close filled the unread stream and paused the socket again: the
  // server's answer was never read, and the close was aborted at closeTimeout (1006).
  await client.close(1000, 'bye');
  expect(client.closeStatus).toBe(1000);
  await sent;
  expect((await readAll(s)).equals(body)).toBe(true);
});

test('close() queued behind a send being compressed while the stream of a compressed message is unread: the peer\'s close frame is read, and the close is clean', async () => {
  // closeTimeout bounds reading on to the peer's answer, behind 32 MiB to inflate here: well under
  // a second alone, but it once took more in a full test run on a loaded machine (1006).
  const { client, conn } = await pair({ closeTimeout: 5000, maxMessageSize: 64 * 1024 * 1024 });
  const incoming = stream(client);
  const received = conn.send(Buffer.alloc(MESSAGE, 2));
  const s = await incoming;
  // Over syncLimit: compressed in the thread pool, and the close frame waits behind it. Before,
  // the stream was still full when that close frame went out (only a close frame already written
  // let it hand over the rest): the server's answer was never read, and the close was 1006.
  const sent = client.send(Buffer.alloc(4 * 1024 * 1024, 3));
  await client.close(1000, 'bye');
  expect(client.closeStatus).toBe(1000);
  await sent;
  await received;
  expect((await readAll(s)).length).toBe(MESSAGE);
});
