// A copy never outlives its original (issue 19, contract 4), with SASL backends
// (binary protocol: no remaining TTL can be read) and with plain ones (meta
// commands). Real memcached, 3 backends, 2 replicas, the router, resyncer and trust
// agent in-process. Expiry is waited for on memcached's own clock: a witness item
// stored on the backend after the originals expired tells when more of its seconds
// have passed, so no test asserts a duration of its own.

import { afterEach, expect, test } from 'vitest';
import type { Backend } from '../../src/backends/backend';
import type { StoreFields } from '../../src/protocol/types';
import type { FollowUps } from '../../src/routing/replicated-router';
import { pollUntil } from '../helpers/wait';
import { k, startResyncCluster, stopResyncCluster, type ResyncCluster } from './support';

afterEach(stopResyncCluster);

const USER = { username: 'expiry', password: 'expiry-pw' };
const KEYS = 40;

const set = (key: Buffer, value: string, exptime: number): StoreFields => ({ mode: 'set', key, value: Buffer.from(value), flags: 3, exptime, cas: 0n });

async function isOn(b: Backend, key: Buffer): Promise<boolean> {
  const r = await b.get(key);
  if (r.status === 'failed') throw new Error(`${b.address}: ${r.reason}`);
  return r.status === 'hit';
}

/** Waits until `seconds` more of `b`'s clock have passed: a witness item stored there with that expiry is gone. */
async function secondsPassOn(b: Backend, seconds: number): Promise<void> {
  const witness = k(`witness.${Math.random().toString(16).slice(2)}`);
  const stored = await b.store(set(witness, 'w', seconds));
  expect(stored.status).toBe('stored');
  await pollUntil(async () => !(await isOn(b, witness)), 60_000, 100, 'the witness never expired');
}

/** Restarts backend i empty and waits until its pool has reconnected. */
async function restartEmpty(c: ResyncCluster, i: number): Promise<void> {
  await c.mcs[i].restart();
  await pollUntil(async () => (await c.backends[i].version()).status === 'ok', 10_000, 20, 'backend did not reconnect');
}

/**
 * Once each key's original (on its natural member other than `target`) has expired, and 2 s
 * more of every backend's clock have passed: how many copies of the keys `target` still holds,
 * how many the third backend (their stand-in while `target` was away) holds, and how many the
 * router still serves.
 */
async function outlived(c: ResyncCluster, keys: Buffer[], target: Backend): Promise<{ onTarget: number; onStandIn: number; served: number }> {
  const byAddress = (address: string): Backend => c.backends.find((b) => b.address === address)!;
  const original = (key: Buffer): Backend => byAddress(c.ring.ringOrder(key).slice(0, 2).find((m) => m.address !== target.address)!.address);
  await pollUntil(
    async () => {
      for (const key of keys) if (await isOn(original(key), key)) return false;
      return true;
    },
    60_000,
    100,
    'the originals never expired',
  );
  await Promise.all(c.backends.map((b) => secondsPassOn(b, 2)));
  let onTarget = 0;
  let onStandIn = 0;
  let served = 0;
  for (const key of keys) {
    if (await isOn(target, key)) onTarget++;
    const standIn = c.backends.find((b) => b !== target && b !== original(key))!;
    if (await isOn(standIn, key)) onStandIn++;
    if ((await c.router.get(key)).status === 'hit') served++;
  }
  return { onTarget, onStandIn, served };
}

test('SASL: a touch near expiry while a restarted backend is held in refill leaves no copy that outlives its original', async () => {
  // The codec's stand-in TTL for SASL reads is 1440 s (see support.ts), the hold 3 s.
  const c = await startResyncCluster({ requestTimeoutMs: 2000 }, { quietMs: 0, unlistedHoldMs: 3000 }, USER, 'agent');
  const agent = c.agent!;
  const target = c.backends[0];
  const keys = Array.from({ length: KEYS }, (_, i) => k(`sess.${i}`)).filter((key) => c.ring.ringOrder(key).slice(0, 2).some((m) => m.address === target.address));
  expect(keys.length).toBeGreaterThan(10);
  for (const key of keys) expect((await c.router.store(set(key, 'session', 30))).status).toBe('stored');

  await restartEmpty(c, 0);
  await pollUntil(() => c.holds.length === 1, 10_000, 10, 'the run never began its hold');
  // Touched near expiry: the restarted member misses the touch, the convergence check (a
  // follow-up step, after the reply) copies the item to it.
  for (const key of keys) {
    const later: FollowUps = [];
    expect((await c.router.touch(key, 2, later)).status).toBe('touched');
    await Promise.all(later);
  }
  // Copied, with the expiry the touch gave (the router knows it: its own write set it).
  for (const key of keys) expect(await isOn(target, key)).toBe(true);
  await pollUntil(() => agent.roleOf(target) === 'trusted', 20_000, 20, 'never trusted again');

  expect(await outlived(c, keys, target)).toEqual({ onTarget: 0, onStandIn: 0, served: 0 });
});

test('meta: the same touch near expiry during a refill leaves no copy that outlives its original', async () => {
  const c = await startResyncCluster({ requestTimeoutMs: 2000 }, { quietMs: 0 }, undefined, 'agent');
  const agent = c.agent!;
  const target = c.backends[0];
  const keys = Array.from({ length: KEYS }, (_, i) => k(`sess.${i}`)).filter((key) => c.ring.ringOrder(key).slice(0, 2).some((m) => m.address === target.address));
  for (const key of keys) expect((await c.router.store(set(key, 'session', 30))).status).toBe('stored');
  await restartEmpty(c, 0);
  await pollUntil(() => agent.roleOf(target) !== 'trusted', 10_000, 10, 'the restart was never seen');
  await pollUntil(() => agent.roleOf(target) === 'refill', 10_000, 10, 'never in refill');
  for (const key of keys) expect((await c.router.touch(key, 2)).status).toBe('touched');
  await pollUntil(() => agent.roleOf(target) === 'trusted', 20_000, 20, 'never trusted again');
  expect(await outlived(c, keys, target)).toEqual({ onTarget: 0, onStandIn: 0, served: 0 });
});

/** A key whose natural members are backends 0 (the target) and another: that one is its source. */
function keyOf(c: ResyncCluster): { key: Buffer; source: Backend } {
  const target = c.backends[0];
  for (let i = 0; ; i++) {
    const key = k(`race.${i}`);
    const natural = c.ring.ringOrder(key).slice(0, 2);
    if (natural.some((m) => m.address === target.address)) {
      return { key, source: c.backends.find((b) => b.address === natural.find((m) => m.address !== target.address)!.address)! };
    }
  }
}

/**
 * Holds the reply to the next get of `key` on `b` (memcached has answered it: the reply is on
 * its way) until released: a copy's read of its source, as a slow path delivers it.
 */
function holdNextRead(b: Backend, key: Buffer): { read: Promise<void>; release(): void } {
  const original = b.get.bind(b);
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let reached!: () => void;
  const read = new Promise<void>((r) => (reached = r));
  b.get = async (k2, touch) => {
    const reply = await original(k2, touch);
    if (!k2.equals(key)) return reply;
    b.get = original;
    reached();
    await released;
    return reply;
  };
  return { read, release };
}

test('meta: a reconcile leaves no copy with an expiry the source no longer has (a touch it missed while away)', async () => {
  const c = await startResyncCluster({ requestTimeoutMs: 2000 }, { quietMs: 0 });
  const target = c.backends[0];
  const { key, source } = keyOf(c);
  expect((await c.router.store(set(key, 'session', 30))).status).toBe('stored');
  // The touch the target missed (it was away): the same value, a shorter life.
  expect((await source.touch(key, 2)).status).toBe('touched');
  expect(await c.resyncer.resync(target, 'manual')).toMatchObject({ outcome: 'done', mode: 'reconcile' });
  expect(await outlived(c, [key], target)).toEqual({ onTarget: 0, onStandIn: 0, served: 0 });
});

test('meta: a reconcile whose source expires this second drops the copy a late write gave a longer life', async () => {
  const c = await startResyncCluster({ requestTimeoutMs: 2000 }, { quietMs: 0 });
  const target = c.backends[0];
  const { key, source } = keyOf(c);
  expect((await c.router.store(set(key, 'lock', 30))).status).toBe('stored');
  // The same item landed late on the target (a delayed `set`): it would outlive the source's.
  expect((await target.store(set(key, 'lock', 300))).status).toBe('stored');
  // Scripted: the source's item is read in its last second (memcached reports a TTL of 0 then,
  // a window too short to hit on purpose).
  const get = source.get.bind(source);
  source.get = async (k2, touch) => {
    const reply = await get(k2, touch);
    return k2.equals(key) && reply.status === 'hit' ? { ...reply, item: { ...reply.item, ttl: 0 } } : reply;
  };
  expect(await c.resyncer.resync(target, 'manual')).toMatchObject({ outcome: 'done', mode: 'reconcile' });
  expect(await isOn(target, key)).toBe(false);
  expect(await isOn(source, key)).toBe(true); // the source's own item expires on its own
});

test.each([
  ['a touch, the target holding a stale value', 'touch', true],
  ['a set with a shorter TTL, the target holding a stale value', 'set', true],
  ['a touch, the target lacking the key', 'touch', false],
] as const)('meta: %s, landing while the reconcile copy is in flight, is not undone by the copy', async (_, request, stale) => {
  const c = await startResyncCluster({ requestTimeoutMs: 2000 }, { quietMs: 0 });
  const target = c.backends[0];
  const { key, source } = keyOf(c);
  expect((await c.router.store(set(key, 'session', 30))).status).toBe('stored');
  if (stale) expect((await target.store(set(key, 'stale', 30))).status).toBe('stored');
  else expect((await target.delete(key, 0n)).status).toBe('deleted');
  const held = holdNextRead(source, key);
  const run = c.resyncer.resync(target, 'manual');
  await held.read;
  // The run has read the source (TTL 30); a client's request through another sidecar lands now.
  const reply = request === 'touch' ? await c.router.touch(key, 2) : await c.router.store(set(key, 'session', 2));
  expect(reply.status).toBe(request === 'touch' ? 'touched' : 'stored');
  held.release();
  expect(await run).toMatchObject({ outcome: 'done', mode: 'reconcile' });
  expect(await outlived(c, [key], target)).toEqual({ onTarget: 0, onStandIn: 0, served: 0 });
});
