/**
 * The same framing cases (sections 1-5) against a serve() echo written as a `for await` loop
 * instead of a `message` listener: the loop is handed each message after the whole read it came
 * in was parsed. Everything is still OK except the six cases where a message and a frame that
 * fails the connection come in one write: there the echo finds the connection failed and is not
 * sent (nothing may follow our close frame, RFC 6455 §5.5.1), which Autobahn grades NON-STRICT.
 * This pins what docs/conformance.md says about the two styles.
 */
import { allCases } from './harness.js';
import { runAgainstServer, type ServerRun, verdictTests } from './our-side.js';

const framingCases = allCases.filter((c) => Number(c.id.split('.')[0]) <= 5);

let run: ServerRun;
beforeAll(async () => {
  run = await runAgainstServer('our server, echo as a for-await loop (fuzzer as client)', framingCases, {
    agent: 'rfc6455-for-await',
    handler: async (conn) => {
      for await (const message of conn) conn.send(message).catch(() => undefined);
    },
  });
});
afterAll(() => run.finish());

describe('Autobahn-style framing cases against a for-await echo (fuzzer as client)', () => {
  test('the case list is sections 1-5 (64 cases)', () => {
    expect(framingCases).toHaveLength(64);
  });
  verdictTests(framingCases, () => run, true);
});
