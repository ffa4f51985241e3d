/**
 * @rfc6455/fastify over HTTP/2: an extended CONNECT still under way (in Fastify's hooks, or in
 * beforeAccept) is bounded as an HTTP/1.1 upgrade is. Fixed bugs: a hook that never finished held
 * the CONNECT (and app.close()) until the client gave up, with no 408; app.close() waited for such
 * a CONNECT instead of answering it 503; beforeAccept had a whole handshakeTimeout after the hooks.
 */
import Fastify from 'fastify';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { wsPlugin } from '@rfc6455/fastify';
import { connect, HandshakeError, type WebSocketConnection } from 'rfc6455';
import { CLIENT_TLS, TLS } from './helpers.js';

/** A promise opened from outside. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Started {
  host: string;
  app: ReturnType<typeof Fastify>;
  /** Opens once a request is in the `/slow` onRequest hook or `/hooked`'s beforeAccept. */
  entered: ReturnType<typeof gate>;
  /** Lets them go on. */
  release: ReturnType<typeof gate>;
  /** Error and warning lines Fastify logged. */
  problems: string[];
}

async function start(handshakeTimeout: number, framework = 0, hook = 0): Promise<Started> {
  const entered = gate();
  const release = gate();
  const problems: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      const line = JSON.parse(String(chunk)) as { level: number };
      if (line.level >= 40) problems.push(String(chunk));
      callback();
    },
  });
  const app = Fastify({ http2: true, https: { ...TLS, allowHTTP1: true }, logger: { level: 'warn', stream } });
  await app.register(wsPlugin, {
    handshakeTimeout,
    beforeAccept: async (_req, { path }) => {
      if (hook > 0) await delay(hook);
      if (path !== '/hooked') return undefined;
      entered.open();
      await release.promise;
      return undefined;
    },
  });
  app.addHook('onRequest', async (request) => {
    if (framework > 0) await delay(framework);
    if (request.url !== '/slow') return;
    entered.open();
    await release.promise;
  });
  for (const path of ['/open', '/slow', '/hooked']) {
    app.get(path, { websocket: true }, async (conn: WebSocketConnection) => {
      for await (const _ of conn);
    });
  }
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { host: `127.0.0.1:${(app.server.address() as AddressInfo).port}`, app, entered, release, problems };
}

function attempt(host: string, path: string): Promise<unknown> {
  return connect(`wss://${host}${path}`, { http2: true, tls: CLIENT_TLS, handshakeTimeout: 4000 }).then(
    (conn) => {
      conn.terminate();
      return conn;
    },
    (error: unknown) => error,
  );
}

test('a Fastify hook that never finishes on an extended CONNECT is answered 408 at handshakeTimeout', async () => {
  const running = await start(300);
  try {
    const outcome = await attempt(running.host, '/slow');
    // Before: no answer until the client's own handshake timeout.
    expect(outcome).toBeInstanceOf(HandshakeError);
    expect((outcome as HandshakeError).status).toBe(408);
    // The hook ends later and finds the request answered: nothing is written after the 408.
    running.release.open();
    await delay(50);
    expect(running.problems).toEqual([]);
  } finally {
    running.release.open();
    await running.app.close();
  }
});

test.each(['/slow', '/hooked'])('app.close() answers 503 at once an extended CONNECT still under way (%s), and resolves without waiting for it', async (path) => {
  const running = await start(60_000);
  try {
    const outcome = attempt(running.host, path);
    await running.entered.promise;
    // Before: app.close() waited until the client gave up, and the CONNECT got no answer.
    await running.app.close();
    const refused = await outcome;
    expect(refused).toBeInstanceOf(HandshakeError);
    expect((refused as HandshakeError).status).toBe(503);
    running.release.open();
    await delay(50);
    expect(running.app.websocketConnections.size).toBe(0);
    expect(running.problems).toEqual([]);
  } finally {
    running.release.open();
    await running.app.close();
  }
});

test('Fastify\'s hooks and beforeAccept share one handshakeTimeout over HTTP/2 too', async () => {
  // Hooks 550 ms, then beforeAccept 600 ms, under 900 ms: cut (it had 900 ms of its own).
  const running = await start(900, 550, 600);
  try {
    const outcome = await attempt(running.host, '/open');
    expect(outcome).toBeInstanceOf(HandshakeError);
    expect((outcome as HandshakeError).status).toBe(408);
  } finally {
    running.release.open();
    await running.app.close();
  }
});
