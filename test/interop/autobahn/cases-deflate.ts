/**
 * Autobahn sections 12 and 13: permessage-deflate (RFC 7692).
 *
 * WHAT IS SCALED: the number of messages per case, nothing else. Autobahn sends 1000 messages in
 * every case (16 MiB to 128 MiB per case for 8 KiB and up; 10.9 GB in the 216 cases of a role).
 * Here a case sends messageCount(size) = min(250, max(8, ceil(128 KiB / size))) messages:
 * 250 of 16, 64 and 256 bytes, 128 of 1 KiB, 32 of 4 KiB, 16 of 8 KiB, and 8 of 16 KiB to
 * 128 KiB (about 89 MB and 12,000 messages per role, against 10.9 GB and 216,000). Every case keeps
 * Autobahn's offers and answers, message size, auto-fragment size, data set, message type, the
 * cut of each message from the data set (wrapping around at its end), one message at a time, and
 * the grading; every case still sends at least 8 messages, so context takeover from message to
 * message is exercised. Both roles together add about 9 s of wall time on our 2-core machine
 * (a one-off run with Autobahn's 1000 messages in every case took 12 minutes, all OK).
 *
 * Every case negotiates permessage-deflate (the fuzzer as client makes the case's offers; as
 * server it answers the client's offers with the case's acceptor), then sends its messages one
 * at a time, each compressed by the fuzzer with the negotiated parameters, and waits for each
 * echo before sending the next. As Autobahn: an echo of the wrong type, length or content fails
 * the case (and the fuzzer closes with 1000); after the last echo the case is OK and the fuzzer
 * closes with 1000, expecting a clean close; no permessage-deflate agreed is UNIMPLEMENTED.
 * The fuzzer decodes every compressed echo strictly (deflate.ts): a back reference beyond the
 * window the peer agreed to, or into an earlier message when the peer agreed to no context
 * takeover, is a protocol violation and fails the case.
 *
 * 12.1-12.5: the default offer / acceptance with Autobahn's five data sets (corpus.ts).
 * 13.1-13.7: the JSON data set with Autobahn's seven pairs of client offers and server
 * acceptances (Autobahn's PerMessageDeflateOffer / PerMessageDeflateOfferAccept):
 *
 * | case | the fuzzer as client offers (server_no_context_takeover, server_max_window_bits) | the fuzzer as server answers (client_no_context_takeover, client_max_window_bits) |
 * | --- | --- | --- |
 * | 13.1 | (no, –) | (no, –) |
 * | 13.2 | (yes, –) | (yes, –) |
 * | 13.3 | (no, 8) | (no, 8) |
 * | 13.4 | (no, 15) | (no, 15) |
 * | 13.5 | (yes, 8) | (yes, 8) |
 * | 13.6 | (yes, 15) | (yes, 15) |
 * | 13.7 | three offers: (yes, 8), (yes, –), (no, –) | the first of (yes, 8), (yes, –), (no, –) the client's offers allow |
 *
 * Each of Autobahn's client offers also says `client_no_context_takeover; client_max_window_bits`
 * (its PerMessageDeflateOffer always does). Autobahn's acceptors treat every offer as allowing
 * client_no_context_takeover, and one with client_max_window_bits as allowing a window size.
 * The window of 8 is the one in Autobahn's case file (case12_x_x.py); case lists of recent wstest
 * runs show 9 there instead (zlib refuses a raw deflate window of 8 since 1.2.9). 8 is kept: it
 * is the harder case (RFC 7692 allows 8; see deflate.ts for how each side honours it).
 */
import type { CaseDef, CaseRun } from './case.js';
import { CORPORA, type Corpus } from './corpus.js';
import type { DeflateSetup } from './fuzzer.js';
import type { DeflateAcceptor, DeflateAnswer, DeflateOffer } from './wire.js';

const KiB = 1024;
/** Autobahn's 12.x / 13.x "give up" times (60 to 480 s) are capped as in 9.x (× FALLBACK_SCALE). */
const WAIT_CAP_MS = 10_000;

/** Autobahn's message count per case is 1000; scaled (see the top of the file): at most this many… */
const MAX_MESSAGES = 250;
/** …at least this many… */
const MIN_MESSAGES = 8;
/** …and otherwise about this many bytes. */
const BYTES_PER_CASE = 128 * KiB;

/** How many messages a case with messages of `size` bytes sends. */
export function messageCount(size: number): number {
  return Math.min(MAX_MESSAGES, Math.max(MIN_MESSAGES, Math.ceil(BYTES_PER_CASE / size)));
}

/** Autobahn's MSG_SIZES: [payload size, give-up time s, auto-fragment size (0: none)]. */
const MESSAGE_SIZES: ReadonlyArray<readonly [number, number, number]> = [
  [16, 60, 0],
  [64, 60, 0],
  [256, 120, 0],
  [1 * KiB, 240, 0],
  [4 * KiB, 480, 0],
  [8 * KiB, 480, 0],
  [16 * KiB, 480, 0],
  [32 * KiB, 480, 0],
  [64 * KiB, 480, 0],
  [128 * KiB, 480, 0],
  [8 * KiB, 480, 256],
  [16 * KiB, 480, 256],
  [32 * KiB, 480, 256],
  [64 * KiB, 480, 256],
  [128 * KiB, 480, 256],
  [128 * KiB, 480, 1 * KiB],
  [128 * KiB, 480, 4 * KiB],
  [128 * KiB, 480, 32 * KiB],
];

// ---- Offers and acceptances -----------------------------------------------------------------------

/** Autobahn's PerMessageDeflateOffer(requestNoContextTakeover, requestMaxWindowBits). */
const autobahnOffer = (serverNoContextTakeover: boolean, serverMaxWindowBits = 0): DeflateOffer => ({
  clientNoContextTakeover: true,
  clientMaxWindowBits: true,
  serverNoContextTakeover,
  ...(serverMaxWindowBits > 0 ? { serverMaxWindowBits } : {}),
});

/**
 * Autobahn's acceptN: answers the first offer (with client_max_window_bits when a window size is
 * requested), asking the client for `clientNoContextTakeover` and `clientMaxWindowBits`.
 */
const acceptFirst =
  (clientNoContextTakeover: boolean, clientMaxWindowBits?: number): DeflateAcceptor =>
  (offers) => {
    const offer = offers.find((o) => clientMaxWindowBits === undefined || o.clientMaxWindowBits !== undefined);
    if (!offer) return undefined;
    const answer: DeflateAnswer = { offer, clientNoContextTakeover };
    if (clientMaxWindowBits !== undefined) answer.clientMaxWindowBits = clientMaxWindowBits;
    return answer;
  };

const firstOf =
  (...acceptors: DeflateAcceptor[]): DeflateAcceptor =>
  (offers) => {
    for (const accept of acceptors) {
      const answer = accept(offers);
      if (answer) return answer;
    }
    return undefined;
  };

interface Parameters {
  setup: DeflateSetup;
  /** Autobahn's description of the offers / acceptance, for the test title. */
  describe: string;
}

const DEFAULT: Parameters = { setup: { offers: [autobahnOffer(false)], accept: acceptFirst(false) }, describe: 'default offer' };

const PARAMETERS: readonly Parameters[] = [
  { setup: { offers: [autobahnOffer(false)], accept: acceptFirst(false) }, describe: 'offers [(False, 0)] / accept (False, 0)' },
  { setup: { offers: [autobahnOffer(true)], accept: acceptFirst(true) }, describe: 'offers [(True, 0)] / accept (True, 0)' },
  { setup: { offers: [autobahnOffer(false, 8)], accept: acceptFirst(false, 8) }, describe: 'offers [(False, 8)] / accept (False, 8)' },
  { setup: { offers: [autobahnOffer(false, 15)], accept: acceptFirst(false, 15) }, describe: 'offers [(False, 15)] / accept (False, 15)' },
  { setup: { offers: [autobahnOffer(true, 8)], accept: acceptFirst(true, 8) }, describe: 'offers [(True, 8)] / accept (True, 8)' },
  { setup: { offers: [autobahnOffer(true, 15)], accept: acceptFirst(true, 15) }, describe: 'offers [(True, 15)] / accept (True, 15)' },
  {
    setup: {
      offers: [autobahnOffer(true, 8), autobahnOffer(true), autobahnOffer(false)],
      accept: firstOf(acceptFirst(true, 8), acceptFirst(true), acceptFirst(false)),
    },
    describe: 'offers [(True, 8), (True, 0), (False, 0)] / accept the first of them allowed',
  },
];

// ---- The case -------------------------------------------------------------------------------------

const sizeName = (n: number): string => (n >= KiB ? `${n / KiB} KiB` : `${n} B`);

/** Message size of each deflate case, by id (our tests check the peer compressed the large ones). */
export const deflateMessageSize = new Map<string, number>();

function deflateCase(id: string, corpus: Corpus, [size, waitSeconds, fragment]: readonly [number, number, number], params: Parameters): CaseDef {
  const count = messageCount(size);
  deflateMessageSize.set(id, size);
  return {
    id,
    title:
      `${count} ${corpus.binary ? 'binary' : 'text'} messages of ${sizeName(size)} from ${corpus.name}` +
      `${fragment > 0 ? `, auto-fragmented to ${sizeName(fragment)}` : ''}, compressed (${params.describe}), each echoed`,
    deflate: params.setup,
    start(run: CaseRun) {
      const peer = run.peer;
      run.expectClose({ closedByMe: true, closeCode: [1000], requireClean: true });
      if (!peer.deflate) {
        run.behavior = 'UNIMPLEMENTED';
        run.result = 'permessage-deflate was not agreed in the opening handshake.';
        peer.sendClose(1000);
        return;
      }
      peer.autoFragmentSize = fragment;
      run.behavior = 'FAILED';
      run.result = `Case did not finish within ${waitSeconds} s.`;
      peer.closeAfter(Math.min(waitSeconds * 1000, WAIT_CAP_MS));
      const data = corpus.data();
      let offset = 0;
      let sent = 0;
      let expected: Buffer = Buffer.alloc(0);
      let finished = false;
      const sendOne = (): void => {
        // Autobahn's cut: the next `size` bytes of the data set, wrapping around at its end.
        const end = (offset + size) % data.length;
        expected = end > offset ? data.subarray(offset, end) : Buffer.concat([data.subarray(offset), data.subarray(0, end)]);
        offset = end;
        sent++;
        peer.sendMessage(expected, corpus.binary);
      };
      sendOne();
      return {
        message(echo, binary) {
          if (finished) return;
          if (binary !== corpus.binary || echo.length !== size || !echo.equals(expected)) {
            finished = true;
            run.behavior = 'FAILED';
            run.result =
              binary !== corpus.binary
                ? `Echo of message ${sent} is ${binary ? 'binary' : 'text'}, sent as ${corpus.binary ? 'binary' : 'text'}.`
                : echo.length !== size
                  ? `Echo of message ${sent} has ${echo.length} bytes, sent ${size}.`
                  : `Echo of message ${sent} differs from what was sent.`;
            peer.sendClose(1000);
          } else if (sent < count) {
            sendOne();
          } else {
            finished = true;
            run.behavior = 'OK';
            run.result = `Received all ${count} echoed messages.`;
            peer.sendClose(1000);
          }
        },
      };
    },
  };
}

export const deflateSectionCases: CaseDef[] = [
  ...CORPORA.flatMap((corpus, j) => MESSAGE_SIZES.map((spec, i) => deflateCase(`12.${j + 1}.${i + 1}`, corpus, spec, DEFAULT))),
  ...PARAMETERS.flatMap((params, j) => MESSAGE_SIZES.map((spec, i) => deflateCase(`13.${j + 1}.${i + 1}`, CORPORA[0]!, spec, params))),
];
