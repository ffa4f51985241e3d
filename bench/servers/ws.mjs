// ws 8 echo server. The runner starts it twice: with WS_NO_BUFFER_UTIL=1 (pure JS, the "ws" entry)
// and without it ("ws+bufferutil"). The ready line says which masking code ws really loaded.
import { createRequire } from 'node:module';
import { WebSocketServer } from 'ws';
import { portArg, HOST, MAX_PAYLOAD, DEFLATE, ready } from './common.mjs';

const require = createRequire(import.meta.url);
const port = portArg();

let bufferutil = 'off (WS_NO_BUFFER_UTIL=1, pure JS)';
if (!process.env.WS_NO_BUFFER_UTIL) {
  try {
    const bu = require('bufferutil');
    const fallback = require('bufferutil/fallback');
    bufferutil = bu.mask === fallback.mask ? 'JS fallback (native addon did not load)' : 'native addon';
  } catch (e) {
    bufferutil = `not installed (${e.code ?? e.message})`;
  }
}

const wss = new WebSocketServer({ host: HOST, port, maxPayload: MAX_PAYLOAD, perMessageDeflate: DEFLATE, clientTracking: false });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => ready(`bufferutil=${JSON.stringify(bufferutil)}${DEFLATE ? ' deflate=ws defaults (threshold 1024 B)' : ''}`));
