/**
 * Where a connection goes: `serve({ path })` on a Unix domain socket and `connect()` to it (a
 * `ws+unix:` URL, or `socketPath`), over TLS too, against `ws` on both sides; and the client's
 * `agent`, `localAddress` and `lookup` options, over real sockets.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import { connect as netConnect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WebSocket as WsClient, WebSocketServer as WsServer } from 'ws';
import { connect, HandshakeError, serve, WebSocket, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { unixTarget } from '../../src/client-target.js';

const FIXTURES = path.join(__dirname, '../../../../test/fixtures/tls');
const tls = { key: readFileSync(path.join(FIXTURES, 'key.pem')), cert: readFileSync(path.join(FIXTURES, 'cert.pem')) };

let dir: string;
const servers: WebSocketServer[] = [];
const conns: WebSocketConnection[] = [];
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'rfc6455-unix-'));
});
afterEach(async () => {
  for (const c of conns.splice(0)) c.terminate();
  await Promise.all(servers.splice(0).map((s) => s.close()));
  rmSync(dir, { recursive: true, force: true });
});

/** An echo server that records each connection's path and remote address. */
async function echo(options: Parameters<typeof serve>[0]): Promise<{ server: WebSocketServer; seen: Array<{ url: string; host: string | undefined; remote: string | undefined }> }> {
  const seen: Array<{ url: string; host: string | undefined; remote: string | undefined }> = [];
  const server = await serve(options, async (conn, req) => {
    seen.push({ url: req.url ?? '', host: req.headers.host, remote: conn.remoteAddress });
    for await (const m of conn) await conn.send(m);
  });
  servers.push(server);
  return { server, seen };
}

async function roundTrip(conn: WebSocketConnection, text: string): Promise<unknown> {
  conns.push(conn);
  await conn.send(text);
  return conn.recv();
}


/**
 * A TCP server that counts the connections it accepts. `othersBefore()` makes a connection of its
 * own, as a barrier (loopback connections are accepted in the order their connect() calls were
 * made), and resolves with the number of others accepted before it since the last call.
 */
async function connectionCounter(): Promise<{ port: number; othersBefore(): Promise<number>; close(): Promise<void> }> {
  const accepted: number[] = [];
  const server = createNetServer((socket) => {
    accepted.push(socket.remotePort ?? 0);
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    async othersBefore() {
      const probe = netConnect(port, '127.0.0.1');
      await new Promise<void>((resolve) => probe.once('connect', resolve));
      const own = probe.localPort;
      await new Promise<void>((resolve) => probe.once('close', resolve));
      const seen = accepted.splice(0);
      expect(seen.at(-1)).toBe(own);
      return seen.length - 1;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A lookup function that resolves every name to 127.0.0.1 and records the names it is asked for. */
function toLoopback(asked: string[]): NonNullable<Parameters<typeof connect>[1]>['lookup'] {
  return ((hostname: string, options: unknown, callback: (err: Error | null, address: string | Array<{ address: string; family: number }>, family?: number) => void) => {
    asked.push(hostname);
    if ((options as { all?: boolean }).all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
    else callback(null, '127.0.0.1', 4);
  }) as unknown as NonNullable<Parameters<typeof connect>[1]>['lookup'];
}
describe('Unix domain sockets', () => {
  test('serve({ path }) listens on the socket; connect(server.url) speaks through it; the file goes when the server closes', async () => {
    const socketPath = path.join(dir, 'ws.sock');
    const { server, seen } = await echo({ path: socketPath });
    expect(server.url).toBe(`ws+unix://${socketPath}:/`);
    expect(server.path).toBe(socketPath);
    expect(server.port).toBe(0);
    expect(existsSync(socketPath)).toBe(true);
    expect(await roundTrip(await connect(server.url), 'over a unix socket')).toBe('over a unix socket');
    // A request path and query after the socket's path.
    expect(await roundTrip(await connect(`ws+unix://${socketPath}:/chat/room?x=1`), 'with a path')).toBe('with a path');
    // Percent-escapes in the request path arrive as written (%23 cut the path short and lost the query).
    expect(await roundTrip(await connect(`ws+unix://${socketPath}:/a%23b%3F?x=1`), 'escaped')).toBe('escaped');
    expect(seen.map((s) => s.url)).toEqual(['/', '/chat/room?x=1', '/a%23b%3F?x=1']);
    expect(seen[0]!.host).toBe('localhost');
    // An abort over a Unix socket (no TCP RST there): closed at once, locally 1006, nothing thrown.
    const aborted = await connect(server.url);
    expect(() => aborted.terminate()).not.toThrow();
    await aborted.whenClosed;
    expect(aborted.closeStatus).toBe(1006);
    for (const c of conns.splice(0)) c.terminate();
    await servers.pop()!.close();
    expect(existsSync(socketPath)).toBe(false);
  });

  test("server.url works for a socket path with '%', '#', '?', ':', a space or non-ASCII: connect(server.url) and new WebSocket(server.url) reach it", async () => {
    for (const name of ['100%.sock', 'a#b.sock', 'q?x=1.sock', 'my dir/c:d é.sock']) {
      const socketPath = path.join(dir, name);
      if (name.includes('/')) mkdirSync(path.dirname(socketPath));
      const { server, seen } = await echo({ path: socketPath });
      expect(server.path).toBe(socketPath);
      expect(unixTarget(new URL(server.url))!.socketPath).toBe(socketPath);
      expect(await roundTrip(await connect(server.url), name)).toBe(name);
      const ws = new WebSocket(server.url);
      await new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = reject;
      });
      ws.close();
      expect(seen.map((s) => s.url)).toEqual(['/', '/']);
    }
  });

  test('connect(ws://host/path, { socketPath }): the URL gives the request, the option the socket', async () => {
    const socketPath = path.join(dir, 'opt.sock');
    const { seen } = await echo({ path: socketPath });
    expect(await roundTrip(await connect('ws://api.internal/v1/stream', { socketPath }), 'routed')).toBe('routed');
    expect(seen).toEqual([{ url: '/v1/stream', host: 'api.internal', remote: undefined }]);
  });

  test('wss+unix: TLS over a Unix socket', async () => {
    const socketPath = path.join(dir, 'tls.sock');
    const { server } = await echo({ path: socketPath, tls });
    expect(server.url).toBe(`wss+unix://${socketPath}:/`);
    const conn = await connect(server.url, { tls: { rejectUnauthorized: false } });
    expect(await roundTrip(conn, 'encrypted')).toBe('encrypted');
  });

  test('hybi-00 over a Unix socket', async () => {
    const socketPath = path.join(dir, 'hybi.sock');
    const { server } = await echo({ path: socketPath });
    const conn = await connect(server.url, { variant: 'hybi00' });
    expect(conn.variant).toBe('hybi00');
    expect(await roundTrip(conn, 'draft')).toBe('draft');
  });

  test('interop with ws: its client to serve({ path }), and connect() to its server on a socket', async () => {
    const ours = path.join(dir, 'ours.sock');
    const { server } = await echo({ path: ours });
    const client = new WsClient(server.url);
    const echoed = await new Promise<string>((resolve, reject) => {
      client.on('open', () => client.send('from ws'));
      client.on('message', (data) => resolve(String(data)));
      client.on('error', reject);
    });
    client.close();
    expect(echoed).toBe('from ws');

    const theirs = path.join(dir, 'theirs.sock');
    const http = createServer();
    const wss = new WsServer({ server: http });
    wss.on('connection', (ws, req: IncomingMessage) => ws.on('message', (data) => ws.send(`${req.url} ${String(data)}`)));
    await new Promise<void>((resolve) => http.listen(theirs, resolve));
    try {
      expect(await roundTrip(await connect(`ws+unix://${theirs}:/theirs`), 'to ws')).toBe('/theirs to ws');
    } finally {
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    }
  });

  test('ws+unix: URLs are read as ws reads them; one without a socket path is refused', () => {
    expect(unixTarget(new URL('ws+unix:///tmp/a.sock:/x/y?q=1'))).toEqual({ socketPath: '/tmp/a.sock', target: new URL('ws://localhost/x/y?q=1') });
    expect(unixTarget(new URL('ws+unix:///tmp/a.sock'))).toEqual({ socketPath: '/tmp/a.sock', target: new URL('ws://localhost/') });
    expect(unixTarget(new URL('wss+unix:///tmp/my%20dir/a.sock:/'))).toEqual({ socketPath: '/tmp/my dir/a.sock', target: new URL('wss://localhost/') });
    // Only the socket's path is percent-decoded (%3A: a ':' in it); the request path is sent as
    // written (it was decoded: %23 cut it short and lost the query, %3F began a query, %25 gave '%').
    const request = (url: string): string => {
      const { target } = unixTarget(new URL(url))!;
      return target.pathname + target.search;
    };
    expect(request('ws+unix:///tmp/a.sock:/a%23b?q=1')).toBe('/a%23b?q=1');
    expect(request('ws+unix:///tmp/a.sock:/a%3Fb')).toBe('/a%3Fb');
    expect(request('ws+unix:///tmp/a.sock:/a%2Fb/100%25')).toBe('/a%2Fb/100%25');
    expect(request('ws+unix:///tmp/a.sock:/caf%C3%A9 x')).toBe('/caf%C3%A9%20x');
    expect(unixTarget(new URL('ws+unix:///tmp/a%3Ab.sock:/x'))!.socketPath).toBe('/tmp/a:b.sock');
    expect(unixTarget(new URL('ws://localhost/'))).toBeUndefined();
    expect(() => unixTarget(new URL('ws+unix::/x'))).toThrow(/no socket path/);
  });

  test("a '%' in the socket path that begins no escape stays, as the URL standard decodes (it threw 'URI malformed')", async () => {
    expect(unixTarget(new URL('ws+unix:///tmp/50%off.sock:/x'))!.socketPath).toBe('/tmp/50%off.sock');
    expect(unixTarget(new URL('ws+unix:///tmp/a%2.sock'))!.socketPath).toBe('/tmp/a%2.sock');
    expect(unixTarget(new URL('ws+unix:///tmp/caf%C3%A9%25.sock'))!.socketPath).toBe('/tmp/café%.sock');
    // And such a URL connects.
    const socketPath = path.join(dir, '50%off.sock');
    const server = await serve({ path: socketPath }, (conn) => void conn.on('message', (m) => void conn.send(m).catch(() => undefined)));
    try {
      expect(await roundTrip(await connect(`ws+unix://${socketPath}:/`), 'raw %')).toBe('raw %');
    } finally {
      await server.close();
    }
  });
});

describe('client socket options', () => {
  test('agent: the handshake connection is made by the agent given', async () => {
    const { server } = await echo({});
    let made = 0;
    class CountingAgent extends Agent {
      override createConnection(...args: Parameters<Agent['createConnection']>): ReturnType<Agent['createConnection']> {
        made++;
        return super.createConnection(...args);
      }
    }
    const agent = new CountingAgent();
    expect(await roundTrip(await connect(server.url, { agent }), 'through the agent')).toBe('through the agent');
    expect(made).toBe(1);
    agent.destroy();
  });

  test('agent: through an HTTP proxy with CONNECT (a proxy server and a tunnelling agent, as proxy agents do)', async () => {
    const { server, seen } = await echo({});
    // The proxy: answers CONNECT host:port by opening that TCP connection and splicing the two.
    const tunnels: string[] = [];
    const spliced: Array<import('node:net').Socket> = [];
    const proxy = createServer();
    proxy.on('connect', (req: IncomingMessage, client: import('node:net').Socket, head: Buffer) => {
      tunnels.push(req.url ?? '');
      spliced.push(client);
      const [host, port] = (req.url ?? '').split(':');
      const upstream = netConnect(Number(port), host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (head.length > 0) upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      // Closed with the client's side below (left open, the server's close() waited closeTimeout for it).
      spliced.push(upstream);
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const proxyPort = (proxy.address() as import('node:net').AddressInfo).port;
    // The agent: each connection is a CONNECT tunnel through the proxy.
    class TunnelAgent extends Agent {
      override createConnection(...[options, callback]: Parameters<Agent['createConnection']>): ReturnType<Agent['createConnection']> {
        const connectReq = httpRequest({ host: '127.0.0.1', port: proxyPort, method: 'CONNECT', path: `${options.host}:${options.port}` });
        connectReq.on('connect', (res: IncomingMessage, socket: import('node:net').Socket) => {
          if (res.statusCode === 200) callback?.(null, socket);
          else callback?.(new Error(`proxy answered ${res.statusCode}`), socket);
        });
        connectReq.on('error', (error) => callback?.(error, connectReq.socket!));
        connectReq.end();
        return undefined;
      }
    }
    const agent = new TunnelAgent();
    try {
      const conn = await connect(`ws://127.0.0.1:${server.port}/through/proxy`, { agent });
      expect(await roundTrip(conn, 'tunnelled')).toBe('tunnelled');
      expect(tunnels).toEqual([`127.0.0.1:${server.port}`]);
      expect(seen[0]!.url).toBe('/through/proxy');
    } finally {
      agent.destroy();
      // Tunnels are the proxy's own sockets now, not its HTTP server's: closed here.
      for (const socket of spliced) socket.destroy();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });

  test('localAddress: the connection comes from the address given', async () => {
    const { server, seen } = await echo({ host: '0.0.0.0' });
    // Any 127.x address is the loopback interface on Linux.
    const conn = await connect(`ws://127.0.0.1:${server.port}/`, { localAddress: '127.0.0.2' });
    expect(await roundTrip(conn, 'from 127.0.0.2')).toBe('from 127.0.0.2');
    expect(conn.localAddress).toBe('127.0.0.2');
    expect(seen[0]!.remote).toBe('127.0.0.2');
  });

  test('family, lookup and localAddress of the wrong kind are a TypeError or RangeError before anything connects, for an IP address in the URL as for a host name, over HTTP/1.1, HTTP/2 and hybi-00 (with an IP address family and lookup were ignored)', async () => {
    const counter = await connectionCounter();
    try {
      const bad: Array<[Record<string, unknown>, string]> = [
        [{ family: 5 }, 'RangeError'],
        [{ family: '4' }, 'TypeError'],
        [{ lookup: 'dns' }, 'TypeError'],
        [{ localAddress: 'eth0' }, 'TypeError'],
      ];
      const outcomes: string[] = [];
      for (const host of ['127.0.0.1', 'localhost']) {
        for (const variant of [{}, { http2: true }, { variant: 'hybi00' }]) {
          for (const [options, expected] of bad) {
            const name = await connect(`ws://${host}:${counter.port}/`, { ...variant, ...options, handshakeTimeout: 1000 } as Parameters<typeof connect>[1]).then(
              (conn) => (conn.terminate(), 'connected'),
              (e: unknown) => (e as Error).name,
            );
            if (name !== expected) outcomes.push(`${host} ${JSON.stringify(variant)} ${JSON.stringify(options)}: ${name}, not ${expected}`);
          }
        }
      }
      expect(outcomes).toEqual([]);
      for (const [options, expected] of bad) expect(() => new WebSocket(`ws://127.0.0.1:${counter.port}/`, options)).toThrow(expected === 'RangeError' ? RangeError : TypeError);
      expect(await counter.othersBefore()).toBe(0);
    } finally {
      await counter.close();
    }
    // 0 (either) and 4 are families, as Node takes them.
    const { server } = await echo({ host: '127.0.0.1' });
    for (const family of [0, 4] as const) {
      const conn = await connect(`ws://127.0.0.1:${server.port}/`, { family });
      expect(await roundTrip(conn, `family ${family}`)).toBe(`family ${family}`);
    }
  });

  test('lookup: a host name resolved by the function given', async () => {
    const { server, seen } = await echo({});
    const asked: string[] = [];
    const lookup = toLoopback(asked);
    const conn = await connect(`ws://chat.service.invalid:${server.port}/`, { lookup });
    expect(await roundTrip(conn, 'resolved')).toBe('resolved');
    expect(asked).toEqual(['chat.service.invalid']);
    expect(seen[0]!.host).toBe(`chat.service.invalid:${server.port}`);
  });

  test('wss://[::1]: an IPv6 literal is checked against the certificate\'s IP address, as an IPv4 one is', async () => {
    // A certificate for the address ::1 alone.
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=ipv6 loopback',
      '-addext', 'subjectAltName=IP:::1',
      '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    const key = readFileSync(path.join(dir, 'key.pem'));
    const cert = readFileSync(path.join(dir, 'cert.pem'));
    const { server } = await echo({ host: '::1', tls: { key, cert } });
    // The bracketed host ('[::1]') was the TLS servername, so the check failed (ERR_TLS_CERT_ALTNAME_INVALID).
    const conn = await connect(`wss://[::1]:${server.port}/`, { tls: { ca: cert } });
    expect(await roundTrip(conn, 'over IPv6 TLS')).toBe('over IPv6 TLS');
    expect(conn.remoteAddress).toBe('::1');
  });

  test('wss://localhost.: the TLS servername (SNI) is sent without the trailing dot (RFC 6066 §3; it was sent with it), over HTTP/1.1, HTTP/2 and hybi-00; an IP address sends none; Host keeps the dot', async () => {
    for (const [variant, http2] of [['rfc6455', false], ['rfc6455', true], ['hybi00', false]] as const) {
      const { server, seen } = await echo({ tls, http2 });
      const names: unknown[] = [];
      server.httpServer.on('secureConnection', (socket: import('node:tls').TLSSocket) => names.push(socket.servername));
      const conn = await connect(`wss://localhost.:${server.port}/`, { variant, http2, tls: { ca: tls.cert }, lookup: toLoopback([]) });
      expect(await roundTrip(conn, 'dotted')).toBe('dotted');
      expect([variant, http2, conn.transport.kind, names]).toEqual([variant, http2, http2 ? 'http2' : 'tls', ['localhost']]);
      expect(seen[0]!.host).toBe(`localhost.:${server.port}`);
      // An address: no servername at all (the certificate is checked against the address).
      names.length = 0;
      expect(await roundTrip(await connect(`wss://127.0.0.1:${server.port}/`, { variant, http2, tls: { ca: tls.cert } }), 'by address')).toBe('by address');
      expect(names).toEqual([false]);
    }
  });

  test('over HTTP/2 (http2: true) too: a wss+unix: URL, lookup and localAddress choose the connection of the session', async () => {
    // (Before: the HTTP/2 path ignored them; the Unix socket URL went to TCP port 443 of localhost.)
    const socketPath = path.join(dir, 'h2.sock');
    const overUnix = await echo({ path: socketPath, tls, http2: true });
    const unixConn = await connect(overUnix.server.url, { http2: true, tls: { ca: tls.cert } });
    expect(unixConn.transport.kind).toBe('http2');
    expect(await roundTrip(unixConn, 'h2 over a unix socket')).toBe('h2 over a unix socket');

    const { server, seen } = await echo({ host: '0.0.0.0', tls, http2: true });
    const asked: string[] = [];
    const lookup = toLoopback(asked);
    // The certificate is for localhost: the name the lookup is asked for.
    const conn = await connect(`wss://localhost:${server.port}/`, { http2: true, tls: { ca: tls.cert }, lookup, localAddress: '127.0.0.2' });
    expect(conn.transport.kind).toBe('http2');
    expect(await roundTrip(conn, 'resolved')).toBe('resolved');
    expect(asked).toEqual(['localhost']);
    expect(seen[0]!.remote).toBe('127.0.0.2');
  });

  test('a handshake given up (signal, handshakeTimeout) while the name is still being looked up makes no connection afterwards, over HTTP/1.1, HTTP/2 and hybi-00 (over HTTP/2 the socket connected once the lookup came back)', async () => {
    const tcp = await connectionCounter();
    try {
      for (const [scheme, variant, http2] of [['ws', 'rfc6455', false], ['ws', 'hybi00', false], ['ws', 'rfc6455', true], ['wss', 'rfc6455', true]] as const) {
        for (const giveUp of ['signal', 'handshakeTimeout'] as const) {
          // A lookup that answers only when told to: the name resolves after the handshake was given up.
          let answer: (() => void) | undefined;
          let asked!: () => void;
          const lookingUp = new Promise<void>((resolve) => (asked = resolve));
          const lookup = ((_host: string, options: { all?: boolean }, callback: (err: Error | null, address: unknown, family?: number) => void) => {
            answer = () => (options.all ? callback(null, [{ address: '127.0.0.1', family: 4 }]) : callback(null, '127.0.0.1', 4));
            asked();
          }) as unknown as NonNullable<Parameters<typeof connect>[1]>['lookup'];
          const abort = new AbortController();
          const attempt = connect(`${scheme}://slow.invalid:${tcp.port}/`, {
            variant, http2, lookup, tls: { ca: tls.cert },
            ...(giveUp === 'signal' ? { signal: abort.signal } : { handshakeTimeout: 50 }),
          }).catch((e: { code?: string }) => e.code);
          await lookingUp;
          abort.abort();
          expect([scheme, variant, http2, giveUp, await attempt]).toEqual([scheme, variant, http2, giveUp, giveUp === 'signal' ? 'WS_CONNECT_FAILED' : 'WS_HANDSHAKE_TIMEOUT']);
          answer!();
          expect([scheme, variant, http2, giveUp, await tcp.othersBefore()]).toEqual([scheme, variant, http2, giveUp, 0]);
        }
      }
    } finally {
      await tcp.close();
    }
  });

  test('a signal aborted already: no lookup and no connection, over HTTP/1.1 as over HTTP/2 and hybi-00 (over HTTP/1.1 the name was looked up and a connection made), and the error of an abort', async () => {
    const tcp = await connectionCounter();
    try {
      for (const [variant, http2] of [['rfc6455', false], ['hybi00', false], ['rfc6455', true]] as const) {
        for (const host of ['127.0.0.1', 'name.invalid']) {
          const asked: string[] = [];
          const reason = new Error('given up');
          const error = await connect(`ws://${host}:${tcp.port}/`, { variant, http2, lookup: toLoopback(asked), signal: AbortSignal.abort(reason) }).catch((e: unknown) => e);
          expect(error).toBeInstanceOf(HandshakeError);
          const { code, cause } = error as HandshakeError & { cause: { name: string; cause: unknown } };
          expect([variant, http2, host, code, cause.name, cause.cause, asked, await tcp.othersBefore()]).toEqual([variant, http2, host, 'WS_CONNECT_FAILED', 'AbortError', reason, [], 0]);
        }
      }
    } finally {
      await tcp.close();
    }
  });

  test('a connection refused on a Unix socket that is not there is a HandshakeError, not a crash', async () => {
    const error = await connect(`ws+unix://${path.join(dir, 'missing.sock')}:/`).catch((e: unknown) => e);
    expect((error as { code?: string }).code).toBe('WS_CONNECT_FAILED');
    expect(String((error as { cause?: unknown }).cause)).toMatch(/ENOENT/);
  });
});
