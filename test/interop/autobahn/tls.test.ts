/**
 * The Autobahn-style cases of sections 1-7 and 10 over TLS, both roles: the fuzzer connects over
 * TLS (trusting the committed self-signed certificate, test/fixtures/tls) to
 * `serve({ tls, perMessageDeflate: true })` with the `message`-listener echo of server.test.ts,
 * and listens over TLS (same certificate) for our `connect('wss://…', { tls: { ca } })` echo
 * client, one connection per case as in client.test.ts. Same verdicts as over plain TCP.
 *
 * Over TLS our connection reads through the socket's Readable stream (direct reads are for plain
 * TCP sockets only, docs/performance.md), and frames come in TLS records: the cases reach the
 * stream read path and the TLS close (close_notify, then FIN) here. Section 9 is left out to keep
 * the file light (over TLS it passes too, but takes about 4 s and 5 s of CPU per role, run one
 * case at a time; stream-path.test.ts runs it on the stream read path over plain TCP), and so are
 * sections 12 and 13.
 */
import type { WebSocketConnection } from 'rfc6455';
import { TLS } from '../../http2/helpers.js';
import { allCases, CASE_TEST_TIMEOUT } from './harness.js';
import { runAgainstClient, runAgainstServer, type ServerRun, verdictTests } from './our-side.js';

const section = (id: string): number => Number(id.split('.')[0]);
const cases = allCases.filter((c) => section(c.id) <= 7 || section(c.id) === 10);

/** Our side of every connection, to check afterwards that it ran over TLS. */
const serverConns: WebSocketConnection[] = [];
const clientConns: WebSocketConnection[] = [];

let serverRun: ServerRun;
let clientRun: ServerRun;
beforeAll(async () => {
  serverRun = await runAgainstServer('our server over TLS (fuzzer as client)', cases, {
    serve: { tls: TLS },
    fuzzerTls: { ca: TLS.cert },
    onConnection: (conn) => serverConns.push(conn),
  });
  clientRun = runAgainstClient('our client over TLS (fuzzer as server)', cases, undefined, {
    tls: TLS,
    connect: { tls: { ca: TLS.cert } },
    onConnection: (conn) => clientConns.push(conn),
  });
});
afterAll(async () => {
  await serverRun.finish();
  await clientRun.finish();
});

test('the case list is sections 1-7 and 10 (247 cases)', () => {
  expect(cases).toHaveLength(247);
});

describe('Autobahn-style cases against serve({ tls }) (fuzzer as TLS client)', () => {
  test('every case ran on its own connection over TLS', async () => {
    await Promise.all(serverRun.results.values());
    expect(serverConns).toHaveLength(cases.length);
    expect(serverConns.filter((c) => c.transport.kind !== 'tls')).toEqual([]);
  }, CASE_TEST_TIMEOUT);
  verdictTests(cases, () => serverRun);
});

describe("Autobahn-style cases against connect('wss://…') (fuzzer as TLS server)", () => {
  test('every case ran on its own connection over TLS', async () => {
    await Promise.all(clientRun.results.values());
    expect(clientConns).toHaveLength(cases.length);
    expect(clientConns.filter((c) => c.transport.kind !== 'tls')).toEqual([]);
  }, CASE_TEST_TIMEOUT);
  verdictTests(cases, () => clientRun);
});
