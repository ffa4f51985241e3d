/**
 * Child of error-reports.test.ts: a server whose onError throws, met by a handler that throws, one
 * that rejects, a message listener that throws and a beforeAccept that throws. Prints one line per
 * case (how the client saw it end), then 'served on' once the server still answers; the process
 * must not die of the throwing onError.
 */
import { connect, serve } from 'rfc6455';

const server = await serve(
  {
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: false,
    onError: (error) => {
      throw new Error(`onError exploded on: ${(error as Error).message}`);
    },
    beforeAccept: (req) => {
      if (req.url === '/hook') throw new Error('hook failed');
      return undefined;
    },
  },
  async (conn) => {
    if (conn.path === '/sync') throw new Error('sync handler failed');
    if (conn.path === '/async') {
      await new Promise((resolve) => setImmediate(resolve));
      throw new Error('async handler failed');
    }
    if (conn.path === '/listener') {
      conn.on('message', () => {
        throw new Error('listener failed');
      });
    }
    for await (const m of conn) await conn.send(m);
  },
);
for (const path of ['/sync', '/async', '/listener', '/hook']) {
  try {
    const conn = await connect(`${server.url}${path.slice(1)}`);
    if (path === '/listener') await conn.send('x');
    await conn.whenClosed;
    console.log(`${path} closed ${conn.closeStatus}`);
  } catch (error) {
    console.log(`${path} refused: ${(error as Error).message}`);
  }
}
const conn = await connect(`${server.url}echo`);
await conn.send('still there');
console.log(`served on: ${String(await conn.recv())}`);
await conn.close();
await server.close();
