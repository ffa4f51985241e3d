/**
 * Replies made while a received chunk is processed leave in one write to the socket: a client
 * that sends ten frames in one TCP segment gets its ten echoes from one system call (one writev),
 * and a lone message's reply is one plain write. Observed on the real server socket by recording
 * (and passing on) the calls its Writable side makes to `_write` and `_writev`.
 */
import type { Socket } from 'node:net';
import { serve, type WebSocketServer } from 'rfc6455';
import { RawClient } from '../helpers/raw-client.js';
import { frame } from '../helpers/frames.js';

let server: WebSocketServer;
/** Per connection (in accept order): every transport write, as the number of buffers it carried. */
const writes: number[][] = [];

beforeAll(async () => {
  server = await serve({ perMessageDeflate: false }, (conn, req) => {
    const socket = req.socket as Socket & { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
    const log: number[] = [];
    writes.push(log);
    const write = socket._write;
    const writev = socket._writev;
    socket._write = function (this: Socket, ...args: unknown[]) {
      log.push(1);
      return write.apply(this, args);
    };
    socket._writev = function (this: Socket, ...args: unknown[]) {
      log.push((args[0] as unknown[]).length);
      return writev.apply(this, args);
    };
    conn.on('message', (m) => conn.send(m));
  });
});
afterAll(() => server.close());

test('ten frames in one segment: ten echoes in one writev; a lone frame: one write', async () => {
  const raw = await RawClient.connect(server.port);
  const log = writes.at(-1)!;
  raw.write(Buffer.concat(Array.from({ length: 10 }, (_, i) => frame({ opcode: 2, payload: Buffer.alloc(20, i), mask: true }))));
  for (let i = 0; i < 10; i++) {
    const f = await raw.readFrame();
    expect(f?.payload.equals(Buffer.alloc(20, i))).toBe(true);
  }
  expect(log).toEqual([10]);
  raw.send({ opcode: 1, payload: 'alone' });
  expect((await raw.readFrame())?.payload.toString()).toBe('alone');
  expect(log).toEqual([10, 1]);
  raw.destroy();
});
