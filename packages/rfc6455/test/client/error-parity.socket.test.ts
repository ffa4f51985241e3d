/**
 * The client's handshake errors are the same on every path (docs/client.md, "errors"): one table of
 * failures, each over HTTP/1.1, HTTP/2 on a session of our own (`http2: true`) and hybi-00 where
 * the failure applies to it, against real servers (net, tls, http2), asserting the error's class,
 * `code`, `status`, and its `cause`, `statusLine` and `body` where docs/client.md documents them.
 *
 * Fixed bugs this covers: a hybi-00 refusal was `WS_UNEXPECTED_STATUS` (and its 101 without
 * `Connection: Upgrade` `WS_BAD_UPGRADE`, its failed 101s and non-HTTP answers a `body`); a hybi-00
 * server that never answered gave status 408; a `lookup` that throws (every path) or an `agent`
 * whose createConnection throws (a `createConnection` of connectHttp2()'s `sessionOptions` too)
 * rejected with the raw error; over HTTP/2 `maxHeaderSize`
 * was not applied, and the wait for SETTINGS timed out without naming `handshakeTimeout`.
 */
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { createServer as createH2Server, type Http2Server } from 'node:http2';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { types } from 'node:util';
import { createServer as createTlsServer } from 'node:tls';
import { connect, connectHttp2, HandshakeError, WebSocket, WebSocketStream, type ConnectOptions } from 'rfc6455';
import { acceptKey } from '../../src/handshake/server.js';
import { rawServer, requestKey, type RawServer } from '../helpers/raw-server.js';

const FIXTURES = path.join(__dirname, '../../../../test/fixtures/tls');
const TLS = { key: readFileSync(path.join(FIXTURES, 'key.pem')), cert: readFileSync(path.join(FIXTURES, 'cert.pem')) };

type Path = 'http1' | 'http2' | 'hybi00';
const PATH_OPTIONS: Record<Path, ConnectOptions> = { http1: {}, http2: { http2: true }, hybi00: { variant: 'hybi00' } };

/** What connect() rejected with (a resolved connection fails the test). */
async function failure(url: string, options: ConnectOptions): Promise<HandshakeError> {
  const outcome = await connect(url, { handshakeTimeout: 5000, ...options }).then(
    (conn) => {
      conn.terminate();
      return new Error('connected');
    },
    (error: unknown) => error,
  );
  if (!(outcome instanceof HandshakeError)) throw new Error(`not a HandshakeError: ${String((outcome as Error)?.stack ?? outcome)}`);
  return outcome;
}

const listening = async <S extends Server | Http2Server>(server: S): Promise<S & { port: number }> => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(server, { port: (server.address() as AddressInfo).port });
};

const closers: Array<() => Promise<void> | void> = [];
const sockets = new Set<Socket>();
const track = (socket: Socket): void => {
  sockets.add(socket);
  socket.on('error', () => undefined);
  socket.on('close', () => sockets.delete(socket));
};
const closing = (server: Server | Http2Server) => () => new Promise<void>((resolve) => server.close(() => resolve()));

let closedPort: number;
let silent: Server & { port: number; connected: (() => void) | undefined };
let untrusted: Server & { port: number };
let h2: Http2Server & { port: number };
const raw: Record<string, RawServer> = {};
const isHybi00 = (head: string): boolean => /^sec-websocket-key1:/im.test(head);

beforeAll(async () => {
  const spare = await listening(createNetServer());
  closedPort = spare.port;
  await closing(spare)();
  // Accepts and never answers; calls `connected` at each connection.
  silent = Object.assign(
    await listening(
      createNetServer((socket) => {
        track(socket);
        silent.connected?.();
      }),
    ),
    { connected: undefined as (() => void) | undefined },
  );
  // A certificate the client does not trust (no `ca`): self-signed.
  untrusted = await listening(createTlsServer({ ...TLS, ALPNProtocols: ['h2', 'http/1.1'] }, track));
  // HTTP/2 with extended CONNECT: answers by path.
  h2 = await listening(createH2Server({ settings: { enableConnectProtocol: true } }));
  h2.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    const where = headers[':path'];
    if (where === '/403') {
      stream.respond({ ':status': 403, 'content-type': 'text/plain' });
      stream.end('nope');
    } else if (where === '/large') {
      stream.respond({ ':status': 200, 'x-large': 'a'.repeat(3000) });
    } else {
      stream.session?.destroy(); // closed before any answer
    }
  });
  const respond = (answer: (head: string, socket: Socket) => void) => rawServer(answer);
  raw.forbidden = await respond((_head, socket) => socket.end('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nnope'));
  raw.wrongAccept = await respond((_head, socket) =>
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n'),
  );
  raw.noConnection = await respond((head, socket) => {
    const hybi00 = isHybi00(head);
    const accept = hybi00 ? '' : `Sec-WebSocket-Accept: ${acceptKey(requestKey(head))}\r\n`;
    // (hybi-00: its 16-byte answer follows, so that the head is what fails.)
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${hybi00 ? 'WebSocket' : 'websocket'}\r\n${accept}\r\n${hybi00 ? '0123456789abcdef' : ''}`);
  });
  raw.large = await respond((_head, socket) => socket.write(`HTTP/1.1 200 OK\r\nX-Large: ${'a'.repeat(3000)}\r\n\r\n`));
  raw.notHttp = await respond((_head, socket) => socket.end('SSH-2.0-OpenSSH_9.6\r\nProtocol mismatch.\r\n\r\n'));
  raw.midHead = await respond((_head, socket) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n');
    socket.destroy();
  });
  closers.push(closing(silent), closing(untrusted), closing(h2), ...Object.values(raw).map((server) => () => server.close()));
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await Promise.all(closers.map((close) => close()));
});

const notFound = Object.assign(new Error('getaddrinfo ENOTFOUND nowhere.invalid'), { code: 'ENOTFOUND' });
const thrown = new Error('the lookup threw');

interface Row {
  /** The failure. */
  what: string;
  /** The URL and options, by path (a path the failure does not apply to is left out). */
  via: Partial<Record<Path, () => [url: string, options: ConnectOptions]>>;
  code: string;
  status: number;
  /** Checks of what else is documented for it (`cause`, `statusLine`, `body`, the message). */
  check?: (error: HandshakeError) => void;
}

const everyPath = (make: () => [string, ConnectOptions]): Row['via'] => ({ http1: make, http2: make, hybi00: make });
const hasNoBody = (error: HandshakeError): void => expect(error.body).toBeUndefined();

const rows: Row[] = [
  {
    what: 'connection refused (a closed port)',
    via: everyPath(() => [`ws://127.0.0.1:${closedPort}/`, {}]),
    code: 'WS_CONNECT_FAILED',
    status: 0,
    check: (error) => expect((error.cause as NodeJS.ErrnoException).code).toBe('ECONNREFUSED'),
  },
  {
    what: 'a DNS failure (the lookup calls back with an error)',
    via: everyPath(() => [`ws://nowhere.invalid:${closedPort}/`, { lookup: ((_host: string, _options: unknown, callback: (error: Error) => void) => callback(notFound)) as ConnectOptions['lookup'] }]),
    code: 'WS_CONNECT_FAILED',
    status: 0,
    check: (error) => expect(error.cause).toBe(notFound),
  },
  {
    what: 'a lookup that throws',
    via: everyPath(() => [
      `ws://nowhere.invalid:${closedPort}/`,
      {
        lookup: (() => {
          throw thrown;
        }) as ConnectOptions['lookup'],
      },
    ]),
    code: 'WS_CONNECT_FAILED',
    status: 0,
    check: (error) => expect(error.cause).toBe(thrown),
  },
  {
    what: 'a TLS failure (a certificate the client does not trust)',
    via: everyPath(() => [`wss://localhost:${untrusted.port}/`, {}]),
    code: 'WS_CONNECT_FAILED',
    status: 0,
    check: (error) => {
      expect((error.cause as NodeJS.ErrnoException).code).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
      expect(error.message).toContain('self-signed certificate');
    },
  },
  {
    what: 'a timeout (a server that never answers)',
    via: everyPath(() => [`ws://127.0.0.1:${silent.port}/`, { handshakeTimeout: 300 }]),
    code: 'WS_HANDSHAKE_TIMEOUT',
    status: 0,
    check: (error) => expect(error.message).toContain('handshake timed out after 300 ms'),
  },
  {
    what: 'a 403 with a body',
    via: { http1: () => [raw.forbidden!.url, {}], http2: () => [`ws://127.0.0.1:${h2.port}/403`, {}], hybi00: () => [raw.forbidden!.url, {}] },
    code: 'WS_UNEXPECTED_RESPONSE',
    status: 403,
    check: (error) => {
      expect(error.body?.toString()).toBe('nope');
      expect(error.headers['content-type']).toBe('text/plain');
      expect(error.message).toMatch(/^server answered 403\b/);
      expect(error.statusLine).toMatch(/^HTTP\/[12](\.\d)? 403\b/);
    },
  },
  {
    // (Over HTTP/2 a server that answers the preface with HTTP/1.1 is no HTTP/2 server: the
    // client falls back to HTTP/1.1, and judges that answer. hybi-00 checks its 16-byte answer.)
    what: 'a 101 with a wrong Sec-WebSocket-Accept',
    via: { http1: () => [raw.wrongAccept!.url, {}], http2: () => [raw.wrongAccept!.url, {}] },
    code: 'WS_BAD_ACCEPT',
    status: 101,
    check: hasNoBody,
  },
  {
    what: 'a 101 without Connection: Upgrade',
    via: { http1: () => [raw.noConnection!.url, {}], hybi00: () => [raw.noConnection!.url, {}] },
    code: 'WS_BAD_CONNECTION',
    status: 101,
    check: hasNoBody,
  },
  {
    what: 'a response head over maxHeaderSize',
    via: { http1: () => [raw.large!.url, { maxHeaderSize: 1024 }], http2: () => [`ws://127.0.0.1:${h2.port}/large`, { maxHeaderSize: 1024 }], hybi00: () => [raw.large!.url, { maxHeaderSize: 1024 }] },
    code: 'WS_RESPONSE_TOO_LARGE',
    status: 0,
    check: hasNoBody,
  },
  {
    what: 'an answer that is not HTTP',
    via: everyPath(() => [raw.notHttp!.url, {}]),
    code: 'WS_BAD_STATUS_LINE',
    status: 0,
    check: (error) => {
      // The line when it was read, else the parser's error.
      expect(error.statusLine ?? (error.cause as NodeJS.ErrnoException | undefined)?.code).toMatch(/^SSH-2\.0|^HPE_/);
      hasNoBody(error);
    },
  },
  {
    what: 'the connection closed in the middle of the response head',
    via: { http1: () => [raw.midHead!.url, {}], http2: () => [`ws://127.0.0.1:${h2.port}/gone`, {}], hybi00: () => [raw.midHead!.url, {}] },
    code: 'WS_CONNECT_FAILED',
    status: 0,
    check: hasNoBody,
  },
];

describe.each(rows)('$what', (row) => {
  test.each(Object.keys(row.via) as Path[])('over %s', async (path) => {
    const [url, options] = row.via[path]!();
    const error = await failure(url, { ...options, ...PATH_OPTIONS[path] });
    expect([error.code, error.status]).toEqual([row.code, row.status]);
    row.check?.(error);
  });
});

describe('an aborted signal', () => {
  test.each(Object.keys(PATH_OPTIONS) as Path[])('over %s, aborted while the server is silent: WS_CONNECT_FAILED, its cause an AbortError caused by the reason', async (path) => {
    const controller = new AbortController();
    const reason = new Error('given up');
    silent.connected = () => controller.abort(reason);
    try {
      const error = await failure(`ws://127.0.0.1:${silent.port}/`, { ...PATH_OPTIONS[path], signal: controller.signal });
      expect([error.code, error.status, (error.cause as Error).name, (error.cause as Error).cause]).toEqual(['WS_CONNECT_FAILED', 0, 'AbortError', reason]);
    } finally {
      silent.connected = undefined;
    }
  });

  test.each(Object.keys(PATH_OPTIONS) as Path[])('over %s, aborted before: the same', async (path) => {
    const reason = new Error('never mind');
    const error = await failure(`ws://127.0.0.1:${silent.port}/`, { ...PATH_OPTIONS[path], signal: AbortSignal.abort(reason) });
    expect([error.code, error.status, (error.cause as Error).name, (error.cause as Error).cause]).toEqual(['WS_CONNECT_FAILED', 0, 'AbortError', reason]);
  });
});

test('an agent whose createConnection throws (HTTP/1.1 only): WS_CONNECT_FAILED, the error as its cause, as when it reports it on the request', async () => {
  const broken = new Error('no connection for you');
  class Throwing extends Agent {
    override createConnection(): never {
      throw broken;
    }
  }
  const thrownBy = await failure(`ws://127.0.0.1:${closedPort}/`, { agent: new Throwing() });
  expect([thrownBy.code, thrownBy.status, thrownBy.cause]).toEqual(['WS_CONNECT_FAILED', 0, broken]);
  class Reporting extends Agent {
    override createConnection(_options: object, callback: (error: Error | null) => void): undefined {
      callback(broken);
      return undefined;
    }
  }
  const reportedBy = await failure(`ws://127.0.0.1:${closedPort}/`, { agent: new Reporting() });
  expect([reportedBy.code, reportedBy.status, reportedBy.cause]).toEqual(['WS_CONNECT_FAILED', 0, broken]);
});

test("connectHttp2() with a createConnection of the caller's that throws: WS_CONNECT_FAILED, the error as its cause, as an agent's over HTTP/1.1", async () => {
  const broken = new Error('no socket for you');
  const outcome = await connectHttp2(new URL(`ws://127.0.0.1:${h2.port}/`), {
    sessionOptions: {
      createConnection: () => {
        throw broken;
      },
    },
  }).then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(outcome).toBeInstanceOf(HandshakeError);
  expect([(outcome as HandshakeError).code, (outcome as HandshakeError).status, (outcome as HandshakeError).cause]).toEqual(['WS_CONNECT_FAILED', 0, broken]);
});

describe('the browser-style classes carry the same error', () => {
  const options = (path: Path): ConnectOptions => ({
    ...PATH_OPTIONS[path],
    lookup: (() => {
      throw thrown;
    }) as ConnectOptions['lookup'],
  });

  test.each(Object.keys(PATH_OPTIONS) as Path[])('WebSocket over %s: an error event with the HandshakeError, then close 1006', async (path) => {
    const ws = new WebSocket(`ws://nowhere.invalid:${closedPort}/`, options(path));
    const error = new Promise<unknown>((resolve) => ws.addEventListener('error', (event) => resolve((event as Event & { error: unknown }).error)));
    const closed = new Promise<number>((resolve) => ws.addEventListener('close', (event) => resolve((event as Event & { code: number }).code)));
    const reported = await error;
    expect(reported).toBeInstanceOf(HandshakeError);
    expect([(reported as HandshakeError).code, (reported as HandshakeError).cause]).toEqual(['WS_CONNECT_FAILED', thrown]);
    expect(await closed).toBe(1006);
  });

  test.each(Object.keys(PATH_OPTIONS) as Path[])('WebSocketStream over %s: closed rejects, caused by the HandshakeError', async (path) => {
    const wss = new WebSocketStream(`ws://nowhere.invalid:${closedPort}/`, options(path));
    await expect(wss.opened).rejects.toBeDefined();
    const closed = (await wss.closed.then(
      () => undefined,
      (error: unknown) => error,
    )) as Error & { closeCode?: number };
    expect(closed.cause).toBeInstanceOf(HandshakeError);
    expect([(closed.cause as HandshakeError).code, (closed.cause as HandshakeError).cause]).toEqual(['WS_CONNECT_FAILED', thrown]);
  });
});

describe('TLS material OpenSSL cannot use is thrown as its error, before connecting, on every path (docs/client.md)', () => {
  const { privateKey: encrypted } = generateKeyPairSync('ec', {
    namedCurve: 'P-256',
    privateKeyEncoding: { type: 'pkcs8', format: 'pem', cipher: 'aes-128-cbc', passphrase: 'right' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  // Of the certificate's type (RSA): OpenSSL takes a key of another type as one for another slot.
  const { privateKey: otherKey } = generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
  const materials: Array<[what: string, tls: ConnectOptions['tls'], code: string | undefined]> = [
    ['a key and cert that are not PEM', { key: 'not a key', cert: 'not a cert' }, 'ERR_OSSL_PEM_NO_START_LINE'],
    ['a key that does not match its cert', { key: otherKey, cert: TLS.cert }, 'ERR_OSSL_X509_KEY_VALUES_MISMATCH'],
    ['a wrong passphrase', { key: encrypted, passphrase: 'wrong', cert: TLS.cert }, 'ERR_OSSL_BAD_DECRYPT'],
    ['a pfx that is not PKCS #12', { pfx: Buffer.from('not pkcs12') }, undefined],
  ];
  const cases = materials.flatMap(([what, tls, code]) => (Object.keys(PATH_OPTIONS) as Path[]).map((via) => ({ what, tls, code, via })));

  test.each(cases)('$what, over $via', async ({ tls, code, via }) => {
    let connections = 0;
    const server = await listening(createTlsServer(TLS, (socket) => (connections++, socket.destroy())));
    try {
      const outcome = await connect(`wss://127.0.0.1:${server.port}/`, { ...PATH_OPTIONS[via], tls }).then(
        (conn) => (conn.terminate(), undefined),
        (error: unknown) => error as Error & { code?: string },
      );
      // (Node's errors are of its own realm: not instances of the test's Error.)
      expect(types.isNativeError(outcome)).toBe(true);
      expect(outcome).not.toBeInstanceOf(HandshakeError);
      expect(outcome!.code).toBe(code);
      if (code === undefined) expect(outcome!.message).toMatch(/not enough data|PKCS12|asn1/i);
      // Nothing was sent: no connection was made.
      await new Promise((resolve) => setImmediate(resolve));
      expect(connections).toBe(0);
    } finally {
      await closing(server)();
    }
  });

  test('the WebSocket class reports it as its error event, WebSocketStream as the cause of its opened error', async () => {
    const tls = { key: 'not a key', cert: 'not a cert' };
    const ws = new WebSocket(`wss://127.0.0.1:${closedPort}/`, { tls });
    const reported = await new Promise<unknown>((resolve) => ws.addEventListener('error', (event) => resolve((event as Event & { error: unknown }).error)));
    expect((reported as { code?: string }).code).toBe('ERR_OSSL_PEM_NO_START_LINE');
    const wss = new WebSocketStream(`wss://127.0.0.1:${closedPort}/`, { tls });
    const opened = (await wss.opened.then(
      () => undefined,
      (error: unknown) => error,
    )) as Error;
    expect((opened.cause as { code?: string }).code).toBe('ERR_OSSL_PEM_NO_START_LINE');
    await wss.closed.catch(() => undefined);
  });
});
