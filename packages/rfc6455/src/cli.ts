#!/usr/bin/env node
/**
 * The `rfc6455` command: a WebSocket client like wscat, and a quick echo/log server.
 *
 *   rfc6455 connect URL [--protocol P]... [--header 'K: V']... [--origin O] [--no-deflate] [--wait MS]
 *   rfc6455 serve [--port N] [--host H] | [--unix PATH] [--echo] [--broadcast] [--protocol P]...
 *   rfc6455 --help | --version | help [connect|serve]
 *
 * Exit codes: 0 success; 1 connection error (refused, handshake failed) or an abnormal or error
 * close; 2 usage error. See `rfc6455 --help`.
 * @packageDocumentation
 * @internal
 */
import { readFileSync } from 'node:fs';
import { createInterface, type Interface } from 'node:readline';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { connect, type ConnectOptions } from './client.js';
import { encodeClosePayload } from './codec/close.js';
import { EOF, type Message, type WebSocketConnection } from './connection.js';
import { HandshakeError } from './errors.js';
import { isToken } from './handshake/http.js';
import { broadcast } from './prepared.js';
import { serve, type WebSocketServer } from './server.js';

/** Exit codes scripts can rely on. */
const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

const MAIN_HELP = `Usage: rfc6455 <command> [options]

Commands:
  connect URL   open a WebSocket and talk to it (interactive on a terminal, a pipe otherwise)
  serve         run a WebSocket server that logs messages (--echo: echoes them; --broadcast: relays them)
  help [CMD]    show help for a command

Options:
  -h, --help     show help
  -v, --version  show the version

Exit codes:
  0  success (the connection closed normally: 1000, 1001 or 1005, or we closed it)
  1  connection error (refused, handshake failed), abnormal close (1006) or an error close code
  2  usage error (unknown command or option, bad value)
`;

const CONNECT_HELP = `Usage: rfc6455 connect URL [options]

Opens a WebSocket to URL (ws:, wss:, or ws+unix:///path/to/socket:/path). Received messages are
printed as "< text"; binary messages as "< [binary N bytes] hex…". Status lines (connected,
closed) go to stderr.

On a terminal (interactive): each line you type is sent as a text message. Commands:
  /ping [payload]        send a ping; prints "< pong (RTT ms)"
  /close [CODE [REASON]] close with CODE (default 1000) and REASON, then exit
  /help                  list commands
  //text                 send "/text" (a line starting with a slash)
  Ctrl-D or Ctrl-C closes with 1000 and exits.

Not on a terminal (stdin is a pipe or file): each line is sent (commands work too) and printed
as "> line"; when stdin ends the client waits --wait ms, closes with 1000 and exits once the
closing handshake completes.

SIGINT/SIGTERM (and stdout's reader going away, e.g. "| head -1") close with 1000 at once;
a second signal aborts. wss: with a self-signed certificate: NODE_EXTRA_CA_CERTS=cert.pem.

Options:
  -p, --protocol P   offer subprotocol P (repeat for several, in order of preference)
  -H, --header 'K: V'  add a request header (repeatable)
  -o, --origin O     send Origin: O
      --no-deflate   do not offer permessage-deflate
  -w, --wait MS      non-interactive: ms to wait for replies after stdin ends (default 0,
                     at most 2147483647)
      --hybi00       speak the draft hybi-00 protocol (text only; no ping, no close codes)
  -h, --help         show this help

Exit codes: 0 normal close (1000/1001/1005, or our own close code echoed); 1 connection error,
abnormal close or error close code; 2 usage error.
`;

const SERVE_HELP = `Usage: rfc6455 serve [options]

Runs a WebSocket server on any path and logs each connection and message to stdout as
"[ID] < message"; with --echo it sends every message back ("[ID] > message"); with
--broadcast it relays every message to every other open connection, a chat room ("[ID] >> N
connections"). Plain HTTP requests get 426. SIGINT/SIGTERM (or stdout's reader going away, e.g.
"| head") close every connection with 1001 and exit 0.

Options:
  -p, --port N       port (default 8081; 0 picks a free one; the URL is printed)
      --host H       address to bind (default 127.0.0.1; 0.0.0.0 for every interface)
      --unix PATH    listen on a Unix domain socket instead (URL ws+unix://PATH:/;
                     not with --port or --host)
  -e, --echo         echo messages back (text as text, binary as binary)
  -b, --broadcast    relay every message to every other open connection
      --protocol P   accept subprotocol P when offered (repeatable)
  -h, --help         show this help

Exit codes: 0 stopped by a signal; 1 cannot listen (e.g. the port is in use); 2 usage error.
`;

class UsageError extends Error {}

function fail(message: string): never {
  throw new UsageError(message);
}

function parse<T extends ParseArgsConfig['options']>(args: string[], options: T, positionals = false) {
  try {
    return parseArgs({ args, options, allowPositionals: positionals, strict: true });
  } catch (error) {
    return fail((error as Error).message);
  }
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * Characters a peer must not get onto the terminal or the log as they are: C0 controls but the
 * tab, DEL and C1 controls (line breaks, carriage returns and ESC, which starts the escape
 * sequences that move the cursor, recolour or retitle a terminal), U+2028 and U+2029 (line and
 * paragraph separators) and the bidirectional overrides and isolates (which reorder what follows).
 */
const UNPRINTABLE = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * Peer-controlled text (a message, a close reason) as one line that is safe to print: what
 * {@link UNPRINTABLE} matches is shown escaped, `\n`, `\r`, `\xNN` or `\uNNNN`. (Fixed: a
 * message with a line break printed its later lines without the `< ` or `[ID] < ` prefix, so they
 * read as output of their own, and an ESC in a message reached the terminal.)
 */
function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** A printable form of a message: text as one line ({@link printable}), binary as its size and a hex preview. */
function show(message: Message): string {
  if (typeof message === 'string') return printable(message);
  const preview = message.subarray(0, 32).toString('hex');
  return `[binary ${message.length} bytes] ${preview}${message.length > 32 ? '…' : ''}`;
}

function parseHeaders(values: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const value of values) {
    const colon = value.indexOf(':');
    if (colon <= 0) fail(`bad --header ${JSON.stringify(value)}: expected 'Name: value'`);
    headers[value.slice(0, colon).trim()] = value.slice(colon + 1).trim();
  }
  return headers;
}

/** The longest --wait: setTimeout() waits at most 2^31-1 ms (about 24.8 days). */
const MAX_WAIT = 2 ** 31 - 1;

/** Close codes after which `connect` exits 0 when the server started the close. */
const NORMAL_CLOSES = new Set([1000, 1001, 1005]);

async function runConnect(args: string[]): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      protocol: { type: 'string', short: 'p', multiple: true },
      header: { type: 'string', short: 'H', multiple: true },
      origin: { type: 'string', short: 'o' },
      'no-deflate': { type: 'boolean' },
      wait: { type: 'string', short: 'w' },
      hybi00: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    true,
  );
  if (values.help) {
    process.stdout.write(CONNECT_HELP);
    return EXIT_OK;
  }
  if (positionals.length !== 1) fail('connect takes exactly one URL');
  let url: URL;
  try {
    url = new URL(positionals[0]!);
  } catch {
    return fail(`not a URL: ${positionals[0]}`);
  }
  if (!['ws:', 'wss:', 'ws+unix:', 'wss+unix:'].includes(url.protocol)) fail(`unsupported scheme ${url.protocol} (use ws:, wss:, or ws+unix:///socket:/path)`);
  // A plain number of ms that setTimeout() can wait out: Number() read '' and ' ' as 0 and took
  // '1e3' and '0x10', and a wait over 2^31-1 ms was cut to 1 ms by setTimeout() with a
  // TimeoutOverflowWarning on stderr (fixed bug: `--wait 9999999999` closed at once).
  // RFC 6455 §3: no fragment ('#' that is data is written %23). connect() refuses it with a
  // SyntaxError: a bad URL given on the command line, so a usage error as for a URL that does not
  // parse (fixed bug: it exited 1, as a refused connection does). href keeps an empty '#'.
  if (url.href.includes('#')) fail(`a WebSocket URL may not have a fragment: ${url.href} (write a '#' in the path as %23)`);
  const waitText = values.wait ?? '0';
  const wait = /^\d+(\.\d+)?$/.test(waitText) ? Number(waitText) : NaN;
  if (!(wait <= MAX_WAIT)) fail(`bad --wait ${JSON.stringify(waitText)}: expected a number of ms from 0 to ${MAX_WAIT}`);
  const options: ConnectOptions = {
    protocols: values.protocol ?? [],
    headers: parseHeaders(values.header ?? []),
    ...(values.origin !== undefined ? { origin: values.origin } : {}),
    perMessageDeflate: !values['no-deflate'],
    // A session stays open while quiet, as in wscat or a browser (fixed bug: connect()'s default
    // 300 s idle timeout closed a quiet terminal session with 1001 "idle timeout", and cut any
    // --wait over 300000 ms short).
    idleTimeout: 0,
    ...(values.hybi00 ? { variant: 'hybi00' as const } : {}),
  };

  let conn: WebSocketConnection;
  try {
    conn = await connect(url, options);
  } catch (error) {
    // connect() rejects what it cannot send (a subprotocol or header name that is not a token, a
    // ws+unix: URL without a socket path) with a TypeError: a bad value given on the command line,
    // so a usage error (fixed bug: it exited 1, as a refused connection does).
    if (error instanceof TypeError) fail(error.message);
    if (error instanceof HandshakeError && error.status > 0) {
      const body = error.body && error.body.length > 0 ? `: ${error.body.toString('utf8').trim()}` : '';
      process.stderr.write(`error: handshake failed: ${error.message}${body}\n`);
    } else {
      process.stderr.write(`error: ${(error as Error).message}\n`);
    }
    return EXIT_FAILURE;
  }
  const interactive = process.stdin.isTTY === true;

  let rl: Interface | undefined;
  // The reader of our output went away (`rfc6455 connect URL | head -1`: EPIPE): printing stops,
  // and the connection is closed as on a signal (fixed bug: an unhandled 'error' event crashed
  // the process with a stack trace, and the server saw 1006).
  let outputGone = false;
  const print = (line: string): void => {
    if (outputGone) return;
    if (rl && interactive) {
      process.stdout.write(`\r\x1b[K${line}\n`);
      rl.prompt(true);
    } else {
      process.stdout.write(`${line}\n`);
    }
  };

  // closeRequested: a close is queued (stdin ended, /close); sentCode: the code of the close frame
  // we sent first, while the connection was still open. A close queued behind --wait or pending
  // sends while the server closed with 1011 is not "a close we started" (fixed bug: it exited 0).
  let closeRequested = false;
  let sentCode: number | undefined;
  let sending: Promise<unknown> = Promise.resolve();
  const closeWith = (code: number, reason: string): void => {
    closeRequested = true;
    sending = sending.then(() => {
      if (conn.readyState === 'open') sentCode = conn.variant === 'hybi00' ? 1005 : code;
      return conn.close(code, reason);
    }).catch((error: Error) => {
      process.stderr.write(`error: ${error.message}\n`);
      conn.terminate();
    });
  };

  const onLine = (line: string): void => {
    if (line.startsWith('/') && !line.startsWith('//')) {
      const [command = '', ...rest] = line.slice(1).split(' ');
      if (command === 'ping') {
        const payload = rest.join(' ');
        sending = sending.then(() =>
          conn.ping(payload).then(
            (rtt) => print(`< pong (${rtt.toFixed(1)} ms)`),
            (error: Error) => process.stderr.write(`error: ${error.message}\n`),
          ),
        );
      } else if (command === 'close') {
        const code = rest[0] === undefined || rest[0] === '' ? 1000 : Number(rest[0]);
        const reason = rest.slice(1).join(' ');
        // A code or reason that may not be sent is a typo to report, the connection staying open
        // (fixed bug: close() rejected, and the connection was aborted with 1006 and exit 1).
        // hybi-00 sends neither.
        try {
          if (conn.variant === 'rfc6455') encodeClosePayload(code, reason);
        } catch (error) {
          process.stderr.write(`error: ${(error as Error).message} (try /close 1000, or a code from 3000 to 4999)\n`);
          if (rl && interactive) rl.prompt();
          return;
        }
        closeWith(code, reason);
      } else if (command === 'help') {
        print('commands: /ping [payload], /close [code [reason]], /help, //text sends "/text"');
      } else {
        process.stderr.write(`unknown command /${command} (try /help; //text sends "/text")\n`);
      }
    } else {
      const text = line.startsWith('//') ? line.slice(1) : line;
      if (!interactive) print(`> ${text}`);
      sending = sending.then(() => conn.send(text)).catch((error: Error) => process.stderr.write(`error: ${error.message}\n`));
    }
    if (rl && interactive) rl.prompt();
  };

  // stopping: a signal (or the end of our output) asked to stop: no --wait, and a second one aborts.
  let stopping = false;
  let endWait: (() => void) | undefined;
  rl = createInterface({ input: process.stdin, output: interactive ? process.stdout : undefined, terminal: interactive, prompt: '> ' });
  rl.on('line', onLine);
  rl.on('close', () => {
    // Ctrl-D on a terminal, the end of piped input, or a stop.
    if (conn.closed || closeRequested) return;
    if (interactive || stopping) return closeWith(1000, '');
    sending = sending.then(
      () =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, wait);
          endWait = () => {
            clearTimeout(timer);
            resolve();
          };
          if (stopping) endWait();
        }),
    );
    closeWith(1000, '');
  });
  // SIGINT/SIGTERM (Ctrl-C while stdin is a pipe, `timeout`, `kill`) close with 1000 as Ctrl-C on a
  // terminal does, without waiting out --wait; a second one aborts (fixed bug: the process was
  // killed without a close frame, the server saw 1006).
  const stop = (): void => {
    if (stopping) {
      conn.terminate();
      return;
    }
    stopping = true;
    endWait?.();
    rl?.close();
  };
  const onOutputError = (): void => {
    outputGone = true;
    stop();
  };
  process.stdout.on('error', onOutputError);
  process.stderr.on('error', onOutputError);
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  rl.on('SIGINT', () => rl?.close());
  // Printed once the handlers are in place: a signal sent on seeing it is handled.
  const details = [conn.protocol && `subprotocol ${conn.protocol}`, conn.extensions && `extensions ${conn.extensions}`].filter(Boolean).join(', ');
  // A password in the URL is not echoed to the terminal or a log (fixed bug: it was printed).
  const shown = new URL(url.href);
  if (shown.password !== '') shown.password = '***';
  process.stderr.write(`connected to ${shown.href}${details ? ` (${details})` : ''}\n`);
  if (interactive) rl.prompt();

  for (;;) {
    const message = await conn.recv();
    if (message === EOF) break;
    print(`< ${show(message)}`);
  }
  await conn.whenClosed;
  const status = conn.closeStatus ?? 1006;
  const reason = conn.closeReason ?? '';
  rl.close();
  process.stdin.destroy();
  if (interactive) process.stdout.write('\n');
  process.stderr.write(`closed: ${status}${reason ? ` ${printable(reason)}` : ''}\n`);
  if (status === 1006) return EXIT_FAILURE;
  // A normal code, or the peer's answer to the close we started, echoing our code.
  return NORMAL_CLOSES.has(status) || status === sentCode ? EXIT_OK : EXIT_FAILURE;
}

async function runServe(args: string[]): Promise<number> {
  const { values } = parse(args, {
    port: { type: 'string', short: 'p' },
    host: { type: 'string' },
    unix: { type: 'string' },
    echo: { type: 'boolean', short: 'e' },
    broadcast: { type: 'boolean', short: 'b' },
    protocol: { type: 'string', multiple: true },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(SERVE_HELP);
    return EXIT_OK;
  }
  // --unix listens instead of a port and host, as serve() refuses `path` with either (fixed bug:
  // `--port 9000 --unix PATH` listened on the socket alone, the port silently dropped).
  // An empty path cannot be listened on (fixed bug: `--unix "$SOCK"` with SOCK unset exited 1 with
  // Node's "The argument 'options' is invalid", as if the socket were busy).
  if (values.unix === '') fail('bad --unix "": expected the path of a Unix domain socket');
  if (values.unix !== undefined && (values.port !== undefined || values.host !== undefined)) {
    fail(`--unix listens on a Unix domain socket instead of a port: give it without ${values.port !== undefined ? '--port' : '--host'}`);
  }
  const portText = values.port ?? '8081';
  // Digits only: Number() reads '' and ' ' as 0 (a free port, fixed bug: `--port "$PORT"` with
  // PORT unset listened on a random port) and takes '1e3' and '0x50'.
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port <= 65535)) fail(`bad --port ${JSON.stringify(portText)}`);
  // A subprotocol that is not an HTTP token can never be offered (`--protocol a,b` is not a list):
  // a usage error, as it is for connect (fixed bug: accepted, and never chosen).
  for (const protocol of values.protocol ?? []) if (!isToken(protocol)) fail(`bad --protocol ${JSON.stringify(protocol)}: not an HTTP token (repeat --protocol for several)`);
  const echo = values.echo === true;
  const relay = values.broadcast === true;
  // Signal handlers first, so that a signal at any point stops the server gracefully.
  let stopRequested!: () => void;
  const stopSignal = new Promise<void>((resolve) => (stopRequested = resolve));
  process.on('SIGINT', () => stopRequested());
  process.on('SIGTERM', () => stopRequested());
  // The reader of the log went away (`rfc6455 serve | head`: EPIPE): stop as on a signal (fixed
  // bug: an unhandled 'error' event crashed the server, its connections saw 1006).
  process.stdout.on('error', () => stopRequested());
  process.stderr.on('error', () => stopRequested());
  let counter = 0;
  let server: WebSocketServer | undefined;
  try {
    server = await serve(
      // A Unix domain socket instead of port and host (serve() refuses both).
      {
        ...(values.unix !== undefined ? { path: values.unix } : { port, host: values.host ?? '127.0.0.1' }),
        ...(values.protocol ? { protocols: values.protocol } : {}),
        // Quiet clients stay connected, as `connect` sessions do (fixed bug: serve()'s default
        // 300 s idle timeout closed them with 1001 "idle timeout").
        idleTimeout: 0,
      },
      async (conn, req) => {
        const id = ++counter;
        const log = (line: string): void => void process.stdout.write(`[${id}] ${line}\n`);
        log(`open ${conn.url} from ${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}${conn.protocol ? ` (subprotocol ${conn.protocol})` : ''}`);
        // A listener (not recv()) so that each echo is queued as its message is parsed: a close
        // frame right behind the messages is answered only after their echoes.
        conn.on('message', (message, binary) => {
          log(`< ${show(message)}`);
          if (relay) {
            const others = [...server!.connections].filter((other) => other !== conn);
            log(`>> ${broadcast(others, message, { binary })} connection(s)`);
          }
          if (!echo) return;
          conn.send(message, { binary }).then(
            () => undefined,
            () => log(`cannot echo: the connection is closing`),
          );
          log(`> ${show(message)}`);
        });
        await conn.whenClosed;
        log(`closed ${conn.closeStatus ?? ''}${conn.closeReason ? ` ${printable(conn.closeReason)}` : ''}`);
      },
    );
  } catch (error) {
    process.stderr.write(`error: cannot listen: ${(error as Error).message}\n`);
    return EXIT_FAILURE;
  }
  const modes = [echo ? 'echo' : '', relay ? 'broadcast' : ''].filter(Boolean).join(', ');
  process.stdout.write(`listening on ${server.url}${modes ? ` (${modes})` : ''}\n`);
  await stopSignal;
  process.stdout.write('stopping\n');
  await server.close();
  return EXIT_OK;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'connect':
      return runConnect(rest);
    case 'serve':
      return runServe(rest);
    case 'help':
      // An unknown command is a usage error here too (fixed bug: `help bogus` printed the main
      // help and exited 0, while `bogus` exits 2).
      if (rest.length > 1 || (rest[0] !== undefined && rest[0] !== 'connect' && rest[0] !== 'serve')) {
        return fail(rest.length > 1 ? 'help takes at most one command' : `unknown command ${JSON.stringify(rest[0])}`);
      }
      process.stdout.write(rest[0] === 'connect' ? CONNECT_HELP : rest[0] === 'serve' ? SERVE_HELP : MAIN_HELP);
      return EXIT_OK;
    case '-h':
    case '--help':
      process.stdout.write(MAIN_HELP);
      return EXIT_OK;
    case '-v':
    case '--version':
      process.stdout.write(`${version()}\n`);
      return EXIT_OK;
    case undefined:
      process.stderr.write(MAIN_HELP);
      return EXIT_USAGE;
    default:
      return fail(`unknown command ${JSON.stringify(command)}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.stdout.write('', () => process.exit(code)),
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.stderr.write(`rfc6455: ${error.message}\nTry 'rfc6455 --help'.\n`);
      process.exit(EXIT_USAGE);
    }
    process.stderr.write(`rfc6455: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(EXIT_FAILURE);
  },
);
