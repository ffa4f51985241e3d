/**
 * Type tests for serve()'s `httpServer` (checked by `npm run typecheck`, never executed): with
 * `tls` it is an https.Server, so certificate rotation (`setSecureContext`) needs no cast; with
 * `http2: true` as well an Http2SecureServer; with neither an http.Server, which has no
 * `setSecureContext`. Options whose type does not say keep the old type, so that code written
 * for it still compiles. `http2: true` without `tls` (which serve() throws for) does not type-check,
 * and the handler's `context.state` is typed from the before-accept hook alone: `undefined` without
 * one, as it is at run time (the run-time half: packages/rfc6455/test/server/typed-options.socket.test.ts).
 */
import { expectTypeOf } from 'expect-type';
import type { Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Http2SecureServer } from 'node:http2';
import type { Http2ServerRequest } from 'node:http2';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { attachHttp2, handleConnect, handleUpgrade, serve, serviceMapper, type HandlerContext, type ServeOptions, type WebSocketServer } from 'rfc6455';

declare const key: Buffer;
declare const cert: Buffer;
declare const maybeTls: { key: Buffer; cert: Buffer } | undefined;
declare const req: IncomingMessage;
declare const socket: Duplex;
declare const h2req: Http2ServerRequest;
declare const h2server: import('node:http2').Http2SecureServer;

export async function types(): Promise<void> {
  const secure = await serve({ tls: { key, cert } }, () => undefined);
  expectTypeOf(secure.httpServer).toEqualTypeOf<HttpsServer>();
  secure.httpServer.setSecureContext({ key, cert });

  const both = await serve({ tls: { key, cert }, http2: true, port: 8443 }, () => undefined);
  expectTypeOf(both.httpServer).toEqualTypeOf<Http2SecureServer>();
  both.httpServer.setSecureContext({ key, cert });

  const plain = await serve({ port: 0 }, () => undefined);
  expectTypeOf(plain.httpServer).toEqualTypeOf<HttpServer>();
  // @ts-expect-error an http.Server has no TLS context to rotate
  plain.httpServer.setSecureContext({ key, cert });
  expectTypeOf(await serve({ http2: false, tls: undefined }, () => undefined)).toEqualTypeOf<WebSocketServer<HttpServer>>();

  // Options typed as ServeOptions may hold tls or not: either server, as before.
  const options: ServeOptions = { port: 0 };
  const either = await serve(options, () => undefined);
  expectTypeOf(either.httpServer).toEqualTypeOf<HttpServer | Http2SecureServer>();
  // @ts-expect-error not known to be a TLS server
  either.httpServer.setSecureContext({ key, cert });

  // Code written for the old type still compiles: every server is a WebSocketServer, and the old cast works.
  const servers: WebSocketServer[] = [secure, both, plain, either];
  expectTypeOf(servers[0]!.httpServer).toEqualTypeOf<HttpServer | Http2SecureServer>();
  let later: WebSocketServer | undefined;
  later = await serve({ tls: { key, cert } }, () => undefined);
  (later.httpServer as unknown as HttpsServer).setSecureContext({ key, cert });

  // The connection state still flows from beforeAccept to the handler through every overload.
  await serve({ tls: { key, cert }, beforeAccept: () => ({ state: { user: 'ann' } }) }, (_conn, _req, ctx) => {
    expectTypeOf(ctx.state).toEqualTypeOf<{ user: string }>();
  });
  await serve({ beforeAccept: () => ({ state: 42 }) }, (_conn, _req, ctx) => {
    expectTypeOf(ctx.state).toEqualTypeOf<number>();
  });
  await serve({ beforeAccept: async () => ({ state: { user: 'ann' } }) }, serviceMapper<{ user: string }>([{ path: '/', handler: (_c, _r, ctx) => void ctx.state.user }]));

  // Without a before-accept hook (or with one that gives no state) the state is undefined at run
  // time, and typed so (it was typed as whatever the handler or mapper declared)…
  await serve({ port: 0 }, (_conn, _req, ctx) => {
    expectTypeOf(ctx.state).toEqualTypeOf<undefined>();
  });
  await serve({ tls: { key, cert } }, (_conn, _req, ctx) => {
    expectTypeOf(ctx.state).toEqualTypeOf<undefined>();
  });
  await serve({ beforeAccept: () => ({ headers: { 'x-a': '1' } }) }, (_conn, _req, ctx) => {
    expectTypeOf(ctx.state).toEqualTypeOf<undefined>();
  });
  // …so a handler or a mapper that needs a state is refused there, at serve() and the other entry points.
  const needsUser = serviceMapper<{ user: string }>([{ path: '/', handler: (_c, _r, ctx) => void ctx.state.user }]);
  // @ts-expect-error no hook gives the mapper its state
  await serve({ port: 0 }, needsUser);
  // @ts-expect-error no hook gives the handler its state
  await serve({ port: 0 }, (_c, _r, ctx: HandlerContext<{ user: string }>) => void ctx.state.user);
  // @ts-expect-error a hook that gives no state
  await serve({ tls: { key, cert }, http2: true, beforeAccept: () => undefined }, needsUser);
  // @ts-expect-error
  void handleUpgrade(req, socket, Buffer.alloc(0), needsUser);
  // @ts-expect-error
  void handleConnect(h2req, needsUser);
  // @ts-expect-error
  attachHttp2(h2server, needsUser);
  void handleUpgrade(req, socket, Buffer.alloc(0), needsUser, { beforeAccept: () => ({ state: { user: 'ann' } }) });
  void handleUpgrade(req, socket, Buffer.alloc(0), (_c, _r, ctx) => void expectTypeOf(ctx.state).toEqualTypeOf<undefined>());
  // Handlers that take any state, and mappers built without a state type, still go anywhere.
  await serve({ port: 0 }, serviceMapper([{ path: '/', handler: () => undefined }]));
  await serve({ port: 0 }, (_c, _r, ctx: HandlerContext) => void expectTypeOf(ctx.state).toBeUnknown());
  // Options typed ServeOptions<S> keep saying S (the hook is up to whoever typed them).
  const typed: ServeOptions<number> = { beforeAccept: () => ({ state: 1 }) };
  await serve(typed, (_c, _r, ctx) => void expectTypeOf(ctx.state).toEqualTypeOf<number>());

  // HTTP/2 is served over TLS only: serve() throws a TypeError for http2: true without tls, and the
  // types refuse it (they took it, and returned a server)…
  // @ts-expect-error tls is missing
  await serve({ http2: true }, () => undefined);
  // @ts-expect-error tls is missing
  await serve({ http2: true, port: 0, beforeAccept: () => ({ state: 1 }) }, () => undefined);
  // @ts-expect-error tls may be missing
  await serve({ http2: true, tls: maybeTls }, () => undefined);
  // …while options that may or may not ask for HTTP/2 still type-check.
  await serve({ http2: Math.random() > 0.5, tls: maybeTls }, () => undefined);
  await serve({ ...options, http2: true, tls: { key, cert } }, () => undefined);

  // protocols: false (as ws's handleProtocols answers) chooses none, as the run time takes it.
  await serve({ protocols: false }, () => undefined);
}
