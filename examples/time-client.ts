/**
 * Port of Racket's time-client-with-sync.rkt / time-client-with-threads.rkt: connect (default
 * ws://localhost:8081/, e.g. to time-server), send a greeting, print `Got message: …` for each
 * message until the server closes or you enter an empty line (or end stdin), then close.
 *
 *   npm run example:time-client -- [--server ws://localhost:8081/]
 */
import { commandLine } from './lib/stdin.js';
import { connect } from 'rfc6455';
import { readLines } from './lib/stdin.js';

const { values } = commandLine({
  options: { server: { type: 'string', default: 'ws://localhost:8081/' } },
});

const conn = await connect(values.server);
await conn.send('Hello from time-client.ts');
conn.on('message', (data) => console.log(`Got message: ${String(data)}`));

let finished = false;
const finish = async (): Promise<void> => {
  if (finished) return;
  finished = true;
  closeStdin();
  await conn.close();
  console.log(`Closed: ${conn.closeStatus} ${conn.closeReason ?? ''}`.trimEnd());
};
const closeStdin = readLines(
  (line) => {
    if (line === '') void finish();
  },
  () => void finish(),
);
conn.on('close', () => void finish());
