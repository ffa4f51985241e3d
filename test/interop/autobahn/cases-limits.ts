/**
 * Autobahn section 9 (limits and performance: large messages, many fragments, small TCP chops,
 * round trips) and section 10 (10.1.1: a message the fuzzer fragments by itself).
 *
 * Section 9 is graded as Autobahn grades it: the first echo must be of the right type and length
 * (then the fuzzer closes with 1000 and expects a clean close); 9.7/9.8 send the next message on
 * each echo until the count is reached. Our tests also check, as the cases' expectation says,
 * that the echoes carry the payload as sent (Autobahn checks lengths only).
 *
 * Nothing is scaled: every 9.x case has Autobahn's shape and sizes (up to 16 MiB, 4 MiB in
 * 65537 frames of 64 bytes, 1 MiB in 16384 TCP writes of 64 bytes, 1000 round trips); section 9
 * takes about 2 s per role here, run one case at a time. Only Autobahn's "give up" times (10 to
 * 1000 s) are capped at 10 s (times FALLBACK_SCALE): on loopback every echo arrives well within
 * that, and they only matter for a peer that never answers.
 */
import { message, type CaseDef, type CaseRun } from './case.js';
import { repeatTo } from './wire.js';

const KiB = 1024;
const MiB = 1024 * 1024;
const TEXT = Buffer.from('BAsd7&jh23');
const BINARY = Buffer.from([0x00, 0xfe, 0x23, 0xfa, 0xf0]);
const WAIT_CAP_MS = 10_000;

/** Sizes of 9.1.x / 9.2.x: Autobahn's 64 KiB … 16 MiB. */
const SINGLE_SIZES = [64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB, 8 * MiB, 16 * MiB];
/** 9.3.x / 9.4.x: a 4 MiB message in fragments of 64 B … 4 MiB. */
const FRAGMENT_SIZES = [64, 256, 1 * KiB, 4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB];
/** 9.5.x / 9.6.x: a 1 MiB message written in TCP chops of 64 … 2048 bytes. */
const CHOP_SIZES = [64, 128, 256, 512, 1024, 2048];
/** 9.7.x / 9.8.x: [payload size, message count, Autobahn's timeout s]. */
const ROUND_TRIPS: Array<[number, number, number]> = [
  [0, 1000, 60],
  [16, 1000, 60],
  [64, 1000, 60],
  [256, 1000, 120],
  [1024, 1000, 240],
  [4096, 1000, 480],
];

/** Grades the first echo as Autobahn's 9.x cases do, closes with 1000, and compares content too. */
function oneLargeEcho(run: CaseRun, sent: Buffer, binary: boolean, waitSeconds: number) {
  run.behavior = 'FAILED';
  run.result = `Did not receive the echo within ${waitSeconds} s.`;
  run.expectClose({ closedByMe: true, closeCode: [1000], requireClean: true });
  run.peer.closeAfter(Math.min(waitSeconds * 1000, WAIT_CAP_MS));
  let echo: Buffer | undefined;
  return {
    message(data: Buffer, isBinary: boolean) {
      echo ??= data;
      if (isBinary !== binary) run.result = `Expected a ${binary ? 'binary' : 'text'} message, got ${isBinary ? 'binary' : 'text'}.`;
      else if (data.length !== sent.length) run.result = `Expected a message of ${sent.length} bytes, got ${data.length}.`;
      else {
        run.behavior = 'OK';
        run.result = `Received a message of ${data.length} bytes.`;
      }
      run.peer.sendClose(1000);
    },
    extra: () => (echo === undefined || echo.equals(sent) ? undefined : 'the echo does not carry the payload as sent'),
  };
}

const sizeName = (n: number): string => (n >= MiB ? `${n / MiB} MiB` : n >= KiB ? `${n / KiB} KiB` : `${n} B`);

function singleFrame(sub: 1 | 2, size: number, i: number): CaseDef {
  const binary = sub === 2;
  return {
    id: `9.${sub}.${i + 1}`,
    title: `${binary ? 'binary' : 'text'} message of ${sizeName(size)} in one frame, echoed`,
    heavy: true,
    start(run) {
      const payload = repeatTo(binary ? BINARY : TEXT, size);
      run.peer.sendFrame({ opcode: binary ? 2 : 1, payload });
      return oneLargeEcho(run, payload, binary, size >= 4 * MiB ? 100 : 10);
    },
  };
}

function fragmented(sub: 3 | 4, fragment: number, i: number): CaseDef {
  const binary = sub === 4;
  return {
    id: `9.${sub}.${i + 1}`,
    title: `${binary ? 'binary' : 'text'} message of 4 MiB in fragments of ${sizeName(fragment)}, echoed`,
    heavy: true,
    start(run) {
      const payload = Buffer.alloc(4 * MiB, binary ? 0xfe : 0x2a);
      run.peer.sendMessage(payload, binary, fragment);
      return oneLargeEcho(run, payload, binary, 100);
    },
  };
}

function chopped(sub: 5 | 6, chop: number, i: number): CaseDef {
  const binary = sub === 6;
  return {
    id: `9.${sub}.${i + 1}`,
    title: `${binary ? 'binary' : 'text'} message of 1 MiB written in TCP chops of ${chop} bytes, echoed`,
    heavy: true,
    start(run) {
      const payload = repeatTo(binary ? BINARY : TEXT, 1 * MiB);
      run.peer.sendFrame({ opcode: binary ? 2 : 1, payload, chopsize: chop });
      return oneLargeEcho(run, payload, binary, 1000);
    },
  };
}

function roundTrips(sub: 7 | 8, [size, count, waitSeconds]: [number, number, number], i: number): CaseDef {
  const binary = sub === 8;
  return {
    id: `9.${sub}.${i + 1}`,
    title: `${count} ${binary ? 'binary' : 'text'} messages of ${size} bytes, one at a time, each echoed`,
    heavy: true,
    start(run) {
      const payload = Buffer.alloc(size, binary ? 0xfe : 0x2a);
      run.behavior = 'FAILED';
      run.result = `Case did not finish within ${waitSeconds} s.`;
      run.expectClose({ closedByMe: true, closeCode: [1000], requireClean: true });
      run.peer.closeAfter(Math.min(waitSeconds * 1000, WAIT_CAP_MS));
      let sent = 0;
      let corrupted = 0;
      const sendOne = (): void => {
        run.peer.sendFrame({ opcode: binary ? 2 : 1, payload });
        sent++;
      };
      sendOne();
      return {
        message(data, isBinary) {
          if (!data.equals(payload)) corrupted++;
          if (isBinary !== binary || data.length !== size) {
            run.behavior = 'FAILED';
            run.result = `Echo differs in type or length (binary = ${isBinary}, length = ${data.length}).`;
            run.peer.sendClose(1000);
          } else if (sent < count) {
            sendOne();
          } else {
            run.behavior = 'OK';
            run.result = 'Received all echoed messages in time.';
            run.peer.sendClose(1000);
          }
        },
        extra: () => (corrupted === 0 ? undefined : `${corrupted} echoes do not carry the payload as sent`),
      };
    },
  };
}

const autoFragmentation: CaseDef = {
  id: '10.1.1',
  title: '64 KiB text the fuzzer auto-fragments in 1300-byte frames, echoed',
  start(run) {
    const payload = Buffer.alloc(65536, 0x2a);
    run.peer.autoFragmentSize = 1300;
    run.expect('OK', [message(payload)]);
    run.expectClose({ closedByMe: true, closeCode: [1000], requireClean: true });
    run.peer.sendMessage(payload, false);
    run.peer.killAfter(10_000);
    return {
      // Autobahn also checks its own transmission: one text frame and 50 continuations.
      grade() {
        const stats = run.peer.txFrameStats;
        const text = stats.get(1) ?? 0;
        const continuations = stats.get(0) ?? 0;
        if (text !== 1 || continuations !== Math.floor(65536 / 1300)) {
          run.behavior = 'FAILED';
          run.result = `Frames transmitted (text ${text}, continuation ${continuations}) differ from what was expected.`;
        }
      },
    };
  },
};

export const limitsSectionCases: CaseDef[] = [
  ...SINGLE_SIZES.map((size, i) => singleFrame(1, size, i)),
  ...SINGLE_SIZES.map((size, i) => singleFrame(2, size, i)),
  ...FRAGMENT_SIZES.map((size, i) => fragmented(3, size, i)),
  ...FRAGMENT_SIZES.map((size, i) => fragmented(4, size, i)),
  ...CHOP_SIZES.map((size, i) => chopped(5, size, i)),
  ...CHOP_SIZES.map((size, i) => chopped(6, size, i)),
  ...ROUND_TRIPS.map((spec, i) => roundTrips(7, spec, i)),
  ...ROUND_TRIPS.map((spec, i) => roundTrips(8, spec, i)),
];

export const miscSectionCases: CaseDef[] = [autoFragmentation];
