// The rate-capped latency bench runs end to end in a tiny configuration (1 s per phase, one
// round, text so that nutcracker is in it too). Nothing is timed against a target; only the
// shape of the result is checked.

import { describe, expect, it } from 'vitest';
import { latencyTable, runLatency } from '../../bench/src/latency';

describe('latency bench (tiny configuration)', () => {
  it('reports a row per target with positive rates, no errors and ordered percentiles', async () => {
    const report = await runLatency({ seconds: 1, protocol: 'text', connections: 4, fraction: 0.5, rounds: 1, log: () => undefined });
    expect(report.peak).toBeGreaterThan(0);
    expect(report.rows.map((r) => r.target)).toEqual(['memcached', 'nutcracker', 'replicached', 'node-pipe']);
    for (const row of report.rows) {
      expect(row.offered, row.target).toBeCloseTo(report.peak * 0.5);
      expect(row.achieved, row.target).toBeGreaterThan(0);
      expect(row.ops, row.target).toBeGreaterThan(0);
      expect(row.errors, row.target).toBe(0);
      expect(row.p50, row.target).toBeGreaterThan(0);
      expect(row.p50, row.target).toBeLessThanOrEqual(row.p99);
      expect(row.p99, row.target).toBeLessThanOrEqual(row.p999);
    }
    expect(latencyTable(report).split('\n')).toHaveLength(2 + report.rows.length);
  }, 40_000);
});
