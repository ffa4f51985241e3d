/**
 * RFC 6455 §4.1, the client's requirement 2: "There MUST be no more than one connection in a
 * CONNECTING state" to a remote host; the client "MUST serialize" connections attempted at once.
 * Each `connect()` (and the `WebSocket` and `WebSocketStream` classes over it) takes its host's
 * turn before it makes its connection, and gives it back when that connection is open or has
 * failed; those behind it wait in order.
 *
 * A host is its lower-cased name (or address) and port, or its Unix socket's path: not its
 * resolved address, which Node's connect looks up itself (a caller's `lookup`, every address of a
 * name tried in turn, a proxy agent that resolves the name on the far side), so that it is not
 * known until the connection is made. RFC 6455 has a client that cannot determine the address
 * take each host name for a distinct remote host.
 */
import { abortedHandshake, bareHostname } from './client-target.js';
import { HandshakeError } from './errors.js';
import { peerDeadline } from './idle-wheel.js';

/** A connect() in line for a host: the first holds its turn (CONNECTING), the others wait. */
interface Waiter {
  /** Gives the waiter its turn (it then holds it until it calls its release). */
  grant(): void;
}

/**
 * By host key: the connect() in CONNECTING, then those waiting, in order (a Set keeps its
 * insertion order, and one that gives up leaves it at no cost to the others, however many wait).
 * No key without one.
 */
const lines = new Map<string, Set<Waiter>>();

/** The first of a line: the one in CONNECTING. */
function holder(line: Set<Waiter>): Waiter | undefined {
  for (const first of line) return first;
  return undefined;
}

/**
 * The key of the remote host a connection to `target` goes to: `unix:` and the socket's path, or
 * the host name (lower-cased, without a trailing dot; an IPv6 literal without its brackets) and
 * the port (the scheme's default when the URL has none). ws: and wss: to one host and port are one
 * remote host.
 * @internal
 */
export function hostKey(target: URL, socketPath: string | undefined): string {
  if (socketPath !== undefined) return `unix:${socketPath}`;
  const secure = target.protocol === 'wss:' || target.protocol === 'https:';
  let host = bareHostname(target).toLowerCase();
  if (host.endsWith('.')) host = host.slice(0, -1);
  return `${host} ${target.port || (secure ? 443 : 80)}`;
}

/**
 * How many hosts have a connect() in CONNECTING (or waiting): for the tests, which check that a
 * settled connect() leaves nothing behind.
 * @internal
 */
export function hostsConnecting(): number {
  return lines.size;
}

/**
 * What a connect() that timed out in line was waiting for, for its error's message: it made no
 * connection, and a bare "handshake timed out" sent its caller to look at a server it never reached
 * (fixed bug).
 */
function waitingFor(key: string): string {
  const to = key.startsWith('unix:') ? `the Unix socket ${key.slice(5)}` : key.replace(/^(.*) (\d+)$/, (_, host: string, port: string) => `${host.includes(':') ? `[${host}]` : host}:${port}`);
  return `waiting for its turn: another connection to ${to} was still connecting (RFC 6455 §4.1, one at a time to a host; serializeHandshakes: false does not wait)`;
}

/**
 * Waits for the turn of the host `key` to connect, at once when no other connect() to it is in
 * CONNECTING. Resolves with the function that gives the turn back (call it once the connection
 * is open or has failed; more calls do nothing). Rejects with `WS_HANDSHAKE_TIMEOUT` when the
 * turn has not come within `timeout` ms, and as an aborted handshake when `signal` aborts first
 * (at once if it has already): a waiter that gives up leaves the others' order as it was.
 * `total`: the whole handshakeTimeout, which the timeout's error names.
 * @internal
 */
export function takeTurn(key: string, timeout: number, total: number, signal: AbortSignal | undefined): Promise<() => void> {
  if (signal?.aborted) return Promise.reject(abortedHandshake(signal));
  const line = lines.get(key);
  let released = false;
  let self: Waiter;
  const release = (): void => {
    if (released) return;
    released = true;
    const current = lines.get(key);
    if (current === undefined) return;
    const held = holder(current) === self;
    current.delete(self);
    if (current.size === 0) lines.delete(key);
    else if (held) holder(current)!.grant();
  };
  if (line === undefined) {
    self = { grant: () => undefined };
    lines.set(key, new Set([self]));
    return Promise.resolve(release);
  }
  return new Promise((resolve, reject) => {
    const giveUp = (error: Error): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      release();
      reject(error);
    };
    const onAbort = (): void => giveUp(abortedHandshake(signal!));
    const timer = peerDeadline(() => {
      // (Its turn may have come between the timer and this callback: then it is taken.)
      if (!released && holder(line) !== self) giveUp(new HandshakeError(`handshake timed out after ${total} ms ${waitingFor(key)}`, 0, { code: 'WS_HANDSHAKE_TIMEOUT' }));
    }, timeout);
    self = {
      grant: () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve(release);
      },
    };
    line.add(self);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
