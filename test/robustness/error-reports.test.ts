/**
 * Errors of the application's own code (a handler that throws or rejects, a throwing listener, a
 * throwing beforeAccept) without `onError`: reported on stderr with a one-line context and the
 * stack, as Express's default error handler does (not under NODE_ENV=test, as Express); `onError`
 * replaces that; an `onError` that throws does not end the process. Through serve(), handleUpgrade
 * on an own server, hybi-00 and HTTP/2.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { connect, EOF, handleUpgrade, HandshakeError, serve, type ConnectionHandler, type ServeOptions, type WebSocketConnection } from 'rfc6455';
import { closeAll, hybi00Head, openRaw, startServer } from './helpers.js';
import { CLIENT_TLS, TLS } from '../http2/helpers.js';
import { spawnNode, killAll } from '../examples/helpers.js';
import { capturedConsoleErrors } from '../shared/console-errors.js';

const logged = capturedConsoleErrors();

afterEach(async () => {
  await closeAll();
  await killAll();
});

/** Handlers that fail on purpose, each recording the error it threw (to compare stacks and identity). */
function failing(thrown: Map<string, Error>): ConnectionHandler {
  return async (conn) => {
    const fail = (message: string): Error => {
      const error = new Error(message);
      thrown.set(conn.path, error);
      return error;
    };
    if (conn.path === '/sync') throw fail('sync handler failed');
    if (conn.path === '/async') {
      await new Promise((r) => setImmediate(r));
      throw fail('async handler failed');
    }
    if (conn.path === '/listener') {
      conn.on('message', () => {
        throw fail('listener failed');
      });
    }
    for await (const m of conn) await conn.send(m);
  };
}

function hookThatFails(thrown: Map<string, Error>): NonNullable<ServeOptions['beforeAccept']> {
  return (req) => {
    if (req.url !== '/hook') return undefined;
    const error = new Error('hook failed');
    thrown.set('/hook', error);
    throw error;
  };
}

/** Connects to each path and waits until the server has closed it (1011) or refused it (500). */
async function meetFailures(base: string, paths: readonly string[], options: Parameters<typeof connect>[1] = {}): Promise<Record<string, number | string>> {
  const outcome: Record<string, number | string> = {};
  for (const path of paths) {
    try {
      const conn = await connect(`${base}${path}`, options);
      if (path === '/listener') await conn.send('x');
      expect(await conn.recv()).toBe(EOF);
      await conn.whenClosed;
      outcome[path] = conn.closeStatus!;
    } catch (error) {
      outcome[path] = error instanceof HandshakeError ? `refused ${error.status}` : String(error);
    }
  }
  return outcome;
}

function expectReported(context: string, error: Error | undefined): void {
  expect(error).toBeDefined();
  expect(logged()).toContainEqual(`rfc6455: ${context}\n${error!.stack}`);
}

describe('without onError, application errors are reported on stderr', () => {
  test('serve(): a handler that throws, rejects or whose listener throws (1011), and a beforeAccept that throws (500)', async () => {
    const thrown = new Map<string, Error>();
    const server = await startServer({ perMessageDeflate: false, beforeAccept: hookThatFails(thrown) }, failing(thrown));
    const base = server.url.replace(/\/$/, '');
    expect(await meetFailures(base, ['/sync', '/async', '/listener', '/hook'])).toEqual({ '/sync': 1011, '/async': 1011, '/listener': 1011, '/hook': 'refused 500' });
    expectReported('WebSocket handler failed on /sync: connection closed with 1011', thrown.get('/sync'));
    expectReported('WebSocket handler failed on /async: connection closed with 1011', thrown.get('/async'));
    expectReported('WebSocket handler failed on /listener: connection closed with 1011', thrown.get('/listener'));
    expectReported('WebSocket upgrade of /hook failed: answered 500', thrown.get('/hook'));
    expect(logged()).toHaveLength(4);
  });

  test('handleUpgrade() on an own HTTP server', async () => {
    const thrown = new Map<string, Error>();
    const server: Server = createServer();
    server.on('upgrade', (req, socket, head) => void handleUpgrade(req, socket, head, failing(thrown), { beforeAccept: hookThatFails(thrown) }));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const base = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
      expect(await meetFailures(base, ['/async', '/hook'])).toEqual({ '/async': 1011, '/hook': 'refused 500' });
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
    expectReported('WebSocket handler failed on /async: connection closed with 1011', thrown.get('/async'));
    expectReported('WebSocket upgrade of /hook failed: answered 500', thrown.get('/hook'));
  });

  test('hybi-00: a handler that throws', async () => {
    const thrown = new Map<string, Error>();
    const server = await startServer({}, failing(thrown));
    const raw = await openRaw(server.port);
    raw.socket.write(hybi00Head(server.port, '/sync') + '^n:ds[4U');
    // The closing frame (0xFF 0x00) after the 101.
    await raw.until((data) => data.includes(Buffer.of(0xff, 0x00)));
    expect(raw.data().toString('latin1')).toContain(' 101 ');
    expectReported('WebSocket handler failed on /sync: connection closed with 1011', thrown.get('/sync'));
  });

  test('HTTP/2 (extended CONNECT): a handler that throws (1011) and a beforeAccept that throws (500)', async () => {
    const thrown = new Map<string, Error>();
    const server = await startServer({ http2: true, tls: TLS, beforeAccept: hookThatFails(thrown) }, failing(thrown));
    const base = server.url.replace(/\/$/, '');
    expect(await meetFailures(base, ['/sync', '/hook'], { http2: true, tls: CLIENT_TLS })).toEqual({ '/sync': 1011, '/hook': 'refused 500' });
    expectReported('WebSocket handler failed on /sync: connection closed with 1011', thrown.get('/sync'));
    expectReported('WebSocket upgrade of /hook failed: answered 500', thrown.get('/hook'));
  });

  test('a value thrown that is not an Error is shown as it is', async () => {
    const server = await startServer({ perMessageDeflate: false }, () => {
      throw { code: 42 };
    });
    const conn = await connect(server.url);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1011);
    expect(logged()).toEqual(['rfc6455: WebSocket handler failed on /: connection closed with 1011\n{ code: 42 }']);
  });

  test('a handler that throws once the closing handshake is under way: the report does not claim a 1011 that was never sent', async () => {
    let failure: Error | undefined;
    let stateAtThrow: string | undefined;
    const server = await startServer({ perMessageDeflate: false }, async (conn) => {
      for await (const m of conn) void m;
      stateAtThrow = conn.readyState;
      throw (failure = new Error('failed after the close'));
    });
    const conn = await connect(server.url);
    await conn.close(4000, 'bye');
    // Before: "connection closed with 1011", while the connection closed with the peer's 4000.
    expect(conn.closeStatus).toBe(4000);
    // The handler threw as the close frame was parsed, before the server's transport closed.
    expect(stateAtThrow).toBe('closing');
    expect(logged()).toEqual([`rfc6455: WebSocket handler failed on /: connection already closing\n${failure!.stack}`]);
  });

  test('under NODE_ENV=test nothing is printed (as Express does)', async () => {
    process.env.NODE_ENV = 'test';
    const thrown = new Map<string, Error>();
    const server = await startServer({ perMessageDeflate: false, beforeAccept: hookThatFails(thrown) }, failing(thrown));
    const base = server.url.replace(/\/$/, '');
    expect(await meetFailures(base, ['/sync', '/hook'])).toEqual({ '/sync': 1011, '/hook': 'refused 500' });
    expect(thrown.size).toBe(2);
    expect(logged()).toEqual([]);
  });

  test("a connection with an 'error' listener gets its handler's error there instead", async () => {
    const errors: Error[] = [];
    let failure: Error | undefined;
    const server = await startServer({ perMessageDeflate: false }, (conn) => {
      conn.on('error', (error) => errors.push(error));
      conn.on('message', () => {
        throw (failure = new Error('listener failed'));
      });
    });
    const conn = await connect(server.url);
    await conn.send('x');
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1011);
    expect(errors).toEqual([failure]);
    expect(errors[0]).toBe(failure);
    expect(logged()).toEqual([]);
  });
});

describe('onError', () => {
  test('replaces the default and gets the error object itself', async () => {
    const thrown = new Map<string, Error>();
    const reported: Array<[unknown, WebSocketConnection | undefined, boolean]> = [];
    const server = await startServer(
      { perMessageDeflate: false, beforeAccept: hookThatFails(thrown), onError: (error, conn, req) => void reported.push([error, conn, req !== undefined]) },
      failing(thrown),
    );
    const base = server.url.replace(/\/$/, '');
    await meetFailures(base, ['/sync', '/hook']);
    expect(reported).toHaveLength(2);
    expect(reported[0]![0]).toBe(thrown.get('/sync'));
    expect(reported[0]![1]?.path).toBe('/sync');
    expect(reported[1]![0]).toBe(thrown.get('/hook'));
    expect(reported[1]![1]).toBeUndefined();
    expect(reported[1]![2]).toBe(true);
    expect(logged()).toEqual([]);
  });

  test('one that throws: the connection still closes 1011 (the hook still answers 500), both errors go to stderr, the server serves on', async () => {
    const thrown = new Map<string, Error>();
    const server = await startServer(
      {
        perMessageDeflate: false,
        beforeAccept: hookThatFails(thrown),
        onError: (error) => {
          throw new Error(`onError exploded on: ${(error as Error).message}`);
        },
      },
      failing(thrown),
    );
    const base = server.url.replace(/\/$/, '');
    // (Before: the throw escaped into the upgrade, the promise chain or the socket's 'data' event,
    // and the process ended.)
    expect(await meetFailures(base, ['/sync', '/listener', '/hook'])).toEqual({ '/sync': 1011, '/listener': 1011, '/hook': 'refused 500' });
    expectReported('WebSocket handler failed on /sync: connection closed with 1011', thrown.get('/sync'));
    expectReported('WebSocket upgrade of /hook failed: answered 500', thrown.get('/hook'));
    expect(logged().filter((line) => line.startsWith('rfc6455: onError threw while reporting it\nError: onError exploded on: '))).toHaveLength(3);
    const conn = await connect(`${base}/echo`);
    await conn.send('alive?');
    expect(await conn.recv()).toBe('alive?');
    await conn.close();
  });

  test('one that throws does not end the process (a child process: handler throw, rejection, listener, hook)', async () => {
    const child = spawnNode([resolve(__dirname, 'children/throwing-on-error.ts')], { env: { NODE_ENV: 'production' } });
    expect(await child.exited).toBe(0);
    expect(child.stdout().split('\n')).toEqual(['/sync closed 1011', '/async closed 1011', '/listener closed 1011', '/hook refused: server answered 500 Internal Server Error', 'served on: still there', '']);
    for (const message of ['sync handler failed', 'async handler failed', 'listener failed', 'hook failed']) {
      expect(child.stderr()).toContain(`rfc6455: onError threw while reporting it\nError: onError exploded on: ${message}`);
    }
  }, 20_000);
});
