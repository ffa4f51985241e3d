/**
 * Helpers for the HTTP/2 (RFC 8441) suites: the committed self-signed certificate
 * (test/fixtures/tls, CN=localhost, SAN localhost + 127.0.0.1), TLS options for our client, and
 * small promise helpers around Node's http2 client for hand-made extended CONNECTs.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { connect as h2connect, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';

const FIXTURES = resolve(__dirname, '../fixtures/tls');

/** The server's key and certificate (valid until 2036). */
export const TLS = {
  key: readFileSync(resolve(FIXTURES, 'key.pem')),
  cert: readFileSync(resolve(FIXTURES, 'cert.pem')),
};

/** What our client passes as `tls`: trust the self-signed certificate. */
export const CLIENT_TLS = { ca: TLS.cert };

/** https://127.0.0.1:port for a wss://127.0.0.1:port/ URL. */
export function originOf(wssUrl: string): string {
  const u = new URL(wssUrl);
  return `https://${u.host}`;
}

/** Opens a Node http2 client session trusting the fixture certificate; resolves once SETTINGS arrived. */
export function openSession(origin: string): Promise<ClientHttp2Session> {
  return new Promise((resolvePromise, reject) => {
    const session = h2connect(origin, { ca: TLS.cert });
    session.once('error', reject);
    session.once('remoteSettings', () => {
      session.removeListener('error', reject);
      session.on('error', () => undefined);
      resolvePromise(session);
    });
  });
}

/** Closes a session and waits until it is gone. */
export function closeSession(session: ClientHttp2Session): Promise<void> {
  if (session.destroyed) return Promise.resolve();
  return new Promise((r) => {
    session.once('close', () => r());
    session.close();
  });
}

export interface StreamOutcome {
  /** The response headers, when the server answered. */
  headers?: IncomingHttpHeaders;
  status?: number;
  body: Buffer;
  /** The RST_STREAM code the stream closed with (0 = NO_ERROR). */
  rstCode: number;
}

/**
 * Sends a request (CONNECT or otherwise) on `session`, optionally writes `send`, and resolves once
 * the stream is closed, with what came back. `endStream` ends the request after the headers.
 */
export function exchange(session: ClientHttp2Session, headers: OutgoingHttpHeaders, send?: Buffer, endStream = false): Promise<StreamOutcome> {
  return new Promise((resolvePromise) => {
    const stream: ClientHttp2Stream = session.request(headers, { endStream });
    const chunks: Buffer[] = [];
    const outcome: StreamOutcome = { body: Buffer.alloc(0), rstCode: 0 };
    stream.on('error', () => undefined);
    stream.once('response', (h) => {
      outcome.headers = h;
      outcome.status = Number(h[':status']);
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    // The server ended its side (a refusal): end ours so that the stream closes.
    stream.once('end', () => {
      if (!stream.closed) stream.close();
    });
    if (send) stream.write(send);
    stream.once('close', () => {
      outcome.body = Buffer.concat(chunks);
      outcome.rstCode = stream.rstCode ?? 0;
      resolvePromise(outcome);
    });
  });
}

/** A masked client frame (RFC 6455 §5.2), for hand-written streams. */
export function clientFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  const mask = Buffer.from([0x11, 0x22, 0x33, 0x44]);
  const len = payload.length;
  const head = len < 126 ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | len]) : Buffer.alloc(4);
  if (len >= 126) {
    if (len > 0xffff) throw new RangeError('clientFrame: keep test frames under 64 KiB');
    head[0] = (fin ? 0x80 : 0) | opcode;
    head[1] = 0x80 | 126;
    head.writeUInt16BE(len, 2);
  }
  const masked = Buffer.alloc(len);
  for (let i = 0; i < len; i++) masked[i] = payload[i]! ^ mask[i % 4]!;
  return Buffer.concat([head, mask, masked]);
}
