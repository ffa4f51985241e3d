/**
 * The built package loads from the repository root both ways: `import` from an ESM script and
 * `require()` from a CommonJS one (Node ≥ 20.19 require(esm)), each doing a real echo round trip.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = resolve(__dirname, '../../..');

const body = `
  const server = await serve({ perMessageDeflate: false }, async (conn) => {
    for await (const m of conn) await conn.send(m);
  });
  const c = await connect(server.url);
  await c.send('round trip');
  const echoed = await c.recv();
  await c.close();
  await server.close();
  console.log(JSON.stringify({ echoed, status: c.closeStatus }));
`;

beforeAll(async () => {
  if (!existsSync(resolve(root, 'packages/rfc6455/dist/index.js'))) {
    await run('npx', ['tsc', '-b', 'packages/rfc6455'], { cwd: root });
  }
}, 120_000);

test('import { serve, connect } from "rfc6455" works in an ESM script', async () => {
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', `import { serve, connect } from 'rfc6455';\n${body}`], { cwd: root });
  expect(JSON.parse(stdout.trim())).toEqual({ echoed: 'round trip', status: 1000 });
});

test('require("rfc6455") works in a CommonJS script', async () => {
  const script = `const { serve, connect } = require('rfc6455');\n(async () => {${body}})().catch((e) => { console.error(e); process.exit(1); });`;
  const { stdout } = await run(process.execPath, ['--input-type=commonjs', '-e', script], { cwd: root });
  // Node 20 prints an ExperimentalWarning for require(esm) on stderr; stdout has only our line.
  expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual({ echoed: 'round trip', status: 1000 });
});
