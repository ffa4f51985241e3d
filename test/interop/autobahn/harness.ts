/**
 * What both test files share: the case list, the scheduler that runs cases concurrently (each on
 * its own connection), the expected verdicts, and the failure report.
 */
import { closeSectionCases } from './cases-close.js';
import { deflateMessageSize } from './cases-deflate.js';
import { framingSectionCases } from './cases-framing.js';
import { limitsSectionCases, miscSectionCases } from './cases-limits.js';
import { utf8SectionCases } from './cases-utf8.js';
import type { Behavior, CaseDef, CaseResult, CloseBehavior, Observed } from './case.js';

export const allCases: CaseDef[] = [...framingSectionCases, ...utf8SectionCases, ...closeSectionCases, ...limitsSectionCases, ...miscSectionCases];

/** Light cases running at once (they mostly wait on timers); heavy (9.x) cases run one at a time. */
const LIGHT_CONCURRENCY = 32;
const HEAVY_CONCURRENCY = 1;

/** Deflate cases (12.x, 13.x) running at once: they are CPU-bound round trips. */
export const DEFLATE_CONCURRENCY = { light: 8, heavy: 1 };

/** A test waits at most this long for its case (the scheduler may still be busy with others). */
export const CASE_TEST_TIMEOUT = 120_000;

/**
 * Starts every case now, in order, with at most `limits.light` (LIGHT_CONCURRENCY) light and
 * `limits.heavy` (HEAVY_CONCURRENCY) heavy cases in flight, and returns each case's result promise
 * by id (they never reject).
 */
export function scheduleAll(
  cases: CaseDef[],
  runOne: (def: CaseDef) => Promise<CaseResult>,
  limits: { light: number; heavy: number } = { light: LIGHT_CONCURRENCY, heavy: HEAVY_CONCURRENCY },
): Map<string, Promise<CaseResult>> {
  const results = new Map<string, Promise<CaseResult>>();
  const lane = (queue: CaseDef[], limit: number): void => {
    const resolvers = new Map<string, (r: CaseResult) => void>();
    for (const def of queue) results.set(def.id, new Promise((resolve) => resolvers.set(def.id, resolve)));
    let next = 0;
    const startNext = (): void => {
      const def = queue[next++];
      if (!def) return;
      void runOne(def).then((r) => {
        resolvers.get(def.id)!(r);
        startNext();
      });
    };
    for (let i = 0; i < limit; i++) startNext();
  };
  lane(cases.filter((c) => !c.heavy), limits.light);
  lane(cases.filter((c) => c.heavy), limits.heavy);
  return results;
}

export interface Verdict {
  behavior: Behavior;
  behaviorClose: CloseBehavior;
}

export const OK: Verdict = { behavior: 'OK', behaviorClose: 'OK' };

/** Autobahn grades 7.1.6 and 7.13.x INFORMATIONAL whatever happens (the spec leaves them open). */
const AUTOBAHN_INFORMATIONAL = new Set(['7.1.6', '7.13.1', '7.13.2']);

/**
 * NON-STRICT, which RFC 6455 permits: only for an application that takes messages later than
 * they are parsed. These cases write a valid text message and, in the same TCP write, a frame
 * that fails the connection (RSV bits, a reserved opcode, a stray continuation), then a ping. A
 * `message` listener echoes the text as it is parsed, before the bad frame is read: OK. A
 * `for await` loop is handed the message only after the whole read was parsed, so the connection
 * has failed by then: its close frame (1002) is out, nothing may follow it (RFC 6455 §5.5.1,
 * §7.1.7), and the echo is refused; Autobahn grades "close without the echo" NON-STRICT.
 */
const ECHO_LOST_TO_FAILURE = new Set(['3.2', '4.1.3', '4.1.4', '4.2.3', '4.2.4', '5.15']);

/**
 * The verdict each case must get; `lateEcho`: the application is handed each message after the
 * read it came in was parsed (see ECHO_LOST_TO_FAILURE).
 */
export function expectedVerdict(id: string, lateEcho = false): Verdict {
  if (AUTOBAHN_INFORMATIONAL.has(id)) return { behavior: 'INFORMATIONAL', behaviorClose: 'INFORMATIONAL' };
  if (lateEcho && ECHO_LOST_TO_FAILURE.has(id)) return { behavior: 'NON-STRICT', behaviorClose: 'OK' };
  return OK;
}

const show = (e: Observed): string => {
  if (e.kind === 'timeout') return `timeout ${e.tag}`;
  const text = e.data.length > 40 ? `${e.data.subarray(0, 40).toString('hex')}… (${e.data.length} bytes)` : e.data.toString('hex');
  return `${e.kind === 'message' ? `message ${e.binary ? 'binary' : 'text'}` : 'pong'} ${text}`;
};

/** Everything needed to see why a case got its verdict. */
export function explain(r: CaseResult): string {
  const p = r.peer;
  const lines = [
    `case ${r.id} (fuzzer as ${r.role}): ${r.behavior} / ${r.behaviorClose} in ${r.durationMs} ms`,
    `  result: ${r.result}`,
    `  close: ${r.resultClose}`,
    `  received: [${r.received.map(show).join(', ')}]`,
    ...[...r.expected].map(([b, events]) => `  expected ${b}: [${events.map(show).join(', ')}]`),
    `  expected close: ${JSON.stringify(r.expectedClose)}`,
  ];
  if (r.extraFailure) lines.push(`  extra requirement: ${r.extraFailure}`);
  if (p) {
    lines.push(
      `  closedByMe=${p.closedByMe} failedByMe=${p.failedByMe} droppedByMe=${p.droppedByMe} wasClean=${p.wasClean}` +
        ` (${p.wasNotCleanReason ?? ''}) remoteCloseCode=${p.remoteCloseCode} remoteCloseReason=${JSON.stringify(p.remoteCloseReason)}` +
        ` peerDroppedWithoutClose=${p.peerDroppedWithoutClose}`,
      `  violations: ${p.violations.join('; ') || 'none'}`,
      `  timeline: ${p.timeline.slice(0, 80).join(' | ')}`,
    );
  }
  return lines.join('\n');
}

/** Fails with the full explanation unless the verdict is exactly `expected` and no extra requirement failed. */
export function expectVerdict(r: CaseResult, expected: Verdict): void {
  const got: Verdict = { behavior: r.behavior, behaviorClose: r.behaviorClose };
  if (got.behavior !== expected.behavior || got.behaviorClose !== expected.behaviorClose || r.extraFailure) {
    throw new Error(`expected ${expected.behavior} / ${expected.behaviorClose}\n${explain(r)}`);
  }
  expect(got).toEqual(expected);
  expect(r.extraFailure).toBeUndefined();
}

/** With AUTOBAHN_REPORT=1: a tally and the cases not OK, for humans (AUTOBAHN_REPORT=all: every case). */
export function report(role: string, results: CaseResult[]): void {
  if (!process.env.AUTOBAHN_REPORT) return;
  const tally = new Map<string, number>();
  for (const r of results) tally.set(`${r.behavior}/${r.behaviorClose}`, (tally.get(`${r.behavior}/${r.behaviorClose}`) ?? 0) + 1);
  const all = process.env.AUTOBAHN_REPORT === 'all';
  const notOk = results.filter((r) => all || r.behavior !== 'OK' || r.behaviorClose !== 'OK' || r.extraFailure);
  const slow = [...results].sort((a, b) => b.durationMs - a.durationMs).slice(0, 8);
  console.log(
    [
      `Autobahn-style run, ${role}: ${results.length} cases`,
      ...[...tally].map(([k, n]) => `  ${k}: ${n}`),
      all ? 'all cases:' : 'not OK:',
      ...notOk.map((r) => explain(r)),
      `slowest: ${slow.map((r) => `${r.id} ${r.durationMs} ms`).join(', ')}`,
    ].join('\n'),
  );
}

/**
 * Our server and client compress every message of at least this many bytes (the default
 * `threshold` of permessage-deflate, docs/compression.md) and send smaller ones uncompressed, as
 * RFC 7692 allows. The deflate tests check that every echo of a case with messages this large came
 * compressed, so that the cases exercise our compressor with each set of negotiated parameters
 * (Autobahn does not look at how the echo was sent).
 */
export const OUR_DEFLATE_THRESHOLD = 1024;

/** With messages of `size` bytes, every echo must have come compressed when size ≥ OUR_DEFLATE_THRESHOLD. */
export function expectEchoesCompressed(r: CaseResult, size: number): void {
  if (size < OUR_DEFLATE_THRESHOLD || !r.peer) return;
  const { plain, compressed } = r.peer.rxMessageCounts;
  if (plain > 0 || compressed === 0) {
    throw new Error(`expected every echo of ${size} bytes compressed, got ${compressed} compressed and ${plain} not\n${explain(r)}`);
  }
}

/** A 12.x/13.x case: OK / OK, and the echoes of its large messages came compressed. */
export function expectDeflateCase(def: CaseDef, r: CaseResult): void {
  expectVerdict(r, OK);
  expectEchoesCompressed(r, deflateMessageSize.get(def.id)!);
}
