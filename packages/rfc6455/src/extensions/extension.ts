/**
 * The seam between the protocol and a per-message extension (RFC 6455 §9, RFC 7692).
 *
 * The protocol owns framing: it sets RSV1 on the first frame of a message it compressed, and hands
 * the payloads of a received message whose first frame had RSV1 to `decompress`, one frame at a
 * time, pausing its parser while a callback is awaited.
 *
 * Either method may do its work at once and return the result, a Buffer: the callback is then
 * never called, and a failure is thrown. Otherwise it returns anything else (only a Buffer counts)
 * and calls the callback exactly once, never synchronously. Within a direction, results come in
 * the order the calls were made.
 */
export interface MessageExtension {
  /** Extension token as negotiated, e.g. `permessage-deflate`. */
  readonly name: string;
  /**
   * Compresses the next piece of an outgoing message. `fin` marks the message's last piece; the
   * result of the last piece has the 0x00 0x00 0xff 0xff tail removed (RFC 7692 §7.2.1).
   */
  compress(data: Buffer, fin: boolean, cb: (err: Error | null, result?: Buffer) => void): unknown;
  /**
   * Inflates the payload of one frame of a compressed incoming message; `fin` marks its last frame
   * (the tail is appended before inflating, RFC 7692 §7.2.2). Inflated output of one message is
   * counted while inflating: beyond `maxMessageSize` the callback gets a `MessageTooBigError`
   * and inflation stops at once.
   */
  decompress(data: Buffer, fin: boolean, cb: (err: Error | null, result?: Buffer) => void): unknown;
  /**
   * Optional. Inflates a frame of a message read as a stream a slice at a time, on the calling
   * thread: at most `budget` bytes of output per call, so that no more is inflated than the
   * reader takes. The first call gives the frame's payload; while the result's `done` is false,
   * the next call, with `data` undefined, continues it. Failures are thrown. Returns undefined,
   * having done nothing, when the frame cannot be inflated this way (it then goes to `decompress`).
   */
  inflateSlice?: ((data: Buffer | undefined, fin: boolean, budget: number) => InflatedSlice | undefined) | undefined;
  /** Releases zlib contexts. Idempotent; later calls to compress/decompress fail. */
  dispose(): void;
  /**
   * Optional. Set when every outgoing message is compressed on its own, from a fresh context (no
   * context takeover in our direction): a key naming the settings, the same for every connection
   * whose output for a given message is the same bytes. A prepared message sent to many
   * connections is then compressed once per key, with `compressStandalone`.
   */
  readonly standaloneKey?: string | undefined;
  /**
   * Compresses a whole message as `compress(data, true)` would from a fresh context, outside the
   * connection's own queue (same return and callback rules). Present when `standaloneKey` can be set.
   */
  compressStandalone?: ((data: Buffer, cb: (err: Error | null, result?: Buffer) => void) => unknown) | undefined;
}

/** A slice of a frame's inflated output (see {@link MessageExtension.inflateSlice}). */
export interface InflatedSlice {
  /** The output of this call (may be empty). */
  data: Buffer;
  /** The frame is inflated to its end; false: call again to continue it. */
  done: boolean;
}
