/**
 * `injectWS`: a WebSocket client for a Fastify app with no port, for tests. Unlike a faked
 * request object, the handshake is real HTTP/1.1 over an in-memory duplex pair: the request is
 * parsed by the app's own `http.Server` (emitted as a 'connection'), so the same `upgrade`
 * listener, routing, hooks and core handshake run as for a TCP client, and the response is
 * parsed by Node's HTTP client and checked like `connect()` checks it. Not offered:
 * permessage-deflate (no extension is requested) and TLS. `headers` are checked as `connect()`
 * checks them: one of the handshake's own (a Sec-WebSocket-Extensions offer, a Sec-WebSocket-Key...)
 * rejects with a TypeError before the app sees a request.
 */
import type { FastifyInstance } from 'fastify';
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { isIPv6, type Socket } from 'node:net';
import { duplexPair } from 'node:stream';
import {
  buildRequestHeaders,
  checkClientHeaders,
  generateKey,
  HandshakeError,
  socketTransport,
  verifyResponse,
  WebSocketConnection,
  type ConnectionOptions,
} from 'rfc6455';

/** Options of {@link injectWS}: the client connection's options, plus what the request offers. */
export interface InjectWebSocketOptions extends ConnectionOptions {
  /** Subprotocols to offer, in order of preference. */
  protocols?: string | readonly string[] | undefined;
  /** Extra request headers (Authorization, Cookie…). */
  headers?: OutgoingHttpHeaders | undefined;
  /**
   * The client's address, as the app sees it (`request.ip`, `request.socket.remoteAddress`).
   * Default `'127.0.0.1'`, as Fastify's `inject()` has it.
   */
  remoteAddress?: string | undefined;
}

/**
 * Opens a WebSocket to `path` on `app` in memory. Resolves with the client side of the
 * connection; rejects with a HandshakeError (status, headers, body) when the app refuses.
 */
export async function injectWS(app: FastifyInstance, path = '/', options: InjectWebSocketOptions = {}): Promise<WebSocketConnection> {
  // As connect(): a handshake header of the caller's was sent as it was (a Sec-WebSocket-Extensions
  // offer got the app's permessage-deflate, so the app accepted a connection this client then failed
  // with WS_BAD_EXTENSION_RESPONSE, "not offered") or silently replaced (Sec-WebSocket-Key). Fixed bug.
  checkClientHeaders('injectWS()', options.headers);
  await app.ready();
  const [clientEnd, serverEnd] = duplexPair();
  // Either end destroyed ends the other, as a TCP peer sees a connection aborted: Node's duplexPair
  // does not pass a destroy on (the other end's writes and end() then wait for good). Fixed bugs:
  // terminate() on either side left the other connection open until its idleTimeout (its close()
  // hung), and each refusal whose end the client destroyed before the app's socket had finished
  // kept both ends, the request and the response in memory until app.close() (about 58 KB each).
  clientEnd.once('close', () => serverEnd.destroy());
  serverEnd.once('close', () => clientEnd.destroy());
  // A peer address, as a TCP socket has and Fastify's inject() gives (fixed bug: the app's end had
  // none, so request.ip was undefined, and an app with @fastify/rate-limit, whose key is the
  // client's IP, answered every injectWS() 500: "Cannot read properties of undefined").
  const remoteAddress = options.remoteAddress ?? '127.0.0.1';
  Object.assign(serverEnd, { remoteAddress, remoteFamily: isIPv6(remoteAddress) ? 'IPv6' : 'IPv4' });
  app.server.emit('connection', serverEnd);
  const key = generateKey();
  const protocols = typeof options.protocols === 'string' ? [options.protocols] : [...(options.protocols ?? [])];
  const headers: OutgoingHttpHeaders = { host: 'localhost', ...options.headers, ...buildRequestHeaders({ key, protocols }) };
  return new Promise<WebSocketConnection>((resolve, reject) => {
    const request = httpRequest({ method: 'GET', path, headers, createConnection: () => clientEnd as unknown as Socket });
    const statusLineOf = (res: IncomingMessage): string => `HTTP/${res.httpVersion} ${res.statusCode ?? 0} ${res.statusMessage ?? ''}`.trimEnd();
    request.on('error', (error) => {
      clientEnd.destroy();
      reject(error);
    });
    request.on('response', (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        clientEnd.destroy();
        reject(
          new HandshakeError(`server answered ${res.statusCode ?? 0}`, res.statusCode ?? 0, {
            code: 'WS_UNEXPECTED_RESPONSE',
            headers: res.headers,
            statusLine: statusLineOf(res),
            body: Buffer.concat(chunks),
          }),
        );
      });
    });
    request.on('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => {
      try {
        const statusLine = statusLineOf(res);
        const verified = verifyResponse(statusLine, res.headers, { key, protocols });
        resolve(
          new WebSocketConnection(
            socketTransport(socket),
            { side: 'client', protocol: verified.protocol, extensions: '', requestLine: statusLine, url: path, headers: res.headers },
            options,
            head,
          ),
        );
      } catch (error) {
        socket.destroy();
        reject(error as Error);
      }
    });
    request.end();
  });
}
