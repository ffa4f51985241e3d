/**
 * Helpers for tests that run the examples and the CLI as real child processes.
 * Examples run with tsx; TSX_TSCONFIG_PATH maps `rfc6455` to the package sources (as Jest does),
 * so the tests never run against a stale build.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { resolve } from 'node:path';

/** The repository root (Jest compiles tests to CommonJS, so __dirname is defined). */
export const ROOT = resolve(__dirname, '../..');

export interface Child {
  proc: ChildProcessWithoutNullStreams;
  /** Everything written to stdout so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves with the first match of `pattern` in stdout (waits for it; rejects on exit/timeout). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Resolves with the exit code (signal exits give null). */
  exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL if it lingers; resolves when it is gone. */
  kill(): Promise<void>;
}

const children = new Set<Child>();

/** Spawns `node [--import tsx] args…` with cwd at the repository root. */
export function spawnNode(args: readonly string[], options: { tsx?: boolean; env?: NodeJS.ProcessEnv } = {}): Child {
  const argv = options.tsx === false ? [...args] : ['--import', 'tsx', ...args];
  const proc = spawn(process.execPath, argv, {
    cwd: ROOT,
    env: { ...process.env, TSX_TSCONFIG_PATH: resolve(ROOT, 'test/tsconfig.json'), NO_COLOR: '1', ...options.env },
    stdio: 'pipe',
  });
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  proc.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    for (const l of listeners) l();
  });
  proc.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
  });
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolveExit) => {
    proc.on('exit', (code) => {
      exitCode = code;
      for (const l of listeners) l();
      resolveExit(code);
    });
  });
  const child: Child = {
    proc,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(pattern, timeoutMs = 20_000) {
      return new Promise((resolveMatch, reject) => {
        const check = (): void => {
          const m = out.match(pattern);
          if (m) {
            done();
            resolveMatch(m);
          } else if (exitCode !== undefined) {
            done();
            reject(new Error(`process exited (${exitCode}) before printing ${pattern}\nstdout: ${out}\nstderr: ${err}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out waiting for ${pattern}\nstdout: ${out}\nstderr: ${err}`));
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
    async kill() {
      children.delete(child);
      if (exitCode !== undefined) return;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
  children.add(child);
  return child;
}

/** Kills every child still running (call in afterAll/afterEach). */
export async function killAll(): Promise<void> {
  await Promise.all([...children].map((c) => c.kill()));
}

/** Starts an example server with `--port 0` and returns it with the ws:// URL it printed. */
export async function startExample(file: string, args: readonly string[] = []): Promise<{ child: Child; url: URL }> {
  const child = spawnNode([`examples/${file}`, '--port', '0', ...args]);
  const [match] = await child.waitFor(/(ws|http):\/\/[^\s]+/);
  return { child, url: new URL(match) };
}
