/**
 * Type tests for serve()'s `httpServer` (checked by `npm run typecheck`, never executed): with
 * `tls` it is an https.Server, so certificate rotation (`setSecureContext`) needs no cast; with
 * `http2: true` as well an Http2SecureServer; with neither an http.Server, which has no
 * `setSecureContext`. Options whose type does not say keep the old type, so that code written
 * for it still compiles.
 */
import { expectTypeOf } from 'expect-type';
import type { Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Http2SecureServer } from 'node:http2';
import { serve, type ServeOptions, type WebSocketServer } from 'rfc6455';

declare const key: Buffer;
declare const cert: Buffer;

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
}
