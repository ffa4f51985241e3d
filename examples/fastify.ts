/**
 * Fastify + @rfc6455/fastify: an HTML page at /, Racket's test-service-mapper at /test, and an
 * authenticated echo at /private (an onRequest hook answers 401 without the bearer token).
 *
 *   npm run example:fastify -- [--port 8081] [--host 127.0.0.1]
 */
import Fastify from 'fastify';
import { commandLine } from './lib/stdin.js';
import { wsPlugin } from '@rfc6455/fastify';
import { authorize, exampleMapper, indexPage, listenOptions, PRIVATE_PATH } from './shared/mapper.js';

const { values } = commandLine({ options: { port: { type: 'string' }, host: { type: 'string' } } });
const { port, host } = listenOptions(values);

const app = Fastify();
await app.register(wsPlugin, { mapper: exampleMapper() });
app.addHook('onRequest', async (request, reply) => {
  if (request.url.split('?')[0] !== PRIVATE_PATH) return;
  const refusal = authorize(request.headers.authorization);
  if (refusal) return reply.code(refusal.status).headers(refusal.headers).send(refusal.body);
});
app.get('/', async (_request, reply) => reply.type('text/html; charset=utf-8').send(indexPage('Fastify')));

await app.listen({ port, host });
const address = app.server.address();
console.log(`Listening on http://${host}:${typeof address === 'object' && address ? address.port : port}/`);

const stop = (): void => {
  void app.close().then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
