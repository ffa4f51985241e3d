/**
 * Koa + @rfc6455/koa: an HTML page at /, Racket's test-service-mapper at /test, and an
 * authenticated echo at /private (a middleware sets ctx.status = 401 without the bearer token).
 *
 *   npm run example:koa -- [--port 8081] [--host 127.0.0.1]
 */
import Koa from 'koa';
import type { AddressInfo } from 'node:net';
import { commandLine } from './lib/stdin.js';
import { websocket } from '@rfc6455/koa';
import { authorize, exampleMapper, indexPage, listenOptions, PRIVATE_PATH } from './shared/mapper.js';

const { values } = commandLine({ options: { port: { type: 'string' }, host: { type: 'string' } } });
const { port, host } = listenOptions(values);

const app = new Koa();
const ws = websocket(exampleMapper());
app.use(async (ctx, next) => {
  if (ctx.path === PRIVATE_PATH) {
    const refusal = authorize(ctx.get('authorization') || undefined);
    if (refusal) {
      ctx.status = refusal.status;
      ctx.set(refusal.headers);
      ctx.body = refusal.body;
      return;
    }
  }
  await next();
});
app.use(ws);
app.use(async (ctx, next) => {
  if (ctx.path !== '/') return next();
  ctx.type = 'html';
  ctx.body = indexPage('Koa');
});

const server = app.listen(port, host, () => {
  console.log(`Listening on http://${host}:${(server.address() as AddressInfo).port}/`);
});
ws.attach(server, app);

const stop = (): void => {
  void ws.close().then(() => server.close(() => process.exit(0)));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
