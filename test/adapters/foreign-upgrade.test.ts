/**
 * An upgrade request for another protocol than WebSocket (`Upgrade: h2c`, as `curl --http2` and
 * Java's HttpClient send on plain http: URLs) is also an ordinary HTTP request, which a server
 * may serve ignoring Upgrade (RFC 9110 §7.8). Node gives it to the `upgrade` event whenever there
 * is a listener, its body unread; an adapter alone on the server hands it back to the HTTP server,
 * so the app gets it whole, over HTTP and HTTPS, in each adapter; so does a POST that carries
 * `Upgrade: websocket`, which only a GET can be. WebSocket upgrades are unchanged.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import express from 'express';
import Koa from 'koa';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { connect, serve } from 'rfc6455';
import { wsPlugin } from '@rfc6455/fastify';
import { websocket as expressWebSocket } from '@rfc6455/express';
import { websocket as koaWebSocket } from '@rfc6455/koa';
import { listenStarted, selfSignedCert, type Started, type TlsMaterial } from '../shared/adapter-suite.js';

/** Each app: POST /data answers `got <the JSON body>`; /ws sends "ws" to a WebSocket client. */
const APPS: Array<[string, (tls: TlsMaterial | undefined) => Promise<Started>]> = [
  [
    'express',
    async (tls) => {
      const app = express();
      const ws = expressWebSocket();
      ws.route('/ws', (conn) => void conn.send('ws'));
      app.use(express.json());
      app.use(ws.middleware);
      app.post('/data', (req, res) => {
        res.type('text/plain').send(`got ${JSON.stringify(req.body)}`);
      });
      const server = tls ? createHttpsServer(tls, app) : createHttpServer(app);
      ws.attach(server, app);
      return listenStarted(server, () => ws.close());
    },
  ],
  [
    'koa',
    async (tls) => {
      const app = new Koa();
      const ws = koaWebSocket();
      app.use(ws);
      app.use(async (ctx) => {
        if (ctx.ws) {
          await ctx.ws((conn) => void conn.send('ws'));
          return;
        }
        if (ctx.method === 'POST' && ctx.path === '/data') {
          const chunks: Buffer[] = [];
          for await (const chunk of ctx.req) chunks.push(chunk as Buffer);
          ctx.body = `got ${JSON.stringify(JSON.parse(Buffer.concat(chunks).toString()))}`;
        }
      });
      const server = tls ? createHttpsServer(tls, app.callback()) : createHttpServer(app.callback());
      ws.attach(server, app);
      return listenStarted(server, () => ws.close());
    },
  ],
  [
    'fastify',
    async (tls) => {
      const app = (tls ? Fastify({ https: tls }) : Fastify()) as unknown as FastifyInstance;
      await app.register(wsPlugin);
      app.get('/ws', { websocket: true }, (conn) => void conn.send('ws'));
      app.post('/data', async (request, reply) => reply.type('text/plain').send(`got ${JSON.stringify(request.body)}`));
      await app.listen({ port: 0, host: '127.0.0.1' });
      return { port: (app.server.address() as AddressInfo).port, close: () => app.close() };
    },
  ],
  [
    'serve() with onRequest',
    async (tls) => {
      const server = await serve(
        {
          port: 0,
          host: '127.0.0.1',
          tls,
          onRequest(req, res) {
            const chunks: Buffer[] = [];
            req.on('data', (chunk: Buffer) => chunks.push(chunk));
            req.on('end', () => {
              res.setHeader('Content-Type', 'text/plain');
              res.end(req.method === 'POST' && req.url === '/data' ? `got ${JSON.stringify(JSON.parse(Buffer.concat(chunks).toString()))}` : 'other');
            });
          },
        },
        (conn) => void conn.send('ws'),
      );
      return { port: server.port, close: () => server.close() };
    },
  ],
];

function post(body: string, extra: string[]): string {
  return ['POST /data HTTP/1.1', 'Host: 127.0.0.1', ...extra, 'Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`, '', body].join('\r\n');
}

/** Writes `requests` on one connection; resolves with what came back once `until` was read (or the socket closed). */
function exchangeOn(port: number, tls: TlsMaterial | undefined, requests: string, until: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket: Socket = tls
      ? tlsConnect({ port, host: '127.0.0.1', ca: tls.cert, servername: '127.0.0.1' }, () => socket.write(requests))
      : netConnect(port, '127.0.0.1', () => socket.write(requests));
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (text.includes(until)) {
        socket.destroy();
        resolve(text);
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(text));
  });
}

const h2c = ['Connection: Upgrade, HTTP2-Settings', 'Upgrade: h2c', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA'];

let tlsMaterial: TlsMaterial;
beforeAll(() => {
  tlsMaterial = selfSignedCert();
});

describe.each(APPS)('%s: an upgrade to another protocol than WebSocket', (name, start) => {
  describe.each([false, true])('over TLS: %s', (secure) => {
    let started: Started;
    let tls: TlsMaterial | undefined;
    beforeAll(async () => {
      tls = secure ? tlsMaterial : undefined;
      started = await start(tls);
    });
    afterAll(() => started.close());

    test('is served as a plain HTTP request, its body intact, and the connection carries the next request', async () => {
      // (Before: the app got it without its body, or as a bad WebSocket handshake: Express `{}`, Fastify 400, Koa 400.)
      const text = await exchangeOn(started.port, tls, post('{"a":1}', h2c) + post('{"b":2}', []), 'got {"b":2}');
      const statuses = text.match(/HTTP\/1\.1 \d{3}/g);
      expect(statuses).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200']);
      expect(text).toContain('got {"a":1}');
      expect(text).toContain('got {"b":2}');
      expect(text).not.toContain('101 Switching');
    });

    // (Not for serve(), a WebSocket server first: it answers such a request 400, a handshake that is no GET.)
    if (!name.startsWith('serve()')) test('a POST with the headers of a WebSocket upgrade is served as the plain POST it is, its body intact', async () => {
      // Only a GET can be a WebSocket handshake (RFC 6455 §4.1); an adapter's app serves the rest
      // as it would without Upgrade. (Before: the app's POST route ran without the body, which
      // stayed unread on the socket, and answered from that: not `got {"a":1}`.)
      const websocketHeaders = ['Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13'];
      const text = await exchangeOn(started.port, tls, post('{"a":1}', websocketHeaders) + post('{"b":2}', []), 'got {"b":2}');
      expect(text.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200']);
      expect(text).toContain('got {"a":1}');
      expect(text).not.toContain('101 Switching');
    });

    test('a WebSocket upgrade is still accepted', async () => {
      const conn = await connect(`${secure ? 'wss' : 'ws'}://127.0.0.1:${started.port}/ws`, tls ? { tls: { ca: tls.cert } } : undefined);
      expect(await conn.recv()).toBe('ws');
      await conn.close();
    });
  });
});
