// A fill copies nothing the target took itself in its refill. Real memcached, 3 backends,
// 2 replicas, the roles set by hand: the key's first natural member is the target, in refill;
// the second, its source, trusted. The target's refill key on the source (TrustAgent
// refillTookSince) marks where the writes begin that went to the target too: for a source's
// item over it, the target holds that write or what came after it. A miss there is a delete
// that reached the target and is still on its way to the source (a path that froze one way,
// say); copied, the deleted item would be trusted and served again. The same holds for a source
// in refill (a refill source: no trusted member is left), whose key names its refill. Its item
// that its copied record names is an earlier fill's copy, no write it took: not taken either.

import { afterEach, describe, expect, test } from 'vitest';
import type { Backend } from '../../src/backends/backend';
import { REAL_CLOCK, type Clock } from '../../src/resync/rate-limiter';
import type { ResyncMode, ResyncResult, RunContext } from '../../src/resync/resync-run';
import type { MemcachedNode } from '../../src/routing/node';
import type { Role } from '../../src/trust/protocol';
import { INCARNATION_KEY, copiedRecordKey, refillKey } from '../../src/trust/reserved-keys';
import { k, runOn, startHandRolesCluster, stopHandRolesCluster, storeOn as store, valueOn, type HandRolesCluster } from './support';

afterEach(stopHandRolesCluster);

const EPOCH = 3;

interface Setup {
  cluster: HandRolesCluster;
  key: string;
  target: Backend;
  source: Backend;
}

async function setup(): Promise<Setup> {
  const cluster = await startHandRolesCluster(3);
  const { ring } = cluster;
  const target = cluster.backends[0];
  let key = '';
  for (let i = 0; key === ''; i++) if (ring.ringOrder(k(`sess:${i}`))[0] === target) key = `sess:${i}`;
  const source = ring.ringOrder(k(key))[1] as Backend;
  ring.useRoles((node: MemcachedNode): Role => (node === target ? 'refill' : 'trusted'));
  return { cluster, key, target, source };
}

/** The target's run; the target took the source's writes from its refill key on the source on, if that is there. */
function fill({ cluster, target }: Setup, mode: ResyncMode): Promise<ResyncResult> {
  return runOn(cluster, target, {
    mode: Promise.resolve(mode),
    isResyncing: (node) => node === target,
    holdMs: 0,
    refillTookSince: async (t, source) => {
      const r = await (source as Backend).get(refillKey(t.address, EPOCH));
      return r.status === 'hit' ? r.item.cas : null;
    },
  });
}

/** A write that reached the source and the target, then a delete that reached the target only. */
async function deletedOnTargetOnly({ key, target, source }: Setup): Promise<void> {
  await store(source, key, 'deleted since');
  await store(target, key, 'deleted since');
  await target.delete(k(key), 0n);
}

describe.each(['reconcile', 'refill'] as const)('%s, the target in refill', (mode) => {
  test("the source's item written since the refill began, which the target misses: not copied back", async () => {
    const s = await setup();
    await store(s.source, refillKey(s.target.address, EPOCH), 'mark');
    await deletedOnTargetOnly(s);
    expect(await fill(s, mode)).toMatchObject({ outcome: 'done', copied: 0 });
    expect(await valueOn(s.target, s.key)).toBeNull();
  });

  test('an item written before the refill began is copied: the target was away for it', async () => {
    const s = await setup();
    await store(s.source, s.key, 'older');
    await store(s.source, refillKey(s.target.address, EPOCH), 'mark');
    expect(await fill(s, mode)).toMatchObject({ outcome: 'done', copied: 1 });
    expect(await valueOn(s.target, s.key)).toBe('older');
  });

  test('no refill key on the source: nothing tells, the item is copied', async () => {
    const s = await setup();
    await deletedOnTargetOnly(s);
    expect(await fill(s, mode)).toMatchObject({ outcome: 'done', copied: 1 });
    expect(await valueOn(s.target, s.key)).toBe('deleted since');
  });
});

test("reconcile: the target's other value, where the source's is from its refill, is the newer one and stays", async () => {
  const s = await setup();
  await store(s.source, refillKey(s.target.address, EPOCH), 'mark');
  await store(s.source, s.key, 'older');
  // A later write reached the target and is still on its way to the source.
  await store(s.target, s.key, 'newer');
  expect(await fill(s, 'reconcile')).toMatchObject({ outcome: 'done', copied: 0 });
  expect(await valueOn(s.target, s.key)).toBe('newer');
});

describe('the source in refill too (a refill source: every backend in refill)', () => {
  /** The target's reconcile, the source's items over its incarnation key taken in its refill (RunContext.refillSince). */
  async function fillFromRefill(s: Setup, extra: Partial<RunContext> = {}, clock?: Clock): Promise<ResyncResult> {
    s.cluster.ring.useRoles(() => 'refill');
    const began = await s.source.get(INCARNATION_KEY);
    if (began.status !== 'hit') throw new Error('no incarnation key on the source');
    const context: RunContext = {
      mode: Promise.resolve('reconcile'),
      isResyncing: () => true,
      holdMs: 0,
      refillSince: async (member) => (member === s.source ? began.item.cas : null),
      refillTookSince: async (t, source) => {
        const r = await (source as Backend).get(refillKey(t.address, EPOCH));
        return r.status === 'hit' ? r.item.cas : null;
      },
      ...extra,
    };
    return runOn(s.cluster, s.target, context, clock);
  }

  test("its item written since the target's refill key on it, which the target misses: not copied back", async () => {
    const s = await setup();
    await store(s.source, INCARNATION_KEY, '0 r2');
    await store(s.source, refillKey(s.target.address, EPOCH), 'mark');
    await deletedOnTargetOnly(s);
    expect(await fillFromRefill(s)).toMatchObject({ outcome: 'done', copied: 0 });
    expect(await valueOn(s.target, s.key)).toBeNull();
  });

  /** The source's item for the key, and its copied record naming the CAS `named` gives it. */
  async function copiedOnSource(s: Setup, named: (cas: bigint) => bigint): Promise<void> {
    await store(s.source, s.key, 'copied by an earlier fill');
    const item = await s.source.get(k(s.key));
    if (item.status !== 'hit') throw new Error('the source lost the item');
    await store(s.source, copiedRecordKey(k(s.key)), named(item.item.cas).toString());
  }

  test('its item that its copied record names (an Earlier refills copy onto it): not taken, it may not be the latest', async () => {
    const s = await setup();
    await store(s.source, INCARNATION_KEY, '0 r2');
    await copiedOnSource(s, (cas) => cas);
    expect(await fillFromRefill(s)).toMatchObject({ outcome: 'done', copied: 0 });
    expect(await valueOn(s.target, s.key)).toBeNull();
  });

  test("its item while this process's Earlier refills copy of the key onto it awaits its record: the key read again, then skipped", async () => {
    const s = await setup();
    await store(s.source, INCARNATION_KEY, '0 r2');
    await store(s.source, s.key, 'copied, its record on its way');
    const item = await s.source.get(k(s.key));
    if (item.status !== 'hit') throw new Error('the source lost the item');
    const cas = item.item.cas.toString();
    // The copy onto the source is registered (RunContext.recording) until its record is written:
    // the record lands as the run first finds it registered, before the key's retry pass.
    let written: Promise<void> = Promise.resolve();
    class Settling extends Map<string, number> {
      override has(id: string): boolean {
        const found = super.has(id);
        if (found) written = store(s.source, copiedRecordKey(k(s.key)), cas).then(() => void this.delete(id));
        return found;
      }
    }
    const recording = new Settling([[`${s.source.address} ${s.key}`, 1]]);
    const clock: Clock = { now: REAL_CLOCK.now, sleep: async (ms) => (await written, REAL_CLOCK.sleep(ms)) };
    expect(await fillFromRefill(s, { recording }, clock)).toMatchObject({ outcome: 'done', copied: 0 });
    expect(await valueOn(s.target, s.key)).toBeNull();
  });

  test('its item written over such a copy (the record names an older CAS): a write it took, copied', async () => {
    const s = await setup();
    await store(s.source, INCARNATION_KEY, '0 r2');
    await copiedOnSource(s, (cas) => cas - 1n);
    expect(await fillFromRefill(s)).toMatchObject({ outcome: 'done', copied: 1 });
    expect(await valueOn(s.target, s.key)).toBe('copied by an earlier fill');
  });

  test('no refill key on it: its item, taken in its refill, is the latest and copied', async () => {
    const s = await setup();
    await store(s.source, INCARNATION_KEY, '0 r2');
    await deletedOnTargetOnly(s);
    expect(await fillFromRefill(s)).toMatchObject({ outcome: 'done', copied: 1 });
    expect(await valueOn(s.target, s.key)).toBe('deleted since');
  });
});
