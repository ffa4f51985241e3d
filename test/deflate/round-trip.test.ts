/**
 * permessage-deflate between our client and our server over real sockets: every window size and
 * takeover mode, sizes around the threshold, fragmented compressed messages, compress:false, the
 * inflated-size limit (1009 after at most about the limit's worth of inflating), contexts released
 * when connections close, and a side that declines or does not offer.
 *
 * Whether a message was compressed is read from the wire: the receiving socket's bytesRead delta.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { constants, deflateRawSync } from 'node:zlib';
import { connect, serve, type WebSocketConnection, type PerMessageDeflateOptions } from 'rfc6455';
import { closePayload, frame } from '../../packages/rfc6455/test/helpers/frames.js';
import { RawClient } from '../../packages/rfc6455/test/helpers/raw-client.js';
import {
  bytesRead,
  compressibleBytes,
  compressibleText,
  echoServer,
  extensionOf,
  openZlibStreams,
  trackZlib,
  until,
  type EchoServer,
} from './helpers.js';

trackZlib();

const servers: EchoServer[] = [];
const clients: WebSocketConnection[] = [];

async function startServer(options: Parameters<typeof echoServer>[0] = {}): Promise<EchoServer> {
  const s = await echoServer(options);
  servers.push(s);
  return s;
}

async function open(url: string, options: Parameters<typeof connect>[1] = {}): Promise<WebSocketConnection> {
  const c = await connect(url, options);
  clients.push(c);
  return c;
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.terminate();
  await Promise.all(servers.splice(0).map((s) => s.server.close()));
});

/** What one echo round trip cost on the wire: bytes the server read, bytes the client read. */
interface Trip {
  echo: string | Buffer;
  up: number;
  down: number;
}

async function roundTrip(client: WebSocketConnection, server: WebSocketConnection, message: string | Buffer, options?: { compress?: boolean }): Promise<Trip> {
  const s0 = bytesRead(server);
  const c0 = bytesRead(client);
  await client.send(message, options);
  const echo = await client.recv();
  if (typeof echo === 'symbol') throw new Error(`closed: ${client.closeStatus}`);
  return { echo, up: bytesRead(server) - s0, down: bytesRead(client) - c0 };
}

const MODES: Array<{ name: string; serverNoContextTakeover: boolean; clientNoContextTakeover: boolean }> = [
  { name: 'takeover both ways', serverNoContextTakeover: false, clientNoContextTakeover: false },
  { name: 'server_no_context_takeover', serverNoContextTakeover: true, clientNoContextTakeover: false },
  { name: 'client_no_context_takeover', serverNoContextTakeover: false, clientNoContextTakeover: true },
  { name: 'no_context_takeover both ways', serverNoContextTakeover: true, clientNoContextTakeover: true },
];
const BITS = [8, 9, 10, 11, 12, 13, 14, 15];

describe('round trips with each window size and takeover mode', () => {
  for (const mode of MODES) {
    test.each(BITS)(`client offers ${mode.name}, both windows %i bits: text and binary round-trip, takeover shows on the wire`, async (bits) => {
      const s = await startServer();
      const offer: PerMessageDeflateOptions = {
        serverMaxWindowBits: bits,
        clientMaxWindowBits: bits,
        serverNoContextTakeover: mode.serverNoContextTakeover,
        clientNoContextTakeover: mode.clientNoContextTakeover,
      };
      const client = await open(s.url, { perMessageDeflate: offer });
      const server = await s.nth(0);

      const expected = {
        serverNoContextTakeover: mode.serverNoContextTakeover,
        clientNoContextTakeover: mode.clientNoContextTakeover,
        serverMaxWindowBits: bits,
        clientMaxWindowBits: bits,
      };
      expect(extensionOf(server)?.params).toEqual(expected);
      expect(extensionOf(client)?.params).toEqual(expected);
      expect(server.extensions).toContain('permessage-deflate');
      // Offered without a value at 15, so not answered then (RFC 7692 §7.1.2.2).
      if (bits < 15) expect(server.extensions).toContain(`client_max_window_bits=${bits}`);
      if (bits < 15) expect(server.extensions).toContain(`server_max_window_bits=${bits}`);
      expect(client.extensions).toBe(server.extensions);

      const messages: Array<string | Buffer> = [
        compressibleText(1023, bits),
        compressibleText(1024, bits),
        compressibleText(1025, bits),
        compressibleText(40_000, bits),
        compressibleBytes(1024, bits),
        compressibleBytes(70_000, bits),
        'é€😀'.repeat(2000),
        Buffer.alloc(0),
        '',
      ];
      for (const m of [...messages, ...messages]) {
        const trip = await roundTrip(client, server, m);
        expect(trip.echo).toEqual(m);
        if (m.length >= 40_000) {
          // Compressed both ways: well under half the size on the wire.
          expect(trip.up).toBeLessThan(m.length / 2);
          expect(trip.down).toBeLessThan(m.length / 2);
        }
      }

      // Takeover on the wire: the same 1500 random bytes sent twice cost almost nothing the second
      // time when the context is kept (the window reaches back to the first copy), the full size when reset.
      if (bits >= 11) {
        const random = randomBytes(1500);
        await roundTrip(client, server, random);
        const second = await roundTrip(client, server, random);
        expect(second.echo).toEqual(random);
        if (mode.clientNoContextTakeover) expect(second.up).toBeGreaterThan(1500);
        else expect(second.up).toBeLessThan(200);
        if (mode.serverNoContextTakeover) expect(second.down).toBeGreaterThan(1500);
        else expect(second.down).toBeLessThan(200);
      }

      await client.close();
      expect(client.closeStatus).toBe(1000);
    });
  }

  test.each(BITS)('server limits both windows to %i bits for a client offering defaults: round-trips', async (bits) => {
    const s = await startServer({ perMessageDeflate: { serverMaxWindowBits: bits, clientMaxWindowBits: bits } });
    const client = await open(s.url);
    const server = await s.nth(0);
    expect(extensionOf(client)?.params).toMatchObject({ serverMaxWindowBits: bits, clientMaxWindowBits: bits });
    for (const m of [compressibleText(50_000, bits), compressibleBytes(50_000, bits), randomBytes(5000)]) {
      const trip = await roundTrip(client, server, m);
      expect(trip.echo).toEqual(m);
    }
    await client.close();
  });
});

describe('inline and thread-pool work on the same connection', () => {
  // syncLimit 0: every piece a thread-pool job. 2000: pieces up to 2000 bytes inline, larger ones
  // through the thread pool, interleaved on the same zlib contexts.
  test.each([
    [0, false],
    [0, true],
    [2000, false],
    [2000, true],
  ])('syncLimit %i on both sides, no_context_takeover %s: messages of every size and a fragmented one round-trip', async (syncLimit, noTakeover) => {
    const deflate: PerMessageDeflateOptions = { syncLimit, serverNoContextTakeover: noTakeover, clientNoContextTakeover: noTakeover };
    const s = await startServer({ perMessageDeflate: deflate });
    const client = await open(s.url, { perMessageDeflate: deflate });
    const server = await s.nth(0);
    expect(extensionOf(server)?.params.serverNoContextTakeover).toBe(noTakeover);
    const messages: Array<string | Buffer> = [
      compressibleText(1500, 1),
      compressibleText(40_000, 2),
      compressibleText(1800, 3),
      compressibleBytes(70_000, 4),
      compressibleBytes(1024, 5),
      randomBytes(3000),
      '',
    ];
    for (const m of [...messages, ...messages]) {
      const trip = await roundTrip(client, server, m);
      expect(trip.echo).toEqual(m);
    }
    // Several sends at once: small and large alternate, the echoes come back in order.
    const burst = Array.from({ length: 12 }, (_, i) => (i % 3 === 0 ? compressibleText(30_000, i) : compressibleText(1100 + i, i)));
    await Promise.all(burst.map((m) => client.send(m)));
    for (const m of burst) expect(await client.recv()).toEqual(m);
    // A fragmented compressed message: 1 KiB fragments, each a piece of its own.
    const long = compressibleText(20_000, 9);
    const echoed = client.recv();
    await client.sendStream([long], { fragmentSize: 1024, binary: false });
    expect(await echoed).toEqual(long);
    await client.close();
    expect(client.closeStatus).toBe(1000);
  });

  test('syncLimit below 0 is refused when the engine is made', async () => {
    const s = await startServer();
    await expect(open(s.url, { perMessageDeflate: { syncLimit: -1 } })).rejects.toThrow(/syncLimit/);
  });
});

describe('threshold and per-send choice', () => {
  test('messages below the threshold (1024) go uncompressed, at and above it compressed, both directions', async () => {
    const s = await startServer();
    const client = await open(s.url);
    const server = await s.nth(0);
    const below = await roundTrip(client, server, 'a'.repeat(1023));
    expect(below.up).toBeGreaterThanOrEqual(1023);
    expect(below.down).toBeGreaterThanOrEqual(1023);
    const at = await roundTrip(client, server, 'a'.repeat(1024));
    expect(at.echo).toBe('a'.repeat(1024));
    expect(at.up).toBeLessThan(100);
    expect(at.down).toBeLessThan(100);
    const binaryAt = await roundTrip(client, server, Buffer.alloc(1024, 7));
    expect(binaryAt.up).toBeLessThan(100);
  });

  test('the threshold counts a string in UTF-8 bytes, as bytes and prepared messages are counted: 600 "é" (1200 bytes) are compressed', async () => {
    const s = await startServer();
    const client = await open(s.url);
    const server = await s.nth(0);
    // 600 characters, 1200 bytes: at or above the default 1024, so compressed, both directions
    // (it went plain when the string's length was compared).
    const text = 'é'.repeat(600);
    const trip = await roundTrip(client, server, text);
    expect(trip.echo).toBe(text);
    expect(trip.up).toBeLessThan(100);
    expect(trip.down).toBeLessThan(100);
    // 511 characters, 1022 bytes: below it, plain.
    const below = await roundTrip(client, server, 'é'.repeat(511));
    expect(below.up).toBeGreaterThanOrEqual(1022);
  });

  test('a threshold option on each side moves the boundary', async () => {
    const s = await startServer({ perMessageDeflate: { threshold: 10 } });
    const client = await open(s.url, { perMessageDeflate: { threshold: 100_000 } });
    const server = await s.nth(0);
    const trip = await roundTrip(client, server, 'z'.repeat(50_000));
    expect(trip.up).toBeGreaterThanOrEqual(50_000); // client threshold 100000: sent plain
    expect(trip.down).toBeLessThan(1000); // server threshold 10: compressed
  });

  test('send(data, { compress: false }) goes uncompressed on a compressing connection, either side', async () => {
    const s = await startServer();
    const client = await open(s.url);
    const server = await s.nth(0);
    const big = compressibleText(60_000);
    const up = bytesRead(server);
    await client.send(big, { compress: false });
    await until(() => s.received[0]!.length === 1, 5000, 'server receipt');
    expect(s.received[0]![0]).toBe(big);
    expect(bytesRead(server) - up).toBeGreaterThanOrEqual(60_000);
    expect(await client.recv()).toBe(big); // the echo was compressed (the server's own choice)

    const down = bytesRead(client);
    await server.send(big, { compress: false });
    expect(await client.recv()).toBe(big);
    expect(bytesRead(client) - down).toBeGreaterThanOrEqual(60_000);

    // A compressed message after the uncompressed one: the contexts were not disturbed.
    const after = await roundTrip(client, server, big);
    expect(after.echo).toBe(big);
    expect(after.up).toBeLessThan(20_000);
  });
});

describe('fragmented compressed messages', () => {
  test('client sendStream of 200 KiB text in 4 KiB fragments arrives whole and compressed; server sendStream back likewise', async () => {
    const s = await startServer();
    const client = await open(s.url);
    const server = await s.nth(0);
    const text = compressibleText(200 * 1024, 11);
    const pieces = Array.from({ length: 50 }, (_, i) => text.slice(i * 4096, (i + 1) * 4096));
    const up = bytesRead(server);
    await client.sendStream(pieces, { binary: false, fragmentSize: 4096 });
    await until(() => s.received[0]!.length === 1, 5000, 'server receipt');
    expect(s.received[0]![0]).toBe(text);
    expect(bytesRead(server) - up).toBeLessThan(text.length / 3);
    expect(await client.recv()).toBe(text);

    const bytes = compressibleBytes(300_000, 5);
    const down = bytesRead(client);
    await server.sendStream([bytes.subarray(0, 100_000), bytes.subarray(100_000)], { fragmentSize: 16_384 });
    expect(await client.recv()).toEqual(bytes);
    expect(bytesRead(client) - down).toBeLessThan(bytes.length / 3);

    // Whole messages keep working after the fragmented ones (shared context, takeover).
    const trip = await roundTrip(client, server, text.slice(0, 5000));
    expect(trip.echo).toBe(text.slice(0, 5000));
  });

  test('sendStream with compress:false goes plain; an empty final fragment still ends a compressed message', async () => {
    const s = await startServer();
    const client = await open(s.url);
    const server = await s.nth(0);
    const text = 'q'.repeat(30_000);
    const up = bytesRead(server);
    await client.sendStream([text], { binary: false, compress: false, fragmentSize: 10_000 });
    expect(await client.recv()).toBe(text);
    expect(bytesRead(server) - up).toBeGreaterThanOrEqual(30_000);
    await client.sendStream(['abc', '', 'def'], { binary: false, fragmentSize: 3 });
    expect(await client.recv()).toBe('abcdef');
    await client.sendStream([], { binary: true });
    expect(await client.recv()).toEqual(Buffer.alloc(0));
  });
});

describe('inflated size limit', () => {
  const LIMIT = 1024 * 1024;
  /** Inflation stops within a byte of the limit, inline and in the thread pool. */
  const SLACK = 1;

  test('a compressed message whose inflated size is one byte over maxMessageSize closes with 1009', async () => {
    const s = await startServer({ maxMessageSize: LIMIT });
    const client = await open(s.url);
    const server = await s.nth(0);

    const exact = await roundTrip(client, server, Buffer.alloc(LIMIT, 1));
    expect(exact.echo).toEqual(Buffer.alloc(LIMIT, 1));
    expect(exact.up).toBeLessThan(10_000);
    const before = extensionOf(server)!.inflatedBytes;
    expect(before).toBe(LIMIT);

    await client.send(Buffer.alloc(LIMIT + 1, 1));
    await client.whenClosed;
    expect(client.closeStatus).toBe(1009);
    await server.whenClosed;
    expect(server.closeStatus).toBe(1009);
    expect(s.received[0]).toHaveLength(1); // only the message at the limit
    const inflated = extensionOf(server)!.inflatedBytes - before;
    expect(inflated).toBeGreaterThan(LIMIT);
    expect(inflated).toBeLessThanOrEqual(LIMIT + SLACK);
  });

  test('a decompression bomb (64 MiB of zeros in about 64 KiB) is stopped after about the limit of inflating', async () => {
    const s = await startServer({ maxMessageSize: LIMIT });
    const client = await open(s.url);
    const server = await s.nth(0);
    const up = bytesRead(server);
    await client.send(Buffer.alloc(64 * 1024 * 1024)).catch(() => undefined);
    await server.whenClosed;
    expect(server.closeStatus).toBe(1009);
    expect(bytesRead(server) - up).toBeLessThan(200_000); // it really was a bomb on the wire
    const inflated = extensionOf(server)!.inflatedBytes;
    expect(inflated).toBeGreaterThan(LIMIT);
    expect(inflated).toBeLessThanOrEqual(LIMIT + SLACK);
    await client.whenClosed;
    expect(client.closeStatus).toBe(1009);
    expect(s.received[0]).toHaveLength(0);
  });

  test('a fragmented bomb (32 fragments of 1 MiB zeros) is stopped inside the second fragment', async () => {
    const s = await startServer({ maxMessageSize: LIMIT });
    const client = await open(s.url);
    const server = await s.nth(0);
    const zeros = Buffer.alloc(LIMIT);
    client.sendStream(Array.from({ length: 32 }, () => zeros), { fragmentSize: LIMIT }).catch(() => undefined);
    await server.whenClosed;
    expect(server.closeStatus).toBe(1009);
    const inflated = extensionOf(server)!.inflatedBytes;
    expect(inflated).toBeGreaterThan(LIMIT);
    expect(inflated).toBeLessThanOrEqual(LIMIT + SLACK);
    await client.whenClosed;
    expect(client.closeStatus).toBe(1009);
  });

  test('the client enforces its own maxMessageSize on inflated messages from the server', async () => {
    const s = await startServer();
    const client = await open(s.url, { maxMessageSize: 100_000 });
    const server = await s.nth(0);
    await server.send(Buffer.alloc(100_001)).catch(() => undefined);
    await client.whenClosed;
    expect(client.closeStatus).toBe(1009);
    const inflated = extensionOf(client)!.inflatedBytes;
    expect(inflated).toBeGreaterThan(100_000);
    expect(inflated).toBeLessThanOrEqual(100_000 + SLACK);
  });
});

describe('while a received frame inflates in the thread pool', () => {
  test('the socket is not read meanwhile: what the peer sends behind a large message waits in TCP, not in memory', async () => {
    const firstAt: number[] = [];
    let count = 0;
    const server = await serve({ port: 0, host: '127.0.0.1' }, (conn) => {
      conn.on('message', () => {
        if (count++ === 0) firstAt.push((conn.transport.stream as Socket).bytesRead);
      });
    });
    try {
      // (80 MiB handed over at once: over the default maxBufferedAmount, which counts a message
      // waiting for compression as given.)
      const client = await open(server.url, { maxBufferedAmount: 256 * 1024 * 1024 });
      // 48 MiB of zeros (about 48 KiB on the wire) inflates for a while; 32 MiB follow at once.
      void client.send(Buffer.alloc(48 * 1024 * 1024)).catch(() => undefined);
      const junk = Buffer.alloc(1024 * 1024, 1);
      for (let i = 0; i < 32; i++) void client.send(junk, { compress: false }).catch(() => undefined);
      await until(() => count === 33, 20_000, 'every message');
      // The old code had read all 32 MiB by the time the first message was inflated (ws reads
      // about 128 KiB; a read is at most 64 KiB).
      expect(firstAt[0]).toBeLessThan(4 * 1024 * 1024);
    } finally {
      await server.close();
    }
  }, 30_000);

  test('messages and the close frame that came before the peer ended TCP are not lost', async () => {
    const got: Array<string | Buffer> = [];
    let closed: [number, string] | undefined;
    const server = await serve({ port: 0, host: '127.0.0.1' }, (conn) => {
      conn.on('message', (m) => got.push(m));
      conn.on('close', (code, reason) => (closed = [code, reason]));
    });
    try {
      const raw = await RawClient.connect(Number(new URL(server.url).port), { headers: ['Sec-WebSocket-Extensions: permessage-deflate'] });
      expect(raw.response.headers['sec-websocket-extensions']).toBe('permessage-deflate');
      // Random bytes: 4 MiB on the wire too, inflated in the thread pool.
      const message = randomBytes(4 * 1024 * 1024);
      const compressed = deflateRawSync(message, { finishFlush: constants.Z_SYNC_FLUSH }).subarray(0, -4);
      // A peer that ends TCP right after its close frame, without waiting for ours.
      raw.socket.end(
        Buffer.concat([
          frame({ opcode: 2, rsv1: true, payload: compressed, mask: true }),
          frame({ opcode: 1, payload: 'after', mask: true }),
          frame({ opcode: 8, payload: closePayload(1000, 'bye'), mask: true }),
        ]),
      );
      await until(() => closed !== undefined, 10_000, 'close');
      // The old code dropped all three once it saw the end of TCP (1006, no message).
      expect(closed).toEqual([1000, 'bye']);
      expect(got).toHaveLength(2);
      expect((got[0] as Buffer).equals(message)).toBe(true);
      expect(got[1]).toBe('after');
      raw.destroy();
    } finally {
      await server.close();
    }
  }, 30_000);
});

describe('contexts released', () => {
  test('closing connections (handshake, terminate, server shutdown) releases every zlib context of both sides', async () => {
    const baseline = openZlibStreams();
    const s = await startServer();
    const pairs: Array<[WebSocketConnection, WebSocketConnection]> = [];
    for (let i = 0; i < 6; i++) {
      const client = await open(s.url);
      const server = await s.nth(i);
      const trip = await roundTrip(client, server, compressibleText(5000, i));
      expect(trip.echo).toBe(compressibleText(5000, i));
      expect(extensionOf(client)!.holdsContexts).toEqual({ deflate: true, inflate: true });
      expect(extensionOf(server)!.holdsContexts).toEqual({ deflate: true, inflate: true });
      pairs.push([client, server]);
    }
    expect(openZlibStreams() - baseline).toBe(24);

    await pairs[0]![0].close(); // client-initiated closing handshake
    await pairs[1]![1].close(); // server-initiated
    pairs[2]![0].terminate(); // abrupt, from the client
    pairs[3]![1].terminate(); // abrupt, from the server
    await Promise.all(pairs.slice(0, 4).flatMap(([c, sv]) => [c.whenClosed, sv.whenClosed]));
    expect(openZlibStreams() - baseline).toBe(8);
    await s.server.close(); // the remaining two by shutdown
    await Promise.all(pairs.flatMap(([c, sv]) => [c.whenClosed, sv.whenClosed]));
    for (const [c, sv] of pairs) {
      expect(extensionOf(c)!.holdsContexts).toEqual({ deflate: false, inflate: false });
      expect(extensionOf(sv)!.holdsContexts).toEqual({ deflate: false, inflate: false });
    }
    expect(openZlibStreams()).toBe(baseline);
  });

  test('with no_context_takeover both ways an idle open connection holds no zlib context', async () => {
    const baseline = openZlibStreams();
    const s = await startServer();
    const client = await open(s.url, { perMessageDeflate: { serverNoContextTakeover: true, clientNoContextTakeover: true } });
    const server = await s.nth(0);
    for (let i = 0; i < 3; i++) {
      const trip = await roundTrip(client, server, compressibleText(20_000, i));
      expect(trip.up).toBeLessThan(10_000);
    }
    expect(extensionOf(client)!.holdsContexts).toEqual({ deflate: false, inflate: false });
    expect(extensionOf(server)!.holdsContexts).toEqual({ deflate: false, inflate: false });
    expect(openZlibStreams()).toBe(baseline);
    expect(client.readyState).toBe('open');
  });

  test('a connection that never sent a compressed message allocated no context', async () => {
    const baseline = openZlibStreams();
    const s = await startServer();
    const client = await open(s.url);
    const server = await s.nth(0);
    await roundTrip(client, server, 'small');
    expect(extensionOf(server)!.holdsContexts).toEqual({ deflate: false, inflate: false });
    expect(openZlibStreams()).toBe(baseline);
  });
});

describe('declined or not offered', () => {
  test('server with perMessageDeflate: false declines a client offer: no extension, messages go plain', async () => {
    const s = await startServer({ perMessageDeflate: false });
    const client = await open(s.url);
    const server = await s.nth(0);
    expect(server.headers['sec-websocket-extensions']).toContain('permessage-deflate');
    expect(server.extensions).toBe('');
    expect(client.extensions).toBe('');
    expect(extensionOf(server)).toBeUndefined();
    expect(extensionOf(client)).toBeUndefined();
    const text = compressibleText(30_000);
    const trip = await roundTrip(client, server, text);
    expect(trip.echo).toBe(text);
    expect(trip.up).toBeGreaterThanOrEqual(30_000);
    expect(trip.down).toBeGreaterThanOrEqual(30_000);
  });

  test('client with perMessageDeflate: false offers nothing: no extension, messages go plain', async () => {
    const s = await startServer();
    const client = await open(s.url, { perMessageDeflate: false });
    const server = await s.nth(0);
    expect(server.headers['sec-websocket-extensions']).toBeUndefined();
    expect(server.extensions).toBe('');
    expect(extensionOf(server)).toBeUndefined();
    const trip = await roundTrip(client, server, compressibleText(30_000));
    expect(trip.up).toBeGreaterThanOrEqual(30_000);
    expect(trip.down).toBeGreaterThanOrEqual(30_000);
  });

  test('hybi-00 connections never negotiate permessage-deflate', async () => {
    const s = await startServer();
    const client = await open(s.url, { variant: 'hybi00' });
    const server = await s.nth(0);
    expect(server.variant).toBe('hybi00');
    expect(server.extensions).toBe('');
    expect(extensionOf(server)).toBeUndefined();
    await client.send(compressibleText(5000));
    expect(await client.recv()).toBe(compressibleText(5000));
  });
});
