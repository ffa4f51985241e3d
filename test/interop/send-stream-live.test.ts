/**
 * sendStream() of a live source (an async generator: each chunk goes out as it comes, and the
 * message ends with an empty final fragment, compressed or not) as independent implementations
 * receive it: `ws` as client and as server, and Python's `websockets` (/usr/bin/python3) as a
 * server, with permessage-deflate and without. The messages are compared whole; several follow
 * one another so that a compressed message's end is checked against the context the next one uses.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import WebSocket, { WebSocketServer as WsServer } from 'ws';
import { connect, EOF, serve, type Message, type WebSocketConnection } from 'rfc6455';

/** The chunks from an async generator, as a live feed gives them. */
async function* live<T>(chunks: T[]): AsyncGenerator<T> {
  for (const chunk of chunks) yield await Promise.resolve(chunk);
}

const euro = Buffer.from('€');
/** Compressible text over the thread-pool threshold of the compressor. */
const long = 'live feed, token by token; '.repeat(4000);
const bytes = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i % 251) ^ (i >> 10)));

/** What the scenario sends, and what the peer must have received. */
const EXPECTED: Message[] = ['héllo wörld € ✓😀', long, bytes, Buffer.alloc(0), 'after', long];

/** Sends the scenario's messages over `conn`: live sources, then a plain send, then one more stream. */
async function sendScenario(conn: WebSocketConnection): Promise<void> {
  // Text whose chunks cut a character (a Buffer chunk) and a surrogate pair (a string chunk).
  await conn.sendStream(live<string | Buffer>(['héllo ', 'wörld ', euro.subarray(0, 1), euro.subarray(1), ' ✓\ud83d', '\ude00']), { binary: false });
  await conn.sendStream(live([long.slice(0, 50_000), long.slice(50_000)]), { binary: false, fragmentSize: 16_384 });
  // One chunk: a first fragment, then an empty final one.
  await conn.sendStream(live([bytes]));
  // No chunk: one empty message.
  await conn.sendStream(live<Buffer>([]));
  await conn.send('after');
  await conn.sendStream(live([long]), { binary: false });
}


describe.each([
  ['permessage-deflate', true],
  ['no compression', false],
] as const)('ws receives live-streamed messages (%s)', (_name, deflate) => {
  test('ws client ← our server', async () => {
    let ready!: (conn: WebSocketConnection) => void;
    const done = new Promise<WebSocketConnection>((resolve) => (ready = resolve));
    const server = await serve({ port: 0, host: '127.0.0.1', perMessageDeflate: deflate }, (conn) => ready(conn));
    try {
      const ws = new WebSocket(server.url, { perMessageDeflate: deflate });
      const got: Array<string | Buffer> = [];
      const all = new Promise<void>((resolve, reject) => {
        ws.on('message', (data: Buffer, isBinary: boolean) => {
          got.push(isBinary ? data : data.toString());
          if (got.length === EXPECTED.length) resolve();
        });
        ws.on('close', (code) => reject(new Error(`ws closed ${code}`)));
      });
      const conn = await done;
      expect(conn.extensions.includes('permessage-deflate')).toBe(deflate);
      await sendScenario(conn);
      await all;
      expect(got).toEqual(EXPECTED);
      await conn.close();
      expect(conn.closeStatus).toBe(1000);
    } finally {
      await server.close();
    }
  });

  test('our client → ws server (echoing)', async () => {
    const wss = new WsServer({ port: 0, host: '127.0.0.1', perMessageDeflate: deflate });
    await new Promise<void>((resolve) => wss.once('listening', resolve));
    const got: Array<string | Buffer> = [];
    wss.on('connection', (ws) => {
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        got.push(isBinary ? data : data.toString());
        ws.send(data, { binary: isBinary });
      });
    });
    try {
      const conn = await connect(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`, { perMessageDeflate: deflate });
      expect(conn.extensions.includes('permessage-deflate')).toBe(deflate);
      await sendScenario(conn);
      const echoed: Array<Message | typeof EOF> = [];
      for (let i = 0; i < EXPECTED.length; i++) echoed.push(await conn.recv());
      expect(got).toEqual(EXPECTED);
      expect(echoed).toEqual(EXPECTED);
      await conn.close();
      expect(conn.closeStatus).toBe(1000);
    } finally {
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    }
  });
});

describe('Python websockets receives live-streamed messages', () => {
  let child: ChildProcessWithoutNullStreams | undefined;
  afterEach(() => {
    child?.kill('SIGKILL');
    child = undefined;
  });

  test.each([
    ['deflate', true],
    ['none', false],
  ] as const)('our client → its echo server (compression %s)', async (compression, deflate) => {
    child = spawn('/usr/bin/python3', [join(__dirname, 'py', 'server.py'), compression], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const first = await lines.next();
    if (first.done === true) throw new Error(`python exited: ${stderr}`);
    const listening = JSON.parse(first.value as string) as { event: string; port: number };
    expect(listening.event).toBe('listening');
    const conn = await connect(`ws://127.0.0.1:${listening.port}/`, { perMessageDeflate: deflate });
    expect(conn.extensions.includes('permessage-deflate')).toBe(deflate);
    await sendScenario(conn);
    const echoed: Array<Message | typeof EOF> = [];
    for (let i = 0; i < EXPECTED.length; i++) echoed.push(await conn.recv());
    expect(echoed).toEqual(EXPECTED);
    await conn.close();
    // (Python saw no protocol error: it answered our close with ours.)
    expect(conn.closeStatus).toBe(1000);
  });
});
