// TrustAgent.leftBefore: for a reconcile of T (in refill), the CAS under which T's items were all
// sent to it before its current out applied (its refill marks), and, on another backend, the CAS of
// T's out-applied key of that out, over which a request there was sent after T stopped taking
// writes (resync-run.ts, deletedSinceLeft). A backend that was cut off when T's out applied gets
// that key at its own refill proposal (carryOutMarks), before it takes any write of that refill.

import { expect, test } from 'vitest';
import type { Role } from '../../src/trust/protocol';
import { INCARNATION_KEY, deleteRecordKey, outAppliedKey, refillBeganKey } from '../../src/trust/reserved-keys';
import { FakeNode, agentOver } from './support';

test("a backend away when T's out applied gets T's out-applied key at its refill proposal; T's refill marks are under every write of that refill", async () => {
  const [X, Y, T] = ['x:1', 'y:1', 't:1'].map((a) => new FakeNode(a));
  const { agent, state } = agentOver('left-before', [X, Y, T]);
  const internals = agent as unknown as { propose(a: string, r: Role, why: string): void; markRefill(n: FakeNode): Promise<string> };
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    state.markPublished(state.acknowledged());
    state.tryApply(0);
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  };
  for (const n of [X, Y, T]) {
    n.put(INCARNATION_KEY, '0');
    state.roundDone(n.address, 0, 0, []);
  }
  // Y is cut off and goes out; then T goes out (a write timed out on it, say) while Y cannot take its mark.
  Y.reachable = false;
  agent.failed(Y.address);
  await settle();
  agent.failed(T.address);
  await settle();
  const tOut = state.stageOf(T.address);
  expect(tOut.role).toBe('out');
  const onX = await X.get(outAppliedKey(T.address, tOut.epoch));
  expect(onX.status).toBe('hit');
  expect((await (Y.reachable = true, Y).get(outAppliedKey(T.address, tOut.epoch))).status).toBe('miss');
  // A write sent to T before its out, landing late: under T's refill marks.
  const late = T.put(Buffer.from('k'), 'landed late');
  // Y's refill proposal carries T's out-applied key onto Y, before Y takes any write.
  expect(await internals.markRefill(Y)).not.toBe('failed');
  const onY = await Y.get(outAppliedKey(T.address, tOut.epoch));
  expect(onY.status).toBe('hit');
  internals.propose(Y.address, 'refill', 'test');
  await settle();
  expect(state.stageOf(Y.address).role).toBe('refill');
  // T's refill.
  expect(await internals.markRefill(T)).not.toBe('failed');
  internals.propose(T.address, 'refill', 'test');
  await settle();
  expect(state.stageOf(T.address).role).toBe('refill');
  const marks = await agent.leftBefore(T as never, Y as never);
  const yBegan = await Y.get(refillBeganKey(state.stageOf(Y.address).epoch));
  if (marks === null || marks === 'failed' || onY.status !== 'hit' || yBegan.status !== 'hit') throw new Error(`no marks: ${String(marks)}`);
  // Over both T's out-applied key on Y and Y's refill-began key (written by Y's refill proposal, after
  // which no request sent to Y before it lands there).
  expect(onY.item.cas < yBegan.item.cas).toBe(true);
  expect(marks.other).toBe(yBegan.item.cas);
  const began = await T.get(refillBeganKey(state.stageOf(T.address).epoch));
  expect(began.status === 'hit' && marks.target <= began.item.cas).toBe(true);
  expect(late < marks.target).toBe(true);
  // A delete record Y takes from now on is over the mark.
  const record = Y.put(deleteRecordKey(Buffer.from('k')), '');
  expect(record > marks.other).toBe(true);
  // X kept the key written when T's out applied (an add does not replace it).
  const x = await agent.leftBefore(T as never, X as never);
  expect(x !== null && x !== 'failed' && onX.status === 'hit' && x.other === onX.item.cas).toBe(true);
});

test('no mark, one of another cluster, the other out, or T not in refill: nothing tells; a read failed: failed', async () => {
  const [X, Y, T] = ['x:1', 'y:1', 't:1'].map((a) => new FakeNode(a));
  const { agent, state } = agentOver('nothing-tells', [X, Y, T]);
  for (const n of [X, Y, T]) {
    n.put(INCARNATION_KEY, '0');
    state.roundDone(n.address, 0, 0, []);
  }
  expect(await agent.leftBefore(T as never, Y as never)).toBeNull();
  agent.failed(T.address);
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  state.markPublished(state.acknowledged());
  state.tryApply(0);
  // Out, not yet in refill.
  expect(await agent.leftBefore(T as never, Y as never)).toBeNull();
  // A mark written by a sidecar this one never read (a cluster before every sidecar restarted).
  const epoch = state.stageOf(T.address).epoch;
  Y.put(outAppliedKey(T.address, epoch), 'someone-else');
  const internals = agent as unknown as { propose(a: string, r: Role, why: string): void; markRefill(n: FakeNode): Promise<string> };
  await internals.markRefill(T);
  internals.propose(T.address, 'refill', 'test');
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  state.markPublished(state.acknowledged());
  state.tryApply(0);
  expect(state.stageOf(T.address).role).toBe('refill');
  expect(await agent.leftBefore(T as never, Y as never)).toBeNull();
  expect(await agent.leftBefore(T as never, X as never)).not.toBeNull();
  X.reachable = false;
  expect(await agent.leftBefore(T as never, X as never)).toBe('failed');
  X.reachable = true;
  // The other going out: a request that timed out on it may still land there, over any key it holds.
  agent.failed(X.address);
  expect(await agent.leftBefore(T as never, X as never)).toBeNull();
});

test("a refill's marks in flight hold this sidecar's acknowledgements until they land: none lands after the refill applied", async () => {
  const [X, Y, T] = ['x:1', 'y:1', 't:1'].map((a) => new FakeNode(a));
  const { agent, state } = agentOver('marks-in-flight', [X, Y, T]);
  const internals = agent as unknown as { markRefill(n: FakeNode): Promise<string> };
  const flush = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  };
  for (const n of [X, Y, T]) {
    n.put(INCARNATION_KEY, '0');
    state.roundDone(n.address, 0, 0, []);
  }
  agent.failed(T.address);
  await flush();
  state.markPublished(state.acknowledged());
  state.tryApply(0);
  expect(state.stageOf(T.address).role).toBe('out');
  // T answers this sidecar's incarnation-key append late (a slow path); other writes go through.
  let release = (): void => {};
  const gate = new Promise<void>((r) => (release = r));
  const store = T.store.bind(T);
  T.store = async (f) => {
    if (f.mode === 'append') await gate;
    return store(f);
  };
  const marking = internals.markRefill(T);
  // Meanwhile this sidecar acknowledges a change (X fails here, or another's refill proposal of T is
  // read): it publishes nothing while its marks are in flight.
  agent.failed(X.address);
  await flush();
  expect(state.record([]).seen[X.address]?.role).not.toBe('out');
  release();
  expect(await marking).not.toBe('failed');
  await flush();
  expect(state.record([]).seen[X.address]?.role).toBe('out');
});
