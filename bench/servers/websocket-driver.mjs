// websocket-driver echo server over a plain http.Server 'upgrade' event.
import http from 'node:http';
import driverPkg from 'websocket-driver';
import { portArg, HOST, MAX_PAYLOAD, ready } from './common.mjs';

const port = portArg();
const server = http.createServer((req, res) => { res.writeHead(426); res.end(); });
server.on('upgrade', (request, socket, body) => {
  if (!driverPkg.isWebSocket(request)) return socket.destroy();
  const driver = driverPkg.http(request, { maxLength: MAX_PAYLOAD }); // no extensions registered: no deflate
  driver.io.write(body);
  socket.pipe(driver.io).pipe(socket);
  driver.messages.on('data', (message) => {
    if (typeof message === 'string') driver.text(message);
    else driver.binary(message);
  });
  socket.on('error', () => {});
  driver.on('error', () => {});
  driver.on('close', () => socket.end()); // as faye-websocket does: the driver leaves TCP to us
  driver.start();
});
server.listen(port, HOST, () => ready());
