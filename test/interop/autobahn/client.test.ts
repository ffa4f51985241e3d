/**
 * Autobahn|Testsuite-style conformance, fuzzingserver mode: for each case the fuzzer listens as a
 * server and our connect() client connects to it and echoes every message, as Autobahn's client
 * harness does. One connection per case, cases run concurrently; each case is one test asserting
 * Autobahn's verdict.
 */
import { connect, type WebSocketConnection } from 'rfc6455';
import { runCase, type CaseResult } from './case.js';
import { listenOnce } from './fuzzer.js';
import { allCases, CASE_TEST_TIMEOUT, expectedVerdict, expectVerdict, report, scheduleAll } from './harness.js';

/** The client under test: connect, then echo every message until the connection ends. */
async function echoClient(url: string, open: Set<WebSocketConnection>): Promise<void> {
  let conn: WebSocketConnection | undefined;
  try {
    conn = await connect(url);
    open.add(conn);
    const c = conn;
    // The event style: each message is echoed as it is parsed, before the next frame of the
    // same read (see harness.ts on the `for await` style), as examples/echo-server.ts does.
    c.on('message', (message) => void c.send(message).catch(() => undefined));
    await c.whenClosed;
  } catch {
    // The verdict comes from what the fuzzer saw on the wire.
  } finally {
    if (conn) open.delete(conn);
  }
}

const clients: Array<Promise<void>> = [];
const openConns = new Set<WebSocketConnection>();
let results: Map<string, Promise<CaseResult>>;

beforeAll(() => {
  results = scheduleAll(allCases, (def) =>
    runCase(def, 'server', async (events) => {
      const listener = await listenOnce(events);
      clients.push(echoClient(`${listener.url}/runCase?case=${def.id}&agent=rfc6455`, openConns));
      let timer: NodeJS.Timeout | undefined;
      const noClient = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('the client did not connect')), 10_000)));
      try {
        return await Promise.race([listener.peer, noClient]);
      } finally {
        clearTimeout(timer);
        listener.close();
      }
    }),
  );
});

afterAll(async () => {
  report('our client (fuzzer as server)', await Promise.all(results.values()));
  for (const conn of openConns) conn.terminate();
  await Promise.all(clients);
});

describe('Autobahn-style cases against connect() (fuzzer as server)', () => {
  for (const def of allCases) {
    // The fuzzer's first frames come with the 101; connect() parses them once the code awaiting
    // it has added the listener, so they are echoed as they are parsed, as on the server.
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
