// The shared refill (src/resync/refill-claim.ts): two sidecars over the same
// real memcached, one of them restarted empty. One sidecar refills it, the other
// waits for its mark and distrusts the backend until then; a claim nobody renews
// (its holder died) expires, and the waiter takes over and refills.

import { afterEach, expect, test } from 'vitest';
import { Backend } from '../../src/backends/backend';
import { RESERVED_PREFIX } from '../../src/resync/refill-claim';
import { Resyncer, SILENT_RESYNC_EVENTS, type ResyncOptions } from '../../src/resync/resyncer';
import type { ResyncResult } from '../../src/resync/resync-run';
import { ReplicaRing } from '../../src/routing/ring';
import { startMemcached, stopAllMemcached, type MemcachedProcess } from '../helpers/memcached';
import { pollUntil } from '../helpers/wait';
import { k, valueOn } from './support';

interface Sidecar {
  backends: Backend[];
  ring: ReplicaRing;
  resyncer: Resyncer;
  /** The refill runs that ended (sheds left out). */
  finished: ResyncResult[];
}

const sidecars: Sidecar[] = [];
afterEach(async () => {
  for (const s of sidecars.splice(0)) {
    await s.resyncer.close();
    await Promise.all(s.backends.map((b) => b.close()));
  }
  await stopAllMemcached();
});

/** One replicached's view of the backends: its own connections, ring and resyncer (started). */
function sidecar(mcs: MemcachedProcess[], options: Partial<ResyncOptions>): Sidecar {
  const backends = mcs.map((m) => new Backend(m.address, { probeIntervalMs: 30, retryMaxMs: 100, upAfterProbes: 1 }));
  const ring = new ReplicaRing(backends.map((node) => ({ node, weight: 1 })), 2);
  const finished: ResyncResult[] = [];
  const events = { ...SILENT_RESYNC_EVENTS, finished: (_: string, r: ResyncResult) => void (r.mode !== 'shed' && finished.push(r)) };
  const resyncer = new Resyncer(ring, backends, events, { identityPollMs: 60_000, quietMs: 0, ...options });
  const s = { backends, ring, resyncer, finished };
  sidecars.push(s);
  return s;
}

const KEYS = Array.from({ length: 400 }, (_, i) => `claim:${i}`);

async function setup(options: Partial<ResyncOptions>): Promise<{ mcs: MemcachedProcess[]; a: Sidecar; b: Sidecar; share: string[] }> {
  const mcs = await Promise.all([0, 1, 2].map(() => startMemcached()));
  const a = sidecar(mcs, options);
  const b = sidecar(mcs, options);
  for (const key of KEYS) {
    for (const m of a.ring.replicaSet(k(key))) {
      await m.store({ mode: 'set', key: k(key), value: k(`v-${key}`), flags: 3, exptime: 0, cas: 0n });
    }
  }
  for (const s of [a, b]) await s.resyncer.checkIdentities(); // both know who each backend is
  return { mcs, a, b, share: KEYS.filter((key) => a.ring.replicaSet(k(key)).includes(a.backends[0])) };
}

/** Restarts backend 0 empty and waits until both sidecars can reach it again. */
async function restartTarget(mcs: MemcachedProcess[], a: Sidecar, b: Sidecar): Promise<void> {
  await mcs[0].restart();
  for (const s of [a, b]) await pollUntil(async () => s.backends[0].isUp() && (await s.backends[0].identity()).status === 'ok', 10_000, 20);
}

/** The sidecar's identity poll finds the restart and starts its refill; resolves with the run's result. */
async function refill(s: Sidecar): Promise<ResyncResult> {
  const before = s.finished.length;
  await s.resyncer.checkIdentities();
  await pollUntil(() => s.finished.length > before, 20_000, 20);
  return s.finished[before];
}

test('two sidecars: one refills the restarted backend, the other waits for it and distrusts it meanwhile', async () => {
  const { mcs, a, b, share } = await setup({ keysPerSecond: 800, claim: { ttlSeconds: 10, pollMs: 50 } });
  await restartTarget(mcs, a, b);
  // Both runs start before either lists the keys (as when both see the restart at once): a
  // placeholder claim holds them both waiting until it is taken away, then they race for it.
  const id = await a.backends[0].identity();
  if (id.status !== 'ok') throw new Error('no identity');
  const claimKey = k(`${RESERVED_PREFIX}refill-claim:${id.pid}:${id.startedAt}`);
  const placeholder = await a.backends[0].store({ mode: 'add', key: claimKey, value: k('placeholder'), flags: 0, exptime: 10, cas: 0n });
  if (placeholder.status !== 'stored') throw new Error(`placeholder claim: ${placeholder.status}`);
  const runs = [refill(a), refill(b)];
  await pollUntil(() => [a, b].every((s) => s.resyncer.progress()[0].state === 'waiting'), 10_000, 10);
  expect(a.resyncer.isResyncing(a.backends[0])).toBe(true);
  expect(b.resyncer.isResyncing(b.backends[0])).toBe(true);
  await a.backends[0].delete(claimKey, placeholder.cas);
  const results = await Promise.all(runs);
  const holder = results.findIndex((r) => r.claim === 'held');
  expect(holder).toBeGreaterThanOrEqual(0);
  expect(results[holder]).toMatchObject({ outcome: 'done', mode: 'refill', claim: 'held', copied: share.length });
  expect(results[1 - holder]).toMatchObject({ outcome: 'done', mode: 'refill', claim: 'waited', copied: 0 });
  expect(a.resyncer.isResyncing(a.backends[0]) || b.resyncer.isResyncing(b.backends[0])).toBe(false);
  for (const key of share) expect(await valueOn(a.backends[0], key), key).toBe(`v-${key}`);
});

test('a sidecar whose run starts after the listing began refills alone: its writes to stand-ins may postdate the listing', async () => {
  const { mcs, a, b } = await setup({ keysPerSecond: 800 });
  await restartTarget(mcs, a, b);
  const first = refill(a);
  await pollUntil(() => a.resyncer.progress()[0].copied > 0, 10_000, 10);
  // A key of the restarted backend's written after a's listing began, which only the other
  // member got: what b wrote to the peers while it still had the backend down.
  let n = 0;
  while (!a.ring.replicaSet(k(`claim:late:${n}`)).includes(a.backends[0])) n++;
  const late = `claim:late:${n}`;
  for (const m of b.ring.replicaSet(k(late)).filter((m) => m !== b.backends[0])) {
    await m.store({ mode: 'set', key: k(late), value: k(`v-${late}`), flags: 3, exptime: 0, cas: 0n });
  }
  const result = await refill(b);
  expect(result).toMatchObject({ outcome: 'done', mode: 'refill' });
  expect(result.claim).toBeUndefined(); // it listed and copied by itself, not waiting for a's mark
  expect(await first).toMatchObject({ outcome: 'done', claim: 'held' });
  expect(await valueOn(a.backends[0], late)).toBe(`v-${late}`);
});

test('a claim nobody renews (its holder died) expires: the waiting sidecar takes over and refills', async () => {
  const { mcs, a, b, share } = await setup({ claim: { ttlSeconds: 2, pollMs: 100 } });
  await restartTarget(mcs, a, b);
  // A dead claimant: its claim is there, nothing renews it and no mark will come.
  const id = await b.backends[0].identity();
  if (id.status !== 'ok') throw new Error('no identity');
  const claimKey = k(`${RESERVED_PREFIX}refill-claim:${id.pid}:${id.startedAt}`);
  expect((await b.backends[0].store({ mode: 'add', key: claimKey, value: k('dead'), flags: 0, exptime: 2, cas: 0n })).status).toBe('stored');
  const started = Date.now();
  const run = refill(b);
  await new Promise((r) => setTimeout(r, 500));
  expect(b.resyncer.isResyncing(b.backends[0])).toBe(true);
  expect(await valueOn(b.backends[0], share[0])).toBeNull(); // nothing copied while it waits
  const result = await run;
  expect(result).toMatchObject({ outcome: 'done', mode: 'refill', claim: 'held', copied: share.length });
  expect(Date.now() - started).toBeGreaterThanOrEqual(1000); // it did wait for the expiry
  // The other sidecar, noticing the restart after that listing began, refills alone: every key is there.
  const late = await refill(a);
  expect(late).toMatchObject({ outcome: 'done', copied: 0 });
  expect(late.claim).toBeUndefined();
});
