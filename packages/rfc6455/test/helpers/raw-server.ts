/**
 * A raw TCP server for client tests: reads the request head and answers with whatever response
 * the test builds from it (a wrong accept, an unoffered subprotocol, ...). Closes its sockets on
 * `close()`. With the 101 answer most of them send (switching) and the wait for connect()'s
 * HandshakeError (handshakeFailure).
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { connect, HandshakeError, type ConnectOptions } from 'rfc6455';
import { acceptKey } from '../../src/handshake/server.js';

export interface RawServer {
  port: number;
  url: string;
  /** Request heads received, in order. */
  requests: string[];
  close(): Promise<void>;
}

/** `respond(head, socket)` is called once per connection with the request head text. */
export async function rawServer(respond: (head: string, socket: Socket) => void): Promise<RawServer> {
  const sockets = new Set<Socket>();
  const requests: string[] = [];
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let acc = '';
    let done = false;
    socket.on('data', (chunk: Buffer) => {
      if (done) return;
      acc += chunk.toString('latin1');
      const end = acc.indexOf('\r\n\r\n');
      if (end < 0) return;
      done = true;
      const head = acc.slice(0, end);
      requests.push(head);
      respond(head, socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `ws://127.0.0.1:${port}/`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** The Sec-WebSocket-Key of a request head. */
export function requestKey(head: string): string {
  return /^sec-websocket-key:\s*(\S+)/im.exec(head)?.[1] ?? '';
}

/** A 101 answer to a request head: its right Sec-WebSocket-Accept (or `accept`), then `extra` header lines. */
export function switching(head: string, extra: string[] = [], accept = acceptKey(requestKey(head))): string {
  return ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${accept}`, ...extra, '', ''].join('\r\n');
}

/** The HandshakeError connect() rejects with (without permessage-deflate unless asked); fails the test if it connects. */
export async function handshakeFailure(url: string | URL, options: ConnectOptions = {}): Promise<HandshakeError> {
  const error = await connect(url, { perMessageDeflate: false, ...options }).then(
    (conn) => {
      conn.terminate();
      throw new Error('connected, expected a HandshakeError');
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(HandshakeError);
  return error as HandshakeError;
}
