// Shared by the trust agent's unit tests: an in-memory stand-in for memcached (only the reads
// and adds the agent makes, with one CAS counter per server, and a switch that cuts it off
// from the sidecar) and an agent over such nodes with its state exposed.
//
//   const [X, Y] = ['x:1', 'y:1'].map((a) => new FakeNode(a));
//   const { agent, state } = agentOver('late', [X, Y]);
//
// And, against real memcached, one sidecar in-process over them with a client's router:
//
//   const { mcs, conn, role, order } = await sidecarOverMemcached(3, cleanup);

import { Backend } from '../../src/backends/backend';
import { KeySequencer } from '../../src/routing/key-sequencer';
import type { MemcachedNode, NodeGet, NodeStore } from '../../src/routing/node';
import { OrderedRouter } from '../../src/routing/ordered-router';
import type { StoreFields } from '../../src/protocol/types';
import type { Clock } from '../../src/resync/rate-limiter';
import { TrustAgent } from '../../src/trust/agent';
import { timingFor, type TrustState, type TrustTiming } from '../../src/trust/protocol';
import { startMemcached } from '../helpers/memcached';
import { pollUntil } from '../helpers/wait';
import { inProcessSidecar, stopSidecar } from '../resync/support';

/** A memcached as far as the agent's reads and adds go: values with CAS, or cut off (every op fails). */
export class FakeNode {
  private cas = 0n;
  private readonly items = new Map<string, { value: Buffer; cas: bigint }>();
  constructor(
    readonly address: string,
    public reachable = true,
  ) {}
  put(key: Buffer, value: string): bigint {
    this.cas++;
    this.items.set(key.toString('latin1'), { value: Buffer.from(value), cas: this.cas });
    return this.cas;
  }
  async get(key: Buffer): Promise<NodeGet> {
    if (!this.reachable) return { status: 'failed', reason: 'cut off' } as NodeGet;
    const item = this.items.get(key.toString('latin1'));
    return item === undefined ? { status: 'miss' } : { status: 'hit', item: { value: item.value, flags: 0, cas: item.cas, ttl: 0 } };
  }
  async store(f: StoreFields): Promise<NodeStore> {
    if (!this.reachable) return { status: 'failed', reason: 'cut off' } as NodeStore;
    if (f.mode === 'add' && this.items.has(f.key.toString('latin1'))) return { status: 'not_stored' };
    return { status: 'stored', cas: this.put(f.key, f.value.toString('latin1')) } as NodeStore;
  }
}

/** The unit tests' timing: a 1 s lease. */
export const TEST_TIMING: TrustTiming = timingFor(1000);

/** A sidecar's agent over `nodes` (their order is every key's), not started, and its protocol state. */
export function agentOver(id: string, nodes: readonly FakeNode[], clock: Clock = { now: () => 0, sleep: async () => {} }): { agent: TrustAgent; state: TrustState } {
  const boards = nodes as unknown as MemcachedNode[];
  const agent = new TrustAgent({ id, boards, replicas: 2, ringOrder: () => boards, clock, timing: TEST_TIMING });
  return { agent, state: (agent as unknown as { state: TrustState }).state };
}

/**
 * The order in which the backends `indexes` name become trusted (`role` read every 2 ms), once
 * all of them are; fails after 30 s.
 */
export async function trustedInOrder(role: (i: number) => string, indexes: readonly number[], message?: string): Promise<number[]> {
  const order: number[] = [];
  await pollUntil(
    () => {
      for (const i of indexes) if (role(i) === 'trusted' && !order.includes(i)) order.push(i);
      return order.length === indexes.length;
    },
    30_000,
    2,
    message,
  );
  return order;
}

/** Backends that find a stopped memcached within a few hundred ms, and take it back at its first answer. */
const REAL_BACKEND = { requestTimeoutMs: 300, probeIntervalMs: 30, retryMaxMs: 100, upAfterProbes: 1 };

/**
 * `count` real memcached and one sidecar in-process over them (trust agent, ring, router,
 * resyncer, two replicas), started, once every backend is trusted; `conn` routes as a client
 * connection does. Stopping them is pushed onto `cleanup` (run in reverse order).
 */
export async function sidecarOverMemcached(count: number, cleanup: Array<() => Promise<void>>) {
  const mcs = await Promise.all(Array.from({ length: count }, () => startMemcached()));
  cleanup.push(async () => {
    for (const m of mcs) m.resume();
    await Promise.all(mcs.map((m) => m.stop()));
  });
  const backends = mcs.map((m) => new Backend(m.address, REAL_BACKEND));
  const s = inProcessSidecar(backends, {}, undefined, { id: 'a' });
  cleanup.push(() => stopSidecar(s));
  await s.agent.start();
  const conn = new OrderedRouter(new KeySequencer(), s.router, s.agent);
  const role = (i: number) => s.agent.roleOf(backends[i]);
  const allTrusted = () => backends.every((_, i) => role(i) === 'trusted');
  await pollUntil(allTrusted, 10_000, 20);
  /** The indexes (into `mcs`) of a key's backends in its ring order. */
  const order = (key: string) => s.ring.ringOrder(Buffer.from(key)).map((m) => mcs.findIndex((x) => x.address === m.address));
  return { mcs, backends, s, conn, role, allTrusted, order };
}
