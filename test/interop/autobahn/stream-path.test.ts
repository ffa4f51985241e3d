/**
 * The Autobahn-style cases of sections 1-7, 9 and 10 (all of server.test.ts and client.test.ts)
 * over plain TCP with direct reads turned off, both roles: `serve({ perMessageDeflate: true,
 * directReads: false })` with the `message`-listener echo and message limit of server.test.ts,
 * and our `connect(url, { directReads: false })` echo client of client.test.ts. Same verdicts as
 * with direct reads.
 *
 * Over plain TCP our connection otherwise switches its socket to direct reads (a shared buffer
 * through the handle's `onread`, packages/rfc6455/src/direct-read.ts) after the first chunk, so
 * server.test.ts and client.test.ts parse nearly everything on that path; `directReads: false`
 * (a ConnectionOptions field, which serve() and connect() both take) keeps the socket's Readable
 * stream, the path TLS and RFC6455_NO_DIRECT_READ=1 take. The option, not the environment
 * variable: direct-read.ts reads the variable once per module instance, when the first
 * connection tries to switch, so the option is what makes it per server and per client.
 *
 * That the cases really ran on the stream path is checked on every connection, through Node's
 * internals (see readPath).
 */
import { connect, serve, type WebSocketConnection } from 'rfc6455';
import { allCases, CASE_TEST_TIMEOUT } from './harness.js';
import { echoFromListener, runAgainstClient, runAgainstServer, type ServerRun, verdictTests } from './our-side.js';

/** Sections 1-7, 9 and 10: section 9 (large messages, many fragments, small TCP chops) included. */
const cases = allCases;

/**
 * How a connection's socket reads. Nothing public tells, so this reaches into Node's internals:
 * the buffer a net.Socket reads into when it has one of its own (the `onread` socket option; our
 * direct reads set the same fields, direct-read.ts) is kept in the socket's symbol-keyed field
 * `kBuffer`, null for a socket that reads through its Readable stream. Once set it stays set, also
 * after the socket closed. `unknown` when this Node has no such field (the control test below
 * then fails, and this check needs a new look).
 */
function readPath(conn: WebSocketConnection): 'stream' | 'direct' | 'unknown' {
  const socket = conn.transport.stream as unknown as Record<symbol, unknown>;
  const kBuffer = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'kBuffer');
  if (kBuffer === undefined) return 'unknown';
  return socket[kBuffer] === null ? 'stream' : 'direct';
}

/** Our side of every connection, to check once closed that it read through the stream. */
const serverConns: WebSocketConnection[] = [];
const clientConns: WebSocketConnection[] = [];

let serverRun: ServerRun;
let clientRun: ServerRun;
beforeAll(async () => {
  serverRun = await runAgainstServer('our server, stream reads (fuzzer as client)', cases, {
    agent: 'rfc6455-stream-reads',
    serve: { directReads: false, maxMessageSize: 16 * 1024 * 1024 + 64 * 1024 },
    onConnection: (conn) => serverConns.push(conn),
  });
  clientRun = runAgainstClient('our client, stream reads (fuzzer as server)', cases, undefined, {
    connect: { directReads: false },
    onConnection: (conn) => clientConns.push(conn),
  });
});
afterAll(async () => {
  await serverRun.finish();
  await clientRun.finish();
});

/** Waits for every case and for our side of every connection to close, then tells how each read. */
async function pathsOf(run: ServerRun, conns: WebSocketConnection[]): Promise<Array<{ kind: string; path: string }>> {
  await Promise.all(run.results.values());
  await Promise.all(conns.map((c) => c.whenClosed));
  return conns.map((c) => ({ kind: c.transport.kind, path: readPath(c) }));
}

test('the case list is sections 1-7, 9 and 10 (301 cases)', () => {
  expect(cases).toHaveLength(301);
});

test('control: with the default options, both sides of a plain TCP connection read directly', async () => {
  // Without this, readPath answering 'stream' everywhere could mean that it cannot see direct reads.
  const server = await serve({ port: 0, host: '127.0.0.1' }, echoFromListener);
  const conn = await connect(server.url);
  try {
    // Two round trips: the switch comes after the first chunk each side reads.
    for (const text of ['one', 'two']) {
      const echo = new Promise((resolve) => conn.once('message', resolve));
      await conn.send(text);
      expect(await echo).toBe(text);
    }
    const serverConns = [...server.connections];
    expect(serverConns).toHaveLength(1);
    expect([readPath(conn), readPath(serverConns[0]!)]).toEqual(['direct', 'direct']);
  } finally {
    await conn.close();
    await server.close();
  }
});

describe('Autobahn-style cases against serve({ directReads: false }) (fuzzer as client)', () => {
  test('every case ran on its own plain TCP connection, read through the stream', async () => {
    const paths = await pathsOf(serverRun, serverConns);
    expect(paths).toHaveLength(cases.length);
    expect(paths.filter((p) => p.kind !== 'tcp' || p.path !== 'stream')).toEqual([]);
  }, CASE_TEST_TIMEOUT);
  verdictTests(cases, () => serverRun);
});

describe('Autobahn-style cases against connect(url, { directReads: false }) (fuzzer as server)', () => {
  test('every case ran on its own plain TCP connection, read through the stream', async () => {
    const paths = await pathsOf(clientRun, clientConns);
    expect(paths).toHaveLength(cases.length);
    expect(paths.filter((p) => p.kind !== 'tcp' || p.path !== 'stream')).toEqual([]);
  }, CASE_TEST_TIMEOUT);
  verdictTests(cases, () => clientRun);
});
