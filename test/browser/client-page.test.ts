/**
 * The browser client (examples/client.html + client.js) in a real headless Chromium (Debian's
 * /usr/bin/chromium, driven by playwright-core) against the example servers as real processes:
 * the whole Racket flow is asserted from what the page shows. Also: an ArrayBuffer sent by the
 * browser reaches the server as a binary message, and several-MiB messages round-trip.
 * Screenshots go to test-artifacts/.
 */
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { serve, type WebSocketServer } from 'rfc6455';
import { killAll, ROOT, startExample } from '../examples/helpers.js';
import { launchChromium } from './chromium.js';

const ARTIFACTS = resolve(ROOT, 'test-artifacts');
const CLIENT_HTML = pathToFileURL(resolve(ROOT, 'examples/client.html'));

let browser: Browser;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await launchChromium();
}, 30_000);

afterAll(async () => {
  await browser?.close();
  await killAll();
});

interface Entry {
  kind: string;
  text: string;
}

/** What the page shows: the log entries, the status, the count and the close code and reason. */
async function pageState(page: Page): Promise<{ log: Entry[]; status: string; count: string; code: string; reason: string }> {
  return (await page.evaluate(`(() => {
    const text = (id) => document.getElementById(id).textContent;
    return {
      log: [...document.querySelectorAll('#log li')].map((li) => ({ kind: li.className, text: li.textContent })),
      status: text('status'),
      count: text('count'),
      code: text('close-code'),
      reason: text('close-reason'),
    };
  })()`)) as { log: Entry[]; status: string; count: string; code: string; reason: string };
}

async function waitForStatus(page: Page, status: string, timeout = 30_000): Promise<void> {
  await page.waitForFunction(`document.getElementById('status').textContent === ${JSON.stringify(status)}`, null, { timeout });
}

/** The Racket client.js flow against either server: 11 messages, "goodbye" after the 10th, close 1000. */
function expectRacketFlow(log: Entry[]): void {
  const conversation = log.filter((e) => e.kind === 'sent' || e.kind === 'received');
  // The server's one-second tick runs from the moment it accepted; on a loaded machine the page's
  // "Hi there" can arrive after the first tick, so the reply is the first or the second message.
  const waited = { kind: 'received', text: 'Waited another second' };
  const replyFirst = [{ kind: 'received', text: 'You said: "Hi there"' }, ...Array.from({ length: 9 }, () => waited)];
  const replySecond = [waited, { kind: 'received', text: 'You said: "Hi there"' }, ...Array.from({ length: 8 }, () => waited)];
  const received = conversation.slice(1, 11);
  expect([replyFirst, replySecond]).toContainEqual(received);
  expect(conversation[0]).toEqual({ kind: 'sent', text: 'Hi there' });
  expect(conversation.slice(11)).toEqual([
    { kind: 'sent', text: 'goodbye' },
    { kind: 'received', text: 'Goodbye!' },
  ]);
  expect(log.at(-1)).toEqual({ kind: 'info', text: 'closed: code 1000' });
}

async function runFlow(pageUrl: string, screenshot: string): Promise<void> {
  const page = await browser.newPage();
  try {
    await page.goto(pageUrl);
    await waitForStatus(page, 'closed');
    const state = await pageState(page);
    await page.screenshot({ path: resolve(ARTIFACTS, screenshot), fullPage: true });
    expectRacketFlow(state.log);
    expect(state.count).toBe('11');
    expect(state.code).toBe('1000');
    expect(state.reason).toBe('(none)');
  } finally {
    await page.close();
  }
}

describe('client.html', () => {
  test.concurrent('page from file:// runs the whole flow against test-server', async () => {
    const { url } = await startExample('test-server.ts');
    await runFlow(`${CLIENT_HTML.href}?server=ws://127.0.0.1:${url.port}&path=/test`, 'client-test-server.png');
  }, 40_000);

  test.concurrent('page from file:// runs the whole flow against test-service-mapper', async () => {
    const { url } = await startExample('test-service-mapper.ts');
    await runFlow(`${CLIENT_HTML.href}?server=ws://127.0.0.1:${url.port}&path=/test`, 'client-test-service-mapper.png');
  }, 40_000);

  test.concurrent('page served by the demo (npm start) connects to its own host and runs the whole flow', async () => {
    const { child } = await startExample('demo.ts');
    const [, port] = (await child.waitFor(/Open http:\/\/localhost:(\d+)\//)) as unknown as [string, string];
    await runFlow(`http://127.0.0.1:${port}/`, 'client-demo.png');
  }, 40_000);

  test.concurrent('page with subprotocol "subprotocol" gets the subprotocol handler and closes from the page', async () => {
    const { url } = await startExample('test-service-mapper.ts');
    const page = await browser.newPage();
    try {
      await page.goto(`${CLIENT_HTML.href}?server=ws://127.0.0.1:${url.port}&path=/test&protocol=subprotocol`);
      await page.waitForFunction(`document.getElementById('count').textContent === '1'`, null, { timeout: 10_000 });
      await page.click('#disconnect');
      await waitForStatus(page, 'closed', 10_000);
      const state = await pageState(page);
      expect(state.log.filter((e) => e.kind !== 'info')).toEqual([
        { kind: 'sent', text: 'Hi there' },
        { kind: 'received', text: 'This is the subprotocol handler' },
      ]);
      expect(state.log).toContainEqual({ kind: 'info', text: 'open (subprotocol subprotocol)' });
      expect(state.code).toBe('1000');
      expect(state.reason).toBe('closed from the page');
    } finally {
      await page.close();
    }
  }, 30_000);

  test.concurrent('page shows 1006 when no server listens', async () => {
    const server = await serve({}, () => undefined);
    const port = server.port;
    await server.close();
    const page = await browser.newPage();
    try {
      await page.goto(`${CLIENT_HTML.href}?server=ws://127.0.0.1:${port}`);
      await waitForStatus(page, 'closed', 10_000);
      const state = await pageState(page);
      expect(state.code).toBe('1006');
      expect(state.log.some((e) => e.kind === 'error')).toBe(true);
    } finally {
      await page.close();
    }
  }, 20_000);
});

describe('browser to rfc6455 server', () => {
  let server: WebSocketServer;
  const received: Array<{ binary: boolean; length: number; head: number[] }> = [];

  beforeAll(async () => {
    // Echoes every message as it came (text as text, binary as binary) and records what it saw.
    server = await serve({}, async (conn) => {
      conn.on('message', (data, binary) => {
        received.push({ binary, length: data.length, head: binary ? [...(data as Buffer).subarray(0, 4)] : [] });
        void conn.send(data, { binary });
      });
    });
  });
  afterAll(() => server?.close());

  /** Runs `body` in a fresh page with `ws` open to the server; returns what `body` resolves to. */
  async function inBrowser<T>(body: string): Promise<T> {
    const page = await browser.newPage();
    try {
      return (await page.evaluate(`new Promise((resolve, reject) => {
        const ws = new WebSocket(${JSON.stringify(server.url)});
        ws.binaryType = 'arraybuffer';
        ws.onerror = () => reject(new Error('WebSocket error'));
        ws.onopen = () => { (${body})(ws).then(resolve, reject); };
      })`)) as T;
    } finally {
      await page.close();
    }
  }

  test('an ArrayBuffer sent by the browser reaches the server as a binary message and comes back binary', async () => {
    received.length = 0;
    const result = await inBrowser<{ type: string; bytes: number[] }>(`(ws) => new Promise((resolve) => {
      ws.onmessage = (e) => resolve({ type: e.data instanceof ArrayBuffer ? 'arraybuffer' : typeof e.data, bytes: [...new Uint8Array(e.data)] });
      ws.send(new Uint8Array([1, 2, 3, 255, 0]).buffer);
    })`);
    expect(received).toEqual([{ binary: true, length: 5, head: [1, 2, 3, 255] }]);
    expect(result).toEqual({ type: 'arraybuffer', bytes: [1, 2, 3, 255, 0] });
  }, 20_000);

  test('a 6 MiB binary message and a 3 MiB text message round-trip intact', async () => {
    received.length = 0;
    const result = await inBrowser<{ binaryOk: boolean; textOk: boolean; binaryLength: number; textLength: number }>(`(ws) => new Promise((resolve) => {
      const bytes = new Uint8Array(6 * 1024 * 1024);
      for (let i = 0; i < bytes.length; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
      const text = 'héllo wörld ✓ '.repeat(Math.ceil(3 * 1024 * 1024 / 14) + 1).slice(0, 3 * 1024 * 1024);
      const replies = [];
      ws.onmessage = (e) => {
        replies.push(e.data);
        if (replies.length < 2) return;
        const back = new Uint8Array(replies[0]);
        let binaryOk = back.length === bytes.length;
        for (let i = 0; binaryOk && i < bytes.length; i++) if (back[i] !== bytes[i]) binaryOk = false;
        resolve({ binaryOk, textOk: replies[1] === text, binaryLength: back.length, textLength: replies[1].length });
      };
      ws.send(bytes.buffer);
      ws.send(text);
    })`);
    expect(result).toEqual({ binaryOk: true, textOk: true, binaryLength: 6 * 1024 * 1024, textLength: 3 * 1024 * 1024 });
    expect(received.map((r) => r.binary)).toEqual([true, false]);
    expect(received[0]!.length).toBe(6 * 1024 * 1024);
  }, 30_000);
});
