// The primary's combination of the workers' metrics (src/cluster/metrics.ts),
// with workers simulated by registries answering in-process: gauges by their
// aggregator, counters summed and kept when a worker exits, a removed backend
// dropped from the kept totals.

import { Counter, Gauge, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { ClusterMetrics, type MetricsSource } from '../../src/cluster/metrics';
import { createMetrics } from '../../src/metrics/registry';
import { metricValue } from '../ops/support';

interface FakeWorker {
  id: number;
  registry: Registry;
  up: Gauge<'backend'>;
  sets: Counter<'backend'>;
}

function fakeWorker(id: number): FakeWorker {
  const registry = new Registry();
  const registers = [registry];
  return {
    id,
    registry,
    up: new Gauge({ name: 'replicached_backend_up', help: 'up', labelNames: ['backend'] as const, registers, aggregator: 'min' }),
    sets: new Counter({ name: 'replicached_backend_sets_total', help: 'sets', labelNames: ['backend'] as const, registers }),
  };
}

let cm: ClusterMetrics | null = null;
afterEach(() => cm?.stop());

function combine(live: () => FakeWorker[]): ClusterMetrics {
  const sources = (): MetricsSource[] =>
    live().map((w) => ({
      id: w.id,
      request: (requestId) => void w.registry.getMetricsAsJSON().then((json) => cm!.answer(w.id, requestId, json)),
    }));
  cm = new ClusterMetrics(sources);
  return cm;
}

describe('cluster metrics', () => {
  it('backend_up is the minimum over the workers, counters the sum', async () => {
    const [w1, w2] = [fakeWorker(1), fakeWorker(2)];
    const metrics = combine(() => [w1, w2]);
    for (const w of [w1, w2]) w.up.set({ backend: 'a' }, 1);
    w1.sets.inc({ backend: 'a' }, 3);
    w2.sets.inc({ backend: 'a' }, 4);
    let text = await metrics.metrics();
    expect(metricValue(text, 'replicached_backend_up', { backend: 'a' })).toBe(1);
    expect(metricValue(text, 'replicached_backend_sets_total', { backend: 'a' })).toBe(7);
    w2.up.set({ backend: 'a' }, 0); // one worker ejected it
    text = await metrics.metrics();
    expect(metricValue(text, 'replicached_backend_up', { backend: 'a' })).toBe(0);
  });

  it("a worker's counters stay in the totals after it exits; its gauges do not", async () => {
    const [w1, w2, w3] = [fakeWorker(1), fakeWorker(2), fakeWorker(3)];
    let live = [w1, w2];
    const metrics = combine(() => live);
    for (const w of [w1, w2, w3]) w.up.set({ backend: 'a' }, 1);
    w1.sets.inc({ backend: 'a' }, 3);
    w2.sets.inc({ backend: 'a' }, 4);
    expect(metricValue(await metrics.metrics(), 'replicached_backend_sets_total', { backend: 'a' })).toBe(7);

    live = [w1, w3]; // w2 died, w3 replaced it
    metrics.retire(2);
    w3.sets.inc({ backend: 'a' }, 1);
    const text = await metrics.metrics();
    expect(metricValue(text, 'replicached_backend_sets_total', { backend: 'a' })).toBe(8);
    expect(metricValue(text, 'replicached_backend_up', { backend: 'a' })).toBe(1);
  });

  it('a backend a reload removed leaves the kept totals, even of a worker that exits later', async () => {
    const [w1, w2] = [fakeWorker(1), fakeWorker(2)];
    let live = [w1, w2];
    const metrics = combine(() => live);
    for (const w of [w1, w2]) for (const backend of ['a', 'b']) w.sets.inc({ backend }, 1);
    await metrics.metrics();
    live = [w2];
    metrics.retire(1);
    metrics.keepBackends(['a']);
    w2.sets.remove({ backend: 'b' }); // as the workers forget it
    let text = await metrics.metrics();
    expect(text).not.toContain('backend="b"');
    expect(metricValue(text, 'replicached_backend_sets_total', { backend: 'a' })).toBe(2);

    // w2 still had b's series when last read, and dies after the reload.
    w2.sets.inc({ backend: 'b' }, 5);
    await metrics.metrics();
    live = [];
    metrics.retire(2);
    text = await metrics.metrics();
    expect(text).not.toContain('backend="b"');
    expect(metricValue(text, 'replicached_backend_sets_total', { backend: 'a' })).toBe(2);
  });
});

describe('resync progress across workers (real metric definitions)', () => {
  it('keys pending and the last complete run: the most of any worker', async () => {
    const workers = [1, 2].map((id) => ({ id, m: createMetrics() }));
    const backlog = new Map([
      [1, 120],
      [2, 30],
    ]);
    for (const { id, m } of workers) {
      m.addBackend('a');
      m.setResyncSource(() => [{ backend: 'a', running: backlog.get(id)! > 0, pending: backlog.get(id)!, inFlight: 0 }]);
    }
    workers[0].m.resyncLastComplete.set({ backend: 'a' }, 1000);
    workers[1].m.resyncLastComplete.set({ backend: 'a' }, 2000);
    cm = new ClusterMetrics(() =>
      workers.map(({ id, m }) => ({ id, request: (requestId) => void m.registry.getMetricsAsJSON().then((json) => cm!.answer(id, requestId, json)) })),
    );
    let text = await cm.metrics();
    expect(metricValue(text, 'replicached_resync_keys_pending', { backend: 'a' })).toBe(120);
    expect(metricValue(text, 'replicached_resync_in_progress', { backend: 'a' })).toBe(1);
    expect(metricValue(text, 'replicached_resync_last_complete_timestamp_seconds', { backend: 'a' })).toBe(2000);
    backlog.set(1, 0);
    backlog.set(2, 0);
    text = await cm.metrics();
    expect(metricValue(text, 'replicached_resync_keys_pending', { backend: 'a' })).toBe(0);
    expect(metricValue(text, 'replicached_resync_in_progress', { backend: 'a' })).toBe(0);
  });
});
