/**
 * The Autobahn-style cases of sections 1-7 and 10 over HTTP/2 (RFC 8441 extended CONNECT): the
 * fuzzer, as an HTTP/2 client trusting the committed self-signed certificate, opens one session
 * per case (so that no case can disturb another's flow control or session) and on it one
 * `CONNECT :protocol websocket` stream to `serve({ http2: true, tls, perMessageDeflate: true })`
 * with the `message`-listener echo of server.test.ts. Its masked frames are written to the
 * stream, the server's frames read from it. Same verdicts as over TCP.
 *
 * The fuzzer's TCP bookkeeping maps onto the stream through `H2StreamShim`, a Duplex that
 * `FuzzPeer.over()` runs on:
 * - "the peer closed TCP": the server ended the stream: END_STREAM (what our server does at the end
 *   of a closing handshake, `transport.end()` in packages/rfc6455/src/http2.ts), or RST_STREAM
 *   with NO_ERROR or CANCEL (our `transport.abort()`). As a TCP socket without half-open, the shim
 *   then ends its own side, and reports `'close'` once the stream is closed.
 * - "dropped": RST_STREAM with any other code (or the session failing the stream): the shim
 *   reports an `'error'` (noted as `tcp:error RST_STREAM_<code>`) before `'close'`.
 * - the fuzzer "closing TCP" (`destroy()`, its only way as a client): RST_STREAM(CANCEL), as our
 *   own transport aborts; its orderly `end()` is END_STREAM.
 * No verdict differs from TCP: in every case (a one-off tally) our server ended the stream with
 * END_STREAM after the closing handshake, and the fuzzer never had to reset it.
 */
import { connect as h2connect, constants as h2, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { Duplex } from 'node:stream';
import { serve, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { TLS } from '../../http2/helpers.js';
import { FuzzPeer, type PeerEvents } from './fuzzer.js';
import { allCases, CASE_TEST_TIMEOUT } from './harness.js';
import { echoFromListener, runCases, type ServerRun, verdictTests } from './our-side.js';

const section = (id: string): number => Number(id.split('.')[0]);
const cases = allCases.filter((c) => section(c.id) <= 7 || section(c.id) === 10);

/** An HTTP/2 stream as the fuzzer's transport: see the file comment. */
class H2StreamShim extends Duplex {
  constructor(private readonly h2stream: ClientHttp2Stream) {
    // Destroyed only by the fuzzer (an abort) or once the HTTP/2 stream closed, not when both
    // halves ended: the stream is then closed by HTTP/2 itself, with no RST_STREAM of ours.
    super({ allowHalfOpen: false, autoDestroy: false });
    h2stream.on('data', (chunk: Buffer) => this.push(chunk));
    h2stream.on('end', () => this.push(null));
    h2stream.on('error', () => undefined); // judged by the RST_STREAM code at 'close'
    h2stream.on('close', () => {
      const code = h2stream.rstCode ?? h2.NGHTTP2_NO_ERROR;
      if (code === h2.NGHTTP2_NO_ERROR || code === h2.NGHTTP2_CANCEL) this.destroy();
      else this.destroy(Object.assign(new Error(`RST_STREAM ${code}`), { code: `RST_STREAM_${code}` }));
    });
  }
  override _read(): void {}
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.h2stream.write(chunk, () => callback());
  }
  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.h2stream.write(Buffer.concat(chunks.map((c) => c.chunk)), () => callback());
  }
  override _final(callback: (error?: Error | null) => void): void {
    if (this.h2stream.destroyed || this.h2stream.writableEnded) callback();
    else this.h2stream.end(() => callback());
  }
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.h2stream.destroyed) this.h2stream.close(h2.NGHTTP2_CANCEL);
    callback(error);
  }
}

/** Opens an HTTP/2 session trusting the fixture certificate, once the server's SETTINGS arrived. */
function openSession(origin: string): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = h2connect(origin, { ca: TLS.cert });
    session.on('error', () => undefined);
    session.once('close', () => reject(new Error('the HTTP/2 session closed before its SETTINGS')));
    session.once('remoteSettings', (settings) => {
      if (settings.enableConnectProtocol === true) resolve(session);
      else reject(new Error('the server did not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL'));
    });
  });
}

const sessions = new Set<ClientHttp2Session>();
const closeSession = (session: ClientHttp2Session): Promise<void> =>
  new Promise((resolve) => {
    if (session.destroyed) return resolve();
    session.once('close', () => resolve());
    session.close();
  });

/** Every case: a session of its own, one extended CONNECT on it, the fuzzer on the stream. */
async function openCase(origin: string, id: string, events: PeerEvents): Promise<FuzzPeer> {
  const session = await openSession(origin);
  sessions.add(session);
  const stream = session.request(
    {
      ':method': 'CONNECT',
      ':protocol': 'websocket',
      ':scheme': 'https',
      ':path': `/runCase?case=${id}&agent=rfc6455`,
      ':authority': new URL(origin).host,
      'sec-websocket-version': '13',
    },
    { endStream: false },
  );
  const peer = FuzzPeer.over(new H2StreamShim(stream), events);
  stream.once('response', (headers) => {
    const status = Number(headers[':status']);
    // RFC 8441 §5: 200 answers the CONNECT; the fuzzer offered no extension, so none may come back.
    if (status !== 200) return peer.openFailed(`the server answered the CONNECT with ${status}`);
    if (headers['sec-websocket-extensions'] !== undefined) return peer.openFailed(`an extension nobody offered: ${String(headers['sec-websocket-extensions'])}`);
    peer.opened();
  });
  void peer.finished.then(() => closeSession(session));
  return peer;
}

/** Our side of every connection, to check afterwards that it ran over HTTP/2. */
const serverConns: WebSocketConnection[] = [];

let server: WebSocketServer;
let run: ServerRun;
beforeAll(async () => {
  server = await serve({ port: 0, host: '127.0.0.1', http2: true, tls: TLS, perMessageDeflate: true }, (conn, req, context) => {
    serverConns.push(conn);
    return echoFromListener(conn, req, context);
  });
  const origin = `https://${new URL(server.url).host}`;
  run = runCases('our server over HTTP/2 (fuzzer as client)', cases, (def, events) => openCase(origin, def.id, events));
});
afterAll(async () => {
  await run.finish();
  await Promise.all([...sessions].map(closeSession));
  await server.close();
});

test('the case list is sections 1-7 and 10 (247 cases)', () => {
  expect(cases).toHaveLength(247);
});

describe('Autobahn-style cases against serve({ http2: true, tls }) (fuzzer as HTTP/2 client)', () => {
  test('every case ran on its own extended CONNECT stream', async () => {
    await Promise.all(run.results.values());
    expect(serverConns).toHaveLength(cases.length);
    expect(serverConns.filter((c) => c.transport.kind !== 'http2')).toEqual([]);
    expect(sessions.size).toBe(cases.length);
  }, CASE_TEST_TIMEOUT);
  verdictTests(cases, () => run);
});
