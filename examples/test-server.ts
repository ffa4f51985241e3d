/**
 * Port of Racket's test-server.rkt: any path, and on each connection the loop of lib/test-loop.ts
 * ("Waited another second" every second, `You said: "…"` for each message, "Goodbye!" and a
 * close with 1000 on "goodbye").
 *
 *   npm run example:test-server -- [--port 8081] [--host 127.0.0.1] [--timeout SECONDS]
 *
 * --timeout sets the idle timeout (Racket's ws-idle-timeout), in seconds. --port 0 picks a free
 * port; the real URL is printed. Hit enter (or send SIGINT/SIGTERM) to stop.
 */
import { serve } from 'rfc6455';
import { testLoop } from './lib/test-loop.js';
import { stopOnEnter, testServerOptions } from './lib/stdin.js';

const server = await serve(testServerOptions(), (conn) => testLoop(conn));
console.log(`Listening on ${server.url}`);
stopOnEnter(server);
