// The run beacon (src/resync/run-beacon.ts): a resync run in one sidecar makes
// every other sidecar distrust its target while copies go out, so a copy that a
// delete through another sidecar overtook is never served, touched or taken for
// the authority's.
//
// Two sidecars in-process, each with its own connections, ring, router and
// resyncer, over three real memcached. The race (the run reads the source, a
// delete through the other sidecar lands on both members, the run's copy then
// lands on the target) cannot be produced on demand by timing alone, so the
// running sidecar's connections are real Backends with a gate on one key: the
// copy waits until the delete is done, and the run's re-read of the source waits
// until the other sidecar has read. Everything else is real memcached.

import { afterEach, expect, test } from 'vitest';
import { Backend } from '../../src/backends/backend';
import type { MemcachedNode, NodeGet, NodeStore, StoreRequest } from '../../src/routing/node';
import type { ResyncOptions } from '../../src/resync/resyncer';
import { DEFAULT_BEACON_OPTIONS, FILL_BEACON_KEY, RUN_BEACON_KEY } from '../../src/resync/run-beacon';
import { startMemcached, stopAllMemcached, type MemcachedProcess } from '../helpers/memcached';
import { pollUntil } from '../helpers/wait';
import { inProcessSidecar, k, valueOn, type InProcessSidecar } from './support';

/** A one-shot gate: `reached` resolves when the gated call arrives, `open()` lets it through. */
interface Gate {
  reached: Promise<void>;
  open(): void;
  wait(): Promise<void>;
}

function gate(): Gate {
  let arrive!: () => void;
  let release!: () => void;
  const reached = new Promise<void>((r) => (arrive = r));
  const opened = new Promise<void>((r) => (release = r));
  return {
    reached,
    open: () => release(),
    wait: () => {
      arrive();
      return opened;
    },
  };
}

/** A real Backend whose store of one key, and second read of it, wait at gates. */
class GatedBackend extends Backend {
  storeGate: Gate | null = null;
  rereadGate: Gate | null = null;
  gatedKey: Buffer | null = null;
  private reads = 0;

  override async store(req: StoreRequest): Promise<NodeStore> {
    if (this.storeGate !== null && this.gatedKey?.equals(req.key)) await this.storeGate.wait();
    return super.store(req);
  }

  override async get(key: Buffer, touch?: number): Promise<NodeGet> {
    if (this.rereadGate !== null && this.gatedKey?.equals(key) && ++this.reads === 2) await this.rereadGate.wait();
    return super.get(key, touch);
  }
}

type Sidecar = InProcessSidecar<GatedBackend>;

const sidecars: Sidecar[] = [];
afterEach(async () => {
  for (const s of sidecars.splice(0)) {
    for (const b of s.backends) {
      b.storeGate?.open();
      b.rereadGate?.open();
    }
    await s.resyncer.close();
    await Promise.all(s.backends.map((b) => b.close()));
  }
  await stopAllMemcached();
});

// Shorter than the defaults, the same in both sidecars (as they must be).
const BEACON = { ...DEFAULT_BEACON_OPTIONS, watchMs: 100, trustMs: 600 };

function sidecar(mcs: MemcachedProcess[], options: Partial<ResyncOptions> = {}): Sidecar {
  const backends = mcs.map((m) => new GatedBackend(m.address, { probeIntervalMs: 30, retryMaxMs: 100, upAfterProbes: 1 }));
  const s = inProcessSidecar(backends, { beacon: BEACON, ...options });
  sidecars.push(s);
  return s;
}

/**
 * Gates sidecar `s`'s copy of `key` into its backend 0: its store waits at `store`,
 * and its re-read of the source (the same memcached as `source` in any sidecar) at `reread`.
 */
function gateCopy(s: Sidecar, key: Buffer, source: MemcachedNode): { target: GatedBackend; store: Gate; reread: Gate } {
  const target = s.backends[0];
  const from = s.backends.find((b) => b.address === source.address)!;
  target.gatedKey = from.gatedKey = key;
  target.storeGate = gate();
  from.rereadGate = gate();
  return { target, store: target.storeGate, reread: from.rereadGate };
}

/** A user logs out through sidecar `s`; resolves once the delete's convergence check is done too. */
async function logOut(s: Sidecar, key: Buffer): Promise<void> {
  const later: Array<Promise<unknown>> = [];
  expect((await s.router.delete(key, 0n, later)).status).toBe('deleted');
  await Promise.all(later);
}

/** The count a backend holds under `key`, as text; null when it has none. */
async function countOn(b: Backend, key: Buffer): Promise<string | null> {
  const r = await b.get(key);
  return r.status === 'hit' ? r.item.value.toString() : null;
}

test('a copy a delete through another sidecar overtook is never served there: that sidecar distrusts the target until the run ends', async () => {
  const mcs = await Promise.all([0, 1, 2].map(() => startMemcached()));
  const a = sidecar(mcs); // serves the clients
  const b = sidecar(mcs); // runs the resync
  // A key whose natural set is [Y, X]: Y, the target, is its authority whenever trusted.
  let n = 0;
  while (a.ring.ringOrder(k(`beacon:${n}`))[0] !== a.backends[0]) n++;
  const key = k(`beacon:${n}`);
  const [y, x] = a.ring.ringOrder(key).slice(0, 2);
  await a.router.store({ mode: 'set', key, value: k('logged-in'), flags: 0, exptime: 0, cas: 0n });
  await y.delete(key, 0n); // the target lacks it (it missed the write): the run will copy it from X
  for (const s of [a, b]) s.resyncer.start();

  const { target, store, reread } = gateCopy(b, key, x);
  const run = b.resyncer.resync(target, 'manual'); // the same process: a reconcile
  await store.reached; // it read X's item, and its copy to Y is about to go out

  // Through the other sidecar meanwhile: the user logs out.
  expect(a.resyncer.isResyncing(a.backends[0])).toBe(true);
  expect(a.resyncer.progress()[0].state).toBe('elsewhere');
  await logOut(a, key); // its convergence check too: nothing of it is left to undo the copy
  store.open();
  await reread.reached; // the copy landed on Y: it holds the deleted session
  expect(await valueOn(a.backends[0], key.toString())).toBe('logged-in');

  // The other sidecar neither serves it nor touches it.
  expect((await a.router.get(key)).status).toBe('miss');
  expect((await a.router.touch(key, 100)).status).toBe('not_found');
  reread.open();
  expect(await run).toMatchObject({ outcome: 'done', mode: 'reconcile' });
  for (const m of a.backends) expect(await valueOn(m, key.toString()), m.address).toBeNull();
  // The run lowered its count: both sidecars trust the target again.
  await pollUntil(() => !a.resyncer.isResyncing(a.backends[0]) && !b.resyncer.isResyncing(b.backends[0]), 10_000, 20);
  expect(await countOn(a.backends[0], RUN_BEACON_KEY)).toBe('0');
});

test('a fill (a reload gave the backend keys) that a delete through another sidecar overtook: that sidecar does not serve its copy, and still trusts the backend', async () => {
  const mcs = await Promise.all([0, 1, 2].map(() => startMemcached()));
  const a = sidecar(mcs);
  const b = sidecar(mcs);
  // A key whose natural set is [X, Z]: Z, the filled backend, is not its authority (a fill never copies into that).
  let n = 0;
  while (a.ring.ringOrder(k(`fill:${n}`))[1] !== a.backends[0]) n++;
  const key = k(`fill:${n}`);
  const x = a.ring.ringOrder(key)[0];
  await a.router.store({ mode: 'set', key, value: k('logged-in'), flags: 0, exptime: 0, cas: 0n });
  await a.backends[0].delete(key, 0n); // the reload gave Z this key: it does not hold it yet
  for (const s of [a, b]) s.resyncer.start();

  const { target, store, reread } = gateCopy(b, key, x);
  const run = b.resyncer.resync(target, 'membership');
  await store.reached;

  expect(a.resyncer.isFilling(a.backends[0])).toBe(true);
  expect(a.resyncer.isResyncing(a.backends[0])).toBe(false); // a fill leaves it trusted
  await logOut(a, key);
  store.open();
  await reread.reached;
  expect(await valueOn(a.backends[0], key.toString())).toBe('logged-in'); // the copy landed after the delete

  expect((await a.router.get(key)).status).toBe('miss');
  reread.open();
  expect(await run).toMatchObject({ outcome: 'done', mode: 'refresh' });
  for (const m of a.backends) expect(await valueOn(m, key.toString()), m.address).toBeNull();
  await pollUntil(() => !a.resyncer.isFilling(a.backends[0]), 10_000, 20);
  expect(await countOn(a.backends[0], FILL_BEACON_KEY)).toBe('0');
});

test('a sidecar that has not heard from a backend for trustMs distrusts it (it may have missed a run), and trusts it again once it answers', async () => {
  const mcs = await Promise.all([0, 1, 2].map(() => startMemcached()));
  const a = sidecar(mcs);
  a.resyncer.start();
  await pollUntil(() => !a.resyncer.isResyncing(a.backends[1]), 5_000, 20);
  await mcs[1].pause(); // SIGSTOP: the count cannot be read
  await pollUntil(() => a.resyncer.isResyncing(a.backends[1]) || !a.backends[1].isUp(), 10_000, 20);
  mcs[1].resume();
  await pollUntil(() => a.backends[1].isUp() && !a.resyncer.isResyncing(a.backends[1]), 20_000, 20);
});

test('a run waits trustMs after raising the count before its first copy, and a raised count nobody lowers (a dead sidecar) expires', async () => {
  const mcs = await Promise.all([0, 1, 2].map(() => startMemcached()));
  const a = sidecar(mcs);
  a.resyncer.start();
  // A sidecar that died mid-run: its part of the count stays until the count expires.
  await a.backends[2].arith('incr', RUN_BEACON_KEY, 1n, { initial: 1n, exptime: 2 });
  await pollUntil(() => a.resyncer.isResyncing(a.backends[2]), 5_000, 20);
  await pollUntil(() => !a.resyncer.isResyncing(a.backends[2]), 10_000, 50);

  const key = k('beacon:wait');
  const [y] = a.ring.ringOrder(key);
  const other = a.ring.ringOrder(key)[1];
  await other.store({ mode: 'set', key, value: k('v'), flags: 0, exptime: 0, cas: 0n });
  const started = performance.now();
  const result = await a.resyncer.resync(y as GatedBackend, 'manual');
  expect(result).toMatchObject({ outcome: 'done', copied: 1 });
  expect(performance.now() - started).toBeGreaterThanOrEqual(BEACON.trustMs);
});

test('a run whose target went down mid-run takes its part of the count back once the target is up again', async () => {
  const mcs = await Promise.all([0, 1, 2].map(() => startMemcached()));
  const a = sidecar(mcs, { keysPerSecond: 50 });
  const [y] = a.backends;
  for (let i = 0; i < 200; i++) {
    const key = k(`beacon:down:${i}`);
    for (const m of a.ring.replicaSet(key)) if (m !== y) await m.store({ mode: 'set', key, value: k('v'), flags: 0, exptime: 0, cas: 0n });
  }
  a.resyncer.start();
  const first = a.resyncer.resync(y, 'manual');
  await pollUntil(() => a.resyncer.progress()[0].copied > 0, 10_000, 10);
  await mcs[0].pause(); // marked down at its first timeout: the run aborts, and cannot lower its count
  expect(await first).toMatchObject({ outcome: 'aborted' });
  mcs[0].resume(); // back up: the same process, so a reconcile run, which raises the count again
  await pollUntil(() => y.isUp(), 10_000, 20);
  await pollUntil(() => a.resyncer.progress()[0].state === 'idle', 30_000, 50);
  // Both parts are gone as the second run ends, not BEACON.ttlSeconds after the last renewal.
  expect(await countOn(y, RUN_BEACON_KEY)).toBe('0');
  await pollUntil(() => !a.resyncer.isResyncing(y), 10_000, 20);
});

test("a client's delete of a key the run is about to copy does not wait out the beacon's notice", async () => {
  const mcs = await Promise.all([0, 1, 2].map(() => startMemcached()));
  const a = sidecar(mcs, { beacon: { ...BEACON, trustMs: 3000 } });
  const [y] = a.backends;
  const share: Buffer[] = [];
  for (let i = 0; share.length < 40; i++) {
    const key = k(`beacon:notice:${i}`);
    if (!a.ring.replicaSet(key).includes(y)) continue;
    share.push(key);
    for (const m of a.ring.replicaSet(key)) if (m !== y) await m.store({ mode: 'set', key, value: k('v'), flags: 0, exptime: 0, cas: 0n });
  }
  a.resyncer.start();
  const run = a.resyncer.resync(y, 'manual');
  await pollUntil(() => a.resyncer.progress()[0].state === 'copying', 10_000, 5);
  // The copies wait for the notice (3 s): a logout meanwhile is not held up by them.
  for (const key of share.slice(0, 5)) expect((await a.router.delete(key, 0n)).status).toBe('deleted');
  expect(a.resyncer.progress()[0].copied).toBe(0);
  expect(await run).toMatchObject({ outcome: 'done', copied: share.length - 5 });
  for (const key of share.slice(0, 5)) for (const m of a.backends) expect(await valueOn(m, key.toString())).toBeNull();
});
