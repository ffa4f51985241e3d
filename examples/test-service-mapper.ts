/**
 * Port of Racket's test-service-mapper.rkt: the same service as test-server.ts, routed by a
 * service mapper. `/test` with subprotocol `subprotocol` answers "This is the subprotocol
 * handler"; `/test` without a subprotocol runs the test-server loop; other paths get 404 and
 * other subprotocols 400 (routes in lib/routes.ts).
 *
 *   npm run example:test-service-mapper -- [--port 8081] [--host 127.0.0.1] [--timeout SECONDS]
 */
import { parseArgs } from 'node:util';
import { serve } from 'rfc6455';
import { testServiceMapper } from './lib/routes.js';
import { portOption, stopOnEnter } from './lib/stdin.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '8081' },
    host: { type: 'string', default: '127.0.0.1' },
    timeout: { type: 'string' },
  },
});

const server = await serve(
  {
    port: portOption(values.port, 8081),
    host: values.host,
    ...(values.timeout !== undefined ? { idleTimeout: Number(values.timeout) * 1000 } : {}),
  },
  testServiceMapper((line) => console.log(line)),
);
console.log(`Listening on ${server.url}test`);
stopOnEnter(server);
