#!/usr/bin/env node
// Memory per idle connection with permessage-deflate negotiated: our serve() against ws.
//
//   node bench/deflate-memory.mjs [--conns 1000] [--size 2048]
//
// For each server (rfc6455 from packages/rfc6455/src through tsx, ws 8) and each mode (compression
// off, context takeover, no_context_takeover both ways) a fresh server process is started; this
// process opens --conns connections to it with ws clients (the same client for both servers),
// sends one compressible message of --size bytes on each and waits for every echo, so each
// connection has compressed and inflated once and is then idle. The server reports its RSS and
// V8 external memory (zlib reports its allocations there) after gc, before and after; the table
// shows the deltas divided by the number of connections.
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

// ------------------------------------------------------------------ server process
if (argv.includes('--server')) {
  const kind = opt('--server');
  const mode = opt('--mode');
  const deflate = mode !== 'off';
  let port;
  if (kind === 'rfc6455') {
    const { serve } = await import('../packages/rfc6455/src/index.ts');
    const server = await serve({ port: 0, host: '127.0.0.1', perMessageDeflate: deflate, idleTimeout: 0 }, async (conn) => {
      for await (const m of conn) await conn.send(m);
    });
    port = server.port;
  } else {
    const { WebSocketServer } = await import('ws');
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: deflate ? {} : false });
    await once(wss, 'listening');
    wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
    port = wss.address().port;
  }
  const measure = async () => {
    for (let i = 0; i < 3; i++) {
      globalThis.gc();
      await new Promise((r) => setTimeout(r, 100));
    }
    const m = process.memoryUsage();
    return { rss: m.rss, external: m.external, heapUsed: m.heapUsed };
  };
  process.on('message', async (msg) => {
    if (msg === 'measure') process.send({ memory: await measure() });
    if (msg === 'exit') process.exit(0);
  });
  process.send({ port });
} else {
  await main();
}

// ------------------------------------------------------------------ driver
async function main() {
  const CONNS = Number(opt('--conns', 1000));
  const SIZE = Number(opt('--size', 2048));
  const { default: WebSocket } = await import('ws');
  const fullText = (seed) => {
    const words = ['alpha', 'beta', 'gamma', 'delta', 'websocket', 'deflate', 'frame', 'window'];
    let out = '';
    for (let i = 0; out.length < SIZE; i++) out += words[(i * 7 + seed) % words.length] + ' ';
    return out.slice(0, SIZE);
  };

  async function run(kind, mode, size = SIZE) {
    const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', HERE, '--server', kind, '--mode', mode], {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const ask = async (msg) => {
      child.send(msg);
      const [reply] = await once(child, 'message');
      return reply;
    };
    const [{ port }] = await once(child, 'message');
    const before = (await ask('measure')).memory;
    const perMessageDeflate = mode === 'off' ? false : mode === 'takeover' ? {} : { serverNoContextTakeover: true, clientNoContextTakeover: true };
    const text = (seed) => fullText(seed).slice(0, size);
    const sockets = [];
    let negotiated = 0;
    for (let i = 0; i < CONNS; i += 100) {
      const batch = [];
      for (let j = i; j < Math.min(CONNS, i + 100); j++) {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate });
        sockets.push(ws);
        batch.push(
          once(ws, 'open').then(async () => {
            if (ws.extensions.includes('permessage-deflate')) negotiated++;
            const message = text(j);
            ws.send(message);
            const [data] = await once(ws, 'message');
            if (data.toString() !== message) throw new Error('echo mismatch');
          }),
        );
      }
      await Promise.all(batch);
    }
    const after = (await ask('measure')).memory;
    for (const ws of sockets) ws.terminate();
    child.send('exit');
    await once(child, 'exit');
    const per = (k) => (after[k] - before[k]) / CONNS / 1024;
    return { kind, mode, size, negotiated, rss: per('rss'), external: per('external'), heap: per('heapUsed') };
  }

  const rows = [];
  for (const mode of ['off', 'no_context_takeover', 'takeover']) {
    for (const kind of ['rfc6455', 'ws']) {
      const r = await run(kind, mode);
      rows.push(r);
      process.stderr.write(`${kind} ${mode}: ${r.rss.toFixed(1)} KiB RSS/conn\n`);
    }
  }
  // Takeover negotiated, but the one message is below the 1024-byte threshold: we allocate no context.
  for (const kind of ['rfc6455', 'ws']) rows.push(await run(kind, 'takeover', 100));
  console.log(`\n${CONNS} idle connections after one compressible message each, server side (node ${process.version})\n`);
  console.log('| server | permessage-deflate | message | negotiated | RSS / conn | external / conn | JS heap / conn |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.kind} | ${r.mode} | ${r.size} B | ${r.negotiated}/${CONNS} | ${r.rss.toFixed(1)} KiB | ${r.external.toFixed(1)} KiB | ${r.heap.toFixed(1)} KiB |`);
  }
}
