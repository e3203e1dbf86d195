// Real PHP under overlap (issue 11): PHP processes per client kind, one per replicached
// sidecar, two of them (through two sidecars) on each session, increment their session over
// the same three memcached while a backend is SIGKILLed and restarted again and again
// (REPLICACHED_OVERLAP_FAULT=sigstop: SIGSTOPped and resumed instead; =none: no fault, the
// baseline of the same workload, lock contention alone). Two sidecars by
// default; REPLICACHED_OVERLAP_SIDECARS=<n> runs n (scripts/timing-check.sh: 2 and 10, both
// faults). Each session ends with exactly the increments PHP saw acknowledged and PHP raises
// nothing. That no request takes a second or more, and none a backend was dead during takes
// 0.3 s or more (issue 19, contract 6), holds on a calm machine: recorded here, asserted by
// scripts/timing-check.sh (see test/helpers/timing.ts; a loaded machine stretches any request
// past it). So is the agreement's share of a kill: from the SIGKILL until the last sidecar's log
// says it applied the backend's out (that every sidecar does is asserted).

import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startMemcached, type MemcachedProcess } from '../helpers/memcached';
import { incrementCounter, readCounter, type PhpClientKind } from '../helpers/php';
import { startProxy, waitForStats, type ProxyProcess } from '../helpers/proxy';
import { LOADED_MACHINE_ARGS, timingClaim } from '../helpers/timing';
import { seeded } from '../replication/support';

const TIMES = 150;
/** What happens to a backend: killed and restarted empty, or hung (SIGSTOP) and resumed. */
const FAULT = ({ sigstop: 'sigstop', none: 'none' } as const)[process.env.REPLICACHED_OVERLAP_FAULT ?? ''] ?? 'kill';
const SLOWEST_MS = 1000;
/** A request that overlapped a backend's death (SIGKILL until its restart) costs less than this. */
const KILLED_MS = 300;
const SIDECARS = Number(process.env.REPLICACHED_OVERLAP_SIDECARS ?? 2);
/** Each session's two incrementers go through two sidecars (one alone when the count is odd). */
const SESSIONS = Math.ceil(SIDECARS / 2);

describe(`PHP sessions through ${SIDECARS} sidecars while backends die and come back`, () => {
  let backends: MemcachedProcess[];
  let sidecars: ProxyProcess[];

  beforeAll(async () => {
    backends = await Promise.all([startMemcached(), startMemcached(), startMemcached()]);
    const addresses = backends.map((b) => b.address);
    // LOADED_MACHINE_ARGS: a healthy memcached starved of CPU is not taken for a second failure.
    const start = (): Promise<ProxyProcess> => startProxy({ backends: addresses, replicas: 2, args: [...LOADED_MACHINE_ARGS] });
    // One first: it writes the incarnation keys of the new cluster, which the others then find.
    sidecars = [await start()];
    sidecars.push(...(await Promise.all(Array.from({ length: SIDECARS - 1 }, start))));
  }, 60_000);
  afterAll(async () => {
    await Promise.all(sidecars.map((s) => s.stop()));
    await Promise.all(backends.map((b) => b.stop()));
  });

  /** Every sidecar sees every backend up and none resyncing. */
  async function settled(): Promise<void> {
    for (const s of sidecars) {
      await waitForStats(s.port, (st) => st.get('replicached_backends_up') === '3' && st.get('replicached_resyncs_in_progress') === '0', 60_000);
    }
  }

  /**
   * Kills (or hangs) a random backend, brings it back, waits for every sidecar to refill it; again
   * until `stop`. Each SIGKILL's time until the restart begins goes into `dead` ([from, to], ms),
   * with the backend it killed into `killed`.
   */
  async function chaos(seed: number, stop: () => boolean, dead: Array<[number, number]>, killed: string[]): Promise<number> {
    const rng = seeded(seed);
    let kills = 0;
    while (!stop()) {
      await new Promise((r) => setTimeout(r, 100 + rng() * 300));
      if (stop() || FAULT === 'none') continue;
      const victim = backends[Math.floor(rng() * backends.length)];
      if (FAULT === 'sigstop') {
        await victim.pause();
        await new Promise((r) => setTimeout(r, 600 + rng() * 600)); // past the request timeout
        victim.resume();
      } else {
        const killedAt = Date.now();
        victim.kill('SIGKILL');
        await victim.exited();
        await new Promise((r) => setTimeout(r, 100 + rng() * 300));
        dead.push([killedAt, Date.now()]);
        killed.push(victim.address);
        await victim.restart();
      }
      kills++;
      await settled();
    }
    return kills;
  }

  test.each<PhpClientKind>(['memcached-binary', 'memcached-text', 'memcache'])(
    '%s: every acknowledged increment counted, no error, no slow request',
    async (kind) => {
      await settled();
      const ids = Array.from({ length: SESSIONS }, (_, i) => `overlap-${kind}-${i}`);
      // Primed first (see concurrentIncrements: pecl-memcache mishandles two creators of its lock key).
      for (const [i, id] of ids.entries()) {
        const prime = await incrementCounter(kind, { port: sidecars[(2 * i) % SIDECARS].port, id, times: 1 });
        expect(prime.problems).toEqual([]);
      }
      let done = false;
      const dead: Array<[number, number]> = [];
      const killed: string[] = [];
      const killing = chaos(kind.length * 7919, () => done, dead, killed);
      // A pause between increments lets the other process in: pecl-memcache backs off while it
      // waits for the lock (its wait doubles), and one that reacquires at once starves it past a
      // second with no fault at all (REPLICACHED_OVERLAP_FAULT=none, ten sidecars on two cores:
      // up to 2.4 s at a 5 ms pause); at 20 ms the lock is free most of the time it looks.
      const pauseMs = kind === 'memcache' ? 20 : 5;
      const runs = await Promise.all(
        sidecars.map((s, i) => incrementCounter(kind, { port: s.port, id: ids[Math.floor(i / 2)], times: TIMES, holdMs: 1, pauseMs })),
      );
      done = true;
      const kills = await killing;
      await settled();
      const finals = await Promise.all(ids.map((id, i) => readCounter(kind, { port: sidecars[(2 * i + 1) % SIDECARS].port, id })));
      const fault = { sigstop: ' (a backend hung)', none: ' (no fault)', kill: '' }[FAULT];
      for (const r of [...runs, ...finals]) {
        expect(r.problems).toEqual([]);
        timingClaim(`overlap, ${SIDECARS} sidecars${fault}: slowest ${kind} session request`, r.maxMs, SLOWEST_MS);
      }
      if (FAULT === 'kill') {
        // The requests a dead backend was dead during, from its SIGKILL until its restart began.
        const during = runs.flatMap((r) => r.requests).filter((q) => dead.some(([from, to]) => q.at < to && q.at + q.ms > from));
        timingClaim(`overlap, ${SIDECARS} sidecars: slowest ${kind} session request while a backend is dead`, Math.max(0, ...during.map((q) => q.ms)), KILLED_MS);
        // The agreement's share of that: from each SIGKILL until the last sidecar applied the out.
        const agreed = dead.map(([killedAt], i) => sidecars.map((s) => outAppliedAfter(s.output(), killed[i], killedAt)));
        expect(agreed.flat().filter((ms) => ms === undefined)).toEqual([]);
        timingClaim(`overlap, ${SIDECARS} sidecars: a killed backend out on every sidecar`, Math.max(0, ...agreed.flat().map((ms) => ms ?? 0)), KILLED_MS);
      }
      if (FAULT !== 'none') expect(kills).toBeGreaterThan(0);
      for (const [i, final] of finals.entries()) {
        const mine = runs.filter((_, p) => Math.floor(p / 2) === i);
        expect(final.counter, ids[i]).toBe(1 + mine.reduce((n, r) => n + r.ok, 0));
      }
      expect(runs.reduce((n, r) => n + r.ok, 0)).toBe(SIDECARS * TIMES);
    },
    120_000,
  );
});

/**
 * How long after `since` (ms since the epoch) a sidecar's log says it applied `backend`'s out
 * (the first such line from then on; the log's times are this machine's clock, as `since` is).
 */
function outAppliedAfter(log: string, backend: string, since: number): number | undefined {
  for (const line of log.split('\n')) {
    if (!line.includes('every sidecar agreed')) continue;
    let entry: { time: string; backend?: string; to?: string };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      continue; // the last line, still being written
    }
    const at = Date.parse(entry.time);
    if (entry.backend === backend && entry.to === 'out' && at >= since) return at - since;
  }
  return undefined;
}
