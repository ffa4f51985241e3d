/**
 * The connection loop of Racket's test-server.rkt, shared by test-server.ts, test-service-mapper.ts
 * and demo.ts.
 *
 * Each round waits at most one second for a message:
 * - no message within the second: send "Waited another second";
 * - "goodbye": send "Goodbye!" and stop;
 * - anything else: send `You said: "…"` (the message quoted, like Racket's `~v`).
 * The loop also stops when the peer closes (EOF). It then closes with 1000.
 * Binary messages are read as UTF-8 text, as Racket's `#:payload-type 'text` does.
 */
import { EOF, type Message, type WebSocketConnection } from 'rfc6455';

/** Racket's `(format "~v" s)` for a string: double quotes, backslash escapes. */
export function racketQuote(text: string): string {
  return JSON.stringify(text);
}

export async function testLoop(conn: WebSocketConnection, log: (line: string) => void = () => {}): Promise<void> {
  try {
    for (;;) {
      // Racket's (sync/timeout 1 (ws-recv-evt c)): a receive given up after a second takes no
      // message, the next round's gets it.
      let next: Message | typeof EOF;
      try {
        next = await conn.recv({ signal: AbortSignal.timeout(1000) });
      } catch (error) {
        if ((error as Error).name !== 'TimeoutError') throw error;
        await conn.send('Waited another second');
        continue;
      }
      if (next === EOF) break;
      const text = typeof next === 'string' ? next : next.toString('utf8');
      log(`received ${racketQuote(text)}`);
      if (text === 'goodbye') {
        await conn.send('Goodbye!');
        break;
      }
      await conn.send(`You said: ${racketQuote(text)}`);
    }
  } catch {
    // A send failed because the connection closed under us: nothing left to do.
  }
  await conn.close(1000);
  log(`closed ${conn.closeStatus ?? ''} ${conn.closeReason ?? ''}`.trimEnd());
}
