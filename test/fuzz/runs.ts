/** Run count for fuzz properties: small in `npm test`, FUZZ_RUNS (200000 in `npm run fuzz`) otherwise. */
export function runs(defaultRuns: number): number {
  const env = Number(process.env.FUZZ_RUNS);
  return Number.isFinite(env) && env > 0 ? env : defaultRuns;
}
