/**
 * Our hybi-00 client against websocket-driver's draft-76 server, an independent implementation,
 * over real sockets: once as a bare `net` server (websocket-driver parses the HTTP request itself,
 * `websocket.server({ allowDrafts: true })`), once behind Node's HTTP server (`websocket.http(request)` on `upgrade`,
 * the `head` bytes written to the driver first, as its README says).
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect, EOF, type WebSocketConnection } from '../../src/index.js';

interface DriverEvent {
  data: string;
}
interface Driver {
  readonly io: Duplex;
  readonly messages: { on(event: 'data', listener: (message: string) => void): unknown };
  readonly version: string;
  readonly protocol?: string;
  on(event: 'connect' | 'open', listener: () => void): unknown;
  on(event: 'close', listener: () => void): unknown;
  on(event: 'message', listener: (event: DriverEvent) => void): unknown;
  start(): boolean;
  text(message: string): boolean;
  close(): boolean;
}
interface DriverModule {
  server(options?: { allowDrafts?: boolean; protocols?: string[] }): Driver;
  http(request: IncomingMessage, options?: { allowDrafts?: boolean; protocols?: string[] }): Driver;
  isWebSocket(request: unknown): boolean;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const websocket = require('websocket-driver') as DriverModule;

/** What the application behind websocket-driver does: echo, close on "close me", greet on open. */
interface Behaviour {
  received: string[];
  versions: string[];
  /** Resolves when websocket-driver reports the connection closed. */
  closed: Promise<void>;
}

function behave(driver: Driver, socket: Socket, log: Behaviour, onClosed: () => void): void {
  driver.on('open', () => {
    log.versions.push(driver.version);
    driver.text('hello from websocket-driver ✓');
  });
  driver.on('message', (event) => {
    log.received.push(event.data);
    if (event.data === 'close me') driver.close();
    else driver.text(`echo: ${event.data}`);
  });
  driver.on('close', () => {
    socket.end();
    onClosed();
  });
  socket.on('error', () => undefined);
}

interface Fixture {
  url: string;
  log: Behaviour;
  close(): Promise<void>;
}

async function listen(server: NetServer | HttpServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function stop(server: NetServer | HttpServer, sockets: Set<Socket>): Promise<void> {
  for (const s of sockets) s.destroy();
  return new Promise((resolve) => server.close(() => resolve()));
}

async function netFixture(): Promise<Fixture> {
  let resolveClosed!: () => void;
  const log: Behaviour = { received: [], versions: [], closed: new Promise((r) => (resolveClosed = r)) };
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    const driver = websocket.server({ allowDrafts: true });
    driver.on('connect', () => {
      if (websocket.isWebSocket(driver)) driver.start();
      else socket.destroy();
    });
    behave(driver, socket, log, resolveClosed);
    socket.pipe(driver.io).pipe(socket);
  });
  const port = await listen(server);
  return { url: `ws://127.0.0.1:${port}/draft76?via=net`, log, close: () => stop(server, sockets) };
}

async function httpFixture(): Promise<Fixture> {
  let resolveClosed!: () => void;
  const log: Behaviour = { received: [], versions: [], closed: new Promise((r) => (resolveClosed = r)) };
  const sockets = new Set<Socket>();
  const server = createHttpServer();
  server.on('upgrade', (request: IncomingMessage, socket: Socket, head: Buffer) => {
    sockets.add(socket);
    if (!websocket.isWebSocket(request)) return socket.destroy();
    const driver = websocket.http(request, { allowDrafts: true });
    behave(driver, socket, log, resolveClosed);
    driver.io.write(head);
    socket.pipe(driver.io).pipe(socket);
    driver.start();
  });
  const port = await listen(server);
  return { url: `ws://127.0.0.1:${port}/draft76?via=http`, log, close: () => stop(server, sockets) };
}

async function recvText(conn: WebSocketConnection): Promise<string> {
  const m = await conn.recv();
  if (m === EOF) throw new Error(`closed: ${conn.closeStatus}`);
  return String(m);
}

const TEXTS = ['plain', 'héllo wörld', '日本語', 'astral 😀 𝄞', '', 'x'.repeat(100_000)];

describe.each([
  ['a net server (websocket.server())', netFixture],
  ['an HTTP server upgrade (websocket.http(request))', httpFixture],
])('our hybi-00 client against websocket-driver draft-76 behind %s', (_name, make) => {
  let fixture: Fixture;
  const conns: WebSocketConnection[] = [];
  beforeEach(async () => {
    fixture = await make();
  });
  afterEach(async () => {
    for (const c of conns.splice(0)) c.terminate();
    await fixture.close();
  });

  async function open(): Promise<WebSocketConnection> {
    const conn = await connect(fixture.url, { variant: 'hybi00', origin: 'http://example.com' });
    conns.push(conn);
    return conn;
  }

  test('client verifies the answer, receives the greeting and exchanges UTF-8 text both ways', async () => {
    const conn = await open();
    expect(conn.variant).toBe('hybi00');
    expect(conn.headers['sec-websocket-origin']).toBe('http://example.com');
    expect(conn.headers['sec-websocket-location']).toBe(fixture.url);
    expect(await recvText(conn)).toBe('hello from websocket-driver ✓');
    for (const text of TEXTS) {
      await conn.send(text);
      expect(await recvText(conn)).toBe(`echo: ${text}`);
    }
    expect(fixture.log.versions).toEqual(['hixie-76']);
    expect(fixture.log.received).toEqual(TEXTS);
  });

  test('client closes: websocket-driver answers 0xFF 0x00 and closes; the client reports 1005', async () => {
    const conn = await open();
    expect(await recvText(conn)).toBe('hello from websocket-driver ✓');
    await conn.close();
    expect(conn.closed).toBe(true);
    expect(conn.closeStatus).toBe(1005);
    await fixture.log.closed;
  });

  test('server closes (websocket-driver close()): the client gets EOF and reports 1005', async () => {
    const conn = await open();
    expect(await recvText(conn)).toBe('hello from websocket-driver ✓');
    await conn.send('close me');
    expect(await conn.recv()).toBe(EOF);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1005);
    expect(fixture.log.received).toEqual(['close me']);
  });
});
