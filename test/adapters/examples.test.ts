/**
 * The Fastify, Express and Koa examples as real processes: each serves the page at /, Racket's
 * test-service-mapper at /test and the bearer-guarded echo at /private.
 */
import { connect, EOF, HandshakeError, type WebSocketConnection } from 'rfc6455';
import { killAll, startExample } from '../examples/helpers.js';

afterAll(killAll);

/** The next message that is not the loop's once-a-second tick. */
async function nextReply(conn: WebSocketConnection): Promise<string | typeof EOF> {
  for (;;) {
    const message = await conn.recv();
    if (message === EOF) return EOF;
    if (message.toString() !== 'Waited another second') return message.toString();
  }
}

describe.each(['fastify', 'express', 'koa'])('examples/%s.ts', (name) => {
  let base: URL;
  let ws: string;
  beforeAll(async () => {
    const { url } = await startExample(`${name}.ts`);
    base = url;
    ws = `ws://${url.host}`;
  }, 30_000);

  it('serves an HTML page at /', async () => {
    const response = await fetch(new URL('/', base));
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/html');
    expect(await response.text()).toContain("'/test'");
  });

  it('/test with subprotocol "subprotocol" answers from the subprotocol handler', async () => {
    const conn = await connect(`${ws}/test`, { protocols: ['subprotocol'] });
    expect(conn.protocol).toBe('subprotocol');
    expect(await conn.recv()).toBe('This is the subprotocol handler');
    await conn.close();
  });

  it('/test without a subprotocol runs the test-server loop until goodbye, then closes with 1000', async () => {
    const conn = await connect(`${ws}/test?foo=bar`);
    await conn.send('Hi there');
    expect(await nextReply(conn)).toBe('You said: "Hi there"');
    await conn.send('say "quoted"');
    expect(await nextReply(conn)).toBe('You said: "say \\"quoted\\""');
    await conn.send('goodbye');
    expect(await nextReply(conn)).toBe('Goodbye!');
    expect(await conn.recv()).toBe(EOF);
    expect(conn.closeStatus).toBe(1000);
  });

  it('/test sends "Waited another second" while the client is silent', async () => {
    const conn = await connect(`${ws}/test`);
    expect(await conn.recv()).toBe('Waited another second');
    await conn.close();
  });

  it('/test refuses an unknown subprotocol with 400', async () => {
    const error = await connect(`${ws}/test`, { protocols: ['other'] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HandshakeError);
    expect((error as HandshakeError).status).toBe(400);
  });

  it('/private refuses a request without the token with 401 and WWW-Authenticate: Bearer', async () => {
    for (const headers of [{}, { Authorization: 'Bearer wrong' }]) {
      const error = await connect(`${ws}/private`, { headers }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(HandshakeError);
      expect((error as HandshakeError).status).toBe(401);
      expect((error as HandshakeError).headers['www-authenticate']).toBe('Bearer');
    }
  });

  it('/private echoes every message for Authorization: Bearer letmein', async () => {
    const conn = await connect(`${ws}/private`, { headers: { Authorization: 'Bearer letmein' } });
    await conn.send('one');
    expect(await conn.recv()).toBe('one');
    await conn.send(Buffer.from([0, 255]));
    expect(await conn.recv()).toEqual(Buffer.from([0, 255]));
    await conn.close();
  });
});
