// The bench harness runs end to end in its tiny configuration: real memcached backends,
// replicached, nutcracker, memaslap and the session load, one workload of each load generator
// (text for memaslap, binary for the sessions: both protocols; each run saturates the machine,
// so `npm test` runs no more). Performance is not asserted; only that every target produced a
// row with positive throughput.

import { describe, expect, it } from 'vitest';
import { QUICK, runBench, type WorkloadId } from '../../bench/src/harness';
import { markdownTable, svgChart } from '../../bench/src/report';

describe('bench harness (quick configuration)', () => {
  it('reports a row per target and workload, each with positive throughput', async () => {
    const workloads: WorkloadId[] = ['memaslap-text', 'session-binary'];
    const report = await runBench({ ...QUICK, workloads, log: () => undefined });
    const targetsOf = (w: string): string[] =>
      w.endsWith('binary') ? ['memcached', 'replicached', 'node-pipe'] : ['memcached', 'nutcracker', 'replicached', 'node-pipe'];
    const expected = workloads.flatMap((w) => targetsOf(w).map((t) => `${w} ${t}`));
    expect(report.rows.map((r) => `${r.workload} ${r.target}`).sort()).toEqual(expected.sort());
    for (const row of report.rows) {
      expect(row.ops, `${row.workload} ${row.target}`).toBeGreaterThan(0);
      expect(row.throughput, `${row.workload} ${row.target}`).toBeGreaterThan(0);
      expect(row.peakRssBytes).toBeGreaterThan(0);
    }
    const table = markdownTable(report.rows);
    expect(table.split('\n')).toHaveLength(2 + expected.length);
    expect(svgChart(report)).toMatch(/^<svg[\s\S]*<\/svg>\n$/);
  }, 40_000);
});
