/**
 * @rfc6455/fastify: the shared suite with a real Fastify app (per-route `{ websocket: true }`
 * handlers and a core mapper side by side), plus what only Fastify has (hooks at each stage,
 * request decorators, wsHandler beside an HTTP handler, 426 for plain HTTP, app.close()).
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { IncomingMessage } from 'node:http';
import { connect as netConnect, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect, EOF, handleUpgrade, HandshakeError, listenForUpgrades, serviceMapper } from 'rfc6455';
import { injectWS, wsPlugin } from '@rfc6455/fastify';
import { adapterSuite, authorized, echoHandler, HELLO_BODY, protoProtocols, roomHandler, type AdapterFixture, type TlsMaterial } from '../shared/adapter-suite.js';

declare module 'fastify' {
  interface FastifyRequest {
    user: string;
    stages: string[];
  }
}

async function build(options: { tls?: TlsMaterial; path?: string } = {}): Promise<FastifyInstance> {
  const app = (options.tls ? Fastify({ https: options.tls }) : Fastify()) as unknown as FastifyInstance;
  app.decorateRequest('user', '');
  app.decorateRequest('stages', null as unknown as string[]);
  await app.register(wsPlugin, {
    mapper: serviceMapper([
      { path: '/echo', handler: echoHandler },
      { path: '/proto', protocols: protoProtocols },
    ]),
  });
  app.addHook('onRequest', async (request, reply) => {
    request.stages = ['onRequest'];
    if (request.url.startsWith('/private')) {
      if (!authorized(request.headers.authorization)) {
        return reply.code(401).header('WWW-Authenticate', 'Bearer').send('who are you?');
      }
      request.user = 'alice';
    }
    return undefined;
  });
  app.addHook('preParsing', async (request) => {
    request.stages.push('preParsing');
  });
  app.addHook('preValidation', async (request) => {
    request.stages.push('preValidation');
  });
  app.addHook('preHandler', async (request, reply) => {
    request.stages.push('preHandler');
    if (request.url === '/forbidden-late') return reply.code(403).header('X-Hook', 'preHandler').send('late no');
    return undefined;
  });
  app.get('/hello', async () => HELLO_BODY);
  app.get<{ Params: { room: string } }>('/rooms/:room', { websocket: true }, (conn, req, ctx) => roomHandler(conn, req.raw, ctx));
  app.get('/private', { websocket: true }, (conn, req) => void conn.send(`user:${req.user}`));
  app.get('/stages', { websocket: true }, (conn, req) => void conn.send(req.stages.join(',')));
  app.get('/forbidden-late', { websocket: true }, (conn) => void conn.send('should not get here'));
  app.route({
    method: 'GET',
    url: '/both',
    websocket: true,
    handler: async () => 'plain http on /both',
    wsHandler: (conn) => void conn.send('websocket on /both'),
  });
  await app.listen(options.path !== undefined ? { path: options.path } : { port: 0, host: '127.0.0.1' });
  return app;
}

function port(app: FastifyInstance): number {
  return (app.server.address() as AddressInfo).port;
}

async function start(options: { tls?: TlsMaterial } = {}): Promise<AdapterFixture> {
  const app = await build(options);
  return {
    server: app.server,
    url: `${options.tls ? 'wss' : 'ws'}://127.0.0.1:${port(app)}`,
    close: () => app.close(),
    connections: app.websocketConnections,
  };
}

adapterSuite({ name: '@rfc6455/fastify', leavesUnclaimedUpgrades: true, start });

async function refusal(url: string): Promise<HandshakeError> {
  const error = await connect(url).then(
    (conn) => {
      void conn.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  if (!(error instanceof HandshakeError)) throw new Error(`expected a refusal of ${url}`);
  return error;
}

describe('@rfc6455/fastify specifics', () => {
  let fixture: AdapterFixture;
  beforeAll(async () => {
    fixture = await start();
  });
  afterAll(async () => {
    await fixture.close();
  });

  it('onRequest, preParsing, preValidation and preHandler hooks all run before the handler', async () => {
    const conn = await connect(fixture.url + '/stages');
    expect(await conn.recv()).toBe('onRequest,preParsing,preValidation,preHandler');
    await conn.close();
  });

  it('a preHandler hook that replies refuses with that response', async () => {
    const error = await refusal(fixture.url + '/forbidden-late');
    expect(error.status).toBe(403);
    expect(error.headers['x-hook']).toBe('preHandler');
    expect(error.body?.toString()).toBe('late no');
  });

  it('a route with wsHandler serves plain HTTP with handler and upgrades with wsHandler', async () => {
    const response = await fetch(fixture.url.replace(/^ws/, 'http') + '/both');
    expect(await response.text()).toBe('plain http on /both');
    const conn = await connect(fixture.url + '/both');
    expect(await conn.recv()).toBe('websocket on /both');
    await conn.close();
  });

  it('plain HTTP on a WebSocket-only route gets 426 Upgrade Required', async () => {
    const response = await fetch(fixture.url.replace(/^ws/, 'http') + '/stages');
    expect(response.status).toBe(426);
    expect(response.headers.get('upgrade')).toBe('websocket');
  });

  it('plain HTTP on a path only the mapper serves goes to the not-found handler', async () => {
    const response = await fetch(fixture.url.replace(/^ws/, 'http') + '/echo');
    expect(response.status).toBe(404);
  });

  it('app.websocketConnections tracks open connections', async () => {
    const app = await build();
    try {
      const conn = await connect(`ws://127.0.0.1:${port(app)}/echo`);
      await conn.send('x');
      expect(await conn.recv()).toBe('x');
      expect(app.websocketConnections.size).toBe(1);
      const [serverSide] = app.websocketConnections;
      await conn.close();
      await serverSide!.whenClosed;
      await new Promise((resolve) => setImmediate(resolve));
      expect(app.websocketConnections.size).toBe(0);
    } finally {
      await app.close();
    }
  });

  it('app.close() ends a route handler\'s connection with 1001', async () => {
    const app = await build();
    const conn = await connect(`ws://127.0.0.1:${port(app)}/rooms/x`);
    expect(await conn.recv()).toBe('room:x');
    await app.close();
    expect(await conn.recv()).toBe(EOF);
    expect(conn.closeStatus).toBe(1001);
  });

  it('an upgrade with a malformed percent-encoded path gets an HTTP error, and the server lives on', async () => {
    const port = Number(new URL(fixture.url).port);
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = netConnect(port, '127.0.0.1', () => {
        socket.write(
          'GET /%E0%A4%A HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
        );
      });
      let text = '';
      socket.setEncoding('latin1');
      socket.on('data', (chunk: string) => (text += chunk));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 4\d\d /);
    const conn = await connect(fixture.url + '/rooms/alive');
    expect(await conn.recv()).toBe('room:alive');
    await conn.close();
  });
});

describe('@rfc6455/fastify handler failures without onError', () => {
  test('a handler that throws or rejects (route or mapper) closes with 1011, is logged through request.log, and is no unhandled rejection', async () => {
    const logged: Array<{ reqId?: string; msg?: string; err?: { message?: string } }> = [];
    const app = Fastify({ logger: { level: 'error', stream: { write: (line: string) => void logged.push(JSON.parse(line)) } } });
    await app.register(wsPlugin, {
      mapper: serviceMapper([{ path: '/mapped-rejects', handler: async () => Promise.reject(new Error('mapped handler failed')) }]),
    });
    app.get('/throws', { websocket: true }, () => {
      throw new Error('route handler threw');
    });
    app.get('/rejects', { websocket: true }, async () => {
      await Promise.resolve();
      throw new Error('route handler rejected');
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      for (const path of ['/throws', '/rejects', '/mapped-rejects']) {
        const conn = await connect(`ws://127.0.0.1:${port(app)}${path}`);
        expect(await conn.recv()).toBe(EOF);
        expect(conn.closeStatus).toBe(1011);
      }
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await app.close();
    }
    // (Before: reading the undefined `req` of a handler failure threw: the rejections were
    // unhandled, and the throw was logged as that TypeError, with a 500 written after the 101.)
    expect(unhandled).toEqual([]);
    const failures = logged.filter((entry) => entry.msg === 'WebSocket handler failed');
    expect(failures.map((entry) => entry.err?.message).sort()).toEqual(['mapped handler failed', 'route handler rejected', 'route handler threw']);
    for (const entry of failures) expect(entry.reqId).toMatch(/^req-/);
  });
});

test('beside another upgrade listener, WebSocket routes constrained by host or version get their upgrades', async () => {
  const app = Fastify();
  await app.register(wsPlugin);
  app.get('/vhost', { websocket: true, constraints: { host: 'chat.example.com' } }, (conn) => void conn.send('vhost'));
  app.get('/versioned', { websocket: true, constraints: { version: '2.0.0' } }, (conn) => void conn.send('v2'));
  await app.listen({ port: 0, host: '127.0.0.1' });
  // Another listener with its own path, as a dev server's HMR socket has.
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (req.url === '/hmr') void handleUpgrade(req, socket, head, (conn) => void conn.send('hmr'));
  });
  try {
    const url = `ws://127.0.0.1:${port(app)}`;
    const hmr = await connect(`${url}/hmr`);
    expect(await hmr.recv()).toBe('hmr');
    await hmr.close();
    // (Before: findRoute() was asked without the request's constraints and found neither route,
    // so these upgrades were left to the other listener, and nobody answered them.)
    const vhost = await connect(`${url}/vhost`, { headers: { host: 'chat.example.com' } });
    expect(await vhost.recv()).toBe('vhost');
    await vhost.close();
    const versioned = await connect(`${url}/versioned`, { headers: { 'accept-version': '2.x' } });
    expect(await versioned.recv()).toBe('v2');
    await versioned.close();
  } finally {
    await app.close();
  }
}, 5000);

test('a mapper given to the plugin registered under a prefix serves its paths and leaves the other upgrades under the prefix to another listener', async () => {
  const app = Fastify();
  const routed: string[] = [];
  await app.register(
    async (scope: FastifyInstance) => {
      await scope.register(wsPlugin, { mapper: serviceMapper([{ path: '/ws/echo', handler: echoHandler }]) });
    },
    { prefix: '/ws' },
  );
  app.addHook('onRequest', async (request) => void routed.push(request.url));
  await app.listen({ port: 0, host: '127.0.0.1' });
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (req.url === '/ws/hmr') void handleUpgrade(req, socket, head, echoHandler);
  });
  try {
    const url = `ws://127.0.0.1:${port(app)}`;
    // (Before: the catch-all '/ws/*' was taken for an app route, so this upgrade was routed by Fastify
    // too, and its 404 was written after the other listener's 101.)
    const hmr = await connect(`${url}/ws/hmr`);
    await hmr.send('to the other listener');
    expect(await hmr.recv()).toBe('to the other listener');
    await hmr.close();
    expect(hmr.closeStatus).toBe(1000);
    const echo = await connect(`${url}/ws/echo`);
    await echo.send('to the mapper');
    expect(await echo.recv()).toBe('to the mapper');
    await echo.close();
    expect(routed).toEqual(['/ws/echo']);
  } finally {
    await app.close();
  }
}, 5000);

test('under a prefix, with the router options that merge slashes and ignore case, upgrades the mapper does not serve are left to another listener, as an app route would be found', async () => {
  for (const routerOptions of [{}, { caseSensitive: false, ignoreTrailingSlash: true, ignoreDuplicateSlashes: true }]) {
    const app = Fastify({ routerOptions });
    await app.register(
      async (scope: FastifyInstance) => {
        await scope.register(wsPlugin, { mapper: serviceMapper([{ path: '/ws/echo', handler: echoHandler }]) });
        scope.get('/files/*', { websocket: true }, (conn) => void conn.send('files'));
      },
      { prefix: '/ws' },
    );
    await app.listen({ port: 0, host: '127.0.0.1' });
    const other: string[] = [];
    app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (!req.url?.toLowerCase().includes('hmr')) return;
      other.push(req.url);
      void handleUpgrade(req, socket, head, (conn) => void conn.send('other'));
    });
    try {
      const url = `ws://127.0.0.1:${port(app)}`;
      // Each reaches the catch-all '/ws/*' in Fastify's router, which is no app route. (Before: the
      // router's normalised path was compared with the request's as written, so all but the first
      // were taken for an app route's: routed through Fastify too, whose 404 came after the other
      // listener's 101.)
      const paths = ['/ws/hmr', '/ws/hmr%2Fx', '/ws/hmr%20x'];
      if (routerOptions.caseSensitive === false) paths.push('/WS/hmr', '/ws/hmr/', '//ws//hmr', '/Ws//HMR/');
      for (const path of paths) {
        const conn = await connect(`${url}${path}`);
        expect(await conn.recv()).toBe('other');
        await conn.close();
        expect(conn.closeStatus).toBe(1000);
      }
      expect(other).toEqual(paths);
      // An app route ending in a wildcard under the prefix is still this app's.
      const files = await connect(`${url}/ws/files/a`);
      expect(await files.recv()).toBe('files');
      await files.close();
    } finally {
      await app.close();
    }
  }
}, 5000);

test('with a case-sensitive router (the default), an app route that differs from the mapper\'s prefix only in case is the app\'s, not left to another listener', async () => {
  // (Before: the catch-all check ignored case whatever the router did, so '/WS/a', found by the
  // router under the app's own '/WS/*', was taken for the mapper's '/ws/*': the upgrade was left
  // to another 'upgrade' listener though this app has a route for it.)
  const app = Fastify();
  await app.register(
    async (scope: FastifyInstance) => {
      await scope.register(wsPlugin, { mapper: serviceMapper([{ path: '/ws/echo', handler: echoHandler }]) });
    },
    { prefix: '/ws' },
  );
  app.get('/WS/*', async () => 'plain');
  await app.listen({ port: 0, host: '127.0.0.1' });
  // Another WebSocket server on the same HTTP server, which takes '/WS/' upgrades no one before it claims.
  const other: string[] = [];
  const stop = listenForUpgrades(
    app.server,
    (req) => (req.url ?? '').startsWith('/WS/'),
    (req, socket, head) => {
      other.push(req.url ?? '');
      void handleUpgrade(req, socket, head, (conn) => void conn.send('other'));
    },
  );
  try {
    const refused = await connect(`ws://127.0.0.1:${port(app)}/WS/a`).then(
      (conn) => conn.close().then(() => 'opened'),
      (error: unknown) => (error instanceof HandshakeError ? error.status : String(error)),
    );
    // The app's plain route answers it, as it would a request without Upgrade.
    expect({ refused, other }).toEqual({ refused: 200, other: [] });
    const echo = await connect(`ws://127.0.0.1:${port(app)}/ws/echo`);
    await echo.send('hi');
    expect(await echo.recv()).toBe('hi');
    await echo.close();
  } finally {
    stop();
    await app.close();
  }
}, 5000);

test('registering the plugin twice is an error of register()/ready(), not an uncaught exception', async () => {
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown): void => void uncaught.push(error);
  process.prependListener('uncaughtException', onUncaught);
  const app = Fastify();
  try {
    await app.register(wsPlugin);
    await expect(app.register(wsPlugin)).rejects.toThrow(/already registered/);
    expect(uncaught).toEqual([]);
  } finally {
    process.removeListener('uncaughtException', onUncaught);
    await app.close().catch(() => undefined);
  }
});

test('registering the plugin in two sibling plugins of one app is an error of ready(), not each upgrade routed twice', async () => {
  // (Before: both registrations routed every upgrade to a WebSocket route, so its handler ran twice on
  // one socket, and an upgrade no route serves was left by each to the other, unanswered.)
  const app = Fastify();
  const calls: string[] = [];
  try {
    await app.register(async (chat: FastifyInstance) => {
      await chat.register(wsPlugin);
      chat.get('/chat', { websocket: true }, (conn) => void calls.push(conn.url));
    });
    const second = app.register(async (news: FastifyInstance) => {
      await news.register(wsPlugin);
      news.get('/news', { websocket: true }, (conn) => void calls.push(conn.url));
    });
    await expect(second).rejects.toThrow(/already registered on this app/);
    expect(calls).toEqual([]);
  } finally {
    await app.close().catch(() => undefined);
  }
});

test('after app.close(), a new app can register the plugin on its own server', async () => {
  for (let i = 0; i < 2; i++) {
    const app = Fastify();
    await app.register(wsPlugin);
    app.get('/x', { websocket: true }, (conn) => void conn.send(`app ${i}`));
    const conn = await app.injectWS('/x');
    expect(await conn.recv()).toBe(`app ${i}`);
    await conn.close();
    await app.close();
  }
});

describe('@rfc6455/fastify injectWS (no port)', () => {
  async function app(): Promise<FastifyInstance> {
    const instance = Fastify();
    await instance.register(wsPlugin);
    instance.addHook('onRequest', async (request, reply) => {
      if (request.headers.authorization !== 'Bearer letmein') return reply.code(401).header('WWW-Authenticate', 'Bearer').send('no');
      return undefined;
    });
    instance.get<{ Params: { name: string } }>('/hi/:name', { websocket: true }, async (conn, req) => {
      await conn.send(`hi ${req.params.name} via ${conn.protocol || 'none'}`);
      for await (const message of conn) await conn.send(message);
    });
    return instance;
  }

  it('injectWS runs the hooks and the handler over an in-memory handshake', async () => {
    const instance = await app();
    try {
      const conn = await instance.injectWS('/hi/ann', { headers: { authorization: 'Bearer letmein' } });
      expect(instance.server.listening).toBe(false);
      expect(await conn.recv()).toBe('hi ann via none');
      await conn.send('round trip');
      expect(await conn.recv()).toBe('round trip');
      await conn.close();
      expect(conn.closeStatus).toBe(1000);
    } finally {
      await instance.close();
    }
  });

  it('injectWS negotiates a subprotocol offered by the client', async () => {
    const instance = Fastify();
    await instance.register(wsPlugin, { protocols: ['b', 'a'] });
    instance.get('/p', { websocket: true }, (conn) => void conn.send(conn.protocol));
    try {
      const conn = await injectWS(instance, '/p', { protocols: ['a', 'b'] });
      expect(conn.protocol).toBe('a');
      expect(await conn.recv()).toBe('a');
      await conn.close();
    } finally {
      await instance.close();
    }
  });

  it('injectWS refuses a handshake header in headers (a Sec-WebSocket-Extensions offer) with a TypeError, as connect() does, before the app sees a request', async () => {
    const instance = Fastify();
    await instance.register(wsPlugin);
    let handled = 0;
    let requests = 0;
    instance.addHook('onRequest', async () => void requests++);
    instance.get('/d', { websocket: true }, () => void handled++);
    try {
      for (const headers of [{ 'Sec-WebSocket-Extensions': 'permessage-deflate' }, { 'sec-websocket-protocol': 'chat' }, { 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' }]) {
        const error = await injectWS(instance, '/d', { headers }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(TypeError);
        expect((error as Error).message).toMatch(/^injectWS\(\): the .* header is the handshake's own/);
      }
      const viaConnect = await connect('ws://127.0.0.1:1/d', { headers: { 'Sec-WebSocket-Extensions': 'permessage-deflate' } }).catch((e: unknown) => e);
      expect(viaConnect).toBeInstanceOf(TypeError);
      // (Before: the offer went out, the app accepted permessage-deflate and ran the handler, and
      // the client failed the connection with WS_BAD_EXTENSION_RESPONSE, "not offered".)
      expect({ handled, requests }).toEqual({ handled: 0, requests: 0 });
    } finally {
      await instance.close();
    }
  });

  it('injectWS rejects with the hook\'s HTTP response', async () => {
    const instance = await app();
    try {
      const error = await instance.injectWS('/hi/ann').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(HandshakeError);
      expect((error as HandshakeError).status).toBe(401);
      expect((error as HandshakeError).headers['www-authenticate']).toBe('Bearer');
      expect((error as HandshakeError).body?.toString()).toBe('no');
    } finally {
      await instance.close();
    }
  });

  it('a websocket route\'s handler given in its options (route() without wsHandler, or get() with one argument less) is called as a WebSocket handler, as its type says', async () => {
    const instance = Fastify();
    await instance.register(wsPlugin);
    instance.route<{ Params: { id: string } }>({
      method: 'GET',
      url: '/route/:id',
      websocket: true,
      handler: (conn, req, ctx) => void conn.send(`${req.params.id} ${ctx.params.id} ${req.url}`),
    });
    instance.get('/options', { websocket: true, handler: (conn, req) => void conn.send(req.url) });
    try {
      const a = await instance.injectWS('/route/7');
      expect(await a.recv()).toBe('7 7 /route/7');
      const b = await instance.injectWS('/options');
      expect(await b.recv()).toBe('/options');
      await Promise.all([a.close(), b.close()]);
    } finally {
      await instance.close();
    }
  });

  // The in-memory pair's ends are linked as a TCP connection's are: Node's duplexPair does not pass
  // a destroy on. (Fixed bugs: the other side stayed open until its idleTimeout, 5 minutes by
  // default; a refusal left both ends, its request and response in memory until app.close().)
  it('terminate() on either side of an injected connection ends the other with 1006', async () => {
    const instance = Fastify();
    await instance.register(wsPlugin);
    instance.get('/t', { websocket: true }, async (conn) => {
      for await (const message of conn) {
        if (message === 'terminate') conn.terminate();
        else await conn.send(message);
      }
    });
    try {
      const client = await instance.injectWS('/t');
      await client.send('ready');
      expect(await client.recv()).toBe('ready');
      const [serverSide] = [...instance.websocketConnections];
      client.terminate();
      await serverSide!.whenClosed;
      expect(serverSide!.closeStatus).toBe(1006);

      const other = await instance.injectWS('/t');
      await other.send('terminate');
      expect(await other.recv()).toBe(EOF);
      expect(other.closeStatus).toBe(1006);
      expect(instance.websocketConnections.size).toBe(0);
    } finally {
      await instance.close();
    }
  }, 5000);

  it('a refused injection leaves no socket open in the app', async () => {
    const instance = await app();
    const ends: Duplex[] = [];
    instance.server.on('connection', (socket: Duplex) => ends.push(socket));
    try {
      // (Fastify's 404 is the refusal whose end the client used to destroy before the app's socket had finished.)
      const error = await instance.injectWS('/nowhere', { headers: { authorization: 'Bearer letmein' } }).catch((e: unknown) => e);
      expect((error as HandshakeError).status).toBe(404);
      expect(ends).toHaveLength(1);
      await new Promise<void>((resolve) => (ends[0]!.destroyed ? resolve() : void ends[0]!.once('close', () => resolve())));
      expect(ends[0]!.destroyed).toBe(true);
    } finally {
      await instance.close();
    }
  }, 5000);

  it('app.close() closes injected connections with 1001', async () => {
    const instance = await app();
    const conn = await instance.injectWS('/hi/bo', { headers: { authorization: 'Bearer letmein' } });
    expect(await conn.recv()).toBe('hi bo via none');
    await instance.close();
    expect(await conn.recv()).toBe(EOF);
    expect(conn.closeStatus).toBe(1001);
  });
});

describe('@rfc6455/fastify on a Unix domain socket', () => {
  test('Fastify listening on a socket path: messages echo over ws+unix:, terminate() aborts and app.close() still closes with 1001', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'rfc6455-fastify-'));
    const path = join(dir, 'app.sock');
    const instance = await build({ path });
    try {
      const url = `ws+unix://${path}:/echo`;
      const conn = await connect(url);
      await conn.send('over the socket');
      expect(await conn.recv()).toBe('over the socket');
      // An abort over a Unix socket: the server side sees the connection go (1006), nothing throws.
      const aborted = await connect(url);
      expect(instance.websocketConnections.size).toBe(2);
      const serverSide = [...instance.websocketConnections][1]!;
      aborted.terminate();
      await serverSide.whenClosed;
      expect(serverSide.closeStatus).toBe(1006);
      await instance.close();
      expect(await conn.recv()).toBe(EOF);
      expect(conn.closeStatus).toBe(1001);
    } finally {
      await instance.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
