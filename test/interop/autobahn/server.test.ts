/**
 * Autobahn|Testsuite-style conformance, fuzzingclient mode: the fuzzer connects as a client to
 * our serve() echo server, configured as examples/echo-server.ts is (permessage-deflate on, a
 * `message` listener that echoes every message as it is parsed), with a message limit that fits
 * section 9. One connection per case,
 * cases run concurrently; each case is one test asserting Autobahn's verdict.
 */
import { serve, type WebSocketServer } from 'rfc6455';
import { runCase, type CaseResult } from './case.js';
import { FuzzPeer } from './fuzzer.js';
import { allCases, CASE_TEST_TIMEOUT, expectedVerdict, expectVerdict, report, scheduleAll } from './harness.js';

let server: WebSocketServer;
let results: Map<string, Promise<CaseResult>>;

beforeAll(async () => {
  server = await serve(
    { port: 0, host: '127.0.0.1', perMessageDeflate: true, maxMessageSize: 16 * 1024 * 1024 + 64 * 1024 },
    (conn) => {
      conn.on('message', (message) => conn.send(message));
    },
  );
  const base = new URL(server.url);
  results = scheduleAll(allCases, (def) =>
    runCase(def, 'client', async (events) => FuzzPeer.connect(new URL(`/runCase?case=${def.id}&agent=rfc6455`, base), events)),
  );
});

afterAll(async () => {
  report('our server (fuzzer as client)', await Promise.all(results.values()));
  await server.close();
});

describe('Autobahn-style cases against serve() (fuzzer as client)', () => {
  for (const def of allCases) {
    const expected = expectedVerdict(def.id);
    test(
      `case ${def.id}: ${def.title} (${expected.behavior} / ${expected.behaviorClose})`,
      async () => {
        expectVerdict(await results.get(def.id)!, expected);
      },
      CASE_TEST_TIMEOUT,
    );
  }
});
