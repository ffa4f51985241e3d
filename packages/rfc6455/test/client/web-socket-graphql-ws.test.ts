/**
 * A real consumer of the browser API: graphql-ws's client, given rfc6455's `WebSocket` as its
 * `webSocketImpl`, against graphql-ws's own server over `ws` (as it is usually deployed): a query,
 * a subscription streamed to its end, and a refusal by the server (its close code reaching the
 * client's error handler).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GraphQLInt, GraphQLObjectType, GraphQLSchema, GraphQLString } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';
import { WebSocket } from 'rfc6455';

const schema = new GraphQLSchema({
  query: new GraphQLObjectType({
    name: 'Query',
    fields: { hello: { type: GraphQLString, args: { name: { type: GraphQLString } }, resolve: (_, { name }) => `hello ${String(name)}` } },
  }),
  subscription: new GraphQLObjectType({
    name: 'Subscription',
    fields: {
      count: {
        type: GraphQLInt,
        args: { to: { type: GraphQLInt } },
        subscribe: async function* (_: unknown, { to }: { to: number }) {
          for (let i = 1; i <= to; i++) yield { count: i };
        },
      },
    },
  }),
});

let httpServer: Server;
let url: string;

beforeAll(async () => {
  httpServer = createServer();
  const wss = new WebSocketServer({ server: httpServer, path: '/graphql' });
  useServer(
    {
      schema,
      // Refuses connections whose connectionParams carry a wrong token: close 4403 Forbidden.
      onConnect: (ctx) => (ctx.connectionParams as { token?: string } | undefined)?.token === 'secret',
    },
    wss,
  );
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  url = `ws://127.0.0.1:${(httpServer.address() as AddressInfo).port}/graphql`;
});
afterAll(async () => {
  httpServer.closeAllConnections();
  await new Promise((resolve) => httpServer.close(resolve));
});

function query(client: Client, request: { query: string; variables?: Record<string, unknown> }): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const results: unknown[] = [];
    client.subscribe(request, { next: (value) => void results.push(value), error: reject, complete: () => resolve(results) });
  });
}

test('a query and a subscription through graphql-ws with WebSocket as its webSocketImpl', async () => {
  const client = createClient({ url, webSocketImpl: WebSocket, connectionParams: { token: 'secret' }, retryAttempts: 0, lazy: true });
  try {
    expect(await query(client, { query: 'query ($n: String) { hello(name: $n) }', variables: { n: 'rfc6455' } })).toEqual([{ data: { hello: 'hello rfc6455' } }]);
    expect(await query(client, { query: 'subscription { count(to: 5) }' })).toEqual([1, 2, 3, 4, 5].map((count) => ({ data: { count } })));
  } finally {
    await client.dispose();
  }
});

test('the server refusing the connection: its close code (4403) reaches the client', async () => {
  const client = createClient({ url, webSocketImpl: WebSocket, connectionParams: { token: 'wrong' }, retryAttempts: 0, lazy: true });
  try {
    const error = await query(client, { query: '{ hello }' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 4403, reason: 'Forbidden', wasClean: true });
  } finally {
    await client.dispose();
  }
});
