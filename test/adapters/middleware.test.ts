/**
 * The adapters in real apps: the middleware and plugins apps register globally, in front of
 * everything, run on the upgrade request and leave it intact. Express with compression() (made to
 * compress everything, the 101 included), helmet(), cors(), morgan(), cookieParser() and
 * express-rate-limit; Koa with koa-compress, @koa/cors and koa-helmet; Fastify with
 * @fastify/compress, @fastify/helmet, @fastify/cors and @fastify/rate-limit. Clients: our connect()
 * (offering permessage-deflate and Accept-Encoding, as browsers do) and `ws`. Checked: the 101
 * carries the headers those middleware set (helmet's, CORS, rate-limit, Set-Cookie) and no body
 * header; messages flow both ways, deflated, byte for byte; a rate limiter's 429 reaches the client
 * as that HTTP response with its body; the request log shows each upgrade once, as a 101; the
 * cookies cookieParser parsed reach the handler; nothing is logged as an error and the server
 * closes; over HTTP/2 (Fastify, RFC 8441) the same headers are on the 200. Fixed bugs: injectWS
 * gave the app a socket with no address, so @fastify/rate-limit answered every injectWS() 500; over
 * HTTP/2 the headers hooks set on reply.raw (all of @fastify/helmet's) were missing from the 200.
 */
import compression from 'compression';
import cookieParser from 'cookie-parser';
import cors from 'cors';
import express, { type NextFunction, type Request, type Response } from 'express';
import { rateLimit } from 'express-rate-limit';
import Fastify, { type FastifyInstance } from 'fastify';
import fastifyCompress from '@fastify/compress';
import fastifyCors from '@fastify/cors';
import fastifyHelmet from '@fastify/helmet';
import fastifyRateLimit from '@fastify/rate-limit';
import helmet from 'helmet';
import Koa from 'koa';
import koaCors from '@koa/cors';
import koaCompress from 'koa-compress';
import koaHelmet from 'koa-helmet';
import morgan from 'morgan';
import { randomBytes } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import WebSocket from 'ws';
import { connect, HandshakeError, serviceMapper, type WebSocketConnection } from 'rfc6455';
import { websocket as expressWebSocket } from '@rfc6455/express';
import { injectWS, wsPlugin } from '@rfc6455/fastify';
import { websocket as koaWebSocket } from '@rfc6455/koa';
import { CLIENT_TLS, TLS } from '../http2/helpers.js';

const ORIGIN = 'https://app.example';
/** What a browser sends beside its handshake (and what makes a compression middleware want to compress). */
const BROWSER_HEADERS = { origin: ORIGIN, 'accept-encoding': 'gzip, deflate, br' };

/** Echoes every message. */
async function echo(conn: WebSocketConnection): Promise<void> {
  for await (const message of conn) await conn.send(message);
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Closes `server` as an app does at shutdown (no closeAllConnections: nothing may be left open). */
function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
}

/** The 101 carries what the middleware set, and nothing of a body. */
function expectMiddlewareHeaders(headers: IncomingHttpHeaders): void {
  expect(headers.connection).toBe('Upgrade');
  expect(headers.upgrade).toBe('websocket');
  expect(headers['sec-websocket-extensions']).toBe('permessage-deflate');
  // helmet
  expect(headers['x-frame-options']).toBe('SAMEORIGIN');
  expect(headers['content-security-policy']).toContain("default-src 'self'");
  expect(headers['strict-transport-security']).toContain('max-age=');
  // CORS
  expect(headers['access-control-allow-origin']).toBe(ORIGIN);
  expect(headers['access-control-allow-credentials']).toBe('true');
  for (const name of ['content-encoding', 'content-length', 'content-type', 'transfer-encoding']) expect(headers[name]).toBeUndefined();
}

/** A text and a binary message, large enough to be compressed, come back intact over `conn`. */
async function expectEcho(conn: WebSocketConnection): Promise<void> {
  expect(conn.extensions).toBe('permessage-deflate');
  const text = 'héllo '.repeat(2000);
  const binary = Buffer.concat([randomBytes(4096), Buffer.alloc(8192, 7)]);
  await conn.send(text);
  expect(await conn.recv()).toBe(text);
  await conn.send(binary);
  expect(Buffer.compare((await conn.recv()) as Buffer, binary)).toBe(0);
}

/** Opens a `ws` client, echoes one binary message, closes; returns the 101's headers. */
async function wsEcho(url: string): Promise<IncomingHttpHeaders> {
  const client = new WebSocket(url, { headers: BROWSER_HEADERS });
  const upgrade = new Promise<IncomingMessage>((resolve) => client.once('upgrade', resolve));
  await new Promise<void>((resolve, reject) => {
    client.once('open', resolve);
    client.once('error', reject);
  });
  expect(client.extensions).toBe('permessage-deflate');
  const payload = randomBytes(20_000);
  client.send(payload);
  const [data] = (await new Promise<unknown[]>((resolve) => client.once('message', (...args) => resolve(args)))) as [Buffer];
  expect(Buffer.compare(data, payload)).toBe(0);
  client.close(1000);
  await new Promise((resolve) => client.once('close', resolve));
  return (await upgrade).headers;
}

/** What a `ws` client gets for a refused handshake: the status and the body. */
async function wsRefusal(url: string): Promise<{ status: number; body: string }> {
  const client = new WebSocket(url, { headers: { origin: ORIGIN } });
  client.on('error', () => undefined);
  return new Promise((resolve) => {
    client.once('unexpected-response', (request, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        request.destroy();
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() });
      });
    });
  });
}

describe('Express: compression, helmet, cors, morgan, cookieParser, express-rate-limit in front', () => {
  let server: Server;
  let url: string;
  let ws: ReturnType<typeof expressWebSocket>;
  let log: string[];
  let errors: unknown[];

  beforeEach(async () => {
    const app = express();
    log = [];
    errors = [];
    const stream = new PassThrough();
    stream.on('data', (line: Buffer) => log.push(String(line)));
    ws = expressWebSocket({ perMessageDeflate: true, onError: (error) => void errors.push(error) });
    ws.route('/echo', echo);
    ws.route('/cookies', (conn, req) => void conn.send(JSON.stringify(req.cookies)));
    // Every response compressed, whatever its type or size (the 101's end goes through the gzip stream).
    app.use(compression({ threshold: 0, filter: () => true }));
    app.use(helmet());
    app.use(
      cors({
        credentials: true,
        origin: (origin, callback) => (origin === 'https://evil.example' ? callback(new Error('origin not allowed')) : callback(null, ORIGIN)),
      }),
    );
    app.use(morgan(':method :url :status', { stream }));
    app.use(cookieParser());
    app.use(rateLimit({ windowMs: 60_000, limit: 3, standardHeaders: 'draft-7', legacyHeaders: false, message: 'slow down' }));
    app.use((_req, res, next) => {
      res.cookie('seen', '1', { httpOnly: true });
      next();
    });
    app.use(ws.middleware);
    app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
      res.status(403).send(error.message);
    });
    server = createServer(app);
    ws.attach(server, app);
    url = await listen(server);
  });

  afterEach(async () => {
    await ws.close();
    await closeServer(server);
    expect(errors).toEqual([]);
  });

  it('accepts with the middleware headers on the 101; messages flow deflated and intact; morgan logs one 101', async () => {
    const conn = await connect(`${url}/echo`, { headers: BROWSER_HEADERS, perMessageDeflate: true });
    expectMiddlewareHeaders(conn.headers);
    expect(conn.headers.ratelimit).toMatch(/remaining=2/);
    expect(conn.headers['set-cookie']).toEqual(['seen=1; Path=/; HttpOnly']);
    expect(conn.headers.vary).toContain('Origin');
    await expectEcho(conn);
    await conn.close();
    const headers = await wsEcho(`${url}/echo`);
    expectMiddlewareHeaders(headers);
    expect(headers.ratelimit).toMatch(/remaining=1/);
    expect(log).toEqual(['GET /echo 101\n', 'GET /echo 101\n']);
  });

  it("cookieParser's req.cookies reach the handler", async () => {
    const conn = await connect(`${url}/cookies`, { headers: { ...BROWSER_HEADERS, cookie: 'sid=abc; theme=dark' } });
    expect(JSON.parse(String(await conn.recv()))).toEqual({ sid: 'abc', theme: 'dark' });
    await conn.close();
  });

  it("the rate limiter's 429 reaches connect() and ws as HTTP, body included", async () => {
    for (let i = 0; i < 3; i++) await (await connect(`${url}/echo`)).close();
    const error = await connect(`${url}/echo`, { headers: { origin: ORIGIN } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HandshakeError);
    expect(error).toMatchObject({ status: 429, code: 'WS_UNEXPECTED_RESPONSE' });
    expect(String((error as HandshakeError).body)).toBe('slow down');
    expect((error as HandshakeError).headers['x-frame-options']).toBe('SAMEORIGIN');
    expect((error as HandshakeError).headers['retry-after']).toBe('60');
    expect(await wsRefusal(`${url}/echo`)).toEqual({ status: 429, body: 'slow down' });
    expect(log.filter((line) => line === 'GET /echo 429\n')).toHaveLength(2);
  });

  it("cors refusing an origin (next(err)) is the error handler's 403", async () => {
    const error = await connect(`${url}/echo`, { headers: { origin: 'https://evil.example' } }).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 403, code: 'WS_UNEXPECTED_RESPONSE' });
    expect(String((error as HandshakeError).body)).toBe('origin not allowed');
  });
});

describe('Koa: koa-compress, @koa/cors, koa-helmet in front', () => {
  it('accepts from the middleware and inline with their headers on the 101; messages flow deflated and intact; a refusal is HTTP', async () => {
    const app = new Koa();
    const errors: unknown[] = [];
    app.on('error', (error) => void errors.push(error));
    const ws = koaWebSocket({ perMessageDeflate: true, mapper: serviceMapper([{ path: '/echo', handler: echo }]) });
    app.use(koaCompress({ threshold: 0 }));
    app.use(koaCors({ origin: ORIGIN, credentials: true }));
    app.use(koaHelmet());
    app.use(async (ctx, next) => {
      if (ctx.query.limit) {
        ctx.status = 429;
        ctx.set('Retry-After', '60');
        ctx.body = 'slow down';
        return;
      }
      ctx.cookies.set('seen', '1');
      await next();
    });
    app.use(ws);
    app.use(async (ctx) => {
      const conn = ctx.ws && (await ctx.ws());
      if (conn) await echo(conn);
    });
    const server = createServer(app.callback());
    ws.attach(server, app);
    const url = await listen(server);
    try {
      for (const path of ['/echo', '/inline']) {
        const conn = await connect(`${url}${path}`, { headers: BROWSER_HEADERS, perMessageDeflate: true });
        expectMiddlewareHeaders(conn.headers);
        expect(conn.headers['set-cookie']).toEqual(['seen=1; path=/; httponly']);
        await expectEcho(conn);
        await conn.close();
        expectMiddlewareHeaders(await wsEcho(`${url}${path}`));
      }
      const error = await connect(`${url}/echo?limit=1`, { headers: { origin: ORIGIN } }).catch((e: unknown) => e);
      expect(error).toMatchObject({ status: 429, code: 'WS_UNEXPECTED_RESPONSE' });
      expect(String((error as HandshakeError).body)).toBe('slow down');
      expect((error as HandshakeError).headers['x-frame-options']).toBe('SAMEORIGIN');
      expect(await wsRefusal(`${url}/inline?limit=1`)).toEqual({ status: 429, body: 'slow down' });
    } finally {
      await ws.close();
      await closeServer(server);
    }
    expect(errors).toEqual([]);
  });
});

describe('Fastify: @fastify/compress, @fastify/helmet, @fastify/cors, @fastify/rate-limit in front', () => {
  let app: FastifyInstance;
  let logs: Array<{ level: number; msg: string; res?: { statusCode: number } }>;

  beforeEach(async () => {
    logs = [];
    app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => void logs.push(JSON.parse(line)) } } }) as unknown as FastifyInstance;
    await app.register(fastifyCompress, { threshold: 0 });
    await app.register(fastifyHelmet);
    await app.register(fastifyCors, { origin: ORIGIN, credentials: true });
    await app.register(fastifyRateLimit, { max: 3, timeWindow: 60_000 });
    await app.register(wsPlugin, { perMessageDeflate: true });
    app.get('/echo', { websocket: true }, echo);
    app.get('/ip', { websocket: true }, (conn, req) => void conn.send(req.ip));
  });

  afterEach(async () => {
    await app.close();
    expect(logs.filter((entry) => entry.level >= 40)).toEqual([]);
  });

  it('accepts with the plugins headers on the 101; messages flow deflated and intact; each upgrade logged once as 101; the 429 is HTTP', async () => {
    await app.listen({ port: 0, host: '127.0.0.1' });
    const url = `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const conn = await connect(`${url}/echo`, { headers: BROWSER_HEADERS, perMessageDeflate: true });
    expectMiddlewareHeaders(conn.headers);
    expect(conn.headers['x-ratelimit-remaining']).toBe('2');
    await expectEcho(conn);
    await conn.close();
    expectMiddlewareHeaders(await wsEcho(`${url}/echo`));
    await (await connect(`${url}/echo`)).close();
    const error = await connect(`${url}/echo`, { headers: { origin: ORIGIN } }).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 429, code: 'WS_UNEXPECTED_RESPONSE' });
    expect(JSON.parse(String((error as HandshakeError).body))).toMatchObject({ statusCode: 429, error: 'Too Many Requests' });
    expect((error as HandshakeError).headers['x-frame-options']).toBe('SAMEORIGIN');
    expect((await wsRefusal(`${url}/echo`)).status).toBe(429);
    expect(logs.filter((entry) => entry.msg === 'request completed').map((entry) => entry.res?.statusCode)).toEqual([101, 101, 101, 429, 429]);
  });

  it('injectWS works behind @fastify/rate-limit: the app sees a client address (127.0.0.1, or remoteAddress)', async () => {
    const conn = await app.injectWS('/ip');
    expect(await conn.recv()).toBe('127.0.0.1');
    expect(conn.headers['x-ratelimit-remaining']).toBe('2');
    await conn.close();
    const other = await injectWS(app, '/ip', { remoteAddress: '::1' });
    expect(await other.recv()).toBe('::1');
    expect(other.headers['x-ratelimit-remaining']).toBe('2');
    await other.close();
  });

  it("over HTTP/2 (extended CONNECT) the 200 carries the plugins' headers, @fastify/helmet's (set on reply.raw) included, as the 101 does", async () => {
    await app.close();
    logs = [];
    app = Fastify({ http2: true, https: { ...TLS, allowHTTP1: true }, forceCloseConnections: true }) as unknown as FastifyInstance;
    await app.register(fastifyCompress, { threshold: 0 });
    await app.register(fastifyHelmet);
    await app.register(fastifyCors, { origin: ORIGIN, credentials: true });
    await app.register(fastifyRateLimit, { max: 3, timeWindow: 60_000 });
    await app.register(wsPlugin, { perMessageDeflate: true });
    app.get('/echo', { websocket: true }, echo);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const url = `wss://localhost:${(app.server.address() as AddressInfo).port}/echo`;
    const seen: IncomingHttpHeaders[] = [];
    for (const http2 of [true, false]) {
      const conn = await connect(url, { http2, tls: CLIENT_TLS, headers: BROWSER_HEADERS, perMessageDeflate: true });
      expect(conn.transport.kind).toBe(http2 ? 'http2' : 'tls');
      await expectEcho(conn);
      await conn.close();
      seen.push(conn.headers);
    }
    for (const headers of seen) {
      expect(headers['x-frame-options']).toBe('SAMEORIGIN');
      expect(headers['content-security-policy']).toContain("default-src 'self'");
      expect(headers['access-control-allow-origin']).toBe(ORIGIN);
      expect(headers['content-encoding']).toBeUndefined();
    }
    expect(seen.map((headers) => headers['x-ratelimit-remaining'])).toEqual(['2', '1']);
  });
});

describe("access logs see the core's refusals with their status (morgan, a Koa logger, Fastify's own log)", () => {
  type Framework = 'Express' | 'Koa' | 'Fastify';
  const mapper = serviceMapper([{ path: '/echo', handler: echo }]);
  const options = {
    origins: [ORIGIN],
    beforeAccept: (req: IncomingMessage) => (req.url === '/echo?deny' ? { reject: { status: 401, body: 'who?' } } : undefined),
    mapper,
  };

  /** Starts the framework with its access log; `log` gets "METHOD URL STATUS" as each response finishes. */
  async function start(framework: Framework, log: string[]): Promise<{ url: string; close(): Promise<void> }> {
    if (framework === 'Fastify') {
      const app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => void collect(JSON.parse(line)) } } });
      const collect = (entry: { msg: string; res?: { statusCode: number } }): void => {
        if (entry.msg === 'request completed') log.push(`GET ${String(entry.res?.statusCode)}`);
      };
      await app.register(wsPlugin, options as never);
      await app.listen({ port: 0, host: '127.0.0.1' });
      return { url: `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}`, close: () => app.close() };
    }
    let server: Server;
    let close: () => Promise<void>;
    if (framework === 'Express') {
      const app = express();
      const stream = new PassThrough();
      stream.on('data', (line: Buffer) => void log.push(String(line).trim()));
      app.use(morgan(':method :status', { stream }));
      const ws = expressWebSocket(options);
      app.use(ws.middleware);
      server = createServer(app);
      ws.attach(server, app);
      close = () => ws.close();
    } else {
      const app = new Koa();
      // An access log as koa-logger keeps one: the status once the response has finished.
      app.use(async (ctx, next) => {
        ctx.res.once('finish', () => void log.push(`${ctx.method} ${ctx.res.statusCode}`));
        await next();
      });
      const ws = koaWebSocket(options);
      app.use(ws);
      server = createServer(app.callback());
      ws.attach(server, app);
      close = () => ws.close();
    }
    const url = await listen(server);
    return {
      url,
      async close() {
        await close();
        await closeServer(server);
      },
    };
  }

  /** A raw upgrade request with `headers` on top of a valid handshake's: the status answered. */
  function rawUpgrade(url: string, headers: Record<string, string>): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = httpRequest(`${url.replace('ws:', 'http:')}/echo`, {
        headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': randomBytes(16).toString('base64'), 'sec-websocket-version': '13', origin: ORIGIN, ...headers },
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('upgrade', (res, socket) => {
        socket.destroy();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
  }

  /** Waits until `log` holds `n` lines (a response finishes once the refusal has been written). */
  async function lines(log: string[], n: number): Promise<string[]> {
    for (let i = 0; i < 200 && log.length < n; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    return log;
  }

  test.each<Framework>(['Express', 'Koa', 'Fastify'])('%s: an Origin not allowed (403), a beforeAccept refusal (401), a bad handshake (426) are logged with their status, an accepted upgrade as 101', async (framework) => {
    const log: string[] = [];
    const running = await start(framework, log);
    try {
      const forbidden = await connect(`${running.url}/echo`, { headers: { origin: 'https://evil.example' } }).catch((e: unknown) => e);
      expect(forbidden).toMatchObject({ status: 403 });
      const denied = await connect(`${running.url}/echo?deny`, { headers: { origin: ORIGIN } }).catch((e: unknown) => e);
      expect(denied).toMatchObject({ status: 401 });
      expect(String((denied as HandshakeError).body)).toBe('who?');
      expect(await rawUpgrade(running.url, { 'sec-websocket-version': '12' })).toBe(426);
      expect(await lines(log, 3)).toEqual(['GET 403', 'GET 401', 'GET 426']);
      // An accepted upgrade beside them is logged as the 101 it is, once, when it is accepted.
      const conn = await connect(`${running.url}/echo`, { headers: { origin: ORIGIN } });
      await conn.send('still here');
      expect(await conn.recv()).toBe('still here');
      expect(await lines(log, 4)).toEqual(['GET 403', 'GET 401', 'GET 426', 'GET 101']);
      await conn.close();
    } finally {
      await running.close();
    }
  });
});
