import { HandshakeError } from '../../src/errors.js';
import { formatExtension, formatExtensions, parseExtensions, type ExtensionOffer } from '../../src/extensions/header.js';
import { wsExtension } from './ws-internals.js';

function expectBadHeader(value: string | string[]): void {
  let caught: unknown;
  try {
    parseExtensions(value);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(HandshakeError);
  expect((caught as HandshakeError).status).toBe(400);
  expect((caught as HandshakeError).code).toBe('WS_BAD_EXTENSIONS_HEADER');
}

describe('parseExtensions', () => {
  test('absent or blank header gives no extensions', () => {
    expect(parseExtensions(undefined)).toEqual([]);
    expect(parseExtensions('')).toEqual([]);
    expect(parseExtensions('  \t ')).toEqual([]);
    expect(parseExtensions([])).toEqual([]);
  });

  test('RFC 6455 §9.1 example: foo, bar; baz=2', () => {
    expect(parseExtensions('foo, bar; baz=2')).toEqual([
      { name: 'foo', params: [] },
      { name: 'bar', params: [['baz', '2']] },
    ]);
  });

  test('RFC 7692 §5.1 example offers and responses', () => {
    expect(parseExtensions('permessage-deflate; client_max_window_bits; server_max_window_bits=10, permessage-deflate; client_max_window_bits')).toEqual([
      {
        name: 'permessage-deflate',
        params: [
          ['client_max_window_bits', true],
          ['server_max_window_bits', '10'],
        ],
      },
      { name: 'permessage-deflate', params: [['client_max_window_bits', true]] },
    ]);
    expect(parseExtensions('permessage-deflate; server_max_window_bits=10')).toEqual([
      { name: 'permessage-deflate', params: [['server_max_window_bits', '10']] },
    ]);
  });

  test('RFC 7692 §7.1.2.1: a quoted value is unescaped', () => {
    expect(parseExtensions('permessage-deflate; client_max_window_bits="10"')).toEqual([
      { name: 'permessage-deflate', params: [['client_max_window_bits', '10']] },
    ]);
    expect(parseExtensions('x; a="b\\c"')).toEqual([{ name: 'x', params: [['a', 'bc']] }]);
  });

  test('names are lower-cased, values kept, whitespace around separators ignored', () => {
    expect(parseExtensions(' Permessage-Deflate ;\tClient_No_Context_Takeover ; Key = Value ')).toEqual([
      {
        name: 'permessage-deflate',
        params: [
          ['client_no_context_takeover', true],
          ['key', 'Value'],
        ],
      },
    ]);
  });

  test('several header lines are joined as one list; empty list elements are ignored', () => {
    expect(parseExtensions(['a; x', 'b', ' , c ,, '])).toEqual([
      { name: 'a', params: [['x', true]] },
      { name: 'b', params: [] },
      { name: 'c', params: [] },
    ]);
  });

  test('duplicate parameters are kept in order for the extension to judge', () => {
    expect(parseExtensions('a; x=1; x=2')).toEqual([
      {
        name: 'a',
        params: [
          ['x', '1'],
          ['x', '2'],
        ],
      },
    ]);
  });

  test.each([
    ['missing name before parameter', '; x'],
    ['missing parameter name', 'a; '],
    ['missing parameter name before =', 'a; =1'],
    ['missing value', 'a; x='],
    ['unterminated quoted-string', 'a; x="10'],
    ['quoted value that is not a token', 'a; x="1 0"'],
    ['empty quoted value', 'a; x=""'],
    ['space inside a name', 'a b'],
    ['separator in a token', 'a; x=1/2'],
    ['quote inside a token', 'a"b'],
    ['non-ASCII name', 'défl'],
    ['trailing backslash in quotes', 'a; x="1\\'],
    ['two values', 'a; x=1=2'],
  ])('rejects %s', (_label, value) => {
    expectBadHeader(value);
  });

  test('the error names the broken rule and its offset: a backslash at the end is an unterminated quoted-pair, not quoted-string', () => {
    expect(() => parseExtensions('a; x="1\\')).toThrow(/unterminated quoted-pair at offset 7$/);
    expect(() => parseExtensions('a; x="1\\"')).toThrow(/unterminated quoted-string at offset 5$/);
  });

  test('a bad element in any joined line fails the whole header', () => {
    expectBadHeader(['permessage-deflate', 'x; ="1"']);
  });

  test.each([
    'permessage-deflate',
    'permessage-deflate; client_max_window_bits',
    'permessage-deflate; server_no_context_takeover; client_max_window_bits=10, permessage-deflate',
    'foo; a=1; b, bar; c="d"',
    'a;b;c=1 , d',
  ])('agrees with ws extension.parse on %j', (header) => {
    const ours = parseExtensions(header);
    const theirs = wsExtension.parse(header);
    const grouped: Record<string, Array<Record<string, Array<string | true>>>> = {};
    for (const offer of ours) {
      const params: Record<string, Array<string | true>> = {};
      for (const [k, v] of offer.params) (params[k] ??= []).push(v);
      (grouped[offer.name] ??= []).push(params);
    }
    expect(JSON.parse(JSON.stringify(theirs))).toEqual(grouped);
  });
});

describe('formatExtension', () => {
  test('formats parameters with and without values', () => {
    const offer: ExtensionOffer = {
      name: 'permessage-deflate',
      params: [
        ['server_no_context_takeover', true],
        ['server_max_window_bits', '10'],
      ],
    };
    expect(formatExtension(offer)).toBe('permessage-deflate; server_no_context_takeover; server_max_window_bits=10');
  });

  test('quotes a value that is not a token and escapes quotes', () => {
    expect(formatExtension({ name: 'x', params: [['a', 'b c"']] })).toBe('x; a="b c\\""');
  });

  test('rejects a name that is not a token', () => {
    expect(() => formatExtension({ name: 'a b', params: [] })).toThrow(TypeError);
    expect(() => formatExtension({ name: 'a', params: [['b;', true]] })).toThrow(TypeError);
  });

  test('round trips through parseExtensions', () => {
    const offers: ExtensionOffer[] = [
      { name: 'permessage-deflate', params: [['client_max_window_bits', true]] },
      { name: 'x-foo', params: [['k', 'v']] },
    ];
    expect(parseExtensions(formatExtensions(offers))).toEqual(offers);
  });
});

describe('tchar boundaries (RFC 7230 §3.2.6)', () => {
  const TCHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

  test('every tchar is taken in a name, a parameter name, a token value and a quoted value; each neighbour of the ranges and every other printable character is refused there', () => {
    for (const c of TCHARS) {
      const header = `x${c}; p${c}=v${c}; q="w${c}"`;
      expect([c, parseExtensions(header)]).toEqual([c, [{ name: `x${c}`.toLowerCase(), params: [[`p${c}`.toLowerCase(), `v${c}`], ['q', `w${c}`]] }]]);
      expect([c, formatExtension({ name: 'x', params: [['p', `v${c}`]] })]).toEqual([c, `x; p=v${c}`]);
    }
    for (let code = 0x21; code < 0x7f; code++) {
      const c = String.fromCharCode(code);
      if (TCHARS.includes(c) || c === '"' || c === ',' || c === ';' || c === '=' || c === '\\') continue;
      for (const header of [`x${c}y`, `x; p${c}q`, `x; p=v${c}w`, `x; p="v${c}"`]) {
        expect(() => parseExtensions(header)).toThrow(HandshakeError);
      }
      expect(formatExtension({ name: 'x', params: [['p', `v${c}`]] })).toBe(`x; p="v${c}"`);
    }
  });
});
