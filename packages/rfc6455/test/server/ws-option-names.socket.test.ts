/**
 * Code ported from `ws` keeps `ws`'s option names. Those with another name here (or no
 * equivalent) were silently ignored: `verifyClient` let every client in, `maxPayload` left the limit
 * at 64 MiB, `{ port, path: '/ws' }` listened on a Unix domain socket at /ws, a client's top-level
 * `rejectUnauthorized: false` still checked the certificate. Each is a TypeError naming what to
 * use instead, where the options are given.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WebSocket as WsClient } from 'ws';
import { websocket as expressWebSocket } from '@rfc6455/express';
import { connect, handleUpgrade, serve, WebSocket, WebSocketStream, type ServeOptions, type WebSocketServer } from 'rfc6455';

const servers: WebSocketServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** What serve(options) did: the error it threw, or 'listened' (the server is closed again). */
function serveOutcome(options: object): Promise<unknown> {
  return serve(options as ServeOptions, () => undefined).then(
    (server) => server.close().then(() => 'listened'),
    (error: unknown) => error,
  );
}

describe("ws's server options", () => {
  test("serve({ verifyClient }) throws instead of accepting every client: a ws client that verifyClient refuses is never let in", async () => {
    let verified = 0;
    const verifyClient = (): boolean => {
      verified++;
      return false;
    };
    const outcome = await serveOutcome({ verifyClient });
    expect(outcome).toBeInstanceOf(TypeError);
    expect((outcome as Error).message).toMatch(/^serve\(\): verifyClient is an option of ws, not of rfc6455 .*beforeAccept/);
    // What to write instead refuses the ws client.
    const server = await serve({ beforeAccept: () => ({ reject: { status: 401 } }) }, () => undefined);
    servers.push(server);
    const ws = new WsClient(server.url);
    const status = await new Promise<number>((resolve) => {
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('error', () => undefined);
    });
    ws.terminate();
    expect(status).toBe(401);
    expect(verified).toBe(0);
  });

  test.each([
    ['handleProtocols', () => 'chat', /protocols/],
    ['noServer', true, /handleUpgrade\(\)/],
    ['server', createServer(), /handleUpgrade\(\)/],
    ['clientTracking', false, /server\.connections/],
    ['maxPayload', 1024, /maxMessageSize/],
    ['skipUTF8Validation', true, /always checked/],
    ['autoPong', false, /always answered/],
  ])('serve({ %s }) throws a TypeError naming the replacement', async (name, value, replacement) => {
    const outcome = await serveOutcome({ [name]: value });
    expect(outcome).toBeInstanceOf(TypeError);
    expect((outcome as Error).message).toContain(`${name} is an option of ws`);
    expect((outcome as Error).message).toMatch(replacement);
  });

  test('perMessageDeflate: { zlibDeflateOptions } throws a TypeError pointing at level and memLevel', async () => {
    const outcome = await serveOutcome({ perMessageDeflate: { zlibDeflateOptions: { level: 1 } } });
    expect(outcome).toBeInstanceOf(TypeError);
    expect((outcome as Error).message).toMatch(/perMessageDeflate\.zlibDeflateOptions .*perMessageDeflate\.level/);
  });

  test("serve({ port, path: '/ws' }) (ws's URL path) throws instead of listening on a Unix domain socket at that path", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rfc6455-wsopt-'));
    try {
      const socketPath = path.join(dir, 'ws');
      const outcome = await serveOutcome({ port: 0, path: socketPath });
      expect(outcome).toBeInstanceOf(TypeError);
      expect((outcome as Error).message).toMatch(/serviceMapper/);
      expect(existsSync(socketPath)).toBe(false);
      expect(await serveOutcome({ host: '127.0.0.1', path: socketPath })).toBeInstanceOf(TypeError);
      // path alone is still a Unix domain socket.
      expect(await serveOutcome({ path: socketPath })).toBe('listened');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('handleUpgrade() and the adapters throw at the call too; undefined values and our own names pass', async () => {
    expect(() => expressWebSocket({ verifyClient: () => true } as object)).toThrow(/verifyClient is an option of ws/);
    expect(() => expressWebSocket({ verifyClient: undefined, maxMessageSize: 1024 } as object)).not.toThrow();
    let thrown: unknown;
    const http: Server = createServer();
    http.on('upgrade', (req, socket, head) => {
      try {
        void handleUpgrade(req, socket, head, () => undefined, { maxPayload: 10 } as object);
      } catch (error) {
        thrown = error;
      }
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    try {
      const error = await connect(`ws://127.0.0.1:${(http.address() as AddressInfo).port}/`).catch((e: unknown) => e);
      expect((error as { status?: number }).status).toBe(500);
      expect(thrown).toBeInstanceOf(TypeError);
      expect((thrown as Error).message).toMatch(/^handleUpgrade\(\): maxPayload is an option of ws/);
    } finally {
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    }
  });
});

describe("ws's client options", () => {
  test.each([
    ['maxPayload', 10, /maxMessageSize/],
    ['maxRedirects', 3, /followRedirects/],
    ['rejectUnauthorized', false, /tls: \{/],
    ['ca', 'PEM', /tls: \{/],
    ['skipUTF8Validation', true, /always checked/],
  ])('connect(url, { %s }) rejects with a TypeError; the WebSocket and WebSocketStream constructors throw it', async (name, value, replacement) => {
    const server = await serve({}, () => undefined);
    servers.push(server);
    const error = await connect(server.url, { [name]: value }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toContain(`connect(): ${name} is an option of ws`);
    expect((error as Error).message).toMatch(replacement);
    expect(() => new WebSocket(server.url, { [name]: value })).toThrow(TypeError);
    expect(() => new WebSocketStream(server.url, { [name]: value })).toThrow(TypeError);
    expect(server.connections.size).toBe(0);
  });

  test('the constructors name themselves in the message, not connect(), which the application never called', () => {
    const url = 'ws://127.0.0.1:9/';
    const headers = { Authorization: 'Bearer …' }; // a placeholder the docs once had: not a header value
    expect(() => new WebSocket(url, { maxPayload: 10 } as object)).toThrow(/^new WebSocket\(\): maxPayload is an option of ws/);
    expect(() => new WebSocketStream(url, { maxPayload: 10 } as object)).toThrow(/^new WebSocketStream\(\): maxPayload is an option of ws/);
    expect(() => new WebSocket(url, [], { headers })).toThrow(new TypeError('new WebSocket(): invalid character in the value of header Authorization'));
    expect(() => new WebSocketStream(url, { headers })).toThrow(new TypeError('new WebSocketStream(): invalid character in the value of header Authorization'));
    expect(() => new WebSocket(url, { family: 5 as 4 })).toThrow(new RangeError('new WebSocket(): family must be 4 or 6 (0 for either), not 5'));
  });
});

describe("ws's handleProtocols, ported to protocols", () => {
  test("a function that returns false, as ws's handleProtocols does for none, answers no subprotocol (it answered 500)", async () => {
    // As ws documents it: `handleProtocols(protocols, request)` returns a protocol or false.
    const server = await serve({ protocols: (offered) => (offered.includes('chat.v2') ? 'chat.v2' : false) }, async (conn) => {
      await conn.send(`protocol "${conn.protocol}"`);
    });
    servers.push(server);
    const outcome = async (protocols: string[]): Promise<unknown> => {
      const ws = new WsClient(server.url, protocols);
      try {
        return await new Promise((resolve) => {
          ws.on('message', (data: Buffer) => resolve([ws.protocol, data.toString()]));
          ws.on('unexpected-response', (_req, res) => resolve(res.statusCode));
          ws.on('error', (error) => resolve(error.message));
        });
      } finally {
        ws.terminate();
      }
    };
    // ws fails a 101 without a subprotocol when it offered some; our client takes it.
    expect(await outcome(['chat.v1'])).toBe('Server sent no subprotocol');
    const conn = await connect(server.url, { protocols: ['chat.v1'] });
    expect([conn.protocol, await conn.recv()]).toEqual(['', 'protocol ""']);
    conn.terminate();
    expect(await outcome([])).toEqual(['', 'protocol ""']);
    expect(await outcome(['chat.v1', 'chat.v2'])).toEqual(['chat.v2', 'protocol "chat.v2"']);
  });
});
