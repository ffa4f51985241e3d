/**
 * Autobahn sections 1 to 5: framing (1), pings and pongs (2), reserved bits (3), opcodes (4) and
 * fragmentation (5). Each case sends what Autobahn's case of the same number sends, in the same
 * TCP chops, and sets the same expectations; times are Autobahn's (fallback timers are scaled in
 * the fuzzer, see FALLBACK_SCALE).
 */
import { message, pong, type CaseDef, type CaseRun, type Observed } from './case.js';
import type { FrameSpec } from './fuzzer.js';

const HELLO = 'Hello, world!';

/** The peer must send back exactly `events`, then answer our close 1000 cleanly. */
function expectEcho(run: CaseRun, events: Observed[]): void {
  run.expect('OK', events);
  run.expectClose({ closedByMe: true, closeCode: [1000], requireClean: true });
}

/** The peer must fail the connection with 1002 (cleanly or not) after sending back `ok` (or, non-strictly, `nonStrict`). */
function expectProtocolError(run: CaseRun, ok: Observed[] = [], nonStrict?: Observed[]): void {
  run.expect('OK', ok);
  if (nonStrict) run.expect('NON-STRICT', nonStrict);
  run.expectClose({ closedByMe: false, closeCode: [1002], requireClean: false });
}

const send = (run: CaseRun, ...frames: FrameSpec[]): void => {
  for (const frame of frames) run.peer.sendFrame(frame);
};

/** Sends `frames`; the peer must fail the connection with 1002 and send nothing back. */
function failCase(id: string, title: string, frames: FrameSpec[]): CaseDef {
  return {
    id,
    title,
    start(run) {
      expectProtocolError(run);
      send(run, ...frames);
      run.peer.killAfter(1000);
    },
  };
}

// ---- 1.x Framing ---------------------------------------------------------------------------------

const SIZES: Array<[number, number | undefined, number]> = [
  // [payload length, chopsize, kill after ms]
  [0, undefined, 1000],
  [125, undefined, 1000],
  [126, undefined, 1000],
  [127, undefined, 1000],
  [128, undefined, 1000],
  [65535, undefined, 10000],
  [65536, undefined, 10000],
  [65536, 997, 10000],
];

function framingCases(sub: 1 | 2): CaseDef[] {
  const binary = sub === 2;
  return SIZES.map(([length, chopsize, kill], i) => ({
    id: `1.${sub}.${i + 1}`,
    title: `${binary ? 'binary' : 'text'} message of ${length} bytes${chopsize ? `, written in chops of ${chopsize}` : ''}, echoed`,
    start(run) {
      const payload = Buffer.alloc(length, binary ? 0xfe : 0x2a);
      expectEcho(run, [message(payload, binary)]);
      send(run, { opcode: binary ? 2 : 1, payload, chopsize });
      run.peer.killAfter(kill);
    },
  }));
}

// ---- 2.x Pings and pongs -------------------------------------------------------------------------

function pingCase(id: string, title: string, payload: Buffer | string, chopsize?: number, closeAfter = 1000): CaseDef {
  return {
    id,
    title,
    start(run) {
      expectEcho(run, [pong(payload)]);
      send(run, { opcode: 9, payload, chopsize });
      run.peer.closeAfter(closeAfter);
    },
  };
}

function tenPings(id: string, chopsize: number | undefined): CaseDef {
  return {
    id,
    title: `10 pings with payload${chopsize ? ', written byte by byte' : ''}: 10 pongs in order (Autobahn requires all 10)`,
    start(run) {
      const expected: Observed[] = [];
      for (let i = 0; i < 10; i++) {
        expected.push(pong(`payload-${i}`));
        send(run, { opcode: 9, payload: `payload-${i}`, chopsize });
      }
      expectEcho(run, expected);
      run.peer.closeAfter(3000);
    },
  };
}

const pingCases: CaseDef[] = [
  pingCase('2.1', 'ping without payload, pong', ''),
  pingCase('2.2', 'ping with small text payload, pong', 'Hello, world!'),
  pingCase('2.3', 'ping with small binary payload, pong', Buffer.from([0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff])),
  pingCase('2.4', 'ping with 125-byte binary payload, pong', Buffer.alloc(125, 0xfe)),
  {
    id: '2.5',
    title: 'ping with 126-byte payload: protocol error',
    start(run) {
      expectProtocolError(run);
      send(run, { opcode: 9, payload: Buffer.alloc(126, 0xfe) });
      run.peer.killAfter(1000);
    },
  },
  pingCase('2.6', 'ping with 125-byte payload written byte by byte, pong', Buffer.alloc(125, 0xfe), 1, 2000),
  {
    id: '2.7',
    title: 'unsolicited pong without payload: nothing back',
    start(run) {
      expectEcho(run, []);
      send(run, { opcode: 10 });
      run.peer.sendClose(1000);
      run.peer.closeAfter(1000);
    },
  },
  {
    id: '2.8',
    title: 'unsolicited pong with payload: nothing back',
    start(run) {
      expectEcho(run, []);
      send(run, { opcode: 10, payload: 'unsolicited pong payload' });
      run.peer.sendClose(1000);
      run.peer.closeAfter(1000);
    },
  },
  {
    id: '2.9',
    title: 'unsolicited pong, then ping: only the pong for the ping',
    start(run) {
      expectEcho(run, [pong('ping payload')]);
      send(run, { opcode: 10, payload: 'unsolicited pong payload' }, { opcode: 9, payload: 'ping payload' });
      run.peer.closeAfter(1000);
    },
  },
  tenPings('2.10', undefined),
  tenPings('2.11', 1),
];

// ---- 3.x Reserved bits ---------------------------------------------------------------------------

/** Text echo, then a frame with RSV bits, then a ping: echo (or, non-strictly, nothing), no pong. */
function rsvAfterEcho(id: string, rsv: number, how: Pick<FrameSpec, 'sync' | 'chopsize'>, title: string): CaseDef {
  return {
    id,
    title,
    start(run) {
      expectProtocolError(run, [message(HELLO)], []);
      send(run, { opcode: 1, payload: HELLO, ...how }, { opcode: 1, payload: HELLO, rsv, ...how }, { opcode: 9, ...how });
      run.peer.killAfter(1000);
    },
  };
}

const rsvCases: CaseDef[] = [
  failCase('3.1', 'text with RSV = 1: protocol error', [{ opcode: 1, payload: HELLO, rsv: 1 }]),
  rsvAfterEcho('3.2', 2, {}, 'text, text with RSV = 2, ping: echo of the first, then protocol error, no pong'),
  rsvAfterEcho('3.3', 3, { sync: true }, 'as 3.2 with RSV = 3, frame by frame'),
  rsvAfterEcho('3.4', 4, { chopsize: 1 }, 'as 3.2 with RSV = 4, byte by byte'),
  failCase('3.5', 'binary with RSV = 5: protocol error', [{ opcode: 2, payload: Buffer.from([0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff]), rsv: 5 }]),
  failCase('3.6', 'frame with RSV = 6: protocol error', [{ opcode: 2, payload: HELLO, rsv: 6 }]),
  failCase('3.7', 'close with RSV = 7: protocol error', [{ opcode: 8, rsv: 7 }]),
];

// ---- 4.x Opcodes ---------------------------------------------------------------------------------

function reservedOpcodeAlone(id: string, opcode: number, payload?: string): CaseDef {
  return failCase(id, `reserved ${opcode < 8 ? 'non-control' : 'control'} opcode ${opcode}${payload ? ' with payload' : ''}: protocol error`, [{ opcode, payload }]);
}

function reservedOpcodeAfterEcho(id: string, opcode: number, payload: string | undefined, chopsize?: number): CaseDef {
  return {
    id,
    title: `text, reserved opcode ${opcode}${payload ? ' with payload' : ''}, ping${chopsize ? ' (byte by byte)' : ''}: echo, then protocol error, no pong`,
    start(run) {
      expectProtocolError(run, [message(HELLO)], []);
      send(run, { opcode: 1, payload: HELLO, chopsize }, { opcode, payload, chopsize }, { opcode: 9, chopsize });
      run.peer.killAfter(1000);
    },
  };
}

const opcodeCases: CaseDef[] = [
  reservedOpcodeAlone('4.1.1', 3),
  reservedOpcodeAlone('4.1.2', 4, 'reserved opcode payload'),
  reservedOpcodeAfterEcho('4.1.3', 5, undefined),
  reservedOpcodeAfterEcho('4.1.4', 6, HELLO),
  reservedOpcodeAfterEcho('4.1.5', 7, HELLO, 1),
  reservedOpcodeAlone('4.2.1', 11),
  reservedOpcodeAlone('4.2.2', 12, 'reserved opcode payload'),
  reservedOpcodeAfterEcho('4.2.3', 13, undefined),
  reservedOpcodeAfterEcho('4.2.4', 14, HELLO),
  reservedOpcodeAfterEcho('4.2.5', 15, HELLO, 1),
];

// ---- 5.x Fragmentation ---------------------------------------------------------------------------

function twoFragments(id: string, how: Pick<FrameSpec, 'sync' | 'chopsize'>, title: string): CaseDef {
  return {
    id,
    title,
    start(run) {
      expectEcho(run, [message('fragment1fragment2')]);
      send(run, { opcode: 1, fin: false, payload: 'fragment1', ...how }, { opcode: 0, payload: 'fragment2', ...how });
      run.peer.closeAfter(1000);
    },
  };
}

function pingBetweenFragments(id: string, how: Pick<FrameSpec, 'sync' | 'chopsize'>, title: string): CaseDef {
  return {
    id,
    title,
    start(run) {
      expectEcho(run, [pong('ping payload'), message('fragment1fragment2')]);
      send(
        run,
        { opcode: 1, fin: false, payload: 'fragment1', ...how },
        { opcode: 9, payload: 'ping payload', ...how },
        { opcode: 0, payload: 'fragment2', ...how },
      );
      run.peer.closeAfter(1000);
    },
  };
}

/** Continuation with nothing to continue (FIN = `fin`), then a text message. */
function strayContinuation(id: string, fin: boolean, how: Pick<FrameSpec, 'sync' | 'chopsize'>, written: string): CaseDef {
  return failCase(id, `continuation (FIN = ${fin}) with nothing to continue, then text, ${written}: protocol error`, [
    { opcode: 0, fin, payload: 'non-continuation payload', ...how },
    { opcode: 1, payload: HELLO, ...how },
  ]);
}

/** 5.19 and 5.20: a ping inside a fragmented message must be answered before the message ends. */
function pingsInsideMessage(id: string, sync: boolean): CaseDef {
  return {
    id,
    title: `fragmented text with a ping after fragment 2, a 1 s pause, then a ping before the last fragment${sync ? ' (frame by frame)' : ''}: both pongs, then the echo`,
    start(run) {
      const fragments = ['fragment1', 'fragment2', 'fragment3', 'fragment4', 'fragment5'];
      const pings = ['pongme 1!', 'pongme 2!'];
      expectEcho(run, [pong(pings[0]!), pong(pings[1]!), message(fragments.join(''))]);
      const p = run.peer;
      send(run, { opcode: 1, fin: false, payload: fragments[0], sync }, { opcode: 0, fin: false, payload: fragments[1], sync }, { opcode: 9, payload: pings[0], sync });
      p.continueLater(1000, () => {
        p.note('tx:part2');
        send(
          run,
          { opcode: 0, fin: false, payload: fragments[2], sync },
          { opcode: 0, fin: false, payload: fragments[3], sync },
          { opcode: 9, payload: pings[1], sync },
          { opcode: 0, payload: fragments[4], sync },
        );
        p.closeAfter(1000);
      });
      return {
        // Autobahn's expectation: "the peer immediately answers the first ping before it has
        // received the last text message fragment". As ordering: the first pong is in before
        // the fuzzer sends the second half of the message.
        extra() {
          const pongAt = p.timeline.indexOf('rx:pong');
          const partAt = p.timeline.indexOf('tx:part2');
          return pongAt >= 0 && partAt >= 0 && pongAt < partAt ? undefined : 'the first pong did not arrive before the rest of the message was sent';
        },
      };
    },
  };
}

const fragmentationCases: CaseDef[] = [
  failCase('5.1', 'ping in 2 fragments: protocol error', [
    { opcode: 9, fin: false, payload: 'fragment1' },
    { opcode: 0, payload: 'fragment2' },
  ]),
  failCase('5.2', 'pong in 2 fragments: protocol error', [
    { opcode: 10, fin: false, payload: 'fragment1' },
    { opcode: 0, payload: 'fragment2' },
  ]),
  twoFragments('5.3', {}, 'text in 2 fragments, echoed'),
  twoFragments('5.4', { sync: true }, 'text in 2 fragments, frame by frame, echoed'),
  twoFragments('5.5', { chopsize: 1 }, 'text in 2 fragments, byte by byte, echoed'),
  pingBetweenFragments('5.6', {}, 'text in 2 fragments with a ping between: pong, then echo'),
  pingBetweenFragments('5.7', { sync: true }, 'as 5.6, frame by frame'),
  pingBetweenFragments('5.8', { chopsize: 1 }, 'as 5.6, byte by byte'),
  strayContinuation('5.9', true, {}, 'in one write'),
  strayContinuation('5.10', true, { sync: true }, 'frame by frame'),
  strayContinuation('5.11', true, { chopsize: 1 }, 'byte by byte'),
  strayContinuation('5.12', false, {}, 'in one write'),
  strayContinuation('5.13', false, { sync: true }, 'frame by frame'),
  strayContinuation('5.14', false, { chopsize: 1 }, 'byte by byte'),
  {
    id: '5.15',
    title: 'text in 2 fragments, then a stray continuation (FIN = false) and a text: echo, then protocol error',
    start(run) {
      expectProtocolError(run, [message('fragment1fragment2')], []);
      send(
        run,
        { opcode: 1, fin: false, payload: 'fragment1' },
        { opcode: 0, payload: 'fragment2' },
        { opcode: 0, fin: false, payload: 'fragment3' },
        { opcode: 1, payload: 'fragment4' },
      );
      run.peer.killAfter(1000);
    },
  },
  ...[false, true].map(
    (fin, i): CaseDef => ({
      id: `5.${16 + i}`,
      title: `twice: stray continuation (FIN = ${fin}), then text in 2 fragments: protocol error`,
      start(run) {
        expectProtocolError(run);
        for (let k = 0; k < 2; k++) {
          send(run, { opcode: 0, fin, payload: 'fragment1' }, { opcode: 1, fin: false, payload: 'fragment2' }, { opcode: 0, payload: 'fragment3' });
        }
        run.peer.killAfter(1000);
      },
    }),
  ),
  failCase('5.18', 'text in 2 fragments both with opcode text: protocol error', [
    { opcode: 1, fin: false, payload: 'fragment1' },
    { opcode: 1, payload: 'fragment2' },
  ]),
  pingsInsideMessage('5.19', false),
  pingsInsideMessage('5.20', true),
];

export const framingSectionCases: CaseDef[] = [...framingCases(1), ...framingCases(2), ...pingCases, ...rsvCases, ...opcodeCases, ...fragmentationCases];
