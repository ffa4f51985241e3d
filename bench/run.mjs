#!/usr/bin/env node
// Benchmark runner: `node bench/run.mjs [--quick] [--only name,...] [--workloads id,...] [--reps N] [--no-codec]`
//
// Builds the C load generator, then for each workload runs every server in a fresh process,
// interleaved (A B C A B C …) for N repetitions, server pinned to core 0 and the generator to
// core 1 (taskset, when present). Prints a markdown table of medians, each figure with its ratio
// to `ws` measured in the same repetition and the generator's own CPU use, and writes it to
// bench/results/latest.md. See bench/README.md for the method.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import zlib from 'node:zlib';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildLoadgen, LOADGEN } from './loadgen/build.mjs';

const BENCH = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH);

// ------------------------------------------------------------------ options
const argv = process.argv.slice(2);
const flag = (name) => argv.includes(name);
const opt = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const QUICK = flag('--quick');
const REPS = Number(opt('--reps') ?? (QUICK ? 1 : 3));
const WARMUP = Number(opt('--warmup') ?? (QUICK ? 0.5 : 1));
const DURATION = Number(opt('--duration') ?? (QUICK ? 1.5 : 4));
const IDLE_CONNS = Number(opt('--idle-conns') ?? 10000);
// The idle workload reads RSS 1 s after the last connection is up; `idle-rest` reads it again
// this many seconds later, once V8 has given back the young generation the burst of handshakes
// grew (its memory reducer ran within 30 s in every server in our runs). 0 leaves that workload out.
const IDLE_REST = Number(opt('--idle-rest') ?? 30);
// The same idle reading at other connection counts, for information (not a target): V8 grows its
// young generation in steps as objects survive its collections, so the figure at one count depends
// on where a server's burst crosses a step (docs/performance.md). Empty (`--idle-sweep ''`) leaves it out.
const IDLE_SWEEP = (opt('--idle-sweep') ?? (QUICK ? '' : '5000,15000')).split(',').filter(Boolean).map(Number);
const ONLY = opt('--only')?.split(',').filter(Boolean);
const ONLY_WORKLOADS = opt('--workloads')?.split(',').filter(Boolean);

// ------------------------------------------------------------------ servers
const SERVERS = [
  { name: 'ws', script: 'ws.mjs', env: { WS_NO_BUFFER_UTIL: '1' }, deflate: true },
  { name: 'ws+bufferutil', script: 'ws.mjs', env: {}, deflate: true },
  { name: 'websocket-driver', script: 'websocket-driver.mjs', env: {} },
  { name: 'websocket-node', script: 'websocket-node.mjs', env: {} },
  { name: 'raw', script: 'raw.mjs', env: {}, loadgenArgs: ['--allow-masked', '1'] },
  { name: 'rfc6455', script: 'rfc6455.mjs', env: {}, deflate: true },
  // A/B testing: BENCH_BASE=<another checkout>/bench/servers/rfc6455.mjs adds that build as 'base'.
  ...(process.env.BENCH_BASE ? [{ name: 'base', script: process.env.BENCH_BASE, env: {}, deflate: true }] : []),
  // The same server with serve({ tuneAllocator: false }): glibc's malloc left at its defaults
  // (see packages/rfc6455/src/allocator.ts and docs/performance.md).
  { name: 'rfc6455-untuned', script: 'rfc6455.mjs', env: { RFC6455_TUNE_ALLOCATOR: '0' }, deflate: true },
  // The same server reading through the socket's Readable stream instead of direct reads
  // (RFC6455_NO_DIRECT_READ=1; see packages/rfc6455/src/direct-read.ts).
  { name: 'rfc6455-stream', script: 'rfc6455.mjs', env: { RFC6455_NO_DIRECT_READ: '1' }, deflate: true },
].filter((s) => !ONLY || ONLY.includes(s.name) || s.name === 'ws'); // ws is the yardstick: always run

// --glibc-trim: every server (peers included) runs with glibc's trim threshold raised through the
// environment: the allocator on equal footing, so the ratios compare the libraries' own code.
const GLIBC_TRIM = flag('--glibc-trim') ? 'glibc.malloc.trim_threshold=33554432:glibc.malloc.mmap_threshold=16777216' : undefined;

// ---------------------------------------------------------------- workloads
const ECHO_BASE = {
  text64: { title: '64 B text, 100 conns, depth 1', args: { conns: 100, depth: 1, size: 64, opcode: 'text' } },
  bin64x32: { title: '64 B binary, 10 conns, depth 32', args: { conns: 10, depth: 32, size: 64, opcode: 'binary' } },
  bin16k: { title: '16 KiB binary, 10 conns, depth 4', args: { conns: 10, depth: 4, size: 16384, opcode: 'binary' } },
  bin1m: { title: '1 MiB binary, 4 conns, depth 1', args: { conns: 4, depth: 1, size: 1 << 20, opcode: 'binary' } },
};
const WORKLOADS = [
  { id: 'text64', title: '64 B text, 100 conns, depth 1', mode: 'echo', args: { conns: 100, depth: 1, size: 64, opcode: 'text' } },
  { id: 'bin64x32', title: '64 B binary, 10 conns, depth 32', mode: 'echo', args: { conns: 10, depth: 32, size: 64, opcode: 'binary' } },
  { id: 'bin16k', title: '16 KiB binary, 10 conns, depth 4', mode: 'echo', args: { conns: 10, depth: 4, size: 16384, opcode: 'binary' } },
  { id: 'bin1m', title: '1 MiB binary, 4 conns, depth 1', mode: 'echo', args: { conns: 4, depth: 1, size: 1 << 20, opcode: 'binary' } },
  ...['text64', 'bin64x32', 'bin16k', 'bin1m'].map((id) => {
    const w = ECHO_BASE[id];
    return { id: `${id}-deflate`, title: `${w.title}, permessage-deflate`, mode: 'echo', deflate: true, args: w.args };
  }),
  { id: 'handshake', title: 'handshakes/s (connect, upgrade, close), 32 concurrent', mode: 'handshake', args: { concurrency: 32 } },
  { id: 'idle', title: `RSS per idle connection (${IDLE_CONNS} conns)`, mode: 'idle', args: { conns: IDLE_CONNS, concurrency: 256 } },
  // Long (IDLE_REST s per run): only the yardstick, the ceiling and ours.
  ...(IDLE_REST > 0
    ? [{ id: 'idle-rest', title: `RSS per idle connection at rest (${IDLE_CONNS} conns, ${IDLE_REST} s later)`, mode: 'idle', settleMs: IDLE_REST * 1000, servers: ['ws', 'raw', 'rfc6455'], args: { conns: IDLE_CONNS, concurrency: 256 } }]
    : []),
  ...IDLE_SWEEP.map((conns) => ({
    id: `idle-${conns}`,
    title: `RSS per idle connection (${conns} conns, for information)`,
    mode: 'idle',
    servers: ['ws', 'raw', 'rfc6455'],
    args: { conns, concurrency: 256 },
  })),
].filter((w) => !ONLY_WORKLOADS || ONLY_WORKLOADS.includes(w.id));

// ------------------------------------------------------------------ helpers
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error(...a);
const HAS_TASKSET = spawnSync('sh', ['-c', 'command -v taskset'], { encoding: 'utf8' }).status === 0;
const NCPU = os.availableParallelism?.() ?? os.cpus().length;
const PIN = HAS_TASKSET && NCPU >= 2;
const FD_LIMIT = (() => {
  const r = spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' });
  const hard = r.stdout.trim();
  return hard === 'unlimited' ? 65536 : Math.min(65536, Number(hard) || 1024);
})();

function shellQuote(s) {
  return `'${String(s).replace(/'/g, `'\\''`)}'`;
}

/** sh -c 'ulimit -n N; exec [taskset -c CPU] cmd…' so the child pid is the real process. */
function pinnedSpawn(cpu, cmd, args, options) {
  const pin = PIN ? `taskset -c ${cpu} ` : '';
  const line = `ulimit -n ${FD_LIMIT} 2>/dev/null; exec ${pin}${[cmd, ...args].map(shellQuote).join(' ')}`;
  return spawn('sh', ['-c', line], options);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function median(xs) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

function rssKiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** Start a server; resolves { child, pid, banner } or throws with a reason. */
async function startServer(server, port, extraArgs = []) {
  const script = path.isAbsolute(server.script) ? server.script : path.join(BENCH, 'servers', server.script);
  const env = { ...process.env, ...server.env };
  if (!('WS_NO_BUFFER_UTIL' in server.env)) delete env.WS_NO_BUFFER_UTIL;
  if (GLIBC_TRIM) env.GLIBC_TUNABLES = GLIBC_TRIM;
  const child = pinnedSpawn(0, process.execPath, [script, '--port', String(port), ...extraArgs], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) break;
    const line = out.split('\n').find((l) => l.startsWith('listening'));
    if (line) return { child, pid: child.pid, banner: line.slice('listening'.length).trim() };
    await sleep(25);
  }
  await stopServer(child);
  const why = (err.trim().split('\n').find((l) => /Error|error|Cannot/.test(l)) ?? err.trim().split('\n').pop() ?? '').slice(0, 200);
  throw new Error(child.exitCode !== null ? `exited with ${child.exitCode}: ${why}` : `no "listening" within 15 s ${why}`);
}

async function stopServer(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 2000);
  await exited;
  clearTimeout(t);
}

/** Run the loadgen; resolves its last JSON line (plus .raw stderr). Killed after a hard timeout. */
function runLoadgen(args, { timeoutMs, onLine, stdin = 'ignore' } = {}) {
  return new Promise((resolve) => {
    const child = pinnedSpawn(1, LOADGEN, args, { cwd: ROOT, stdio: [stdin, 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let lastJson = null;
    child.stdout.on('data', (d) => {
      out += d;
      let nl;
      while ((nl = out.indexOf('\n')) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        try {
          lastJson = JSON.parse(line);
          onLine?.(lastJson, child);
        } catch {
          /* not JSON */
        }
      }
    });
    child.stderr.on('data', (d) => (err += d));
    const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(killer);
      if (!lastJson) lastJson = { ok: false, error: `loadgen ${signal ? 'killed by ' + signal : 'exit ' + code}: ${err.trim().slice(0, 200)}` };
      resolve(lastJson);
    });
  });
}

/**
 * The deflate workloads send one pre-compressed message over and over (the loadgen offers
 * client_no_context_takeover, so each message stands alone). Text: the loadgen's letters;
 * binary: random bytes from a 16-symbol alphabet (about 2:1 compressible).
 */
const deflateFiles = new Map();
function deflatePayloadFile(size, opcode) {
  const key = `${size}-${opcode}`;
  if (deflateFiles.has(key)) return deflateFiles.get(key);
  const raw = Buffer.alloc(size);
  if (opcode === 'text') for (let i = 0; i < size; i++) raw[i] = 97 + (i % 26);
  else for (let i = 0; i < size; i++) raw[i] = 0x30 + ((Math.random() * 16) | 0);
  let z = zlib.deflateRawSync(raw, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  if (z.length >= 4 && z.readUInt32BE(z.length - 4) === 0x0000ffff) z = z.subarray(0, z.length - 4);
  const dir = path.join(BENCH, 'results', 'tmp');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `deflate-${key}.bin`);
  writeFileSync(file, z);
  deflateFiles.set(key, file);
  return file;
}

function loadgenArgs(w, port, server) {
  const a = ['--mode', w.mode, '--port', String(port)];
  for (const [k, v] of Object.entries(w.args)) a.push(`--${k}`, String(v));
  if (w.mode !== 'idle') a.push('--warmup', String(WARMUP), '--duration', String(DURATION));
  if (w.mode === 'echo') a.push('--setup-timeout', '10');
  if (w.deflate) a.push('--deflate-payload', deflatePayloadFile(w.args.size, w.args.opcode));
  return a.concat(server.loadgenArgs ?? []);
}

/** One (workload, server) measurement in a fresh server process. */
async function measure(w, server) {
  if (w.deflate && !server.deflate) return { ok: false, na: true, error: 'no permessage-deflate support' };
  if (w.mode === 'idle' && w.args.conns + 256 > FD_LIMIT) return { ok: false, na: true, error: `not run: fd limit ${FD_LIMIT} is below ${w.args.conns} connections` };
  const port = await freePort();
  let srv;
  try {
    srv = await startServer(server, port, w.deflate ? ['--deflate'] : []);
  } catch (e) {
    return { ok: false, skipped: true, error: `server failed to start: ${e.message}` };
  }
  try {
    if (w.mode !== 'idle') {
      const r = await runLoadgen(loadgenArgs(w, port, server), { timeoutMs: (WARMUP + DURATION + 20) * 1000 });
      r.banner = srv.banner;
      if (r.ok && w.mode === 'echo') r.value = r.msgs_per_s;
      if (r.ok && w.mode === 'handshake') r.value = r.handshakes_per_s;
      if (!r.ok && !r.error) r.error = r.first_error || `errors=${r.errors} bad_len=${r.bad_len} bad_opcode=${r.bad_opcode}`;
      return r;
    }
    // idle: RSS before, open N connections, settle, RSS after, release
    await sleep(500);
    const before = rssKiB(srv.pid);
    let after = NaN;
    const settleMs = w.settleMs ?? 1000;
    const r = await runLoadgen(loadgenArgs(w, port, server).concat(['--hold', String(60 + Math.ceil(settleMs / 1000)), '--setup-timeout', '60']), {
      timeoutMs: 150_000 + settleMs,
      stdin: 'pipe',
      onLine: (j, child) => {
        if (j.ready) {
          setTimeout(() => {
            after = rssKiB(srv.pid);
            child.stdin.end();
          }, settleMs);
        }
      },
    });
    r.banner = srv.banner;
    if (r.ok && Number.isFinite(after)) {
      r.rss_before_kib = before;
      r.rss_after_kib = after;
      r.value = ((after - before) * 1024) / w.args.conns / 1024; // KiB per connection
    } else if (!r.error) {
      r.ok = false;
      r.error = 'no RSS reading';
    }
    return r;
  } finally {
    await stopServer(srv.child);
  }
}

// ------------------------------------------------------------------ formatting
function fmt(v, unit) {
  if (!Number.isFinite(v)) return '–';
  if (unit === 'KiB') return `${v.toFixed(2)} KiB`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)} M`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(1)} k`;
  if (v >= 100) return v.toFixed(0);
  return v.toFixed(1);
}
const fmtRatio = (r) => (Number.isFinite(r) ? `${r.toFixed(2)}×` : '–');
const fmtUs = (v) => (Number.isFinite(v) ? (v >= 10000 ? `${(v / 1000).toFixed(1)} ms` : `${v.toFixed(0)} µs`) : '–');

// ------------------------------------------------------------------ main
async function main() {
  const started = Date.now();
  buildLoadgen(log);

  const distIndex = path.join(ROOT, 'packages/rfc6455/dist/index.js');
  const notes = [];
  if (SERVERS.some((s) => s.name === 'rfc6455') && !existsSync(distIndex)) {
    notes.push('rfc6455: packages/rfc6455/dist/index.js does not exist (run `npm run build`); it will be skipped.');
  }
  if (!PIN) notes.push(`taskset ${HAS_TASKSET ? 'present' : 'missing'}, ${NCPU} CPUs: processes are NOT pinned.`);
  for (const n of notes) log(`NOTE ${n}`);
  log(`bench: ${QUICK ? 'quick, ' : ''}${REPS} rep(s), warm-up ${WARMUP} s, ${DURATION} s per run, servers: ${SERVERS.map((s) => s.name).join(', ')}`);

  const banners = {};
  const skipped = {};
  // results[workloadId][rep][serverName] = loadgen JSON
  const results = {};
  for (const w of WORKLOADS) {
    results[w.id] = [];
    for (let rep = 0; rep < REPS; rep++) {
      const row = {};
      results[w.id].push(row);
      for (const s of SERVERS) {
        if (w.servers && !w.servers.includes(s.name)) {
          row[s.name] = { ok: false, na: true, error: 'not run for this workload' };
          continue;
        }
        if (skipped[s.name]) {
          row[s.name] = { ok: false, skipped: true, error: skipped[s.name] };
          continue;
        }
        const t0 = Date.now();
        const r = await measure(w, s);
        row[s.name] = r;
        if (r.banner) banners[s.name] = r.banner;
        if (r.na) continue;
        if (r.skipped) {
          skipped[s.name] = r.error;
          log(`SKIP ${s.name}: ${r.error}`);
          continue;
        }
        const secs = ((Date.now() - t0) / 1000).toFixed(1);
        if (r.ok) {
          const extra = w.mode === 'idle' ? `${r.value.toFixed(2)} KiB/conn` : `${fmt(r.value)}/s p50 ${fmtUs(r.p50_us)} p99 ${fmtUs(r.p99_us)} loadgen CPU ${r.cpu_pct}%`;
          log(`  ${w.id} #${rep + 1} ${s.name.padEnd(17)} ${extra} (${secs} s)`);
        } else {
          log(`  ${w.id} #${rep + 1} ${s.name.padEnd(17)} FAILED: ${r.error} (${secs} s)`);
        }
      }
    }
  }

  // ---------------- aggregate: medians, ratios to ws (and any peer) in the same rep
  const agg = {};
  for (const w of WORKLOADS) {
    agg[w.id] = {};
    for (const s of SERVERS) {
      const reps = results[w.id].map((row) => row[s.name]);
      const good = reps.filter((r) => r?.ok);
      const ratioTo = (peer) =>
        median(results[w.id].map((row) => (row[s.name]?.ok && row[peer]?.ok ? row[s.name].value / row[peer].value : NaN)));
      agg[w.id][s.name] = {
        n: good.length,
        reps: reps.length,
        value: median(good.map((r) => r.value)),
        mbps: median(good.map((r) => r.mb_per_s)),
        p50: median(good.map((r) => r.p50_us)),
        p99: median(good.map((r) => r.p99_us)),
        cpu: median(good.map((r) => r.cpu_pct)),
        ratioTo,
        ratio: ratioTo('ws'),
        p99ratio: median(results[w.id].map((row) => (row[s.name]?.ok && row.ws?.ok ? row[s.name].p99_us / row.ws.p99_us : NaN))),
        error: reps.find((r) => r && !r.ok)?.error,
        // Not run at all (e.g. above the fd limit), as opposed to failed.
        notRun: reps.length > 0 && reps.every((r) => r?.na),
      };
    }
  }

  // ---------------- markdown
  const lines = [];
  const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const cpuModel = os.cpus()[0]?.model?.trim() ?? 'unknown CPU';
  lines.push(`## Results ${date}${QUICK ? ' (quick)' : ''}`);
  lines.push('');
  lines.push(
    `Node ${process.version}, ${os.platform()} ${os.release()}, \`nproc\` ${NCPU} (${cpuModel}), ` +
      `${REPS} repetition(s), warm-up ${WARMUP} s + ${DURATION} s per run, ` +
      (PIN ? 'server pinned to CPU 0 and loadgen to CPU 1 (taskset)' : 'not pinned') +
      `, fd limit ${FD_LIMIT}` +
      (GLIBC_TRIM ? `, every server run with \`GLIBC_TUNABLES=${GLIBC_TRIM}\`` : '') +
      `. Medians; "× ws" is the median of per-repetition ratios to pure-JS \`ws\`.`,
  );
  lines.push('');
  for (const [name, b] of Object.entries(banners)) if (b) lines.push(`- \`${name}\`: ${b}`);
  for (const [name, why] of Object.entries(skipped)) lines.push(`- **${name} skipped**: ${why}`);
  for (const n of notes) lines.push(`- ${n}`);
  lines.push('');
  lines.push('| workload | server | figure | × ws | p50 | p99 | loadgen CPU | runs ok |');
  lines.push('|---|---|---:|---:|---:|---:|---:|---:|');
  for (const w of WORKLOADS) {
    for (const s of SERVERS) {
      const a = agg[w.id][s.name];
      if (w.deflate && !s.deflate) continue; // no permessage-deflate in that server
      if (w.servers && !w.servers.includes(s.name)) continue;
      let figure;
      if (a.n === 0) figure = a.error ? `${a.notRun ? '' : 'failed: '}${a.error.replace(/\|/g, '/').slice(0, 80)}` : '–';
      else if (w.mode === 'echo') figure = `${fmt(a.value)} msg/s (${a.mbps >= 10 ? a.mbps.toFixed(0) : a.mbps.toFixed(2)} MB/s)`;
      else if (w.mode === 'handshake') figure = `${fmt(a.value)} hs/s`;
      else figure = `${fmt(a.value, 'KiB')}/conn`;
      const lat = w.mode !== 'idle' && a.n > 0;
      lines.push(
        `| ${w.title} | ${s.name} | ${figure} | ${fmtRatio(a.ratio)}${w.mode === 'idle' ? ' (lower is better)' : ''} | ${lat ? fmtUs(a.p50) : ''} | ${lat ? fmtUs(a.p99) : ''} | ${w.mode === 'idle' || a.n === 0 ? '' : a.cpu.toFixed(0) + ' %'} | ${a.n}/${a.reps} |`,
      );
    }
  }
  lines.push('');

  // ---------------- targets (issue 8)
  const A = (id, name) => agg[id]?.[name];
  const targets = [
    ['64 B text, 100 conns, depth 1', 'text64', 'ws', 1.15, 'ge'],
    ['64 B text: share of the raw ceiling', 'text64', 'raw', 0.9, 'ge'],
    ['64 B binary, 10 conns, depth 32', 'bin64x32', 'ws', 2.0, 'ge'],
    ['16 KiB binary, 10 conns, depth 4', 'bin16k', 'ws+bufferutil', 1.0, 'ge'],
    ['1 MiB binary, 4 conns', 'bin1m', 'websocket-node', 1.0, 'ge'],
    ['handshakes/s', 'handshake', 'ws', 1.3, 'ge'],
    ['RSS per idle connection', 'idle', 'ws', 0.85, 'le'],
  ];
  for (const us of ['rfc6455', 'rfc6455-untuned']) {
    if (!SERVERS.some((s) => s.name === us)) continue;
    lines.push(`### ${us} against the issue-8 targets`);
    lines.push('');
    lines.push('| target | vs | needed | measured | met? |');
    lines.push('|---|---|---:|---:|---|');
    for (const [title, id, peer, need, dir] of targets) {
      const a = A(id, us);
      if (!a) continue;
      const r = a.ratioTo(peer);
      const met = !Number.isFinite(r) ? 'not measured' : (dir === 'ge' ? r >= need : r <= need) ? 'yes' : '**no**';
      lines.push(`| ${title} | ${peer} | ${dir === 'ge' ? '≥' : '≤'} ${need}× | ${fmtRatio(r)} | ${met} |`);
    }
    for (const id of ['text64', 'bin64x32']) {
      const a = A(id, us);
      if (!a) continue;
      const r = a.p99ratio;
      const met = !Number.isFinite(r) ? 'not measured' : r <= 1 ? 'yes' : '**no**';
      lines.push(`| p99 round trip, ${WORKLOADS.find((w) => w.id === id).title} | ws | ≤ 1.00× | ${fmtRatio(r)} | ${met} |`);
    }
    // Not targets of their own: the issue's idle figure is the one read after the burst (above).
    const idleInfo = [['idle-rest', ` at rest, ${IDLE_REST} s later`], ...IDLE_SWEEP.map((conns) => [`idle-${conns}`, `, ${conns} conns`])];
    for (const [id, label] of idleInfo) {
      const a = A(id, us);
      if (!a || a.n === 0) continue;
      lines.push(`| (for information) RSS per idle connection${label} | ws | – | ${fmtRatio(a.ratioTo('ws'))} (raw ${fmtRatio(A(id, 'raw')?.ratioTo('ws'))}) | – |`);
    }
    lines.push('');
  }

  // ---------------- codec (in-process)
  if (!flag('--no-codec')) {
    log('codec: node bench/codec.mjs' + (QUICK ? ' --quick' : ''));
    const c = spawnSync(process.execPath, [path.join(BENCH, 'codec.mjs'), ...(QUICK ? ['--quick'] : []), '--markdown'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 300_000,
    });
    if (c.status === 0) lines.push(c.stdout.trim(), '');
    else lines.push(`codec benchmark failed (status ${c.status}): ${(c.stderr || '').trim().split('\n').slice(-3).join(' / ')}`, '');
  }

  lines.push(`_Total bench time ${((Date.now() - started) / 1000).toFixed(0)} s._`);
  const md = lines.join('\n') + '\n';
  mkdirSync(path.join(BENCH, 'results'), { recursive: true });
  writeFileSync(path.join(BENCH, 'results', 'latest.md'), md);
  writeFileSync(path.join(BENCH, 'results', 'latest.json'), JSON.stringify({ date, quick: QUICK, results }, null, 1));
  process.stdout.write('\n' + md);
  log(`written to ${path.relative(ROOT, path.join(BENCH, 'results', 'latest.md'))}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
