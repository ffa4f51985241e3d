/**
 * Autobahn section 6: UTF-8 handling. 6.1 empty fragments, 6.2 valid text split on and inside
 * code points, 6.3 invalid text, 6.4 fail-fast on invalid text split across frames or across TCP
 * writes of one frame, and 6.5 to 6.23 one case per byte sequence of Markus Kuhn's UTF-8 decoder
 * test (valid ones must be echoed, invalid ones must fail the connection with 1007 from the peer).
 */
import { isUtf8 } from 'node:buffer';
import { message, timeout, type CaseDef, type CaseRun } from './case.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const bytes = (...values: number[]): Buffer => Buffer.from(values);

/** The peer must fail with 1007, and it must be the peer that closes first. */
function expectInvalidUtf8(run: CaseRun): void {
  run.expectClose({ closedByMe: false, closeCode: [1007], requireClean: false, closedByWrongEndpointIsFatal: true });
}

function expectEcho(run: CaseRun, payload: Buffer | string): void {
  run.expect('OK', [message(payload)]);
  run.expectClose({ closedByMe: true, closeCode: [1000], requireClean: true });
}

// κόσμε, then U+D800 as UTF-8 (a surrogate, invalid), then "edited".
const KOSME = hex('ceba e1bdb9 cf83 cebc ceb5');
const INVALID_6_3 = Buffer.concat([KOSME, hex('eda080'), Buffer.from('edited')]);
// κόσμε, then F4 90 80 80 (U+110000 in the UTF-8 scheme, beyond Unicode: invalid at byte 12), then "edited".
const PART2_6_4 = hex('f4908080');
const INVALID_6_4 = Buffer.concat([KOSME, PART2_6_4, Buffer.from('edited')]);
const MIXED = 'Hello-µ@ßöäüàá-UTF-8!!';

/**
 * 6.4.x fail fast: part 1 is valid so far and must be accepted (the connection is still open after
 * a 1 s wait: the `timeout A` marker); part 2 makes the text invalid and the peer should fail at
 * once: the fuzzer waits at a sync point until the peer's close frame has arrived, at most 1 s,
 * and only if the connection is still open records `timeout B` and sends part 3. OK: the close
 * came before part 3 was sent; NON-STRICT: the peer failed only once it had the whole message.
 */
function failFast(id: string, title: string, parts: [Buffer, Buffer, Buffer], streamed: boolean): CaseDef {
  return {
    id,
    title,
    start(run) {
      run.expect('OK', [timeout('A')]);
      run.expect('NON-STRICT', [timeout('A'), timeout('B')]);
      expectInvalidUtf8(run);
      const p = run.peer;
      if (streamed) {
        p.beginMessage();
        p.beginMessageFrame(parts.reduce((n, part) => n + part.length, 0));
        p.sendMessageFrameData(parts[0]);
      } else {
        p.sendFrame({ opcode: 1, fin: false, payload: parts[0] });
      }
      p.continueLater(
        1000,
        () => {
          if (p.state !== 'open') return;
          run.record(timeout('A'));
          p.note('tx:part2');
          if (streamed) p.sendMessageFrameData(parts[1]);
          else p.sendFrame({ opcode: 0, fin: false, payload: parts[1] });
          void p.until(() => p.state !== 'open', 1000).then(() => {
            if (p.state !== 'open') return;
            run.record(timeout('B'));
            p.note('tx:part3');
            if (streamed) {
              p.sendMessageFrameData(parts[2]);
              p.endMessage();
            } else {
              p.sendFrame({ opcode: 0, payload: parts[2] });
            }
            p.killAfter(1000);
          });
        },
        'A',
      );
    },
  };
}

const basicCases: CaseDef[] = [
  {
    id: '6.1.1',
    title: 'empty text message, echoed',
    start(run) {
      expectEcho(run, '');
      run.peer.sendFrame({ opcode: 1 });
      run.peer.closeAfter(1000);
    },
  },
  {
    id: '6.1.2',
    title: 'text in 3 empty fragments, echoed empty',
    start(run) {
      expectEcho(run, '');
      run.peer.sendFrame({ opcode: 1, fin: false });
      run.peer.sendFrame({ opcode: 0, fin: false });
      run.peer.sendFrame({ opcode: 0 });
      run.peer.closeAfter(1000);
    },
  },
  {
    id: '6.1.3',
    title: 'text in 3 fragments, first and last empty, echoed',
    start(run) {
      expectEcho(run, 'middle frame payload');
      run.peer.sendFrame({ opcode: 1, fin: false });
      run.peer.sendFrame({ opcode: 0, fin: false, payload: 'middle frame payload' });
      run.peer.sendFrame({ opcode: 0 });
      run.peer.closeAfter(1000);
    },
  },
  {
    id: '6.2.1',
    title: 'valid UTF-8 text in one frame, echoed',
    start(run) {
      expectEcho(run, MIXED);
      run.peer.sendMessage(MIXED, false);
      run.peer.closeAfter(1000);
    },
  },
  {
    id: '6.2.2',
    title: 'valid UTF-8 text in 2 fragments split on a code point boundary, echoed',
    start(run) {
      expectEcho(run, MIXED);
      run.peer.sendFrame({ opcode: 1, fin: false, payload: 'Hello-µ@ßöä' });
      run.peer.sendFrame({ opcode: 0, payload: 'üàá-UTF-8!!' });
      run.peer.closeAfter(1000);
    },
  },
  {
    id: '6.2.3',
    title: 'valid UTF-8 text in 1-byte fragments (split inside code points), echoed',
    start(run) {
      expectEcho(run, MIXED);
      run.peer.sendMessage(MIXED, false, 1);
      run.peer.closeAfter(1000);
    },
  },
  {
    id: '6.2.4',
    title: 'valid UTF-8 κόσμε in 1-byte fragments, echoed',
    start(run) {
      expectEcho(run, KOSME);
      run.peer.sendMessage(KOSME, false, 1);
      run.peer.closeAfter(1000);
    },
  },
  {
    id: '6.3.1',
    title: 'invalid UTF-8 text (a surrogate) in one frame: 1007',
    start(run) {
      run.expect('OK', []);
      expectInvalidUtf8(run);
      run.peer.sendMessage(INVALID_6_3, false);
      run.peer.killAfter(1000);
    },
  },
  {
    id: '6.3.2',
    title: 'invalid UTF-8 text (a surrogate) in 1-byte fragments: 1007',
    start(run) {
      run.expect('OK', []);
      expectInvalidUtf8(run);
      run.peer.sendMessage(INVALID_6_3, false, 1);
      run.peer.killAfter(1000);
    },
  },
  failFast('6.4.1', 'invalid UTF-8 text in 3 frames, the 2nd invalid: fail fast with 1007', [KOSME, PART2_6_4, Buffer.from('edited')], false),
  failFast('6.4.2', 'as 6.4.1, the 2nd frame only the byte that makes the text invalid: fail fast with 1007', [INVALID_6_4.subarray(0, 12), INVALID_6_4.subarray(12, 13), INVALID_6_4.subarray(13)], false),
  failFast('6.4.3', 'invalid UTF-8 text in one frame written in 3 parts, the 2nd invalid: fail fast with 1007', [KOSME, PART2_6_4, Buffer.from('edited')], true),
  failFast('6.4.4', 'as 6.4.3, the 2nd part only the byte that makes the text invalid: fail fast with 1007', [INVALID_6_4.subarray(0, 12), INVALID_6_4.subarray(12, 13), INVALID_6_4.subarray(13)], true),
];

/** Markus Kuhn's UTF-8 decoder test, as Autobahn groups it into 6.5 … 6.23: [title, [valid, bytes][]]. */
function utf8Sequences(): Array<[string, Array<[boolean, Buffer]>]> {
  const groups: Array<[string, Array<[boolean, Buffer]>]> = [];
  const add = (title: string, items: Array<[boolean, Buffer]>): void => void groups.push([title, items]);
  const invalid = (...seqs: Buffer[]): Array<[boolean, Buffer]> => seqs.map((s) => [false, s]);
  const valid = (...seqs: Buffer[]): Array<[boolean, Buffer]> => seqs.map((s) => [true, s]);
  const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

  add('some valid UTF-8 sequences', valid(Buffer.from('hello$world'), Buffer.from('hello¢world'), Buffer.from('hello€world'), hex('68656c6c6ff0a4ada2776f726c64'), KOSME));
  add('all prefixes of a valid string with multi-byte code points', range(1, KOSME.length + 1).map((n) => [isUtf8(KOSME.subarray(0, n)), KOSME.subarray(0, n)]));
  add('first possible sequence of each length', valid(bytes(0x00), hex('c280'), hex('e0a080'), hex('f0908080')));
  add('first possible sequence of length 5 and 6 (beyond Unicode)', invalid(hex('f888808080'), hex('fc8480808080')));
  add('last possible sequence of each length', valid(bytes(0x7f), hex('dfbf'), hex('efbfbf'), hex('f48fbfbf')));
  add('last possible sequence of length 4, 5, 6 (beyond Unicode)', invalid(hex('f7bfbfbf'), hex('fbbfbfbfbf'), hex('fdbfbfbfbfbf')));
  add('other boundary conditions', [...valid(hex('ed9fbf'), hex('ee8080'), hex('efbfbd'), hex('f48fbfbf')), ...invalid(hex('f4908080'))]);
  add('unexpected continuation bytes', invalid(hex('80'), hex('bf'), hex('80bf'), hex('80bf80'), hex('80bf80bf'), hex('80bf80bf80'), hex('80bf80bf80bf'), bytes(...range(0x80, 0xbf))));
  add(
    'lonely start bytes, each followed by a space',
    invalid(...[[0xc0, 0xdf], [0xe0, 0xef], [0xf0, 0xf7], [0xf8, 0xfb], [0xfc, 0xfd]].map(([lo, hi]) => bytes(...range(lo!, hi!).flatMap((b) => [b, 0x20])))),
  );
  const truncated = ['c0', 'e080', 'f08080', 'f8808080', 'fc80808080', 'df', 'efbf', 'f7bfbf', 'fbbfbfbf', 'fdbfbfbfbf'].map(hex);
  add('sequences with the last continuation byte missing', invalid(...truncated));
  add('concatenation of incomplete sequences', invalid(Buffer.concat(truncated)));
  add('impossible bytes', invalid(hex('fe'), hex('ff'), hex('fefeffff')));
  add('overlong ASCII /', invalid(hex('c0af'), hex('e080af'), hex('f08080af'), hex('f8808080af'), hex('fc80808080af')));
  add('maximum overlong sequences', invalid(hex('c1bf'), hex('e09fbf'), hex('f08fbfbf'), hex('f887bfbfbf'), hex('fc83bfbfbfbf')));
  add('overlong NUL', invalid(hex('c080'), hex('e08080'), hex('f0808080'), hex('f880808080'), hex('fc8080808080')));
  add('single UTF-16 surrogates', invalid(...['eda080', 'edadbf', 'edae80', 'edafbf', 'edb080', 'edbe80', 'edbfbf'].map(hex)));
  add(
    'paired UTF-16 surrogates',
    invalid(...['eda080edb080', 'eda080edbfbf', 'edadbfedb080', 'edadbfedbfbf', 'edae80edb080', 'edae80edbfbf', 'edafbfedb080', 'edafbfedbfbf'].map(hex)),
  );
  const nonCharacters: Buffer[] = [hex('efbfbe'), hex('efbfbf')];
  for (const b1 of [0xf0, 0xf1, 0xf2, 0xf3, 0xf4]) {
    for (const b2 of [0x8f, 0x9f, 0xaf, 0xbf]) {
      if (b1 === 0xf4 && b2 !== 0x8f) continue; // beyond U+10FFFF
      for (const b4 of [0xbe, 0xbf]) {
        if (b1 === 0xf0 && b2 === 0x8f) continue; // overlong
        nonCharacters.push(bytes(b1, b2, 0xbf, b4));
      }
    }
  }
  add('non-character code points (valid UTF-8)', valid(...nonCharacters));
  add('Unicode specials (valid UTF-8)', valid(...['efbfb9', 'efbfba', 'efbfbb', 'efbfbc', 'efbfbd', 'efbfbe', 'efbfbf'].map(hex)));
  return groups;
}

const sequenceCases: CaseDef[] = utf8Sequences().flatMap(([group, items], g) =>
  items.map(
    ([isValid, payload], i): CaseDef => ({
      id: `6.${g + 5}.${i + 1}`,
      title: `${group}: 0x${payload.toString('hex')} ${isValid ? 'echoed' : 'fails with 1007'}`,
      start(run) {
        if (isValid) expectEcho(run, payload);
        else {
          run.expect('OK', []);
          expectInvalidUtf8(run);
        }
        run.peer.sendMessage(payload, false);
        run.peer.killAfter(500);
      },
    }),
  ),
);

export const utf8SectionCases: CaseDef[] = [...basicCases, ...sequenceCases];
