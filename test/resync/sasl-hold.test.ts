// Resync of SASL backends (memcached -S, binary protocol): no key can be listed,
// so a restarted backend cannot be refilled. Its run ends its (empty) listing and
// then holds it in refill for unlistedHoldMs (the longest item lifetime): read
// last, deciding no add/cas/incr, so an emptied authority never hands out a
// session lock that its peer still holds. A flush, or the backend going down,
// ends the hold.

import { afterEach, expect, test } from 'vitest';
import type { Backend } from '../../src/backends/backend';
import type { StoreFields } from '../../src/protocol/types';
import { pollUntil } from '../helpers/wait';
import { k, startResyncCluster, stopResyncCluster, type ResyncCluster } from './support';

afterEach(stopResyncCluster);

const USER = { username: 'resync', password: 'resync-pw' };
const HOLD_MS = 1500;

const set = (key: Buffer, value: string, mode: StoreFields['mode'] = 'set'): StoreFields => ({ mode, key, value: Buffer.from(value), flags: 0, exptime: 0, cas: 0n });

/** A key whose authority (first member) is `b`. */
function keyOwnedBy(c: ResyncCluster, b: Backend): Buffer {
  for (let i = 0; ; i++) {
    const key = k(`lock.${i}`);
    if (c.ring.replicaSet(key)[0].address === b.address) return key;
  }
}

/** Restarts backend i empty and waits until its pool has reconnected. */
async function restartEmpty(c: ResyncCluster, i: number): Promise<void> {
  await c.mcs[i].restart();
  await pollUntil(async () => (await c.backends[i].version()).status === 'ok', 10_000, 20, 'backend did not reconnect');
}

test('a restarted SASL backend is held in refill: the lock it lost is still refused, reads fail over; then trusted again', async () => {
  const c = await startResyncCluster({ requestTimeoutMs: 2000 }, { quietMs: 0, unlistedHoldMs: HOLD_MS }, USER, 'agent');
  const agent = c.agent!;
  const target = c.backends[0];
  const lock = keyOwnedBy(c, target);
  expect((await c.router.store(set(lock, 'held', 'add'))).status).toBe('stored');

  await restartEmpty(c, 0);
  await pollUntil(() => c.holds.length === 1, 10_000, 10, 'the run never began its hold');
  expect(c.holds).toEqual([HOLD_MS]);
  expect(agent.roleOf(target)).toBe('refill');
  expect(c.resyncer.progress()[0].state).toBe('holding');

  // The emptied authority decides nothing: the add goes to the member that still holds the lock.
  expect((await c.router.store(set(lock, 'stolen', 'add'))).status).toBe('not_stored');
  const read = await c.router.get(lock);
  expect(read.status === 'hit' && read.item.value.toString()).toBe('held');

  await pollUntil(() => agent.roleOf(target) === 'trusted', 10_000, 10, 'never trusted again');
  const [result] = c.finished;
  expect(result).toMatchObject({ outcome: 'done', mode: 'reconcile', copied: 0 });
  expect(result.unlisted).toEqual(expect.arrayContaining([c.backends[1].address, c.backends[2].address]));
  expect(result.heldMs).toBeGreaterThanOrEqual(HOLD_MS);
});

test('without a hold (plain memcached settings), the same run ends at once', async () => {
  const c = await startResyncCluster({ requestTimeoutMs: 2000 }, { quietMs: 0 }, USER);
  await restartEmpty(c, 0);
  const result = await c.resyncer.resync(c.backends[0], 'refill');
  expect(result).toMatchObject({ outcome: 'done', heldMs: 0 });
  expect(c.holds).toEqual([]);
});

test('a flush ends the hold: nothing is left that the backend could lack', async () => {
  const c = await startResyncCluster({ requestTimeoutMs: 2000 }, { quietMs: 0, unlistedHoldMs: 60_000 }, USER);
  await restartEmpty(c, 0);
  const run = c.resyncer.resync(c.backends[0], 'refill');
  await pollUntil(() => c.holds.length === 1, 10_000, 10, 'the run never began its hold');
  expect((await c.router.flush(0)).status).toBe('ok');
  expect(await run).toMatchObject({ outcome: 'flushed' });
  expect(c.resyncer.isRefilling(c.backends[0])).toBe(false);
});
