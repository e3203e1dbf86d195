// Stand-in keys written after their out applied (docs/trust.md, Stand-in sources).
//
// An out that a sidecar acknowledges while its view is not fresh (it is joining, say) gets no
// stand-in key then: a stale view may take for trusted a backend the others agreed out. When
// every sidecar acknowledged it so (all joining at a cluster's start), nobody marked it, and
// the stand-ins' copies of the missing member's keys would mark nothing. So the sidecar marks
// it once its view is fresh, before it serves anything, and says so in the key's value.
// A backend that was away when another left, and enters refill while that one is still away,
// takes its writes from then on: the `away` key becomes a `joined` one before anyone routes it
// a write by the refill.

import { expect, test } from 'vitest';
import type { Role, Stage, TrustRecord } from '../../src/trust/protocol';
import { INCARNATION_KEY, standInKey, standInNote, standInRefill, standInTrusted, standInValue } from '../../src/trust/reserved-keys';
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
    expect(standInNote(r.item.value)).toBe('late');
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
  expect(r.status === 'hit' && standInTrusted(r.item.value) && standInNote(r.item.value) === undefined).toBe(true);
});

test("a backend entering refill while another is away takes that one's writes from then on: a stand-in key that said away now says so, joined", async () => {
  const [X, Y, Z] = ['x:1', 'y:1', 'z:1'].map((a) => new FakeNode(a));
  const { agent, state } = agentOver('joining-refill', [X, Y, Z]);
  const propose = (address: string, role: Role): void => (agent as unknown as { propose(a: string, r: Role, why: string): void }).propose(address, role, 'test');
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    state.markPublished(state.acknowledged());
    state.tryApply(0);
  };
  for (const n of [X, Y, Z]) state.roundDone(n.address, 0, 0, []);
  // Z goes out first, then Y: Y's key on Z says Z was away when Y left; on X, that X took them.
  agent.failed(Z.address);
  await settle();
  agent.failed(Y.address);
  await settle();
  const yOut = state.stageOf(Y.address).epoch;
  const before = await Z.get(standInKey(Y.address, yOut));
  expect(before.status === 'hit' && !standInTrusted(before.item.value)).toBe(true);
  const onX = await X.get(standInKey(Y.address, yOut));
  // Z comes back into refill while Y is still out.
  propose(Z.address, 'refill');
  const refill = state.seenStageOf(Z.address);
  expect(refill.role).toBe('refill');
  await settle();
  const after = await Z.get(standInKey(Y.address, yOut));
  expect(after.status).toBe('hit');
  if (after.status !== 'hit' || before.status !== 'hit') return;
  expect(standInTrusted(after.item.value)).toBe(true);
  expect(standInRefill(after.item.value)).toBe(refill.epoch);
  expect(standInNote(after.item.value)).toBe('joined');
  expect(after.item.cas > before.item.cas).toBe(true);
  // A key that said trusted stays as it was.
  expect(await X.get(standInKey(Y.address, yOut))).toEqual(onX);
});

test('a joined key does not say its backend stood in all along: it began after the other left', async () => {
  const [X, Y, F] = ['x:1', 'y:1', 'f:1'].map((a) => new FakeNode(a));
  const { agent, state } = agentOver('stood-in', [X, Y, F]);
  F.put(INCARNATION_KEY, '0');
  for (const n of [X, Y, F]) state.roundDone(n.address, 0, 0, []);
  agent.failed(Y.address);
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  state.markPublished(state.acknowledged());
  state.tryApply(0);
  const key = standInKey(Y.address, state.stageOf(Y.address).epoch);
  const naturals = [X, Y] as never[];
  expect(await agent.stoodInThroughout(F as never, naturals)).toBe(true);
  const marked = await F.get(key);
  if (marked.status !== 'hit') throw new Error('no stand-in key on F');
  const words = marked.item.value.toString().split(' ');
  F.put(key, standInValue(words[0], true, words[2], 5, 'joined').toString());
  expect(await agent.stoodInThroughout(F as never, naturals)).toBe(false);
});

test('one that leaves between the refill of another and its application gets a joined key there too, as the refill applies', async () => {
  const [X, Y, Z] = ['x:1', 'y:1', 'z:1'].map((a) => new FakeNode(a));
  const { agent, state } = agentOver('applies-refill', [X, Y, Z]);
  const internals = agent as unknown as { propose(a: string, r: Role, why: string): void; apply(): void };
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  };
  // A live peer: a stage applies here once its record acknowledges it too.
  let seq = 0;
  const peerSaw = (seen: Record<string, Stage>): void => {
    const peer: TrustRecord = { id: 'peer', seq: ++seq, applied: {}, seen, reach: [X.address, Y.address, Z.address], knows: ['applies-refill'] };
    for (const n of [X, Y, Z]) state.roundDone(n.address, 0, 0, [peer]);
    internals.apply();
  };
  peerSaw({});
  agent.failed(Z.address);
  await settle();
  peerSaw({ [Z.address]: state.seenStageOf(Z.address) });
  expect(state.stageOf(Z.address).role).toBe('out');
  // Z's refill acknowledged here, not yet by the peer; then Y leaves: its key on Z says Z was away.
  internals.propose(Z.address, 'refill', 'test');
  await settle();
  const refill = state.seenStageOf(Z.address);
  expect([refill.role, state.stageOf(Z.address).role]).toEqual(['refill', 'out']);
  agent.failed(Y.address);
  await settle();
  const yOut = state.seenStageOf(Y.address);
  const before = await Z.get(standInKey(Y.address, yOut.epoch));
  expect(before.status === 'hit' && !standInTrusted(before.item.value)).toBe(true);
  // The peer acknowledges both, and Z's refill applies: from now on Z takes Y's writes, and its key says so.
  peerSaw({ [Z.address]: refill, [Y.address]: yOut });
  expect(state.stageOf(Z.address)).toEqual(refill);
  await settle();
  const after = await Z.get(standInKey(Y.address, yOut.epoch));
  expect(after.status === 'hit' && [standInTrusted(after.item.value), standInRefill(after.item.value), standInNote(after.item.value)]).toEqual([
    true,
    refill.epoch,
    'joined',
  ]);
});
