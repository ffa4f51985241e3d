// Shared helpers for the bench echo servers: --port parsing and the "listening" line.
export function portArg() {
  const i = process.argv.indexOf('--port');
  const port = i >= 0 ? Number(process.argv[i + 1]) : 0;
  if (!Number.isInteger(port) || port <= 0) {
    console.error('usage: node <server>.mjs --port N');
    process.exit(1);
  }
  return port;
}

/** --deflate: accept permessage-deflate when the client offers it (off by default). */
export const DEFLATE = process.argv.includes('--deflate');

export const HOST = '127.0.0.1';
export const MAX_PAYLOAD = 4 << 20; // ≥ 2 MiB: the 1 MiB workload must pass

/** Print the line the runner waits for; `extra` goes after it on the same line. */
export function ready(extra = '') {
  process.stdout.write(`listening${extra ? ' ' + extra : ''}\n`);
}

// The runner kills us with SIGTERM; exit promptly and quietly.
process.on('SIGTERM', () => process.exit(0));
