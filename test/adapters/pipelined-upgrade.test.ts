/**
 * An upgrade request pipelined behind plain requests on one keep-alive connection (`GET /hello`,
 * `GET /hello`, then the upgrade and a frame, in one write), in `serve()` and each adapter. HTTP
 * answers requests in the order they came (RFC 9112 §9.3.2) and the WebSocket starts after the
 * 101, so the responses owed must be written first, then the 101, then frames.
 *
 * Fixed bugs: in each adapter the `upgrade` listener threw Node's ERR_HTTP_SOCKET_ASSIGNED (its
 * ServerResponse could not take a socket that still had a response to write) and the process died,
 * from one packet of any client; `serve()` wrote the 101 before the responses still owed, which
 * then went out inside the WebSocket stream; a pipelined `Upgrade: h2c` request (a plain request
 * for the app) was never answered.
 */
import Fastify from 'fastify';
import express from 'express';
import Koa from 'koa';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve, serviceMapper, type ConnectionHandler } from 'rfc6455';
import { wsPlugin } from '@rfc6455/fastify';
import { websocket as expressWebSocket } from '@rfc6455/express';
import { websocket as koaWebSocket } from '@rfc6455/koa';
import { decodeFrame, frame } from '../../packages/rfc6455/test/helpers/frames.js';
import { upgradeRequest } from '../../packages/rfc6455/test/helpers/raw-client.js';
import { openRaw, type Recorder } from '../robustness/helpers.js';
import { listenStarted, type Started } from '../shared/adapter-suite.js';

const echo: ConnectionHandler<unknown> = (conn) => void conn.on('message', (m) => void conn.send(m).catch(() => undefined));
/** Each plain answer waits a turn of the event loop (a real handler's await), so it is still owed when the upgrade comes. */
const later = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Each app: /echo is a WebSocket echo; GET /hello answers `hello` (asynchronously), GET /bye
 * answers `bye` with `Connection: close`, POST /h2c answers `posted <body>`.
 */
const APPS: Array<[string, () => Promise<Started>]> = [
  [
    'serve',
    async () => {
      const server = await serve(
        {
          onRequest(req, res) {
            let body = '';
            req.setEncoding('latin1').on('data', (c: string) => (body += c));
            req.on('end', () => {
              void later().then(() => {
                if (req.url === '/bye') res.setHeader('Connection', 'close');
                res.end(req.method === 'POST' ? `posted ${body}` : req.url === '/bye' ? 'bye' : 'hello');
              });
            });
          },
        },
        serviceMapper([{ path: '/echo', handler: echo }]),
      );
      return { port: server.port, close: () => server.close() };
    },
  ],
  [
    'express',
    async () => {
      const app = express();
      const ws = expressWebSocket();
      ws.route('/echo', echo);
      app.use(ws.middleware);
      app.get('/hello', (_req, res) => void later().then(() => res.send('hello')));
      app.get('/bye', (_req, res) => void later().then(() => res.set('Connection', 'close').send('bye')));
      app.post('/h2c', express.text(), (req, res) => void later().then(() => res.send(`posted ${String(req.body)}`)));
      const server = createServer(app);
      ws.attach(server, app);
      return listenStarted(server, () => ws.close());
    },
  ],
  [
    'koa',
    async () => {
      const app = new Koa();
      const ws = koaWebSocket(serviceMapper([{ path: '/echo', handler: echo }]));
      app.use(ws);
      app.use(async (ctx) => {
        let body = '';
        if (ctx.method === 'POST') for await (const c of ctx.req) body += (c as Buffer).toString('latin1');
        await later();
        if (ctx.path === '/bye') ctx.set('Connection', 'close');
        ctx.body = ctx.method === 'POST' ? `posted ${body}` : ctx.path === '/bye' ? 'bye' : 'hello';
      });
      const server = createServer(app.callback());
      ws.attach(server, app);
      return listenStarted(server, () => ws.close());
    },
  ],
  [
    'fastify',
    async () => {
      const app = Fastify();
      await app.register(wsPlugin);
      app.get('/echo', { websocket: true }, (conn) => void conn.on('message', (m) => void conn.send(m).catch(() => undefined)));
      app.get('/hello', async () => {
        await later();
        return 'hello';
      });
      app.get('/bye', async (_request, reply) => {
        await later();
        void reply.header('Connection', 'close');
        return 'bye';
      });
      app.post('/h2c', async (request) => {
        await later();
        return `posted ${String(request.body)}`;
      });
      await app.listen({ port: 0, host: '127.0.0.1' });
      return { port: (app.server.address() as AddressInfo).port, close: () => app.close() };
    },
  ],
];

const plain = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`;

/**
 * Splits what the server wrote into HTTP responses (bodies by Content-Length) up to and including
 * a 101; returns their status lines and bodies, and the bytes after the 101 (or undefined while a
 * response is incomplete).
 */
function responses(bytes: Buffer): { statuses: string[]; bodies: string[]; after: Buffer | undefined } {
  const statuses: string[] = [];
  const bodies: string[] = [];
  let at = 0;
  for (;;) {
    const end = bytes.indexOf('\r\n\r\n', at);
    if (end < 0) return { statuses, bodies, after: undefined };
    const head = bytes.subarray(at, end).toString('latin1');
    const status = head.slice(0, head.indexOf('\r\n'));
    statuses.push(status);
    if (status.startsWith('HTTP/1.1 101')) return { statuses, bodies, after: bytes.subarray(end + 4) };
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
    if (bytes.length < end + 4 + length) return { statuses, bodies, after: undefined };
    bodies.push(bytes.subarray(end + 4, end + 4 + length).toString('latin1'));
    at = end + 4 + length;
  }
}

describe.each(APPS)('%s: an upgrade pipelined behind plain requests', (_name, start) => {
  let started: Started;
  beforeAll(async () => {
    started = await start();
  });
  afterAll(() => started.close());

  test('the responses owed come first, in order, then the 101, then the WebSocket (a frame sent with the upgrade is echoed)', async () => {
    const raw: Recorder = await openRaw(started.port);
    raw.socket.write(
      Buffer.concat([
        Buffer.from(plain('/hello') + plain('/hello') + upgradeRequest(started.port, { path: '/echo' }), 'latin1'),
        frame({ opcode: 1, payload: 'with the upgrade', mask: true }),
      ]),
    );
    const bytes = await raw.until((data) => {
      const after = responses(data).after;
      return after !== undefined && decodeFrame(after) !== undefined;
    });
    const { statuses, bodies, after } = responses(bytes);
    expect(statuses).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 101 Switching Protocols']);
    expect(bodies).toEqual(['hello', 'hello']);
    const echoed = decodeFrame(after!);
    expect(echoed?.frame.payload.toString()).toBe('with the upgrade');
    expect(echoed?.next).toBe(after!.length); // nothing else in the WebSocket stream
    // And the WebSocket goes on.
    raw.socket.write(frame({ opcode: 1, payload: 'next', mask: true }));
    const more = await raw.until((data) => {
      const a = responses(data).after!;
      const first = decodeFrame(a);
      return first !== undefined && decodeFrame(a, first.next) !== undefined;
    });
    const rest = responses(more).after!;
    expect(decodeFrame(rest, decodeFrame(rest)!.next)?.frame.payload.toString()).toBe('next');
    raw.socket.destroy();
  });

  test('behind a response that closes the connection, the upgrade gets no 101 and the socket is closed', async () => {
    const raw = await openRaw(started.port);
    raw.socket.write(plain('/hello') + plain('/bye') + upgradeRequest(started.port, { path: '/echo' }));
    await raw.closed;
    const { statuses, bodies } = responses(raw.data());
    expect(statuses).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK']);
    expect(bodies).toEqual(['hello', 'bye']);
  });

  test('an Upgrade: h2c request pipelined behind another is answered as the plain request it is, in order', async () => {
    const raw = await openRaw(started.port);
    raw.socket.write(
      plain('/hello') +
        'POST /h2c HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n' +
        'Content-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc',
    );
    await raw.until((data) => responses(data).bodies.length === 2);
    const { statuses, bodies } = responses(raw.data());
    expect(statuses).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK']);
    expect(bodies).toEqual(['hello', 'posted abc']);
    raw.socket.destroy();
  });
});

test('serve: behind a response that never ends, the upgrade waits no longer than handshakeTimeout: no 101, the socket closed', async () => {
  const server = await serve(
    {
      handshakeTimeout: 300,
      onRequest(_req, res) {
        res.writeHead(200, { 'Content-Length': '10' });
        res.write('12345'); // the rest never comes
      },
    },
    echo,
  );
  try {
    const raw = await openRaw(server.port);
    raw.socket.write(plain('/slow') + upgradeRequest(server.port, { path: '/echo' }));
    await raw.closed;
    const text = raw.data().toString('latin1');
    expect(text.startsWith('HTTP/1.1 200 OK\r\n')).toBe(true);
    expect(text.endsWith('\r\n\r\n12345')).toBe(true);
    expect(text).not.toContain('101 Switching Protocols');
  } finally {
    await server.close();
  }
});
