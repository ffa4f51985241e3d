/**
 * Interop both ways with `ws`: a ws client against our server, our client against a ws server.
 * Text, binary, fragmented messages, ping/pong, close codes and reasons, permessage-deflate on/off.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer as WsServer, type RawData } from 'ws';
import { connect, serve, EOF, type WebSocketConnection, type WebSocketServer } from 'rfc6455';

function wsMessage(ws: WebSocket): Promise<{ data: Buffer; binary: boolean }> {
  return new Promise((resolve) => ws.once('message', (data: RawData, binary: boolean) => resolve({ data: data as Buffer, binary })));
}

describe.each([false, true])('ws client → our server (permessage-deflate %s)', (deflate) => {
  let server: WebSocketServer;
  const closes: Array<[number | undefined, string | undefined]> = [];
  beforeAll(async () => {
    server = await serve({ perMessageDeflate: deflate, compressThreshold: 0 }, async (conn) => {
      conn.on('ping', () => undefined);
      for await (const m of conn) {
        if (m === 'close-me') {
          await conn.close(4321, 'asked to close');
          break;
        }
        await conn.send(m);
      }
      await conn.whenClosed;
      closes.push([conn.closeStatus, conn.closeReason]);
    });
  });
  afterAll(() => server.close());

  async function open(): Promise<WebSocket> {
    const ws = new WebSocket(server.url, { perMessageDeflate: deflate });
    await once(ws, 'open');
    expect(ws.extensions).toBe(deflate ? 'permessage-deflate' : '');
    return ws;
  }

  test('text, binary and a fragmented message echo back with their types', async () => {
    const ws = await open();
    ws.send('héllo');
    expect(await wsMessage(ws)).toEqual({ data: Buffer.from('héllo'), binary: false });
    ws.send(Buffer.from([0, 1, 2, 255]));
    expect(await wsMessage(ws)).toEqual({ data: Buffer.from([0, 1, 2, 255]), binary: true });
    const big = 'x'.repeat(5000);
    ws.send(big.slice(0, 2000), { fin: false });
    ws.send(big.slice(2000, 4000), { fin: false });
    ws.send(big.slice(4000), { fin: true });
    const echoed = await wsMessage(ws);
    expect([echoed.data.toString(), echoed.binary]).toEqual([big, false]);
    ws.close(1000);
    await once(ws, 'close');
  });

  test('ws ping gets our pong with the same payload', async () => {
    const ws = await open();
    ws.ping('abc');
    const [payload] = (await once(ws, 'pong')) as [Buffer];
    expect(payload.toString()).toBe('abc');
    ws.close();
    await once(ws, 'close');
  });

  test('ws closes with a code and reason: both sides record them', async () => {
    const ws = await open();
    ws.close(4100, 'ws says bye');
    const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
    expect([code, reason.toString()]).toEqual([4100, 'ws says bye']);
    // The server side records its status once its transport closes; wait for that, not a delay.
    for (let i = 0; i < 1000 && !closes.some(([c]) => c === 4100); i++) await new Promise((r) => setImmediate(r));
    expect(closes).toContainEqual([4100, 'ws says bye']);
  });

  test('our server closes with a code and reason: ws receives them', async () => {
    const ws = await open();
    ws.send('close-me');
    const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
    expect([code, reason.toString()]).toEqual([4321, 'asked to close']);
  });
});

describe.each([false, true])('our client → ws server (permessage-deflate %s)', (deflate) => {
  let wss: WsServer;
  let url: string;
  const serverSide: WebSocket[] = [];
  beforeAll(async () => {
    wss = new WsServer({ host: '127.0.0.1', port: 0, perMessageDeflate: deflate ? { threshold: 0 } : false });
    await once(wss, 'listening');
    url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`;
    wss.on('connection', (ws) => {
      serverSide.push(ws);
      ws.on('message', (data: RawData, binary: boolean) => {
        const text = binary ? '' : data.toString();
        if (text === 'fragments') {
          ws.send('one ', { fin: false });
          ws.send('two ', { fin: false });
          ws.send('three', { fin: true });
        } else if (text.startsWith('close ')) {
          ws.close(Number(text.split(' ')[1]), 'ws server bye');
        } else {
          ws.send(data, { binary });
        }
      });
    });
  });
  afterAll(async () => {
    for (const ws of serverSide) ws.terminate();
    await new Promise((r) => wss.close(r));
  });

  async function open(): Promise<WebSocketConnection> {
    const conn = await connect(url, { perMessageDeflate: deflate, compressThreshold: 0 });
    expect(conn.extensions.startsWith('permessage-deflate')).toBe(deflate);
    return conn;
  }

  test('text and binary echo with their types', async () => {
    const conn = await open();
    await conn.send('héllo');
    expect(await conn.recv()).toBe('héllo');
    await conn.send(Uint8Array.of(9, 8, 7));
    expect(await conn.recv()).toEqual(Buffer.from([9, 8, 7]));
    const big = Buffer.alloc(200000, 'ab');
    await conn.send(big);
    expect(((await conn.recv()) as Buffer).equals(big)).toBe(true);
    await conn.close();
  });

  test('a fragmented message from ws arrives whole; our streamed message reaches ws whole', async () => {
    const conn = await open();
    await conn.send('fragments');
    expect(await conn.recv()).toBe('one two three');
    await conn.sendStream(['part1-', 'part2-', 'part3'], { binary: false, fragmentSize: 3 });
    expect(await conn.recv()).toBe('part1-part2-part3');
    await conn.close();
  });

  test('our ping resolves on ws’s pong; ws’s ping is answered', async () => {
    const conn = await open();
    const rtt = await conn.ping('p1');
    expect(rtt).toBeGreaterThanOrEqual(0);
    const ws = serverSide[serverSide.length - 1]!;
    const pong = once(ws, 'pong');
    ws.ping('from ws');
    expect(((await pong) as [Buffer])[0].toString()).toBe('from ws');
    await conn.close();
  });

  test('ws server closes with a code and reason: our client records them', async () => {
    const conn = await open();
    await conn.send('close 4444');
    expect(await conn.recv()).toBe(EOF);
    await conn.whenClosed;
    expect([conn.closeStatus, conn.closeReason]).toEqual([4444, 'ws server bye']);
  });

  test('our client closes with a code and reason: ws receives them', async () => {
    const conn = await open();
    const ws = serverSide[serverSide.length - 1]!;
    const closed = once(ws, 'close');
    await conn.close(4001, 'client bye');
    const [code, reason] = (await closed) as [number, Buffer];
    expect([code, reason.toString()]).toEqual([4001, 'client bye']);
    expect(conn.closeStatus).toBe(4001);
  });
});
