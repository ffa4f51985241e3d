/**
 * attachHttp2 on a user's own http2.createSecureServer, in both of Node's styles:
 * - 'stream' style (the core API: `server.on('stream', …)`), where the user's own stream handler
 *   keeps answering ordinary requests;
 * - compatibility style (a `'request'` listener, as Express-on-http2 or Fastify use), where Node
 *   answers every CONNECT with 405 unless a `'connect'` listener takes it (nodejs/node#36977).
 * And what the attachment advertises: SETTINGS_ENABLE_CONNECT_PROTOCOL while attached, not after detach().
 */
import { createSecureServer, type Http2SecureServer, type Http2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { attachHttp2, connect, type WebSocketConnection } from 'rfc6455';
import { CLIENT_TLS, closeSession, exchange, openSession, TLS } from './helpers.js';

interface Running {
  server: Http2SecureServer;
  port: number;
  origin: string;
  close(): Promise<void>;
}

const running = new Set<Running>();

async function listen(server: Http2SecureServer): Promise<Running> {
  const sessions = new Set<Http2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const r: Running = {
    server,
    port,
    origin: `https://127.0.0.1:${port}`,
    close: async () => {
      running.delete(r);
      for (const s of sessions) s.destroy();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };
  running.add(r);
  return r;
}

afterEach(async () => {
  await Promise.all([...running].map((r) => r.close()));
});

/** Echo handler that records what carried each connection. */
function echoRecording(seen: string[]) {
  return async (conn: WebSocketConnection, req: { httpVersion: string; url?: string }): Promise<void> => {
    seen.push(`${conn.transport.kind} ${req.httpVersion} ${conn.path}`);
    for await (const m of conn) await conn.send(m);
  };
}

describe("attachHttp2 on a 'stream'-style server", () => {
  test('WebSockets and ordinary HTTP/2 requests share the server', async () => {
    const server = createSecureServer({ ...TLS });
    // The user's handler must leave extended CONNECT streams alone (they belong to the attachment).
    server.on('stream', (stream: ServerHttp2Stream, headers) => {
      if (headers[':method'] === 'CONNECT') return;
      stream.respond({ ':status': 200, 'content-type': 'text/plain' });
      stream.end(`user handler: ${String(headers[':path'])}`);
    });
    const seen: string[] = [];
    attachHttp2(server, echoRecording(seen));
    const { origin, port } = await listen(server);

    const session = await openSession(origin);
    try {
      expect(session.remoteSettings.enableConnectProtocol).toBe(true);
      const plain = await exchange(session, { ':path': '/hello' }, undefined, true);
      expect(plain.status).toBe(200);
      expect(String(plain.body)).toBe('user handler: /hello');

      const conn = await connect(`wss://127.0.0.1:${port}/ws/stream-style`, { tls: CLIENT_TLS, http2: session });
      await conn.send('via stream style');
      expect(await conn.recv()).toBe('via stream style');
      // Ordinary requests keep working on the same session while the WebSocket is open.
      const again = await exchange(session, { ':path': '/again' }, undefined, true);
      expect(String(again.body)).toBe('user handler: /again');
      await conn.close();
      expect(seen).toEqual(['http2 2.0 /ws/stream-style']);
    } finally {
      await closeSession(session);
    }
  });
});

describe("attachHttp2 on a compatibility-API server (a 'request' listener)", () => {
  test('without attachHttp2 Node answers the extended CONNECT 405 (the pitfall, nodejs/node#36977)', async () => {
    const server = createSecureServer({ ...TLS, settings: { enableConnectProtocol: true } }, (_req, res) => res.end('user'));
    const { origin } = await listen(server);
    const session = await openSession(origin);
    try {
      const out = await exchange(session, {
        ':method': 'CONNECT',
        ':protocol': 'websocket',
        ':scheme': 'https',
        ':path': '/ws',
        ':authority': origin.slice('https://'.length),
        'sec-websocket-version': '13',
      });
      expect(out.status).toBe(405);
    } finally {
      await closeSession(session);
    }
  });

  test('with attachHttp2 the CONNECT becomes a WebSocket and requests still reach the user handler', async () => {
    const server = createSecureServer({ ...TLS, allowHTTP1: true }, (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`compat handler: ${req.method} ${req.url} HTTP/${req.httpVersion}`);
    });
    const seen: string[] = [];
    attachHttp2(server, echoRecording(seen));
    const { origin, port } = await listen(server);
    const session = await openSession(origin);
    try {
      expect(session.remoteSettings.enableConnectProtocol).toBe(true);
      const conns = await Promise.all(
        ['/a', '/b'].map((p) => connect(`wss://127.0.0.1:${port}${p}`, { tls: CLIENT_TLS, http2: session, protocols: [] })),
      );
      const get = await exchange(session, { ':path': '/page?x=1' }, undefined, true);
      expect(get.status).toBe(200);
      expect(String(get.body)).toBe('compat handler: GET /page?x=1 HTTP/2.0');
      const post = await exchange(session, { ':method': 'POST', ':path': '/form' }, Buffer.from('body'), false);
      expect(String(post.body)).toBe('compat handler: POST /form HTTP/2.0');
      for (const [i, c] of conns.entries()) {
        await c.send(`n${i}`);
        expect(await c.recv()).toBe(`n${i}`);
      }
      await Promise.all(conns.map((c) => c.close()));
      expect(seen.sort()).toEqual(['http2 2.0 /a', 'http2 2.0 /b']);
    } finally {
      await closeSession(session);
    }
  }, 15_000);
});

describe('the request a handler gets, in both styles', () => {
  test('req.headers.host is the :authority, as over HTTP/1.1 (it was undefined through the compatibility API)', async () => {
    const hosts: Array<string | undefined> = [];
    const handler = async (conn: WebSocketConnection, req: { headers: Record<string, unknown> }): Promise<void> => {
      hosts.push(req.headers.host as string | undefined);
      await conn.close();
    };
    const streamStyle = createSecureServer({ ...TLS });
    streamStyle.on('stream', (stream: ServerHttp2Stream, headers) => {
      if (headers[':method'] === 'CONNECT') return;
      stream.respond({ ':status': 200 });
      stream.end();
    });
    attachHttp2(streamStyle, handler);
    const compat = createSecureServer({ ...TLS }, (_req, res) => res.end());
    attachHttp2(compat, handler);
    for (const server of [streamStyle, compat]) {
      const { port } = await listen(server);
      const conn = await connect(`wss://127.0.0.1:${port}/`, { tls: CLIENT_TLS, http2: true });
      expect(conn.transport.kind).toBe('http2');
      await conn.whenClosed;
      expect(hosts.pop()).toBe(`127.0.0.1:${port}`);
    }
  });
});

describe('the advertised setting', () => {
  test('attachHttp2 turns SETTINGS_ENABLE_CONNECT_PROTOCOL on, detach() turns it off for new sessions', async () => {
    const server = createSecureServer({ ...TLS });
    const { origin } = await listen(server);
    const before = await openSession(origin);
    expect(before.remoteSettings.enableConnectProtocol).toBe(false);
    await closeSession(before);

    const attachment = attachHttp2(server, () => undefined);
    const during = await openSession(origin);
    expect(during.remoteSettings.enableConnectProtocol).toBe(true);
    await closeSession(during);

    attachment.detach();
    const after = await openSession(origin);
    expect(after.remoteSettings.enableConnectProtocol).toBe(false);
    await closeSession(after);
  });
});
