/**
 * permessage-deflate against python-websockets (/usr/bin/python3) over every combination of its
 * four parameters (RFC 7692 §7.1), both ways: python's client with each offer against our server,
 * our server with each option against python's client, python's server with each configuration
 * against our client, and our client with each option against python's server. Every connection
 * checks that both ends agreed to the same parameters (python's view against our engine's), that
 * the parameters are the ones RFC 7692 §7.1 gives for that offer and configuration, that every
 * message round-trips, and that both directions were compressed on the wire.
 *
 * Window 8: python-websockets compresses with zlib's raw window of the negotiated size, and zlib
 * refuses a raw deflate window of 8 (python raises "Invalid initialization option"), so python
 * cannot be the side that compresses with 8: its own `client_max_window_bits=8` offer and its
 * server's `server_max_window_bits=8` are left out, as are our server's `clientMaxWindowBits: 8`
 * and our client's `serverMaxWindowBits: 8` (python would have to compress with 8). Python
 * inflating what we compress for a window of 8 (with zlib's 9, whose match distances stay within
 * 250 bytes) is in the matrix both ways.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { Socket } from 'node:net';
import { connect, EOF, serve, type DeflateParams, type PerMessageDeflateOptions, type WebSocketConnection, type WebSocketServer } from 'rfc6455';
import { compressibleBytes, compressibleText, extensionOf } from './helpers.js';

const PYTHON = '/usr/bin/python3';
const SCRIPT = resolve(__dirname, 'python-matrix.py');

/** Keyword arguments of python-websockets' Client/ServerPerMessageDeflateFactory. */
interface PyConfig {
  server_no_context_takeover?: boolean;
  client_no_context_takeover?: boolean;
  server_max_window_bits?: number | null;
  client_max_window_bits?: number | boolean | null;
}

/** The parameters of python's PerMessageDeflate (local: python's own direction). */
interface PyParams {
  local_no_context_takeover: boolean;
  remote_no_context_takeover: boolean;
  local_max_window_bits: number;
  remote_max_window_bits: number;
}

const FLAGS: Array<[boolean, boolean]> = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
];
const BITS = [9, 10, 11, 12, 13, 14, 15];

/** Python's parameters as ours, given which side python is. */
function fromPython(p: PyParams, pythonSide: 'client' | 'server'): DeflateParams {
  const client = pythonSide === 'client';
  return {
    serverNoContextTakeover: client ? p.remote_no_context_takeover : p.local_no_context_takeover,
    clientNoContextTakeover: client ? p.local_no_context_takeover : p.remote_no_context_takeover,
    serverMaxWindowBits: client ? p.remote_max_window_bits : p.local_max_window_bits,
    clientMaxWindowBits: client ? p.local_max_window_bits : p.remote_max_window_bits,
  };
}

function socketOf(conn: WebSocketConnection): Socket {
  return conn.transport.stream as Socket;
}

// ---- python as the client ---------------------------------------------------------------------

type ClientResult = { params: PyParams | null; ok: boolean } | { error: string };

function runPythonClient(runs: Array<[string, PyConfig]>): Promise<ClientResult[]> {
  return new Promise((resolvePromise, reject) => {
    execFile(PYTHON, [SCRIPT, 'client', JSON.stringify(runs)], { timeout: 60_000, maxBuffer: 1 << 24 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`python client failed: ${error.message}\n${stderr}`));
      else resolvePromise(stdout.trim().split('\n').map((line) => JSON.parse(line) as ClientResult));
    });
  });
}

/** Python's MESSAGES, in bytes (the fragmented one counted whole). */
const PYTHON_PAYLOAD = 3000 + 3000 + 2000 + 2100 + 0 + Buffer.byteLength('short ✓');

interface Echo {
  server: WebSocketServer;
  conns: WebSocketConnection[];
}

async function echo(perMessageDeflate: PerMessageDeflateOptions): Promise<Echo> {
  const conns: WebSocketConnection[] = [];
  const server = await serve({ port: 0, host: '127.0.0.1', perMessageDeflate }, async (conn) => {
    conns.push(conn);
    for await (const message of conn) await conn.send(message).catch(() => undefined);
  });
  return { server, conns };
}

/** Checks one python-client connection: agreement, the expected parameters, echoes, compression both ways. */
async function checkPythonClient(conn: WebSocketConnection | undefined, result: ClientResult | undefined, expected: DeflateParams, label: string): Promise<void> {
  expect([label, result]).toEqual([label, { params: expect.anything(), ok: true }]);
  if (conn === undefined || result === undefined || 'error' in result) throw new Error(`${label}: no connection`);
  await conn.whenClosed;
  expect([label, extensionOf(conn)?.params]).toEqual([label, expected]);
  expect([label, fromPython(result.params!, 'client')]).toEqual([label, expected]);
  // Both directions compressed: about 10 KB of messages each way took far fewer bytes.
  expect([label, socketOf(conn).bytesRead < PYTHON_PAYLOAD / 2, socketOf(conn).bytesWritten < PYTHON_PAYLOAD / 2]).toEqual([label, true, true]);
}

describe('python-websockets client → our server', () => {
  test.each(FLAGS)('every offer python can make (server_no_context_takeover %p, client_no_context_takeover %p × server_max_window_bits none, 8..15 × client_max_window_bits none, bare, 9..15) is granted as offered by our defaults; both ends agree; messages round-trip compressed', async (snct, cnct) => {
    const s = await echo({});
    try {
      const configs: PyConfig[] = [];
      for (const sbits of [null, 8, ...BITS]) {
        for (const cbits of [null, true, ...BITS]) {
          configs.push({ server_no_context_takeover: snct, client_no_context_takeover: cnct, server_max_window_bits: sbits, client_max_window_bits: cbits });
        }
      }
      const results = await runPythonClient(configs.map((c) => [s.server.url, c]));
      expect(results).toHaveLength(configs.length);
      expect(s.conns).toHaveLength(configs.length);
      for (const [i, c] of configs.entries()) {
        // RFC 7692 §7.1: each parameter granted as offered; a bare client_max_window_bits leaves 15.
        await checkPythonClient(s.conns[i], results[i], {
          serverNoContextTakeover: c.server_no_context_takeover === true,
          clientNoContextTakeover: c.client_no_context_takeover === true,
          serverMaxWindowBits: c.server_max_window_bits ?? 15,
          clientMaxWindowBits: typeof c.client_max_window_bits === 'number' ? c.client_max_window_bits : 15,
        }, JSON.stringify(c));
      }
    } finally {
      await s.server.close();
    }
  });

  test('our server with each option against python offering nothing but client_max_window_bits, and offering windows 12/11: the answer is the smaller window, flags imposed', async () => {
    const options: PerMessageDeflateOptions[] = [
      { serverNoContextTakeover: true },
      { clientNoContextTakeover: true },
      ...[8, ...BITS].map((serverMaxWindowBits) => ({ serverMaxWindowBits })),
      ...BITS.map((clientMaxWindowBits) => ({ clientMaxWindowBits })),
      { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 10, clientMaxWindowBits: 9 },
    ];
    const offers: PyConfig[] = [{}, { server_max_window_bits: 12, client_max_window_bits: 11 }];
    const servers = await Promise.all(options.map((o) => echo(o)));
    try {
      const runs: Array<[string, PyConfig]> = [];
      for (const s of servers) for (const offer of offers) runs.push([s.server.url, offer]);
      const results = await runPythonClient(runs);
      expect(results).toHaveLength(runs.length);
      for (const [k, o] of options.entries()) {
        for (const [j, offer] of offers.entries()) {
          await checkPythonClient(servers[k]!.conns[j], results[k * offers.length + j], {
            serverNoContextTakeover: o.serverNoContextTakeover === true,
            clientNoContextTakeover: o.clientNoContextTakeover === true,
            serverMaxWindowBits: Math.min(o.serverMaxWindowBits ?? 15, offer.server_max_window_bits ?? 15),
            clientMaxWindowBits: Math.min(o.clientMaxWindowBits ?? 15, typeof offer.client_max_window_bits === 'number' ? offer.client_max_window_bits : 15),
          }, JSON.stringify([o, offer]));
        }
      }
    } finally {
      await Promise.all(servers.map((s) => s.server.close()));
    }
  });
});

// ---- python as the server ---------------------------------------------------------------------

/** Python servers still running (a failed test leaves its own): killed after each test. */
const children = new Set<ChildProcess>();
afterEach(() => {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
});

/**
 * Starts one python echo server per configuration; `agreed()` closes them and gives what each
 * server's connections agreed to, in connection order.
 */
async function pythonServers(configs: PyConfig[]): Promise<{ urls: string[]; agreed: () => Promise<Array<Array<PyParams | null>>> }> {
  const child = spawn(PYTHON, [SCRIPT, 'server', JSON.stringify(configs)], { stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.done === true) throw new Error(`python server failed: ${stderr}`);
  const { ports } = JSON.parse(first.value as string) as { ports: number[] };
  return {
    urls: ports.map((port) => `ws://127.0.0.1:${port}/`),
    agreed: async () => {
      child.stdin.end();
      const out: Array<Array<PyParams | null>> = configs.map(() => []);
      for await (const line of { [Symbol.asyncIterator]: () => lines }) {
        const { server, params } = JSON.parse(line as string) as { server: number; params: PyParams | null };
        out[server]!.push(params);
      }
      return out;
    },
  };
}

const OUR_MESSAGES: Array<string | Buffer> = [compressibleText(3000, 1), compressibleText(3000, 1), compressibleBytes(2000), '', 'short ✓'];
const OUR_PAYLOAD = 3000 + 3000 + 2000 + 2100 + Buffer.byteLength('short ✓');

/** Our client's side of one connection: messages and a fragmented one round-trip; the engine's parameters and the wire byte counts. */
async function ourClientRun(url: string, perMessageDeflate: PerMessageDeflateOptions): Promise<{ params: DeflateParams | undefined; ok: boolean; read: number; written: number }> {
  const conn = await connect(url, { perMessageDeflate });
  let ok = true;
  for (const m of OUR_MESSAGES) {
    await conn.send(m);
    const got = await conn.recv();
    ok &&= typeof m === 'string' ? got === m : Buffer.isBuffer(got) && got.equals(m);
  }
  // Fragmented by us, each fragment compressed on its own (RSV1 on the first only).
  const pieces = [compressibleText(700, 2), compressibleText(900, 3), compressibleText(500, 4)];
  await conn.sendStream(pieces, { binary: false });
  ok &&= (await conn.recv()) === pieces.join('');
  await conn.close(1000);
  ok &&= (await conn.recv()) === EOF && conn.closeStatus === 1000;
  const socket = socketOf(conn);
  return { params: extensionOf(conn)?.params, ok, read: socket.bytesRead, written: socket.bytesWritten };
}

describe('our client → python-websockets server', () => {
  test.each(FLAGS)('python servers with every configuration (server_no_context_takeover %p, client_no_context_takeover %p × server_max_window_bits none, 9..15 × client_max_window_bits none, 8..15) and our default offer: both ends agree to what python chose; messages round-trip compressed', async (snct, cnct) => {
    const configs: PyConfig[] = [];
    for (const sbits of [null, ...BITS]) {
      for (const cbits of [null, 8, ...BITS]) {
        configs.push({ server_no_context_takeover: snct, client_no_context_takeover: cnct, server_max_window_bits: sbits, client_max_window_bits: cbits });
      }
    }
    const py = await pythonServers(configs);
    const runs = [];
    for (const url of py.urls) runs.push(await ourClientRun(url, {}));
    const agreed = await py.agreed();
    for (const [i, c] of configs.entries()) {
      const label = JSON.stringify(c);
      // Our offer is `permessage-deflate; client_max_window_bits`: python imposes each setting.
      const expected: DeflateParams = {
        serverNoContextTakeover: c.server_no_context_takeover === true,
        clientNoContextTakeover: c.client_no_context_takeover === true,
        serverMaxWindowBits: c.server_max_window_bits ?? 15,
        clientMaxWindowBits: typeof c.client_max_window_bits === 'number' ? c.client_max_window_bits : 15,
      };
      const run = runs[i]!;
      const theirs = agreed[i]!.map((p) => p && fromPython(p, 'server'));
      expect([label, run.ok, run.params, theirs]).toEqual([label, true, expected, [expected]]);
      expect([label, run.read < OUR_PAYLOAD / 2, run.written < OUR_PAYLOAD / 2]).toEqual([label, true, true]);
    }
  });

  test('our client with each option against python servers with defaults and with every parameter set: the smaller window and either side’s flags are agreed; messages round-trip compressed', async () => {
    const options: PerMessageDeflateOptions[] = [
      {},
      { serverNoContextTakeover: true },
      { clientNoContextTakeover: true },
      ...BITS.map((serverMaxWindowBits) => ({ serverMaxWindowBits })),
      ...[8, ...BITS].map((clientMaxWindowBits) => ({ clientMaxWindowBits })),
      { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 10, clientMaxWindowBits: 8 },
    ];
    const configs: PyConfig[] = [{}, { server_no_context_takeover: true, client_no_context_takeover: true, server_max_window_bits: 11, client_max_window_bits: 10 }];
    const py = await pythonServers(configs);
    const runs = [];
    for (const url of py.urls) for (const o of options) runs.push(await ourClientRun(url, o));
    const agreed = await py.agreed();
    for (const [k, c] of configs.entries()) {
      for (const [j, o] of options.entries()) {
        const label = JSON.stringify([c, o]);
        const run = runs[k * options.length + j]!;
        const expected: DeflateParams = {
          serverNoContextTakeover: o.serverNoContextTakeover === true || c.server_no_context_takeover === true,
          clientNoContextTakeover: o.clientNoContextTakeover === true || c.client_no_context_takeover === true,
          serverMaxWindowBits: Math.min(o.serverMaxWindowBits ?? 15, c.server_max_window_bits ?? 15),
          clientMaxWindowBits: Math.min(o.clientMaxWindowBits ?? 15, typeof c.client_max_window_bits === 'number' ? c.client_max_window_bits : 15),
        };
        const theirs = agreed[k]![j];
        expect([label, run.ok, run.params, theirs && fromPython(theirs, 'server')]).toEqual([label, true, expected, expected]);
        expect([label, run.read < OUR_PAYLOAD / 2, run.written < OUR_PAYLOAD / 2]).toEqual([label, true, true]);
      }
    }
  });
});
