/**
 * rfc6455's `WebSocket` (the browser API over connect()) against a real browser's: the same
 * scenario script runs in headless Chromium (Debian's /usr/bin/chromium, driven by
 * playwright-core) with its native WebSocket and in Node with ours, against the same serve()
 * server, and the two event traces (events, their order, readyState at each, data, close codes,
 * reasons, wasClean, bufferedAmount, exception names) must be equal.
 */
import type { Browser } from 'playwright-core';
import { serve, serviceMapper, WebSocket, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { launchChromium, runInNode, runInPage } from './chromium.js';

/**
 * The scenarios, as the source of one async function `(WebSocket, base) => trace`: it runs as it
 * is in the page and in Node, so it uses nothing but the standard API.
 */
const SCENARIOS = String(async function scenarios(WS: typeof WebSocket, base: string): Promise<unknown[]> {
  const trace: unknown[] = [];
  const show = (data: unknown): string => {
    if (typeof data === 'string') return data.length > 64 ? `${data.length} characters, ${data.slice(0, 8)}…${data.slice(-8)}` : data;
    const bytes = new Uint8Array(data as ArrayBuffer);
    if (bytes.length <= 16) return Array.from(bytes).join(',');
    let sum = 0;
    for (const b of bytes) sum = (sum * 31 + b) >>> 0;
    return `${bytes.length} bytes, hash ${sum}`;
  };
  const nameOf = (f: () => unknown): string => {
    try {
      f();
      return 'no exception';
    } catch (error) {
      return `${(error as Error).name}`;
    }
  };
  type Step = (ws: WebSocket, event: string, data?: unknown) => void;
  const run = (name: string, path: string, protocols: string[] | undefined, step: Step): Promise<void> =>
    new Promise((resolve) => {
      const ws = protocols === undefined ? new WS(base + path) : new WS(base + path, protocols);
      const log = (...entry: unknown[]): void => void trace.push([name, ...entry]);
      ws.binaryType = 'arraybuffer';
      ws.onopen = () => {
        log('open', ws.readyState, ws.protocol, ws.extensions === '' ? 'no extensions' : 'extensions');
        step(ws, 'open');
      };
      ws.onmessage = (event) => {
        log('message', typeof event.data, show(event.data), ws.readyState);
        step(ws, 'message', event.data);
      };
      ws.onerror = (event) => log('error', event.type, ws.readyState);
      ws.onclose = (event) => {
        log('close', event.code, event.reason, event.wasClean, ws.readyState, ws.bufferedAmount);
        resolve();
      };
      step(ws, 'created');
      log('created', ws.readyState, ws.url === base + path);
    });

  // Text, a typed array, a Blob and a string after it (order kept), then close() with no code:
  // the server echoes a close frame without status (1005).
  let echoed = 0;
  await run('echo', '/echo', undefined, (ws, event) => {
    if (event === 'open') {
      ws.send('héllo');
      ws.send(new Uint8Array([1, 2, 3]));
      ws.send(new Blob(['blob']));
      ws.send('after the blob');
      ws.send(new Uint16Array([0x0102, 0x0304]).subarray(1));
    } else if (event === 'message' && ++echoed === 5) {
      ws.close();
      // Everything sent went out (it was echoed): nothing is buffered, the close frame is not
      // counted (it was, as application bytes, unless bufferedAmount had been read meanwhile).
      trace.push(['echo', 'bufferedAmount after close()', ws.bufferedAmount]);
    }
  });
  // close(code, reason), then sends after it: never sent, counted in bufferedAmount.
  await run('close with a code', '/echo', undefined, (ws, event) => {
    if (event !== 'open') return;
    ws.close(4000, 'bye');
    trace.push(['close with a code', 'readyState after close()', ws.readyState]);
    ws.send('abcdé');
    ws.send(new Uint8Array(10));
    trace.push(['close with a code', 'bufferedAmount after close()', ws.bufferedAmount]);
    ws.close(4001, 'again'); // nothing: already closing
  });
  // The server closes with a code and reason.
  await run('server closes', '/close4001', undefined, (ws, event) => {
    if (event === 'open') ws.send('x');
  });
  // The server drops the TCP connection without a close frame.
  await run('server drops', '/drop', undefined, (ws, event) => {
    if (event === 'open') ws.send('x');
  });
  // The server breaks the protocol: invalid UTF-8 in a text frame (the client fails the
  // connection: 1007 to the server, 1006 and an error here), then a masked frame (1002).
  for (const kind of ['bad utf-8', 'masked frame']) {
    await run(kind, '/broken', undefined, (ws, event) => {
      if (event === 'open') ws.send(kind);
    });
  }
  // What a server may send: empty messages, a 1 MiB binary and a 300 KiB non-ASCII text, a text
  // message in fragments, a ping between them (answered, no event), then a close.
  await run('kinds', '/kinds', undefined, () => undefined);
  // No route: 404, no open.
  await run('refused', '/nowhere', undefined, () => undefined);
  // A subprotocol chosen from those offered.
  await run('subprotocol', '/chat', ['superchat', 'chat'], (ws, event) => {
    if (event === 'open') ws.close(1000);
  });
  // Greetings sent as soon as the server accepts (they arrive with the handshake response).
  await run('greeting', '/greet', undefined, (ws, event, data) => {
    if (event === 'message' && typeof data === 'string' && data === 'last') ws.close(3000, 'thanks');
  });
  // close() while connecting: the attempt is failed.
  await run('close while connecting', '/abandoned', undefined, (ws, event) => {
    if (event !== 'created') return;
    trace.push(['close while connecting', 'send while connecting', nameOf(() => ws.send('x'))]);
    ws.close();
    trace.push(['close while connecting', 'readyState after close()', ws.readyState]);
  });
  // Exceptions, by name.
  const ok = new WS(base + '/echo');
  await new Promise((resolve) => (ok.onopen = resolve));
  trace.push(['exceptions', [
    nameOf(() => ok.close(1001)),
    nameOf(() => ok.close(2999)),
    nameOf(() => ok.close(5000)),
    nameOf(() => ok.close(1000, 'x'.repeat(124))),
    nameOf(() => ok.close(3000, 'é'.repeat(62))),
    nameOf(() => new WS(base + '/echo#')),
    nameOf(() => new WS(base + '/echo#x')),
    nameOf(() => new WS('ftp://127.0.0.1/')),
    nameOf(() => new WS('/relative')),
    nameOf(() => new WS(base + '/echo', ['a', 'a'])),
    nameOf(() => new WS(base + '/echo', ['a b'])),
    nameOf(() => new WS(base + '/echo', [''])),
    // WebIDL's conversions: a Symbol is a TypeError, before the URL is checked (they were
    // converted with String(), and refused as a SyntaxError).
    nameOf(() => new WS(Symbol('url') as never)),
    nameOf(() => new WS(base + '/echo', [Symbol('p') as never])),
    nameOf(() => new WS('ftp://127.0.0.1/', Symbol('p') as never)),
    nameOf(() => ok.close(4000, Symbol('reason') as never)),
    // Required arguments missing: TypeErrors (send() sent the text 'undefined').
    nameOf(() => Reflect.construct(WS, [])),
    nameOf(() => Reflect.apply(ok.send, ok, [])),
    [WS.CONNECTING, WS.OPEN, WS.CLOSING, WS.CLOSED, ok.CLOSED],
  ]]);
  ok.close(4999, 'é'.repeat(61));
  await new Promise((resolve) => (ok.onclose = resolve));
  return trace;
});

let browser: Browser;
let server: WebSocketServer;
const closeStatuses: Array<number | undefined> = [];
/** The answers to the /kinds route's ping, one per client. */
const pongs: string[] = [];

beforeAll(async () => {
  const echo = (conn: WebSocketConnection): void => {
    conn.on('message', (data, binary) => void conn.send(data, { binary }).catch(() => undefined));
    conn.on('close', () => void closeStatuses.push(conn.closeStatus));
  };
  server = await serve(
    { port: 0 },
    serviceMapper([
      { path: '/echo', handler: echo },
      // Abandoned while connecting: whether the server got as far as accepting depends on timing,
      // so its closes are not recorded.
      { path: '/abandoned', handler: () => undefined },
      { path: '/close4001', handler: (conn) => conn.on('message', () => void conn.close(4001, 'server says bye').catch(() => undefined)) },
      { path: '/drop', handler: (conn) => conn.on('message', () => conn.terminate()) },
      {
        path: '/kinds',
        handler: async (conn) => {
          const big = Buffer.alloc(1 << 20);
          for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
          await conn.send('');
          await conn.send(Buffer.alloc(0));
          await conn.send(big);
          conn.ping(Buffer.from('are you there')).then(
            () => void pongs.push('pong'),
            () => void pongs.push('no pong'),
          );
          await conn.send('κόσμε 😀 '.repeat(30_000));
          await conn.sendStream(['frag', 'mént', 'ed'].map((part) => Buffer.from(part)), { binary: false, fragmentSize: 4 });
          await conn.close(1000, 'that is all').catch(() => undefined);
        },
      },
      {
        path: '/broken',
        handler: (conn) => {
          conn.on('close', () => void closeStatuses.push(conn.closeStatus));
          // Frames no RFC 6455 server may send, written to the socket as they are.
          conn.on('message', (m) => {
            const bytes = m === 'bad utf-8' ? [0x81, 0x02, 0xff, 0xfe] : [0x81, 0x81, 1, 2, 3, 4, 0x78 ^ 1];
            conn.transport.stream.write(Buffer.from(bytes));
          });
        },
      },
      { path: '/chat', protocols: { chat: echo } },
      {
        path: '/greet',
        handler: (conn) => {
          for (const m of ['hi', Buffer.of(7, 8, 9), 'last']) void conn.send(m).catch(() => undefined);
        },
      },
    ]),
  );
  browser = await launchChromium();
}, 30_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

test('the same script gives the same events in Chromium and with rfc6455 WebSocket', async () => {
  const base = `ws://127.0.0.1:${server.port}`;
  const inBrowser = await runInPage(browser, SCENARIOS, ['WebSocket'], [base]);
  const browserStatuses = closeStatuses.splice(0);
  const inNode = await runInNode(SCENARIOS, [WebSocket, base]);
  if (process.env.SHOW_TRACE) console.log(JSON.stringify(inNode));
  expect(inNode).toEqual(inBrowser);
  // What the server saw of the closes (its last connection may close just after the client's).
  for (let i = 0; i < 100 && closeStatuses.length < browserStatuses.length; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  // The same, but for invalid UTF-8: Chromium fails the connection with 1002, we with 1007, the
  // code RFC 6455 §7.4.1 has for it. 1005: close() with no code sends no status.
  expect(browserStatuses).toEqual([1005, 4000, 1002, 1002, 1000, 4999]);
  expect(closeStatuses).toEqual([1005, 4000, 1007, 1002, 1000, 4999]);
  // And the trace is the one the standard describes (spot checks, so that agreeing on something
  // wrong fails too).
  expect(inNode).toContainEqual(['echo', 'message', 'string', 'after the blob', 1]);
  expect(inNode).toContainEqual(['echo', 'close', 1005, '', true, 3, 0]);
  expect(inNode).toContainEqual(['server drops', 'close', 1006, '', false, 3, 0]);
  expect(inNode).toContainEqual(['refused', 'error', 'error', 3]);
  expect(inNode).toContainEqual(['bad utf-8', 'error', 'error', 3]);
  expect(inNode).toContainEqual(['close while connecting', 'readyState after close()', 2]);
  const exceptions = (inNode.find((entry) => (entry as unknown[])[0] === 'exceptions') as [string, string[]])[1];
  expect(exceptions.slice(12, 16)).toEqual(['TypeError', 'TypeError', 'TypeError', 'TypeError']);
  expect(pongs).toEqual(['pong', 'pong']);
  expect(inNode.filter((entry) => (entry as unknown[])[0] === 'kinds').map((entry) => (entry as unknown[]).slice(1, 3))).toEqual([
    ['created', 0],
    ['open', 1],
    ['message', 'string'],
    ['message', 'object'],
    ['message', 'object'],
    ['message', 'string'],
    ['message', 'string'],
    ['close', 1000],
  ]);
}, 60_000);
