// What a run may delete of the target's copies when nothing trusted answers for them. Real
// memcached, 3 backends, 2 replicas, the roles set by hand; the key's third backend is the target.
//
// A reconcile whose key has no trusted natural member: the misses of its natural members in
// refill decide only for the target's items written since one of those refills began (that
// member's refill key's CAS on the target, TrustAgent.refillingSince), because every write of
// the key from then on went to that member too. Roles: both natural members in refill (the
// first since before the target's copy was written, the second since after), the target their
// stand-in, in refill too.
//
// A shed (or refresh) drops a copy outside its key's set only while the target is trusted: one
// that left trusted during the run is in no key's set, and its copy may be the only one.

import { afterEach, describe, expect, test } from 'vitest';
import type { Backend } from '../../src/backends/backend';
import type { ResyncResult } from '../../src/resync/resync-run';
import type { MemcachedNode } from '../../src/routing/node';
import type { ReplicaRing } from '../../src/routing/ring';
import type { Role } from '../../src/trust/protocol';
import { refillKey } from '../../src/trust/reserved-keys';
import { k, runOn, startHandRolesCluster, stopHandRolesCluster, storeOn as store, valueOn, type HandRolesCluster } from './support';

afterEach(stopHandRolesCluster);

interface Setup {
  cluster: HandRolesCluster;
  ring: ReplicaRing;
  roles: Map<MemcachedNode, Role>;
  key: string;
  /** The key's natural members: `refilling` first, `other` second; `target` is their stand-in. */
  refilling: Backend;
  other: Backend;
  target: Backend;
}

/** What a test's roles are chosen from. */
type Parts = Omit<Setup, 'cluster' | 'ring' | 'roles'>;

async function setup(roleOf: (s: Parts) => Map<MemcachedNode, Role> = allInRefill): Promise<Setup> {
  const cluster = await startHandRolesCluster(3);
  const { ring } = cluster;
  const target = cluster.backends[2];
  let key = '';
  for (let i = 0; key === ''; i++) if (ring.ringOrder(k(`sess:${i}`))[2] === target) key = `sess:${i}`;
  const [refilling, other] = ring.ringOrder(k(key)) as Backend[];
  const roles = roleOf({ key, refilling, other, target });
  ring.useRoles((node) => roles.get(node)!);
  return { cluster, ring, roles, key, refilling, other, target };
}

const allInRefill = ({ refilling, other, target }: Parts): Map<MemcachedNode, Role> =>
  new Map<MemcachedNode, Role>([
    [refilling, 'refill'],
    [other, 'refill'],
    [target, 'refill'],
  ]);

/** The target's reconcile; each natural member in refill since its refill key on the target, if any, was stored. */
function reconcile({ cluster, roles, target }: Setup): Promise<ResyncResult> {
  return runOn(cluster, target, {
    mode: Promise.resolve('reconcile'),
    isResyncing: () => true, // none of the three is trusted
    holdMs: 0,
    refillingSince: async (natural, on) => {
      if (on.address !== target.address || roles.get(natural) !== 'refill') return null;
      const r = await target.get(refillKey(natural.address, 3));
      return r.status === 'hit' ? r.item.cas : null;
    },
  });
}

/** The reconcile deletes nothing: the target keeps `value`. */
async function expectKept(s: Setup, value: string): Promise<void> {
  expect(await reconcile(s)).toMatchObject({ outcome: 'done', pruned: 0 });
  expect(await valueOn(s.target, s.key)).toBe(value);
}

describe('reconcile with no trusted natural member', () => {
  test("a stand-in's copy written since a natural member's refill began, which that member misses, was deleted: it goes", async () => {
    const s = await setup();
    await store(s.target, refillKey(s.refilling.address, 3), 'mark');
    // The write reached both (the member in refill takes its natural keys' writes), the delete
    // only the members in refill: the target was away then.
    await store(s.target, s.key, 'deleted-since');
    await store(s.target, refillKey(s.other.address, 3), 'mark');
    const result = await reconcile(s);
    expect(result).toMatchObject({ outcome: 'done', pruned: 1 });
    expect(await valueOn(s.target, s.key)).toBeNull();
  });

  test('a copy written before that refill began stays: the member in refill may lack it', async () => {
    const s = await setup();
    await store(s.target, s.key, 'older');
    await store(s.target, refillKey(s.refilling.address, 3), 'mark');
    await expectKept(s, 'older');
  });

  test('the other natural member out: it may hold a copy of its own, nothing is decided', async () => {
    const s = await setup(({ refilling, other, target }) => new Map<MemcachedNode, Role>([[refilling, 'refill'], [other, 'out'], [target, 'refill']]));
    await store(s.target, refillKey(s.refilling.address, 3), 'mark');
    await store(s.target, s.key, 'maybe deleted');
    await expectKept(s, 'maybe deleted');
  });

  test('no refill key on the target: nothing tells, the copy stays', async () => {
    const s = await setup();
    await store(s.target, s.key, 'unknown');
    await expectKept(s, 'unknown');
  });

  test('the member in refill holds the key: the copy stays', async () => {
    const s = await setup();
    await store(s.target, refillKey(s.refilling.address, 3), 'mark');
    await store(s.target, s.key, 'live');
    await store(s.refilling, s.key, 'live');
    await expectKept(s, 'live');
  });
});

describe('reconcile from a member in refill (a refill source)', () => {
  /** The target's reconcile, `refilling` a source for every item it holds (taken in its refill). */
  function fromRefillSource({ cluster, refilling, target }: Setup): Promise<ResyncResult> {
    return runOn(cluster, target, {
      mode: Promise.resolve('reconcile'),
      isResyncing: () => true,
      holdMs: 0,
      refillSince: async (member) => (member === refilling ? 0n : null),
    });
  }

  test("its item is copied over the target's older one", async () => {
    const s = await setup();
    await store(s.target, s.key, 'older');
    await store(s.refilling, s.key, 'latest');
    expect(await fromRefillSource(s)).toMatchObject({ outcome: 'done', copied: 1 });
    expect(await valueOn(s.target, s.key)).toBe('latest');
  });

  test("its item expiring this second: the target's copy goes too, not outliving it", async () => {
    const s = await setup();
    await store(s.target, s.key, 'older'); // no expiry: it would outlive the source's item
    await store(s.refilling, s.key, 'latest');
    // Scripted: the source's item is read in its last second (memcached reports a TTL of 0 then).
    const get = s.refilling.get.bind(s.refilling);
    s.refilling.get = async (key, touch) => {
      const reply = await get(key, touch);
      return key.equals(k(s.key)) && reply.status === 'hit' ? { ...reply, item: { ...reply.item, ttl: 0 } } : reply;
    };
    expect(await fromRefillSource(s)).toMatchObject({ outcome: 'done', pruned: 1 });
    expect(await valueOn(s.target, s.key)).toBeNull();
    expect(await valueOn(s.refilling, s.key)).toBe('latest'); // the source's own item expires on its own
  });
});

describe('shed', () => {
  /** The natural members trusted, so the target is in the key's set no more (its copy a stand-in's). */
  const naturalsTrusted =
    (targetRole: Role) =>
    ({ refilling, other, target }: Parts) =>
      new Map<MemcachedNode, Role>([
        [refilling, 'trusted'],
        [other, 'trusted'],
        [target, targetRole],
      ]);

  function shed({ cluster, target }: Setup, targetTrusted: boolean): Promise<ResyncResult> {
    return runOn(cluster, target, { mode: Promise.resolve('shed'), isResyncing: (node) => node.address === target.address && !targetTrusted, holdMs: 0 });
  }

  test("a trusted target's copy outside its key's set goes", async () => {
    const s = await setup(naturalsTrusted('trusted'));
    await store(s.target, s.key, 'stand-in copy');
    expect(await shed(s, true)).toMatchObject({ outcome: 'done', pruned: 1 });
    expect(await valueOn(s.target, s.key)).toBeNull();
  });

  test('a target no longer trusted keeps it: away, it is in no set, and the copy may be the only one', async () => {
    // It went out while the shed ran (a failure): out, it stands in for nothing.
    const s = await setup(naturalsTrusted('out'));
    await store(s.target, s.key, 'only copy');
    expect(await shed(s, false)).toMatchObject({ outcome: 'done', pruned: 0 });
    expect(await valueOn(s.target, s.key)).toBe('only copy');
  });
});
