/**
 * Port of Racket's client.rkt. For each protocol variant: connect to
 * ws://localhost:8081/test?foo=bar, send "Hello from Node WS client, protocol variant <v>",
 * print 5 messages, send "goodbye", print one more message, then close.
 * Against test-server or test-service-mapper the messages are `You said: "…"`, four times
 * "Waited another second", then "Goodbye!". hybi-00 close frames carry no status, so its run
 * ends with "Closed: 1005".
 *
 *   npm run example:client -- [--url ws://localhost:8081/test?foo=bar]
 */
import { commandLine } from './lib/stdin.js';
import { connect, EOF, type WebSocketConnection } from 'rfc6455';

const { values } = commandLine({
  options: { url: { type: 'string', default: 'ws://localhost:8081/test?foo=bar' } },
});
const url = values.url;

type Variant = 'rfc6455' | 'hybi00';

/** Opens a connection with the given protocol variant (Racket's `ws-connect #:protocol`). */
function open(variant: Variant): Promise<WebSocketConnection> {
  return connect(url, { variant });
}

/** The variants to run, in Racket's order. */
const VARIANTS: readonly Variant[] = ['rfc6455', 'hybi00'];

async function printOne(conn: WebSocketConnection): Promise<void> {
  const message = await conn.recv();
  if (message === EOF) throw new Error(`connection closed early: ${conn.closeStatus} ${conn.closeReason ?? ''}`);
  console.log(`Got message: ${String(message)}`);
}

for (const variant of VARIANTS) {
  console.log(`Connecting to ${url} with protocol variant ${variant}`);
  const conn = await open(variant);
  await conn.send(`Hello from Node WS client, protocol variant ${variant}`);
  for (let i = 0; i < 5; i++) await printOne(conn);
  await conn.send('goodbye');
  await printOne(conn);
  await conn.close();
  console.log(`Closed: ${conn.closeStatus} ${conn.closeReason ?? ''}`.trimEnd());
}
