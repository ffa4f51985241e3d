// Our server: rfc6455's serve() echo, from the built package (run `npm run build` first).
// RFC6455_TUNE_ALLOCATOR=1 (the runner's `rfc6455+tuned`) calls tuneAllocator() first.
import { portArg, HOST, MAX_PAYLOAD, DEFLATE, ready } from './common.mjs';

const port = portArg();
const { serve, tuneAllocator } = await import('../../packages/rfc6455/dist/index.js');
const tuning = process.env.RFC6455_TUNE_ALLOCATOR === '1' ? tuneAllocator() : undefined;
// The event style, like the ws server beside it (`for await (const m of conn)` works too; it
// costs an async frame per connection: about 0.5 KiB idle, and a promise per message).
const server = await serve({ port, host: HOST, maxMessageSize: MAX_PAYLOAD, perMessageDeflate: DEFLATE }, (conn) => {
  conn.on('message', (m) => {
    conn.send(m);
  });
});
void server;
ready(tuning ? `tuneAllocator=${JSON.stringify(tuning)}` : undefined);
