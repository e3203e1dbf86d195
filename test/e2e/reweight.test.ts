// Reloads that move keys between the backends kept, against real memcached, two replicas:
// a backend's weight changed (ketama's shares are relative, so every backend's keys move:
// some get natural members that never held them, and some keep none of their former
// ones), and a seventh backend added (hashring rounds each backend's point count, so a
// few keys move between the six as well as to the new one).
// While the refreshes run, a key's former holders stay members and answer for it
// (ReplicaRing.holds): no read of a stored key may answer a miss, which a PHP session
// handler would take for an empty session and write back over the real one. Once every
// backend settled, each key sits on its new natural members and nowhere else.

import { afterAll, expect, test } from 'vitest';
import type { MemcachedNode } from '../../src/routing/node';
import { ReplicaRing } from '../../src/routing/ring';
import { startMemcached, type MemcachedProcess } from '../helpers/memcached';
import { waitForStats } from '../helpers/proxy';
import { RawClient } from '../replication/support';
import { misplacedKeys } from '../helpers/held';
import { startConfigured, type ConfiguredRun } from '../ops/support';

const KEYS = Array.from({ length: 2000 }, (_, i) => `weighed:${i}`);

let run: ConfiguredRun | null = null;
let mcs: MemcachedProcess[] = [];
afterAll(async () => {
  await run?.stop();
  await Promise.all(mcs.map((m) => m.stop()));
});

/** The key's natural members as every sidecar computes them with these weights (src/routing/ring.ts). */
function naturalOf(addresses: string[], weights: number[], key: string): string[] {
  const members = addresses.map((address, i) => ({ node: { address, isUp: () => true } as unknown as MemcachedNode, weight: weights[i] }));
  return new ReplicaRing(members, 2).naturalSet(Buffer.from(key, 'latin1')).map((n) => n.address);
}

/** Every key read once through the proxy, pipelined: the keys answered with a miss. */
async function missed(port: number): Promise<string[]> {
  const c = await RawClient.connect(port);
  const reply = await c.text(KEYS.map((k) => `get ${k}\r\n`).join(''), KEYS.length);
  c.close();
  const answers = reply.split(/(?<=END\r\n)/);
  return KEYS.filter((_, i) => answers[i] === 'END\r\n');
}

const CASES = [
  { name: 'a reweight', from: [1, 1, 1, 1, 1, 1], to: [5, 1, 1, 1, 1, 1] },
  { name: 'a seventh backend added', from: [1, 1, 1, 1, 1, 1], to: [1, 1, 1, 1, 1, 1, 1] },
];

test.each(CASES)('$name: no stored key reads as a miss while keys move, and each ends on its new natural members only', async ({ from, to }) => {
  mcs = await Promise.all(to.map(() => startMemcached()));
  const all = mcs.map((m) => m.address);
  const before = all.slice(0, from.length);
  run = await startConfigured(before.map((address) => ({ address })), 2, 0);
  const { port } = run.proxy;
  const c = await RawClient.connect(port);
  expect(await c.text(KEYS.map((k) => `set ${k} 0 0 1\r\nv\r\n`).join(''), KEYS.length)).toBe('STORED\r\n'.repeat(KEYS.length));
  c.close();
  // Keys the reload gives a kept backend that was not among their natural members.
  const gained = KEYS.filter((k) => naturalOf(all, to, k).some((a) => before.includes(a) && !naturalOf(before, from, k).includes(a)));
  expect(gained.length).toBeGreaterThan(0);

  run.dir.write(`backends:\n${all.map((a, i) => `  - { address: "${a}", weight: ${to[i]} }`).join('\n')}\nreplicas: 2\n`);
  run.proxy.child.kill('SIGHUP');
  await waitForStats(port, () => run!.proxy.output().includes('config reloaded'), 10_000);

  // Reads from the reload on, until every key sits on its new natural members and nowhere else.
  const misplaced = (): Promise<string[]> => misplacedKeys(mcs, KEYS, (key) => naturalOf(all, to, key));
  const misses = new Set<string>();
  let left = KEYS;
  // A bound, not a wait: a run that ends short is retried after 1 s, the wait doubling up to 60 s
  // (Resyncer.retryLater), which a loaded machine may need more than once.
  for (const until = Date.now() + 150_000; left.length > 0 && Date.now() < until; left = await misplaced()) {
    for (const key of await missed(port)) misses.add(key);
  }
  expect([...misses]).toEqual([]);
  const resyncLog = run.proxy.output().split('\n').filter((line) => line.includes('resync')).slice(-30).join('\n');
  expect(left, `the proxy's last resync lines:\n${resyncLog}`).toEqual([]);
  expect(await missed(port)).toEqual([]);
  await run.stop();
  run = null;
  await Promise.all(mcs.map((m) => m.stop()));
  mcs = [];
}, 180_000);
