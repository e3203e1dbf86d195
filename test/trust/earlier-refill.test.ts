// Earlier refills (docs/trust.md), against real memcached: one sidecar in-process, three
// memcached, two replicas, and a key K whose ring order is X, M, T (natural members X and M,
// stand-in T). M is in refill, its fill held, when X goes away (SIGSTOP): K's newest write goes
// to M, in that refill, and to T, standing in. M then leaves that refill (SIGSTOP) and comes back
// in another, and T restarts empty. X comes back with the older value and goes first (M took
// what X missed only in refill; X took what M missed while trusted). Its fill must take K from
// what M took in the refill it left, by M's refill-began key of that refill: read through the
// sidecar once every backend is trusted again, K is the newest write, not the one X kept.
// The second test has T come back while X's fill reads M's refill-began key: the stage change
// leaves those reads telling nothing sure, and the key is read again, not skipped. The third has
// K deleted before X left, so X comes back with no copy: with neither natural member trusted, a
// delete is acknowledged only once both took it, so X's miss is older than M's item, and taken.
// In each, X's copy is then named by its copied record (no write X took in its refill).

import { afterEach, expect, test } from 'vitest';
import { Backend } from '../../src/backends/backend';
import { copiedRecordKey, refillBeganKey } from '../../src/trust/reserved-keys';
import type { MemcachedNode } from '../../src/routing/node';
import { startMemcached } from '../helpers/memcached';
import { pollUntil } from '../helpers/wait';
import { inProcessSidecar, stopSidecar, valueOn } from '../resync/support';
import { trustedInOrder } from './support';

const BACKEND = { requestTimeoutMs: 300, probeIntervalMs: 30, retryMaxMs: 100, upAfterProbes: 1 };

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

const set = (key: Buffer, value: string) => ({ mode: 'set' as const, key, value: Buffer.from(value), flags: 0, exptime: 0, cas: 0n });

/**
 * With `stageChangeWhileMarksRead`, T restarts (and enters refill) while X's fill reads M's
 * refill-began key. With `deletedBeforeXLeft`, K is deleted (from X, M and T) while M is in its
 * first refill and X still trusted: X comes back holding nothing.
 */
async function scenario({ stageChangeWhileMarksRead = false, deletedBeforeXLeft = false }): Promise<void> {
  const mcs = await Promise.all([0, 1, 2].map(() => startMemcached()));
  cleanup.push(async () => {
    for (const m of mcs) m.resume();
    await Promise.all(mcs.map((m) => m.stop()));
  });
  const backends = mcs.map((m) => new Backend(m.address, BACKEND));
  // The first read of a refill-began key on M during X's fill waits, when asked, until `marksRead` is released.
  let xFilling = false;
  let marksRead: { reached: () => void; release: Promise<void> } | null = null;
  const began = refillBeganKey(0).toString('latin1').slice(0, -1); // the key's name without its epoch
  for (const b of backends) {
    const control = b.control.bind(b);
    b.control = () => {
      const node = control();
      const get = node.get;
      node.get = async (key, touch) => {
        const gate = marksRead;
        if (gate !== null && xFilling && b.address === backends[M]?.address && key.toString('latin1').startsWith(began)) {
          marksRead = null;
          gate.reached();
          await gate.release;
        }
        return get(key, touch);
      };
      return node;
    };
  }
  // M's fills wait while `holding` (ended, incomplete, when the agent aborts them): M stays in refill.
  let holding = true;
  let [X, M, T] = [-1, -1, -1];
  const fill = async (node: MemcachedNode, signal: AbortSignal): Promise<boolean> => {
    if (node.address === backends[M]?.address) {
      await pollUntil(() => !holding || signal.aborted, 60_000, 10);
      if (signal.aborted) return false;
    }
    if (node.address !== backends[X]?.address) return s.resyncer.fill(node, signal);
    xFilling = true;
    try {
      return await s.resyncer.fill(node, signal);
    } finally {
      xFilling = false;
    }
  };
  const s = inProcessSidecar(backends, {}, undefined, { id: 'a', fill });
  cleanup.push(async () => {
    holding = false;
    await stopSidecar(s);
  });
  await s.agent.start();
  const role = (i: number) => s.agent.roleOf(backends[i]);
  await pollUntil(() => backends.every((_, i) => role(i) === 'trusted'), 10_000, 20);

  // K, and which backend is X, M and T by its order on the ring.
  const key = Buffer.from('session-key');
  [X, , T] = s.ring.ringOrder(key).map((n) => backends.findIndex((b) => b.address === n.address));
  M = 3 - X - T;
  expect((await s.router.store(set(key, 'older'))).status).toBe('stored');

  // M away and back into a refill that does not end (its fill held).
  await mcs[M].pause();
  await pollUntil(() => role(M) === 'out', 10_000, 20, 'M out');
  mcs[M].resume();
  await pollUntil(() => role(M) === 'refill', 10_000, 20, 'M in refill');
  if (deletedBeforeXLeft) expect((await s.router.delete(key, 0n)).status).toBe('deleted');
  // X away (it keeps its data): K's newest write goes to M, in refill, and to T, standing in.
  await mcs[X].pause();
  await pollUntil(() => role(X) === 'out', 10_000, 20, 'X out');
  expect((await s.router.store(set(key, 'newest'))).status).toBe('stored');
  expect(await valueOn(backends[M], 'session-key'), `M (${role(M)}) took the newest write`).toBe('newest');

  // M leaves that refill and enters another; T restarts empty.
  await mcs[M].pause();
  await pollUntil(() => role(M) === 'out', 10_000, 20, 'M out');
  mcs[M].resume();
  await pollUntil(() => role(M) === 'refill', 10_000, 20, 'M in refill');
  mcs[T].kill('SIGKILL');
  await mcs[T].exited();
  await pollUntil(() => role(T) === 'out', 10_000, 20, 'T out');
  if (stageChangeWhileMarksRead) {
    // X back while T is still down; T comes back once X's fill reads M's refill-began key.
    let release = () => {};
    const reached = new Promise<void>((resolve) => {
      marksRead = { reached: resolve, release: new Promise<void>((r) => (release = r)) };
    });
    mcs[X].resume();
    await reached;
    await mcs[T].restart();
    await pollUntil(() => role(T) === 'refill', 10_000, 5, 'T in refill');
    release();
  } else {
    await mcs[T].restart();
    // X back, with the older value; then M's fill may end too.
    mcs[X].resume();
  }
  await pollUntil(() => role(X) !== 'out' && role(T) !== 'out', 10_000, 5, 'X and T back');
  holding = false;

  const order = await trustedInOrder(role, [X, M, T], 'not every backend trusted again');
  // X first: M took what X missed only in refill, X what M missed while trusted; T came back empty.
  expect(order[0]).toBe(X);
  const read = await s.router.get(key);
  expect(read.status === 'hit' ? read.item.value.toString() : read.status).toBe('newest');
  // Its natural members hold it (T, a stand-in no more, is in no placement of K).
  for (const i of [X, M]) expect(await valueOn(backends[i], 'session-key'), `on ${i === X ? 'X' : 'M'}`).toBe('newest');
  // X's copy is named by its copied record: no later fill takes it for a write X took in its refill.
  const copy = await backends[X].get(key);
  const record = await backends[X].get(copiedRecordKey(key));
  expect(record.status === 'hit' ? record.item.value.toString() : record.status).toBe(copy.status === 'hit' ? copy.item.cas.toString() : copy.status);
}

test('a fill takes the newest write from what another backend took in a refill it left, when the trusted one that took it too came back empty', () => scenario({}), 90_000);

test('a stage change while a fill reads what dates an earlier refill leaves the key to be read again, not skipped', () => scenario({ stageChangeWhileMarksRead: true }), 90_000);

test('the same where the fill holds no copy: the two are the natural members, so its miss is no later delete', () => scenario({ deletedBeforeXLeft: true }), 90_000);
