/**
 * An `error` listener that throws where no call of the application is on the stack (a frame
 * received, a compression finished): the exception is the application's (an uncaughtException),
 * but the library's own state is first what it would have been. Run in a child process
 * (children/throwing-error-listener.ts), where the exception cannot fail Jest's test.
 */
import { resolve } from 'node:path';
import { spawnNode } from '../examples/helpers.js';

async function run(mode: string): Promise<string[]> {
  const child = spawnNode([resolve(__dirname, 'children/throwing-error-listener.ts'), mode]);
  expect(await child.exited).toBe(0);
  return child.stdout().trim().split('\n');
}

describe("an 'error' listener that throws", () => {
  test.each([
    ['RFC 6455', 'fail-rfc6455', 'close frame: 1007'],
    ['hybi-00', 'fail-hybi00', 'closing frame: ff00'],
  ])('%s: a protocol failure still sends the close frame, ends TCP and aborts at closeTimeout', async (_name, mode, frame) => {
    // Before: the exception skipped the transport's end and the close timer; a peer that kept its
    // side open held the connection (still in server.connections, no close event) for good.
    expect(await run(mode)).toEqual(['error event: WS_INVALID_UTF8', frame, 'peer got FIN', 'close event: 1007', 'open connections: 0', 'uncaught: listener threw on 0']);
  }, 10_000);

  test('a message inflated in the thread pool that fails (1007): the peer\'s answer and its close are still read (reading stayed paused: the connection ended only at closeTimeout)', async () => {
    // Before: the exception left the inflation's callback before it let reading resume, so the
    // socket stayed paused: the peer's close frame and FIN were never read.
    expect(await run('fail-inflated')).toEqual(['error event: WS_INVALID_UTF8', 'peer closed: 1007', 'close event: 1007', 'open connections: 0', 'uncaught: listener threw on 0']);
  }, 10_000);

  test('a shared compression crossing maxBufferedAmount on one connection is still sent to the others', async () => {
    // Before: the loop over the connections waiting for it stopped at the one whose listener
    // threw; the other never sent the message, and its send() behind it never settled.
    expect(await run('shared')).toEqual([
      'broadcast to 2 (1 compression)',
      'error event: WS_SEND_BUFFER_FULL',
      'send behind it settled',
      expect.stringMatching(/^reader got \d{7}, 8$/),
      'uncaught: listener threw on the stalled one',
    ]);
  }, 10_000);

  test("a client whose message listener throws, and then its error listener, parses on: close 1011, not a bogus 1002", async () => {
    // Before: the second exception left the parser in the middle of the read; the next read was
    // parsed from inside the large message, and the client failed with 1002 "RSV2 and RSV3 must
    // be clear", emitting it as a second error.
    expect(await run('client')).toEqual([
      'client error event: message listener threw',
      'client got 5, 200000; closed 1011, server saw 1011',
      'uncaught: client error listener threw',
    ]);
  }, 10_000);

  test('an HTTP/2 WebSocket whose stream fails (the peer reset its TCP connection) still closes', async () => {
    // Before: Node emits a destroyed stream's 'close' from the callback that emitted its 'error',
    // which the exception left: no close event, the connection stayed in server.connections for
    // good, and server.close() never resolved.
    expect(await run('http2-reset')).toEqual(['over http2', 'error event: ECONNRESET', 'close event: 1006', 'server closed; open connections: 0', 'uncaught: listener threw on 0']);
  }, 10_000);

  test('a broadcast() message queued behind a sendStream() that crosses maxBufferedAmount when its turn comes: the exception is uncaught, as after a compression (it vanished in the promise of a send() nobody held)', async () => {
    expect(await run('behind-stream')).toEqual(['broadcast to 1', 'error event: WS_SEND_BUFFER_FULL', 'closed 1008', 'uncaught: listener threw on 0']);
  }, 10_000);

  test('a send() whose compressed message crosses maxBufferedAmount settles', async () => {
    // Before: the frame, off the queue, was never reported written: the promise never settled.
    expect(await run('queued')).toEqual(['error event: WS_SEND_BUFFER_FULL', 'send resolved', 'closed 1008', 'uncaught: listener threw on the stalled one']);
  }, 10_000);
});
