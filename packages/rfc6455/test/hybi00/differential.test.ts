/**
 * Differential tests of the hybi-00 handshake against websocket-driver, an independent
 * implementation of draft-hixie-thewebsocketprotocol-76 (its `server()` driver parses raw request
 * bytes and writes raw response bytes; no sockets are involved).
 *
 * Where the two differ on purpose, the test checks that the difference is exactly the documented
 * one and nothing else:
 * - a key whose number is 0 (e.g. `0 0`): the draft allows it (a client picks number_1 from 0 to
 *   max_1, §4.1), websocket-driver rejects it; we accept.
 * - a key number over 4,294,967,295: the draft says abort (§5.2 step 4), websocket-driver only
 *   checks the quotient; we reject.
 * - no Host: websocket-driver answers with `Sec-WebSocket-Location: ws://undefined/...`; we reject.
 * - a default port in Host: the draft omits it from the location, websocket-driver copies Host.
 */
import fc from 'fast-check';
import { HandshakeError } from '../../src/errors.js';
import {
  acceptHybi00,
  buildHybi00Request,
  encodeHybi00Request,
  serializeHybi00Response,
  verifyHybi00Response,
  type Hybi00HeaderLine,
} from '../../src/handshake/hybi00.js';

interface DriverServer {
  readonly io: { on(event: 'data', listener: (chunk: Buffer) => void): unknown };
  on(event: 'connect', listener: () => void): unknown;
  parse(chunk: Buffer): void;
  start(): boolean;
}
interface DriverModule {
  server(options: { allowDrafts: boolean }): DriverServer;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const driver = require('websocket-driver') as DriverModule;

/** Feed raw request bytes to websocket-driver's server and return every byte it writes. */
function driverRespond(raw: Buffer): Buffer {
  const d = driver.server({ allowDrafts: true });
  const out: Buffer[] = [];
  d.io.on('data', (chunk) => out.push(Buffer.from(chunk)));
  d.on('connect', () => d.start());
  d.parse(raw);
  return Buffer.concat(out);
}

type Outcome = { accepted: true; bytes: Buffer } | { accepted: false; status: number; error?: HandshakeError };

function driverOutcome(raw: Buffer): Outcome {
  const bytes = driverRespond(raw);
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(bytes.toString('latin1'));
  expect(m).not.toBeNull();
  const status = Number(m?.[1]);
  return status === 101 ? { accepted: true, bytes } : { accepted: false, status };
}

interface Case {
  method: string;
  url: string;
  secure: boolean;
  lines: Hybi00HeaderLine[];
  key3: Uint8Array;
}

function rawRequest(c: Case): Buffer {
  let head = `${c.method} ${c.url} HTTP/1.1\r\n`;
  for (const [k, v] of c.lines) head += `${k}: ${v}\r\n`;
  // websocket-driver learns about TLS from this header; our side gets `secure` from the transport.
  if (c.secure) head += 'X-Forwarded-Proto: https\r\n';
  return Buffer.concat([Buffer.from(head + '\r\n', 'latin1'), c.key3]);
}

function headerRecord(lines: readonly Hybi00HeaderLine[]): Record<string, string> {
  return Object.fromEntries(lines.map(([k, v]) => [k.toLowerCase(), v]));
}

function ourOutcome(c: Case, lines = c.lines): Outcome {
  try {
    const res = acceptHybi00({ method: c.method, url: c.url, headers: headerRecord(lines), secure: c.secure, key3: c.key3 });
    return { accepted: true, bytes: serializeHybi00Response(res) };
  } catch (e) {
    expect(e).toBeInstanceOf(HandshakeError);
    const error = e as HandshakeError;
    return { accepted: false, status: error.status, error };
  }
}

/** websocket-driver copies Host into the location; the draft leaves the default port out. */
function withoutDefaultPort(response: Buffer): Buffer {
  return Buffer.from(
    response
      .toString('latin1')
      .replace(/^(Sec-WebSocket-Location: ws:\/\/[^/\r\n]*?):80(?=\/)/m, '$1')
      .replace(/^(Sec-WebSocket-Location: wss:\/\/[^/\r\n]*?):443(?=\/)/m, '$1'),
    'latin1',
  );
}

/** The draft's reading of a key, computed independently with BigInt. */
function draftKey(key: string): { number: bigint; spaces: number } {
  const digits = key.replace(/[^0-9]/g, '');
  return { number: digits === '' ? -1n : BigInt(digits), spaces: key.split(' ').length - 1 };
}

const NON_DIGITS = [...Array(0x7f - 0x21).keys()].map((i) => String.fromCharCode(0x21 + i)).filter((c) => !/[0-9]/.test(c));

/** A key made as draft-76 §4.1 describes, from fast-check's randomness. */
const validKey = fc.integer({ min: 1, max: 12 }).chain((spaces) =>
  fc
    .tuple(
      fc.integer({ min: 0, max: Math.floor(0xffffffff / spaces) }),
      fc.array(fc.constantFrom(...NON_DIGITS), { minLength: 1, maxLength: 12 }),
      fc.array(fc.nat(), { minLength: 24, maxLength: 24 }),
    )
    .map(([n, noise, pos]) => {
      let key = String(n * spaces);
      noise.forEach((c, i) => {
        const at = (pos[i] ?? 0) % (key.length + 1);
        key = key.slice(0, at) + c + key.slice(at);
      });
      for (let i = 0; i < spaces; i++) {
        const at = 1 + ((pos[12 + i] ?? 0) % (key.length - 1));
        key = key.slice(0, at) + ' ' + key.slice(at);
      }
      return key;
    }),
);
/** Anything made of digits, spaces and a few other characters: mostly invalid keys. */
const arbitraryKey = fc
  .string({ unit: fc.constantFrom(...'0123456789   x;:'), maxLength: 24 })
  .map((s) => s.trim());
/** A key whose quotient fits in 32 bits but whose number does not (draft-76 §5.2 step 4 rejects it). */
const bigKey = fc
  .tuple(fc.integer({ min: 2, max: 12 }), fc.integer({ min: 0x80000000, max: 0xffffffff }), fc.nat())
  .map(([spaces, q, at]) => {
    const digits = String(q * spaces);
    const cut = 1 + (at % (digits.length - 1));
    return digits.slice(0, cut) + ' '.repeat(spaces) + digits.slice(cut);
  });
const key: fc.Arbitrary<string> = fc.oneof(
  { weight: 16, arbitrary: validKey },
  { weight: 2, arbitrary: arbitraryKey },
  { weight: 1, arbitrary: bigKey },
);
/** Mostly the valid value, sometimes one of the others. */
function mostly<T>(valid: fc.Arbitrary<T>, ...others: T[]): fc.Arbitrary<T> {
  return fc.oneof({ weight: 12, arbitrary: valid }, { weight: 1, arbitrary: fc.constantFrom(...others) });
}

const host = fc.tuple(
  fc.constantFrom('example.com', 'localhost', '127.0.0.1', '[::1]', 'a-b.example.org'),
  fc.constantFrom('', ':80', ':443', ':8080', ':1'),
).map(([h, p]) => h + p);

/** Key1 and Key2; at least one is present (without both websocket-driver speaks draft-75). */
const keyPair: fc.Arbitrary<[string | null, string | null]> = fc.oneof(
  { weight: 10, arbitrary: fc.tuple(key, fc.option(key, { freq: 10, nil: null })) },
  { weight: 1, arbitrary: fc.tuple(fc.constant(null), key) },
);

const caseArb = fc
  .record({
    method: mostly(fc.constant('GET'), 'POST', 'PUT', 'OPTIONS'),
    path: fc.stringMatching(/^\/[a-z0-9/._~%-]{0,16}(\?[a-z0-9=&]{0,10})?$/),
    secure: fc.boolean(),
    host: fc.option(host, { freq: 12 }),
    origin: fc.option(fc.constantFrom('http://example.com', 'null', 'file://', 'https://a.example:8443'), { freq: 4 }),
    upgrade: mostly<string | null>(fc.constantFrom('WebSocket', 'websocket', 'WEBSOCKET'), 'h2c', null),
    connection: mostly<string | null>(fc.constantFrom('Upgrade', 'upgrade', 'keep-alive, Upgrade'), 'keep-alive', 'close', null),
    keys: keyPair,
    key3: fc.uint8Array({ minLength: 8, maxLength: 8 }),
    lowerCaseNames: fc.boolean(),
  })
  .map((r): Case => {
    const lines: Hybi00HeaderLine[] = [];
    const add = (name: string, value: string | null): void => {
      if (value !== null) lines.push([r.lowerCaseNames ? name.toLowerCase() : name, value]);
    };
    add('Host', r.host);
    add('Upgrade', r.upgrade);
    add('Connection', r.connection);
    add('Origin', r.origin);
    add('Sec-WebSocket-Key1', r.keys[0]);
    add('Sec-WebSocket-Key2', r.keys[1]);
    return { method: r.method, url: r.path, secure: r.secure, lines, key3: r.key3 };
  });

describe('hybi-00 server handshake against websocket-driver', () => {
  test('server answers as websocket-driver does, or differs only as documented', () => {
    const tally = { bothAccept: 0, bothReject: 0, zeroKey: 0, over32Bits: 0, noHost: 0, draft75: 0 };
    fc.assert(
      fc.property(caseArb, (c) => {
        const ours = ourOutcome(c);
        const headers = headerRecord(c.lines);
        const keys = [headers['sec-websocket-key1'], headers['sec-websocket-key2']].flatMap((k) => (k === undefined ? [] : [draftKey(k)]));
        if (!headers['sec-websocket-key1'] && !headers['sec-websocket-key2']) {
          // Both keys empty or missing: websocket-driver falls back to draft-75, which we do not speak.
          expect(ours.accepted).toBe(false);
          tally.draft75++;
          return;
        }
        const theirs = driverOutcome(rawRequest(c));
        if (theirs.accepted && ours.accepted) {
          expect(ours.bytes.toString('latin1')).toBe(withoutDefaultPort(theirs.bytes).toString('latin1'));
          tally.bothAccept++;
        } else if (!theirs.accepted && !ours.accepted) {
          expect(ours.status).toBe(400);
          expect(theirs.status).toBe(400);
          tally.bothReject++;
        } else if (ours.accepted) {
          // They reject, we accept: only for a key whose number is 0, which the draft allows.
          expect(keys.some((k) => k.number === 0n && k.spaces > 0)).toBe(true);
          tally.zeroKey++;
        } else {
          // We reject, they accept. Without Host they put "undefined" in the location: give ours the same.
          const again = headers.host === undefined ? ourOutcome(c, [['Host', 'undefined'], ...c.lines]) : ours;
          if (again.accepted) {
            expect(again.bytes.toString('latin1')).toBe(theirs.accepted && theirs.bytes.toString('latin1'));
            tally.noHost++;
          } else {
            // Otherwise only for a key number over 2^32-1 (draft-76 §5.2 step 4).
            expect(again.error?.code).toBe('WS_BAD_HYBI00_KEY');
            expect(again.error?.message).toMatch(/over 2\^32-1/);
            expect(keys.some((k) => k.number > 0xffffffffn)).toBe(true);
            tally.over32Bits++;
          }
        }
      }),
      { numRuns: 2000 },
    );
    // The generators must exercise both sides of the comparison, not just the divergences.
    expect(tally.bothAccept).toBeGreaterThan(200);
    expect(tally.bothReject).toBeGreaterThan(200);
  });

  test('documented divergences, one example each', () => {
    const base: Case = {
      method: 'GET',
      url: '/demo',
      secure: false,
      key3: Buffer.from('Tm[K T2u', 'latin1'),
      lines: [
        ['Host', 'example.com'],
        ['Upgrade', 'WebSocket'],
        ['Connection', 'Upgrade'],
        ['Sec-WebSocket-Key1', '18x 6]8vM;54 *(5:  {   U1]8  z [  8'],
        ['Sec-WebSocket-Key2', '1_ tx7X d  <  nw  334J702) 7]o}` 0'],
      ],
    };
    const withKey1 = (k: string): Case => ({ ...base, lines: base.lines.map(([n, v]) => [n, n === 'Sec-WebSocket-Key1' ? k : v]) });
    // key number 0: draft-valid, we accept, websocket-driver refuses
    expect(ourOutcome(withKey1('0 x')).accepted).toBe(true);
    expect(driverOutcome(rawRequest(withKey1('0 x'))).accepted).toBe(false);
    // 8589934590 / 2 = 4294967295 fits in 32 bits, but the key number does not
    expect(ourOutcome(withKey1('8589 934 590')).accepted).toBe(false);
    expect(driverOutcome(rawRequest(withKey1('8589 934 590'))).accepted).toBe(true);
    // default port
    const port80: Case = { ...base, lines: base.lines.map(([n, v]) => [n, n === 'Host' ? 'example.com:80' : v]) };
    const ours = ourOutcome(port80);
    expect(ours.accepted && ours.bytes.toString('latin1')).toContain('Sec-WebSocket-Location: ws://example.com/demo\r\n');
    const theirs = driverOutcome(rawRequest(port80));
    expect(theirs.accepted && theirs.bytes.toString('latin1')).toContain('Sec-WebSocket-Location: ws://example.com:80/demo\r\n');
  });
});

describe('hybi-00 client handshake against websocket-driver', () => {
  test('client requests are answered by websocket-driver with the expected 16 bytes', () => {
    fc.assert(
      fc.property(
        host,
        fc.stringMatching(/^\/[a-z0-9/._~-]{0,16}(\?[a-z0-9=&]{0,10})?$/),
        fc.option(fc.constantFrom('http://example.com', 'null')),
        (h, path, origin) => {
          const req = buildHybi00Request({ host: h, path, origin: origin ?? undefined });
          const response = driverRespond(encodeHybi00Request(req));
          const split = response.indexOf('\r\n\r\n');
          expect(split).toBeGreaterThan(0);
          const [statusLine, ...headerLines] = response.subarray(0, split).toString('latin1').split('\r\n');
          const headers = Object.fromEntries(
            headerLines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
          );
          const body = response.subarray(split + 4);
          expect(body).toHaveLength(16);
          expect(
            verifyHybi00Response(statusLine ?? '', headers, body, req.expected, {
              origin: origin ?? undefined,
              location: `ws://${h}${path}`,
            }),
          ).toEqual({ protocol: undefined });
        },
      ),
      { numRuns: 300 },
    );
  });
});
