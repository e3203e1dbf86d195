// A backend that hung (SIGSTOP) and came back (SIGCONT) without a restart,
// against real memcached: it kept its old items and ran late the requests that
// timed out on it. Its resync reconciles; meanwhile it is read last and decides
// nothing. 3 backends, 2 replicas, real Backend objects, the trust agent, router and resyncer.

import { afterEach, describe, expect, test } from 'vitest';
import type { Backend } from '../../src/backends/backend';
import type { ResyncOptions } from '../../src/resync/resyncer';
import type { StoreFields } from '../../src/protocol/types';
import { pollUntil } from '../helpers/wait';
import { k, startResyncCluster, stopResyncCluster, valueOn, type ResyncCluster } from './support';

const REQUEST_TIMEOUT_MS = 200;

afterEach(stopResyncCluster);

async function cluster(options: Partial<ResyncOptions> = {}): Promise<ResyncCluster> {
  return startResyncCluster({ requestTimeoutMs: REQUEST_TIMEOUT_MS }, { quietMs: REQUEST_TIMEOUT_MS + 100, ...options }, undefined, 'agent');
}

const waitFor = (cond: () => boolean | Promise<boolean>, ms = 8000): Promise<void> => pollUntil(cond, ms, 10);

const set = (key: string, value: string): StoreFields => ({ mode: 'set', key: k(key), flags: 7, exptime: 0, value: k(value), cas: 0n });
const add = (key: string, value = 'locked'): StoreFields => ({ mode: 'add', key: k(key), flags: 0, exptime: 30, value: k(value), cas: 0n });

const isMember = (c: ResyncCluster, key: string, b: Backend): boolean => c.ring.replicaSet(k(key)).some((m) => m.address === b.address);

/** `n` keys named `<prefix><i>` whose first ring member (the authority when all are up) is `b`. */
function keysLedBy(c: ResyncCluster, b: Backend, prefix: string, n: number): string[] {
  const keys: string[] = [];
  for (let i = 0; keys.length < n; i++) if (c.ring.ringOrder(k(`${prefix}${i}`))[0].address === b.address) keys.push(`${prefix}${i}`);
  return keys;
}

async function read(c: ResyncCluster, key: string): Promise<string | null> {
  const r = await c.router.get(k(key));
  if (r.status === 'unavailable') throw new Error(`${key}: unavailable`);
  return r.status === 'hit' ? r.item.value.toString() : null;
}

/**
 * SIGSTOP backend 0, run `whileHung` (its first request to backend 0 times out
 * and marks it down), SIGCONT, and resolve once every sidecar writes to it again
 * (refill: its resync starts).
 */
async function hangAndResume(c: ResyncCluster, whileHung: () => Promise<void>): Promise<void> {
  await c.mcs[0].pause();
  await whileHung();
  expect(c.backends[0].isUp()).toBe(false);
  c.mcs[0].resume();
  await waitFor(() => c.agent!.roleOf(c.backends[0]) === 'refill');
  expect(c.agent!.isResyncing(c.backends[0])).toBe(true);
}

describe('a hung backend comes back without a restart', () => {
  test('the session lock: stale locks it ran late never block an add, during or after its resync', async () => {
    const c = await cluster({ keysPerSecond: 50 });
    const hung = c.backends[0];
    const [during, after] = keysLedBy(c, hung, 'lock.sess', 2);
    const session = keysLedBy(c, hung, 'sess.', 1)[0];
    expect((await c.router.store(set(session, 'v1'))).status).toBe('stored');

    await hangAndResume(c, async () => {
      // Both adds reach the hung authority, time out there, and fail over: the lock is taken...
      const adds = await Promise.all([c.router.store(add(during)), c.router.store(add(after))]);
      expect(adds.map((r) => r.status)).toEqual(['stored', 'stored']);
      expect((await c.router.store(set(session, 'v2'))).status).toBe('stored');
      // ...and released while the backend is still away.
      expect((await c.router.delete(k(during), 0n)).status).toBe('deleted');
      expect((await c.router.delete(k(after), 0n)).status).toBe('deleted');
    });
    // On SIGCONT it ran the timed-out adds late: it holds both locks, stale.
    expect(await valueOn(hung, during)).toBe('locked');
    expect(await valueOn(hung, after)).toBe('locked');

    // While it resyncs: the lock is free, the session reads as last written.
    expect(await read(c, session)).toBe('v2');
    expect(await read(c, during)).toBeNull();
    expect((await c.router.store(add(during, 'mine'))).status).toBe('stored');
    expect((await c.router.store(add(during))).status).toBe('not_stored'); // and exclusive
    expect(await valueOn(hung, during)).toBe('mine'); // the stale one was overwritten
    expect((await c.router.delete(k(during), 0n)).status).toBe('deleted');

    await waitFor(() => c.finished.length === 1);
    expect(c.finished[0]).toMatchObject({ outcome: 'done', mode: 'reconcile', unlisted: [] });
    expect(c.finished[0].pruned).toBeGreaterThanOrEqual(1);
    // After: it decides again, and holds neither stale lock.
    expect(await valueOn(hung, after)).toBeNull();
    expect((await c.router.store(add(after, 'mine'))).status).toBe('stored');
    expect(await valueOn(hung, after)).toBe('mine');
    expect((await c.router.store(add(after))).status).toBe('not_stored');
    expect(await read(c, session)).toBe('v2');
  });

  test('keys rewritten while it hung read back new during and after its resync, and it converges', async () => {
    const c = await cluster({ keysPerSecond: 40, maxInFlight: 2 });
    const hung = c.backends[0];
    const keys = Array.from({ length: 60 }, (_, i) => `sess:${i}`).filter((key) => isMember(c, key, hung));
    expect(keys.length).toBeGreaterThan(20);
    for (const key of keys) expect((await c.router.store(set(key, 'old'))).status).toBe('stored');

    await hangAndResume(c, async () => {
      for (const key of keys) expect((await c.router.store(set(key, 'new'))).status).toBe('stored');
    });
    // The first rewrite timed out on it and ran late; every later one went to the others only.
    expect((await Promise.all(keys.map((key) => valueOn(hung, key)))).filter((v) => v === 'old').length).toBeGreaterThan(keys.length - 3);

    for (const key of keys) expect(await read(c, key), key).toBe('new'); // during (40 keys/s: still running)
    await waitFor(() => c.finished.length === 1);
    expect(c.finished[0]).toMatchObject({ outcome: 'done', mode: 'reconcile' });
    for (const key of keys) {
      expect(await valueOn(hung, key), key).toBe('new');
      const r = await hung.get(k(key));
      expect(r.status === 'hit' && r.item.flags).toBe(7);
      expect(await read(c, key), key).toBe('new'); // after: it is asked first again
    }
  });

  test('keys deleted while it hung do not come back, during or after its resync', async () => {
    const c = await cluster({ keysPerSecond: 40, maxInFlight: 2 });
    const hung = c.backends[0];
    const keys = Array.from({ length: 60 }, (_, i) => `gone:${i}`).filter((key) => isMember(c, key, hung));
    const kept = keysLedBy(c, hung, 'kept:', 5);
    for (const key of [...keys, ...kept]) expect((await c.router.store(set(key, 'v'))).status).toBe('stored');

    await hangAndResume(c, async () => {
      for (const key of keys) expect(['deleted', 'not_found']).toContain((await c.router.delete(k(key), 0n)).status);
    });
    expect((await Promise.all(keys.map((key) => valueOn(hung, key)))).filter((v) => v === 'v').length).toBeGreaterThan(keys.length - 3);

    for (const key of keys) expect(await read(c, key), key).toBeNull(); // during
    await waitFor(() => c.finished.length === 1);
    expect(c.finished[0]).toMatchObject({ outcome: 'done', mode: 'reconcile' });
    for (const key of keys) {
      expect(await read(c, key), key).toBeNull();
      for (const b of c.backends) expect(await valueOn(b, key), key).toBeNull();
    }
    for (const key of kept) expect(await valueOn(hung, key), key).toBe('v'); // pruning took only the deleted
  });

  test('a value written after the run read the target is never overwritten by the reconcile', async () => {
    const c = await cluster();
    const hung = c.backends[0];
    const [raced] = keysLedBy(c, hung, 'race:', 1);
    expect((await c.router.store(set(raced, 'old'))).status).toBe('stored');
    await hangAndResume(c, async () => {
      expect((await c.router.store(set(raced, 'away'))).status).toBe('stored');
    });
    await waitFor(() => c.finished.length === 1);
    expect(await valueOn(hung, raced)).toBe('away');
    // Make it stale again, as after another hang, and race a client write into the next run.
    const r = await hung.store({ mode: 'set', key: k(raced), value: k('stale'), flags: 7, exptime: 0, cas: 0n });
    expect(r.status).toBe('stored');
    const get = hung.get.bind(hung);
    let fired = false;
    hung.get = async (key, touch) => {
      const reply = await get(key, touch);
      if (!fired && key.equals(k(raced))) {
        fired = true; // the run has read the target's stale item and its CAS
        // A client write that has landed on the target, not yet on the member the run reads next.
        expect((await hung.store({ mode: 'set', key: k(raced), value: k('newest'), flags: 7, exptime: 0, cas: 0n })).status).toBe('stored');
      }
      return reply;
    };
    const result = await c.resyncer.resync(hung);
    expect(fired).toBe(true);
    expect(result).toMatchObject({ outcome: 'done', mode: 'reconcile' });
    expect(await valueOn(hung, raced)).toBe('newest'); // the `ms` with the CAS it read failed: not overwritten with 'away'
  });

  test('a backend that restarted while it was down is refilled with what its keys hold', async () => {
    const c = await cluster();
    const keys = Array.from({ length: 30 }, (_, i) => `r:${i}`);
    for (const key of keys) await c.router.store(set(key, 'v'));
    await c.mcs[1].stop();
    await waitFor(async () => {
      await c.backends[1].get(k('probe'));
      return !c.backends[1].isUp();
    });
    await c.mcs[1].restart();
    await waitFor(() => c.finished.length === 1);
    const expected = keys.filter((key) => isMember(c, key, c.backends[1]));
    expect(c.finished[0]).toMatchObject({ outcome: 'done', mode: 'reconcile', copied: expected.length, pruned: 0 });
  });
});
