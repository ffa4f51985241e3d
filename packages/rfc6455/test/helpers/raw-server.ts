/**
 * A raw TCP server for client tests: reads the request head and answers with whatever response
 * the test builds from it (a wrong accept, an unoffered subprotocol, ...). Closes its sockets on
 * `close()`.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

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
