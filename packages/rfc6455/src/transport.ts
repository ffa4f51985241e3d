/**
 * A Transport is what a connection runs over: a Duplex carrying the frames, plus an orderly end
 * and an abort, plus facts about the peer. TCP and TLS sockets are one kind; an HTTP/2 stream
 * (RFC 8441) another: its orderly end is END_STREAM and its abort RST_STREAM(CANCEL), which
 * `destroy()` alone would not send.
 */
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';

/**
 * What a WebSocketConnection runs over: a byte stream plus an orderly end and an abort. Build one
 * with {@link socketTransport} or {@link http2StreamTransport}.
 */
export interface Transport {
  /** The byte stream carrying the frames (the socket, or the HTTP/2 stream). */
  readonly stream: Duplex;
  /** `tcp` (ws:), `tls` (wss:) or `http2` (an RFC 8441 stream). */
  readonly kind: 'tcp' | 'tls' | 'http2';
  /** True for TLS (wss:) and for HTTP/2 over TLS. */
  readonly secure: boolean;
  /** Local IP address, undefined when unknown (e.g. the socket is gone). */
  readonly localAddress: string | undefined;
  /** Local port, undefined when unknown. */
  readonly localPort: number | undefined;
  /** The peer's IP address, undefined when unknown. */
  readonly remoteAddress: string | undefined;
  /** The peer's port, undefined when unknown. */
  readonly remotePort: number | undefined;
  /** Orderly end of our side (TCP FIN / END_STREAM) after everything written was sent. */
  end(): void;
  /**
   * Orderly end of our side on a server once the WebSocket closing handshake is complete (a close
   * frame both sent and received) or it failed the connection (its close frame sent: the peer's
   * input is not processed any more, RFC 6455 §7.1.7), when there is nothing more to take from
   * the peer. An HTTP/2 stream ends with END_STREAM and is then reset with NO_ERROR, unless the
   * peer has ended its side already: RFC 9113 §8.1 lets a server that has sent its END_STREAM ask
   * the client so to stop sending without error, and a client that never ends its side (Firefox)
   * then holds nothing open until `closeTimeout`. Optional: without it, {@link Transport.end} is
   * used.
   */
  endClosed?(): void;
  /** Abortive close (TCP RST or destroy / RST_STREAM CANCEL). */
  abort(): void;
}

/**
 * A Transport over a net.Socket or tls.TLSSocket. Addresses are read when asked (each one is a
 * system call), and the object holds nothing but the socket: one small object per connection.
 */
export class SocketTransport implements Transport {
  readonly stream: Socket;
  constructor(socket: Socket) {
    this.stream = socket;
  }
  get secure(): boolean {
    return this.stream instanceof TLSSocket;
  }
  get kind(): 'tcp' | 'tls' {
    return this.secure ? 'tls' : 'tcp';
  }
  get localAddress(): string | undefined {
    return this.stream.localAddress;
  }
  get localPort(): number | undefined {
    return this.stream.localPort;
  }
  get remoteAddress(): string | undefined {
    return this.stream.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.stream.remotePort;
  }
  end(): void {
    endSocket(this.stream);
  }
  abort(): void {
    abortSocket(this.stream);
  }
}

/** A socket transport's orderly end, for callers that hold the socket and not a Transport object. */
export function endSocket(socket: Socket): void {
  // A second end() would make Node build an ERR_STREAM_ALREADY_FINISHED error for nothing.
  if (!socket.destroyed && !socket.writableEnded) socket.end();
}

/**
 * A socket transport's abort: a TCP RST where Node can send one, else destroy. Not a RST once our
 * side was ended and has not finished ending: from the moment Node asks libuv to shut the socket
 * down until libuv has done it, a reset fails (EINVAL), and Node then emits an 'error' and never
 * closes the handle, so no 'close' ever comes (fixed bug: a connection aborted just after its
 * orderly end, as a terminate() or the close timer may, stayed open for good, and server.close()
 * never resolved; seen once in about thirty runs of test/robustness/random-operations.test.ts).
 */
export function abortSocket(socket: Socket): void {
  if (socket.destroyed) return;
  if (
    !(socket instanceof TLSSocket) &&
    typeof socket.resetAndDestroy === 'function' &&
    socket.readyState !== 'opening' &&
    (!socket.writableEnded || socket.writableFinished)
  ) {
    try {
      socket.resetAndDestroy();
      return;
    } catch {
      // Not a TCP socket (a Unix domain socket, a named pipe): Node throws ERR_INVALID_HANDLE_TYPE
      // and changes nothing; a plain destroy is the abort there.
    }
  }
  socket.destroy();
}

/** Wraps a net.Socket or tls.TLSSocket. */
export function socketTransport(socket: Socket): Transport {
  return new SocketTransport(socket);
}
