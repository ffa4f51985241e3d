/**
 * A refusal whose body the framework streams (Fastify's `reply.send(stream)`, Koa's
 * `ctx.body = stream`, a stream piped into Express's `res`) reaches the client whole, and the socket
 * is then closed. The body is larger than a socket takes at once, so the stream must wait for the
 * socket's 'drain' to go on. (Fixed bug: Node's HTTP server passes 'drain' on to the response only
 * while it owns the socket, not for an upgrade's: the body stopped after its first chunks, and the
 * socket stayed open until handshakeTimeout destroyed it.)
 */
import Fastify from 'fastify';
import express from 'express';
import Koa from 'koa';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { wsPlugin } from '@rfc6455/fastify';
import { websocket as expressWebSocket } from '@rfc6455/express';
import { websocket as koaWebSocket } from '@rfc6455/koa';
import { upgradeRequest } from '../../packages/rfc6455/test/helpers/raw-client.js';
import { exchange } from '../robustness/helpers.js';
import { listenStarted, type Started } from '../shared/adapter-suite.js';

const CHUNK = 256 * 1024;
const LETTERS = ['a', 'b', 'c', 'd'];

/** 1 MiB in four chunks: a, b, c and d, 256 KiB each. */
function body(): Readable {
  return Readable.from(LETTERS.map((letter) => Buffer.alloc(CHUNK, letter)), { objectMode: false });
}

/** The payload of a chunked transfer coding (RFC 9112 §7.1), or the bytes as they are. */
function dechunk(bytes: Buffer, chunked: boolean): Buffer {
  if (!chunked) return bytes;
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = bytes.indexOf('\r\n', at);
    const size = parseInt(bytes.subarray(at, eol).toString('latin1'), 16);
    if (!(size > 0)) return Buffer.concat(parts);
    parts.push(bytes.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

const APPS: Array<[string, () => Promise<Started>]> = [
  [
    'fastify',
    async () => {
      const app = Fastify();
      await app.register(wsPlugin);
      app.addHook('onRequest', async (_request, reply) => reply.code(401).type('text/plain').send(body()));
      app.get('/ws', { websocket: true }, (conn) => void conn.close());
      await app.listen({ port: 0, host: '127.0.0.1' });
      return { port: (app.server.address() as AddressInfo).port, close: () => app.close() };
    },
  ],
  [
    'express',
    async () => {
      const app = express();
      const ws = expressWebSocket();
      ws.route('/ws', (conn) => void conn.close());
      app.use((_req, res) => {
        res.status(401).type('text/plain');
        body().pipe(res);
      });
      app.use(ws.middleware);
      const server = createServer(app);
      ws.attach(server, app);
      return listenStarted(server, () => ws.close());
    },
  ],
  [
    'koa',
    async () => {
      const app = new Koa();
      const ws = koaWebSocket();
      app.use(async (ctx) => {
        ctx.status = 401;
        ctx.type = 'text/plain';
        ctx.body = body();
      });
      app.use(ws);
      const server = createServer(app.callback());
      ws.attach(server, app);
      return listenStarted(server, () => ws.close());
    },
  ],
];

describe.each(APPS)('%s: a refusal with a streamed body', (_name, start) => {
  let started: Started;
  beforeAll(async () => {
    started = await start();
  });
  afterAll(() => started.close());

  test('reaches the client whole, and the socket is closed after it', async () => {
    // exchange() resolves once the server has closed the socket. (Before: never, until the
    // handshake timeout; the client had 256 KiB or so of the body.)
    const { response } = await exchange(started.port, upgradeRequest(started.port, { path: '/ws' }));
    expect(response?.status).toBe(401);
    const payload = dechunk(response!.body, /chunked/i.test(response!.headers['transfer-encoding'] ?? ''));
    expect(payload.length).toBe(LETTERS.length * CHUNK);
    LETTERS.forEach((letter, i) => expect(payload.subarray(i * CHUNK, (i + 1) * CHUNK).equals(Buffer.alloc(CHUNK, letter))).toBe(true));
  }, 5000);
});
