/**
 * Autobahn|Testsuite-style permessage-deflate cases (sections 12 and 13), fuzzingserver mode: for
 * each case the fuzzer listens as a server and our connect() client, with its default offer,
 * connects and echoes every message. As in Autobahn's fuzzingserver, the case decides how the
 * fuzzer answers the client's offer (what it asks of the client: no context takeover, a window
 * size); the client's offer is its own. Each case is one test asserting Autobahn's verdict, and
 * that the echoes of large messages came compressed.
 */
import { connect, type WebSocketConnection } from 'rfc6455';
import { runCase, type CaseResult } from './case.js';
import { deflateMessageSize, deflateSectionCases } from './cases-deflate.js';
import { listenOnce } from './fuzzer.js';
import { CASE_TEST_TIMEOUT, DEFLATE_CONCURRENCY, expectEchoesCompressed, expectVerdict, OK, report, scheduleAll } from './harness.js';

/** The client under test: connect (default permessage-deflate offer), then echo every message. */
async function echoClient(url: string, open: Set<WebSocketConnection>): Promise<void> {
  let conn: WebSocketConnection | undefined;
  try {
    conn = await connect(url);
    open.add(conn);
    const c = conn;
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
  results = scheduleAll(
    deflateSectionCases,
    (def) =>
      runCase(def, 'server', async (events) => {
        const listener = await listenOnce(events, def.deflate);
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
    DEFLATE_CONCURRENCY,
  );
});

afterAll(async () => {
  report('our client, permessage-deflate (fuzzer as server)', await Promise.all(results.values()));
  for (const conn of openConns) conn.terminate();
  await Promise.all(clients);
});

describe('Autobahn-style permessage-deflate cases against connect() (fuzzer as server)', () => {
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
