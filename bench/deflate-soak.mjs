#!/usr/bin/env node
// Soak: many connections exchanging compressed messages, server RSS over time.
//
//   node bench/deflate-soak.mjs [--conns 2000] [--seconds 60] [--mode takeover|no_context_takeover] [--interval 1000] [--warmup 20]
//
// Starts our serve() echo (packages/rfc6455/src through tsx) in a child process, opens --conns
// connections to it from this process with our connect() (permessage-deflate negotiated in the
// given mode), and has every connection send a compressible 2..16 KiB message (varied, so zlib
// really works) every --interval ms, staggered, checking each echo. Every 5 s it prints the
// server's RSS, V8 external memory and the messages echoed; at the end, whether RSS stayed
// bounded (after --warmup s, the second half's RSS peak against the first half's, within 10%).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = fileURLToPath(import.meta.url);
const ROOT = path.dirname(path.dirname(HERE));
const argv = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : fallback;
};
const MiB = (n) => (n / 1048576).toFixed(1);

if (argv.includes('--server')) {
  const { serve } = await import('../packages/rfc6455/src/index.ts');
  const server = await serve({ port: 0, host: '127.0.0.1', idleTimeout: 0 }, async (conn) => {
    for await (const m of conn) await conn.send(m);
  });
  process.on('message', (msg) => {
    if (msg === 'measure') {
      const m = process.memoryUsage();
      process.send({ rss: m.rss, external: m.external, heapUsed: m.heapUsed, conns: server.connections.size });
    }
    if (msg === 'exit') process.exit(0);
  });
  process.send({ port: server.port });
} else {
  await main();
}

async function main() {
  const CONNS = Number(opt('--conns', 2000));
  const SECONDS = Number(opt('--seconds', 60));
  const MODE = opt('--mode', 'takeover');
  const INTERVAL = Number(opt('--interval', 1000));
  const WARMUP = Number(opt('--warmup', 20));
  // The client side lives in this process; tsx is loaded for the TypeScript sources.
  const { register } = await import('tsx/esm/api');
  register();
  const { connect } = await import('../packages/rfc6455/src/index.ts');

  const child = spawn(process.execPath, ['--import', 'tsx', HERE, '--server'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const [{ port }] = await once(child, 'message');
  const measure = async () => {
    child.send('measure');
    const [m] = await once(child, 'message');
    return m;
  };

  const words = ['alpha', 'beta', 'gamma', 'delta', 'websocket', 'deflate', 'frame', 'window', 'context', 'takeover', 'soak'];
  const message = (conn, n) => {
    const size = 2048 + ((conn * 7919 + n * 104729) % 14336);
    let out = `${conn}:${n}:`;
    for (let i = 0; out.length < size; i++) out += words[(i * 13 + conn + n) % words.length] + (i % 17 === 0 ? `${i}\n` : ' ');
    return out.slice(0, size);
  };

  const perMessageDeflate = MODE === 'takeover' ? {} : { serverNoContextTakeover: true, clientNoContextTakeover: true };
  const conns = [];
  for (let i = 0; i < CONNS; i += 200) {
    const batch = [];
    for (let j = i; j < Math.min(CONNS, i + 200); j++) batch.push(connect(`ws://127.0.0.1:${port}/`, { perMessageDeflate, idleTimeout: 0, serializeHandshakes: false }));
    conns.push(...(await Promise.all(batch)));
  }
  const negotiated = conns.filter((c) => c.extensions.startsWith('permessage-deflate')).length;
  process.stderr.write(`${CONNS} connections open, ${negotiated} with permessage-deflate (${MODE})\n`);

  let echoed = 0;
  let bytes = 0;
  let errors = 0;
  let running = true;
  const loops = conns.map(async (conn, index) => {
    await new Promise((r) => setTimeout(r, (index * INTERVAL) / CONNS));
    for (let n = 0; running; n++) {
      const m = message(index, n);
      const started = Date.now();
      try {
        await conn.send(m);
        const echo = await conn.recv();
        if (echo !== m) errors++;
        echoed++;
        bytes += m.length;
      } catch {
        errors++;
        return;
      }
      const wait = INTERVAL - (Date.now() - started);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  });

  const samples = [];
  const start = Date.now();
  console.log(`| t (s) | server RSS (MiB) | external (MiB) | heap (MiB) | conns | messages echoed (total) | msg/s |`);
  console.log('|---|---|---|---|---|---|---|');
  let lastEchoed = 0;
  let lastT = start;
  while (Date.now() - start < SECONDS * 1000) {
    await new Promise((r) => setTimeout(r, 5000));
    const m = await measure();
    const now = Date.now();
    const rate = ((echoed - lastEchoed) * 1000) / (now - lastT);
    lastEchoed = echoed;
    lastT = now;
    const t = Math.round((now - start) / 1000);
    samples.push({ t, rss: m.rss });
    console.log(`| ${t} | ${MiB(m.rss)} | ${MiB(m.external)} | ${MiB(m.heapUsed)} | ${m.conns} | ${echoed} | ${rate.toFixed(0)} |`);
  }
  running = false;
  await Promise.race([Promise.all(loops), new Promise((r) => setTimeout(r, INTERVAL * 3))]);
  // Contexts are allocated lazily as connections first compress: RSS climbs during warm-up, so
  // compare the peaks of the two halves of the samples taken after it.
  const steady = samples.filter((s) => s.t > WARMUP);
  const half = Math.max(1, Math.floor(steady.length / 2));
  const early = Math.max(...steady.slice(0, half).map((s) => s.rss));
  const late = Math.max(...steady.slice(half).map((s) => s.rss), 0);
  console.log(
    `\n${MODE}: ${echoed} messages (${MiB(bytes)} MiB uncompressed) over ${CONNS} connections in ${SECONDS} s, ${errors} errors; ` +
      `server RSS peak after ${WARMUP} s warm-up: first half ${MiB(early)} MiB, second half ${MiB(late)} MiB (${late <= early * 1.1 ? 'bounded' : 'GROWING'})`,
  );
  for (const c of conns) c.terminate();
  child.send('exit');
  await once(child, 'exit');
  process.exit(errors > 0 ? 1 : 0);
}
