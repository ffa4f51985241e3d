/**
 * The sans-I/O Protocol: bytes in, events and bytes-to-write out. Checks the close handshake
 * (echo, who ends TCP, recorded code/reason), failing (close frame with the error's code, then
 * discard), fail-fast UTF-8 across fragments, and the masking direction of what it writes.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { Protocol, type ProtocolHandler, type Side } from '../src/protocol.js';
import { prepareMessage } from '../src/prepared.js';
import { ProtocolError, type WebSocketError } from '../src/errors.js';
import type { MessageExtension } from '../src/extensions/extension.js';
import { closePayload, decodeFrames, frame, type DecodedFrame } from './helpers/frames.js';

interface Harness {
  proto: Protocol;
  written: () => DecodedFrame[];
  events: string[];
  messages: Array<string | Buffer>;
  errors: WebSocketError[];
}

function harness(side: Side, options: { maxMessageSize?: number } = {}): Harness {
  const out: Buffer[] = [];
  const events: string[] = [];
  const messages: Array<string | Buffer> = [];
  const errors: WebSocketError[] = [];
  const handler: ProtocolHandler = {
    onWrite: (d) => out.push(Buffer.from(d)),
    onWritev: (h, p) => out.push(Buffer.concat([h, p])),
    onMessage: (d) => {
      messages.push(d);
      events.push('message');
    },
    onPiece: () => events.push('piece'),
    onPing: (p) => events.push(`ping:${p.toString()}`),
    onPong: (p) => events.push(`pong:${p.toString()}`),
    onCloseFrame: (code, reason) => events.push(`close:${code}:${reason}`),
    onFail: (e) => {
      errors.push(e);
      events.push(`fail:${(e as WebSocketError & { closeCode?: number }).closeCode}`);
    },
    onEnd: () => events.push('end'),
  };
  const proto = new Protocol({ side, ...options }, handler);
  return { proto, written: () => decodeFrames(Buffer.concat(out)).frames, events, messages, errors };
}

const peerMasks = (side: Side): boolean => side === 'server';

describe('Protocol close handshake', () => {
  test.each<Side>(['server', 'client'])('%s receives a close first: echoes the code, records code and reason', (side) => {
    const h = harness(side);
    h.proto.receiveData(frame({ opcode: 8, payload: closePayload(4001, 'bye'), mask: peerMasks(side) }));
    const [reply] = h.written();
    expect(reply!.opcode).toBe(8);
    expect(reply!.masked).toBe(side === 'client');
    expect(reply!.payload.readUInt16BE(0)).toBe(4001);
    expect(reply!.payload.subarray(2).toString()).toBe('bye');
    expect(h.proto.closeCode).toBe(4001);
    expect(h.proto.closeReason).toBe('bye');
    expect(h.proto.state).toBe('closed');
    // RFC 6455 §7.1.1: only the server ends TCP after the handshake.
    expect(h.events).toEqual(side === 'server' ? ['close:4001:bye', 'end'] : ['close:4001:bye']);
  });

  test.each<Side>(['server', 'client'])('%s starts the close: records the peer reply, sends one close only', (side) => {
    const h = harness(side);
    expect(h.proto.close(1000, 'done')).toBe(true);
    expect(h.proto.state).toBe('closing');
    expect(h.proto.close(1001)).toBe(false);
    h.proto.receiveData(frame({ opcode: 8, payload: closePayload(1000, 'ok'), mask: peerMasks(side) }));
    const closes = h.written().filter((f) => f.opcode === 8);
    expect(closes).toHaveLength(1);
    expect(closes[0]!.payload.subarray(2).toString()).toBe('done');
    expect(h.proto.closeCode).toBe(1000);
    expect(h.proto.closeReason).toBe('ok');
  });

  test('an empty close is recorded as 1005 and answered with an empty close (1005 never sent)', () => {
    const h = harness('server');
    h.proto.receiveData(frame({ opcode: 8, mask: true }));
    expect(h.proto.closeCode).toBe(1005);
    expect(h.written()[0]!.payload.length).toBe(0);
  });

  test('receiveEof without a close frame records 1006 and writes nothing', () => {
    const h = harness('client');
    h.proto.receiveEof();
    expect(h.proto.closeCode).toBe(1006);
    expect(h.written()).toEqual([]);
  });

  test('close() refuses codes that may not be sent', () => {
    const h = harness('client');
    for (const code of [1005, 1006, 1015, 999, 5000]) expect(() => h.proto.close(code)).toThrow(RangeError);
    expect(h.written()).toEqual([]);
  });

  test('data after the peer close frame is ignored', () => {
    const h = harness('server');
    h.proto.receiveData(Buffer.concat([frame({ opcode: 8, payload: closePayload(1000), mask: true }), frame({ opcode: 1, payload: 'late', mask: true })]));
    expect(h.messages).toEqual([]);
  });
});

describe('Protocol failures', () => {
  test('the close frame of a failure names the broken rule as its reason; a 1011 sends no reason (no details leak)', () => {
    const h = harness('server');
    h.proto.receiveData(frame({ opcode: 2, payload: 'x', mask: false }));
    const [close] = h.written();
    expect(close!.payload.readUInt16BE(0)).toBe(1002);
    expect(close!.payload.subarray(2).toString()).toBe(h.errors[0]!.message);
    expect(h.errors[0]!.message).toMatch(/not masked/);
    const internal = harness('server');
    internal.proto.fail(new ProtocolError('a detail of ours', 1011));
    const [empty] = internal.written();
    expect(empty!.payload).toEqual(Buffer.from([0x03, 0xf3]));
    expect(internal.proto.closeCode).toBe(1011);
    // A long message is cut to the 123 bytes a close reason may have (RFC 6455 §5.5: 125 with the code).
    const long = harness('server');
    long.proto.fail(new ProtocolError('r'.repeat(200)));
    expect(long.written()[0]!.payload.subarray(2).toString()).toBe('r'.repeat(123));
    // ... and one whose first 123 characters are over 123 bytes is not sent at all (never a character cut in two).
    const wide = harness('server');
    wide.proto.fail(new ProtocolError('é'.repeat(100)));
    expect(wide.written()[0]!.payload).toEqual(Buffer.from([0x03, 0xea]));
    expect(wide.proto.closeReason).toBe('é'.repeat(100));
    const edge = harness('server');
    edge.proto.fail(new ProtocolError('é' + 'r'.repeat(150))); // its first 123 characters are 124 bytes
    expect(edge.written()[0]!.payload).toEqual(Buffer.from([0x03, 0xea]));
  });

  test('a failure once the connection is closed changes nothing: no second close frame, error or end, the code kept', () => {
    const h = harness('server');
    h.proto.receiveData(frame({ opcode: 8, payload: closePayload(4001, 'bye'), mask: true }));
    const written = h.written().length;
    const events = [...h.events];
    h.proto.fail(new ProtocolError('too late', 1007));
    expect(h.written()).toHaveLength(written);
    expect(h.events).toEqual(events);
    expect(h.proto.closeCode).toBe(4001);
    expect(h.proto.closeReason).toBe('bye');
  });

  test('server fails fragmented text with invalid UTF-8 at the first fragment, before the message ends', () => {
    const h = harness('server');
    h.proto.receiveData(frame({ opcode: 1, payload: Buffer.from([0x61, 0xff]), fin: false, mask: true }));
    const [close] = h.written();
    expect(close!.opcode).toBe(8);
    expect(close!.payload.readUInt16BE(0)).toBe(1007);
    expect(h.events).toEqual(['fail:1007', 'end']);
    // The rest of the message (and anything else) is discarded without a second close.
    h.proto.receiveData(frame({ opcode: 0, payload: 'rest', mask: true }));
    expect(h.written()).toHaveLength(1);
  });

  test('a whole text message is decoded with its BOM kept, and fails with 1007 on any invalid sequence', () => {
    const ok = harness('server');
    const text = '\uFEFF bom, héllo, 日本, 😀';
    ok.proto.receiveData(frame({ opcode: 1, payload: Buffer.from(text, 'utf8'), mask: true }));
    ok.proto.receiveData(frame({ opcode: 1, payload: Buffer.alloc(0), mask: true }));
    expect(ok.messages).toEqual([text, '']);
    for (const bad of [[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x61, 0xe2, 0x82]]) {
      const h = harness('server');
      h.proto.receiveData(frame({ opcode: 1, payload: Buffer.from(bad), mask: true }));
      expect(h.messages).toEqual([]);
      expect(h.events).toEqual(['fail:1007', 'end']);
      expect(h.written()[0]!.payload.readUInt16BE(0)).toBe(1007);
    }
  });

  test('server fails text whose multi-byte character is cut across fragments and turns invalid', () => {
    const h = harness('server');
    h.proto.receiveData(frame({ opcode: 1, payload: Buffer.from([0xe2, 0x82]), fin: false, mask: true }));
    expect(h.written()).toEqual([]);
    h.proto.receiveData(frame({ opcode: 0, payload: Buffer.from([0x41]), fin: false, mask: true }));
    expect(h.written()[0]!.payload.readUInt16BE(0)).toBe(1007);
  });

  test('server fails fragmented text over maxMessageSize with 1009', () => {
    const h = harness('server', { maxMessageSize: 8 });
    h.proto.receiveData(frame({ opcode: 1, payload: 'abcde', fin: false, mask: true }));
    h.proto.receiveData(frame({ opcode: 0, payload: 'fghij', mask: true }));
    expect(h.written()[0]!.payload.readUInt16BE(0)).toBe(1009);
    expect(h.proto.closeCode).toBe(1009);
  });

  test('a close frame with code 1005 on the wire fails with 1002', () => {
    const h = harness('client');
    h.proto.receiveData(frame({ opcode: 8, payload: closePayload(1005) }));
    expect(h.written()[0]!.payload.readUInt16BE(0)).toBe(1002);
    expect(h.errors).toHaveLength(1);
  });

  test('pings between fragments reach the handler and the message still completes', () => {
    const h = harness('server');
    h.proto.receiveData(frame({ opcode: 1, payload: 'ab', fin: false, mask: true }));
    h.proto.receiveData(frame({ opcode: 9, payload: 'x', mask: true }));
    h.proto.receiveData(frame({ opcode: 0, payload: 'c', mask: true }));
    expect(h.events).toEqual(['ping:x', 'message']);
    expect(h.messages).toEqual(['abc']);
  });
});

describe('Protocol joining fragments', () => {
  /** Bytes that differ from fragment to fragment and from one position to the next. */
  const bytes = (n: number, seed: number): Buffer => {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7) & 0xff;
    return b;
  };

  test('any mix of fragment sizes joins to the message sent (small pieces are gathered in blocks, large ones kept)', () => {
    // Sizes around the 4096-byte line between gathered and kept pieces and the 64 KiB block limit,
    // with empty fragments; pings between some fragments; several messages on one connection.
    const size = fc.oneof(fc.constant(0), fc.nat(40), fc.integer({ min: 3000, max: 5000 }), fc.integer({ min: 0, max: 70000 }));
    fc.assert(
      fc.property(fc.array(fc.array(size, { minLength: 2, maxLength: 30 }), { minLength: 1, maxLength: 3 }), fc.boolean(), (messages, pings) => {
        const h = harness('server');
        const expected: Buffer[] = [];
        messages.forEach((sizes, m) => {
          const pieces = sizes.map((n, i) => bytes(n, m * 100 + i));
          expected.push(Buffer.concat(pieces));
          pieces.forEach((payload, i) => {
            h.proto.receiveData(frame({ opcode: i === 0 ? 2 : 0, payload, fin: i === pieces.length - 1, mask: true }));
            if (pings && i % 3 === 1) h.proto.receiveData(frame({ opcode: 9, payload: 'p', mask: true }));
          });
        });
        expect(h.errors).toEqual([]);
        expect(h.messages).toHaveLength(expected.length);
        h.messages.forEach((got, i) => expect(Buffer.compare(got as Buffer, expected[i]!)).toBe(0));
      }),
      { numRuns: 150 },
    );
  });

  test('text in fragments of every size, cut through multi-byte characters, joins and decodes', () => {
    const text = 'aé€😀'.repeat(3000);
    const utf8 = Buffer.from(text);
    for (const cut of [1, 3, 100, 4095, 4096, 5000]) {
      const h = harness('server');
      for (let at = 0; at < utf8.length; at += cut) {
        const end = Math.min(utf8.length, at + cut);
        h.proto.receiveData(frame({ opcode: at === 0 ? 1 : 0, payload: utf8.subarray(at, end), fin: end === utf8.length, mask: true }));
      }
      expect(h.messages).toEqual([text]);
    }
  });

  test('a message in 300,000 one-byte fragments holds about its bytes while it arrives, not a Buffer per fragment', () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const N = 300_000;
    const one = (i: number, fin: boolean): Buffer => frame({ opcode: i === 0 ? 2 : 0, payload: Uint8Array.of(i & 0xff), fin, mask: true });
    const h = harness('server');
    // The frames (7 bytes each) fed as a socket would deliver them, in 64 KiB reads, last one held back.
    const wire = Buffer.alloc(7 * (N - 1));
    for (let i = 0; i < N - 1; i++) one(i, false).copy(wire, 7 * i);
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let at = 0; at < wire.length; at += 65536) h.proto.receiveData(wire.subarray(at, at + 65536));
    gc();
    const held = process.memoryUsage().heapUsed - before;
    // Kept as one Buffer per fragment (the code before) this read 32 MB, 107 bytes a fragment;
    // gathered, the 300 KB of payload is in a few blocks (external memory) and the heap reads ~0.
    expect(held).toBeLessThan(2 * 1024 * 1024);
    h.proto.receiveData(one(N - 1, true));
    expect(h.errors).toEqual([]);
    expect(h.messages).toHaveLength(1);
    const message = h.messages[0] as Buffer;
    expect(message.length).toBe(N);
    for (let i = 0; i < N; i += 9973) expect(message[i]).toBe(i & 0xff);
    expect(message[N - 1]).toBe((N - 1) & 0xff);
  });
});

describe('Protocol sending', () => {
  test.each(['ping', 'pong'] as const)('%s: a payload of 125 bytes is sent, one of 126 is a RangeError and writes nothing (RFC 6455 §5.5)', (kind) => {
    const h = harness('client');
    h.proto[kind](Buffer.alloc(125, 1));
    expect(() => h.proto[kind](Buffer.alloc(126, 2))).toThrow(new RangeError(`${kind} payload over 125 bytes`));
    const frames = h.written();
    expect(frames.map((f) => [f.opcode, f.payload.length])).toEqual([[kind === 'ping' ? 9 : 10, 125]]);
    expect(h.proto.state).toBe('open');
  });

  test('pong writes nothing once the connection failed, nor once the peer\'s close frame came (RFC 6455 §5.5.2)', () => {
    const failed = harness('server');
    failed.proto.receiveData(frame({ opcode: 2, payload: 'x', mask: false }));
    const written = failed.written().length;
    failed.proto.pong(Buffer.from('late'));
    expect(failed.written()).toHaveLength(written);
    const closed = harness('server');
    closed.proto.receiveData(frame({ opcode: 8, payload: closePayload(1000), mask: true }));
    closed.proto.pong(Buffer.from('late'));
    expect(closed.written().map((f) => f.opcode)).toEqual([8]);
  });

  test('client masks every frame with a fresh key; server never masks', () => {
    const c = harness('client');
    c.proto.sendText('hi');
    c.proto.sendBinary(Buffer.alloc(20000, 1));
    c.proto.ping(Buffer.from('p'));
    const frames = c.written();
    expect(frames.map((f) => f.masked)).toEqual([true, true, true]);
    expect(frames[0]!.payload.toString()).toBe('hi');
    expect(frames[1]!.payload.equals(Buffer.alloc(20000, 1))).toBe(true);
    const s = harness('server');
    s.proto.sendText('hi');
    s.proto.sendBinary(Buffer.alloc(20000, 1));
    expect(s.written().map((f) => f.masked)).toEqual([false, false]);
  });

  test('fragments are written as first-opcode then continuations, with pings allowed between', () => {
    const h = harness('server');
    h.proto.sendFragment(1, Buffer.from('a'), false);
    h.proto.ping(Buffer.from('p'));
    h.proto.sendFragment(1, Buffer.from('b'), false);
    h.proto.sendFragment(1, Buffer.from('c'), true);
    expect(h.written().map((f) => [f.opcode, f.fin, f.payload.toString()])).toEqual([
      [1, false, 'a'],
      [9, true, 'p'],
      [0, false, 'b'],
      [0, true, 'c'],
    ]);
  });

  test('no whole message may be sent while a fragmented one is open (RFC 6455 §5.4): text (a string too), binary and prepared are refused', () => {
    const h = harness('server');
    h.proto.sendFragment(1, Buffer.from('a'), false);
    const inProgress = expect.objectContaining({ code: 'WS_SEND_IN_PROGRESS', closeCode: 1011 });
    // (A string took a path of its own that did not check, and was written into the open message.)
    expect(() => h.proto.sendText('interleaved')).toThrow(inProgress);
    expect(() => h.proto.sendText(Buffer.from('interleaved'))).toThrow(inProgress);
    expect(() => h.proto.sendBinary(Buffer.from('x'))).toThrow(inProgress);
    expect(() => h.proto.sendPrepared(prepareMessage('x'))).toThrow(inProgress);
    h.proto.sendFragment(1, Buffer.from('b'), true);
    h.proto.sendText('after');
    expect(h.written().map((f) => [f.opcode, f.fin, f.payload.toString()])).toEqual([
      [1, false, 'a'],
      [0, true, 'b'],
      [1, true, 'after'],
    ]);
  });

  test('sending after close throws ConnectionClosedError', () => {
    const h = harness('server');
    h.proto.close();
    expect(() => h.proto.sendText('x')).toThrow(expect.objectContaining({ code: 'WS_CLOSED' }));
  });
});

describe('Protocol state kept in bits and a side object', () => {
  /** An extension whose "compression" is the identity, answered on the next turn (as zlib does). */
  function identityExtension(): MessageExtension {
    return {
      name: 'identity',
      compress: (data, _fin, cb) => setImmediate(() => cb(null, Buffer.from(data))),
      decompress: (data, _fin, cb) => setImmediate(() => cb(null, Buffer.from(data))),
      dispose: () => {},
    };
  }

  function queueHarness(): { proto: Protocol; written: () => DecodedFrame[]; events: string[] } {
    const out: Buffer[] = [];
    const events: string[] = [];
    const handler: ProtocolHandler = {
      onWrite: (d) => out.push(Buffer.from(d)),
      onWritev: (h, p) => out.push(Buffer.concat([h, p])),
      onMessage: () => events.push('message'),
      onPiece: () => events.push('piece'),
      onPing: () => {},
      onPong: () => {},
      onCloseFrame: () => {},
      onFail: () => events.push('fail'),
      onEnd: () => events.push('end'),
    };
    const proto = new Protocol({ side: 'server', extension: identityExtension(), compressThreshold: 0 }, handler);
    return { proto, written: () => decodeFrames(Buffer.concat(out)).frames, events };
  }

  const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

  test('an idle protocol holds at most 6 own fields; side and streamNextMessage are accessors', () => {
    const h = harness('client');
    expect(Reflect.ownKeys(h.proto).length).toBeLessThanOrEqual(6);
    expect(h.proto.side).toBe('client');
    expect(harness('server').proto.side).toBe('server');
    expect(h.proto.streamNextMessage).toBe(false);
    h.proto.streamNextMessage = true;
    expect(h.proto.streamNextMessage).toBe(true);
    expect(h.proto.state).toBe('open');
    expect(h.proto.closeSent).toBe(false);
    expect(h.proto.closeReceived).toBe(false);
    expect(h.proto.closeCode).toBeUndefined();
    expect(h.proto.closeReason).toBe('');
  });

  test('atRest: only between messages in both directions, with nothing buffered, queued or closing', async () => {
    const h = harness('server');
    expect(h.proto.atRest).toBe(true);
    // Half a frame buffered.
    const whole = frame({ opcode: 2, payload: Buffer.alloc(300, 1), mask: true });
    h.proto.receiveData(whole.subarray(0, 10));
    expect(h.proto.atRest).toBe(false);
    h.proto.receiveData(whole.subarray(10));
    expect(h.proto.atRest).toBe(true);
    // A fragmented message under way (its rare fields stay; they do not count once it ends).
    h.proto.receiveData(frame({ opcode: 1, payload: 'ab', fin: false, mask: true }));
    expect(h.proto.atRest).toBe(false);
    h.proto.receiveData(frame({ opcode: 0, payload: 'c', mask: true }));
    expect(h.messages.at(-1)).toBe('abc');
    expect(h.proto.atRest).toBe(true);
    // A fragmented message being sent.
    h.proto.sendFragment(2, Buffer.from('x'), false);
    expect(h.proto.atRest).toBe(false);
    h.proto.sendFragment(0, Buffer.from('y'), true);
    expect(h.proto.atRest).toBe(true);
    // A request to stream the next message.
    h.proto.streamNextMessage = true;
    expect(h.proto.atRest).toBe(false);
    h.proto.streamNextMessage = false;
    expect(h.proto.atRest).toBe(true);
    // Closing.
    h.proto.close(1000, '');
    expect(h.proto.atRest).toBe(false);
    // Frames waiting behind a compression job.
    const q = queueHarness();
    expect(q.proto.atRest).toBe(true);
    q.proto.sendText('one', true);
    expect(q.proto.atRest).toBe(false);
    await tick();
    await tick();
    expect(q.written().map((f) => f.opcode)).toEqual([1]);
    expect(q.proto.atRest).toBe(true);
  });

  test('streamNextMessage streams one message and is used up by it', () => {
    const h = harness('server');
    h.proto.streamNextMessage = true;
    h.proto.receiveData(frame({ opcode: 1, payload: 'ab', fin: false, mask: true }));
    h.proto.receiveData(frame({ opcode: 0, payload: 'c', mask: true }));
    expect(h.proto.streamNextMessage).toBe(false);
    h.proto.receiveData(frame({ opcode: 1, payload: 'd', fin: false, mask: true }));
    h.proto.receiveData(frame({ opcode: 0, payload: 'e', mask: true }));
    expect(h.events).toEqual(['piece', 'piece', 'message']);
    expect(h.messages).toEqual(['de']);
  });

  test('a large single-frame text message with invalid UTF-8 fails with 1007 at the first bad byte, before the frame is in', () => {
    const h = harness('server');
    const payload = Buffer.alloc(300_000, 0x61);
    payload[5000] = 0xff;
    const bytes = frame({ opcode: 1, payload, mask: true });
    const header = bytes.length - payload.length;
    h.proto.receiveData(bytes.subarray(0, header + 4000));
    expect(h.events).toEqual([]);
    h.proto.receiveData(bytes.subarray(header + 4000, header + 6000));
    expect(h.events).toEqual(['fail:1007', 'end']);
  });

  test.each<Side>(['server', 'client'])('%s: large single-frame text messages (ASCII, and with characters of 2-4 bytes cut by every read) are gathered and decoded exactly', (side) => {
    const h = harness(side);
    const ascii = 'json: {"k": 1234567890} '.repeat(12_000);
    const mixed = 'héllo, 日本語, 😀 and ascii; '.repeat(8_000);
    for (const text of [ascii, mixed]) {
      const bytes = frame({ opcode: 1, payload: Buffer.from(text, 'utf8'), mask: peerMasks(side) });
      // Reads of 4093 bytes: a prime, so the cuts land inside characters all along.
      for (let at = 0; at < bytes.length; at += 4093) h.proto.receiveData(bytes.subarray(at, at + 4093));
    }
    expect(h.events).toEqual(['message', 'message']);
    expect(h.messages[0]).toBe(ascii);
    expect(h.messages[1]).toBe(mixed);
  });

  test.each([
    ['a bad byte past the first quarter fails when it arrives, before the frame is in', 200_000, 0xff, 210_000],
    ['a 4-byte character cut short by the end of the message fails when the last byte arrives', 299_999, 0xf0, 300_000],
    ['a surrogate (ED A0 80) held back fails at once', 10_000, 0xed, 10_003],
  ])('large single-frame text: %s (1007)', (_name, at, byte, failsBy) => {
    const h = harness('server');
    const payload = Buffer.alloc(300_000, 0x61);
    payload[at] = byte;
    if (byte === 0xed) payload.set([0xed, 0xa0, 0x80], at);
    const bytes = frame({ opcode: 1, payload, mask: true });
    const header = bytes.length - payload.length;
    h.proto.receiveData(bytes.subarray(0, header + at));
    expect(h.events).toEqual([]);
    h.proto.receiveData(bytes.subarray(header + at, header + failsBy));
    expect(h.events).toEqual(['fail:1007', 'end']);
    expect(h.written().at(-1)).toMatchObject({ opcode: 8 });
  });

  test('a large single-frame binary message: gathered whole unless streamed, when its pieces come as the bytes arrive', () => {
    const h = harness('server');
    const payload = Buffer.alloc(300_000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff;
    const bytes = frame({ opcode: 2, payload, mask: true });
    const header = bytes.length - payload.length;
    // Not streamed: the first bytes are held (gathered once a quarter is in), no piece yet.
    h.proto.receiveData(bytes.subarray(0, header + 20_000));
    expect(h.proto.bufferedIncoming).toBe(20_000);
    h.proto.receiveData(bytes.subarray(header + 20_000, header + 100_000));
    expect(h.proto.bufferedIncoming).toBe(0);
    h.proto.receiveData(bytes.subarray(header + 100_000));
    expect(h.events).toEqual(['message']);
    expect((h.messages[0] as Buffer).equals(payload)).toBe(true);
    // Streamed: a piece as soon as bytes arrive, nothing held.
    h.proto.streamNextMessage = true;
    h.proto.receiveData(bytes.subarray(0, header + 20_000));
    expect(h.proto.bufferedIncoming).toBe(0);
    expect(h.events).toEqual(['message', 'piece']);
    h.proto.receiveData(bytes.subarray(header + 20_000, header + 100_000));
    h.proto.receiveData(bytes.subarray(header + 100_000));
    expect(h.events).toEqual(['message', 'piece', 'piece', 'piece']);
    // The request is used up: the next one is gathered again.
    h.proto.receiveData(bytes.subarray(0, header + 20_000));
    expect(h.proto.bufferedIncoming).toBe(20_000);
    h.proto.receiveData(bytes.subarray(header + 20_000));
    expect(h.events).toEqual(['message', 'piece', 'piece', 'piece', 'message']);
    expect((h.messages[1] as Buffer).equals(payload)).toBe(true);
  });

  test('sends wait behind compression in order; a send from the last callback is written at once', async () => {
    const h = queueHarness();
    const order: string[] = [];
    expect(h.proto.sendText('one', true, () => order.push('one'))).toBe(false);
    // Not compressed, but queued behind the first: it waits too.
    expect(h.proto.sendBinary(Buffer.from('two'), false, () => {
      order.push('two');
      // The queue is empty now: this one goes out synchronously.
      order.push(`three:${h.proto.sendText('three', false)}`);
    })).toBe(false);
    expect(h.written()).toEqual([]);
    await tick();
    await tick();
    expect(order).toEqual(['one', 'two', 'three:true']);
    expect(h.written().map((f) => [f.opcode, (f.rsv & 4) !== 0, f.payload.toString()])).toEqual([
      [1, true, 'one'],
      [2, false, 'two'],
      [1, false, 'three'],
    ]);
    expect(h.proto.sendText('four', false)).toBe(true);
  });

  test('close() waits for the queue, then sends the close frame; further sends throw', async () => {
    const h = queueHarness();
    h.proto.sendText('one');
    expect(h.proto.close(4000, 'later')).toBe(true);
    expect(h.proto.state).toBe('closing');
    expect(h.proto.closeSent).toBe(false);
    expect(h.proto.close(4001)).toBe(false);
    expect(() => h.proto.sendText('x', false)).toThrow(expect.objectContaining({ code: 'WS_CLOSED' }));
    await tick();
    expect(h.written().map((f) => f.opcode)).toEqual([1, 8]);
    expect(h.proto.closeSent).toBe(true);
  });

  test('the peer\'s close while sends wait behind compression: they go out first, in order, then the echo, then the end (RFC 6455 §5.5.1)', async () => {
    const h = queueHarness();
    const order: string[] = [];
    h.proto.sendText('one', true, () => order.push('one'));
    h.proto.sendText('two', false, () => order.push('two'));
    h.proto.receiveData(frame({ opcode: 8, payload: closePayload(4001, 'bye'), mask: true }));
    // (Before: the echo was written at once and both sends were dropped.)
    expect(h.written()).toEqual([]);
    expect(h.proto.state).toBe('closing');
    expect(h.proto.closeReceived).toBe(true);
    expect(h.proto.closeCode).toBe(4001);
    expect(h.events).toEqual([]); // the server ends the transport after its reply, not before
    expect(() => h.proto.sendText('late', false)).toThrow(expect.objectContaining({ code: 'WS_CLOSED' }));
    expect(h.proto.close(1000)).toBe(false);
    await tick();
    await tick();
    expect(order).toEqual(['one', 'two']);
    expect(h.written().map((f) => [f.opcode, f.opcode === 8 ? `${f.payload.readUInt16BE(0)} ${f.payload.subarray(2).toString()}` : f.payload.toString()])).toEqual([
      [1, 'one'],
      [1, 'two'],
      [8, '4001 bye'],
    ]);
    expect(h.proto.state).toBe('closed');
    expect(h.events).toEqual(['end']);
  });

  test('the end of the transport drops queued sends with the close code', async () => {
    const h = queueHarness();
    const errors: Array<Error | undefined> = [];
    h.proto.sendText('one', true, (e) => errors.push(e));
    h.proto.sendText('two', true, (e) => errors.push(e));
    h.proto.close();
    h.proto.receiveEof();
    expect(h.proto.state).toBe('closed');
    expect(h.proto.closeCode).toBe(1006);
    expect(errors.map((e) => e && (e as WebSocketError).code)).toEqual(['WS_CLOSED', 'WS_CLOSED']);
    await tick();
    expect(h.written()).toEqual([]);
  });

  test('a fragmented compressed send keeps its opcode and RSV1 on the first frame only', async () => {
    const h = queueHarness();
    h.proto.sendFragment(2, Buffer.from('a'), false);
    expect(() => h.proto.sendBinary(Buffer.from('x'))).toThrow(expect.objectContaining({ code: 'WS_SEND_IN_PROGRESS' }));
    h.proto.sendFragment(1, Buffer.from('b'), true);
    await tick();
    await tick();
    expect(h.written().map((f) => [f.opcode, f.fin, (f.rsv & 4) !== 0])).toEqual([
      [2, false, true],
      [0, true, false],
    ]);
    h.proto.sendFragment(1, Buffer.from('c'), true, false);
    expect(h.written().at(-1)!.opcode).toBe(1);
  });
});
