/**
 * permessage-deflate negotiation (RFC 7692 §5, §7.1): pure functions from parsed
 * `Sec-WebSocket-Extensions` elements to the agreed `DeflateParams`.
 * @see https://www.rfc-editor.org/rfc/rfc7692
 */
import { HandshakeError } from '../errors.js';
import { formatExtension, type ExtensionOffer } from './header.js';

export const PERMESSAGE_DEFLATE = 'permessage-deflate';

/**
 * Options of permessage-deflate. On a server they say what is accepted and answered; on a client
 * what is offered and which responses are allowed.
 */
export interface PerMessageDeflateOptions {
  /**
   * Server: always answer `server_no_context_takeover` (the server resets its compressor after each
   * message: less memory, worse ratio). A client's request for it is always granted.
   * Client: request it; a response without it then fails the handshake. Default `false`.
   */
  serverNoContextTakeover?: boolean | undefined;
  /**
   * Server: answer `client_no_context_takeover` (the client must reset its compressor, so the
   * server can release its inflater between messages). It is also echoed when the client offered it.
   * Client: offer it and reset our compressor after each message. Default `false`.
   */
  clientNoContextTakeover?: boolean | undefined;
  /**
   * Base-2 log of the server's compression window, 8..15. Server: the largest window we compress
   * with (answered when below 15 or when the client asked for a smaller one). Client: requested
   * limit, offered when below 15. Default 15. A value of 8 is honoured by compressing with zlib's
   * window 9, whose largest match distance (512 - 262 = 250 bytes) fits a 256-byte window.
   */
  serverMaxWindowBits?: number | undefined;
  /**
   * Base-2 log of the client's compression window, 8..15. Server: the largest window clients may
   * use (our inflate window); below 15, offers without `client_max_window_bits` are declined since
   * the limit could not be imposed. Client: offered as the value of `client_max_window_bits`
   * (offered without a value at 15). Default 15.
   */
  clientMaxWindowBits?: number | undefined;
  /** Messages smaller than this many bytes are sent uncompressed. Default 1024. */
  threshold?: number | undefined;
  /** zlib compression level, 0..9 (or -1 for zlib's default, 6). Default -1. */
  level?: number | undefined;
  /** zlib memLevel, 1..9: deflate state memory is 2^(windowBits+2) + 2^(memLevel+9) bytes. Default 8. */
  memLevel?: number | undefined;
  /** Process-wide limit of concurrent zlib jobs (the libuv threadpool is shared). Default 10. */
  concurrencyLimit?: number | undefined;
  /**
   * Messages (and fragments) of up to this many bytes are compressed, and received frames of up
   * to this many compressed bytes inflated, at once on the event loop: no thread-pool round trip,
   * which costs several tens of µs per message whatever its size. Larger ones, and inflation past
   * 256 KiB of output in one go, run in the thread pool, so that a big message does not hold up
   * other connections. 0 sends everything to the thread pool. Default 32768.
   */
  syncLimit?: number | undefined;
}

/** The agreed parameters, as both sides must apply them. Window bits are 15 when not negotiated. */
export interface DeflateParams {
  /** The server resets its compressor after each message. */
  serverNoContextTakeover: boolean;
  /** The client resets its compressor after each message. */
  clientNoContextTakeover: boolean;
  /** Base-2 log of the server's compression window, 8..15. */
  serverMaxWindowBits: number;
  /** Base-2 log of the client's compression window, 8..15. */
  clientMaxWindowBits: number;
}

type Known = {
  server_no_context_takeover?: true;
  client_no_context_takeover?: true;
  server_max_window_bits?: number;
  client_max_window_bits?: number | true;
};

/** RFC 7692 §7.1.2.1: "a decimal integer value without leading zeroes between 8 to 15". */
const WINDOW_BITS = /^(?:[89]|1[0-5])$/;

/**
 * Validates the parameters of one permessage-deflate element. Returns a reason string when it
 * has an unknown or duplicate parameter or an invalid value (RFC 7692 §7.1), else the values.
 * `valuelessClientBits` allows `client_max_window_bits` without a value (offers only).
 */
function readParams(offer: ExtensionOffer, valuelessClientBits: boolean): Known | string {
  const out: Known = {};
  for (const [name, value] of offer.params) {
    if (Object.hasOwn(out, name)) return `duplicate parameter ${name}`;
    switch (name) {
      case 'server_no_context_takeover':
      case 'client_no_context_takeover':
        // RFC 7692 §7.1.1.1, §7.1.1.2: these parameters have no value.
        if (value !== true) return `parameter ${name} must not have a value`;
        out[name] = true;
        break;
      case 'server_max_window_bits':
        // RFC 7692 §7.1.2.1: a value is required.
        if (value === true || !WINDOW_BITS.test(value)) return `invalid value for ${name}`;
        out[name] = Number(value);
        break;
      case 'client_max_window_bits':
        // RFC 7692 §7.1.2.2: the value may be omitted in an offer, not in a response.
        if (value === true) {
          if (!valuelessClientBits) return `parameter ${name} must have a value`;
          out[name] = true;
        } else if (!WINDOW_BITS.test(value)) {
          return `invalid value for ${name}`;
        } else {
          out[name] = Number(value);
        }
        break;
      default:
        return `unknown parameter ${name}`;
    }
  }
  return out;
}

function windowOption(value: number | undefined, name: string): number {
  if (value === undefined) return 15;
  if (!Number.isInteger(value) || value < 8 || value > 15) {
    throw new RangeError(`${name} must be an integer between 8 and 15, got ${value}`);
  }
  return value;
}

/**
 * Server side (RFC 7692 §7.1): returns the response element for the first acceptable
 * permessage-deflate offer and the agreed parameters, or `null` when none is acceptable (the
 * handshake then proceeds without the extension). Offers with unknown, duplicate or invalid
 * parameters are declined, never an error.
 * @throws RangeError when the options are out of range.
 */
export function acceptDeflateOffers(
  offers: readonly ExtensionOffer[],
  options: PerMessageDeflateOptions = {},
): {
  /** The Sec-WebSocket-Extensions element to answer. */
  response: string;
  /** The agreed parameters. */
  params: DeflateParams
} | null {
  const serverBits = windowOption(options.serverMaxWindowBits, 'serverMaxWindowBits');
  const clientBits = windowOption(options.clientMaxWindowBits, 'clientMaxWindowBits');
  for (const offer of offers) {
    if (offer.name !== PERMESSAGE_DEFLATE) continue;
    const p = readParams(offer, true);
    if (typeof p === 'string') continue; // RFC 7692 §7.1: decline an offer with invalid parameters
    const response: ExtensionOffer = { name: PERMESSAGE_DEFLATE, params: [] };
    const params: DeflateParams = {
      serverNoContextTakeover: p.server_no_context_takeover === true || options.serverNoContextTakeover === true,
      clientNoContextTakeover: p.client_no_context_takeover === true || options.clientNoContextTakeover === true,
      serverMaxWindowBits: 15,
      clientMaxWindowBits: 15,
    };
    // RFC 7692 §7.1.2.2: without client_max_window_bits in the offer the response must not limit
    // the client, so a server that requires a limit declines.
    if (p.client_max_window_bits === undefined && clientBits < 15) continue;
    // RFC 7692 §7.1.1.1: accepting server_no_context_takeover means answering it.
    if (params.serverNoContextTakeover) response.params.push(['server_no_context_takeover', true]);
    if (params.clientNoContextTakeover) response.params.push(['client_no_context_takeover', true]);
    // RFC 7692 §7.1.2.1: answer with the same or a smaller value than offered; a server may also
    // limit its own window unasked.
    if (p.server_max_window_bits !== undefined || serverBits < 15) {
      params.serverMaxWindowBits = Math.min(serverBits, p.server_max_window_bits ?? 15);
      response.params.push(['server_max_window_bits', String(params.serverMaxWindowBits)]);
    }
    // RFC 7692 §7.1.2.2: only when offered; never above the offered value.
    const offeredClientBits = p.client_max_window_bits;
    if (offeredClientBits !== undefined && (offeredClientBits !== true || clientBits < 15)) {
      params.clientMaxWindowBits = Math.min(clientBits, offeredClientBits === true ? 15 : offeredClientBits);
      response.params.push(['client_max_window_bits', String(params.clientMaxWindowBits)]);
    }
    return { response: formatExtension(response), params };
  }
  return null;
}

/** Client side: the offer element to send in `Sec-WebSocket-Extensions` (RFC 7692 §5.1). */
export function buildDeflateOffer(options: PerMessageDeflateOptions = {}): string {
  const serverBits = windowOption(options.serverMaxWindowBits, 'serverMaxWindowBits');
  const clientBits = windowOption(options.clientMaxWindowBits, 'clientMaxWindowBits');
  const offer: ExtensionOffer = { name: PERMESSAGE_DEFLATE, params: [] };
  if (options.serverNoContextTakeover === true) offer.params.push(['server_no_context_takeover', true]);
  if (options.clientNoContextTakeover === true) offer.params.push(['client_no_context_takeover', true]);
  if (serverBits < 15) offer.params.push(['server_max_window_bits', String(serverBits)]);
  // Always say we can limit our window, so servers may ask for less memory (RFC 7692 §7.1.2.2).
  offer.params.push(['client_max_window_bits', clientBits < 15 ? String(clientBits) : true]);
  return formatExtension(offer);
}

function badResponse(reason: string): never {
  throw new HandshakeError(`unacceptable permessage-deflate response: ${reason}`, 101, {
    code: 'WS_BAD_EXTENSION_RESPONSE',
  });
}

/**
 * Client side: checks the server's response element against what `buildDeflateOffer(options)`
 * offered and returns the agreed parameters (RFC 7692 §5, §7.1).
 * @throws HandshakeError status 101, code `WS_BAD_EXTENSION_RESPONSE`, when the response is not
 * one the offer allowed; the client must then fail the connection.
 */
export function acceptDeflateResponse(response: ExtensionOffer, options: PerMessageDeflateOptions = {}): DeflateParams {
  const serverBits = windowOption(options.serverMaxWindowBits, 'serverMaxWindowBits');
  const clientBits = windowOption(options.clientMaxWindowBits, 'clientMaxWindowBits');
  if (response.name !== PERMESSAGE_DEFLATE) badResponse(`unexpected extension ${response.name}`);
  const p = readParams(response, false);
  if (typeof p === 'string') badResponse(p);
  // RFC 7692 §7.1.1.1: a server accepting our request for server_no_context_takeover includes it.
  if (options.serverNoContextTakeover === true && p.server_no_context_takeover !== true) {
    badResponse('server_no_context_takeover was requested but not granted');
  }
  // RFC 7692 §7.1.2.1: the server answers our server_max_window_bits with the same or a smaller value.
  if (serverBits < 15 && p.server_max_window_bits === undefined) {
    badResponse('server_max_window_bits was requested but not granted');
  }
  const serverMaxWindowBits = p.server_max_window_bits ?? 15;
  if (serverMaxWindowBits > serverBits) badResponse('server_max_window_bits is larger than requested');
  // RFC 7692 §7.1.2.2: client_max_window_bits, with a value not above the offered one.
  const granted = p.client_max_window_bits;
  if (typeof granted === 'number' && granted > clientBits) {
    badResponse('client_max_window_bits is larger than offered');
  }
  return {
    serverNoContextTakeover: p.server_no_context_takeover === true,
    clientNoContextTakeover: p.client_no_context_takeover === true || options.clientNoContextTakeover === true,
    serverMaxWindowBits,
    clientMaxWindowBits: typeof granted === 'number' ? granted : clientBits,
  };
}
