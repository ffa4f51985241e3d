// Our server: rfc6455's serve() echo, from the built package (run `npm run build` first).
import { portArg, HOST, MAX_PAYLOAD, DEFLATE, ready } from './common.mjs';

const port = portArg();
const { serve } = await import('../../packages/rfc6455/dist/index.js');
const server = await serve({ port, host: HOST, maxMessageSize: MAX_PAYLOAD, perMessageDeflate: DEFLATE }, async (conn) => {
  for await (const m of conn) conn.send(m);
});
void server;
ready();
