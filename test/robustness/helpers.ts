/**
 * Helpers for the robustness suite: servers that are always closed, raw sockets that record
 * everything the server wrote and whether it closed, hand-made hybi-00 heads, a self-signed cert.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Http2Server } from 'node:http2';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serve, type ServeOptions, type UpgradeTarget, type WebSocketServer } from 'rfc6455';
import { parseResponse, type RawResponse } from '../../packages/rfc6455/test/helpers/raw-client.js';

/** Listens on 127.0.0.1, on a free port; resolves with the port. */
export function listen(server: Server | Http2Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

/** Closes an HTTP server at once, its open connections too. */
export function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

const servers = new Set<WebSocketServer>();
const sockets = new Set<Socket>();

/** Starts a server on 127.0.0.1 port 0; `closeAll()` (in afterEach) stops it. */
export async function startServer<S = unknown>(options: ServeOptions<S>, target: UpgradeTarget<S>): Promise<WebSocketServer> {
  const server = await serve({ host: '127.0.0.1', port: 0, ...options }, target);
  servers.add(server);
  return server;
}

/** Closes every server and raw socket opened through these helpers. */
export async function closeAll(): Promise<void> {
  for (const s of sockets) s.destroy();
  sockets.clear();
  const all = [...servers];
  servers.clear();
  await Promise.all(all.map((s) => s.close()));
}

/** A raw TCP socket (tracked for cleanup) that records what it reads. */
export interface Recorder {
  socket: Socket;
  /** Everything received so far. */
  data(): Buffer;
  /** Resolves when the socket is closed (by either side). */
  closed: Promise<void>;
  isClosed(): boolean;
  /** The HTTP response head received, if any. */
  response(): RawResponse | undefined;
  /** Resolves once `test(data)` holds or the socket closes. */
  until(test: (data: Buffer) => boolean): Promise<Buffer>;
}

export function openRaw(port: number): Promise<Recorder> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ port, host: '127.0.0.1' });
    sockets.add(socket);
    let received = Buffer.alloc(0);
    let closed = false;
    let waiters: Array<() => void> = [];
    const wake = (): void => {
      const w = waiters;
      waiters = [];
      for (const f of w) f();
    };
    const closedPromise = new Promise<void>((r) =>
      socket.once('close', () => {
        closed = true;
        sockets.delete(socket);
        wake();
        r();
      }),
    );
    socket.on('data', (c: Buffer) => {
      received = Buffer.concat([received, c]);
      wake();
    });
    socket.on('error', () => undefined);
    socket.once('connect', () => {
      socket.setNoDelay(true);
      resolve({
        socket,
        data: () => received,
        closed: closedPromise,
        isClosed: () => closed,
        response: () => parseResponse(received),
        async until(test) {
          while (!test(received) && !closed) await new Promise<void>((r) => waiters.push(r));
          return received;
        },
      });
    });
    socket.once('error', reject);
  });
}

/** Sends `request` and waits until the server closes; returns the parsed response (if any). */
export async function exchange(port: number, request: string | Buffer): Promise<{ response: RawResponse | undefined; bytes: Buffer }> {
  const raw = await openRaw(port);
  raw.socket.write(request);
  await raw.closed;
  return { response: raw.response(), bytes: raw.data() };
}

/** A hybi-00 (draft-76) request head with the classic example keys; key3 is NOT included. */
export function hybi00Head(port: number, path = '/'): string {
  return [
    `GET ${path} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    'Upgrade: WebSocket',
    'Connection: Upgrade',
    'Origin: http://example.com',
    'Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5',
    'Sec-WebSocket-Key2: 12998 5 Y3 1  .P00',
    '',
    '',
  ].join('\r\n');
}

/** A self-signed certificate for 127.0.0.1, made by the openssl CLI. */
export function selfSignedCert(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'rfc6455-robust-'));
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `test` every `everyMs` at most `times` times; true as soon as it holds. */
export async function eventually(test: () => boolean, times = 200, everyMs = 10): Promise<boolean> {
  for (let i = 0; i < times; i++) {
    if (test()) return true;
    await sleep(everyMs);
  }
  return test();
}
