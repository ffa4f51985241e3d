/**
 * Our side of the cases, shared by the test files: the serve() echo server (as
 * examples/echo-server.ts), the connect() echo client, running a case list against either, and
 * registering one Jest test per case. Over plain TCP by default; the options add TLS (on both
 * sides of the wire) or other serve()/connect() options (e.g. `directReads: false`).
 */
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { connect, serve, type ConnectionHandler, type ConnectOptions, type ServeOptions, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { runCase, type CaseDef, type CaseResult } from './case.js';
import { FuzzPeer, listenOnce, type PeerEvents, type TlsServerSetup } from './fuzzer.js';
import { CASE_TEST_TIMEOUT, expectedVerdict, expectVerdict, report, scheduleAll } from './harness.js';

type Limits = Parameters<typeof scheduleAll>[2];

/**
 * The echo of examples/echo-server.ts: a `message` listener, so each message is echoed as it is
 * parsed, before the next frame of the same read (see harness.ts on the `for await` style).
 */
export const echoFromListener: ConnectionHandler = (conn) => {
  conn.on('message', (message) => void conn.send(message).catch(() => undefined));
};

/** Cases run by the fuzzer as a client against a serve() server (Autobahn's fuzzingclient mode). */
export interface ServerRun {
  results: Map<string, Promise<CaseResult>>;
  /** Prints the report (AUTOBAHN_REPORT) and closes the server. */
  finish(): Promise<void>;
}

export interface ServerRunOptions {
  handler?: ConnectionHandler;
  /** Called with our side of each connection, before the handler. */
  onConnection?: (conn: WebSocketConnection) => void;
  agent?: string;
  limits?: Limits;
  /** More serve() options, e.g. `maxMessageSize`, `tls` (the fuzzer then connects to its wss: URL) or `directReads`. */
  serve?: Partial<ServeOptions>;
  /** How the fuzzer connects over TLS (e.g. `{ ca }`), when `serve.tls` is given. */
  fuzzerTls?: TlsConnectionOptions;
}

export async function runAgainstServer(label: string, cases: CaseDef[], options: ServerRunOptions = {}): Promise<ServerRun> {
  const handler = options.handler ?? echoFromListener;
  const onConnection = options.onConnection;
  const server: WebSocketServer = await serve(
    { port: 0, host: '127.0.0.1', perMessageDeflate: true, ...options.serve },
    onConnection === undefined
      ? handler
      : (conn, req, context) => {
          onConnection(conn);
          return handler(conn, req, context);
        },
  );
  const run = runAgainstUrl(label, cases, new URL('/runCase', server.url), options.agent, options.limits, options.fuzzerTls);
  return {
    results: run.results,
    async finish() {
      await run.finish();
      await server.close();
    },
  };
}

/**
 * Cases run by the fuzzer as a client against an echo endpoint someone else serves (an
 * adapter's route): each case connects to `endpoint` with `?case=<id>&agent=<agent>` added
 * (over TLS, with `tls`, when it is a wss: URL).
 */
export function runAgainstUrl(label: string, cases: CaseDef[], endpoint: URL, agent = 'rfc6455', limits?: Limits, tls?: TlsConnectionOptions): ServerRun {
  const urlOf = (id: string): URL => {
    const url = new URL(endpoint);
    url.searchParams.set('case', id);
    url.searchParams.set('agent', agent);
    return url;
  };
  return runCases(label, cases, (def, events) => FuzzPeer.connect(urlOf(def.id), events, def.deflate, tls), limits);
}

/** Cases run by the fuzzer as a client over whatever `open` connects it with (one peer per case). */
export function runCases(label: string, cases: CaseDef[], open: (def: CaseDef, events: PeerEvents) => FuzzPeer | Promise<FuzzPeer>, limits?: Limits): ServerRun {
  const results = scheduleAll(cases, (def) => runCase(def, 'client', async (events) => open(def, events)), limits);
  return {
    results,
    async finish() {
      report(label, await Promise.all(results.values()));
    },
  };
}

/** Our side of runAgainstClient, beyond the case list. */
export interface ClientRunOptions {
  /** connect() options (default: none, so its defaults), e.g. `tls: { ca }` or `directReads: false`. */
  connect?: ConnectOptions;
  /** The fuzzer listens over TLS with this key and certificate (the client connects to wss:). */
  tls?: TlsServerSetup;
  /** Called with each connection the client made, once connect() resolved. */
  onConnection?(conn: WebSocketConnection): void;
}

/** The client under test: connect (its default options unless given), then echo every message until the end. */
async function echoClient(url: string, open: Set<WebSocketConnection>, options: ClientRunOptions): Promise<void> {
  let conn: WebSocketConnection | undefined;
  try {
    conn = await (options.connect ? connect(url, options.connect) : connect(url));
    open.add(conn);
    options.onConnection?.(conn);
    const c = conn;
    // The fuzzer's first frames come with the 101; connect() parses them once the code awaiting
    // it has added this listener, so they are echoed as they are parsed, as on the server.
    c.on('message', (message) => void c.send(message).catch(() => undefined));
    await c.whenClosed;
  } catch {
    // The verdict comes from what the fuzzer saw on the wire.
  } finally {
    if (conn) open.delete(conn);
  }
}

/**
 * Cases run by the fuzzer as a server, one listener per case, against our connect() echo client
 * (Autobahn's fuzzingserver mode: the case decides how the fuzzer answers the client's offers).
 */
export function runAgainstClient(label: string, cases: CaseDef[], limits?: Limits, options: ClientRunOptions = {}): ServerRun {
  const clients: Array<Promise<void>> = [];
  const open = new Set<WebSocketConnection>();
  const results = scheduleAll(
    cases,
    (def) =>
      runCase(def, 'server', async (events) => {
        const listener = await listenOnce(events, def.deflate, options.tls);
        clients.push(echoClient(`${listener.url}/runCase?case=${def.id}&agent=rfc6455`, open, options));
        let timer: NodeJS.Timeout | undefined;
        const noClient = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('the client did not connect')), 10_000)));
        try {
          return await Promise.race([listener.peer, noClient]);
        } finally {
          clearTimeout(timer);
          listener.close();
        }
      }),
    limits,
  );
  return {
    results,
    async finish() {
      report(label, await Promise.all(results.values()));
      for (const conn of open) conn.terminate();
      await Promise.all(clients);
    },
  };
}

/**
 * One test per case, named `case <id>: <title> (<verdict>)`, awaiting the case's result from
 * `run()` (set in beforeAll) and checking it with `check`.
 */
export function caseTests(cases: CaseDef[], run: () => ServerRun, verdictOf: (def: CaseDef) => string, check: (def: CaseDef, r: CaseResult) => void): void {
  for (const def of cases) {
    test(
      `case ${def.id}: ${def.title} (${verdictOf(def)})`,
      async () => check(def, await run().results.get(def.id)!),
      CASE_TEST_TIMEOUT,
    );
  }
}

/**
 * One test per case, each asserting the verdict the case must get (`expectedVerdict`);
 * `lateEcho`: the echo under test is handed each message after its whole read was parsed.
 */
export function verdictTests(cases: CaseDef[], run: () => ServerRun, lateEcho = false): void {
  caseTests(
    cases,
    run,
    (def) => {
      const v = expectedVerdict(def.id, lateEcho);
      return `${v.behavior} / ${v.behaviorClose}`;
    },
    (def, r) => expectVerdict(r, expectedVerdict(def.id, lateEcho)),
  );
}
