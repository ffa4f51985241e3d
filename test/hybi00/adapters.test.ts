/**
 * A hybi-00 (draft-76) client through each framework adapter: the adapters route the upgrade
 * request through the framework, then call the core's `handleUpgrade` with the `head` bytes, so
 * hybi-00 must pass through unchanged. Besides our client, a raw TCP client checks the two ways an
 * adapter could lose the 8 key3 bytes: dropping `head` (key3 sent with the request head) or
 * reading the socket while the framework runs (key3 sent after the server has read the head).
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import Fastify from 'fastify';
import Koa from 'koa';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { connect, EOF, HandshakeError, serviceMapper, type WebSocketConnection } from 'rfc6455';
import { wsPlugin } from '@rfc6455/fastify';
import { websocket as expressWebsocket } from '@rfc6455/express';
import { websocket as koaWebsocket } from '@rfc6455/koa';

// draft-hixie-thewebsocketprotocol-76 §1.3 worked example.
const KEY1 = '18x 6]8vM;54 *(5:  {   U1]8  z [  8';
const KEY2 = '1_ tx7X d  <  nw  334J702) 7]o}` 0';
const KEY3 = Buffer.from('Tm[K T2u', 'latin1');
const ANSWER = Buffer.from('fQJ,fN/4F4!~K~MH', 'latin1');
const HANDSHAKE_TIMEOUT = 3000;

interface Fixture {
  server: Server;
  port: number;
  close(): Promise<void>;
}

/** The application's WebSocket route: greets with its room and variant, then echoes. */
async function roomHandler(conn: WebSocketConnection, room: string | undefined): Promise<void> {
  await conn.send(`room:${room ?? '?'} variant:${conn.variant}`);
  for await (const m of conn) await conn.send(`echo: ${String(m)}`).catch(() => undefined);
}

const authorized = (value: string | undefined): boolean => value === 'Bearer ok';

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function shut(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

async function fastifyFixture(): Promise<Fixture> {
  const app = Fastify();
  await app.register(wsPlugin, { handshakeTimeout: HANDSHAKE_TIMEOUT });
  app.addHook('onRequest', async (request, reply) => {
    if (request.url.startsWith('/private') && !authorized(request.headers.authorization)) {
      return reply.code(401).header('WWW-Authenticate', 'Bearer').send('who are you?');
    }
    return undefined;
  });
  app.get<{ Params: { room: string } }>('/rooms/:room', { websocket: true }, (conn, request) => roomHandler(conn, request.params.room));
  app.get('/private', { websocket: true }, (conn) => roomHandler(conn, 'private'));
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { server: app.server, port: (app.server.address() as AddressInfo).port, close: () => app.close() };
}

async function expressFixture(): Promise<Fixture> {
  const app = express();
  const ws = expressWebsocket({ handshakeTimeout: HANDSHAKE_TIMEOUT });
  ws.route('/rooms/(?<room>\\w+)', (conn, _req, { params }) => roomHandler(conn, params.room));
  ws.route('/private', (conn) => roomHandler(conn, 'private'));
  app.use('/private', (req: Request, res: Response, next: NextFunction) => {
    if (!authorized(req.headers.authorization)) {
      res.status(401).set('WWW-Authenticate', 'Bearer').send('who are you?');
      return;
    }
    next();
  });
  app.use(ws.middleware);
  const server = createServer(app);
  ws.attach(server, app);
  const port = await listen(server);
  return {
    server,
    port,
    async close() {
      await ws.close();
      await shut(server);
    },
  };
}

async function koaFixture(): Promise<Fixture> {
  const app = new Koa();
  const ws = koaWebsocket({
    handshakeTimeout: HANDSHAKE_TIMEOUT,
    mapper: serviceMapper([
      { path: '/rooms/(?<room>\\w+)', handler: (conn, _req, { params }) => roomHandler(conn, params.room) },
      { path: '/private', handler: (conn) => roomHandler(conn, 'private') },
    ]),
  });
  app.use(async (ctx, next) => {
    if (ctx.path === '/private' && !authorized(ctx.get('authorization'))) {
      ctx.status = 401;
      ctx.set('WWW-Authenticate', 'Bearer');
      ctx.body = 'who are you?';
      return;
    }
    await next();
  });
  app.use(ws);
  const server = createServer(app.callback());
  ws.attach(server, app);
  const port = await listen(server);
  return {
    server,
    port,
    async close() {
      await ws.close();
      await shut(server);
    },
  };
}

function rawHead(port: number, path: string): Buffer {
  return Buffer.from(
    [
      `GET ${path} HTTP/1.1`,
      `Host: 127.0.0.1:${port}`,
      'Upgrade: WebSocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key1: ${KEY1}`,
      `Sec-WebSocket-Key2: ${KEY2}`,
      '',
      '',
    ].join('\r\n'),
    'latin1',
  );
}

/** Opens a raw TCP connection that records what it receives. */
function rawPeer(port: number): Promise<{ socket: Socket; received: () => Buffer; answered: Promise<Buffer> }> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ port, host: '127.0.0.1' }, () => {
      socket.setNoDelay(true);
      let received = Buffer.alloc(0);
      const answered = new Promise<Buffer>((resolveAnswer, rejectAnswer) => {
        socket.on('data', (chunk: Buffer) => {
          received = Buffer.concat([received, chunk]);
          const end = received.indexOf('\r\n\r\n');
          if (end >= 0 && received.length >= end + 4 + 16) resolveAnswer(received);
        });
        socket.on('close', () => rejectAnswer(new Error(`closed after ${JSON.stringify(received.toString('latin1'))}`)));
      });
      answered.catch(() => undefined);
      resolve({ socket, received: () => received, answered });
    });
    socket.on('error', () => undefined);
    socket.once('error', reject);
  });
}

function write(socket: Socket, bytes: Buffer): Promise<void> {
  return new Promise((resolve, reject) => socket.write(bytes, (e) => (e ? reject(e) : resolve())));
}

/** Sends the hybi-00 closing frame and waits for the server to close TCP (a clean end for the test). */
function closeRaw(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    socket.once('close', () => resolve());
    socket.write(Buffer.from([0xff, 0x00]));
  });
}

function expectAnswered(bytes: Buffer): void {
  const end = bytes.indexOf('\r\n\r\n');
  expect(bytes.subarray(0, bytes.indexOf('\r\n')).toString('latin1')).toBe('HTTP/1.1 101 WebSocket Protocol Handshake');
  expect(bytes.subarray(end + 4, end + 20)).toEqual(ANSWER);
}

describe.each([
  ['@rfc6455/fastify', fastifyFixture],
  ['@rfc6455/express', expressFixture],
  ['@rfc6455/koa', koaFixture],
])('%s with a hybi-00 client', (_name, make) => {
  let fixture: Fixture;
  const sockets: Socket[] = [];
  const conns: WebSocketConnection[] = [];
  beforeEach(async () => {
    fixture = await make();
  });
  afterEach(async () => {
    // The server closes its connections first (our clients answer the closing frame), so that no
    // write meets a reset socket.
    await fixture.close();
    for (const s of sockets.splice(0)) s.destroy();
    for (const c of conns.splice(0)) c.terminate();
  });

  test('client reaches a route with a parameter through the framework and exchanges text', async () => {
    const conn = await connect(`ws://127.0.0.1:${fixture.port}/rooms/lobby?x=1`, { variant: 'hybi00' });
    conns.push(conn);
    expect(conn.variant).toBe('hybi00');
    expect(await conn.recv()).toBe('room:lobby variant:hybi00');
    await conn.send('héllo ✓');
    expect(await conn.recv()).toBe('echo: héllo ✓');
    await conn.close();
    expect(conn.closeStatus).toBe(1005);
  });

  test("the framework's auth refuses a hybi-00 upgrade with its own 401, and lets an authorized one through", async () => {
    const error = await connect(`ws://127.0.0.1:${fixture.port}/private`, { variant: 'hybi00' }).then(
      (c) => {
        c.terminate();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(HandshakeError);
    expect((error as HandshakeError).status).toBe(401);
    expect((error as HandshakeError).headers?.['www-authenticate']).toBe('Bearer');
    const conn = await connect(`ws://127.0.0.1:${fixture.port}/private`, { variant: 'hybi00', headers: { Authorization: 'Bearer ok' } });
    conns.push(conn);
    expect(await conn.recv()).toBe('room:private variant:hybi00');
  });

  test('adapter hands key3 sent in the same packet as the head (the `head` buffer) to the core', async () => {
    const peer = await rawPeer(fixture.port);
    sockets.push(peer.socket);
    const upgraded = new Promise<number>((resolve) => fixture.server.once('upgrade', (_r: IncomingMessage, _s: unknown, head: Buffer) => resolve(head.length)));
    await write(peer.socket, Buffer.concat([rawHead(fixture.port, '/rooms/raw'), KEY3]));
    expect(await upgraded).toBe(8);
    expectAnswered(await peer.answered);
    await closeRaw(peer.socket);
  });

  test('adapter leaves key3 sent after the server has read the head for the core to read', async () => {
    const peer = await rawPeer(fixture.port);
    sockets.push(peer.socket);
    const upgraded = new Promise<number>((resolve) => fixture.server.once('upgrade', (_r: IncomingMessage, _s: unknown, head: Buffer) => resolve(head.length)));
    await write(peer.socket, rawHead(fixture.port, '/rooms/raw'));
    expect(await upgraded).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(peer.received().length).toBe(0);
    await write(peer.socket, KEY3);
    const bytes = await peer.answered;
    expectAnswered(bytes);
    // And the first frame arrives after the answer.
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (peer.received().includes(Buffer.from('\x00room:raw variant:hybi00\xff', 'latin1'))) resolve();
        else setTimeout(check, 10);
      };
      check();
    });
    await closeRaw(peer.socket);
  });
});
