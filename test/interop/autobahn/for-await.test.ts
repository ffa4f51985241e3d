/**
 * The same framing cases (sections 1-5) against a serve() echo written as a `for await` loop
 * instead of a `message` listener: the loop is handed each message after the whole read it came
 * in was parsed. Everything is still OK except the six cases where a message and a frame that
 * fails the connection come in one write: there the echo finds the connection failed and is not
 * sent (nothing may follow our close frame, RFC 6455 §5.5.1), which Autobahn grades NON-STRICT.
 * This pins what docs/conformance.md says about the two styles.
 */
import { serve, type WebSocketServer } from 'rfc6455';
import { runCase, type CaseResult } from './case.js';
import { FuzzPeer } from './fuzzer.js';
import { allCases, CASE_TEST_TIMEOUT, expectedVerdict, expectVerdict, report, scheduleAll } from './harness.js';

const framingCases = allCases.filter((c) => Number(c.id.split('.')[0]) <= 5);

let server: WebSocketServer;
let results: Map<string, Promise<CaseResult>>;

beforeAll(async () => {
  server = await serve({ port: 0, host: '127.0.0.1', perMessageDeflate: true }, async (conn) => {
    for await (const message of conn) conn.send(message).catch(() => undefined);
  });
  const base = new URL(server.url);
  results = scheduleAll(framingCases, (def) =>
    runCase(def, 'client', async (events) => FuzzPeer.connect(new URL(`/runCase?case=${def.id}&agent=rfc6455-for-await`, base), events)),
  );
});

afterAll(async () => {
  report('our server, echo as a for-await loop (fuzzer as client)', await Promise.all(results.values()));
  await server.close();
});

describe('Autobahn-style framing cases against a for-await echo (fuzzer as client)', () => {
  test('the case list is sections 1-5 (64 cases)', () => {
    expect(framingCases).toHaveLength(64);
  });
  for (const def of framingCases) {
    const expected = expectedVerdict(def.id, true);
    test(
      `case ${def.id}: ${def.title} (${expected.behavior} / ${expected.behaviorClose})`,
      async () => {
        expectVerdict(await results.get(def.id)!, expected);
      },
      CASE_TEST_TIMEOUT,
    );
  }
});
