/**
 * Security options: the Origin allow-list (cross-site WebSocket hijacking, RFC 6455 §10.2),
 * authentication before the 101, and failures that leak nothing on the wire.
 */
import { connect, HandshakeError } from 'rfc6455';
import { frame } from '../../packages/rfc6455/test/helpers/frames.js';
import { RawClient, upgradeRequest } from '../../packages/rfc6455/test/helpers/raw-client.js';
import { closeAll, exchange, startServer } from './helpers.js';

afterEach(closeAll);

async function refusal(url: string, options: Parameters<typeof connect>[1]): Promise<HandshakeError | undefined> {
  try {
    const conn = await connect(url, options);
    await conn.close();
    return undefined;
  } catch (error) {
    return error as HandshakeError;
  }
}

describe('Origin allow-list', () => {
  test('a list: listed origins get in; others, and requests without Origin, get 403 before any 101', async () => {
    let handled = 0;
    const server = await startServer({ origins: ['https://good.example'] }, async (conn) => {
      handled++;
      await conn.close();
    });
    expect(await refusal(server.url, { origin: 'https://good.example' })).toBeUndefined();
    for (const origin of ['https://evil.example', 'https://good.example.evil', 'http://good.example', 'null', undefined]) {
      const error = await refusal(server.url, { origin });
      expect(error).toBeInstanceOf(HandshakeError);
      expect(error?.status).toBe(403);
    }
    const raw = await exchange(server.port, upgradeRequest(server.port, { headers: ['Origin: https://evil.example'] }));
    expect(raw.response?.status).toBe(403);
    expect(raw.bytes.toString('latin1')).not.toContain(' 101 ');
    expect(handled).toBe(1);
  });

  test('a predicate sees the Origin and the request', async () => {
    const seen: Array<string | undefined> = [];
    const server = await startServer(
      {
        origins: (origin, req) => {
          seen.push(origin);
          return origin?.endsWith('.trusted.example') === true && req.url === '/ok';
        },
      },
      (conn) => void conn.close(),
    );
    expect(await refusal(server.url + 'ok', { origin: 'https://a.trusted.example' })).toBeUndefined();
    expect((await refusal(server.url + 'nope', { origin: 'https://a.trusted.example' }))?.status).toBe(403);
    expect((await refusal(server.url + 'ok', { origin: 'https://trusted.example.evil' }))?.status).toBe(403);
    expect(seen).toEqual(['https://a.trusted.example', 'https://a.trusted.example', 'https://trusted.example.evil']);
  });

  test('an async predicate (written by mistake: a promise is always truthy) refuses every upgrade with 500 and reports why; none gets in', async () => {
    const errors: unknown[] = [];
    let handled = 0;
    const server = await startServer(
      {
        origins: (async (origin: string | undefined) => origin === 'https://good.example') as unknown as (origin: string | undefined) => boolean,
        onError: (error) => void errors.push(error),
      },
      (conn) => {
        handled++;
        void conn.close();
      },
    );
    for (const origin of ['https://evil.example', 'https://good.example']) expect((await refusal(server.url, { origin }))?.status).toBe(500);
    expect(handled).toBe(0);
    expect(errors).toHaveLength(2);
    expect(String(errors[0])).toContain('origins() returned a promise');
  });
});

describe('authentication before the 101', () => {
  const TOKEN = 'Bearer s3cret';

  async function authServer() {
    const states: unknown[] = [];
    const server = await startServer<{ user: string }>(
      {
        beforeAccept: (req) => {
          if (req.headers.authorization !== TOKEN) {
            return { reject: { status: 401, headers: { 'WWW-Authenticate': 'Bearer' }, body: 'login first' } };
          }
          return { state: { user: 'alice' } };
        },
      },
      async (conn, _req, ctx) => {
        states.push(ctx.state);
        await conn.send(`hello ${ctx.state.user}`);
      },
    );
    return { server, states };
  }

  test('no or wrong credentials → 401 with the hook’s headers and body; the handler never runs', async () => {
    const { server, states } = await authServer();
    for (const headers of [{}, { Authorization: 'Bearer wrong' }]) {
      const error = await refusal(server.url, { headers });
      expect(error?.status).toBe(401);
      expect(error?.headers['www-authenticate']).toBe('Bearer');
      expect(error?.body?.toString()).toBe('login first');
    }
    const raw = await exchange(server.port, upgradeRequest(server.port));
    expect(raw.response?.status).toBe(401);
    expect(raw.bytes.toString('latin1')).not.toContain(' 101 ');
    expect(states).toHaveLength(0);
  });

  test('frames sent with a refused handshake are never processed', async () => {
    const { server, states } = await authServer();
    const raw = await exchange(server.port, Buffer.concat([Buffer.from(upgradeRequest(server.port)), frame({ opcode: 1, payload: 'sneaky', mask: true })]));
    expect(raw.response?.status).toBe(401);
    expect(raw.response?.body.toString()).toBe('login first');
    expect(states).toHaveLength(0);
  });

  test('the right credentials get in, with the hook’s state', async () => {
    const { server, states } = await authServer();
    const conn = await connect(server.url, { headers: { Authorization: TOKEN } });
    expect(await conn.recv()).toBe('hello alice');
    expect(states).toEqual([{ user: 'alice' }]);
    await conn.close();
  });
});

describe('failures leak nothing', () => {
  test('a beforeAccept hook that throws → 500 with a generic body; the error goes to onError', async () => {
    const errors: unknown[] = [];
    const server = await startServer(
      {
        onError: (e) => errors.push(e),
        beforeAccept: () => {
          throw new Error('connection string postgres://admin:pw@db');
        },
      },
      (conn) => void conn.close(),
    );
    const raw = await exchange(server.port, upgradeRequest(server.port));
    expect(raw.response?.status).toBe(500);
    expect(raw.bytes.toString('latin1')).not.toContain('postgres');
    expect(errors).toHaveLength(1);
  });

  test('a handler failure closes 1011 with an empty reason, whatever the error says', async () => {
    const server = await startServer({ onError: () => undefined }, async () => {
      const error = new Error('stack and secrets: /home/app/.env');
      (error as { code?: string }).code = 'EACCES';
      throw error;
    });
    const raw = await RawClient.connect(server.port);
    const close = await raw.readClose();
    expect(close?.code).toBe(1011);
    expect(close?.reason.length).toBe(0);
    raw.destroy();
  });
});

describe('per-IP connection limit (the docs/security.md recipe: beforeAccept + onConnection)', () => {
  test('a third connection from one address gets 429; a slot freed by a close is usable again', async () => {
    const perIp = new Map<string, number>();
    const LIMIT = 2;
    const server = await startServer(
      {
        beforeAccept: (req) => {
          const ip = req.socket.remoteAddress ?? '';
          if ((perIp.get(ip) ?? 0) >= LIMIT) return { reject: { status: 429, headers: { 'Retry-After': '1' }, body: 'too many connections from your address' } };
          perIp.set(ip, (perIp.get(ip) ?? 0) + 1);
          return undefined;
        },
        onConnection: (conn) => {
          const ip = conn.remoteAddress ?? '';
          void conn.whenClosed.then(() => perIp.set(ip, (perIp.get(ip) ?? 1) - 1));
        },
      },
      async (conn) => {
        for await (const m of conn) await conn.send(m);
      },
    );
    const a = await connect(server.url);
    const b = await connect(server.url);
    expect((await refusal(server.url, {}))?.status).toBe(429);
    await a.close();
    for (let i = 0; i < 100 && (perIp.get('127.0.0.1') ?? 0) >= LIMIT; i++) await new Promise((r) => setTimeout(r, 10));
    const c = await connect(server.url);
    await c.send('in');
    expect(await c.recv()).toBe('in');
    await Promise.all([b.close(), c.close()]);
  });
});
