// Replicas in distinct failure domains (issue 21, part 1): a key's preference order
// (src/routing/ring.ts) over backends in zones. Without zones it is hashring's ring
// order itself; with them its first R are in R zones, a stand-in comes from a zone the
// key's members lack, and adding a backend to a zone moves only copies onto it.

import HashRing from 'hashring';
import { describe, expect, test } from 'vitest';
import { ReplicaRing, preferenceOrder, type RingMember, type ZoneTally } from '../../src/routing/ring';
import { FakeNode } from './fake-node';

const k = (s: string) => Buffer.from(s, 'latin1');
const KEYS = Array.from({ length: 10_000 }, (_, i) => `memc.sess.key.${i}`);

/** Six backends, two in each of zones a, b, c: "127.0.0.1:11400@a", ... */
const SIX = ['a', 'b', 'c', 'a', 'b', 'c'].map((zone, i) => ({ address: `127.0.0.1:${11400 + i}`, zone }));

function ringOf(backends: readonly { address: string; zone?: string }[], replicas = 2, options = {}) {
  const nodes = backends.map((b) => new FakeNode(b.address));
  const zoneOf = new Map(backends.map((b) => [b.address, b.zone]));
  const members: RingMember[] = nodes.map((node) => ({ node, weight: 1, zone: zoneOf.get(node.address) }));
  const ring = new ReplicaRing(members, replicas, options);
  const zone = (n: { address: string }) => zoneOf.get(n.address)!;
  return { ring, nodes, zone, natural: (key: string) => ring.naturalSet(k(key)).map((n) => n.address) };
}

describe('preference order', () => {
  test('without zones, and with one zone for all, it is exactly hashring ring order', () => {
    const addresses = SIX.map((b) => b.address);
    const reference = new HashRing(Object.fromEntries(addresses.map((a) => [a, { weight: 1 }])), 'md5');
    const none = ringOf(addresses.map((address) => ({ address })));
    const one = ringOf(addresses.map((address) => ({ address, zone: 'only' })));
    for (const key of KEYS) {
      const expected = reference.range(key, addresses.length);
      expect(none.ring.ringOrder(k(key)).map((n) => n.address)).toEqual(expected);
      expect(one.ring.ringOrder(k(key)).map((n) => n.address)).toEqual(expected);
    }
  });

  test('the walk: each zone once, clockwise, then the rest in ring order', () => {
    const zone = (s: string) => ({ a: 0, b: 1, c: 2 })[s[0]]!;
    expect(preferenceOrder(['a1', 'a2', 'b1', 'a3', 'c1', 'b2', 'c2'], zone, 3)).toEqual(['a1', 'b1', 'c1', 'a2', 'a3', 'b2', 'c2']);
    expect(preferenceOrder(['b1', 'b2', 'a1'], zone, 3)).toEqual(['b1', 'a1', 'b2']);
    expect(preferenceOrder([], zone, 3)).toEqual([]);
  });

  test('6 backends in 3 zones, R=2: every key on two zones; the first three backends in three zones', () => {
    const { ring, zone } = ringOf(SIX);
    const perBackend = new Map<string, number>();
    for (const key of KEYS) {
      const order = ring.ringOrder(k(key));
      expect(new Set(order.slice(0, 3).map(zone)).size).toBe(3);
      for (const n of ring.naturalSet(k(key))) perBackend.set(n.address, (perBackend.get(n.address) ?? 0) + 1);
    }
    // Every backend holds some share: 2 copies x 10,000 keys over 6, about 3,333 each.
    for (const b of SIX) expect(perBackend.get(b.address)).toBeGreaterThan(2000);
  });

  test('every sidecar computes the same order, whatever the order of its backend list', () => {
    const a = ringOf(SIX);
    const b = ringOf([...SIX].reverse());
    for (const key of KEYS.slice(0, 2000)) expect(b.ring.ringOrder(k(key)).map((n) => n.address)).toEqual(a.ring.ringOrder(k(key)).map((n) => n.address));
  });

  test('a stand-in comes from a zone the key lacks; a whole zone out leaves every key on the two others', () => {
    const { ring, nodes, zone } = ringOf(SIX);
    for (const key of KEYS.slice(0, 2000)) {
      const [first, second] = ring.naturalSet(k(key)) as FakeNode[];
      first.up = false;
      const set = ring.replicaSet(k(key));
      expect(set).toContain(second);
      expect(new Set(set.map(zone)).size).toBe(2);
      first.up = true;
    }
    for (const n of nodes) if (zone(n) === 'a') n.up = false;
    for (const key of KEYS) {
      const zones = ring.replicaSet(k(key)).map(zone);
      expect(zones.sort()).toEqual(['b', 'c']);
    }
  });

  test('fewer zones than R: the first R take every zone, then the next in ring order', () => {
    const two = SIX.map((b, i) => ({ ...b, zone: i % 2 === 0 ? 'x' : 'y' }));
    const { ring, zone } = ringOf(two, 3);
    for (const key of KEYS.slice(0, 2000)) expect(new Set(ring.naturalSet(k(key)).map(zone)).size).toBe(2);
  });
});

describe('key movement', () => {
  // Measured over 10,000 keys (docs/replication.md states these figures). hashring itself moves
  // a few copies between old backends on an add (each backend's point count is
  // floor(40 x n x 1/n), which floating point makes 39 for some n): so does a ring without zones.
  const movement = (zoned: boolean) => {
    const strip = (b: { address: string; zone: string }) => (zoned ? b : { address: b.address });
    const added = { address: '127.0.0.1:11406', zone: 'a' };
    const before = ringOf(SIX.map(strip));
    const after = ringOf([...SIX, added].map(strip));
    let keys = 0;
    let copies = 0;
    let elsewhere = 0;
    let onAdded = 0;
    for (const key of KEYS) {
      const old = new Set(before.natural(key));
      const now = after.natural(key);
      if (now.includes(added.address)) onAdded++;
      const gained = now.filter((a) => !old.has(a));
      copies += gained.length;
      elsewhere += gained.filter((a) => a !== added.address).length;
      if (gained.length > 0) keys++;
    }
    const total = 2 * KEYS.length;
    return { keys: keys / KEYS.length, copies: copies / total, elsewhere: elsewhere / total, share: onAdded / total };
  };
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

  test('adding a seventh backend, to zone a: the copies that move are its share, as without zones', () => {
    const zoned = movement(true);
    const plain = movement(false);
    for (const [name, m] of [['zones', zoned], ['no zones', plain]] as const) {
      console.log(`${name}: adding a 7th backend moved ${pct(m.keys)} of keys, ${pct(m.copies)} of copies (${pct(m.elsewhere)} between old backends); the new one holds ${pct(m.share)} of copies`);
    }
    // No more moves than without zones: the new backend's share, plus hashring's own few (1.0%, 0.8% without zones).
    expect(zoned.copies).toBeLessThanOrEqual(plain.copies);
    expect(zoned.elsewhere).toBeLessThan(0.015);
    // Zone a has 3 of 7 backends: the new one takes about a third of zone a's copies, 1/3 x 1/3 of all.
    expect(zoned.share).toBeLessThan(0.14);
  });

  test('with zones given to backends that had none, every key keeps its first backend (its authority)', () => {
    const none = ringOf(SIX.map(({ address }) => ({ address })));
    const zoned = ringOf(SIX);
    let moved = 0;
    for (const key of KEYS) {
      const [a, b] = [none.natural(key), zoned.natural(key)];
      expect(b[0]).toBe(a[0]);
      if (b[1] !== a[1]) moved++;
    }
    console.log(`zones: giving 6 backends 3 zones moves the second copy of ${moved} of ${KEYS.length} keys (${((100 * moved) / KEYS.length).toFixed(1)}%)`);
  });

  test('removing a backend from a zone: the keys whose new first backend held no copy before (measured)', () => {
    const before = ringOf(SIX);
    const after = ringOf(SIX.slice(1));
    let orphaned = 0;
    for (const key of KEYS) if (!before.natural(key).includes(after.natural(key)[0])) orphaned++;
    console.log(`zones: removing one of 6 backends, ${orphaned} of ${KEYS.length} keys (${((100 * orphaned) / KEYS.length).toFixed(1)}%) get a first backend that held no copy`);
    expect(orphaned).toBeGreaterThan(0);
  });

  test('removing it in two steps, a zone of its own first: every key keeps a first backend that held a copy, at each step', () => {
    const before = ringOf(SIX);
    const own = ringOf(SIX.map((b, i) => (i === 0 ? { ...b, zone: 'leaving' } : b)));
    const after = ringOf(SIX.slice(1));
    for (const key of KEYS) {
      expect(before.natural(key)).toContain(own.natural(key)[0]);
      expect(own.natural(key)).toContain(after.natural(key)[0]);
    }
  });
});

describe('reads and metrics', () => {
  const tally = (): ZoneTally & { zones: Map<string, { n: number }> } => {
    const zones = new Map<string, { n: number }>();
    return { zones, unspread: { n: 0 }, copies: (z) => zones.get(z) ?? zones.set(z, { n: 0 }).get(z)! };
  };

  test("reads ask the local backend first, then one in the sidecar's own zone, then the others", () => {
    const { ring, nodes, zone } = ringOf(SIX, 3, { zone: 'b' });
    for (const key of KEYS.slice(0, 500)) {
      const order = ring.readOrder(k(key));
      expect(zone(order[0])).toBe('b');
      expect(ring.localityOf(order[0])).toBe('zone');
      expect(order.slice(1)).toEqual(ring.replicaSet(k(key)).filter((n) => n !== order[0]));
    }
    const members = SIX.map((b, i) => ({ node: nodes[i], weight: 1, zone: b.zone, local: i === 0 }));
    const local = new ReplicaRing(members, 3, { zone: 'b' });
    for (const key of KEYS.slice(0, 500)) {
      const set = local.replicaSet(k(key));
      const order = local.readOrder(k(key));
      if (set.includes(nodes[0])) expect(order[0]).toBe(nodes[0]);
      else expect(zone(order[0])).toBe('b');
    }
  });

  test('writes count their copies by zone, and as unspread only when fewer zones are up than R', () => {
    const t = tally();
    const { ring, nodes, zone } = ringOf(SIX, 2, { tally: t });
    for (const key of KEYS.slice(0, 1000)) ring.writeSet(k(key));
    const counts = Object.fromEntries([...t.zones].map(([z, c]) => [z, c.n]));
    expect(counts.a + counts.b + counts.c).toBe(2000);
    for (const z of ['a', 'b', 'c']) expect(counts[z]).toBeGreaterThan(400);
    expect(t.unspread.n).toBe(0);
    // Zone a out: still two zones for every key.
    for (const n of nodes) if (zone(n) === 'a') n.up = false;
    for (const key of KEYS.slice(0, 1000)) ring.writeSet(k(key));
    expect(t.unspread.n).toBe(0);
    // Zone b out too: every key on zone c alone.
    for (const n of nodes) if (zone(n) === 'b') n.up = false;
    for (const key of KEYS.slice(0, 1000)) ring.writeSet(k(key));
    expect(t.unspread.n).toBe(1000);
    // Reads count nothing.
    ring.readOrder(k('x'));
    expect(t.unspread.n).toBe(1000);
  });

  test('without zones nothing is counted', () => {
    const t = tally();
    const { ring } = ringOf(SIX.map(({ address }) => ({ address })), 2, { tally: t });
    for (const key of KEYS.slice(0, 100)) ring.writeSet(k(key));
    expect(t.zones.size).toBe(0);
    expect(t.unspread.n).toBe(0);
  });
});
