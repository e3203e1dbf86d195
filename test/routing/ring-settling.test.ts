// A ring settling after a reload that moved keys (src/routing/ring.ts, settleFrom): a kept
// backend holds only the keys it held under the ring before until it settled, the former
// holders stay members of their keys meanwhile, and once every backend settled the ring
// is the new one alone. The router asks holders first: a member that never held a key
// neither decides it nor answers a miss for it.

import { describe, expect, test } from 'vitest';
import { ReplicaRing } from '../../src/routing/ring';
import { ReplicatedRouter } from '../../src/routing/replicated-router';
import { FakeNode } from './fake-node';

const k = (s: string) => Buffer.from(s, 'latin1');
const KEYS = Array.from({ length: 2000 }, (_, i) => `memc.sess.key.${i}`);
const ADDRESSES = Array.from({ length: 6 }, (_, i) => `127.0.0.1:${11500 + i}`);

function ringOf(weights: number[]): { ring: ReplicaRing; nodes: FakeNode[] } {
  const nodes = ADDRESSES.map((a) => new FakeNode(a));
  return { ring: new ReplicaRing(nodes.map((node, i) => ({ node, weight: weights[i] })), 2), nodes };
}

const names = (nodes: readonly { address: string }[]) => nodes.map((n) => n.address);

describe('a ring settling from the one before a reweight', () => {
  const before = ringOf([1, 1, 1, 1, 1, 1]).ring;
  const formerOf = (key: string) => names(before.naturalSet(k(key)));

  test('a natural member that never held the key does not hold it; the former holders do, and are members', () => {
    const { ring, nodes } = ringOf([5, 1, 1, 1, 1, 1]);
    ring.settleFrom(before, ADDRESSES);
    expect(ring.isSettling).toBe(true);
    let allNew = 0;
    for (const key of KEYS) {
      const former = formerOf(key);
      const natural = names(ring.naturalSet(k(key)));
      const set = names(ring.replicaSet(k(key)));
      // The natural members first, then every former holder not among them.
      expect(set).toEqual([...natural, ...former.filter((a) => !natural.includes(a))]);
      for (const node of nodes) expect(ring.holds(k(key), node), `${key} ${node.address}`).toBe(former.includes(node.address));
      if (!natural.some((a) => former.includes(a))) allNew++;
    }
    expect(allNew).toBeGreaterThan(0); // keys that keep none of their former members
  });

  test('a settled backend holds its natural keys; when the last settles the ring is the new one alone', () => {
    const { ring, nodes } = ringOf([5, 1, 1, 1, 1, 1]);
    ring.settleFrom(before, ADDRESSES);
    const [first, ...others] = ADDRESSES;
    expect(ring.settled(first)).toBe(false);
    for (const key of KEYS) {
      const natural = names(ring.naturalSet(k(key)));
      expect(ring.holds(k(key), nodes[0])).toBe(natural.includes(first) || formerOf(key).includes(first));
    }
    for (const a of others.slice(0, -1)) expect(ring.settled(a)).toBe(false);
    expect(ring.settled(others[others.length - 1])).toBe(true);
    expect(ring.isSettling).toBe(false);
    for (const key of KEYS) {
      expect(ring.replicaSet(k(key))).toEqual(ring.naturalSet(k(key)));
      for (const node of nodes) expect(ring.holds(k(key), node)).toBe(ring.isNatural(k(key), node));
    }
  });

  test('a backend a reload added is not settling: it holds its natural keys once it is in the ring', () => {
    const { ring, nodes } = ringOf([1, 1, 1, 1, 1, 1]);
    const fewer = new ReplicaRing(nodes.slice(0, 5).map((node) => ({ node, weight: 1 })), 2);
    ring.settleFrom(fewer, ADDRESSES.slice(0, 5));
    for (const key of KEYS) expect(ring.holds(k(key), nodes[5])).toBe(ring.isNatural(k(key), nodes[5]));
  });
});

describe('the router over a settling ring', () => {
  const before = ringOf([1, 1, 1, 1, 1, 1]).ring;
  /** A key whose first natural member after the reweight was no natural member before, and one that held it. */
  function movedKey(ring: ReplicaRing): { key: string; newcomer: string; holder: string } {
    for (const key of KEYS) {
      const natural = names(ring.naturalSet(k(key)));
      const former = names(before.naturalSet(k(key)));
      if (!former.includes(natural[0])) return { key, newcomer: natural[0], holder: former[0] };
    }
    throw new Error('no key moved');
  }

  test('a stored key is read from its holder, not answered as a miss by the newcomer', async () => {
    const { ring, nodes } = ringOf([5, 1, 1, 1, 1, 1]);
    ring.settleFrom(before, ADDRESSES);
    const { key, holder } = movedKey(ring);
    nodes.find((n) => n.address === holder)!.put(key, 'session');
    const r = await new ReplicatedRouter(ring).get(k(key));
    expect(r.status === 'hit' && r.item.value.toString()).toBe('session');
  });

  test("an add (a session lock) is decided by the key's holder: the newcomer would grant a lock held there", async () => {
    const { ring, nodes } = ringOf([5, 1, 1, 1, 1, 1]);
    ring.settleFrom(before, ADDRESSES);
    const { key, newcomer, holder } = movedKey(ring);
    nodes.find((n) => n.address === holder)!.put(key, 'held');
    const lock = { mode: 'add', key: k(key), flags: 0, exptime: 0, value: k('mine'), cas: 0n } as const;
    expect(await new ReplicatedRouter(ring).store(lock)).toEqual({ status: 'not_stored' });
    expect(nodes.find((n) => n.address === newcomer)!.calls.filter((c) => c.startsWith('add'))).toHaveLength(0);
  });

  test('nor by a stand-in for a newcomer that is out (an addition and a reweight in one reload)', async () => {
    const { ring, nodes } = ringOf([5, 1, 1, 1, 1, 1]);
    ring.settleFrom(before, ADDRESSES);
    // A key none of whose natural members held it; its first is out, so a stand-in joins the set.
    const key = KEYS.find((key) => !names(ring.naturalSet(k(key))).some((a) => names(before.naturalSet(k(key))).includes(a)))!;
    const [out] = ring.naturalSet(k(key));
    ring.useRoles((node) => (node === out ? 'out' : 'trusted'));
    const former = names(before.naturalSet(k(key)));
    const standIns = ring.replicaSet(k(key)).filter((n) => !former.includes(n.address) && !ring.isNatural(k(key), n));
    expect(standIns.length).toBeGreaterThan(0);
    nodes.find((n) => n.address === former[0])!.put(key, 'held');
    const lock = { mode: 'add', key: k(key), flags: 0, exptime: 0, value: k('mine'), cas: 0n } as const;
    expect(await new ReplicatedRouter(ring).store(lock)).toEqual({ status: 'not_stored' });
    for (const n of nodes.filter((n) => !former.includes(n.address))) expect(n.calls.filter((c) => c.startsWith('add')), n.address).toHaveLength(0);
  });
});
