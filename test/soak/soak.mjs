#!/usr/bin/env node
/**
 * Soak test (not part of `npm test`): `npm run soak -- --seconds 30 --connections 2000`.
 *
 * A server child process (so its RSS is its own) echoes everything; this process opens N client
 * connections that send random text and binary messages (sizes 0..maxSize, with a sequence number
 * in each) keeping a few in flight per connection, and checks every echo: nothing lost, nothing
 * reordered, nothing corrupted. Server and client RSS are printed every 5 s; with --idle M, M more
 * connections stay open doing nothing, to measure the cost of an idle connection.
 * Uses the built package (packages/rfc6455/dist). Exit code 1 on any loss, reorder or error.
 *
 * Options: --seconds N (30) --connections N (1000) --idle N (0) --inflight N (4)
 *          --max-size BYTES (16384) --deflate (offer permessage-deflate) --port N (server side)
 */
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { connect, serve, EOF } from '../../packages/rfc6455/dist/index.js';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = process.argv[i + 1];
  return v === undefined || v.startsWith('--') ? true : v;
}

const mib = (bytes) => `${(bytes / 1048576).toFixed(1)} MiB`;

// ---- Server child ------------------------------------------------------------------------------
if (arg('server', false)) {
  const deflate = Boolean(arg('deflate', false));
  const server = await serve({ port: 0, perMessageDeflate: deflate, idleTimeout: 0, maxConnections: 1_000_000 }, async (conn) => {
    for await (const message of conn) await conn.send(message).catch(() => undefined);
  });
  process.send({ type: 'listening', port: server.port });
  process.on('message', async (msg) => {
    if (msg.type === 'stats') {
      process.send({ type: 'stats', rss: process.memoryUsage().rss, heap: process.memoryUsage().heapUsed, connections: server.connections.size });
    } else if (msg.type === 'close') {
      await server.close();
      process.send({ type: 'closed' });
      process.exit(0);
    }
  });
} else {
  await main();
}

async function main() {
  const seconds = Number(arg('seconds', 30));
  const count = Number(arg('connections', 1000));
  const idle = Number(arg('idle', 0));
  const inflight = Number(arg('inflight', 4));
  const maxSize = Number(arg('max-size', 16384));
  const deflate = Boolean(arg('deflate', false));

  const child = fork(fileURLToPath(import.meta.url), ['--server', ...(deflate ? ['--deflate'] : [])], { stdio: 'inherit' });
  const replies = [];
  child.on('message', (m) => replies.shift()?.(m));
  const ask = (type, expect) =>
    new Promise((resolve) => {
      replies.push(resolve);
      if (type) child.send({ type });
    }).then((m) => (expect && m.type !== expect ? ask(null, expect) : m));
  const { port } = await ask(null, 'listening');
  const url = `ws://127.0.0.1:${port}/`;
  const clientRss0 = process.memoryUsage().rss;
  const serverRss0 = (await ask('stats', 'stats')).rss;
  console.log(`soak: ${count} active + ${idle} idle connections, ${seconds} s, messages 0..${maxSize} B, ${inflight} in flight each${deflate ? ', permessage-deflate' : ''}`);
  console.log(`server RSS at start ${mib(serverRss0)}; client RSS ${mib(clientRss0)}`);

  const started = Date.now();
  const openMany = async (n) => {
    const conns = [];
    for (let at = 0; at < n; at += 200) {
      const wave = Math.min(200, n - at);
      conns.push(...(await Promise.all(Array.from({ length: wave }, () => connect(url, { perMessageDeflate: deflate, idleTimeout: 0 })))));
    }
    return conns;
  };
  const idleConns = await openMany(idle);
  if (idle > 0) {
    const s = await ask('stats', 'stats');
    console.log(`${idle} idle connections open in ${((Date.now() - started) / 1000).toFixed(1)} s: server RSS ${mib(s.rss)} (+${mib(s.rss - serverRss0)}, ${((s.rss - serverRss0) / idle / 1024).toFixed(1)} KiB per connection), heap ${mib(s.heap)}; client RSS ${mib(process.memoryUsage().rss)}`);
  }
  const conns = await openMany(count);
  const stats = { sent: 0, received: 0, bytes: 0, lost: 0, reordered: 0, corrupted: 0, errors: 0 };
  const deadline = Date.now() + seconds * 1000;

  const runOne = async (conn, id) => {
    const expected = [];
    let seq = 0;
    let echoed = () => {};
    const makeMessage = () => {
      const size = Math.floor(Math.random() ** 3 * maxSize);
      const tag = `${id}:${seq++}:`;
      if (Math.random() < 0.5) {
        // Whole patterns only: slicing could split the surrogate pair of 😀.
        return tag + 'é€😀abc'.repeat(Math.floor(size / 7));
      }
      return Buffer.concat([Buffer.from(tag), randomBytes(size)]);
    };
    const reader = (async () => {
      for (;;) {
        const m = await conn.recv();
        if (m === EOF) break;
        const want = expected.shift();
        echoed();
        stats.received++;
        stats.bytes += m.length;
        if (want === undefined) {
          stats.corrupted++;
          continue;
        }
        const same = typeof want === 'string' ? m === want : Buffer.isBuffer(m) && m.equals(want);
        if (!same) {
          const tagOf = (x) => (typeof x === 'string' ? x : x.subarray(0, 24).toString('latin1')).split(':').slice(0, 2).join(':');
          if (tagOf(m) !== tagOf(want)) stats.reordered++;
          else stats.corrupted++;
        }
      }
    })();
    let waiting;
    while (Date.now() < deadline) {
      while (expected.length < inflight && Date.now() < deadline) {
        const msg = makeMessage();
        expected.push(msg);
        stats.sent++;
        await conn.send(msg);
      }
      // Wait for an echo (or 1 s) before sending more.
      if (expected.length > 0) {
        await new Promise((r) => {
          const t = setTimeout(r, 1000);
          echoed = () => {
            clearTimeout(t);
            r();
          };
        });
        echoed = () => {};
      }
      waiting = expected.length;
    }
    // Let the last echoes arrive (at most 10 s).
    for (let i = 0; i < 100 && expected.length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    stats.lost += expected.length;
    await conn.close();
    await reader;
    return waiting;
  };

  const sample = setInterval(async () => {
    const s = await ask('stats', 'stats');
    const elapsed = ((Date.now() - started) / 1000).toFixed(0);
    console.log(`t=${elapsed}s server RSS ${mib(s.rss)} heap ${mib(s.heap)} connections ${s.connections}; client RSS ${mib(process.memoryUsage().rss)}; messages ${stats.received}/${stats.sent}, ${mib(stats.bytes)} echoed`);
  }, 5000);
  const t0 = Date.now();
  await Promise.all(conns.map((c, i) => runOne(c, i).catch(() => stats.errors++)));
  clearInterval(sample);
  const wall = (Date.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, 500));
  const s = await ask('stats', 'stats');
  await Promise.all(idleConns.map((c) => c.close()));
  const bad = stats.lost + stats.reordered + stats.corrupted + stats.errors;
  console.log(
    `done: ${stats.received} of ${stats.sent} messages echoed (${(stats.received / wall).toFixed(0)} msg/s, ${mib(stats.bytes / wall)}/s); ` +
      `lost ${stats.lost}, reordered ${stats.reordered}, corrupted ${stats.corrupted}, errors ${stats.errors}; ` +
      `server RSS at end ${mib(s.rss)}, active connections left ${s.connections - idle}`,
  );
  child.send({ type: 'close' });
  await Promise.race([ask(null, 'closed'), new Promise((r) => setTimeout(r, 10000))]);
  child.kill();
  process.exit(bad === 0 ? 0 : 1);
}
