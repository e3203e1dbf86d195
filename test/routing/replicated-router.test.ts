import HashRing from 'hashring';
import { beforeEach, describe, expect, test } from 'vitest';
import { ReplicaRing } from '../../src/routing/ring';
import { NO_RESYNC, ReplicatedRouter, exptimeForCopy, type RouterEvents } from '../../src/routing/replicated-router';
import { FakeNode } from './fake-node';

const k = (s: string) => Buffer.from(s);

function setup(n = 3, replicas = 2) {
  const nodes = Array.from({ length: n }, (_, i) => new FakeNode(`127.0.0.1:${11300 + i}`));
  const ring = new ReplicaRing(
    nodes.map((node) => ({ node, weight: 1 })),
    replicas,
  );
  const counts = { failover: 0, disagreement: 0, converged: 0 };
  const events: RouterEvents = {
    failover: () => counts.failover++,
    disagreement: () => counts.disagreement++,
    converged: () => counts.converged++,
  };
  const router = new ReplicatedRouter(ring, events);
  const membersOf = (key: string) => ring.ringOrder(k(key)) as FakeNode[];
  return { nodes, ring, router, counts, membersOf };
}

const store = (key: string, value: string, mode: 'set' | 'add' | 'replace' | 'append' | 'prepend' | 'cas' = 'set', cas = 0n) =>
  ({ mode, key: k(key), flags: 7, exptime: 0, value: k(value), cas }) as const;

describe('ReplicaRing', () => {
  test('replica sets are R distinct backends, the same for equal rings', () => {
    const a = setup(5, 3);
    const b = setup(5, 3);
    for (let i = 0; i < 200; i++) {
      const key = k(`session:${i}`);
      const set = a.ring.replicaSet(key).map((n) => n.address);
      expect(new Set(set).size).toBe(3);
      expect(b.ring.replicaSet(key).map((n) => n.address)).toEqual(set);
    }
  });

  test('a down backend is skipped and the next on the ring takes its place', () => {
    const { ring, membersOf } = setup(4, 2);
    const order = membersOf('user:42');
    order[0].up = false;
    expect(ring.replicaSet(k('user:42'))).toEqual([order[1], order[2]]);
  });

  test('keys spread over every backend', () => {
    const { ring, nodes } = setup(3, 1);
    const seen = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const a = ring.replicaSet(k(`k${i}`))[0].address;
      seen.set(a, (seen.get(a) ?? 0) + 1);
    }
    for (const n of nodes) expect(seen.get(n.address)).toBeGreaterThan(500);
  });

  test("placement is hashring's default ketama md5: sidecars of other versions agree", () => {
    const { ring, nodes } = setup(5, 2);
    const reference = new HashRing(Object.fromEntries(nodes.map((n) => [n.address, { weight: 1 }])), 'md5');
    for (let i = 0; i < 2000; i++) {
      const key = Buffer.from([...Buffer.from(`memc.sess.${i}`), 0xe9, i & 0xff]);
      expect(ring.ringOrder(key).map((n) => n.address)).toEqual(reference.range(key.toString('latin1'), 5));
    }
  });

  test('placement stays the same once the key set outgrows the order cache', () => {
    const { ring } = setup(4, 2);
    const fresh = setup(4, 2).ring;
    const keys = Array.from({ length: 80_000 }, (_, i) => k(`memc.sess.${i}`));
    const first = keys.map((key) => ring.ringOrder(key).map((n) => n.address).join());
    // A second pass hits, misses and promotes; every answer must match a ring that never cached.
    keys.forEach((key, i) => {
      expect(ring.ringOrder(key).map((n) => n.address).join()).toBe(first[i]);
      if (i % 997 === 0) expect(fresh.ringOrder(key).map((n) => n.address).join()).toBe(first[i]);
    });
  });
});

describe('ReplicatedRouter writes', () => {
  test('an add whose copy failed and whose hand-over came to nothing is unavailable, and taken back where it landed', async () => {
    const { ring, membersOf } = setup(3, 2);
    const router = new ReplicatedRouter(ring);
    const [a, b] = membersOf('lock');
    let asked = 0;
    // Nothing to wait for before the write; once a member failed it, the hand-over comes to nothing.
    const noHandover = new ReplicatedRouter(ring, undefined, { ...NO_RESYNC, handingOver: () => (++asked === 1 ? undefined : Promise.resolve(false)) });
    b.failing = true;
    expect(await noHandover.store(store('lock', 'A0', 'add'))).toEqual({ status: 'unavailable' });
    expect(asked).toBeGreaterThan(1);
    expect(a.calls).toContain('add lock A0 exptime=0');
    expect(a.value('lock')).toBeUndefined(); // not held by a client told it did not get it
    b.failing = false;
    expect(await router.store(store('lock', 'B0', 'add'))).toMatchObject({ status: 'stored' });
    expect([a.value('lock'), b.value('lock')]).toEqual(['B0', 'B0']);
  });

  test('set reaches every member of the replica set and no other backend', async () => {
    const { router, membersOf } = setup(3, 2);
    const [a, b, c] = membersOf('s1');
    expect(await router.store(store('s1', 'v1'))).toMatchObject({ status: 'stored' });
    expect([a.value('s1'), b.value('s1'), c.value('s1')]).toEqual(['v1', 'v1', undefined]);
  });

  test('a replace goes to every member; the authority answers, and a member that disagrees is brought to its state', async () => {
    const { router, membersOf, counts } = setup(3, 2);
    const [a, b] = membersOf('s2');
    b.put('s2', 'old');
    const later: Array<Promise<unknown>> = [];
    expect(await router.store(store('s2', 'x', 'replace'), later)).toEqual({ status: 'not_stored' });
    expect(counts.disagreement).toBe(1);
    await Promise.all(later);
    expect(a.value('s2')).toBeUndefined();
    expect(b.value('s2')).toBeUndefined();
  });

  test('a delete goes to every member at once, then each member is checked', async () => {
    const { router, membersOf } = setup(3, 2);
    const [a, b] = membersOf('s2d');
    a.put('s2d', 'v');
    b.put('s2d', 'v');
    const later: Array<Promise<unknown>> = [];
    expect(await router.delete(k('s2d'), 0n, later)).toEqual({ status: 'deleted' });
    await Promise.all(later);
    expect(a.calls).toEqual(['delete s2d', 'cas? s2d']);
    expect(b.calls).toEqual(['delete s2d', 'cas? s2d']);
  });

  test('a delete that removed a copy the authority lacks (a set half landed) answers DELETED, and leaves the key absent everywhere', async () => {
    const { router, membersOf, counts } = setup(3, 2);
    const [a, b] = membersOf('s2h');
    b.put('s2h', 'v');
    const later: Array<Promise<unknown>> = [];
    expect(await router.delete(k('s2h'), 0n, later)).toEqual({ status: 'deleted' });
    expect(counts.disagreement).toBe(1);
    await Promise.all(later);
    expect([a.value('s2h'), b.value('s2h')]).toEqual([undefined, undefined]);
  });

  test('a write that another write overtook on one member: the authority\'s state is copied over it', async () => {
    const { router, membersOf, counts } = setup(3, 2);
    const [a, b] = membersOf('s2o');
    // Another sidecar's write lands on the second member after ours, just before our check.
    const casOf = b.casOf.bind(b);
    b.casOf = (key) => {
      b.put('s2o', 'theirs');
      b.casOf = casOf;
      return casOf(key);
    };
    const later: Array<Promise<unknown>> = [];
    expect(await router.store(store('s2o', 'mine'), later)).toMatchObject({ status: 'stored' });
    await Promise.all(later);
    expect(a.value('s2o')).toBe('mine');
    expect(b.value('s2o')).toBe('mine');
    expect(counts.converged).toBe(1);
  });

  test('a touch that another sidecar\'s touch overtook on one member: the authority\'s expiry is given to it', async () => {
    const { router, membersOf, counts } = setup(3, 2);
    const [a, b] = membersOf('t2o');
    await router.store(store('t2o', 'v'));
    // Their touch lands on the second member after ours: no CAS moves, only the expiry differs.
    const touch = b.touch.bind(b);
    b.touch = async (key, exptime) => {
      const mine = await touch(key, exptime);
      await touch(key, 5000);
      b.touch = touch;
      return mine;
    };
    const later: Array<Promise<unknown>> = [];
    expect(await router.touch(k('t2o'), 300, later)).toMatchObject({ status: 'touched' });
    await Promise.all(later);
    expect([a.items.get('t2o')?.ttl, b.items.get('t2o')?.ttl]).toEqual([300, 300]);
    expect(counts.converged).toBe(1);
  });

  test('a failed authority: the best of the others answers', async () => {
    const { router, membersOf, counts } = setup(3, 2);
    const [a, b] = membersOf('s3');
    a.failing = true;
    expect(await router.store(store('s3', 'v'))).toMatchObject({ status: 'stored' });
    expect(b.value('s3')).toBe('v');
    expect(counts.failover).toBe(1);
  });

  test('every member failed: unavailable', async () => {
    const { router, nodes } = setup(3, 2);
    for (const n of nodes) n.failing = true;
    expect(await router.store(store('s4', 'v'))).toEqual({ status: 'unavailable' });
    expect(await router.delete(k('s4'), 0n)).toEqual({ status: 'unavailable' });
    expect(await router.touch(k('s4'), 10)).toEqual({ status: 'unavailable' });
  });

  test('no live backend at all: unavailable', async () => {
    const { router, nodes } = setup(3, 2);
    for (const n of nodes) n.up = false;
    expect(await router.get(k('x'))).toEqual({ status: 'unavailable' });
    expect(await router.store(store('x', 'v'))).toEqual({ status: 'unavailable' });
  });

  test('add is decided by the authority alone, then copied', async () => {
    const { router, membersOf } = setup(3, 2);
    const [a, b] = membersOf('lock');
    b.put('lock', 'stale-copy');
    expect(await router.store(store('lock', 'mine', 'add'))).toMatchObject({ status: 'stored' });
    expect(a.value('lock')).toBe('mine');
    expect(b.value('lock')).toBe('mine');
    expect(await router.store(store('lock', 'theirs', 'add'))).toEqual({ status: 'not_stored' });
    expect(a.calls.filter((c) => c.startsWith('add'))).toHaveLength(2);
    expect(b.calls.filter((c) => c.startsWith('add'))).toHaveLength(0);
  });

  test('add fails over to the next member when the authority fails', async () => {
    const { router, membersOf } = setup(3, 2);
    const [a, b] = membersOf('lock2');
    a.failing = true;
    expect(await router.store(store('lock2', 'mine', 'add'))).toMatchObject({ status: 'stored' });
    expect(b.value('lock2')).toBe('mine');
  });

  test('cas goes to the authority and the new value is copied', async () => {
    const { router, membersOf } = setup(3, 2);
    const [a, b] = membersOf('c');
    await router.store(store('c', 'v1'));
    const got = await router.get(k('c'));
    if (got.status !== 'hit') throw new Error('expected a hit');
    expect(await router.store(store('c', 'v2', 'cas', got.item.cas + 100n))).toEqual({ status: 'exists' });
    expect(await router.store(store('c', 'v2', 'cas', got.item.cas))).toMatchObject({ status: 'stored' });
    expect([a.value('c'), b.value('c')]).toEqual(['v2', 'v2']);
    expect(await router.store(store('nope', 'v', 'cas', 1n))).toEqual({ status: 'not_found' });
  });

  test('incr: the authority counts, the others get its value', async () => {
    const { router, membersOf } = setup(3, 2);
    const [a, b] = membersOf('n');
    a.put('n', '10');
    b.put('n', '3');
    expect(await router.arith({ kind: 'incr', key: k('n'), delta: 5n })).toMatchObject({ status: 'ok', value: 15n });
    expect(b.value('n')).toBe('15');
    expect(await router.arith({ kind: 'decr', key: k('missing'), delta: 1n })).toEqual({ status: 'not_found' });
    membersOf('t')[0].put('t', 'text');
    expect(await router.arith({ kind: 'incr', key: k('t'), delta: 1n })).toEqual({ status: 'non_numeric' });
  });

  test('incr whose authority fails right after counting: counted again on the next member, never an answer the others do not hold; append with CAS: unavailable', async () => {
    // The authority dies between applying the write and being read for the copy:
    // a real memcached does this only with exact timing, so the fake is scripted.
    const { router, membersOf } = setup(3, 2);
    const [a, b] = membersOf('n');
    a.put('n', '10');
    b.put('n', '10');
    const arith = a.arith.bind(a);
    a.arith = async (...args) => {
      const r = await arith(...args);
      a.failing = true;
      return r;
    };
    expect(await router.arith({ kind: 'incr', key: k('n'), delta: 5n })).toMatchObject({ status: 'ok', value: 15n });
    expect(b.value('n')).toBe('15');

    const [c, d] = membersOf('s');
    c.put('s', 'a');
    d.put('s', 'a');
    const store = c.store.bind(c);
    c.store = async (req) => {
      const r = await store(req);
      c.failing = true;
      return r;
    };
    const cas = c.items.get('s')!.cas;
    const appended = await router.store({ mode: 'append', key: k('s'), flags: 0, exptime: 0, value: k('b'), cas });
    expect(appended).toEqual({ status: 'unavailable' });
  });

  test('flush reaches every live backend', async () => {
    const { router, nodes } = setup(3, 2);
    nodes[2].up = false;
    expect(await router.flush(0)).toEqual({ status: 'ok' });
    expect(nodes.map((n) => n.calls.includes('flush'))).toEqual([true, true, false]);
  });
});

describe('ReplicatedRouter reads', () => {
  let s: ReturnType<typeof setup>;
  beforeEach(() => {
    s = setup(3, 2);
  });

  test('a hit on the authority asks no one else', async () => {
    const [a, b] = s.membersOf('r1');
    a.put('r1', 'v', 9);
    expect(await s.router.get(k('r1'))).toEqual({ status: 'hit', item: expect.objectContaining({ flags: 9 }) });
    expect(b.calls).toEqual([]);
  });

  test('a miss on the authority is the answer: the other member is not asked, nothing is copied', async () => {
    const [a, b] = s.membersOf('r2');
    b.put('r2', 'v', 5, 300);
    expect(await s.router.get(k('r2'))).toEqual({ status: 'miss' });
    await new Promise((r) => setImmediate(r));
    expect(a.items.get('r2')).toBeUndefined();
    expect(b.calls).toEqual([]);
    expect(s.counts).toMatchObject({ failover: 0 });
  });

  test("a natural member's miss counts for the role it had when the read was sent: a stand-in's copy of the deleted key is not served", async () => {
    // Natural members a (out) and b (trusted), c stands in and still holds a copy the delete
    // never reached. b goes out while its miss is on its way back.
    const { nodes, ring } = setup(3, 2);
    const key = 'deleted-while-away';
    const [a, b, c] = ring.ringOrder(k(key)) as FakeNode[];
    const roles = new Map<FakeNode, 'trusted' | 'refill' | 'out'>(nodes.map((n) => [n, n === a ? 'out' : 'trusted']));
    ring.useRoles((n) => roles.get(n as FakeNode)!);
    c.put(key, 'logged-out session');
    const router = new ReplicatedRouter(ring, undefined, { ...NO_RESYNC, isResyncing: (n) => roles.get(n as FakeNode) !== 'trusted' });
    const release = b.hold();
    const read = router.get(k(key));
    await new Promise((r) => setImmediate(r));
    roles.set(b, 'refill');
    release();
    expect(await read).toEqual({ status: 'miss' });
    expect(c.calls).toEqual([]);
  });

  test('a miss only when every member missed', async () => {
    expect(await s.router.get(k('absent'))).toEqual({ status: 'miss' });
  });

  test('a failed member and no hit: unavailable, never a miss', async () => {
    const [a] = s.membersOf('r3');
    a.failing = true;
    expect(await s.router.get(k('r3'))).toEqual({ status: 'unavailable' });
  });

  test('a failed authority with a hit elsewhere: the hit', async () => {
    const [a, b] = s.membersOf('r4');
    a.failing = true;
    b.put('r4', 'v');
    expect(await s.router.get(k('r4'))).toMatchObject({ status: 'hit' });
  });

  test('a gat that another sidecar\'s gat overtook on one member: the authority\'s expiry is given to it', async () => {
    const [a, b] = s.membersOf('g2o');
    a.put('g2o', 'v');
    b.put('g2o', 'v');
    const get = b.get.bind(b);
    b.get = async (key, touch) => {
      const mine = await get(key, touch);
      await get(key, 5000); // theirs, landing after ours here only
      b.get = get;
      return mine;
    };
    const later: Array<Promise<unknown>> = [];
    expect(await s.router.get(k('g2o'), 300, later)).toMatchObject({ status: 'hit' });
    await Promise.all(later);
    expect([a.items.get('g2o')?.ttl, b.items.get('g2o')?.ttl]).toEqual([300, 300]);
  });

  test('gat touches every member; the authority missed: a miss, nothing copied', async () => {
    const [a, b] = s.membersOf('g');
    b.put('g', 'v');
    expect(await s.router.get(k('g'), 100)).toEqual({ status: 'miss' });
    expect(a.calls).toContain('gat 100 g');
    expect(b.items.get('g')!.ttl).toBe(100);
    await new Promise((r) => setImmediate(r));
    expect(a.value('g')).toBeUndefined();
  });

  test('gat with the authority failed: the other member\'s hit', async () => {
    const [a, b] = s.membersOf('g2');
    a.failing = true;
    b.put('g2', 'v');
    expect(await s.router.get(k('g2'), 100)).toMatchObject({ status: 'hit' });
    expect(b.items.get('g2')!.ttl).toBe(100);
  });
});

describe('exptimeForCopy', () => {
  test.each([
    [-1, 0],
    [0, null],
    [60, 60],
    [2592000, 2592000],
    [2592001, 1_000_000_000 + 2592001],
  ])('ttl %s -> exptime %s', (ttl, expected) => {
    expect(exptimeForCopy(ttl, 1_000_000_000)).toBe(expected);
  });
});
