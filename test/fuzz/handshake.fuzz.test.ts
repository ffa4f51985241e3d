/**
 * Fuzzing the handshake parsers: random header values and random response heads into the server
 * validation, the client verification, the extension and subprotocol header parsers and the
 * hybi-00 accept. Each either accepts or throws a HandshakeError with an HTTP status; nothing
 * else escapes, and an accepted request always yields a well-formed 16-byte key.
 */
import fc from 'fast-check';
import { HandshakeError, acceptKey, parseExtensions, parseProtocols, validateRequest, verifyResponse } from 'rfc6455';
import { acceptHybi00 } from '../../packages/rfc6455/src/handshake/hybi00.js';
import { runs } from './runs.js';

const headerText = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.stringMatching(/^[ -~]{0,40}$/),
  fc.constantFrom('websocket', 'Upgrade', 'upgrade, keep-alive', '13', ' 13 ', 'dGhlIHNhbXBsZSBub25jZQ==', 'permessage-deflate; client_max_window_bits', 'a, b, ,c', '', ';', '"x"'),
);
const maybe = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(arb, { nil: undefined });

function onlyHandshakeErrors(run: () => unknown): boolean {
  try {
    run();
    return true;
  } catch (error) {
    if (!(error instanceof HandshakeError)) throw error;
    return error.status >= 100 && error.status < 600;
  }
}

describe('server request validation', () => {
  test('random requests: accepted (with a 16-byte key) or a HandshakeError with a 4xx status', () => {
    fc.assert(
      fc.property(
        fc.record({
          method: maybe(fc.constantFrom('GET', 'POST', 'get', 'CONNECT', '')),
          minor: fc.integer({ min: 0, max: 2 }),
          host: maybe(headerText),
          upgrade: maybe(headerText),
          connection: maybe(headerText),
          key: maybe(fc.oneof(headerText, fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b).toString('base64')))),
          version: maybe(headerText),
          protocol: maybe(headerText),
          extensions: maybe(headerText),
        }),
        (r) => {
          try {
            const ok = validateRequest({
              method: r.method,
              httpVersionMajor: 1,
              httpVersionMinor: r.minor,
              url: '/',
              headers: {
                host: r.host,
                upgrade: r.upgrade,
                connection: r.connection,
                'sec-websocket-key': r.key,
                'sec-websocket-version': r.version,
                'sec-websocket-protocol': r.protocol,
                'sec-websocket-extensions': r.extensions,
              },
            });
            return Buffer.from(ok.key, 'base64').length === 16 && acceptKey(ok.key).length === 28;
          } catch (error) {
            if (!(error instanceof HandshakeError)) throw error;
            return error.status === 400 || error.status === 426;
          }
        },
      ),
      { numRuns: runs(500) },
    );
  });

  test('Sec-WebSocket-Protocol and Sec-WebSocket-Extensions parsers', () => {
    fc.assert(
      fc.property(fc.oneof(headerText, fc.array(headerText, { maxLength: 3 })), (value) => {
        return onlyHandshakeErrors(() => parseProtocols(value)) && onlyHandshakeErrors(() => parseExtensions(value));
      }),
      { numRuns: runs(500) },
    );
  });
});

describe('client response verification', () => {
  test('random 101 headers: a match only with the right accept; otherwise a HandshakeError', () => {
    const key = 'dGhlIHNhbXBsZSBub25jZQ==';
    fc.assert(
      fc.property(
        fc.record({
          upgrade: maybe(headerText),
          connection: maybe(headerText),
          accept: maybe(fc.oneof(headerText, fc.constant(acceptKey(key)))),
          protocol: maybe(headerText),
          extensions: maybe(headerText),
        }),
        (h) => {
          try {
            verifyResponse('HTTP/1.1 101 Switching Protocols', {
              upgrade: h.upgrade,
              connection: h.connection,
              'sec-websocket-accept': h.accept,
              'sec-websocket-protocol': h.protocol,
              'sec-websocket-extensions': h.extensions,
            }, { key, protocols: ['chat'], extensionNames: ['permessage-deflate'] });
            return h.accept?.trim() === acceptKey(key);
          } catch (error) {
            if (!(error instanceof HandshakeError)) throw error;
            return true;
          }
        },
      ),
      { numRuns: runs(500) },
    );
  });
});

describe('hybi-00 accept', () => {
  test('random keys, hosts and key3: a 16-byte answer or a HandshakeError', () => {
    fc.assert(
      fc.property(
        fc.record({
          key1: maybe(fc.oneof(headerText, fc.constant('4 @1  46546xW%0l 1 5'))),
          key2: maybe(fc.oneof(headerText, fc.constant('12998 5 Y3 1  .P00'))),
          host: maybe(headerText),
          url: maybe(fc.oneof(headerText, fc.constant('/chat'))),
          key3: fc.uint8Array({ minLength: 0, maxLength: 10 }),
        }),
        (r) => {
          try {
            const res = acceptHybi00({
              method: 'GET',
              url: r.url,
              headers: { upgrade: 'WebSocket', connection: 'Upgrade', host: r.host, 'sec-websocket-key1': r.key1, 'sec-websocket-key2': r.key2 },
              secure: false,
              key3: r.key3,
            });
            return res.body.length === 16 && r.key3.length === 8;
          } catch (error) {
            if (!(error instanceof HandshakeError)) throw error;
            return error.status === 400;
          }
        },
      ),
      { numRuns: runs(500) },
    );
  });
});
