import { HandshakeError } from '../../src/errors.js';
import {
  acceptDeflateOffers,
  acceptDeflateResponse,
  buildDeflateOffer,
  type DeflateParams,
  type PerMessageDeflateOptions,
} from '../../src/extensions/deflate-negotiation.js';
import { parseExtensions } from '../../src/extensions/header.js';
import { WsPerMessageDeflateClass, wsExtension } from './ws-internals.js';

const DEFAULTS: DeflateParams = {
  serverNoContextTakeover: false,
  clientNoContextTakeover: false,
  serverMaxWindowBits: 15,
  clientMaxWindowBits: 15,
};

function serverAccepts(header: string, options?: PerMessageDeflateOptions) {
  return acceptDeflateOffers(parseExtensions(header), options);
}

function clientGets(response: string, options?: PerMessageDeflateOptions): DeflateParams {
  const [element] = parseExtensions(response);
  if (element === undefined) throw new Error('empty response');
  return acceptDeflateResponse(element, options);
}

function expectBadResponse(response: string, options?: PerMessageDeflateOptions): void {
  let caught: unknown;
  try {
    clientGets(response, options);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(HandshakeError);
  expect((caught as HandshakeError).code).toBe('WS_BAD_EXTENSION_RESPONSE');
  expect((caught as HandshakeError).status).toBe(101);
}

describe('server accepts permessage-deflate offers', () => {
  test('plain offer: empty response, default parameters', () => {
    expect(serverAccepts('permessage-deflate')).toEqual({ response: 'permessage-deflate', params: DEFAULTS });
  });

  test('no permessage-deflate offer: null', () => {
    expect(serverAccepts('x-webkit-deflate-frame, foo')).toBeNull();
    expect(serverAccepts('')).toBeNull();
  });

  test('server_no_context_takeover requested is granted and answered (RFC 7692 §7.1.1.1)', () => {
    expect(serverAccepts('permessage-deflate; server_no_context_takeover')).toEqual({
      response: 'permessage-deflate; server_no_context_takeover',
      params: { ...DEFAULTS, serverNoContextTakeover: true },
    });
  });

  test('serverNoContextTakeover option answers it unasked', () => {
    expect(serverAccepts('permessage-deflate', { serverNoContextTakeover: true })?.response).toBe(
      'permessage-deflate; server_no_context_takeover',
    );
  });

  test('client_no_context_takeover offered is echoed so the server can release its inflater', () => {
    expect(serverAccepts('permessage-deflate; client_no_context_takeover')).toEqual({
      response: 'permessage-deflate; client_no_context_takeover',
      params: { ...DEFAULTS, clientNoContextTakeover: true },
    });
  });

  test('clientNoContextTakeover option imposes it (RFC 7692 §7.1.1.2)', () => {
    expect(serverAccepts('permessage-deflate', { clientNoContextTakeover: true })?.params.clientNoContextTakeover).toBe(true);
  });

  test.each([8, 9, 10, 12, 15])('server_max_window_bits=%i is answered with the same value', (bits) => {
    expect(serverAccepts(`permessage-deflate; server_max_window_bits=${bits}`)).toEqual({
      response: `permessage-deflate; server_max_window_bits=${bits}`,
      params: { ...DEFAULTS, serverMaxWindowBits: bits },
    });
  });

  test('server_max_window_bits is answered with a smaller configured value, never larger', () => {
    expect(serverAccepts('permessage-deflate; server_max_window_bits=12', { serverMaxWindowBits: 10 })?.params.serverMaxWindowBits).toBe(10);
    expect(serverAccepts('permessage-deflate; server_max_window_bits=9', { serverMaxWindowBits: 10 })?.params.serverMaxWindowBits).toBe(9);
    expect(serverAccepts('permessage-deflate', { serverMaxWindowBits: 11 })?.response).toBe('permessage-deflate; server_max_window_bits=11');
  });

  test('client_max_window_bits without value: omitted by default, set by option', () => {
    expect(serverAccepts('permessage-deflate; client_max_window_bits')).toEqual({ response: 'permessage-deflate', params: DEFAULTS });
    expect(serverAccepts('permessage-deflate; client_max_window_bits', { clientMaxWindowBits: 9 })).toEqual({
      response: 'permessage-deflate; client_max_window_bits=9',
      params: { ...DEFAULTS, clientMaxWindowBits: 9 },
    });
  });

  test('client_max_window_bits with value: answered with that value or a smaller configured one', () => {
    expect(serverAccepts('permessage-deflate; client_max_window_bits=10')?.response).toBe('permessage-deflate; client_max_window_bits=10');
    expect(serverAccepts('permessage-deflate; client_max_window_bits=10', { clientMaxWindowBits: 12 })?.params.clientMaxWindowBits).toBe(10);
    expect(serverAccepts('permessage-deflate; client_max_window_bits=12', { clientMaxWindowBits: 8 })?.params.clientMaxWindowBits).toBe(8);
  });

  test('clientMaxWindowBits below 15 declines an offer that does not let the server limit the client', () => {
    expect(serverAccepts('permessage-deflate', { clientMaxWindowBits: 10 })).toBeNull();
    // At the edge: 14 is a limit (declined), 15 is none (accepted).
    expect(serverAccepts('permessage-deflate', { clientMaxWindowBits: 14 })).toBeNull();
    expect(serverAccepts('permessage-deflate', { clientMaxWindowBits: 15 })).toEqual({ response: 'permessage-deflate', params: DEFAULTS });
    expect(serverAccepts('permessage-deflate, permessage-deflate; client_max_window_bits', { clientMaxWindowBits: 10 })?.response).toBe(
      'permessage-deflate; client_max_window_bits=10',
    );
  });

  test('RFC 7692 §5.1: the first acceptable of several offers is chosen', () => {
    expect(serverAccepts('permessage-deflate; server_max_window_bits=10, permessage-deflate')?.params.serverMaxWindowBits).toBe(10);
    expect(serverAccepts('foo, permessage-deflate; client_no_context_takeover, permessage-deflate')?.params.clientNoContextTakeover).toBe(true);
  });

  test.each([
    ['unknown parameter', 'permessage-deflate; foo'],
    ['duplicate parameter', 'permessage-deflate; server_no_context_takeover; server_no_context_takeover'],
    ['duplicate window bits', 'permessage-deflate; client_max_window_bits=10; client_max_window_bits=10'],
    ['value on server_no_context_takeover', 'permessage-deflate; server_no_context_takeover=1'],
    ['value on client_no_context_takeover', 'permessage-deflate; client_no_context_takeover="x"'],
    ['server_max_window_bits without value', 'permessage-deflate; server_max_window_bits'],
    ['server_max_window_bits=7', 'permessage-deflate; server_max_window_bits=7'],
    ['server_max_window_bits=16', 'permessage-deflate; server_max_window_bits=16'],
    ['server_max_window_bits with leading zero', 'permessage-deflate; server_max_window_bits=010'],
    ['client_max_window_bits=0', 'permessage-deflate; client_max_window_bits=0'],
    ['client_max_window_bits=abc', 'permessage-deflate; client_max_window_bits=abc'],
    ['client_max_window_bits=8.5', 'permessage-deflate; client_max_window_bits=8.5'],
  ])('declines an offer with %s and takes the next one', (_label, bad) => {
    expect(serverAccepts(bad)).toBeNull();
    expect(serverAccepts(`${bad}, permessage-deflate; client_no_context_takeover`)).toEqual({
      response: 'permessage-deflate; client_no_context_takeover',
      params: { ...DEFAULTS, clientNoContextTakeover: true },
    });
  });

  test('quoted window bits are accepted (RFC 7692 §7.1.2.1 allows the quoted-string form)', () => {
    expect(serverAccepts('permessage-deflate; server_max_window_bits="10"')?.params.serverMaxWindowBits).toBe(10);
  });

  test('options out of range are a programming error', () => {
    expect(() => serverAccepts('permessage-deflate', { serverMaxWindowBits: 16 })).toThrow(RangeError);
    expect(() => buildDeflateOffer({ clientMaxWindowBits: 7 })).toThrow(RangeError);
  });
});

describe('client offers and checks the response', () => {
  test('default offer advertises client_max_window_bits without value', () => {
    expect(buildDeflateOffer()).toBe('permessage-deflate; client_max_window_bits');
  });

  test('offer carries every option', () => {
    expect(
      buildDeflateOffer({ serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 10, clientMaxWindowBits: 11 }),
    ).toBe('permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11');
  });

  test('plain response gives default parameters', () => {
    expect(clientGets('permessage-deflate')).toEqual(DEFAULTS);
  });

  test('server_no_context_takeover in a response is accepted unasked', () => {
    expect(clientGets('permessage-deflate; server_no_context_takeover').serverNoContextTakeover).toBe(true);
  });

  test('client_no_context_takeover in a response binds the client; our own option does too', () => {
    expect(clientGets('permessage-deflate; client_no_context_takeover').clientNoContextTakeover).toBe(true);
    expect(clientGets('permessage-deflate', { clientNoContextTakeover: true }).clientNoContextTakeover).toBe(true);
  });

  test('server_max_window_bits: any value when not requested; the same or smaller when requested', () => {
    expect(clientGets('permessage-deflate; server_max_window_bits=9').serverMaxWindowBits).toBe(9);
    expect(clientGets('permessage-deflate; server_max_window_bits=10', { serverMaxWindowBits: 10 }).serverMaxWindowBits).toBe(10);
    expect(clientGets('permessage-deflate; server_max_window_bits=8', { serverMaxWindowBits: 10 }).serverMaxWindowBits).toBe(8);
  });

  test('client_max_window_bits granted: used; absent: our own offered value', () => {
    expect(clientGets('permessage-deflate; client_max_window_bits=9').clientMaxWindowBits).toBe(9);
    expect(clientGets('permessage-deflate', { clientMaxWindowBits: 11 }).clientMaxWindowBits).toBe(11);
    expect(clientGets('permessage-deflate; client_max_window_bits=10', { clientMaxWindowBits: 11 }).clientMaxWindowBits).toBe(10);
  });

  test.each<[string, string, PerMessageDeflateOptions | undefined]>([
    ['another extension', 'x-foo', undefined],
    ['unknown parameter', 'permessage-deflate; foo=1', undefined],
    ['duplicate parameter', 'permessage-deflate; client_no_context_takeover; client_no_context_takeover', undefined],
    ['value on a flag', 'permessage-deflate; server_no_context_takeover=yes', undefined],
    ['client_max_window_bits without value', 'permessage-deflate; client_max_window_bits', undefined],
    ['client_max_window_bits above the offered value', 'permessage-deflate; client_max_window_bits=12', { clientMaxWindowBits: 11 }],
    ['server_max_window_bits above the requested value', 'permessage-deflate; server_max_window_bits=11', { serverMaxWindowBits: 10 }],
    ['server_max_window_bits requested, not answered', 'permessage-deflate', { serverMaxWindowBits: 10 }],
    ['server_no_context_takeover requested, not answered', 'permessage-deflate', { serverNoContextTakeover: true }],
    ['server_max_window_bits out of range', 'permessage-deflate; server_max_window_bits=7', undefined],
  ])('rejects a response with %s', (_label, response, options) => {
    expectBadResponse(response, options);
  });

  test.each<PerMessageDeflateOptions>([
    {},
    { serverNoContextTakeover: true, clientNoContextTakeover: true },
    { serverMaxWindowBits: 9, clientMaxWindowBits: 10 },
    { serverMaxWindowBits: 8, clientMaxWindowBits: 8 },
  ])('our server accepts our client offer and our client accepts the response: %j', (options) => {
    const accepted = acceptDeflateOffers(parseExtensions(buildDeflateOffer(options)), options);
    expect(accepted).not.toBeNull();
    const [response] = parseExtensions(accepted?.response ?? '');
    expect(response).toBeDefined();
    if (response === undefined || accepted === null) return;
    expect(acceptDeflateResponse(response, options)).toEqual(accepted.params);
  });
});

describe('differential with ws PerMessageDeflate where RFC 7692 leaves no choice', () => {
  /** ws's server result for one header, as our DeflateParams, or null when ws declines/throws. */
  function wsServer(header: string): DeflateParams | null {
    const pmd = new WsPerMessageDeflateClass({ isServer: true });
    const offers = wsExtension.parse(header)['permessage-deflate'];
    if (offers === undefined) return null;
    try {
      const p = pmd.accept(offers);
      return {
        serverNoContextTakeover: p['server_no_context_takeover'] === true,
        clientNoContextTakeover: p['client_no_context_takeover'] === true,
        serverMaxWindowBits: typeof p['server_max_window_bits'] === 'number' ? p['server_max_window_bits'] : 15,
        clientMaxWindowBits: typeof p['client_max_window_bits'] === 'number' ? p['client_max_window_bits'] : 15,
      };
    } catch {
      return null;
    } finally {
      pmd.cleanup();
    }
  }

  test.each([
    'permessage-deflate',
    'permessage-deflate; client_max_window_bits',
    'permessage-deflate; client_max_window_bits=10',
    'permessage-deflate; server_max_window_bits=9',
    'permessage-deflate; server_no_context_takeover',
    'permessage-deflate; client_no_context_takeover',
    'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=11',
    'permessage-deflate; foo',
    'permessage-deflate; server_max_window_bits=16',
    'permessage-deflate; server_max_window_bits',
    'permessage-deflate; client_max_window_bits=7',
    'permessage-deflate; server_no_context_takeover=1',
    'permessage-deflate; client_no_context_takeover; client_no_context_takeover',
  ])('server result agrees with ws for %j', (header) => {
    expect(serverAccepts(header)?.params ?? null).toEqual(wsServer(header));
  });
});
