/**
 * The built `rfc6455` command (packages/rfc6455/dist/cli.js) as a real process: usage and exit
 * codes, `serve --echo` and `--broadcast`, and `connect` fed from a pipe (the non-interactive mode)
 * or typed at a real pseudo-terminal (test/cli/pty-run.py, with /usr/bin/python3) against it and
 * against in-test servers that check headers, subprotocols and close codes.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { connect, serve, type WebSocketServer } from 'rfc6455';
import { killAll, ROOT, spawnNode, type Child } from '../examples/helpers.js';
import { until } from '../../packages/rfc6455/test/helpers/wait.js';

const CLI = resolve(ROOT, 'packages/rfc6455/dist/cli.js');
const SRC = resolve(ROOT, 'packages/rfc6455/src/cli.ts');

beforeAll(() => {
  // Build the package if dist/cli.js is missing or older than its source (npm test builds first).
  if (!existsSync(CLI) || statSync(CLI).mtimeMs < statSync(SRC).mtimeMs) {
    execFileSync(process.execPath, [resolve(ROOT, 'node_modules/typescript/bin/tsc'), '-b', 'packages/rfc6455'], { cwd: ROOT, stdio: 'inherit' });
  }
}, 120_000);
afterEach(killAll);

function cli(args: readonly string[]): Child {
  return spawnNode([CLI, ...args], { tsx: false });
}

/** Runs `rfc6455 connect URL …` with `input` piped to stdin; resolves with its exit code and output. */
async function connectWith(url: string, input: string, args: readonly string[] = []): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = cli(['connect', url, ...args]);
  child.proc.stdin.end(input);
  const code = await child.exited;
  return { code, stdout: child.stdout(), stderr: child.stderr() };
}

describe('usage', () => {
  test('npx rfc6455 in this repository: npm links the bin (bin/rfc6455.js, in the repository: dist/cli.js did not exist at install time in a fresh clone, so there was no link) and it runs the built command', () => {
    expect(statSync(resolve(ROOT, 'packages/rfc6455/bin/rfc6455.js')).mode & 0o111).not.toBe(0);
    const out = execFileSync(resolve(ROOT, 'node_modules/.bin/rfc6455'), ['--help'], { encoding: 'utf8' });
    expect(out).toMatch(/connect URL/);
  });

  test('--help prints the commands and exit codes and exits 0', async () => {
    const child = cli(['--help']);
    expect(await child.exited).toBe(0);
    expect(child.stdout()).toMatch(/connect URL/);
    expect(child.stdout()).toMatch(/2 +usage error/);
  });

  test.each([['connect'], ['serve']])('%s --help prints its own help and exits 0', async (command) => {
    const child = cli([command, '--help']);
    expect(await child.exited).toBe(0);
    expect(child.stdout()).toContain(`Usage: rfc6455 ${command}`);
  });

  test.each([
    [[] as string[]],
    [['frobnicate']],
    [['connect']],
    [['connect', 'ws://127.0.0.1:1/', '--bogus']],
    [['connect', 'http://127.0.0.1:1/']],
    // RFC 6455 §3: no fragment (connect() throws a SyntaxError before connecting).
    [['connect', 'ws://127.0.0.1:1/#frag']],
    [['connect', 'ws://127.0.0.1:1/#']],
    [['connect', 'ws://127.0.0.1:1/', '--header', 'no colon']],
    // Values connect() refuses to send (TypeError) are usage errors too, found before connecting.
    [['connect', 'ws://127.0.0.1:1/', '--header', 'Bad Name: x']],
    [['connect', 'ws://127.0.0.1:1/', '--protocol', 'a b']],
    [['serve', '--port', 'eighty']],
    [['serve', '--port', '']],
    [['serve', '--port', '0x50']],
    // A subprotocol no client can offer (not an HTTP token; not a list either).
    [['serve', '--port', '0', '--protocol', 'chat.v1,chat.v2']],
    // --unix listens instead of a port and host (serve() refuses both): neither is dropped silently.
    [['serve', '--unix', '/tmp/rfc6455-cli-never.sock', '--port', '9000']],
    [['serve', '--unix', '/tmp/rfc6455-cli-never.sock', '--host', '0.0.0.0']],
    // --wait: a plain number of ms setTimeout() can wait (Number() read '' as 0; over 2^31-1 ms
    // setTimeout() waited 1 ms, with a warning).
    [['connect', 'ws://127.0.0.1:1/', '--wait', '']],
    [['connect', 'ws://127.0.0.1:1/', '--wait', '1e3']],
    [['connect', 'ws://127.0.0.1:1/', '--wait', '9999999999']],
    // An unknown command after help, as without it.
    [['help', 'bogus']],
    [['serve', '--unix', '']],
  ])('usage error %j exits 2', async (args) => {
    const child = cli(args);
    expect(await child.exited).toBe(2);
    expect(child.stderr()).not.toBe('');
  });
});

describe('serve --echo with connect from a pipe', () => {
  let server: Child;
  let url: string;
  beforeEach(async () => {
    server = cli(['serve', '--port', '0', '--echo']);
    [url] = (await server.waitFor(/ws:\/\/\S+/)) as unknown as [string];
  });

  test('connect sends each line, prints the echoes with < and exits 0 after a normal close', async () => {
    const result = await connectWith(url, 'hello\nwörld ✓\n//slash\n');
    expect(result.code).toBe(0);
    const received = result.stdout.split('\n').filter((l) => l.startsWith('< '));
    expect(received).toEqual(['< hello', '< wörld ✓', '< /slash']);
    expect(result.stdout).toContain('> hello\n');
    expect(result.stderr).toContain('closed: 1000');
    await server.waitFor(/\[1\] closed 1000/);
    expect(server.stdout()).toContain('[1] < wörld ✓\n[1] > wörld ✓\n');
  }, 20_000);

  test('serve logs a message and a close reason with line breaks and controls as one line each, escaped', async () => {
    const client = await connect(url);
    await client.send(CONTROLS);
    expect(await client.recv()).toBe(CONTROLS); // the echo itself is unchanged
    await client.close(4000, 'two\nlines');
    await server.waitFor(/\[1\] closed 4000/);
    const lines = server.stdout().split('\n');
    expect(lines).toContain(`[1] < ${CONTROLS_SHOWN}`);
    expect(lines).toContain(`[1] > ${CONTROLS_SHOWN}`);
    expect(lines).toContain('[1] closed 4000 two\\nlines');
  }, 20_000);

  test('a password in the URL is not printed (connected to ws://user:***@…)', async () => {
    const result = await connectWith(url.replace('ws://', 'ws://alice:s3cret@'), 'hi\n');
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/^connected to ws:\/\/alice:\*\*\*@127\.0\.0\.1:\d+\//m);
    expect(result.stdout + result.stderr).not.toContain('s3cret');
  }, 20_000);

  test('/ping prints a pong and /close sends the code and reason', async () => {
    const result = await connectWith(url, '/ping hi\n/close 4002 all done\n');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/< pong \(\d+(\.\d+)? ms\)/);
    expect(result.stderr).toContain('closed: 4002 all done');
    await server.waitFor(/\[1\] closed 4002 all done/);
  }, 20_000);

  test('/close with a code that may not be sent is reported and the connection stays open', async () => {
    const result = await connectWith(url, '/close 1005\n/close abc\nstill here\n');
    expect(result.stderr).toContain('close code 1005 may not be sent');
    expect(result.stderr).toContain('close code NaN may not be sent');
    expect(result.stdout.split('\n').filter((l) => l.startsWith('< '))).toEqual(['< still here']);
    expect(result.stderr).toContain('closed: 1000');
    expect(result.code).toBe(0);
    await server.waitFor(/\[1\] closed 1000/);
  }, 20_000);

  test('serve exits 0 on SIGTERM', async () => {
    server.proc.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  });
});

describe('connect on a terminal (a real pseudo-terminal)', () => {
  // The interactive mode as a user at a terminal meets it: a prompt, each typed line sent, what
  // comes back printed above the prompt, /ping, Ctrl-D closing with 1000 and exit 0.
  test('typed lines are sent and the echo printed, /ping prints the round trip, Ctrl-D closes with 1000', async () => {
    const seen: Array<string | number> = [];
    const server = await serve({ port: 0 }, async (conn) => {
      for await (const message of conn) {
        seen.push(message as string);
        await conn.send(message);
      }
      seen.push(conn.closeStatus ?? -1);
    });
    try {
      const screen = await new Promise<string>((done, fail) =>
        execFile('/usr/bin/python3', [
        resolve(ROOT, 'test/cli/pty-run.py'),
        process.execPath, CLI, 'connect', `ws://127.0.0.1:${server.port}/`,
        '--',
        'hello there\\r', '< hello there',
        '/ping abc\\r', '< pong (',
        '\\x04', 'closed: 1000',
        ], { timeout: 25_000, encoding: 'utf8' }, (error, stdout) => (error ? fail(error) : done(stdout))),
      );
      expect(screen).toMatch(/\nEXIT 0\n$/);
      expect(screen).toMatch(/^connected to ws:\/\/127\.0\.0\.1:\d+\//);
      expect(screen).toContain('> ');
      expect(screen).toMatch(/< hello there\r?\n/);
      expect(screen).toMatch(/< pong \(\d+(\.\d)? ms\)/);
      expect(screen).toContain('closed: 1000');
      await until(() => seen.length === 2, 'the server to see the message and the close');
      expect(seen).toEqual(['hello there', 1000]);
    } finally {
      await server.close();
    }
  }, 30_000);
});

describe('serve --unix and connect ws+unix:', () => {
  test('a server on a Unix domain socket: connect reaches it by its ws+unix: URL, the echo comes back', async () => {
    const { mkdtempSync, rmSync, existsSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(resolve(tmpdir(), 'rfc6455-cli-'));
    const socket = resolve(dir, 'cli.sock');
    const server = cli(['serve', '--unix', socket, '--echo']);
    try {
      const [url] = (await server.waitFor(/ws\+unix:\/\/\S+/)) as unknown as [string];
      expect(url).toBe(`ws+unix://${socket}:/`);
      const result = await connectWith(`ws+unix://${socket}:/room`, 'through the socket\n');
      expect(result.code).toBe(0);
      expect(result.stdout).toContain('< through the socket');
      await server.waitFor(/\[1\] open \/room/);
      server.proc.kill('SIGTERM');
      expect(await server.exited).toBe(0);
      expect(existsSync(socket)).toBe(false);
    } finally {
      server.proc.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  }, 20_000);
});

describe('serve --broadcast', () => {
  test('relays every message to every other open connection, text as text and binary as binary', async () => {
    const server = cli(['serve', '--port', '0', '--broadcast']);
    const [url] = (await server.waitFor(/ws:\/\/\S+/)) as unknown as [string];
    expect(server.stdout()).toContain('(broadcast)');
    const peers = await Promise.all([connect(url), connect(url), connect(url)]);
    const got: Array<Array<string | Buffer>> = peers.map(() => []);
    peers.forEach((p, i) => p.on('message', (m) => got[i]!.push(m)));
    await server.waitFor(/\[3\] open/);
    await peers[0]!.send('hi all ✓');
    await server.waitFor(/\[1\] >> 2 connection\(s\)/);
    await peers[2]!.send(Buffer.from([1, 2, 3]));
    await server.waitFor(/\[3\] >> 2 connection\(s\)/);
    for (let i = 0; i < 200 && !(got[1]!.length === 2 && got[0]!.length === 1 && got[2]!.length === 1); i++) await new Promise((r) => setTimeout(r, 10));
    expect(got[0]).toEqual([Buffer.from([1, 2, 3])]);
    expect(got[1]).toEqual(['hi all ✓', Buffer.from([1, 2, 3])]);
    expect(got[2]).toEqual(['hi all ✓']);
    await Promise.all(peers.map((p) => p.close()));
    server.proc.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  }, 20_000);
});

describe('quiet connections stay open (the clock of the CLI process run fast by test/cli/fast-clock.cjs)', () => {
  const FAST_CLOCK = resolve(ROOT, 'test/cli/fast-clock.cjs');
  /** Long enough for the fast clock to pass the library's 300 s default idle timeout several times. */
  const quiet = (): Promise<void> => new Promise((r) => setTimeout(r, 1500));

  test('connect: a quiet session is not closed with 1001 "idle timeout" (connect() defaults to 300 s)', async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const closes: Array<number | undefined> = [];
    const server = await serve({ idleTimeout: 0 }, async (conn) => {
      await Promise.race([released, conn.whenClosed]);
      if (!conn.closed) {
        await conn.send('still here').catch(() => undefined);
        await conn.close(1000).catch(() => undefined);
      }
      closes.push(conn.closeStatus);
    });
    try {
      const child = spawnNode(['--require', FAST_CLOCK, CLI, 'connect', server.url], { tsx: false });
      await until(() => child.stderr().includes('connected to'), 'the CLI to connect');
      await quiet();
      release();
      expect(await child.exited).toBe(0);
      child.proc.stdin.destroy();
      expect(child.stderr()).not.toContain('idle timeout');
      expect(child.stdout()).toContain('< still here\n');
      expect(closes).toEqual([1000]);
    } finally {
      await server.close();
    }
  }, 20_000);

  test('serve: a quiet client is not closed with 1001 "idle timeout" (serve() defaults to 300 s)', async () => {
    const child = spawnNode(['--require', FAST_CLOCK, CLI, 'serve', '--port', '0', '--echo'], { tsx: false });
    const [url] = (await child.waitFor(/ws:\/\/\S+/)) as unknown as [string];
    const conn = await connect(url, { idleTimeout: 0 });
    await quiet();
    expect(conn.closed).toBe(false);
    await conn.send('hello');
    expect(await conn.recv()).toBe('hello');
    await conn.close(1000);
    expect(conn.closeStatus).toBe(1000);
    await child.waitFor(/\[1\] closed 1000/);
    expect(child.stdout()).not.toContain('idle timeout');
  }, 20_000);
});

/** Text with a line break, a carriage return, ESC sequences, a C1 control, a line separator and a bidi override; tab and é stay. */
const CONTROLS = 'one\ntwo\r\x1b[31mred\x1b]0;title\x07\u0085 \u2028\u202eevil\tok é\x7f\x00';
/** How the command prints it. */
const CONTROLS_SHOWN = 'one\\ntwo\\r\\x1b[31mred\\x1b]0;title\\x07\\x85 \\u2028\\u202eevil\tok é\\x7f\\x00';

describe('connect against other servers', () => {
  let server: WebSocketServer;
  const seen: Array<{ path: string; protocol: string; header: string | undefined }> = [];
  beforeAll(async () => {
    server = await serve({ protocols: ['two'] }, async (conn, req) => {
      seen.push({ path: conn.url, protocol: conn.protocol, header: req.headers['x-token'] as string | undefined });
      if (conn.path === '/fail') {
        await conn.close(1011, 'boom');
        return;
      }
      if (conn.path === '/fail-on-message') {
        conn.once('message', (m) => void conn.close(1011, `failed on ${String(m)}`).catch(() => undefined));
        return;
      }
      if (conn.path === '/bye') {
        await conn.close(1000, 'bye');
        return;
      }
      if (conn.path === '/controls') {
        await conn.send(CONTROLS);
        await conn.close(1000, 'bye\nnow\x1b[2J');
        return;
      }
      conn.on('message', (m) => void conn.send(`got ${String(m)}`).catch(() => undefined));
    });
  });
  afterAll(() => server.close());

  test('--protocol and --header reach the server, the chosen subprotocol is reported', async () => {
    const result = await connectWith(`${server.url}x?y=1`, 'ping\n', ['--protocol', 'one', '-p', 'two', '--header', 'X-Token: s3cret']);
    expect(result.code).toBe(0);
    expect(seen.at(-1)).toEqual({ path: '/x?y=1', protocol: 'two', header: 's3cret' });
    expect(result.stderr).toContain('subprotocol two');
    expect(result.stdout).toContain('< got ping');
  }, 20_000);

  test('a message or close reason with line breaks and terminal controls is printed as one line, escaped: nothing reaches the terminal as a control', async () => {
    const child = cli(['connect', `${server.url}controls`]);
    expect(await child.exited).toBe(0);
    child.proc.stdin.destroy();
    expect(child.stdout().split('\n').filter((line) => line.startsWith('< '))).toEqual([`< ${CONTROLS_SHOWN}`]);
    expect(child.stdout()).not.toMatch(/[\x1b\r\u0085\u2028\u202e]/);
    expect(child.stderr()).toContain('closed: 1000 bye\\nnow\\x1b[2J\n');
  }, 20_000);

  test('a server close with 1000 exits 0 without waiting for stdin', async () => {
    const child = cli(['connect', `${server.url}bye`]);
    expect(await child.exited).toBe(0);
    expect(child.stderr()).toContain('closed: 1000 bye');
    child.proc.stdin.destroy();
  }, 20_000);

  test('a server close with 1011 exits 1', async () => {
    const child = cli(['connect', `${server.url}fail`]);
    expect(await child.exited).toBe(1);
    expect(child.stderr()).toContain('closed: 1011');
    child.proc.stdin.destroy();
  }, 20_000);

  test('a server close with 1011 while the close after stdin ended still waits (--wait) exits 1', async () => {
    // stdin ends at once; the close with 1000 is queued behind --wait. The server's 1011 comes
    // first: that is the server's close, not ours (the old code counted the queued one and exited 0).
    const result = await connectWith(`${server.url}fail-on-message`, 'hello\n', ['--wait', '10000']);
    expect(result.stderr).toContain('closed: 1011 failed on hello');
    expect(result.code).toBe(1);
  }, 20_000);

  test('a refused connection exits 1', async () => {
    const gone = await serve({}, () => undefined);
    const port = gone.port;
    await gone.close();
    const result = await connectWith(`ws://127.0.0.1:${port}/`, '');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: /);
  }, 20_000);

  test('a handshake refused with an HTTP status exits 1 and reports the status', async () => {
    const mapped = await serve({ origins: ['https://allowed.example'] }, () => undefined);
    try {
      const result = await connectWith(mapped.url, '', ['--origin', 'https://evil.example']);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('403');
    } finally {
      await mapped.close();
    }
  }, 20_000);
});

describe('signals and a closed output', () => {
  let server: WebSocketServer;
  /** Close codes the server saw, by path. */
  const closes = new Map<string, number | undefined>();
  const closed = new Map<string, () => void>();
  const whenClosed = (path: string): Promise<void> => new Promise((r) => closed.set(path, r));
  beforeAll(async () => {
    server = await serve({}, async (conn) => {
      if (conn.path === '/stream') {
        // A message every few ms until the client closes: output the client keeps printing.
        let n = 0;
        const timer = setInterval(() => void conn.send(`tick ${++n}`).catch(() => undefined), 5);
        conn.on('close', () => clearInterval(timer));
      } else {
        conn.on('message', (m) => void conn.send(`got ${String(m)}`).catch(() => undefined));
      }
      await conn.whenClosed;
      closes.set(conn.path, conn.closeStatus);
      closed.get(conn.path)?.();
    });
  });
  afterAll(() => server.close());

  test('connect whose output reader goes away (| head -1) closes with 1000 instead of crashing on EPIPE', async () => {
    const serverSaw = whenClosed('/stream');
    const child = cli(['connect', `${server.url}stream`]);
    await child.waitFor(/< tick 1\n/);
    // The reader of stdout is gone: the next print fails with EPIPE.
    child.proc.stdout.destroy();
    expect(await child.exited).toBe(0);
    await serverSaw;
    expect(closes.get('/stream')).toBe(1000);
    expect(child.stderr()).not.toMatch(/EPIPE|Unhandled/);
    expect(child.stderr()).toContain('closed: 1000');
    child.proc.stdin.destroy();
  }, 20_000);

  test.each(['SIGTERM', 'SIGINT'] as const)('%s while stdin is a pipe closes with 1000 and exits 0, without waiting out --wait', async (signal) => {
    const serverSaw = whenClosed(`/${signal}`);
    const child = cli(['connect', `${server.url}${signal}`, '--wait', '60000']);
    child.proc.stdin.end('hello\n');
    await child.waitFor(/< got hello\n/);
    child.proc.kill(signal);
    expect(await child.exited).toBe(0);
    await serverSaw;
    expect(closes.get(`/${signal}`)).toBe(1000);
    expect(child.stderr()).toContain('closed: 1000');
  }, 20_000);

  test('a second signal aborts a close the server does not answer', async () => {
    // A server that completes the handshake and then never answers anything.
    const { createServer } = await import('node:net');
    const { acceptKey } = await import('rfc6455');
    let gotClose!: () => void;
    const closeSent = new Promise<void>((r) => (gotClose = r));
    const mute = createServer((socket) => {
      let head = '';
      socket.on('data', (chunk) => {
        if (!head.includes('\r\n\r\n')) {
          head += chunk.toString('latin1');
          const key = /sec-websocket-key: *(\S+)/i.exec(head)?.[1];
          if (head.includes('\r\n\r\n') && key) socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`);
        } else if ((chunk[0]! & 0x0f) === 0x8) {
          gotClose();
        }
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
    try {
      const child = cli(['connect', `ws://127.0.0.1:${(mute.address() as { port: number }).port}/`]);
      await new Promise<void>((r) => {
        const check = (): void => {
          if (!child.stderr().includes('connected to')) return;
          child.proc.stderr.off('data', check);
          r();
        };
        child.proc.stderr.on('data', check);
        check();
      });
      child.proc.kill('SIGTERM');
      // (The old code died of the first signal without a close frame.)
      await Promise.race([closeSent, child.exited]);
      child.proc.kill('SIGTERM');
      expect(await child.exited).toBe(1);
      expect(child.stderr()).toContain('closed: 1006');
      child.proc.stdin.destroy();
    } finally {
      mute.close();
    }
  }, 20_000);

  test('serve whose log reader goes away stops: its connections get 1001 and it exits 0', async () => {
    const child = cli(['serve', '--port', '0', '--echo']);
    const [url] = (await child.waitFor(/ws:\/\/\S+/)) as unknown as [string];
    child.proc.stdout.destroy();
    const conn = await connect(url);
    await conn.whenClosed;
    expect(conn.closeStatus).toBe(1001);
    expect(await child.exited).toBe(0);
    expect(child.stderr()).not.toMatch(/EPIPE|Unhandled/);
  }, 20_000);
});
