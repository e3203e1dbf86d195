// Down-marks (src/resync/down-marks.ts): a backend that stalled for one
// sidecar only is marked down there; every other sidecar distrusts it too, and
// the sidecar that lost it acknowledges no write without it, and decides no
// lock elsewhere, until the others have had the time to see the mark.
//
// Two sidecars in-process, each with its own connections, ring, router and
// resyncer, over three real memcached. Sidecar A reaches backend Y through a
// relay the test freezes (test/helpers/relay.ts): a path that stalls for one
// sidecar only, which a real memcached cannot produce (SIGSTOP stalls it for
// every client). Sidecar B reaches Y directly, and Y goes on answering it.

import { afterEach, expect, test } from 'vitest';
import { Backend } from '../../src/backends/backend';
import { downMarkKey } from '../../src/resync/mark-watch';
import { Resyncer, SILENT_RESYNC_EVENTS, type ResyncOptions } from '../../src/resync/resyncer';
import { DEFAULT_BEACON_OPTIONS } from '../../src/resync/run-beacon';
import { startMemcached, stopAllMemcached, type MemcachedProcess } from '../helpers/memcached';
import { RelayedBackend, startRelay, type Relay } from '../helpers/relay';
import { pollUntil } from '../helpers/wait';
import { inProcessSidecar, k, valueOn, type InProcessSidecar } from './support';

type Sidecar = InProcessSidecar;

const sidecars: Sidecar[] = [];
const relays: Relay[] = [];
afterEach(async () => {
  for (const r of relays.splice(0)) r.thaw();
  for (const s of sidecars.splice(0)) {
    await s.resyncer.close();
    await Promise.all(s.backends.map((b) => b.close()));
  }
  for (const r of relays.splice(0)) await r.close();
  await stopAllMemcached();
});

// Shorter than the defaults, the same in both sidecars (as they must be).
const BEACON = { ...DEFAULT_BEACON_OPTIONS, watchMs: 100, trustMs: 1000 };
const BACKEND = { requestTimeoutMs: 200, probeIntervalMs: 30, retryMaxMs: 100, upAfterProbes: 1 };

/** A sidecar over `mcs`; with `relay`, its connections to mcs[0] go through it. */
function sidecar(mcs: MemcachedProcess[], relay?: Relay, options: Partial<ResyncOptions> = {}): Sidecar {
  const backends = mcs.map((m, i) =>
    i === 0 && relay !== undefined ? new RelayedBackend(m.address, relay.address, BACKEND) : new Backend(m.address, BACKEND),
  );
  const s = inProcessSidecar(backends, { beacon: BEACON, ...options });
  sidecars.push(s);
  return s;
}

/** Three memcached, sidecar A through a relay to the first (Y), sidecar B direct; both started and trusting every backend. */
async function twoSidecars(beacon = BEACON): Promise<{ mcs: MemcachedProcess[]; relay: Relay; a: Sidecar; b: Sidecar }> {
  const mcs = await Promise.all([0, 1, 2].map(() => startMemcached()));
  const relay = await startRelay(mcs[0].address);
  relays.push(relay);
  const a = sidecar(mcs, relay, { beacon });
  const b = sidecar(mcs, undefined, { beacon });
  for (const s of [a, b]) s.resyncer.start();
  await pollUntil(() => [a, b].every((s) => s.backends.every((n) => !s.resyncer.isResyncing(n))), 10_000, 20);
  await watchedLongEnough(beacon);
  return { mcs, relay, a, b };
}

/**
 * A sidecar that just started assumes others until it has watched presenceMs: past it, a
 * notice in these tests depends on its seeing the other sidecar, and in the last one, on its not.
 */
function watchedLongEnough(beacon = BEACON): Promise<void> {
  return new Promise((r) => setTimeout(r, beacon.trustMs + 3 * beacon.watchMs));
}

/** A key whose natural replica set is [Y, X]: Y, the backend that stalls for A, is its authority. */
function keyOnY(s: Sidecar, prefix: string): Buffer {
  let n = 0;
  while (s.ring.ringOrder(k(`${prefix}:${n}`))[0] !== s.backends[0]) n++;
  return k(`${prefix}:${n}`);
}

const item = (mode: 'set' | 'add', key: Buffer, value: string) => ({ mode, key, value: k(value), flags: 0, exptime: 0, cas: 0n });

/** Thaws A's path to Y and waits until both sidecars trust Y again (A reconciled it and lowered its mark). */
async function heal(relay: Relay, a: Sidecar, b: Sidecar): Promise<void> {
  relay.thaw();
  await pollUntil(() => a.backends[0].isUp() && !a.resyncer.isResyncing(a.backends[0]) && !b.resyncer.isResyncing(b.backends[0]), 20_000, 20);
}

/** The count of marks `holder` keeps for Y, as text; null when it has none. */
async function marksOn(holder: Backend, y: Backend): Promise<string | null> {
  const r = await holder.get(downMarkKey(y.address));
  return r.status === 'hit' ? r.item.value.toString() : null;
}

test('a write acknowledged by the sidecar that lost Y is what the other sidecar reads, though Y still answers it', async () => {
  const { relay, a, b } = await twoSidecars();
  const key = keyOnY(a, 'session');
  // With its follow-up done: a convergence check of B's still going when Y fails A's write may
  // copy Y's item over it (the authority's order decides, and Y never saw A's write).
  const later: Array<Promise<unknown>> = [];
  expect((await b.router.store(item('set', key, 'v1'), later)).status).toBe('stored');
  await Promise.all(later);

  relay.freeze();
  expect((await a.router.store(item('set', key, 'v2'))).status).toBe('stored'); // X only: Y stalled for A
  expect(a.backends[0].isUp()).toBe(false);
  expect(b.backends[0].isUp()).toBe(true);
  expect(await valueOn(b.backends[0], key.toString())).toBe('v1'); // Y still holds the old session...

  // ...and B, which still reaches Y, reads X first: A's mark told it Y is behind.
  expect(b.resyncer.isResyncing(b.backends[0])).toBe(true);
  expect(b.resyncer.progress()[0].state).toBe('elsewhere');
  const read = await b.router.get(key);
  expect(read.status === 'hit' && read.item.value.toString()).toBe('v2');

  await heal(relay, a, b);
  expect(await valueOn(b.backends[0], key.toString())).toBe('v2'); // A's reconcile brought Y up to date
  for (const holder of b.backends.slice(1)) expect(await marksOn(holder, b.backends[0])).toBe('0');
});

test('a lock taken through the sidecar that lost Y is refused through the other sidecar, which still reaches Y', async () => {
  const { relay, a, b } = await twoSidecars();
  const key = keyOnY(a, 'lock');

  relay.freeze();
  expect((await a.router.store(item('add', key, 'A'))).status).toBe('stored'); // decided by X, after the notice
  expect((await b.router.store(item('add', key, 'B'))).status).toBe('not_stored');

  await heal(relay, a, b);
  for (const m of b.ring.ringOrder(key).slice(0, 2)) expect(await valueOn(m as Backend, key.toString()), m.address).toBe('A');
  expect((await b.router.store(item('add', key, 'B'))).status).toBe('not_stored'); // Y decides again, and holds A's lock
});

test('a sidecar that reads the mark lowered holds writes of its keys a watch round, as the sidecar whose run ended does', async () => {
  // With a third sidecar, that one may read the lowered count a round later, and decide Y's
  // keys elsewhere meanwhile. A longer round here: the settling lasts watchMs + 100 ms.
  const beacon = { ...BEACON, watchMs: 400, trustMs: 1600 };
  const { relay, a, b } = await twoSidecars(beacon);
  const key = keyOnY(a, 'settle');
  relay.freeze();
  expect((await a.router.store(item('set', key, 'v'))).status).toBe('stored');
  expect(b.resyncer.isResyncing(b.backends[0])).toBe(true); // A's mark, read by B

  relay.thaw();
  await pollUntil(() => !b.resyncer.isResyncing(b.backends[0]), 20_000, 5);
  const settling = b.resyncer.handingOver(key);
  expect(settling).toBeInstanceOf(Promise); // B ran nothing on Y: it settles for A's mark
  await settling;
  expect((await b.router.store(item('add', key, 'lock'))).status).toBe('not_stored'); // Y decides again, and holds A's write
});

test('a connection that drops for one sidecar only, the memcached alive: no lock is granted twice', async () => {
  const { relay, a, b } = await twoSidecars();
  const [y] = a.backends;
  const key = keyOnY(a, 'drop');
  expect((await a.router.get(key)).status).toBe('miss'); // A's connection to Y is open
  relay.drop();
  await pollUntil(() => a.resyncer.isResyncing(y), 5_000, 1); // A saw it drop; B did not
  expect(b.resyncer.isResyncing(b.backends[0])).toBe(false);

  // Both at once: A must not decide on X while B still decides on Y.
  const [fromA, fromB] = await Promise.all([a.router.store(item('add', key, 'A')), b.router.store(item('add', key, 'B'))]);
  expect([fromA.status, fromB.status].sort()).toEqual(['not_stored', 'stored']);
  const holder = fromA.status === 'stored' ? 'A' : 'B';
  await pollUntil(() => !a.resyncer.isResyncing(y) && !b.resyncer.isResyncing(b.backends[0]), 20_000, 20);
  for (const m of b.ring.ringOrder(key).slice(0, 2)) expect(await valueOn(m as Backend, key.toString()), m.address).toBe(holder);
});

test('a sidecar alone on the backends does not wait for a notice', async () => {
  const mcs = await Promise.all([0, 1, 2].map(() => startMemcached()));
  const relay = await startRelay(mcs[0].address);
  relays.push(relay);
  const beacon = { ...BEACON, trustMs: 3000 };
  const a = sidecar(mcs, relay, { beacon });
  a.resyncer.start();
  await pollUntil(() => a.backends.every((n) => !a.resyncer.isResyncing(n)), 10_000, 20);
  await watchedLongEnough(beacon);
  const key = keyOnY(a, 'alone');

  relay.freeze();
  const add = a.router.store(item('add', key, 'A'));
  const noticeOver = new Promise((r) => setTimeout(() => r('waited for a notice'), beacon.trustMs));
  expect(await Promise.race([add, noticeOver])).toMatchObject({ status: 'stored' });
  expect(a.backends[0].isUp()).toBe(false);
});

test("a reload's resyncer takes over the sidecar's marks: counted once, lowered when its own run on the backend ends", async () => {
  const { relay, a, b } = await twoSidecars();
  const [y, x, z] = a.backends;
  relay.freeze();
  expect((await a.router.store(item('set', keyOnY(a, 'reload'), 'v'))).status).toBe('stored');
  for (const holder of [x, z]) expect(await marksOn(holder, y)).toBe('1');

  // What proxy.ts does on a reload that moves keys (here over the same Backend objects).
  const next = new Resyncer(a.ring, a.backends, SILENT_RESYNC_EVENTS, { identityPollMs: 60_000, quietMs: 0, beacon: BEACON });
  next.adopt(a.resyncer.handOver());
  next.start();
  await a.resyncer.close();
  a.resyncer = next;
  // The previous one renews no more; the next one does, and adds nothing of its own.
  await new Promise((r) => setTimeout(r, 2 * BEACON.renewMs));
  for (const holder of [x, z]) expect(await marksOn(holder, y)).toBe('1');

  await heal(relay, a, b);
  for (const holder of [x, z]) expect(await marksOn(holder, y)).toBe('0');
});
