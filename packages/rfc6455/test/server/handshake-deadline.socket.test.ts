/**
 * serve()'s handshakeTimeout bounds the whole upgrade, as docs/limits-and-security.md says: the
 * request head and the before-accept hook share one deadline, counted from the connection's
 * arrival (as the head's own timeout is). Fixed bug: the head had handshakeTimeout, then the hook
 * another whole one, so an upgrade could take up to twice it (through the front and through
 * Node's parser alike).
 *
 * Each test trickles a head over most of the timeout, then has a hook that takes more than what is
 * left but less than a whole timeout: the upgrade must be cut (no 101), where it used to be
 * accepted. The margins either way are 400 ms or more.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { serve, type WebSocketServer } from '../../src/index.js';
import { upgradeRequest } from '../helpers/raw-client.js';

const TIMEOUT = 1500;
const HEAD_DELAY = 900;
const HOOK_DELAY = 1100;

const servers: WebSocketServer[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(front: boolean, hookSettled: () => void): Promise<WebSocketServer> {
  const saved = process.env.RFC6455_NO_FRONT;
  if (front) delete process.env.RFC6455_NO_FRONT;
  else process.env.RFC6455_NO_FRONT = '1';
  try {
    const server = await serve(
      {
        handshakeTimeout: TIMEOUT,
        beforeAccept: async () => {
          await new Promise((resolve) => setTimeout(resolve, HOOK_DELAY));
          hookSettled();
          return undefined;
        },
      },
      async (conn) => {
        for await (const _ of conn);
      },
    );
    servers.push(server);
    return server;
  } finally {
    if (saved === undefined) delete process.env.RFC6455_NO_FRONT;
    else process.env.RFC6455_NO_FRONT = saved;
  }
}

describe.each([
  ['the front', true],
  ['Node\'s parser (RFC6455_NO_FRONT=1)', false],
])('serve() through %s: one handshakeTimeout for the head and the hook', (_name, front) => {
  test('a head that took most of handshakeTimeout leaves the hook only the rest: the upgrade is cut, not accepted', async () => {
    let settled!: () => void;
    const hookSettled = new Promise<void>((resolve) => (settled = resolve));
    const server = await start(front, settled);
    const socket = netConnect({ port: server.port, host: '127.0.0.1' });
    sockets.push(socket);
    socket.on('error', () => undefined);
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    const request = upgradeRequest(server.port);
    socket.write(request.slice(0, 20));
    // The slow part of the head: the scenario itself, not a wait for something.
    await new Promise((resolve) => setTimeout(resolve, HEAD_DELAY));
    socket.write(request.slice(20));
    await Promise.race([closed, hookSettled.then(() => new Promise((resolve) => setTimeout(resolve, 100)))]);
    // Before: the hook had a whole handshakeTimeout of its own and the upgrade got its 101.
    expect(received).not.toMatch(/^HTTP\/1\.1 101/);
    await closed;
  });
});
