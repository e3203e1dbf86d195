// A natural member's copy from before a delete it missed, with the key's other natural member
// back empty, against real memcached: one sidecar in-process (trust agent, ring, router,
// resyncer), three memcached, two replicas. The key's order is N1 N2 F. N1 hangs holding v1;
// the delete reaches N2 and the first stand-in F; N2 dies and comes back empty. No trusted
// natural member is left to say the key is gone, and F's miss alone says nothing of N1's copy
// (the key may never have been written while F stood in). F's delete record, written just
// before the delete, says the key was deleted there while it stood in all along: N1's copy is
// dropped in its reconcile (docs/trust.md, Delete records).

import { afterEach, expect, test } from 'vitest';
import type { StoreFields } from '../../src/protocol/types';
import { deleteRecordKey } from '../../src/trust/reserved-keys';
import { pollUntil } from '../helpers/wait';
import { sidecarOverMemcached } from './support';

const k = (s: string): Buffer => Buffer.from(s);
const set = (key: string, value: string): StoreFields => ({ mode: 'set', key: k(key), value: k(value), flags: 0, exptime: 0, cas: 0n });

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

test("a delete taken by a stand-in while a natural member hung removes that member's copy when it comes back", async () => {
  const { mcs, backends, conn, role, allTrusted, order } = await sidecarOverMemcached(3, cleanup);
  const key = 'delete-record';
  const [N1, N2, F] = order(key);
  expect((await conn.store(set(key, 'v1'))).status).toBe('stored');
  // N1 hangs with v1; the delete goes to N2 and the stand-in F, which takes the record first.
  await mcs[N1].pause();
  await pollUntil(() => role(N1) === 'out', 10_000, 20);
  expect((await conn.delete(k(key), 0n)).status).toBe('deleted');
  expect((await backends[F].get(deleteRecordKey(k(key)))).status).toBe('hit');
  expect((await backends[N2].get(deleteRecordKey(k(key)))).status).toBe('miss');
  // N2 dies and comes back empty; N1 comes back with v1. N1 kept its data and goes first.
  mcs[N2].kill('SIGKILL');
  await mcs[N2].exited();
  await pollUntil(() => role(N2) === 'out', 10_000, 20);
  await mcs[N2].restart();
  mcs[N1].resume();
  await pollUntil(allTrusted, 30_000, 20);
  const r = await conn.get(k(key));
  expect(r.status === 'hit' ? r.item.value.toString() : r.status).toBe('miss');
  for (const b of backends) expect((await b.get(k(key))).status, b.address).toBe('miss');
});
