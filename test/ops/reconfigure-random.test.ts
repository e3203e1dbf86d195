// The seeded, randomized reconfiguration check (reconfigure/run.ts), a short run
// for `npm test`. scripts/reconfigure-check.sh runs the long version (figures in
// docs/testing.md). REPLICACHED_RECONF_SEED replays a seed, REPLICACHED_RECONF_EVENTS
// sets the number of events.

import { expect, test } from 'vitest';
import { runReconfigure } from './reconfigure/run';

const SEED = Number(process.env.REPLICACHED_RECONF_SEED ?? Math.floor(Math.random() * 1e9));
const EVENTS = Number(process.env.REPLICACHED_RECONF_EVENTS ?? 5);

test(`reloads at random moments while a backend restarts and clients write keep R equal copies (seed ${SEED})`, async () => {
  console.log(`reconfigure check: seed ${SEED}, ${EVENTS} events (replay: REPLICACHED_RECONF_SEED=${SEED} REPLICACHED_RECONF_EVENTS=${EVENTS})`);
  const report = await runReconfigure({
    seed: SEED,
    events: EVENTS,
    workers: ['text', 'binary', 'text', 'binary'],
    keysPerWorker: 150,
    opsPerBatch: 20,
  });
  const { failures, timeline, ...figures } = report;
  if (failures.length > 0) console.log(`timeline:\n${timeline.join('\n')}`);
  console.log(`reconfigure check, seed ${SEED}: ${JSON.stringify(figures)}`);
  expect(failures).toEqual([]);
  expect(report.live).toBeGreaterThan(0);
  expect(report.deleted).toBeGreaterThan(0);
}, 120_000 + EVENTS * 15_000);
