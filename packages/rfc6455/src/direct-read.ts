/**
 * Direct reads for plain TCP sockets: the socket reads into one buffer shared by every connection
 * and hands each read to a callback, instead of allocating a Buffer per read and passing it
 * through the Readable stream (`push`, its state machine, a `'data'` event).
 *
 * This is what Node's documented `onread` option of `net.Socket` / `net.connect()` does; that
 * option exists only for sockets the application creates, so for accepted sockets (and for the
 * client's, to keep one path) the same three fields are set and `useUserBuffer` is called, exactly
 * as Node does for `onread`. The fields are found on a probe socket created with `onread`; when
 * anything is not as expected (another Node, a TLS socket, a socket with buffered or paused input)
 * nothing is changed and the connection reads through the stream as before.
 * `RFC6455_NO_DIRECT_READ=1` turns it off.
 *
 * What stays the same: end of input, errors and `'close'` come through the stream as before;
 * `pause()` and `resume()` stop and start reading (Node's `onread` handling in `net.Socket`).
 * The callback must not keep any reference into the shared buffer: see
 * `Protocol.receiveTransient`.
 */
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { sharedReadBuffer } from './codec/mask.js';

interface Fields {
  buffer: symbol;
  callback: symbol;
  generator: symbol;
}

/** undefined: not probed yet; null: unavailable. */
let fields: Fields | null | undefined;

function probe(): Fields | null {
  if (process.env.RFC6455_NO_DIRECT_READ === '1') return null;
  try {
    const marker = Buffer.alloc(1);
    const callback = (): void => {};
    const socket = new Socket({ onread: { buffer: marker, callback } } as ConstructorParameters<typeof Socket>[0]);
    const bySymbol = new Map(Object.getOwnPropertySymbols(socket).map((s) => [s.description, s]));
    const found = { buffer: bySymbol.get('kBuffer'), callback: bySymbol.get('kBufferCb'), generator: bySymbol.get('kBufferGen') };
    const record = socket as unknown as Record<symbol, unknown>;
    const ok =
      found.buffer !== undefined && found.callback !== undefined && found.generator !== undefined &&
      record[found.buffer] === marker && record[found.callback] === callback && record[found.generator] === null;
    socket.destroy();
    return ok ? (found as Fields) : null;
  } catch {
    return null;
  }
}

interface TcpHandle {
  useUserBuffer?: (buffer: Uint8Array) => void;
}

/**
 * Switches `stream` to direct reads with `onRead` (called as `onRead.call(stream, nread, buffer)`:
 * the bytes are `buffer[0, nread)`). Returns false, changing nothing, where that is not possible.
 */
export function readDirect(stream: Duplex, onRead: (this: Socket, nread: number, buffer: Buffer) => void): boolean {
  if (fields === undefined) fields = probe();
  if (fields === null) return false;
  // A plain net.Socket only: TLS sockets and HTTP/2 streams read through their own layers.
  if (Object.getPrototypeOf(stream) !== Socket.prototype) return false;
  const socket = stream as Socket & Record<symbol, unknown> & { _handle?: TcpHandle | null };
  const handle = socket._handle;
  if (
    !handle || typeof handle.useUserBuffer !== 'function' || socket.destroyed || !socket.readable ||
    socket.readableLength !== 0 || socket.isPaused() || socket[fields.buffer] !== null
  ) {
    return false;
  }
  // 64 KiB (what libuv is offered per read; Node's own default as well), in the masking engine's
  // WebAssembly memory when it has one, so that masked payloads are unmasked where they were read.
  const shared = sharedReadBuffer();
  socket[fields.buffer] = shared;
  socket[fields.callback] = onRead;
  handle.useUserBuffer(shared);
  return true;
}
