// The resync progress gauges (issue 12): replicached_resync_keys_pending counts
// the keys a running resync still has to copy, and drops to 0 when it ends;
// replicached_resync_in_progress follows the run. Real memcached, a resync
// throttled so that it is seen mid-way. (The last-complete timestamp is set by
// the proxy: test/metrics/series.test.ts.)

import { afterEach, expect, test } from 'vitest';
import { createMetrics } from '../../src/metrics/registry';
import { metricValue } from '../ops/support';
import { pollUntil } from '../helpers/wait';
import { k, startResyncCluster, stopResyncCluster } from '../resync/support';

afterEach(stopResyncCluster);

test('keys pending: what the run has listed and not yet copied, then 0; in progress while it runs', async () => {
  const c = await startResyncCluster({}, { keysPerSecond: 400, quietMs: 0 });
  const metrics = createMetrics();
  metrics.setResyncSource(() => c.resyncer.progress().map((p) => ({ ...p, running: p.state !== 'idle' })));
  const keys = Array.from({ length: 600 }, (_, i) => `progress-${i}`);
  for (const key of keys) await c.router.store({ mode: 'set', key: k(key), flags: 0, exptime: 0, value: k('v'), cas: 0n });
  const target = c.backends[0];
  const share = keys.filter((key) => c.ring.replicaSet(k(key)).some((m) => m.address === target.address)).length;
  await c.mcs[0].restart();
  await pollUntil(async () => target.isUp() && (await target.version()).status === 'ok', 10_000, 20);

  const scrape = async (name: string): Promise<number | undefined> => metricValue(await metrics.registry.metrics(), name, { backend: target.address });
  expect(await scrape('replicached_resync_keys_pending')).toBe(0);
  expect(await scrape('replicached_resync_in_progress')).toBe(0);
  const run = c.resyncer.resync(target, 'refill');
  // Listed, copying at 400 keys/s: most of the share is still to do.
  await pollUntil(async () => ((await scrape('replicached_resync_keys_pending')) ?? 0) > share / 2, 10_000, 10);
  const midway = (await scrape('replicached_resync_keys_pending'))!;
  expect(midway).toBeLessThanOrEqual(share);
  expect(await scrape('replicached_resync_in_progress')).toBe(1);
  expect((await run)?.outcome).toBe('done');
  // The sheds a complete run starts are quick; once they end nothing is left anywhere.
  await pollUntil(async () => c.resyncer.progress().every((p) => p.state === 'idle'), 10_000, 20);
  expect(await scrape('replicached_resync_keys_pending')).toBe(0);
  expect(await scrape('replicached_resync_in_progress')).toBe(0);
});
