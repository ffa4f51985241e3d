/**
 * Real third-party clients against our server with permessage-deflate: headless Debian Chromium
 * (driven by playwright-core, a blank page served by the same server) and python-websockets (/usr/bin/python3).
 * Negotiation is asserted on the server side (conn.extensions and the engine's parameters) and
 * compression on the wire (the server socket's bytesRead).
 */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import type { Browser } from 'playwright-core';
import { launchChromium } from '../browser/chromium.js';
import { bytesRead, compressibleText, echoServer, extensionOf, type EchoServer } from './helpers.js';

const PYTHON = '/usr/bin/python3';
const PY_CLIENT = resolve(__dirname, 'python-client.py');

let s: EchoServer;
beforeEach(async () => {
  // The page comes from the same server (plain HTTP requests get it): Chromium blocks a page on
  // about:blank from opening connections to 127.0.0.1 (local network access checks).
  s = await echoServer({
    onRequest: (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><title>deflate</title>');
    },
  });
});
afterEach(async () => {
  await s.server.close();
});

describe('Chromium', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  }, 30_000);
  afterAll(async () => {
    await browser?.close();
  });

  test('Chromium negotiates permessage-deflate with our server; 100 KiB compressible text and binary round-trip compressed', async () => {
    const page = await browser.newPage();
    try {
      await page.goto(s.url.replace(/^ws:/, 'http:'));
      const text = compressibleText(100 * 1024, 17);
      const run = page.evaluate(
        ([url, message]) =>
          new Promise<{ extensions: string; textOk: boolean; binaryOk: boolean; code: number }>((done, fail) => {
            const ws = new WebSocket(url);
            ws.binaryType = 'arraybuffer';
            const bytes = new Uint8Array(200_000).map((_, i) => (i % 100) * 3);
            const got: Array<string | ArrayBuffer> = [];
            ws.onopen = () => {
              ws.send(message);
              ws.send(bytes);
              ws.send(message);
            };
            ws.onmessage = (e: { data: string | ArrayBuffer }) => {
              got.push(e.data);
              if (got.length === 3) ws.close(1000, 'done');
            };
            ws.onerror = () => fail(new Error('websocket error'));
            ws.onclose = (e) => {
              const echoed = got[1] instanceof ArrayBuffer ? new Uint8Array(got[1]) : undefined;
              done({
                extensions: ws.extensions,
                textOk: got[0] === message && got[2] === message,
                binaryOk: echoed !== undefined && echoed.length === bytes.length && echoed.every((b, i) => b === bytes[i]),
                code: e.code,
              });
            };
          }),
        [s.url, text] as const,
      );
      const server = await s.nth(0);
      const seen = await run;
      expect(seen).toEqual({ extensions: server.extensions, textOk: true, binaryOk: true, code: 1000 });
      expect(server.extensions).toMatch(/^permessage-deflate/);
      expect(extensionOf(server)).toBeDefined();
      expect(s.received[0]).toEqual([text, expect.any(Buffer), text]);
      // 300 KiB of compressible payload reached us in far fewer bytes: the browser compressed.
      expect(bytesRead(server)).toBeLessThan(100_000);
      await server.whenClosed;
      expect(server.closeStatus).toBe(1000);
    } finally {
      await page.close();
    }
  });

  test('Chromium decodes compressed messages from live sources (each chunk sent as it came, then an empty final fragment), and the context after them', async () => {
    const page = await browser.newPage();
    try {
      await page.goto(s.url.replace(/^ws:/, 'http:'));
      const count = 5;
      const run = page.evaluate(
        ([url, n]) =>
          new Promise<Array<string | number[]>>((done, fail) => {
            const ws = new WebSocket(url);
            ws.binaryType = 'arraybuffer';
            const got: Array<string | number[]> = [];
            ws.onmessage = (e: { data: string | ArrayBuffer }) => {
              // (Binary as its length and a checksum: the page hands back JSON.)
              got.push(typeof e.data === 'string' ? e.data : [e.data.byteLength, new Uint8Array(e.data).reduce((a, b) => (a * 31 + b) % 1_000_003, 0)]);
              if (got.length === n) ws.close(1000, 'done');
            };
            ws.onerror = () => fail(new Error('websocket error'));
            ws.onclose = () => done(got);
          }),
        [s.url, count] as const,
      );
      const server = await s.nth(0);
      expect(server.extensions).toMatch(/^permessage-deflate/);
      async function* live<T>(chunks: T[]): AsyncGenerator<T> {
        for (const chunk of chunks) yield await Promise.resolve(chunk);
      }
      const text = compressibleText(100 * 1024, 5);
      const bytes = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i % 100) * 3));
      await server.sendStream(live(['héllo ', Buffer.from('€').subarray(0, 2), Buffer.from('€').subarray(2), ' ✓']), { binary: false });
      await server.sendStream(live([text.slice(0, 40_000), text.slice(40_000)]), { binary: false, fragmentSize: 16_384 });
      await server.sendStream(live([bytes]));
      await server.sendStream(live<Buffer>([]));
      await server.send(text);
      const checksum = bytes.reduce((a, b) => (a * 31 + b) % 1_000_003, 0);
      expect(await run).toEqual(['héllo € ✓', text, [bytes.length, checksum], [0, 0], text]);
      await server.whenClosed;
      expect(server.closeStatus).toBe(1000);
    } finally {
      await page.close();
    }
  });
});

interface PythonResult {
  extensions: Array<{
    name: string;
    server_no_context_takeover: boolean;
    client_no_context_takeover: boolean;
    server_max_window_bits: number;
    client_max_window_bits: number;
  }>;
  ok: boolean;
  sent: number;
}

function runPython(url: string, mode: 'default' | 'custom' | 'off'): Promise<PythonResult> {
  return new Promise((resolvePromise, reject) => {
    execFile(PYTHON, [PY_CLIENT, url, mode], { timeout: 20_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`python client failed: ${error.message}\n${stderr}`));
      else resolvePromise(JSON.parse(stdout.trim().split('\n').at(-1)!) as PythonResult);
    });
  });
}

describe('python-websockets', () => {
  test('python client with its default compression negotiates and round-trips compressed', async () => {
    const result = runPython(s.url, 'default');
    const server = await s.nth(0);
    const r = await result;
    expect(r.ok).toBe(true);
    expect(r.extensions).toHaveLength(1);
    expect(r.extensions[0]!.name).toBe('permessage-deflate');
    expect(server.extensions).toMatch(/^permessage-deflate/);
    const params = extensionOf(server)!.params;
    expect(params).toEqual({
      serverNoContextTakeover: r.extensions[0]!.server_no_context_takeover,
      clientNoContextTakeover: r.extensions[0]!.client_no_context_takeover,
      serverMaxWindowBits: r.extensions[0]!.server_max_window_bits,
      clientMaxWindowBits: r.extensions[0]!.client_max_window_bits,
    });
    await server.whenClosed;
    expect(bytesRead(server)).toBeLessThan(r.sent / 3);
  });

  test('python client offering every parameter: granted as offered and round-trips', async () => {
    const result = runPython(s.url, 'custom');
    const server = await s.nth(0);
    const r = await result;
    expect(r.ok).toBe(true);
    expect(extensionOf(server)!.params).toEqual({ serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 10, clientMaxWindowBits: 9 });
    expect(r.extensions[0]).toEqual({
      name: 'permessage-deflate',
      server_no_context_takeover: true,
      client_no_context_takeover: true,
      server_max_window_bits: 10,
      client_max_window_bits: 9,
    });
    await server.whenClosed;
    expect(bytesRead(server)).toBeLessThan(r.sent / 3);
  });

  test('python client without compression: nothing negotiated, round-trips plain', async () => {
    const result = runPython(s.url, 'off');
    const server = await s.nth(0);
    const r = await result;
    expect(r.ok).toBe(true);
    expect(r.extensions).toEqual([]);
    expect(server.extensions).toBe('');
    await server.whenClosed;
    expect(bytesRead(server)).toBeGreaterThan(r.sent);
  });
});
