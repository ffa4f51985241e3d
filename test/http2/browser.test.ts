/**
 * A real browser over HTTP/2: headless Debian Chromium (playwright-core, /usr/bin/chromium, no
 * download) loads a page over HTTPS from serve({ http2: true, onRequest }), and the page opens
 * `new WebSocket('wss://…')` to the same origin. Chromium sends it as an RFC 8441 extended CONNECT
 * on the page's HTTP/2 connection, because that connection advertised
 * SETTINGS_ENABLE_CONNECT_PROTOCOL. Asserted on the server side: the transport (HTTP/2 stream,
 * request HTTP/2.0, method CONNECT), messages both ways, the subprotocol, permessage-deflate, and
 * a clean 1000 close.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Browser } from 'playwright-core';
import { launchChromium } from '../browser/chromium.js';
import { serve, serviceMapper, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { TLS } from './helpers.js';

interface Seen {
  kind: string;
  httpVersion: string;
  method: string | undefined;
  requestLine: string;
  protocol: string;
  extensions: string;
  received: Array<{ text?: string; bytes?: number[] }>;
  closeStatus?: number;
  closeReason?: string;
}

const seen: Seen[] = [];
let pageHttpVersions: string[] = [];
let browser: Browser;
let server: WebSocketServer;

const PAGE = `<!doctype html><meta charset="utf-8"><title>h2 ws</title><script>
window.result = new Promise((resolve) => {
  const out = { messages: [], protocol: '', extensions: '', close: null, error: false };
  const ws = new WebSocket('wss://' + location.host + '/chat', ['chat.v0', 'chat.v1']);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => {
    out.protocol = ws.protocol;
    out.extensions = ws.extensions;
    ws.send('hello over h2 '.repeat(200));
    ws.send(new Uint8Array([1, 2, 3, 250]).buffer);
  };
  ws.onmessage = (e) => {
    out.messages.push(typeof e.data === 'string' ? e.data : Array.from(new Uint8Array(e.data)));
    if (out.messages.length === 2) ws.close(1000, 'page done');
  };
  ws.onerror = () => { out.error = true; };
  ws.onclose = (e) => { out.close = { code: e.code, reason: e.reason, wasClean: e.wasClean }; resolve(out); };
});
</script>`;

beforeAll(async () => {
  const chat = async (conn: WebSocketConnection, req: IncomingMessage): Promise<void> => {
    const entry: Seen = {
      kind: conn.transport.kind,
      httpVersion: req.httpVersion,
      method: req.method,
      requestLine: conn.requestLine,
      protocol: conn.protocol,
      extensions: conn.extensions,
      received: [],
    };
    seen.push(entry);
    for await (const m of conn) {
      entry.received.push(typeof m === 'string' ? { text: m } : { bytes: [...m] });
      await conn.send(m);
    }
    await conn.whenClosed;
    entry.closeStatus = conn.closeStatus;
    entry.closeReason = conn.closeReason;
  };
  server = await serve(
    {
      host: '127.0.0.1',
      port: 0,
      http2: true,
      tls: TLS,
      onRequest(req: IncomingMessage, res: ServerResponse) {
        pageHttpVersions.push(req.httpVersion);
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end(PAGE);
      },
    },
    serviceMapper([{ path: '/chat', protocols: { 'chat.v1': chat } }]),
  );
  browser = await launchChromium(['--ignore-certificate-errors']);
}, 30_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

interface PageResult {
  messages: Array<string | number[]>;
  protocol: string;
  extensions: string;
  close: { code: number; reason: string; wasClean: boolean } | null;
  error: boolean;
}

test('Chromium opens a WebSocket over HTTP/2 extended CONNECT: messages, subprotocol, permessage-deflate, close 1000', async () => {
  seen.length = 0;
  pageHttpVersions = [];
  const page = await browser.newPage();
  try {
    const response = await page.goto(`https://127.0.0.1:${server.port}/`);
    expect(response?.status()).toBe(200);
    const result = (await page.evaluate('window.result')) as PageResult;

    // The page itself came over HTTP/2 (the precondition for Chromium's extended CONNECT).
    expect(pageHttpVersions[0]).toBe('2.0');

    // Browser side.
    expect(result.error).toBe(false);
    expect(result.protocol).toBe('chat.v1');
    expect(result.extensions).toMatch(/^permessage-deflate/);
    expect(result.messages).toEqual(['hello over h2 '.repeat(200), [1, 2, 3, 250]]);
    expect(result.close).toEqual({ code: 1000, reason: 'page done', wasClean: true });

    // Server side: the WebSocket came over HTTP/2, as an extended CONNECT.
    while (seen[0]?.closeStatus === undefined) await new Promise<void>((r) => setTimeout(r, 20));
    expect(seen).toHaveLength(1);
    const ws = seen[0]!;
    expect(ws.kind).toBe('http2');
    expect(ws.httpVersion).toBe('2.0');
    expect(ws.method).toBe('CONNECT');
    expect(ws.requestLine).toBe('CONNECT /chat HTTP/2.0');
    expect(ws.protocol).toBe('chat.v1');
    expect(ws.extensions).toMatch(/^permessage-deflate/);
    expect(ws.received).toEqual([{ text: 'hello over h2 '.repeat(200) }, { bytes: [1, 2, 3, 250] }]);
    expect(ws.closeStatus).toBe(1000);
    expect(ws.closeReason).toBe('page done');
  } finally {
    await page.close();
  }
});
