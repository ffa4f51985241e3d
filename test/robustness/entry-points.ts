/**
 * The server entry points the parity tables run the same cases through, started one way for every
 * table: serve() over HTTP/1.1, TLS and HTTP/2; handleUpgrade() on a Node http.Server;
 * attachHttp2() on an http2 server (h2c, or TLS); the Express, Koa and Fastify adapters (Fastify
 * over HTTP/2 too); and any of them to another kind of client (a hybi-00 client, an HTTP/1.1
 * client of an HTTP/2 port). Each starts from a {@link Setup} (the target, the options, onError)
 * on 127.0.0.1 and a free port, and returns where it listens, how our client reaches it, its own
 * shutdown and a close that frees everything ({@link Started}). What differs between them and
 * the tables test is data on the {@link EntryPoint} (its transport, whether serve()'s limits
 * apply, whether a framework answers unrouted upgrades, what its shutdown does); a table's own
 * variant of an entry (a request listener, Fastify's forceCloseConnections, Koa's silent) is a
 * parameter of the entry's factory.
 */
import express, { type Express } from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import Koa from 'koa';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createSecureServer, createServer as createH2Server, type Http2ServerRequest, type Http2ServerResponse, type SecureServerOptions, type ServerHttp2Session, type ServerOptions as Http2ServerOptions } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { attachHttp2, handleUpgrade, serve, type ConnectOptions, type ServiceMapper, type UpgradeOptions, type UpgradeTarget } from 'rfc6455';
import { websocket as expressWebsocket, type ExpressWebSocket } from '@rfc6455/express';
import { websocket as koaWebsocket, type KoaWebSocketMiddleware } from '@rfc6455/koa';
import wsPlugin from '@rfc6455/fastify';
import { CLIENT_TLS, TLS } from '../http2/helpers.js';
import { closeServer, listen } from './helpers.js';

/**
 * How a client reaches an entry point: HTTP/1.1 over TCP (`h1`) or TLS (`tls`), an extended CONNECT
 * over TLS (`h2`) or cleartext HTTP/2 (`h2c`), or a hybi-00 client over TCP (`hybi00`).
 */
export type Transport = 'h1' | 'tls' | 'h2' | 'h2c' | 'hybi00';

/** Whether `transport` is HTTP/2 (an extended CONNECT, RFC 8441). */
export const isHttp2 = (transport: Transport): boolean => transport === 'h2' || transport === 'h2c';

/** The API an entry point is served by. */
export type Api = 'serve' | 'handleUpgrade' | 'attachHttp2' | 'express' | 'koa' | 'fastify';

/** Routes and middleware a table adds to a framework's app, after the adapter (its own routing, a page). */
export interface Mount {
  /** Called after `app.use(ws.middleware)`, before the HTTP server is made. */
  express?(app: Express, ws: ExpressWebSocket): void;
  /** Called after `app.use(ws)`, before the HTTP server is made. */
  koa?(app: Koa, ws: KoaWebSocketMiddleware): void;
  /** Called once the plugin is registered, before listening. */
  fastify?(app: FastifyInstance): void;
}

/** What a table starts an entry point with. */
export interface Setup {
  /** What serve(), handleUpgrade() and attachHttp2() serve: a mapper or a handler. */
  target: UpgradeTarget<unknown>;
  /** The adapters' `mapper` option; by default `target` where it is a mapper (none where it is a handler). */
  mapper?: ServiceMapper<unknown>;
  /**
   * Options, given the way the entry point takes them (serve()'s and attachHttp2()'s options,
   * handleUpgrade()'s last argument, the adapters' websocket() / plugin options), as they are.
   */
  options?: object;
  /** Given as the `onError` option where set. */
  onError?: (error: unknown) => void;
  /** The table's own routes on a framework's app. */
  mount?: Mount;
}

/** A started entry point. */
export interface Started {
  /** The port it listens on (127.0.0.1). */
  port: number;
  /** How the client reaches it (the entry point's transport). */
  transport: Transport;
  /** `http://127.0.0.1:port` (`https:` over TLS). */
  origin: string;
  /** The `ws:` (`wss:` over TLS) URL of `path` (which starts with `/`). */
  url(path: string): string;
  /** What our connect() needs to reach it: the TLS CA, `http2`, the hybi-00 variant. */
  client: ConnectOptions;
  /** The Node server it listens with. */
  httpServer: { readonly listening: boolean };
  /**
   * The entry point's own shutdown (serve()'s close(), an adapter's close(), Fastify's app.close()),
   * with a code and reason where its API takes them; undefined where it has none (handleUpgrade(),
   * attachHttp2(): the application's server).
   */
  shutdown: ((code?: number, reason?: string) => Promise<void>) | undefined;
  /** Closes everything at once: the connections, the server, its sockets and sessions. */
  close(): Promise<void>;
}

/** One way into the library, with the facts the tables branch on. */
export interface EntryPoint {
  /** The name the tables run it under. */
  name: string;
  /** The API it is served by. */
  api: Api;
  /** How the tables' clients reach it. */
  transport: Transport;
  /** serve()'s own limits (maxConnections, maxConnectionsPerIp) and its answer to a plain request (426). */
  limits: boolean;
  /** An upgrade no route serves, or one that is not a GET, is answered by the framework, not the core. */
  framework: boolean;
  /**
   * What the entry point's own shutdown does to an upgrade whose hook is pending: answers 503, or
   * (serve() over HTTP/2, documented) resets its stream with the session; undefined where it has
   * no shutdown of its own.
   */
  pendingHookOnShutdown: '503' | 'reset' | undefined;
  /** Its shutdown takes a close code and reason. */
  shutdownTakesCode: boolean;
  /**
   * Its shutdown closes the HTTP server too (serve(), Fastify's app.close()); the adapters of
   * Express and Koa leave that to the application.
   */
  shutdownClosesServer: boolean;
  /**
   * What an upgrade made after the shutdown began gets: 503, or 'refused' where the shutdown stops
   * listening at once; undefined without a shutdown.
   */
  upgradeAfterShutdown: 503 | 'refused' | undefined;
  /** Starts a server of this entry point on 127.0.0.1 and a free port. */
  start(setup: Setup): Promise<Started>;
}

const CLIENTS: Record<Transport, ConnectOptions> = {
  h1: {},
  tls: { tls: CLIENT_TLS },
  h2: { tls: CLIENT_TLS, http2: true },
  h2c: { http2: true },
  hybi00: { variant: 'hybi00' },
};

function started(port: number, transport: Transport, httpServer: Started['httpServer'], shutdown: Started['shutdown'], close: () => Promise<void>): Started {
  const secure = transport === 'tls' || transport === 'h2';
  return {
    port,
    transport,
    origin: `${secure ? 'https' : 'http'}://127.0.0.1:${port}`,
    url: (path) => `${secure ? 'wss' : 'ws'}://127.0.0.1:${port}${path}`,
    client: CLIENTS[transport],
    httpServer,
    shutdown,
    close,
  };
}

/** The options object an entry point is given: the table's options and its onError. */
function withOnError(setup: Setup): Record<string, unknown> {
  return { ...setup.options, ...(setup.onError && { onError: setup.onError }) };
}

/** The adapters' options: the table's options, its onError, and the mapper. */
function adapterOptions(setup: Setup): Record<string, unknown> {
  const mapper = setup.mapper ?? (typeof setup.target === 'function' ? undefined : setup.target);
  return { ...withOnError(setup), ...(mapper && { mapper }) };
}

const FACTS_OF_SERVE = { api: 'serve', limits: true, framework: false, shutdownTakesCode: true, shutdownClosesServer: true, upgradeAfterShutdown: 'refused' } as const;
const FACTS_WITHOUT_SHUTDOWN = { limits: false, framework: false, pendingHookOnShutdown: undefined, shutdownTakesCode: false, shutdownClosesServer: false, upgradeAfterShutdown: undefined } as const;

/** serve() with `extra` (its `tls`, `http2`) on 127.0.0.1. */
export function serveEntry(name: string, transport: 'h1' | 'tls' | 'h2', extra: { tls?: typeof TLS; http2?: true }): EntryPoint {
  return {
    name,
    transport,
    ...FACTS_OF_SERVE,
    pendingHookOnShutdown: transport === 'h2' ? 'reset' : '503',
    async start(setup) {
      const server = await serve({ host: '127.0.0.1', port: 0, ...withOnError(setup), ...extra } as never, setup.target);
      return started(server.port, transport, server.httpServer, (code, reason) => server.close(code, reason), () => server.close());
    },
  };
}

type RequestListener = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void;

/** handleUpgrade() in the 'upgrade' listener of a Node http.Server (with `requestListener` for plain requests). */
export function handleUpgradeEntry(name = 'handleUpgrade() on http.Server', requestListener?: RequestListener): EntryPoint {
  return {
    name,
    api: 'handleUpgrade',
    transport: 'h1',
    ...FACTS_WITHOUT_SHUTDOWN,
    async start(setup) {
      const server = requestListener ? createServer(requestListener) : createServer();
      const options = withOnError(setup) as UpgradeOptions<unknown>;
      server.on('upgrade', (req: IncomingMessage, socket, head: Buffer) => void handleUpgrade(req, socket, head, setup.target, options));
      return started(await listen(server), 'h1', server, undefined, () => closeServer(server));
    },
  };
}

/** How {@link attachHttp2Entry} makes its server. */
export interface Http2EntryOptions {
  /** A TLS server (createSecureServer(), with the test certificate): `h2`; else cleartext, `h2c`. */
  secure?: boolean;
  /** The server's options. Default: `settings: { enableConnectProtocol: true }` (attachHttp2() turns it on otherwise). */
  serverOptions?: Http2ServerOptions;
  /** A 'request' listener (the compatibility API); without it the server is 'stream'-style. */
  requestListener?: RequestListener;
}

/** attachHttp2() on a Node http2 server. */
export function attachHttp2Entry(name = 'attachHttp2() on an h2c server', how: Http2EntryOptions = {}): EntryPoint {
  const transport = how.secure ? 'h2' : 'h2c';
  return {
    name,
    api: 'attachHttp2',
    transport,
    ...FACTS_WITHOUT_SHUTDOWN,
    async start(setup) {
      const serverOptions = how.serverOptions ?? { settings: { enableConnectProtocol: true } };
      const listener = how.requestListener as ((req: Http2ServerRequest, res: Http2ServerResponse) => void) | undefined;
      const server = how.secure
        ? createSecureServer({ ...TLS, ...serverOptions } as SecureServerOptions, listener)
        : createH2Server(serverOptions, listener);
      const attachment = attachHttp2(server, setup.target, withOnError(setup) as UpgradeOptions<unknown>);
      const sessions = new Set<ServerHttp2Session>();
      server.on('session', (s) => sessions.add(s));
      return started(await listen(server), transport, server, undefined, () => {
        attachment.detach();
        for (const s of sessions) s.destroy();
        return new Promise((resolve) => server.close(() => resolve()));
      });
    },
  };
}

const FACTS_OF_ADAPTERS = { limits: false, framework: true, pendingHookOnShutdown: '503', upgradeAfterShutdown: 503 } as const;

/** The Express adapter on the HTTP server of an Express app. */
export function expressEntry(name = 'Express'): EntryPoint {
  return {
    name,
    api: 'express',
    transport: 'h1',
    ...FACTS_OF_ADAPTERS,
    shutdownTakesCode: true,
    shutdownClosesServer: false,
    async start(setup) {
      const app = express();
      const ws = expressWebsocket(adapterOptions(setup) as never);
      app.use(ws.middleware);
      setup.mount?.express?.(app, ws);
      const server = createServer(app);
      ws.attach(server, app);
      return started(await listen(server), 'h1', server, (code, reason) => ws.close(code, reason), async () => {
        await ws.close();
        await closeServer(server);
      });
    },
  };
}

/** The Koa middleware on the HTTP server of a Koa app (`silent`: Koa logs no error). */
export function koaEntry(name = 'Koa', silent = false): EntryPoint {
  return {
    name,
    api: 'koa',
    transport: 'h1',
    ...FACTS_OF_ADAPTERS,
    shutdownTakesCode: true,
    shutdownClosesServer: false,
    async start(setup) {
      const app = new Koa();
      if (silent) app.silent = true;
      const ws = koaWebsocket(adapterOptions(setup) as never);
      app.use(ws);
      setup.mount?.koa?.(app, ws);
      const server = createServer(app.callback());
      ws.attach(server, app);
      return started(await listen(server), 'h1', server, (code, reason) => ws.close(code, reason), async () => {
        await ws.close();
        await closeServer(server);
      });
    },
  };
}

/**
 * The Fastify plugin, over HTTP/1.1 or (`http2`) over HTTP/2 with TLS (HTTP/1.1 allowed on its
 * port, forceCloseConnections: true). `forceCloseConnections` is Fastify's option for HTTP/1.1
 * (else Fastify's default).
 */
export function fastifyEntry(http2: boolean, name = http2 ? 'Fastify over HTTP/2' : 'Fastify', forceCloseConnections?: true): EntryPoint {
  const transport = http2 ? 'h2' : 'h1';
  return {
    name,
    api: 'fastify',
    transport,
    ...FACTS_OF_ADAPTERS,
    shutdownTakesCode: false,
    shutdownClosesServer: true,
    async start(setup) {
      // (One type for both: the HTTP/2 instance's differs only in its raw request and reply.)
      const app = (
        http2 ? Fastify({ http2: true, https: { ...TLS, allowHTTP1: true }, forceCloseConnections: true }) : Fastify(forceCloseConnections ? { forceCloseConnections } : {})
      ) as unknown as FastifyInstance;
      await app.register(wsPlugin, adapterOptions(setup) as never);
      setup.mount?.fastify?.(app);
      await app.listen({ port: 0, host: '127.0.0.1' });
      let closing: Promise<void> | undefined;
      const close = (): Promise<void> => (closing ??= app.close().then(() => undefined));
      return started((app.server.address() as AddressInfo).port, transport, app.server, close, close);
    },
  };
}

/** The same server, reached by another kind of client: its facts as they are, but the transport. */
function toClient(entry: EntryPoint, name: string, transport: Transport): EntryPoint {
  return {
    ...entry,
    name,
    transport,
    async start(setup) {
      const s = await entry.start(setup);
      return started(s.port, transport, s.httpServer, s.shutdown, s.close);
    },
  };
}

/** `entry` (an HTTP/1.1 one) to a hybi-00 client. */
export const toHybi00Client = (entry: EntryPoint): EntryPoint => toClient(entry, `${entry.name} to a hybi-00 client`, 'hybi00');

/** `entry` (an HTTP/2 one over TLS, whose port takes HTTP/1.1 too) to an HTTP/1.1 client over TLS. */
export const toHttp1Client = (entry: EntryPoint): EntryPoint => toClient(entry, `${entry.name} to an HTTP/1.1 client`, 'tls');

/** serve() over HTTP/1.1. */
export const SERVE = serveEntry('serve()', 'h1', {});
/** serve() over TLS. */
export const SERVE_TLS = serveEntry('serve({ tls })', 'tls', { tls: TLS });
/** serve() over HTTP/2 (RFC 8441) with TLS. */
export const SERVE_HTTP2 = serveEntry('serve({ http2: true })', 'h2', { tls: TLS, http2: true });
/** handleUpgrade() on a Node http.Server. */
export const HANDLE_UPGRADE = handleUpgradeEntry();
/** attachHttp2() on a 'stream'-style h2c server. */
export const ATTACH_HTTP2 = attachHttp2Entry();
/** The Express adapter. */
export const EXPRESS = expressEntry();
/** The Koa adapter. */
export const KOA = koaEntry();
/** The Fastify plugin over HTTP/1.1. */
export const FASTIFY = fastifyEntry(false);
/** The Fastify plugin over HTTP/2. */
export const FASTIFY_HTTP2 = fastifyEntry(true);

/** Every entry point, as server-parity.test.ts runs them (serve() to a hybi-00 client among them). */
export const ENTRY_POINTS: readonly EntryPoint[] = [SERVE, SERVE_TLS, SERVE_HTTP2, toHybi00Client(SERVE), HANDLE_UPGRADE, ATTACH_HTTP2, EXPRESS, KOA, FASTIFY, FASTIFY_HTTP2];
