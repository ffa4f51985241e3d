/**
 * `createWebSocketStream(conn)`: a connection as a Node `Duplex`, as `ws`'s function of the same
 * name makes one: what is written goes out as messages (a chunk a message), the messages received
 * are read as chunks. For piping: a TCP tunnel, a file upload, `stream.pipeline()`.
 */
import { Duplex, type DuplexOptions } from 'node:stream';
import { CloseCode } from './codec/constants.js';
import type { Message, WebSocketConnection } from './connection.js';

/** Options of {@link createWebSocketStream}: the Duplex's own (highWaterMark, objectMode...). */
export type WebSocketStreamOptions = Omit<DuplexOptions, 'read' | 'write' | 'writev' | 'final' | 'destroy' | 'construct'>;

/**
 * Wraps an open connection in a Duplex.
 *
 * - Reading: each message is one chunk, a Buffer (text as its UTF-8 bytes), or, with
 *   `readableObjectMode`, a string for text. When the reader falls behind (`push()` returns false)
 *   the connection is paused (`conn.pause()`: TCP backpressure on the peer) until it reads again,
 *   and the rest of the socket read being parsed waits unparsed with it.
 *   The readable side ends when the connection closes, once the messages received before are
 *   read; a connection that failed (a protocol error, a limit, a socket error) destroys the stream
 *   with that error.
 * - Writing: each chunk is sent as one message: Buffers as binary, strings (with
 *   `decodeStrings: false` or `writableObjectMode`) as text. A write's callback waits for the
 *   send, so the writable side's backpressure is the connection's.
 * - `end()` closes the connection (1000) once what was written is sent, as do `destroy()` and
 *   leaving a `for await` loop early; `destroy(error)` aborts it.
 */
export function createWebSocketStream(conn: WebSocketConnection, options: WebSocketStreamOptions = {}): Duplex {
  const textAsString = options.readableObjectMode === true || options.objectMode === true;
  let ended = false;
  // The connection closed while messages still waited for the reader (paused): the readable side
  // ends once they are read.
  let endWhenRead = false;
  const duplex = new Duplex({
    ...options,
    read() {
      conn.resume();
      if (endWhenRead && !conn.isPaused) end();
    },
    write(chunk: Buffer | string, _encoding, callback) {
      conn.send(chunk, { binary: typeof chunk !== 'string' }).then(() => callback(), callback);
    },
    final(callback) {
      conn.close(CloseCode.Normal).then(() => callback(), callback);
    },
    destroy(error, callback) {
      conn.off('message', onMessage);
      if (!conn.closed) {
        // Leaving a `for await` loop early destroys the stream with an AbortError: that is the
        // reader being done, so a closing handshake too; any other error aborts the connection.
        if (error && error.name !== 'AbortError') conn.terminate();
        else conn.close(CloseCode.Normal).catch(() => undefined);
      }
      callback(error);
    },
  });
  const onMessage = (data: Message, binary: boolean): void => {
    const chunk = typeof data === 'string' ? (textAsString ? data : Buffer.from(data)) : textAsString && !binary ? data.toString() : data;
    // The rest of the read being parsed is held back too, as WebSocketStream's readable does
    // (fixed bug: with conn.pause() alone it went on into the connection's own queue behind the
    // readable, up to readHighWaterMark more than the readable's mark).
    if (!duplex.push(chunk)) conn.pauseHolding();
  };
  conn.on('message', onMessage);
  const end = (): void => {
    if (ended) return;
    ended = true;
    conn.off('message', onMessage);
    const error = conn.error;
    if (error !== undefined) duplex.destroy(error);
    else duplex.push(null);
  };
  const onClose = (): void => {
    // A reader that fell behind paused the connection, and the messages read with the close frame
    // wait in it: they are read first (fixed bug: the stream ended without them, and a pipeline
    // from it finished without error, short of everything the peer sent before closing).
    if (conn.isPaused && conn.error === undefined) endWhenRead = true;
    else end();
  };
  // A failure is read from conn.error at 'close' (the connection records it whether or not an
  // 'error' listener exists).
  conn.once('close', onClose);
  if (conn.closed) queueMicrotask(onClose);
  return duplex;
}
