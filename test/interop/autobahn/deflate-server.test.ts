/**
 * Autobahn|Testsuite-style permessage-deflate cases (sections 12 and 13), fuzzingclient mode: the
 * fuzzer connects as a client with each case's offers to our serve() echo server, configured as
 * examples/echo-server.ts is (permessage-deflate on with its defaults, a `message` listener
 * echoing every message). One connection per case, cases run concurrently; each case is one test
 * asserting Autobahn's verdict, and that the echoes of large messages came compressed.
 */
import { deflateSectionCases } from './cases-deflate.js';
import { DEFLATE_CONCURRENCY, expectDeflateCase } from './harness.js';
import { caseTests, runAgainstServer, type ServerRun } from './our-side.js';

let run: ServerRun;
beforeAll(async () => {
  run = await runAgainstServer('our server, permessage-deflate (fuzzer as client)', deflateSectionCases, { limits: DEFLATE_CONCURRENCY });
});
afterAll(() => run.finish());

describe('Autobahn-style permessage-deflate cases against serve() (fuzzer as client)', () => {
  caseTests(
    deflateSectionCases,
    () => run,
    () => 'OK / OK',
    expectDeflateCase,
  );
});
