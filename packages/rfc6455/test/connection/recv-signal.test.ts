/**
 * recv({ signal }): a receive that is given up (AbortSignal.timeout, an AbortController) rejects
 * with the signal's reason and takes no message; the next recv() gets it. Racket's
 * `(sync/timeout t (ws-recv-evt c))` in Node. Before, the only way was Promise.race against a
 * timer, whose losing recv() stayed queued and swallowed the next message, one per round.
 */
import { connect, EOF, serve, type WebSocketConnection, type WebSocketServer } from 'rfc6455';

let server: WebSocketServer;
const accepted: Array<(conn: WebSocketConnection) => void> = [];

beforeAll(async () => {
  server = await serve({ port: 0, host: '127.0.0.1' }, (conn) => {
    accepted.shift()?.(conn);
  });
});
afterAll(() => server.close());

async function pair(): Promise<{ client: WebSocketConnection; conn: WebSocketConnection }> {
  const serverSide = new Promise<WebSocketConnection>((resolve) => accepted.push(resolve));
  const client = await connect(server.url);
  return { client, conn: await serverSide };
}

test('a recv() given up by its signal takes no message: ten timed-out rounds, then every message arrives in order', async () => {
  const { client, conn } = await pair();
  for (let i = 0; i < 10; i++) {
    const error = await conn.recv({ signal: AbortSignal.timeout(5) }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.name).toBe('TimeoutError');
  }
  await client.send('one');
  await client.send('two');
  expect(await conn.recv()).toBe('one');
  expect(await conn.recv({ signal: AbortSignal.timeout(5000) })).toBe('two');
  await client.close();
  expect(await conn.recv({ signal: AbortSignal.timeout(5000) })).toBe(EOF);
});

test('aborting one of several waiting receives leaves the others in their order', async () => {
  const { client, conn } = await pair();
  const controller = new AbortController();
  const first = conn.recv();
  const second = conn.recv({ signal: controller.signal });
  const third = conn.recv();
  controller.abort(new Error('not needed'));
  await expect(second).rejects.toThrow('not needed');
  await client.send('a');
  await client.send('b');
  expect(await first).toBe('a');
  expect(await third).toBe('b');
  // The first waiter given up: the one after it becomes the first.
  const c2 = new AbortController();
  const gone = conn.recv({ signal: c2.signal });
  const next = conn.recv();
  c2.abort();
  await expect(gone).rejects.toMatchObject({ name: 'AbortError' });
  await client.send('c');
  expect(await next).toBe('c');
  client.terminate();
});

test('an aborted signal rejects at once, a queued message stays queued; a delivered receive lets its signal go', async () => {
  const { client, conn } = await pair();
  await client.send('queued');
  const controller = new AbortController();
  controller.abort();
  await expect(conn.recv({ signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
  expect(await conn.recv()).toBe('queued');
  // One long-lived signal over many receives keeps no listener behind.
  const signal = new AbortController().signal;
  for (let i = 0; i < 20; i++) {
    const got = conn.recv({ signal });
    await client.send(`m${i}`);
    expect(await got).toBe(`m${i}`);
  }
  expect(eventCount(signal)).toBe(0);
  client.terminate();
});

/** The number of 'abort' listeners on a signal (Node's EventTarget keeps the count on a symbol). */
function eventCount(signal: AbortSignal): number {
  const sym = Object.getOwnPropertySymbols(signal).find((s) => s.description === 'kEvents');
  const events = sym === undefined ? undefined : ((signal as unknown as Record<symbol, Map<string, { size: number }>>)[sym]);
  return events?.get('abort')?.size ?? 0;
}
