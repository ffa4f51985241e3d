/**
 * keepaliveInterval on a busy connection: a keepalive ping or its pong can wait behind a large
 * message (the peer's upload, or our send to a slow reader); a peer whose bytes keep moving is
 * alive and is not aborted, while one that goes quiet without answering still is.
 */
import { connect, serve, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { frame } from '../helpers/frames.js';
import { RawClient } from '../helpers/raw-client.js';
import { delay, until } from '../helpers/wait.js';

describe('keepalive on a busy connection', () => {
  let server: WebSocketServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  test('a peer still sending a large message (its pong waits behind it) is not aborted; once it goes quiet without answering, it is', async () => {
    const conns: WebSocketConnection[] = [];
    const received: number[] = [];
    server = await serve({ keepaliveInterval: 100, idleTimeout: 0, perMessageDeflate: false }, (conn) => {
      conns.push(conn);
      conn.on('message', (m) => received.push((m as Buffer).length));
    });
    const raw = await RawClient.connect(server.port);
    await until(() => conns.length === 1, 'the handler');
    const conn = conns[0]!;
    // One 400 KiB frame, sent 8 KiB at a time every 10 ms: about 0.5 s, several keepalive
    // intervals, during which this peer (like one whose pong is queued behind its upload)
    // answers no ping.
    const bytes = frame({ opcode: 2, mask: Uint8Array.of(0, 0, 0, 0), payload: Buffer.alloc(400 * 1024, 1) });
    for (let at = 0; at < bytes.length; at += 8192) {
      raw.write(bytes.subarray(at, at + 8192));
      await delay(10);
      expect(conn.readyState).toBe('open');
    }
    await until(() => received.length === 1, 'the message');
    expect(received).toEqual([400 * 1024]);
    // Then quiet, and still no pong: aborted by the keepalive.
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1006);
    expect((conn.error as { code?: string } | undefined)?.code).toBe('WS_KEEPALIVE_TIMEOUT');
    raw.destroy();
  });

  test('a keepalive ping queued behind a large send to a slow reader does not abort it: the message and a clean close', async () => {
    const conns: WebSocketConnection[] = [];
    // 300 ms: the kernel shows what the reader takes in steps (its receive window opens by a large
    // part of its buffer at a time), and each interval must see one. At 150 ms a gate run beside
    // other work (load 8 on 2 cores) once saw none in an interval and aborted (see
    // docs/connection.md); 40 MiB keep the send several intervals long.
    server = await serve({ keepaliveInterval: 300, idleTimeout: 0, perMessageDeflate: false }, (conn) => {
      conns.push(conn);
    });
    const client = await connect(server.url, { perMessageDeflate: false, maxMessageSize: Infinity });
    await until(() => conns.length === 1, 'the handler');
    const conn = conns[0]!;
    // The reader takes a little every 40 ms (reading paused in between): the 40 MiB, and the
    // ping behind it, take many keepalive intervals to reach it, while the peer keeps taking.
    // Once the last of it has left the process, the reader reads at full speed: what the kernel's
    // buffers hold then (a few MB) is out of the server's sight and must reach the peer within an
    // interval, as docs/connection.md says (a reader still slow there was aborted, now and then,
    // on a loaded machine).
    client.pause();
    let reading = true;
    const slowReader = (async () => {
      while (reading) {
        client.resume();
        await new Promise((r) => setImmediate(r));
        client.pause();
        await delay(40);
        if (conn.bufferedAmount === 0) {
          client.resume();
          return;
        }
      }
    })();
    const size = 40 * 1024 * 1024;
    const sent = conn.send(Buffer.alloc(size, 7));
    const got = client.recv();
    await got.finally(() => (reading = false));
    await slowReader;
    client.resume();
    expect(conn.error).toBeUndefined();
    expect(((await got) as Buffer).length).toBe(size);
    await sent;
    await client.close();
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1000);
  });
});
