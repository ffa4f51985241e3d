// Our server: rfc6455's serve() echo, from the built package (run `npm run build` first).
// serve() tunes glibc's malloc by default (tuneAllocator); RFC6455_TUNE_ALLOCATOR=0 (the runner's
// `rfc6455-untuned`) passes tuneAllocator: false.
import { portArg, HOST, MAX_PAYLOAD, DEFLATE, ready } from './common.mjs';

const port = portArg();
const { serve } = await import('../../packages/rfc6455/dist/index.js');
const tuneAllocator = process.env.RFC6455_TUNE_ALLOCATOR !== '0';
// The event style, like the ws server beside it (`for await (const m of conn)` works too; it
// costs an async frame per connection: about 0.5 KiB idle, and a promise per message).
const server = await serve({ port, host: HOST, maxMessageSize: MAX_PAYLOAD, perMessageDeflate: DEFLATE, tuneAllocator }, (conn) => {
  conn.on('message', (m) => {
    conn.send(m);
  });
});
void server;
ready(`tuneAllocator=${tuneAllocator}`);
