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
import { attachHttp2, handleConnect, handleHybi00Upgrade, handleUpgrade, isServiceMapper, serve, serviceMapper, type BeforeAcceptResult, type ConnectionHandler, type HandlerContext, type ServeOptions, type ServiceMapper, type UpgradeOptions, type UpgradeTarget, type WebSocketServer } from 'rfc6455';

declare const key: Buffer;
declare const cert: Buffer;
declare const maybeTls: { key: Buffer; cert: Buffer } | undefined;
declare const req: IncomingMessage;
declare const socket: Duplex;
declare const h2req: Http2ServerRequest;
declare const h2server: import('node:http2').Http2SecureServer;
declare const cond: boolean;
declare const ann: { user: string };
declare const maybeAnn: { user: string } | undefined;
declare function later<T>(value: T): PromiseLike<T>;

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

/**
 * A hook that may accept without a state (returns undefined, `{ headers }` only, or a state that
 * may be undefined) gives the handler `undefined` then, at run time: its `context.state` is typed
 * `State | undefined` (it was `State`); one whose every accepting return carries a state still
 * types it `State`. (Run-time half: packages/rfc6455/test/server/typed-options.socket.test.ts.)
 */
export async function hookStates(): Promise<void> {
  type Ann = { user: string };
  await serve({ beforeAccept: () => (cond ? { state: ann } : undefined) }, (_c, _r, ctx) => {
    expectTypeOf(ctx.state).toEqualTypeOf<Ann | undefined>();
  });
  await serve({ beforeAccept: () => (cond ? { state: ann } : { headers: { 'x-a': '1' } }) }, (_c, _r, ctx) => {
    expectTypeOf(ctx.state).toEqualTypeOf<Ann | undefined>();
  });
  await serve({ tls: { key, cert }, beforeAccept: async () => ({ state: maybeAnn }) }, (_c, _r, ctx) => {
    expectTypeOf(ctx.state).toEqualTypeOf<Ann | undefined>();
  });
  await serve({ tls: { key, cert }, http2: true, beforeAccept: async () => { if (cond) return; return { state: ann }; } }, (_c, _r, ctx) => {
    expectTypeOf(ctx.state).toEqualTypeOf<Ann | undefined>();
  });
  // Sync and thenable returns mixed, one of them without a state.
  await serve({ beforeAccept: (_r, info) => (info.path === '/' ? later({ headers: { 'x-a': '1' } }) : { state: ann }) }, (_c, _r, ctx) => {
    expectTypeOf(ctx.state).toEqualTypeOf<Ann | undefined>();
  });
  // Every accepting return carries a state (the others refuse): State alone, as before.
  await serve({ beforeAccept: () => (cond ? { state: ann } : { reject: { status: 401 } }) }, (_c, _r, ctx) => {
    expectTypeOf(ctx.state).toEqualTypeOf<Ann>();
  });
  await serve({ beforeAccept: async (req) => {
    if (!req.headers.authorization) return { reject: { status: 401, headers: { 'WWW-Authenticate': 'Bearer' } } };
    if (cond) return later({ reject: { status: 403 } });
    return { state: ann, headers: { 'x-user': ann.user } };
  } }, (_c, _r, ctx) => {
    expectTypeOf(ctx.state).toEqualTypeOf<Ann>();
  });
  // A mapper that needs the state is refused where the hook may not give it, at every entry point…
  const needsAnn = serviceMapper<Ann>([{ path: '/', handler: (_c, _r, ctx) => void ctx.state.user }]);
  const mayNotGive = { beforeAccept: () => (cond ? { state: ann } : undefined) };
  // @ts-expect-error the hook may accept without a state
  await serve(mayNotGive, needsAnn);
  // @ts-expect-error
  await serve({ tls: { key, cert }, beforeAccept: () => (cond ? { state: ann } : { headers: {} }) }, needsAnn);
  // @ts-expect-error
  void handleUpgrade(req, socket, Buffer.alloc(0), needsAnn, mayNotGive);
  // @ts-expect-error
  void handleConnect(h2req, needsAnn, mayNotGive);
  // @ts-expect-error
  attachHttp2(h2server, needsAnn, mayNotGive);
  // …and taken where it always does, or by a mapper that expects none.
  await serve({ beforeAccept: () => (cond ? { state: ann } : { reject: { status: 403 } }) }, needsAnn);
  void handleUpgrade(req, socket, Buffer.alloc(0), serviceMapper<Ann | undefined>([{ path: '/', handler: (_c, _r, ctx) => void ctx.state?.user }]), mayNotGive);
  // Options declared with the general result type keep saying State (their author says what the hook gives).
  const declared: UpgradeOptions<Ann> = { beforeAccept: () => ({ state: ann }) };
  void handleUpgrade(req, socket, Buffer.alloc(0), needsAnn, declared);
  const declaredHook = (): BeforeAcceptResult<Ann> => ({ state: ann });
  await serve({ beforeAccept: declaredHook }, (_c, _r, ctx) => void expectTypeOf(ctx.state).toEqualTypeOf<Ann>());
  // The hook's returns are still checked: neither the state itself nor a number is a result.
  // @ts-expect-error the state without { state }
  await serve({ beforeAccept: () => ann }, () => undefined);
  // @ts-expect-error
  void handleUpgrade(req, socket, Buffer.alloc(0), () => undefined, { beforeAccept: () => 1 });
  // @ts-expect-error
  void handleUpgrade(req, socket, Buffer.alloc(0), () => undefined, { beforeAccept: async () => ({ reject: { status: '401' } }) });
  // @ts-expect-error
  void handleUpgrade(req, socket, Buffer.alloc(0), () => undefined, { beforeAccept: () => ({ headers: { 'x-a': 1n } }) });

  // handleHybi00Upgrade takes its State from the hook alone too, as the other entry points (it
  // inferred it from the target, so a mapper that needs a state went where no hook gave one).
  // @ts-expect-error no hook gives the mapper its state
  void handleHybi00Upgrade(req, socket, Buffer.alloc(0), needsAnn, {});
  // @ts-expect-error
  void handleHybi00Upgrade(req, socket, Buffer.alloc(0), needsAnn, mayNotGive);
  void handleHybi00Upgrade(req, socket, Buffer.alloc(0), needsAnn, { beforeAccept: () => ({ state: ann }) });
  void handleHybi00Upgrade(req, socket, Buffer.alloc(0), (_c, _r, ctx) => void expectTypeOf(ctx.state).toEqualTypeOf<undefined>(), {});
  void handleHybi00Upgrade(req, socket, Buffer.alloc(0), (_c, _r, ctx) => void expectTypeOf(ctx.state).toEqualTypeOf<Ann | undefined>(), mayNotGive);
}

/**
 * isServiceMapper narrows what it does not know to a mapper whose handlers can be called (it
 * narrowed to ServiceMapper<never>, whose handlers take no context at all), and a handler-or-mapper
 * to the mapper of its own state type.
 */
export function mapperNarrowing(value: unknown, target: UpgradeTarget<{ user: string }>, conn: import('rfc6455').WebSocketConnection): void {
  if (isServiceMapper(value)) {
    expectTypeOf(value).toEqualTypeOf<ServiceMapper<unknown>>();
    const match = value.match('/', []);
    if (match.ok) void match.handler(conn, req, { params: match.params, state: undefined, protocol: match.protocol });
    for (const route of value.routes) void route.handler?.(conn, req, { params: {}, state: 1, protocol: '' });
  }
  if (isServiceMapper(target)) {
    expectTypeOf(target).toEqualTypeOf<ServiceMapper<{ user: string }>>();
  } else {
    expectTypeOf(target).toEqualTypeOf<ConnectionHandler<{ user: string }>>();
    void target(conn, req, { params: {}, state: { user: 'ann' }, protocol: '' });
  }
}
