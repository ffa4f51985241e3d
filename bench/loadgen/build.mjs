// Builds bench/loadgen/loadgen from loadgen.c with the system compiler (`CC`, default cc) when the
// binary is missing or older than its source. Used by bench/run.mjs and bench/broadcast.mjs.
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(path.dirname(HERE));
export const LOADGEN_SRC = path.join(HERE, 'loadgen.c');
export const LOADGEN = path.join(HERE, 'loadgen');

/** Builds the load generator if needed; `log` gets one line when it does. Returns its path. */
export function buildLoadgen(log = (line) => console.error(line)) {
  const fresh = existsSync(LOADGEN) && statSync(LOADGEN).mtimeMs >= statSync(LOADGEN_SRC).mtimeMs;
  if (fresh) return LOADGEN;
  const cc = process.env.CC || 'cc';
  log(`building loadgen: ${cc} -O2 -o ${path.relative(ROOT, LOADGEN)} ${path.relative(ROOT, LOADGEN_SRC)}`);
  execFileSync(cc, ['-O2', '-Wall', '-o', LOADGEN, LOADGEN_SRC], { stdio: 'inherit' });
  return LOADGEN;
}
