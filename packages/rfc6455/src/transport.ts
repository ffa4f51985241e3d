/**
 * A Transport is what a connection runs over: a Duplex carrying the frames, plus an orderly end
 * and an abort, plus facts about the peer. TCP and TLS sockets are one kind; an HTTP/2 stream
 * (RFC 8441) another: its orderly end is END_STREAM and its abort RST_STREAM(CANCEL), which
 * `destroy()` alone would not send.
 */
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';

export interface Transport {
  readonly stream: Duplex;
  readonly kind: 'tcp' | 'tls' | 'http2';
  /** True for TLS (wss:) and for HTTP/2 over TLS. */
  readonly secure: boolean;
  readonly localAddress: string | undefined;
  readonly localPort: number | undefined;
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  /** Orderly end of our side (TCP FIN / END_STREAM) after everything written was sent. */
  end(): void;
  /** Abortive close (TCP RST or destroy / RST_STREAM CANCEL). */
  abort(): void;
}

/** Wraps a net.Socket or tls.TLSSocket. */
export function socketTransport(socket: Socket): Transport {
  const secure = socket instanceof TLSSocket;
  return {
    stream: socket,
    kind: secure ? 'tls' : 'tcp',
    secure,
    localAddress: socket.localAddress,
    localPort: socket.localPort,
    remoteAddress: socket.remoteAddress,
    remotePort: socket.remotePort,
    end: () => {
      if (!socket.destroyed) socket.end();
    },
    abort: () => {
      if (!socket.destroyed) {
        if (typeof socket.resetAndDestroy === 'function' && !secure && socket.readyState !== 'opening') socket.resetAndDestroy();
        else socket.destroy();
      }
    },
  };
}
