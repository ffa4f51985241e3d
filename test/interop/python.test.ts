/**
 * Interop with an independent implementation: Python's `websockets` (Debian python3-websockets,
 * run as /usr/bin/python3) as a client of serve() and as a server for connect(): text, binary,
 * fragmented and large messages, pings both ways, close codes and reasons, permessage-deflate.
 * The python side is test/interop/py/*.py, speaking JSON lines on stdout.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { connect, EOF, serve, type WebSocketConnection, type WebSocketServer } from 'rfc6455';

const PYTHON = '/usr/bin/python3';
const PY_DIR = join(__dirname, 'py');

test('python3-websockets is installed (apt-get install python3-websockets; .ci/run does it)', () => {
  expect(spawnSync(PYTHON, ['-c', 'import websockets'], { stdio: 'ignore' }).status).toBe(0);
});

const children = new Set<ChildProcessWithoutNullStreams>();
afterEach(() => {
  for (const c of children) c.kill('SIGKILL');
  children.clear();
});

type Line = Record<string, unknown>;

/** Spawns a python script; `lines` yields its JSON stdout lines; the child is killed after each test. */
function python(script: string, args: string[]): { child: ChildProcessWithoutNullStreams; next: () => Promise<Line>; all: () => Promise<Line[]> } {
  const child = spawn(PYTHON, [join(PY_DIR, script), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const queue: Line[] = [];
  const waiters: Array<(l: Line) => void> = [];
  let ended = false;
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const rl = createInterface({ input: child.stdout });
  rl.on('line', (text) => {
    const line = JSON.parse(text) as Line;
    const w = waiters.shift();
    if (w) w(line);
    else queue.push(line);
  });
  rl.on('close', () => {
    ended = true;
    for (const w of waiters.splice(0)) w({ error: `python exited: ${stderr}` });
  });
  return {
    child,
    next: () => {
      const l = queue.shift();
      if (l) return Promise.resolve(l);
      if (ended) return Promise.resolve({ error: `python exited: ${stderr}` });
      return new Promise((r) => waiters.push(r));
    },
    all: async () => {
      await exited;
      if (child.exitCode !== 0) throw new Error(`python failed (${child.exitCode}): ${stderr}`);
      return queue.splice(0);
    },
  };
}

describe('python websockets client → our server', () => {
  let server: WebSocketServer;
  let conns: WebSocketConnection[] = [];
  beforeAll(async () => {
    server = await serve({ port: 0, protocols: ['chat'] }, async (conn) => {
      conns.push(conn);
      for await (const m of conn) {
        if (m === 'ping me') await conn.ping('from-node');
        await conn.send(m);
      }
    });
  });
  afterAll(() => server.close());
  beforeEach(() => {
    conns = [];
  });

  test.each(['none', 'deflate'])('the whole scenario, compression %s', async (compression) => {
    const py = python('client.py', [server.url, compression]);
    const lines = await py.all();
    const step = (name: string): Line => lines.find((l) => l.step === name) ?? {};
    expect(step('open').subprotocol).toBe('chat');
    if (compression === 'deflate') expect(step('open').extensions).toContain('permessage-deflate');
    else expect(step('open').extensions).toBe('');
    expect(step('text').echo).toBe('héllo ✓');
    expect(step('binary')).toMatchObject({ ok: true, length: 4096 });
    expect(step('fragmented').echo).toBe('fragmented € message');
    expect(step('big').ok).toBe(true);
    expect(step('ping').ok).toBe(true);
    expect(step('pinged').echo).toBe('ping me');
    expect(step('closed')).toMatchObject({ code: 4001, reason: 'bye ✓' });
    const conn = conns[0]!;
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(4001);
    expect(conn.closeReason).toBe('bye ✓');
    expect(conn.protocol).toBe('chat');
    expect(conn.extensions.includes('permessage-deflate')).toBe(compression === 'deflate');
  });
});

describe('our client → python websockets server', () => {
  async function pyServer(compression: string) {
    const py = python('server.py', [compression]);
    const listening = await py.next();
    expect(listening.event).toBe('listening');
    return { py, url: `ws://127.0.0.1:${String(listening.port)}/` };
  }

  test.each([
    ['none', false],
    ['deflate', true],
  ] as const)('text, binary, streamed fragments, pings, server close code (compression %s)', async (compression, deflate) => {
    const { py, url } = await pyServer(compression);
    const conn = await connect(url, { perMessageDeflate: deflate });
    expect(conn.extensions.includes('permessage-deflate')).toBe(deflate);
    expect((await py.next()).event).toBe('open');

    await conn.send('grüße ✓');
    expect(await conn.recv()).toBe('grüße ✓');
    const bytes = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 13) & 0xff));
    await conn.send(bytes);
    const echoed = await conn.recv();
    expect(Buffer.isBuffer(echoed) && echoed.equals(bytes)).toBe(true);

    // Our fragments (sendStream) reassembled by python and echoed whole.
    await conn.sendStream(['part one, ', 'part two, ', 'part three'], { binary: false, fragmentSize: 4 });
    expect(await conn.recv()).toBe('part one, part two, part three');

    // Python's fragments reassembled by us.
    await conn.send('fragments');
    expect(await conn.recv()).toBe('one two three');

    const rtt = await conn.ping('node-ping');
    expect(rtt).toBeGreaterThanOrEqual(0);
    let pinged = 0;
    conn.on('ping', () => pinged++);
    await conn.send('ping-you');
    expect(await conn.recv()).toBe('pong received');
    expect(pinged).toBe(1);

    const big = 'y'.repeat(500_000);
    await conn.send(big);
    expect(await conn.recv()).toBe(big);

    await conn.send('close-me');
    expect(await conn.recv()).toBe(EOF);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(4002);
    expect(conn.closeReason).toBe('py bye');
    expect(await py.next()).toMatchObject({ event: 'closed', code: 4002, reason: 'py bye' });
    py.child.stdin.end();
  });

  test('our close code and reason reach python', async () => {
    const { py, url } = await pyServer('none');
    const conn = await connect(url);
    expect((await py.next()).event).toBe('open');
    await conn.close(4003, 'node says bye ✓');
    expect(conn.closeStatus).toBe(4003);
    expect(await py.next()).toMatchObject({ event: 'closed', code: 4003, reason: 'node says bye ✓' });
    py.child.stdin.end();
  });
});
