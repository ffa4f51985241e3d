/**
 * Random operations on both ends of connections while messages flow (sends of every kind, pings,
 * pauses and resumes, closes and aborts from either side, streams whose source fails, prepared
 * messages, Duplex wrappers, broadcasts), over TCP, TLS and HTTP/2, with every client API. Whatever
 * the order: no unhandled rejection, no uncaught exception, and `server.close()` resolves. (Runs
 * of this kind found a compressed send() whose rejection went unhandled and an HTTP/2 server
 * whose close() waited forever for a peer.) The operations are drawn from a seeded generator;
 * their timing is real, so each run interleaves them a little differently.
 */
import {
  connect,
  createWebSocketStream,
  prepareMessage,
  serve,
  WebSocket,
  WebSocketStream,
  type ConnectOptions,
  type ServeOptions,
  type WebSocketConnection,
} from 'rfc6455';
import { TLS, CLIENT_TLS } from '../http2/helpers.js';

type Operation = (conn: WebSocketConnection) => void;

function generator(seed: number): () => number {
  let state = seed;
  return () => (state = (state * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function operations(random: () => number): Operation[] {
  return [
    (c) => void c.send(Buffer.alloc(Math.floor(random() * 70_000))),
    (c) => void c.send('x'.repeat(Math.floor(random() * 3000))),
    (c) => void c.send(new Uint8Array(10), { binary: false }),
    (c) => void c.send(prepareMessage(`prepared ${'y'.repeat(Math.floor(random() * 2000))}`)),
    (c) => void c.ping('p'),
    (c) => void c.close(random() < 0.5 ? 1000 : null),
    (c) => c.terminate(),
    (c) => c.pause(),
    (c) => c.resume(),
    (c) => void c.recv(),
    (c) =>
      void c.sendStream(
        (async function* () {
          yield Buffer.alloc(100);
          if (random() < 0.5) throw new Error('source failed');
          yield Buffer.alloc(100);
        })(),
      ),
    (c) => {
      const duplex = createWebSocketStream(c);
      duplex.on('error', () => undefined);
      if (random() < 0.5) duplex.destroy();
      else duplex.write('through a Duplex');
    },
  ];
}

const TRANSPORTS: Array<[string, Partial<ServeOptions>, Partial<ConnectOptions>]> = [
  ['TCP', {}, {}],
  ['TLS', { tls: TLS }, { tls: CLIENT_TLS }],
  ['HTTP/2', { tls: TLS, http2: true }, { tls: CLIENT_TLS, http2: true }],
];

describe.each(TRANSPORTS)('random operations over %s', (_name, serverTransport, clientTransport) => {
  test.each([1, 2, 3])('seed %i: nothing unhandled, nothing uncaught, and every server.close() resolves', async (seed) => {
    const random = generator(seed * 7919);
    const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
    const ops = operations(random);
    const problems: string[] = [];
    const onRejection = (reason: unknown): void => void problems.push(`unhandled rejection: ${String((reason as Error)?.stack ?? reason)}`);
    const onException = (error: unknown): void => void problems.push(`uncaught exception: ${String((error as Error)?.stack ?? error)}`);
    process.on('unhandledRejection', onRejection);
    process.on('uncaughtException', onException);
    try {
      for (let round = 0; round < 20; round++) {
        const options = {
          perMessageDeflate: random() < 0.5,
          writeHighWaterMark: pick([100, 16384, 1 << 20]),
          readHighWaterMark: pick([100, 1 << 20]),
          closeTimeout: 300,
        };
        const timers = new Set<NodeJS.Timeout>();
        const server = await serve({ port: 0, ...options, ...serverTransport }, (conn) => {
          conn.on('message', (m) => {
            if (random() < 0.7) void conn.send(m).catch(() => undefined);
          });
          const timer = setInterval(() => {
            if (conn.closed) {
              clearInterval(timer);
              timers.delete(timer);
              return;
            }
            pick(ops)(conn);
          }, pick([1, 5, 20]));
          timers.add(timer);
        });
        const kind = pick(['connect', 'connect', 'WebSocketStream', 'WebSocket'] as const);
        try {
          if (kind === 'connect') {
            const client = await connect(server.url, { ...options, ...clientTransport });
            for (let i = 0; i < 30 && !client.closed; i++) {
              pick(ops)(client);
              await sleep(pick([0, 1, 3]));
            }
            client.terminate();
          } else if (kind === 'WebSocketStream') {
            const wss = new WebSocketStream(server.url, { ...options, ...clientTransport });
            const { readable, writable } = await wss.opened;
            const writer = writable.getWriter();
            for (let i = 0; i < 20; i++) {
              void writer.write(pick(['a', new Uint8Array(5000)])).catch(() => undefined);
              await sleep(1);
            }
            if (random() < 0.5) void readable.cancel().catch(() => undefined);
            else wss.close();
          } else {
            const ws = new WebSocket(server.url, { ...options, ...clientTransport });
            ws.onerror = () => undefined;
            await new Promise((resolve) => {
              ws.onopen = resolve;
              ws.onclose = resolve;
            });
            for (let i = 0; i < 20 && ws.readyState === WebSocket.OPEN; i++) {
              ws.send(pick(['a', new Uint8Array(3000)]));
              await sleep(1);
            }
            ws.close();
          }
        } catch {
          // The server's operations may close or abort the connection under the client: expected.
        }
        await sleep(50);
        if (random() < 0.3) server.broadcast('bye, everyone');
        let timedOut: NodeJS.Timeout | undefined;
        const closed = await Promise.race([
          server.close().then(() => true),
          new Promise<boolean>((resolve) => (timedOut = setTimeout(() => resolve(false), 10_000))),
        ]);
        clearTimeout(timedOut);
        for (const timer of timers) clearInterval(timer);
        if (!closed) {
          // What each connection still open was doing, so that a failure says where it hung.
          const open = [...server.connections].map((c) => `${c.readyState} buffered=${c.bufferedAmount} closed=${c.closed} kind=${c.transport.kind}`);
          problems.push(`round ${round}: server.close() did not resolve within 10 s (client: ${kind}; open: ${open.join('; ') || 'none'})`);
        }
      }
      await sleep(100);
    } finally {
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtException', onException);
    }
    expect(problems).toEqual([]);
  }, 120_000);
});
