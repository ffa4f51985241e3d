/**
 * Port of Racket's cat.rkt: sends each line of stdin as a text message and prints each message
 * received. Stops when either side ends (stdin EOF or the server closes), then closes with the
 * given status and reason.
 *
 *   npm run example:cat -- [--server ws://localhost:8081/] [--status 1000] [--reason TEXT]
 */
import { commandLine } from './lib/stdin.js';
import { connect } from 'rfc6455';
import { readLines } from './lib/stdin.js';

const { values } = commandLine({
  options: {
    server: { type: 'string', default: 'ws://localhost:8081/' },
    status: { type: 'string', default: '1000' },
    reason: { type: 'string', default: '' },
  },
});

const conn = await connect(values.server);
conn.on('message', (data) => {
  process.stdout.write(`${String(data)}\n`);
});

// Lines are sent in order; the close waits for every send before it.
let sending: Promise<void> = Promise.resolve();
let finished = false;
const finish = async (): Promise<void> => {
  if (finished) return;
  finished = true;
  closeStdin();
  await sending.catch(() => undefined);
  await conn.close(Number(values.status), values.reason).catch((error: Error) => {
    console.error(`close failed: ${error.message}`);
    process.exitCode = 2;
    conn.terminate();
  });
};
const closeStdin = readLines(
  (line) => {
    sending = sending.then(() => conn.send(line));
  },
  () => void finish(),
);
conn.on('close', () => void finish());
