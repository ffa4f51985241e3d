/**
 * For tests of the default error reports: registers hooks that run each test as `NODE_ENV=production`
 * (Jest sets `test`, where the core's default stays quiet, as Express's does) with `console.error`
 * captured instead of printed, and restores both after it. Returns what was printed in the
 * current test, one string per call (its arguments joined with spaces).
 */
export function capturedConsoleErrors(): () => string[] {
  let logged: string[] = [];
  let nodeEnv: string | undefined;
  let spy: jest.SpyInstance | undefined;
  beforeEach(() => {
    logged = [];
    nodeEnv = process.env.NODE_ENV;
    process.env.NODE_ENV = 'production';
    spy = jest.spyOn(console, 'error').mockImplementation((...args: unknown[]) => void logged.push(args.map(String).join(' ')));
  });
  afterEach(() => {
    spy?.mockRestore();
    process.env.NODE_ENV = nodeEnv;
  });
  return () => logged;
}
