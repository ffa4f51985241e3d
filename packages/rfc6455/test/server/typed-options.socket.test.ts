/**
 * What the public types promise, checked against a running server with real clients (`ws`): the
 * handler's `context.state` is undefined, and typed so (or `State | undefined`), when no before-accept hook gave one;
 * `protocols: false` (typed, no cast) answers no subprotocol; and serve({ http2: true }) without
 * `tls`, which the types now refuse, throws. The compile-time half is in
 * test/tls/serve-types.typecheck.ts.
 */
import { once } from 'node:events';
import { expectTypeOf } from 'expect-type';
import { WebSocket as WsClient } from 'ws';
import { connect, serve, serviceMapper, type HandlerContext, type ServeOptions, type WebSocketServer } from 'rfc6455';

const servers: WebSocketServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** Opens a `ws` client on `url` and waits for its open. */
async function open(url: string): Promise<WsClient> {
  const client = new WsClient(url);
  await once(client, 'open');
  return client;
}

/** Resolves with what the first accepted connection's handler received as its context. */
function firstContext(): { seen: Promise<HandlerContext<unknown>>; handler: (conn: unknown, req: unknown, ctx: HandlerContext<unknown>) => void } {
  let resolve!: (ctx: HandlerContext<unknown>) => void;
  const seen = new Promise<HandlerContext<unknown>>((r) => (resolve = r));
  return { seen, handler: (_conn, _req, ctx) => resolve(ctx) };
}

test('without a before-accept hook the handler gets state undefined, typed undefined (a plain handler and a mapper alike)', async () => {
  let plainState: 'unset' | undefined = 'unset';
  const plain = await serve({ port: 0 }, (conn, _req, ctx) => {
    const state: undefined = ctx.state;
    plainState = state;
    conn.close();
  });
  servers.push(plain);
  const first = firstContext();
  const mapped = await serve({ port: 0 }, serviceMapper([{ path: '/m', handler: first.handler }]));
  servers.push(mapped);
  const clients = [await open(plain.url), await open(`${mapped.url}m`)];
  expect((await first.seen).state).toBeUndefined();
  expect(plainState).toBeUndefined();
  for (const client of clients) client.terminate();
});

test('a hook that gives headers but no state: the handler gets state undefined, typed undefined', async () => {
  const first = firstContext();
  const server = await serve({ port: 0, beforeAccept: () => ({ headers: { 'x-seen': '1' } }) }, (conn, req, ctx) => {
    const state: undefined = ctx.state;
    first.handler(conn, req, { ...ctx, state });
  });
  servers.push(server);
  const client = await open(server.url);
  expect((await first.seen).state).toBeUndefined();
  client.terminate();
});

test('a hook that accepts with a state on one path and without on another: the handler gets undefined there, typed State | undefined', async () => {
  const seen = new Map<string, unknown>();
  let count = 0;
  let done!: () => void;
  const both = new Promise<void>((r) => (done = r));
  const server = await serve(
    { port: 0, beforeAccept: (_req, { path }) => (path === '/in' ? { state: { user: 'ann' } } : path === '/headers' ? { headers: { 'x-seen': '1' } } : undefined) },
    (conn, _req, ctx) => {
      expectTypeOf(ctx.state).toEqualTypeOf<{ user: string } | undefined>();
      seen.set(conn.path, ctx.state);
      if (++count === 3) done();
    },
  );
  servers.push(server);
  const clients = [await open(`${server.url}in`), await open(`${server.url}out`), await open(`${server.url}headers`)];
  await both;
  expect(Object.fromEntries(seen)).toEqual({ '/in': { user: 'ann' }, '/out': undefined, '/headers': undefined });
  expect(seen.has('/out') && seen.has('/headers')).toBe(true);
  for (const client of clients) client.terminate();
});

test('protocols: false (as ws\'s handleProtocols answers) is accepted as typed and answers no subprotocol to a client that offers one', async () => {
  const first = firstContext();
  const server = await serve({ port: 0, protocols: false }, first.handler);
  servers.push(server);
  // (Our client: \`ws\`'s fails a handshake that answers none of the subprotocols it offered.)
  const client = await connect(server.url, { protocols: ['chat'] });
  expect(client.protocol).toBe('');
  expect((await first.seen).protocol).toBe('');
  client.terminate();
});

test('serve({ http2: true }) without tls throws the TypeError the types now refuse it with', async () => {
  const options: ServeOptions = { http2: true };
  await expect(serve(options, () => undefined)).rejects.toThrow(/needs tls/);
});
