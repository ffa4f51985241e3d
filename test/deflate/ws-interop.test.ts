/**
 * permessage-deflate interop with `ws` both ways over real sockets: a ws client against our
 * server, our client against a ws server, ws's perMessageDeflate on with each of its options
 * (context takeover, window bits, threshold) and off; small and large messages, text and binary,
 * fragmented messages each way, and the inflated-size limit against a ws sender.
 */
import type { IncomingMessage } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import WebSocket, { WebSocketServer, type PerMessageDeflateOptions as WsDeflateOptions } from 'ws';
import { connect, type WebSocketConnection } from 'rfc6455';
import { bytesRead, compressibleBytes, compressibleText, echoServer, extensionOf, type EchoServer } from './helpers.js';

const WS_OPTIONS: Array<[string, WsDeflateOptions]> = [
  ['defaults', {}],
  ['serverNoContextTakeover', { serverNoContextTakeover: true }],
  ['clientNoContextTakeover', { clientNoContextTakeover: true }],
  ['serverMaxWindowBits 10', { serverMaxWindowBits: 10 }],
  ['clientMaxWindowBits 9', { clientMaxWindowBits: 9 }],
  ['all four, windows 8', { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 8, clientMaxWindowBits: 8 }],
  ['threshold 0', { threshold: 0 }],
  // ws applies its threshold only in a direction without context takeover (ws lib/sender.js).
  ['threshold 1000000, no context takeover', { threshold: 1_000_000, serverNoContextTakeover: true, clientNoContextTakeover: true }],
  ['zlib level 1, memLevel 4', { zlibDeflateOptions: { level: 1, memLevel: 4 } }],
];

/** What a ws option set should negotiate (ws's defaults otherwise; window bits 15 when not set). */
function expectedParams(o: WsDeflateOptions) {
  return {
    serverNoContextTakeover: o.serverNoContextTakeover === true,
    clientNoContextTakeover: o.clientNoContextTakeover === true,
    serverMaxWindowBits: typeof o.serverMaxWindowBits === 'number' ? o.serverMaxWindowBits : 15,
    clientMaxWindowBits: typeof o.clientMaxWindowBits === 'number' ? o.clientMaxWindowBits : 15,
  };
}

const MESSAGES: Array<string | Buffer> = [
  'hi',
  compressibleText(1023),
  compressibleText(1024),
  compressibleText(40_000),
  compressibleBytes(2000),
  compressibleBytes(70_000),
  'ünïcødé ✓ 😀 '.repeat(1500),
  Buffer.alloc(0),
];

function wsOpen(url: string, options: WebSocket.ClientOptions): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** The next message a ws socket receives, as a string for text. */
function wsNext(ws: WebSocket): Promise<string | Buffer> {
  return new Promise((resolve, reject) => {
    const onClose = (code: number) => reject(new Error(`ws closed ${code}`));
    ws.once('close', onClose);
    ws.once('message', (data: Buffer, isBinary: boolean) => {
      ws.off('close', onClose);
      resolve(isBinary ? data : data.toString('utf8'));
    });
  });
}

function wsSend(ws: WebSocket, data: string | Buffer, options: { fin?: boolean; compress?: boolean; binary?: boolean } = {}): Promise<void> {
  return new Promise((resolve, reject) => ws.send(data, options, (err) => (err ? reject(err) : resolve())));
}

function wsClosed(ws: WebSocket): Promise<number> {
  return new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) resolve(-1);
    ws.once('close', (code: number) => resolve(code));
  });
}

function wsBytesRead(ws: WebSocket): number {
  return (ws as unknown as { _socket: Socket })._socket.bytesRead;
}

describe('ws client -> our server', () => {
  let s: EchoServer;
  const sockets: WebSocket[] = [];
  beforeEach(async () => {
    s = await echoServer();
  });
  afterEach(async () => {
    for (const ws of sockets.splice(0)) ws.terminate();
    await s.server.close();
  });

  test.each(WS_OPTIONS)('ws perMessageDeflate %s: negotiated as offered, messages round-trip, large ones compressed', async (_name, options) => {
    const ws = await wsOpen(s.url, { perMessageDeflate: options });
    sockets.push(ws);
    const server = await s.nth(0);
    expect(extensionOf(server)?.params).toEqual(expectedParams(options));
    expect(ws.extensions).toBe('permessage-deflate');
    for (const m of [...MESSAGES, ...MESSAGES]) {
      const up = bytesRead(server);
      const down = wsBytesRead(ws);
      await wsSend(ws, m, { binary: Buffer.isBuffer(m) });
      const echo = await wsNext(ws);
      expect(echo).toEqual(m);
      if (m.length >= 100_000) {
        if (options.threshold === 1_000_000) expect(bytesRead(server) - up).toBeGreaterThan(m.length);
        else expect(bytesRead(server) - up).toBeLessThan(m.length / 3);
        expect(wsBytesRead(ws) - down).toBeLessThan(m.length / 3); // our server compressed the echo
      }
    }
    // Fragmented, compressed by ws piecewise (the first fragment is over ws's threshold).
    const text = compressibleText(90_000, 4);
    const up = bytesRead(server);
    await wsSend(ws, text.slice(0, 30_000), { fin: false });
    await wsSend(ws, text.slice(30_000, 60_000), { fin: false });
    await wsSend(ws, text.slice(60_000), { fin: true });
    expect(await wsNext(ws)).toBe(text);
    if (options.threshold === 1_000_000) expect(bytesRead(server) - up).toBeGreaterThan(text.length);
    else expect(bytesRead(server) - up).toBeLessThan(text.length / 3);
    // Our server sends a fragmented compressed message to ws.
    const bytes = compressibleBytes(200_000, 9);
    const got = wsNext(ws);
    await server.sendStream([bytes], { fragmentSize: 32_768 });
    expect(await got).toEqual(bytes);
    ws.close(1000);
    expect(await wsClosed(ws)).toBe(1000);
  });

  test('ws client with perMessageDeflate off: nothing negotiated, messages round-trip plain', async () => {
    const ws = await wsOpen(s.url, { perMessageDeflate: false });
    sockets.push(ws);
    const server = await s.nth(0);
    expect(server.extensions).toBe('');
    expect(extensionOf(server)).toBeUndefined();
    const text = compressibleText(50_000);
    const down = wsBytesRead(ws);
    await wsSend(ws, text);
    expect(await wsNext(ws)).toBe(text);
    expect(wsBytesRead(ws) - down).toBeGreaterThan(50_000);
  });

  test('ws client sending a message inflating one byte over our maxMessageSize gets 1009', async () => {
    await s.server.close();
    s = await echoServer({ maxMessageSize: 512 * 1024 });
    const ws = await wsOpen(s.url, { perMessageDeflate: {} });
    sockets.push(ws);
    const server = await s.nth(0);
    await wsSend(ws, Buffer.alloc(512 * 1024, 3));
    expect(await wsNext(ws)).toEqual(Buffer.alloc(512 * 1024, 3));
    const closed = wsClosed(ws);
    await wsSend(ws, Buffer.alloc(512 * 1024 + 1, 3));
    expect(await closed).toBe(1009);
    const inflated = extensionOf(server)!.inflatedBytes - 512 * 1024;
    expect(inflated).toBeLessThanOrEqual(512 * 1024 + 64 * 1024);
  });
});

describe('our client -> ws server', () => {
  let wss: WebSocketServer;
  let url: string;
  const clients: WebSocketConnection[] = [];
  /** Bytes the ws server's sockets read, by connection order. */
  const serverSockets: Socket[] = [];

  async function startWs(perMessageDeflate: WsDeflateOptions | false): Promise<void> {
    wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate });
    await new Promise<void>((resolve) => wss.once('listening', resolve));
    url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`;
    wss.on('connection', (ws, req: IncomingMessage) => {
      serverSockets.push(req.socket as Socket);
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (!isBinary && data.toString() === 'fragments please') {
          const text = compressibleText(60_000, 2);
          ws.send(text.slice(0, 20_000), { fin: false });
          ws.send(text.slice(20_000, 40_000), { fin: false });
          ws.send(text.slice(40_000), { fin: true });
          return;
        }
        ws.send(data, { binary: isBinary });
      });
    });
  }

  afterEach(async () => {
    for (const c of clients.splice(0)) c.terminate();
    serverSockets.length = 0;
    for (const ws of wss.clients) ws.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  });

  test.each(WS_OPTIONS)('ws server perMessageDeflate %s: our client negotiates, messages round-trip, large ones compressed', async (_name, options) => {
    await startWs(options);
    const client = await connect(url);
    clients.push(client);
    expect(extensionOf(client)?.params).toEqual(expectedParams(options));
    const socket = serverSockets[0]!;
    for (const m of [...MESSAGES, ...MESSAGES]) {
      const up = socket.bytesRead;
      const down = bytesRead(client);
      await client.send(m);
      const echo = await client.recv();
      expect(echo).toEqual(m);
      if (m.length >= 100_000) {
        expect(socket.bytesRead - up).toBeLessThan(m.length / 3); // our client compressed
        if (options.threshold === 1_000_000) expect(bytesRead(client) - down).toBeGreaterThan(m.length);
        else expect(bytesRead(client) - down).toBeLessThan(m.length / 3);
      }
    }
    // Our fragmented compressed message, echoed whole by ws.
    const text = compressibleText(100_000, 6);
    const up = socket.bytesRead;
    await client.sendStream([text], { binary: false, fragmentSize: 8192 });
    expect(await client.recv()).toBe(text);
    expect(socket.bytesRead - up).toBeLessThan(text.length / 3);
    // ws's fragmented (compressed piecewise when over its threshold) message to us.
    await client.send('fragments please');
    expect(await client.recv()).toBe(compressibleText(60_000, 2));
    // compress:false is honoured towards ws too.
    const plainUp = socket.bytesRead;
    await client.send(text, { compress: false });
    expect(await client.recv()).toBe(text);
    expect(socket.bytesRead - plainUp).toBeGreaterThan(text.length);
    await client.close();
    expect(client.closeStatus).toBe(1000);
  });

  test('our client offering every parameter to a ws server with defaults: granted and round-trips', async () => {
    await startWs({});
    const client = await connect(url, {
      perMessageDeflate: { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 11, clientMaxWindowBits: 12 },
    });
    clients.push(client);
    expect(extensionOf(client)?.params).toEqual({ serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 11, clientMaxWindowBits: 12 });
    for (const m of MESSAGES) {
      await client.send(m);
      expect(await client.recv()).toEqual(m);
    }
  });

  test('ws server with perMessageDeflate off: nothing negotiated, messages round-trip plain', async () => {
    await startWs(false);
    const client = await connect(url);
    clients.push(client);
    expect(client.extensions).toBe('');
    expect(extensionOf(client)).toBeUndefined();
    const text = compressibleText(50_000);
    const up = serverSockets[0]!.bytesRead;
    await client.send(text);
    expect(await client.recv()).toBe(text);
    expect(serverSockets[0]!.bytesRead - up).toBeGreaterThan(50_000);
  });

  test('a ws server message inflating over our client maxMessageSize closes with 1009', async () => {
    await startWs({});
    const client = await connect(url, { maxMessageSize: 200_000 });
    clients.push(client);
    await client.send(Buffer.alloc(199_999, 1));
    expect(await client.recv()).toEqual(Buffer.alloc(199_999, 1));
    await client.send(Buffer.alloc(200_001, 1)).catch(() => undefined);
    await client.whenClosed;
    expect(client.closeStatus).toBe(1009);
  });
});
