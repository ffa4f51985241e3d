#!/usr/bin/env node
// In-process codec throughput: `node bench/codec.mjs [--quick] [--markdown]`
//
// Parse and serialize MB/s (payload bytes) for 64 B, 16 KiB and 1 MiB binary frames, masked and
// unmasked, for ws's Receiver/Sender (pure JS, and with bufferutil) and rfc6455's codec
// (FrameParser / encodeFrame). Each implementation runs in its own child process (fresh JIT,
// and ws reads WS_NO_BUFFER_UTIL when it loads).
//
// Parse input: a stream of whole frames, fed in 64 KiB chunks as a socket would deliver them, so
// frames straddle chunk boundaries. Masked input is parsed server-side, unmasked client-side.
// Both parsers unmask in place (ws always; ours with ownsInput: true, as its connection does), so
// the payloads are binary and their content is not checked.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const BENCH = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH);
const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const implIdx = argv.indexOf('--impl');
const IMPL = implIdx >= 0 ? argv[implIdx + 1] : undefined;

const SIZES = [64, 16 * 1024, 1 << 20];
const CHUNK = 64 * 1024;
const RUN_MS = QUICK ? 100 : 250;
const REPS = QUICK ? 3 : 5;

// ------------------------------------------------------------------ frames
function frame(size, masked) {
  const hl = (size < 126 ? 2 : size < 65536 ? 4 : 10) + (masked ? 4 : 0);
  const f = Buffer.alloc(hl + size);
  f[0] = 0x82;
  const mb = masked ? 0x80 : 0;
  if (size < 126) f[1] = mb | size;
  else if (size < 65536) (f[1] = mb | 126), f.writeUInt16BE(size, 2);
  else (f[1] = mb | 127), f.writeUInt32BE(0, 2), f.writeUInt32BE(size, 6);
  if (masked) f.set([0x12, 0x34, 0x56, 0x78], hl - 4);
  for (let i = hl; i < f.length; i++) f[i] = (i * 31) & 0xff;
  return f;
}

/** ≥ 4 MiB of whole frames, cut into 64 KiB chunks; returns { chunks, frames, bytes }. */
function stream(size, masked) {
  const one = frame(size, masked);
  const frames = Math.max(4, Math.ceil((4 << 20) / one.length));
  const all = Buffer.alloc(one.length * frames);
  for (let i = 0; i < frames; i++) one.copy(all, i * one.length);
  const chunks = [];
  for (let o = 0; o < all.length; o += CHUNK) chunks.push(all.subarray(o, Math.min(all.length, o + CHUNK)));
  return { chunks, frames, bytes: frames * size };
}

/** Runs fn() (which processes `bytes` payload bytes) repeatedly; median MB/s over REPS runs. */
function measure(fn, bytes) {
  const deadline = Date.now() + 60_000; // hard bound whatever happens
  const t0 = process.hrtime.bigint();
  while (process.hrtime.bigint() - t0 < BigInt(RUN_MS) * 1000000n && Date.now() < deadline) fn(); // warm-up
  const rates = [];
  for (let r = 0; r < REPS; r++) {
    let n = 0;
    const start = process.hrtime.bigint();
    let el = 0n;
    do {
      fn();
      n++;
      el = process.hrtime.bigint() - start;
    } while (el < BigInt(RUN_MS) * 1000000n && n < 1e7);
    rates.push((n * bytes) / (Number(el) / 1e9) / 1e6);
  }
  rates.sort((a, b) => a - b);
  return rates[rates.length >> 1];
}

// ------------------------------------------------------------- implementations
async function loadImpl(name) {
  const require = createRequire(import.meta.url);
  if (name === 'ws' || name === 'ws+bufferutil') {
    // ws's package "exports" hides lib/; load the files by path.
    const wsDir = path.dirname(require.resolve('ws'));
    const Receiver = require(path.join(wsDir, 'lib/receiver.js'));
    const Sender = require(path.join(wsDir, 'lib/sender.js'));
    const bu = name === 'ws' ? 'pure JS' : (() => {
      try {
        const m = require('bufferutil');
        return m.mask === require('bufferutil/fallback').mask ? 'bufferutil JS fallback' : 'bufferutil native';
      } catch {
        return 'bufferutil missing';
      }
    })();
    return {
      note: bu,
      parser(masked) {
        let count = 0;
        const r = new Receiver({ isServer: masked, maxPayload: 0, binaryType: 'nodebuffer', allowSynchronousEvents: true });
        r.on('message', () => count++);
        r.on('error', (e) => {
          throw e;
        });
        return { push: (c) => r.write(c), count: () => count };
      },
      encode(payload, masked) {
        return Sender.frame(payload, { fin: true, rsv1: false, opcode: 2, mask: masked, readOnly: true });
      },
    };
  }
  if (name === 'rfc6455' || name === 'rfc6455+join') {
    const dist = path.join(ROOT, 'packages/rfc6455/dist/codec/index.js');
    const src = path.join(ROOT, 'packages/rfc6455/src/codec/index.ts');
    let mod;
    let note;
    if (existsSync(dist)) {
      mod = await import(pathToFileURL(dist).href);
      note = 'dist (tsc build)';
    } else if (existsSync(src)) {
      // No build yet: the parent ran us with --import tsx.
      mod = await import(pathToFileURL(src).href);
      note = 'src via tsx (no dist build found)';
    } else {
      throw new Error('packages/rfc6455 codec not found (neither dist/codec/index.js nor src/codec/index.ts)');
    }
    const { FrameParser, encodeFrame } = mod;
    if (typeof FrameParser !== 'function' || typeof encodeFrame !== 'function') {
      throw new Error(`codec exports: ${Object.keys(mod).join(', ')} (need FrameParser and encodeFrame)`);
    }
    const join = name === 'rfc6455+join';
    return {
      note: note + (join ? '; sink joins pieces into one Buffer per message, as ws does (gatherLarge on, as in the connection: the parser gathers single-frame binary messages of any size)' : '; sink counts pieces (views of the input; frames up to 64 KiB that span chunks are gathered by the parser)'),
      parser(masked) {
        let count = 0;
        let pieces = [];
        let total = 0;
        const sink = join
          ? {
              onData(op, compressed, payload, first, last) {
                if (first) (pieces = []), (total = 0);
                pieces.push(payload);
                total += payload.length;
                if (last) {
                  const msg = pieces.length === 1 ? pieces[0] : Buffer.concat(pieces, total);
                  if (msg.length >= 0) count++;
                }
              },
              onControl() {},
              onError(e) {
                throw e;
              },
            }
          : {
              onData(op, compressed, payload, first, last) {
                if (last) count++;
              },
              onControl() {},
              onError(e) {
                throw e;
              },
            };
        // As the connection does: ownsInput, and (where pieces are joined) whole large frames
        // gathered by the parser.
        const p = new FrameParser({ side: masked ? 'server' : 'client', ownsInput: true, gatherLarge: join }, sink);
        return { push: (c) => p.push(c), count: () => count };
      },
      encode(payload, masked) {
        return encodeFrame(2, payload, { fin: true, mask: masked });
      },
    };
  }
  throw new Error(`unknown impl ${name}`);
}

async function child(name) {
  const impl = await loadImpl(name);
  const out = { impl: name, note: impl.note, parse: {}, serialize: {} };
  for (const size of SIZES) {
    for (const masked of [true, false]) {
      const key = `${size}:${masked ? 'masked' : 'unmasked'}`;
      // parse
      const { chunks, frames, bytes } = stream(size, masked);
      const p = impl.parser(masked);
      let expected = 0;
      out.parse[key] = measure(() => {
        for (let i = 0; i < chunks.length; i++) p.push(chunks[i]);
        expected += frames;
      }, bytes);
      if (p.count() !== expected) throw new Error(`${name} parse ${key}: ${p.count()} messages, expected ${expected}`);
      // serialize: a batch of frames per call so small frames are not dominated by loop overhead
      if (name === 'rfc6455+join') continue; // same encoder as rfc6455
      const payload = Buffer.alloc(size, 0x61);
      // At least 16 frames per call: one call per 1 MiB frame would time the loop's clock reads.
      const batch = Math.max(16, Math.floor((1 << 20) / size));
      let sinkLen = 0;
      out.serialize[key] = measure(() => {
        for (let i = 0; i < batch; i++) {
          const parts = impl.encode(payload, masked);
          sinkLen += parts.length;
        }
      }, batch * size);
      if (sinkLen === 0) throw new Error('no output');
    }
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

// ------------------------------------------------------------------ parent
const IMPLS = [
  { name: 'ws', env: { WS_NO_BUFFER_UTIL: '1' } },
  { name: 'ws+bufferutil', env: {} },
  { name: 'rfc6455', env: {} },
  { name: 'rfc6455+join', env: {} },
];

// Each implementation runs in PROCS fresh processes, interleaved (ws, ws+bufferutil, rfc6455, …,
// then again), and each cell is the median over them: one process's luck (JIT timing, where glibc
// finds memory) moved single cells by 2-8x between otherwise identical runs. Every process gets the
// same allocator setting (glibc's trim threshold raised, as `--glibc-trim` does for the servers),
// so that page faults of fresh 1 MiB buffers do not decide the large-frame cells: this table
// compares the codecs' own code.
const PROCS = QUICK ? 1 : 3;
const CODEC_ENV = { GLIBC_TUNABLES: 'glibc.malloc.trim_threshold=33554432:glibc.malloc.mmap_threshold=16777216' };

function median(values) {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

function parent() {
  const runs = {};
  const errors = {};
  for (let proc = 0; proc < PROCS; proc++) {
    for (const { name } of IMPLS) {
      const r = runOne(name);
      if (r.ok) (runs[name] ??= []).push(r.value);
      else errors[name] = r.error;
      console.error(`codec ${name} #${proc + 1}: ${r.ok ? 'done' : 'FAILED: ' + r.error}`);
    }
  }
  // Per cell, the median over the processes.
  const results = {};
  for (const [name, list] of Object.entries(runs)) {
    const merged = { impl: name, note: list[0].note, parse: {}, serialize: {} };
    for (const op of ['parse', 'serialize']) {
      for (const k of Object.keys(list[0][op])) merged[op][k] = median(list.map((r) => r[op][k]));
    }
    results[name] = merged;
  }
  report(results, errors);
}

function runOne(name) {
  const { env } = IMPLS.find((i) => i.name === name);
  const needTsx = !existsSync(path.join(ROOT, 'packages/rfc6455/dist/codec/index.js'));
  {
    const e = { ...process.env, ...CODEC_ENV, ...env };
    if (!('WS_NO_BUFFER_UTIL' in env)) delete e.WS_NO_BUFFER_UTIL;
    const pre = name.startsWith('rfc6455') && needTsx ? ['--import', 'tsx'] : [];
    const r = spawnSync(process.execPath, [...pre, fileURLToPath(import.meta.url), '--impl', name, ...(QUICK ? ['--quick'] : [])], {
      cwd: ROOT,
      env: e,
      encoding: 'utf8',
      timeout: 240_000,
      killSignal: 'SIGKILL',
    });
    const line = r.stdout?.trim().split('\n').pop();
    try {
      return { ok: true, value: JSON.parse(line) };
    } catch {
      const err = (r.stderr || '').trim().split('\n').find((l) => /Error/.test(l)) || (r.stderr || '').trim().split('\n').pop() || `status ${r.status}`;
      return { ok: false, error: err.slice(0, 200) };
    }
  }
}

function report(results, errors) {
  const names = IMPLS.map((i) => i.name);
  const lines = [];
  lines.push(
    `### In-process codec throughput (MB/s of payload; per process the median of ${REPS} × ${RUN_MS} ms, then the median over ${PROCS} process(es) per implementation, all with \`GLIBC_TUNABLES=${CODEC_ENV.GLIBC_TUNABLES}\`)`,
  );
  lines.push('');
  for (const n of names) {
    if (results[n]) lines.push(`- \`${n}\`: ${results[n].note}`);
    else lines.push(`- **\`${n}\` failed**: ${errors[n]}`);
  }
  lines.push('');
  lines.push(`| op | frame | ${names.join(' | ')} | ours × ws | ours × ws+bufferutil |`);
  lines.push(`|---|---|${names.map(() => '---:').join('|')}|---:|---:|`);
  const f = (v) => (Number.isFinite(v) ? (v >= 100 ? v.toFixed(0) : v.toFixed(1)) : '–');
  const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '–');
  const label = (k) => {
    const [s, m] = k.split(':');
    const n = Number(s);
    return `${n >= 1 << 20 ? n / (1 << 20) + ' MiB' : n >= 1024 ? n / 1024 + ' KiB' : n + ' B'} ${m}`;
  };
  for (const op of ['parse', 'serialize']) {
    for (const size of SIZES) {
      for (const m of ['masked', 'unmasked']) {
        const k = `${size}:${m}`;
        const v = (n) => results[n]?.[op]?.[k];
        const ours = op === 'parse' ? 'rfc6455+join' : 'rfc6455';
        lines.push(
          `| ${op} | ${label(k)} | ${names.map((n) => f(v(n))).join(' | ')} | ${ratio(v(ours), v('ws'))} | ${ratio(v(ours), v('ws+bufferutil'))} |`,
        );
      }
    }
  }
  lines.push('');
  lines.push(
    'Parse: `rfc6455` counts the pieces its FrameParser hands over (views of the input, except frames of up to 64 KiB that span chunks, which the parser gathers into one buffer, as in the connection); `rfc6455+join` also joins each ' +
      "message into one Buffer, which is what ws's Receiver does before emitting, and has the parser gather single-frame binary messages of any size whole (gatherLarge, as the connection does), so \"ours\" is `rfc6455+join` for parse " +
      'and `rfc6455` (encodeFrame) for serialize. Unmasked payloads sent as a separate buffer (no copy) give meaningless ' +
      'MB/s (TB/s); where one side copies and the other does not, the ratio measures that choice, not speed. ' +
      'The issue-8 target is ≥ 1.5× ws.',
  );
  process.stdout.write(lines.join('\n') + '\n');
}

if (IMPL) {
  child(IMPL).catch((e) => {
    console.error(e?.stack || String(e));
    process.exit(1);
  });
} else {
  parent();
}
