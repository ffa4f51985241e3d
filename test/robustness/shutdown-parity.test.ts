/**
 * Shutdown the same on every entry point that has one: serve() over HTTP/1.1, TLS and HTTP/2
 * (and a hybi-00 client of serve()), the Express and Koa adapters (`ws.close()`, then the HTTP
 * server's close), and Fastify over HTTP/1.1 and HTTP/2 (`app.close()`). Each probed with our own
 * client: open connections get a close frame with 1001 (or the code and reason given, where the
 * API takes one) after every message sent before it, and the shutdown resolves once they are
 * closed; a peer that never answers the close frame is cut at closeTimeout; an upgrade after the
 * shutdown began is refused; the server side sees the code; nothing is left listening.
 * (An upgrade whose hook is pending is in server-parity.test.ts.)
 */
import type { Server } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { connect, HandshakeError, WebSocketError, type ConnectOptions, type WebSocketConnection } from 'rfc6455';
import { TLS } from '../http2/helpers.js';
import { EXPRESS, FASTIFY, FASTIFY_HTTP2, KOA, SERVE, SERVE_HTTP2, SERVE_TLS, toHybi00Client, type EntryPoint as Entry, type Mount } from './entry-points.js';

type Handler = (conn: WebSocketConnection) => void;

/** What onError received, on any entry point (each test empties it). */
const errors: unknown[] = [];

interface Running {
  url: string;
  client: ConnectOptions;
  /** The entry point's shutdown, with a code and reason where its API takes them. */
  shutdown(code?: number, reason?: string): Promise<void>;
  /** For an adapter: its own close() alone, the application's server still listening. */
  beforeServerClose?(code?: number, reason?: string): Promise<void>;
  /** Whether anything still listens once the shutdown (and, for an adapter, the HTTP server's close) is done. */
  listening(): boolean;
}

interface EntryPoint {
  name: string;
  /** The shutdown takes a code and reason. */
  takesCode: boolean;
  /**
   * What an upgrade made after the shutdown began gets: 503, or 'refused' where the shutdown stops
   * listening at once (serve(); the adapters answer 503 until the application closes its server).
   */
  later: 503 | 'refused';
  start(handler: Handler, closeTimeout: number): Promise<Running>;
}

/** The application's close of its HTTP server after an adapter's shutdown (open sockets not forced). */
function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** The handler, where each framework routes it: its own routing (ws.route(), ctx.ws(), a websocket route). */
function mount(handler: Handler): Mount {
  return {
    express: (_app, ws) => void ws.route('/', (conn) => handler(conn)),
    koa: (app) =>
      void app.use(async (ctx) => {
        const conn = await ctx.ws?.();
        if (conn) handler(conn);
      }),
    fastify: (app) => void app.get('/', { websocket: true }, ((conn: WebSocketConnection) => handler(conn)) as never),
  };
}

function entryPoint(entry: Entry): EntryPoint {
  return {
    name: entry.name,
    // (hybi-00 has no close code.)
    takesCode: entry.shutdownTakesCode && entry.transport !== 'hybi00',
    later: entry.upgradeAfterShutdown!,
    async start(handler, closeTimeout) {
      const started = await entry.start({ target: handler, options: { closeTimeout }, onError: (e) => errors.push(e), mount: mount(handler) });
      const shutdown = started.shutdown!;
      const server = started.httpServer as Server;
      return {
        url: started.url('/'),
        client: started.client,
        // An adapter's close(), then the application's server's.
        shutdown: entry.shutdownClosesServer
          ? shutdown
          : async (code, reason) => {
              await shutdown(code, reason);
              await closeServer(server);
            },
        ...(!entry.shutdownClosesServer && { beforeServerClose: shutdown }),
        listening: () => server.listening,
      };
    },
  };
}

const entryPoints: EntryPoint[] = [SERVE, SERVE_TLS, SERVE_HTTP2, toHybi00Client(SERVE), EXPRESS, KOA, FASTIFY, FASTIFY_HTTP2, ...[EXPRESS, KOA, FASTIFY].map(toHybi00Client)].map(entryPoint);

const MESSAGES = 200;
const PAYLOAD = 'x'.repeat(8192);
const hybi00 = (e: EntryPoint): boolean => e.name.includes('hybi-00');

/** What a connect() made now gets: 'opened', the status it was answered, or 'refused'. */
function tryConnect(running: Running): Promise<number | 'opened' | 'refused'> {
  return connect(running.url, { ...running.client, serializeHandshakes: false }).then(
    (conn) => {
      conn.terminate();
      return 'opened' as const;
    },
    (error: unknown) => {
      if (error instanceof HandshakeError && error.status !== 0) return error.status;
      if (error instanceof WebSocketError && /ECONNREFUSED/.test(error.message)) return 'refused' as const;
      throw error;
    },
  );
}

/** Resolves once the handler has run `n` times. */
async function accepted(list: unknown[], n = 1): Promise<void> {
  while (list.length < n) await new Promise((r) => setImmediate(r));
}

beforeEach(() => {
  errors.length = 0;
});

describe.each(entryPoints.map((e) => [e.name, e] as const))('%s', (_name, entry) => {
  // hybi-00 has no status codes: its close is its own (0xFF 0x00), seen as 1005 on both sides.
  const code = entry.takesCode ? 4001 : hybi00(entry) ? 1005 : 1001;
  const reason = entry.takesCode ? 'bye' : hybi00(entry) ? '' : 'server shutting down';

  test(`open connections get every message sent before the shutdown, then its close (${code}); the shutdown resolves once they are closed, nothing left listening`, async () => {
    const serverSide: WebSocketConnection[] = [];
    const running = await entry.start((conn) => {
      serverSide.push(conn);
      for (let i = 0; i < MESSAGES; i++) void conn.send(`${i}:${PAYLOAD}`);
    }, 5000);
    const clients = await Promise.all([1, 2].map(() => connect(running.url, { ...running.client, serializeHandshakes: false })));
    const received = clients.map((client) => {
      const seen: number[] = [];
      client.on('message', (m) => seen.push(parseInt(String(m), 10)));
      return seen;
    });
    await accepted(serverSide, 2);
    const serverClosed = serverSide.map((conn) => new Promise<number>((r) => conn.once('close', (c: number) => r(c))));
    await (entry.takesCode ? running.shutdown(4001, 'bye') : running.shutdown());
    // Closed when the shutdown resolves, on both sides.
    for (const conn of serverSide) expect(conn.readyState).toBe('closed');
    await Promise.all(clients.map((c) => c.whenClosed));
    for (const [i, client] of clients.entries()) {
      expect(received[i]).toEqual(Array.from({ length: MESSAGES }, (_, n) => n));
      expect([client.closeStatus, client.closeReason]).toEqual([code, reason]);
    }
    expect(await Promise.all(serverClosed)).toEqual([code, code]);
    expect(serverSide.map((c) => [c.closeStatus, c.closeReason])).toEqual([[code, reason], [code, reason]]);
    expect(running.listening()).toBe(false);
    expect(errors).toEqual([]);
  });

  test(`a peer that never answers the close frame is cut at closeTimeout (1006), the shutdown still resolves; an upgrade meanwhile is ${entry.later === 503 ? 'answered 503' : 'refused (no longer listening)'}`, async () => {
    const serverSide: WebSocketConnection[] = [];
    const running = await entry.start((conn) => void serverSide.push(conn), 300);
    const client = await connect(running.url, { ...running.client, serializeHandshakes: false });
    client.pause(); // reads nothing more: the close frame is never seen, never answered
    await accepted(serverSide);
    const done = running.shutdown();
    expect(await tryConnect(running)).toBe(entry.later);
    await done;
    expect(serverSide[0]!.closeStatus).toBe(1006);
    expect(running.listening()).toBe(false);
    expect(errors).toEqual([]);
    client.terminate();
  });

  if (entry.name === 'Express' || entry.name === 'Koa') {
    test('the adapter\'s close() alone (the HTTP server still listening): a later upgrade gets 503', async () => {
      const running = await entry.start(() => undefined, 300);
      await running.beforeServerClose!();
      expect(await tryConnect(running)).toBe(503);
      await running.shutdown();
    });
  }
});

// A peer whose whole HTTP/2 session stops reading (not only its WebSocket's stream): the
// WebSocket is cut at closeTimeout, and the shutdown then destroys the session. (Fixed bug: Fastify
// over HTTP/2, even with forceCloseConnections: true, closed the session with a GOAWAY only, and
// app.close() waited for Fastify's http2SessionTimeout, 72 s, as its socket could not be ended.)
describe.each(entryPoints.filter((e) => e.name.includes('HTTP/2')).map((e) => [e.name, e] as const))('%s', (_name, entry) => {
  test('a peer whose HTTP/2 session stops reading: cut at closeTimeout, the shutdown resolves', async () => {
    const serverSide: WebSocketConnection[] = [];
    const running = await entry.start((conn) => {
      serverSide.push(conn);
      for (let i = 0; i < MESSAGES; i++) void conn.send(PAYLOAD).catch(() => undefined);
    }, 200);
    const port = Number(new URL(running.url).port);
    let raw!: TLSSocket;
    const session = h2connect(`https://127.0.0.1:${port}`, {
      createConnection: () => (raw = tlsConnect({ port, host: '127.0.0.1', ca: TLS.cert, servername: 'localhost', ALPNProtocols: ['h2'] })),
    });
    session.on('error', () => undefined);
    const client = await connect(running.url, { ...running.client, http2: session, serializeHandshakes: false });
    await accepted(serverSide);
    // Stop reading the TCP connection itself (a stalled peer, not a paused stream).
    (raw as unknown as { _handle: { readStop(): void } })._handle.readStop();
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      running.shutdown().then(() => 'resolved'),
      new Promise<string>((r) => (timer = setTimeout(() => r('still waiting'), 4000))),
    ]);
    clearTimeout(timer);
    expect(outcome).toBe('resolved');
    expect(serverSide[0]!.closeStatus).toBe(1006);
    expect(running.listening()).toBe(false);
    client.terminate();
    session.destroy();
    raw.destroy();
  });
});
