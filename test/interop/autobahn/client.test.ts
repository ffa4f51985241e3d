/**
 * Autobahn|Testsuite-style conformance, fuzzingserver mode: for each case the fuzzer listens as a
 * server and our connect() client connects to it and echoes every message, as Autobahn's client
 * harness does. One connection per case, cases run concurrently; each case is one test asserting
 * Autobahn's verdict.
 */
import { allCases } from './harness.js';
import { runAgainstClient, type ServerRun, verdictTests } from './our-side.js';

let run: ServerRun;
beforeAll(() => {
  run = runAgainstClient('our client (fuzzer as server)', allCases);
});
afterAll(() => run.finish());

describe('Autobahn-style cases against connect() (fuzzer as server)', () => {
  verdictTests(allCases, () => run);
});
