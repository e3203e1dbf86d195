// scripts/sim.sh: many seeds, each for `steps` scheduler events, one line per seed
// and the totals. Exits 1 when any seed found a violation (its report printed).
//
//   vite-node test/sim/cli.ts [first-last | count] [steps] [trust | none] [fault kinds, comma-separated] [zones]

import { FAULT_KINDS, type FaultKind } from './faults';
import { report, shapeOf, simulate } from './run';
import type { Protocol } from './sidecar';

function seedsFrom(arg: string | undefined): number[] {
  const range = /^(\d+)-(\d+)$/.exec(arg ?? '');
  if (range) return Array.from({ length: Number(range[2]) - Number(range[1]) + 1 }, (_, i) => Number(range[1]) + i);
  return Array.from({ length: Number(arg ?? 20) }, (_, i) => i + 1);
}

async function main(): Promise<void> {
  const [seedArg, stepsArg, protocolArg, kindsArg, zonesArg] = process.argv.slice(2).filter((a) => a !== '--');
  const kinds = (kindsArg === undefined || kindsArg === '' ? FAULT_KINDS : kindsArg.split(',')) as FaultKind[];
  const zones = Number(zonesArg ?? 0);
  if (!Number.isInteger(zones) || zones < 0) throw new Error(`zones: a count, not ${zonesArg}`);
  const unknown = kinds.filter((k) => !(FAULT_KINDS as readonly string[]).includes(k));
  if (unknown.length > 0) throw new Error(`fault kinds: ${unknown.join(', ')} unknown; known: ${FAULT_KINDS.join(', ')}`);
  const seeds = seedsFrom(seedArg);
  const steps = Number(stepsArg ?? 200_000);
  if (protocolArg !== undefined && protocolArg !== 'trust' && protocolArg !== 'none') throw new Error(`protocol: trust or none, not ${protocolArg}`);
  const protocol: Protocol = protocolArg ?? 'trust';
  // SIM_ROSTER_PRUNE_MS: sidecars take a dead id off the roster after this long, not after the
  // product's 5 minutes (longer than any run), so that the pruning itself runs under the faults.
  const rosterPruneMs = process.env.SIM_ROSTER_PRUNE_MS === undefined ? undefined : Number(process.env.SIM_ROSTER_PRUNE_MS);
  // SIM_ONE_BACKEND=1: trouble on one backend at a time (faults.ts, oneBackend).
  const oneBackend = process.env.SIM_ONE_BACKEND === '1';
  let totalSteps = 0;
  let totalMs = 0;
  let failed = 0;
  for (const seed of seeds) {
    const started = process.hrtime.bigint();
    const result = await simulate({ seed, ...shapeOf(seed), protocol, steps, zones, rosterPruneMs, faults: { kinds, oneBackend } });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    totalSteps += result.steps;
    totalMs += ms;
    const found = Object.entries(result.counts).map(([kind, n]) => `${kind}=${n}`).join(' ') || 'none';
    const { sidecars, backends } = result.options;
    console.log(
      `seed ${seed}: ${sidecars} sidecars, ${backends} backends${zones > 0 ? ` in ${zones} zones` : ''}, ${result.steps} steps, ` +
        `${(result.virtualMs / 1000).toFixed(0)} s simulated, ${result.ops} ops, ${result.quietChecks} quiet checks, ` +
        `${Math.round(result.steps / (ms / 1000))} steps/s, trace ${result.traceHash.toString(16)}, violations: ${found}`,
    );
    if (result.violations.length > 0) {
      failed++;
      console.log(report(result, result.violations[0]));
    }
  }
  console.log(
    `${seeds.length} seeds, ${totalSteps} steps in ${(totalMs / 1000).toFixed(1)} s ` +
      `(${Math.round(totalSteps / (totalMs / 1000))} steps/s), ${failed} with violations`,
  );
  process.exitCode = failed > 0 ? 1 : 0;
}

void main();
