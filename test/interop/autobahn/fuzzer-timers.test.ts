/**
 * The fuzzer's own fallback timers must not fail a correct peer because the event loop was held:
 * when a turn of the loop takes longer than a timer (a loaded CI machine, a long collection),
 * Node runs the expired timer before it reads the sockets, where the reply the timer waits for may
 * already be. The loop is held here on purpose, past the closing-handshake timeout, right after the
 * fuzzer's close frame goes out; our server's reply is then on its way, and the case must still
 * come out clean. (Before the fuzzer judged its timers after a few turns with their polls, this
 * case came out UNCLEAN: "peer did not respond (in time) in closing handshake".)
 */
import type { CaseDef } from './case.js';
import { FALLBACK_SCALE } from './fuzzer.js';
import { expectVerdict, OK } from './harness.js';
import { TLS } from '../../http2/helpers.js';
import { runAgainstClient, runAgainstServer, type ServerRun } from './our-side.js';

/** Holds the event loop for `ms` (no timer or I/O can run meanwhile). */
function holdLoop(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    // busy: the point is that nothing else runs
  }
}

const held: CaseDef = {
  id: 'held.1',
  title: 'our close, then the loop held past the closing-handshake timeout: clean close 1000',
  start(run) {
    run.expect('OK', []);
    run.expectClose({ closedByMe: true, closeCode: [1000], requireClean: true });
    run.peer.sendClose(1000);
    // Past the fuzzer's closing-handshake timeout (1 s × FALLBACK_SCALE), once the close is out.
    setImmediate(holdLoop, 1000 * FALLBACK_SCALE + 500);
  },
};

const runs: Array<[string, () => Promise<ServerRun> | ServerRun]> = [
  ['our server over TCP', () => runAgainstServer('held loop, TCP', [held])],
  ['our server over TLS', () => runAgainstServer('held loop, TLS', [held], { serve: { tls: TLS }, fuzzerTls: { ca: TLS.cert } })],
  // Where it was seen: the fuzzer as a TLS server, our connect('wss://…') as its client.
  ['our client over TLS', () => runAgainstClient('held loop, TLS client', [held], undefined, { tls: TLS, connect: { tls: { ca: TLS.cert } } })],
];

test.each(runs)('a fallback timer that expired while the loop was held waits for the reply already on its way: %s', async (_, start) => {
  const run = await start();
  try {
    expectVerdict(await run.results.get('held.1')!, OK);
  } finally {
    await run.finish();
  }
}, 30_000);
