// Orphan stand-in keys (docs/trust.md, Stand-in sources). A sidecar that acknowledged Y's out,
// added its stand-in keys and died before publishing the acknowledgement leaves keys for an out
// that applied nowhere. A later out of Y that gets the same epoch (nobody saw the first) must not
// keep them: they mark a moment long before this departure, so a stand-in's items from between
// would count as taken while it stood in, and its delete records from between as deletes of
// newer copies. The sidecar that acknowledges the out replaces a key whose writer is no live
// sidecar; a key a live sidecar wrote is this out's, and stays.

import { expect, test } from 'vitest';
import type { TrustRecord } from '../../src/trust/protocol';
import { standInKey, standInValue, standInWriter } from '../../src/trust/reserved-keys';
import { FakeNode, agentOver } from './support';

const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

test("an out's stand-in key left by a sidecar that is gone is replaced, before the acknowledgement", async () => {
  const [X, Y, S] = ['x:1', 'y:1', 's:1'].map((a) => new FakeNode(a));
  const { agent, state } = agentOver('acker', [X, Y, S]);
  for (const n of [X, Y, S]) state.roundDone(n.address, 0, 0, []);
  expect(state.fresh(0)).toBe(true);
  // The orphans: keys of out epoch 1 from a sidecar no record names any more.
  const orphan = standInValue('gone', true, 'placement').toString();
  const orphanCas = new Map([X, S].map((n) => [n.address, n.put(standInKey(Y.address, 1), orphan)]));

  agent.failed(Y.address);
  expect(state.seenStageOf(Y.address)).toEqual({ epoch: 1, role: 'out' });
  await settle();
  for (const n of [X, S]) {
    const r = await n.get(standInKey(Y.address, 1));
    expect(r.status).toBe('hit');
    if (r.status !== 'hit') continue;
    expect(standInWriter(r.item.value), `on ${n.address}`).toBe('acker');
    expect(r.item.cas).toBeGreaterThan(orphanCas.get(n.address)!);
  }
});

test("an out's stand-in key that a live sidecar wrote stays: the first add is this out's", async () => {
  const [X, Y, S] = ['x:1', 'y:1', 's:1'].map((a) => new FakeNode(a));
  const { agent, state } = agentOver('acker', [X, Y, S]);
  const peer: TrustRecord = { id: 'peer', seq: 1, applied: {}, seen: {}, reach: [X.address, Y.address, S.address], knows: ['acker'] };
  for (const n of [X, Y, S]) state.roundDone(n.address, 0, 0, [peer]);
  expect(state.fresh(0)).toBe(true);
  expect(state.liveIds(0)).toContain('peer');
  const first = S.put(standInKey(Y.address, 1), standInValue('peer', true, 'placement').toString());

  agent.failed(Y.address);
  expect(state.seenStageOf(Y.address)).toEqual({ epoch: 1, role: 'out' });
  await settle();
  const r = await S.get(standInKey(Y.address, 1));
  expect(r.status === 'hit' && [standInWriter(r.item.value), r.item.cas]).toEqual(['peer', first]);
  // Where no sidecar had added it, this one's add is the key.
  const onX = await X.get(standInKey(Y.address, 1));
  expect(onX.status === 'hit' && standInWriter(onX.item.value)).toBe('acker');
});
