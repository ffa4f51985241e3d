/**
 * Autobahn|Testsuite-style conformance, fuzzingclient mode: the fuzzer connects as a client to
 * our serve() echo server, configured as examples/echo-server.ts is (permessage-deflate on, a
 * `message` listener that echoes every message as it is parsed), with a message limit that fits
 * section 9. One connection per case, cases run concurrently; each case is one test asserting
 * Autobahn's verdict.
 */
import { allCases } from './harness.js';
import { runAgainstServer, type ServerRun, verdictTests } from './our-side.js';

let run: ServerRun;
beforeAll(async () => {
  run = await runAgainstServer('our server (fuzzer as client)', allCases, { serve: { maxMessageSize: 16 * 1024 * 1024 + 64 * 1024 } });
});
afterAll(() => run.finish());

describe('Autobahn-style cases against serve() (fuzzer as client)', () => {
  verdictTests(allCases, () => run);
});
