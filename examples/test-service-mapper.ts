/**
 * Port of Racket's test-service-mapper.rkt: the same service as test-server.ts, routed by a
 * service mapper. `/test` with subprotocol `subprotocol` answers "This is the subprotocol
 * handler"; `/test` without a subprotocol runs the test-server loop; other paths get 404 and
 * other subprotocols 400 (routes in lib/routes.ts).
 *
 *   npm run example:test-service-mapper -- [--port 8081] [--host 127.0.0.1] [--timeout SECONDS]
 */
import { serve } from 'rfc6455';
import { testServiceMapper } from './lib/routes.js';
import { stopOnEnter, testServerOptions } from './lib/stdin.js';

const server = await serve(testServerOptions(), testServiceMapper((line) => console.log(line)));
console.log(`Listening on ${server.url}test`);
stopOnEnter(server);
