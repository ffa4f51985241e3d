/**
 * Autobahn|Testsuite-style permessage-deflate cases (sections 12 and 13), fuzzingserver mode: for
 * each case the fuzzer listens as a server and our connect() client, with its default offer,
 * connects and echoes every message. As in Autobahn's fuzzingserver, the case decides how the
 * fuzzer answers the client's offer (what it asks of the client: no context takeover, a window
 * size); the client's offer is its own. Each case is one test asserting Autobahn's verdict, and
 * that the echoes of large messages came compressed.
 */
import { deflateSectionCases } from './cases-deflate.js';
import { DEFLATE_CONCURRENCY, expectDeflateCase } from './harness.js';
import { caseTests, runAgainstClient, type ServerRun } from './our-side.js';

let run: ServerRun;
beforeAll(() => {
  run = runAgainstClient('our client, permessage-deflate (fuzzer as server)', deflateSectionCases, DEFLATE_CONCURRENCY);
});
afterAll(() => run.finish());

describe('Autobahn-style permessage-deflate cases against connect() (fuzzer as server)', () => {
  caseTests(
    deflateSectionCases,
    () => run,
    () => 'OK / OK',
    expectDeflateCase,
  );
});
