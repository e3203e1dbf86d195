// TrustAgent.stoodInSince: a stand-in's standInSince, only while it has been in the key's
// placement without a break since then: trusted, nothing pending, and not refilled since (its
// incarnation key, which each refill of its own rewrites, is under that point). Its delete record
// over that point then proves any older copy of the key deleted (src/resync/resync-run.ts,
// deletedWhileStoodIn). A stage change while it reads, or its incarnation key not read, leaves it
// unknown ('failed': asked again), not "nothing tells", which would keep a deleted key's copy.

import { expect, test } from 'vitest';
import { INCARNATION_KEY, standInKey, standInValue } from '../../src/trust/reserved-keys';
import { FakeNode, agentOver } from './support';

/** N2 (a natural member) out and applied, S trusted throughout and standing in: its stand-in key of N2's out is the mark. */
async function standingIn() {
  const [N1, N2, S] = ['n1:1', 'n2:1', 's:1'].map((a) => new FakeNode(a));
  const { agent, state } = agentOver('since', [N1, N2, S]);
  for (const n of [N1, N2, S]) state.roundDone(n.address, 0, 0, []);
  S.put(INCARNATION_KEY, '0');
  agent.failed(N2.address);
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  state.markPublished(state.acknowledged());
  state.tryApply(0);
  return { N1, N2, S, agent, state, ahead: [N1, N2] as never[] };
}

test('a stand-in stood in since its mark while its incarnation key is under it, and not once refilled since', async () => {
  const { N2, S, agent, state, ahead } = await standingIn();
  const mark = await S.get(standInKey(N2.address, state.stageOf(N2.address).epoch));
  if (mark.status !== 'hit') throw new Error('no stand-in key on S');
  expect(await agent.standInSince(S as never, ahead, 2)).toBe(mark.item.cas);
  expect(await agent.stoodInSince(S as never, ahead, 2)).toBe(mark.item.cas);
  // A refill of S since (its incarnation key rewritten over the mark): it was away, and may have missed a write.
  S.put(INCARNATION_KEY, '0 r4');
  expect(await agent.standInSince(S as never, ahead, 2)).toBe(mark.item.cas);
  expect(await agent.stoodInSince(S as never, ahead, 2)).toBeNull();
  // A stand-in key that says it was away then marks nothing.
  S.put(INCARNATION_KEY, '0');
  S.put(standInKey(N2.address, state.stageOf(N2.address).epoch), standInValue('x', false, 'd').toString());
  expect(await agent.stoodInSince(S as never, ahead, 2)).toBeNull();
});

test("a stage change while it reads, or its incarnation key not read: 'failed', asked again", async () => {
  const { N1, S, agent, ahead } = await standingIn();
  expect(typeof (await agent.stoodInSince(S as never, ahead, 2))).toBe('bigint');
  const get = S.get.bind(S);
  S.get = async (key) => {
    if (key.equals(INCARNATION_KEY)) agent.failed(N1.address);
    return get(key);
  };
  expect(await agent.stoodInSince(S as never, ahead, 2)).toBe('failed');
  S.get = async (key) => (key.equals(INCARNATION_KEY) ? ({ status: 'failed', reason: 'timeout' } as never) : get(key));
  expect(await agent.stoodInSince(S as never, ahead, 2)).toBe('failed');
});
