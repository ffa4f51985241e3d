/** undici in tests: its WebSocketStream warns once that it is experimental (UNDICI-WSS). */

/** Keeps that warning off the test output (others go through); returns what puts it back. */
export function quietUndiciStreamWarning(): () => void {
  const emitWarning = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const code = typeof rest[0] === 'object' && rest[0] !== null ? (rest[0] as { code?: string }).code : undefined;
    if (code !== 'UNDICI-WSS') (emitWarning as (...args: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  return () => {
    process.emitWarning = emitWarning;
  };
}
