/** Small helpers shared by the examples. */
import { createInterface } from 'node:readline';

/** Calls `onLine` for each line of stdin and `onEnd` when stdin ends. */
export function readLines(onLine: (line: string) => void, onEnd: () => void = () => {}): () => void {
  const rl = createInterface({ input: process.stdin, terminal: false });
  rl.on('line', onLine);
  rl.on('close', onEnd);
  return () => {
    rl.close();
    process.stdin.destroy();
  };
}

/** Parses a port number option, exiting with status 2 on garbage. */
export function portOption(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`invalid port: ${value}`);
    process.exit(2);
  }
  return port;
}

/**
 * Racket's "Hit enter to stop service": stops `server` gracefully (1001 to every connection) on the
 * first line of stdin, or on SIGINT/SIGTERM, then exits.
 */
export function stopOnEnter(server: { close(): Promise<void> }): void {
  console.log('Server running. Hit enter to stop service.');
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    server.close().then(() => process.exit(0));
  };
  const closeStdin = readLines(() => {
    closeStdin();
    stop();
  });
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
