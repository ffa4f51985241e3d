/** Small helpers shared by the examples. */
import { createInterface } from 'node:readline';
import { parseArgs, type ParseArgsConfig } from 'node:util';

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
  // Digits only: Number() reads '' (an unset $PORT) as 0, a random free port, and takes '0x50'.
  const port = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!(port <= 65535)) {
    console.error(`invalid port: ${value}`);
    process.exit(2);
  }
  return port;
}

/** Parses a whole-number option (digits only, at least `min`), exiting with status 2 on garbage. */
export function countOption(name: string, value: string | undefined, min = 0): number | undefined {
  if (value === undefined) return undefined;
  const n = /^\d{1,15}$/.test(value) ? Number(value) : NaN;
  if (!(n >= min)) {
    console.error(`invalid --${name}: ${value}`);
    process.exit(2);
  }
  return n;
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

/** Node's parseArgs, with a usage error (exit 2) instead of a stack trace for an unknown or malformed option. */
export function commandLine<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (error) {
    console.error((error as Error).message);
    process.exit(2);
  }
}

/**
 * The command line shared by test-server.ts and test-service-mapper.ts, as serve() options:
 * `--port` (default 8081, 0 picks a free one), `--host` (default 127.0.0.1) and `--timeout`
 * (Racket's ws-idle-timeout, in seconds).
 */
export function testServerOptions(): { port: number; host: string; idleTimeout?: number } {
  const { values } = commandLine({
    options: {
      port: { type: 'string', default: '8081' },
      host: { type: 'string', default: '127.0.0.1' },
      timeout: { type: 'string' },
    },
  });
  return {
    port: portOption(values.port, 8081),
    host: values.host ?? '127.0.0.1',
    ...(values.timeout !== undefined ? { idleTimeout: countOption('timeout', values.timeout)! * 1000 } : {}),
  };
}
