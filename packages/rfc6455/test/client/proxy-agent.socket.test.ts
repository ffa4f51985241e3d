/**
 * The client's `agent` option with real proxy parts: `proxy` (TooTallNate's HTTP proxy server,
 * which answers CONNECT by opening the TCP connection asked for) and `https-proxy-agent` (the
 * agent that tunnels each connection through it), as `ws` users pass them. Over ws: and wss:
 * (TLS end to end, inside the tunnel), with proxy authentication, a proxy that cannot reach the
 * target, and the browser-API `WebSocket` given the agent in its options.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { createProxy, type ProxyServer } from 'proxy';
import { connect, HandshakeError, serve, WebSocket, type CloseEvent, type ErrorEvent, type MessageEvent, type WebSocketConnection, type WebSocketServer } from 'rfc6455';

const FIXTURES = path.join(__dirname, '../../../../test/fixtures/tls');
const tls = { key: readFileSync(path.join(FIXTURES, 'key.pem')), cert: readFileSync(path.join(FIXTURES, 'cert.pem')) };
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

let proxy: ProxyServer;
let proxyUrl: string;
/** The CONNECT requests the proxy received: target and Proxy-Authorization. */
let connects: Array<{ target: string; auth: string | undefined }>;
const servers: WebSocketServer[] = [];
const conns: WebSocketConnection[] = [];
const agents: HttpsProxyAgent<string>[] = [];

beforeEach(async () => {
  connects = [];
  proxy = createProxy(createServer());
  proxy.prependListener('connect', (req: IncomingMessage) => connects.push({ target: req.url ?? '', auth: req.headers['proxy-authorization'] }));
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
});
afterEach(async () => {
  // Closed cleanly: terminate() resets the client's TCP connection, and this proxy does not pass a
  // reset on (its pipe() to the target stops without ending it), so the server would wait.
  await Promise.all(conns.splice(0).map((c) => c.close()));
  for (const a of agents.splice(0)) a.destroy();
  await Promise.all(servers.splice(0).map((s) => s.close()));
  proxy.closeAllConnections();
  await new Promise<void>((resolve) => proxy.close(() => resolve()));
});

function agentFor(url: string): HttpsProxyAgent<string> {
  const agent = new HttpsProxyAgent(url);
  agents.push(agent);
  return agent;
}

/** An echo server that records the request path and Host each connection came with. */
async function echo(options: Parameters<typeof serve>[0] = {}): Promise<{ server: WebSocketServer; seen: Array<{ url: string | undefined; host: string | undefined }> }> {
  const seen: Array<{ url: string | undefined; host: string | undefined }> = [];
  const server = await serve(options, async (conn, req) => {
    seen.push({ url: req.url, host: req.headers.host });
    for await (const m of conn) await conn.send(m);
  });
  servers.push(server);
  return { server, seen };
}

async function roundTrip(conn: WebSocketConnection, data: string | Buffer): Promise<unknown> {
  conns.push(conn);
  await conn.send(data);
  return conn.recv();
}

test('ws: through the proxy: it sees a CONNECT to the target, and messages go both ways through the tunnel', async () => {
  const { server, seen } = await echo();
  const conn = await connect(`ws://127.0.0.1:${server.port}/feed?x=1`, { agent: agentFor(proxyUrl) });
  expect(await roundTrip(conn, 'through the proxy')).toBe('through the proxy');
  expect(await roundTrip(conn, Buffer.alloc(200_000, 7))).toEqual(Buffer.alloc(200_000, 7));
  expect(connects).toEqual([{ target: `127.0.0.1:${server.port}`, auth: undefined }]);
  expect(seen).toEqual([{ url: '/feed?x=1', host: `127.0.0.1:${server.port}` }]);
});

test('wss: through the proxy: CONNECT to host:port, TLS end to end inside the tunnel with the certificate checked for the URL\'s host', async () => {
  const { server, seen } = await echo({ tls });
  const url = `wss://localhost:${server.port}/secure`;
  const conn = await connect(url, { agent: agentFor(proxyUrl), tls: { ca: tls.cert } });
  expect(await roundTrip(conn, 'tunnelled TLS')).toBe('tunnelled TLS');
  expect(connects).toEqual([{ target: `localhost:${server.port}`, auth: undefined }]);
  expect(seen).toEqual([{ url: '/secure', host: `localhost:${server.port}` }]);
  // Without the CA the server's certificate is refused, proxy or not.
  const refused = await connect(url, { agent: agentFor(proxyUrl) }).catch((e: unknown) => e);
  expect(refused).toBeInstanceOf(HandshakeError);
  expect(refused).toMatchObject({ status: 0, code: 'WS_CONNECT_FAILED', cause: { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' } });
});

test('a proxy that wants authentication: without credentials a HandshakeError with its 407, headers and body; with them (in the proxy URL) the tunnel opens', async () => {
  proxy.authenticate = (req) => req.headers['proxy-authorization'] === basic('alice', 's3cret');
  const { server, seen } = await echo();
  const url = `ws://127.0.0.1:${server.port}/`;
  const error = await connect(url, { agent: agentFor(proxyUrl) }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(HandshakeError);
  expect(error).toMatchObject({ status: 407, code: 'WS_UNEXPECTED_RESPONSE', statusLine: 'HTTP/1.1 407 Proxy Authentication Required' });
  expect((error as HandshakeError).headers['proxy-authenticate']).toBe('Basic realm="proxy"');
  expect((error as HandshakeError).body?.toString()).toBe('Proxy authorization required');
  expect(seen).toEqual([]);

  const conn = await connect(url, { agent: agentFor(proxyUrl.replace('//', '//alice:s3cret@')) });
  expect(await roundTrip(conn, 'authenticated')).toBe('authenticated');
  expect(connects.map((c) => c.auth)).toEqual([undefined, basic('alice', 's3cret')]);
  expect(seen).toHaveLength(1);
});

test('a proxy that cannot reach the target: a HandshakeError with the proxy\'s status, nothing hangs', async () => {
  // A port nothing listens on.
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  const error = await connect(`ws://127.0.0.1:${port}/`, { agent: agentFor(proxyUrl) }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(HandshakeError);
  expect(error).toMatchObject({ status: 500, code: 'WS_UNEXPECTED_RESPONSE', statusLine: 'HTTP/1.1 500 Internal Server Error' });
  expect(connects).toEqual([{ target: `127.0.0.1:${port}`, auth: undefined }]);
});

test('a proxy that is not there: WS_CONNECT_FAILED with the Node error as cause', async () => {
  const { server } = await echo();
  const gone = proxyUrl;
  proxy.closeAllConnections();
  await new Promise<void>((resolve) => proxy.close(() => resolve()));
  proxy = createProxy(createServer());
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const error = await connect(server.url, { agent: agentFor(gone) }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(HandshakeError);
  expect(error).toMatchObject({ status: 0, code: 'WS_CONNECT_FAILED', cause: { code: 'ECONNREFUSED' } });
});

test('the WebSocket class takes the agent in its options: open, a message, a clean close; a 407 is an error event carrying the HandshakeError, then close 1006', async () => {
  const { server } = await echo();
  const ws = new WebSocket(server.url, [], { agent: agentFor(proxyUrl) });
  await new Promise((resolve) => (ws.onopen = resolve));
  ws.send('via WebSocket');
  const message = await new Promise<MessageEvent>((resolve) => (ws.onmessage = resolve));
  expect(message.data).toBe('via WebSocket');
  ws.close(1000);
  const closed = await new Promise<CloseEvent>((resolve) => (ws.onclose = resolve));
  expect([closed.code, closed.wasClean]).toEqual([1000, true]);
  expect(connects).toHaveLength(1);

  proxy.authenticate = () => false;
  const refused = new WebSocket(server.url, { agent: agentFor(proxyUrl) });
  const events: string[] = [];
  const error = new Promise<ErrorEvent>((resolve) => (refused.onerror = (e) => { events.push('error'); resolve(e as ErrorEvent); }));
  const close = new Promise<CloseEvent>((resolve) => (refused.onclose = (e) => { events.push('close'); resolve(e); }));
  expect((await error).error).toMatchObject({ status: 407, code: 'WS_UNEXPECTED_RESPONSE' });
  expect((await close).code).toBe(1006);
  expect(events).toEqual(['error', 'close']);
});
