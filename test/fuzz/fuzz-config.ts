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

/** Cases per fast-check call: a long run is cut into batches so vitest's worker stays responsive. */
const BATCH = 25;

/** fast-check parameters: `runs` cases in npm test, FUZZ_RUNS (times `weight`) in a long run. */
export function params(runs: number, weight = 1): fc.Parameters<unknown> {
  return {
    numRuns: LONG_RUN ? Math.max(1, Math.round(runsFromEnv * weight)) : runs,
    ...(Number.isInteger(seedFromEnv) && process.env.FUZZ_SEED ? { seed: seedFromEnv } : {}),
    endOnFailure: true,
  };
}

/**
 * Runs a property in batches (each with its own seed, yielding to the event loop between
 * them) and, for a long run, appends its figures to FUZZ_REPORT. Throws on the first failure
 * with fast-check's report, which names the seed and path to replay it.
 */
export async function check<T>(name: string, property: fc.IProperty<T>, parameters: fc.Parameters<T>): Promise<void> {
  const started = Date.now();
  const total = parameters.numRuns ?? 100;
  const firstSeed = parameters.seed ?? Math.floor(Math.random() * 2 ** 31);
  let runs = 0;
  let failure: fc.RunDetails<T> | null = null;
  for (let batch = 0; runs < total && failure === null; batch++) {
    const numRuns = Math.min(BATCH, total - runs);
    const details = fc.check(property, { ...parameters, numRuns, seed: (firstSeed + batch) | 0 });
    runs += details.numRuns;
    if (details.failed) failure = details;
    await new Promise((resolve) => setImmediate(resolve));
  }
  const report = process.env.FUZZ_REPORT;
  if (report) {
    const line = { property: name, runs, ms: Date.now() - started, failed: failure !== null, seed: failure?.seed ?? firstSeed };
    appendFileSync(report, JSON.stringify(line) + '\n');
  }
  if (failure) throw new Error(fc.defaultReportMessage(failure) ?? `${name} failed`);
}
