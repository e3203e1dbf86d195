// The router's side of a resync, with scripted backends: a resyncing member's
// miss is not authoritative, and deletes/flushes wait for the copies in flight.

import { describe, expect, test } from 'vitest';
import type { MemcachedNode } from '../../src/routing/node';
import { ReplicatedRouter, type ResyncHooks } from '../../src/routing/replicated-router';
import { ReplicaRing } from '../../src/routing/ring';
import type { Role } from '../../src/trust/protocol';
import { LONGEST_RELATIVE_EXPIRY_S, deleteRecordKey } from '../../src/trust/reserved-keys';
import { FakeNode } from '../routing/fake-node';

const k = (s: string) => Buffer.from(s);

function setup(replicas = 2) {
  const nodes = Array.from({ length: 3 }, (_, i) => new FakeNode(`127.0.0.1:${11400 + i}`));
  const ring = new ReplicaRing(nodes.map((node) => ({ node, weight: 1 })), replicas);
  const resyncing = new Set<MemcachedNode>();
  const log: string[] = [];
  let hold: Promise<void> | undefined;
  let handover: () => Promise<boolean | void> | undefined = () => undefined;
  const hooks: ResyncHooks = {
    isResyncing: (n) => resyncing.has(n),
    deleting: (key) => {
      log.push(`deleting ${key}`);
      return hold;
    },
    flushing: () => {
      log.push('flushing');
      return hold;
    },
    catchingUp: () => undefined,
    handingOver: (key) => {
      const wait = handover();
      if (wait !== undefined) log.push(`handing over ${key}`);
      return wait;
    },
  };
  const router = new ReplicatedRouter(ring, undefined, hooks);
  const setOf = (key: string) => ring.replicaSet(k(key)) as FakeNode[];
  return { nodes, router, resyncing, log, setOf, holdWith: (p: Promise<void> | undefined) => (hold = p), handOverWhen: (f: () => Promise<boolean | void> | undefined) => (handover = f) };
}

describe('reads while a member resyncs', () => {
  test('every member missed, one of them not resyncing: a true miss', async () => {
    const { router, resyncing, setOf } = setup();
    resyncing.add(setOf('a')[0]);
    expect(await router.get(k('a'))).toEqual({ status: 'miss' });
  });

  test('every member missed, all resyncing: unavailable, not a miss', async () => {
    const { router, resyncing, setOf } = setup();
    for (const n of setOf('a')) resyncing.add(n);
    expect(await router.get(k('a'))).toEqual({ status: 'unavailable' });
  });

  test('the resyncing member missed and the other failed: unavailable', async () => {
    const { router, resyncing, setOf } = setup();
    const [first, second] = setOf('a');
    resyncing.add(first);
    second.failing = true;
    expect(await router.get(k('a'))).toEqual({ status: 'unavailable' });
  });

  test('one replica, resyncing, missing: unavailable; once done: a miss', async () => {
    const { router, resyncing, setOf } = setup(1);
    const [only] = setOf('a');
    resyncing.add(only);
    expect(await router.get(k('a'))).toEqual({ status: 'unavailable' });
    resyncing.delete(only);
    expect(await router.get(k('a'))).toEqual({ status: 'miss' });
  });

  test('the resyncing member is asked last: the other hit is served without asking it', async () => {
    const { router, resyncing, setOf } = setup();
    const [first, second] = setOf('a');
    resyncing.add(first);
    second.put('a', 'v', 3);
    expect(await router.get(k('a'))).toMatchObject({ status: 'hit', item: { flags: 3 } });
    expect(first.calls).toEqual([]);
  });

  test('a stale value on the resyncing authority is never served while the other holds the new one', async () => {
    const { router, resyncing, setOf } = setup();
    const [first, second] = setOf('a');
    first.put('a', 'old');
    second.put('a', 'new');
    resyncing.add(first);
    expect(await router.get(k('a'))).toMatchObject({ status: 'hit', item: { value: k('new') } });
    expect(await router.get(k('a'), 60)).toMatchObject({ status: 'hit', item: { value: k('new') } }); // gat
  });

  test('a key deleted while it was away: the resyncing member hit, the other missed: a miss, not repaired', async () => {
    const { router, resyncing, setOf } = setup();
    const [first, second] = setOf('a');
    first.put('a', 'logged-out');
    resyncing.add(first);
    expect(await router.get(k('a'))).toEqual({ status: 'miss' });
    expect(await router.get(k('a'), 60)).toEqual({ status: 'miss' });
    await new Promise((r) => setImmediate(r));
    expect(second.value('a')).toBeUndefined();
  });

  test('the trusted authority missed: a miss, whatever the other member holds, and no copy (a delete through another sidecar may still be on its way there)', async () => {
    const { router, setOf } = setup();
    const [first, second] = setOf('a');
    second.put('a', 'logged-out');
    expect(await router.get(k('a'))).toEqual({ status: 'miss' });
    expect(await router.get(k('a'), 60)).toEqual({ status: 'miss' }); // gat
    await new Promise((r) => setImmediate(r));
    expect(first.value('a')).toBeUndefined(); // not repaired either
  });

  test("a stand-in's miss proves nothing, and the resyncing member's hit may be of a deleted key: unavailable", async () => {
    const { router, resyncing, nodes } = setup();
    const ring = new ReplicaRing(nodes.map((node) => ({ node, weight: 1 })), 2);
    const natural = ring.ringOrder(k('a')) as FakeNode[];
    natural[1].up = false; // the other natural member is down: the third stands in
    natural[0].put('a', 'v');
    resyncing.add(natural[0]);
    expect(await router.get(k('a'))).toEqual({ status: 'unavailable' });
  });
});

describe('a natural member resyncing, the other down: the stand-in alone cannot know', () => {
  // The stand-in holds only what was written since the other went down; the
  // resyncing member may hold more (a dropped connection) or less (a restart).
  function standIn() {
    const t = setup();
    const ring = new ReplicaRing(t.nodes.map((node) => ({ node, weight: 1 })), 2);
    const [first, second, third] = ring.ringOrder(k('a')) as FakeNode[];
    second.up = false;
    t.resyncing.add(first);
    return { ...t, first, third };
  }
  const add = { mode: 'add', key: k('a'), flags: 0, exptime: 0, value: k('lock'), cas: 0n } as const;

  test('a miss on both: unavailable, never a miss', async () => {
    const { router } = standIn();
    expect(await router.get(k('a'))).toEqual({ status: 'unavailable' });
    expect(await router.get(k('a'), 60)).toEqual({ status: 'unavailable' });
  });

  test('add, incr and delete with CAS are not decided by the stand-in', async () => {
    const { router, first, third } = standIn();
    first.put('a', '5');
    expect(await router.store(add)).toEqual({ status: 'unavailable' });
    expect(await router.arith({ kind: 'incr', key: k('a'), delta: 1n })).toEqual({ status: 'unavailable' });
    expect(await router.delete(k('a'), 1n)).toEqual({ status: 'unavailable' });
    expect(third.calls).toEqual([]);
    expect(first.value('a')).toBe('5');
  });

  test('once its run ends, the natural member decides and proves misses again', async () => {
    const { router, resyncing, first } = standIn();
    resyncing.delete(first);
    expect(await router.get(k('a'))).toEqual({ status: 'miss' });
    expect(await router.store(add)).toMatchObject({ status: 'stored' });
  });

  test('every natural member down: a stand-in holds only what was written since, so its miss proves nothing and it decides nothing', async () => {
    const { router, resyncing, first } = standIn();
    resyncing.delete(first);
    first.up = false;
    expect(await router.get(k('a'))).toEqual({ status: 'unavailable' });
    expect(await router.store(add)).toEqual({ status: 'unavailable' });
  });
});

describe('no natural member trusted (one restarted and refilled, the other away for another reason): nothing is decided or acknowledged', () => {
  // The first member restarted empty and is being refilled, the second is not trusted
  // either: in ring order the empty one would answer a replace NOT_STORED and a delete
  // NOT_FOUND, and converge would copy its absence over the other's item.
  function bothDistrusted() {
    const t = setup();
    const [restarted, marked] = t.setOf('a');
    t.resyncing.add(restarted);
    t.resyncing.add(marked);
    marked.put('a', 'v', 3);
    return { ...t, restarted, marked };
  }
  const replace = { mode: 'replace', key: k('a'), flags: 4, exptime: 0, value: k('w'), cas: 0n } as const;

  test('replace: unavailable, no trusted member took it', async () => {
    const { router } = bothDistrusted();
    const later: Array<Promise<unknown>> = [];
    // Only members being resynced take it: the write may be on one backend alone. Not acknowledged.
    expect(await router.store(replace, later)).toEqual({ status: 'unavailable' });
    await Promise.all(later);
  });

  test('delete: unavailable, no trusted member took it', async () => {
    const { router } = bothDistrusted();
    const later: Array<Promise<unknown>> = [];
    expect(await router.delete(k('a'), 0n, later)).toEqual({ status: 'unavailable' });
    await Promise.all(later);
  });

  test('get: no member is asked, none could answer (a hit may be of a deleted key, a miss proves nothing)', async () => {
    const { router, marked, restarted } = bothDistrusted();
    expect(await router.get(k('a'))).toEqual({ status: 'unavailable' });
    expect([...marked.calls, ...restarted.calls].filter((c) => c.startsWith('get'))).toEqual([]);
  });

  test('add is still decided by no one', async () => {
    const { router } = bothDistrusted();
    expect(await router.store({ ...replace, mode: 'add' })).toEqual({ status: 'unavailable' });
  });

  test('delete: the one trusted natural member fails it and goes out, the other is away: a stand-in alone took it, unavailable', async () => {
    // The other natural member's refill could not tell the delete from a value it missed.
    const t = setup();
    const [n0, n1] = t.setOf('a');
    const n2 = t.nodes.find((n) => n !== n0 && n !== n1)!;
    n1.up = false; // out: n2 stands in for it
    for (const n of [n0, n1, n2]) n.put('a', 'v', 0);
    n0.failing = true;
    t.handOverWhen(() => {
      // Only once it failed the delete; then once: handed over.
      if (t.resyncing.has(n0) || !n0.calls.some((c) => c.startsWith('delete'))) return undefined;
      t.resyncing.add(n0); // its failure takes it out, by agreement
      return Promise.resolve(true);
    });
    expect(t.setOf('a')).toEqual([n0, n2]);
    expect(await t.router.delete(k('a'), 0n)).toEqual({ status: 'unavailable' });
    expect(n2.value('a')).toBeUndefined(); // it landed there, unacknowledged
  });
});

describe('add and cas while the authority resyncs: the other member decides', () => {
  const add = (key: string, value = 'lock') =>
    ({ mode: 'add', key: k(key), flags: 0, exptime: 0, value: k(value), cas: 0n }) as const;

  test('a stale lock on the resyncing authority (deleted on the other): the add succeeds and overwrites it', async () => {
    const { router, resyncing, setOf } = setup();
    const [first, second] = setOf('lock.1');
    first.put('lock.1', 'stale');
    resyncing.add(first);
    expect(await router.store(add('lock.1', 'mine'))).toMatchObject({ status: 'stored' });
    expect(first.value('lock.1')).toBe('mine');
    expect(second.value('lock.1')).toBe('mine');
  });

  test('a lock taken while it was away, still held: NOT_STORED, though the resyncing authority lacks it', async () => {
    const { router, resyncing, setOf } = setup();
    const [first, second] = setOf('lock.2');
    second.put('lock.2', 'held');
    resyncing.add(first);
    expect(await router.store(add('lock.2'))).toEqual({ status: 'not_stored' });
    expect(first.value('lock.2')).toBeUndefined();
  });

  test('cas with a token read through the router matches where it was read', async () => {
    const { router, resyncing, setOf } = setup();
    const [first, second] = setOf('c');
    first.put('other', 'x'); // CAS counters differ across backends
    first.put('c', 'old');
    second.put('c', 'new');
    resyncing.add(first);
    const got = await router.get(k('c'));
    if (got.status !== 'hit') throw new Error(got.status);
    const r = await router.store({ mode: 'cas', key: k('c'), flags: 0, exptime: 0, value: k('newer'), cas: got.item.cas });
    expect(r).toMatchObject({ status: 'stored' });
    expect(first.value('c')).toBe('newer');
  });

  test('incr is decided by the member that stayed, and copied over the stale counter', async () => {
    const { router, resyncing, setOf } = setup();
    const [first, second] = setOf('n');
    first.put('n', '5');
    second.put('n', '10');
    resyncing.add(first);
    expect(await router.arith({ kind: 'incr', key: k('n'), delta: 1n })).toMatchObject({ status: 'ok', value: 11n });
    expect(first.value('n')).toBe('11');
  });
});

describe('delete records', () => {
  test('a delete sent to a natural member in refill writes the delete record there first; one to a trusted natural member does not', async () => {
    const { router, resyncing, setOf } = setup();
    const [first, second] = setOf('a');
    second.put('a', 'v', 0);
    first.put('a', 'v', 0);
    resyncing.add(second);
    const later: Array<Promise<unknown>> = [];
    expect(await router.delete(k('a'), 0n, later)).toEqual({ status: 'deleted' });
    await Promise.all(later);
    const record = deleteRecordKey(k('a')).toString();
    expect(first.calls.filter((c) => c.includes(record) || c === 'delete a')).toEqual(['delete a']);
    // The record before the delete: a fill that finds the key missing on the member in refill
    // tells a delete it took in this refill from a miss of before (docs/trust.md).
    expect(second.calls.filter((c) => c.includes(record) || c === 'delete a')).toEqual([`set ${record}  exptime=${LONGEST_RELATIVE_EXPIRY_S}`, 'delete a']);
  });
});

describe('deletes and flushes wait for the copy in flight', () => {
  test('delete is sent only after the hook promise settles', async () => {
    const { router, log, setOf, holdWith } = setup();
    const [first, second] = setOf('d');
    first.put('d', 'v');
    second.put('d', 'v');
    let release!: () => void;
    holdWith(new Promise<void>((r) => (release = r)));
    const pending = router.delete(k('d'), 0n);
    await new Promise((r) => setTimeout(r, 10));
    expect(log).toEqual(['deleting d']);
    expect(first.value('d')).toBe('v'); // held
    first.put('d', 'copied'); // the copy lands...
    release();
    expect(await pending).toEqual({ status: 'deleted' });
    expect(first.value('d')).toBeUndefined(); // ...and the delete removes it
    expect(second.value('d')).toBeUndefined();
  });

  test('flush is sent only after the hook promise settles', async () => {
    const { router, log, nodes, holdWith } = setup();
    nodes[0].put('f', 'v');
    let release!: () => void;
    holdWith(new Promise<void>((r) => (release = r)));
    const pending = router.flush(0);
    await new Promise((r) => setTimeout(r, 10));
    expect(log).toEqual(['flushing']);
    expect(nodes[0].value('f')).toBe('v');
    release();
    expect(await pending).toEqual({ status: 'ok' });
    expect(nodes[0].value('f')).toBeUndefined();
  });
});

describe('writes wait out a change of trust that a member\'s failure started', () => {
  /**
   * The key's first member fails; a notice begins with its failure (as the backend is
   * marked down while the reply fails) and runs until endNotice().
   */
  function stallFirst(ctx: ReturnType<typeof setup>, key: string): { first: FakeNode; second: FakeNode; endNotice: () => void } {
    const [first, second] = ctx.setOf(key);
    first.failing = true;
    let ended = false;
    let endNotice!: () => void;
    const notice = new Promise<void>((r) => (endNotice = () => {
      ended = true;
      r();
    }));
    ctx.handOverWhen(() => {
      if (first.calls.length === 0 || ended) return undefined;
      first.up = false; // out of the key's members once the change applies
      return notice;
    });
    return { first, second, endNotice };
  }

  const item = (mode: 'add' | 'set', key: string) => ({ mode, key: k(key), value: Buffer.from('1'), flags: 0, exptime: 0, cas: 0n });

  test('add: the next member decides only after the notice', async () => {
    const ctx = setup();
    const { second, endNotice } = stallFirst(ctx, 'lock');
    const pending = ctx.router.store(item('add', 'lock'));
    await new Promise((r) => setTimeout(r, 10));
    expect(second.calls).toEqual([]); // nothing decided yet
    endNotice();
    expect((await pending).status).toBe('stored');
    expect(second.value('lock')).toBe('1');
    expect(ctx.log).toEqual(['handing over lock']);
  });

  test('add: decided, its copy failed: not acknowledged until the change of trust that failure started applies; in vain, unavailable and taken back', async () => {
    const ctx = setup();
    const [first, second] = ctx.setOf('lock');
    second.failing = true;
    const waits: string[] = [];
    ctx.handOverWhen(() => (second.calls.length > 0 && waits.length === 0 ? (waits.push('copy failed'), Promise.resolve(false)) : undefined));
    expect((await ctx.router.store(item('add', 'lock'))).status).toBe('unavailable');
    // The client was told it did not get the lock: the authority does not keep it held.
    expect(first.value('lock')).toBeUndefined();
    expect(waits).toEqual(['copy failed']);
  });

  test('add: decided, its copy failed, the change applied: acknowledged', async () => {
    const ctx = setup();
    const [, second] = ctx.setOf('lock');
    second.failing = true;
    let waited = false;
    ctx.handOverWhen(() => (second.calls.length > 0 && !waited ? ((waited = true), Promise.resolve(true)) : undefined));
    expect((await ctx.router.store(item('add', 'lock'))).status).toBe('stored');
    expect(waited).toBe(true);
  });

  test('add: after the wait, the same member would decide again: unavailable, never asked twice', async () => {
    const ctx = setup();
    const [first, second] = ctx.setOf('lock');
    first.failing = true;
    let waited = false;
    ctx.handOverWhen(() => (first.calls.length > 0 && !waited ? ((waited = true), Promise.resolve()) : undefined));
    expect((await ctx.router.store(item('add', 'lock'))).status).toBe('unavailable');
    expect(first.calls).toHaveLength(1);
    expect(second.calls).toEqual([]);
  });

  test('set: stored on the member that answered, acknowledged only after the notice', async () => {
    const ctx = setup();
    const { second, endNotice } = stallFirst(ctx, 's');
    let answered = false;
    const pending = ctx.router.store(item('set', 's')).then((r) => {
      answered = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 10));
    expect(second.value('s')).toBe('1');
    expect(answered).toBe(false);
    endNotice();
    expect((await pending).status).toBe('stored');
  });

  test('add: after the notice, decided among the key members of that moment (the failed one down, a stand-in in)', async () => {
    const ctx = setup();
    const { first, second, endNotice } = stallFirst(ctx, 'lock2');
    const standIn = ctx.nodes.find((n) => n !== first && n !== second)!;
    const pending = ctx.router.store(item('add', 'lock2'));
    await new Promise((r) => setTimeout(r, 10));
    first.up = false; // marked down as it failed
    endNotice();
    expect((await pending).status).toBe('stored');
    expect(second.value('lock2')).toBe('1');
    expect(standIn.value('lock2')).toBe('1');
  });

  test('append: acknowledged after the notice', async () => {
    const ctx = setup();
    const { second, endNotice } = stallFirst(ctx, 'ap');
    second.put('ap', 'a');
    const pending = ctx.router.store({ mode: 'append', key: k('ap'), value: Buffer.from('b'), flags: 0, exptime: 0, cas: 0n });
    await new Promise((r) => setTimeout(r, 10));
    endNotice();
    expect((await pending).status).toBe('stored');
    expect(second.value('ap')).toBe('ab');
  });

  test('a plain read does not wait', async () => {
    const ctx = setup();
    const { second } = stallFirst(ctx, 'r');
    second.put('r', 'v');
    expect((await ctx.router.get(k('r'))).status).toBe('hit');
    expect(ctx.log).toEqual([]);
  });
});

describe("a stand-in's copy left from an earlier time it stood in", () => {
  /** Key `a`'s natural members [first, second], the stand-in third; `second` out, `first` failing. */
  function standingIn(since: (standIn: MemcachedNode) => bigint | null) {
    const nodes = Array.from({ length: 3 }, (_, i) => new FakeNode(`127.0.0.1:${11400 + i}`));
    const ring = new ReplicaRing(nodes.map((node) => ({ node, weight: 1 })), 2);
    const [first, second, third] = ring.ringOrder(k('a')) as FakeNode[];
    ring.useRoles((n) => (n === second ? 'out' : 'trusted'));
    const asked: string[] = [];
    const hooks: ResyncHooks = {
      isResyncing: () => false,
      deleting: () => undefined,
      flushing: () => undefined,
      catchingUp: () => undefined,
      handingOver: () => undefined,
      standInSince: async (standIn, ahead, replicas) => {
        asked.push(`${standIn.address} for ${ahead.map((n) => n.address).join(',')} (R ${replicas})`);
        return since(standIn);
      },
    };
    first.failing = true;
    return { router: new ReplicatedRouter(ring, undefined, hooks), first, second, third, asked };
  }

  test('written before its current time as a stand-in began: no answer, the read is unavailable', async () => {
    let mark = 0n;
    const { router, first, second, third, asked } = standingIn(() => mark);
    third.put('a', 'old'); // as a stand-in for `first`, once; a shed should have dropped it
    third.put('mark', 'x'); // its stand-in key of `second`'s outage
    const read = await third.casOf(k('mark'));
    mark = read.status === 'hit' ? read.cas : 0n;
    expect(await router.get(k('a'))).toEqual({ status: 'unavailable' });
    expect(asked).toEqual([`${third.address} for ${first.address},${second.address} (R 2)`]);
  });

  test('written since: served', async () => {
    const { router, third } = standingIn(() => 0n);
    third.put('a', 'new');
    expect(await router.get(k('a'))).toMatchObject({ status: 'hit', item: { value: k('new') } });
  });

  test('no stand-in key says it took the away member\'s writes: none of its items is served', async () => {
    const { router, third } = standingIn(() => null);
    third.put('a', 'new');
    expect(await router.get(k('a'))).toEqual({ status: 'unavailable' });
  });
});

describe('a write that waited out a change of trust', () => {
  // Its follow-up converges on the key's members of the view it comes back under: a member that
  // failed it goes out, and the one in refill is trusted meanwhile and decides from then on. Another
  // sidecar's write under that view, on the new authority, is what the key holds; converging on the
  // authority the write was sent under would copy the older value back over it.
  test('converges on the authority of the newer view, not the one it was sent under', async () => {
    const nodes = Array.from({ length: 3 }, (_, i) => new FakeNode(`127.0.0.1:${11500 + i}`));
    const ring = new ReplicaRing(nodes.map((node) => ({ node, weight: 1 })), 2);
    const [refilling, authority, failing] = ring.ringOrder(k('k')) as FakeNode[];
    const roles = new Map<MemcachedNode, Role>([[refilling, 'refill']]);
    const roleOf = (n: MemcachedNode): Role => roles.get(n) ?? 'trusted';
    ring.useRoles(roleOf);
    let endNotice!: () => void;
    const notice = new Promise<void>((r) => (endNotice = r));
    let changed = false;
    const hooks: ResyncHooks = {
      isResyncing: (n) => roleOf(n) !== 'trusted',
      deleting: () => undefined,
      flushing: () => undefined,
      catchingUp: () => undefined,
      handingOver: () => (failing.calls.length === 0 || changed ? undefined : notice),
    };
    const router = new ReplicatedRouter(ring, undefined, hooks);
    expect(ring.writeSet(k('k'))).toEqual([refilling, authority, failing]);
    failing.failing = true;
    const later: Array<Promise<unknown>> = [];
    const pending = router.store({ mode: 'set', key: k('k'), value: Buffer.from('mine'), flags: 0, exptime: 0, cas: 0n }, later);
    await new Promise((r) => setTimeout(r, 10));
    // The change applies: the failed member out, the refilled one trusted, and a write under this
    // view lands on it.
    roles.set(failing, 'out');
    roles.set(refilling, 'trusted');
    changed = true;
    refilling.put('k', 'newer');
    endNotice();
    expect((await pending).status).toBe('stored');
    await Promise.allSettled(later);
    expect([refilling.value('k'), authority.value('k')]).toEqual(['newer', 'newer']);
  });
});
