/**
 * Autobahn|Testsuite-style conformance, fuzzingserver mode: for each case the fuzzer listens as a
 * server and our connect() client connects to it and echoes every message, as Autobahn's client
 * harness does. One connection per case, cases run concurrently; each case is one test asserting
 * Autobahn's verdict.
 */
import { allCases, expectedVerdict, expectVerdict } from './harness.js';
import { caseTests, runAgainstClient, type ServerRun } from './our-side.js';

let run: ServerRun;
beforeAll(() => {
  run = runAgainstClient('our client (fuzzer as server)', allCases);
});
afterAll(() => run.finish());

describe('Autobahn-style cases against connect() (fuzzer as server)', () => {
  caseTests(
    allCases,
    () => run,
    (def) => `${expectedVerdict(def.id).behavior} / ${expectedVerdict(def.id).behaviorClose}`,
    (def, r) => expectVerdict(r, expectedVerdict(def.id)),
  );
});
