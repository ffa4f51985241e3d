/**
 * A lean HTTP/1.1 front for `serve()`: it reads the request head of each new connection itself,
 * and hands clean, ordinary WebSocket upgrade requests straight to the server's `upgrade`
 * listeners, as a real `http.IncomingMessage`, without Node's HTTP machinery (parser, per-socket
 * state, listener wrappers, response objects). Anything else — plain requests, odd or malformed
 * heads, heads that do not fit — goes back to Node's own HTTP server, with the bytes already read
 * put back on the socket, so that Node answers it exactly as it would have without the front
 * (400, 431, 426, `onRequest`, keep-alive, `upgrade` for requests the front declined).
 *
 * The fast path is deliberately narrow: `GET <origin-form target> HTTP/1.1`, CRLF line endings,
 * header names that are RFC 9110 tokens, values of printable ASCII and HTAB only (no HTAB in a
 * Connection or Content-Length value), no obs-fold, no Transfer-Encoding, no Content-Length
 * other than a single 0, at most 100 header lines (and no more than the server's
 * maxHeadersCount), `Upgrade` and `Connection: upgrade` present (as llhttp requires to report an
 * upgrade), and the whole head smaller than maxHeaderSize. When in doubt, it falls back.
 */
import { IncomingMessage, type Server as HttpServer } from 'node:http';
import type { Socket } from 'node:net';
import { hasHeaderToken, isToken } from './handshake/http.js';
import { rejectUpgrade } from './upgrade.js';

const END_OF_HEAD = Buffer.from('\r\n\r\n', 'latin1');
const EMPTY = Buffer.alloc(0);

/** IncomingMessage's own way of taking a raw header list (Node's HTTP parser calls it the same way). */
type WithHeaderLines = IncomingMessage & { upgrade: boolean; _addHeaderLines(headers: string[], n: number): void };

/** A socket whose request head is still being read. */
interface Pending {
  /**
   * The bytes received so far, in `buffered[0, length)` (undefined until the first chunk that did
   * not complete the head). Its room doubles as bytes come (up to maxHeaderSize), so that a head
   * in many pieces costs about its size, not an object per piece, and a copy per byte amortized.
   */
  buffered: Buffer | undefined;
  /** How many bytes of `buffered` were received. */
  length: number;
  /** performance.now() at accept time. */
  readonly since: number;
}

/** A socket handed to Node's parser after the front held part of its first request. */
interface Handed {
  /** performance.now() at accept time. */
  readonly since: number;
  /** Its request, once Node's parser has read the head (undefined before, and for an upgrade). */
  req: IncomingMessage | undefined;
}

/** Options of {@link Http1Front}. */
export interface Http1FrontOptions {
  /** Heads of this size or more go to Node's parser (which answers 431). */
  maxHeaderSize: number;
  /** ms for the whole head to arrive; past it the socket gets 408 and is closed. */
  handshakeTimeout: number;
  /**
   * Called with a socket handed to Node's parser (not a clean upgrade head) and the
   * performance.now() it was accepted at: serve() times an upgrade from there (see upgradeSince).
   */
  onFallBack?: ((socket: Socket, since: number) => void) | undefined;
}

/** True when this Node offers what the front needs (IncomingMessage#_addHeaderLines). */
export function frontSupported(): boolean {
  return typeof (IncomingMessage.prototype as Partial<WithHeaderLines>)._addHeaderLines === 'function';
}

/**
 * The front of one server. `install()` takes over the server's connection listener (`connection`
 * for http.Server, `secureConnection` for https.Server); the listener it replaced becomes the
 * fallback.
 */
export class Http1Front {
  private readonly pending = new Map<Socket, Pending>();
  /**
   * Sockets handed to Node's parser after the front held part of their first request: Node's
   * headersTimeout and requestTimeout count from the hand-over, so the front holds them to the
   * connection's own deadline until Node has read that request.
   */
  private readonly handed = new Map<Socket, Handed>();
  private readonly maxHeaderSize: number;
  private readonly timeout: number;
  private sweeper: NodeJS.Timeout | undefined;
  private nodeListener: ((socket: Socket) => void) | undefined;
  private readonly onData: (this: Socket, chunk: Buffer) => void;
  private readonly onError: (this: Socket) => void;
  private readonly onFallBack: ((socket: Socket, since: number) => void) | undefined;
  /**
   * While the front emits `upgrade`: the performance.now() its socket was accepted at, so that
   * serve() gives the upgrade what is left of handshakeTimeout after its head (one deadline for
   * both) without a table of its own per connection. undefined otherwise.
   */
  upgradeSince: number | undefined = undefined;

  constructor(
    private readonly server: HttpServer,
    private readonly event: 'connection' | 'secureConnection',
    options: Http1FrontOptions,
  ) {
    this.maxHeaderSize = options.maxHeaderSize;
    this.timeout = options.handshakeTimeout;
    this.onFallBack = options.onFallBack;
    // One pair of listeners per server, shared by every socket (`this` is the socket).
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const front = this;
    this.onData = function (this: Socket, chunk: Buffer) {
      front.data(this, chunk);
    };
    this.onError = function (this: Socket) {
      front.pending.delete(this);
      this.destroy();
    };
  }

  /**
   * Replaces Node's connection listener with the front's. Returns false (and changes nothing)
   * when the server does not have exactly one listener to replace.
   */
  install(): boolean {
    const listeners = this.server.listeners(this.event);
    if (listeners.length !== 1 || !frontSupported()) return false;
    this.nodeListener = listeners[0] as (socket: Socket) => void;
    this.server.removeListener(this.event, this.nodeListener);
    this.server.on(this.event, (socket: Socket) => this.accept(socket));
    // The request of a socket handed over (the sweep forgets the socket once it is complete; an
    // upgrade frees the socket's parser).
    this.server.on('request', (req: IncomingMessage) => {
      if (this.handed.size === 0) return;
      const handed = this.handed.get(req.socket as Socket);
      if (handed !== undefined) handed.req ??= req;
    });
    const period = Math.max(1, Math.min(1000, Math.ceil(this.timeout / 4)));
    this.sweeper = setInterval(() => this.sweep(), period);
    this.sweeper.unref();
    return true;
  }

  /** Stops the timeout sweep and closes every socket whose head is still being read. */
  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const socket of this.pending.keys()) socket.destroy();
    this.pending.clear();
    // Node's parser has those (closeAllConnections() closes them).
    this.handed.clear();
  }

  /** Sockets whose request head is still being read. */
  get pendingCount(): number {
    return this.pending.size;
  }

  private accept(socket: Socket): void {
    this.pending.set(socket, { buffered: undefined, length: 0, since: performance.now() });
    socket.on('error', this.onError);
    socket.on('data', this.onData);
  }

  private release(socket: Socket): void {
    this.pending.delete(socket);
    socket.removeListener('data', this.onData);
    socket.removeListener('error', this.onError);
  }

  /**
   * Hands the socket to Node's HTTP server, the bytes read so far put back first (`whole`: they
   * hold a complete request head).
   */
  private fallBack(socket: Socket, buffered: Buffer | undefined, whole: boolean): void {
    const state = this.pending.get(socket);
    this.release(socket);
    if (state !== undefined) {
      this.onFallBack?.(socket, state.since);
      // Node's headersTimeout (requestTimeout for a body) starts now: for a request the front
      // held part of, the sweep keeps it to the connection's deadline. (Fixed bug: a head
      // trickled for most of handshakeTimeout until it reached maxHeaderSize, which Node counts
      // without line ends, colons and white space and so reads on, or then completed with a
      // body to trickle, had a whole timeout more from Node: up to twice handshakeTimeout in
      // all, where Node alone answers 408 at one.)
      if (!whole || state.buffered !== undefined) this.handed.set(socket, { since: state.since, req: undefined });
    }
    // Buffer what arrives until Node's parser listens (as Node does before an `upgrade` event).
    (socket as { readableFlowing: boolean | null }).readableFlowing = null;
    if (buffered && buffered.length > 0) socket.unshift(buffered);
    this.nodeListener!.call(this.server, socket);
  }

  private data(socket: Socket, chunk: Buffer): void {
    const state = this.pending.get(socket);
    if (state === undefined) return;
    let buffer: Buffer;
    let end: number;
    // A line end without its CR in a head not complete yet: a head that ends so (`\n\n`,
    // `\r\n\n`) never has the CRLFCRLF waited for. Node's parser answers it (fixed bug: it waited
    // for the handshake timeout, then got 408 instead of Node's 400).
    let bareLf: boolean;
    const held = state.buffered;
    if (held === undefined) {
      // The usual case: the whole head in the first chunk.
      buffer = chunk;
      end = chunk.indexOf(END_OF_HEAD);
      bareLf = end < 0 && hasBareLf(chunk, 0);
    } else {
      // A head in pieces: the piece is added to the bytes before it (in room that doubles, up to
      // maxHeaderSize), and the end looked for where they meet. (Fixed bug: every piece was kept
      // as its own Buffer until the head was whole, 100 to 200 bytes of heap for each byte of a
      // head trickled byte by byte: 2 to 3 MB per slowloris socket under the default
      // maxHeaderSize, where Node's parser holds about 10 KB.)
      const before = state.length;
      const length = before + chunk.length;
      let room = held;
      if (length > room.length) {
        room = Buffer.allocUnsafe(Math.max(length, Math.min(2 * room.length, this.maxHeaderSize)));
        held.copy(room, 0, 0, before);
        state.buffered = room;
      }
      chunk.copy(room, before);
      state.length = length;
      buffer = room.subarray(0, length);
      end = buffer.indexOf(END_OF_HEAD, Math.max(0, before - 3));
      bareLf = end < 0 && hasBareLf(buffer, before);
      // (Its first 4 bytes were checked once they had all arrived, below.)
      if (end < 0 && !bareLf && before >= 4 && length < this.maxHeaderSize) return;
    }
    // Anything but a GET goes to Node at once (its body may follow).
    const n = Math.min(buffer.length, 4);
    for (let i = 0; i < n; i++) {
      if (buffer[i] !== GET_SPACE[i]) return this.fallBack(socket, buffer, end >= 0);
    }
    if (end < 0) {
      if (bareLf || buffer.length >= this.maxHeaderSize) return this.fallBack(socket, buffer, false);
      if (held === undefined) {
        // Kept as it is (no copy): the next piece moves both to room of their own.
        state.buffered = chunk;
        state.length = chunk.length;
      }
      return;
    }
    const headLength = end + 4;
    const req = headLength < this.maxHeaderSize ? parseUpgradeHead(socket, buffer, end, this.maxHeaders()) : undefined;
    if (req === undefined) return this.fallBack(socket, buffer, true);
    this.release(socket);
    // What arrives before the connection listens stays buffered (Node does the same).
    (socket as { readableFlowing: boolean | null }).readableFlowing = null;
    this.upgradeSince = state.since;
    try {
      this.server.emit('upgrade', req, socket, headLength === buffer.length ? EMPTY : buffer.subarray(headLength));
    } finally {
      this.upgradeSince = undefined;
    }
  }

  /**
   * Most header lines the fast path takes: FAST_MAX_HEADERS, or the server's `maxHeadersCount`
   * when lower (read at each request: it may be set after serve()). Node keeps at least that many
   * and drops some of the rest; a head with more goes to Node, which decides which.
   */
  private maxHeaders(): number {
    const count = this.server.maxHeadersCount;
    return typeof count === 'number' && count > 0 ? Math.min(count, FAST_MAX_HEADERS) : FAST_MAX_HEADERS;
  }

  private sweep(): void {
    if (this.pending.size === 0 && this.handed.size === 0) return;
    const now = performance.now();
    for (const [socket, handed] of this.handed) {
      if (socket.destroyed || !nodeParsing(socket) || handed.req?.complete === true) {
        this.handed.delete(socket);
      } else if (now - handed.since >= this.timeout) {
        // What Node's headersTimeout and requestTimeout do (its clientError, which serve()
        // answers 408, or only closes while a response is being written), counted from the
        // connection's arrival.
        this.handed.delete(socket);
        const error = Object.assign(new Error('Request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' });
        if (!this.server.emit('clientError', error, socket)) rejectUpgrade(socket, 408, 'Request Timeout');
      }
    }
    for (const [socket, state] of this.pending) {
      if (socket.destroyed) {
        this.pending.delete(socket);
      } else if (socket.readableEnded) {
        // The client ended its side before the head was complete (the server allows half-open
        // connections): as Node's parser does, 400 for a partial request, a quiet end for none.
        this.release(socket);
        if (state.buffered !== undefined) rejectUpgrade(socket, 400, 'Bad Request');
        else socket.end();
      } else if (now - state.since >= this.timeout) {
        // As Node's headersTimeout does: 408, then close.
        this.release(socket);
        rejectUpgrade(socket, 408, 'Request Timeout');
      }
    }
  }
}

const GET_SPACE = Buffer.from('GET ', 'latin1');

/**
 * Most header lines of a head the fast path takes. Node's parser keeps only the first
 * `maxHeadersCount` or so (1000 by default) and drops the rest, so a head with more must be Node's
 * (fixed bug: the front kept every line, and a Sec-WebSocket-Key past Node's limit got a 101 where
 * Node alone answers 400). A real handshake has a dozen or two.
 */
const FAST_MAX_HEADERS = 100;

/**
 * True while Node's HTTP parser is on the socket (it frees it at an upgrade); false too when the
 * socket has no such property (the front then leaves it to Node's own timeouts).
 */
function nodeParsing(socket: Socket): boolean {
  const parser = (socket as { parser?: unknown }).parser;
  return parser !== undefined && parser !== null;
}

/** True when `bytes[from..]` has a LF whose byte before is not a CR (`bytes[from - 1]` included). */
function hasBareLf(bytes: Buffer, from: number): boolean {
  for (let i = bytes.indexOf(0x0a, from); i >= 0; i = bytes.indexOf(0x0a, i + 1)) {
    if (i === 0 || bytes[i - 1] !== 0x0d) return true;
  }
  return false;
}

/** True when `text(from, to)` has a HTAB (a loop: indexOf would search past `to`, to the end of the head). */
function hasTab(text: string, from: number, to: number): boolean {
  for (let i = from + 1; i < to; i++) if (text.charCodeAt(i) === 0x09) return true;
  return false;
}

/**
 * Makes the headers objects: plain objects (prototype Object.prototype, no own properties), made
 * by a constructor rather than a `{}` literal because a connection keeps its headers. V8 gives a
 * literal room for 4 properties inside the object and puts the rest in a separate array; objects
 * made by a constructor get their in-object room from what the first few of them held (in-object
 * slack tracking, up to 8): the 5 to 8 headers of a usual handshake then fit in the object itself.
 */
const HeaderBag = function HeaderBag(): void {} as unknown as new () => Record<string, string | string[]>;
HeaderBag.prototype = Object.prototype;

/**
 * Parses a complete request head (`buffer[0, end)`, end at the CRLFCRLF) when it is a clean
 * WebSocket upgrade request of at most `maxHeaders` header lines; undefined for anything else
 * (Node's parser decides then).
 */
export function parseUpgradeHead(socket: Socket, buffer: Buffer, end: number, maxHeaders: number = FAST_MAX_HEADERS): IncomingMessage | undefined {
  // Bytes: HTAB and printable ASCII only, CR and LF only as CRLF pairs (a bare CR or LF, any
  // other control character, obs-text: Node's parser decides).
  for (let i = 0; i < end; i++) {
    const c = buffer[i]!;
    if (c >= 0x20) {
      if (c > 0x7e) return undefined;
    } else if (c === 0x0d) {
      if (buffer[++i] !== 0x0a) return undefined;
    } else if (c !== 0x09) {
      return undefined;
    }
  }
  const text = buffer.toString('latin1', 0, end);
  let eol = text.indexOf('\r\n');
  if (eol < 0) eol = end;
  // `GET /target HTTP/1.1`: the target is one run of visible characters (the loop above saw the
  // bytes; a space inside it would make this index differ).
  if (eol < 14 || text.charCodeAt(4) !== 0x2f || text.indexOf(' ', 4) !== eol - 9 || !text.startsWith(' HTTP/1.1', eol - 9)) return undefined;
  const tab = text.indexOf('\t');
  if (tab >= 0 && tab < eol) return undefined;
  // Strings a connection keeps (the target, header values) are decoded from the buffer: a slice
  // of `text` would keep the whole head alive as long as the connection.
  const url = eol === 14 ? '/' : buffer.toString('latin1', 4, eol - 9);
  const raw: string[] = [];
  // The headers object, built here while every name is seen once (with a repeated name, Node's
  // own code builds it from rawHeaders instead: joined, dropped or listed as Node does).
  let headers: Record<string, string | string[]> | undefined = new HeaderBag();
  let upgrade = false;
  let connectionUpgrade = false;
  let contentLength = false;
  let start = eol + 2;
  while (start < end) {
    if (raw.length >= 2 * maxHeaders) return undefined;
    let next = text.indexOf('\r\n', start);
    if (next < 0) next = end;
    const colon = text.indexOf(':', start);
    if (colon <= start || colon >= next) return undefined;
    // The usual names, spelled as usual, are shared constants (no two strings per header).
    const known = knownName(text, start, colon - start);
    const name = known === undefined ? text.slice(start, colon) : known[0];
    // A name with white space (obs-fold, `Name : value`) is not a token.
    if (known === undefined && !isToken(name)) return undefined;
    // OWS around the value (SP and HTAB; nothing else passed the byte check).
    let from = colon + 1;
    let to = next;
    while (from < to && (text.charCodeAt(from) === 0x20 || text.charCodeAt(from) === 0x09)) from++;
    while (to > from && (text.charCodeAt(to - 1) === 0x20 || text.charCodeAt(to - 1) === 0x09)) to--;
    const key = known === undefined ? name.toLowerCase() : known[1];
    // A value equal to the last one seen for the same well-known header (Host, Origin,
    // User-Agent...: usually the same on every connection) is that same string, kept once.
    const interned = INTERNED.has(key);
    const last = interned ? lastValues.get(key) : undefined;
    let value: string;
    if (last !== undefined && last.length === to - from && text.startsWith(last, from)) {
      value = last;
    } else {
      // V8 copies slices shorter than 13 characters; longer ones are decoded afresh from the buffer.
      value = to - from < 13 ? common(text.slice(from, to)) : buffer.toString('latin1', from, to);
      if (interned) lastValues.set(key, value);
    }
    switch (name.length) {
      case 7:
        if (key === 'upgrade') upgrade ||= value !== '';
        break;
      case 10:
        if (key === 'connection') {
          // A HTAB in a Connection value: Node's parser decides. llhttp 9.3 (Node 20) reads
          // `upgrade<HTAB>` as another token than `upgrade` (no upgrade: a plain request, 426 or
          // onRequest) where the OWS trim above found `upgrade`; later llhttp may not. (Fixed
          // bug: the front answered 101 to `Connection: Upgrade<HTAB>`.)
          if (hasTab(text, colon, next)) return undefined;
          if (!connectionUpgrade) connectionUpgrade = hasHeaderToken(value, 'upgrade');
        }
        break;
      case 14:
        if (key === 'content-length') {
          // A HTAB in the value: Node's parser decides (llhttp 9.3 refuses `0<HTAB>`, a 400;
          // fixed bug: the front took it for 0 and answered 101).
          if (hasTab(text, colon, next)) return undefined;
          // A second Content-Length, even an equal one, is Node's 400 (llhttp refuses it as a
          // smuggling shape; fixed bug: the front accepted `Content-Length: 0` twice).
          if (value !== '0' || contentLength) return undefined;
          contentLength = true;
        }
        break;
      case 17:
        if (key === 'transfer-encoding') return undefined;
        break;
    }
    raw.push(name, value);
    if (headers !== undefined) {
      if (headers[key] !== undefined) headers = undefined;
      else headers[key] = key === 'set-cookie' ? [value] : value;
    }
    start = next + 2;
  }
  if (!upgrade || !connectionUpgrade) return undefined;
  const req = new IncomingMessage(socket) as WithHeaderLines;
  req.method = 'GET';
  req.url = url;
  req.httpVersionMajor = 1;
  req.httpVersionMinor = 1;
  req.httpVersion = '1.1';
  // Node's own header semantics (duplicates joined, dropped or listed; names lower-cased), lazily.
  req._addHeaderLines(raw, raw.length);
  if (headers !== undefined) req.headers = headers as IncomingMessage['headers'];
  req.upgrade = true;
  req.complete = true;
  req.push(null);
  return req;
}

/**
 * Header names as browsers and WebSocket clients usually spell them, and in lower case (HTTP/2
 * style, some libraries), each with its lower-case key: [spelling, key], by length.
 */
const KNOWN_NAMES: ReadonlyArray<ReadonlyArray<readonly [string, string]> | undefined> = (() => {
  const names = [
    'Host', 'Upgrade', 'Connection', 'Origin', 'User-Agent', 'Accept-Encoding', 'Accept-Language',
    'Cache-Control', 'Pragma', 'Cookie', 'Authorization', 'Sec-WebSocket-Key', 'Sec-WebSocket-Version',
    'Sec-WebSocket-Extensions', 'Sec-WebSocket-Protocol',
  ];
  const table: Array<Array<readonly [string, string]>> = [];
  for (const name of names) {
    const key = name.toLowerCase();
    (table[name.length] ??= []).push([name, key], [key, key]);
  }
  return table;
})();

/** The KNOWN_NAMES entry spelled exactly as `text[start, start + length)`, if any. */
function knownName(text: string, start: number, length: number): readonly [string, string] | undefined {
  const candidates = KNOWN_NAMES[length];
  if (candidates === undefined) return undefined;
  for (let i = 0; i < candidates.length; i++) {
    const candidate = candidates[i]!;
    if (text.startsWith(candidate[0], start)) return candidate;
  }
  return undefined;
}

/**
 * Headers whose value is usually the same on every connection to a server; the front keeps the
 * last value of each (a bounded table: these names only, each value under maxHeaderSize).
 */
const INTERNED = new Set([
  'host',
  'origin',
  'user-agent',
  'accept-encoding',
  'accept-language',
  'cache-control',
  'pragma',
  'sec-websocket-extensions',
  'sec-websocket-protocol',
  'sec-websocket-version',
  'upgrade',
  'connection',
]);
const lastValues = new Map<string, string>();

/**
 * The shared constant for the values every handshake sends (a connection keeps its headers: one
 * string fewer each), else the value itself.
 */
function common(value: string): string {
  switch (value.length) {
    case 2:
      return value === '13' ? '13' : value;
    case 7:
      return value === 'Upgrade' ? 'Upgrade' : value === 'upgrade' ? 'upgrade' : value;
    case 9:
      return value === 'websocket' ? 'websocket' : value === 'WebSocket' ? 'WebSocket' : value;
    default:
      return value;
  }
}
