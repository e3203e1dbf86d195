// An out that a sidecar acknowledges while its view is not fresh (it is joining, say) gets no
// stand-in key then: a stale view may take for trusted a backend the others agreed out. When
// every sidecar acknowledged it so (all joining at a cluster's start), nobody marked it, and
// the stand-ins' copies of the missing member's keys would mark nothing. So the sidecar marks
// it once its view is fresh, before it serves anything, and says so in the key's value
// (docs/trust.md, Stand-in sources).

import { expect, test } from 'vitest';
import { standInKey, standInLate, standInTrusted } from '../../src/trust/reserved-keys';
import { FakeNode, agentOver } from './support';

test('an out acknowledged while not fresh is marked, late, before the sidecar serves', async () => {
  const [X, Y, S] = ['x:1', 'y:1', 's:1'].map((a) => new FakeNode(a));
  const { agent, state } = agentOver('joining', [X, Y, S]);
  const probe = Buffer.from('k');
  const wrapped = agent.wrap(X as never);
  // No round yet: the view is not fresh, and Y's failure is acknowledged without a stand-in key.
  expect(state.fresh(0)).toBe(false);
  agent.failed(Y.address);
  expect(state.seenRoleOf(Y.address)).toBe('out');
  const epoch = state.seenStageOf(Y.address).epoch;
  await new Promise((r) => setImmediate(r));
  expect((await X.get(standInKey(Y.address, epoch))).status).toBe('miss');
  expect((await wrapped.get(probe)).status).not.toBe('miss');

  // Fresh: the first request finds the keys being written, and is not served until they are.
  for (const n of [X, Y, S]) state.roundDone(n.address, 0, 0, []);
  expect(state.fresh(0)).toBe(true);
  expect((await wrapped.get(probe)).status).not.toBe('miss');
  await new Promise((r) => setImmediate(r));
  for (const n of [X, S]) {
    const r = await n.get(standInKey(Y.address, epoch));
    expect(r.status).toBe('hit');
    if (r.status !== 'hit') continue;
    expect(standInTrusted(r.item.value)).toBe(true);
    expect(standInLate(r.item.value)).toBe(true);
  }
  expect((await wrapped.get(probe)).status).toBe('miss');
});

test('an out acknowledged while fresh is marked at once, and not late', async () => {
  const [X, Y, S] = ['x:1', 'y:1', 's:1'].map((a) => new FakeNode(a));
  const { agent, state } = agentOver('fresh', [X, Y, S]);
  for (const n of [X, Y, S]) state.roundDone(n.address, 0, 0, []);
  expect(state.fresh(0)).toBe(true);
  agent.failed(Y.address);
  const epoch = state.seenStageOf(Y.address).epoch;
  await new Promise((r) => setImmediate(r));
  const r = await S.get(standInKey(Y.address, epoch));
  expect(r.status === 'hit' && standInTrusted(r.item.value) && !standInLate(r.item.value)).toBe(true);
});
