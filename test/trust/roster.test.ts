// The roster (docs/trust.md, Messages), against real memcached: the ids of sidecars that
// stopped leave it once their records have been missing for the prune time, while a live
// peer's id and the sidecar's own stay; a live peer taken off it (its record missing that
// long: cut off from the backend) adds itself again at its next round there.

import { afterEach, expect, test } from 'vitest';
import { Backend } from '../../src/backends/backend';
import { ROSTER_KEY, recordKey } from '../../src/trust/reserved-keys';
import { startMemcached } from '../helpers/memcached';
import { pollUntil } from '../helpers/wait';
import { inProcessSidecar, stopSidecar } from '../resync/support';

const BACKEND = { requestTimeoutMs: 300, probeIntervalMs: 30, retryMaxMs: 100, upAfterProbes: 1 };
const PRUNE_MS = 400;

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function rosterOn(b: Backend): Promise<string[]> {
  const r = await b.get(ROSTER_KEY);
  if (r.status === 'failed') throw new Error(r.reason);
  return r.status === 'hit' ? r.item.value.toString('latin1').split(' ').filter((id) => id.length > 0) : [];
}

test('ids whose records stay missing leave the roster; the live ones stay, and one taken off comes back', async () => {
  const mcs = await Promise.all([0, 1].map(() => startMemcached()));
  cleanup.push(async () => void (await Promise.all(mcs.map((m) => m.stop()))));
  const backends = mcs.map((m) => new Backend(m.address, BACKEND));
  // Two sidecars that stopped long ago: listed, no record.
  for (const b of backends) {
    const listed = await b.store({ mode: 'add', key: ROSTER_KEY, value: Buffer.from(' gone-1 gone-2'), flags: 0, exptime: 3600, cas: 0n });
    expect(listed.status).toBe('stored');
  }
  const a = inProcessSidecar(backends, {}, undefined, { id: 'a', rosterPruneMs: PRUNE_MS });
  const b = inProcessSidecar(backends, {}, undefined, { id: 'b', rosterPruneMs: PRUNE_MS });
  cleanup.push(() => stopSidecar(a));
  cleanup.push(() => stopSidecar(b));
  await Promise.all([a.agent.start(), b.agent.start()]);
  expect(await rosterOn(backends[0])).toEqual(expect.arrayContaining(['gone-1', 'gone-2', 'a', 'b']));

  await pollUntil(async () => (await Promise.all(backends.map(rosterOn))).every((ids) => !ids.includes('gone-1') && !ids.includes('gone-2')), 20_000, 20, 'the stopped sidecars taken off every roster');
  for (const ids of await Promise.all(backends.map(rosterOn))) expect([...ids].sort()).toEqual(['a', 'b']);

  // Taken off while alive (as if cut off from the backend for the prune time): back at its next round.
  const cas = await backends[0].get(ROSTER_KEY);
  if (cas.status !== 'hit') throw new Error(`roster: ${cas.status}`);
  expect((await backends[0].store({ mode: 'cas', key: ROSTER_KEY, value: Buffer.from(' a'), flags: 0, exptime: 3600, cas: cas.item.cas })).status).toBe('stored');
  await pollUntil(async () => (await rosterOn(backends[0])).includes('b'), 10_000, 10, "b's id back on the roster");
  expect((await backends[0].get(recordKey('b'))).status).toBe('hit');
  expect(a.agent.roleOf(backends[0])).toBe('trusted');
  expect(a.agent.roleOf(backends[1])).toBe('trusted');
});
