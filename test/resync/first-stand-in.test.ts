// A reconcile while both natural members of a key are away: what the miss of its first stand-in
// (the backend right after them in the key's order) proves. Real memcached, 4 backends, 2
// replicas, the roles set by hand: the key's order is N1 N2 T S, N1 and N2 in refill, T trusted
// and missing the key. A stand-in key of N2's outage (the one standInSince reads) is stored on
// each backend before the items: they were written in the outage. Whether T stood in all along
// (trusted, never refilled since they left: TrustAgent.stoodInThroughout) is given.

import { afterEach, describe, expect, test } from 'vitest';
import type { Backend } from '../../src/backends/backend';
import type { ResyncResult } from '../../src/resync/resync-run';
import type { MemcachedNode } from '../../src/routing/node';
import type { ReplicaRing } from '../../src/routing/ring';
import type { Role } from '../../src/trust/protocol';
import { deleteRecordKey, standInKey } from '../../src/trust/reserved-keys';
import { k, runOn, startHandRolesCluster, stopHandRolesCluster, storeOn as store, valueOn, type HandRolesCluster } from './support';

afterEach(stopHandRolesCluster);

interface Setup {
  cluster: HandRolesCluster;
  ring: ReplicaRing;
  roles: Map<string, Role>;
  key: string;
  /** The stand-in key whose CAS standInSince gives. */
  mark: Buffer;
  N1: Backend;
  T: Backend;
  S: Backend;
}

/** S trusted (a stand-in the target may copy from) or in refill (the target itself). */
async function setup(sRole: Role): Promise<Setup> {
  const cluster = await startHandRolesCluster(4);
  const { ring } = cluster;
  const key = 'first-stand-in';
  const [N1, N2, T, S] = ring.ringOrder(k(key)) as Backend[];
  const roles = new Map<string, Role>([
    [N1.address, 'refill'],
    [N2.address, 'refill'],
    [T.address, 'trusted'],
    [S.address, sRole],
  ]);
  ring.useRoles((node) => roles.get(node.address)!);
  // The stand-in key of N2's outage, on each other backend, before any item.
  const mark = standInKey(N2.address, 1);
  await Promise.all([N1, T, S].map((b) => store(b, mark, 'mark')));
  return { cluster, ring, roles, key, mark, N1, T, S };
}

/** The reconcile of `target`, T having stood in all along or not. */
function reconcile({ cluster, roles, mark, T }: Setup, target: Backend, stoodIn: boolean): Promise<ResyncResult> {
  return runOn(cluster, target, {
    mode: Promise.resolve('reconcile'),
    isResyncing: (node: MemcachedNode) => roles.get(node.address) !== 'trusted',
    holdMs: 0,
    standInSince: async (standIn) => {
      const r = await standIn.get(mark);
      return r.status === 'hit' ? r.item.cas : null;
    },
    stoodInThroughout: async (standIn) => stoodIn && standIn.address === T.address,
  });
}

describe("the first stand-in's miss", () => {
  test("a trusted stand-in's item written in the outage is no source once the first stand-in, there all along, misses it", async () => {
    const s = await setup('trusted');
    await store(s.N1, s.key, 'older');
    await store(s.S, s.key, 'deleted since');
    expect(await reconcile(s, s.N1, true)).toMatchObject({ outcome: 'done', copied: 0, pruned: 0 });
    // N1's own copy stays, though over its stand-in key: a natural member's may be from before
    // N2's outage took effect, when T was in no placement of the key.
    expect(await valueOn(s.N1, s.key)).toBe('older');
  });

  test('it is one when the first stand-in was away meanwhile', async () => {
    const s = await setup('trusted');
    await store(s.N1, s.key, 'older');
    await store(s.S, s.key, 'latest');
    expect(await reconcile(s, s.N1, false)).toMatchObject({ outcome: 'done', copied: 1 });
    expect(await valueOn(s.N1, s.key)).toBe('latest');
  });

  test("a stand-in's own copy written in the outage goes in its reconcile", async () => {
    const s = await setup('refill');
    await store(s.S, s.key, 'deleted since');
    expect(await reconcile(s, s.S, true)).toMatchObject({ outcome: 'done', pruned: 1 });
    expect(await valueOn(s.S, s.key)).toBeNull();
  });

  test("a stand-in's copy from before its stand-in key stays: the first stand-in never took that write", async () => {
    const s = await setup('refill');
    await s.S.delete(s.mark, 0n);
    await store(s.S, s.key, 'from before');
    await store(s.S, s.mark, 'mark');
    expect(await reconcile(s, s.S, true)).toMatchObject({ outcome: 'done', pruned: 0 });
    expect(await valueOn(s.S, s.key)).toBe('from before');
  });
});

describe("a stand-in's delete record", () => {
  /** T (the first stand-in) in refill is the target; S, a later stand-in, trusted, stood in since its mark. */
  async function standInTarget(): Promise<Setup> {
    const s = await setup('trusted');
    s.roles.set(s.T.address, 'refill');
    return s;
  }
  const reconcileT = ({ cluster, roles, mark, S }: Setup, target: Backend): Promise<ResyncResult> =>
    runOn(cluster, target, {
      mode: Promise.resolve('reconcile'),
      isResyncing: (node: MemcachedNode) => roles.get(node.address) !== 'trusted',
      holdMs: 0,
      standInSince: async (standIn) => {
        const r = await standIn.get(mark);
        return r.status === 'hit' ? r.item.cas : null;
      },
      stoodInSince: async (standIn) => {
        const r = await standIn.get(mark);
        return standIn.address === S.address && r.status === 'hit' ? r.item.cas : null;
      },
    });

  test("a stand-in's copy from before goes when a stand-in there since misses the key and holds its delete record", async () => {
    const s = await standInTarget();
    await s.T.delete(s.mark, 0n);
    await store(s.T, s.key, 'from before');
    await store(s.T, s.mark, 'mark');
    await store(s.S, deleteRecordKey(k(s.key)), '');
    expect(await reconcileT(s, s.T)).toMatchObject({ outcome: 'done', pruned: 1 });
    expect(await valueOn(s.T, s.key)).toBeNull();
  });

  test('without the record, or with one from before it stood in, the copy stays: its miss alone proves nothing', async () => {
    const s = await standInTarget();
    await s.T.delete(s.mark, 0n);
    await store(s.T, s.key, 'from before');
    await store(s.T, s.mark, 'mark');
    expect(await reconcileT(s, s.T)).toMatchObject({ outcome: 'done', pruned: 0 });
    expect(await valueOn(s.T, s.key)).toBe('from before');
    await s.S.delete(s.mark, 0n);
    await store(s.S, deleteRecordKey(k(s.key)), '');
    await store(s.S, s.mark, 'mark');
    expect(await reconcileT(s, s.T)).toMatchObject({ outcome: 'done', pruned: 0 });
    expect(await valueOn(s.T, s.key)).toBe('from before');
  });
});
