// The chaos suite of issue 4: 3 real memcached, 2 replicas, real PHP clients of
// every kind. One failure at a time, in sequence, with traffic between steps:
//   SIGKILL A -> restart A empty, resync -> SIGKILL B -> restart B empty, resync
//   -> SIGSTOP C -> SIGCONT C.
// After every step every session is intact and PHP raised nothing. The slowest session
// request (start .. write_close) is a wall-clock figure: under 1 s on a calm machine
// (a failed backend costs a request about one request timeout, 300 ms), asserted by
// scripts/timing-check.sh; here it is recorded (test/helpers/timing.ts), since a loaded
// machine stretches any request (1,319 ms beside two busy loops on 2 cores). For the same
// reason the proxy runs with LOADED_MACHINE_ARGS (a 2 s request timeout) in npm test: a
// SIGSTOPped backend then costs a request up to 2 s, which php-memcached and pecl-memcache
// wait out.

import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startCluster, type Cluster } from '../helpers/cluster';
import type { MemcachedProcess } from '../helpers/memcached';
import { readSessions, writeSessions, type PhpClientKind, type PhpReport } from '../helpers/php';
import { waitForStats } from '../helpers/proxy';
import { LOADED_MACHINE_ARGS, timingClaim } from '../helpers/timing';

const KINDS: PhpClientKind[] = ['memcached-binary', 'memcached-text', 'memcache'];
const SESSIONS = 120;
const SLOWEST_MS = 1000;

describe('chaos: one failure at a time, every session survives', () => {
  let cluster: Cluster;
  let gen = 1;

  const opts = (kind: PhpClientKind) => ({ port: cluster.proxy.port, prefix: `chaos-${kind}-`, count: SESSIONS, gen });

  function expectClean(report: PhpReport): void {
    expect(report.problems).toEqual([]);
    expect(report.missing).toEqual([]);
    expect(report.mismatches).toEqual([]);
    expect(report.ok).toBe(SESSIONS);
    timingClaim(`chaos: slowest ${report.kind} session request`, report.maxMs, SLOWEST_MS);
  }

  /** Every session of every kind reads back as last written. */
  async function expectAllIntact(): Promise<void> {
    for (const kind of KINDS) expectClean(await readSessions(kind, opts(kind)));
  }

  /** Traffic between steps: every session rewritten with a new generation, then read. */
  async function rewriteAll(): Promise<void> {
    gen++;
    for (const kind of KINDS) expectClean(await writeSessions(kind, opts(kind)));
    await expectAllIntact();
  }

  /** The proxy sees all 3 backends up and no resync running, and `index` was refilled. */
  async function waitForResync(index: number, copiedBefore: number): Promise<number> {
    const stats = await waitForStats(cluster.proxy.port, (s) => {
      const line = s.get(`replicached_resync_${index}`) ?? '';
      const copied = Number(/copied=(\d+)/.exec(line)?.[1] ?? 0);
      return s.get('replicached_backends_up') === '3' && s.get('replicached_resyncs_in_progress') === '0' && copied > copiedBefore;
    });
    return Number(/copied=(\d+)/.exec(stats.get(`replicached_resync_${index}`) ?? '')?.[1] ?? 0);
  }

  /** Which of the proxy's backend slots (replicached_backend_<i>) is this memcached. */
  async function slotOf(mc: MemcachedProcess): Promise<number> {
    const stats = await waitForStats(cluster.proxy.port, () => true);
    for (const [name, value] of stats) {
      const m = /^replicached_backend_(\d+)$/.exec(name);
      if (m && value.startsWith(`${mc.address} `)) return Number(m[1]);
    }
    throw new Error(`${mc.address} is not in the proxy's stats`);
  }

  beforeAll(async () => {
    cluster = await startCluster({ backends: 3, replicas: 2, args: [...LOADED_MACHINE_ARGS] });
    for (const kind of KINDS) expectClean(await writeSessions(kind, opts(kind)));
  });
  afterAll(async () => {
    // A stopped backend would hold up the proxy's drain.
    for (const b of cluster?.backends ?? []) b.kill('SIGCONT');
    await cluster?.stop();
  });

  test('1. SIGKILL a backend', async () => {
    cluster.backends[0].kill('SIGKILL');
    await cluster.backends[0].exited();
    await expectAllIntact();
    await rewriteAll();
  });

  test('2. restart it empty: resync refills it', async () => {
    const slot = await slotOf(cluster.backends[0]);
    await cluster.backends[0].restart();
    await waitForResync(slot, 0);
    await rewriteAll();
  });

  test('3. SIGKILL another (no writes while it is away), restart it empty, resync', async () => {
    cluster.backends[1].kill('SIGKILL');
    await cluster.backends[1].exited();
    // Reads only: a hit on the authority copies nothing, so what the restarted
    // backend shares with the third one can come back only through resync.
    await expectAllIntact();
    const slot = await slotOf(cluster.backends[1]);
    await cluster.backends[1].restart();
    await waitForResync(slot, 0);
  });

  test('4. kill the third at once: what it shared with the second survives through resync alone', async () => {
    cluster.backends[2].kill('SIGKILL');
    await cluster.backends[2].exited();
    await expectAllIntact();
    await rewriteAll();
    const slot = await slotOf(cluster.backends[2]);
    await cluster.backends[2].restart();
    await waitForResync(slot, 0);
    await expectAllIntact();
  });

  test('5. SIGSTOP a backend (hung, socket open), then SIGCONT', async () => {
    await cluster.backends[0].pause();
    await expectAllIntact();
    await rewriteAll();
    cluster.backends[0].kill('SIGCONT');
    await waitForStats(cluster.proxy.port, (s) => s.get('replicached_backends_up') === '3');
    await rewriteAll();
  });
});
