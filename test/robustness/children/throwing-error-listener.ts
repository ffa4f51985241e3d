/**
 * Child of throwing-listeners.test.ts: a server connection whose `error` listener throws, in the
 * failure paths that run outside any call of the application (a frame received, a compression
 * finished), so the exception becomes an uncaughtException (the application's bug, counted here).
 * The library's own state must still be what it would have been: prints what the peers saw, one
 * line each, then `uncaught: …` for each exception; `timed out` if something never happened.
 *
 *   fail-rfc6455  a peer sends invalid UTF-8 (1007) and never closes its side
 *   fail-hybi00   the same over hybi-00
 *   shared        a compression shared by two connections (broadcast(), server_no_context_takeover)
 *                 finishes; writing it crosses maxBufferedAmount on the first one (a stalled one)
 *   queued        a send() waiting for its compression is written past maxBufferedAmount (on a
 *                 stalled connection)
 *   behind-stream a broadcast() message queued behind a sendStream() is written past
 *                 maxBufferedAmount when the stream ends
 *   client        a client's `message` listener throws (close 1011, `error` event), and so does its
 *                 `error` listener, with more frames in the same read
 *   http2-reset   an HTTP/2 WebSocket whose peer's TCP connection is reset (the stream's `error`)
 *   fail-inflated a peer's compressed message inflated in the thread pool is invalid UTF-8 (1007);
 *                 the peer answers the close frame and closes (closeTimeout is long here: the
 *                 connection must end at the peer's close, not at the timer)
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect as h2connect } from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import WebSocket from 'ws';
import { Duplex } from 'node:stream';
import { broadcast, connect, PerMessageDeflate, prepareMessage, serve, WebSocketConnection, type Transport } from 'rfc6455';
import { selfSignedCert } from '../helpers.js';

const mode = process.argv[2];
const uncaught: string[] = [];
process.on('uncaughtException', (error) => void uncaught.push((error as Error).message));
const timer = setTimeout(() => finish('timed out'), 3000);

function finish(last?: string): void {
  clearTimeout(timer);
  if (last !== undefined) console.log(last);
  for (const message of uncaught) console.log(`uncaught: ${message}`);
  process.exit(0);
}

const CAP = 4 * 1024 * 1024;
const conns: WebSocketConnection[] = [];
const server = await serve(
  {
    host: '127.0.0.1',
    port: 0,
    closeTimeout: mode === 'fail-inflated' ? 60_000 : 300,
    keepaliveInterval: 100,
    maxBufferedAmount: CAP,
    perMessageDeflate: mode === 'shared' ? { serverNoContextTakeover: true } : mode === 'queued' || mode === 'fail-inflated',
    ...(mode === 'http2-reset' ? { http2: true, tls: selfSignedCert() } : {}),
  },
  (conn) => {
    conn.on('error', (error) => {
      console.log(`error event: ${(error as { code?: string }).code}`);
      throw new Error(`listener threw on ${conns.indexOf(conn)}`);
    });
    conns.push(conn);
    if (mode === 'client') {
      // Written together: the large one is cut between two reads of the client.
      void conn.send('first');
      void conn.send('x'.repeat(200_000));
    }
  },
);

/** A raw peer that keeps its side open (allowHalfOpen) and records what it gets. */
async function rawPeer(head: string | Buffer): Promise<{ socket: Socket; received: () => Buffer }> {
  const socket = netConnect({ host: '127.0.0.1', port: server.port, allowHalfOpen: true });
  await once(socket, 'connect');
  let bytes = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => (bytes = Buffer.concat([bytes, chunk])));
  socket.write(head);
  while (conns.length === 0) await new Promise((r) => setImmediate(r));
  return { socket, received: () => bytes };
}

/**
 * A server connection with permessage-deflate over a transport whose writes never complete: a
 * peer that never reads, with no kernel buffer that could drain a little while a message is
 * compressed, so its buffered bytes are known to the byte. It negotiated what a serve()
 * connection with the same options negotiates (the same zlib setting: one shared compression).
 * Its `error` listener throws as the server's do.
 */
function stalledConnection(deflate: { serverNoContextTakeover: boolean }): WebSocketConnection {
  // Writes stay in flight until it is destroyed, then fail, as a socket's do when it closes.
  const inFlight: Array<(error: Error) => void> = [];
  const stalled = new Duplex({
    read() {},
    write(_chunk, _encoding, callback) {
      inFlight.push(callback);
    },
    destroy(error, callback) {
      for (const failed of inFlight.splice(0)) failed(new Error('write cancelled'));
      callback(error);
    },
  });
  const transport: Transport = {
    stream: stalled,
    kind: 'tcp',
    secure: false,
    localAddress: undefined,
    localPort: undefined,
    remoteAddress: undefined,
    remotePort: undefined,
    end: () => stalled.end(),
    abort: () => stalled.destroy(),
  };
  const params = { ...deflate, clientNoContextTakeover: false, serverMaxWindowBits: 15, clientMaxWindowBits: 15 };
  const conn = new WebSocketConnection(
    transport,
    {
      side: 'server',
      extensions: `permessage-deflate${deflate.serverNoContextTakeover ? '; server_no_context_takeover' : ''}`,
      extension: new PerMessageDeflate(params, 'server', { maxMessageSize: CAP }),
    },
    { maxBufferedAmount: CAP, closeTimeout: 300 },
  );
  conn.on('error', (error) => {
    console.log(`error event: ${(error as { code?: string }).code}`);
    throw new Error('listener threw on the stalled one');
  });
  return conn;
}

if (mode === 'fail-rfc6455' || mode === 'fail-hybi00') {
  const hybi00 = mode === 'fail-hybi00';
  const head = hybi00
    ? Buffer.concat([
        Buffer.from(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nOrigin: http://example.com\r\nSec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\nSec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n\r\n`),
        Buffer.from('^n:ds[4U'),
      ])
    : `GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;
  const peer = await rawPeer(head);
  const conn = conns[0]!;
  const ended = once(peer.socket, 'end');
  const closeEvent = new Promise<number>((resolve) => conn.on('close', resolve));
  // Invalid UTF-8 in a text frame: masked (key 0) for RFC 6455, 0x00 … 0xFF for hybi-00.
  peer.socket.write(hybi00 ? Buffer.from([0x00, 0xc0, 0x80, 0xff]) : Buffer.from([0x81, 0x82, 0, 0, 0, 0, 0xc0, 0x80]));
  await ended;
  const bytes = peer.received();
  const tail = bytes.subarray(bytes.indexOf('\r\n\r\n') + 4 + (hybi00 ? 16 : 0));
  console.log(hybi00 ? `closing frame: ${tail.toString('hex')}` : `close frame: ${tail.readUInt16BE(2)}`);
  console.log('peer got FIN');
  // The peer never ends its side: the close timer aborts the connection.
  console.log(`close event: ${await closeEvent}`);
  console.log(`open connections: ${server.connections.size}`);
  peer.socket.destroy();
  finish();
} else if (mode === 'fail-inflated') {
  const peer = new WebSocket(server.url, { perMessageDeflate: true });
  await once(peer, 'open');
  while (conns.length < 1) await new Promise((r) => setImmediate(r));
  const conn = conns[0]!;
  const closeEvent = new Promise<number>((resolve) => conn.on('close', resolve));
  const peerClosed = new Promise<number>((resolve) => peer.on('close', resolve));
  // 1 MiB of 0xff sent as text (ws does not check it): inflated in the thread pool (more than the
  // inline budget), then found not to be UTF-8.
  peer.send(Buffer.alloc(1 << 20, 0xff), { binary: false });
  console.log(`peer closed: ${await peerClosed}`);
  console.log(`close event: ${await closeEvent}`);
  console.log(`open connections: ${server.connections.size}`);
  finish();
} else if (mode === 'shared') {
  const first = stalledConnection({ serverNoContextTakeover: true });
  const reader = new WebSocket(server.url, { perMessageDeflate: true });
  const got: number[] = [];
  reader.on('message', (data: Buffer) => got.push(data.length));
  await once(reader, 'open');
  while (conns.length < 1) await new Promise((r) => setImmediate(r));
  const second = conns[0]!;
  first.send(randomBytes(64 * 1024), { compress: false }).catch(() => undefined);
  // Random bytes come out of deflate a little larger: sized to just fit `first` before, they
  // cross its maxBufferedAmount once compressed.
  const message = prepareMessage(randomBytes(CAP - first.bufferedAmount));
  console.log(`broadcast to ${broadcast([first, second], message)} (${message.compressions} compression)`);
  await second.send('after it');
  console.log('send behind it settled');
  while (got.length < 2) await new Promise((r) => setImmediate(r));
  console.log(`reader got ${got.join(', ')}`);
  finish();
} else if (mode === 'queued') {
  const conn = stalledConnection({ serverNoContextTakeover: false });
  conn.send(randomBytes(64 * 1024), { compress: false }).catch(() => undefined);
  const sent = conn.send(randomBytes(CAP - conn.bufferedAmount));
  await sent.then(
    () => console.log('send resolved'),
    (error: Error) => console.log(`send rejected: ${error.message}`),
  );
  await conn.whenClosed;
  console.log(`closed ${conn.closeStatus}`);
  finish();
} else if (mode === 'behind-stream') {
  const client = await connect(server.url, { perMessageDeflate: false });
  client.on('error', () => undefined);
  while (conns.length < 1) await new Promise((r) => setImmediate(r));
  const conn = conns[0]!;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const streamed = conn.sendStream(
    (async function* () {
      yield 'first';
      await gate;
    })(),
  );
  streamed.catch(() => undefined);
  while (conn.bufferedAmount > 0) await new Promise((r) => setImmediate(r));
  // Exactly the cap while it waits behind the stream (its payload); its frame, written when the
  // stream ends, is over it.
  console.log(`broadcast to ${broadcast([conn], prepareMessage(Buffer.alloc(CAP)))}`);
  release();
  await conn.whenClosed;
  console.log(`closed ${conn.closeStatus}`);
  // (The exception is thrown after the library's own work: from the next tick.)
  await new Promise((r) => setImmediate(r));
  client.terminate();
  finish();
} else if (mode === 'client') {
  const client = await connect(server.url, { perMessageDeflate: false });
  const got: number[] = [];
  client.on('message', (data) => {
    got.push(data.length);
    if (got.length === 1) throw new Error('message listener threw');
  });
  client.on('error', (error) => {
    console.log(`client error event: ${error.message}`);
    throw new Error('client error listener threw');
  });
  await client.whenClosed;
  await conns[0]!.whenClosed;
  console.log(`client got ${got.join(', ')}; closed ${client.closeStatus}, server saw ${conns[0]!.closeStatus}`);
  finish();
} else if (mode === 'http2-reset') {
  let tcp: Socket | undefined;
  const session = h2connect(server.url.replace('wss:', 'https:'), {
    createConnection: () => {
      tcp = netConnect(server.port, '127.0.0.1');
      return tlsConnect({ socket: tcp, ALPNProtocols: ['h2'], rejectUnauthorized: false });
    },
  });
  session.on('error', () => undefined);
  const client = await connect(server.url, { http2: session });
  client.on('error', () => undefined);
  while (conns.length < 1) await new Promise((r) => setImmediate(r));
  console.log(`over ${conns[0]!.transport.kind}`);
  const closeEvent = new Promise<number>((resolve) => conns[0]!.on('close', resolve));
  tcp!.resetAndDestroy();
  console.log(`close event: ${await closeEvent}`);
  await server.close();
  console.log(`server closed; open connections: ${server.connections.size}`);
  finish();
} else {
  finish(`unknown mode ${mode}`);
}
