/**
 * `createWebSocketStream(conn)`: a connection as a Node `Duplex`, as `ws`'s function of the same
 * name makes one: what is written goes out as messages (a chunk a message), the messages received
 * are read as chunks. For piping: a TCP tunnel, a file upload, `stream.pipeline()`.
 */
import { Duplex, type DuplexOptions } from 'node:stream';
import { CloseCode } from './codec/constants.js';
import type { Message, WebSocketConnection } from './connection.js';
import { ConnectionClosedError } from './errors.js';

/**
 * Close codes that say the stream ended where its sender meant it to: a normal close (1000), going
 * away (1001), no code given (1005), or the application's own code (3000-4999). Every other code
 * (1002, 1003, 1007-1011, 1012-1015: a failure, a refusal, a restart) may have cut it short.
 */
function isCleanClose(code: number): boolean {
  return code === CloseCode.Normal || code === CloseCode.GoingAway || code === CloseCode.NoStatus || (code >= 3000 && code <= 4999);
}

/**
 * Why the messages of a closed connection may be incomplete, or undefined after a clean close
 * (1000, 1001, 1005 and the application's own 3000-4999, whichever side sent them, whatever the
 * transport did after that close frame): the error the connection failed with when it has a close
 * code, else a ConnectionClosedError with the code
 * (1006 for a transport that ended without a closing handshake: EOF, a reset, a timeout,
 * terminate()) and the socket error or timeout, if any, as its cause.
 */
function failureOf(conn: WebSocketConnection): Error | undefined {
  const failure = conn.error;
  // The error the connection failed with, when it tells the code (a protocol error, a limit).
  if (typeof (failure as { closeCode?: unknown } | undefined)?.closeCode === 'number') return failure;
  const code = conn.closeStatus ?? CloseCode.Abnormal;
  // A clean code is one the peer's close frame carried, and the peer sends nothing after its close
  // frame: every message came, whatever happened to the transport after it (fixed bug: a transport
  // error there, the ECONNRESET of a browser that sends 1001 as it leaves the page and drops the
  // connection without waiting for our answer, destroyed the stream with an error, and a
  // pipeline() from it rejected a whole transfer).
  if (isCleanClose(code)) return undefined;
  // A socket error or a timeout is its cause.
  const message = code === CloseCode.Abnormal ? 'the connection ended without a closing handshake' : `the connection was closed with ${code}`;
  return new ConnectionClosedError(code, conn.closeReason ?? '', message, failure === undefined ? undefined : { cause: failure });
}

/** Options of {@link createWebSocketStream}: the Duplex's own (highWaterMark, objectMode...). */
export type WebSocketStreamOptions = Omit<DuplexOptions, 'read' | 'write' | 'writev' | 'final' | 'destroy' | 'construct'>;

/**
 * Wraps an open connection in a Duplex.
 *
 * - Reading: each message is one chunk, a Buffer (text as its UTF-8 bytes), or, with
 *   `readableObjectMode`, a string for text. (Without object mode the readable side is a byte
 *   stream: an empty message adds nothing, and `read()`, so `for await`, joins the chunks that
 *   wait; `data` events of a flowing stream keep the boundaries.) When the reader falls behind
 *   (`push()` returns false) the connection is paused (`conn.pause()`: TCP backpressure on the
 *   peer) until it reads again, and the rest of the socket read being parsed waits unparsed with
 *   it. After a clean close (1000, 1001, 1005 for no code, or an application code 3000-4999, from
 *   either side) the readable side ends once the messages received before are read, even when the
 *   transport fails after that close frame (`conn.error` an ECONNRESET: a browser leaving a page).
 *   After any other end the stream is destroyed with an error once those messages are read, so
 *   that a `pipeline()` from it rejects instead of passing a cut transfer as whole: the error the connection failed with when it
 *   carries a `closeCode` (a ProtocolError, a MessageTooBigError), else a ConnectionClosedError
 *   with the code and reason: 1006 for a transport that ended without a closing handshake (EOF, a
 *   reset, `terminate()`, a close or keepalive timeout; the socket error or timeout as its
 *   `cause`), or the code sent or received for any other close (1002, 1003, 1007-1015). (`ws` ends
 *   it then, erroring only on a failure of its own.)
 * - Writing: each chunk is sent as one message: Buffers as binary, strings (with
 *   `decodeStrings: false` or `writableObjectMode`) as text. A write's callback waits for the
 *   send, so the writable side's backpressure is the connection's.
 * - `end()` closes the connection (1000) once what was written is sent. `destroy()` and leaving a
 *   `for await` loop early close it (1000) after the message being sent, dropping the chunks still
 *   buffered, as Node's `destroy()` drops them; `destroy(error)` aborts it.
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
    const error = failureOf(conn);
    if (error === undefined) duplex.push(null);
    else if (duplex.readableLength === 0) duplex.destroy(error);
    else {
      // Chunks still wait for the reader: destroy() would drop them. The error comes once the
      // last of them has been read (every way of reading, flowing, pipe() and async iteration
      // included, takes its chunks through read()).
      const read = duplex.read;
      duplex.read = function (this: Duplex, size?: number) {
        const chunk: unknown = read.call(this, size);
        if (this.readableLength === 0 && !this.destroyed) this.destroy(error);
        return chunk;
      };
    }
  };
  const onClose = (): void => {
    // A reader that fell behind paused the connection, and the messages read with the close frame
    // (or before the transport ended) wait in it: they are read first, then the stream ends or
    // errors (fixed bug: the stream ended without them, and a pipeline from it finished without
    // error, short of everything the peer sent before closing).
    if (conn.isPaused) endWhenRead = true;
    else end();
  };
  // A failure is read from conn.error and the close code at 'close' (the connection records its
  // error whether or not an 'error' listener exists).
  conn.once('close', onClose);
  if (conn.closed) queueMicrotask(onClose);
  return duplex;
}
