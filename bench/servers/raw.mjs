// The ceiling: a Node `net` server that answers the upgrade by hand, then writes every received
// byte back unchanged (the client's masked frames go back masked; the loadgen accepts that).
// No WebSocket server in Node can beat this: it does no framing work at all.
import net from 'node:net';
import { createHash } from 'node:crypto';
import { portArg, HOST, ready } from './common.mjs';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const port = portArg();

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  let head = null;
  socket.on('error', () => {});
  const onHead = (chunk) => {
    head = head ? Buffer.concat([head, chunk]) : chunk;
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) { if (head.length > 8192) socket.destroy(); return; }
    const text = head.toString('latin1', 0, end);
    const m = /^sec-websocket-key:[ \t]*(\S+)/im.exec(text);
    if (!m) { socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n'); return; }
    const accept = createHash('sha1').update(m[1] + GUID).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    socket.off('data', onHead);
    const rest = head.subarray(end + 4);
    head = null;
    socket.on('data', (d) => {
      socket.write(d);
      // The one concession to the protocol: a lone client close frame (handshake workload) is
      // echoed and followed by our FIN, as a WebSocket server would do after its own close frame.
      if (d.length === 8 && d[0] === 0x88 && d[1] === 0x82) socket.end();
    });
    if (rest.length) socket.emit('data', rest);
  };
  socket.on('data', onHead);
});
server.listen(port, HOST, () => ready());
