/**
 * The packages as a consumer gets them: each one is packed with `npm pack` (offline), unpacked into
 * a throwaway project's node_modules, and checked there. The tarball must hold every file its
 * package.json points at and no build leftovers; TypeScript must find every entry point under each
 * moduleResolution a consumer may use; and a consumer must type-check with skipLibCheck off.
 * Frameworks and @types come from the workspace's node_modules through symlinks.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';

const run = promisify(execFile);
const root = resolve(__dirname, '..');

interface Manifest {
  name: string;
  main?: string;
  types?: string;
  bin?: Record<string, string>;
  exports?: Record<string, string | Record<string, string>>;
  typesVersions?: Record<string, Record<string, string[]>>;
}
interface Packed {
  dir: string;
  manifest: Manifest;
  files: string[];
}

const packageDirs = ['packages/rfc6455', 'adapters/fastify', 'adapters/express', 'adapters/koa'];
const linked = ['@types/node', 'fastify', 'fastify-plugin', 'express', '@types/express', 'koa', '@types/koa'];
let work: string;
let consumer: string;
const packed = new Map<string, Packed>();

beforeAll(async () => {
  if (packageDirs.some((dir) => !existsSync(join(root, dir, 'dist/index.d.ts')))) {
    await run('npx', ['tsc', '-b'], { cwd: root });
  }
  work = mkdtempSync(join(tmpdir(), 'rfc6455-packaging-'));
  consumer = join(work, 'consumer');
  mkdirSync(join(consumer, 'src'), { recursive: true });
  writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  await Promise.all(
    packageDirs.map(async (dir) => {
      const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', work], { cwd: join(root, dir) });
      const [info] = JSON.parse(stdout) as [{ name: string; filename: string; files: { path: string }[] }];
      const target = join(consumer, 'node_modules', info.name);
      mkdirSync(target, { recursive: true });
      await run('tar', ['xzf', join(work, info.filename), '-C', target, '--strip-components=1']);
      const manifest = JSON.parse(readFileSync(join(target, 'package.json'), 'utf8')) as Manifest;
      packed.set(info.name, { dir: target, manifest, files: info.files.map((f) => f.path) });
    }),
  );
  for (const name of linked) {
    const link = join(consumer, 'node_modules', name);
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(realpathSync(join(root, 'node_modules', name)), link, 'dir');
  }
}, 120_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Every file path a manifest points at, without the leading "./". */
function targets(manifest: Manifest): string[] {
  const out = [manifest.main, manifest.types, ...Object.values(manifest.bin ?? {})];
  for (const entry of Object.values(manifest.exports ?? {})) {
    out.push(...(typeof entry === 'string' ? [entry] : Object.values(entry)));
  }
  for (const map of Object.values(manifest.typesVersions ?? {})) for (const paths of Object.values(map)) out.push(...paths);
  return out.filter((p): p is string => p !== undefined).map((p) => p.replace(/^\.\//, ''));
}

test('each tarball holds what its package.json points at, and no build leftovers or tests', () => {
  expect([...packed.keys()].sort()).toEqual(['@rfc6455/express', '@rfc6455/fastify', '@rfc6455/koa', 'rfc6455']);
  for (const { manifest, files } of packed.values()) {
    for (const target of targets(manifest)) expect({ pkg: manifest.name, target, packed: files.includes(target) }).toEqual({ pkg: manifest.name, target, packed: true });
    expect(files.filter((f) => /tsbuildinfo|(^|\/)test\//.test(f))).toEqual([]);
    // What the registry shows and what the license requires to travel with the code.
    expect({ pkg: manifest.name, readme: files.includes('README.md'), license: files.includes('LICENSE') }).toEqual({ pkg: manifest.name, readme: true, license: true });
    for (const js of files.filter((f) => f.startsWith('dist/') && f.endsWith('.js'))) {
      expect(files).toContain(js.replace(/\.js$/, '.d.ts'));
    }
  }
});

test('the rfc6455 bin is written as npm publishes it, and is a Node script', () => {
  const { manifest, dir } = packed.get('rfc6455')!;
  expect(Object.keys(manifest.bin!)).toEqual(['rfc6455']);
  // npm publish rewrites "./bin/rfc6455.js" to "bin/rfc6455.js" and warns that the bin "was invalid and removed".
  expect(manifest.bin!.rfc6455).toBe('bin/rfc6455.js');
  expect(readFileSync(join(dir, manifest.bin!.rfc6455!), 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
});

const resolutions: [string, ts.CompilerOptions][] = [
  ['nodenext', { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext }],
  ['node16', { module: ts.ModuleKind.Node16, moduleResolution: ts.ModuleResolutionKind.Node16 }],
  ['bundler', { module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler }],
  ['node10 (module commonjs)', { module: ts.ModuleKind.CommonJS, moduleResolution: ts.ModuleResolutionKind.Node10 }],
];
const entryPoints: [string, string][] = [
  ['rfc6455', 'rfc6455/dist/index.d.ts'],
  ['rfc6455/codec', 'rfc6455/dist/codec/index.d.ts'],
  ['@rfc6455/fastify', '@rfc6455/fastify/dist/index.d.ts'],
  ['@rfc6455/express', '@rfc6455/express/dist/index.d.ts'],
  ['@rfc6455/koa', '@rfc6455/koa/dist/index.d.ts'],
];

test.each(resolutions)('TypeScript finds every entry point\'s declarations under moduleResolution %s', (_name, options) => {
  for (const from of ['src/a.mts', 'src/a.cts', 'src/a.ts']) {
    for (const [specifier, expected] of entryPoints) {
      const { resolvedModule } = ts.resolveModuleName(specifier, join(consumer, from), options, ts.sys);
      expect({ from, specifier, resolved: resolvedModule?.resolvedFileName }).toEqual({ from, specifier, resolved: join(consumer, 'node_modules', expected) });
    }
  }
});

const consumerSource = `
import { serve, connect, serviceMapper, type WebSocketConnection } from 'rfc6455';
import { encodeFrame, Opcode } from 'rfc6455/codec';
export const frame: Buffer[] = encodeFrame(Opcode.Text, Buffer.from('x'));
export async function echo(): Promise<string> {
  const server = await serve({}, async (conn: WebSocketConnection) => { for await (const m of conn) await conn.send(m); });
  const c = await connect(server.url);
  await c.send('x');
  const m = await c.recv();
  await server.close();
  return String(m);
}
export const mapper = serviceMapper([{ path: '/echo', handler: (conn) => void conn.send('hi') }]);
`;

// Declaration files parsed once and shared by the programs below (lib, @types/node, frameworks).
const parsed = new Map<string, ts.SourceFile>();

/** Type-checks `source` as the consumer file `file` with skipLibCheck off; messages about our packages or the file. */
function typeCheck(file: string, source: string, options: ts.CompilerOptions): string[] {
  const path = join(consumer, 'src', file);
  writeFileSync(path, source);
  const compilerOptions: ts.CompilerOptions = {
    ...options,
    strict: true,
    noEmit: true,
    skipLibCheck: false,
    target: ts.ScriptTarget.ES2022,
    lib: ['lib.es2022.d.ts'],
    types: ['node'],
  };
  const host = ts.createCompilerHost(compilerOptions);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (fileName, language, ...rest) => {
    if (!fileName.endsWith('.d.ts') && !fileName.endsWith('.d.mts') && !fileName.endsWith('.d.cts')) return getSourceFile(fileName, language, ...rest);
    const format = typeof language === 'object' ? language.impliedNodeFormat : undefined;
    const key = `${String(format)}:${fileName}`;
    let sourceFile = parsed.get(key);
    if (!sourceFile) {
      sourceFile = getSourceFile(fileName, language, ...rest);
      if (sourceFile) parsed.set(key, sourceFile);
    }
    return sourceFile;
  };
  const program = ts.createProgram([path], compilerOptions, host);
  const ours = join(consumer, 'node_modules', 'rfc6455');
  const adapters = join(consumer, 'node_modules', '@rfc6455');
  return ts
    .getPreEmitDiagnostics(program)
    .filter((d) => !d.file || d.file.fileName === path || d.file.fileName.startsWith(ours + '/') || d.file.fileName.startsWith(adapters + '/'))
    .map((d) => `${d.file ? d.file.fileName.slice(consumer.length + 1) : ''}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
}

test.each([
  ['nodenext, ESM', 'core.mts', resolutions[0]![1]],
  ['nodenext, CommonJS', 'core.cts', resolutions[0]![1]],
  ['bundler', 'core-bundler.ts', resolutions[2]![1]],
  ['module commonjs (node10 resolution)', 'core-cjs.ts', { ...resolutions[3]![1], esModuleInterop: true }],
])('a consumer of rfc6455 and rfc6455/codec type-checks with skipLibCheck off: %s', (_name, file, options) => {
  expect(typeCheck(file, consumerSource, options)).toEqual([]);
});

test('a consumer of the three adapters type-checks with skipLibCheck off (nodenext, exactOptionalPropertyTypes and noUncheckedIndexedAccess on)', () => {
  const source = `
import Fastify from 'fastify';
import express from 'express';
import Koa from 'koa';
import type { WebSocketConnection } from 'rfc6455';
import wsPlugin from '@rfc6455/fastify';
import { websocket as expressWebSocket } from '@rfc6455/express';
import { websocket as koaWebSocket } from '@rfc6455/koa';

export async function main(): Promise<void> {
  const app = Fastify();
  await app.register(wsPlugin, { maxMessageSize: 1024 });
  app.get<{ Params: { room: string } }>('/chat/:room', { websocket: true }, async (conn, request, { params }) => {
    const c: WebSocketConnection = conn;
    await c.send(request.params.room + params.room);
  });
  const e = express();
  const ews = expressWebSocket();
  ews.route('/rooms/(?<room>\\\\w+)', async (conn, req, { params }) => { await conn.send(params.room + req.path); });
  e.use(ews.middleware);
  ews.attach(e.listen(0), e);
  const k = new Koa();
  k.use(koaWebSocket());
  k.use(async (ctx, next) => { if (ctx.ws) await (await ctx.ws())?.send('k'); else await next(); });
  // Unset options given as undefined, under exactOptionalPropertyTypes (see the core's test below).
  await Fastify().register(wsPlugin, { mapper: undefined, onError: undefined, maxMessageSize: undefined });
  await app.injectWS('/', { protocols: undefined, headers: undefined });
  expressWebSocket({ mapper: undefined, handshakeTimeout: undefined });
  k.use(koaWebSocket({ mapper: undefined, claim: undefined }));
}
`;
  expect(typeCheck('adapters.mts', source, { ...resolutions[0]![1], exactOptionalPropertyTypes: true, noUncheckedIndexedAccess: true })).toEqual([]);
}, 20_000);

test('a consumer of rfc6455 under exactOptionalPropertyTypes (and noUncheckedIndexedAccess) may give an unset option as undefined, which every entry point takes as not given', () => {
  // Fixed bug: the options were declared `name?: T`, which under exactOptionalPropertyTypes refuses
  // `name: undefined`, so an option passed on from configuration that may be unset
  // (`{ port: config.port }`) did not type-check, though it is the default at run time.
  const source = `
import { serve, connect, handleUpgrade, broadcast, WebSocket, WebSocketStream, CloseEvent, ErrorEvent, type ConnectionOptions } from 'rfc6455';

interface Config { port?: number; host?: string; maxMessageSize?: number; level?: number; origin?: string; signal?: AbortSignal; token?: string }
export async function main(config: Config): Promise<void> {
  const limits: ConnectionOptions = { maxMessageSize: config.maxMessageSize, idleTimeout: undefined, textMessages: undefined };
  const server = await serve({ ...limits, port: config.port, host: config.host, tls: undefined, http2: undefined, perMessageDeflate: { level: config.level }, origins: undefined, beforeAccept: () => ({ headers: undefined, state: undefined }) }, () => undefined);
  const conn = await connect(server.url, { ...limits, origin: config.origin, signal: config.signal, headers: undefined, protocols: undefined, followRedirects: undefined });
  await conn.send('x', { binary: undefined, compress: undefined });
  await conn.sendStream(['x'], { fragmentSize: undefined });
  await conn.recv({ signal: undefined });
  broadcast(server.connections, 'x', { compress: undefined, binary: undefined });
  new WebSocket(server.url, { idleTimeout: undefined, protocols: undefined });
  new WebSocketStream(server.url, { protocols: undefined, signal: undefined }).close({ closeCode: undefined, reason: undefined });
  new CloseEvent('close', { code: undefined, reason: undefined, wasClean: undefined });
  new ErrorEvent('error', { message: undefined });
  server.httpServer.on('upgrade', (req, socket, head) => void handleUpgrade(req, socket, head, () => undefined, { beforeAccept: () => ({ reject: { status: 403, headers: undefined, body: undefined } }) }));
  await server.close();
}
`;
  expect(typeCheck('exact-optional.mts', source, { ...resolutions[0]![1], exactOptionalPropertyTypes: true, noUncheckedIndexedAccess: true })).toEqual([]);
}, 20_000);

test('under exactOptionalPropertyTypes the codec\'s and the low-level options (FrameParser, encodeFrame, Hybi00Parser, Protocol, PerMessageDeflate, the handshake helpers, HandshakeError, Express routes, serve()\'s http2) take an unset option as undefined', () => {
  // Fixed bug: these were declared \`name?: T\` (the main options had been widened, these not),
  // though each reads \`options.name ?? default\` (or tests \`!== undefined\`), so undefined is the default
  // at run time; and a sink's \`onText: undefined\` is read as no onText.
  const source = `
import { FrameParser, encodeFrame, Hybi00Parser, Opcode } from 'rfc6455/codec';
import { Protocol, Hybi00Protocol, PerMessageDeflate, HandshakeError, serve, validateRequest, buildRequestHeaders, verifyResponse, verifyNegotiation, generateKey } from 'rfc6455';
import { websocket } from '@rfc6455/express';

export function main(limit?: number, flag?: boolean, key?: Uint8Array, rawHeaders?: readonly string[]): void {
  const sink = { onData() {}, onControl() {}, onError() {}, onText: undefined };
  new FrameParser({ side: 'server', maxFrameSize: limit, maxMessageSize: limit, maxFragments: limit, allowRsv1: flag, ownsInput: flag, gatherLarge: flag }, sink);
  encodeFrame(Opcode.Text, Buffer.from('x'), { fin: flag, rsv1: flag, mask: flag, maskKey: key });
  new Hybi00Parser({ onMessage() {}, onClose() {}, onError() {}, onText: undefined }, { maxMessageSize: limit });
  new Protocol({ side: 'client', maxMessageSize: limit, maxFrameSize: limit, maxFragments: limit, compressThreshold: limit, ownsInput: flag, textAsBuffer: flag, extension: undefined }, {} as never);
  new PerMessageDeflate({} as never, 'server', { maxMessageSize: 1, level: limit, memLevel: limit, threshold: limit, concurrencyLimit: limit, syncLimit: limit });
  validateRequest({ headers: {}, httpVersionMajor: limit, httpVersionMinor: limit, rawHeaders });
  const init = { key: generateKey(), protocols: undefined };
  buildRequestHeaders(init);
  verifyResponse('HTTP/1.1 101', {}, { ...init, extensionNames: undefined });
  verifyNegotiation('HTTP/1.1 101', {}, { protocols: undefined, extensionNames: undefined });
  new Hybi00Protocol({ side: 'server', maxMessageSize: limit, textAsBuffer: flag }, {} as never);
  new HandshakeError('refused', 403, { code: undefined, headers: undefined, statusLine: undefined, body: undefined });
}

// An unset http2 is no HTTP/2: serve()'s http.Server and https.Server overloads take it.
export async function servers(tls: { key: Buffer; cert: Buffer }): Promise<void> {
  const plain = await serve({ http2: undefined }, () => undefined);
  plain.httpServer.maxHeadersCount = 1;
  const secure = await serve({ tls, http2: undefined }, () => undefined);
  secure.httpServer.setSecureContext(tls);
  websocket().route('/r', { handler: undefined, protocols: undefined });
}
`;
  expect(typeCheck('exact-optional-codec.mts', source, { ...resolutions[0]![1], exactOptionalPropertyTypes: true, noUncheckedIndexedAccess: true })).toEqual([]);
}, 20_000);

test('under exactOptionalPropertyTypes the optional members of ProtocolHandler, ProtocolEngine and MessageExtension take an explicit undefined, as the engines read it as absent', () => {
  // Fixed bug: they were declared method-style (`onInflating?(waiting): void`), which refuses
  // `onInflating: undefined` there, though every call site tests them with `?.()` or `!== undefined`
  // (and compressStandalone is only called when standaloneKey is set), so a wrapper forwarding
  // another handler's or extension's members (`onInflating: inner.onInflating`) did not type-check.
  const source = `
import { Protocol, PerMessageDeflate, type ProtocolEngine, type ProtocolHandler, type MessageExtension } from 'rfc6455';

export function forward(inner: ProtocolHandler, engine: ProtocolEngine, extension: MessageExtension, ascii: boolean): void {
  const handler: ProtocolHandler = {
    onWrite: (data) => inner.onWrite(data),
    onWritev: (header, payload) => inner.onWritev(header, payload),
    onWritevAscii: ascii ? inner.onWritevAscii : undefined,
    onMessage: (data, binary) => inner.onMessage(data, binary),
    onPiece: (data, binary, first, last) => inner.onPiece(data, binary, first, last),
    onPing: (payload) => inner.onPing(payload),
    onPong: (payload) => inner.onPong(payload),
    onCloseFrame: (code, reason) => inner.onCloseFrame(code, reason),
    onFail: (error) => inner.onFail(error),
    onEnd: () => inner.onEnd(),
    onCloseWritten: inner.onCloseWritten,
    onInflating: undefined,
    streamFull: undefined,
  };
  const wrapped: MessageExtension = {
    name: extension.name,
    compress: (data, fin, cb) => extension.compress(data, fin, cb),
    decompress: (data, fin, cb) => extension.decompress(data, fin, cb),
    inflateSlice: undefined,
    dispose: () => extension.dispose(),
    standaloneKey: undefined,
    compressStandalone: undefined,
  };
  const proto = new Protocol({ side: 'server', extension: wrapped }, handler);
  const engines: ProtocolEngine[] = [proto, { ...engine, resumeStreaming: undefined, holdMessages: undefined, resumeHeld: undefined }];
  const deflate: MessageExtension = new PerMessageDeflate({} as never, 'server', { maxMessageSize: 1 });
  void engines;
  void deflate;
}
`;
  expect(typeCheck('exact-optional-engine.mts', source, { ...resolutions[0]![1], exactOptionalPropertyTypes: true, noUncheckedIndexedAccess: true })).toEqual([]);
}, 20_000);
