/**
 * A process whose connect() failed exits by itself: nothing of the handshake (a socket, a timer)
 * keeps it alive. A child process connects to a server that accepts the TCP connection and then
 * never answers (nor reads, nor closes: a stalled server), and must exit on its own.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { resolve } from 'node:path';
import { spawnNode } from '../examples/helpers.js';

describe('a failed connect({ http2: true }) to a stalled server lets the process exit', () => {
  let server: Server;
  const accepted: Socket[] = [];
  beforeAll(async () => {
    server = createServer((socket) => {
      // Never read, never answered, never closed.
      accepted.push(socket);
      socket.pause();
      socket.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  });
  afterAll(async () => {
    for (const socket of accepted) socket.destroy();
    await new Promise((r) => server.close(r));
  });

  test.each([
    ['ws', 'timeout', 'no SETTINGS in time (h2c)', 'WS_HANDSHAKE_TIMEOUT'],
    ['wss', 'timeout', 'a TLS handshake that never completes', 'WS_HANDSHAKE_TIMEOUT'],
    ['ws', 'abort', 'given up through its signal', 'WS_CONNECT_FAILED'],
  ])('%s, %s: %s (its socket was ended gracefully and stayed open, waiting for the server\'s end)', async (scheme, mode, _what, code) => {
    const port = (server.address() as { port: number }).port;
    const child = spawnNode([resolve(__dirname, 'children/h2-handshake-fails.ts'), `${scheme}://127.0.0.1:${port}/`, mode]);
    try {
      await child.waitFor(/failed \S+/);
      expect(child.stdout()).toContain(`failed ${code}`);
      // Exits by itself: the wait is generous (a tsx child's start-up), a process held open never does.
      const exited = await Promise.race([child.exited, new Promise((r) => setTimeout(() => r('still running'), 4000))]);
      expect(exited).toBe(0);
    } finally {
      await child.kill();
    }
  }, 20_000);
});
