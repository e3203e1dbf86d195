// The seeded, model-based randomized check (checker/run.ts), short runs for
// `npm test`. Longer runs: scripts/model-check.sh (figures in docs/testing.md).
// REPLICACHED_CHECK_SEED replays one seed.

import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startMemcached, type MemcachedProcess } from '../helpers/memcached';
import { seeded } from './support';
import { connect, type Protocol } from './checker/clients';
import { describe as show, randomOp, runCheck } from './checker/run';
import { apply, emptyState, quietly, sameResult, type Op } from './checker/model';

const SEED = Number(process.env.REPLICACHED_CHECK_SEED ?? 20261128);
// The long runs of scripts/model-check.sh scale these up.
const BATCHES = Number(process.env.REPLICACHED_CHECK_BATCHES ?? 40);
const FAULTS = Number(process.env.REPLICACHED_CHECK_FAULTS ?? 1);
const LONG_TIMEOUT_MS = 180_000 + BATCHES * 2_000 + FAULTS * 30_000;

describe('the model agrees with memcached itself', () => {
  let mc: MemcachedProcess;
  beforeAll(async () => {
    mc = await startMemcached();
  });
  afterAll(async () => {
    await mc?.stop();
  });

  // Without this, a wrong model would make the checker report the proxy wrong, or right.
  test.each(['text', 'binary'] as const)('%s, pipelined with quiet requests', async (protocol: Protocol) => {
    const rng = seeded(SEED);
    const client = await connect(protocol, mc.port);
    const keys = Array.from({ length: 8 }, (_, i) => `model-${protocol}-${i}`);
    const states = new Map(keys.map((k, i) => [k, emptyState(i % 4 === 0)]));
    let checked = 0;
    for (let b = 0; b < 30; b++) {
      const ops: Op[] = [];
      while (ops.length < 25) {
        const key = keys[Math.floor(rng() * keys.length)];
        const op = randomOp(rng, key, states.get(key)!, true);
        if (op) ops.push(op);
      }
      const results = await client.run(ops);
      ops.forEach((op, i) => {
        const s = states.get(op.key)!;
        const want = apply(s, op);
        const expected = op.quiet ? quietly(want, protocol) : want;
        expect(sameResult(expected, results[i], s.counter), `${op.kind} ${op.key}: ${show(expected)} vs ${show(results[i])}`).toBe(true);
        if (op.kind === 'get' && results[i].kind === 'value') s.token = (results[i] as { cas: bigint }).cas;
        checked++;
      });
    }
    client.close();
    expect(checked).toBe(750);
  });
});

describe('replication under overlap, against the model', () => {
  test('one sidecar, text and binary workers, pipelined, a backend killed and restarted', async () => {
    const report = await runCheck({
      seed: SEED,
      sidecars: 1,
      workers: [{ protocol: 'text' }, { protocol: 'binary' }, { protocol: 'text' }, { protocol: 'binary' }],
      batches: BATCHES,
      opsPerBatch: 20,
      ownedKeysPerWorker: 8,
      sharedKeys: 8,
      faults: FAULTS,
    });
    console.log(`model check, one sidecar: ${JSON.stringify({ ...report, failures: report.failures.length })}`);
    expect(report.failures).toEqual([]);
    expect(report.faults).toBe(FAULTS);
    expect(report.checked).toBeGreaterThan(BATCHES * 25);
  }, LONG_TIMEOUT_MS);

  test('two sidecars over the same backends, a backend killed and restarted', async () => {
    const report = await runCheck({
      seed: SEED + 1,
      sidecars: 2,
      workers: [{ protocol: 'binary' }, { protocol: 'text' }, { protocol: 'binary' }, { protocol: 'text' }],
      batches: BATCHES,
      opsPerBatch: 20,
      ownedKeysPerWorker: 8,
      sharedKeys: 8,
      faults: FAULTS,
    });
    console.log(`model check, two sidecars: ${JSON.stringify({ ...report, failures: report.failures.length })}`);
    expect(report.failures).toEqual([]);
    expect(report.faults).toBe(FAULTS);
    expect(report.checked).toBeGreaterThan(BATCHES * 25);
  }, LONG_TIMEOUT_MS);
});
