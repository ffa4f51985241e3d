/**
 * Port of Racket's time-server.rkt: on any path, sends the current time (ms since the epoch) every
 * second on a fixed schedule (each deadline is the previous one plus 1000 ms, so it does not
 * drift). Incoming messages are logged and ignored; connects and closes are logged with an id.
 *
 *   npm run example:time-server -- [--port 8081] [--host 127.0.0.1]
 */
import { commandLine } from './lib/stdin.js';
import { serve } from 'rfc6455';
import { portOption } from './lib/stdin.js';

const { values } = commandLine({
  options: {
    port: { type: 'string', default: '8081' },
    host: { type: 'string', default: '127.0.0.1' },
  },
});

let counter = 0;
const server = await serve({ port: portOption(values.port, 8081), host: values.host }, (conn) => {
  const id = ++counter;
  console.log(`[${id}] connected: ${conn.url}`);
  conn.on('message', (data) => console.log(`[${id}] ignoring message: ${JSON.stringify(String(data))}`));
  let deadline = Date.now() + 1000;
  let timer: NodeJS.Timeout | undefined;
  const tick = (): void => {
    conn.send(String(deadline)).catch(() => undefined);
    deadline += 1000;
    timer = setTimeout(tick, Math.max(0, deadline - Date.now()));
  };
  timer = setTimeout(tick, Math.max(0, deadline - Date.now()));
  conn.on('close', (code, reason) => {
    clearTimeout(timer);
    console.log(`[${id}] closed: ${code} ${reason}`.trimEnd());
  });
});
console.log(`Listening on ${server.url}`);

const stop = (): void => {
  server.close().then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
