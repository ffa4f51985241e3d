/**
 * Autobahn section 7: close handling, all started by the fuzzer. 7.1 basic closing (frames after a
 * close are ignored), 7.3 close payload length (0, 1, 2, with reason, 123-byte reason, 124-byte
 * reason), 7.5.1 a close reason that is not UTF-8, 7.7 valid close codes (echoed or answered with
 * 1000), 7.9 invalid close codes (protocol error or dropped TCP), 7.13 codes outside the range
 * (informational). In all of them (but 7.1.6 and 7.13.x) a WRONG CODE close also fails the case.
 */
import { message, type CaseDef, type CaseHooks, type CaseRun } from './case.js';

const HELLO = 'Hello World!';

/** Autobahn 7.x: a close answered with a code not in the list fails the case, not only its close. */
function wrongCodeFails(run: CaseRun): CaseHooks {
  return {
    grade() {
      if (run.behaviorClose === 'WRONG CODE') {
        run.behavior = 'FAILED';
        run.result = run.resultClose;
      }
    },
  };
}

/** Our close 1000, then `after`: a clean 1000 close back, nothing else. */
const closeThen = (id: string, title: string, after: (run: CaseRun) => void): CaseDef => closeCase(id, title, [1000], true, after);

/** A close frame from us (made by `send`); the peer answers with one of `codes` (or, if not `requireClean`, drops TCP). */
function closeCase(id: string, title: string, codes: number[], requireClean: boolean, send: (run: CaseRun) => void): CaseDef {
  return {
    id,
    title,
    start(run) {
      run.suppressClose = true;
      run.expect('OK', []);
      run.expectClose({ closedByMe: true, closeCode: codes, requireClean });
      send(run);
      run.peer.killAfter(1000);
      return wrongCodeFails(run);
    },
  };
}

const basicCases: CaseDef[] = [
  {
    id: '7.1.1',
    title: 'text message, then our close: echo, clean close 1000',
    start(run) {
      run.expect('OK', [message(HELLO)]);
      run.expectClose({ closedByMe: true, closeCode: [1000], requireClean: true });
      run.peer.sendFrame({ opcode: 1, payload: HELLO });
      run.peer.killAfter(1000);
      return wrongCodeFails(run);
    },
  },
  closeThen('7.1.2', 'two close frames: the second is ignored, clean close 1000', (run) => {
    run.peer.sendClose(1000);
    run.peer.sendFrame({ opcode: 8 });
  }),
  closeThen('7.1.3', 'ping after our close: no pong, clean close 1000', (run) => {
    run.peer.sendClose(1000);
    run.peer.sendFrame({ opcode: 9 });
  }),
  closeThen('7.1.4', 'text after our close: ignored, clean close 1000', (run) => {
    run.peer.sendClose(1000);
    run.peer.sendFrame({ opcode: 1, payload: HELLO });
  }),
  closeThen('7.1.5', 'first fragment, our close, last fragment: clean close 1000', (run) => {
    run.peer.sendFrame({ opcode: 1, fin: false, payload: 'fragment1' });
    run.peer.sendClose(1000);
    run.peer.sendFrame({ opcode: 0, payload: 'fragment2' });
  }),
  {
    id: '7.1.6',
    title: '256 KiB text, a text, our close, a ping, back to back (informational)',
    start(run) {
      run.suppressClose = true;
      run.expect('OK', [message(HELLO)]);
      run.expect('NON-STRICT', []);
      run.expectClose({ closedByMe: true, closeCode: [1000], requireClean: true });
      run.peer.sendFrame({ opcode: 1, payload: 'BAsd7&jh23', payloadLen: 256 * 1024 });
      run.peer.sendFrame({ opcode: 1, payload: HELLO });
      run.peer.sendClose(1000);
      run.peer.sendFrame({ opcode: 9 });
      run.peer.killAfter(1000);
      return {
        // How much of what was sent before the close comes back depends on the implementation.
        grade() {
          run.behavior = 'INFORMATIONAL';
          run.behaviorClose = 'INFORMATIONAL';
        },
      };
    },
  },
];

const payloadCases: CaseDef[] = [
  closeCase('7.3.1', 'close with empty payload: clean close', [1000], true, (run) => run.peer.sendCloseFrame()),
  closeCase('7.3.2', 'close with 1-byte payload: protocol error or dropped TCP', [1002], false, (run) => run.peer.sendCloseFrame(undefined, Buffer.from('a'))),
  closeCase('7.3.3', 'close with code 1000: clean close', [1000], true, (run) => run.peer.sendClose(1000)),
  closeCase('7.3.4', 'close with code 1000 and a reason: clean close', [1000], true, (run) => run.peer.sendClose(1000, HELLO)),
  closeCase('7.3.5', 'close with code 1000 and a 123-byte reason: clean close', [1000], true, (run) => run.peer.sendClose(1000, '*'.repeat(123))),
  closeCase('7.3.6', 'close with code 1000 and a 124-byte reason (126-byte control frame): protocol error or dropped TCP', [1002], false, (run) =>
    run.peer.sendCloseFrame(1000, Buffer.from('*'.repeat(124))),
  ),
  closeCase('7.5.1', 'close with a reason that is not UTF-8: 1002 or 1007, or dropped TCP', [1002, 1007], false, (run) =>
    run.peer.sendCloseFrame(1000, Buffer.from('cebae1bdb9cf83cebcceb5eda080656469746564', 'hex')),
  ),
];

const VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999];
const INVALID_CODES = [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999];

const codeCases: CaseDef[] = [
  ...VALID_CODES.map((code, i) =>
    closeCase(`7.7.${i + 1}`, `close with valid code ${code}: clean close with 1000 or ${code}`, [1000, code], true, (run) => run.peer.sendCloseFrame(code)),
  ),
  ...INVALID_CODES.map((code, i) =>
    closeCase(`7.9.${i + 1}`, `close with invalid code ${code}: protocol error or dropped TCP`, [1002], false, (run) => run.peer.sendCloseFrame(code)),
  ),
  ...[5000, 65535].map(
    (code, i): CaseDef => ({
      id: `7.13.${i + 1}`,
      title: `close with code ${code} (informational: the spec leaves the outcome open)`,
      start(run) {
        run.suppressClose = true;
        run.expect('OK', []);
        run.expectClose({ closedByMe: true, closeCode: [1000, code, 1002], requireClean: false });
        run.peer.sendCloseFrame(code);
        run.peer.killAfter(1000);
        return {
          grade() {
            run.behavior = 'INFORMATIONAL';
            run.behaviorClose = 'INFORMATIONAL';
          },
        };
      },
    }),
  ),
];

export const closeSectionCases: CaseDef[] = [...basicCases, ...payloadCases, ...codeCases];
