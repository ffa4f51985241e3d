/**
 * The service mapper as a pure function of (path, offered subprotocols): Racket's
 * `ws-service-mapper` semantics (whole-path regular expressions, first match wins, client order
 * for subprotocols) with real HTTP statuses for refusals.
 */
import fc from 'fast-check';
import { isServiceMapper, requestPath, serve, serviceMapper, type ConnectionHandler } from '../src/index.js';
import { RawClient } from './helpers/raw-client.js';

const h = (name: string): ConnectionHandler => Object.assign(() => undefined, { label: name });
const label = (result: ReturnType<ReturnType<typeof serviceMapper>['match']>): string =>
  result.ok ? `${(result.handler as unknown as { label: string }).label}|${result.protocol}` : `${result.status}`;

describe('serviceMapper: paths', () => {
  const plain = h('plain');
  const mapper = serviceMapper([
    { path: '/test', handler: plain },
    { path: /^\/rooms\/(?<room>[a-z]+)$/, handler: h('room') },
    { path: '/files/(?<name>.+)\\.(?<ext>txt|md)', handler: h('file') },
    { path: '/t.st', handler: h('dot') },
  ]);

  it('mapper matches a string path against the whole path', () => {
    expect(label(mapper.match('/test', []))).toBe('plain|');
    expect(label(mapper.match('/test/more', []))).toBe('404');
    expect(label(mapper.match('/x/test', []))).toBe('404');
  });

  it('dot segments and percent escapes are not resolved: `..` never reaches a route the path does not name', () => {
    expect(label(mapper.match('/rooms/../test', []))).toBe('404');
    expect(label(mapper.match('/rooms/%2e%2e/test', []))).toBe('404');
    expect(label(mapper.match('/test/..', []))).toBe('404');
    expect(label(mapper.match('/test/.', []))).toBe('404');
  });

  it('mapper reads a string path as a regular expression (Racket regexp-match-exact?)', () => {
    expect(label(mapper.match('/tast', []))).toBe('dot|');
  });

  it('mapper returns named groups as params', () => {
    const result = mapper.match('/files/notes.md', []);
    expect(result.ok && result.params).toEqual({ name: 'notes', ext: 'md' });
    const room = mapper.match('/rooms/lobby', []);
    expect(room.ok && room.params).toEqual({ room: 'lobby' });
  });

  it('mapper hands over every named group as an own param, whatever its name (__proto__ too)', () => {
    const m = serviceMapper([{ path: '/(?<__proto__>[a-z]+)/(?<constructor>[a-z]+)(?:/(?<opt>[a-z]+))?', handler: h('p') }]);
    const result = m.match('/abc/def', []);
    expect(result.ok && Object.entries(result.params)).toEqual([['__proto__', 'abc'], ['constructor', 'def']]);
  });

  it('mapper makes a RegExp match the whole path even without anchors', () => {
    const m = serviceMapper([{ path: /\/a/, handler: h('a') }]);
    expect(label(m.match('/a', []))).toBe('a|');
    expect(label(m.match('/ab', []))).toBe('404');
  });

  it('mapper is not confused by a global RegExp used twice (no lastIndex state)', () => {
    const m = serviceMapper([{ path: /\/g/g, handler: h('g') }]);
    expect(label(m.match('/g', []))).toBe('g|');
    expect(label(m.match('/g', []))).toBe('g|');
  });

  it('mapper is not confused by a sticky RegExp (flag y, alone or with g) used twice, by match or claims', () => {
    for (const path of [/\/y/y, /\/gy/gy]) {
      const m = serviceMapper([{ path, handler: h('y') }]);
      const whole = path.source.replace('\\', '');
      expect(label(m.match(whole, []))).toBe('y|');
      expect(label(m.match(whole, []))).toBe('y|');
      expect(m.claims(whole)).toBe(true);
      expect(m.claims(whole)).toBe(true);
    }
  });

  it('mapper anchors an alternation at both ends, as a whole (string and RegExp)', () => {
    for (const path of ['/a|/b', /\/a|\/b/]) {
      const m = serviceMapper([{ path, handler: h('ab') }]);
      expect(label(m.match('/a', []))).toBe('ab|');
      expect(label(m.match('/b', []))).toBe('ab|');
      expect(label(m.match('/a/x', []))).toBe('404');
      expect(label(m.match('/x/b', []))).toBe('404');
      expect(m.claims('/a/x')).toBe(false);
      expect(m.claims('/x/b')).toBe(false);
    }
  });

  it('mapper anchors an unanchored RegExp at the start too', () => {
    const m = serviceMapper([{ path: /\/a/, handler: h('a') }]);
    expect(label(m.match('/x/a', []))).toBe('404');
  });

  it("mapper keeps a RegExp's other flags (i: case-insensitive path)", () => {
    const m = serviceMapper([{ path: /\/Chat/i, handler: h('chat') }]);
    expect(label(m.match('/chat', []))).toBe('chat|');
    expect(label(m.match('/CHAT', []))).toBe('chat|');
  });

  it('mapper answers 404 naming the path when no route matches', () => {
    const result = mapper.match('/nowhere', []);
    expect(result).toEqual({ ok: false, status: 404, reason: expect.stringContaining('/nowhere') });
  });

  it('first matching route wins, with no fall-through to later routes', () => {
    const m = serviceMapper([
      { path: '/chat', protocols: { a: h('first-a') } },
      { path: '/chat', handler: h('second'), protocols: { b: h('second-b') } },
    ]);
    expect(label(m.match('/chat', ['b']))).toBe('400');
    expect(label(m.match('/chat', []))).toBe('400');
    expect(label(m.match('/chat', ['a']))).toBe('first-a|a');
  });
});

describe('serviceMapper: subprotocols', () => {
  const mapper = serviceMapper([
    { path: '/test', handler: h('none'), protocols: { subprotocol: h('sub'), alias: h('sub'), other: h('other') } },
    { path: '/required', protocols: { chat: h('chat') } },
  ]);

  it('mapper chooses the first offered subprotocol the route supports, in the client order', () => {
    expect(label(mapper.match('/test', ['other', 'subprotocol']))).toBe('other|other');
    expect(label(mapper.match('/test', ['subprotocol', 'other']))).toBe('sub|subprotocol');
    expect(label(mapper.match('/test', ['unknown', 'alias']))).toBe('sub|alias');
  });

  it('mapper uses the no-subprotocol handler only when none is offered', () => {
    expect(label(mapper.match('/test', []))).toBe('none|');
    expect(label(mapper.match('/test', ['unknown']))).toBe('400');
  });

  it('mapper answers 400 naming the supported subprotocols when none offered is supported', () => {
    const result = mapper.match('/required', ['x', 'y']);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.status).toBe(400);
    expect(result.reason).toContain('chat');
    expect(result.reason).toContain('x, y');
  });

  it('mapper says a route with no protocols takes none when a client offers some (400)', () => {
    const m = serviceMapper([{ path: '/plain', handler: h('plain') }]);
    const result = m.match('/plain', ['chat']);
    expect(!result.ok && result.status).toBe(400);
    expect(!result.ok && result.reason).toBe('this endpoint takes no subprotocol (offered chat)');
  });

  it('mapper hands the named groups of the path to a subprotocol handler too', () => {
    const m = serviceMapper([{ path: '/rooms/(?<room>[a-z]+)', protocols: { chat: h('chat') } }]);
    const result = m.match('/rooms/lobby', ['chat']);
    expect(result.ok && result.protocol).toBe('chat');
    expect(result.ok && result.params).toEqual({ room: 'lobby' });
  });

  it('mapper answers 400 when a subprotocol is required and none is offered', () => {
    const result = mapper.match('/required', []);
    expect(!result.ok && result.status).toBe(400);
    expect(!result.ok && result.reason).toContain('chat');
  });

  it('mapper compares subprotocol names case-sensitively (RFC 6455 §4.1 tokens)', () => {
    expect(label(mapper.match('/required', ['Chat']))).toBe('400');
    expect(label(mapper.match('/required', ['chat']))).toBe('chat|chat');
  });

  it('mapper picks the earliest supported offer for any offer list (property)', () => {
    const names = fc.constantFrom('subprotocol', 'alias', 'other', 'x', 'y', 'Chat');
    fc.assert(
      fc.property(fc.uniqueArray(names, { maxLength: 6 }), (offered) => {
        const result = mapper.match('/test', offered);
        const supported = offered.find((p) => ['subprotocol', 'alias', 'other'].includes(p));
        if (offered.length === 0) return result.ok && result.protocol === '';
        if (supported === undefined) return !result.ok && result.status === 400;
        return result.ok && result.protocol === supported;
      }),
    );
  });
});

describe('serviceMapper: construction', () => {
  it('serviceMapper rejects a route with neither a handler nor protocols', () => {
    expect(() => serviceMapper([{ path: '/x' }])).toThrow(TypeError);
    expect(() => serviceMapper([{ path: '/x', protocols: {} }])).toThrow(TypeError);
  });

  it('serviceMapper rejects an invalid regular expression when built, not when matched', () => {
    expect(() => serviceMapper([{ path: '/(unclosed', handler: h('x') }])).toThrow(SyntaxError);
  });

  it('serviceMapper rejects a string path with an unbalanced ")" instead of matching it half-anchored', () => {
    // Wrapped as ^(?:…)$ without a check, '/a)|(/b' compiled to ^(?:/a)|(/b)$, which matched any
    // path starting with /a, although a route's path must match the whole path.
    expect(() => serviceMapper([{ path: '/a)|(/b', handler: h('x') }])).toThrow(SyntaxError);
    expect(() => serviceMapper([{ path: '/a)|(?:', handler: h('x') }])).toThrow(SyntaxError);
  });

  it('isServiceMapper tells mappers from handlers and other values', () => {
    expect(isServiceMapper(serviceMapper([{ path: '/', handler: h('x') }]))).toBe(true);
    expect(isServiceMapper(h('x'))).toBe(false);
    expect(isServiceMapper(null)).toBe(false);
    expect(isServiceMapper(undefined)).toBe(false);
    // A handler function is never a mapper, even one carrying the brand's symbol.
    expect(isServiceMapper(Object.assign(h('x'), { [Symbol.for('rfc6455.ServiceMapper')]: true }))).toBe(false);
    expect(isServiceMapper({ match: () => undefined })).toBe(false);
  });

  it('mapper exposes its routes (so adapters can compose mappers)', () => {
    const routes = [{ path: '/a', handler: h('a') }];
    expect(serviceMapper(routes).routes).toEqual(routes);
  });
});

describe('serviceMapper behind serve(): the request target', () => {
  it('an absolute-form request target (RFC 6455 §4.2.1: "an absolute HTTP/HTTPS URI containing the resource name") is routed by its path', async () => {
    const seen: Array<{ path: string; room: string | undefined }> = [];
    const server = await serve({ port: 0 }, serviceMapper([
      { path: /^\/rooms\/(?<room>[a-z]+)$/, handler: (conn, _req, { params }) => void seen.push({ path: conn.path, room: params.room }) },
    ]));
    let client: RawClient | undefined;
    try {
      client = await RawClient.connect(server.port, { path: `http://127.0.0.1:${server.port}/rooms/lobby?x=1` });
      expect(client.response.status).toBe(101);
    } finally {
      client?.socket.destroy();
      await server.close();
    }
    expect(seen).toEqual([{ path: '/rooms/lobby', room: 'lobby' }]);
  });

  it('a fragment in the request target (Node lets "#" through) is not part of the routed path, as in Racket and the frameworks\' routers', async () => {
    const seen: Array<{ path: string; room: string | undefined }> = [];
    const server = await serve({ port: 0 }, serviceMapper([
      { path: /^\/rooms\/(?<room>[a-z]+)$/, handler: (conn, _req, { params }) => void seen.push({ path: conn.path, room: params.room }) },
    ]));
    const clients: RawClient[] = [];
    try {
      for (const path of ['/rooms/lobby#x', '/rooms/hall#x?y=1']) {
        const client = await RawClient.connect(server.port, { path });
        clients.push(client);
        expect(client.response.status).toBe(101);
      }
    } finally {
      for (const client of clients) client.socket.destroy();
      await server.close();
    }
    expect(seen).toEqual([{ path: '/rooms/lobby', room: 'lobby' }, { path: '/rooms/hall', room: 'hall' }]);
  });

  it('requestPath gives the path of an origin-form or absolute-form target, without the query', () => {
    expect(requestPath('/a/b?x=1')).toBe('/a/b');
    expect(requestPath('https://example.com:8443/a/b?x=1')).toBe('/a/b');
    expect(requestPath('ws://example.com')).toBe('/');
    expect(requestPath('http://example.com?x=1')).toBe('/');
    expect(requestPath('//not/absolute')).toBe('//not/absolute');
    expect(requestPath('/a/b#f?x=1')).toBe('/a/b');
    expect(requestPath('/a/b?x=1#f')).toBe('/a/b');
    expect(requestPath('http://example.com#f')).toBe('/');
    expect(requestPath(undefined)).toBe('/');
  });
});
