// Ordering between requests, with scripted in-memory backends whose requests
// can be held: the order in which requests reach the backends is the thing
// under test, and a real memcached cannot be held request by request.

import { describe, expect, test } from 'vitest';
import { KeySequencer } from '../../src/routing/key-sequencer';
import { OrderedRouter } from '../../src/routing/ordered-router';
import { ReplicatedRouter } from '../../src/routing/replicated-router';
import { ReplicaRing } from '../../src/routing/ring';
import { FakeNode } from './fake-node';

const k = (s: string) => Buffer.from(s);
const set = (key: string, value: string) => ({ mode: 'set', key: k(key), value: k(value), flags: 0, exptime: 0, cas: 0n }) as const;

function setup() {
  const nodes = Array.from({ length: 3 }, (_, i) => new FakeNode(`127.0.0.1:${11400 + i}`));
  const ring = new ReplicaRing(
    nodes.map((node) => ({ node, weight: 1 })),
    2,
  );
  const inner = new ReplicatedRouter(ring);
  const keys = new KeySequencer();
  const connection = () => new OrderedRouter(keys, inner);
  const calls = () => nodes.flatMap((n) => n.calls);
  return { nodes, ring, keys, connection, calls };
}

/** Lets every pending promise callback run. */
const settle = () => new Promise((r) => setImmediate(r));

describe('OrderedRouter', () => {
  test("a connection's read of another key waits until its earlier write took effect on every member", async () => {
    const { nodes, connection, calls } = setup();
    const c = connection();
    const release = nodes.map((n) => n.hold());
    const write = c.store(set('w', 'v'));
    const read = c.get(k('r'));
    await settle();
    expect(calls().filter((x) => x.startsWith('get r'))).toEqual([]);
    release.forEach((r) => r());
    expect(await write).toMatchObject({ status: 'stored' });
    expect(await read).toEqual({ status: 'miss' });
    expect(calls().filter((x) => x.startsWith('get r')).length).toBeGreaterThan(0);
  });

  test('reads pipelined on one connection run together', async () => {
    const { nodes, connection, calls } = setup();
    const c = connection();
    const release = nodes.map((n) => n.hold());
    const reads = [c.get(k('a')), c.get(k('b')), c.get(k('c'))];
    await settle();
    expect(calls().filter((x) => x.startsWith('get')).length).toBe(3);
    release.forEach((r) => r());
    await Promise.all(reads);
  });

  test('another connection waits for the key, not for the connection', async () => {
    const { nodes, connection, calls } = setup();
    const one = connection();
    const two = connection();
    const release = nodes.map((n) => n.hold());
    const write = one.store(set('x', '1'));
    const sameKey = two.get(k('x'));
    const otherKey = two.get(k('y'));
    await settle();
    expect(calls().filter((x) => x === 'get x')).toEqual([]);
    expect(calls().filter((x) => x === 'get y').length).toBe(1);
    release.forEach((r) => r());
    await write;
    expect(await sameKey).toMatchObject({ status: 'hit' });
    await otherKey;
  });

  test("a write's follow-up steps hold the key: the next request for it starts after them", async () => {
    const { ring, connection, keys } = setup();
    const c = connection();
    await c.store(set('f', '1'));
    // The reply came back; the convergence read of the authority may still be running.
    const next = c.get(k('f'));
    expect(await next).toMatchObject({ status: 'hit' });
    await settle();
    expect(keys.activeKeys).toBe(0);
    const authority = ring.replicaSet(k('f'))[0] as FakeNode;
    const i = authority.calls.indexOf('set f 1 exptime=0');
    // set, then the follow-up read, then the client's get: never the get before the follow-up.
    expect(authority.calls.slice(i)).toEqual(['set f 1 exptime=0', 'cas? f', 'get f']);
  });
});
