/**
 * Interop with three more independent implementations, none of them JavaScript or Python-asyncio:
 *
 * - the JDK's WebSocket client (java.net.http.HttpClient, OpenJDK 17), against our serve();
 * - websocket-client (Debian's python3-websocket 1.2.3, `import websocket`), a synchronous Python
 *   client, against our serve();
 * - Mojolicious 9.31 (Debian's libmojolicious-perl) in both roles: Mojo::UserAgent against our
 *   serve(), and our connect() against a Mojolicious::Lite websocket route.
 *
 * Each is a script driven over stdin and stdout (test/interop/java/Peer.java,
 * test/interop/py/websocket_client_peer.py, test/interop/perl/mojo-peer.pl), one process per peer
 * and role serving every test of its block. Commands are lines of words, payloads in base64:
 * `connect ID URL PROTOCOLS DEFLATE`, `send ID t|b B64`, `fragments ID t|b B64 SIZE`,
 * `badutf8 ID`, `ping ID B64`, `close ID CODE B64-REASON` (an empty CODE: a close frame without
 * one), `burst ID N` (N messages, then a close with 1000). Events are JSON lines: `listening`
 * {port}, `open` {id, protocol, extensions}, `message` {id, type t|b, b64}, `ping` and `pong`
 * {id, b64}, `closed` {id, code, reason (base64)}, `error` {id, op, message}.
 *
 * The peers' end of a connection is a {@link PeerEnd} like the Node peers' (peer-suite.ts), so the
 * shared tests run against them; what each does its own way is in the comments, with its reason,
 * and in docs/conformance.md.
 */
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { EOF, connect, type ConnectOptions, type Message, type WebSocketConnection } from 'rfc6455';
import { UTF8_REASON, bytesOf, closedStatus, echoServer, echoServerForBlock, Inbox, textOfBytes, type EchoServer } from './peer-helpers.js';
import {
  asBinary,
  asText,
  compressedEcho,
  echoRoundTrip,
  ourClientTests,
  notUtf8FromPeer,
  ourMessagesBeforeClose,
  overOurMaxMessageSize,
  peerClientTests,
  recv,
  REPETITIVE,
  type PeerClient,
  type PeerClose,
  type PeerEnd,
} from './peer-suite.js';
import { ScriptEnd, ScriptProcess, type ScriptEvent } from './script-peer.js';

/** The sizes of the brief: the frame length encodings' edges, and 1 MiB. */
const SIZES = [0, 125, 126, 65535, 65536, 1024 * 1024];

const PEERS = {
  java: { command: 'java', args: [join(__dirname, 'java', 'Peer.java')], check: ['java', ['-version']], install: 'apt-get install openjdk-17-jdk-headless' },
  'websocket-client': {
    command: '/usr/bin/python3',
    args: [join(__dirname, 'py', 'websocket_client_peer.py')],
    check: ['/usr/bin/python3', ['-c', 'import websocket']],
    install: 'apt-get install python3-websocket',
  },
  mojolicious: { command: 'perl', args: [join(__dirname, 'perl', 'mojo-peer.pl')], check: ['perl', ['-MMojolicious', '-e1']], install: 'apt-get install libmojolicious-perl' },
} as const;
type PeerName = keyof typeof PEERS;

test.each(Object.keys(PEERS) as PeerName[])('%s is installed (.ci/run installs it)', (name) => {
  const { check, install } = PEERS[name];
  const r = spawnSync(check[0], [...check[1]], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${check[0]} ${check[1].join(' ')} failed: ${install}\n${r.error?.message ?? ''}${r.stderr}`);
});

const fromB64 = (s: string): Buffer => Buffer.from(s, 'base64');
const b64 = (data: string | Buffer): string => Buffer.from(data).toString('base64');

/**
 * The peer's end of one connection; its commands are lines of words, payloads in base64. What it
 * reported once open: subprotocol and Sec-WebSocket-Extensions response header.
 */
class PeerScriptEnd extends ScriptEnd<{ protocol: string | null; extensions: string; compressed?: boolean }> implements PeerEnd {
  constructor(
    private readonly proc: ScriptPeer,
    id: number,
  ) {
    super(id);
  }

  event(e: ScriptEvent): void {
    if (e.ev === 'message') {
      const data = fromB64(e.b64 as string);
      this.received(e.type === 't' ? data.toString('utf8') : data);
    } else if (e.ev === 'ping') this.pings.push(fromB64(e.b64 as string).toString());
    else if (e.ev === 'pong') this.pongs.push(fromB64(e.b64 as string).toString());
    else if (e.ev === 'error') this.errors.push(`${String(e.op)}: ${String(e.message)}`);
    else if (e.ev === 'closed') {
      this.reportClosed({ code: e.code as number, reason: e.reason === null ? (null as unknown as string) : fromB64(e.reason as string).toString() });
    }
  }

  command(...words: Array<string | number>): void {
    const [op, ...rest] = words;
    this.proc.command(String(op), this.id, ...rest);
  }
  sendText(text: string): void {
    this.command('send', 't', b64(text));
  }
  sendBinary(bytes: Buffer): void {
    this.command('send', 'b', b64(bytes));
  }
  /** One message in frames of `size` (bytes, or UTF-16 units for Java's text). */
  sendFragments(data: string | Buffer, size: number): void {
    this.command('fragments', typeof data === 'string' ? 't' : 'b', b64(data), size);
  }
  ping(payload: string): Promise<string> {
    this.command('ping', b64(payload));
    return this.pongs.next();
  }
  close(code: number | null, reason = ''): void {
    this.command('close', code ?? '', b64(reason));
  }
}

/** One running peer script, in one role. */
class ScriptPeer extends ScriptProcess<PeerScriptEnd> {
  constructor(
    readonly name: PeerName,
    role: 'server' | 'client',
    config: Record<string, unknown> = {},
  ) {
    const { command, args } = PEERS[name];
    super(`${name} ${role}`, command, [...args, ...(name === 'mojolicious' ? [role, JSON.stringify(config)] : [])], 'DEBUG_PEERS');
  }

  protected newEnd(id: number): PeerScriptEnd {
    return new PeerScriptEnd(this, id);
  }

  command(op: string, id: number, ...rest: Array<string | number>): void {
    this.write([op, id, ...rest].join(' '));
  }

  /** Client role: connects to `url`; resolves with its end once open (or fails with its error). */
  connect(url: string, options: { protocols?: string[]; deflate?: boolean } = {}): Promise<PeerScriptEnd> {
    return this.opening(
      (id) => this.command('connect', id, url, (options.protocols ?? []).join(','), options.deflate ? 1 : 0),
      (end) => end.errors.next(),
    );
  }
}

/** The errors `conn` emits, with their codes. */
function collectErrors(conn: WebSocketConnection): Array<Error & { code?: string }> {
  const errors: Array<Error & { code?: string }> = [];
  conn.on('error', (e: Error) => errors.push(e));
  return errors;
}

/*
 * MOJO_EMPTY_MESSAGE: Mojolicious 9.31 compresses every message with one zlib stream and a
 * Z_SYNC_FLUSH, then cuts the last 4 octets (Mojo::Transaction::WebSocket build_message). zlib
 * writes nothing for a flush with no new input right after another flush, so an empty message after
 * any compressed message (the first message of a connection is the exception: its flush writes an
 * empty stored block) goes out as an empty payload with RSV1 set. RFC 7692 §7.2.1 has the sender
 * append an empty stored block when the data does not end with one and cut only its last 4 octets,
 * so the payload keeps the block's header (at least the octet 0x00, as in §7.2.3.6). A receiver
 * appends 00 00 ff ff (§7.2.2), which read as DEFLATE after a block boundary starts a stored block
 * of 0xff00 octets: the empty message comes out empty, and the next compressed message is read as
 * that block's length check, "invalid stored block lengths". We fail the connection with 1007 there,
 * as python-websockets did with IXWebSocket's empty messages, which had the same defect (fixed in
 * IXWebSocket). Mojolicious's own inflate fails the same way on such a payload (and closes with
 * 1009, its answer to compressed input it does not consume).
 */

/** What differs between the three clients, each with its reason. */
interface ClientQuirks {
  /** The close frame it answers a close frame of ours with. */
  closeReply(code: number, reason: string): PeerClose;
  /** What it reports after a close it started, our side having echoed its code and reason. */
  ownClose(code: number, reason: string): PeerClose;
  /** Its text fragments cut UTF-8 characters between frames. */
  cutsCharacters: boolean;
  /** It can send text that is not UTF-8. */
  badUtf8: boolean;
  /** It can offer permessage-deflate. */
  deflate: boolean;
}

const CLIENT_QUIRKS: Record<PeerName, ClientQuirks> = {
  java: {
    // Listener.onClose returning null: the JDK answers with the code it received and no reason
    // (WebSocketImpl: sendClose(code, "") once the returned stage completes).
    closeReply: (code) => ({ code, reason: '' }),
    ownClose: (code, reason) => ({ code, reason }),
    // sendText(part, last=false) encodes each part on its own: a part that ends inside a surrogate
    // pair fails ("Malformed text message", an IOException), so Peer.java ends such a part one unit
    // early, and every frame holds whole characters.
    cutsCharacters: false,
    // sendText takes a CharSequence, encoded by the JDK: it cannot send bytes that are not UTF-8.
    badUtf8: false,
    // The JDK has no permessage-deflate (it sends no Sec-WebSocket-Extensions).
    deflate: false,
  },
  'websocket-client': {
    // recv_data_frame answers any close frame with send_close(): 1000, no reason.
    closeReply: () => ({ code: 1000, reason: '' }),
    ownClose: (code, reason) => ({ code, reason }),
    cutsCharacters: true,
    badUtf8: true,
    deflate: false,
  },
  mojolicious: {
    // finish(code, reason): it echoes both (RFC 6455 §5.5.1).
    closeReply: (code, reason) => ({ code, reason }),
    ownClose: (code, reason) => ({ code, reason }),
    cutsCharacters: true,
    badUtf8: true,
    deflate: true,
  },
};

describe.each(Object.keys(PEERS) as PeerName[])('%s client → our serve()', (name) => {
  const quirks = CLIENT_QUIRKS[name];
  let proc: ScriptPeer;
  const echo = echoServerForBlock({ protocols: ['chat.v2', 'chat.v1'] });
  beforeAll(() => {
    proc = new ScriptPeer(name, 'client', { maxSize: 64 * 1024 * 1024 });
  });
  afterAll(() => proc.stop());

  async function open(protocols?: string[], target: EchoServer = echo(), deflate = false): Promise<PeerScriptEnd & PeerClient> {
    const end = await proc.connect(target.server.url, { protocols, deflate });
    const side = await target.accepted.next();
    return Object.assign(end, { side });
  }

  test(`text (1- to 4-byte UTF-8) and binary of ${SIZES.join(', ')} bytes echo intact; no extension negotiated${quirks.deflate ? ' when not offered' : ''}`, async () => {
    const peer = await open();
    // Our server has permessage-deflate on (the default): it answers only an offer.
    expect(peer.side.conn.extensions).toBe('');
    expect(peer.opened.extensions).toBe('');
    for (const size of SIZES) await echoRoundTrip(peer, size);
  });

  test(`a message ${name} fragments is reassembled by us (frames ${quirks.cutsCharacters ? 'split characters' : 'of whole characters'})`, async () => {
    const peer = await open();
    const text = textOfBytes(10_007);
    peer.sendFragments(text, 7);
    expect(asText(await peer.messages.next()) === text).toBe(true);
    expect(peer.side.received.at(-1)).toEqual({ data: text, binary: false });
    const bytes = bytesOf(200_000, 3);
    peer.sendFragments(bytes, 65536);
    expect(asBinary(await peer.messages.next()).equals(bytes)).toBe(true);
  });

  peerClientTests({ name, open: (protocols) => open(protocols), closeReply: quirks.closeReply });

  test(`${name} closes with a code and a UTF-8 reason: we record them`, async () => {
    const peer = await open();
    peer.close(4003, UTF8_REASON);
    expect(await closedStatus(peer.side.conn)).toEqual({ code: 4003, reason: UTF8_REASON });
    expect(await peer.closed).toEqual(quirks.ownClose(4003, UTF8_REASON));
  });

  test(`a message over our maxMessageSize: we close with 1009, ${name} reports 1009`, async () => {
    await overOurMaxMessageSize((limited) => open(undefined, limited));
  });

  if (quirks.badUtf8) {
    test(`text that is not UTF-8 from ${name}: we close with 1007, ${name} reports 1007`, async () => {
      const peer = await open();
      await notUtf8FromPeer(peer, () => peer.command('badutf8'));
    });
  }

  test('every message sent before a clean close arrives, both ways', async () => {
    const N = 50;
    // Ours: N then close, without waiting.
    await ourMessagesBeforeClose(await open(), N);
    const other = await open();
    other.command('burst', N);
    expect(await closedStatus(other.side.conn)).toEqual({ code: 1000, reason: 'burst done' });
    expect(other.side.received.map((r) => r.data)).toEqual(Array.from({ length: N }, (_, i) => `burst ${i}`));
  });

  if (quirks.deflate) {
    test(`permessage-deflate, ${name}'s offer: agreed on both sides; compressed both ways`, async () => {
      const peer = await open(undefined, echo(), true);
      expect(peer.side.conn.extensions).toBe('permessage-deflate');
      expect(peer.opened.extensions).toBe('permessage-deflate');
      expect(peer.opened.compressed).toBe(true);
      await compressedEcho(peer.side.conn, peer, false);
      // Not 0 bytes: see the next test.
      for (const size of SIZES.filter((n) => n > 0)) await echoRoundTrip(peer, size);
    });

    test(`permessage-deflate: an empty message ${name} compresses after another breaks its stream; we fail the connection with 1007 at the next one`, async () => {
      const peer = await open(undefined, echo(), true);
      const errors = collectErrors(peer.side.conn);
      peer.sendText('before');
      expect(await peer.messages.next()).toBe('before');
      peer.sendText(''); // compressed by Mojolicious as an empty payload (see MOJO_EMPTY_MESSAGE)
      expect(await peer.messages.next()).toBe('');
      peer.sendText('after');
      expect((await closedStatus(peer.side.conn)).code).toBe(1007);
      expect(errors.map((e) => e.code)).toEqual(['WS_INFLATE_FAILED']);
      expect(errors[0]!.message).toMatch(/invalid stored block lengths/);
      expect((await peer.closed).code).toBe(1007);
      expect(peer.side.received.map((r) => r.data)).toEqual(['before', '']);
    });

    test(`permessage-deflate: ${name} takes any answer as plain permessage-deflate; told client_no_context_takeover, it keeps its context and we fail with 1007`, async () => {
      // Mojo::WebSocket challenge() turns compression on when the answer matches /permessage-deflate/
      // and reads no parameter. RFC 7692 §7.2.1: with client_no_context_takeover agreed the client
      // MUST start each message with an empty window; ours inflates each with a fresh one.
      const target = await echoServer({ perMessageDeflate: { serverNoContextTakeover: true, clientNoContextTakeover: true } });
      try {
        const peer = await open(undefined, target, true);
        expect(peer.side.conn.extensions).toBe('permessage-deflate; server_no_context_takeover; client_no_context_takeover');
        expect(peer.opened.compressed).toBe(true);
        const errors = collectErrors(peer.side.conn);
        const text = REPETITIVE.slice(0, 2000);
        peer.sendText(text);
        expect(await peer.messages.next()).toBe(text); // our echo, without context takeover: fine for it
        peer.sendText(text); // refers back into the first
        expect((await closedStatus(peer.side.conn)).code).toBe(1007);
        expect(errors.map((e) => e.code)).toEqual(['WS_INFLATE_FAILED']);
        expect(errors[0]!.message).toMatch(/distance too far back/);
        expect((await peer.closed).code).toBe(1007);
      } finally {
        await target.close();
      }
    });
  }
});

describe('our connect() → Mojolicious server', () => {
  const servers = new Map<string, ScriptPeer>();
  const conns = new Set<WebSocketConnection>();
  async function mojoServer(config: Record<string, unknown>): Promise<{ url: string; proc: ScriptPeer }> {
    const key = JSON.stringify(config);
    let proc = servers.get(key);
    if (!proc) servers.set(key, (proc = new ScriptPeer('mojolicious', 'server', config)));
    return { url: `ws://127.0.0.1:${await proc.listening}/`, proc };
  }
  async function open(config: Record<string, unknown> = {}, options: ConnectOptions = {}): Promise<{ conn: WebSocketConnection; peer: PeerScriptEnd }> {
    const { url, proc } = await mojoServer(config);
    const conn = await connect(url, { perMessageDeflate: false, ...options });
    conns.add(conn);
    return { conn, peer: await proc.accepted.next() };
  }
  afterEach(async () => {
    for (const c of conns) if (!c.closed) await c.close().catch(() => undefined);
    conns.clear();
  });
  afterAll(async () => {
    await Promise.all([...servers.values()].map((s) => s.stop()));
  });
  const DEFLATE = { deflate: 1 };

  test.each([
    ['without', false],
    ['with', true],
  ])(`text (1- to 4-byte UTF-8) and binary of ${SIZES.join(', ')} bytes echo intact, %s permessage-deflate`, async (_, deflate) => {
    const { conn, peer } = await open(DEFLATE, { perMessageDeflate: deflate });
    expect(conn.extensions).toBe(deflate ? 'permessage-deflate' : '');
    // With permessage-deflate, not 0 bytes: see MOJO_EMPTY_MESSAGE.
    for (const size of deflate ? SIZES.filter((n) => n > 0) : SIZES) {
      const text = textOfBytes(size);
      const bytes = bytesOf(size, size);
      void conn.send(text);
      void conn.send(bytes);
      expect((await recv(conn)) === text).toBe(true);
      expect(((await recv(conn)) as Buffer).equals(bytes)).toBe(true);
      expect(asText(await peer.messages.next()) === text).toBe(true);
      expect(asBinary(await peer.messages.next()).equals(bytes)).toBe(true);
    }
  });

  ourClientTests({
    name: 'Mojolicious',
    open: (options) => open({}, options),
    // finish(code, reason) echoes both.
    closeReply: (code, reason) => ({ code, reason }),
  });

  test('a message Mojolicious fragments is reassembled by us (frames split characters)', async () => {
    const { conn, peer } = await open();
    const text = textOfBytes(10_007);
    peer.sendFragments(text, 7);
    expect((await recv(conn)) === text).toBe(true);
    const bytes = bytesOf(200_000, 3);
    peer.sendFragments(bytes, 65536);
    expect(((await recv(conn)) as Buffer).equals(bytes)).toBe(true);
  });

  test('permessage-deflate, our default offer: Mojolicious answers permessage-deflate; compressed both ways', async () => {
    const { conn, peer } = await open(DEFLATE, { perMessageDeflate: true });
    expect(conn.extensions).toBe('permessage-deflate');
    expect(peer.opened.extensions).toBe('permessage-deflate');
    expect(peer.opened.compressed).toBe(true);
    await compressedEcho(conn, peer, true);
  });

  test('permessage-deflate: an empty message Mojolicious echoes compressed after another breaks its stream; we fail the connection with 1007 at the next one', async () => {
    const { conn, peer } = await open(DEFLATE, { perMessageDeflate: true });
    const errors = collectErrors(conn);
    void conn.send('before');
    expect(await recv(conn)).toBe('before');
    void conn.send(''); // sent uncompressed (under our threshold); its echo is compressed as an empty payload
    expect(await recv(conn)).toBe('');
    void conn.send('after');
    expect(await conn.recv()).toBe(EOF);
    expect((await closedStatus(conn)).code).toBe(1007);
    expect(errors.map((e) => e.code)).toEqual(['WS_INFLATE_FAILED']);
    expect(errors[0]!.message).toMatch(/invalid stored block lengths/);
    expect((await peer.closed).code).toBe(1007);
    expect(await peer.messages.take(3)).toEqual(['before', '', 'after']);
  });

  test('permessage-deflate, our offer asking for server_no_context_takeover: Mojolicious does not grant it, connect() fails', async () => {
    // Its with_compression() answers "permessage-deflate" whatever the offer's parameters: the answer
    // lacks what we asked for (RFC 7692 §7.1.1.1), which connect() refuses as documented.
    const { url, proc } = await mojoServer(DEFLATE);
    await expect(connect(url, { perMessageDeflate: { serverNoContextTakeover: true } })).rejects.toMatchObject({ code: 'WS_BAD_EXTENSION_RESPONSE' });
    const refused = await proc.accepted.next();
    expect(refused.opened.extensions).toBe('permessage-deflate');
    expect((await refused.closed).code).toBe(1006); // we dropped the TCP connection
  });

  test('a server that does not call with_compression: no extension, echo intact', async () => {
    const { conn, peer } = await open({}, { perMessageDeflate: true });
    expect(conn.extensions).toBe('');
    expect(peer.opened.compressed).toBe(false);
    void conn.send(REPETITIVE);
    expect(await recv(conn)).toBe(REPETITIVE);
  });

  test('text that is not UTF-8 from Mojolicious: we close with 1007, Mojolicious reports 1007', async () => {
    const { conn, peer } = await open();
    peer.command('badutf8');
    expect(await conn.recv()).toBe(EOF);
    expect((await closedStatus(conn)).code).toBe(1007);
    expect((await peer.closed).code).toBe(1007);
  });

  test("a message over Mojolicious's max_websocket_size: it closes with 1009, we record 1009", async () => {
    const { conn, peer } = await open({ maxSize: 1000 });
    void conn.send(Buffer.alloc(1000, 1));
    expect(await recv(conn)).toEqual(Buffer.alloc(1000, 1));
    void conn.send('x'.repeat(1001));
    expect(await conn.recv()).toBe(EOF);
    expect((await closedStatus(conn)).code).toBe(1009);
    expect((await peer.closed).code).toBe(1009);
  });

  test('every message sent before a clean close arrives, both ways', async () => {
    const N = 50;
    const { conn, peer } = await open();
    for (let i = 0; i < N; i++) void conn.send(`from us ${i}`);
    await conn.close(1000, 'done');
    await peer.closed;
    expect(peer.messagesBeforeClose).toBe(N);
    const other = await open();
    other.peer.command('burst', N);
    const got: Message[] = [];
    for (let m = await other.conn.recv(); m !== EOF; m = await other.conn.recv()) got.push(m);
    expect(got).toEqual(Array.from({ length: N }, (_, i) => `burst ${i}`));
    expect(other.conn.closeStatus).toBe(1000);
  });
});
