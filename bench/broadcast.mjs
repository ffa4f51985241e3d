#!/usr/bin/env node
// Fan-out: one server sends the same message to every connection,
// `node bench/broadcast.mjs [--quick] [--workloads text64,text64-burst,json16k,json16k-deflate]`.
//
// Servers, each in a fresh process pinned to CPU 0 (the clients to CPU 1 where taskset exists):
//   ws          ws 8: `for (const c of wss.clients) c.send(data)`, the way its docs broadcast
//   rfc6455     the same loop over `server.connections` with `conn.send(data)`
//   broadcast   rfc6455's `server.broadcast(data)`: encoded once, compressed once per zlib setting
// Workloads: 64 B text; 16 KiB of JSON text; the same JSON with permessage-deflate, the server
// asking for server_no_context_takeover (every message compressed from a fresh context, which
// lets broadcast() compress it once for everybody; ws is given the same option).
//
// The clients are bench/loadgen's sink mode (C, epoll, one process pinned to the other core, built
// with the system compiler as bench/run.mjs builds it): real handshakes, then it only reads, parsing
// frame headers to count whole messages and check their opcode and length (no inflating). Its CPU
// use is printed beside each figure. A round is one message to
// every connection; the server sends a round per event-loop turn (setImmediate), as a server
// relaying a stream of events would, or (the burst workload) ten rounds per turn, as a server
// relaying a publisher's messages read in one chunk would; the uncompressed 16 KiB workload sends
// a round every 25 ms instead (see there). Figures: deliveries per second from the first round to the
// last message received, and the server's CPU time per delivery over the same span.
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { lineReader } from './child-lines.mjs';
import { buildLoadgen, LOADGEN } from './loadgen/build.mjs';

const BENCH = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH);
const argv = process.argv.slice(2);

// ------------------------------------------------------------------ server (child process)
if (argv[0] === '--server') {
  const impl = argv[1];
  const deflate = argv[2] === 'deflate' ? { serverNoContextTakeover: true } : false;
  let send;
  let port;
  if (impl === 'ws') {
    const { WebSocketServer } = await import('ws');
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: deflate });
    await new Promise((resolve) => wss.on('listening', resolve));
    port = wss.address().port;
    send = (data) => {
      for (const c of wss.clients) c.send(data);
    };
  } else {
    const { serve } = await import(pathToFileURL(path.join(ROOT, 'packages/rfc6455/dist/index.js')).href);
    const server = await serve({ port: 0, host: '127.0.0.1', perMessageDeflate: deflate }, () => {});
    port = server.port;
    send =
      impl === 'broadcast'
        ? (data) => server.broadcast(data)
        : (data) => {
            for (const c of server.connections) void c.send(data);
          };
  }
  let start;
  process.on('message', async (m) => {
    if (m.go) {
      const data = makeMessage(m.go.size);
      start = process.cpuUsage();
      for (let r = 0; r < m.go.rounds; r += m.go.burst) {
        for (let k = 0; k < m.go.burst; k++) send(data);
        await new Promise((resolve) => (m.go.paceMs ? setTimeout(resolve, m.go.paceMs) : setImmediate(resolve)));
      }
    } else if (m.cpu) {
      const u = process.cpuUsage(start);
      process.send({ cpuMs: (u.user + u.system) / 1000 });
    }
  });
  process.on('SIGTERM', () => process.exit(0));
  process.send({ port });
} else {
  await main();
}

/**
 * A text message of `size` bytes: a JSON array of chat-like records, padded. Made flat (one
 * sequential string, as JSON.stringify returns) rather than left as the rope that `+=` builds:
 * V8 measures and writes a rope piece by piece, on every send, in every library.
 */
function makeMessage(size) {
  let json = '[';
  for (let i = 0; json.length < size - 100; i++) {
    json += JSON.stringify({ id: i, user: `user${i % 37}`, text: `hello world message number ${i}`, ts: 1733480000000 + i * 17 }) + ',';
  }
  return Buffer.from((json + '0]').padEnd(size, ' ').slice(0, size), 'latin1').toString('latin1');
}

// ------------------------------------------------------------------ runner
async function main() {
  const QUICK = argv.includes('--quick');
  const CONNS = QUICK ? 300 : 1000;
  const REPS = QUICK ? 1 : 3;
  const WORKLOADS = [
    { id: 'text64', title: '64 B text', size: 64, rounds: QUICK ? 50 : 200, deflate: false },
    { id: 'text64-burst', title: '64 B text, bursts of 10 messages per event-loop turn', size: 64, rounds: QUICK ? 50 : 200, burst: 10, deflate: false },
    // Paced: at full speed the clients' core saturates first (1 GB/s through 1000 sockets), and a
    // saturated reader makes every server's writes costlier (full socket buffers, partial writes).
    { id: 'json16k', title: '16 KiB JSON text, a round every 25 ms', size: 16384, rounds: QUICK ? 30 : 100, paceMs: 25, deflate: false },
    { id: 'json16k-deflate', title: '16 KiB JSON text, permessage-deflate (server_no_context_takeover)', size: 16384, rounds: QUICK ? 5 : 20, deflate: true },
  ];
  const only = argv.includes('--workloads') ? argv[argv.indexOf('--workloads') + 1].split(',') : undefined;
  if (only) WORKLOADS.splice(0, WORKLOADS.length, ...WORKLOADS.filter((w) => only.includes(w.id)));
  const IMPLS = ['ws', 'rfc6455', 'broadcast'];
  buildLoadgen();
  const taskset = spawnSync('taskset', ['-c', '1', 'true']).status === 0;
  if (taskset) spawnSync('taskset', ['-p', '-c', '1', String(process.pid)], { stdio: 'ignore' });

  const results = {};
  for (const w of WORKLOADS) {
    for (let rep = 0; rep < REPS; rep++) {
      for (const impl of IMPLS) {
        const r = await runOne(impl, w, CONNS, taskset);
        (results[`${w.id}:${impl}`] ??= []).push(r);
        console.error(`${w.id} ${impl} #${rep + 1}: ${(r.rate / 1000).toFixed(1)}k deliveries/s, ${r.usPerDelivery.toFixed(2)} µs server CPU each, clients ${r.clientCpu.toFixed(0)} %`);
      }
    }
  }
  const median = (v) => {
    const s = [...v].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  const lines = [
    `## Broadcast ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}`,
    '',
    `Node ${process.version}, ${CONNS} connections, ${REPS} repetition(s) interleaved, medians; server on CPU 0${taskset ? ', clients on CPU 1 (taskset)' : ' (no taskset: not pinned)'}. The figure is the server's CPU time per delivery (lower is better); "÷ ws" is the median of per-repetition ratios to the \`ws\` loop's.`,
    '',
    '| workload | server | server CPU per delivery | ÷ ws | deliveries/s | payload bytes on the wire | clients\' CPU |',
    '|---|---|---:|---:|---:|---:|---:|',
  ];
  for (const w of WORKLOADS) {
    const base = results[`${w.id}:ws`];
    for (const impl of IMPLS) {
      const runs = results[`${w.id}:${impl}`];
      const ratio = median(runs.map((r, i) => r.usPerDelivery / base[i].usPerDelivery));
      lines.push(
        `| ${w.title} | ${impl === 'broadcast' ? 'rfc6455 `broadcast()`' : impl === 'rfc6455' ? 'rfc6455 `send()` loop' : '`ws` `send()` loop'} | ${median(runs.map((r) => r.usPerDelivery)).toFixed(2)} µs | ${ratio.toFixed(2)}× | ${(median(runs.map((r) => r.rate)) / 1000).toFixed(1)} k | ${Math.round(median(runs.map((r) => r.wireBytes)))} | ${median(runs.map((r) => r.clientCpu)).toFixed(0)} % |`,
      );
    }
  }
  console.log(lines.join('\n'));
}

async function runOne(impl, w, conns, taskset) {
  const args = [path.join(BENCH, 'broadcast.mjs'), '--server', impl, w.deflate ? 'deflate' : 'plain'];
  const child = taskset
    ? spawn('taskset', ['-c', '0', process.execPath, ...(process.env.BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir=' + process.env.BENCH_PROF] : []), ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], cwd: ROOT })
    : spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], cwd: ROOT });
  try {
    const port = await new Promise((resolve, reject) => {
      child.once('message', (m) => resolve(m.port));
      child.once('exit', (code) => reject(new Error(`${impl} server exited (${code})`)));
    });
    const expected = conns * w.rounds;
    // The clients: loadgen's sink mode, one epoll process pinned to the other core.
    const args = ['--mode', 'sink', '--port', String(port), '--conns', String(conns), '--expect', String(expected), '--size', String(w.size), '--opcode', 'text', '--hold', '120', ...(w.deflate ? ['--offer-deflate', '1'] : [])];
    const sink = taskset ? spawn('taskset', ['-c', '1', LOADGEN, ...args], { stdio: ['pipe', 'pipe', 'inherit'] }) : spawn(LOADGEN, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    const next = lineReader(sink, `${impl}: loadgen sink`);
    const nextLine = async () => JSON.parse(await next());
    const ready = await nextLine();
    if (!ready.ready) throw new Error(`${impl}: ${ready.error ?? 'sink setup failed'}`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const t0 = performance.now();
    child.send({ go: { rounds: w.rounds, size: w.size, burst: w.burst ?? 1, paceMs: w.paceMs ?? 0 } });
    const result = await nextLine();
    const wall = performance.now() - t0;
    child.send({ cpu: true });
    const { cpuMs } = await new Promise((resolve) => child.on('message', (m) => m.cpuMs !== undefined && resolve(m)));
    sink.stdin.end();
    if (!result.ok) throw new Error(`${impl}: sink: ${JSON.stringify(result)}`);
    if (w.deflate && result.compressed !== expected) throw new Error(`${impl}: ${result.compressed} of ${expected} messages compressed`);
    return {
      rate: expected / (wall / 1000),
      usPerDelivery: (cpuMs * 1000) / expected,
      wireBytes: result.bytes / expected,
      clientCpu: ((result.cpu_s * 1000) / wall) * 100,
    };
  } finally {
    child.kill('SIGTERM');
  }
}
