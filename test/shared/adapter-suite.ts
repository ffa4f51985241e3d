/**
 * One behaviour suite for every way of serving WebSockets: `serve()` and the Fastify, Express and
 * Koa adapters, each over real sockets with the real framework (crossws's `wsTests` idea). Every
 * fixture serves the same application:
 *
 *   /echo                   no subprotocol: echoes every message
 *   /rooms/<room>           sends "room:<room>" (a route parameter)
 *   /proto                  subprotocols chat, superchat, also-chat (also-chat shares chat's
 *                           handler); none offered → 400
 *   /private                only with `Authorization: Bearer letmein` (checked by the framework's
 *                           middleware/hook, else 401 + `WWW-Authenticate: Bearer`); sends
 *                           "user:<user>" where <user> was set by that middleware
 *   GET /hello (HTTP)       "hello over http"
 *
 * and nothing else, so /nowhere is a 404.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage, Server } from 'node:http';
import { connect as netConnect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { broadcast, connect, EOF, handleUpgrade, HandshakeError, type ConnectOptions, type ConnectionHandler, type Route, type WebSocketConnection } from 'rfc6455';
import { allCases } from '../interop/autobahn/harness.js';
import { runAgainstUrl, type ServerRun, verdictTests } from '../interop/autobahn/our-side.js';
import { rawRequest } from '../../packages/rfc6455/test/helpers/raw-client.js';

export interface TlsMaterial {
  key: string;
  cert: string;
}

/** A framework's server listening on a free port of 127.0.0.1, for tests of one behaviour across the adapters. */
export interface Started {
  port: number;
  /** Closes the adapter's WebSockets, then the server and its connections. */
  close(): Promise<void>;
}

/** Listens on a free port of 127.0.0.1; `close()` closes the WebSockets first, then the server. */
export async function listenStarted(server: Server, closeWebSockets: () => Promise<void>): Promise<Started> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      await closeWebSockets();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

export interface AdapterFixture {
  /** The framework's HTTP(S) server (tests add `upgrade` listeners to it). */
  server: {
    on(event: 'upgrade', listener: (req: IncomingMessage, socket: Duplex, head: Buffer) => void): unknown;
    removeListener(event: 'upgrade', listener: (req: IncomingMessage, socket: Duplex, head: Buffer) => void): unknown;
  };
  /** ws://127.0.0.1:<port> (or wss:), no trailing slash. */
  url: string;
  /** The framework's graceful shutdown (must close open WebSocket connections with 1001). */
  close(): Promise<void>;
  /** The open WebSocket connections as the adapter exposes them (for `broadcast()`). */
  connections: ReadonlySet<WebSocketConnection>;
}

export interface AdapterUnderTest {
  name: string;
  start(options?: { tls?: TlsMaterial }): Promise<AdapterFixture>;
  /** False for serve(), which owns its server and answers every upgrade itself. */
  leavesUnclaimedUpgrades: boolean;
}

// ---- The application's WebSocket handlers (core signatures) -----------------------------------

export const echoHandler: ConnectionHandler<unknown> = async (conn) => {
  for await (const message of conn) await conn.send(message).catch(() => undefined);
};

export const roomHandler: ConnectionHandler<unknown> = (conn, _req, { params }) => {
  void conn.send(`room:${params.room ?? '?'}`);
};

const chat: ConnectionHandler<unknown> = (conn, _req, { protocol }) => {
  void conn.send(`chat via ${protocol}`);
};

export const protoProtocols: Record<string, ConnectionHandler<unknown>> = {
  chat,
  superchat: (conn) => void conn.send('superchat'),
  'also-chat': chat,
};

/** The /private handler, given how this framework exposes what the auth middleware set. */
export function privateHandler(userOf: (req: IncomingMessage, state: unknown) => unknown): ConnectionHandler<unknown> {
  return (conn, req, { state }) => void conn.send(`user:${String(userOf(req, state))}`);
}

/** The whole mapper as core routes (fixtures that route everything through a mapper use it). */
export function suiteRoutes(userOf: (req: IncomingMessage, state: unknown) => unknown): Route<unknown>[] {
  return [
    { path: '/echo', handler: echoHandler },
    { path: '/rooms/(?<room>\\w+)', handler: roomHandler },
    { path: '/proto', protocols: protoProtocols },
    { path: '/private', handler: privateHandler(userOf) },
  ];
}

export const AUTH_HEADER = 'Bearer letmein';
export const HELLO_BODY = 'hello over http';

/** The auth rule every fixture implements with its own middleware. */
export function authorized(authorization: string | undefined): boolean {
  return authorization === AUTH_HEADER;
}

// ---- Helpers ------------------------------------------------------------------------------------

/** A self-signed certificate for 127.0.0.1, made by the openssl CLI. */
export function selfSignedCert(): TlsMaterial {
  const dir = mkdtempSync(join(tmpdir(), 'rfc6455-cert-'));
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function recvText(conn: WebSocketConnection): Promise<string> {
  const message = await conn.recv();
  if (message === EOF) throw new Error(`connection ended (close ${String(conn.closeStatus)})`);
  return message.toString();
}

/** The HandshakeError a refused connect rejects with. */
async function refusal(url: string, options?: ConnectOptions): Promise<HandshakeError> {
  try {
    const conn = await connect(url, options);
    await conn.close();
  } catch (error) {
    if (error instanceof HandshakeError) return error;
    throw error;
  }
  throw new Error(`expected ${url} to be refused, but it was accepted`);
}

/** Sends a handshake and a masked text frame in one write; resolves with every byte read until `until` appears. */
function rawHandshakeWithFrame(port: number, path: string, text: string, until: Buffer): Promise<Buffer> {
  const payload = Buffer.from(text);
  const mask = Buffer.from([1, 2, 3, 4]);
  const frame = Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, payload.map((b, i) => b ^ mask[i % 4]!)]);
  const head =
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1', () => socket.write(Buffer.concat([Buffer.from(head), frame])));
    let received = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.includes(until)) {
        socket.destroy();
        resolve(received);
      }
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`closed before the expected bytes; got ${JSON.stringify(received.toString('latin1'))}`)));
  });
}

// ---- The suite -----------------------------------------------------------------------------------

export function adapterSuite(adapter: AdapterUnderTest): void {
  describe(`${adapter.name}: shared WebSocket behaviour`, () => {
    let fixture: AdapterFixture;
    const open: WebSocketConnection[] = [];
    const client = async (path: string, options?: ConnectOptions): Promise<WebSocketConnection> => {
      const conn = await connect(fixture.url + path, options);
      open.push(conn);
      return conn;
    };

    beforeAll(async () => {
      fixture = await adapter.start();
    });
    afterEach(async () => {
      await Promise.all(open.splice(0).map((conn) => conn.close().catch(() => undefined)));
    });
    afterAll(async () => {
      await fixture.close();
    });

    describe('routing by path', () => {
      it('server echoes messages on /echo', async () => {
        const conn = await client('/echo');
        await conn.send('hello');
        expect(await recvText(conn)).toBe('hello');
        await conn.send(Buffer.from([1, 2, 3]));
        expect(await conn.recv()).toEqual(Buffer.from([1, 2, 3]));
      });

      it('server ignores the query string when routing', async () => {
        const conn = await client('/echo?foo=bar');
        await conn.send('with query');
        expect(await recvText(conn)).toBe('with query');
      });

      it('server hands named groups of the path to the handler as params', async () => {
        const conn = await client('/rooms/lobby');
        expect(await recvText(conn)).toBe('room:lobby');
      });

      it('server answers 404 as an HTTP response to a path no route serves', async () => {
        const error = await refusal(fixture.url + '/nowhere');
        expect(error.status).toBe(404);
      });

      it('server passes frames sent with the handshake (the head bytes) to the connection', async () => {
        const bytes = await rawHandshakeWithFrame(Number(new URL(fixture.url).port), '/echo', 'early', Buffer.from('early'));
        const text = bytes.toString('latin1');
        expect(text.startsWith('HTTP/1.1 101')).toBe(true);
        // The echo of the early frame: an unmasked text frame with the same payload.
        expect(bytes.includes(Buffer.concat([Buffer.from([0x81, 5]), Buffer.from('early')]))).toBe(true);
      });
    });

    describe('draft hybi-00 clients', () => {
      it('a hybi-00 client (key3 in the head bytes) is routed and served like any other', async () => {
        const conn = await client('/echo', { variant: 'hybi00' });
        expect(conn.variant).toBe('hybi00');
        await conn.send('old client');
        expect(await recvText(conn)).toBe('old client');
      });

      it('a hybi-00 client gets the route parameters and the auth refusal', async () => {
        const conn = await client('/rooms/draft', { variant: 'hybi00' });
        expect(await recvText(conn)).toBe('room:draft');
        const error = await refusal(fixture.url + '/private', { variant: 'hybi00' });
        expect(error.status).toBe(401);
      });
    });

    describe('routing by subprotocol', () => {
      it('server chooses the first subprotocol in the client order that the route supports', async () => {
        const conn = await client('/proto', { protocols: ['superchat', 'chat'] });
        expect(conn.protocol).toBe('superchat');
        expect(await recvText(conn)).toBe('superchat');
      });

      it('server skips offered subprotocols the route lacks', async () => {
        const conn = await client('/proto', { protocols: ['nope', 'chat', 'superchat'] });
        expect(conn.protocol).toBe('chat');
        expect(await recvText(conn)).toBe('chat via chat');
      });

      it('server runs one handler for two subprotocol names', async () => {
        const conn = await client('/proto', { protocols: ['also-chat'] });
        expect(conn.protocol).toBe('also-chat');
        expect(await recvText(conn)).toBe('chat via also-chat');
      });

      it('server answers 400 naming the supported subprotocols when none offered is supported', async () => {
        const error = await refusal(fixture.url + '/proto', { protocols: ['nope'] });
        expect(error.status).toBe(400);
        expect(error.body?.toString()).toContain('chat');
      });

      it('server answers 400 when a route requires a subprotocol and none is offered', async () => {
        const error = await refusal(fixture.url + '/proto');
        expect(error.status).toBe(400);
      });

      it('server answers 400 to a subprotocol offered on a route that takes none', async () => {
        const error = await refusal(fixture.url + '/echo', { protocols: ['chat'] });
        expect(error.status).toBe(400);
      });

      it('server answers no subprotocol when the client offered none', async () => {
        const conn = await client('/echo');
        expect(conn.protocol).toBe('');
      });
    });

    describe('middleware', () => {
      it('auth middleware refuses an upgrade without credentials with 401 and WWW-Authenticate', async () => {
        const error = await refusal(fixture.url + '/private');
        expect(error.status).toBe(401);
        expect(error.headers['www-authenticate']).toBe('Bearer');
      });

      it('auth middleware refuses wrong credentials with 401', async () => {
        const error = await refusal(fixture.url + '/private', { headers: { Authorization: 'Bearer nope' } });
        expect(error.status).toBe(401);
      });

      it('handler sees the state the auth middleware set', async () => {
        const conn = await client('/private', { headers: { Authorization: AUTH_HEADER } });
        expect(await recvText(conn)).toBe('user:alice');
      });
    });

    describe('opening handshake checks (RFC 6455 §4.2.1, §4.4), on a route that exists', () => {
      const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
      const head = (lines: Array<string | undefined>, start = 'GET /echo HTTP/1.1'): string => [start, ...lines.filter((l) => l !== undefined), '', ''].join('\r\n');
      const valid = (override: Record<string, string | undefined> = {}): Array<string | undefined> => {
        const fields: Record<string, string | undefined> = { Host: 'x', Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': KEY, 'Sec-WebSocket-Version': '13', ...override };
        return Object.entries(fields).map(([name, value]) => (value === undefined ? undefined : `${name}: ${value}`));
      };
      it.each([
        ['Sec-WebSocket-Version: 8', head(valid({ 'Sec-WebSocket-Version': '8' })), 426],
        ['no Sec-WebSocket-Version', head(valid({ 'Sec-WebSocket-Version': undefined })), 426],
        ['a key of 15 bytes', head(valid({ 'Sec-WebSocket-Key': Buffer.alloc(15, 1).toString('base64') })), 400],
        ['no key', head(valid({ 'Sec-WebSocket-Key': undefined })), 400],
        ['the key twice', head([...valid(), `Sec-WebSocket-Key: ${KEY}`]), 400],
        ['no Host', head(valid({ Host: undefined })), 400],
        ['two Host lines', head([...valid(), 'Host: y']), 400],
        ['HTTP/1.0', head(valid(), 'GET /echo HTTP/1.0'), 400],
        ['a subprotocol that is not a token', head(valid({ 'Sec-WebSocket-Protocol': 'a b' })), 400],
      ])('%s → %i, never a 101', async (_name, request, status) => {
        const response = await rawRequest(Number(new URL(fixture.url).port), request);
        expect(response.status).toBe(status);
        expect(response.headers['sec-websocket-accept']).toBeUndefined();
        if (status === 426) expect(response.headers['sec-websocket-version']).toBe('13');
      });
    });

    describe('plain HTTP on the same port', () => {
      it('ordinary HTTP routes keep working', async () => {
        const response = await fetch(fixture.url.replace(/^ws/, 'http') + '/hello');
        expect(response.status).toBe(200);
        expect(await response.text()).toBe(HELLO_BODY);
      });
    });

    if (adapter.leavesUnclaimedUpgrades) {
      describe('other upgrade listeners', () => {
        it('an upgrade no route claims is left to another upgrade listener', async () => {
          const other = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
            if (!req.url?.startsWith('/other')) return;
            void handleUpgrade(req, socket, head, (conn) => void conn.send('from the other listener'));
          };
          fixture.server.on('upgrade', other);
          try {
            const conn = await client('/other');
            expect(await recvText(conn)).toBe('from the other listener');
            // The adapter still serves its own routes beside the other listener.
            const mine = await client('/rooms/side');
            expect(await recvText(mine)).toBe('room:side');
          } finally {
            fixture.server.removeListener('upgrade', other);
          }
        });
      });
    }

    describe('broadcast', () => {
      it('broadcast() over the connections the adapter exposes reaches every open connection', async () => {
        const first = await client('/rooms/a');
        const second = await client('/rooms/b');
        expect(await recvText(first)).toBe('room:a');
        expect(await recvText(second)).toBe('room:b');
        // Every connection of this fixture that is still open (earlier tests' are closed by now).
        const live = [...fixture.connections].filter((c) => c.readyState === 'open');
        expect(live.length).toBeGreaterThanOrEqual(2);
        expect(broadcast(fixture.connections, 'to everyone')).toBe(live.length);
        expect(await recvText(first)).toBe('to everyone');
        expect(await recvText(second)).toBe('to everyone');
      });
    });

    describe('Autobahn-style framing and closing cases on /echo (sections 1-5 and 7)', () => {
      // The framework's upgrade path (its HTTP parser, hooks and middleware) must leave the
      // protocol as serve()'s: the same cases as test/interop/autobahn, with the same verdicts.
      // /echo is a `for await` loop, so the six cases where a message and a frame that fails the
      // connection come in one write are NON-STRICT (see test/interop/autobahn/harness.ts).
      const cases = allCases.filter((c) => /^([1-5]|7)\./.test(c.id));
      let run: ServerRun;
      beforeAll(() => {
        run = runAgainstUrl(`${adapter.name} /echo (fuzzer as client)`, cases, new URL(fixture.url + '/echo'), `rfc6455-${adapter.name}`);
      });
      afterAll(() => run.finish());
      it('runs 101 cases', () => expect(cases).toHaveLength(101));
      verdictTests(cases, () => run, true);
    });

    describe('shutdown', () => {
      it('graceful shutdown closes open connections with 1001', async () => {
        const own = await adapter.start();
        const conn = await connect(own.url + '/echo');
        await conn.send('before shutdown');
        expect(await recvText(conn)).toBe('before shutdown');
        await own.close();
        expect(await conn.recv()).toBe(EOF);
        expect(conn.closeStatus).toBe(1001);
      });
    });

    describe('TLS', () => {
      it('wss works when the framework serves HTTPS', async () => {
        const tls = selfSignedCert();
        const own = await adapter.start({ tls });
        try {
          expect(own.url.startsWith('wss://')).toBe(true);
          const conn = await connect(own.url + '/rooms/secure', { tls: { ca: tls.cert } });
          expect(await recvText(conn)).toBe('room:secure');
          const error = await refusal(own.url + '/private', { tls: { ca: tls.cert } });
          expect(error.status).toBe(401);
          await conn.close();
        } finally {
          await own.close();
        }
      });
    });
  });
}
