// Shared by the resync tests against real memcached: 3 backends, 2 replicas,
// real Backend objects, the ring, the router and the resyncer in-process.
//
//   const c = await startResyncCluster({ requestTimeoutMs: 1000 }, { quietMs: 0 });
//   afterEach(stopResyncCluster);

import { Backend, type BackendOptions } from '../../src/backends/backend';
import { Resyncer, SILENT_RESYNC_EVENTS, type ResyncCause, type ResyncOptions } from '../../src/resync/resyncer';
import type { ResyncResult } from '../../src/resync/resync-run';
import { ReplicatedRouter } from '../../src/routing/replicated-router';
import { ReplicaRing } from '../../src/routing/ring';
import { binaryCodec } from '../../src/backends/codec';
import { startMemcached, type MemcachedProcess } from '../helpers/memcached';
import type { SaslUser } from '../helpers/sasl';

export const k = (s: string) => Buffer.from(s);

export interface ResyncCluster {
  mcs: MemcachedProcess[];
  backends: Backend[];
  ring: ReplicaRing;
  router: ReplicatedRouter;
  resyncer: Resyncer;
  /** What the resyncer reported, in order; the sheds a complete run starts are kept apart, in `sheds`. */
  started: Array<{ backend: string; cause: ResyncCause }>;
  finished: ResyncResult[];
  sheds: ResyncResult[];
  stillResyncing: boolean[];
  /** Holds begun (ms), in order. */
  holds: number[];
  copiedEvents: number;
}

let current: ResyncCluster | null = null;

/**
 * Backends that probe every 30 ms and count as up after one probe (plus
 * `backendOptions`), a resyncer that polls identities only when asked (plus
 * `resyncOptions`), not started. One cluster per test: stopResyncCluster stops it.
 * With `sasl`: memcached -S, spoken to in the binary protocol as that user.
 */
export async function startResyncCluster(
  backendOptions: Partial<BackendOptions>,
  resyncOptions: Partial<ResyncOptions>,
  sasl?: SaslUser,
): Promise<ResyncCluster> {
  const mcs = await Promise.all([0, 1, 2].map(() => startMemcached({ sasl })));
  const codec = sasl ? { codec: binaryCodec(sasl, 1440) } : {};
  const backends = mcs.map((m) => new Backend(m.address, { probeIntervalMs: 30, retryMaxMs: 100, upAfterProbes: 1, ...codec, ...backendOptions }));
  const ring = new ReplicaRing(backends.map((node) => ({ node, weight: 1 })), 2);
  const c: ResyncCluster = {
    mcs,
    backends,
    ring,
    router: null as unknown as ReplicatedRouter,
    resyncer: null as unknown as Resyncer,
    started: [],
    finished: [],
    sheds: [],
    stillResyncing: [],
    holds: [],
    copiedEvents: 0,
  };
  c.resyncer = new Resyncer(
    ring,
    backends,
    {
      started: (backend, cause) => {
        if (cause !== 'shed') c.started.push({ backend, cause });
      },
      copied: () => c.copiedEvents++,
      skipped: () => {},
      holding: (_, ms) => c.holds.push(ms),
      finished: (_, result, still) => {
        if (result.mode === 'shed') {
          c.sheds.push(result);
          return;
        }
        c.finished.push(result);
        c.stillResyncing.push(still);
      },
    },
    { identityPollMs: 60_000, ...resyncOptions },
  );
  c.router = new ReplicatedRouter(ring, undefined, c.resyncer);
  current = c;
  return c;
}

/** For afterEach: stops the test's cluster, if it started one. */
export async function stopResyncCluster(): Promise<void> {
  if (current === null) return;
  // A backend the test left SIGSTOPped would hold up the closes.
  for (const m of current.mcs) m.resume();
  await current.resyncer.close();
  await Promise.all(current.backends.map((b) => b.close()));
  await Promise.all(current.mcs.map((m) => m.stop()));
  current = null;
}

/** The value `b` itself holds for `key`, or null. */
export async function valueOn(b: Backend, key: string): Promise<string | null> {
  const r = await b.get(k(key));
  if (r.status === 'failed') throw new Error(r.reason);
  return r.status === 'hit' ? r.item.value.toString() : null;
}

/** One sidecar's parts in-process: for tests that run several over the same memcached. */
export interface InProcessSidecar<B extends Backend = Backend> {
  backends: B[];
  ring: ReplicaRing;
  router: ReplicatedRouter;
  /** Replaced by a test that reloads (a new Resyncer adopting this one's hand-over). */
  resyncer: Resyncer;
}

/**
 * A sidecar over `backends` (2 replicas), its resyncer not started: identities polled only when
 * asked, no quiet time before copies, plus `options` (which must agree across the sidecars of a test).
 */
export function inProcessSidecar<B extends Backend>(backends: B[], options: Partial<ResyncOptions>): InProcessSidecar<B> {
  const ring = new ReplicaRing(backends.map((node) => ({ node, weight: 1 })), 2);
  const resyncer = new Resyncer(ring, backends, SILENT_RESYNC_EVENTS, { identityPollMs: 60_000, quietMs: 0, ...options });
  return { backends, ring, router: new ReplicatedRouter(ring, undefined, resyncer), resyncer };
}
