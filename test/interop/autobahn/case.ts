/**
 * One conformance case run on a FuzzPeer, and its grading, as Autobahn|Testsuite grades:
 *
 * - `behavior` compares the ordered list of what the peer sent back (messages, pongs, and the
 *   case's own `timeout` markers) with each expected outcome (`OK`, sometimes `NON-STRICT`); no
 *   match is `FAILED`. Cases may override it (`INFORMATIONAL`, size checks in 9.x, …).
 * - `behaviorClose` grades the end of the connection against `expectedClose`: the wrong side
 *   sent the first close frame → `FAILED`; a required clean close was not clean → `UNCLEAN`; the
 *   peer's close code is not in the list → `WRONG CODE`; we (the fuzzer as client) had to drop
 *   TCP ourselves → `FAILED BY CLIENT`; otherwise `OK`. No opening handshake → `FAILED`.
 * - `closedByWrongEndpointIsFatal` (UTF-8 cases) makes a wrong first closer fail `behavior` too.
 * - As soon as every expected outcome matches and the fuzzer is to close, it sends a close with
 *   the first expected code (unless the case suppresses that).
 *
 * Additions of ours, both stricter than Autobahn: any protocol violation the fuzzer saw in what
 * the peer sent (see wire.ts and fuzzer.ts) makes `behavior` FAILED, whatever the case would
 * otherwise say; so does an opening handshake that never completed.
 */
import type { DeflateSetup, FuzzPeer, PeerEvents } from './fuzzer.js';

export type Behavior = 'OK' | 'NON-STRICT' | 'FAILED' | 'INFORMATIONAL' | 'UNIMPLEMENTED';
export type CloseBehavior = 'OK' | 'FAILED' | 'WRONG CODE' | 'UNCLEAN' | 'FAILED BY CLIENT' | 'INFORMATIONAL';

export type Observed =
  | { kind: 'message'; data: Buffer; binary: boolean }
  | { kind: 'pong'; data: Buffer }
  | { kind: 'timeout'; tag: string };

export const message = (data: Buffer | string, binary = false): Observed => ({ kind: 'message', data: Buffer.from(data), binary });
export const pong = (data: Buffer | string): Observed => ({ kind: 'pong', data: Buffer.from(data) });
export const timeout = (tag: string): Observed => ({ kind: 'timeout', tag });

export interface ExpectedClose {
  closedByMe: boolean;
  closeCode: readonly number[];
  requireClean: boolean;
  closedByWrongEndpointIsFatal?: boolean;
}

/** Hooks a case may return from `start` (they close over the case's own state). */
export interface CaseHooks {
  /** Replaces the default (record the message, then close if every expected outcome matched). */
  message?(data: Buffer, binary: boolean): void;
  /** Adjusts the grade after the common grading. */
  grade?(): void;
  /**
   * A requirement from the case's expectation text that Autobahn does not grade, checked by our
   * tests next to the verdict: returns what is wrong, or undefined.
   */
  extra?(): string | undefined;
}

export interface CaseDef {
  /** Autobahn's case number, e.g. '6.4.1'. */
  id: string;
  /** What the case sends and expects, in a few words. */
  title: string;
  /** Large cases (section 9) are scheduled with less concurrency. */
  heavy?: boolean;
  /**
   * permessage-deflate (sections 12, 13): the offers the fuzzer makes as a client, and how it
   * answers the client's offers as a server. Without it nothing is offered or accepted.
   */
  deflate?: DeflateSetup;
  /** Runs once the connection is open: sets the expectations and sends (Autobahn's onOpen). */
  start(run: CaseRun): CaseHooks | void;
}

export interface CaseResult {
  id: string;
  /** The fuzzer's role: `client` tests our server, `server` tests our client. */
  role: 'client' | 'server';
  behavior: Behavior;
  behaviorClose: CloseBehavior;
  result: string;
  resultClose: string;
  extraFailure: string | undefined;
  received: Observed[];
  expected: Map<Behavior, Observed[]>;
  expectedClose: ExpectedClose;
  /** Undefined when no connection could be made at all. */
  peer: FuzzPeer | undefined;
  durationMs: number;
}

const sameObserved = (a: Observed, b: Observed): boolean => {
  if (a.kind !== b.kind) return false;
  if (a.kind === 'timeout') return a.tag === (b as typeof a).tag;
  if (a.kind === 'message' && a.binary !== (b as typeof a).binary) return false;
  return a.data.equals((b as { data: Buffer }).data);
};

const sameList = (a: readonly Observed[], b: readonly Observed[]): boolean => a.length === b.length && a.every((x, i) => sameObserved(x, b[i]!));

export class CaseRun {
  readonly def: CaseDef;
  readonly received: Observed[] = [];
  readonly expected = new Map<Behavior, Observed[]>();
  expectedClose: ExpectedClose = { closedByMe: true, closeCode: [1000], requireClean: true };
  behavior: Behavior = 'FAILED';
  behaviorClose: CloseBehavior = 'FAILED';
  result = 'Actual events differ from any expected.';
  resultClose = 'TCP connection was dropped without close handshake';
  /** The case sends its own close frames: do not close when the expected outcome is reached. */
  suppressClose = false;
  /** A bug in the case itself (it threw): the case fails. */
  caseError: string | undefined;
  private hooks: CaseHooks = {};
  private peerRef: FuzzPeer | undefined;

  constructor(def: CaseDef) {
    this.def = def;
  }

  get peer(): FuzzPeer {
    if (!this.peerRef) throw new Error('no peer yet');
    return this.peerRef;
  }

  attach(peer: FuzzPeer): void {
    this.peerRef = peer;
  }

  expect(behavior: Behavior, events: Observed[]): void {
    this.expected.set(behavior, events);
  }

  expectClose(close: ExpectedClose): void {
    this.expectedClose = close;
  }

  /** Appends an observation (case code records its own `timeout` markers with this). */
  record(event: Observed): void {
    this.received.push(event);
  }

  readonly events: PeerEvents = {
    open: () =>
      this.guard(() => {
        this.hooks = this.def.start(this) ?? {};
      }),
    message: (data, binary) =>
      this.guard(() => {
        if (this.hooks.message) this.hooks.message(data, binary);
        else {
          this.record({ kind: 'message', data, binary });
          this.finishWhenDone();
        }
      }),
    pong: (data) =>
      this.guard(() => {
        this.record({ kind: 'pong', data });
        this.finishWhenDone();
      }),
  };

  /** Case code that throws is a bug in the case: it fails the case (never the test process). */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.caseError ??= `the case threw: ${(error as Error).stack ?? String(error)}`;
      this.peer.failConnection('the case threw');
    }
  }

  /** Closes once what was received matches every expected outcome (and the fuzzer is to close). */
  finishWhenDone(): void {
    for (const events of this.expected.values()) if (!sameList(this.received, events)) return;
    if (this.expectedClose.closedByMe && !this.suppressClose) this.peer.sendClose(this.expectedClose.closeCode[0]);
  }

  /** The common grading at the end of the connection. */
  private gradeCommon(): void {
    const p = this.peer;
    for (const [behavior, events] of this.expected) {
      if (sameList(this.received, events)) {
        this.behavior = behavior;
        this.result = 'Actual events match at least one expected.';
        break;
      }
    }
    if (!p.connectionWasOpen) {
      this.behaviorClose = 'FAILED';
      this.resultClose = `The WebSocket opening handshake was never completed (${p.handshakeError ?? 'no handshake'})`;
      return;
    }
    const ec = this.expectedClose;
    if (ec.closedByMe !== p.closedByMe) {
      this.behaviorClose = 'FAILED';
      this.resultClose = 'The connection was failed by the wrong endpoint';
    } else if (ec.requireClean && !p.wasClean) {
      this.behaviorClose = 'UNCLEAN';
      this.resultClose = `The spec requires the connection to be failed cleanly here (${p.wasNotCleanReason ?? 'not clean'})`;
    } else if (p.remoteCloseCode !== undefined && !ec.closeCode.includes(p.remoteCloseCode)) {
      this.behaviorClose = 'WRONG CODE';
      this.resultClose = `The close code should have been ${ec.closeCode.join(',')} or empty`;
    } else if (!p.isServer && p.droppedByMe) {
      this.behaviorClose = 'FAILED BY CLIENT';
      this.resultClose = 'It is preferred that the server close the TCP connection';
    } else {
      this.behaviorClose = 'OK';
      this.resultClose = 'Connection was properly closed';
    }
    if (ec.closedByWrongEndpointIsFatal && ec.closedByMe !== p.closedByMe) this.behavior = 'FAILED';
  }

  grade(): { extraFailure: string | undefined } {
    this.gradeCommon();
    if (this.peer.connectionWasOpen) this.hooks.grade?.();
    else this.behavior = 'FAILED';
    if (this.caseError) {
      this.behavior = 'FAILED';
      this.result = this.caseError;
    }
    if (this.peer.violations.length > 0) {
      this.behavior = 'FAILED';
      this.result = `The peer violated the protocol: ${this.peer.violations.join('; ')}`;
    }
    return { extraFailure: this.peer.connectionWasOpen ? this.hooks.extra?.() : undefined };
  }
}

/** A case that has not ended after this long is dropped and graded as it stands. */
const CASE_GUARD_MS = 60_000;

/**
 * Runs `def` on the peer made by `open` (which must attach the events it is given) and grades it
 * once the TCP connection is gone.
 */
export async function runCase(
  def: CaseDef,
  role: 'client' | 'server',
  open: (events: PeerEvents) => Promise<FuzzPeer>,
): Promise<CaseResult> {
  const started = Date.now();
  const run = new CaseRun(def);
  let peer: FuzzPeer;
  try {
    peer = await open(run.events);
  } catch (error) {
    return {
      id: def.id,
      role,
      behavior: 'FAILED',
      behaviorClose: 'FAILED',
      result: `No connection: ${(error as Error).message}`,
      resultClose: 'No connection',
      extraFailure: undefined,
      received: [],
      expected: run.expected,
      expectedClose: run.expectedClose,
      peer: undefined,
      durationMs: Date.now() - started,
    };
  }
  run.attach(peer);
  const guard = setTimeout(() => peer.failConnection('the case did not end'), CASE_GUARD_MS);
  await peer.finished;
  clearTimeout(guard);
  const { extraFailure } = run.grade();
  return {
    id: def.id,
    role,
    behavior: run.behavior,
    behaviorClose: run.behaviorClose,
    result: run.result,
    resultClose: run.resultClose,
    extraFailure,
    received: run.received,
    expected: run.expected,
    expectedClose: run.expectedClose,
    peer,
    durationMs: Date.now() - started,
  };
}
