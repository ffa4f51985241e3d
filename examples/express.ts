/**
 * Express + @rfc6455/express: an HTML page at /, Racket's test-service-mapper at /test, and an
 * authenticated echo at /private (a middleware answers 401 without the bearer token).
 *
 *   npm run example:express -- [--port 8081] [--host 127.0.0.1]
 */
import express from 'express';
import type { AddressInfo } from 'node:net';
import { commandLine } from './lib/stdin.js';
import { websocket } from '@rfc6455/express';
import { authorize, exampleMapper, indexPage, listenOptions, PRIVATE_PATH } from './shared/mapper.js';

const { values } = commandLine({ options: { port: { type: 'string' }, host: { type: 'string' } } });
const { port, host } = listenOptions(values);

const app = express();
const ws = websocket({ mapper: exampleMapper() });
app.get('/', (_req, res) => {
  res.type('html').send(indexPage('Express'));
});
app.use(PRIVATE_PATH, (req, res, next) => {
  const refusal = authorize(req.get('authorization'));
  if (refusal) {
    res.status(refusal.status).set(refusal.headers).send(refusal.body);
    return;
  }
  next();
});
app.use(ws.middleware);

const server = app.listen(port, host, () => {
  console.log(`Listening on http://${host}:${(server.address() as AddressInfo).port}/`);
});
ws.attach(server, app);

const stop = (): void => {
  void ws.close().then(() => server.close(() => process.exit(0)));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
