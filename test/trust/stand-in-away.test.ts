// A key's stand-ins while both its natural members are away, against real memcached: one
// sidecar in-process (trust agent, ring, router, resyncer), four memcached, two replicas.
// The key's order is N1 N2 T S: with N1 and N2 away, T and S stand in and take its writes.
// S then goes away too and misses a delete that T and the natural members (back empty, in
// refill) take; S, which kept its data, is filled and trusted first. Its copy is from before its own time away, over the
// stand-in keys that say it took the natural members' writes when they left, yet it missed
// some since: T, which stood in all along, misses the key, and that decides (docs/trust.md,
// Stand-in sources).

import { afterEach, expect, test } from 'vitest';
import type { StoreFields } from '../../src/protocol/types';
import { pollUntil } from '../helpers/wait';
import { sidecarOverMemcached } from './support';

const k = (s: string): Buffer => Buffer.from(s);
const set = (key: string, value: string): StoreFields => ({ mode: 'set', key: k(key), value: k(value), flags: 0, exptime: 0, cas: 0n });

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

test('a stand-in back from its own time away does not bring back a key deleted meanwhile', async () => {
  const { mcs, backends, conn, role, allTrusted, order } = await sidecarOverMemcached(4, cleanup);
  const key = 'stand-in-away';
  const [N1, N2, , S] = order(key);
  expect((await conn.store(set(key, 'v1'))).status).toBe('stored');
  // Both natural members die: T and S stand in, and take v2.
  for (const i of [N1, N2]) mcs[i].kill('SIGKILL');
  await Promise.all([mcs[N1].exited(), mcs[N2].exited()]);
  await pollUntil(() => role(N1) === 'out' && role(N2) === 'out', 10_000, 20);
  expect((await conn.store(set(key, 'v2'))).status).toBe('stored');
  // S hangs; the natural members come back empty, are filled from T, and wait in refill while S is away.
  await mcs[S].pause();
  await pollUntil(() => role(S) === 'out', 10_000, 20);
  await Promise.all([mcs[N1].restart(), mcs[N2].restart()]);
  await pollUntil(() => role(N1) === 'refill' && role(N2) === 'refill', 10_000, 20);
  // Every natural member in refill: the delete reaches both, and T; not S.
  expect((await conn.delete(k(key), 0n)).status).toBe('deleted');
  // S comes back with v2 and goes first: it kept its data, they did not.
  mcs[S].resume();
  await pollUntil(allTrusted, 30_000, 20);
  const r = await conn.get(k(key));
  expect(r.status === 'hit' ? r.item.value.toString() : r.status).toBe('miss');
  for (const b of backends) expect((await b.get(k(key))).status, b.address).toBe('miss');
});
