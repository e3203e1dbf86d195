// The router's side of a resync, with scripted backends: a resyncing member's
// miss is not authoritative, and deletes/flushes wait for the copies in flight.

import { describe, expect, test } from 'vitest';
import type { MemcachedNode } from '../../src/routing/node';
import { ReplicatedRouter, type ResyncHooks } from '../../src/routing/replicated-router';
import { ReplicaRing } from '../../src/routing/ring';
import { FakeNode } from '../routing/fake-node';

const k = (s: string) => Buffer.from(s);

function setup(replicas = 2) {
  const nodes = Array.from({ length: 3 }, (_, i) => new FakeNode(`127.0.0.1:${11400 + i}`));
  const ring = new ReplicaRing(nodes.map((node) => ({ node, weight: 1 })), replicas);
  const resyncing = new Set<MemcachedNode>();
  const log: string[] = [];
  let hold: Promise<void> | undefined;
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
  };
  const router = new ReplicatedRouter(ring, undefined, hooks);
  const setOf = (key: string) => ring.replicaSet(k(key)) as FakeNode[];
  return { nodes, router, resyncing, log, setOf, holdWith: (p: Promise<void> | undefined) => (hold = p) };
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

  test('the resyncing member missed, the other hit: the hit, copied back to it', async () => {
    const { router, resyncing, setOf } = setup();
    const [first, second] = setOf('a');
    resyncing.add(first);
    second.put('a', 'v', 3);
    expect(await router.get(k('a'))).toMatchObject({ status: 'hit' });
    await new Promise((r) => setImmediate(r));
    expect(first.value('a')).toBe('v');
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
