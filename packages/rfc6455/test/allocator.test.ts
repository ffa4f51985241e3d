/**
 * tuneAllocator() on this Linux/glibc machine: applied once per process, and it does what it is
 * for: memory freed by large buffers is kept for reuse instead of going back to the kernel and
 * being faulted in again. The probe allocates and fills rounds of 24 buffers of 1 MiB and frees
 * them (a GC after each round), as a large-message server does between collections, and counts the
 * page faults of the later rounds: measured 5.4-5.5 per MiB untuned, 0-0.3 tuned, run after run.
 * (An earlier probe that churned like a 1 MiB echo server without forcing the collections measured
 * anything from 9 to 133 faults per message untuned, depending on where the process's collections
 * happened to fall, and now and then failed.) The probe processes run with `--single-threaded-gc`:
 * otherwise the buffers of a round may be freed by a background thread only after the next round
 * has taken fresh memory (seen with both cores busy), whatever the tuning. Each case runs in a
 * fresh `node` process: the tuning is process-wide.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = resolve(__dirname, '../../..');
const dist = resolve(root, 'packages/rfc6455/dist/index.js');

interface Tuning {
  applied: boolean;
  reason?: string;
}

/** Rounds of 24 buffers of 1 MiB, filled, then freed by a GC; sets perMiB (page faults per MiB of the later rounds). */
const churn = `
  const round = () => {
    let buffers = [];
    for (let i = 0; i < 24; i++) { const b = Buffer.allocUnsafe(1 << 20); b.fill(i); buffers.push(b); }
    buffers = null;
    globalThis.gc({ type: 'minor' });
    globalThis.gc();
  };
  round();
  round();
  const before = process.resourceUsage().minorPageFault;
  round();
  round();
  const perMiB = (process.resourceUsage().minorPageFault - before) / 48;
`;

const probe = (tune: boolean): string => `
  const { tuneAllocator } = await import(${JSON.stringify(dist)});
  const first = ${tune} ? tuneAllocator() : null;
  const second = ${tune} ? tuneAllocator() : null;
  ${churn}
  console.log(JSON.stringify({ first, second, perMiB }));
`;

async function runProbe(tune: boolean): Promise<{ first: Tuning | null; second: Tuning | null; perMiB: number }> {
  const { stdout } = await run(process.execPath, ['--expose-gc', '--single-threaded-gc', '--input-type=module', '-e', probe(tune)], { cwd: root });
  return JSON.parse(stdout.trim()) as never;
}

beforeAll(async () => {
  if (!existsSync(dist)) await run('npx', ['tsc', '-b', 'packages/rfc6455'], { cwd: root });
}, 120_000);

const glibc = process.platform === 'linux' && Boolean((process.report?.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime);

(glibc ? test : test.skip)('is applied once per process and cuts the page faults of large-message churn', async () => {
  const plain = await runProbe(false);
  const tuned = await runProbe(true);
  expect(plain.first).toBeNull();
  expect(tuned.first).toEqual({ applied: true });
  expect(tuned.second).toEqual({ applied: false, reason: 'already applied in this process' });
  expect(tuned.perMiB * 4).toBeLessThan(plain.perMiB);
}, 60_000);

const deferredProbe = `
  const { serve, connect } = await import(${JSON.stringify(dist)});
  const { deferredTuning } = await import(${JSON.stringify(resolve(root, 'packages/rfc6455/dist/allocator.js'))});
  const TUNED = Symbol.for('rfc6455.tuneAllocator');
  const server = await serve({ port: 0 }, (conn) => conn.on('message', (m) => conn.send(m)));
  const steps = { armedAtStart: deferredTuning.armed };
  const client = await connect(server.url);
  for (let i = 0; i < 50; i++) { await client.send('x'.repeat(1000)); await client.recv(); }
  steps.afterSmall = { armed: deferredTuning.armed, tuned: globalThis[TUNED] === true };
  await client.send(Buffer.alloc(32768, 7));
  const echo = await client.recv();
  steps.echoLength = echo.length;
  steps.afterBulk = { armed: deferredTuning.armed, tuned: globalThis[TUNED] === true };
  await client.close();
  await server.close();
  console.log(JSON.stringify(steps));
`;

(glibc ? test : test.skip)('serve() tunes only once bulk traffic (16 KiB and more) flows, not for small messages', async () => {
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', deferredProbe], { cwd: root });
  const steps = JSON.parse(stdout.trim()) as Record<string, unknown>;
  expect(steps).toEqual({
    armedAtStart: true,
    afterSmall: { armed: true, tuned: false },
    echoLength: 32768,
    afterBulk: { armed: false, tuned: true },
  });
}, 60_000);

const backgroundProbe = `
  const { bulkTrafficSeen, tuneAllocator } = await import(${JSON.stringify(resolve(root, 'packages/rfc6455/dist/allocator.js'))});
  const first = await bulkTrafficSeen();
  const second = tuneAllocator();
  ${churn}
  console.log(JSON.stringify({ first, second, perMiB }));
`;

(glibc ? test : test.skip)('the background tuning (thread pool) has the same effect as the synchronous one', async () => {
  const plain = await runProbe(false);
  const { stdout } = await run(process.execPath, ['--expose-gc', '--single-threaded-gc', '--input-type=module', '-e', backgroundProbe], { cwd: root });
  const tuned = JSON.parse(stdout.trim()) as { first: Tuning; second: Tuning; perMiB: number };
  expect(tuned.first).toEqual({ applied: true });
  expect(tuned.second).toEqual({ applied: false, reason: 'already applied in this process' });
  expect(tuned.perMiB * 4).toBeLessThan(plain.perMiB);
}, 60_000);
