/**
 * The shared adapter suite against the core's own `serve()`: auth and state come from
 * `beforeAccept`, plain HTTP from `onRequest`.
 */
import { serve, serviceMapper } from 'rfc6455';
import { adapterSuite, authorized, HELLO_BODY, suiteRoutes, type AdapterUnderTest } from '../shared/adapter-suite.js';

const adapter: AdapterUnderTest = {
  name: 'serve()',
  leavesUnclaimedUpgrades: false,
  async start(options = {}) {
    const server = await serve(
      {
        ...(options.tls ? { tls: options.tls } : {}),
        beforeAccept(req, info) {
          if (info.path !== '/private') return undefined;
          if (!authorized(req.headers.authorization)) return { reject: { status: 401, headers: { 'WWW-Authenticate': 'Bearer' }, body: 'who are you?' } };
          return { state: { user: 'alice' } };
        },
        onRequest(req, res) {
          if (req.url === '/hello') res.end(HELLO_BODY);
          else res.writeHead(404).end();
        },
      },
      serviceMapper(suiteRoutes((_req, state) => (state as { user: string }).user)),
    );
    return { server: server.httpServer, url: server.url.replace(/\/$/, ''), close: () => server.close(), connections: server.connections };
  },
};

adapterSuite(adapter);
