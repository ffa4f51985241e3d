/**
 * A `beforeAccept` refusal whose status is no refusal. RFC 6455 §4.2.2: a server that does not
 * accept answers an HTTP error code. Over HTTP/2 (RFC 8441) a 2xx is the acceptance: a hook's
 * `{ reject: { status: 200 } }` opened the tunnel, our client took the connection as open and read
 * the refusal's body as frames (1002). Over HTTP/1.1 a `status: 101` wrote a 101 without the
 * handshake. Either is now the hook's failure: 500, reported to `onError`, on both transports.
 */
import { connect, HandshakeError, serve, type WebSocketServer } from 'rfc6455';
import { CLIENT_TLS, TLS } from './helpers.js';

const servers: WebSocketServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function refusingServer(status: number): Promise<{ server: WebSocketServer; errors: unknown[]; handled: () => number }> {
  const errors: unknown[] = [];
  let handled = 0;
  const server = await serve(
    { http2: true, tls: TLS, beforeAccept: () => ({ reject: { status, body: 'refused' } }), onError: (error) => errors.push(error) },
    (conn) => {
      handled++;
      void conn.close();
    },
  );
  servers.push(server);
  return { server, errors, handled: () => handled };
}

describe.each([
  ['HTTP/2', true],
  ['HTTP/1.1', false],
])('over %s', (_name, http2) => {
  test.each([200, 101, 204, 99, 600, 401.5])('a refusal with status %p answers 500 and reports a RangeError to onError; the client never opens', async (status) => {
    const { server, errors, handled } = await refusingServer(status);
    const url = server.url.replace('127.0.0.1', 'localhost');
    const outcome = await connect(url, { http2, tls: CLIENT_TLS, handshakeTimeout: 5000 }).then(
      (conn) => {
        conn.terminate();
        return conn;
      },
      (error: unknown) => error,
    );
    expect(outcome).toBeInstanceOf(HandshakeError);
    expect((outcome as HandshakeError).status).toBe(500);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(RangeError);
    expect((errors[0] as Error).message).toMatch(/from 300 to 599/);
    expect(handled()).toBe(0);
  });

  test.each([302, 401, 503])('a refusal with status %p is answered as given', async (status) => {
    const { server, errors } = await refusingServer(status);
    const url = server.url.replace('127.0.0.1', 'localhost');
    const error = await connect(url, { http2, tls: CLIENT_TLS }).catch((e: unknown) => e);
    expect((error as HandshakeError).status).toBe(status);
    expect((error as HandshakeError).body?.toString()).toBe('refused');
    expect(errors).toEqual([]);
  });
});
