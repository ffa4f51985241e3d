// WebSocket-Node (`websocket` package) echo server.
import http from 'node:http';
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
server.listen(port, HOST, () => ready());
