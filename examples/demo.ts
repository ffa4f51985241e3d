/**
 * `npm start`: the demo. One server on 127.0.0.1:8081 (or --port) that
 * - serves the browser client at http://localhost:8081/ (client.html and client.js), and
 * - speaks WebSocket at ws://localhost:8081/test with test-service-mapper's routes (the
 *   test-server loop without a subprotocol; "This is the subprotocol handler" with `subprotocol`).
 * Open the printed URL; the page connects by itself. client.html also works opened from disk.
 *
 *   npm start -- [--port 8081] [--host 127.0.0.1]
 */
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { commandLine } from './lib/stdin.js';
import { serve } from 'rfc6455';
import { testServiceMapper } from './lib/routes.js';
import { portOption } from './lib/stdin.js';

const { values } = commandLine({
  options: {
    port: { type: 'string', default: '8081' },
    host: { type: 'string', default: '127.0.0.1' },
  },
});

const files: Record<string, { file: string; type: string }> = {
  '/': { file: 'client.html', type: 'text/html; charset=utf-8' },
  '/client.html': { file: 'client.html', type: 'text/html; charset=utf-8' },
  '/client.js': { file: 'client.js', type: 'text/javascript; charset=utf-8' },
};

/** Plain HTTP requests: the two page files, 404 for anything else. */
function servePage(req: IncomingMessage, res: ServerResponse): void {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  const entry = files[path];
  if (!entry || (req.method !== 'GET' && req.method !== 'HEAD')) {
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('Not found. Open / for the demo page.\n');
    return;
  }
  readFile(new URL(entry.file, import.meta.url)).then(
    (body) => {
      res.writeHead(200, { 'Content-Type': entry.type, 'Content-Length': body.length, 'Cache-Control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    },
    () => res.writeHead(500).end(),
  );
}

const server = await serve(
  { port: portOption(values.port, 8081), host: values.host, onRequest: servePage },
  testServiceMapper((line) => console.log(line)),
);
const host = server.host === '127.0.0.1' || server.host === '::1' ? 'localhost' : server.host;
console.log(`WebSocket service: ws://${host}:${server.port}/test`);
console.log(`Open http://${host}:${server.port}/ in your browser (Ctrl-C to stop).`);

const stop = (): void => {
  server.close().then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
