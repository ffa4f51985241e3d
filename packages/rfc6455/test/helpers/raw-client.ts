/**
 * A raw TCP peer for tests: performs an opening handshake by hand (or sends any request bytes),
 * then writes hand-made frames and reads the server's frames one at a time. It records who closed
 * TCP first, so tests can check RFC 6455 §7.1.1 (the server closes first).
 */
import { randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { decodeFrame, frame, type DecodedFrame, type FrameSpec } from './frames.js';

export interface RawResponse {
  status: number;
  statusLine: string;
  /** Lower-cased header names; repeated headers joined with ', '. */
  headers: Record<string, string>;
  body: Buffer;
}

/** Parses an HTTP/1.1 response head (and what follows it as the body). */
export function parseResponse(bytes: Buffer): RawResponse | undefined {
  const end = bytes.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const lines = bytes.subarray(0, end).toString('latin1').split('\r\n');
  const statusLine = lines[0]!;
  const status = Number(/^HTTP\/\d\.\d (\d{3})/.exec(statusLine)?.[1] ?? 0);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return { status, statusLine, headers, body: bytes.subarray(end + 4) };
}

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ port, host: '127.0.0.1' }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/**
 * Sends raw request bytes and collects everything until the server closes the connection (or
 * `timeoutMs` passes, then the socket is destroyed). Resolves with the parsed response.
 */
export async function rawRequest(port: number, request: string | Buffer, timeoutMs = 3000): Promise<RawResponse & { ended: boolean }> {
  const socket = await open(port);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let ended = false;
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => {
      ended = true;
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      const response = parseResponse(Buffer.concat(chunks));
      if (!response) reject(new Error(`no HTTP response: ${JSON.stringify(Buffer.concat(chunks).toString('latin1'))}`));
      else resolve({ ...response, ended });
    });
    socket.write(request);
  });
}

export interface HandshakeInit {
  path?: string;
  /** Extra header lines, e.g. ['Sec-WebSocket-Protocol: chat']. */
  headers?: string[];
  /** Bytes appended right after the request head (frames sent with the handshake). */
  after?: Buffer;
}

/** The text of a valid RFC 6455 upgrade request. */
export function upgradeRequest(port: number, init: HandshakeInit = {}, key = randomBytes(16).toString('base64')): string {
  return [
    `GET ${init.path ?? '/'} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${key}`,
    'Sec-WebSocket-Version: 13',
    ...(init.headers ?? []),
    '',
    '',
  ].join('\r\n');
}

/**
 * The frames a socket (or an HTTP/2 stream) receives, read one at a time (either end of a raw
 * connection), and which side ended first.
 */
export class FrameReader {
  /** True once the peer ended its side (FIN) before we ended ours. */
  peerEndedFirst = false;
  private buffer: Buffer;
  private waiters: Array<() => void> = [];
  private weEnded = false;
  private ended = false;

  /** `initial`: bytes already read from the socket (what came behind a handshake's answer). */
  constructor(
    private readonly socket: Duplex,
    initial: Buffer = Buffer.alloc(0),
  ) {
    this.buffer = initial;
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.wake();
    });
    socket.on('end', () => {
      this.ended = true;
      if (!this.weEnded) this.peerEndedFirst = true;
      this.wake();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
  }

  /** The next frame, or undefined if the connection ended first. */
  async readFrame(): Promise<DecodedFrame | undefined> {
    for (;;) {
      const one = decodeFrame(this.buffer);
      if (one) {
        this.buffer = this.buffer.subarray(one.next);
        return one.frame;
      }
      if (this.ended) return undefined;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** Ends our side of TCP (FIN), once. */
  end(): void {
    if (this.weEnded) return;
    this.weEnded = true;
    this.socket.end();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

export class RawClient {
  readonly socket: Socket;
  readonly response: RawResponse;
  /** Resolves when the TCP connection is fully closed. */
  readonly closed: Promise<void>;
  private readonly frames: FrameReader;

  private constructor(socket: Socket, response: RawResponse) {
    this.socket = socket;
    this.response = response;
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    this.frames = new FrameReader(socket, Buffer.from(response.body));
    socket.on('error', () => undefined);
  }

  /** True once the server ended its side (FIN) before we ended ours. */
  get serverEndedFirst(): boolean {
    return this.frames.peerEndedFirst;
  }

  /** Opens a connection and completes the handshake (expects 101). */
  static async connect(port: number, init: HandshakeInit = {}): Promise<RawClient> {
    const socket = await open(port);
    socket.setNoDelay(true);
    const response = await new Promise<RawResponse>((resolve, reject) => {
      let acc = Buffer.alloc(0);
      const onData = (chunk: Buffer): void => {
        acc = Buffer.concat([acc, chunk]);
        const parsed = parseResponse(acc);
        if (!parsed) return;
        socket.removeListener('data', onData);
        socket.pause();
        resolve(parsed);
      };
      socket.on('data', onData);
      socket.once('close', () => reject(new Error('closed during handshake')));
      socket.write(upgradeRequest(port, init));
      if (init.after) socket.write(init.after);
    });
    if (response.status !== 101) throw new Error(`expected 101, got ${response.statusLine}`);
    const client = new RawClient(socket, response);
    socket.resume();
    return client;
  }

  /** Writes one hand-made frame (masked by default, as a client must). */
  send(spec: FrameSpec): void {
    this.socket.write(frame({ mask: true, ...spec }));
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** The next frame from the server, or undefined if the connection ended first. */
  readFrame(): Promise<DecodedFrame | undefined> {
    return this.frames.readFrame();
  }

  /** Reads frames until a close frame; returns it (undefined if TCP ended without one). */
  async readClose(): Promise<{ code: number | undefined; reason: Buffer; frames: DecodedFrame[] } | undefined> {
    const frames: DecodedFrame[] = [];
    for (;;) {
      const f = await this.readFrame();
      if (!f) return undefined;
      frames.push(f);
      if (f.opcode === 0x8) {
        return { code: f.payload.length >= 2 ? f.payload.readUInt16BE(0) : undefined, reason: f.payload.subarray(2), frames };
      }
    }
  }

  /** Ends our side of TCP (FIN). */
  end(): void {
    this.frames.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}
