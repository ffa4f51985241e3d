import fc from 'fast-check';
import { HandshakeError } from '../../src/errors.js';
import {
  acceptHybi00,
  buildHybi00Request,
  encodeHybi00Request,
  hybi00Challenge,
  isHybi00Request,
  keyNumber,
  serializeHybi00Response,
  verifyHybi00Response,
  type Hybi00AcceptInput,
} from '../../src/handshake/hybi00.js';

// draft-hixie-thewebsocketprotocol-76 §1.3 / §5.2 worked example.
const KEY1 = '18x 6]8vM;54 *(5:  {   U1]8  z [  8';
const KEY2 = '1_ tx7X d  <  nw  334J702) 7]o}` 0';
const KEY3 = Buffer.from('Tm[K T2u', 'latin1');
const ANSWER = Buffer.from('fQJ,fN/4F4!~K~MH', 'latin1');

function expectHandshakeError(fn: () => unknown, status: number, code?: string): HandshakeError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(HandshakeError);
  const err = caught as HandshakeError;
  expect(err.status).toBe(status);
  if (code !== undefined) expect(err.code).toBe(code);
  return err;
}

function request(over: Partial<Hybi00AcceptInput> = {}, headers: Record<string, string> = {}): Hybi00AcceptInput {
  return {
    method: 'GET',
    url: '/demo',
    secure: false,
    key3: KEY3,
    headers: {
      host: 'example.com',
      connection: 'Upgrade',
      upgrade: 'WebSocket',
      origin: 'http://example.com',
      'sec-websocket-key1': KEY1,
      'sec-websocket-key2': KEY2,
      ...headers,
    },
    ...over,
  };
}

describe('hybi-00 key numbers', () => {
  test('the draft example keys give their documented numbers', () => {
    expect(keyNumber(KEY1)).toBe(1868545188 / 12);
    expect(keyNumber(KEY2)).toBe(1733470270 / 10);
  });

  test('the draft example challenge gives fQJ,fN/4F4!~K~MH', () => {
    expect(hybi00Challenge(KEY1, KEY2, KEY3)).toEqual(ANSWER);
  });

  test.each([
    ['3e6b263  4 17 80', '17  9 G`ZD9   2 2b 7X 3 /r90', 'WjN}|M(6', 'n`9eBk9z$R8pOtVb'],
    ['4 @1  46546xW%0l 1 5', '12998 5 Y3 1  .P00', '^n:ds[4U', "8jKS'y:G*Co,Wxa-"],
  ])('draft example %s / %s answers %s', (k1, k2, k3, answer) => {
    expect(hybi00Challenge(k1, k2, Buffer.from(k3, 'latin1')).toString('latin1')).toBe(answer);
  });

  test.each([
    ['no spaces', '12345', 'no spaces'],
    ['no digits', 'a b c', 'no digits'],
    ['empty', '', 'no digits'],
    ['not a multiple of the spaces', '1  1', 'not a multiple of the spaces'],
    ['number over 2^32-1', '4294967296 ', 'number over 2^32-1'],
    ['very long number', '9'.repeat(400) + ' ', 'number over 2^32-1'],
  ])('a key with %s is a 400 WS_BAD_HYBI00_KEY naming the rule it breaks', (_what, key, reason) => {
    expect(expectHandshakeError(() => keyNumber(key), 400, 'WS_BAD_HYBI00_KEY').message).toContain(reason);
  });

  test('limits: 2^32-1 with one space is accepted, leading zeros do not count, zero is allowed', () => {
    expect(keyNumber('4294967295 ')).toBe(0xffffffff);
    expect(keyNumber('0000000000004294967295 ')).toBe(0xffffffff);
    expect(keyNumber('0 0')).toBe(0);
  });

  test('key3 that is not 8 bytes is rejected', () => {
    expectHandshakeError(() => hybi00Challenge(KEY1, KEY2, Buffer.alloc(7)), 400);
  });
});

describe('server accepts hybi-00', () => {
  test('isHybi00Request needs both keys and the Upgrade/Connection tokens, any case', () => {
    const h = request().headers;
    expect(isHybi00Request(h)).toBe(true);
    expect(isHybi00Request({ ...h, upgrade: 'websocket', connection: 'keep-alive, UPGRADE' })).toBe(true);
    expect(isHybi00Request({ ...h, 'sec-websocket-key2': undefined })).toBe(false);
    expect(isHybi00Request({ ...h, 'sec-websocket-key1': undefined })).toBe(false);
    expect(isHybi00Request({ ...h, upgrade: 'h2c' })).toBe(false);
    expect(isHybi00Request({ ...h, connection: 'keep-alive' })).toBe(false);
  });

  test('server answers the draft example byte for byte', () => {
    const res = acceptHybi00(request());
    expect(serializeHybi00Response(res).toString('latin1')).toBe(
      'HTTP/1.1 101 WebSocket Protocol Handshake\r\n' +
        'Upgrade: WebSocket\r\n' +
        'Connection: Upgrade\r\n' +
        'Sec-WebSocket-Origin: http://example.com\r\n' +
        'Sec-WebSocket-Location: ws://example.com/demo\r\n' +
        '\r\n' +
        'fQJ,fN/4F4!~K~MH',
    );
  });

  test('location: wss on TLS, query kept, default port omitted, other ports kept', () => {
    expect(acceptHybi00(request({ url: '/a/b?x=1&y' })).location).toBe('ws://example.com/a/b?x=1&y');
    expect(acceptHybi00(request({ secure: true })).location).toBe('wss://example.com/demo');
    expect(acceptHybi00(request({}, { host: 'example.com:80' })).location).toBe('ws://example.com/demo');
    expect(acceptHybi00(request({ secure: true }, { host: 'example.com:443' })).location).toBe('wss://example.com/demo');
    expect(acceptHybi00(request({ secure: true }, { host: 'example.com:80' })).location).toBe('wss://example.com:80/demo');
    expect(acceptHybi00(request({}, { host: '[::1]:8080' })).location).toBe('ws://[::1]:8080/demo');
  });

  test('server echoes a chosen protocol and omits the origin when none was sent', () => {
    const h = request({ protocol: 'chat' }).headers;
    const { origin: _o, ...noOrigin } = h;
    const res = acceptHybi00(request({ protocol: 'chat', headers: noOrigin }));
    expect(res.headers).toEqual([
      ['Upgrade', 'WebSocket'],
      ['Connection', 'Upgrade'],
      ['Sec-WebSocket-Location', 'ws://example.com/demo'],
      ['Sec-WebSocket-Protocol', 'chat'],
    ]);
  });

  test.each<[string, Partial<Hybi00AcceptInput>, Record<string, string | undefined>]>([
    ['not GET', { method: 'POST' }, {}],
    ['no Host', {}, { host: undefined }],
    ['empty Host', {}, { host: '' }],
    ['a Host that is only a port', {}, { host: ':80' }],
    ['a Host with a path', {}, { host: 'a/b' }],
    // RFC 9112 §3.2: an invalid Host value is a 400 (these got a 101 and went into the location).
    ['a Host with quotes and angle brackets', {}, { host: 'a"b<c>' }],
    ['a Host with two colons outside brackets', {}, { host: 'x:1:2' }],
    ['two Host lines (RFC 9112 §3.2)', { rawHeaders: ['Host', 'example.com', 'Upgrade', 'WebSocket', 'host', 'evil.example'] }, {}],
    ['no Upgrade token', {}, { upgrade: 'h2c' }],
    ['no Connection token', {}, { connection: 'close' }],
    ['absolute request target', { url: 'http://example.com/demo' }, {}],
    ['missing Key1', {}, { 'sec-websocket-key1': undefined }],
    ['missing Key2', {}, { 'sec-websocket-key2': undefined }],
    ['Key1 without spaces', {}, { 'sec-websocket-key1': '155712099' }],
    ['Key2 not a multiple', {}, { 'sec-websocket-key2': '1 2 3' }],
  ])('server rejects %s with 400', (_what, over, headers) => {
    const base = request(over);
    const merged: Record<string, string | string[] | undefined> = { ...base.headers, ...headers };
    expectHandshakeError(() => acceptHybi00({ ...base, headers: merged }), 400);
  });
});

describe('client builds hybi-00 requests', () => {
  test('keys follow draft-76 §4.1 and round-trip through keyNumber', () => {
    for (let i = 0; i < 500; i++) {
      const req = buildHybi00Request({ host: 'example.com', path: '/demo' });
      for (const key of [req.key1, req.key2]) {
        const spaces = key.split(' ').length - 1;
        expect(spaces).toBeGreaterThanOrEqual(1);
        expect(spaces).toBeLessThanOrEqual(12);
        expect(key.startsWith(' ')).toBe(false);
        expect(key.endsWith(' ')).toBe(false);
        const others = key.replace(/[0-9 ]/g, '');
        expect(others.length).toBeGreaterThanOrEqual(1);
        expect(others.length).toBeLessThanOrEqual(12);
        expect(others).toMatch(/^[\x21-\x2f\x3a-\x7e]+$/);
        const n = keyNumber(key);
        expect(Number.isInteger(n)).toBe(true);
        expect(n * spaces).toBeLessThanOrEqual(0xffffffff);
      }
      expect(req.key3).toHaveLength(8);
      expect(hybi00Challenge(req.key1, req.key2, req.key3)).toEqual(req.expected);
    }
  });

  test('client request is accepted by our server and the answer verifies', () => {
    const req = buildHybi00Request({ host: 'example.com:8080', path: '/chat?x=1', origin: 'http://o.example', protocols: ['chat'] });
    const wire = encodeHybi00Request(req).toString('latin1');
    expect(wire.startsWith('GET /chat?x=1 HTTP/1.1\r\n')).toBe(true);
    expect(wire.endsWith('\r\n\r\n' + req.key3.toString('latin1'))).toBe(true);
    const headers = Object.fromEntries(req.headers.map(([k, v]) => [k.toLowerCase(), v]));
    expect(isHybi00Request(headers)).toBe(true);
    const res = acceptHybi00({ method: 'GET', url: req.path, headers, secure: false, key3: req.key3, protocol: 'chat' });
    expect(res.body).toEqual(req.expected);
    const resHeaders = Object.fromEntries(res.headers.map(([k, v]) => [k.toLowerCase(), v]));
    expect(
      verifyHybi00Response(res.statusLine, resHeaders, res.body, req.expected, {
        origin: 'http://o.example',
        location: 'ws://example.com:8080/chat?x=1',
        protocols: ['chat'],
      }),
    ).toEqual({ protocol: 'chat' });
  });

  test('client rejects header text that would break the request', () => {
    expect(() => buildHybi00Request({ host: 'a b', path: '/' })).toThrow(TypeError);
    expect(() => buildHybi00Request({ host: 'a', path: '/x\r\nEvil: 1' })).toThrow(TypeError);
    expect(() => buildHybi00Request({ host: 'a', path: 'x' })).toThrow(TypeError);
     expect(() => buildHybi00Request({ host: 'a', path: '/', origin: 'http://o\r\nEvil: 1' })).toThrow(TypeError);
    expect(() => buildHybi00Request({ host: 'a', path: '/', protocols: ['chat', 'a b'] })).toThrow(TypeError);
  });

  test('an empty protocol list sends no Sec-WebSocket-Protocol line', () => {
    const req = buildHybi00Request({ host: 'a', path: '/', protocols: [] });
    expect(req.headers.map(([name]) => name)).not.toContain('Sec-WebSocket-Protocol');
  });

  // draft-76 §4.1 steps 17-20: 1 to 12 spaces, 1 to 12 random characters from U+0021-U+002F and
  // U+003A-U+007E, spaces anywhere but the ends. Over 2000 keys every allowed value shows up (the
  // chance that one does not is below 10^-30), so a narrowed range is seen.
  test('keys use the whole ranges draft-76 §4.1 allows', () => {
    const spaceCounts = new Set<number>();
    const extraCounts = new Set<number>();
    const extras = new Set<string>();
    let spaceAfterFirst = false;
    for (let i = 0; i < 1000; i++) {
      const req = buildHybi00Request({ host: 'example.com', path: '/demo' });
      for (const key of [req.key1, req.key2]) {
        spaceCounts.add(key.split(' ').length - 1);
        const others = key.replace(/[0-9 ]/g, '');
        extraCounts.add(others.length);
        for (const c of others) extras.add(c);
        if (key[1] === ' ') spaceAfterFirst = true;
      }
    }
    const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);
    expect([...spaceCounts].sort((a, b) => a - b)).toEqual(range(1, 12));
    expect([...extraCounts].sort((a, b) => a - b)).toEqual(range(1, 12));
    const allowed = [...range(0x21, 0x2f), ...range(0x3a, 0x7e)].map((c) => String.fromCharCode(c));
    expect([...extras].sort()).toEqual(allowed.sort());
    expect(spaceAfterFirst).toBe(true);
  });
});

describe('client verifies the hybi-00 answer', () => {
  const ok = {
    upgrade: 'WebSocket',
    connection: 'Upgrade',
    'sec-websocket-origin': 'http://example.com',
    'sec-websocket-location': 'ws://example.com/demo',
  };
  const line = 'HTTP/1.1 101 WebSocket Protocol Handshake';

  test('a correct answer verifies', () => {
    expect(verifyHybi00Response(line, ok, ANSWER, ANSWER, { origin: 'HTTP://EXAMPLE.COM', location: 'ws://example.com/demo' })).toEqual({
      protocol: undefined,
    });
  });

  test.each<[string, string, Record<string, string | undefined>, Buffer, number, string]>([
    ['a non-HTTP status line', 'SSH-2.0-x', ok, ANSWER, 0, 'WS_BAD_STATUS_LINE'],
    ['a 403', 'HTTP/1.1 403 Forbidden', ok, ANSWER, 403, 'WS_UNEXPECTED_RESPONSE'],
    ['no Upgrade', line, { ...ok, upgrade: undefined }, ANSWER, 101, 'WS_BAD_UPGRADE'],
    ['no Connection', line, { ...ok, connection: 'close' }, ANSWER, 101, 'WS_BAD_CONNECTION'],
    ['a wrong origin', line, { ...ok, 'sec-websocket-origin': 'http://evil' }, ANSWER, 101, 'WS_BAD_HYBI00_ORIGIN'],
    ['a wrong location', line, { ...ok, 'sec-websocket-location': 'ws://x/' }, ANSWER, 101, 'WS_BAD_HYBI00_LOCATION'],
    ['an unoffered protocol', line, { ...ok, 'sec-websocket-protocol': 'x' }, ANSWER, 101, 'WS_BAD_PROTOCOL'],
    ['a wrong answer', line, ok, Buffer.alloc(16), 101, 'WS_BAD_HYBI00_ANSWER'],
    ['a short answer', line, ok, ANSWER.subarray(0, 15), 101, 'WS_BAD_HYBI00_ANSWER'],
  ])('client rejects %s', (_what, statusLine, headers, body, status, code) => {
    const err = expectHandshakeError(
      () => verifyHybi00Response(statusLine, headers, body, ANSWER, { origin: 'http://example.com', location: 'ws://example.com/demo' }),
      status,
      code,
    );
    expect(err.statusLine).toBe(statusLine);
    // Only a refusal (a status other than 101) carries the bytes after the head as its body.
    expect(err.body).toEqual(status !== 0 && status !== 101 ? body : undefined);
  });

  test('any single-bit change of the answer is rejected (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 127 }), (bit) => {
        const body = Buffer.from(ANSWER);
        body[bit >> 3] = (body[bit >> 3] as number) ^ (1 << (bit & 7));
        expectHandshakeError(() => verifyHybi00Response(line, ok, body, ANSWER), 101, 'WS_BAD_HYBI00_ANSWER');
      }),
    );
  });
});
