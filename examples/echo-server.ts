/**
 * Echo server for conformance runs and benchmarks: echoes every message as received (text as
 * text, binary as binary), on any path, with every optional protocol feature enabled
 * (permessage-deflate). It does nothing else.
 *
 *   npm run example:echo -- --port 9001 [--host 127.0.0.1] [--max-message-size BYTES]
 */
import { commandLine, countOption, portOption } from './lib/stdin.js';
import { serve } from 'rfc6455';

const { values } = commandLine({
  options: {
    port: { type: 'string', default: '9001' },
    host: { type: 'string', default: '127.0.0.1' },
    'max-message-size': { type: 'string' },
  },
});

const server = await serve(
  {
    port: portOption(values.port, 9001),
    host: values.host,
    perMessageDeflate: true,
    ...(values['max-message-size'] !== undefined ? { maxMessageSize: countOption('max-message-size', values['max-message-size'], 1) } : {}),
  },
  (conn) => {
    // Each message is echoed as it is parsed, before the next frame of the same read: a message
    // followed in one TCP write by a frame that fails the connection is still echoed (Autobahn
    // grades the echo lost to a `for await` loop, which runs after the read, NON-STRICT).
    conn.on('message', (message) => conn.send(message));
  },
);
console.log(`listening on ${server.url}`);

const stop = (): void => {
  server.close().then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
