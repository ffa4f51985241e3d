// WebSocket-Node (`websocket` package) echo server.
import http from 'node:http';
import { createRequire } from 'node:module';
import websocket from 'websocket';
import { portArg, HOST, MAX_PAYLOAD, ready } from './common.mjs';

const port = portArg();
const server = http.createServer((req, res) => { res.writeHead(426); res.end(); });
const wss = new websocket.server({
  httpServer: server,
  autoAcceptConnections: true,
  maxReceivedFrameSize: MAX_PAYLOAD,
  maxReceivedMessageSize: MAX_PAYLOAD,
  fragmentOutgoingMessages: false,
  disableNagleAlgorithm: true,
});
wss.on('connect', (conn) => {
  conn.on('message', (m) => {
    if (m.type === 'utf8') conn.sendUTF(m.utf8Data);
    else conn.sendBytes(m.binaryData);
  });
  conn.on('error', () => {});
});
// WebSocket-Node hard-depends on bufferutil and utf-8-validate; say whether their native addons load.
const require = createRequire(import.meta.url);
const nativeOf = (name) => {
  try {
    const mod = require(require.resolve(name, { paths: [require.resolve('websocket')] }));
    const fn = typeof mod === 'function' ? mod : Object.values(mod)[0];
    return /native code/.test(String(fn)) ? 'native' : 'JS fallback';
  } catch { return 'missing'; }
};
server.listen(port, HOST, () => ready(`bufferutil=${nativeOf('bufferutil')} utf-8-validate=${nativeOf('utf-8-validate')}`));
