// A reconcile of a backend that comes back with an item it was sent before its out applied (held
// when it left, or a write that timed out on it and landed while it was out, memcached having no
// fencing), with no source and no trusted natural member's miss: another backend of the key's
// placement that holds the key's delete record over its mark of the target's out (the out-applied
// key, TrustAgent.leftBefore) took a client's delete sent after every write the target's item can
// be. The item goes. Real memcached, 3 backends, 2 replicas, roles set by hand: the key's order is
// N1 N2 T; N1 came back empty, N2 in refill took the delete, T (the first stand-in) is the target.

import { afterEach, expect, test } from 'vitest';
import type { Backend } from '../../src/backends/backend';
import type { ResyncResult } from '../../src/resync/resync-run';
import type { MemcachedNode } from '../../src/routing/node';
import type { ReplicaRing } from '../../src/routing/ring';
import type { Role } from '../../src/trust/protocol';
import { deleteRecordKey } from '../../src/trust/reserved-keys';
import { k, runOn, startHandRolesCluster, stopHandRolesCluster, storeOn as store, valueOn, type HandRolesCluster } from './support';

afterEach(stopHandRolesCluster);

const OUT_MARK = 'out-mark-of-T';
const REFILL_MARK = 'refill-mark-of-T';

interface Setup {
  cluster: HandRolesCluster;
  ring: ReplicaRing;
  key: string;
  N2: Backend;
  T: Backend;
}

/** Every backend in refill (N1 came back empty, N2 and T kept their data). */
async function setup(): Promise<Setup> {
  const cluster = await startHandRolesCluster(3);
  const { ring } = cluster;
  const key = 'deleted-since-left';
  const [, N2, T] = ring.ringOrder(k(key)) as Backend[];
  const roles = new Map<string, Role>(ring.ringOrder(k(key)).map((b) => [b.address, 'refill']));
  ring.useRoles((node) => roles.get(node.address)!);
  return { cluster, ring, key, N2, T };
}

/** T's reconcile: its refill mark and N2's mark of T's out are the CASes of two plain keys. */
function reconcile({ cluster, N2, T }: Setup, withMarks = true): Promise<ResyncResult> {
  return runOn(cluster, T, {
    mode: Promise.resolve('reconcile'),
    isResyncing: () => true,
    holdMs: 0,
    ...(withMarks && {
      leftBefore: async (target: MemcachedNode, other: MemcachedNode) => {
        if (target.address !== T.address || other.address !== N2.address) return null;
        const [mine, theirs] = await Promise.all([T.get(k(REFILL_MARK)), N2.get(k(OUT_MARK))]);
        return mine.status === 'hit' && theirs.status === 'hit' ? { target: mine.item.cas, other: theirs.item.cas } : null;
      },
    }),
  });
}

test("a late write on the target goes when a member holds the key's delete record over its mark of the target's out", async () => {
  const s = await setup();
  // The write timed out on T and landed while T was out; then N2 got T's out mark, then the delete.
  await store(s.T, s.key, 'landed late');
  await store(s.N2, OUT_MARK, '');
  await store(s.N2, deleteRecordKey(k(s.key)), '');
  await store(s.T, REFILL_MARK, '');
  expect(await reconcile(s, false)).toMatchObject({ outcome: 'done', pruned: 0 });
  expect(await valueOn(s.T, s.key)).toBe('landed late');
  expect(await reconcile(s)).toMatchObject({ outcome: 'done', pruned: 1 });
  expect(await valueOn(s.T, s.key)).toBeNull();
});

test('a delete record from before the mark proves nothing: the delete may be older than the item', async () => {
  const s = await setup();
  await store(s.T, s.key, 'kept');
  await store(s.N2, deleteRecordKey(k(s.key)), '');
  await store(s.N2, OUT_MARK, '');
  await store(s.T, REFILL_MARK, '');
  expect(await reconcile(s)).toMatchObject({ outcome: 'done', pruned: 0 });
  expect(await valueOn(s.T, s.key)).toBe('kept');
});

test("an item over the target's refill mark (taken in its refill) is not this rule's", async () => {
  const s = await setup();
  await store(s.N2, OUT_MARK, '');
  await store(s.N2, deleteRecordKey(k(s.key)), '');
  await store(s.T, REFILL_MARK, '');
  await store(s.T, s.key, 'taken in refill');
  expect(await reconcile(s)).toMatchObject({ outcome: 'done', pruned: 0 });
  expect(await valueOn(s.T, s.key)).toBe('taken in refill');
});
