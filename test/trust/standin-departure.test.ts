// TrustAgent.standInSince for a sidecar that did not see the natural member leave (every
// sidecar that did has gone since): the stand-in key it reads is the one of the member's
// departure, found from the member's incarnation key (its last filled epoch), not the one of
// its current out epoch, which was written after the stand-in took the member's writes.

import { describe, expect, test } from 'vitest';
import type { MemcachedNode } from '../../src/routing/node';
import type { TrustAgent } from '../../src/trust/agent';
import type { TrustRecord } from '../../src/trust/protocol';
import { INCARNATION_KEY, standInAwaySince, standInKey, standInRefill, standInTrusted, standInValue } from '../../src/trust/reserved-keys';
import { FakeNode, agentOver } from './support';

const [X, Y, S] = ['x:1', 'y:1', 's:1'].map((a) => new FakeNode(a));

/** A sidecar that arrived after Y went out: it adopts Y's stage from a peer's record, and witnessed nothing. */
function newcomer(outAt: number): TrustAgent {
  const { agent, state } = agentOver('late', [X, Y, S]);
  const out = { epoch: outAt, role: 'out' as const };
  const peer: TrustRecord = { id: 'peer', seq: 1, applied: { [Y.address]: out }, seen: { [Y.address]: out }, reach: [X.address, Y.address, S.address] };
  for (const n of [X, Y, S]) state.roundDone(n.address, 0, 0, [peer]);
  state.markPublished(state.acknowledged());
  state.tryApply(0);
  expect(state.stageOf(Y.address)).toEqual(out);
  expect(state.witnessedUntrustedSince(Y.address, 0)).toBeUndefined();
  return agent;
}

describe('standInSince, no live witness of the departure', () => {
  // Y was filled at refill(2) and trusted at 3; it went out at 4, was refilled at 5 and went out
  // again at 6. S was trusted all along: its stand-in key of 4 is under every write of Y's keys it
  // took; the one of 6 only under those since. An older outage's (1) marks nothing of this one.
  const older = S.put(standInKey(Y.address, 1), standInValue('gone', true, 'placement').toString());
  Y.put(INCARNATION_KEY, '1 2');
  const departure = S.put(standInKey(Y.address, 4), standInValue('gone', true, 'placement').toString());
  const again = S.put(standInKey(Y.address, 6), standInValue('gone', true, 'placement').toString());

  test("the stand-in key of the member's departure, found from its filled epoch", async () => {
    expect(older < departure && departure < again).toBe(true);
    expect(await newcomer(6).standInSince(S as unknown as MemcachedNode, [Y as unknown as MemcachedNode], 1)).toBe(departure);
  });

  test('no filled epoch (it restarted since): its current out epoch, as before', async () => {
    Y.put(INCARNATION_KEY, '5 r6');
    expect(await newcomer(6).standInSince(S as unknown as MemcachedNode, [Y as unknown as MemcachedNode], 1)).toBe(again);
    Y.put(INCARNATION_KEY, '1 2');
  });

  test('no filled epoch, and the key of its current out names the epoch its time away began: that one', async () => {
    const T = new FakeNode('t:1');
    const fromRefill = T.put(standInKey(Y.address, 4), standInValue('gone', true, 'placement').toString());
    const again = standInValue('gone', true, 'placement', undefined, undefined, 4);
    expect(standInAwaySince(again)).toBe(4);
    T.put(standInKey(Y.address, 6), again.toString());
    Y.put(INCARNATION_KEY, '5 r6');
    const agent = newcomer(6);
    (agent as unknown as { byAddress: Map<string, MemcachedNode> }).byAddress.set(T.address, T as unknown as MemcachedNode);
    expect(await agent.standInSince(T as unknown as MemcachedNode, [Y as unknown as MemcachedNode], 1)).toBe(fromRefill);
    Y.put(INCARNATION_KEY, '1 2');
  });

  test('the departure marked the stand-in away: it marks nothing, whatever a later key says', async () => {
    const A = new FakeNode('a:1');
    A.put(standInKey(Y.address, 4), standInValue('gone', false, 'placement').toString());
    A.put(standInKey(Y.address, 6), standInValue('gone', true, 'placement').toString());
    const agent = newcomer(6);
    (agent as unknown as { byAddress: Map<string, MemcachedNode> }).byAddress.set(A.address, A as unknown as MemcachedNode);
    expect(await agent.standInSince(A as unknown as MemcachedNode, [Y as unknown as MemcachedNode], 1)).toBeNull();
  });
});

describe('the stand-in key of a departure, on a backend in refill whose trust is pending', () => {
  // S was filled and its trusted(3) is acknowledged here, not yet applied, when Y fails. In refill
  // S takes the writes of Y's keys it stands in for from then on, as it would trusted: its stand-in
  // key says so, and its items over that key are sources for Y's refill (docs/trust.md, Stand-in
  // sources). Marked `away`, none of them was, and Y kept an older copy of its own.
  test('says it takes their writes, and its items over it are sources', async () => {
    const [X2, Y2, S2] = ['x:2', 'y:2', 's:2'].map((a) => new FakeNode(a));
    const all = [X2, Y2, S2];
    const { agent, state } = agentOver('here', all);
    const reach = all.map((n) => n.address);
    const refill = { epoch: 2, role: 'refill' as const };
    const trusted = { epoch: 3, role: 'trusted' as const };
    const first: TrustRecord = { id: 'peer', seq: 1, applied: { [S2.address]: refill }, seen: { [S2.address]: refill }, reach };
    for (const n of all) state.roundDone(n.address, 0, 0, [first]);
    state.markPublished(state.acknowledged());
    state.tryApply(0);
    const second: TrustRecord = { ...first, seq: 2, seen: { [S2.address]: trusted } };
    for (const n of all) state.roundDone(n.address, 0, 0, [second]);
    expect(state.stageOf(S2.address)).toEqual(refill);
    expect(state.seenRoleOf(S2.address)).toBe('trusted');
    expect(state.fresh(0)).toBe(true);

    agent.failed(Y2.address);
    await new Promise((r) => setTimeout(r, 0));
    const mark = await S2.get(standInKey(Y2.address, 1));
    expect(mark.status === 'hit' && standInTrusted(mark.item.value)).toBe(true);
    // It names the refill: S took Y's writes in it, not trusted (TrustState.mayTrust).
    expect(mark.status === 'hit' && standInRefill(mark.item.value)).toBe(2);

    // Y's out applies; a write of one of Y's keys that S took since is over the mark.
    state.markPublished(state.acknowledged());
    const third: TrustRecord = { ...second, seq: 3, seen: { [S2.address]: trusted, [Y2.address]: { epoch: 1, role: 'out' } } };
    for (const n of all) state.roundDone(n.address, 0, 0, [third]);
    state.tryApply(0);
    expect(state.stageOf(Y2.address).role).toBe('out');
    const written = S2.put(Buffer.from('k'), 'v');
    const since = await agent.standInSince(S2 as unknown as MemcachedNode, [Y2 as unknown as MemcachedNode], 1);
    expect(since).not.toBeNull();
    expect(written > since!).toBe(true);
  });
});

describe('a stand-in after the first', () => {
  // Key order N1, N2, F, S; R = 2. N1 went out at 1, N2 at 3; F is trusted. S is in the key's
  // placement only while both natural members are away: from N2's departure, not N1's. An item
  // S took between the two (F was away then, say) may since be overwritten on N2 and F.
  test("its items count from the latest departure it needed, the first stand-in's from the earliest", async () => {
    const [N1, N2, F, S] = ['n1:1', 'n2:1', 'f:1', 's:1'].map((a) => new FakeNode(a));
    const { agent, state } = agentOver('late', [N1, N2, F, S]);
    const reach = [N1, N2, F, S].map((n) => n.address);
    const stages = { [N1.address]: { epoch: 1, role: 'out' as const }, [N2.address]: { epoch: 3, role: 'out' as const } };
    const peer: TrustRecord = { id: 'peer', seq: 1, applied: stages, seen: stages, reach };
    for (const a of reach) state.roundDone(a, 0, 0, [peer]);
    state.markPublished(state.acknowledged());
    state.tryApply(0);
    const first = (n: FakeNode) => n.put(standInKey(N1.address, 1), standInValue('gone', true, 'placement').toString());
    const second = (n: FakeNode) => n.put(standInKey(N2.address, 3), standInValue('gone', true, 'placement').toString());
    const [onS1, onF1] = [first(S), first(F)];
    const between = S.put(Buffer.from('k'), 'old');
    const [onS2] = [second(S), second(F)];
    const node = (n: FakeNode) => n as unknown as MemcachedNode;
    const since = await agent.standInSince(node(S), [N1, N2, F].map(node), 2);
    expect(since).toBe(onS2);
    expect(between > onS1 && between < since!).toBe(true);
    expect(await agent.standInSince(node(F), [N1, N2].map(node), 2)).toBe(onF1);
  });
});
