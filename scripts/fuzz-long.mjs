#!/usr/bin/env node
// The nightly fuzz run: the property tests of test/fuzz/ in rounds, each round with a new
// seed and FUZZ_RUNS cases per property, until the time is up. Prints per-property
// totals (cases, seconds, failures with their seeds) and exits 1 on any failure.
//
//   node scripts/fuzz-long.mjs [--minutes 10] [--runs 20000]
//
// A failure prints fast-check's counterexample and the seed; replay it with
//   FUZZ_RUNS=<runs> FUZZ_SEED=<seed> npx vitest run test/fuzz

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!(v > 0)) {
    console.error(`--${name} needs a positive number`);
    process.exit(2);
  }
  return v;
}

const minutes = option('minutes', 10);
const runs = Math.round(option('runs', 20000));
const root = path.join(path.dirname(new URL(import.meta.url).pathname), '..');
const dir = mkdtempSync(path.join(tmpdir(), 'replicached-fuzz-'));
const report = path.join(dir, 'report.jsonl');
const vitest = path.join(root, 'node_modules', 'vitest', 'vitest.mjs');

const started = Date.now();
const deadline = started + minutes * 60_000;
let rounds = 0;
let failedRounds = 0;
while (Date.now() < deadline) {
  const seed = Math.floor(Math.random() * 2 ** 31);
  rounds++;
  console.log(`round ${rounds}: FUZZ_RUNS=${runs} FUZZ_SEED=${seed}`);
  const r = spawnSync(process.execPath, [vitest, 'run', 'test/fuzz'], {
    cwd: root,
    env: { ...process.env, FUZZ_RUNS: String(runs), FUZZ_SEED: String(seed), FUZZ_REPORT: report },
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
  });
  if (r.status !== 0) {
    failedRounds++;
    console.log(r.stdout, r.stderr);
  }
}

const totals = new Map();
for (const line of readFileSync(report, 'utf8').split('\n').filter(Boolean)) {
  const { property, runs: n, ms, failed, seed } = JSON.parse(line);
  const t = totals.get(property) ?? { runs: 0, ms: 0, failures: [] };
  t.runs += n;
  t.ms += ms;
  if (failed) t.failures.push(seed);
  totals.set(property, t);
}
rmSync(dir, { recursive: true, force: true });

const elapsed = ((Date.now() - started) / 1000).toFixed(0);
console.log(`\n${rounds} rounds in ${elapsed} s, ${failedRounds} failed`);
console.log('property'.padEnd(46), 'cases'.padStart(10), 'seconds'.padStart(8), ' failures (seeds)');
for (const [property, t] of totals) {
  console.log(property.padEnd(46), String(t.runs).padStart(10), (t.ms / 1000).toFixed(0).padStart(8), ` ${t.failures.length}${t.failures.length ? ` (${t.failures.join(', ')})` : ''}`);
}
process.exit(failedRounds > 0 ? 1 : 0);
