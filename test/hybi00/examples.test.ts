/**
 * The example servers accept a hybi-00 (draft-76) client: each is started as a real process with
 * `--port 0`, and our client speaks the draft to it with the message flow of Racket's client.rkt
 * (`You said: "…"`, "Waited another second"s, "goodbye" → "Goodbye!"). examples/client.ts runs
 * that flow for 'rfc6455' and then 'hybi00', as client.rkt does.
 */
import { connect, EOF, HandshakeError, type ConnectOptions, type WebSocketConnection } from 'rfc6455';
import { killAll, spawnNode, startExample } from '../examples/helpers.js';

afterEach(killAll);

function hybi00(url: URL, options: ConnectOptions = {}): Promise<WebSocketConnection> {
  return connect(url, { variant: 'hybi00', ...options });
}

async function recvText(conn: WebSocketConnection): Promise<string> {
  const m = await conn.recv();
  if (m === EOF) throw new Error(`closed: ${conn.closeStatus} ${conn.closeReason}`);
  return String(m);
}

/** Racket's client.rkt flow on one connection; returns the six messages received. */
async function racketFlow(conn: WebSocketConnection): Promise<string[]> {
  const got: string[] = [];
  await conn.send('Hello from Node WS client, protocol variant hybi00');
  for (let i = 0; i < 5; i++) got.push(await recvText(conn));
  await conn.send('goodbye');
  got.push(await recvText(conn));
  return got;
}

const RACKET_FLOW = [
  'You said: "Hello from Node WS client, protocol variant hybi00"',
  ...Array<string>(4).fill('Waited another second'),
  'Goodbye!',
];

describe('test-server with a hybi-00 client', () => {
  test('server runs the Racket client flow, then closes (the client sees 1005: hybi-00 has no status)', async () => {
    const { url } = await startExample('test-server.ts');
    const conn = await hybi00(new URL('/test?foo=bar', url));
    expect(conn.variant).toBe('hybi00');
    expect(conn.headers['sec-websocket-location']).toBe(new URL('/test?foo=bar', url).href);
    expect(await racketFlow(conn)).toEqual(RACKET_FLOW);
    expect(await conn.recv()).toBe(EOF);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1005);
  }, 30_000);

  test('server quotes UTF-8 text sent over hybi-00', async () => {
    const { url } = await startExample('test-server.ts');
    const conn = await hybi00(url);
    await conn.send('héllo "wörld" ✓ 😀');
    expect(await recvText(conn)).toBe('You said: "héllo \\"wörld\\" ✓ 😀"');
    await conn.close();
    expect(conn.closeStatus).toBe(1005);
  }, 30_000);
});

describe('test-service-mapper with a hybi-00 client', () => {
  test('/test?foo=bar without a subprotocol runs the Racket client flow', async () => {
    const { url } = await startExample('test-service-mapper.ts');
    const conn = await hybi00(new URL('/test?foo=bar', url));
    expect(conn.protocol).toBe('');
    expect(await racketFlow(conn)).toEqual(RACKET_FLOW);
    expect(await conn.recv()).toBe(EOF);
    expect(conn.closeStatus).toBe(1005);
  }, 30_000);

  test('/test with Sec-WebSocket-Protocol: subprotocol gets the subprotocol handler', async () => {
    const { url } = await startExample('test-service-mapper.ts');
    const conn = await hybi00(new URL('/test', url), { protocols: 'subprotocol' });
    expect(conn.protocol).toBe('subprotocol');
    expect(await recvText(conn)).toBe('This is the subprotocol handler');
    await conn.close();
    expect(conn.closeStatus).toBe(1005);
  }, 30_000);

  test('an unknown path is 404 and an unknown subprotocol 400, as for RFC 6455 clients', async () => {
    const { url } = await startExample('test-service-mapper.ts');
    for (const [path, protocols, status] of [
      ['/nowhere', [], 404],
      ['/test', ['other'], 400],
    ] as const) {
      const error = await hybi00(new URL(path, url), { protocols: [...protocols] }).then(
        (c) => {
          c.terminate();
          return undefined;
        },
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(HandshakeError);
      expect((error as HandshakeError).status).toBe(status);
    }
  }, 30_000);
});

describe('demo with a hybi-00 client', () => {
  test('ws://…/test answers and says Goodbye!', async () => {
    const { url } = await startExample('demo.ts');
    const conn = await hybi00(url);
    await conn.send('Hi there');
    expect(await recvText(conn)).toBe('You said: "Hi there"');
    await conn.send('goodbye');
    expect(await recvText(conn)).toBe('Goodbye!');
    expect(await conn.recv()).toBe(EOF);
  }, 30_000);
});

describe('examples/client.ts', () => {
  test.each(['test-server.ts', 'test-service-mapper.ts'])('client runs the flow with rfc6455 and then hybi00 against %s', async (server) => {
    const { url } = await startExample(server);
    const client = spawnNode(['examples/client.ts', '--url', new URL('/test?foo=bar', url).href]);
    expect(await client.exited).toBe(0);
    const lines = client.stdout().split('\n');
    const flow = (variant: string): string[] => [
      `Got message: You said: "Hello from Node WS client, protocol variant ${variant}"`,
      ...Array<string>(4).fill('Got message: Waited another second'),
      'Got message: Goodbye!',
    ];
    expect(lines.filter((l) => l.startsWith('Got message: '))).toEqual([...flow('rfc6455'), ...flow('hybi00')]);
    expect(lines.filter((l) => l.startsWith('Connecting to ')).map((l) => l.split(' ').pop())).toEqual(['rfc6455', 'hybi00']);
    expect(lines.filter((l) => l.startsWith('Closed: '))).toEqual(['Closed: 1000', 'Closed: 1005']);
  }, 40_000);
});
