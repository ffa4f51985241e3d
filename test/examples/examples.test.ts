/**
 * The examples as real processes on real sockets: each server is started with --port 0 and
 * driven by our client (or the example clients), and the message flows of Racket's examples
 * (inventory §4) are asserted.
 */
import { connect, EOF, HandshakeError, serve, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { killAll, spawnNode, startExample } from './helpers.js';

afterEach(killAll);

async function recvText(conn: WebSocketConnection): Promise<string> {
  const m = await conn.recv();
  if (m === EOF) throw new Error(`closed: ${conn.closeStatus} ${conn.closeReason}`);
  return String(m);
}

async function expectRejected(url: string, protocols: string[], status: number): Promise<void> {
  const error = await connect(url, { protocols }).then(
    (c) => {
      c.terminate();
      return undefined;
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(HandshakeError);
  expect((error as HandshakeError).status).toBe(status);
}

describe('test-server', () => {
  test('server answers each message, ticks every second, says Goodbye! and closes with 1000', async () => {
    const { url } = await startExample('test-server.ts');
    const conn = await connect(new URL('/any/path', url));
    await conn.send('Hi there');
    expect(await recvText(conn)).toBe('You said: "Hi there"');
    expect(await recvText(conn)).toBe('Waited another second');
    await conn.send('quote " and \\ backslash');
    expect(await recvText(conn)).toBe('You said: "quote \\" and \\\\ backslash"');
    await conn.send('goodbye');
    expect(await recvText(conn)).toBe('Goodbye!');
    expect(await conn.recv()).toBe(EOF);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1000);
  }, 20_000);

  test('server closes an idle connection after --timeout seconds with 1001', async () => {
    const { url } = await startExample('test-server.ts', ['--timeout', '1']);
    const conn = await connect(url);
    const messages: string[] = [];
    for await (const m of conn) messages.push(String(m));
    expect(conn.closeStatus).toBe(1001);
    expect(conn.closeReason).toBe('idle timeout');
    expect(messages.every((m) => m === 'Waited another second')).toBe(true);
  }, 20_000);

  test('server stops when enter is hit', async () => {
    const { child } = await startExample('test-server.ts');
    child.proc.stdin.write('\n');
    expect(await child.exited).toBe(0);
  }, 20_000);
});

describe('test-service-mapper', () => {
  test('/test with subprotocol "subprotocol" gets the subprotocol handler', async () => {
    const { url } = await startExample('test-service-mapper.ts');
    const conn = await connect(new URL('/test', url), { protocols: ['subprotocol'] });
    expect(conn.protocol).toBe('subprotocol');
    expect(await recvText(conn)).toBe('This is the subprotocol handler');
    await conn.close();
    expect(conn.closeStatus).toBe(1000);
  }, 20_000);

  test('/test without a subprotocol runs the test-server loop', async () => {
    const { url } = await startExample('test-service-mapper.ts');
    const conn = await connect(new URL('/test?foo=bar', url));
    expect(conn.protocol).toBe('');
    await conn.send('Hi there');
    expect(await recvText(conn)).toBe('You said: "Hi there"');
    await conn.send('goodbye');
    expect(await recvText(conn)).toBe('Goodbye!');
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1000);
  }, 20_000);

  test('other paths get 404 and other subprotocols 400', async () => {
    const { url } = await startExample('test-service-mapper.ts');
    await expectRejected(new URL('/other', url).href, [], 404);
    await expectRejected(new URL('/test', url).href, ['chat'], 400);
  }, 20_000);
});

describe('client', () => {
  test.each(['test-server.ts', 'test-service-mapper.ts'])('client prints the Racket flow against %s', async (server) => {
    const { url } = await startExample(server);
    const client = spawnNode(['examples/client.ts', '--url', new URL('/test?foo=bar', url).href]);
    expect(await client.exited).toBe(0);
    // One run per protocol variant (rfc6455, and hybi00 once wired), each the Racket flow.
    const runs = client.stdout().split(/^Connecting to .* with protocol variant /m).slice(1);
    const variants = runs.map((run) => run.slice(0, run.indexOf('\n')));
    expect(variants[0]).toBe('rfc6455');
    for (const [i, run] of runs.entries()) {
      const got = run.split('\n').filter((l) => l.startsWith('Got message: '));
      expect(got).toEqual([
        `Got message: You said: "Hello from Node WS client, protocol variant ${variants[i]}"`,
        ...Array<string>(4).fill('Got message: Waited another second'),
        'Got message: Goodbye!',
      ]);
      // hybi-00 close frames carry no status code (1005).
      expect(run).toContain(variants[i] === 'hybi00' ? 'Closed: 1005' : 'Closed: 1000');
    }
  }, 30_000);
});

describe('time-server and time-client', () => {
  test('time-server sends increasing times one second apart and ignores messages', async () => {
    const { url } = await startExample('time-server.ts');
    const conn = await connect(url);
    await conn.send('hello');
    const a = Number(await recvText(conn));
    const b = Number(await recvText(conn));
    expect(Number.isInteger(a)).toBe(true);
    expect(b - a).toBe(1000);
    await conn.close();
    expect(conn.closeStatus).toBe(1000);
  }, 20_000);

  test('time-client prints Got message lines and closes on an empty line', async () => {
    const { url } = await startExample('time-server.ts');
    const client = spawnNode(['examples/time-client.ts', '--server', url.href]);
    await client.waitFor(/Got message: \d+\n/);
    client.proc.stdin.write('\n');
    expect(await client.exited).toBe(0);
    expect(client.stdout()).toMatch(/Closed: 1000/);
  }, 20_000);
});

describe('cat', () => {
  let server: WebSocketServer;
  const seen: Array<{ messages: string[]; code: number; reason: string }> = [];
  beforeAll(async () => {
    server = await serve({}, async (conn) => {
      const record = { messages: [] as string[], code: 0, reason: '' };
      seen.push(record);
      // Echo from a listener: each echo is queued as its message is parsed, so a close frame
      // right behind the lines is answered after their echoes.
      conn.on('message', (m) => {
        record.messages.push(String(m));
        conn.send(`echo: ${String(m)}`).catch(() => undefined);
      });
      await conn.whenClosed;
      record.code = conn.closeStatus ?? 0;
      record.reason = conn.closeReason ?? '';
    });
  });
  afterAll(() => server.close());

  test('cat sends stdin lines, prints replies, and closes with --status and --reason at EOF', async () => {
    const cat = spawnNode(['examples/cat.ts', '--server', server.url, '--status', '4001', '--reason', 'done here']);
    cat.proc.stdin.end('one\ntwo\n');
    await cat.waitFor(/echo: two\n/);
    expect(await cat.exited).toBe(0);
    expect(cat.stdout()).toBe('echo: one\necho: two\n');
    const record = seen.at(-1)!;
    expect(record.messages).toEqual(['one', 'two']);
    expect(record.code).toBe(4001);
    expect(record.reason).toBe('done here');
  }, 20_000);
});

describe('command lines', () => {
  test.each([
    ['test-server.ts', ['--port', ''], /invalid port: $/m],
    ['echo-server.ts', ['--port', '1e3'], /invalid port: 1e3/],
    ['fastify.ts', ['--port', '0x50'], /invalid port: 0x50/],
    ['express.ts', ['--nope'], /Unknown option '--nope'/],
    // (Options are checked by serve() now: Number('abc') became a RangeError's stack trace.)
    ['test-server.ts', ['--port', '0', '--timeout', 'abc'], /invalid --timeout: abc/],
    ['echo-server.ts', ['--port', '0', '--max-message-size', '0'], /invalid --max-message-size: 0/],
  ])('%s %j exits 2 with a usage message, no stack trace (an empty --port listened on a random port; 0x50 on port 80)', async (file, args, message) => {
    const child = spawnNode([`examples/${file}`, ...args]);
    expect(await child.exited).toBe(2);
    expect(child.stderr()).toMatch(message);
    expect(child.stderr()).not.toMatch(/\n\s+at /);
    expect(child.stdout()).not.toMatch(/Listening|listening/);
  }, 20_000);
});
