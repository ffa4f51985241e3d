/**
 * Autobahn|Testsuite-style permessage-deflate cases (sections 12 and 13), fuzzingclient mode: the
 * fuzzer connects as a client with each case's offers to our serve() echo server, configured as
 * examples/echo-server.ts is (permessage-deflate on with its defaults, a `message` listener
 * echoing every message). One connection per case, cases run concurrently; each case is one test
 * asserting Autobahn's verdict, and that the echoes of large messages came compressed.
 */
import { serve, type WebSocketServer } from 'rfc6455';
import { runCase, type CaseResult } from './case.js';
import { deflateMessageSize, deflateSectionCases } from './cases-deflate.js';
import { FuzzPeer } from './fuzzer.js';
import { CASE_TEST_TIMEOUT, DEFLATE_CONCURRENCY, expectEchoesCompressed, expectVerdict, OK, report, scheduleAll } from './harness.js';

let server: WebSocketServer;
let results: Map<string, Promise<CaseResult>>;

beforeAll(async () => {
  server = await serve({ port: 0, host: '127.0.0.1', perMessageDeflate: true }, (conn) => {
    conn.on('message', (message) => conn.send(message));
  });
  const base = new URL(server.url);
  results = scheduleAll(
    deflateSectionCases,
    (def) => runCase(def, 'client', async (events) => FuzzPeer.connect(new URL(`/runCase?case=${def.id}&agent=rfc6455`, base), events, def.deflate)),
    DEFLATE_CONCURRENCY,
  );
});

afterAll(async () => {
  report('our server, permessage-deflate (fuzzer as client)', await Promise.all(results.values()));
  await server.close();
});

describe('Autobahn-style permessage-deflate cases against serve() (fuzzer as client)', () => {
  for (const def of deflateSectionCases) {
    test(
      `case ${def.id}: ${def.title} (OK / OK)`,
      async () => {
        const r = await results.get(def.id)!;
        expectVerdict(r, OK);
        expectEchoesCompressed(r, deflateMessageSize.get(def.id)!);
      },
      CASE_TEST_TIMEOUT,
    );
  }
});
