#!/usr/bin/env node
// Echo over TLS (wss:): `node bench/tls.mjs [--quick] [--reps N] [--workloads 64,16384,65536,262144]`
//
// Servers, each in a fresh process pinned to CPU 0: our `serve({ tls })` echo and `ws` 8 over an
// `https.Server` (with bufferutil when installed, as `ws` users run it), both with the test
// certificate of test/fixtures/tls and compression off. The client is a Node process pinned to
// CPU 1: TLS sockets that do a real handshake and then keep D masked binary frames of S bytes in
// flight per connection, counting the echoes by their headers. A Node client saturates its core
// here (the encryption is in it too), so the figure is the server's CPU time per echoed message
// (from /proc/PID/stat over the measured window), not messages per second. Not part of run.mjs.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes, randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { lineReader } from './child-lines.mjs';

const BENCH = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH);
const FIXTURES = path.join(ROOT, 'test/fixtures/tls');
const argv = process.argv.slice(2);
const opt = (name, fallback) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : fallback);

if (argv[0] === '--server') await runServer(argv[1], Number(argv[2]));
else if (argv[0] === '--client') await runClient(...argv.slice(1).map(Number));
else await main();

// ------------------------------------------------------------------ servers (child processes)
async function runServer(impl, port) {
  const key = readFileSync(path.join(FIXTURES, 'key.pem'));
  const cert = readFileSync(path.join(FIXTURES, 'cert.pem'));
  if (impl === 'ws') {
    const { WebSocketServer } = await import('ws');
    const server = https.createServer({ key, cert });
    const wss = new WebSocketServer({ server, maxPayload: 4 << 20, perMessageDeflate: false, clientTracking: false });
    wss.on('connection', (ws) => {
      ws.on('message', (data, binary) => ws.send(data, { binary }));
      ws.on('error', () => {});
    });
    await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  } else {
    const { serve } = await import(pathToFileURL(path.join(ROOT, 'packages/rfc6455/dist/index.js')).href);
    await serve({ port, host: '127.0.0.1', tls: { key, cert }, maxMessageSize: 4 << 20, perMessageDeflate: false }, (conn) => {
      conn.on('message', (m) => conn.send(m));
    });
  }
  process.on('SIGTERM', () => process.exit(0));
  console.log('listening');
}

// ------------------------------------------------------------------ client (child process)
async function runClient(port, conns, depth, size, warmup, duration) {
  const hl = size < 126 ? 2 : size < 65536 ? 4 : 10;
  const frame = Buffer.alloc(hl + 4 + size);
  frame[0] = 0x82;
  if (size < 126) frame[1] = 0x80 | size;
  else if (size < 65536) (frame[1] = 0x80 | 126), frame.writeUInt16BE(size, 2);
  else (frame[1] = 0x80 | 127), frame.writeUInt32BE(size, 6);
  randomFillSync(frame, hl, 4 + size);
  let counting = false;
  let count = 0;
  const open = () =>
    new Promise((resolve, reject) => {
      const s = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
      s.on('error', reject);
      s.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      let head = true;
      let buf = Buffer.alloc(0);
      s.on('data', (d) => {
        buf = buf.length ? Buffer.concat([buf, d]) : d;
        if (head) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          if (!buf.subarray(0, 12).toString('latin1').startsWith('HTTP/1.1 101')) return reject(new Error(buf.subarray(0, end).toString('latin1')));
          head = false;
          buf = buf.subarray(end + 4);
          resolve(s);
          for (let i = 0; i < depth; i++) s.write(frame);
        }
        // Whole echoes (unmasked server frames): each one sends the next message.
        let at = 0;
        for (;;) {
          if (buf.length - at < 2) break;
          let length = buf[at + 1] & 127;
          let h = 2;
          if (length === 126) {
            if (buf.length - at < 4) break;
            length = buf.readUInt16BE(at + 2);
            h = 4;
          } else if (length === 127) {
            if (buf.length - at < 10) break;
            length = buf.readUInt32BE(at + 6);
            h = 10;
          }
          if (buf.length - at < h + length) break;
          at += h + length;
          if (counting) count++;
          s.write(frame);
        }
        buf = buf.subarray(at);
      });
    });
  for (let i = 0; i < conns; i++) await open();
  await new Promise((resolve) => setTimeout(resolve, warmup * 1000));
  console.log('measuring');
  counting = true;
  const t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  await new Promise((resolve) => setTimeout(resolve, duration * 1000));
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  console.log(JSON.stringify({ messages: count, wall, clientCpu: (cpu.user + cpu.system) / 1e6 / wall }));
  process.exit(0);
}

// ------------------------------------------------------------------ runner
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function main() {
  const QUICK = argv.includes('--quick');
  const REPS = Number(opt('--reps', QUICK ? 1 : 3));
  const WARMUP = QUICK ? 0.5 : 1;
  const DURATION = QUICK ? 1.5 : 4;
  const SIZES = opt('--workloads', '64,16384,65536,262144').split(',').map(Number);
  // Connections and messages in flight per size (as in the echo bench: many small, few large).
  const shape = (size) => (size <= 64 ? [50, 1] : size <= 16384 ? [10, 4] : size <= 65536 ? [4, 2] : [4, 1]);
  const IMPLS = ['ws', 'rfc6455'];
  const taskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;
  const pinned = (cpu, args) => (taskset ? spawn('taskset', ['-c', String(cpu), process.execPath, ...args], { stdio: ['ignore', 'pipe', 'inherit'] }) : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] }));
  const results = {};
  for (let rep = 0; rep < REPS; rep++) {
    for (const size of SIZES) {
      for (const impl of IMPLS) {
        const port = 20000 + Math.floor(Math.random() * 20000);
        const server = pinned(0, [fileURLToPath(import.meta.url), '--server', impl, String(port)]);
        try {
          await lineReader(server, `${impl} server`)();
          const [conns, depth] = shape(size);
          const client = pinned(1, [fileURLToPath(import.meta.url), '--client', String(port), String(conns), String(depth), String(size), String(WARMUP), String(DURATION)]);
          const next = lineReader(client, 'client');
          await next(); // 'measuring'
          const cpu0 = cpuSeconds(server.pid);
          const r = JSON.parse(await next());
          const serverCpu = cpuSeconds(server.pid) - cpu0;
          const row = { rate: r.messages / r.wall, usPerMessage: (serverCpu * 1e6) / r.messages, serverCpu: serverCpu / r.wall, clientCpu: r.clientCpu };
          (results[`${size}:${impl}`] ??= []).push(row);
          console.error(`${size} B ${impl} #${rep + 1}: ${(row.rate / 1000).toFixed(1)}k msg/s, ${row.usPerMessage.toFixed(2)} µs server CPU each, server ${(row.serverCpu * 100).toFixed(0)} %, client ${(row.clientCpu * 100).toFixed(0)} %`);
        } finally {
          server.kill('SIGTERM');
        }
      }
    }
  }
  const median = (v) => [...v].sort((a, b) => a - b)[Math.floor((v.length - 1) / 2)];
  const out = [
    `## TLS echo ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}`,
    '',
    `Node ${process.version}, ${REPS} repetition(s) interleaved, medians; server on CPU 0, client on CPU 1${taskset ? ' (taskset)' : ' (no taskset: not pinned)'}. The figure is the server's CPU time per echoed message (lower is better); "÷ ws" is the median of per-repetition ratios.`,
    '',
    '| message | server | server CPU per message | ÷ ws | messages/s | server CPU | client CPU |',
    '|---|---|---:|---:|---:|---:|---:|',
  ];
  for (const size of SIZES) {
    const base = results[`${size}:ws`];
    for (const impl of IMPLS) {
      const runs = results[`${size}:${impl}`];
      const ratio = median(runs.map((r, i) => r.usPerMessage / base[i].usPerMessage));
      out.push(`| ${size} B, ${shape(size)[0]} conns, ${shape(size)[1]} in flight | ${impl === 'ws' ? '`ws` over `https.Server`' : 'rfc6455 `serve({ tls })`'} | ${median(runs.map((r) => r.usPerMessage)).toFixed(2)} µs | ${ratio.toFixed(2)}× | ${(median(runs.map((r) => r.rate)) / 1000).toFixed(1)} k | ${(median(runs.map((r) => r.serverCpu)) * 100).toFixed(0)} % | ${(median(runs.map((r) => r.clientCpu)) * 100).toFixed(0)} % |`);
    }
  }
  console.log(out.join('\n'));
}
