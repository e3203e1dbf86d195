// Shared settings of the fuzz/property tests. `npm test` runs a few hundred cases per
// property (seconds); scripts/fuzz-long.mjs sets FUZZ_RUNS (and FUZZ_SEED) for long runs
// and FUZZ_REPORT to a file where each property appends one JSON line with its figures.

import { appendFileSync } from 'node:fs';
import fc from 'fast-check';

const runsFromEnv = Number(process.env.FUZZ_RUNS ?? '');
const seedFromEnv = Number(process.env.FUZZ_SEED ?? '');

/** Whether a long run was asked for (then per-test timeouts are lifted). */
export const LONG_RUN = Number.isInteger(runsFromEnv) && runsFromEnv > 0;

/** The per-test timeout: vitest's default for short runs, none worth speaking of for long ones. */
export const TEST_TIMEOUT_MS = LONG_RUN ? 24 * 3600 * 1000 : 20_000;

/** fast-check parameters: `runs` cases in npm test, FUZZ_RUNS (times `weight`) in a long run. */
export function params(runs: number, weight = 1): fc.Parameters<unknown> {
  return {
    numRuns: LONG_RUN ? Math.max(1, Math.round(runsFromEnv * weight)) : runs,
    ...(Number.isInteger(seedFromEnv) && process.env.FUZZ_SEED ? { seed: seedFromEnv } : {}),
    endOnFailure: true,
  };
}

/** Runs a property and, for a long run, appends its figures to FUZZ_REPORT. */
export function check<T>(name: string, property: fc.IProperty<T>, parameters: fc.Parameters<T>): void {
  const started = Date.now();
  const details = fc.check(property, parameters);
  const report = process.env.FUZZ_REPORT;
  if (report) {
    const line = { property: name, runs: details.numRuns, ms: Date.now() - started, failed: details.failed, seed: details.seed };
    appendFileSync(report, JSON.stringify(line) + '\n');
  }
  if (details.failed) throw new Error(fc.defaultReportMessage(details) ?? `${name} failed`);
}
