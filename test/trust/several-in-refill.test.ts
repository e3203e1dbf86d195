// Several in refill, against real memcached: one sidecar in-process, three memcached, two
// replicas. B waits in refill, filled, while A (restarted empty) and C are away. C took writes
// trusted while B was out; B took writes while C was out only in the refill it is still in. So
// C goes first (docs/trust.md, Several in refill). Which backends kept their data is read from
// their incarnation keys, a round trip: C entering refill while such a read for B is under way
// must not make B go first, C counted as come back empty for not having been read. Nor may a
// read that failed count B as come back empty (the second test).

import { afterEach, expect, test } from 'vitest';
import { Backend } from '../../src/backends/backend';
import type { MemcachedNode } from '../../src/routing/node';
import { INCARNATION_KEY } from '../../src/trust/reserved-keys';
import { startMemcached } from '../helpers/memcached';
import { pollUntil } from '../helpers/wait';
import { inProcessSidecar, stopSidecar } from '../resync/support';
import { trustedInOrder } from './support';

const BACKEND = { requestTimeoutMs: 300, probeIntervalMs: 30, retryMaxMs: 100, upAfterProbes: 1 };

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

/**
 * B's control node, whose incarnation key reads made to tell whether it kept its data (by the
 * agent's keptData) wait, while `held`, until `release()`; or, while `failing`, fail at once
 * (counted in `failed`).
 */
function gated(node: MemcachedNode): { node: MemcachedNode; held: boolean; waiting: number; failing: boolean; failed: number; release: () => void } {
  const waiters: Array<() => void> = [];
  const gate = {
    held: false,
    waiting: 0,
    failing: false,
    failed: 0,
    release: () => {
      gate.held = false;
      for (const go of waiters.splice(0)) go();
    },
    node: {
      ...node,
      get: async (key, touch) => {
        if (key.equals(INCARNATION_KEY) && new Error().stack?.includes('keptData') === true) {
          if (gate.failing) {
            gate.failed++;
            return { status: 'failed', reason: 'a read that failed (the test)' };
          }
          if (gate.held) {
            gate.waiting++;
            await new Promise<void>((go) => waiters.push(go));
          }
        }
        return node.get(key, touch);
      },
    } satisfies MemcachedNode,
  };
  return gate;
}

const [A, B, C] = [0, 1, 2];

/**
 * Three memcached (A, B, C), one sidecar in-process whose reads of B's incarnation key go through
 * `gate`, every backend trusted. `filled`: each completed fill's backend, by address (the agent
 * runs it through the resyncer, as src/proxy.ts does).
 */
async function threeTrusted() {
  const mcs = await Promise.all([0, 1, 2].map(() => startMemcached()));
  cleanup.push(async () => {
    for (const m of mcs) m.resume();
    await Promise.all(mcs.map((m) => m.stop()));
  });
  const backends = mcs.map((m) => new Backend(m.address, BACKEND));
  const gate = gated(backends[B].control());
  const boards = backends.map((b, i) => (i === B ? gate.node : b.control()));
  const filled: string[] = [];
  const fill = async (node: MemcachedNode, signal: AbortSignal): Promise<boolean> => {
    const done = await s.resyncer.fill(node, signal);
    if (done) filled.push(node.address);
    return done;
  };
  const s = inProcessSidecar(backends, {}, undefined, { id: 'a', boards, fill });
  cleanup.push(async () => {
    gate.release();
    await stopSidecar(s);
  });
  await s.agent.start();
  const role = (i: number) => s.agent.roleOf(backends[i]);
  await pollUntil(() => backends.every((_, i) => role(i) === 'trusted'), 10_000, 20);
  return { mcs, backends, gate, filled, role };
}

test('one entering refill while the others were read does not count as come back empty: the one that outlasted goes first', async () => {
  const { mcs, backends, gate, filled, role } = await threeTrusted();

  // A restarts later (empty); B goes away while C is trusted: C outlasts B, trusted.
  mcs[A].kill('SIGKILL');
  await mcs[A].exited();
  await pollUntil(() => role(A) === 'out', 10_000, 20);
  await mcs[B].pause();
  await pollUntil(() => role(B) === 'out', 10_000, 20);
  // B comes back and is filled, then waits in refill: A is away. C goes away: B outlasts it, in refill.
  mcs[B].resume();
  await pollUntil(() => role(B) === 'refill' && filled.includes(backends[B].address), 10_000, 20);
  await mcs[C].pause();
  await pollUntil(() => role(C) === 'out', 10_000, 20);
  await mcs[A].restart();
  await pollUntil(() => role(A) === 'refill', 10_000, 20);

  // B's filled fill asks, each round, which in refill kept their data: hold such a read of B's
  // incarnation key (begun while C is out), let C enter refill, then let the read finish.
  gate.held = true;
  await pollUntil(() => gate.waiting > 0, 10_000, 5, `B never asked which kept their data: ${[A, B, C].map((i) => role(i))}`);
  mcs[C].resume();
  await pollUntil(() => role(C) === 'refill', 10_000, 5);
  expect(role(B)).toBe('refill');
  gate.release();

  const order = await trustedInOrder(role, [A, B, C]);
  // C first: B, outlasted by C while trusted, after it (A, come back empty, last).
  expect(order.map((i) => 'ABC'[i])).toEqual(['C', 'B', 'A']);
});

// A read of B's incarnation key that fails (a scripted fault: a real memcached that stops answering
// fails every request, and is agreed out; this one read fails alone, so the proposal races nothing):
// B, which kept its data, must not count as come back empty. A, restarted empty and outlasted by
// no candidate (B was away when A went), would then go first, and its misses prove gone the writes
// only B holds.
test('a failed read of which kept their data counts no backend as come back empty: nothing goes first until it is known', async () => {
  const { mcs, backends, gate, filled, role } = await threeTrusted();

  // B goes away first (it keeps its data): A, trusted then, outlasts it. Then A is killed.
  await mcs[B].pause();
  await pollUntil(() => role(B) === 'out', 10_000, 20);
  mcs[A].kill('SIGKILL');
  await mcs[A].exited();
  await pollUntil(() => role(A) === 'out', 10_000, 20);
  // Both come back: B as it was, A empty. While the reads of B's incarnation key fail, neither goes first.
  gate.failing = true;
  mcs[B].resume();
  await mcs[A].restart();
  const trustedAny = () => role(A) === 'trusted' || role(B) === 'trusted';
  await pollUntil(() => (filled.includes(backends[A].address) && filled.includes(backends[B].address)) || trustedAny(), 20_000, 2);
  const failedBefore = gate.failed;
  await pollUntil(() => gate.failed >= failedBefore + 5 || trustedAny(), 10_000, 2, 'the fills never asked again which kept their data');
  expect([role(A), role(B)]).toEqual(['refill', 'refill']);

  gate.failing = false;
  const order = await trustedInOrder(role, [A, B]);
  // B first: it kept its data; A, come back empty, after it.
  expect(order.map((i) => 'AB'[i])).toEqual(['B', 'A']);
}, 60_000);
