// A newcomer's survey that found no incarnation key on the backends that answered, while others
// did not answer: not necessarily a new cluster. Those that did not answer may hold the cluster's
// records and keys (the ones that answered then restarted, empty), so the view is not fresh, and
// the newcomer applies none of its own proposals, until each of them had a round here.

import { describe, expect, test } from 'vitest';
import type { TrustRecord } from '../../src/trust/protocol';
import { FakeNode, TEST_TIMING, agentOver } from './support';

describe("a newcomer's survey with backends that did not answer", () => {
  test('a restarted backend that answered is not the cluster: nothing is fresh or applied before the others had a round', async () => {
    // X restarted (empty); Y and S, cut off from the newcomer, hold the cluster: X out(20) there.
    const [X, Y, S] = [new FakeNode('x:1', true), new FakeNode('y:1', false), new FakeNode('s:1', false)];
    const { agent, state } = agentOver('late', [X, Y, S]);
    await (agent as unknown as { survey(): Promise<void> }).survey();

    // Its rounds on Y and S fail (it proposes them out), its round on X finds no record.
    state.propose(Y.address, 'out', 'failed');
    state.propose(S.address, 'out', 'failed');
    state.markPublished(state.acknowledged());
    state.roundDone(X.address, 0, 0, []);
    state.tryApply(0);
    // Alone, it would route every key to X by its own view, X's misses authoritative.
    expect(state.roleOf(Y.address)).toBe('trusted');
    expect(state.roleOf(S.address)).toBe('trusted');
    expect(state.fresh(0)).toBe(false);
    expect(agent.handingOver(Buffer.from('k'))).toBeDefined();

    // Y and S answer: their records tell the cluster's stages, X out.
    const out = { epoch: 20, role: 'out' as const };
    const trusted = { epoch: 21, role: 'trusted' as const };
    const peer: TrustRecord = { id: 'gone', seq: 9, applied: { [X.address]: out, [Y.address]: trusted, [S.address]: trusted }, seen: { [X.address]: out, [Y.address]: trusted, [S.address]: trusted }, reach: [Y.address, S.address] };
    state.roundDone(Y.address, 0, 0, [peer]);
    state.roundDone(S.address, 0, 0, [peer]);
    state.markPublished(state.acknowledged());
    state.tryApply(0);
    expect(state.fresh(0)).toBe(true);
    expect(state.roleOf(X.address)).toBe('out');
  });

  test('those that never answer are waited for silentMs at most: a new cluster with a backend down serves', async () => {
    const [X, Y, S] = [new FakeNode('x:1', true), new FakeNode('y:1', true), new FakeNode('s:1', false)];
    let now = 0;
    const timing = TEST_TIMING;
    const { agent, state } = agentOver('first', [X, Y, S], { now: () => now, sleep: async () => {} });
    await (agent as unknown as { survey(): Promise<void> }).survey();
    state.propose(S.address, 'out', 'failed');
    state.markPublished(state.acknowledged());
    const rounds = (t: number): void => {
      for (const n of [X, Y]) state.roundDone(n.address, t, t, []);
    };
    rounds(0);
    state.tryApply(0);
    expect(state.fresh(0)).toBe(false); // S may hold the cluster's records: waited for

    now = timing.silentMs + 1;
    rounds(now);
    state.tryApply(now);
    expect(state.roleOf(S.address)).toBe('out');
    expect(state.fresh(now)).toBe(true);
  });
});
